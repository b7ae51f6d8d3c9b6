"""Email activities for the whole governance lifecycle.

Every fan-out uses one SMTP connection, is idempotent per (workflow or step key, recipient) through the
`SentEmail` outbox with a deterministic Message-ID, and renders a text and an HTML part from the templates
beside this file. Logs name delegates by id, never by address.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
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
from models.labels import SECTOR_LABELS, STAGE_BODY_NAMES, money
from models.messages import (
    ROUND_ANSWERS,
    AnswerNotice,
    ConsultationMailing,
    FundingTerms,
    MailingResult,
    MeetingMailing,
    OutcomeMailing,
    ProposalState,
    RoundMailing,
    RoundPurpose,
)
from models.process import FundingModel, StageType
from models.roster import REVIEW_ROLES, Role, Sector
from models.settings import Settings
from models.states import MemberState, members_on
from models.tables import DelegateRecord, SentEmail
from models.timefmt import both, in_utc
from models.tokens import (
    ActionClaims,
    CommentClaims,
    consultation_workflow_id,
    meeting_workflow_id,
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
SIGNATURE = "ASEAN AI SAFE Secretariat (Ministry of Digital, Malaysia)"


class MailKind(StrEnum):
    """The X-Aisafe-Kind header: which part of the lifecycle a message belongs to."""

    ROUND = "round"
    NOTICE = "notice"
    CONSULTATION = "consultation"
    MEETING = "meeting"
    OUTCOME = "outcome"


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
}

Recipient = tuple[DelegateRecord, str]  # a delegate and the idempotency key of their copy


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
    return chosen, sorted(missing)


class MailActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self._engine = engine
        # One statement, built once: a message is waiting mid-DATA on this commit (an ORM get, add and flush
        # took twice as long, and building the statement for each message a third of what is left).
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._outbox_insert = insert(SentEmail).on_conflict_do_nothing()

    # --- activities -----------------------------------------------------------------------------------------

    @activity.defn(name="send_round_mail")
    async def send_round_mail(self, mailing: RoundMailing) -> MailingResult:
        """Email each delegate of `mailing.states` their own signed action link for one step of a round."""
        workflow_id = round_workflow_id(mailing.proposal_id, mailing.round)
        return await self._fan_out(
            proposal_id=mailing.proposal_id,
            step=mailing.step,
            kind=MailKind.ROUND,
            recipients=lambda session: state_delegates(session, mailing.states, mailing.roles),
            key=lambda d: f"{workflow_id}:{mailing.step}:{d.id}",
            compose=lambda d, key: self._round_message(mailing, d, key),
        )

    @activity.defn(name="send_answer_notice")
    async def send_answer_notice(self, notice: AnswerNotice) -> MailingResult:
        """Tell a state's other delegates that one of them has answered for it."""
        workflow_id = round_workflow_id(notice.proposal_id, notice.round)
        step = f"notice-{notice.decision_id}"
        answered_by: str | None = None

        def recipients(session: Session) -> tuple[list[DelegateRecord], list[MemberState]]:
            nonlocal answered_by
            group, missing = state_delegates(session, [notice.state], notice.roles)
            answering = next((d for d in group if d.id == notice.delegate_id), None)
            answering = answering or session.get(DelegateRecord, notice.delegate_id)
            answered_by = answering.name if answering is not None else None
            return [d for d in group if d.id != notice.delegate_id], missing

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
        return await self._fan_out(
            proposal_id=mailing.proposal_id,
            step=mailing.step,
            kind=MailKind.CONSULTATION,
            recipients=lambda session: (self._stakeholders(session, mailing.sectors), []),
            key=lambda d: f"{workflow_id}:{mailing.step}:{d.id}",
            compose=lambda d, key: self._consultation_message(mailing, d, key),
        )

    @activity.defn(name="send_meeting_mail")
    async def send_meeting_mail(self, mailing: MeetingMailing) -> MailingResult:
        """Invite the delegates of `mailing.states` to an ADGSOM or ADGMIN meeting, with a calendar file."""
        workflow_id = meeting_workflow_id(mailing.proposal_id, mailing.stage_index)
        return await self._fan_out(
            proposal_id=mailing.proposal_id,
            step=mailing.step,
            kind=MailKind.MEETING,
            recipients=lambda session: state_delegates(session, mailing.states, mailing.roles),
            key=lambda d: f"{workflow_id}:{mailing.step}:{d.id}",
            compose=lambda d, key: self._meeting_message(mailing, d, key),
        )

    @activity.defn(name="send_outcome_mail")
    async def send_outcome_mail(self, mailing: OutcomeMailing) -> MailingResult:
        """Tell every active delegate and stakeholder how the proposal ended."""
        if mailing.status not in OUTCOME_NAMES:
            raise ApplicationError(
                f"proposal {mailing.proposal_id} is still {mailing.status.value}; there is no outcome to announce",
                type="ProposalStillRunning",
                non_retryable=True,
            )
        return await self._fan_out(
            proposal_id=mailing.proposal_id,
            step="outcome",
            kind=MailKind.OUTCOME,
            recipients=self._everyone,
            key=lambda d: f"{mailing.proposal_id}:outcome:{d.id}",
            compose=lambda d, key: self._outcome_message(mailing, d, key),
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
    def _everyone(session: Session) -> tuple[list[DelegateRecord], list[MemberState]]:
        delegates = list(
            session.exec(
                select(DelegateRecord)
                .where(DelegateRecord.active)
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
        recipients: Callable[[Session], tuple[list[DelegateRecord], list[MemberState]]],
        key: Callable[[DelegateRecord], str],
        compose: Callable[[DelegateRecord, str], EmailMessage],
    ) -> MailingResult:
        """Send one message to each recipient not yet written to for this step, over one SMTP connection."""
        sent = 0
        # Heartbeats come from a ticker for as long as the activity runs: under load a database call or the relay's
        # reply can take longer than the heartbeat timeout, and the server would cancel a mailing that is alive.
        async with _heartbeating(lambda: sent):
            pending, already_sent, missing = await asyncio.to_thread(self._pending, recipients, key)
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
                        message = compose(delegate, idempotency_key)
                        outbox = SentEmail(
                            idempotency_key=idempotency_key,
                            message_id=str(message["Message-ID"]),
                            proposal_id=proposal_id,
                            delegate_id=delegate.id,
                            step=step,
                        )
                        if await self._deliver(smtp, message, delegate, outbox):
                            sent += 1
        if missing:
            activity.logger.warning(
                "no delegates on the roster for %s (%s mail, step %s)", ", ".join(missing), kind.value, step
            )
        activity.logger.info(
            "%s mail for %s, step %s: %d sent, %d already sent", kind.value, proposal_id, step, sent, already_sent
        )
        return MailingResult(sent=sent, already_sent=already_sent, states_without_delegates=missing)

    def _pending(
        self,
        recipients: Callable[[Session], tuple[list[DelegateRecord], list[MemberState]]],
        key: Callable[[DelegateRecord], str],
    ) -> tuple[list[Recipient], int, list[MemberState]]:
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
        return pending, len(sent), missing

    async def _deliver(
        self, smtp: aiosmtplib.SMTP, message: EmailMessage, delegate: DelegateRecord, outbox: SentEmail
    ) -> bool:
        """Send one message, written to the outbox as the relay takes it (activities/smtp.py says why);
        False if the server refuses the address for good (retrying would not help)."""
        sender = parseaddr(self._settings.mail_from)[1]
        utf8 = not (sender + delegate.email).isascii()
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
        eight_bit = smtp.supports_extension("8BITMIME")
        options = (["SMTPUTF8"] if utf8 else []) + (["BODY=8BITMIME"] if eight_bit else [])
        # Flattened here rather than by aiosmtplib, whose 78-column policy folds subjects (see `wire_policy`).
        wire = wire_policy(utf8=utf8, eight_bit=eight_bit)
        try:
            await send_recorded(
                smtp,
                sender,
                delegate.email,
                message.as_bytes(policy=wire),
                options,
                record=lambda: asyncio.to_thread(self._record_sent, outbox),
                unrecord=lambda: asyncio.to_thread(self._unrecord_sent, outbox.idempotency_key),
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({refusal.code for refusal in exc.recipients})
            if all(code >= 500 for code in codes):
                activity.logger.warning(
                    "the mail server refused the address of delegate %s (SMTP %s); not sent", delegate.id, codes
                )
                return False
            # The server's text names the address: the failure Temporal records must not.
            raise ApplicationError(
                f"the mail server deferred the message to delegate {delegate.id} (SMTP {codes})",
                type="RecipientDeferred",
            ) from None
        return True

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
        context = {"delegate": delegate, "signature": SIGNATURE, "subject": subject, **context}
        message = EmailMessage(policy=MESSAGE_POLICY)
        message["Subject"] = subject
        message["From"] = self._settings.mail_from
        message["To"] = f"{delegate.name} <{delegate.email}>"
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
        }
        prefix = "Reminder: " if is_reminder else ""
        subject = {
            RoundPurpose.REVIEW: f"Position of {state.official_name} requested",
            RoundPurpose.AD_REFERENDUM: f"Endorsement ad referendum by {abbreviation}",
            RoundPurpose.FUNDING: f"Contribution of {state.official_name} to confirm",
        }[mailing.purpose]
        return self._message(
            delegate,
            key,
            subject=f"{prefix}[ASEAN AI SAFE] {subject}: {mailing.title} (round {mailing.round})",
            template="round_mail",
            context=context,
            headers={
                "Proposal": mailing.proposal_id,
                "Step": mailing.step,
                "Round": str(mailing.round),
                "State": state.value,
                "Stage": mailing.stage_type.value,
                "Kind": MailKind.ROUND.value,
            },
        )

    def _notice_message(
        self, notice: AnswerNotice, step: str, answered_by: str | None, delegate: DelegateRecord, key: str
    ) -> EmailMessage:
        state = notice.state
        context = {
            "notice": notice,
            "state_name": state.official_name,
            "answered_by": answered_by or f"A delegate of {state.official_name}",
            "position_label": notice.position.label,
            "body_name": "Position recorded",
        }
        return self._message(
            delegate,
            key,
            subject=(f"[ASEAN AI SAFE] {state.official_name} has answered: {notice.title} (round {notice.round})"),
            template="answer_notice",
            context=context,
            headers={
                "Proposal": notice.proposal_id,
                "Step": step,
                "Round": str(notice.round),
                "State": state.value,
                "Kind": MailKind.NOTICE.value,
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
        context = {
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
        message = self._message(
            delegate,
            key,
            subject=(
                f"{prefix}[ASEAN AI SAFE] Invitation: {abbreviation} meeting on "
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
        )
        message.add_attachment(
            invite,
            maintype="text",
            subtype="calendar",
            filename="invite.ics",
            params={"method": "REQUEST", "charset": "utf-8"},
        )
        return message

    def _outcome_message(self, mailing: OutcomeMailing, delegate: DelegateRecord, key: str) -> EmailMessage:
        outcome = OUTCOME_NAMES[mailing.status]
        state = MemberState(delegate.state) if delegate.state else None
        context = {
            "mailing": mailing,
            "outcome": outcome,
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


def _funding_context(funding: FundingTerms | None, state: MemberState) -> dict[str, Any]:
    """What a funding round's email says about money: the state's expected share, or that it pledges its own."""
    if funding is None:
        return {"funding": None}
    expected = funding.expected.get(state)
    return {
        "funding": funding,
        "funding_model": FUNDING_MODEL_NAMES[funding.model],
        "budget_target": money(funding.budget_target, funding.currency),
        "voluntary": funding.model is FundingModel.VOLUNTARY,
        "expected_amount": money(expected, funding.currency) if expected is not None else None,
    }


def _local_day(moment: datetime, zone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(zone)):%-d %B %Y}"
