"""Meetings that decide as meetings (issue 18, points 2 and 7), on the time-skipping server with fake activities:
absent states consulted ad referendum, a text referred back to WG-AI, a deferral, reschedules and cancellations,
and a stage that opens after its meeting's date."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

from models.decisions import MeetingDecision
from models.messages import (
    CancelMeetingInput,
    MeetingMailing,
    MeetingOutcome,
    MeetingRecord,
    ProposalState,
    ProposalStatus,
    RescheduleInput,
    RevisionInput,
    RoundPurpose,
    StageStatus,
)
from models.positions import Position
from models.process import MinisterialStage
from models.rules import Verdict
from models.states import MemberState
from models.tokens import meeting_sitting_workflow_id
from tests.harness import Harness, review
from tests.test_stages import TRIO, ministerial, past, rejected, withdraw
from workflows.meeting import MeetingWorkflow
from workflows.proposal import ProposalWorkflow

MY, SG, TH = MemberState.MY, MemberState.SG, MemberState.TH
PARAGRAPH = "The Meeting endorsed the ASEAN AI SAFE Operational Framework and tasked the WG-AI with its roll-out."


def decided(decision: MeetingDecision, present: list[MemberState] = TRIO, **extra: Any) -> MeetingRecord:
    return MeetingRecord(present=present, decision=decision, paragraph=PARAGRAPH, **extra)


async def mailed(h: Harness, proposal_id: str, step: str, sitting: int = 1) -> MeetingMailing:
    """The meeting mailing of `step` (at `sitting`), once the meeting has sent it."""
    for _ in range(200):
        for mailing in h.backend.meeting_mailings:
            if mailing.proposal_id == proposal_id and mailing.step == step and mailing.sitting == sitting:
                return mailing
        await asyncio.sleep(0.025)
    raise AssertionError(f"the meeting of {proposal_id} sent no {step!r} mail (sitting {sitting})")


def meeting(h: Harness, proposal_id: str, index: int, sitting: int = 1) -> WorkflowHandle[Any, MeetingOutcome]:
    workflow_id = meeting_sitting_workflow_id(proposal_id, index, sitting)
    return h.client.get_workflow_handle_for(MeetingWorkflow.run, workflow_id)


async def revise(h: Harness, handle: WorkflowHandle[Any, ProposalStatus], version: int) -> None:
    await h.until(handle.id, lambda s: s.stage == "revision", "awaiting a revision")
    await handle.execute_update(
        ProposalWorkflow.revise, RevisionInput(sha256=f"{version:x}" * 64, filename=f"v{version}.md", size=9)
    )


# --- absent states, ad referendum ---------------------------------------------------------------------------


async def test_an_absent_state_is_consulted_ad_referendum_and_the_decision_is_final_after_its_silence(
    harness: Harness,
) -> None:
    stage = await ministerial(harness, absent_ad_referendum=timedelta(days=10))
    assert stage.date is not None
    handle = await harness.start(stage)
    await mailed(harness, handle.id, "invitation")
    await past(harness, stage.date)
    record = decided(MeetingDecision.ENDORSED, [MY, TH], reservations={TH: "on the review clause"})
    await meeting(harness, handle.id, 0).execute_update(MeetingWorkflow.record_meeting, record)

    opened = await harness.round_open(handle.id, 1)
    assert opened.round_workflow_id is not None
    live = await harness.round_status(handle.id, 1)
    assert live.participants == [SG]  # only the absent state is consulted
    invitation = next(m for m in harness.backend.mailings if m.proposal_id == handle.id and m.round == 1)
    assert invitation.purpose is RoundPurpose.AD_REFERENDUM and invitation.states == [SG]
    assert invitation.deadline - (await harness.env.get_current_time()) <= timedelta(days=10)
    result = await harness.result(handle)  # SG stays silent: deemed to concur at the deadline

    assert result.status is ProposalState.ENDORSED
    (outcome,) = result.rounds
    assert outcome.purpose is RoundPurpose.AD_REFERENDUM and outcome.verdict is Verdict.PASSED
    assert list(outcome.positions) == [SG] and outcome.positions[SG].deemed
    assert outcome.reason == "silence procedure: no state objected"
    report = result.stages[0]
    assert report.status is StageStatus.PASSED
    assert report.outcome is not None and report.outcome.startswith("ADGMIN meeting: the Meeting endorsed the text")
    assert report.outcome.endswith("the decision is final")
    recorded = report.details["meeting"]
    assert recorded["decision"] == "endorsed" and recorded["absent"] == ["SG"]
    assert recorded["record"]["reservations"] == {"TH": "on the review clause"}
    assert recorded["record"]["positions"] == {}  # no roll call: the Meeting decided
    (entry,) = harness.backend.payloads(handle.id, "meeting_recorded")
    assert entry["present"] == ["MY", "TH"] and entry["paragraph"] == PARAGRAPH


async def test_an_absent_states_objection_sends_the_text_back_to_wg_ai_and_the_meeting_meets_again(
    harness: Harness,
) -> None:
    stage = await ministerial(harness, in_days=30)
    handle = await harness.start(review(participants=TRIO, reminders=[]), stage)
    await harness.round_open(handle.id, 1)
    for state in TRIO:
        await harness.answer(handle.id, 1, state, Position.APPROVE)
    assert stage.date is not None
    await mailed(harness, handle.id, "invitation")
    await past(harness, stage.date)
    await meeting(harness, handle.id, 1).execute_update(
        MeetingWorkflow.record_meeting, decided(MeetingDecision.ENDORSED, [MY, TH])
    )
    await harness.round_open(handle.id, 2)  # SG, absent, is consulted ad referendum
    await harness.answer(handle.id, 2, SG, Position.OBJECT, "the funding model must come first")

    await revise(harness, handle, 2)
    status = await harness.round_open(handle.id, 3)  # WG-AI reviews the revised text
    assert status.stage == "member_review" and status.document.version == 2
    assert status.stages[1].status is StageStatus.REFERRED_BACK
    referral = status.stages[1].outcome or ""
    assert "ad referendum of the absent states" in referral and "SG" in referral
    assert referral.endswith("returned to WG-AI for revision (referral 1 of 2)")
    for state in TRIO:
        await harness.answer(handle.id, 3, state, Position.APPROVE)
    # The meeting stage runs again: a new sitting, its date already past, waits for a new date.
    alert = await mailed(harness, handle.id, "date-passed", sitting=2)
    assert alert.previous_date == stage.date
    later = (await harness.env.get_current_time()) + timedelta(days=5)
    await meeting(harness, handle.id, 1, 2).execute_update(MeetingWorkflow.reschedule, RescheduleInput(date=later))
    await mailed(harness, handle.id, "reschedule-1", sitting=2)
    await past(harness, later)
    await meeting(harness, handle.id, 1, 2).execute_update(
        MeetingWorkflow.record_meeting, decided(MeetingDecision.ENDORSED)
    )
    result = await harness.result(handle)

    assert result.status is ProposalState.ENDORSED
    assert [r.stage_type.value for r in result.rounds] == ["member_review", "ministerial", "member_review"]
    assert result.stages[0].passes == 2 and result.stages[1].passes == 2
    assert result.stages[1].status is StageStatus.PASSED
    started = [p for p in harness.backend.payloads(handle.id, "stage_started")]
    assert [(p["index"], p.get("pass", 1)) for p in started] == [(0, 1), (1, 1), (0, 2), (1, 2)]


# --- referred back, not endorsed --------------------------------------------------------------------------


async def test_referred_back_returns_to_wg_ai_until_max_referrals_is_spent(harness: Harness) -> None:
    stage = await ministerial(harness, in_days=5, max_referrals=1)
    assert stage.date is not None
    handle = await harness.start(review(participants=TRIO, reminders=[]), stage)
    await harness.round_open(handle.id, 1)
    for state in TRIO:
        await harness.answer(handle.id, 1, state, Position.APPROVE)
    await mailed(harness, handle.id, "invitation")
    await past(harness, stage.date)
    referred = decided(MeetingDecision.REFERRED_BACK)
    await meeting(harness, handle.id, 1).execute_update(MeetingWorkflow.record_meeting, referred)

    await revise(harness, handle, 2)
    await harness.round_open(handle.id, 2)  # a new WG-AI round on version 2
    for state in TRIO:
        await harness.answer(handle.id, 2, state, Position.APPROVE)
    await mailed(harness, handle.id, "date-passed", sitting=2)
    later = (await harness.env.get_current_time()) + timedelta(days=2)
    await meeting(harness, handle.id, 1, 2).execute_update(MeetingWorkflow.reschedule, RescheduleInput(date=later))
    await past(harness, later)
    await meeting(harness, handle.id, 1, 2).execute_update(MeetingWorkflow.record_meeting, referred)
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_ENDORSED  # the one referral allowed was spent
    assert result.stages[1].status is StageStatus.FAILED
    assert "the most this stage allows" in (result.closed_reason or "")
    assert [v.version for v in result.versions] == [1, 2]


async def test_not_endorsed_ends_the_proposal(harness: Harness) -> None:
    stage = await ministerial(harness)
    assert stage.date is not None
    handle = await harness.start(stage)
    await mailed(harness, handle.id, "invitation")
    await past(harness, stage.date)
    await meeting(harness, handle.id, 0).execute_update(
        MeetingWorkflow.record_meeting, decided(MeetingDecision.NOT_ENDORSED)
    )
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_ENDORSED and result.rounds == []
    assert result.closed_reason == "ADGMIN meeting: the Meeting did not endorse the text"


# --- deferral, reschedule, cancellation ---------------------------------------------------------------------


async def test_deferred_waits_for_a_reschedule_then_the_meeting_is_held_and_recorded(harness: Harness) -> None:
    stage = await ministerial(harness)
    assert stage.date is not None
    handle = await harness.start(stage)
    invitation = await mailed(harness, handle.id, "invitation")
    assert invitation.sequence == 0
    await past(harness, stage.date)
    the_meeting = meeting(harness, handle.id, 0)
    await the_meeting.execute_update(MeetingWorkflow.record_meeting, decided(MeetingDecision.DEFERRED))

    status = await the_meeting.query(MeetingWorkflow.meeting_status)
    assert status.waiting_for_date is not None and "deferred" in status.waiting_for_date
    assert await rejected(
        the_meeting.execute_update(MeetingWorkflow.record_meeting, decided(MeetingDecision.ENDORSED))
    ) == ("NotYetHeld")
    later = (await harness.env.get_current_time()) + timedelta(days=20)
    await the_meeting.execute_update(MeetingWorkflow.reschedule, RescheduleInput(date=later, venue="Jakarta"))
    update = await mailed(harness, handle.id, "reschedule-1")
    assert update.sequence == 1 and update.date == later and update.venue == "Jakarta"
    assert update.previous_date == stage.date
    await past(harness, later)
    await the_meeting.execute_update(MeetingWorkflow.record_meeting, decided(MeetingDecision.APPROVED))
    result = await harness.result(handle)

    assert result.status is ProposalState.APPROVED
    assert result.stages[0].details["meeting"]["decision"] == "approved"
    decisions = [p["decision"] for p in harness.backend.payloads(handle.id, "meeting_recorded")]
    assert decisions == ["deferred", "approved"]
    (moved,) = harness.backend.payloads(handle.id, "meeting_rescheduled")
    assert moved["sequence"] == 1 and moved["venue"] == "Jakarta"


async def test_a_cancelled_meeting_sends_a_cancellation_and_waits_for_a_new_date(harness: Harness) -> None:
    stage = await ministerial(harness)
    assert stage.date is not None
    handle = await harness.start(stage)
    await mailed(harness, handle.id, "invitation")
    the_meeting = meeting(harness, handle.id, 0)
    await the_meeting.execute_update(MeetingWorkflow.cancel_meeting, CancelMeetingInput(reason="venue unavailable"))
    cancel = await mailed(harness, handle.id, "cancel-1")
    assert cancel.sequence == 1 and cancel.reason == "venue unavailable"
    assert await rejected(the_meeting.execute_update(MeetingWorkflow.cancel_meeting, CancelMeetingInput())) == (
        "NoDate"
    )

    await past(harness, stage.date)  # the old date passes: nothing is held
    live = await harness.until(handle.id, lambda s: s.stage == "ministerial")
    assert live.status is ProposalState.RUNNING
    assert (await the_meeting.query(MeetingWorkflow.meeting_status)).held is False
    gone = (await harness.env.get_current_time()) - timedelta(hours=1)
    assert await rejected(the_meeting.execute_update(MeetingWorkflow.reschedule, RescheduleInput(date=gone))) == (
        "DatePassed"
    )
    later = (await harness.env.get_current_time()) + timedelta(days=3)
    await the_meeting.execute_update(MeetingWorkflow.reschedule, RescheduleInput(date=later))
    update = await mailed(harness, handle.id, "reschedule-2")
    assert update.sequence == 2  # after the cancellation's SEQUENCE 1
    await past(harness, later)
    await the_meeting.execute_update(MeetingWorkflow.record_meeting, decided(MeetingDecision.NOTED))
    result = await harness.result(handle)
    assert result.status is ProposalState.NOTED
    kinds = harness.backend.kinds(handle.id)
    assert kinds.count("meeting_cancelled") == 1 and kinds.count("meeting_rescheduled") == 1


async def test_reschedules_sent_at_once_take_turns_each_with_its_own_sequence(harness: Harness) -> None:
    stage = await ministerial(harness, in_days=30)
    handle = await harness.start(stage)
    await mailed(harness, handle.id, "invitation")
    the_meeting = meeting(harness, handle.id, 0)
    now = await harness.env.get_current_time()
    dates = [now + timedelta(days=10 + n) for n in range(5)]

    moved = await asyncio.gather(
        *(the_meeting.execute_update(MeetingWorkflow.reschedule, RescheduleInput(date=d)) for d in dates)
    )

    assert sorted(m.sequence for m in moved) == [1, 2, 3, 4, 5]
    entries = harness.backend.payloads(handle.id, "meeting_rescheduled")
    assert sorted(e["sequence"] for e in entries) == [1, 2, 3, 4, 5]
    # Each names the date the one before it set: none computed from a state another had already changed.
    by_sequence = {e["sequence"]: e for e in entries}
    for n in range(2, 6):
        assert datetime.fromisoformat(by_sequence[n]["previous_date"]) == datetime.fromisoformat(
            by_sequence[n - 1]["date"]
        )
    last = await the_meeting.query(MeetingWorkflow.meeting_status)
    assert last.sequence == 5 and last.date == datetime.fromisoformat(by_sequence[5]["date"])
    assert sorted(m.step for m in harness.backend.meeting_mailings if m.proposal_id == handle.id)[-5:] == [
        f"reschedule-{n}" for n in range(1, 6)
    ]
    await withdraw(harness, handle.id)


async def test_a_stage_that_opens_after_its_meeting_date_tells_the_coordinator_and_waits(harness: Harness) -> None:
    stage = await ministerial(harness, in_days=1)
    assert stage.date is not None
    handle = await harness.start(review(participants=TRIO, reminders=[], deadline=timedelta(days=14)), stage)
    await harness.round_open(handle.id, 1)
    await past(harness, stage.date)  # the review overruns the meeting's date
    for state in TRIO:
        await harness.answer(handle.id, 1, state, Position.APPROVE)

    alert = await mailed(harness, handle.id, "date-passed")
    assert alert.previous_date == stage.date
    assert not [m for m in harness.backend.meeting_mailings if m.proposal_id == handle.id and m.step == "invitation"]
    (entry,) = harness.backend.payloads(handle.id, "meeting_date_passed")
    assert entry["stage"] == "ministerial"
    the_meeting = meeting(harness, handle.id, 1)
    status = await the_meeting.query(MeetingWorkflow.meeting_status)
    assert status.waiting_for_date is not None and "had passed" in status.waiting_for_date
    assert await rejected(
        the_meeting.execute_update(MeetingWorkflow.record_meeting, decided(MeetingDecision.ENDORSED))
    ) == ("NotYetHeld")
    later = (await harness.env.get_current_time()) + timedelta(days=7)
    await the_meeting.execute_update(MeetingWorkflow.reschedule, RescheduleInput(date=later))
    await past(harness, later)
    await the_meeting.execute_update(MeetingWorkflow.record_meeting, decided(MeetingDecision.ENDORSED))
    assert (await harness.result(handle)).status is ProposalState.ENDORSED


# --- what a record may say ----------------------------------------------------------------------------------


async def test_a_record_refuses_strangers_and_a_roll_call(harness: Harness) -> None:
    stage = await ministerial(harness)
    assert stage.date is not None
    handle = await harness.start(stage)
    await mailed(harness, handle.id, "invitation")
    await past(harness, stage.date)
    the_meeting = meeting(harness, handle.id, 0)

    stranger = decided(MeetingDecision.ENDORSED, [MY, MemberState.VN])
    assert await rejected(the_meeting.execute_update(MeetingWorkflow.record_meeting, stranger)) == "NotParticipant"
    roll_call = MeetingRecord(positions={MY: Position.APPROVE})
    assert await rejected(the_meeting.execute_update(MeetingWorkflow.record_meeting, roll_call)) == "RollCallRefused"
    assert "meeting_recorded" not in harness.backend.kinds(handle.id)
    await the_meeting.execute_update(MeetingWorkflow.record_meeting, decided(MeetingDecision.ENDORSED))
    result = await harness.result(handle)
    assert result.status is ProposalState.ENDORSED and result.rounds == []
    assert result.stages[0].details["meeting"]["verdict"] == Verdict.PASSED.value


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"present": [MY], "decision": "endorsed"}, "the decision paragraph is required"),
        ({"present": [MY], "decision": "endorsed", "paragraph": "One.\n\nTwo."}, "must be one paragraph"),
        ({"decision": "endorsed", "paragraph": "One."}, "name the states present"),
        ({"present": [MY, MY], "decision": "noted", "paragraph": "One."}, "named twice"),
        (
            {"present": [MY], "decision": "endorsed", "paragraph": "One.", "reservations": {"SG": "x"}},
            "reservations from states not present: SG",
        ),
        ({"present": [MY], "decision": "adopted", "paragraph": "One."}, "decision"),
        ({"present": [MY], "decision": "endorsed", "paragraph": "x" * 3001}, "at most 3000"),
        ({"present": [MY], "decision": "endorsed", "paragraph": "One.", "positions": {"MY": "approve"}}, "not both"),
        ({}, "record the Meeting's decision"),
    ],
)
def test_a_meeting_record_says_what_is_wrong(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        MeetingRecord.model_validate(fields)


def test_a_roll_call_record_from_before_still_validates() -> None:
    old = MeetingRecord.model_validate({"positions": {"MY": "approve", "SG": "abstain"}, "summary": "Endorsed."})
    assert old.decision is None and old.present is None


def test_the_stage_defaults_for_absent_states_and_referrals() -> None:
    stage = MinisterialStage.model_validate(
        {"mode": "meeting", "date": "2027-01-15T09:00:00+08:00", "chair": "TH", "reminders": []}
    )
    assert stage.absent_ad_referendum == timedelta(days=14) and stage.max_referrals == 2
    with pytest.raises(ValueError, match="ISO 8601"):
        MinisterialStage.model_validate(
            {"mode": "meeting", "date": "2027-01-15T09:00:00+08:00", "chair": "TH", "absent_ad_referendum": 14}
        )
