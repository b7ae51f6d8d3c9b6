"""What a reader's mail client gets: for every kind of message, the bytes the SMTP sink received parse into a plain
text part and then an HTML part that is self-contained (inline styles only, nothing fetched from elsewhere), fits a
phone, is readable, and says what the text part says: the link, the document hash and the deadline in the reader's
own zone and in UTC. A meeting invitation's calendar file parses with `icalendar`."""

from __future__ import annotations

import email
import mailbox
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr
from html.parser import HTMLParser
from typing import Any

import pytest
from icalendar import Calendar
from temporalio.testing import ActivityEnvironment

from activities.calendar import meeting_invite
from activities.email import MailActivities
from devstack.services import SmtpSink, free_port
from models.db import init_db, make_engine
from models.messages import (
    AnswerNotice,
    ConsultationMailing,
    DocumentRef,
    FundingTerms,
    MailingResult,
    MeetingMailing,
    OutcomeMailing,
    ProposalState,
    RoundMailing,
    RoundPurpose,
)
from models.positions import Position
from models.process import FundingModel, StageType
from models.roster import Role, Sector, delegate_id, load_roster_file
from models.settings import Settings
from models.states import MemberState
from operations import import_roster

# Myanmar's alternate is posted to the mission in Geneva (Europe/Zurich): the deadline falls on another day there.
ROSTER = """\
delegates:
  - {state: MM, role: focal_point, name: Aye Thida Win, email: aye@mm.example.org, timezone: Asia/Yangon}
  - {state: MM, role: alternate, name: Kyaw Zin, email: kyaw@mm.example.org, timezone: Europe/Zurich}
  - role: stakeholder
    sector: civil_society
    organisation: Mekong Responsible AI Network
    name: Pim Rattanakul
    email: pim@mekong-rai.example.org
    timezone: Asia/Bangkok
"""
YANGON, GENEVA, BANGKOK = "aye@mm.example.org", "kyaw@mm.example.org", "pim@mekong-rai.example.org"
TITLE = "ASEAN AI SAFE Operational Framework"
DOCUMENT = DocumentRef(sha256="3f" * 32, version=2, filename="operational-framework.md", size=1234)
DEADLINE = datetime(2030, 3, 16, 20, 0, tzinfo=UTC)
MEETING = datetime(2031, 1, 15, 9, 0, tzinfo=timezone(timedelta(hours=8)))
# Written out by hand rather than by models.timefmt, so that a wrong conversion there fails here.
SHOWN = {
    DEADLINE: {
        YANGON: "Sunday 17 March 2030, 02:30 (Asia/Yangon, UTC+06:30)",
        GENEVA: "Saturday 16 March 2030, 21:00 (Europe/Zurich, UTC+01:00)",
        BANGKOK: "Sunday 17 March 2030, 03:00 (Asia/Bangkok, UTC+07:00)",
    },
    MEETING: {
        YANGON: "Wednesday 15 January 2031, 07:30 (Asia/Yangon, UTC+06:30)",
        GENEVA: "Wednesday 15 January 2031, 02:00 (Europe/Zurich, UTC+01:00)",
    },
}
SHOWN_UTC = {DEADLINE: "2030-03-16 20:00 UTC", MEETING: "2031-01-15 01:00 UTC"}
ZONES = ("Asia/Yangon", "Europe/Zurich", "Asia/Bangkok")


@dataclass(frozen=True)
class Kind:
    """One kind of message: who receives it, which moment it announces and which link it carries."""

    recipients: frozenset[str]
    moment: datetime | None
    link: str | None  # the path of the action link: "act" or "comment"
    names_document: bool = True


