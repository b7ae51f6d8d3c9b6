"""Meeting invitations as iCalendar (RFC 5545/5546) files that calendar programs add in one click."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from icalendar import Calendar, Event, vCalAddress, vText

from models.messages import DocumentRef
from models.states import MemberState

PRODID = "-//ASEAN AI SAFE//aisafe meeting invitation//EN"
# ASEAN meetings are booked as half-day sessions; the invitation blocks three hours.
MEETING_LENGTH = timedelta(hours=3)


def meeting_uid(proposal_id: str, stage_index: int, sitting: int = 1) -> str:
    """One UID per meeting, so a repeated or updated invitation replaces the entry instead of adding another.

    A text referred back meets again at a later sitting: that is another meeting, with its own entry."""
    suffix = "" if sitting == 1 else f"-sitting-{sitting}"
    return f"{proposal_id}-stage-{stage_index}{suffix}@aisafe.example.org"


def meeting_invite(
    *,
    proposal_id: str,
    stage_index: int,
    summary: str,
    date: datetime,
    venue: str | None,
    chair: MemberState,
    document: DocumentRef,
    organizer: str,
    attendee: tuple[str, str] | None = None,
    stamp: datetime | None = None,
    sequence: int = 0,
    cancelled: bool = False,
    sitting: int = 1,
) -> bytes:
    """A METHOD:REQUEST calendar with the meeting as its one event; `organizer` is an RFC 5322 address.

    A reschedule sends the same UID with a higher `sequence` (RFC 5546 §2.1.5: the update replaces the entry);
    `cancelled` sends METHOD:CANCEL with STATUS:CANCELLED, which removes it."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "CANCEL" if cancelled else "REQUEST")

    start = date.astimezone(UTC)
    event = Event()
    event.add("uid", meeting_uid(proposal_id, stage_index, sitting))
    event.add("dtstamp", (stamp or datetime.now(UTC)).astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", start + MEETING_LENGTH)
    event.add("summary", summary)
    if venue:
        event.add("location", venue)
    event.add(
        "description",
        f"{summary}\n"
        f"Chair: {chair.official_name}\n"
        f"Document version {document.version} ({document.filename})\n"
        f"SHA-256: {document.sha256}",
    )
    event.add("sequence", sequence)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")

    organizer_name, organizer_address = parseaddr(organizer)
    chair_of_meeting = vCalAddress(f"mailto:{organizer_address}")
    if organizer_name:
        chair_of_meeting.params["cn"] = vText(organizer_name)
    event.add("organizer", chair_of_meeting, encode=False)
    if attendee is not None:
        name, address = attendee
        guest = vCalAddress(f"mailto:{address}")
        guest.params["cn"] = vText(name)
        guest.params["role"] = vText("REQ-PARTICIPANT")
        guest.params["partstat"] = vText("NEEDS-ACTION")
        # Positions are recorded by the secretariat, not by calendar replies.
        guest.params["rsvp"] = vText("FALSE")
        event.add("attendee", guest, encode=False)

    calendar.add_component(event)
    return bytes(calendar.to_ical())
