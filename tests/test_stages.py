"""Every stage of a proposal on the time-skipping server: consultation, member review rules, ADGSOM ad referendum,
ADGMIN meetings, funding, withdrawal and the full default process, with activities replaced by fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models.decisions import MeetingDecision
from models.messages import (
    CloseRoundInput,
    DispositionInput,
    ExtendInput,
    FundingStep,
    MeetingRecord,
    Pledge,
    ProposalState,
    RoundPurpose,
    StageStatus,
    WithdrawInput,
)
from models.positions import AD_REFERENDUM_POSITIONS, DecisionRule, Disposition, Position, SilencePolicy
from models.process import (
    ConsultationStage,
    DraftingStage,
    EndorsementMode,
    FundingModel,
    FundingStage,
    MinisterialStage,
    NoRecordPolicy,
    SeniorOfficialsStage,
    StageType,
)
from models.roster import Role, Sector
from models.rules import Verdict
from models.states import MemberState
from models.tokens import consultation_workflow_id, meeting_workflow_id, round_workflow_id
from tests.harness import ALL, Harness, everyone, review
from workflows.consultation import ConsultationWorkflow
from workflows.meeting import MeetingWorkflow
from workflows.proposal import KIND_KEY, LEAD_KEY, STAGE_KEY, ProposalWorkflow
from workflows.review_round import ReviewRoundWorkflow

MY, SG, TH, VN = MemberState.MY, MemberState.SG, MemberState.TH, MemberState.VN
BN, KH, LA = MemberState.BN, MemberState.KH, MemberState.LA
TRIO = [MY, SG, TH]


async def rejected(call: Awaitable[object]) -> str:
    """The error type with which the workflow's validator refused an update."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await call
    assert isinstance(info.value.cause, ApplicationError)
    return str(info.value.cause.type)


async def withdraw(h: Harness, proposal_id: str, reason: str = "test finished") -> None:
    """End a proposal left waiting, so no test leaves a running workflow behind."""
    handle = h.client.get_workflow_handle_for(ProposalWorkflow.run, proposal_id)
    await handle.execute_update(ProposalWorkflow.withdraw, WithdrawInput(reason=reason))
    await h.result(handle)


async def everyone_of(h: Harness, proposal_id: str, number: int, answers: dict[MemberState, Position]) -> None:
    """The given states answer round `number`, with a reason where their position needs one."""
    for state, position in answers.items():
        await h.answer(proposal_id, number, state, position, "because" if position.needs_reason else None)


def senior_officials(**overrides: object) -> SeniorOfficialsStage:
    return SeniorOfficialsStage.model_validate(
        {"mode": EndorsementMode.AD_REFERENDUM, "deadline": timedelta(days=14), "reminders": []} | overrides
    )


async def ministerial(h: Harness, in_days: int = 3, **overrides: object) -> MinisterialStage:
    """An ADGMIN meeting `in_days` after the test server's current time, chaired by Thailand."""
    date = (await h.env.get_current_time()) + timedelta(days=in_days)
    return MinisterialStage.model_validate(
        {
            "mode": EndorsementMode.MEETING,
            "date": date,
            "chair": TH,
            "venue": "Bangkok",
            "grace": timedelta(days=7),
            "deadline": timedelta(days=14),
            "reminders": [],
            "participants": TRIO,
        }
        | overrides
    )


async def past(h: Harness, moment: datetime) -> None:
    """Skip the test server's clock to an hour after `moment`."""
    await h.env.sleep(moment - await h.env.get_current_time() + timedelta(hours=1))


def funding(**overrides: object) -> FundingStage:
    return FundingStage.model_validate(
        {"budget_target": Decimal("300000.00"), "participants": TRIO, "reminders": []} | overrides
    )


# --- consultation -----------------------------------------------------------------------------------------


async def test_consultation_invites_every_sector_by_default(harness: Harness) -> None:
    handle = await harness.start(ConsultationStage(), review(participants=[MY]))
    consultation = await harness.consultation_open(handle.id, 0)

    invitation = next(m for m in harness.backend.consultation_mailings if m.proposal_id == handle.id)
    assert invitation.step == "invitation"
    assert invitation.sectors == list(Sector)
    assert invitation.stage_index == 0 and invitation.document.version == 1
    assert invitation.deadline == consultation.deadline
    started = (await handle.query(ProposalWorkflow.status)).stages[0].started_at
    assert started is not None
    assert timedelta(days=21) <= consultation.deadline - started < timedelta(days=21, minutes=1)
    await withdraw(harness, handle.id)


async def test_consultation_invites_only_the_configured_sectors(harness: Harness) -> None:
    handle = await harness.start(
        ConsultationStage(sectors=[Sector.ACADEMIA, Sector.INDUSTRY]), review(participants=[MY])
    )
    await harness.consultation_open(handle.id, 0)

    invitation = next(m for m in harness.backend.consultation_mailings if m.proposal_id == handle.id)
    assert invitation.sectors == [Sector.ACADEMIA, Sector.INDUSTRY]
    # A stakeholder of a sector that was not invited cannot comment.
    assert await rejected(harness.comment(handle.id, 0, "from civil society", Sector.CIVIL_SOCIETY)) == "NotInvited"
    await harness.comment(handle.id, 0, "from a university", Sector.ACADEMIA)
    assert harness.backend.kinds(handle.id).count("comment") == 1
    await withdraw(harness, handle.id)