KINDS = {
    "invitation": Kind(frozenset({YANGON, GENEVA}), DEADLINE, "act"),
    "reminder": Kind(frozenset({YANGON, GENEVA}), DEADLINE, "act"),
    "ad-referendum": Kind(frozenset({YANGON, GENEVA}), DEADLINE, "act"),
    "funding": Kind(frozenset({YANGON, GENEVA}), DEADLINE, "act"),
    # An overdue round's controls: a new deadline, and a silence procedure for the silent states.
    "extension": Kind(frozenset({YANGON, GENEVA}), DEADLINE, "act"),
    "silence-procedure": Kind(frozenset({YANGON, GENEVA}), DEADLINE, "act"),
    # The other delegate is told; the one who answered (YANGON) gets a receipt.
    "notice": Kind(frozenset({YANGON, GENEVA}), None, None, names_document=False),
    "consultation": Kind(frozenset({BANGKOK}), DEADLINE, "comment"),
    "meeting": Kind(frozenset({YANGON, GENEVA}), MEETING, None),
    "outcome": Kind(frozenset({YANGON, GENEVA, BANGKOK}), None, None),
}


def _round(kind: str, **update: Any) -> RoundMailing:
    mailing = RoundMailing(
        proposal_id=kind,
        title=TITLE,
        round=1,
        step="invitation",
        states=[MemberState.MM],
        document=DOCUMENT,
        deadline=DEADLINE,
    )
    return mailing.model_copy(update=update)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("rendering"),
        dev=True,
        secret_key=None,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_username=None,
        smtp_password=None,
        smtp_starttls=False,
        web_host="127.0.0.1",
        web_port=8000,
        public_url=None,
    )


@pytest.fixture(scope="module")
async def sent(settings: Settings) -> AsyncIterator[dict[str, list[EmailMessage]]]:
    """Every kind of message, sent once through the real activities to an SMTP sink, as the sink filed it."""
    roster_path = settings.data_dir / "roster.yaml"
    roster_path.write_text(ROSTER, encoding="utf-8")
    engine = make_engine(f"sqlite:///{settings.data_dir / 'ledger.db'}")
    init_db(engine)
    import_roster(engine, load_roster_file(roster_path))
    mail = MailActivities(settings, engine)
    mail_dir = settings.data_dir / "sink"
    sink = SmtpSink(mail_dir, host=settings.smtp_host, port=settings.smtp_port)
    sink.start()
    env = ActivityEnvironment()
    sends: list[tuple[Any, Any]] = [
        (mail.send_round_mail, _round("invitation")),
        (mail.send_round_mail, _round("reminder", step="reminder-1")),
        (mail.send_round_mail, _round("extension", step="extended-1")),
        (mail.send_round_mail, _round("silence-procedure", step="silence-procedure-1")),
        (
            mail.send_round_mail,
            _round(
                "ad-referendum",
                purpose=RoundPurpose.AD_REFERENDUM,
                stage_type=StageType.SENIOR_OFFICIALS,
                roles=[Role.SENIOR_OFFICIAL],
            ),
        ),
        (
            mail.send_round_mail,
            _round(
                "funding",
                purpose=RoundPurpose.FUNDING,
                funding=FundingTerms(
                    model=FundingModel.TIERED,
                    currency="USD",
                    budget_target=Decimal("500000"),
                    expected={MemberState.MM: Decimal("20000")},
                ),
            ),
        ),
        (
            mail.send_answer_notice,
            AnswerNotice(
                proposal_id="notice",
                title=TITLE,
                round=1,
                state=MemberState.MM,
                delegate_id=delegate_id(MemberState.MM, YANGON),
                decision_id="decision-1",
                position=Position.APPROVE_WITH_RESERVATION,
                roles=[Role.FOCAL_POINT, Role.ALTERNATE],
            ),
        ),
        (
            mail.send_consultation_mail,
            ConsultationMailing(
                proposal_id="consultation",
                title=TITLE,
                stage_index=1,
                step="invitation",
                sectors=[Sector.CIVIL_SOCIETY],
                document=DOCUMENT,
                deadline=DEADLINE,
            ),
        ),
        (
            mail.send_meeting_mail,
            MeetingMailing(
                proposal_id="meeting",
                title=TITLE,
                stage_index=3,
                stage_type=StageType.SENIOR_OFFICIALS,
                step="invitation",
                date=MEETING,
                venue="Kuala Lumpur Convention Centre",
                chair=MemberState.MY,
                states=[MemberState.MM],
                roles=[Role.SENIOR_OFFICIAL],
                document=DOCUMENT,
            ),
        ),
        (
            mail.send_outcome_mail,
            OutcomeMailing(
                proposal_id="outcome", title=TITLE, status=ProposalState.ADOPTED, reason=None, document=DOCUMENT
            ),
        ),
    ]
    try:
        for activity_method, payload in sends:
            result = await env.run(activity_method, payload)
            assert isinstance(result, MailingResult) and result.sent > 0
    finally:
        sink.stop()
        engine.dispose()
    box = mailbox.Maildir(mail_dir, factory=None, create=False)
    by_kind: dict[str, list[EmailMessage]] = {kind: [] for kind in KINDS}
    for key in box.keys():
        message = email.message_from_bytes(box.get_bytes(key), policy=policy.default)
        assert isinstance(message, EmailMessage)
        by_kind[str(message["X-Aisafe-Proposal"])].append(message)
    yield by_kind


