"""The round's controls sent at the same moment on the real dev server, while the ledger is slow: every accepted
extension is in the ledger once under its own Update, each on top of the ones before it, and the bundle verifies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

import operations
from devstack.demo import wait_for
from devstack.stack import EmbeddedStack
from models.messages import ExtendInput, WithdrawInput
from tests.test_concurrency import (
    AT_ONCE,
    REVIEW,
    accepted_and_refused,
    all_accepted_while_stalled,
    kinds,
    launch,
    proposal_file,
    verified,
)
from tests.test_integration import make_stack
from workflows.proposal import ProposalWorkflow
from workflows.review_round import ReviewRoundWorkflow


@pytest.fixture
async def stack(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[EmbeddedStack]:
    stack = await make_stack(tmp_path, dev_env)
    yield stack
    await stack.stop()


async def test_concurrent_extensions_of_a_round_are_each_recorded_once_and_add_up(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    assert stack.client
    proposal_id = await launch(stack, proposal_file(tmp_path / "p", REVIEW))

    async def invited() -> bool:
        return bool(kinds(stack, proposal_id, "mail_outcome"))

    await wait_for(invited, "the round's invitations")
    status = await operations.status(stack.client, proposal_id)
    assert status.round_workflow_id and status.deadline

    results = await all_accepted_while_stalled(
        stack,
        proposal_id,
        status.round_workflow_id,
        ReviewRoundWorkflow.extend_round,
        [(ExtendInput(by=timedelta(hours=1)),)] * AT_ONCE,
    )

    extended, refused = accepted_and_refused(results)
    assert refused == [] and len(extended) == AT_ONCE
    assert sorted(r.deadline for r in extended) == [status.deadline + timedelta(hours=n) for n in range(1, 9)]
    entries = kinds(stack, proposal_id, "round_extended")
    assert len(entries) == AT_ONCE and len({e.idempotency_key for e in entries}) == AT_ONCE
    assert sorted(json.loads(e.payload_json)["step"] for e in entries) == sorted(f"extended-{n}" for n in range(1, 9))
    assert {e.entry_hash for e in entries} == {r.ledger_entry_hash for r in extended}
    shown = await operations.status(stack.client, proposal_id)
    assert shown.deadline == status.deadline + timedelta(hours=AT_ONCE)

    await stack.client.get_workflow_handle(proposal_id).execute_update(
        ProposalWorkflow.withdraw, WithdrawInput(reason="the test is done")
    )
    await stack.client.get_workflow_handle(proposal_id).result()
    await verified(stack, proposal_id, tmp_path / "bundle")
