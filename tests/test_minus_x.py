"""ASEAN-minus-X as the Charter has it (Art. 21(2)), on the time-skipping server: a round asks each state to
participate, opt out (not join, not block) or object (block); it passes with enough participants and no objection."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models.messages import ProposalState, RevisionInput
from models.positions import DecisionRule, Position
from models.process import MemberReviewStage
from models.rules import Verdict
from models.states import MemberState
from tests.harness import Harness, review
from workflows.proposal import ProposalWorkflow

MY, SG, TH, VN = MemberState.MY, MemberState.SG, MemberState.TH, MemberState.VN
FOUR = [MY, SG, TH, VN]


def minus_x(**overrides: object) -> MemberReviewStage:
    return review(rule=DecisionRule.ASEAN_MINUS_X, min_participants=3, participants=FOUR, **overrides)


async def test_a_minus_x_round_asks_participate_opt_out_or_object_and_passes_with_an_opt_out(harness: Harness) -> None:
    handle = await harness.start(minus_x())
    await harness.round_open(handle.id, 1)
    assert (await harness.round_status(handle.id, 1)).allowed == [
        Position.PARTICIPATE,
        Position.OPT_OUT,
        Position.OBJECT,
    ]
    invitation = next(m for m in harness.backend.mailings if m.proposal_id == handle.id and m.step == "invitation")
    assert invitation.allowed == [Position.PARTICIPATE, Position.OPT_OUT, Position.OBJECT]
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await harness.answer(handle.id, 1, MY, Position.APPROVE)
    assert isinstance(refused.value.cause, ApplicationError) and refused.value.cause.type == "PositionNotAllowed"

    for state in (MY, SG, TH):
        await harness.answer(handle.id, 1, state, Position.PARTICIPATE)
    await harness.answer(handle.id, 1, VN, Position.OPT_OUT)  # no reason needed: opting out does not block
    result = await harness.result(handle)

    assert result.status is ProposalState.AGREED
    outcome = result.rounds[0]
    assert outcome.verdict is Verdict.PASSED
    assert outcome.participating == [MY, SG, TH]
    assert outcome.reason == "ASEAN-minus-X: MY, SG, TH participate; VN opted out"
    assert result.stages[0].details["participating"] == ["MY", "SG", "TH"]


async def test_one_objection_blocks_a_minus_x_round_and_sends_the_text_back(harness: Harness) -> None:
    handle = await harness.start(minus_x(max_rounds=2))
    await harness.round_open(handle.id, 1)
    for state in (MY, SG, TH):
        await harness.answer(handle.id, 1, state, Position.PARTICIPATE)
    await harness.answer(handle.id, 1, VN, Position.OBJECT, "the arrangement needs all ten")
    await harness.until(handle.id, lambda s: s.stage == "revision", "revision")

    status = await handle.query(ProposalWorkflow.status)
    outcome = status.rounds[0]
    assert outcome.verdict is Verdict.CHANGES_REQUESTED
    assert outcome.reason.startswith("objection from VN")
    assert outcome.positions[VN].reason == "the arrangement needs all ten"

    await handle.execute_update(ProposalWorkflow.revise, RevisionInput(sha256="b" * 64, filename="v2.md", size=9))
    await harness.round_open(handle.id, 2)
    for state in (MY, SG, VN):
        await harness.answer(handle.id, 2, state, Position.PARTICIPATE)
    await harness.answer(handle.id, 2, TH, Position.OPT_OUT)
    result = await harness.result(handle)
    assert result.status is ProposalState.AGREED
    assert result.rounds[1].participating == [MY, SG, VN]


async def test_a_minus_x_round_with_too_few_participants_ends_the_stage_without_a_revision(harness: Harness) -> None:
    handle = await harness.start(minus_x())
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, MY, Position.PARTICIPATE)
    await harness.answer(handle.id, 1, SG, Position.PARTICIPATE)
    await harness.answer(handle.id, 1, TH, Position.OPT_OUT)
    await harness.answer(handle.id, 1, VN, Position.OPT_OUT)
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_AGREED
    assert result.rounds[0].verdict is Verdict.NOT_PASSED
    assert result.rounds[0].participating == [MY, SG]
    assert "needs 3 participating states, 2 participate" in (result.closed_reason or "")
    assert len(result.rounds) == 1  # max_rounds is 3, but nothing in the text is to be revised


def test_status_shows_every_answer_a_round_can_take_in_words() -> None:
    import starter

    assert set(starter.POSITION_STYLES) == set(Position)
    assert starter._position_cell(Position.OPT_OUT, None).plain == "Opt out (not join, not block)"
