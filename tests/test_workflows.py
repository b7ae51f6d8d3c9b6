"""Proposal and review-round workflows on the time-skipping server, with activities replaced by fakes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from models.messages import (
    ROUND_ANSWERS,
    CloseRoundInput,
    PositionSignal,
    PositionSubmission,
    ProposalState,
    ReviewRoundInput,
    RevisionInput,
    RoundPurpose,
    WithdrawInput,
)
from models.positions import DecisionRule, Position, SilencePolicy
from models.process import DraftingStage, StageType
from models.roster import Role
from models.rules import Verdict
from models.states import MemberState, in_name_order
from models.temporal_client import proposal_status
from models.tokens import round_workflow_id
from tests.harness import ALL, DOC1, Harness, everyone, review
from workflows.proposal import ProposalWorkflow
from workflows.review_round import ReviewRoundWorkflow


async def test_consensus_all_approve_adopts_and_closes_the_round_early(harness: Harness) -> None:
    handle = await harness.start(review())
    await harness.round_open(handle.id, 1)
    await everyone(harness, handle.id, 1)
    result = await harness.result(handle)
    assert result.status is ProposalState.AGREED
    assert result.rounds[0].verdict is Verdict.PASSED
    assert result.rounds[0].closed_because == "all states answered"
    assert {s: p.position for s, p in result.rounds[0].positions.items()} == dict.fromkeys(ALL, Position.APPROVE)
    assert harness.positions_recorded(handle.id) == 11
    # Closed early: no reminder was needed, so none is recorded.
    assert [m.step for m in harness.backend.mailings if m.proposal_id == handle.id] == ["invitation"]
    assert "reminder_sent" not in harness.backend.kinds(handle.id)
    assert harness.backend.kinds(handle.id)[-1] == "proposal_closed"


async def test_a_new_run_writes_every_ledger_entry_as_a_local_activity(harness: Harness) -> None:
    """No ledger write costs a trip through the server's activity queue: the histories hold only mail activities."""
    handle = await harness.start(review(participants=[MemberState.MY, MemberState.SG]))
    await harness.round_open(handle.id, 1)
    for state in (MemberState.MY, MemberState.SG):
        await harness.answer(handle.id, 1, state, Position.APPROVE)
    assert (await harness.result(handle)).status is ProposalState.AGREED
    for run in (handle.id, round_workflow_id(handle.id, 1)):
        events = (await harness.client.get_workflow_handle(run).fetch_history()).events
        scheduled = {
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        assert scheduled <= {"send_round_mail", "send_answer_notice", "send_outcome_mail"}, run
        markers = [
            e.marker_recorded_event_attributes.marker_name
            for e in events
            if e.HasField("marker_recorded_event_attributes")
        ]
        assert markers.count("core_local_activity") >= 3, run  # started/opened, then closed, at the least
    # The ledger holds what the activities used to write, in order.
    assert harness.backend.kinds(handle.id)[:3] == ["proposal_started", "stage_started", "round_opened"]
    assert harness.positions_recorded(handle.id) == 2


async def test_consensus_allows_abstentions_and_reservations(harness: Harness) -> None:
    handle = await harness.start(review())
    await harness.round_open(handle.id, 1)
    await everyone(harness, handle.id, 1, Position.APPROVE, MM=Position.ABSTAIN, SG=Position.APPROVE_WITH_RESERVATION)
    result = await harness.result(handle)
    assert result.status is ProposalState.AGREED
    assert result.rounds[0].positions[MemberState.SG].reason == "because"


async def test_unanimity_fails_on_an_abstention_and_max_rounds_ends_it(harness: Harness) -> None:
    handle = await harness.start(review(rule=DecisionRule.UNANIMITY, max_rounds=1))
    await harness.round_open(handle.id, 1)
    await everyone(harness, handle.id, 1, Position.APPROVE, KH=Position.ABSTAIN)
    result = await harness.result(handle)
    assert result.status is ProposalState.NOT_AGREED
    assert result.rounds[0].verdict is Verdict.NOT_PASSED
    assert "KH" in result.rounds[0].reason
    assert result.closed_reason and "unanimity not reached" in result.closed_reason


async def test_unanimity_passes_when_all_approve(harness: Harness) -> None:
    handle = await harness.start(review(rule=DecisionRule.UNANIMITY))
    await harness.round_open(handle.id, 1)
    await everyone(harness, handle.id, 1, Position.APPROVE, VN=Position.APPROVE_WITH_RESERVATION)
    assert (await harness.result(handle)).status is ProposalState.AGREED


async def test_change_request_revision_and_second_round(harness: Harness) -> None:
    handle = await harness.start(review())
    await harness.round_open(handle.id, 1)
    await everyone(harness, handle.id, 1, Position.APPROVE, PH=Position.REQUEST_CHANGES)
    for _ in range(100):
        status = await proposal_status(harness.client, handle.id)
        if status.stage == "revision":
            break
        await asyncio.sleep(0.05)
    assert status.stage == "revision" and status.rounds[0].verdict is Verdict.CHANGES_REQUESTED
    assert "PH" in status.rounds[0].reason

    v2 = await handle.execute_update(ProposalWorkflow.revise, RevisionInput(sha256="b" * 64, filename="v2.md", size=12))
    assert v2.version == 2
    status = await harness.round_open(handle.id, 2)
    assert status.document.sha256 == "b" * 64
    # A link for version 1 cannot be used in round 2.
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await harness.answer(handle.id, 2, MemberState.PH, Position.APPROVE, sha256="a" * 64)
    assert isinstance(rejected.value.cause, ApplicationError) and rejected.value.cause.type == "DocumentMismatch"

    await everyone(harness, handle.id, 2)
    result = await harness.result(handle)
    assert result.status is ProposalState.AGREED
    assert [r.verdict for r in result.rounds] == [Verdict.CHANGES_REQUESTED, Verdict.PASSED]
    assert [v.version for v in result.versions] == [1, 2]
    assert "version_uploaded" in harness.backend.kinds(handle.id)
    round2 = [m for m in harness.backend.mailings if m.proposal_id == handle.id and m.round == 2]
    assert round2[0].document.sha256 == "b" * 64


async def test_objection_in_the_last_round_ends_not_adopted(harness: Harness) -> None:
    handle = await harness.start(review(max_rounds=2))
    for number in (1, 2):
        await harness.round_open(handle.id, number)
        await everyone(harness, handle.id, number, Position.APPROVE, LA=Position.OBJECT)
        if number == 1:
            for _ in range(100):
                if (await proposal_status(harness.client, handle.id)).stage == "revision":
                    break
                await asyncio.sleep(0.05)
            await handle.execute_update(
                ProposalWorkflow.revise, RevisionInput(sha256="c" * 64, filename="v2.md", size=1)
            )
    result = await harness.result(handle)
    assert result.status is ProposalState.NOT_AGREED
    assert result.round == 2
    assert "2 round(s) spent" in (result.closed_reason or "")


@pytest.mark.parametrize("silence", [SilencePolicy.ABSTAIN, SilencePolicy.OBJECT])
async def test_at_the_deadline_silence_is_not_counted_and_only_the_silent_are_reminded(
    harness: Harness, silence: SilencePolicy
) -> None:
    # A definition from before the process-file check may still say abstain or object: silence is not counted.
    handle = await harness.start(review(silence=silence, max_rounds=1))
    await harness.round_open(handle.id, 1)
    answering = [MemberState.MY, MemberState.SG, MemberState.TH]
    for state in answering:
        await harness.answer(handle.id, 1, state, Position.APPROVE)
    # Eight days on (past the P7D reminder), Indonesia answers; it must not get the P1D reminder.
    await harness.env.sleep(timedelta(days=8))
    await harness.answer(handle.id, 1, MemberState.ID, Position.APPROVE)
    for _ in range(20):  # the server skips time to the deadline: the round is overdue, not decided
        if (await harness.round_status(handle.id, 1)).overdue and harness.backend.payloads(handle.id, "round_overdue"):
            break
        await harness.env.sleep(timedelta(days=1))

    everyone_in_order = in_name_order(ALL)
    silent = [s for s in everyone_in_order if s not in (*answering, MemberState.ID)]
    [overdue] = harness.backend.payloads(handle.id, "round_overdue")
    assert overdue["states"] == sorted(s.value for s in silent)
    steps = {m.step: m.states for m in harness.backend.mailings if m.proposal_id == handle.id}
    assert steps["invitation"] == everyone_in_order
    assert steps["reminder-1"] == [s for s in everyone_in_order if s not in answering]
    assert steps["reminder-2"] == silent
    assert steps["reminder-3"] == silent  # overdue: reminded at once with a fresh link, then daily
    # Each reminder is in the ledger once, naming exactly the states it went to.
    assert harness.backend.payloads(handle.id, "reminder_sent")[:3] == [
        reminder_entry(1, steps["reminder-1"]),
        reminder_entry(2, silent),
        reminder_entry(3, silent),
    ]
    rounds = harness.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(handle.id, 1))
    await rounds.execute_update(ReviewRoundWorkflow.close_round, CloseRoundInput())
    result = await harness.result(handle)
    outcome = result.rounds[0]
    assert outcome.verdict is Verdict.NO_CONSENSUS and result.status is ProposalState.NOT_AGREED
    assert not any(p.deemed for p in outcome.positions.values())
    assert set(outcome.positions) == {*answering, MemberState.ID}