async def test_a_comment_reaches_the_consultation_named_in_the_proposal_status(harness: Harness) -> None:
    handle = await harness.start(ConsultationStage(deadline=timedelta(days=7)), review(participants=[MY]))
    await harness.consultation_open(handle.id, 0)
    status = await handle.query(ProposalWorkflow.status)
    assert status.stage == "consultation"
    assert status.stage_workflow_id == consultation_workflow_id(handle.id, 0)

    child = harness.client.get_workflow_handle_for(ConsultationWorkflow.run, status.stage_workflow_id)
    receipt = await harness.comment(handle.id, 0, "Section 3 should name the incident-reporting channel")
    matrix = await child.query(ConsultationWorkflow.status)
    assert matrix.is_open
    assert [c.comment_id for c in matrix.comments] == [receipt.comment_id]
    # The workflow and the ledger carry the body's hash; the body is stored once under it.
    body_hash = matrix.comments[0].text_sha256
    assert matrix.comments[0].text is None
    assert harness.backend.comment_bodies[body_hash] == "Section 3 should name the incident-reporting channel"
    assert matrix.comments[0].disposition is None
    assert matrix.comments[0].ledger_entry_hash == receipt.ledger_entry_hash
    comment_entry = harness.backend.payloads(handle.id, "comment")
    assert [e["comment_id"] for e in comment_entry] == [receipt.comment_id]
    assert comment_entry[0]["text_sha256"] == body_hash and "text" not in comment_entry[0]
    await withdraw(harness, handle.id)


async def test_a_comment_after_the_deadline_is_rejected(harness: Harness) -> None:
    handle = await harness.start(ConsultationStage(deadline=timedelta(days=7)), review(participants=[MY]))
    await harness.consultation_open(handle.id, 0)
    first = await harness.comment(handle.id, 0, "on time")
    await harness.env.sleep(timedelta(days=7, hours=1))

    assert await rejected(harness.comment(handle.id, 0, "too late")) == "ConsultationClosed"
    matrix = await harness.consultation(handle.id, 0).query(ConsultationWorkflow.status)
    assert not matrix.is_open
    assert [c.comment_id for c in matrix.comments] == [first.comment_id]
    assert harness.backend.kinds(handle.id).count("comment") == 1
    await withdraw(harness, handle.id)


async def test_extending_moves_the_deadline_and_takes_comments_until_the_new_one(harness: Harness) -> None:
    handle = await harness.start(ConsultationStage(deadline=timedelta(days=7)), review(participants=[MY]))
    opened = await harness.consultation_open(handle.id, 0)
    child = harness.consultation(handle.id, 0)

    new_deadline = await child.execute_update(ConsultationWorkflow.extend, ExtendInput(by=timedelta(days=7)))
    assert new_deadline == opened.deadline + timedelta(days=7)
    assert (await child.query(ConsultationWorkflow.status)).deadline == new_deadline
    extended = [m for m in harness.backend.consultation_mailings if m.proposal_id == handle.id]
    assert [m.step for m in extended] == ["invitation", "extended-1"]
    assert extended[1].deadline == new_deadline
    # The entry holds what the extension asked for: the deadline is the opening one plus every extension's `by`.
    assert harness.backend.payloads(handle.id, "consultation_extended") == [
        ExtendInput(by=timedelta(days=7)).model_dump(mode="json")
    ]

    # Between the old and the new deadline the consultation still takes comments ...
    await harness.env.sleep(timedelta(days=10))
    between = await harness.comment(handle.id, 0, "after the first deadline, before the new one")
    assert (await child.query(ConsultationWorkflow.status)).is_open
    # ... and after the new one it does not, nor can it be extended any more.
    await harness.env.sleep(timedelta(days=5))
    assert await rejected(harness.comment(handle.id, 0, "too late")) == "ConsultationClosed"
    assert await rejected(child.execute_update(ConsultationWorkflow.extend, ExtendInput(by=timedelta(days=1)))) == (
        "ConsultationClosed"
    )
    matrix = await child.query(ConsultationWorkflow.status)
    assert [c.comment_id for c in matrix.comments] == [between.comment_id]
    await withdraw(harness, handle.id)


async def test_the_consultation_closes_only_once_every_comment_has_a_disposition(harness: Harness) -> None:
    handle = await harness.start(ConsultationStage(deadline=timedelta(days=7)), review(participants=[MY]))
    await harness.consultation_open(handle.id, 0)
    child = harness.consultation(handle.id, 0)
    clause = await harness.comment(handle.id, 0, "Add a clause on open-weight models", Sector.CIVIL_SOCIETY)
    scope = await harness.comment(handle.id, 0, "Narrow the scope to frontier models", Sector.INDUSTRY)
    await harness.env.sleep(timedelta(days=8))

    # Past the deadline, with comments unanswered: the proposal stays in consultation.
    await child.execute_update(
        ConsultationWorkflow.respond,
        DispositionInput(comment_id=clause.comment_id, disposition=Disposition.ACCEPTED, reason="added as 4.2"),
    )
    await asyncio.sleep(0.3)  # time enough for a wrongly closing consultation to reach the ledger
    status = await handle.query(ProposalWorkflow.status)
    assert status.stage == "consultation" and status.round == 0
    assert status.stages[0].status is StageStatus.RUNNING
    assert "consultation_closed" not in harness.backend.kinds(handle.id)

    await child.execute_update(
        ConsultationWorkflow.respond,
        DispositionInput(
            comment_id=scope.comment_id, disposition=Disposition.NOT_ACCEPTED, reason="the network covers all AI"
        ),
    )
    status = await harness.round_open(handle.id, 1)
    assert status.stage == "member_review"
    consultation = status.stages[0]
    assert consultation.status is StageStatus.PASSED
    assert consultation.outcome == "2 comment(s) answered: 1 accepted, 1 not_accepted"
    assert consultation.details["dispositions"] == {"accepted": 1, "not_accepted": 1}
    matrix = harness.backend.comments(handle.id, consultation_workflow_id(handle.id, 0))
    assert matrix[clause.comment_id].disposition == "accepted"
    assert matrix[clause.comment_id].reason == "added as 4.2"
    assert matrix[clause.comment_id].sector == "civil_society"
    assert matrix[scope.comment_id].disposition == "not_accepted"
    assert matrix[scope.comment_id].reason == "the network covers all AI"

    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    assert (await harness.result(handle)).status is ProposalState.AGREED
    kinds = harness.backend.kinds(handle.id)
    assert kinds.count("comment") == 2 and kinds.count("disposition") == 2
    assert kinds.index("consultation_closed") > max(i for i, k in enumerate(kinds) if k == "disposition")


