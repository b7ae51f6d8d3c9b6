"""Email activities against a real SMTP sink: every recipient gets their own message (and link), in their own time
zone, exactly once; round mail, answer notices, consultations, meeting invitations and outcomes."""

from __future__ import annotations

import email
import logging
import mailbox
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.email
from activities.email import MailActivities, message_id
from devstack.services import SmtpSink
from models.ledger import document_hash
from models.messages import (
    AnswerNotice,
    ConsultationMailing,
    DocumentRef,
    FundingStep,
    FundingTerms,
    MailingResult,
    MeetingMailing,
    OutcomeMailing,
    ProposalState,
    RoundMailing,
    RoundPurpose,
)
from models.positions import FUNDING_INDICATION_POSITIONS, FUNDING_POSITIONS, MINUS_X_POSITIONS, Position
from models.process import FundingModel, StageType
from models.roster import REVIEW_ROLES, Role, RosterFile, Sector, delegate_id, load_roster_file
from models.settings import Settings
from models.states import MemberState, in_name_order
from models.tables import DelegateRecord
from models.timefmt import in_utc
from models.tokens import (
    consultation_workflow_id,
    meeting_workflow_id,
    round_workflow_id,
    verify_action,
    verify_comment,
)
from operations import import_roster
from web.mailbox import MailItem, read_mailbox

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROPOSAL_ID = "operational-framework-1a2b3c4d"
TITLE = "ASEAN AI SAFE Operational Framework"
# 20:00 UTC on the 16th is already the 17th everywhere in ASEAN: the local date must follow the reader's zone.
DEADLINE = datetime(2030, 3, 16, 20, 0, tzinfo=UTC)
BEFORE_DEADLINE = DEADLINE - timedelta(days=7)
LINK = re.compile(r"http://127\.0\.0\.1:8000/act/([A-Za-z0-9_.\-]+)")


@pytest.fixture
def settings(tmp_path: Path, sink: SmtpSink) -> Settings:
    return Settings(
        data_dir=tmp_path,
        dev=True,
        secret_key=None,
        smtp_host=sink.host,
        smtp_port=sink.port,
        smtp_username=None,
        smtp_password=None,
        smtp_starttls=False,
        web_host="127.0.0.1",
        web_port=8000,
        public_url=None,
    )


@pytest.fixture
def example_roster() -> RosterFile:
    return load_roster_file(EXAMPLES / "roster.yaml")


@pytest.fixture
def engine(sqlite_engine: Engine, example_roster: RosterFile) -> Engine:
    assert import_roster(sqlite_engine, example_roster) == (len(example_roster.delegates), 0, 0)
    return sqlite_engine


@pytest.fixture
def mail(settings: Settings, engine: Engine) -> MailActivities:
    return MailActivities(settings, engine)


@pytest.fixture
def document() -> DocumentRef:
    body = (EXAMPLES / "operational-framework.md").read_text(encoding="utf-8")
    return DocumentRef(
        sha256=document_hash(body), version=1, filename="operational-framework.md", size=len(body.encode())
    )


@pytest.fixture
def invitation(document: DocumentRef) -> RoundMailing:
    return RoundMailing(
        proposal_id=PROPOSAL_ID,
        title=TITLE,
        round=1,
        step="invitation",
        states=list(MemberState),
        document=document,
        deadline=DEADLINE,
    )


async def send(mail: MailActivities, mailing: RoundMailing) -> MailingResult:
    return await ActivityEnvironment().run(mail.send_round_mail, mailing)


def counts(result: MailingResult) -> MailingResult:
    """The counts of a mailing, without its per-recipient outcomes (tests/test_mail_outcomes.py covers those)."""
    return result.model_copy(update={"recipients": [], "not_invited": []})


def address(item: MailItem) -> str:
    return parseaddr(item.to)[1]


def link_token(body: str) -> str:
    tokens = set(LINK.findall(body))
    assert len(tokens) == 1, f"expected one action link, found {len(tokens)}"
    return tokens.pop()


def by_address(items: list[MailItem]) -> dict[str, MailItem]:
    found = {address(item): item for item in items}
    assert len(found) == len(items), "a delegate got more than one message"
    return found


async def test_invitation_reaches_both_delegates_of_every_state(
    mail: MailActivities, invitation: RoundMailing, settings: Settings, example_roster: RosterFile
) -> None:
    result = await send(mail, invitation)

    assert counts(result) == MailingResult(sent=22, already_sent=0, states_without_delegates=[])
    items = read_mailbox(settings.mail_dir)
    assert len(items) == 22
    assert Counter(item.aisafe["state"] for item in items) == {state.value: 2 for state in MemberState}
    assert set(by_address(items)) == {d.email for d in example_roster.delegates if d.role in REVIEW_ROLES}
    for item in items:
        assert item.aisafe["proposal"] == PROPOSAL_ID
        assert item.aisafe["step"] == "invitation"
        assert item.aisafe["round"] == "1"
        assert TITLE in item.subject and "round 1" in item.subject
        assert not item.subject.startswith("Reminder")
        assert "aisafe@aisafe.example.org" in item.sender  # the lead proponent's address (Settings.mail_from)