async def test_a_definition_that_says_silence_concur_still_deems_the_silent_to_concur(harness: Harness) -> None:
    # Only a definition from before the process-file check can say this in a review stage; it keeps its meaning.
    handle = await harness.start(review(silence=SilencePolicy.CONCUR, max_rounds=1))
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, MemberState.MY, Position.APPROVE)

    result = await harness.result(handle)

    outcome = result.rounds[0]
    assert outcome.closed_because == "deadline" and result.status is ProposalState.AGREED
    assert all(p.deemed and p.position is Position.APPROVE for s, p in outcome.positions.items() if s != MemberState.MY)


async def test_all_silent_is_overdue_and_closing_it_without_consensus_spends_the_last_round(harness: Harness) -> None:
    handle = await harness.start(review(max_rounds=1))
    await harness.round_open(handle.id, 1)
    for _ in range(20):
        if (await harness.round_status(handle.id, 1)).overdue:
            break
        await harness.env.sleep(timedelta(days=1))
    rounds = harness.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(handle.id, 1))
    await rounds.execute_update(ReviewRoundWorkflow.close_round, CloseRoundInput(reason="nobody answered"))

    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_AGREED
    assert result.rounds[0].verdict is Verdict.NO_CONSENSUS and result.rounds[0].positions == {}
    assert "1 round(s) spent" in (result.closed_reason or "")