def recipient(message: EmailMessage) -> str:
    return parseaddr(str(message["To"]))[1]


def messages_of(sent: dict[str, list[EmailMessage]], kind: str) -> list[EmailMessage]:
    messages = sent[kind]
    assert {recipient(m) for m in messages} == KINDS[kind].recipients
    assert len(messages) == len(KINDS[kind].recipients)
    return messages


def alternative(message: EmailMessage) -> EmailMessage:
    """The multipart/alternative body: the message itself, or the first part beside a meeting's calendar file."""
    if message.get_content_type() == "multipart/mixed":
        first = next(message.iter_parts())
        assert isinstance(first, EmailMessage)
        return first
    return message


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    parts = list(alternative(message).iter_parts())
    assert all(isinstance(part, EmailMessage) for part in parts)
    text, html = parts
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def squeeze(text: str) -> str:
    return " ".join(text.split())


# --- reading the HTML as a mail client would ----------------------------------------------------------------

VOID = {"meta", "br", "img", "hr", "link", "input", "col", "area", "base", "source", "wbr"}
PHRASING = {"strong", "b", "em", "i", "span"}  # they take their look from the styled block around them
_COLOR = re.compile(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{6})")
_BACKGROUND = re.compile(r"background(?:-color)?:\s*(#[0-9a-fA-F]{6})")
_WIDTH = re.compile(r"(?<![-\w])(?:min-)?width:\s*(\d+)px")
_MAX_WIDTH = re.compile(r"max-width:\s*(\d+)px")


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    """The WCAG 2 contrast ratio of two #rrggbb colours."""
    darker, lighter = sorted((_luminance(foreground), _luminance(background)))
    return (lighter + 0.05) / (darker + 0.05)


@dataclass
class TextRun:
    text: str
    styled: bool  # the nearest block around it has a style attribute
    colour: str
    background: str


