"""One round of state answers: email every participating state, collect answers, close, apply the rule.

The same round serves WG-AI review, ADGSOM/ADGMIN ad referendum (a silence procedure) and funding
confirmations; `ReviewRoundInput.purpose` says which.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        AnswerNotice,
        MailingResult,
        PositionReceipt,
        PositionSignal,
        PositionSubmission,
        ReviewRoundInput,
        RoundMailing,
        RoundOutcome,
        RoundStatus,
        StatePosition,
    )
    from models.positions import Position
    from models.process import FundingModel
    from models.rules import decide
    from models.states import MemberState
    from workflows.common import LEDGER_LOCAL, MAIL_HEARTBEAT, MAIL_RETRY, MAIL_TIMEOUT, ledger

AWAITING = SearchAttributeKey.for_keyword_list("AisafeAwaiting")


@workflow.defn
class ReviewRoundWorkflow:
    @workflow.init
    def __init__(self, round_input: ReviewRoundInput) -> None:
        self._input = round_input
        self._opened_at = workflow.now()
        self._positions: dict[MemberState, StatePosition] = {}
        self._ledger_seq: dict[MemberState, int] = {}
        self._notices: list[asyncio.Task[MailingResult]] = []
        self._receipts: dict[str, PositionReceipt | None] = {}  # by decision id; None while being recorded
        self._closed = False

    @workflow.run
    async def run(self, round_input: ReviewRoundInput) -> RoundOutcome:
        deadline = round_input.deadline
        await ledger(
            round_input.proposal_id,
            "round_opened",
            f"{workflow.info().workflow_id}:opened",
            {
                "round": round_input.round,
                "stage": round_input.stage_type.value,
                "purpose": round_input.purpose.value,
                "document": round_input.document.model_dump(mode="json"),
                "participants": [s.value for s in round_input.participants],
                "rule": round_input.rule.value,
                "deadline": deadline.isoformat(),
                "funding": round_input.funding.model_dump(mode="json") if round_input.funding else None,
            },
        )
        self._publish_awaiting()
        await self._mail("invitation", round_input.participants)
        try:
            all_answered = await self._collect_answers(deadline)
        except asyncio.CancelledError:
            # The proposal was withdrawn: let accepted answers finish recording, then stop.
            self._closed = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise

        # From here the validator refuses new answers; those already accepted finish and count.
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        await asyncio.gather(*self._notices)
        return await self._close("all states answered" if all_answered else "deadline")

    async def _collect_answers(self, deadline: datetime) -> bool:
        """Remind the silent at each offset; True when every state answered before the deadline."""
        all_answered = False
        reminders = sorted(deadline - offset for offset in self._input.reminders)
        for number, moment in enumerate(reminders, start=1):
            if moment <= workflow.now():
                continue
            all_answered = await self._wait_for_everyone(until=moment)
            if all_answered:
                break
            await self._remind(number)
        if not all_answered:
            all_answered = await self._wait_for_everyone(until=deadline)
        return all_answered

    async def _remind(self, number: int) -> None:
        """Email the states that have not answered yet and record in the ledger whom the reminder went to."""
        silent = self._awaiting()
        await self._mail(f"reminder-{number}", silent)
        # Rounds that sent reminders before they were recorded must replay without this ledger entry.
        if silent and workflow.patched("ledger-reminders"):
            await ledger(
                self._input.proposal_id,
                "reminder_sent",
                f"{workflow.info().workflow_id}:reminder-{number}",
                {
                    "round": self._input.round,
                    "reminder": number,
                    "states": sorted(s.value for s in silent),
                    "stage": self._input.stage_type.value,
                },
            )

    @workflow.update
    async def submit_position(self, submission: PositionSubmission) -> PositionReceipt:
        update = workflow.current_update_info()
        return await self._record(submission, update.id if update else str(workflow.uuid4()))

    @workflow.signal
    async def submit_position_signal(self, delivery: PositionSignal) -> None:
        """The web's fallback when no worker accepted the Update in time: recorded once, under the same id.

        A Signal cannot be refused, so one the validator would have rejected is recorded as refused.
        """
        if delivery.decision_id in self._receipts:
            return
        try:
            self._check_position(delivery.submission)
        except ApplicationError as refusal:
            await ledger(
                self._input.proposal_id,
                "position_refused",
                f"{workflow.info().workflow_id}:refused:{delivery.decision_id}",
                {
                    "decision_id": delivery.decision_id,
                    **delivery.submission.model_dump(mode="json"),
                    "refused": refusal.type,
                    "refusal": refusal.message,
                },
            )
            return
        await self._record(delivery.submission, delivery.decision_id)

    async def _record(self, submission: PositionSubmission, decision_id: str) -> PositionReceipt:
        """Record one decision; the same decision arriving again (Update and Signal) gets the first's receipt."""
        if decision_id in self._receipts:
            await workflow.wait_condition(lambda: self._receipts[decision_id] is not None)
            return self._receipts[decision_id]  # type: ignore[return-value]
        self._receipts[decision_id] = None
        amount = self._amount_for(submission)
        entry = (
            self._input.proposal_id,
            "position",
            f"{workflow.info().workflow_id}:position:{decision_id}",
            {"decision_id": decision_id, **submission.model_dump(mode="json"), "amount": _text(amount)},
        )
        # The delegate waits on this write. Rounds from before every entry was local (LEDGER_LOCAL) made only
        # this one local, from the patch below on; rounds older still keep the regular activity.
        local = workflow.patched(LEDGER_LOCAL) or workflow.patched("position-ledger-local")
        receipt = await ledger(*entry, local=local)
        # The latest answer in ledger order stands, whichever delegate of the state gave it.
        if receipt.seq > self._ledger_seq.get(submission.state, 0):
            self._ledger_seq[submission.state] = receipt.seq
            self._positions[submission.state] = StatePosition(
                position=submission.position,
                reason=submission.reason,
                delegate_id=submission.delegate_id,
                decision_id=decision_id,
                recorded_at=receipt.recorded_at,
                amount=amount,
            )
            self._publish_awaiting()
        # The state's other delegates are told, without making this delegate wait for their emails.
        self._notices.append(
            workflow.start_activity(
                "send_answer_notice",
                AnswerNotice(
                    proposal_id=self._input.proposal_id,
                    title=self._input.title,
                    round=self._input.round,
                    state=submission.state,
                    delegate_id=submission.delegate_id,
                    decision_id=decision_id,
                    position=submission.position,
                    roles=self._input.roles,
                ),
                result_type=MailingResult,
                start_to_close_timeout=MAIL_TIMEOUT,
                heartbeat_timeout=MAIL_HEARTBEAT,
                retry_policy=MAIL_RETRY,
            )
        )
        recorded = PositionReceipt(
            decision_id=decision_id,
            proposal_id=self._input.proposal_id,
            round=self._input.round,
            state=submission.state,
            position=submission.position,
            ledger_seq=receipt.seq,
            ledger_entry_hash=receipt.entry_hash,
            recorded_at=receipt.recorded_at,
            amount=amount,
        )
        self._receipts[decision_id] = recorded
        return recorded

    @submit_position.validator
    def _check_position(self, submission: PositionSubmission) -> None:
        if self._closed:
            raise ApplicationError("this round is closed", type="RoundClosed")
        if submission.proposal_id != self._input.proposal_id or submission.round != self._input.round:
            raise ApplicationError(f"this is round {self._input.round} of {self._input.proposal_id}", type="WrongRound")
        if submission.state not in self._input.participants:
            raise ApplicationError(f"{submission.state} is not a participant in this round", type="NotParticipant")
        if submission.document_sha256 != self._input.document.sha256:
            raise ApplicationError(
                "the answer names a document version that is not the one under review", type="DocumentMismatch"
            )
        if submission.position not in self._input.allowed:
            raise ApplicationError(
                f"{submission.position.label} is not an answer this round takes", type="PositionNotAllowed"
            )
        funding = self._input.funding
        voluntary = funding is not None and funding.model is FundingModel.VOLUNTARY
        if submission.position is Position.CONFIRM and voluntary and not submission.amount:
            raise ApplicationError("a voluntary pledge needs an amount above zero", type="AmountRequired")

    @workflow.query
    def status(self) -> RoundStatus:
        return RoundStatus(
            round=self._input.round,
            workflow_id=workflow.info().workflow_id,
            document=self._input.document,
            opened_at=self._opened_at,
            deadline=self._input.deadline,
            is_open=not self._closed,
            participants=self._input.participants,
            positions=dict(self._positions),
            purpose=self._input.purpose,
            stage_type=self._input.stage_type,
            allowed=self._input.allowed,
            previous_document=self._input.previous_document,
            funding=self._input.funding,
        )

    def _amount_for(self, submission: PositionSubmission) -> Decimal | None:
        """The contribution a confirmation commits: the state's share, or its own pledge (voluntary)."""
        funding = self._input.funding
        if funding is None or submission.position is not Position.CONFIRM:
            return None
        if funding.model is FundingModel.VOLUNTARY:
            return submission.amount
        return funding.expected.get(submission.state)

    def _awaiting(self) -> list[MemberState]:
        return [s for s in self._input.participants if s not in self._positions]

    def _publish_awaiting(self) -> None:
        workflow.upsert_search_attributes([AWAITING.value_set([s.value for s in self._awaiting()])])

    async def _wait_for_everyone(self, *, until: datetime) -> bool:
        """Wait until every participant has answered (True) or `until` passes (False)."""
        remaining = (until - workflow.now()).total_seconds()
        if remaining > 0:
            try:
                await workflow.wait_condition(lambda: not self._awaiting(), timeout=remaining)
            except TimeoutError:
                pass
        return not self._awaiting()

    async def _mail(self, step: str, states: list[MemberState]) -> MailingResult:
        return await workflow.execute_activity(
            "send_round_mail",
            RoundMailing(
                proposal_id=self._input.proposal_id,
                title=self._input.title,
                round=self._input.round,
                step=step,
                states=states,
                document=self._input.document,
                deadline=self._input.deadline,
                purpose=self._input.purpose,
                stage_type=self._input.stage_type,
                roles=self._input.roles,
                funding=self._input.funding,
            ),
            result_type=MailingResult,
            start_to_close_timeout=MAIL_TIMEOUT,
            heartbeat_timeout=MAIL_HEARTBEAT,
            retry_policy=MAIL_RETRY,
        )

    async def _close(self, because: str) -> RoundOutcome:
        closed_at = workflow.now()
        final = dict(self._positions)
        silence = self._input.silence
        for state in self._awaiting():
            final[state] = StatePosition(position=silence.deemed_position, recorded_at=closed_at, deemed=True)
        decision = decide(
            self._input.rule,
            {s.value: p.position for s, p in final.items()},
            min_participants=self._input.min_participants,
        )
        outcome = RoundOutcome(
            round=self._input.round,
            document=self._input.document,
            opened_at=self._opened_at,
            closed_at=closed_at,
            closed_because=because,
            verdict=decision.verdict,
            reason=decision.reason,
            positions=final,
            purpose=self._input.purpose,
            stage_type=self._input.stage_type,
            participating=[MemberState(s) for s in decision.participating] if decision.participating else None,
            reservations={
                s: p.reason for s, p in final.items() if p.position is Position.APPROVE_WITH_RESERVATION and p.reason
            },
        )
        await ledger(
            self._input.proposal_id,
            "round_closed",
            f"{workflow.info().workflow_id}:closed",
            outcome.model_dump(mode="json"),
        )
        return outcome


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)