async def test_reminders_already_past_are_skipped(harness: Harness) -> None:
    # A silence procedure (rule silence) closes at its deadline with everyone silent: the reminders are what counts.
    stage = review(deadline=timedelta(days=2), reminders=[timedelta(days=1)], max_rounds=1, rule=DecisionRule.SILENCE)
    handle = await harness.start(stage)
    await harness.result(handle)
    steps = [m.step for m in harness.backend.mailings if m.proposal_id == handle.id]
    assert steps == ["invitation", "reminder-1"]
    assert harness.backend.payloads(handle.id, "reminder_sent") == [reminder_entry(1, ALL)]


async def test_a_reminder_whose_moment_has_passed_is_neither_sent_nor_recorded(harness: Harness) -> None:
    # A stage cannot ask for a reminder before the round opens, so start the round on its own.
    proposal_id = f"p-{uuid.uuid4().hex[:10]}"
    participants = [MemberState.MY, MemberState.SG]
    handle = await harness.client.start_workflow(
        ReviewRoundWorkflow.run,
        ReviewRoundInput(
            proposal_id=proposal_id,
            title="ASEAN AI SAFE Operational Framework",
            round=1,
            reminders=[timedelta(days=3), timedelta(days=1)],  # the first falls a day before the round opens
            silence=SilencePolicy.CONCUR,  # closes at the deadline with both silent (a silence procedure)
            allowed=ROUND_ANSWERS[RoundPurpose.REVIEW],
            roles=[Role.FOCAL_POINT, Role.ALTERNATE],
            document=DOC1,
            participants=participants,
            deadline=await harness.env.get_current_time() + timedelta(days=2),
        ),
        id=round_workflow_id(proposal_id, 1),
        task_queue=harness.task_queue,
    )
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        await harness.env.sleep(timedelta(days=1))
    assert (await handle.result()).closed_because == "deadline"

    assert [m.step for m in harness.backend.mailings if m.proposal_id == proposal_id] == ["invitation", "reminder-2"]
    assert harness.backend.payloads(proposal_id, "reminder_sent") == [reminder_entry(2, participants)]


