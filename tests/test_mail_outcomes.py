"""Each recipient's outcome is its own: refused, bounced, unbuildable or sent, against a real aiosmtpd relay."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import DEFERRAL_PATIENCE, EVERY_RECIPIENT_FAILED, MailActivities, flatten_for, nobody_reason
from activities.mime import wire_policy
from devstack.services import free_port
from models.messages import (
    DocumentRef,
    MailingResult,
    MailOutcome,
    NotInvitedState,
    RecipientsQuery,
    RoundMailing,
)
from models.roster import REVIEW_ROLES, Role, delegate_id
from models.settings import Settings
from models.states import MemberState
from models.tables import DelegateRecord, SentEmail
from tests.relay import Refusals, RefusingSink

MY, PH, VN, TL, SG = MemberState.MY, MemberState.PH, MemberState.VN, MemberState.TL, MemberState.SG
DOCUMENT = DocumentRef(sha256="c" * 64, version=1, filename="framework.md", size=100)
ROLES = [Role.FOCAL_POINT, Role.ALTERNATE]
# Malaysia's relay takes everything; the Philippines' refuses every address (550); Viet Nam's takes the message
# and then refuses it (554); Timor-Leste has nobody on the roster; Singapore has one address that is refused.
ROSTER = [
    (MY, "focal_point", "Aisyah Rahman", "aisyah@my.example.org"),
    (MY, "alternate", "Daniel Lim", "daniel@my.example.org"),
    (PH, "focal_point", "Liza Santos", "liza@ph.example.org"),
    (PH, "alternate", "Paolo Cruz", "paolo@ph.example.org"),
    (VN, "focal_point", "Nguyen Van An", "an@vn.example.org"),
    (SG, "focal_point", "Tan Wei", "tan@sg.example.org"),
    (SG, "alternate", "Lee Mei", "lee@gone.sg.example.org"),
]


_NO_DATABASE = create_engine("sqlite://")  # composing a message reads nothing from the database


@pytest.fixture
def refusals() -> Refusals:
    return Refusals(refuse={"@ph.example.org", "@gone.sg.example.org"}, bounce={"@vn.example.org"})


@pytest.fixture
def relay(tmp_path: Path, refusals: Refusals) -> Iterator[RefusingSink]:
    sink = RefusingSink(tmp_path / "mail", port=free_port(), refusals=refusals)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def mail(tmp_path: Path, relay: RefusingSink, sqlite_engine: Engine) -> MailActivities:
    with Session(sqlite_engine) as session:
        for state, role, name, address in ROSTER:
            session.add(
                DelegateRecord(
                    id=delegate_id(state, address), state=state.value, role=role, name=name, email=address,
                    timezone="Asia/Singapore",
                )
            )  # fmt: skip
        session.commit()
    settings = Settings(data_dir=tmp_path, dev=True, smtp_host=relay.host, smtp_port=relay.port, smtp_starttls=False)
    return MailActivities(settings, sqlite_engine)


def invitation(states: list[MemberState], **update: object) -> RoundMailing:
    mailing = RoundMailing(
        proposal_id="p-outcomes",
        title="ASEAN AI SAFE Operational Framework",
        round=1,
        step="invitation",
        states=states,
        document=DOCUMENT,
        deadline=datetime(2031, 3, 1, tzinfo=UTC),
        roles=ROLES,
    )
    return mailing.model_copy(update=update)


async def send(mail: MailActivities, mailing: RoundMailing) -> MailingResult:
    result = await ActivityEnvironment().run(mail.send_round_mail, mailing)
    assert isinstance(result, MailingResult)
    return result


def outbox(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(select(SentEmail.delegate_id)).all())


def of(state: MemberState, address: str) -> str:
    return delegate_id(state, address)


async def test_refused_and_bounced_recipients_fail_alone_and_are_reported(
    mail: MailActivities, refusals: Refusals, sqlite_engine: Engine
) -> None:
    result = await send(mail, invitation([MY, PH, VN, TL, SG]))

    outcomes = {o.delegate_id: o for o in result.recipients}
    for address in ("aisyah@my.example.org", "daniel@my.example.org"):
        assert outcomes[of(MY, address)].outcome is MailOutcome.SENT
    assert outcomes[of(SG, "tan@sg.example.org")].outcome is MailOutcome.SENT
    for state, address in ((PH, "liza@ph.example.org"), (PH, "paolo@ph.example.org"), (SG, "lee@gone.sg.example.org")):
        refused = outcomes[of(state, address)]
        assert (refused.state, refused.outcome, refused.code) == (state, MailOutcome.REFUSED, 550)
        # The relay's words are kept, its copy of the address is not (the ledger holds delegate ids only).
        assert refused.reply is not None and "Recipient address rejected" in refused.reply
        assert "@" not in refused.reply and address.split("@")[0] not in refused.reply
    bounced = outcomes[of(VN, "an@vn.example.org")]
    assert (bounced.outcome, bounced.code) == (MailOutcome.BOUNCED, 554)
    assert bounced.reply is not None and "content filter" in bounced.reply and "@" not in bounced.reply
    assert len(result.recipients) == 7 and result.sent == 3

    assert result.not_invited == [
        NotInvitedState(state=PH, reason=EVERY_RECIPIENT_FAILED),
        NotInvitedState(state=TL, reason=nobody_reason(ROLES)),
        NotInvitedState(state=VN, reason=EVERY_RECIPIENT_FAILED),
    ]
    assert result.states_without_delegates == [TL]
    # Only what the relay took is in the outbox: the refused and the bounced are tried again by a later mailing.
    assert outbox(sqlite_engine) == {
        of(MY, "aisyah@my.example.org"),
        of(MY, "daniel@my.example.org"),
        of(SG, "tan@sg.example.org"),
    }
    assert sorted(r for rcpts, _ in refusals.kept for r in rcpts) == sorted(
        ["aisyah@my.example.org", "daniel@my.example.org", "tan@sg.example.org"]
    )

    # The same mailing again (a retry): nothing is sent twice, the refused are refused again, nothing hangs.
    again = await send(mail, invitation([MY, PH, VN, TL, SG]))
    assert (again.sent, again.already_sent) == (0, 3)
    assert [(o.delegate_id, o.outcome) for o in again.recipients] == [
        (o.delegate_id, o.outcome) for o in result.recipients
    ]
    assert again.not_invited == result.not_invited
    assert len(refusals.kept) == 3

    # The relay is fixed: a new mailing step reaches the Philippines.
    refusals.refuse.clear()
    resent = await send(mail, invitation([PH], step="resend-1"))
    assert [o.outcome for o in resent.recipients] == [MailOutcome.SENT, MailOutcome.SENT] and resent.not_invited == []


async def test_an_address_with_control_characters_fails_alone_and_reaches_no_one(
    mail: MailActivities, refusals: Refusals, sqlite_engine: Engine
) -> None:
    hostile = [
        "evil@my.example.org\r\nRCPT TO:<spy@attacker.example>",
        "a@my.example.org\u2028b@attacker.example",
        "Someone <c@my.example.org>",
        "d@my.example.org, e@attacker.example",
    ]
    with Session(sqlite_engine) as session:
        for number, address in enumerate(hostile):
            session.add(
                DelegateRecord(
                    id=f"MY-hostile-{number}", state="MY", role="alternate", name=f"Hostile {number}", email=address,
                    timezone="Asia/Kuala_Lumpur",
                )
            )  # fmt: skip
        session.commit()

    result = await send(mail, invitation([MY]))

    outcomes = {o.delegate_id: o for o in result.recipients}
    for number in range(len(hostile)):
        refused = outcomes[f"MY-hostile-{number}"]
        assert (refused.outcome, refused.code) == (MailOutcome.REFUSED, None)
        assert refused.reply is not None and refused.reply.startswith("the address on the roster")
    assert outcomes[of(MY, "aisyah@my.example.org")].outcome is MailOutcome.SENT
    assert result.sent == 2 and result.not_invited == []
    assert sorted(refusals.asked) == ["aisyah@my.example.org", "daniel@my.example.org"]


async def test_the_round_learns_whom_it_will_write_to_before_it_writes(mail: MailActivities) -> None:
    found = await ActivityEnvironment().run(
        mail.find_round_recipients, RecipientsQuery(states=[MY, TL, PH], roles=list(REVIEW_ROLES))
    )
    assert {state: set(ids) for state, ids in found.delegates.items()} == {
        MY: {of(MY, "aisyah@my.example.org"), of(MY, "daniel@my.example.org")},
        PH: {of(PH, "liza@ph.example.org"), of(PH, "paolo@ph.example.org")},
    }
    assert found.nobody == [NotInvitedState(state=TL, reason="no delegate in role focal_point, alternate")]


async def test_a_mailing_for_the_invited_ids_writes_to_no_one_else(mail: MailActivities, refusals: Refusals) -> None:
    """A delegate added to the roster after the round looked up its recipients gets no link it could not use."""
    only = [of(MY, "aisyah@my.example.org")]
    result = await send(mail, invitation([MY], delegate_ids=only))
    assert [o.delegate_id for o in result.recipients] == only
    assert refusals.asked == ["aisyah@my.example.org"]


# --- header text: a name or a title never adds a recipient, never stops the mailing --------------------------

HOSTILE_PIECES = st.sampled_from(
    [
        "\r\n",
        "\n",
        "\r",
        "\u2028",
        "\u2029",
        "\x85",
        "\x00",
        "\t",
        ",",
        "<",
        ">",
        '"',
        "'",
        "\\",
        ";",
        ":",
        "@",
        "Bcc: spy@attacker.example",
        "\r\nBcc: spy@attacker.example",
        "<spy@attacker.example>",
        "spy@attacker.example, ",
        "=?utf-8?q?spy=40attacker.example?=",
        "Nguyễn",
        "ສົມ",
    ]
)
HEADER_TEXT = st.lists(st.one_of(HOSTILE_PIECES, st.text(max_size=8)), max_size=8).map("".join)
_steps = itertools.count()


def test_names_and_titles_never_add_a_recipient_or_break_the_mailing(
    mail: MailActivities, refusals: Refusals, sqlite_engine: Engine
) -> None:
    refusals.refuse.clear()
    refusals.bounce.clear()
    victims = {of(MY, address): address for address in ("aisyah@my.example.org", "daniel@my.example.org")}

    @hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=HEADER_TEXT, other=HEADER_TEXT, title=HEADER_TEXT)
    def one_mailing(name: str, other: str, title: str) -> None:
        with Session(sqlite_engine) as session:
            for record, new_name in zip(
                session.exec(select(DelegateRecord).where(DelegateRecord.state == "MY").order_by(DelegateRecord.id)),
                (name, other),
                strict=True,
            ):
                record.name = new_name
                session.add(record)
            session.commit()
        refusals.kept.clear()
        step = f"invitation-{next(_steps)}"
        result = asyncio.run(send(mail, invitation([MY], step=step, title=title or "T")))

        assert sorted((o.delegate_id, o.outcome) for o in result.recipients) == [
            (d, MailOutcome.SENT) for d in sorted(victims)
        ]
        assert sorted(rcpts[0] for rcpts, _ in refusals.kept) == sorted(victims.values())
        for rcpts, content in refusals.kept:
            assert len(rcpts) == 1
            assert_addressed_to(content, rcpts[0])

    one_mailing()


def assert_addressed_to(content: bytes, address: str) -> None:
    """`content`, read back as a mail client reads it, is addressed to `address` alone, its subject on one line."""
    message = email.message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    [to] = message.get_all("To", [])
    assert [a for _, a in getaddresses([str(to)])] == [address], str(to)
    assert [a.addr_spec for a in to.addresses] == [address]
    assert message.get_all("Cc") is None and message.get_all("Bcc") is None
    assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])


@hypothesis_settings(max_examples=300, deadline=None)
# Under SMTPUTF8 the standard library drops the quotes around this name, and a reader saw two recipients.
@example(name="Nguyễn, Văn A", title="t", utf8=True, eight_bit=True)
@example(name="\xa0,", title="\u2028Title\r\nBcc: spy@attacker.example", utf8=False, eight_bit=False)
@given(name=HEADER_TEXT, title=HEADER_TEXT, utf8=st.booleans(), eight_bit=st.booleans())
def test_every_wire_policy_addresses_a_message_to_its_recipient_alone(
    name: str, title: str, utf8: bool, eight_bit: bool
) -> None:
    """The same property without a relay, under each policy a relay can call for (SMTPUTF8 among them)."""
    composer = MailActivities(Settings(dev=True), engine=_NO_DATABASE)
    delegate = DelegateRecord(
        id="MY-0123456789abcdef", state="MY", role="focal_point", name=name, email="aisyah@my.example.org",
        timezone="Asia/Kuala_Lumpur",
    )  # fmt: skip
    message = composer._round_message(invitation([MY], title=title), delegate, "key")  # noqa: SLF001
    flat = flatten_for(message, name, delegate.email, wire_policy(utf8=utf8, eight_bit=eight_bit))
    assert_addressed_to(flat, delegate.email)


async def test_a_relay_that_keeps_deferring_an_address_holds_the_mailing_back_for_a_while_only(
    mail: MailActivities, refusals: Refusals, sqlite_engine: Engine
) -> None:
    """Greylisting (4xx) retries the activity, the others' copies going out at once; once DEFERRAL_PATIENCE has
    passed since the mailing was first scheduled, the address is recorded as refused with the relay's code."""
    refusals.refuse.clear()
    refusals.defer.add("daniel@my.example.org")
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, scheduled_time=datetime.now(UTC) - timedelta(minutes=1))

    with pytest.raises(ApplicationError) as deferred:
        await environment.run(mail.send_round_mail, invitation([MY, SG]))
    assert deferred.value.type == "RecipientDeferred" and not deferred.value.non_retryable
    assert (
        of(MY, "daniel@my.example.org") in str(deferred.value) and "@" not in str(deferred.value).split("delegate")[1]
    )
    others = {of(state, address) for state, _, _, address in ROSTER if state in (MY, SG)} - {
        of(MY, "daniel@my.example.org")
    }
    assert outbox(sqlite_engine) == others

    environment.info = dataclasses.replace(environment.info, scheduled_time=datetime.now(UTC) - DEFERRAL_PATIENCE)
    result = await environment.run(mail.send_round_mail, invitation([MY, SG]))
    outcomes = {o.delegate_id: o for o in result.recipients}
    given_up = outcomes[of(MY, "daniel@my.example.org")]
    assert (given_up.outcome, given_up.code) == (MailOutcome.REFUSED, 451)
    assert (result.sent, result.already_sent) == (0, len(others)) and result.not_invited == []
