"""A proposal's life, stage by stage as its process lists them, to its deciding body's word (agreed, endorsed,
approved, noted, or not), withdrawn or expired (`adopted` / `not_adopted` in histories from before that word).

Stages: drafting -> WG-AI review -> consultation -> WG-AI final review (rounds, revised between them) ->
senior officials (ADGSOM) -> ministers (ADGMIN) -> funding -> report to the ASEAN Summit. Each consultation,
round and meeting is a child workflow, so no single history grows without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.decisions import MeetingDecision
    from models.messages import (
        ROUND_ANSWERS,
        ConsultationInput,
        ConsultationStatus,
        DocumentRef,
        FundingStep,
        FundingTerms,
        LedgerAppend,
        MailingResult,
        MeetingInput,
        MeetingOutcome,
        OutcomeMailing,
        Pledge,
        ProposalInput,
        ProposalState,
        ProposalStatus,
        ReviewRoundInput,
        RevisionInput,
        RoundOutcome,
        RoundPurpose,
        StageReport,
        StageStatus,
        SummitReportMailing,
        WithdrawInput,
        round_answers,
    )
    from models.outcomes import REPORTED, FinalWord, StageWord, final_state, higher_body_follows, round_word
    from models.positions import DecisionRule, Position, SilencePolicy
    from models.process import (
        STAGE_ROLES,
        ConsultationStage,
        DraftingStage,
        EndorsementMode,
        FundingModel,
        FundingStage,
        MemberReviewStage,
        MinisterialStage,
        NoConsensusPolicy,
        NoRecordPolicy,
        SeniorOfficialsStage,
        StageType,
        SummitReportStage,
    )
    from models.roster import Role, Sector
    from models.rules import Verdict
    from models.states import MemberState, members_on
    from models.tokens import consultation_workflow_id, meeting_sitting_workflow_id, round_workflow_id
    from workflows.common import MAIL_HEARTBEAT, MAIL_RETRY, MAIL_TIMEOUT, ledger, ledger_activity
    from workflows.consultation import ConsultationWorkflow
    from workflows.meeting import CARRIED, MeetingWorkflow
    from workflows.membership import members_on_day
    from workflows.review_round import ReviewRoundWorkflow

REVISION = "revision"  # the stage name shown while a text sent back waits for its next version

STAGE_KEY = SearchAttributeKey.for_keyword("AisafeStage")
ROUND_KEY = SearchAttributeKey.for_int("AisafeRound")
LEAD_KEY = SearchAttributeKey.for_keyword("AisafeLeadState")
KIND_KEY = SearchAttributeKey.for_keyword("AisafeKind")

# Runs that reach a coordinator Update since this patch take the workflow's lock for the whole handler (see
# `_serially`); older histories replay the handlers as they ran.
SERIAL_HANDLERS = "serial-coordinator-handlers"
# ASEAN-minus-X rounds opened since this patch ask participate / opt_out / object, and an objection blocks.
MINUS_X_CHARTER = "minus-x-charter"
# Funding stages entered since this patch run two rounds: focal points indicate, ministers' offices confirm; only
# confirmed contributions count, and partners' pledges count toward the target only if the stage says so.
MINISTERS_CONFIRM = "funding-ministers-confirm"
# Proposals that close since this patch end in their deciding body's own word (models/outcomes.py: agreed,
# endorsed, approved, noted, ...); older histories replay ending `adopted` / `not_adopted`.
FINAL_WORDS = "final-words-of-the-bodies"
# Proposals since this patch walk their stages with a cursor that a meeting's referral can move back (to the last
# member review); older histories replay the plain walk, one stage after the other.
STAGE_LOOP = "stage-loop-goes-back"
# Meetings started since this patch decide as meetings (present, decision, paragraph, reservations): absent states
# are consulted ad referendum, `referred_back` returns the text to WG-AI, `not_endorsed` ends the proposal.
MEETING_DECISIONS = "meeting-decisions"

T = TypeVar("T")
Endorsement = SeniorOfficialsStage | MinisterialStage


@dataclass
class StageResult:
    passed: bool
    outcome: str
    expired: bool = False
    details: dict[str, Any] | None = None
    # The deciding body's own word for what it did (a `MeetingDecision` value, or a round's), when it said one.
    decision: str | None = None


@workflow.defn
class ProposalWorkflow:
    @workflow.init
    def __init__(self, proposal: ProposalInput) -> None:
        self._proposal = proposal
        self._stage = "starting"
        self._status = ProposalState.RUNNING
        self._closed_reason: str | None = None
        self._versions: list[DocumentRef] = [proposal.document]
        self._rounds: list[RoundOutcome] = []
        self._round = 0
        self._active_round: ReviewRoundInput | None = None
        self._stage_workflow_id: str | None = None
        self._stage_index = 0
        self._reports = [StageReport(type=stage.type) for stage in proposal.process.stages]
        self._pledges: list[Pledge] = []
        self._submitted = False
        self._withdrawn: str | None = None
        self._started_at = workflow.now()
        self._revision_base = 0  # how many versions there were when the text was sent back for revision
        self._decided_by: StageType | None = None
        self._back_to: int | None = None  # the stage a meeting referred the text back to, until the loop goes there
        self._referrals: dict[int, int] = {}  # stage index -> times its meetings referred the text back
        self._loop_goes_back = False  # the stage loop can return to an earlier stage (STAGE_LOOP)
        # Coordinator Updates change state after awaiting their ledger write; concurrent ones take turns.
        self._lock = asyncio.Lock()

    # --- the process, top to bottom -------------------------------------------------------------------------

    @workflow.run
    async def run(self, proposal: ProposalInput) -> ProposalStatus:
        await ledger_activity("register_proposal", proposal)
        workflow.upsert_search_attributes(
            [LEAD_KEY.value_set(proposal.lead_state.value), KIND_KEY.value_set(proposal.kind)]
        )
        for index, stage in self._stages_in_order(proposal):
            await self._enter_stage(index, stage.type)
            result = await self._run_stage(index, stage)
            await self._end_stage(index, result)
            if self._withdrawn is not None:
                break
            if self._back_to is not None:
                # Referred back: the text is revised, then the stages from the member review on run again.
                if await self._await_revision():
                    continue
                break
            if result.expired:
                self._status = ProposalState.EXPIRED
                self._closed_reason = result.outcome
                break
            if not result.passed:
                self._status = self._final_status(ProposalState.NOT_ADOPTED)
                self._closed_reason = self._closed_reason or result.outcome
                break
        else:
            self._status = self._final_status(ProposalState.ADOPTED)
            self._closed_reason = "every stage passed"

        self._set_stage(self._status.value)
        await workflow.wait_condition(workflow.all_handlers_finished)
        await workflow.execute_activity(
            "send_outcome_mail",
            OutcomeMailing(
                proposal_id=proposal.proposal_id,
                title=proposal.title,
                status=self._status,
                reason=self._closed_reason,
                document=self._versions[-1],
                decided_by=self._decided_by,
                summit_reported=self._summit_reported(),
            ),
            result_type=MailingResult,
            start_to_close_timeout=MAIL_TIMEOUT,
            heartbeat_timeout=MAIL_HEARTBEAT,
            retry_policy=MAIL_RETRY,
        )
        await ledger(
            proposal.proposal_id,
            "proposal_closed",
            f"{proposal.proposal_id}:closed",
            {"status": self._status.value, "reason": self._closed_reason, "rounds": self._round}
            | ({"decided_by": self._decided_by.value} if self._decided_by else {}),
        )
        return self.status()

    def _stages_in_order(self, proposal: ProposalInput) -> Iterator[tuple[int, Any]]:
        """The stages to run, in order; after a referral (`_back_to`) the walk resumes at the stage referred to."""
        stages = proposal.process.stages
        if not workflow.patched(STAGE_LOOP):
            yield from enumerate(stages)
            return
        self._loop_goes_back = True
        index = 0
        while index < len(stages):
            yield index, stages[index]
            if self._back_to is not None:
                index, self._back_to = self._back_to, None
            else:
                index += 1

    async def _run_stage(self, index: int, stage: Any) -> StageResult:
        if isinstance(stage, DraftingStage):
            return await self._drafting()
        if isinstance(stage, ConsultationStage):
            return await self._consultation(index, stage)
        if isinstance(stage, MemberReviewStage):
            return await self._member_review(index, stage)
        if isinstance(stage, SeniorOfficialsStage | MinisterialStage):
            return await self._endorsement(index, stage)
        if isinstance(stage, FundingStage):
            return await self._funding(index, stage)
        if isinstance(stage, SummitReportStage):
            return await self._summit_report(index, stage)
        raise ApplicationError(f"unknown stage type {stage.type}", non_retryable=True)

    # --- stages ------------------------------------------------------------------------------------------------

    async def _drafting(self) -> StageResult:
        await workflow.wait_condition(lambda: self._submitted or self._withdrawn is not None)
        return StageResult(self._withdrawn is None, f"version {self._versions[-1].version} submitted")

    async def _consultation(self, index: int, stage: ConsultationStage) -> StageResult:
        matrix = await self._child(
            ConsultationWorkflow.run,
            ConsultationInput(
                proposal_id=self._proposal.proposal_id,
                title=self._proposal.title,
                stage_index=index,
                document=self._versions[-1],
                sectors=stage.sectors or list(Sector),
                deadline=workflow.now() + stage.deadline,
            ),
            consultation_workflow_id(self._proposal.proposal_id, index),
        )
        if matrix is None:
            return StageResult(False, "withdrawn during the consultation")
        assert isinstance(matrix, ConsultationStatus)

        def tally(counts: dict[str, int]) -> str:
            return ", ".join(f"{n} {d}" for d, n in sorted(counts.items())) or "no comments"

        counts: dict[str, int]
        if matrix.comment_count is not None:
            # The consultation kept its comments by hash in the ledger and hands back only how many it answered:
            # thousands of comments would not fit in this workflow's payloads.
            counts = matrix.dispositions or {}
            return StageResult(
                True,
                f"{matrix.comment_count} comment(s) answered: {tally(counts)}",
                details={"comment_count": matrix.comment_count, "dispositions": counts, "runs": matrix.runs},
            )
        counts = {}
        for comment in matrix.comments:
            counts[str(comment.disposition)] = counts.get(str(comment.disposition), 0) + 1
        return StageResult(
            True,
            f"{len(matrix.comments)} comment(s) answered: {tally(counts)}",
            details={"comments": [c.model_dump(mode="json") for c in matrix.comments]},
        )

    async def _member_review(self, index: int, stage: MemberReviewStage) -> StageResult:
        """Rounds until one passes, max_rounds is spent, or the proposal is withdrawn."""
        for round_in_stage in range(1, stage.max_rounds + 1):
            outcome = await self._round_of(
                index,
                StageType.MEMBER_REVIEW,
                RoundPurpose.REVIEW,
                stage.rule,
                _silence_for(stage.rule, stage.silence),
                stage,
            )
            if outcome is None:
                return StageResult(False, "withdrawn during review")
            if outcome.verdict is Verdict.PASSED:
                return StageResult(
                    True,
                    f"round {outcome.round}: {outcome.reason}",
                    details=_round_details(outcome),
                    decision=self._round_word(index, stage.type, True),
                )
            if outcome.verdict is Verdict.NOT_PASSED:
                # Only a change request or an objection sends the text back; a round nobody carried ends the stage.
                return StageResult(
                    False,
                    f"round {outcome.round}: {outcome.reason}",
                    details=_round_details(outcome),
                    decision=self._round_word(index, stage.type, False),
                )
            # A round the coordinator closed without consensus (only rounds since the round's SILENCE_NOT_CONSENT
            # patch can) goes to revision like a change request, or ends the proposal, as the process says.
            if outcome.verdict is Verdict.NO_CONSENSUS and stage.on_no_consensus is NoConsensusPolicy.END:
                return StageResult(
                    False,
                    f"round {outcome.round}: {outcome.reason}",
                    details=_round_details(outcome),
                    decision=self._round_word(index, stage.type, False),
                )
            if round_in_stage == stage.max_rounds:
                return StageResult(
                    False,
                    f"round {outcome.round}: {outcome.reason}; {stage.max_rounds} round(s) spent",
                    decision=self._round_word(index, stage.type, False),
                )
            if not await self._await_revision():
                return StageResult(False, "withdrawn while awaiting a revision")
            self._set_stage(stage.type.value)
        raise AssertionError("unreachable: the loop returns on its last round")

    async def _endorsement(self, index: int, stage: Endorsement) -> StageResult:
        body = "ADGSOM" if stage.type is StageType.SENIOR_OFFICIALS else "ADGMIN"
        if stage.mode is EndorsementMode.MEETING:
            assert stage.date is not None and stage.chair is not None
            # A proposal whose loop cannot go back (started before STAGE_LOOP) keeps the roll-call meeting.
            decides = self._loop_goes_back and workflow.patched(MEETING_DECISIONS)
            sitting = self._reports[index].passes if decides else 1
            meeting = await self._child(
                MeetingWorkflow.run,
                MeetingInput(
                    proposal_id=self._proposal.proposal_id,
                    title=self._proposal.title,
                    stage_index=index,
                    stage_type=stage.type,
                    date=stage.date,
                    venue=stage.venue,
                    chair=stage.chair,
                    grace=stage.grace,
                    rule=stage.decision_rule,
                    min_participants=stage.min_participants,
                    participants=await self._participants(stage),
                    roles=list(STAGE_ROLES[stage.type]),
                    document=self._versions[-1],
                    decides=decides,
                    sitting=sitting,
                ),
                meeting_sitting_workflow_id(self._proposal.proposal_id, index, sitting),
            )
            if meeting is None:
                return StageResult(False, f"withdrawn before the {body} meeting")
            assert isinstance(meeting, MeetingOutcome)
            if meeting.recorded and meeting.decision is not None:
                return await self._meeting_decided(index, stage, body, meeting)
            if meeting.recorded:
                details = {"meeting": meeting.model_dump(mode="json")}
                passed = meeting.verdict is Verdict.PASSED
                return StageResult(passed, f"{body} meeting: {meeting.reason}", details=details)
            if stage.on_no_record is NoRecordPolicy.EXPIRE:
                return StageResult(False, f"{body} meeting: {meeting.reason}; the proposal expired", expired=True)
            await ledger(
                self._proposal.proposal_id,
                "fallback_ad_referendum",
                f"{self._proposal.proposal_id}:stage-{index}:fallback",
                {"stage": stage.type.value, "reason": meeting.reason},
            )
        # Ad referendum is a silence procedure, also when it stands in for a meeting left unrecorded.
        rule = stage.decision_rule if stage.mode is EndorsementMode.AD_REFERENDUM else DecisionRule.SILENCE
        silence = _silence_for(rule, stage.silence)
        outcome = await self._round_of(index, stage.type, RoundPurpose.AD_REFERENDUM, rule, silence, stage)
        if outcome is None:
            return StageResult(False, f"withdrawn during the {body} ad referendum")
        passed = outcome.verdict is Verdict.PASSED
        return StageResult(
            passed,
            f"{body} ad referendum: {outcome.reason}",
            details=_round_details(outcome),
            decision=self._round_word(index, stage.type, passed),
        )

    async def _meeting_decided(self, index: int, stage: Endorsement, body: str, meeting: MeetingOutcome) -> StageResult:
        """What the Meeting decided: final once any absent state's ad referendum passes; referred back (or an
        absent state's objection) returns the text to WG-AI; not endorsed ends the proposal."""
        assert meeting.decision is not None
        details: dict[str, Any] = {"meeting": meeting.model_dump(mode="json")}
        decision = meeting.decision
        said = f"{body} meeting: {meeting.reason}"
        if decision in CARRIED and meeting.absent:
            # States absent are consulted ad referendum on the decision: a silence procedure, announced as such.
            outcome = await self._round_of(
                index,
                stage.type,
                RoundPurpose.AD_REFERENDUM,
                DecisionRule.SILENCE,
                SilencePolicy.CONCUR,
                stage,
                participants=list(meeting.absent),
                deadline=stage.absent_ad_referendum,
            )
            if outcome is None:
                return StageResult(False, f"withdrawn during the {body} ad referendum of the absent states")
            details["ad_referendum"] = _round_details(outcome)
            if outcome.verdict is not Verdict.PASSED:
                return self._refer_back(
                    index, stage, f"{said}; ad referendum of the absent states: {outcome.reason}", details
                )
            said = f"{said}; ad referendum of the absent states: {outcome.reason}; the decision is final"
        if decision in CARRIED:
            return StageResult(True, said, details=details, decision=decision.value)
        if decision is MeetingDecision.REFERRED_BACK:
            return self._refer_back(index, stage, said, details)
        return StageResult(False, said, details=details, decision=decision.value)

    def _refer_back(self, index: int, stage: Endorsement, said: str, details: dict[str, Any]) -> StageResult:
        """Return the text to WG-AI (its last member review before this stage, else this stage again), unless the
        stage's `max_referrals` are spent: then the proposal ends."""
        referred = self._referrals.get(index, 0)
        decision = MeetingDecision.REFERRED_BACK.value
        if referred >= stage.max_referrals:
            return StageResult(
                False,
                f"{said}; already referred back {referred} time(s), the most this stage allows",
                details=details,
                decision=decision,
            )
        self._referrals[index] = referred + 1
        stages = self._proposal.process.stages
        self._back_to = max((i for i in range(index) if isinstance(stages[i], MemberReviewStage)), default=index)
        return StageResult(
            False,
            f"{said}; returned to WG-AI for revision (referral {referred + 1} of {stage.max_referrals})",
            details=details,
            decision=decision,
        )

    async def _funding(self, index: int, stage: FundingStage) -> StageResult:
        if workflow.patched(MINISTERS_CONFIRM):
            return await self._indicated_then_confirmed(index, stage)
        participants = await self._participants(stage)
        terms = FundingTerms(
            model=stage.model,
            currency=stage.currency,
            budget_target=stage.budget_target,
            expected=_expected_shares(stage, participants),
        )
        outcome = await self._round_of(
            index,
            StageType.FUNDING,
            RoundPurpose.FUNDING,
            stage.rule,
            _silence_for(stage.rule, stage.silence),
            stage,
            terms,
        )
        if outcome is None:
            return StageResult(False, "withdrawn during funding")
        states = {
            s.value: p.amount for s, p in outcome.positions.items() if p.position is Position.CONFIRM and p.amount
        }
        partners = {p.partner: p.amount for p in self._pledges}
        total = sum(states.values(), Decimal(0)) + sum(partners.values(), Decimal(0))
        details = {
            "currency": stage.currency,
            "budget_target": str(stage.budget_target),
            "confirmed_by_states": {s: str(a) for s, a in states.items()},
            "partner_pledges": {p: str(a) for p, a in partners.items()},
            "total": str(total),
            **_round_details(outcome),
        }
        return _funding_result(stage, outcome, total, "pledged", details)

    async def _indicated_then_confirmed(self, index: int, stage: FundingStage) -> StageResult:
        """Focal points indicate contributions subject to domestic clearance; then each indicating state's
        minister's office confirms or declines in a second round. Only confirmed contributions count."""
        participants = await self._participants(stage)
        silence = _silence_for(stage.rule, stage.silence)
        shares = _expected_shares(stage, participants)
        indication = FundingTerms(
            model=stage.model,
            currency=stage.currency,
            budget_target=stage.budget_target,
            expected=shares,
            step=FundingStep.INDICATION,
        )
        indicated = await self._round_of(
            index, StageType.FUNDING, RoundPurpose.FUNDING, stage.rule, silence, stage, indication
        )
        if indicated is None:
            return StageResult(False, "withdrawn during funding")
        amounts = {s: p.amount for s, p in indicated.positions.items() if p.position is Position.INDICATE and p.amount}
        details: dict[str, Any] = {
            "currency": stage.currency,
            "budget_target": str(stage.budget_target),
            "indicated_by_states": {s.value: str(a) for s, a in amounts.items()},
            **_round_details(indicated),
        }
        if indicated.verdict is not Verdict.PASSED or not amounts:
            details |= self._funding_money(stage, {})
            why = indicated.reason if indicated.verdict is not Verdict.PASSED else "no contribution was indicated"
            return StageResult(False, f"funding: {why}", details=details)
        confirmation = indication.model_copy(update={"expected": amounts, "step": FundingStep.CONFIRMATION})
        confirmed = await self._round_of(
            index,
            StageType.FUNDING,
            RoundPurpose.FUNDING,
            stage.rule,
            silence,
            stage,
            confirmation,
            participants=[s for s in participants if s in amounts],
            roles=[Role.MINISTER_OFFICE],
        )
        if confirmed is None:
            return StageResult(False, "withdrawn while ministers' offices confirm the contributions")
        states = {
            s.value: p.amount for s, p in confirmed.positions.items() if p.position is Position.CONFIRM and p.amount
        }
        details |= {
            "not_confirmed": [s.value for s in amounts if s.value not in states],
            **self._funding_money(stage, states),
            **_round_details(confirmed),
            "indication_round": indicated.round,
        }
        return _funding_result(stage, confirmed, Decimal(details["total"]), "confirmed", details)

    def _funding_money(self, stage: FundingStage, confirmed: dict[str, Decimal]) -> dict[str, Any]:
        """The core budget (states' confirmed contributions) and the trust fund (partners' pledges), apart."""
        core = sum(confirmed.values(), Decimal(0))
        trust_fund = sum((p.amount for p in self._pledges), Decimal(0))
        counted = core + trust_fund if stage.partner_pledges_count else core
        return {
            "confirmed_by_states": {s: str(a) for s, a in confirmed.items()},
            "core_total": str(core),
            "partner_pledges": {p.partner: str(p.amount) for p in self._pledges},
            "trust_fund": [
                {"partner": p.partner, "amount": str(p.amount), "activities": list(p.activities)} for p in self._pledges
            ],
            "trust_fund_total": str(trust_fund),
            "partner_pledges_count": stage.partner_pledges_count,
            "total": str(counted),
        }

    async def _summit_report(self, index: int, stage: SummitReportStage) -> StageResult:
        """Tell the contact for the Leaders, and record that the proposal is reported to the ASEAN Summit."""
        word = final_state(self._stage_words())
        mailed = await workflow.execute_activity(
            "send_summit_report",
            SummitReportMailing(
                proposal_id=self._proposal.proposal_id,
                title=self._proposal.title,
                stage_index=index,
                status=word.status,
                decided_by=word.decided_by,
                summit=stage.summit,
                document=self._versions[-1],
            ),
            result_type=MailingResult,
            start_to_close_timeout=MAIL_TIMEOUT,
            heartbeat_timeout=MAIL_HEARTBEAT,
            retry_policy=MAIL_RETRY,
        )
        await ledger(
            self._proposal.proposal_id,
            "summit_reported",
            f"{self._proposal.proposal_id}:stage-{index}:summit-reported",
            {
                "index": index,
                "summit": stage.summit,
                "status": word.status.value,
                "decided_by": word.decided_by.value if word.decided_by else None,
                "sha256": self._versions[-1].sha256,
                "notified": mailed.sent + mailed.already_sent,
            },
        )
        where = stage.summit or "the ASEAN Summit"
        if mailed.sent + mailed.already_sent == 0:
            return StageResult(
                True, f"reported to {where}; the roster has no contact for the Leaders", decision=REPORTED
            )
        return StageResult(True, f"reported to {where}", decision=REPORTED)

    # --- the final word ----------------------------------------------------------------------------------------

    def _round_word(self, index: int, stage_type: StageType, passed: bool) -> str:
        types = [s.type for s in self._proposal.process.stages]
        return round_word(stage_type, passed, higher_body_follows(types, index))

    def _stage_words(self) -> list[StageWord]:
        ended = (StageStatus.PASSED, StageStatus.FAILED)
        return [
            StageWord(r.type, r.status is StageStatus.PASSED, r.decision) for r in self._reports if r.status in ended
        ]

    def _final_status(self, unpatched: ProposalState) -> ProposalState:
        """The body's own word for how the proposal ended (models/outcomes.py); `adopted` / `not_adopted` for
        histories from before FINAL_WORDS."""
        if not workflow.patched(FINAL_WORDS):
            return unpatched
        word: FinalWord = final_state(self._stage_words())
        self._decided_by = word.decided_by
        return word.status

    def _summit_reported(self) -> bool:
        return any(r.type is StageType.SUMMIT_REPORT and r.status is StageStatus.PASSED for r in self._reports)

    # --- rounds, children and revisions ------------------------------------------------------------------------

    async def _round_of(
        self,
        index: int,
        stage_type: StageType,
        purpose: RoundPurpose,
        rule: DecisionRule,
        silence: SilencePolicy,
        stage: MemberReviewStage | Endorsement | FundingStage,
        funding: FundingTerms | None = None,
        *,
        participants: list[MemberState] | None = None,
        roles: list[Role] | None = None,
        deadline: timedelta | None = None,
    ) -> RoundOutcome | None:
        """Run one round of state answers as a child; None if the proposal was withdrawn meanwhile."""
        self._round += 1
        self._set_stage(stage_type.value)
        round_input = ReviewRoundInput(
            proposal_id=self._proposal.proposal_id,
            title=self._proposal.title,
            round=self._round,
            stage_type=stage_type,
            purpose=purpose,
            rule=rule,
            silence=silence,
            min_participants=stage.min_participants,
            # A shorter deadline than the stage's (the absent states' ad referendum) keeps the reminders that fit.
            reminders=stage.reminders if deadline is None else [r for r in stage.reminders if r < deadline],
            allowed=self._answers(purpose, rule, funding),
            roles=roles or list(STAGE_ROLES[stage_type]),
            document=self._versions[-1],
            previous_document=self._versions[-2] if len(self._versions) > 1 else None,
            participants=participants or await self._participants(stage),
            deadline=workflow.now() + (deadline or stage.deadline),
            funding=funding,
        )
        self._active_round = round_input
        self._reports[index].rounds.append(self._round)
        outcome = await self._child(
            ReviewRoundWorkflow.run, round_input, round_workflow_id(self._proposal.proposal_id, self._round)
        )
        self._active_round = None
        if outcome is not None:
            assert isinstance(outcome, RoundOutcome)
            self._rounds.append(outcome)
        return outcome

    def _answers(self, purpose: RoundPurpose, rule: DecisionRule, funding: FundingTerms | None) -> list[Position]:
        """The answers a new round offers; an ASEAN-minus-X round asks participate / opt out / object since
        MINUS_X_CHARTER (rounds before it asked approve / object, and replay so)."""
        if funding is not None and funding.step is not None:
            return round_answers(purpose, rule, funding.step)
        if (
            rule is DecisionRule.ASEAN_MINUS_X
            and purpose is not RoundPurpose.FUNDING
            and workflow.patched(MINUS_X_CHARTER)
        ):
            return round_answers(purpose, rule)
        return ROUND_ANSWERS[purpose]

    async def _child(self, run: Callable[[Any, Any], Awaitable[T]], arg: Any, child_id: str) -> T | None:
        """Start a child and wait for it, or cancel it if the proposal is withdrawn first (then None)."""
        self._stage_workflow_id = child_id
        self._reports[self._stage_index].workflow_id = child_id
        handle = await workflow.start_child_workflow(run, arg, id=child_id)  # type: ignore[arg-type]
        await workflow.wait_condition(lambda: handle.done() or self._withdrawn is not None)
        self._stage_workflow_id = None
        if not handle.done():
            handle.cancel()
            await workflow.wait_condition(handle.done)
            return None
        return handle.result()  # type: ignore[no-any-return]

    async def _await_revision(self) -> bool:
        self._set_stage(REVISION)
        self._revision_base = versions = len(self._versions)
        await workflow.wait_condition(lambda: len(self._versions) > versions or self._withdrawn is not None)
        return self._withdrawn is None

    async def _participants(self, stage: MemberReviewStage | Endorsement | FundingStage) -> list[MemberState]:
        """The stage's own participants, or the members on the day the round or meeting opens."""
        if stage.participants:
            return stage.participants
        # Runs from before this patch read the built-in membership dates; since, membership is data (a state
        # admitted with `aisafe members admit` takes part from its effective date).
        if workflow.patched("members-from-table"):
            return await members_on_day(workflow.now().date())
        return members_on(workflow.now().date())

    async def _enter_stage(self, index: int, stage_type: StageType) -> None:
        self._stage_index = index
        self._set_stage(stage_type.value)
        report = self._reports[index]
        if report.status is not StageStatus.PENDING:  # a stage run again after a referral: its own entries
            report.passes += 1
        report.status, report.started_at = StageStatus.RUNNING, workflow.now()
        payload: dict[str, Any] = {"index": index, "stage": stage_type.value}
        if report.passes > 1:
            payload["pass"] = report.passes
        await ledger(
            self._proposal.proposal_id,
            "stage_started",
            f"{self._proposal.proposal_id}:{stage_key(index, report.passes)}",
            payload,
        )

    async def _end_stage(self, index: int, result: StageResult) -> None:
        report = self._reports[index]
        if self._withdrawn is not None:
            report.status = StageStatus.CANCELLED
        else:
            report.status = StageStatus.PASSED if result.passed else StageStatus.FAILED
            if self._back_to is not None:
                report.status = StageStatus.REFERRED_BACK
        report.outcome, report.ended_at, report.details = result.outcome, workflow.now(), result.details or {}
        report.decision = result.decision
        await ledger(
            self._proposal.proposal_id,
            "stage_ended",
            f"{self._proposal.proposal_id}:{stage_key(index, report.passes)}:ended",
            {"index": index, "stage": report.type.value, "status": report.status.value, "outcome": result.outcome}
            | ({"decision": result.decision} if result.decision else {}),
        )

    def _set_stage(self, stage: str) -> None:
        self._stage = stage
        workflow.upsert_search_attributes([STAGE_KEY.value_set(stage), ROUND_KEY.value_set(self._round)])

    # --- coordinator updates -----------------------------------------------------------------------------------

    async def _serially(self, check: Callable[[], None], step: Callable[[bool], Awaitable[T]]) -> T:
        """Run a coordinator step under the workflow's lock, checking again first that it is still allowed.

        Each step awaits its ledger write before it changes state, so two steps accepted at the same moment
        would both compute from the state before either (two "version 2"s under one ledger key). Under the
        lock they take turns, in the order accepted, and each one sees what the ones before it did: a step the
        earlier ones made impossible (a second withdrawal, a revision after the submission) is refused. The step
        writes its entry with a regular activity, so only once the Update's acceptance is in the history.
        """
        if not workflow.patched(SERIAL_HANDLERS):
            return await step(False)
        async with self._lock:
            check()
            return await step(True)

    @workflow.update
    async def revise(self, revision: RevisionInput) -> DocumentRef:
        return await self._serially(lambda: self._check_revision(revision), lambda after: self._revise(revision, after))

    async def _revise(self, revision: RevisionInput, after_accept: bool) -> DocumentRef:
        document = DocumentRef(
            sha256=revision.sha256,
            version=len(self._versions) + 1,
            filename=revision.filename,
            size=revision.size,
        )
        await ledger_activity(
            "record_version",
            LedgerAppend(
                proposal_id=self._proposal.proposal_id,
                kind="version_uploaded",
                idempotency_key=f"{self._proposal.proposal_id}:version-{document.version}",
                payload={"document": document.model_dump(mode="json")},
            ),
            after_accept=after_accept,
        )
        self._versions.append(document)
        return document

    @revise.validator
    def _check_revision(self, revision: RevisionInput) -> None:
        self._require_running()
        drafting = self._stage == StageType.DRAFTING.value and not self._submitted
        awaited = self._stage == REVISION and len(self._versions) == self._revision_base
        if not (drafting or awaited):
            state = "its next stage" if self._stage in (StageType.DRAFTING.value, REVISION) else self._stage
            raise ApplicationError(
                f"a new version can be uploaded only in drafting or after changes were requested "
                f"(the proposal is in {state})",
                type="NotRevisable",
            )
        if revision.sha256 == self._versions[-1].sha256:
            raise ApplicationError("this text is identical to the current version", type="SameVersion")

    @workflow.update
    async def submit(self) -> str:
        return await self._serially(self._check_submit, self._submit)

    async def _submit(self, after_accept: bool) -> str:
        current = self._versions[-1]
        await ledger(
            self._proposal.proposal_id,
            "submitted",
            f"{self._proposal.proposal_id}:submitted",
            {"version": current.version, "sha256": current.sha256},
            after_accept=after_accept,
        )
        self._submitted = True
        return current.sha256

    @submit.validator
    def _check_submit(self) -> None:
        self._require_running()
        if self._stage != StageType.DRAFTING.value or self._submitted:
            stage = "its next stage" if self._submitted else self._stage
            raise ApplicationError(
                f"only a proposal in drafting can be submitted (it is in {stage})", type="NotInDrafting"
            )

    @workflow.update
    async def pledge(self, pledge: Pledge) -> Pledge:
        return await self._serially(lambda: self._check_pledge(pledge), lambda after: self._pledge(pledge, after))

    async def _pledge(self, pledge: Pledge, after_accept: bool) -> Pledge:
        recorded = pledge.model_copy(update={"recorded_at": workflow.now()})
        await ledger(
            self._proposal.proposal_id,
            "partner_pledge",
            f"{self._proposal.proposal_id}:pledge-{len(self._pledges) + 1}",
            recorded.model_dump(mode="json"),
            after_accept=after_accept,
        )
        self._pledges.append(recorded)
        return recorded

    @pledge.validator
    def _check_pledge(self, pledge: Pledge) -> None:
        self._require_running()
        funding = [(i, s) for i, s in enumerate(self._proposal.process.stages) if isinstance(s, FundingStage)]
        if not funding:
            raise ApplicationError("this proposal has no funding stage", type="NoFundingStage")
        index, stage = funding[-1]
        if self._reports[index].status not in (StageStatus.PENDING, StageStatus.RUNNING):
            raise ApplicationError("the funding stage has closed", type="FundingClosed")
        if pledge.currency and pledge.currency != stage.currency:
            raise ApplicationError(f"pledges are in {stage.currency}, not {pledge.currency}", type="WrongCurrency")

    @workflow.update
    async def withdraw(self, request: WithdrawInput) -> ProposalStatus:
        return await self._serially(lambda: self._check_withdraw(request), lambda after: self._withdraw(request, after))

    async def _withdraw(self, request: WithdrawInput, after_accept: bool) -> ProposalStatus:
        await ledger(
            self._proposal.proposal_id,
            "withdrawn",
            f"{self._proposal.proposal_id}:withdrawn",
            {"reason": request.reason, "stage": self._stage, "round": self._round},
            after_accept=after_accept,
        )
        self._withdrawn = request.reason
        self._status = ProposalState.WITHDRAWN
        self._closed_reason = f"withdrawn: {request.reason}"
        return self.status()

    @withdraw.validator
    def _check_withdraw(self, request: WithdrawInput) -> None:
        self._require_running()

    def _require_running(self) -> None:
        if self._status is not ProposalState.RUNNING or self._withdrawn is not None:
            raise ApplicationError(f"the proposal is {self._status.value}", type="ProposalClosed")

    @workflow.query
    def status(self) -> ProposalStatus:
        """The live status; positions of an open round are filled in by the caller from the round itself."""
        last = self._rounds[-1] if self._rounds else None
        positions = {s: p.position for s, p in last.positions.items()} if last and not self._active_round else {}
        return ProposalStatus(
            id=self._proposal.proposal_id,
            title=self._proposal.title,
            kind=self._proposal.kind,
            lead_state=self._proposal.lead_state,
            stage=self._stage,
            status=self._status,
            round=self._round,
            deadline=self._active_round.deadline if self._active_round else None,
            positions=positions,
            document=self._versions[-1],
            versions=list(self._versions),
            rounds=list(self._rounds),
            round_workflow_id=(
                round_workflow_id(self._proposal.proposal_id, self._active_round.round) if self._active_round else None
            ),
            started_at=self._started_at,
            closed_reason=self._closed_reason,
            stages=[r.model_copy() for r in self._reports],
            stage_workflow_id=self._stage_workflow_id if not self._active_round else None,
            pledges=list(self._pledges),
            decided_by=self._decided_by,
            summit_reported=self._summit_reported(),
        )


