"""Nobody is counted who was not asked: a round with a state it could not write to (time-skipping server).

The same on the real dev server, with a real relay answering 550 and the real CLI, is in
tests/test_not_invited_stack.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models.messages import (
    PositionSignal,
    PositionSubmission,
    ProposalState,
    ResendInput,
    ResendReceipt,
    SilenceProcedureInput,
)
from models.positions import Position
from models.states import MemberState
from models.tokens import round_workflow_id
from tests.fakes import fake_delegates
from tests.harness import Harness, review
from workflows.review_round import EVERY_RECIPIENT_FAILED, ReviewRoundWorkflow

MY, SG, TL, PH, VN = MemberState.MY, MemberState.SG, MemberState.TL, MemberState.PH, MemberState.VN


async def refused(call: Any, expected: str) -> ApplicationError:
    """Await an Update that must be refused with an ApplicationError of type `expected`."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await call
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == expected, cause
    return cause


async def ledger_has(h: Harness, proposal_id: str, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The payloads of `kind` once the ledger holds `count` of them (it is written as the round goes)."""
    for _ in range(200):
        found = h.backend.payloads(proposal_id, kind)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.025)
    raise AssertionError(f"{proposal_id}: the ledger holds {len(found)} {kind} entries, not {count}")


def resend(h: Harness, proposal_id: str, state: MemberState, deadline: timedelta | None = None) -> Any:
    handle = h.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(proposal_id, 1))
    return handle.execute_update(ReviewRoundWorkflow.resend, ResendInput(state=state, deadline=deadline))


async def test_a_state_nobody_could_write_to_is_not_counted_and_holds_the_round_open_until_resent(
    harness: Harness,
) -> None:
    harness.backend.nobody = {TL}
    handle = await harness.start(review(participants=[MY, SG, TL]))
    await harness.round_open(handle.id, 1)

    [entry] = await ledger_has(harness, handle.id, "not_invited")
    assert entry == {"round": 1, "state": "TL", "step": "invitation", "reason": "no delegate in role focal_point"}
    [outcome] = harness.backend.payloads(handle.id, "mail_outcome")
    assert outcome["step"] == "invitation" and outcome["round"] == 1 and outcome["stage_index"] is None
    assert outcome["not_invited"] == [{"state": "TL", "reason": "no delegate in role focal_point"}]
    assert {(r["state"], r["delegate_id"], r["outcome"]) for r in outcome["recipients"]} == {
        (s.value, d, "sent") for s in (MY, SG) for d in fake_delegates(s)
    }
    for _ in range(200):  # the coordinator is told without the round waiting for that email
        if harness.backend.alerts:
            break
        await asyncio.sleep(0.025)
    [alert] = harness.backend.alerts
    assert [(i.state, i.reason) for i in alert.not_invited] == [(TL, "no delegate in role focal_point")]

    # Nobody wrote to Timor-Leste: no delegate id answers for it.
    await refused(harness.answer(handle.id, 1, TL, Position.APPROVE), "NotInvited")
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    await harness.answer(handle.id, 1, SG, Position.APPROVE)

    # The deadline passes: the round neither closes nor counts Timor-Leste's silence.
    await harness.env.sleep(timedelta(days=15))
    status = await harness.round_status(handle.id, 1)
    assert status.is_open and status.not_invited == {TL: "no delegate in role focal_point"}
    assert status.waiting is not None and "Timor-Leste" in status.waiting and "resend" in status.waiting
    shown = await harness.until(handle.id, lambda s: s.status is ProposalState.RUNNING, "running")
    assert "round_closed" not in harness.backend.kinds(handle.id) and shown.round == 1

    # Still nobody on the roster: the resend is refused and nothing is recorded.
    before = list(harness.backend.kinds(handle.id))
    cause = await refused(resend(harness, handle.id, TL, timedelta(days=3)), "NotInvited")
    assert "TL still has nobody to write to" in cause.message
    assert harness.backend.kinds(handle.id) == before
    # The round's deadline has passed: a resend must give Timor-Leste a deadline of its own.
    harness.backend.nobody.clear()
    await refused(resend(harness, handle.id, TL), "DeadlinePassed")
    await refused(resend(harness, handle.id, VN, timedelta(days=3)), "NotParticipant")
    await refused(resend(harness, handle.id, MY, timedelta(days=3)), "AlreadyAnswered")

    receipt = await resend(harness, handle.id, TL, timedelta(days=3))
    assert isinstance(receipt, ResendReceipt)
    assert receipt.state is TL and receipt.delegate_ids == sorted(fake_delegates(TL))
    [resent] = harness.backend.payloads(handle.id, "invitation_resent")
    assert resent == {
        "round": 1,
        "state": "TL",
        "delegate_ids": sorted(fake_delegates(TL)),
        "deadline": receipt.deadline.isoformat(),
    }
    mailing = next(m for m in harness.backend.mailings if m.proposal_id == handle.id and m.step == "resend-1")
    assert mailing.states == [TL] and mailing.deadline == receipt.deadline
    assert sorted(mailing.delegate_ids or []) == sorted(fake_delegates(TL))
    assert [p["step"] for p in harness.backend.payloads(handle.id, "mail_outcome")] == ["invitation", "resend-1"]
    status = await harness.round_status(handle.id, 1)
    assert status.not_invited == {} and status.state_deadlines == {TL: receipt.deadline}

    await harness.answer(handle.id, 1, TL, Position.APPROVE)
    result = await harness.result(handle)
    assert result.status is ProposalState.AGREED
    assert {s: (p.position, p.deemed) for s, p in result.rounds[0].positions.items()} == {
        s: (Position.APPROVE, False) for s in (MY, SG, TL)
    }


async def test_a_state_whose_every_recipient_was_refused_is_not_invited_and_its_delegates_cannot_answer(
    harness: Harness,
) -> None:
    harness.backend.refused = {PH}
    handle = await harness.start(review(participants=[MY, PH], deadline=timedelta(days=5), reminders=[]))
    await harness.round_open(handle.id, 1)

    [entry] = await ledger_has(harness, handle.id, "not_invited")
    assert entry == {"round": 1, "state": "PH", "step": "invitation", "reason": EVERY_RECIPIENT_FAILED}
    [outcome] = harness.backend.payloads(handle.id, "mail_outcome")
    refusals = [r for r in outcome["recipients"] if r["state"] == "PH"]
    assert refusals and all(r["outcome"] == "refused" and r["code"] == 550 for r in refusals)
    # The ids looked up for the Philippines were accepted while the mail went out, and dropped once it was refused.
    for delegate in fake_delegates(PH):
        await refused(harness.answer(handle.id, 1, PH, Position.APPROVE, delegate_id=delegate), "NotInvited")
    await harness.answer(handle.id, 1, MY, Position.APPROVE)

    # The relay is fixed; the Philippines is invited with a fresh week and stays silent: only once its own deadline
    # has passed is the round overdue, and only a silence procedure announced to it then deems it to concur.
    harness.backend.refused.clear()
    await harness.env.sleep(timedelta(days=6))
    receipt = await resend(harness, handle.id, PH, timedelta(days=7))
    status = await harness.round_status(handle.id, 1)
    assert status.is_open and status.waiting is not None and "Philippines (PH) until" in status.waiting
    assert "round_closed" not in harness.backend.kinds(handle.id)
    while not (await harness.round_status(handle.id, 1)).overdue:
        await harness.env.sleep(timedelta(days=1))
    [overdue] = await ledger_has(harness, handle.id, "round_overdue")
    assert overdue["states"] == ["PH"] and overdue["deadline"] == receipt.deadline.isoformat()
    rounds = harness.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(handle.id, 1))
    await rounds.execute_update(
        ReviewRoundWorkflow.silence_procedure, SilenceProcedureInput(duration=timedelta(days=7))
    )
    result = await harness.result(handle)
    closed = result.rounds[0]
    assert closed.closed_because == "silence procedure ended" and closed.closed_at >= receipt.deadline
    assert closed.positions[PH].deemed and closed.positions[PH].position is Position.APPROVE


async def test_an_answer_from_a_delegate_id_the_round_did_not_invite_is_refused_and_not_recorded(
    harness: Harness,
) -> None:
    handle = await harness.start(review(participants=[MY, SG]))
    await harness.round_open(handle.id, 1)

    # A forged Update (as `temporal workflow update execute` sends): a made-up id, then another state's delegate.
    await refused(harness.answer(handle.id, 1, MY, Position.APPROVE, delegate_id="MY-ffffffffffffffff"), "NotInvited")
    cause = await refused(
        harness.answer(handle.id, 1, MY, Position.APPROVE, delegate_id=fake_delegates(SG)[0]), "NotInvited"
    )
    assert cause.message == f"delegate {fake_delegates(SG)[0]} was not invited to answer for MY in this round"
    assert harness.positions_recorded(handle.id) == 0

    # The Signal fallback cannot be refused: it is recorded as refused, and nothing counts.
    status = await harness.round_status(handle.id, 1)
    forged = PositionSubmission(
        proposal_id=handle.id,
        round=1,
        state=MY,
        delegate_id="MY-ffffffffffffffff",
        document_sha256=status.document.sha256,
        position=Position.OBJECT,
        reason="forged",
    )
    round_handle = harness.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(handle.id, 1))
    await round_handle.signal(
        ReviewRoundWorkflow.submit_position_signal, PositionSignal(decision_id="forged-1", submission=forged)
    )
    [refusal] = await ledger_has(harness, handle.id, "position_refused")
    assert refusal["refused"] == "NotInvited" and refusal["delegate_id"] == "MY-ffffffffffffffff"
    assert harness.positions_recorded(handle.id) == 0
    assert (await harness.round_status(handle.id, 1)).positions == {}

    # The invited answer; the proposal is decided by the invited delegates alone.
    await harness.answer(handle.id, 1, MY, Position.APPROVE, delegate_id=fake_delegates(MY)[1])
    await harness.answer(handle.id, 1, SG, Position.APPROVE)
    assert (await harness.result(handle)).status is ProposalState.AGREED


async def test_reminders_go_to_the_invited_delegates_of_the_silent_states_only(harness: Harness) -> None:
    harness.backend.nobody = {TL}
    handle = await harness.start(review(participants=[MY, SG, TL], reminders=[timedelta(days=7)]))
    await harness.round_open(handle.id, 1)
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    await harness.env.sleep(timedelta(days=8))

    outcomes = await ledger_has(harness, handle.id, "mail_outcome", 2)
    assert outcomes[1]["step"] == "reminder-1" and outcomes[1]["not_invited"] == []
    reminder = next(m for m in harness.backend.mailings if m.proposal_id == handle.id and m.step == "reminder-1")
    assert reminder.states == [SG] and sorted(reminder.delegate_ids or []) == sorted(fake_delegates(SG))
    [sent] = harness.backend.payloads(handle.id, "reminder_sent")
    assert sent["states"] == ["SG"]
