"""Silence is not consent: a member-review round overdue at its deadline, and the coordinator's three controls
(extend, silence procedure, close without consensus), on the time-skipping server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models.messages import (
    CloseRoundInput,
    ExtendInput,
    ProposalState,
    RevisionInput,
    RoundStatus,
    SilenceProcedureInput,
)
from models.positions import Position
from models.process import SeniorOfficialsStage
from models.rules import Verdict
from models.states import MemberState
from models.tokens import round_workflow_id
from tests.harness import Harness, review
from workflows.proposal import ProposalWorkflow
from workflows.review_round import ReviewRoundWorkflow

MY, SG, LA = MemberState.MY, MemberState.SG, MemberState.LA
THREE = [LA, MY, SG]


def round_handle(harness: Harness, proposal_id: str, number: int = 1) -> WorkflowHandle[ReviewRoundWorkflow, object]:
    return harness.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(proposal_id, number))


async def overdue_round(harness: Harness, **stage: object) -> tuple[str, RoundStatus]:
    """A three-state round in which MY and SG approve and LA stays silent past the deadline: overdue, recorded."""
    handle = await harness.start(review(participants=THREE, **stage))
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    await harness.answer(handle.id, 1, SG, Position.APPROVE)
    for _ in range(40):
        status = await harness.round_status(handle.id, 1)
        if status.overdue and harness.backend.payloads(handle.id, "round_overdue"):
            return handle.id, status
        await harness.env.sleep(timedelta(days=1))
    raise AssertionError("the round did not become overdue")


async def alerts_for(harness: Harness, proposal_id: str) -> list[object]:
    for _ in range(200):
        found = [a for a in harness.backend.alerts if a.proposal_id == proposal_id and a.overdue]
        if found:
            return found
        await asyncio.sleep(0.025)
    raise AssertionError("the coordinator was not alerted")


def steps(harness: Harness, proposal_id: str) -> dict[str, list[MemberState]]:
    return {m.step: m.states for m in harness.backend.mailings if m.proposal_id == proposal_id}


async def test_a_silent_state_leaves_the_round_overdue_not_passed(harness: Harness) -> None:
    proposal_id, status = await overdue_round(harness)

    assert status.is_open and status.overdue_since is not None
    assert status.waiting and "Lao" in status.waiting and "silence is not consent" in status.waiting
    [overdue] = harness.backend.payloads(proposal_id, "round_overdue")
    assert overdue["states"] == ["LA"] and overdue["round"] == 1
    [alert] = await alerts_for(harness, proposal_id)
    assert alert.overdue == [LA] and alert.step == "overdue-1" and alert.not_invited == []
    # The silent state is reminded at once, with a fresh link, and the reminder is in the ledger.
    assert steps(harness, proposal_id)["reminder-3"] == [LA]
    assert harness.backend.payloads(proposal_id, "reminder_sent")[-1]["states"] == ["LA"]
    assert not harness.backend.payloads(proposal_id, "round_closed")
    live = await harness.client.get_workflow_handle_for(ProposalWorkflow.run, proposal_id).query(
        ProposalWorkflow.status
    )
    assert live.status is ProposalState.RUNNING


async def test_overdue_then_extend_takes_the_late_answer_and_passes(harness: Harness) -> None:
    proposal_id, status = await overdue_round(harness, max_rounds=1)
    rounds = round_handle(harness, proposal_id)

    receipt = await rounds.execute_update(ReviewRoundWorkflow.extend_round, ExtendInput(by=timedelta(days=7)), id="x1")
    again = await rounds.execute_update(ReviewRoundWorkflow.extend_round, ExtendInput(by=timedelta(days=7)), id="x1")

    assert receipt == again  # one Update id, one extension
    assert receipt.states == [LA] and receipt.deadline is not None and receipt.deadline > status.deadline
    [extended] = harness.backend.payloads(proposal_id, "round_extended")
    assert (extended["by"], extended["states"], extended["deadline"]) == ("P7D", ["LA"], receipt.deadline.isoformat())
    mailing = next(m for m in harness.backend.mailings if m.proposal_id == proposal_id and m.step == "extended-1")
    assert mailing.states == [LA] and mailing.deadline == receipt.deadline
    live = await harness.round_status(proposal_id, 1)
    assert not live.overdue and live.deadline == receipt.deadline
    await harness.answer(proposal_id, 1, LA, Position.APPROVE)

    result = await harness.result(harness.client.get_workflow_handle_for(ProposalWorkflow.run, proposal_id))
    assert result.status is ProposalState.AGREED
    assert result.rounds[0].closed_because == "all states answered"
    assert not any(p.deemed for p in result.rounds[0].positions.values())


async def test_overdue_then_extend_and_still_silent_is_overdue_again(harness: Harness) -> None:
    proposal_id, _ = await overdue_round(harness)
    rounds = round_handle(harness, proposal_id)
    await rounds.execute_update(ReviewRoundWorkflow.extend_round, ExtendInput(by=timedelta(days=2)))

    for _ in range(10):
        if len(harness.backend.payloads(proposal_id, "round_overdue")) == 2:
            break
        await harness.env.sleep(timedelta(days=1))
    assert [e["states"] for e in harness.backend.payloads(proposal_id, "round_overdue")] == [["LA"], ["LA"]]
    assert (await harness.round_status(proposal_id, 1)).overdue


async def test_overdue_then_silence_procedure_deems_the_silent_state_to_concur(harness: Harness) -> None:
    proposal_id, _ = await overdue_round(harness, max_rounds=1)
    rounds = round_handle(harness, proposal_id)

    receipt = await rounds.execute_update(
        ReviewRoundWorkflow.silence_procedure, SilenceProcedureInput(duration=timedelta(days=14))
    )

    assert receipt.states == [LA] and receipt.action == "silence_procedure"
    [started] = harness.backend.payloads(proposal_id, "silence_procedure")
    assert (started["states"], started["duration"]) == (["LA"], "P14D")
    mailing = next(m for m in harness.backend.mailings if m.proposal_id == proposal_id and m.step.startswith("silence"))
    assert mailing.step == "silence-procedure-1" and mailing.states == [LA] and mailing.deadline == receipt.deadline
    live = await harness.round_status(proposal_id, 1)
    assert live.silence_procedure == {LA: receipt.deadline} and not live.overdue

    result = await harness.result(harness.client.get_workflow_handle_for(ProposalWorkflow.run, proposal_id))
    outcome = result.rounds[0]
    assert outcome.closed_because == "silence procedure ended"
    assert outcome.positions[LA].deemed and outcome.positions[LA].position is Position.APPROVE
    assert not outcome.positions[MY].deemed
    assert outcome.verdict is Verdict.PASSED and result.status is ProposalState.AGREED


async def test_overdue_then_silence_procedure_broken_by_an_objection(harness: Harness) -> None:
    proposal_id, _ = await overdue_round(harness, max_rounds=1)
    rounds = round_handle(harness, proposal_id)
    await rounds.execute_update(
        ReviewRoundWorkflow.silence_procedure, SilenceProcedureInput(duration=timedelta(days=14))
    )

    # Under the silence procedure the state concurs or objects: a change request is not an answer it takes.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await harness.answer(proposal_id, 1, LA, Position.REQUEST_CHANGES, "edit section 2")
    assert isinstance(refused.value.cause, ApplicationError) and refused.value.cause.type == "PositionNotAllowed"
    await harness.answer(proposal_id, 1, LA, Position.OBJECT, "not in this form")

    result = await harness.result(harness.client.get_workflow_handle_for(ProposalWorkflow.run, proposal_id))
    outcome = result.rounds[0]
    assert outcome.verdict is Verdict.CHANGES_REQUESTED and outcome.reason == "objection or change request from LA"
    assert outcome.closed_because == "all states answered" and not outcome.positions[LA].deemed
    assert result.status is ProposalState.NOT_AGREED


async def test_close_without_consensus_sends_the_text_to_revision_then_a_new_round(harness: Harness) -> None:
    proposal_id, _ = await overdue_round(harness, max_rounds=2)
    rounds = round_handle(harness, proposal_id)

    receipt = await rounds.execute_update(ReviewRoundWorkflow.close_round, CloseRoundInput(reason="LA unreachable"))

    assert receipt.action == "closed_no_consensus" and receipt.states == [LA]
    [closing] = harness.backend.payloads(proposal_id, "round_closed_no_consensus")
    assert closing == {"round": 1, "states": ["LA"], "reason": "LA unreachable"}
    status = await harness.until(proposal_id, lambda s: s.stage == "revision", "revision")
    outcome = status.rounds[0]
    assert outcome.verdict is Verdict.NO_CONSENSUS and outcome.closed_because == "closed without consensus"
    assert outcome.reason == (
        "no consensus: LA did not answer (silence is not consent); closed by the coordinator: LA unreachable"
    )
    assert LA not in outcome.positions  # silence is recorded as silence, not as a position
    proposal = harness.client.get_workflow_handle_for(ProposalWorkflow.run, proposal_id)
    await proposal.execute_update(ProposalWorkflow.revise, RevisionInput(sha256="c" * 64, filename="v2.md", size=1))
    await harness.round_open(proposal_id, 2)
    for state in THREE:
        await harness.answer(proposal_id, 2, state, Position.APPROVE)

    result = await harness.result(proposal)
    assert result.status is ProposalState.AGREED and result.round == 2


async def test_close_without_consensus_ends_the_proposal_when_the_process_says_so(harness: Harness) -> None:
    proposal_id, _ = await overdue_round(harness, on_no_consensus="end")

    await round_handle(harness, proposal_id).execute_update(ReviewRoundWorkflow.close_round, CloseRoundInput())

    result = await harness.result(harness.client.get_workflow_handle_for(ProposalWorkflow.run, proposal_id))
    assert result.status is ProposalState.NOT_AGREED
    assert result.rounds[0].verdict is Verdict.NO_CONSENSUS
    assert result.closed_reason is not None and "no consensus: LA did not answer" in result.closed_reason


async def test_before_the_deadline_only_extend_is_taken(harness: Harness) -> None:
    handle = await harness.start(review(participants=THREE))
    status = await harness.round_open(handle.id, 1)
    rounds = round_handle(harness, handle.id)

    for update, arg in (
        (ReviewRoundWorkflow.close_round, CloseRoundInput()),
        (ReviewRoundWorkflow.silence_procedure, SilenceProcedureInput(duration=timedelta(days=7))),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await rounds.execute_update(update, arg)  # type: ignore[arg-type]
        assert isinstance(refused.value.cause, ApplicationError) and refused.value.cause.type == "NotOverdue"
    assert not harness.backend.payloads(handle.id, "round_closed_no_consensus")

    receipt = await rounds.execute_update(ReviewRoundWorkflow.extend_round, ExtendInput(by=timedelta(days=3)))

    assert status.deadline is not None and receipt.deadline == status.deadline + timedelta(days=3)
    for state in THREE:
        await harness.answer(handle.id, 1, state, Position.APPROVE)
    result = await harness.result(handle)
    assert result.status is ProposalState.AGREED


async def test_concurrent_controls_extend_each_once_and_close_once(harness: Harness) -> None:
    proposal_id, status = await overdue_round(harness)
    rounds = round_handle(harness, proposal_id)
    ids = [f"extend-{n}" for n in range(8)]

    extended = await asyncio.gather(
        *(rounds.execute_update(ReviewRoundWorkflow.extend_round, ExtendInput(by=timedelta(days=1)), id=i) for i in ids)
    )

    entries = harness.backend.payloads(proposal_id, "round_extended")
    assert len(entries) == 8 and sorted(e["step"] for e in entries) == sorted(f"extended-{n}" for n in range(1, 9))
    live = await harness.round_status(proposal_id, 1)
    assert live.deadline == max(r.deadline for r in extended if r.deadline)
    assert len({r.deadline for r in extended}) == 8  # each one on top of the ones before it

    for _ in range(12):
        if (await harness.round_status(proposal_id, 1)).overdue:
            break
        await harness.env.sleep(timedelta(days=1))
    closing = await asyncio.gather(
        *(rounds.execute_update(ReviewRoundWorkflow.close_round, CloseRoundInput(reason=f"by {n}")) for n in range(8)),
        return_exceptions=True,
    )

    closed = [c for c in closing if not isinstance(c, BaseException)]
    refused = [c for c in closing if isinstance(c, BaseException)]
    assert len(closed) == 1 and len(refused) == 7
    assert all(isinstance(r, WorkflowUpdateFailedError) and "closed" in str(r.cause) for r in refused)
    assert len(harness.backend.payloads(proposal_id, "round_closed_no_consensus")) == 1
    assert status.deadline < live.deadline


async def test_an_ad_referendum_round_is_extended_alike_and_its_silent_states_concur_at_the_new_deadline(
    harness: Harness,
) -> None:
    stage = SeniorOfficialsStage.model_validate(
        {"participants": THREE, "deadline": timedelta(days=7), "reminders": [timedelta(days=1)]}
    )
    handle = await harness.start(stage)
    status = await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, MY, Position.APPROVE)

    receipt = await round_handle(harness, handle.id).execute_update(
        ReviewRoundWorkflow.extend_round, ExtendInput(by=timedelta(days=5))
    )

    assert status.deadline is not None and receipt.deadline == status.deadline + timedelta(days=5)
    assert receipt.states == [LA, SG]
    result = await harness.result(handle)
    outcome = result.rounds[0]
    assert outcome.closed_at >= receipt.deadline and outcome.verdict is Verdict.PASSED
    assert outcome.positions[LA].deemed and outcome.positions[SG].deemed and not outcome.positions[MY].deemed
    assert not harness.backend.payloads(handle.id, "round_overdue")  # a silence procedure is never overdue