def reminder_entry(number: int, states: list[MemberState]) -> dict[str, object]:
    """The ledger payload of reminder `number` of a proposal's first member-review round."""
    return {
        "round": 1,
        "reminder": number,
        "states": sorted(s.value for s in states),
        "stage": StageType.MEMBER_REVIEW.value,
    }


async def test_validator_rejects_before_anything_is_recorded(harness: Harness) -> None:
    stage = review(participants=[MemberState.MY, MemberState.SG])
    handle = await harness.start(stage)
    await harness.round_open(handle.id, 1)

    async def rejected(expected: str, **kwargs: object) -> None:
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await harness.answer(handle.id, 1, **kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == expected

    await rejected("NotParticipant", state=MemberState.VN, position=Position.APPROVE)
    await rejected("DocumentMismatch", state=MemberState.MY, position=Position.APPROVE, sha256="f" * 64)
    wrong_round = PositionSubmission(
        proposal_id=handle.id,
        round=2,
        state=MemberState.MY,
        delegate_id="x",
        document_sha256=DOC1.sha256,
        position=Position.APPROVE,
    )
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await harness.client.get_workflow_handle(round_workflow_id(handle.id, 1)).execute_update(
            ReviewRoundWorkflow.submit_position, wrong_round
        )
    assert isinstance(info.value.cause, ApplicationError) and info.value.cause.type == "WrongRound"
    assert harness.positions_recorded(handle.id) == 0

    # Revising is refused while a round is open.
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(ProposalWorkflow.revise, RevisionInput(sha256="d" * 64, filename="x.md", size=1))
    assert isinstance(info.value.cause, ApplicationError) and info.value.cause.type == "NotRevisable"

    await harness.answer(handle.id, 1, MemberState.MY, Position.APPROVE)
    await harness.answer(handle.id, 1, MemberState.SG, Position.APPROVE)
    assert (await harness.result(handle)).status is ProposalState.AGREED
    assert harness.positions_recorded(handle.id) == 2


async def test_latest_answer_of_a_state_stands_and_a_repeated_update_is_not_duplicated(harness: Harness) -> None:
    handle = await harness.start(review(participants=[MemberState.TL, MemberState.MY]))
    await harness.round_open(handle.id, 1)
    first = await harness.answer(handle.id, 1, MemberState.TL, Position.OBJECT, "first view", update_id="u-1")
    again = await harness.answer(handle.id, 1, MemberState.TL, Position.OBJECT, "first view", update_id="u-1")
    assert again == first
    assert harness.positions_recorded(handle.id) == 1
    live = await proposal_status(harness.client, handle.id)
    assert live.positions == {MemberState.TL: Position.OBJECT, MemberState.MY: None}

    await harness.answer(handle.id, 1, MemberState.TL, Position.APPROVE, update_id="u-2")
    await harness.answer(handle.id, 1, MemberState.MY, Position.APPROVE)
    result = await harness.result(handle)
    assert result.rounds[0].positions[MemberState.TL].position is Position.APPROVE
    assert result.status is ProposalState.AGREED
    assert harness.positions_recorded(handle.id) == 3  # every answer is kept in the ledger


async def test_withdraw_during_a_round_cancels_it(harness: Harness) -> None:
    handle = await harness.start(review())
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, MemberState.MY, Position.APPROVE)
    status = await handle.execute_update(ProposalWorkflow.withdraw, WithdrawInput(reason="superseded by a new draft"))
    assert status.status is ProposalState.WITHDRAWN
    result = await harness.result(handle)
    assert result.status is ProposalState.WITHDRAWN
    assert "superseded" in (result.closed_reason or "")
    kinds = harness.backend.kinds(handle.id)
    assert "withdrawn" in kinds and kinds[-1] == "proposal_closed"
    # The proposal is closed: a second withdrawal is refused (by the server, as the workflow has completed).
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await handle.execute_update(ProposalWorkflow.withdraw, WithdrawInput(reason="again"))


