"""One round of state answers: email every participating state, collect answers, close, apply the rule.

The same round serves WG-AI review, ADGSOM/ADGMIN ad referendum (a silence procedure) and funding
confirmations; `ReviewRoundInput.purpose` says which.

Only the delegates the round wrote to may answer for their state, and a state nobody could be written to is never
counted: the round stays open past its deadline until the coordinator has invited it (`resend`) and it has answered
or its own deadline has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        AnswerNotice,
        CloseRoundInput,
        CoordinatorAlert,
        ExtendInput,
        FundingStep,
        MailingResult,
        MailOutcome,
        NotInvitedState,
        PositionReceipt,
        PositionSignal,
        PositionSubmission,
        RecipientsQuery,
        ResendInput,
        ResendReceipt,
        ReviewRoundInput,
        RosterChange,
        RosterChangeReceipt,
        RoundControlReceipt,
        RoundMailing,
        RoundOutcome,
        RoundRecipients,
        RoundStatus,
        SilenceProcedureInput,
        StatePosition,
    )
    from models.positions import AD_REFERENDUM_POSITIONS, Position, SilencePolicy
    from models.process import FundingModel, iso_duration
    from models.rules import decide
    from models.states import MemberState
    from workflows.common import (
        LEDGER_LOCAL,
        LEDGER_RETRY,
        LEDGER_TIMEOUT,
        MAIL_HEARTBEAT,
        MAIL_RETRY,
        MAIL_TIMEOUT,
        ledger,
    )

AWAITING = SearchAttributeKey.for_keyword_list("AisafeAwaiting")
# Rounds from before this patch mailed every participant's delegates, took an answer from any delegate id and
# counted a state nobody wrote to by its silence; they replay as they ran.
INVITED_ONLY = "round-invited-only"
EVERY_RECIPIENT_FAILED = "every recipient was refused or bounced"
# Rounds from this patch on do not count silence outside a silence procedure: at the deadline with states silent the
# round is overdue until they answer or the coordinator extends it, runs a silence procedure or closes it. Older
# rounds deemed the silent states to have taken their stage's silence policy, and replay so.
SILENCE_NOT_CONSENT = "round-silence-not-consent"
# While overdue the silent states are reminded once a day; each reminder's link works for two days.
OVERDUE_REMINDERS = timedelta(days=1)
# A resend to one delegate (`aisafe resend ID --delegate ...`), and a delegate replaced on the roster mid-round
# (`roster_changed`): both came after the rounds recorded so far, which replay without them.
RESEND_ONE_DELEGATE = "resend-one-delegate"
ROSTER_CHANGED = "round-roster-changed"
TAKEN_OFF = "every delegate invited was taken off the roster"


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
        # The delegate ids whose answer counts, per state; None in a round from before INVITED_ONLY.
        self._invited: dict[MemberState, set[str]] | None = None
        self._invitation_sent = False
        self._not_invited: dict[MemberState, str] = {}  # state: why nobody was written to
        self._state_deadlines: dict[MemberState, datetime] = {}  # fresh deadlines given by `resend`
        self._resends = 0
        self._resending: dict[MemberState, int] = {}  # resends in flight, per state: the round waits for them
        self._past_deadline = False
        self._changes = 0  # counts answers and resends, so a wait past the deadline wakes for each
        # SILENCE_NOT_CONSENT: silence counts only in a silence procedure; the coordinator's controls of the round.
        self._counted = False  # this round takes SILENCE_NOT_CONSENT
        self._round_deadline = round_input.deadline  # moved by `extend_round`
        self._overdue_since: datetime | None = None
        self._overdues = 0
        self._overdue_reminded: datetime | None = None
        self._extra_reminders = 0  # reminders after the round's own schedule, numbered on from it
        self._procedure: dict[MemberState, datetime] = {}  # states under a silence procedure: when it ends
        self._no_consensus: str | None = None  # set by `close_round`: the coordinator's reason
        self._controls: dict[str, RoundControlReceipt | None] = {}  # by Update id; None while being recorded
        self._extensions = 0
        self._procedures = 0

    @workflow.run
    async def run(self, round_input: ReviewRoundInput) -> RoundOutcome:
        deadline = round_input.deadline
        invited_only = workflow.patched(INVITED_ONLY)
        self._counted = invited_only and workflow.patched(SILENCE_NOT_CONSENT)
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
        if invited_only:
            self._invited = {}
            await self._invite("invitation", round_input.participants, deadline)
        else:
            await self._mail("invitation", round_input.participants)
        self._invitation_sent = True
        try:
            all_answered = await self._collect_answers(deadline)
            if invited_only and not all_answered:
                self._past_deadline = True
                all_answered = await self._past_the_deadline()
            because = "all states answered" if all_answered else "deadline"
            if self._counted and not all_answered and not self._silence_counts():
                because = await self._until_resolved()
        except asyncio.CancelledError:
            # The proposal was withdrawn: let accepted answers finish recording, then stop.
            self._closed = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise

        # From here the validator refuses new answers; those already accepted finish and count.
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        await asyncio.gather(*self._notices)
        return await self._close(because)

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

    async def _remind(self, number: int, deadline: datetime | None = None) -> None:
        """Email the states that have not answered yet and record in the ledger whom the reminder went to."""
        silent = self._awaiting()
        if self._invited is not None:
            # Only the delegates invited are reminded: a state nobody was written to waits for `resend`.
            silent = [s for s in silent if s not in self._not_invited]
            if not silent:
                return
            step = f"reminder-{number}"
            ids = sorted(i for s in silent for i in self._invited.get(s, ()))
            result = await self._mail(step, silent, delegate_ids=ids, deadline=deadline)
            await self._record_mail_outcome(step, result, [])
        else:
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
        self._changes += 1
        # The state's other delegates are told and this one gets a receipt, without waiting for those emails.
        self._in_background(
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
                deadline=self._deadline_of(submission.state),
            ),
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
        if self._invited is not None:
            if submission.delegate_id not in self._invited.get(submission.state, ()):
                raise ApplicationError(
                    f"delegate {submission.delegate_id} was not invited to answer for {submission.state} in this round",
                    type="NotInvited",
                )
            # While the round is overdue a silent state's late answer is still taken: silence is not consent.
            if workflow.now() >= self._deadline_of(submission.state) and self._overdue_since is None:
                raise ApplicationError(f"the deadline of {submission.state} has passed", type="DeadlinePassed")
        if submission.document_sha256 != self._input.document.sha256:
            raise ApplicationError(
                "the answer names a document version that is not the one under review", type="DocumentMismatch"
            )
        allowed = AD_REFERENDUM_POSITIONS if submission.state in self._procedure else self._input.allowed
        if submission.position not in allowed:
            raise ApplicationError(
                f"{submission.position.label} is not an answer this round takes", type="PositionNotAllowed"
            )
        self._check_contribution(submission)

    def _check_contribution(self, submission: PositionSubmission) -> None:
        """A voluntary contribution names its amount when it is first given; a minister's office confirms that."""
        funding = self._input.funding
        if funding is None or funding.model is not FundingModel.VOLUNTARY or funding.step is FundingStep.CONFIRMATION:
            return
        if submission.position in (Position.CONFIRM, Position.INDICATE) and not submission.amount:
            raise ApplicationError("a voluntary pledge needs an amount above zero", type="AmountRequired")

    @workflow.query
    def status(self) -> RoundStatus:
        return RoundStatus(
            round=self._input.round,
            workflow_id=workflow.info().workflow_id,
            document=self._input.document,
            opened_at=self._opened_at,
            deadline=self._round_deadline,
            is_open=not self._closed,
            participants=self._input.participants,
            positions=dict(self._positions),
            purpose=self._input.purpose,
            stage_type=self._input.stage_type,
            allowed=self._input.allowed,
            previous_document=self._input.previous_document,
            funding=self._input.funding,
            not_invited=dict(self._not_invited),
            invited={s: sorted(ids) for s, ids in (self._invited or {}).items()},
            state_deadlines=dict(self._state_deadlines),
            waiting=self._waiting(),
            overdue=self._overdue_since is not None and not self._closed,
            overdue_since=None if self._closed else self._overdue_since,
            silence_procedure=dict(self._procedure),
        )

    def _waiting(self) -> str | None:
        """Why the round is not closing, in words, when it would otherwise have closed or cannot pass."""
        if self._closed:
            return None
        if self._not_invited:
            names = "; ".join(f"{s.official_name} ({s.value}): {why}" for s, why in sorted(self._not_invited.items()))
            when = "past its deadline" if self._past_deadline else "at its deadline"
            return (
                f"not invited: {names}. The round stays open {when} until each is invited (fix the roster, then "
                f"aisafe resend ID --state XX) and answers or its own deadline passes"
            )
        if self._overdue_since is not None:
            silent = ", ".join(f"{s.official_name} ({s.value})" for s in self._awaiting())
            return (
                f"overdue since {self._overdue_since.isoformat()}: {silent} did not answer (silence is not consent). "
                f"Choose: aisafe extend ID P7D, aisafe silence-procedure ID P14D, or aisafe close-round ID "
                f"--no-consensus"
            )
        if self._procedure:
            ends = max(self._procedure.values())
            silent = ", ".join(f"{s.official_name} ({s.value})" for s in self._awaiting() if s in self._procedure)
            if silent:
                return f"silence procedure until {ends.isoformat()}: unless they object, {silent} are deemed to concur"
        if self._past_deadline:
            later = sorted((d, s) for s, d in self._state_deadlines.items() if s in self._awaiting())
            if later:
                return "past the round's deadline: waiting for " + ", ".join(
                    f"{s.official_name} ({s.value}) until {d.isoformat()}" for d, s in later
                )
        return None

    def _deadline_of(self, state: MemberState) -> datetime:
        return self._state_deadlines.get(state, self._round_deadline)

    async def _past_the_deadline(self) -> bool:
        """After the round's deadline: wait while a state is not invited, or has a fresh deadline of its own still
        running; True when every state has answered."""
        while True:
            awaiting = self._awaiting()
            if not awaiting:
                return True
            now = workflow.now()
            still_open = [
                s for s in awaiting if s in self._not_invited or self._resending.get(s) or self._deadline_of(s) > now
            ]
            if not still_open:
                return False
            timers = [self._deadline_of(s) for s in still_open if self._deadline_of(s) > now]
            seen = self._changes
            timeout = (min(timers) - now).total_seconds() if timers else None
            try:
                await workflow.wait_condition(lambda seen=seen: self._changes != seen, timeout=timeout)
            except TimeoutError:
                pass

    # --- silence is not consent: the overdue round and the coordinator's three controls -------------------------

    def _silence_counts(self) -> bool:
        """Only an ad referendum (a silence procedure announced in every invitation) counts the silent as concurring."""
        return self._input.silence is SilencePolicy.CONCUR

    async def _until_resolved(self) -> str:
        """Past the deadline with states silent: overdue (coordinator told, silent states reminded daily) until every
        state has answered, the coordinator closes the round, or a silence procedure or extension given meanwhile
        runs out; returns why the round closes."""
        while True:
            awaiting = self._awaiting()
            if not awaiting:
                return "all states answered"
            if self._no_consensus is not None:
                return "closed without consensus"
            now = workflow.now()
            still_open = [
                s for s in awaiting if s in self._not_invited or self._resending.get(s) or self._deadline_of(s) > now
            ]
            timeout: float | None = None
            if still_open:
                # Extended, under a silence procedure, or being invited again: not overdue until that runs out.
                timers = [self._deadline_of(s) for s in still_open if self._deadline_of(s) > now]
                timeout = (min(timers) - now).total_seconds() if timers else None
            elif self._procedure:
                return "silence procedure ended"
            elif self._overdue_since is None:
                await self._become_overdue(awaiting)
                continue
            else:
                assert self._overdue_reminded is not None
                due = self._overdue_reminded + OVERDUE_REMINDERS
                if now >= due:
                    self._overdue_reminded = now
                    self._extra_reminders += 1
                    await self._remind(
                        len(self._input.reminders) + self._extra_reminders, deadline=now + 2 * OVERDUE_REMINDERS
                    )
                    continue
                timeout = (due - now).total_seconds()
            seen = self._changes
            try:
                await workflow.wait_condition(lambda seen=seen: self._changes != seen, timeout=timeout)
            except TimeoutError:
                pass

    async def _become_overdue(self, silent: list[MemberState]) -> None:
        """Record that the round is overdue and tell the coordinator, who chooses what happens next."""
        self._overdue_since = workflow.now()
        # The silent states' links expired with the deadline: the first reminder, with a fresh link, goes at once.
        self._overdue_reminded = self._overdue_since - OVERDUE_REMINDERS
        self._overdues += 1
        self._changes += 1
        step = f"overdue-{self._overdues}"
        deadline = max(self._deadline_of(s) for s in silent)
        await ledger(
            self._input.proposal_id,
            "round_overdue",
            f"{workflow.info().workflow_id}:{step}",
            {
                "round": self._input.round,
                "states": sorted(s.value for s in silent),
                "deadline": deadline.isoformat(),
                "since": self._overdue_since.isoformat(),
            },
        )
        self._in_background(
            "send_coordinator_alert",
            CoordinatorAlert(
                proposal_id=self._input.proposal_id,
                title=self._input.title,
                round=self._input.round,
                step=step,
                workflow_id=workflow.info().workflow_id,
                not_invited=[],
                overdue=silent,
                deadline=deadline,
            ),
        )

    async def _control(
        self, check: Callable[[], None], act: Callable[[str], Awaitable[RoundControlReceipt]]
    ) -> RoundControlReceipt:
        """Run one of the coordinator's controls once per Update id (a delivery again gets the first's receipt).

        `check` runs again first: a control accepted alongside may have closed the round or started a procedure.
        `act` changes the round's state before its first await, so that no deadline, answer or other control
        interleaves between the check and the change."""
        update = workflow.current_update_info()
        update_id = update.id if update else str(workflow.uuid4())
        if update_id in self._controls:
            await workflow.wait_condition(lambda: self._controls.get(update_id, True) is not None)
            earlier = self._controls.get(update_id)
            if earlier is None:
                raise ApplicationError("the first delivery of this Update was refused", type="Refused")
            return earlier
        check()
        self._controls[update_id] = None
        try:
            done = await act(update_id)
        except BaseException:
            del self._controls[update_id]
            raise
        self._controls[update_id] = done
        return done

    def _check_control(self, what: str, *, overdue: bool) -> None:
        if self._closed or self._no_consensus is not None:
            raise ApplicationError("this round is closed", type="RoundClosed")
        if not self._counted:
            raise ApplicationError(f"this round predates {what}", type="ControlUnsupported")
        if not self._invitation_sent:
            raise ApplicationError("the round is still sending its invitations; try again shortly", type="Busy")
        if not self._awaiting():
            raise ApplicationError("every state has answered: the round is closing", type="AllAnswered")
        if overdue and self._overdue_since is None:
            raise ApplicationError(
                f"round {self._input.round} is not overdue (its deadline is {self._round_deadline.isoformat()}): "
                f"{what} applies once the deadline has passed with states silent",
                type="NotOverdue",
            )

    @workflow.update
    async def extend_round(self, request: ExtendInput) -> RoundControlReceipt:
        """Give the open round a new deadline (the later of its deadline and now, plus `by`); the silent states are
        told the new date."""
        return await self._control(lambda: self._check_extend_round(request), lambda uid: self._extend(request, uid))

    async def _extend(self, request: ExtendInput, update_id: str) -> RoundControlReceipt:
        deadline = max(self._round_deadline, workflow.now()) + request.by
        self._round_deadline = deadline
        silent = self._awaiting()
        for state in silent:
            if state in self._state_deadlines:
                self._state_deadlines[state] = max(self._state_deadlines[state], deadline)
            if state in self._procedure:
                self._procedure[state] = self._deadline_of(state)
        self._overdue_since = None
        self._extensions += 1
        self._changes += 1
        payload = {"by": iso_duration(request.by), "deadline": deadline.isoformat()}
        return await self._announce(
            "round_extended", f"extended:{update_id}", f"extended-{self._extensions}", silent, deadline, payload
        )

    @extend_round.validator
    def _check_extend_round(self, request: ExtendInput) -> None:
        self._check_control("extending a round", overdue=False)

    @workflow.update
    async def silence_procedure(self, request: SilenceProcedureInput) -> RoundControlReceipt:
        """Write to the silent states of an overdue round that unless they object by the end of `duration` they are
        deemed to concur: an ad referendum for those states only."""
        return await self._control(
            lambda: self._check_silence_procedure(request), lambda uid: self._start_procedure(request, uid)
        )

    async def _start_procedure(self, request: SilenceProcedureInput, update_id: str) -> RoundControlReceipt:
        ends = workflow.now() + request.duration
        silent = self._awaiting()
        for state in silent:
            self._procedure[state] = ends
            self._state_deadlines[state] = ends
        self._overdue_since = None
        self._procedures += 1
        self._changes += 1
        payload = {"duration": iso_duration(request.duration), "deadline": ends.isoformat()}
        return await self._announce(
            "silence_procedure",
            f"silence-procedure:{update_id}",
            f"silence-procedure-{self._procedures}",
            silent,
            ends,
            payload,
        )

    @silence_procedure.validator
    def _check_silence_procedure(self, request: SilenceProcedureInput) -> None:
        self._check_control("a silence procedure", overdue=True)

    async def _announce(
        self, kind: str, tag: str, step: str, silent: list[MemberState], deadline: datetime, payload: dict[str, Any]
    ) -> RoundControlReceipt:
        """Record a new deadline for the silent states (an extension, a silence procedure), then write to them."""
        receipt = await ledger(
            self._input.proposal_id,
            kind,
            f"{workflow.info().workflow_id}:{tag}",
            {"round": self._input.round, **payload, "states": sorted(s.value for s in silent), "step": step},
        )
        await self._mail_silent(step, [s for s in silent if s not in self._not_invited], deadline)
        action = "extended" if kind == "round_extended" else kind
        return RoundControlReceipt(
            round=self._input.round,
            action=action,
            states=silent,
            deadline=deadline,
            ledger_seq=receipt.seq,
            ledger_entry_hash=receipt.entry_hash,
        )

    @workflow.update
    async def close_round(self, request: CloseRoundInput) -> RoundControlReceipt:
        """End an overdue round without consensus; the proposal goes to revision or ends, as its process says."""
        return await self._control(
            lambda: self._check_close_round(request), lambda uid: self._close_early(request, uid)
        )

    async def _close_early(self, request: CloseRoundInput, update_id: str) -> RoundControlReceipt:
        # The round closes on this and nothing else; answers taken before it count.
        self._no_consensus = request.reason or "no consensus"
        self._changes += 1
        silent = self._awaiting()
        receipt = await ledger(
            self._input.proposal_id,
            "round_closed_no_consensus",
            f"{workflow.info().workflow_id}:no-consensus:{update_id}",
            {"round": self._input.round, "states": sorted(s.value for s in silent), "reason": request.reason},
        )
        return RoundControlReceipt(
            round=self._input.round,
            action="closed_no_consensus",
            states=silent,
            ledger_seq=receipt.seq,
            ledger_entry_hash=receipt.entry_hash,
        )

    @close_round.validator
    def _check_close_round(self, request: CloseRoundInput) -> None:
        if not request.no_consensus:
            raise ApplicationError("a round is closed only without consensus (--no-consensus)", type="BadRequest")
        self._check_control("closing a round without consensus", overdue=True)

    async def _mail_silent(self, step: str, states: list[MemberState], deadline: datetime) -> None:
        """Write to the invited delegates of `states` (a new deadline, a silence procedure) and record the outcome."""
        assert self._invited is not None
        if not states:
            return
        ids = sorted(i for s in states for i in self._invited.get(s, ()))
        result = await self._mail(step, states, delegate_ids=ids, deadline=deadline)
        await self._record_mail_outcome(step, result, [])

    # --- invitations, and inviting a state again ---------------------------------------------------------------

    async def _recipients(self, states: list[MemberState]) -> RoundRecipients:
        return await workflow.execute_local_activity(
            "find_round_recipients",
            RecipientsQuery(states=states, roles=self._input.roles),
            result_type=RoundRecipients,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
        )

    async def _invite(
        self, step: str, states: list[MemberState], deadline: datetime, found: RoundRecipients | None = None
    ) -> list[NotInvitedState]:
        """Look up whom to write to, accept their answers from then on, write to them, and record what happened.

        Returns the states nobody could be written to (also recorded, and the coordinator told)."""
        assert self._invited is not None
        found = found or await self._recipients(states)
        # A delegate may follow the link before the mailing has returned: their answer must count already.
        added: dict[MemberState, set[str]] = {}
        for state, ids in found.delegates.items():
            added[state] = set(ids) - self._invited.get(state, set())
            self._invited.setdefault(state, set()).update(ids)
        ids = sorted(i for s in states for i in found.delegates.get(s, ()))
        # Every state goes to the mailing, so that its result (and the worker's log) names those with nobody too.
        result = await self._mail(step, states, delegate_ids=ids, deadline=deadline)
        # Whoever the relay refused (or whose message could not be built) never got a link.
        for outcome in result.recipients:
            if outcome.outcome is not MailOutcome.SENT and outcome.state in added:
                if outcome.delegate_id in added[outcome.state]:
                    self._invited[outcome.state].discard(outcome.delegate_id)
        reasons = {item.state: item.reason for item in [*found.nobody, *result.not_invited]}
        missing = [
            NotInvitedState(state=s, reason=reasons.get(s, EVERY_RECIPIENT_FAILED))
            for s in sorted(states)
            if not self._invited.get(s)
        ]
        for state in states:
            self._not_invited.pop(state, None)
        self._not_invited.update({item.state: item.reason for item in missing})
        self._changes += 1
        await self._record_mail_outcome(step, result, missing)
        for item in missing:
            await ledger(
                self._input.proposal_id,
                "not_invited",
                f"{workflow.info().workflow_id}:not-invited:{step}:{item.state.value}",
                {"round": self._input.round, "state": item.state.value, "step": step, "reason": item.reason},
            )
        if missing and step == "invitation":
            # The coordinator hears at once, without the round waiting on that email.
            self._in_background(
                "send_coordinator_alert",
                CoordinatorAlert(
                    proposal_id=self._input.proposal_id,
                    title=self._input.title,
                    round=self._input.round,
                    step=step,
                    workflow_id=workflow.info().workflow_id,
                    not_invited=missing,
                ),
            )
        return missing

    def _in_background(self, activity: str, mailing: object) -> None:
        """Start a mailing nobody waits for now; the round waits for all of them before it closes."""
        self._notices.append(
            workflow.start_activity(
                activity,
                mailing,
                result_type=MailingResult,
                start_to_close_timeout=MAIL_TIMEOUT,
                heartbeat_timeout=MAIL_HEARTBEAT,
                retry_policy=MAIL_RETRY,
            )
        )

    async def _record_mail_outcome(self, step: str, result: MailingResult, missing: list[NotInvitedState]) -> None:
        payload: dict[str, Any] = {
            "step": step,
            "round": self._input.round,
            "stage_index": None,
            "recipients": [o.model_dump(mode="json") for o in result.recipients],
            "not_invited": [item.model_dump(mode="json") for item in missing],
        }
        await ledger(self._input.proposal_id, "mail_outcome", f"{workflow.info().workflow_id}:mail:{step}", payload)

    @workflow.update
    async def resend(self, request: ResendInput) -> ResendReceipt:
        """Invite one state again (after the roster was fixed), optionally with a fresh deadline of its own."""
        update = workflow.current_update_info()
        update_id = update.id if update else str(workflow.uuid4())
        state = request.state
        # Before the first await: a deadline passing meanwhile must not close the round under this handler, nor
        # deem the state silent the moment it counts as invited.
        earlier = self._state_deadlines.get(state)
        deadline = self._deadline_of(state)
        if request.deadline is not None:
            deadline = max(deadline, workflow.now() + request.deadline)
            self._state_deadlines[state] = deadline
        self._resending[state] = self._resending.get(state, 0) + 1
        try:
            if request.delegate_id is not None and workflow.patched(RESEND_ONE_DELEGATE):
                return await self._resend_delegate(state, request.delegate_id, deadline, update_id)
            return await self._resend(state, deadline, update_id)
        except ApplicationError:
            if earlier is None:
                self._state_deadlines.pop(state, None)
            else:
                self._state_deadlines[state] = earlier
            raise
        finally:
            self._resending[state] -= 1
            self._changes += 1

    async def _resend(self, state: MemberState, deadline: datetime, update_id: str) -> ResendReceipt:
        assert self._invited is not None
        before = set(self._invited.get(state, set()))
        found = await self._recipients([state])
        if found.nobody:
            # Nothing was sent, so nothing is recorded: the coordinator fixes the roster and tries again.
            reason = found.nobody[0].reason
            raise ApplicationError(f"{state.value} still has nobody to write to ({reason})", type="NotInvited")
        self._resends += 1  # taken with no await before its use: concurrent resends mail under their own steps
        step = f"resend-{self._resends}"
        missing = await self._invite(step, [state], deadline, found)
        if missing:
            reason = missing[0].reason
            raise ApplicationError(f"{state.value} is still not invited ({reason})", type="NotInvited")
        return await self._resent(state, update_id, sorted(self._invited[state] - before))

    async def _resent(self, state: MemberState, update_id: str, delegate_ids: list[str], **more: str) -> ResendReceipt:
        """Record an invitation sent again (to `delegate_ids`, newly invited or written to again) and say so."""
        receipt = await ledger(
            self._input.proposal_id,
            "invitation_resent",
            f"{workflow.info().workflow_id}:resent:{update_id}",
            {
                "round": self._input.round,
                "state": state.value,
                "delegate_ids": delegate_ids,
                **more,
                "deadline": self._deadline_of(state).isoformat(),
            },
        )
        return ResendReceipt(
            round=self._input.round,
            state=state,
            delegate_ids=delegate_ids,
            deadline=self._deadline_of(state),
            ledger_seq=receipt.seq,
            ledger_entry_hash=receipt.entry_hash,
        )

    async def _resend_delegate(
        self, state: MemberState, delegate_id: str, deadline: datetime, update_id: str
    ) -> ResendReceipt:
        """Write to one delegate of the state again (a lost email, a new address), with their own link."""
        assert self._invited is not None
        found = await self._recipients([state])
        if delegate_id not in found.delegates.get(state, []):
            raise ApplicationError(
                f"delegate {delegate_id} is not on the roster for {state.value} in the roles this round writes to",
                type="NotInvited",
            )
        self._resends += 1  # taken with no await before its use, as in `_resend`
        step = f"resend-{self._resends}"
        await self._invite(step, [state], deadline, RoundRecipients(delegates={state: [delegate_id]}))
        if delegate_id not in self._invited.get(state, set()):
            raise ApplicationError(
                f"the email to delegate {delegate_id} was refused or bounced; check the address on the roster",
                type="NotInvited",
            )
        return await self._resent(state, update_id, [delegate_id], delegate_id=delegate_id)

    @workflow.update
    async def roster_changed(self, change: RosterChange) -> RosterChangeReceipt:
        """A roster import replaced delegates of a state: the removed ones' answers stop counting at once, and the
        new ones get their own link (while the state has not answered and its deadline runs)."""
        update = workflow.current_update_info()
        update_id = update.id if update else str(workflow.uuid4())
        assert self._invited is not None
        state = change.state
        if not workflow.patched(ROSTER_CHANGED):  # no round recorded before this Update existed receives it
            raise ApplicationError("this round predates roster changes", type="ResendUnsupported")
        # Before the first await: an answer through a removed delegate's link is refused from this moment on.
        invited = self._invited.setdefault(state, set())
        withdrawn = sorted(invited & set(change.removed))
        invited.difference_update(change.removed)
        self._resending[state] = self._resending.get(state, 0) + 1
        try:
            newly: list[str] = []
            if change.added and state not in self._positions and workflow.now() < self._deadline_of(state):
                found = await self._recipients([state])
                fresh = [i for i in found.delegates.get(state, []) if i in change.added and i not in invited]
                if fresh:
                    self._resends += 1
                    step = f"replaced-{self._resends}"
                    before = set(invited)
                    await self._invite(
                        step, [state], self._deadline_of(state), RoundRecipients(delegates={state: fresh})
                    )
                    newly = sorted(self._invited.get(state, set()) - before)
            if not self._invited.get(state) and state not in self._positions and state not in self._not_invited:
                # Nobody left who may answer: the state is not invited, never deemed silent, until `resend`.
                self._not_invited[state] = TAKEN_OFF
            receipt = await ledger(
                self._input.proposal_id,
                "delegates_replaced",
                f"{workflow.info().workflow_id}:replaced:{update_id}",
                {"round": self._input.round, "state": state.value, "withdrawn": withdrawn, "invited": newly},
            )
        finally:
            self._resending[state] -= 1
            self._changes += 1
        return RosterChangeReceipt(
            round=self._input.round,
            state=state,
            withdrawn=withdrawn,
            invited=newly,
            ledger_seq=receipt.seq,
            ledger_entry_hash=receipt.entry_hash,
        )

    @roster_changed.validator
    def _check_roster_change(self, change: RosterChange) -> None:
        if self._closed:
            raise ApplicationError("this round is closed", type="RoundClosed")
        if change.state not in self._input.participants:
            raise ApplicationError(f"{change.state.value} is not a participant in this round", type="NotParticipant")
        if not self._invitation_sent:
            raise ApplicationError("the round is still sending its invitations; try again shortly", type="Busy")
        if self._invited is None:
            raise ApplicationError("this round predates invitations by resend", type="ResendUnsupported")

    @resend.validator
    def _check_resend(self, request: ResendInput) -> None:
        state = request.state
        if self._closed:
            raise ApplicationError("this round is closed", type="RoundClosed")
        if state not in self._input.participants:
            raise ApplicationError(f"{state.value} is not a participant in this round", type="NotParticipant")
        if not self._invitation_sent:
            raise ApplicationError("the round is still sending its invitations; try again shortly", type="Busy")
        if self._invited is None:
            raise ApplicationError("this round predates invitations by resend", type="ResendUnsupported")
        if state in self._positions:
            raise ApplicationError(f"{state.official_name} has already answered in this round", type="AlreadyAnswered")
        if request.deadline is None and workflow.now() >= self._deadline_of(state):
            raise ApplicationError(
                f"the deadline of {state.official_name} has passed: give a fresh one with --deadline (e.g. P7D)",
                type="DeadlinePassed",
            )

    def _amount_for(self, submission: PositionSubmission) -> Decimal | None:
        """The contribution an answer gives: the state's share, or its own pledge (voluntary); a minister's office
        confirms the amount its focal point indicated."""
        funding = self._input.funding
        if funding is not None and funding.step is FundingStep.CONFIRMATION:
            return funding.expected.get(submission.state) if submission.position is Position.CONFIRM else None
        if funding is None or submission.position not in (Position.CONFIRM, Position.INDICATE):
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

    async def _mail(
        self,
        step: str,
        states: list[MemberState],
        *,
        delegate_ids: list[str] | None = None,
        deadline: datetime | None = None,
    ) -> MailingResult:
        return await workflow.execute_activity(
            "send_round_mail",
            RoundMailing(
                proposal_id=self._input.proposal_id,
                title=self._input.title,
                round=self._input.round,
                step=step,
                states=states,
                document=self._input.document,
                deadline=deadline or self._input.deadline,
                purpose=self._input.purpose,
                stage_type=self._input.stage_type,
                roles=self._input.roles,
                funding=self._input.funding,
                delegate_ids=delegate_ids,
                allowed=self._input.allowed,
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
        # No silence policy counts a state nobody was written to (the round cannot get here while one is left).
        assert not self._not_invited.keys() & set(self._awaiting()), self._not_invited
        silent: list[str] = []
        for state in self._awaiting():
            if self._counted and state not in self._procedure and not self._silence_counts():
                silent.append(state.value)  # silence is not consent: the state is left out, and named
                continue
            deemed = SilencePolicy.CONCUR if state in self._procedure else silence
            final[state] = StatePosition(position=deemed.deemed_position, recorded_at=closed_at, deemed=True)
        decision = decide(
            self._input.rule,
            {s.value: p.position for s, p in final.items()},
            min_participants=self._input.min_participants,
            objection_blocks=Position.PARTICIPATE in self._input.allowed,
            silent=silent,
        )
        reason = decision.reason
        if self._no_consensus:
            reason = f"{reason}; closed by the coordinator: {self._no_consensus}"
        outcome = RoundOutcome(
            round=self._input.round,
            document=self._input.document,
            opened_at=self._opened_at,
            closed_at=closed_at,
            closed_because=because,
            verdict=decision.verdict,
            reason=reason,
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
