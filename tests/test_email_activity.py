"""Round mail against a real SMTP sink: every delegate gets their own link, in their own time zone, exactly once."""

from __future__ import annotations

import email
import mailbox
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.utils import parseaddr
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities.email import MailActivities, message_id
from devstack.services import SmtpSink, free_port
from models.ledger import document_hash
from models.messages import DocumentRef, MailingResult, RoundMailing
from models.roster import RosterFile, delegate_id, load_roster_file
from models.settings import Settings
from models.states import MemberState
from models.tables import DelegateRecord
from models.tokens import round_workflow_id, verify_action
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
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    smtp = SmtpSink(tmp_path / "mail", port=free_port())
    smtp.start()
    try:
        yield smtp
    finally:
        smtp.stop()


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
    assert import_roster(sqlite_engine, example_roster) == (22, 0, 0)
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

    assert result == MailingResult(sent=22, already_sent=0, states_without_delegates=[])
    items = read_mailbox(settings.mail_dir)
    assert len(items) == 22
    assert Counter(item.aisafe["state"] for item in items) == {state.value: 2 for state in MemberState}
    assert set(by_address(items)) == {d.email for d in example_roster.delegates}
    for item in items:
        assert item.aisafe["proposal"] == PROPOSAL_ID
        assert item.aisafe["step"] == "invitation"
        assert item.aisafe["round"] == "1"
        assert TITLE in item.subject and "round 1" in item.subject
        assert not item.subject.startswith("Reminder")
        assert "secretariat@aisafe.example.org" in item.sender


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

    assert again == MailingResult(sent=0, already_sent=22, states_without_delegates=[])
    assert sorted(item.message_id for item in read_mailbox(settings.mail_dir)) == first_ids


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

    assert result == MailingResult(sent=2, already_sent=0, states_without_delegates=[])
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

    assert result == MailingResult(sent=2, already_sent=0, states_without_delegates=[MemberState.TL])
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