class HtmlReader(HTMLParser):
    """Elements, attributes and visible text of an HTML part; fails on a tag closed out of order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.runs: list[TextRun] = []
        self._open: list[tuple[str, dict[str, str]]] = []
        self.feed(html)
        self.close()
        assert not self._open, f"unclosed elements: {[tag for tag, _ in self._open]}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        if tag not in VOID:
            self._open.append((tag, attributes))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self._open and self._open[-1][0] == tag, f"</{tag}> closes <{self._open[-1][0] if self._open else ''}>"
        self._open.pop()

    def handle_data(self, data: str) -> None:
        if not data.strip() or "body" not in (tag for tag, _ in self._open):
            return
        block = next(attributes for tag, attributes in reversed(self._open) if tag not in PHRASING)
        self.runs.append(
            TextRun(
                text=data,
                styled="style" in block,
                colour=self._inherited(_COLOR) or "#000000",
                background=self._inherited(_BACKGROUND, attribute="bgcolor") or "#ffffff",
            )
        )

    def _inherited(self, pattern: re.Pattern[str], attribute: str | None = None) -> str | None:
        """The colour the innermost open element gives, in its style or (for Outlook) in an attribute."""
        for _, attributes in reversed(self._open):
            if found := pattern.search(attributes.get("style", "")):
                return found.group(1).lower()
            if attribute and re.fullmatch(r"#[0-9a-fA-F]{6}", attributes.get(attribute, "")):
                return attributes[attribute].lower()
        return None

    @property
    def visible_text(self) -> str:
        return squeeze(" ".join(run.text for run in self.runs))

    def hrefs(self) -> list[str]:
        return [attributes["href"] for tag, attributes in self.elements if tag == "a"]


# --- the tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_message_is_plain_text_then_html(sent: dict[str, list[EmailMessage]], kind: str) -> None:
    for message in messages_of(sent, kind):
        if kind == "meeting":
            assert message.get_content_type() == "multipart/mixed"
            assert [p.get_content_type() for p in message.iter_parts()] == ["multipart/alternative", "text/calendar"]
        else:
            assert message.get_content_type() == "multipart/alternative"
        parts = list(alternative(message).iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert all(p.get_content_charset() in ("us-ascii", "utf-8") for p in parts)
        text, html = text_and_html(message)
        assert not re.search(r"<[a-z]|&[a-z]+;", text), "markup or an HTML entity in the plain text part"
        assert TITLE in text and TITLE in HtmlReader(html).visible_text


@pytest.mark.parametrize("kind", KINDS)
def test_the_html_fetches_nothing_and_relies_on_no_stylesheet(
    sent: dict[str, list[EmailMessage]], kind: str, settings: Settings
) -> None:
    for message in messages_of(sent, kind):
        _, html = text_and_html(message)
        # Raw text too: Outlook's conditional comments hide markup from a parser but not from Outlook.
        assert not re.search(r"<\s*(style|link|script|img|iframe|object|embed|base)\b", html, re.IGNORECASE)
        assert not re.search(rf"url\s*\(|@import|(?!{re.escape(settings.base_url)}/)https?://", html, re.IGNORECASE)
        page = HtmlReader(html)
        for tag, attributes in page.elements:
            assert "class" not in attributes, f"<{tag} class=…> needs a stylesheet that mail clients drop"
            for name in ("src", "srcset", "background", "poster", "data"):
                assert name not in attributes, f"<{tag} {name}=…> loads a resource"
            handlers = [name for name in attributes if name.startswith("on")]
            assert handlers == [], f"<{tag}> runs script on {handlers}"
        for href in page.hrefs():
            assert href.startswith(f"{settings.base_url}/"), f"a link that leaves the application: {href}"
        unstyled = [run.text.strip() for run in page.runs if not run.styled]
        assert unstyled == [], f"text in an element without inline styles: {unstyled}"


@pytest.mark.parametrize("kind", KINDS)
def test_the_html_names_its_language_and_fits_a_phone(sent: dict[str, list[EmailMessage]], kind: str) -> None:
    for message in messages_of(sent, kind):
        _, html = text_and_html(message)
        page = HtmlReader(html)
        [(_, root)] = [(tag, attributes) for tag, attributes in page.elements if tag == "html"]
        assert root.get("lang") == "en"
        # Gmail drops <html> and <body> with their attributes: the wrapper repeats the language.
        assert any(tag == "div" and attributes.get("lang") == "en" for tag, attributes in page.elements)
        viewport = [attributes for tag, attributes in page.elements if attributes.get("name") == "viewport"]
        assert viewport and "width=device-width" in viewport[0]["content"]
        styles = [attributes.get("style", "") for _, attributes in page.elements]
        assert any(0 < int(width) <= 640 for style in styles for width in _MAX_WIDTH.findall(style))
        fixed = [int(w) for style in styles for w in _WIDTH.findall(style)]
        fixed += [int(a["width"]) for _, a in page.elements if a.get("width", "").isdigit()]
        assert all(width <= 320 for width in fixed), f"a fixed width wider than a phone: {fixed}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_text_in_the_html_is_readable_against_its_background(
    sent: dict[str, list[EmailMessage]], kind: str
) -> None:
    for message in messages_of(sent, kind):
        page = HtmlReader(text_and_html(message)[1])
        assert page.runs
        for run in page.runs:
            ratio = contrast(run.colour, run.background)
            assert ratio >= 4.5, f"{run.text.strip()!r}: {run.colour} on {run.background} is only {ratio:.1f}:1"
        buttons = [run for run in page.runs if run.background != "#ffffff" and run.background != "#f4f6f8"]
        if KINDS[kind].link:
            assert buttons, "the action link is not drawn as a button"


@pytest.mark.parametrize("kind", KINDS)
def test_both_parts_give_the_same_link_and_document(
    sent: dict[str, list[EmailMessage]], kind: str, settings: Settings
) -> None:
    expected = KINDS[kind]
    for message in messages_of(sent, kind):
        text, html = text_and_html(message)
        page = HtmlReader(html)
        visible = page.visible_text
        if expected.names_document:
            assert DOCUMENT.sha256 in text and DOCUMENT.sha256 in visible
            assert f"version {DOCUMENT.version}" in text and f"version {DOCUMENT.version}" in visible
        links = set(re.findall(rf"{re.escape(settings.base_url)}/\S+", text))
        if expected.link is None:
            assert links == set() and page.hrefs() == []
            continue
        [link] = links
        assert link.startswith(f"{settings.base_url}/{expected.link}/")
        assert set(page.hrefs()) == {link}
        assert link in visible, "the HTML shows the address too, for clients that disable links"


@pytest.mark.parametrize("kind", KINDS)
def test_the_deadline_is_in_the_readers_zone_and_in_utc_in_both_parts(
    sent: dict[str, list[EmailMessage]], kind: str
) -> None:
    moment = KINDS[kind].moment
    for message in messages_of(sent, kind):
        text, html = text_and_html(message)
        reader = recipient(message)
        for body in (squeeze(text), HtmlReader(html).visible_text):
            if moment is None:
                assert not any(zone in body for zone in ZONES)
                continue
            assert SHOWN[moment][reader] in body
            assert SHOWN_UTC[moment] in body
            others = [zone for zone in ZONES if zone not in SHOWN[moment][reader]]
            assert not any(zone in body for zone in others)


def test_the_meeting_invitation_carries_a_calendar_request_that_icalendar_reads(
    sent: dict[str, list[EmailMessage]], settings: Settings
) -> None:
    for message in messages_of(sent, "meeting"):
        [invite] = list(message.iter_attachments())
        assert isinstance(invite, EmailMessage)
        assert invite.get_content_type() == "text/calendar"
        assert invite.get_param("method") == "REQUEST"
        assert invite.get_filename() == "invite.ics"
        raw = invite.get_payload(decode=True)
        assert isinstance(raw, bytes)
        lines = raw.split(b"\r\n")
        assert lines[-1] == b"" and all(len(line) <= 75 for line in lines), "lines are CRLF-ended and folded"

        calendar = Calendar.from_ical(raw)
        assert str(calendar["METHOD"]) == "REQUEST" and str(calendar["VERSION"]) == "2.0" and calendar["PRODID"]
        [event] = calendar.walk("VEVENT")
        assert str(event["UID"]) == "meeting-stage-3@aisafe.example.org"
        assert event.decoded("DTSTAMP").tzinfo is not None
        # In UTC (the Z form), so that no VTIMEZONE is needed.
        assert calendar.walk("VTIMEZONE") == []
        for name in ("DTSTAMP", "DTSTART", "DTEND"):
            assert event[name].to_ical().endswith(b"Z"), f"{name} is not in UTC"
        assert event.decoded("DTSTART") == MEETING.astimezone(UTC) == datetime(2031, 1, 15, 1, 0, tzinfo=UTC)
        assert event.decoded("DTEND") > event.decoded("DTSTART")
        assert str(event["SUMMARY"]) == f"ADGSOM: {TITLE}"
        assert str(event["LOCATION"]) == "Kuala Lumpur Convention Centre"
        assert DOCUMENT.sha256 in str(event["DESCRIPTION"])
        assert str(event["ORGANIZER"]) == f"mailto:{parseaddr(settings.mail_from)[1]}"
        assert str(event["ORGANIZER"].params["CN"]) == parseaddr(settings.mail_from)[0]
        attendee = event["ATTENDEE"]
        assert str(attendee) == f"mailto:{recipient(message)}"
        assert attendee.params["ROLE"] == "REQ-PARTICIPANT" and attendee.params["PARTSTAT"] == "NEEDS-ACTION"


def test_a_calendar_file_keeps_names_with_quotes_commas_and_accents() -> None:
    invite = meeting_invite(
        proposal_id="p-1",
        stage_index=2,
        summary="ADGMIN: Framework; annex, part 2",
        date=MEETING,
        venue='Hall "B", Level 3; Hanoi',
        chair=MemberState.VN,
        document=DOCUMENT,
        organizer='"Secretariat, ASEAN AI SAFE" <secretariat@aisafe.example.org>',
        attendee=('Nguyễn "Lan" Anh; Deputy', "lan@vn.example.org"),
        stamp=datetime(2030, 12, 1, tzinfo=UTC),
    )

    [event] = Calendar.from_ical(invite).walk("VEVENT")
    assert str(event["SUMMARY"]) == "ADGMIN: Framework; annex, part 2"
    assert str(event["LOCATION"]) == 'Hall "B", Level 3; Hanoi'
    assert str(event["ORGANIZER"].params["CN"]) == "Secretariat, ASEAN AI SAFE"
    assert str(event["ATTENDEE"].params["CN"]) == 'Nguyễn "Lan" Anh; Deputy'
    assert str(event["ATTENDEE"]) == "mailto:lan@vn.example.org"
    assert event.decoded("DTSTAMP") == datetime(2030, 12, 1, tzinfo=UTC)


def test_the_silence_procedure_says_in_plain_words_that_silence_is_deemed_concurrence(
    sent: dict[str, list[EmailMessage]],
) -> None:
    for message in messages_of(sent, "silence-procedure"):
        text, html = text_and_html(message)
        shown = SHOWN[DEADLINE][recipient(message)]
        for part in (text, re.sub(r"<[^>]+>", "", html)):
            flat = " ".join(part.split())
            assert re.search(rf"unless Myanmar objects by {re.escape(shown)}[^.]*, Myanmar is deemed to concur", flat)
            assert "Silence is not consent" in flat
            assert "Answers: approve, approve with reservation, object." in flat
        assert "Silence procedure: unless Myanmar objects by" in str(message["Subject"])


def test_an_extension_says_the_deadline_was_extended(sent: dict[str, list[EmailMessage]]) -> None:
    for message in messages_of(sent, "extension"):
        text, _ = text_and_html(message)
        assert "The deadline of this round has been extended" in text
        assert str(message["Subject"]).startswith("New deadline: ")


def test_every_ad_referendum_invitation_announces_that_silence_is_concurrence(
    sent: dict[str, list[EmailMessage]],
) -> None:
    for message in messages_of(sent, "ad-referendum"):
        text, html = text_and_html(message)
        assert "A state that does not answer is deemed to concur." in text
        assert "A state that does not answer is deemed to concur." in html