async def test_drafting_takes_versions_until_submitted(harness: Harness) -> None:
    handle = await harness.start(DraftingStage(), review(participants=[MemberState.MY]))
    for _ in range(100):
        if (await proposal_status(harness.client, handle.id)).stage == "drafting":
            break
        await asyncio.sleep(0.05)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(ProposalWorkflow.revise, RevisionInput(sha256="a" * 64, filename="same.md", size=1))
    assert isinstance(info.value.cause, ApplicationError) and info.value.cause.type == "SameVersion"
    await handle.execute_update(ProposalWorkflow.revise, RevisionInput(sha256="e" * 64, filename="v2.md", size=1))
    assert await handle.execute_update(ProposalWorkflow.submit) == "e" * 64
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(ProposalWorkflow.submit)
    status = await harness.round_open(handle.id, 1)
    assert status.document.version == 2 and status.stage == "member_review"
    await harness.answer(handle.id, 1, MemberState.MY, Position.APPROVE)
    assert (await harness.result(handle)).status is ProposalState.AGREED
    assert harness.backend.kinds(handle.id)[:4] == [
        "proposal_started",
        "stage_started",
        "version_uploaded",
        "submitted",
    ]


MY, SG = MemberState.MY, MemberState.SG


async def test_a_position_sent_as_a_signal_is_recorded_once_even_beside_its_update(harness: Harness) -> None:
    """The web's fallback when no worker accepts the Update in time: the same decision by Signal and Update
    is one ledger entry; a Signal the validator would have rejected is recorded as refused, never counted."""
    handle = await harness.start(review(participants=[MY, SG], max_rounds=1))
    await harness.round_open(handle.id, 1)
    round_handle = harness.client.get_workflow_handle(round_workflow_id(handle.id, 1))

    def submission(state: MemberState, sha256: str = DOC1.sha256) -> PositionSubmission:
        return PositionSubmission(
            proposal_id=handle.id,
            round=1,
            state=state,
            delegate_id=f"{state.value}-delegate",
            document_sha256=sha256,
            position=Position.APPROVE,
        )

    for _ in range(2):  # a retried signal
        await round_handle.signal(
            "submit_position_signal", PositionSignal(decision_id="d-sg", submission=submission(SG))
        )
    late_update = await harness.answer(handle.id, 1, SG, Position.APPROVE, update_id="d-sg")
    assert late_update.decision_id == "d-sg"
    await round_handle.signal(
        "submit_position_signal", PositionSignal(decision_id="d-stale", submission=submission(MY, "b" * 64))
    )
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    result = await harness.result(handle)

    assert result.status is ProposalState.AGREED
    assert result.rounds[0].positions[SG].decision_id == "d-sg"
    positions = harness.backend.payloads(handle.id, "position")
    assert [p["decision_id"] for p in positions].count("d-sg") == 1 and len(positions) == 2
    [refused] = harness.backend.payloads(handle.id, "position_refused")
    assert refused["decision_id"] == "d-stale" and refused["refused"] == "DocumentMismatch"