def stage_key(index: int, passes: int) -> str:
    """A stage's ledger key: `stage-4`, and `stage-4:pass-2` for its second run after a referral."""
    return f"stage-{index}" if passes == 1 else f"stage-{index}:pass-{passes}"


def _silence_for(rule: DecisionRule, policy: SilencePolicy) -> SilencePolicy:
    """Under the silence rule a state that says nothing concurs, whatever the stage's silence policy."""
    return SilencePolicy.CONCUR if rule is DecisionRule.SILENCE else policy


def _round_details(outcome: RoundOutcome) -> dict[str, Any]:
    details: dict[str, Any] = {"round": outcome.round, "verdict": outcome.verdict.value}
    if outcome.reservations:
        details["reservations"] = {s.value: r for s, r in outcome.reservations.items()}
    if outcome.participating is not None:
        details["participating"] = [s.value for s in outcome.participating]
    return details


def _funding_result(
    stage: FundingStage, outcome: RoundOutcome, total: Decimal, counted_as: str, details: dict[str, Any]
) -> StageResult:
    """The funding stage's end: the round's verdict first, then whether the money counted meets the target."""
    money = f"{total:,.2f} of {stage.budget_target:,.2f} {stage.currency} {counted_as}"
    if outcome.verdict is not Verdict.PASSED:
        return StageResult(False, f"funding: {outcome.reason}; {money}", details=details)
    if total < stage.budget_target:
        short = stage.budget_target - total
        return StageResult(False, f"funding: {money}, short by {short:,.2f}", details=details)
    return StageResult(True, f"funding approved: {outcome.reason}; {money}", details=details)


def _expected_shares(stage: FundingStage, participants: list[MemberState]) -> dict[MemberState, Decimal]:
    """Each state's share of the target: equal, tiered by percent, or none (voluntary pledges)."""
    cent = Decimal("0.01")
    if stage.model is FundingModel.VOLUNTARY or not participants:
        return {}
    if stage.model is FundingModel.TIERED:
        assert stage.shares is not None
        exact = {s: stage.budget_target * stage.shares.get(s, Decimal(0)) / 100 for s in participants}
    else:
        exact = dict.fromkeys(participants, stage.budget_target / len(participants))
    shares = {s: a.quantize(cent, rounding=ROUND_DOWN) for s, a in exact.items()}
    # Rounding down to cents leaves a few cents over; the first state carries them so the total is exact.
    shares[participants[0]] += sum(exact.values(), Decimal(0)).quantize(cent) - sum(shares.values(), Decimal(0))
    return {s: a for s, a in shares.items() if a > 0}
