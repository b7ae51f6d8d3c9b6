"""The workflow test harness: a worker with fake activities on the time-skipping server, and helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.messages import (
    CommentReceipt,
    CommentSubmission,
    ConsultationStatus,
    DocumentRef,
    MeetingMailing,
    MeetingOutcome,
    PositionReceipt,
    PositionSubmission,
    ProposalInput,
    ProposalStatus,
    RoundStatus,
)
from models.positions import Position
from models.process import MemberReviewStage, ProcessDefinition
from models.roster import Sector
from models.states import MemberState, in_name_order
from models.temporal_client import proposal_status
from models.tokens import consultation_workflow_id, meeting_workflow_id, round_workflow_id
from tests.fakes import FakeBackend
from workflows.consultation import ConsultationWorkflow
from workflows.meeting import MeetingWorkflow
from workflows.proposal import ProposalWorkflow
from workflows.review_round import ReviewRoundWorkflow

ALL = in_name_order(MemberState)  # the order rounds list participants in
DOC1 = DocumentRef(sha256="a" * 64, version=1, filename="v1.md", size=10)


@dataclass
class Harness:
    client: Client
    env: WorkflowEnvironment
    task_queue: str
    backend: FakeBackend

    async def start(self, *stages: Any) -> WorkflowHandle[ProposalWorkflow, ProposalStatus]:
        proposal_id = f"p-{uuid.uuid4().hex[:10]}"
        return await self.client.start_workflow(
            ProposalWorkflow.run,
            ProposalInput(
                proposal_id=proposal_id,
                title="ASEAN AI SAFE Operational Framework",
                kind="operational_framework",
                lead_state=MemberState.MY,
                process=ProcessDefinition(stages=list(stages)),
                document=DOC1,
            ),
            id=proposal_id,
            task_queue=self.task_queue,
        )

    async def result(self, handle: WorkflowHandle[Any, ProposalStatus]) -> ProposalStatus:
        """The workflow's result, moving the server's clock a day at a time until the workflow has closed.

        We never wait on `handle.result()` while the clock is pushed: its automatic time skipping stalled
        under load, and pushing the clock while it waited wedged the time-skipping server for every later
        test (CI, 2026-11-27). One clock mover at a time, and we look between the steps.
        """
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await self.env.sleep(timedelta(days=1))
        return await handle.result()

    async def round_open(self, proposal_id: str, number: int) -> ProposalStatus:
        """Wait until round `number` has started and sent its invitations."""
        for _ in range(200):
            status = await proposal_status(self.client, proposal_id)
            invited = any(
                m.proposal_id == proposal_id and m.round == number and m.step == "invitation"
                for m in self.backend.mailings
            )
            if status.round == number and status.round_workflow_id and invited:
                return status
            await asyncio.sleep(0.05)
        raise AssertionError(f"round {number} of {proposal_id} did not open")

    async def answer(
        self,
        proposal_id: str,
        number: int,
        state: MemberState,
        position: Position,
        reason: str | None = None,
        *,
        sha256: str | None = None,
        update_id: str | None = None,
        delegate_id: str | None = None,
        amount: Decimal | None = None,
    ) -> PositionReceipt:
        status = await proposal_status(self.client, proposal_id)
        return await self.client.get_workflow_handle(round_workflow_id(proposal_id, number)).execute_update(
            ReviewRoundWorkflow.submit_position,
            PositionSubmission(
                proposal_id=proposal_id,
                round=number,
                state=state,
                delegate_id=delegate_id or f"{state.value}-delegate",
                document_sha256=sha256 or status.document.sha256,
                position=position,
                reason=reason,
                amount=amount,
            ),
            id=update_id,
        )

    def positions_recorded(self, proposal_id: str) -> int:
        return self.backend.kinds(proposal_id).count("position")

    async def until(
        self, proposal_id: str, holds: Callable[[ProposalStatus], bool], what: str = "the condition"
    ) -> ProposalStatus:
        """Poll the proposal's own status query until `holds` is true; fail after a few seconds."""
        handle = self.client.get_workflow_handle_for(ProposalWorkflow.run, proposal_id)
        for _ in range(200):
            status = await handle.query(ProposalWorkflow.status)
            if holds(status):
                return status
            await asyncio.sleep(0.025)
        raise AssertionError(f"{proposal_id}: {what} did not come about (stage {status.stage}, {status.status})")

    async def consultation_open(self, proposal_id: str, index: int) -> ConsultationStatus:
        """Wait until the consultation of stage `index` has started and mailed its invitations."""
        await self.until(
            proposal_id,
            lambda s: s.stage_workflow_id == consultation_workflow_id(proposal_id, index),
            "the consultation",
        )
        for _ in range(200):
            if any(m.proposal_id == proposal_id and m.step == "invitation" for m in self.backend.consultation_mailings):
                return await self.consultation(proposal_id, index).query(ConsultationWorkflow.status)
            await asyncio.sleep(0.025)
        raise AssertionError(f"the consultation of {proposal_id} sent no invitation")

    def consultation(self, proposal_id: str, index: int) -> WorkflowHandle[ConsultationWorkflow, ConsultationStatus]:
        return self.client.get_workflow_handle_for(
            ConsultationWorkflow.run, consultation_workflow_id(proposal_id, index)
        )

    async def comment(
        self,
        proposal_id: str,
        index: int,
        text: str,
        sector: Sector = Sector.CIVIL_SOCIETY,
        *,
        stakeholder_id: str = "s-civil-1",
    ) -> CommentReceipt:
        return await self.consultation(proposal_id, index).execute_update(
            ConsultationWorkflow.submit_comment,
            CommentSubmission(
                proposal_id=proposal_id,
                stage_index=index,
                stakeholder_id=stakeholder_id,
                sector=sector,
                document_sha256=DOC1.sha256,
                text_sha256=self.backend.store_comment_body(text),
                text_length=len(text),
            ),
        )

    async def meeting_invited(self, proposal_id: str, index: int) -> MeetingMailing:
        """Wait until the meeting of stage `index` has sent its invitations; returns the invitation."""
        await self.until(
            proposal_id, lambda s: s.stage_workflow_id == meeting_workflow_id(proposal_id, index), "the meeting"
        )
        for _ in range(200):
            for mailing in self.backend.meeting_mailings:
                if mailing.proposal_id == proposal_id and mailing.stage_index == index and mailing.step == "invitation":
                    return mailing
            await asyncio.sleep(0.025)
        raise AssertionError(f"the meeting of {proposal_id} sent no invitation")

    def meeting(self, proposal_id: str, index: int) -> WorkflowHandle[MeetingWorkflow, MeetingOutcome]:
        return self.client.get_workflow_handle_for(MeetingWorkflow.run, meeting_workflow_id(proposal_id, index))

    async def round_status(self, proposal_id: str, number: int) -> RoundStatus:
        handle = self.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(proposal_id, number))
        return await handle.query(ReviewRoundWorkflow.status)


@pytest.fixture
async def harness(time_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    backend = FakeBackend()
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[ProposalWorkflow, ReviewRoundWorkflow, ConsultationWorkflow, MeetingWorkflow],
        activities=backend.activities(),
    ):
        yield Harness(time_env.client, time_env, task_queue, backend)


def review(**overrides: object) -> MemberReviewStage:
    return MemberReviewStage.model_validate(
        {"deadline": timedelta(days=14), "reminders": [timedelta(days=7), timedelta(days=1)]} | overrides
    )


async def everyone(
    h: Harness, pid: str, number: int, position: Position = Position.APPROVE, **special: Position
) -> None:
    for state in ALL:
        chosen = special.get(state.value, position)
        await h.answer(pid, number, state, chosen, "because" if chosen.needs_reason else None)
