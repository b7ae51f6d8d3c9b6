"""A meeting's mail after it was set (issue 18, point 7): a reschedule updates the calendar entry (same UID,
SEQUENCE+1, METHOD:REQUEST), a cancellation removes it (METHOD:CANCEL), and a date that had passed when the stage
opened is told to the coordinator alone. Sent through the real activity to the SMTP sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from icalendar import Calendar

from activities.calendar import meeting_invite
from activities.email import MailActivities
from models.messages import DocumentRef
from models.settings import Settings
from models.states import MemberState
from tests.test_email_activity import (
    MEETING_DATE,
    PROPOSAL_ID,
    SENIOR_OFFICIALS,
    TL_DELEGATES,
    by_address,
    document,
    lifecycle,
    meeting,
    raw_messages,
    run,
    settings,
    small_roster,
)
from web.mailbox import read_mailbox

__all__ = ["document", "lifecycle", "settings", "small_roster"]  # the fixtures, shared with the mail tests

UID = f"{PROPOSAL_ID}-stage-3@aisafe.example.org"


async def test_a_reschedule_updates_the_calendar_entry_and_a_cancellation_removes_it(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    await run(lifecycle.send_meeting_mail, meeting(document))
    later = MEETING_DATE + timedelta(days=14)
    moved = meeting(document, step="reschedule-1", date=later, sequence=1, previous_date=MEETING_DATE, venue="Jakarta")
    assert (await run(lifecycle.send_meeting_mail, moved)).sent == 4
    cancelled = meeting(document, step="cancel-2", date=later, sequence=2, reason="venue unavailable")
    assert (await run(lifecycle.send_meeting_mail, cancelled)).sent == 4

    items = read_mailbox(settings.mail_dir)
    rescheduled = by_address([i for i in items if i.aisafe["step"] == "reschedule-1"])
    assert set(rescheduled) == SENIOR_OFFICIALS | TL_DELEGATES
    for item in rescheduled.values():
        assert item.subject.startswith("[ASEAN AI SAFE] Rescheduled: ADGSOM meeting on")
        assert "has been rescheduled" in item.text and "2031-01-15" in item.text and "Jakarta" in item.text
    for item in (i for i in items if i.aisafe["step"] == "cancel-2"):
        assert item.subject.startswith("[ASEAN AI SAFE] Cancelled: ADGSOM meeting on")
        assert "has been cancelled: venue unavailable" in item.text

    messages = raw_messages(settings)
    by_step: dict[str, list[Calendar]] = {"invitation": [], "reschedule-1": [], "cancel-2": []}
    for message in messages:
        [invite] = [part for part in message.iter_attachments() if part.get_content_type() == "text/calendar"]
        step = str(message["X-Aisafe-Step"])
        calendar = Calendar.from_ical(invite.get_content())
        assert invite.get_param("method") == calendar["METHOD"]
        by_step[step].append(calendar)
    assert [len(c) for c in by_step.values()] == [4, 4, 4]
    for step, method, sequence, status, start in [
        ("invitation", "REQUEST", 0, "CONFIRMED", MEETING_DATE),
        ("reschedule-1", "REQUEST", 1, "CONFIRMED", later),
        ("cancel-2", "CANCEL", 2, "CANCELLED", later),
    ]:
        for calendar in by_step[step]:
            [event] = calendar.walk("VEVENT")
            assert calendar["METHOD"] == method and str(event["UID"]) == UID
            assert event["SEQUENCE"] == sequence and str(event["STATUS"]) == status
            assert event.decoded("DTSTART") == start.astimezone(UTC)


async def test_a_date_passed_alert_goes_to_the_coordinator_only(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    alert = meeting(document, step="date-passed", previous_date=MEETING_DATE)

    assert (await run(lifecycle.send_meeting_mail, alert)).sent == 1

    (item,) = read_mailbox(settings.mail_dir)
    assert parseaddr(item.to)[1] == parseaddr(settings.mail_from)[1]
    assert "meeting date has passed" in item.subject
    assert f"aisafe reschedule {PROPOSAL_ID} --date" in item.text
    assert "2031-01-15 01:00 UTC" in item.text
    assert not [p for p in raw_messages(settings)[0].iter_attachments() if p.get_content_type() == "text/calendar"]


def test_a_later_sitting_is_another_calendar_entry() -> None:
    common = {
        "proposal_id": "p-1",
        "stage_index": 4,
        "summary": "ADGMIN: Framework",
        "date": datetime(2031, 1, 15, 1, tzinfo=UTC),
        "venue": None,
        "chair": MemberState.TH,
        "document": DocumentRef(sha256="a" * 64, version=2, filename="v2.md", size=3),
        "organizer": "Secretariat <secretariat@aisafe.example.org>",
    }
    first = Calendar.from_ical(meeting_invite(**common)).walk("VEVENT")[0]  # type: ignore[arg-type]
    second = Calendar.from_ical(meeting_invite(**common, sitting=2)).walk("VEVENT")[0]  # type: ignore[arg-type]
    assert str(first["UID"]) == "p-1-stage-4@aisafe.example.org"
    assert str(second["UID"]) == "p-1-stage-4-sitting-2@aisafe.example.org"
