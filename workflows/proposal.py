"""A proposal's life: drafting, member review in rounds (revised between them), and its outcome."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        DocumentRef,
        LedgerAppend,
        LedgerReceipt,
        ProposalInput,
        ProposalState,
        ProposalStatus,
        ReviewRoundInput,
        RevisionInput,
        RoundOutcome,
        WithdrawInput,
    )
    from models.process import DraftingStage, MemberReviewStage, StageType
    from models.rules import Verdict
    from models.states import members_on
    from models.tokens import round_workflow_id
    from workflows.common import LEDGER_RETRY, LEDGER_TIMEOUT, ledger
    from workflows.review_round import ReviewRoundWorkflow

REVISION = "revision"  # the stage name shown while a rejected text waits for its next version


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
        self._submitted = False
        self._withdrawn: str | None = None
        self._started_at = workflow.now()

    @workflow.run
    async def run(self, proposal: ProposalInput) -> ProposalStatus:
        await workflow.execute_activity(
            "register_proposal",
            proposal,
            result_type=LedgerReceipt,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
        )
        for index, stage in enumerate(proposal.process.stages):
            await self._enter_stage(index, stage.type)
            if isinstance(stage, DraftingStage):
                passed = await self._drafting()
            else:
                passed = await self._member_review(stage)
            if self._withdrawn is not None:
                break
            if not passed:
                self._status = ProposalState.NOT_ADOPTED
                break
        else:
            self._status = ProposalState.ADOPTED
            self._closed_reason = "every stage passed"

        self._stage = self._status.value
        await workflow.wait_condition(workflow.all_handlers_finished)
        await ledger(
            proposal.proposal_id,
            "proposal_closed",
            f"{proposal.proposal_id}:closed",
            {"status": self._status.value, "reason": self._closed_reason, "rounds": self._round},
        )
        return self.status()

    async def _enter_stage(self, index: int, stage_type: StageType) -> None:
        self._stage = stage_type.value
        await ledger(
            self._proposal.proposal_id,
            "stage_started",
            f"{self._proposal.proposal_id}:stage-{index}",
            {"index": index, "stage": stage_type.value},
        )

    async def _drafting(self) -> bool:
        await workflow.wait_condition(lambda: self._submitted or self._withdrawn is not None)
        return self._withdrawn is None

    async def _member_review(self, stage: MemberReviewStage) -> bool:
        """Run rounds until one passes, max_rounds is spent, or the proposal is withdrawn."""
        for round_in_stage in range(1, stage.max_rounds + 1):
            self._round += 1
            now = workflow.now()
            round_input = ReviewRoundInput(
                proposal_id=self._proposal.proposal_id,
                title=self._proposal.title,
                round=self._round,
                stage=stage,
                document=self._versions[-1],
                participants=stage.participants or members_on(now.date()),
                deadline=now + stage.deadline,
            )
            self._active_round = round_input
            handle = await workflow.start_child_workflow(
                ReviewRoundWorkflow.run,
                round_input,
                id=round_workflow_id(self._proposal.proposal_id, self._round),
            )
            await workflow.wait_condition(lambda h=handle: h.done() or self._withdrawn is not None)
            if not handle.done():
                handle.cancel()
                await workflow.wait_condition(handle.done)
                self._active_round = None
                return False
            outcome = handle.result()
            self._rounds.append(outcome)
            self._active_round = None
            if outcome.verdict is Verdict.PASSED:
                return True
            if round_in_stage == stage.max_rounds:
                self._closed_reason = f"round {self._round}: {outcome.reason}; {stage.max_rounds} round(s) spent"
                return False
            if not await self._await_revision():
                return False
            self._stage = stage.type.value
        return False

    async def _await_revision(self) -> bool:
        self._stage = REVISION
        versions = len(self._versions)
        await workflow.wait_condition(lambda: len(self._versions) > versions or self._withdrawn is not None)
        return self._withdrawn is None

    @workflow.update
    async def revise(self, revision: RevisionInput) -> DocumentRef:
        document = DocumentRef(
            sha256=revision.sha256,
            version=len(self._versions) + 1,
            filename=revision.filename,
            size=revision.size,
        )
        await workflow.execute_activity(
            "record_version",
            LedgerAppend(
                proposal_id=self._proposal.proposal_id,
                kind="version_uploaded",
                idempotency_key=f"{self._proposal.proposal_id}:version-{document.version}",
                payload={"document": document.model_dump(mode="json")},
            ),
            result_type=LedgerReceipt,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
        )
        self._versions.append(document)
        return document

    @revise.validator
    def _check_revision(self, revision: RevisionInput) -> None:
        self._require_running()
        if self._stage not in (StageType.DRAFTING.value, REVISION):
            raise ApplicationError(
                f"a new version can be uploaded only in drafting or after changes were requested "
                f"(the proposal is in {self._stage})",
                type="NotRevisable",
            )
        if revision.sha256 == self._versions[-1].sha256:
            raise ApplicationError("this text is identical to the current version", type="SameVersion")

    @workflow.update
    async def submit(self) -> str:
        await ledger(
            self._proposal.proposal_id,
            "submitted",
            f"{self._proposal.proposal_id}:submitted",
            {
                "version": self._versions[-1].version,
                "sha256": self._versions[-1].sha256,
            },
        )
        self._submitted = True
        return self._versions[-1].sha256

    @submit.validator
    def _check_submit(self) -> None:
        self._require_running()
        if self._stage != StageType.DRAFTING.value or self._submitted:
            raise ApplicationError(
                f"only a proposal in drafting can be submitted (it is in {self._stage})", type="NotInDrafting"
            )

    @workflow.update
    async def withdraw(self, request: WithdrawInput) -> ProposalStatus:
        await ledger(
            self._proposal.proposal_id,
            "withdrawn",
            f"{self._proposal.proposal_id}:withdrawn",
            {"reason": request.reason, "stage": self._stage, "round": self._round},
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
        )
