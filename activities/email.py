"""Email activities for the whole governance lifecycle.

Every fan-out uses one SMTP connection, is idempotent per (workflow or step key, recipient) through the
`SentEmail` outbox with a deterministic Message-ID, and renders a text and an HTML part from the templates
beside this file. Logs name delegates by id, never by address.
"""

from __future__ import annotations

import asyncio
import email.errors
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import EmailPolicy, compat32, default
from email.utils import formatdate, getaddresses, parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.calendar import meeting_invite
from activities.mime import MESSAGE_POLICY, set_boundary, wire_policy
from activities.smtp import send_recorded
from models.db import write_session
from models.labels import SECTOR_LABELS, STAGE_BODY_NAMES, SUMMIT_REPORTED, money, status_text
from models.messages import (
    ROUND_ANSWERS,
    AnswerNotice,
    ConsultationMailing,
    CoordinatorAlert,
    FundingStep,
    FundingTerms,
    MailingResult,
    MailOutcome,
    MeetingMailing,
    NotInvitedState,
    OutcomeMailing,
    ProposalState,
    RecipientOutcome,
    RecipientsQuery,
    RoundMailing,
    RoundPurpose,
    RoundRecipients,
    SummitReportMailing,
)
from models.positions import AD_REFERENDUM_POSITIONS, Position
from models.process import FundingModel, StageType
from models.roster import REVIEW_ROLES, Role, Sector
from models.settings import Settings
from models.states import MemberState, in_name_order, members_on
from models.tables import DelegateRecord, SentEmail
from models.timefmt import both, in_utc
from models.tokens import (
    ActionClaims,
    CommentClaims,
    consultation_workflow_id,
    meeting_sitting_workflow_id,
    round_workflow_id,
    sign_action,
    sign_comment,
)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    keep_trailing_newline=True,
    undefined=StrictUndefined,
    auto_reload=False,  # the templates ship with the code: no stat() of both files for every message
)


# Often enough for the 10 s heartbeat timeout; each heartbeat is encoded (and encrypted) for the server.
HEARTBEAT_EVERY = timedelta(seconds=1)
# A stakeholder's comment link outlives the announced deadline: the consultation may be extended, and the
# consultation workflow, not the link, decides when comments stop.
COMMENT_LINK_GRACE = timedelta(days=90)
# The default signature (Settings.mail_signature): the engine writes for the lead proponent; ASEAN AI SAFE has no
# secretariat of its own, and the ASEAN Secretariat is copied (`_copy_to_secretariat`).
SIGNATURE = Settings.model_fields["mail_signature"].default


class MailKind(StrEnum):
    """The X-Aisafe-Kind header: which part of the lifecycle a message belongs to."""

    ROUND = "round"
    NOTICE = "notice"
    CONSULTATION = "consultation"
    MEETING = "meeting"
    OUTCOME = "outcome"
    ALERT = "alert"
    # The ASEAN Secretariat's copy of an invitation or outcome: no link in it answers or comments for anyone.
    COPY = "copy"
    SUMMIT_REPORT = "summit_report"


BODY_ABBREVIATIONS: dict[StageType, str] = {
    StageType.MEMBER_REVIEW: "WG-AI",
    StageType.SENIOR_OFFICIALS: "ADGSOM",
    StageType.MINISTERIAL: "ADGMIN",
}
ROUND_NAMES: dict[RoundPurpose, str] = {
    RoundPurpose.REVIEW: "Review round",
    RoundPurpose.AD_REFERENDUM: "Ad referendum round",
    RoundPurpose.FUNDING: "Funding round",
}
FUNDING_MODEL_NAMES: dict[FundingModel, str] = {
    FundingModel.EQUAL_SHARE: "equal shares",
    FundingModel.TIERED: "tiered shares",
    FundingModel.VOLUNTARY: "voluntary pledges",
}
OUTCOME_NAMES: dict[ProposalState, str] = {
    ProposalState.ADOPTED: "Adopted",
    ProposalState.NOT_ADOPTED: "Not adopted",
    ProposalState.WITHDRAWN: "Withdrawn",
    ProposalState.EXPIRED: "Expired",
    # Each body's own word (issue 18): the subject and the notice name the body, see `outcome_name`.
    ProposalState.AGREED: "Agreed",
    ProposalState.ENDORSED: "Endorsed",
    ProposalState.APPROVED: "Approved",
    ProposalState.NOTED: "Noted",
    ProposalState.NOT_AGREED: "Not agreed",
    ProposalState.NOT_ENDORSED: "Not endorsed",
    ProposalState.NOT_FUNDED: "Not funded",
}


def outcome_name(status: ProposalState, decided_by: StageType | None, summit_reported: bool = False) -> str:
    """The outcome as a subject line says it: "Endorsed by the ADGMIN", "Not agreed by the WG-AI"."""
    text = status_text(status, decided_by, summit_reported)
    return text[:1].upper() + text[1:]


Recipient = tuple[DelegateRecord, str]  # a delegate and the idempotency key of their copy
Recipients = Callable[[Session], tuple[list[DelegateRecord], list[MemberState]]]

# A relay that keeps deferring one address (4xx) is retried for this long, then recorded as refusing it: one
# greylisting or full mailbox must not hold the whole round's invitation back for ever.
DEFERRAL_PATIENCE = timedelta(minutes=30)
# Characters that end a line somewhere (CR, LF, NEL, U+2028, U+2029...) or are controls: never in a header.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ADDRESS = re.compile(r"[^\s<>\"']+@[^\s<>\"']+")
_REPLY_LIMIT = 300
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 .'-]*")
DATE_PASSED_STEP = "date-passed"  # a meeting's step that writes to the coordinator, not to the states
COORDINATOR_ID = "coordinator"  # the outbox's delegate id for mail to the coordinator (the sender address)