async def test_a_finished_stage_report_names_its_workflow(harness: Harness) -> None:
    handle = await harness.start(ConsultationStage(deadline=timedelta(days=7)), review(participants=[MY]))
    await harness.consultation_open(handle.id, 0)
    await harness.env.sleep(timedelta(days=8))  # no comments: the consultation closes at its deadline
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    result = await harness.result(handle)

    assert result.stages[0].outcome == "0 comment(s) answered: no comments"
    assert result.stages[0].workflow_id == consultation_workflow_id(handle.id, 0)


async def test_a_disposition_for_an_unknown_comment_is_rejected(harness: Harness) -> None:
    handle = await harness.start(ConsultationStage(deadline=timedelta(days=7)), review(participants=[MY]))
    await harness.consultation_open(handle.id, 0)
    child = harness.consultation(handle.id, 0)
    unknown = DispositionInput(comment_id="no-such-comment", disposition=Disposition.NOTED, reason="noted")
    assert await rejected(child.execute_update(ConsultationWorkflow.respond, unknown)) == "UnknownComment"
    assert "disposition" not in harness.backend.kinds(handle.id)
    await withdraw(harness, handle.id)


# --- member review: decision rules, reservations, alternates ---------------------------------------------------


async def test_silence_rule_passes_when_nobody_objects(harness: Harness) -> None:
    handle = await harness.start(review(rule=DecisionRule.SILENCE, participants=[BN, KH, LA], max_rounds=1))
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, BN, Position.APPROVE)
    result = await harness.result(handle)  # KH and LA stay silent until the deadline

    assert result.status is ProposalState.AGREED
    outcome = result.rounds[0]
    assert outcome.verdict is Verdict.PASSED and outcome.closed_because == "deadline"
    assert outcome.reason == "silence procedure: no state objected"
    assert outcome.positions[KH].deemed and outcome.positions[LA].deemed
    assert not outcome.positions[BN].deemed


@pytest.mark.parametrize("policy", [SilencePolicy.ABSTAIN, SilencePolicy.OBJECT])
async def test_silence_rule_deems_non_responders_to_concur(harness: Harness, policy: SilencePolicy) -> None:
    handle = await harness.start(
        review(rule=DecisionRule.SILENCE, silence=policy, participants=[BN, KH, LA], max_rounds=1)
    )
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, BN, Position.APPROVE)
    result = await harness.result(handle)

    outcome = result.rounds[0]
    assert {outcome.positions[s].position for s in (KH, LA)} == {Position.APPROVE}
    assert result.status is ProposalState.AGREED


async def test_silence_rule_is_broken_by_one_objection(harness: Harness) -> None:
    handle = await harness.start(review(rule=DecisionRule.SILENCE, participants=[BN, KH, LA]))
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, BN, Position.APPROVE)
    await harness.answer(handle.id, 1, KH, Position.OBJECT, "the secretariat budget is not agreed")
    await harness.answer(handle.id, 1, LA, Position.APPROVE)
    status = await harness.until(handle.id, lambda s: s.stage == "revision", "the revision stage")

    outcome = status.rounds[0]
    assert outcome.verdict is Verdict.CHANGES_REQUESTED
    assert outcome.reason == "silence broken by KH"
    assert outcome.positions[KH].reason == "the secretariat budget is not agreed"
    await withdraw(harness, handle.id)


async def test_a_reservation_is_shown_in_the_round_and_the_stage(harness: Harness) -> None:
    handle = await harness.start(review(participants=[MY, SG]))
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    await harness.answer(handle.id, 1, SG, Position.APPROVE_WITH_RESERVATION, "subject to national data law")
    result = await harness.result(handle)

    assert result.status is ProposalState.AGREED
    assert result.rounds[0].reservations == {SG: "subject to national data law"}
    assert result.stages[0].details["reservations"] == {"SG": "subject to national data law"}
    assert result.stages[0].details["round"] == 1


async def test_an_answer_notifies_the_states_other_delegates(harness: Harness) -> None:
    handle = await harness.start(review(participants=[MY, SG]))
    await harness.round_open(handle.id, 1)
    receipt = await harness.answer(handle.id, 1, SG, Position.APPROVE, delegate_id="sg-focal-point")
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    await harness.result(handle)

    notice = next(n for n in harness.backend.notices if n.proposal_id == handle.id and n.state is SG)
    assert notice.delegate_id == "sg-focal-point"
    assert notice.decision_id == receipt.decision_id
    assert notice.position is Position.APPROVE and notice.round == 1
    assert notice.roles == [Role.FOCAL_POINT, Role.ALTERNATE]