async def test_every_message_has_a_plain_text_and_an_html_part(
    mail: MailActivities, invitation: RoundMailing, settings: Settings
) -> None:
    await send(mail, invitation)

    box = mailbox.Maildir(settings.mail_dir, factory=None, create=False)
    raw = [box.get_bytes(key) for key in box.keys()]
    assert len(raw) == 22
    for data in raw:
        message = email.message_from_bytes(data, policy=policy.default)
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]  # type: ignore[attr-defined]
    for item in read_mailbox(settings.mail_dir):
        assert item.html is not None and "<a href=" in item.html
        assert TITLE in item.text and TITLE in item.html
        assert invitation.document.sha256 in item.text


async def test_each_link_is_signed_for_its_own_delegate_state_round_and_document(
    mail: MailActivities, invitation: RoundMailing, settings: Settings, example_roster: RosterFile
) -> None:
    await send(mail, invitation)

    delegates = {d.email: d for d in example_roster.delegates}
    tokens = set()
    for item in read_mailbox(settings.mail_dir):
        token = link_token(item.text)
        assert item.html is not None and link_token(item.html) == token
        claims = verify_action(settings.signing_key, token, now=BEFORE_DEADLINE)
        delegate = delegates[address(item)]
        assert claims.state is delegate.state
        assert claims.state.value == item.aisafe["state"]
        assert claims.delegate_id == delegate.delegate_id
        assert claims.proposal_id == PROPOSAL_ID
        assert claims.round == 1
        assert claims.document_sha256 == invitation.document.sha256
        assert claims.expires_at == DEADLINE
        tokens.add(token)
    assert len(tokens) == 22


async def test_deadline_is_shown_in_the_recipients_own_zone_and_in_utc(
    mail: MailActivities, invitation: RoundMailing, settings: Settings
) -> None:
    await send(mail, invitation)

    items = by_address(read_mailbox(settings.mail_dir))
    myanmar = items["aye.thida.win@mm.example.org"]
    timor_leste = items["ana.soares@tl.example.org"]
    for body in (myanmar.text, myanmar.html or ""):
        assert "17 March 2030, 02:30 (Asia/Yangon, UTC+06:30)" in body
        assert "2030-03-16 20:00 UTC" in body
        assert "Asia/Dili" not in body
    assert "17 March 2030, 05:00 (Asia/Dili, UTC+09:00)" in timor_leste.text
    assert "2030-03-16 20:00 UTC" in timor_leste.text
    assert "Asia/Yangon" not in timor_leste.text


async def test_sending_the_same_step_again_sends_nothing_new(
    mail: MailActivities, invitation: RoundMailing, settings: Settings
) -> None:
    await send(mail, invitation)
    first_ids = sorted(item.message_id for item in read_mailbox(settings.mail_dir))

    again = await send(mail, invitation)

    assert counts(again) == MailingResult(sent=0, already_sent=22, states_without_delegates=[])
    assert sorted(item.message_id for item in read_mailbox(settings.mail_dir)) == first_ids


