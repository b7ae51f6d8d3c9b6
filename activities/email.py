"""Email activities: one SMTP connection per fan-out, idempotent per (workflow, step, recipient)."""

from __future__ import annotations

import asyncio
import hashlib
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity

from models.db import write_session
from models.messages import MailingResult, RoundMailing
from models.roster import REVIEW_ROLES
from models.settings import Settings
from models.states import MemberState
from models.tables import DelegateRecord, SentEmail
from models.timefmt import both, in_utc
from models.tokens import ActionClaims, round_workflow_id, sign_action

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    keep_trailing_newline=True,
)


def message_id(idempotency_key: str) -> str:
    """The same email always carries the same Message-ID, so a receiving system can spot a duplicate."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]}@aisafe.example.org>"


class MailActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self._engine = engine

    @activity.defn(name="send_round_mail")
    async def send_round_mail(self, mailing: RoundMailing) -> MailingResult:
        """Email every review delegate of `mailing.states` their own signed link, skipping those already sent."""
        workflow_id = round_workflow_id(mailing.proposal_id, mailing.round)
        recipients, already_sent, missing = await asyncio.to_thread(self._pending, mailing, workflow_id)
        if recipients:
            async with aiosmtplib.SMTP(
                hostname=self._settings.smtp_host,
                port=self._settings.smtp_port,
                username=self._settings.smtp_username,
                password=self._settings.smtp_password,
                start_tls=self._settings.smtp_starttls,
                timeout=30,
            ) as smtp:
                for delegate, key in recipients:
                    message = self._compose(mailing, delegate, key)
                    await smtp.send_message(message)
                    await asyncio.to_thread(self._mark_sent, mailing, delegate, key, message["Message-ID"])
        if missing:
            activity.logger.warning("no review delegates on the roster for %s", ", ".join(missing))
        return MailingResult(sent=len(recipients), already_sent=already_sent, states_without_delegates=sorted(missing))

    def _pending(
        self, mailing: RoundMailing, workflow_id: str
    ) -> tuple[list[tuple[DelegateRecord, str]], int, list[MemberState]]:
        with Session(self._engine) as session:
            delegates = session.exec(
                select(DelegateRecord)
                .where(DelegateRecord.state.in_([s.value for s in mailing.states]))  # type: ignore[attr-defined]
                .where(DelegateRecord.role.in_([r.value for r in REVIEW_ROLES]))  # type: ignore[attr-defined]
                .where(DelegateRecord.active)
                .order_by(DelegateRecord.state, DelegateRecord.role, DelegateRecord.id)
            ).all()
            keys = {d.id: f"{workflow_id}:{mailing.step}:{d.id}" for d in delegates}
            sent = set(
                session.exec(
                    select(SentEmail.idempotency_key).where(
                        SentEmail.idempotency_key.in_(list(keys.values()))  # type: ignore[attr-defined]
                    )
                ).all()
            )
        covered = {d.state for d in delegates}
        missing = [s for s in mailing.states if s.value not in covered]
        pending = [(d, keys[d.id]) for d in delegates if keys[d.id] not in sent]
        return pending, len(sent), missing

    def _mark_sent(self, mailing: RoundMailing, delegate: DelegateRecord, key: str, msg_id: str) -> None:
        with write_session(self._engine) as session:
            if session.get(SentEmail, key) is None:
                session.add(
                    SentEmail(
                        idempotency_key=key,
                        message_id=msg_id,
                        proposal_id=mailing.proposal_id,
                        delegate_id=delegate.id,
                        step=mailing.step,
                    )
                )
                session.commit()

    def _compose(self, mailing: RoundMailing, delegate: DelegateRecord, key: str) -> EmailMessage:
        token = sign_action(
            self._settings.signing_key,
            ActionClaims(
                proposal_id=mailing.proposal_id,
                round=mailing.round,
                state=MemberState(delegate.state),
                delegate_id=delegate.id,
                document_sha256=mailing.document.sha256,
                expires_at=mailing.deadline,
            ),
        )
        context = {
            "mailing": mailing,
            "delegate": delegate,
            "state_name": MemberState(delegate.state).official_name,
            "link": f"{self._settings.base_url}/act/{token}",
            "deadline_local": both(mailing.deadline, delegate.timezone),
            "deadline_utc": in_utc(mailing.deadline),
            "is_reminder": mailing.step.startswith("reminder"),
        }
        message = EmailMessage()
        prefix = "Reminder: " if context["is_reminder"] else ""
        message["Subject"] = (
            f"{prefix}[ASEAN AI SAFE] Position of {context['state_name']} requested: "
            f"{mailing.title} (round {mailing.round})"
        )
        message["From"] = self._settings.mail_from
        message["To"] = f"{delegate.name} <{delegate.email}>"
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id(key)
        message["X-Aisafe-Proposal"] = mailing.proposal_id
        message["X-Aisafe-Step"] = mailing.step
        message["X-Aisafe-Round"] = str(mailing.round)
        message["X-Aisafe-State"] = delegate.state
        message.set_content(_templates.get_template("round_mail.txt").render(context))
        message.add_alternative(_templates.get_template("round_mail.html").render(context), subtype="html")
        return message