async def test_two_delegates_of_one_state_answer_and_the_latest_stands(harness: Harness) -> None:
    handle = await harness.start(review(participants=[MY, SG]))
    await harness.round_open(handle.id, 1)
    first = await harness.answer(handle.id, 1, SG, Position.OBJECT, "too early", delegate_id="sg-focal-point")
    latest = await harness.answer(handle.id, 1, SG, Position.APPROVE, delegate_id="sg-alternate")
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    result = await harness.result(handle)

    assert result.status is ProposalState.AGREED
    singapore = result.rounds[0].positions[SG]
    assert singapore.position is Position.APPROVE
    assert singapore.delegate_id == "sg-alternate"
    assert singapore.decision_id == latest.decision_id != first.decision_id
    notices = [(n.delegate_id, n.decision_id) for n in harness.backend.notices if n.proposal_id == handle.id]
    assert ("sg-focal-point", first.decision_id) in notices and ("sg-alternate", latest.decision_id) in notices
    assert harness.positions_recorded(handle.id) == 3  # both of Singapore's answers stay in the ledger


# --- ADGSOM ad referendum ---------------------------------------------------------------------------------


async def test_ad_referendum_with_no_answers_passes_at_the_deadline(harness: Harness) -> None:
    handle = await harness.start(senior_officials())
    result = await harness.result(handle)

    assert result.status is ProposalState.ENDORSED
    outcome = result.rounds[0]
    assert outcome.purpose is RoundPurpose.AD_REFERENDUM and outcome.stage_type is StageType.SENIOR_OFFICIALS
    assert outcome.closed_because == "deadline"
    invitation = next(m for m in harness.backend.mailings if m.proposal_id == handle.id)
    assert invitation.deadline <= outcome.closed_at < invitation.deadline + timedelta(minutes=1)
    assert all(p.deemed and p.position is Position.APPROVE for p in outcome.positions.values())
    assert set(outcome.positions) == set(ALL)
    assert result.stages[0].outcome == "ADGSOM ad referendum: silence procedure: no state objected"
    assert invitation.purpose is RoundPurpose.AD_REFERENDUM and invitation.roles == [Role.SENIOR_OFFICIAL]


async def test_ad_referendum_objection_ends_the_proposal_not_adopted(harness: Harness) -> None:
    handle = await harness.start(senior_officials())
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, SG, Position.OBJECT, "needs ministerial clearance first")
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_ENDORSED
    assert result.stage == "not_endorsed"
    assert result.closed_reason == "ADGSOM ad referendum: silence broken by SG"
    assert result.rounds[0].positions[SG].reason == "needs ministerial clearance first"
    assert result.stages[0].status is StageStatus.FAILED
    closing = [o for o in harness.backend.outcomes if o.proposal_id == handle.id]
    assert [(o.status, o.reason) for o in closing] == [(ProposalState.NOT_ENDORSED, result.closed_reason)]


async def test_ad_referendum_takes_no_change_requests(harness: Harness) -> None:
    handle = await harness.start(senior_officials(participants=TRIO))
    await harness.round_open(handle.id, 1)
    live = await harness.round_status(handle.id, 1)
    assert live.purpose is RoundPurpose.AD_REFERENDUM
    assert live.allowed == AD_REFERENDUM_POSITIONS
    assert Position.REQUEST_CHANGES not in live.allowed

    assert await rejected(harness.answer(handle.id, 1, MY, Position.REQUEST_CHANGES, "edit 2.1")) == (
        "PositionNotAllowed"
    )
    assert harness.positions_recorded(handle.id) == 0
    assert (await harness.result(handle)).status is ProposalState.ENDORSED


# --- ADGMIN meeting ---------------------------------------------------------------------------------------


async def test_meeting_invitation_then_recorded_decision_passes(harness: Harness) -> None:
    stage = await ministerial(harness)
    assert stage.date is not None
    handle = await harness.start(stage)
    invitation = await harness.meeting_invited(handle.id, 0)
    assert invitation.step == "invitation"
    assert invitation.date == stage.date and invitation.chair is TH and invitation.venue == "Bangkok"
    assert invitation.states == TRIO and invitation.roles == [Role.MINISTER_OFFICE]
    assert invitation.stage_type is StageType.MINISTERIAL

    meeting = harness.meeting(handle.id, 0)
    record = MeetingRecord(present=TRIO, decision=MeetingDecision.ENDORSED, paragraph="The Meeting endorsed it.")
    assert await rejected(meeting.execute_update(MeetingWorkflow.record_meeting, record)) == "NotYetHeld"

    await past(harness, stage.date)
    await meeting.execute_update(MeetingWorkflow.record_meeting, record)
    result = await harness.result(handle)

    assert result.status is ProposalState.ENDORSED
    assert result.stages[0].status is StageStatus.PASSED
    assert result.stages[0].outcome == "ADGMIN meeting: the Meeting endorsed the text"
    recorded = result.stages[0].details["meeting"]
    assert recorded["recorded"] is True and recorded["verdict"] == "passed" and recorded["decision"] == "endorsed"
    assert recorded["record"]["present"] == ["MY", "SG", "TH"] and recorded["absent"] == []
    assert result.rounds == []  # every state was present: no ad referendum round ran
    kinds = harness.backend.kinds(handle.id)
    assert "meeting_scheduled" in kinds and "meeting_recorded" in kinds