async def test_a_mailing_heartbeats_while_it_waits_for_the_database(
    mail: MailActivities, invitation: RoundMailing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a database call can wait longer than the heartbeat timeout: the mailing is alive meanwhile."""
    monkeypatch.setattr(activities.email, "HEARTBEAT_EVERY", timedelta(seconds=0.05))
    look_up = mail._pending

    def slow_database(*args: Any) -> Any:
        time.sleep(0.5)
        return look_up(*args)

    monkeypatch.setattr(mail, "_pending", slow_database)
    environment = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    environment.on_heartbeat = lambda *details: beats.append(details)

    result = await environment.run(mail.send_round_mail, invitation)

    assert result.sent == 22
    assert beats.count((0,)) >= 5  # through the half second before the first message, not only once it went
    assert beats == sorted(beats)  # the progress only grows


async def test_message_ids_are_unique_and_derived_from_workflow_step_and_recipient(
    mail: MailActivities, invitation: RoundMailing, settings: Settings
) -> None:
    await send(mail, invitation)

    items = read_mailbox(settings.mail_dir)
    assert len({item.message_id for item in items}) == 22
    workflow_id = round_workflow_id(PROPOSAL_ID, 1)
    for item in items:
        recipient = delegate_id(item.aisafe["state"], address(item))
        assert item.message_id == message_id(f"{workflow_id}:invitation:{recipient}")
        assert re.fullmatch(r"<[0-9a-f]{40}@aisafe\.example\.org>", item.message_id)


async def test_a_reminder_goes_only_to_the_states_named(
    mail: MailActivities, invitation: RoundMailing, settings: Settings
) -> None:
    await send(mail, invitation)
    reminder = invitation.model_copy(update={"step": "reminder-1", "states": [MemberState.PH]})

    result = await send(mail, reminder)

    assert counts(result) == MailingResult(sent=2, already_sent=0, states_without_delegates=[])
    reminders = [item for item in read_mailbox(settings.mail_dir) if item.aisafe["step"] == "reminder-1"]
    assert len(read_mailbox(settings.mail_dir)) == 24
    assert {address(item) for item in reminders} == {"mt.delacruz@ph.example.org", "jm.reyes@ph.example.org"}
    for item in reminders:
        assert item.subject.startswith("Reminder")
        assert "has not yet stated its position" in item.text
        assert "Philippines" in item.text
        assert verify_action(settings.signing_key, link_token(item.text), now=BEFORE_DEADLINE).state is MemberState.PH
    invitations = {item.message_id for item in read_mailbox(settings.mail_dir) if item.aisafe["step"] == "invitation"}
    assert not invitations & {item.message_id for item in reminders}


async def test_a_state_with_no_delegates_is_reported(
    sqlite_engine: Engine, settings: Settings, example_roster: RosterFile, invitation: RoundMailing
) -> None:
    without_timor_leste = RosterFile(delegates=[d for d in example_roster.delegates if d.state is not MemberState.TL])
    import_roster(sqlite_engine, without_timor_leste)
    mail = MailActivities(settings, sqlite_engine)

    result = await send(mail, invitation.model_copy(update={"states": [MemberState.TL, MemberState.MY]}))

    assert counts(result) == MailingResult(sent=2, already_sent=0, states_without_delegates=[MemberState.TL])
    assert {item.aisafe["state"] for item in read_mailbox(settings.mail_dir)} == {"MY"}


async def test_an_inactive_delegate_gets_no_link(
    mail: MailActivities, engine: Engine, invitation: RoundMailing, settings: Settings
) -> None:
    with Session(engine) as session:
        alternate = session.exec(
            select(DelegateRecord).where(DelegateRecord.email == "kyaw.zin.htet@mm.example.org")
        ).one()
        alternate.active = False
        session.add(alternate)
        session.commit()

    result = await send(mail, invitation.model_copy(update={"states": [MemberState.MM]}))

    assert result.sent == 1
    assert [address(item) for item in read_mailbox(settings.mail_dir)] == ["aye.thida.win@mm.example.org"]


# --- the whole lifecycle, against a small roster of our own -----------------------------------------------
# Malaysia and the Philippines have a senior official; Timor-Leste has only its focal point and alternate, so
# mail meant for senior officials falls back to them. Three stakeholders speak from three different sectors.

SMALL_ROSTER = """\
delegates:
  - {state: MY, role: focal_point, name: Aisyah Rahman, email: aisyah@my.example.org, timezone: Asia/Kuala_Lumpur}
  - {state: MY, role: alternate, name: Daniel Lim, email: daniel.lim@my.example.org, timezone: Asia/Kuala_Lumpur}
  - {state: MY, role: senior_official, name: Dato' Hafiz, email: hafiz@my.example.org, timezone: Asia/Kuala_Lumpur}
  - {state: PH, role: focal_point, name: Liza Santos, email: liza@ph.example.org, timezone: Asia/Manila}
  - {state: PH, role: alternate, name: Paolo Cruz, email: paolo@ph.example.org, timezone: Asia/Manila}
  - {state: PH, role: senior_official, name: Usec. Ramos, email: ramos@ph.example.org, timezone: Asia/Manila}
  - {state: TL, role: focal_point, name: Ana Soares, email: ana@tl.example.org, timezone: Asia/Dili}
  - {state: TL, role: alternate, name: Jose Belo, email: jose@tl.example.org, timezone: Asia/Dili}
  - role: stakeholder
    sector: civil_society
    organisation: Mekong Responsible AI Network
    name: Pim Rattanakul
    email: pim@mekong-rai.example.org
    timezone: Asia/Bangkok
  - role: stakeholder
    sector: academia
    organisation: Centre for Trustworthy AI
    name: Hendra Saputra
    email: hendra@cta.example.org
    timezone: Asia/Jakarta
  - role: stakeholder
    sector: industry
    name: Wei Ling Tan
    email: weiling@industry.example.org
    timezone: Asia/Singapore
"""
SMALL_STATES = [MemberState.MY, MemberState.PH, MemberState.TL]
SENIOR_OFFICIALS = {"hafiz@my.example.org", "ramos@ph.example.org"}
TL_DELEGATES = {"ana@tl.example.org", "jose@tl.example.org"}
COMMENT_LINK = re.compile(r"http://127\.0\.0\.1:8000/comment/([A-Za-z0-9_.\-]+)")
MEETING_DATE = datetime(2031, 1, 15, 9, 0, tzinfo=timezone(timedelta(hours=8)))


@pytest.fixture
def small_roster(tmp_path: Path) -> RosterFile:
    path = tmp_path / "roster.yaml"
    path.write_text(SMALL_ROSTER, encoding="utf-8")
    return load_roster_file(path)


@pytest.fixture
def lifecycle(sqlite_engine: Engine, settings: Settings, small_roster: RosterFile) -> MailActivities:
    assert import_roster(sqlite_engine, small_roster) == (11, 0, 0)
    return MailActivities(settings, sqlite_engine)


def ids(small_roster: RosterFile) -> dict[str, str]:
    return {d.email: d.delegate_id for d in small_roster.delegates}


def raw_messages(settings: Settings) -> list[EmailMessage]:
    box = mailbox.Maildir(settings.mail_dir, factory=None, create=False)
    return [
        email.message_from_bytes(box.get_bytes(key), policy=policy.default)  # type: ignore[misc]
        for key in box.keys()
    ]


async def run(activity_method: Any, payload: Any) -> MailingResult:
    result = await ActivityEnvironment().run(activity_method, payload)
    assert isinstance(result, MailingResult)
    return result


def round_mailing(document: DocumentRef, **update: Any) -> RoundMailing:
    mailing = RoundMailing(
        proposal_id=PROPOSAL_ID,
        title=TITLE,
        round=1,
        step="invitation",
        states=SMALL_STATES,
        document=document,
        deadline=DEADLINE,
    )
    return mailing.model_copy(update=update)


async def test_ad_referendum_goes_to_senior_officials_with_a_fallback_to_review_delegates(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings, small_roster: RosterFile
) -> None:
    mailing = round_mailing(
        document,
        purpose=RoundPurpose.AD_REFERENDUM,
        stage_type=StageType.SENIOR_OFFICIALS,
        roles=[Role.SENIOR_OFFICIAL],
        states=[*SMALL_STATES, MemberState.VN],
    )

    result = await run(lifecycle.send_round_mail, mailing)

    assert counts(result) == MailingResult(sent=4, already_sent=0, states_without_delegates=[MemberState.VN])
    items = by_address(read_mailbox(settings.mail_dir))
    assert set(items) == SENIOR_OFFICIALS | TL_DELEGATES
    delegate_ids = ids(small_roster)
    for to, item in items.items():
        assert item.aisafe == {
            "proposal": PROPOSAL_ID,
            "step": "invitation",
            "round": "1",
            "state": item.aisafe["state"],
            "stage": "senior_officials",
            "kind": "round",
        }
        assert item.subject == f"[ASEAN AI SAFE] Endorsement ad referendum by ADGSOM: {TITLE} (round 1)"
        assert (
            "Endorsement ad referendum by the ASEAN Digital Senior Officials' Meeting (ADGSOM): "
            "the proposal is deemed endorsed at the deadline unless your state objects."
        ) in item.text
        assert item.html is not None and "deemed endorsed at the deadline unless your state objects" in item.html
        assert "state your position" not in item.text and "request changes" not in item.text
        claims = verify_action(settings.signing_key, link_token(item.text), now=BEFORE_DEADLINE)
        assert claims.delegate_id == delegate_ids[to]
        assert claims.state.value == item.aisafe["state"] == to.split("@")[1][:2].upper()
        assert claims.document_sha256 == document.sha256 and claims.expires_at == DEADLINE

    again = await run(lifecycle.send_round_mail, mailing)
    assert counts(again) == MailingResult(sent=0, already_sent=4, states_without_delegates=[MemberState.VN])
    assert len(read_mailbox(settings.mail_dir)) == 4


async def test_a_ministerial_ad_referendum_names_adgmin_and_a_reminder_says_so(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    # Nobody on this roster works in a minister's office: every state falls back to its review delegates.
    mailing = round_mailing(
        document,
        step="reminder-1",
        purpose=RoundPurpose.AD_REFERENDUM,
        stage_type=StageType.MINISTERIAL,
        roles=[Role.MINISTER_OFFICE],
    )

    result = await run(lifecycle.send_round_mail, mailing)

    assert counts(result) == MailingResult(sent=6, already_sent=0, states_without_delegates=[])
    for item in read_mailbox(settings.mail_dir):
        assert item.subject.startswith("Reminder: [ASEAN AI SAFE] Endorsement ad referendum by ADGMIN:")
        assert "ASEAN Digital Ministers' Meeting (ADGMIN)" in item.text
        assert item.aisafe["stage"] == "ministerial"


async def test_a_subject_that_just_fits_a_line_is_not_pushed_onto_a_continuation_line(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    # 74 characters: short enough for a line of its own, too long to share one with "Subject: ".
    subject = "Reminder: [ASEAN AI SAFE] Endorsement ad referendum by ADGSOM: T (round 1)"
    mailing = round_mailing(
        document,
        title="T",
        step="reminder-1",
        purpose=RoundPurpose.AD_REFERENDUM,
        stage_type=StageType.SENIOR_OFFICIALS,
        roles=[Role.SENIOR_OFFICIAL],
        states=[MemberState.MY],
    )

    await run(lifecycle.send_round_mail, mailing)

    [item] = read_mailbox(settings.mail_dir)
    assert item.subject == subject


async def test_a_funding_round_shows_each_state_its_own_expected_contribution(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    terms = FundingTerms(
        model=FundingModel.TIERED,
        currency="USD",
        budget_target=Decimal("2000000.00"),
        expected={
            MemberState.MY: Decimal("700000"),
            MemberState.PH: Decimal("1234567.5"),
            MemberState.TL: Decimal("65432.5"),
        },
    )
    mailing = round_mailing(document, purpose=RoundPurpose.FUNDING, stage_type=StageType.FUNDING, funding=terms)

    result = await run(lifecycle.send_round_mail, mailing)

    assert result.sent == 6
    expected = {"MY": "USD 700,000.00", "PH": "USD 1,234,567.50", "TL": "USD 65,432.50"}
    for item in read_mailbox(settings.mail_dir):
        state = item.aisafe["state"]
        name = MemberState(state).official_name
        assert item.subject == f"[ASEAN AI SAFE] Contribution of {name} to confirm: {TITLE} (round 1)"
        assert item.aisafe["stage"] == "funding" and item.aisafe["kind"] == "round"
        assert "confirm your state's contribution" in item.text
        assert f"Expected contribution of {name}: {expected[state]}" in item.text
        assert item.html is not None and expected[state] in item.html
        assert "USD 2,000,000.00" in item.text
        assert all(amount not in item.text for other, amount in expected.items() if other != state)
        assert "confirm the contribution, decline" in item.text.lower()


async def test_a_voluntary_funding_round_asks_the_state_to_enter_its_pledge(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    terms = FundingTerms(model=FundingModel.VOLUNTARY, currency="EUR", budget_target=Decimal("500000"))
    mailing = round_mailing(
        document, step="reminder-2", purpose=RoundPurpose.FUNDING, stage_type=StageType.FUNDING, funding=terms
    )

    await run(lifecycle.send_round_mail, mailing.model_copy(update={"states": [MemberState.PH]}))

    items = read_mailbox(settings.mail_dir)
    assert {address(item) for item in items} == {"liza@ph.example.org", "paolo@ph.example.org"}
    for item in items:
        assert item.subject.startswith("Reminder: [ASEAN AI SAFE] Contribution of Philippines to confirm")
        assert "Philippines enters the amount it pledges on the page" in item.text
        assert "Expected contribution" not in item.text
        assert "EUR 500,000.00" in item.text


async def mails_to_philippines(
    lifecycle: MailActivities, settings: Settings, mailing: RoundMailing
) -> list[tuple[str, str, str | None]]:
    """Send `mailing` to the Philippines' delegates only: each message's subject, text (spaces folded) and HTML."""
    await run(lifecycle.send_round_mail, mailing.model_copy(update={"states": [MemberState.PH]}))
    return [(m.subject, " ".join(m.text.split()), m.html) for m in read_mailbox(settings.mail_dir)]


def funding_step_mailing(
    document: DocumentRef, step: FundingStep, model: FundingModel, amount: str, allowed: list[Position]
) -> RoundMailing:
    terms = FundingTerms(
        model=model,
        currency="USD",
        budget_target=Decimal("500000"),
        expected={MemberState.PH: Decimal(amount)},
        step=step,
    )
    return round_mailing(
        document, purpose=RoundPurpose.FUNDING, stage_type=StageType.FUNDING, funding=terms, allowed=allowed
    )


async def test_a_funding_indication_asks_for_an_indication_subject_to_domestic_clearance(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    mailing = funding_step_mailing(
        document, FundingStep.INDICATION, FundingModel.EQUAL_SHARE, "100000", FUNDING_INDICATION_POSITIONS
    )
    mails = await mails_to_philippines(lifecycle, settings, mailing)

    assert mails
    for subject, text, html in mails:
        assert subject.startswith(
            "[ASEAN AI SAFE] Contribution of Philippines to indicate (subject to domestic clearance)"
        )
        assert "indicate your state's contribution (Philippines), subject to domestic clearance" in text
        assert "the minister's office of Philippines is then asked to confirm it" in text
        assert "Answers: indicate the contribution (subject to domestic clearance), decline." in text
        assert html is not None and "subject to domestic clearance" in html


async def test_a_funding_confirmation_shows_the_indicated_amount_to_the_ministers_office(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    mailing = funding_step_mailing(
        document, FundingStep.CONFIRMATION, FundingModel.VOLUNTARY, "42000", FUNDING_POSITIONS
    )
    mails = await mails_to_philippines(lifecycle, settings, mailing)

    assert mails
    for _, text, _ in mails:
        assert "Contribution indicated by Philippines: USD 42,000.00" in text
        assert "only a confirmed contribution counts" in text
        assert "enters the amount" not in text  # the office confirms the amount indicated


async def test_a_minus_x_round_mail_names_the_three_answers_plainly(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    mails = await mails_to_philippines(lifecycle, settings, round_mailing(document, allowed=MINUS_X_POSITIONS))

    assert mails
    for _, text, html in mails:
        assert "Answers: participate, opt out (not join, not block), object." in text
        assert "ASEAN-minus-X (ASEAN Charter, Article 21(2))" in text
        assert "Opt out: Philippines does not join, and does not block the others." in text
        assert html is not None and "blocks the arrangement for all" in html


def answer_notice(small_roster: RosterFile, answered_by: str, state: MemberState, roles: list[Role]) -> AnswerNotice:
    return AnswerNotice(
        proposal_id=PROPOSAL_ID,
        title=TITLE,
        round=2,
        state=state,
        delegate_id=ids(small_roster)[answered_by],
        decision_id="d-0123456789abcdef",
        position=Position.APPROVE_WITH_RESERVATION,
        roles=roles,
    )


async def test_an_answer_notice_reaches_the_states_other_delegates_and_a_receipt_the_one_who_answered(
    lifecycle: MailActivities, settings: Settings, small_roster: RosterFile
) -> None:
    notice = answer_notice(small_roster, "aisyah@my.example.org", MemberState.MY, list(REVIEW_ROLES))

    result = await run(lifecycle.send_answer_notice, notice)

    assert counts(result) == MailingResult(sent=2, already_sent=0, states_without_delegates=[])
    mails = by_address(read_mailbox(settings.mail_dir))
    assert set(mails) == {"daniel.lim@my.example.org", "aisyah@my.example.org"}
    item = mails["daniel.lim@my.example.org"]
    assert item.aisafe == {
        "proposal": PROPOSAL_ID,
        "step": "notice-d-0123456789abcdef",
        "round": "2",
        "state": "MY",
        "kind": "notice",
    }
    alternate = ids(small_roster)["daniel.lim@my.example.org"]
    assert item.message_id == message_id(f"{round_workflow_id(PROPOSAL_ID, 2)}:notice-d-0123456789abcdef:{alternate}")
    assert 'Aisyah Rahman stated the position "Approve with reservation" for Malaysia in round 2 of:' in item.text
    assert TITLE in item.text
    assert "The latest answer before the round closes stands" in item.text
    assert "your own link" in item.text
    assert "/act/" not in item.text
    assert item.html is not None and "Approve with reservation" in item.html

    receipt = mails["aisyah@my.example.org"]
    assert receipt.subject == f"[ASEAN AI SAFE] Your answer for Malaysia was recorded: {TITLE}"
    assert '"Approve with reservation"' in receipt.text and "d-0123456789abcdef" in receipt.text
    assert "If this was not you, open your link again before the deadline" in receipt.text
    assert receipt.html is not None and "If this was not you, open your link again before the deadline" in receipt.html
    assert "/act/" not in receipt.text

    again = await run(lifecycle.send_answer_notice, notice)
    assert counts(again) == MailingResult(sent=0, already_sent=2, states_without_delegates=[])
    assert len(read_mailbox(settings.mail_dir)) == 2


async def test_an_answer_notice_follows_the_fallback_to_review_delegates(
    lifecycle: MailActivities, settings: Settings, small_roster: RosterFile
) -> None:
    # Timor-Leste has no senior official, so its focal point answered the ADGSOM round; its alternate is told.
    fallback = answer_notice(small_roster, "ana@tl.example.org", MemberState.TL, [Role.SENIOR_OFFICIAL])
    # Malaysia's senior official is the only one written to for that round: only the receipt goes out.
    alone = answer_notice(small_roster, "hafiz@my.example.org", MemberState.MY, [Role.SENIOR_OFFICIAL])

    assert (await run(lifecycle.send_answer_notice, fallback)).sent == 2
    assert counts(await run(lifecycle.send_answer_notice, alone)) == MailingResult(sent=1, already_sent=0)

    items = read_mailbox(settings.mail_dir)
    assert sorted(address(item) for item in items) == [
        "ana@tl.example.org",
        "hafiz@my.example.org",
        "jose@tl.example.org",
    ]
    assert {address(item) for item in items if item.subject.startswith("[ASEAN AI SAFE] Your answer")} == {
        "ana@tl.example.org",
        "hafiz@my.example.org",
    }


def consultation(document: DocumentRef, **update: Any) -> ConsultationMailing:
    mailing = ConsultationMailing(
        proposal_id=PROPOSAL_ID,
        title=TITLE,
        stage_index=1,
        step="invitation",
        sectors=[Sector.CIVIL_SOCIETY, Sector.ACADEMIA],
        document=document,
        deadline=DEADLINE,
    )
    return mailing.model_copy(update=update)


async def test_a_consultation_invites_only_stakeholders_of_the_invited_sectors(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings, small_roster: RosterFile
) -> None:
    mailing = consultation(document)

    result = await run(lifecycle.send_consultation_mail, mailing)

    assert counts(result) == MailingResult(sent=2, already_sent=0, states_without_delegates=[])
    items = by_address(read_mailbox(settings.mail_dir))
    assert set(items) == {"pim@mekong-rai.example.org", "hendra@cta.example.org"}
    workflow_id = consultation_workflow_id(PROPOSAL_ID, 1)
    for to, item in items.items():
        assert item.aisafe == {
            "proposal": PROPOSAL_ID,
            "step": "invitation",
            "stage": "consultation",
            "kind": "consultation",
        }
        assert item.message_id == message_id(f"{workflow_id}:invitation:{ids(small_roster)[to]}")
        assert f"Public consultation on {TITLE}" in item.subject
        assert "advisory, never a vote" in item.text
        assert "/act/" not in item.text
        tokens = set(COMMENT_LINK.findall(item.text))
        assert len(tokens) == 1 and item.html is not None and tokens <= set(COMMENT_LINK.findall(item.html))
        claims = verify_comment(settings.signing_key, tokens.pop(), now=BEFORE_DEADLINE)
        assert claims.stakeholder_id == ids(small_roster)[to] and claims.stakeholder_id.startswith("SH-")
        assert claims.proposal_id == PROPOSAL_ID and claims.stage_index == 1
        assert claims.document_sha256 == document.sha256
        assert claims.expires_at == DEADLINE + timedelta(days=90)
        # The link outlives the announced deadline: the consultation may be extended.
        verify_comment(settings.signing_key, COMMENT_LINK.findall(item.text)[0], now=DEADLINE + timedelta(days=30))
    assert "Mekong Responsible AI Network" in items["pim@mekong-rai.example.org"].text
    assert "Centre for Trustworthy AI" in items["hendra@cta.example.org"].text
    assert "17 March 2030, 03:00 (Asia/Bangkok, UTC+07:00)" in items["pim@mekong-rai.example.org"].text
    assert "2030-03-16 20:00 UTC" in items["pim@mekong-rai.example.org"].text

    again = await run(lifecycle.send_consultation_mail, mailing)
    assert counts(again) == MailingResult(sent=0, already_sent=2, states_without_delegates=[])
    assert len(read_mailbox(settings.mail_dir)) == 2


async def test_an_extended_consultation_tells_the_new_deadline_with_a_fresh_link(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    await run(lifecycle.send_consultation_mail, consultation(document))
    later = DEADLINE + timedelta(days=14)
    extension = consultation(document, step="extended-1", deadline=later)

    result = await run(lifecycle.send_consultation_mail, extension)

    assert result.sent == 2
    extended = [item for item in read_mailbox(settings.mail_dir) if item.aisafe["step"] == "extended-1"]
    assert {address(item) for item in extended} == {"pim@mekong-rai.example.org", "hendra@cta.example.org"}
    for item in extended:
        assert "extended" in item.subject.lower()
        assert "has been extended" in item.text
        assert in_utc(later) in item.text
        claims = verify_comment(settings.signing_key, COMMENT_LINK.findall(item.text)[0], now=BEFORE_DEADLINE)
        assert claims.expires_at == later + timedelta(days=90)
    assert (await run(lifecycle.send_consultation_mail, extension)).already_sent == 2
    assert len(read_mailbox(settings.mail_dir)) == 4


def meeting(document: DocumentRef, **update: Any) -> MeetingMailing:
    mailing = MeetingMailing(
        proposal_id=PROPOSAL_ID,
        title=TITLE,
        stage_index=3,
        stage_type=StageType.SENIOR_OFFICIALS,
        step="invitation",
        date=MEETING_DATE,
        venue="Kuala Lumpur Convention Centre",
        chair=MemberState.MY,
        states=SMALL_STATES,
        roles=[Role.SENIOR_OFFICIAL],
        document=document,
    )
    return mailing.model_copy(update=update)


async def test_a_meeting_invitation_carries_the_details_and_a_calendar_file(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings, small_roster: RosterFile
) -> None:
    mailing = meeting(document)

    result = await run(lifecycle.send_meeting_mail, mailing)

    assert counts(result) == MailingResult(sent=4, already_sent=0, states_without_delegates=[])
    items = by_address(read_mailbox(settings.mail_dir))
    assert set(items) == SENIOR_OFFICIALS | TL_DELEGATES
    workflow_id = meeting_workflow_id(PROPOSAL_ID, 3)
    for to, item in items.items():
        assert item.aisafe == {
            "proposal": PROPOSAL_ID,
            "step": "invitation",
            "state": item.aisafe["state"],
            "stage": "senior_officials",
            "kind": "meeting",
        }
        assert item.message_id == message_id(f"{workflow_id}:invitation:{ids(small_roster)[to]}")
        assert "ADGSOM meeting" in item.subject and TITLE in item.subject
        for body in (item.text, item.html or ""):
            assert "Kuala Lumpur Convention Centre" in body
            assert "Malaysia" in body
            assert document.sha256 in body
            assert "2031-01-15 01:00 UTC" in body
    assert "Wednesday 15 January 2031, 10:00 (Asia/Dili, UTC+09:00)" in items["ana@tl.example.org"].text
    assert "Wednesday 15 January 2031, 09:00 (Asia/Manila, UTC+08:00)" in items["ramos@ph.example.org"].text

    messages = raw_messages(settings)
    assert len(messages) == 4
    for message in messages:
        assert message.get_content_type() == "multipart/mixed"
        [invite] = [part for part in message.iter_attachments() if part.get_content_type() == "text/calendar"]
        assert invite.get_filename() == "invite.ics"
        assert invite.get_param("method") == "REQUEST"
        calendar = Calendar.from_ical(invite.get_content())
        assert calendar["METHOD"] == "REQUEST" and calendar["VERSION"] == "2.0" and calendar["PRODID"]
        [event] = calendar.walk("VEVENT")
        assert str(event["UID"]) == f"{PROPOSAL_ID}-stage-3@aisafe.example.org"
        assert event.decoded("DTSTART") == datetime(2031, 1, 15, 1, 0, tzinfo=UTC)
        assert event.decoded("DTEND") == datetime(2031, 1, 15, 4, 0, tzinfo=UTC)
        assert "DTSTAMP" in event
        assert str(event["SUMMARY"]) == f"ADGSOM: {TITLE}"
        assert str(event["LOCATION"]) == "Kuala Lumpur Convention Centre"
        assert document.sha256 in str(event["DESCRIPTION"])
        assert str(event["ATTENDEE"]) == f"mailto:{parseaddr(str(message['To']))[1]}"

    again = await run(lifecycle.send_meeting_mail, mailing)
    assert counts(again) == MailingResult(sent=0, already_sent=4, states_without_delegates=[])
    assert len(read_mailbox(settings.mail_dir)) == 4


async def test_the_outcome_reaches_every_active_delegate_and_stakeholder(
    lifecycle: MailActivities,
    sqlite_engine: Engine,
    document: DocumentRef,
    settings: Settings,
    small_roster: RosterFile,
) -> None:
    with Session(sqlite_engine) as session:
        gone = session.exec(select(DelegateRecord).where(DelegateRecord.email == "paolo@ph.example.org")).one()
        gone.active = False
        session.add(gone)
        session.commit()
    mailing = OutcomeMailing(
        proposal_id=PROPOSAL_ID,
        title=TITLE,
        status=ProposalState.NOT_ADOPTED,
        reason="Viet Nam objected in round 3 of the member review",
        document=document.model_copy(update={"version": 3}),
    )

    result = await run(lifecycle.send_outcome_mail, mailing)

    nobody = in_name_order(set(MemberState) - set(SMALL_STATES))  # ASEAN's order, as members_on gives it
    assert counts(result) == MailingResult(sent=10, already_sent=0, states_without_delegates=nobody)
    items = by_address(read_mailbox(settings.mail_dir))
    assert set(items) == {d.email for d in small_roster.delegates} - {"paolo@ph.example.org"}
    for to, item in items.items():
        assert item.message_id == message_id(f"{PROPOSAL_ID}:outcome:{ids(small_roster)[to]}")
        assert item.subject == f"[ASEAN AI SAFE] Not adopted: {TITLE}"
        assert item.aisafe["kind"] == "outcome" and item.aisafe["step"] == "outcome"
        assert item.aisafe["proposal"] == PROPOSAL_ID
        assert "has not been adopted" in item.text
        assert "Viet Nam objected in round 3 of the member review" in item.text
        assert "Final document version 3" in item.text
        assert document.sha256 in item.text and item.html is not None and document.sha256 in item.html
    assert items["hendra@cta.example.org"].aisafe.get("state") is None
    assert items["ana@tl.example.org"].aisafe["state"] == "TL"

    again = await run(lifecycle.send_outcome_mail, mailing)
    assert (again.sent, again.already_sent) == (0, 10)
    assert len(read_mailbox(settings.mail_dir)) == 10


@pytest.mark.parametrize(
    ("status", "wording"),
    [
        (ProposalState.ADOPTED, "has been adopted"),
        (ProposalState.WITHDRAWN, "has been withdrawn"),
        (ProposalState.EXPIRED, "has expired"),
    ],
)
async def test_the_outcome_wording_follows_the_status(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings, status: ProposalState, wording: str
) -> None:
    mailing = OutcomeMailing(proposal_id=PROPOSAL_ID, title=TITLE, status=status, reason=None, document=document)

    await run(lifecycle.send_outcome_mail, mailing)

    items = read_mailbox(settings.mail_dir)
    assert len(items) == 11
    assert all(wording in item.text and "Reason:" not in item.text for item in items)


async def test_a_running_proposal_has_no_outcome_to_announce(lifecycle: MailActivities, document: DocumentRef) -> None:
    mailing = OutcomeMailing(
        proposal_id=PROPOSAL_ID, title=TITLE, status=ProposalState.RUNNING, reason=None, document=document
    )

    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(lifecycle.send_outcome_mail, mailing)

    assert raised.value.non_retryable


async def test_no_address_reaches_the_logs(
    lifecycle: MailActivities, document: DocumentRef, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="temporalio.activity")

    await run(lifecycle.send_round_mail, round_mailing(document, states=[*SMALL_STATES, MemberState.VN]))
    await run(lifecycle.send_consultation_mail, consultation(document))

    ours = [record.getMessage() for record in caplog.records if record.name == "temporalio.activity"]
    assert any("no delegates on the roster for VN" in line for line in ours)
    assert any("2 sent" in line for line in ours)
    assert not [line for line in ours if "@" in line]
