"""Activity fakes registered under the real names, for workflow tests on the time-skipping server."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.comments import disposition_entries, fold_comments, lookup
from models.ledger import GENESIS_HASH, canonical_json, document_hash, entry_hash
from models.messages import (
    AnswerNotice,
    Comment,
    CommentLimits,
    CommentLookup,
    CommentQuery,
    ConsultationMailing,
    CoordinatorAlert,
    DispositionBatch,
    DispositionsRecorded,
    LedgerAppend,
    LedgerReceipt,
    MailingResult,
    MailOutcome,
    MeetingMailing,
    MembersOnDay,
    MembersOnQuery,
    NotInvitedState,
    OutcomeMailing,
    ProposalInput,
    RecipientOutcome,
    RecipientsQuery,
    RoundMailing,
    RoundRecipients,
    SummitReportMailing,
)
from models.states import MemberState, in_name_order, members_on


def fake_delegates(state: MemberState) -> list[str]:
    """The delegate ids the fake roster has for a state (the ids the workflow tests answer with)."""
    return [
        f"{state.value}-delegate",
        f"{state.value.lower()}-focal-point",
        f"{state.value.lower()}-alternate",
        f"{state.value}-0000000000000001",
    ]


@dataclass
class FakeBackend:
    """An in-memory ledger and outbox that behave like the real ones (idempotent, strict, chained)."""

    entries: list[LedgerAppend] = field(default_factory=list)
    receipts: dict[str, LedgerReceipt] = field(default_factory=dict)
    mailings: list[RoundMailing] = field(default_factory=list)
    notices: list[AnswerNotice] = field(default_factory=list)
    consultation_mailings: list[ConsultationMailing] = field(default_factory=list)
    meeting_mailings: list[MeetingMailing] = field(default_factory=list)
    outcomes: list[OutcomeMailing] = field(default_factory=list)
    summit_reports: list[SummitReportMailing] = field(default_factory=list)
    comment_bodies: dict[str, str] = field(default_factory=dict)
    comment_limits: CommentLimits = field(default_factory=lambda: CommentLimits(per_link=20, max_chars=10000))
    alerts: list[CoordinatorAlert] = field(default_factory=list)
    nobody: set[MemberState] = field(default_factory=set)  # states with nobody on the fake roster
    refused: set[MemberState] = field(default_factory=set)  # states whose every address the fake relay refuses
    admitted: dict[MemberState, date] = field(default_factory=dict)  # states admitted as data, and since when
    # A state's delegates after a roster change (default: `fake_delegates`).
    roster: dict[MemberState, list[str]] = field(default_factory=dict)

    def _append(self, entry: LedgerAppend) -> LedgerReceipt:
        if entry.idempotency_key in self.receipts:
            earlier = next(e for e in self.entries if e.idempotency_key == entry.idempotency_key)
            if (earlier.kind, canonical_json(earlier.payload)) != (entry.kind, canonical_json(entry.payload)):
                # As the real ledger does (activities/ledger.py): other content under a known key is refused.
                raise ApplicationError(
                    f"ledger integrity: {entry.idempotency_key}", type="LedgerIntegrity", non_retryable=True
                )
            return self.receipts[entry.idempotency_key]
        chain = [e for e in self.entries if e.proposal_id == entry.proposal_id]
        prev = self.receipts[chain[-1].idempotency_key].entry_hash if chain else GENESIS_HASH
        now = datetime.now(UTC)
        receipt = LedgerReceipt(
            seq=len(chain) + 1,
            entry_hash=entry_hash(
                proposal_id=entry.proposal_id,
                seq=len(chain) + 1,
                kind=entry.kind,
                idempotency_key=entry.idempotency_key,
                payload_json=canonical_json(entry.payload),
                recorded_at=now,
                prev_hash=prev,
            ),
            recorded_at=now,
        )
        self.entries.append(entry)
        self.receipts[entry.idempotency_key] = receipt
        return receipt

    def store_comment_body(self, text: str) -> str:
        """Keep a comment's body under its hash, as the web does before it sends the comment."""
        sha256 = document_hash(text)
        self.comment_bodies[sha256] = text
        return sha256

    def comments(self, proposal_id: str, workflow_id: str) -> dict[str, Comment]:
        """A consultation's comments as the fake ledger holds them (as activities/comments.py reads the real one)."""
        return fold_comments(
            (
                e.kind,
                e.payload,
                self.receipts[e.idempotency_key].recorded_at,
                self.receipts[e.idempotency_key].entry_hash,
            )
            for e in self.entries
            if e.proposal_id == proposal_id and e.idempotency_key.startswith(f"{workflow_id}:")
        )

    def delegates_of(self, state: MemberState) -> list[str]:
        return self.roster.get(state, fake_delegates(state))

    def kinds(self, proposal_id: str) -> list[str]:
        return [e.kind for e in self.entries if e.proposal_id == proposal_id]

    def payloads(self, proposal_id: str, kind: str) -> list[dict[str, Any]]:
        """The payloads of a proposal's ledger entries of one kind, in ledger order."""
        return [e.payload for e in self.entries if e.proposal_id == proposal_id and e.kind == kind]

    def activities(self) -> list[object]:
        @activity.defn(name="append_ledger")
        async def append_ledger(entry: LedgerAppend) -> LedgerReceipt:
            return self._append(entry)

        @activity.defn(name="register_proposal")
        async def register_proposal(proposal: ProposalInput) -> LedgerReceipt:
            return self._append(
                LedgerAppend(
                    proposal_id=proposal.proposal_id,
                    kind="proposal_started",
                    idempotency_key=f"{proposal.proposal_id}:started",
                    payload=proposal.model_dump(mode="json"),
                )
            )

        @activity.defn(name="record_version")
        async def record_version(entry: LedgerAppend) -> LedgerReceipt:
            return self._append(entry)

        @activity.defn(name="find_round_recipients")
        async def find_round_recipients(query: RecipientsQuery) -> RoundRecipients:
            return RoundRecipients(
                delegates={s: self.delegates_of(s) for s in query.states if s not in self.nobody},
                nobody=[
                    NotInvitedState(state=s, reason="no delegate in role focal_point")
                    for s in query.states
                    if s in self.nobody
                ],
            )

        @activity.defn(name="send_round_mail")
        async def send_round_mail(mailing: RoundMailing) -> MailingResult:
            self.mailings.append(mailing)
            state_of = {i: s for s in mailing.states for i in self.delegates_of(s)}
            ids = state_of if mailing.delegate_ids is None else [i for i in mailing.delegate_ids if i in state_of]
            outcomes = [
                RecipientOutcome(state=state_of[i], delegate_id=i, outcome=MailOutcome.REFUSED, code=550, reply="5.1.1")
                if state_of[i] in self.refused
                else RecipientOutcome(state=state_of[i], delegate_id=i, outcome=MailOutcome.SENT)
                for i in ids
            ]
            sent = sum(o.outcome is MailOutcome.SENT for o in outcomes)
            return MailingResult(sent=sent, already_sent=0, recipients=outcomes)

        @activity.defn(name="send_coordinator_alert")
        async def send_coordinator_alert(alert: CoordinatorAlert) -> MailingResult:
            self.alerts.append(alert)
            return MailingResult(sent=1, already_sent=0)

        @activity.defn(name="send_answer_notice")
        async def send_answer_notice(notice: AnswerNotice) -> MailingResult:
            self.notices.append(notice)
            return MailingResult(sent=1, already_sent=0)

        @activity.defn(name="send_consultation_mail")
        async def send_consultation_mail(mailing: ConsultationMailing) -> MailingResult:
            self.consultation_mailings.append(mailing)
            return MailingResult(sent=len(mailing.sectors), already_sent=0)

        @activity.defn(name="send_meeting_mail")
        async def send_meeting_mail(mailing: MeetingMailing) -> MailingResult:
            self.meeting_mailings.append(mailing)
            return MailingResult(sent=len(mailing.states), already_sent=0)

        @activity.defn(name="send_outcome_mail")
        async def send_outcome_mail(mailing: OutcomeMailing) -> MailingResult:
            self.outcomes.append(mailing)
            return MailingResult(sent=1, already_sent=0)

        @activity.defn(name="members_on")
        async def members_on_day(query: MembersOnQuery) -> MembersOnDay:
            admitted = [s for s, since in self.admitted.items() if since <= query.day]
            return MembersOnDay(day=query.day, states=in_name_order([*members_on(query.day), *admitted]))

        @activity.defn(name="send_summit_report")
        async def send_summit_report(mailing: SummitReportMailing) -> MailingResult:
            self.summit_reports.append(mailing)
            return MailingResult(sent=1, already_sent=0)

        @activity.defn(name="comment_limits")
        async def comment_limits() -> CommentLimits:
            return self.comment_limits

        @activity.defn(name="lookup_comments")
        async def lookup_comments(query: CommentQuery) -> CommentLookup:
            return lookup(self.comments(query.proposal_id, query.workflow_id), query)

        @activity.defn(name="record_dispositions")
        async def record_dispositions(batch: DispositionBatch) -> DispositionsRecorded:
            known = self.comments(batch.proposal_id, batch.workflow_id)
            entries = disposition_entries(known, batch)
            for entry in entries:
                self._append(entry)
            return DispositionsRecorded(
                recorded=[str(e.payload["comment_id"]) for e in entries],
                still_open=sum(1 for c in known.values() if c.disposition is None),
            )

        return [
            comment_limits,
            lookup_comments,
            record_dispositions,
            append_ledger,
            register_proposal,
            record_version,
            find_round_recipients,
            send_round_mail,
            send_coordinator_alert,
            send_answer_notice,
            send_consultation_mail,
            send_meeting_mail,
            send_outcome_mail,
            members_on_day,
            send_summit_report,
        ]