async def test_meeting_that_did_not_endorse_ends_the_proposal(harness: Harness) -> None:
    stage = await ministerial(harness)
    assert stage.date is not None
    handle = await harness.start(stage)
    await harness.meeting_invited(handle.id, 0)
    await past(harness, stage.date)
    await harness.meeting(handle.id, 0).execute_update(
        MeetingWorkflow.record_meeting,
        MeetingRecord(
            present=TRIO,
            decision=MeetingDecision.NOT_ENDORSED,
            paragraph="The Meeting did not endorse the framework.",
            reservations={SG: "the funding model must come first"},
        ),
    )
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_ENDORSED
    assert result.stages[0].status is StageStatus.FAILED
    assert (result.closed_reason or "").startswith("ADGMIN meeting: the Meeting did not endorse")
    assert result.stages[0].details["meeting"]["record"]["reservations"] == {"SG": "the funding model must come first"}


async def test_meeting_left_unrecorded_falls_back_to_ad_referendum_and_passes_by_silence(harness: Harness) -> None:
    stage = await ministerial(harness, on_no_record=NoRecordPolicy.AD_REFERENDUM)
    handle = await harness.start(stage)
    result = await harness.result(handle)  # the meeting date, the grace and the fallback deadline all pass

    assert result.status is ProposalState.ENDORSED
    fallback = harness.backend.payloads(handle.id, "fallback_ad_referendum")
    assert len(fallback) == 1 and fallback[0]["stage"] == "ministerial"
    assert "no outcome was recorded" in fallback[0]["reason"]
    outcome = result.rounds[0]
    assert outcome.purpose is RoundPurpose.AD_REFERENDUM and outcome.stage_type is StageType.MINISTERIAL
    assert outcome.verdict is Verdict.PASSED
    assert all(p.deemed and p.position is Position.APPROVE for p in outcome.positions.values())
    assert result.stages[0].outcome == "ADGMIN ad referendum: silence procedure: no state objected"
    kinds = harness.backend.kinds(handle.id)
    assert kinds.index("fallback_ad_referendum") < kinds.index("round_opened")


async def test_meeting_left_unrecorded_with_expire_expires_the_proposal(harness: Harness) -> None:
    stage = await ministerial(harness, on_no_record=NoRecordPolicy.EXPIRE)
    handle = await harness.start(stage)
    result = await harness.result(handle)

    assert result.status is ProposalState.EXPIRED
    assert result.stage == "expired"
    assert "no outcome was recorded" in (result.closed_reason or "")
    assert result.rounds == []
    assert "fallback_ad_referendum" not in harness.backend.kinds(handle.id)
    assert [o.status for o in harness.backend.outcomes if o.proposal_id == handle.id] == [ProposalState.EXPIRED]


# --- funding ------------------------------------------------------------------------------------------------


async def indicate(h: Harness, proposal_id: str, states: list[MemberState], **amounts: Decimal) -> None:
    """Focal points indicate their states' contributions in the funding stage's first round."""
    await h.round_open(proposal_id, 1)
    for state in states:
        await h.answer(proposal_id, 1, state, Position.INDICATE, amount=amounts.get(state.value))


async def confirm(h: Harness, proposal_id: str, states: list[MemberState]) -> None:
    """Ministers' offices confirm, in the second round, the contributions their focal points indicated."""
    await h.round_open(proposal_id, 2)
    for state in states:
        await h.answer(proposal_id, 2, state, Position.CONFIRM)


@pytest.mark.parametrize(
    ("target", "participants"),
    [("1100000.00", ALL), ("1000000.00", ALL), ("100000.00", [BN, KH, LA])],
)
async def test_equal_shares_add_up_exactly_to_the_target(
    harness: Harness, target: str, participants: list[MemberState]
) -> None:
    handle = await harness.start(funding(budget_target=Decimal(target), participants=participants))
    await harness.round_open(handle.id, 1)
    terms = (await harness.round_status(handle.id, 1)).funding
    assert terms is not None and terms.model is FundingModel.EQUAL_SHARE and terms.currency == "USD"
    assert set(terms.expected) == set(participants)
    assert sum(terms.expected.values(), Decimal(0)) == Decimal(target)
    assert max(terms.expected.values()) - min(terms.expected.values()) <= Decimal("0.01")
    assert all(a == a.quantize(Decimal("0.01")) for a in terms.expected.values())

    await indicate(harness, handle.id, participants)
    await confirm(harness, handle.id, participants)
    result = await harness.result(handle)
    assert result.status is ProposalState.APPROVED
    details = result.stages[0].details
    assert details["confirmed_by_states"] == {s.value: str(a) for s, a in terms.expected.items()}
    assert Decimal(details["total"]) == Decimal(target)
    assert {s: p.amount for s, p in result.rounds[1].positions.items()} == terms.expected