def message_id(idempotency_key: str) -> str:
    """The same email always carries the same Message-ID, so a receiving system can spot a duplicate."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]}@aisafe.example.org>"


def state_delegates(
    session: Session, states: Sequence[MemberState], roles: Sequence[Role]
) -> tuple[list[DelegateRecord], list[MemberState]]:
    """The active delegates of `states` in `roles`, and the states that have nobody to write to.

    A state with nobody in `roles` (say, no senior official on the roster) falls back to its focal point and
    alternate, so that it is still asked."""
    wanted = {r.value for r in roles}
    review = {r.value for r in REVIEW_ROLES}
    candidates = session.exec(
        select(DelegateRecord)
        .where(DelegateRecord.state.in_([s.value for s in states]))  # type: ignore[union-attr]
        .where(DelegateRecord.role.in_(sorted(wanted | review)))  # type: ignore[attr-defined]
        .where(DelegateRecord.active)
        .order_by(DelegateRecord.state, DelegateRecord.role, DelegateRecord.id)
    ).all()
    chosen: list[DelegateRecord] = []
    missing: list[MemberState] = []
    for state in dict.fromkeys(states):
        of_state = [d for d in candidates if d.state == state.value]
        picked = [d for d in of_state if d.role in wanted] or [d for d in of_state if d.role in review]
        if picked:
            chosen.extend(picked)
        else:
            missing.append(state)
    chosen.sort(key=lambda d: (d.state or "", d.role, d.id))
    return chosen, in_name_order(missing)


def nobody_reason(roles: Sequence[Role]) -> str:
    """Why a state has nobody to write to, as the ledger's `not_invited` entry says it."""
    named = ", ".join(r.value for r in roles)
    if {r.value for r in roles} <= {r.value for r in REVIEW_ROLES}:
        return f"no delegate in role {named}"
    return f"no delegate in role {named}, nor a focal point or alternate"


EVERY_RECIPIENT_FAILED = "every recipient was refused or bounced"


def not_invited(
    states: Sequence[MemberState],
    missing: Sequence[MemberState],
    outcomes: Sequence[RecipientOutcome],
    roles: Sequence[Role],
) -> list[NotInvitedState]:
    """The states of a mailing that nobody was written to: nobody on the roster, or every message failed."""
    reached = {o.state for o in outcomes if o.outcome is MailOutcome.SENT}
    found = []
    for state in in_name_order(dict.fromkeys(states)):
        if state in missing:
            found.append(NotInvitedState(state=state, reason=nobody_reason(roles)))
        elif state not in reached:
            found.append(NotInvitedState(state=state, reason=EVERY_RECIPIENT_FAILED))
    return found


def one_line(text: str) -> str:
    """Header text on one line: a control character or line separator becomes a space (a name, a title)."""
    return _BREAKS.sub(" ", text)


def _round_headers(mailing: RoundMailing, state: MemberState) -> dict[str, str | None]:
    """The X-Aisafe-* headers of a round's email to one state's delegate (invitation, reminder, procedure)."""
    return {
        "Proposal": mailing.proposal_id,
        "Step": mailing.step,
        "Round": str(mailing.round),
        "State": state.value,
        "Stage": mailing.stage_type.value,
        "Kind": MailKind.ROUND.value,
    }


def recipient(name: str, address: str) -> Address:
    """The To header's value for a delegate.

    An `Address` keeps its name quoted when the message is flattened under the SMTPUTF8 policy; a `formataddr`
    string does not once the name is non-ASCII (the parser reads it as an encoded word and refolds it bare), so
    `ñ "q"` lost its quotes and `x\\y é` read back as the address. `flatten_for` still checks what goes out."""
    return Address(display_name=one_line(name), addr_spec=address)


def address_problem(address: str) -> str | None:
    """Why an address from the roster cannot be written to, or None; an address is never repaired."""
    if _BREAKS.search(address):
        return "the address on the roster contains control characters"
    name, parsed = parseaddr(address)
    if name or parsed != address or "@" not in parsed or " " in parsed or "," in parsed:
        return "the address on the roster is not a single plain address"
    return None


def addressed_only_to(flat: bytes, address: str) -> bool:
    """Whether a flattened message, read back as mail clients read it (the old and the new parser of the standard
    library), is addressed to `address` alone."""
    head = flat.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    wanted = [address.lower()]
    try:
        for read in (compat32, default):
            headers = BytesHeaderParser(policy=read).parsebytes(head)
            if any(headers.get_all(name) for name in ("Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")):
                return False
            to = headers.get_all("To") or []
            if len(to) != 1 or [a.lower() for _, a in getaddresses([str(to[0])])] != wanted:
                return False
            if read is default and [a.addr_spec.lower() for a in to[0].addresses] != wanted:
                return False
    except (AttributeError, ValueError, IndexError, email.errors.MessageError):
        return False  # a header the parser itself trips over is no address a reader can trust
    return True


def flatten_for(message: EmailMessage, name: str, address: str, wire: EmailPolicy) -> bytes:
    """The message as sent, checked to be addressed to `address` alone.

    The standard library can refold a quoted name so that it reads as a list (a non-ASCII name with a comma loses
    its quotes under the SMTPUTF8 policy): such a message goes out with the bare address instead of the name.
    A name of plain letters needs no check (reading the headers back costs about as much as building them)."""
    flat = message.as_bytes(policy=wire)
    if _PLAIN_NAME.fullmatch(name) or addressed_only_to(flat, address):
        return flat
    del message["To"]
    message["To"] = address
    flat = message.as_bytes(policy=wire)
    if not addressed_only_to(flat, address):
        raise ValueError("the message cannot be addressed to its recipient alone")
    return flat


def scrubbed_reply(reply: str, address: str) -> str:
    """The relay's reply text for the record: one line, short, with no address in it (delegate ids only)."""
    text = one_line(reply).replace(address, "<address>")
    return _ADDRESS.sub("<address>", text)[:_REPLY_LIMIT]


class MailActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self._engine = engine
        # One statement, built once: a message is waiting mid-DATA on this commit (an ORM get, add and flush
        # took twice as long, and building the statement for each message a third of what is left).
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._outbox_insert = insert(SentEmail).on_conflict_do_nothing()

    # --- activities -----------------------------------------------------------------------------------------

    @activity.defn(name="find_round_recipients")
    async def find_round_recipients(self, query: RecipientsQuery) -> RoundRecipients:
        """The delegate ids a round will invite per state, before it writes to them: the round accepts only these."""

        def look_up() -> RoundRecipients:
            with Session(self._engine) as session:
                delegates, missing = state_delegates(session, query.states, query.roles)
            found: dict[MemberState, list[str]] = {}
            for delegate in delegates:
                found.setdefault(MemberState(delegate.state), []).append(delegate.id)
            return RoundRecipients(
                delegates=found, nobody=[NotInvitedState(state=s, reason=nobody_reason(query.roles)) for s in missing]
            )

        return await asyncio.to_thread(look_up)

    @activity.defn(name="send_round_mail")
    async def send_round_mail(self, mailing: RoundMailing) -> MailingResult:
        """Email each delegate of `mailing.states` their own signed action link for one step of a round."""
        workflow_id = round_workflow_id(mailing.proposal_id, mailing.round)
        only = None if mailing.delegate_ids is None else set(mailing.delegate_ids)

        def recipients(session: Session) -> tuple[list[DelegateRecord], list[MemberState]]:
            chosen, missing = state_delegates(session, mailing.states, mailing.roles)
            if only is None:
                return chosen, missing
            # The round accepts answers from the delegates it looked up; a delegate added since is not written to.
            chosen = [d for d in chosen if d.id in only]
            covered = {d.state for d in chosen}
            return chosen, in_name_order({*missing, *(s for s in mailing.states if s.value not in covered)})

        result = await self._fan_out(
            proposal_id=mailing.proposal_id,
            step=mailing.step,
            kind=MailKind.ROUND,
            recipients=recipients,
            key=lambda d: f"{workflow_id}:{mailing.step}:{d.id}",
            compose=lambda d, key: self._round_message(mailing, d, key),
        )
        result.not_invited = not_invited(
            mailing.states, result.states_without_delegates, result.recipients, mailing.roles
        )
        if not mailing.step.startswith("reminder"):
            await self._copy_to_secretariat(
                proposal_id=mailing.proposal_id,
                key_base=f"{workflow_id}:{mailing.step}",
                step=mailing.step,
                subject=f"{ROUND_NAMES[mailing.purpose]} {mailing.round}: {mailing.title}",
                intro=(
                    f"The delegates of the member states below were invited to answer in "
                    f"{ROUND_NAMES[mailing.purpose].lower()} {mailing.round} "
                    f"({STAGE_BODY_NAMES.get(mailing.stage_type, STAGE_BODY_NAMES[StageType.MEMBER_REVIEW])})."
                ),
                facts=[
                    ("Proposal", f"{mailing.title} ({mailing.proposal_id})"),
                    ("Document", f"version {mailing.document.version}, SHA-256 {mailing.document.sha256}"),
                    ("Deadline", in_utc(mailing.deadline)),
                    (
                        "States written to",
                        _state_names(o.state for o in result.recipients if o.outcome is MailOutcome.SENT),
                    ),
                    ("Not invited", _state_names(item.state for item in result.not_invited)),
                ],
                progress_from=result.sent,
                headers={"Proposal": mailing.proposal_id, "Step": mailing.step, "Round": str(mailing.round)},
            )
        return result

    @activity.defn(name="send_coordinator_alert")
    async def send_coordinator_alert(self, alert: CoordinatorAlert) -> MailingResult:
        """Tell the coordinator (the secretariat's sender address) at once which states a round could not invite."""
        name, address = parseaddr(self._settings.mail_from)
        coordinator = DelegateRecord(
            id=COORDINATOR_ID, state=None, role="coordinator", name=name or "Coordinator", email=address, timezone="UTC"
        )
        step = f"not-invited:{alert.step}" if not alert.overdue else f"overdue:{alert.step}"
        return await self._fan_out(
            proposal_id=alert.proposal_id,
            step=step,
            kind=MailKind.ALERT,
            recipients=lambda _session: ([coordinator], []),
            key=lambda d: f"{alert.workflow_id}:{step}:{d.id}",
            compose=lambda d, key: self._alert_message(alert, d, key),
        )

    @activity.defn(name="send_answer_notice")
    async def send_answer_notice(self, notice: AnswerNotice) -> MailingResult:
        """Tell a state's other delegates that one of them has answered for it, and the one who answered that the
        answer was recorded (a receipt, once per decision: a scanner that pressed a button is caught this way)."""
        workflow_id = round_workflow_id(notice.proposal_id, notice.round)
        step = f"notice-{notice.decision_id}"
        answered_by: str | None = None

        def recipients(session: Session) -> tuple[list[DelegateRecord], list[MemberState]]:
            nonlocal answered_by
            group, missing = state_delegates(session, [notice.state], notice.roles)
            answering = next((d for d in group if d.id == notice.delegate_id), None)
            answering = answering or session.get(DelegateRecord, notice.delegate_id)
            answered_by = answering.name if answering is not None else None
            others = [d for d in group if d.id != notice.delegate_id]
            receipt = [answering] if answering is not None and answering.active else []
            return receipt + others, missing

        return await self._fan_out(
            proposal_id=notice.proposal_id,
            step=step,
            kind=MailKind.NOTICE,
            recipients=recipients,
            key=lambda d: f"{workflow_id}:{step}:{d.id}",
            compose=lambda d, key: self._notice_message(notice, step, answered_by, d, key),
        )

    @activity.defn(name="send_consultation_mail")
    async def send_consultation_mail(self, mailing: ConsultationMailing) -> MailingResult:
        """Email each stakeholder of the invited sectors their own signed comment link."""
        workflow_id = consultation_workflow_id(mailing.proposal_id, mailing.stage_index)
        result = await self._fan_out(
            proposal_id=mailing.proposal_id,
            step=mailing.step,
            kind=MailKind.CONSULTATION,
            recipients=lambda session: (self._stakeholders(session, mailing.sectors), []),
            key=lambda d: f"{workflow_id}:{mailing.step}:{d.id}",
            compose=lambda d, key: self._consultation_message(mailing, d, key),
        )
        if not mailing.step.startswith("reminder"):
            await self._copy_to_secretariat(
                proposal_id=mailing.proposal_id,
                key_base=f"{workflow_id}:{mailing.step}",
                step=mailing.step,
                subject=f"Public consultation on {mailing.title}",
                intro="The stakeholders of the sectors below were invited to comment on the text.",
                facts=[
                    ("Proposal", f"{mailing.title} ({mailing.proposal_id})"),
                    ("Document", f"version {mailing.document.version}, SHA-256 {mailing.document.sha256}"),
                    ("Comments by", in_utc(mailing.deadline)),
                    ("Sectors", ", ".join(SECTOR_LABELS[s] for s in mailing.sectors)),
                ],
                progress_from=result.sent,
                headers={"Proposal": mailing.proposal_id, "Step": mailing.step},
            )
        return result

    @activity.defn(name="send_meeting_mail")
    async def send_meeting_mail(self, mailing: MeetingMailing) -> MailingResult:
        """Invite the delegates of `mailing.states` to an ADGSOM or ADGMIN meeting, with a calendar file.

        Step `reschedule-N` sends the updated entry (same UID, SEQUENCE N), `cancel-N` a METHOD:CANCEL, and
        `date-passed` tells the coordinator that the stage opened after the meeting's date."""
        workflow_id = meeting_sitting_workflow_id(mailing.proposal_id, mailing.stage_index, mailing.sitting)
        if mailing.step == DATE_PASSED_STEP:
            name, address = parseaddr(self._settings.mail_from)
            coordinator = DelegateRecord(
                id=COORDINATOR_ID,
                state=None,
                role="coordinator",
                name=name or "Coordinator",
                email=address,
                timezone="UTC",
            )
            return await self._fan_out(
                proposal_id=mailing.proposal_id,
                step=mailing.step,
                kind=MailKind.ALERT,
                recipients=lambda _session: ([coordinator], []),
                key=lambda d: f"{workflow_id}:{mailing.step}:{d.id}",
                compose=lambda d, key: self._date_passed_message(mailing, d, key),
            )
        result = await self._fan_out(
            proposal_id=mailing.proposal_id,
            step=mailing.step,
            kind=MailKind.MEETING,
            recipients=lambda session: state_delegates(session, mailing.states, mailing.roles),
            key=lambda d: f"{workflow_id}:{mailing.step}:{d.id}",
            compose=lambda d, key: self._meeting_message(mailing, d, key),
        )
        if not mailing.step.startswith("reminder"):
            abbreviation = BODY_ABBREVIATIONS.get(mailing.stage_type, "WG-AI")
            await self._copy_to_secretariat(
                proposal_id=mailing.proposal_id,
                key_base=f"{workflow_id}:{mailing.step}",
                step=mailing.step,
                subject=f"{abbreviation} meeting on {mailing.date:%-d %B %Y}: {mailing.title}",
                intro=f"The delegates of the member states below were invited to the {abbreviation} meeting.",
                facts=[
                    ("Proposal", f"{mailing.title} ({mailing.proposal_id})"),
                    ("Date", in_utc(mailing.date)),
                    ("Venue", mailing.venue or "to be announced"),
                    ("Chair", mailing.chair.official_name),
                    ("Document", f"version {mailing.document.version}, SHA-256 {mailing.document.sha256}"),
                    ("States invited", _state_names(mailing.states)),
                ],
                progress_from=result.sent,
                headers={"Proposal": mailing.proposal_id, "Step": mailing.step},
            )
        return result

    @activity.defn(name="send_outcome_mail")
    async def send_outcome_mail(self, mailing: OutcomeMailing) -> MailingResult:
        """Tell every active delegate and stakeholder how the proposal ended."""
        if mailing.status not in OUTCOME_NAMES:
            raise ApplicationError(
                f"proposal {mailing.proposal_id} is still {mailing.status.value}; there is no outcome to announce",
                type="ProposalStillRunning",
                non_retryable=True,
            )
        result = await self._fan_out(
            proposal_id=mailing.proposal_id,
            step="outcome",
            kind=MailKind.OUTCOME,
            recipients=self._everyone,
            key=lambda d: f"{mailing.proposal_id}:outcome:{d.id}",
            compose=lambda d, key: self._outcome_message(mailing, d, key),
        )
        await self._copy_to_secretariat(
            proposal_id=mailing.proposal_id,
            key_base=f"{mailing.proposal_id}:outcome",
            step="outcome",
            subject=f"{OUTCOME_NAMES[mailing.status]}: {mailing.title}",
            intro="The delegates and stakeholders were told how the proposal below ended.",
            facts=[
                ("Proposal", f"{mailing.title} ({mailing.proposal_id})"),
                ("Outcome", OUTCOME_NAMES[mailing.status] + (f": {mailing.reason}" if mailing.reason else "")),
                ("Final document", f"version {mailing.document.version}, SHA-256 {mailing.document.sha256}"),
            ],
            progress_from=result.sent,
            headers={"Proposal": mailing.proposal_id, "Step": "outcome", "Outcome": mailing.status.value},
        )
        return result

    @activity.defn(name="send_summit_report")
    async def send_summit_report(self, mailing: SummitReportMailing) -> MailingResult:
        """Tell the contact for the Leaders that the proposal is reported to the ASEAN Summit."""
        return await self._fan_out(
            proposal_id=mailing.proposal_id,
            step=f"stage-{mailing.stage_index}:summit",
            kind=MailKind.SUMMIT_REPORT,
            recipients=self._leaders_contacts,
            key=lambda d: f"{mailing.proposal_id}:stage-{mailing.stage_index}:summit:{d.id}",
            compose=lambda d, key: self._summit_message(mailing, d, key),
        )

    # --- recipients and the outbox --------------------------------------------------------------------------

    @staticmethod
    def _stakeholders(session: Session, sectors: Sequence[Sector]) -> list[DelegateRecord]:
        return list(
            session.exec(
                select(DelegateRecord)
                .where(DelegateRecord.role == Role.STAKEHOLDER.value)
                .where(DelegateRecord.sector.in_([s.value for s in sectors]))  # type: ignore[union-attr]
                .where(DelegateRecord.active)
                .order_by(DelegateRecord.sector, DelegateRecord.id)
            ).all()
        )

    @staticmethod
    def _secretariat(session: Session) -> list[DelegateRecord]:
        """The ASEAN Secretariat's addresses on the roster: they receive copies, never an answering link."""
        return list(
            session.exec(
                select(DelegateRecord)
                .where(DelegateRecord.role == Role.ASEAN_SECRETARIAT.value)
                .where(DelegateRecord.active)
                .order_by(DelegateRecord.id)
            ).all()
        )

    async def _copy_to_secretariat(
        self,
        *,
        proposal_id: str,
        key_base: str,
        step: str,
        subject: str,
        intro: str,
        facts: list[tuple[str, str]],
        headers: dict[str, str | None],
        progress_from: int,
    ) -> MailingResult | None:
        """Copy an invitation or outcome to the ASEAN Secretariat: what was sent, to whom, with no link that answers
        or comments for anyone (a copy must never let the Secretariat answer for a state).

        `progress_from` is what the mailing's heartbeats reached: the copies' heartbeats go on from there."""
        if not self._settings.mail_copies:
            return None

        def anyone() -> bool:
            with Session(self._engine) as session:
                return bool(self._secretariat(session))

        if not await asyncio.to_thread(anyone):
            return None  # no Secretariat on the roster: no second pass over the relay
        return await self._fan_out(
            progress_from=progress_from,
            proposal_id=proposal_id,
            step=f"copy:{step}",
            kind=MailKind.COPY,
            recipients=lambda session: (self._secretariat(session), []),
            key=lambda d: f"{key_base}:copy:{d.id}",
            compose=lambda d, key: self._message(
                d,
                key,
                subject=f"[ASEAN AI SAFE] Copy: {subject}",
                template="secretariat_copy",
                context={"intro": intro, "facts": facts, "body_name": "Copy for the ASEAN Secretariat"},
                headers={**headers, "Kind": MailKind.COPY.value},
            ),
        )

    @staticmethod
    def _leaders_contacts(session: Session) -> tuple[list[DelegateRecord], list[MemberState]]:
        contacts = session.exec(
            select(DelegateRecord)
            .where(DelegateRecord.role == Role.LEADERS_CONTACT.value)
            .where(DelegateRecord.active)
            .order_by(DelegateRecord.id)
        ).all()
        return list(contacts), []

    @staticmethod
    def _everyone(session: Session) -> tuple[list[DelegateRecord], list[MemberState]]:
        delegates = list(
            session.exec(
                select(DelegateRecord)
                .where(DelegateRecord.active)
                # The Secretariat gets its copy of the outcome (`_copy_to_secretariat`), not a delegate's notice.
                .where(DelegateRecord.role != Role.ASEAN_SECRETARIAT.value)
                .order_by(DelegateRecord.state, DelegateRecord.role, DelegateRecord.id)
            ).all()
        )
        covered = {d.state for d in delegates if d.role != Role.STAKEHOLDER.value}
        missing = [s for s in members_on(datetime.now(UTC).date()) if s.value not in covered]
        return delegates, missing

    async def _fan_out(
        self,
        *,
        proposal_id: str,
        step: str,
        kind: MailKind,
        recipients: Recipients,
        key: Callable[[DelegateRecord], str],
        compose: Callable[[DelegateRecord, str], EmailMessage],
        progress_from: int = 0,
    ) -> MailingResult:
        """Send one message to each recipient not yet written to for this step, over one SMTP connection.

        Each recipient's outcome is its own: a refused address, a bounced message or a message that cannot be
        built is recorded and the mailing goes on. Only a deferral (4xx) retries the activity, for a while."""
        sent = 0
        outcomes: list[RecipientOutcome] = []
        deferred: list[RecipientOutcome] = []
        # Heartbeats come from a ticker for as long as the activity runs: under load a database call or the relay's
        # reply can take longer than the heartbeat timeout, and the server would cancel a mailing that is alive.
        async with _heartbeating(lambda: progress_from + sent):
            pending, already_sent, missing = await asyncio.to_thread(self._pending, recipients, key)
            outcomes.extend(_outcome(d, MailOutcome.SENT) for d in already_sent)
            if pending:
                async with aiosmtplib.SMTP(
                    hostname=self._settings.smtp_host,
                    port=self._settings.smtp_port,
                    username=self._settings.smtp_username,
                    password=self._settings.smtp_password,
                    start_tls=self._settings.smtp_starttls,
                    timeout=30,
                ) as smtp:
                    for delegate, idempotency_key in pending:
                        outcome, later = await self._deliver(
                            smtp, delegate, idempotency_key, proposal_id, step, compose
                        )
                        (deferred if later else outcomes).append(outcome)
                        sent += outcome.outcome is MailOutcome.SENT
        if deferred and _patience_left():
            # The server's text names the address: the failure Temporal records must not.
            raise ApplicationError(
                "the mail server deferred the message to "
                + ", ".join(f"delegate {o.delegate_id} (SMTP {o.code})" for o in deferred),
                type="RecipientDeferred",
            )
        outcomes.extend(deferred)
        if missing:
            activity.logger.warning(
                "no delegates on the roster for %s (%s mail, step %s)", ", ".join(missing), kind.value, step
            )
        failed = [o for o in outcomes if o.outcome is not MailOutcome.SENT]
        for outcome in failed:
            activity.logger.warning(
                "%s mail for %s, step %s: delegate %s %s (SMTP %s)",
                kind.value,
                proposal_id,
                step,
                outcome.delegate_id,
                outcome.outcome.value,
                outcome.code,
            )
        activity.logger.info(
            "%s mail for %s, step %s: %d sent, %d already sent, %d not delivered",
            kind.value,
            proposal_id,
            step,
            sent,
            len(already_sent),
            len(failed),
        )
        outcomes.sort(key=lambda o: (o.state or "", o.delegate_id))
        return MailingResult(
            sent=sent, already_sent=len(already_sent), states_without_delegates=missing, recipients=outcomes
        )

    def _pending(
        self, recipients: Recipients, key: Callable[[DelegateRecord], str]
    ) -> tuple[list[Recipient], list[DelegateRecord], list[MemberState]]:
        with Session(self._engine) as session:
            delegates, missing = recipients(session)
            keys = {d.id: key(d) for d in delegates}
            sent = set(
                session.exec(
                    select(SentEmail.idempotency_key).where(
                        SentEmail.idempotency_key.in_(list(keys.values()))  # type: ignore[attr-defined]
                    )
                ).all()
            )
        pending = [(d, keys[d.id]) for d in delegates if keys[d.id] not in sent]
        return pending, [d for d in delegates if keys[d.id] in sent], missing

    async def _deliver(
        self,
        smtp: aiosmtplib.SMTP,
        delegate: DelegateRecord,
        idempotency_key: str,
        proposal_id: str,
        step: str,
        compose: Callable[[DelegateRecord, str], EmailMessage],
    ) -> tuple[RecipientOutcome, bool]:
        """Send one message, written to the outbox as the relay takes it (activities/smtp.py says why).

        Returns the recipient's outcome, and True if the relay only deferred it (worth retrying)."""
        problem = address_problem(delegate.email)
        if problem is not None:
            return _outcome(delegate, MailOutcome.REFUSED, reply=problem), False
        sender = parseaddr(self._settings.mail_from)[1]
        utf8 = not (sender + delegate.email).isascii()
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
        eight_bit = smtp.supports_extension("8BITMIME")
        options = (["SMTPUTF8"] if utf8 else []) + (["BODY=8BITMIME"] if eight_bit else [])
        # Flattened here rather than by aiosmtplib, whose 78-column policy folds subjects (see `wire_policy`).
        wire = wire_policy(utf8=utf8, eight_bit=eight_bit)
        try:
            message = compose(delegate, idempotency_key)
            flat = flatten_for(message, delegate.name, delegate.email, wire)
        except (ValueError, email.errors.MessageError) as exc:
            # One recipient's text that no header can carry must not stop everyone else's invitation.
            reply = f"the message could not be built ({type(exc).__name__})"
            return _outcome(delegate, MailOutcome.REFUSED, reply=reply), False
        outbox = SentEmail(
            idempotency_key=idempotency_key,
            message_id=str(message["Message-ID"]),
            proposal_id=proposal_id,
            delegate_id=delegate.id,
            step=step,
        )
        try:
            await send_recorded(
                smtp,
                sender,
                delegate.email,
                flat,
                options,
                record=lambda: asyncio.to_thread(self._record_sent, outbox),
                unrecord=lambda: asyncio.to_thread(self._unrecord_sent, outbox.idempotency_key),
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            outcome = _outcome(
                delegate, MailOutcome.REFUSED, code=refusal.code, reply=scrubbed_reply(refusal.message, delegate.email)
            )
            return outcome, refusal.code < 500
        except aiosmtplib.SMTPDataError as exc:
            await _reset(smtp)
            outcome = _outcome(
                delegate, MailOutcome.BOUNCED, code=exc.code, reply=scrubbed_reply(exc.message, delegate.email)
            )
            return outcome, exc.code < 500
        return _outcome(delegate, MailOutcome.SENT), False

    def _record_sent(self, outbox: SentEmail) -> None:
        with write_session(self._engine) as session:
            session.execute(self._outbox_insert, outbox.model_dump())
            session.commit()

    def _unrecord_sent(self, idempotency_key: str) -> None:
        """The relay refused the finished message after all: it was not sent, so the retry must send it."""
        with write_session(self._engine) as session:
            row = session.get(SentEmail, idempotency_key)
            if row is not None:
                session.delete(row)
                session.commit()

    # --- messages -------------------------------------------------------------------------------------------

    def _message(
        self,
        delegate: DelegateRecord,
        key: str,
        *,
        subject: str,
        template: str,
        context: dict[str, Any],
        headers: dict[str, str | None],
    ) -> EmailMessage:
        """A multipart/alternative message (text, then HTML) with the X-Aisafe-* headers that apply."""
        context = {"delegate": delegate, "signature": self._settings.mail_signature, "subject": subject, **context}
        message = EmailMessage(policy=MESSAGE_POLICY)
        message["Subject"] = one_line(subject)
        message["From"] = self._settings.mail_from
        message["To"] = recipient(delegate.name, delegate.email)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id(key)
        for name, value in headers.items():
            if value is not None:
                message[f"X-Aisafe-{name}"] = value
        text = _templates.get_template(f"{template}.txt").render(context)
        html = _templates.get_template(f"{template}.html").render(context)
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        set_boundary(message, [text, html])
        return message

    def _round_message(self, mailing: RoundMailing, delegate: DelegateRecord, key: str) -> EmailMessage:
        state = MemberState(delegate.state)
        token = sign_action(
            self._settings.signing_keys,
            ActionClaims(
                proposal_id=mailing.proposal_id,
                round=mailing.round,
                state=state,
                delegate_id=delegate.id,
                document_sha256=mailing.document.sha256,
                expires_at=mailing.deadline,
            ),
        )
        is_reminder = mailing.step.startswith("reminder")
        abbreviation = BODY_ABBREVIATIONS.get(mailing.stage_type, "WG-AI")
        context: dict[str, Any] = {
            "mailing": mailing,
            "purpose": mailing.purpose.value,
            "state_name": state.official_name,
            "link": f"{self._settings.base_url}/act/{token}",
            "deadline_local": both(mailing.deadline, delegate.timezone),
            "deadline_utc": in_utc(mailing.deadline),
            "is_reminder": is_reminder,
            "body_name": STAGE_BODY_NAMES.get(mailing.stage_type, STAGE_BODY_NAMES[StageType.MEMBER_REVIEW]),
            "round_name": ROUND_NAMES[mailing.purpose],
            "answers": ", ".join(p.label.lower() for p in ROUND_ANSWERS[mailing.purpose]),
            **_funding_context(mailing.funding, state),
            **_answers_context(mailing),
        }
        if mailing.step.startswith("silence-procedure"):
            return self._silence_procedure_message(mailing, delegate, key, context)
        context["is_extension"] = mailing.step.startswith("extended")
        prefix = "Reminder: " if is_reminder else "New deadline: " if context["is_extension"] else ""
        subject = {
            RoundPurpose.REVIEW: f"Position of {state.official_name} requested",
            RoundPurpose.AD_REFERENDUM: f"Endorsement ad referendum by {abbreviation}",
            RoundPurpose.FUNDING: f"Contribution of {state.official_name} to confirm",
        }[mailing.purpose]
        if mailing.funding is not None and mailing.funding.step is FundingStep.INDICATION:
            subject = f"Contribution of {state.official_name} to indicate (subject to domestic clearance)"
        return self._message(
            delegate,
            key,
            subject=f"{prefix}[ASEAN AI SAFE] {subject}: {mailing.title} (round {mailing.round})",
            template="round_mail",
            context=context,
            headers=_round_headers(mailing, state),
        )

    def _notice_message(
        self, notice: AnswerNotice, step: str, answered_by: str | None, delegate: DelegateRecord, key: str
    ) -> EmailMessage:
        """The notice to a state's other delegates, or the receipt to the delegate who answered."""
        state = notice.state
        receipt = delegate.id == notice.delegate_id
        context = {
            "notice": notice,
            "state_name": state.official_name,
            "answered_by": answered_by or f"A delegate of {state.official_name}",
            "position_label": notice.position.label,
            "deadline_local": both(notice.deadline, delegate.timezone) if notice.deadline else None,
            "body_name": "Your answer was recorded" if receipt else "Position recorded",
        }
        if receipt:
            subject = f"[ASEAN AI SAFE] Your answer for {state.official_name} was recorded: {notice.title}"
        else:
            subject = f"[ASEAN AI SAFE] {state.official_name} has answered: {notice.title} (round {notice.round})"
        return self._message(
            delegate,
            key,
            subject=subject,
            template="answer_receipt" if receipt else "answer_notice",
            context=context,
            headers={
                "Proposal": notice.proposal_id,
                "Step": step,
                "Round": str(notice.round),
                "State": state.value,
                "Kind": MailKind.NOTICE.value,
            },
        )

    def _silence_procedure_message(
        self, mailing: RoundMailing, delegate: DelegateRecord, key: str, context: dict[str, Any]
    ) -> EmailMessage:
        """A silent state of an overdue round is told that unless it objects by the date it is deemed to concur."""
        state = MemberState(delegate.state)
        context["answers"] = ", ".join(p.label.lower() for p in AD_REFERENDUM_POSITIONS)
        return self._message(
            delegate,
            key,
            subject=f"[ASEAN AI SAFE] Silence procedure: unless {state.official_name} objects by "
            f"{context['deadline_utc']} it is deemed to concur: {mailing.title} (round {mailing.round})",
            template="silence_procedure_mail",
            context=context,
            headers=_round_headers(mailing, state),
        )

    def _overdue_message(self, alert: CoordinatorAlert, delegate: DelegateRecord, key: str) -> EmailMessage:
        states = ", ".join(state.value for state in alert.overdue)
        return self._message(
            delegate,
            key,
            subject=f"[ASEAN AI SAFE] Overdue: {states} silent in round {alert.round} of {alert.title}",
            template="round_overdue_alert",
            context={
                "alert": alert,
                "body_name": "Round overdue",
                "deadline_utc": in_utc(alert.deadline) if alert.deadline else "the deadline",
            },
            headers={
                "Proposal": alert.proposal_id,
                "Step": alert.step,
                "Round": str(alert.round),
                "Kind": MailKind.ALERT.value,
            },
        )

    def _alert_message(self, alert: CoordinatorAlert, delegate: DelegateRecord, key: str) -> EmailMessage:
        if alert.overdue:
            return self._overdue_message(alert, delegate, key)
        states = ", ".join(item.state.value for item in alert.not_invited)
        return self._message(
            delegate,
            key,
            subject=f"[ASEAN AI SAFE] Not invited: {states} in round {alert.round} of {alert.title}",
            template="not_invited_alert",
            context={"alert": alert, "body_name": "States not invited"},
            headers={
                "Proposal": alert.proposal_id,
                "Step": alert.step,
                "Round": str(alert.round),
                "Kind": MailKind.ALERT.value,
            },
        )

    def _consultation_message(self, mailing: ConsultationMailing, delegate: DelegateRecord, key: str) -> EmailMessage:
        token = sign_comment(
            self._settings.signing_keys,
            CommentClaims(
                proposal_id=mailing.proposal_id,
                stage_index=mailing.stage_index,
                stakeholder_id=delegate.id,
                document_sha256=mailing.document.sha256,
                expires_at=mailing.deadline + COMMENT_LINK_GRACE,
            ),
        )
        extended = mailing.step.startswith("extended")
        is_reminder = mailing.step.startswith("reminder")
        local_day = _local_day(mailing.deadline, delegate.timezone)
        context = {
            "mailing": mailing,
            "link": f"{self._settings.base_url}/comment/{token}",
            "deadline_local": both(mailing.deadline, delegate.timezone),
            "extended": extended,
            "is_reminder": is_reminder,
            "sector_name": SECTOR_LABELS[delegate.sector].lower() if delegate.sector else None,
            "organisation": delegate.organisation,
            "body_name": STAGE_BODY_NAMES[StageType.CONSULTATION],
        }
        if extended:
            subject = f"[ASEAN AI SAFE] Consultation extended to {local_day}: {mailing.title}"
        else:
            prefix = "Reminder: " if is_reminder else ""
            subject = f"{prefix}[ASEAN AI SAFE] Public consultation on {mailing.title}: comments by {local_day}"
        return self._message(
            delegate,
            key,
            subject=subject,
            template="consultation_mail",
            context=context,
            headers={
                "Proposal": mailing.proposal_id,
                "Step": mailing.step,
                "Stage": StageType.CONSULTATION.value,
                "Kind": MailKind.CONSULTATION.value,
            },
        )

    def _meeting_message(self, mailing: MeetingMailing, delegate: DelegateRecord, key: str) -> EmailMessage:
        state = MemberState(delegate.state)
        abbreviation = BODY_ABBREVIATIONS.get(mailing.stage_type, "WG-AI")
        body_name = STAGE_BODY_NAMES.get(mailing.stage_type, STAGE_BODY_NAMES[StageType.MEMBER_REVIEW])
        summary = f"{abbreviation}: {mailing.title}"
        is_reminder = mailing.step.startswith("reminder")
        cancelled = mailing.step.startswith("cancel")
        rescheduled = mailing.step.startswith("reschedule")
        context = {
            "cancelled": cancelled,
            "rescheduled": rescheduled,
            "previous_local": both(mailing.previous_date, delegate.timezone) if mailing.previous_date else None,
            "mailing": mailing,
            "state_name": state.official_name,
            "body_name": body_name,
            "abbreviation": abbreviation,
            "date_local": both(mailing.date, delegate.timezone),
            "date_utc": in_utc(mailing.date),
            "chair_name": mailing.chair.official_name,
            "is_reminder": is_reminder,
        }
        prefix = "Reminder: " if is_reminder else ""
        what = "Cancelled" if cancelled else "Rescheduled" if rescheduled else "Invitation"
        message = self._message(
            delegate,
            key,
            subject=(
                f"{prefix}[ASEAN AI SAFE] {what}: {abbreviation} meeting on "
                f"{_local_day(mailing.date, delegate.timezone)}: {mailing.title}"
            ),
            template="meeting_mail",
            context=context,
            headers={
                "Proposal": mailing.proposal_id,
                "Step": mailing.step,
                "State": state.value,
                "Stage": mailing.stage_type.value,
                "Kind": MailKind.MEETING.value,
            },
        )
        invite = meeting_invite(
            proposal_id=mailing.proposal_id,
            stage_index=mailing.stage_index,
            summary=summary,
            date=mailing.date,
            venue=mailing.venue,
            chair=mailing.chair,
            document=mailing.document,
            organizer=self._settings.mail_from,
            attendee=(delegate.name, delegate.email),
            sequence=mailing.sequence,
            cancelled=cancelled,
            sitting=mailing.sitting,
        )
        message.add_attachment(
            invite,
            maintype="text",
            subtype="calendar",
            filename="invite.ics",
            params={"method": "CANCEL" if cancelled else "REQUEST", "charset": "utf-8"},
        )
        return message

    def _summit_message(self, mailing: SummitReportMailing, delegate: DelegateRecord, key: str) -> EmailMessage:
        outcome = outcome_name(mailing.status, mailing.decided_by)
        summit = mailing.summit or "the ASEAN Summit"
        return self._message(
            delegate,
            key,
            subject=f"[ASEAN AI SAFE] Reported to {summit}: {mailing.title}",
            template="summit_report_mail",
            context={"mailing": mailing, "outcome": outcome, "summit": summit, "body_name": "Report to the Leaders"},
            headers={
                "Proposal": mailing.proposal_id,
                "Step": f"stage-{mailing.stage_index}:summit",
                "Stage": StageType.SUMMIT_REPORT.value,
                "Kind": MailKind.SUMMIT_REPORT.value,
                "Outcome": mailing.status.value,
            },
        )

    def _date_passed_message(self, mailing: MeetingMailing, delegate: DelegateRecord, key: str) -> EmailMessage:
        abbreviation = BODY_ABBREVIATIONS.get(mailing.stage_type, "WG-AI")
        return self._message(
            delegate,
            key,
            subject=f"[ASEAN AI SAFE] {abbreviation} meeting date has passed: {mailing.title}",
            template="meeting_date_passed",
            context={
                "mailing": mailing,
                "abbreviation": abbreviation,
                "date_utc": in_utc(mailing.date),
                "body_name": f"{abbreviation} meeting to reschedule",
            },
            headers={
                "Proposal": mailing.proposal_id,
                "Step": mailing.step,
                "Stage": mailing.stage_type.value,
                "Kind": MailKind.ALERT.value,
            },
        )

    def _outcome_message(self, mailing: OutcomeMailing, delegate: DelegateRecord, key: str) -> EmailMessage:
        outcome = outcome_name(mailing.status, mailing.decided_by, mailing.summit_reported)
        state = MemberState(delegate.state) if delegate.state else None
        sentence = f"The proposal below was {status_text(mailing.status, mailing.decided_by)}"
        if mailing.summit_reported:
            sentence += f" and {SUMMIT_REPORTED}"
        context = {
            "mailing": mailing,
            "outcome": outcome,
            "outcome_sentence": f"{sentence}.",
            "status": mailing.status.value,
            "state_name": state.official_name if state else None,
            "is_stakeholder": delegate.role == Role.STAKEHOLDER.value,
            "body_name": "Outcome of the proposal",
        }
        return self._message(
            delegate,
            key,
            subject=f"[ASEAN AI SAFE] {outcome}: {mailing.title}",
            template="outcome_mail",
            context=context,
            headers={
                "Proposal": mailing.proposal_id,
                "Step": "outcome",
                "State": state.value if state else None,
                "Kind": MailKind.OUTCOME.value,
                "Outcome": mailing.status.value,
            },
        )


def _outcome(
    delegate: DelegateRecord, outcome: MailOutcome, *, code: int | None = None, reply: str | None = None
) -> RecipientOutcome:
    state = MemberState(delegate.state) if delegate.state else None
    return RecipientOutcome(state=state, delegate_id=delegate.id, outcome=outcome, code=code, reply=reply)


def _patience_left() -> bool:
    """Whether a deferred recipient is still worth another attempt of the whole mailing (see DEFERRAL_PATIENCE)."""
    return datetime.now(UTC) - activity.info().scheduled_time < DEFERRAL_PATIENCE


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    """End the refused transaction so the next recipient's starts clean (a relay that hung up is reopened later)."""
    try:
        await smtp.rset()
    except aiosmtplib.SMTPException:
        smtp.close()
        await smtp.connect()


@asynccontextmanager
async def _heartbeating(progress: Callable[[], int]) -> AsyncIterator[None]:
    """Heartbeat `progress()` now and every HEARTBEAT_EVERY until the block ends: the worker is alive while the
    event loop runs this, whatever the activity is waiting for (start_to_close still bounds the whole)."""

    async def tick() -> None:
        while True:
            activity.heartbeat(progress())
            await asyncio.sleep(HEARTBEAT_EVERY.total_seconds())

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()


def _answers_context(mailing: RoundMailing) -> dict[str, Any]:
    """The answers a round offers, when it says (minus-X and funding rounds opened since they did)."""
    step = mailing.funding.step.value if mailing.funding and mailing.funding.step else None
    context: dict[str, Any] = {"minus_x": Position.PARTICIPATE in (mailing.allowed or ()), "funding_step": step}
    if mailing.allowed:
        context["answers"] = ", ".join(p.label.lower() for p in mailing.allowed)
    return context


def _funding_context(funding: FundingTerms | None, state: MemberState) -> dict[str, Any]:
    """What a funding round's email says about money: the state's expected share, or that it pledges its own."""
    if funding is None:
        return {"funding": None}
    expected = funding.expected.get(state)
    return {
        "funding": funding,
        "funding_model": FUNDING_MODEL_NAMES[funding.model],
        "budget_target": money(funding.budget_target, funding.currency),
        # A minister's office confirms the amount its focal point indicated; it does not enter one.
        "voluntary": funding.model is FundingModel.VOLUNTARY and funding.step is not FundingStep.CONFIRMATION,
        "expected_amount": money(expected, funding.currency) if expected is not None else None,
    }


def _state_names(states: Iterable[MemberState | None]) -> str:
    """States as a copy lists them: by English name, in ASEAN's order; "none" for none."""
    found = in_name_order({s for s in states if s is not None})
    return ", ".join(f"{s.official_name} ({s.value})" for s in found) or "none"


def _local_day(moment: datetime, zone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(zone)):%-d %B %Y}"