async def test_a_focal_point_indicates_and_the_ministers_office_confirms(harness: Harness) -> None:
    handle = await harness.start(funding())
    await harness.round_open(handle.id, 1)
    indication = await harness.round_status(handle.id, 1)
    assert indication.allowed == [Position.INDICATE, Position.DECLINE]
    assert indication.funding is not None and indication.funding.step is FundingStep.INDICATION
    assert await rejected(harness.answer(handle.id, 1, MY, Position.CONFIRM)) == "PositionNotAllowed"
    receipt = await harness.answer(handle.id, 1, MY, Position.INDICATE)
    assert receipt.amount == Decimal("100000.00")
    await indicate(harness, handle.id, [SG, TH])

    await harness.round_open(handle.id, 2)
    confirmation = await harness.round_status(handle.id, 2)
    assert confirmation.allowed == [Position.CONFIRM, Position.DECLINE]
    assert confirmation.funding is not None and confirmation.funding.step is FundingStep.CONFIRMATION
    assert confirmation.funding.expected == dict.fromkeys(TRIO, Decimal("100000.00"))
    invitation = next(
        m for m in harness.backend.mailings if m.proposal_id == handle.id and m.round == 2 and m.step == "invitation"
    )
    assert invitation.roles == [Role.MINISTER_OFFICE] and invitation.states == TRIO
    await confirm(harness, handle.id, TRIO)
    result = await harness.result(handle)

    assert result.status is ProposalState.APPROVED
    details = result.stages[0].details
    assert (
        details["indicated_by_states"]
        == details["confirmed_by_states"]
        == dict.fromkeys(["MY", "SG", "TH"], "100000.00")
    )
    assert details["not_confirmed"] == [] and details["indication_round"] == 1
    indicated = [e for e in harness.backend.payloads(handle.id, "position") if e["round"] == 1]
    confirmed = [e for e in harness.backend.payloads(handle.id, "position") if e["round"] == 2]
    assert {(e["state"], e["position"], e["amount"]) for e in indicated} == {
        (s, "indicate", "100000.00") for s in ("MY", "SG", "TH")
    }
    assert {(e["state"], e["position"], e["amount"]) for e in confirmed} == {
        (s, "confirm", "100000.00") for s in ("MY", "SG", "TH")
    }


async def test_a_contribution_indicated_but_never_confirmed_does_not_count(harness: Harness) -> None:
    handle = await harness.start(funding(rule=DecisionRule.ASEAN_MINUS_X, min_participants=2))
    await indicate(harness, handle.id, TRIO)
    await confirm(harness, handle.id, [MY, SG])  # Thailand's minister's office never answers
    # Silence is not consent, nor a confirmation: the round is overdue until the coordinator acts.
    for _ in range(40):
        if (await harness.round_status(handle.id, 2)).overdue:
            break
        await harness.env.sleep(timedelta(days=1))
    confirmation = harness.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(handle.id, 2))
    await confirmation.execute_update(ReviewRoundWorkflow.close_round, CloseRoundInput(reason="no confirmation"))
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_FUNDED
    assert result.rounds[1].verdict is Verdict.NO_CONSENSUS
    details = result.stages[0].details
    assert details["indicated_by_states"] == dict.fromkeys(["MY", "SG", "TH"], "100000.00")
    assert details["confirmed_by_states"] == {"MY": "100000.00", "SG": "100000.00"}
    assert details["not_confirmed"] == ["TH"]
    assert details["total"] == "200000.00"
    assert "200,000.00 of 300,000.00 USD confirmed" in (result.closed_reason or "")


async def test_tiered_shares_follow_the_percentages(harness: Harness) -> None:
    shares = {MY: Decimal(50), SG: Decimal(30), TH: Decimal(20)}
    handle = await harness.start(funding(model=FundingModel.TIERED, budget_target=Decimal("1200000.00"), shares=shares))
    await harness.round_open(handle.id, 1)
    terms = (await harness.round_status(handle.id, 1)).funding
    assert terms is not None
    assert terms.expected == {MY: Decimal("600000.00"), SG: Decimal("360000.00"), TH: Decimal("240000.00")}

    await indicate(harness, handle.id, TRIO)
    await confirm(harness, handle.id, TRIO)
    result = await harness.result(handle)
    assert result.status is ProposalState.APPROVED
    assert result.stages[0].details["confirmed_by_states"] == {
        "MY": "600000.00",
        "SG": "360000.00",
        "TH": "240000.00",
    }


async def test_voluntary_pledges_need_an_amount_and_are_summed(harness: Harness) -> None:
    handle = await harness.start(funding(model=FundingModel.VOLUNTARY, budget_target=Decimal("500000.00")))
    await harness.round_open(handle.id, 1)
    terms = (await harness.round_status(handle.id, 1)).funding
    assert terms is not None and terms.model is FundingModel.VOLUNTARY and terms.expected == {}
    assert await rejected(harness.answer(handle.id, 1, MY, Position.INDICATE)) == "AmountRequired"
    assert await rejected(harness.answer(handle.id, 1, MY, Position.INDICATE, amount=Decimal(0))) == "AmountRequired"

    amounts = {"MY": Decimal("250000.00"), "SG": Decimal("150000.00"), "TH": Decimal("100000.00")}
    await indicate(harness, handle.id, TRIO, **amounts)
    await confirm(harness, handle.id, TRIO)  # the minister's office confirms the amount indicated, without retyping it
    result = await harness.result(handle)
    assert result.status is ProposalState.APPROVED
    details = result.stages[0].details
    assert details["confirmed_by_states"] == {"MY": "250000.00", "SG": "150000.00", "TH": "100000.00"}
    assert Decimal(details["total"]) == Decimal("500000.00")


async def test_pledges_short_of_the_target_are_not_adopted(harness: Harness) -> None:
    handle = await harness.start(funding(model=FundingModel.VOLUNTARY, budget_target=Decimal("500000.00")))
    await indicate(harness, handle.id, TRIO, MY=Decimal("100000.00"), SG=Decimal("100000.00"), TH=Decimal("100000.00"))
    await confirm(harness, handle.id, TRIO)
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_FUNDED
    assert result.rounds[1].verdict is Verdict.PASSED  # the states agreed; the money did not suffice
    assert "short by 200,000.00" in (result.closed_reason or "")
    assert result.stages[0].status is StageStatus.FAILED
    assert result.stages[0].details["total"] == "300000.00"


async def test_a_partner_pledge_closes_the_gap_when_the_process_counts_it(harness: Harness) -> None:
    stage = funding(model=FundingModel.VOLUNTARY, budget_target=Decimal("500000.00"), partner_pledges_count=True)
    handle = await harness.start(stage)
    await harness.round_open(handle.id, 1)
    pledge = Pledge(
        partner="Japan (dialogue partner)",
        amount=Decimal("200000.00"),
        currency="USD",
        activities=["capacity building"],
    )
    recorded = await handle.execute_update(ProposalWorkflow.pledge, pledge)
    assert recorded.recorded_at is not None and recorded.activities == ["capacity building"]
    await indicate(harness, handle.id, TRIO, MY=Decimal("100000.00"), SG=Decimal("100000.00"), TH=Decimal("100000.00"))
    await confirm(harness, handle.id, TRIO)
    result = await harness.result(handle)

    assert result.status is ProposalState.APPROVED
    details = result.stages[0].details
    assert details["partner_pledges"] == {"Japan (dialogue partner)": "200000.00"}
    assert details["trust_fund"] == [
        {"partner": "Japan (dialogue partner)", "amount": "200000.00", "activities": ["capacity building"]}
    ]
    assert details["core_total"] == "300000.00" and details["trust_fund_total"] == "200000.00"
    assert Decimal(details["total"]) == Decimal("500000.00")
    assert [p.partner for p in result.pledges] == ["Japan (dialogue partner)"]
    entries = harness.backend.payloads(handle.id, "partner_pledge")
    assert [(e["partner"], e["activities"]) for e in entries] == [("Japan (dialogue partner)", ["capacity building"])]


async def test_a_partner_pledge_is_kept_apart_from_the_core_budget_by_default(harness: Harness) -> None:
    handle = await harness.start(funding(model=FundingModel.VOLUNTARY, budget_target=Decimal("500000.00")))
    await harness.round_open(handle.id, 1)
    await handle.execute_update(ProposalWorkflow.pledge, Pledge(partner="Japan", amount=Decimal("200000.00")))
    await indicate(harness, handle.id, TRIO, MY=Decimal("100000.00"), SG=Decimal("100000.00"), TH=Decimal("100000.00"))
    await confirm(harness, handle.id, TRIO)
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_FUNDED
    details = result.stages[0].details
    assert details["partner_pledges_count"] is False
    assert details["trust_fund_total"] == "200000.00" and details["total"] == details["core_total"] == "300000.00"
    assert "short by 200,000.00" in (result.closed_reason or "")


async def test_a_pledge_in_another_currency_is_rejected(harness: Harness) -> None:
    handle = await harness.start(funding())
    await harness.round_open(handle.id, 1)
    euro = Pledge(partner="European Union", amount=Decimal("50000.00"), currency="EUR")
    assert await rejected(handle.execute_update(ProposalWorkflow.pledge, euro)) == "WrongCurrency"
    assert "partner_pledge" not in harness.backend.kinds(handle.id)
    await indicate(harness, handle.id, TRIO)
    await confirm(harness, handle.id, TRIO)
    result = await harness.result(handle)
    assert result.pledges == [] and result.stages[0].details["partner_pledges"] == {}


async def test_a_pledge_to_a_proposal_without_a_funding_stage_is_rejected(harness: Harness) -> None:
    handle = await harness.start(review(participants=[MY]))
    await harness.round_open(handle.id, 1)
    pledge = Pledge(partner="Australia", amount=Decimal("1000.00"))
    assert await rejected(handle.execute_update(ProposalWorkflow.pledge, pledge)) == "NoFundingStage"
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    assert (await harness.result(handle)).pledges == []


async def test_a_declined_contribution_under_consensus_is_not_adopted(harness: Harness) -> None:
    handle = await harness.start(funding())
    await indicate(harness, handle.id, [MY, SG])
    await harness.answer(handle.id, 1, TH, Position.DECLINE)
    result = await harness.result(handle)

    assert result.status is ProposalState.NOT_FUNDED
    assert len(result.rounds) == 1  # nothing goes to the ministers' offices
    assert result.rounds[0].verdict is Verdict.CHANGES_REQUESTED
    assert "TH" in (result.closed_reason or "")
    details = result.stages[0].details
    assert details["indicated_by_states"] == {"MY": "100000.00", "SG": "100000.00"}
    assert details["confirmed_by_states"] == {}


async def test_a_declined_contribution_under_asean_minus_x_opts_out(harness: Harness) -> None:
    handle = await harness.start(
        funding(rule=DecisionRule.ASEAN_MINUS_X, min_participants=2, partner_pledges_count=True)
    )
    await harness.round_open(handle.id, 1)
    # A dialogue partner covers the share Thailand will not carry.
    await handle.execute_update(ProposalWorkflow.pledge, Pledge(partner="Korea", amount=Decimal("100000.00")))
    await indicate(harness, handle.id, [MY, SG])
    await harness.answer(handle.id, 1, TH, Position.DECLINE)
    await confirm(harness, handle.id, [MY, SG])
    result = await harness.result(handle)

    assert result.status is ProposalState.APPROVED
    assert (await harness.round_status(handle.id, 2)).participants == [MY, SG]
    assert result.rounds[0].participating == [MY, SG]
    assert "TH opted out" in result.rounds[0].reason
    details = result.stages[0].details
    assert details["participating"] == ["MY", "SG"]
    assert details["confirmed_by_states"] == {"MY": "100000.00", "SG": "100000.00"}
    assert details["partner_pledges"] == {"Korea": "100000.00"}


# --- withdrawal -----------------------------------------------------------------------------------------------


async def test_withdrawing_during_the_consultation_cancels_it(harness: Harness) -> None:
    handle = await harness.start(ConsultationStage(), review(participants=[MY]))
    await harness.consultation_open(handle.id, 0)
    await harness.comment(handle.id, 0, "a comment left unanswered")
    await handle.execute_update(ProposalWorkflow.withdraw, WithdrawInput(reason="merged into another proposal"))
    result = await harness.result(handle)

    assert result.status is ProposalState.WITHDRAWN
    assert result.closed_reason == "withdrawn: merged into another proposal"
    assert [s.status for s in result.stages] == [StageStatus.CANCELLED, StageStatus.PENDING]
    child = await harness.consultation(handle.id, 0).describe()
    assert child.status is WorkflowExecutionStatus.CANCELED
    assert [o.status for o in harness.backend.outcomes if o.proposal_id == handle.id] == [ProposalState.WITHDRAWN]


async def test_withdrawing_while_a_meeting_is_awaited_cancels_it(harness: Harness) -> None:
    handle = await harness.start(await ministerial(harness, in_days=30))
    await harness.meeting_invited(handle.id, 0)
    await handle.execute_update(ProposalWorkflow.withdraw, WithdrawInput(reason="the chair asked to defer"))
    result = await harness.result(handle)

    assert result.status is ProposalState.WITHDRAWN
    assert result.stages[0].status is StageStatus.CANCELLED
    assert result.stages[0].outcome == "withdrawn before the ADGMIN meeting"
    child = await harness.client.get_workflow_handle(meeting_workflow_id(handle.id, 0)).describe()
    assert child.status is WorkflowExecutionStatus.CANCELED
    assert "meeting_recorded" not in harness.backend.kinds(handle.id)


# --- the whole way up the ladder ----------------------------------------------------------------------------


async def test_the_full_default_process_adopts_the_proposal(harness: Harness) -> None:
    meeting = await ministerial(harness, in_days=60, participants=None, chair=BN)
    assert meeting.date is not None
    handle = await harness.start(
        DraftingStage(),
        ConsultationStage(deadline=timedelta(days=7)),
        review(),
        senior_officials(),
        meeting,
        FundingStage(model=FundingModel.EQUAL_SHARE, budget_target=Decimal("1100000.00"), currency="USD"),
    )
    await harness.until(handle.id, lambda s: s.stage == "drafting", "drafting")
    await handle.execute_update(ProposalWorkflow.submit)

    await harness.consultation_open(handle.id, 1)
    comment = await harness.comment(handle.id, 1, "Name the dialogue partners' role", Sector.DIALOGUE_PARTNER)
    await harness.env.sleep(timedelta(days=8))
    await harness.consultation(handle.id, 1).execute_update(
        ConsultationWorkflow.respond,
        DispositionInput(comment_id=comment.comment_id, disposition=Disposition.PARTLY, reason="see section 5"),
    )

    await harness.round_open(handle.id, 1)  # WG-AI member review
    await everyone(harness, handle.id, 1)
    await harness.round_open(handle.id, 2)  # ADGSOM ad referendum
    await everyone(harness, handle.id, 2)

    await harness.meeting_invited(handle.id, 4)  # ADGMIN
    await past(harness, meeting.date)
    await harness.meeting(handle.id, 4).execute_update(
        MeetingWorkflow.record_meeting,
        MeetingRecord(present=ALL, decision=MeetingDecision.ENDORSED, paragraph="The Meeting endorsed the framework."),
    )

    await harness.round_open(handle.id, 3)  # funding: focal points indicate, ministers' offices confirm
    await everyone(harness, handle.id, 3, Position.INDICATE)
    await harness.round_open(handle.id, 4)
    await everyone(harness, handle.id, 4, Position.CONFIRM)
    result = await harness.result(handle)

    assert result.status is ProposalState.ENDORSED and result.stage == "endorsed"
    assert result.closed_reason == "every stage passed"
    assert [s.type for s in result.stages] == [
        StageType.DRAFTING,
        StageType.CONSULTATION,
        StageType.MEMBER_REVIEW,
        StageType.SENIOR_OFFICIALS,
        StageType.MINISTERIAL,
        StageType.FUNDING,
    ]
    assert [s.status for s in result.stages] == [StageStatus.PASSED] * 6
    assert [r.purpose for r in result.rounds] == [
        RoundPurpose.REVIEW,
        RoundPurpose.AD_REFERENDUM,
        RoundPurpose.FUNDING,
        RoundPurpose.FUNDING,
    ]
    assert result.stages[5].details["confirmed_by_states"] == dict.fromkeys((s.value for s in ALL), "100000.00")
    closing = [o for o in harness.backend.outcomes if o.proposal_id == handle.id]
    assert [o.status for o in closing] == [ProposalState.ENDORSED]
    assert harness.backend.kinds(handle.id)[-1] == "proposal_closed"

    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(STAGE_KEY) == "endorsed"
    assert attributes.get(KIND_KEY) == "operational_framework"
    assert attributes.get(LEAD_KEY) == "MY"
