"""Membership as data, one delegate invited again, and a delegate replaced mid-round (time-skipping server, and the
`members` command on its own database)."""

from __future__ import annotations

import asyncio
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from models.db import write_session
from models.membership import MembershipError, admit, keep_admitted, members, members_on
from models.messages import ResendInput, ResendReceipt, RosterChange, RosterChangeReceipt
from models.positions import Position
from models.states import MEMBER_SINCE, MemberState, in_name_order, register_admitted
from models.tables import MembershipRecord
from models.tokens import round_workflow_id
from tests.fakes import fake_delegates
from tests.harness import Harness, review
from tests.integration import cli
from tests.test_not_invited import ledger_has, refused
from workflows.review_round import TAKEN_OFF, ReviewRoundWorkflow

MY, SG, TL = MemberState.MY, MemberState.SG, MemberState.TL
# A user-assigned ISO code, so that no test elsewhere that expects an unknown code to be refused meets it.
NEW = "QZ"


class Named(BaseModel):
    state: MemberState


# --- the states admitted as data ------------------------------------------------------------------------------


def test_a_code_is_a_member_state_only_once_admitted() -> None:
    with pytest.raises(ValidationError):
        Named.model_validate({"state": "QY"})
    admitted = register_admitted("QY", "Quebec Yonder", date(2031, 1, 1))
    assert Named.model_validate_json('{"state": "QY"}').state is admitted is MemberState("QY")
    assert admitted.official_name == "Quebec Yonder" and admitted.member_since == date(2031, 1, 1)
    assert admitted not in list(MemberState)  # the built-in eleven stay what iteration yields
    assert in_name_order([MemberState.VN, admitted, MemberState.BN]) == [MemberState.BN, admitted, MemberState.VN]
    with pytest.raises(ValueError, match="two capital letters"):
        register_admitted("qy", "Lower", date(2031, 1, 1))


def test_the_table_admits_a_state_and_sets_a_member_s_date(sqlite_engine: Any) -> None:
    listed = members(sqlite_engine)
    assert [m.code for m in listed] == [s.value for s in in_name_order(MemberState)]
    assert {m.code: m.member_since for m in listed} == {s.value: d for s, d in MEMBER_SINCE.items()}

    added = admit(sqlite_engine, "qw", "  Quux   West ", "2030-01-01")
    assert (added.code, added.name, added.member_since) == ("QW", "Quux West", date(2030, 1, 1))
    assert MemberState("QW") in members_on(sqlite_engine, date(2030, 1, 1))
    assert MemberState("QW") not in members_on(sqlite_engine, date(2029, 12, 31))
    # Timor-Leste's effective date can be set; its name stays the built-in one.
    admit(sqlite_engine, "TL", None, "2025-11-01")
    assert TL not in members_on(sqlite_engine, date(2025, 10, 31))
    assert TL in members_on(sqlite_engine, date(2025, 11, 1))
    # In ASEAN's order, by English name: Quux West between Philippines and Singapore.
    codes = [m.code for m in members(sqlite_engine)]
    assert codes.index("PH") < codes.index("QW") < codes.index("SG")

    for code, name, since, says in [
        ("Q1", "X", "2030-01-01", "two letters"),
        ("QV", None, "2030-01-01", "give its English name with --name"),
        ("QV", "Quux West", "2030-01-01", "already the name of QW"),
        ("QV", "Quux V", "1 Jan 2030", "YYYY-MM-DD"),
        ("TL", "East Timor", "2025-10-26", "TL is Timor-Leste"),
        ("QV", "Quux\x07V", "2030-01-01", "one line"),
    ]:
        with pytest.raises(MembershipError, match=says):
            admit(sqlite_engine, code, name, since)


def test_cli_members_list_and_admit(tmp_path: Path) -> None:
    env = {**os.environ, "AISAFE_DATA_DIR": str(tmp_path / "data")}
    listed = cli("members", "list", "--json", env=env)
    assert listed.code == 0, listed.stderr
    rows = listed.json()
    assert [r["name"] for r in rows][:3] == ["Brunei Darussalam", "Cambodia", "Indonesia"]
    assert rows[-1] == {"code": "VN", "name": "Viet Nam", "member_since": "1995-07-28", "member": True}

    done = cli("members", "admit", "QX", "--name", "Quux Xenia", "--since", "2999-01-01", "--json", env=env)
    assert done.code == 0, done.stderr
    assert done.json() == {"code": "QX", "name": "Quux Xenia", "member_since": "2999-01-01"}
    table = cli("members", "list", env=env)
    assert table.code == 0 and "Quux Xenia" in table.stdout and "2999-01-01 (not yet)" in table.stdout

    bad = cli("members", "admit", "QX1", "--since", "2030-01-01", env=env)
    assert bad.code == 2 and bad.stderr.count("\n") == 1 and "two letters" in bad.stderr
    bad_date = cli("members", "admit", "QX", "--since", "tomorrow", env=env)
    assert bad_date.code == 2 and "YYYY-MM-DD" in bad_date.stderr and "Traceback" not in bad_date.stderr
    assert cli("members", "admit", "--help", env=env).code == 0


async def test_a_round_opened_after_an_admission_includes_the_new_member(harness: Harness) -> None:
    new = register_admitted(NEW, "Quux Zed", date(2000, 1, 1))
    later = register_admitted("QU", "Quux Later", date(2999, 1, 1))
    harness.backend.admitted = {new: date(2000, 1, 1), later: date(2999, 1, 1)}
    handle = await harness.start(review())
    await harness.round_open(handle.id, 1)

    status = await harness.round_status(handle.id, 1)
    assert status.participants == in_name_order([*MemberState, new])  # not the state admitted from 2999
    invitation = next(m for m in harness.backend.mailings if m.proposal_id == handle.id and m.step == "invitation")
    assert new in invitation.states and later not in invitation.states
    await harness.answer(handle.id, 1, new, Position.APPROVE)
    status = await harness.round_status(handle.id, 1)
    assert status.positions[new].position is Position.APPROVE


# --- one delegate invited again ---------------------------------------------------------------------------------


def round_handle(h: Harness, proposal_id: str) -> Any:
    return h.client.get_workflow_handle_for(ReviewRoundWorkflow.run, round_workflow_id(proposal_id, 1))


async def test_resend_to_one_delegate_writes_to_that_delegate_only(harness: Harness) -> None:
    handle = await harness.start(review(participants=[MY, SG]))
    await harness.round_open(handle.id, 1)
    one = fake_delegates(SG)[1]

    receipt = await round_handle(harness, handle.id).execute_update(
        ReviewRoundWorkflow.resend, ResendInput(state=SG, delegate_id=one)
    )
    assert isinstance(receipt, ResendReceipt) and receipt.delegate_ids == [one] and receipt.state is SG
    mailing = next(m for m in harness.backend.mailings if m.proposal_id == handle.id and m.step == "resend-1")
    assert mailing.states == [SG] and mailing.delegate_ids == [one]
    [resent] = await ledger_has(harness, handle.id, "invitation_resent")
    assert resent["delegate_ids"] == [one] and resent["delegate_id"] == one and resent["state"] == "SG"

    await refused(
        round_handle(harness, handle.id).execute_update(
            ReviewRoundWorkflow.resend, ResendInput(state=SG, delegate_id="SG-not-on-the-roster")
        ),
        "NotInvited",
    )
    await harness.answer(handle.id, 1, SG, Position.APPROVE, delegate_id=one)


# --- a delegate replaced mid-round -------------------------------------------------------------------------------


async def test_a_replaced_delegate_s_link_stops_counting_and_the_new_one_is_written_to_at_once(
    harness: Harness,
) -> None:
    handle = await harness.start(review(participants=[MY, SG]))
    await harness.round_open(handle.id, 1)
    old, *kept = fake_delegates(SG)
    new = "SG-00000000000000ee"
    harness.backend.roster[SG] = [*kept, new]

    receipt = await round_handle(harness, handle.id).execute_update(
        ReviewRoundWorkflow.roster_changed, RosterChange(state=SG, removed=[old], added=[new])
    )
    assert isinstance(receipt, RosterChangeReceipt)
    assert (receipt.withdrawn, receipt.invited) == ([old], [new])
    mailing = next(m for m in harness.backend.mailings if m.proposal_id == handle.id and m.step.startswith("replaced"))
    assert mailing.states == [SG] and mailing.delegate_ids == [new]  # only the new delegate is written to
    [entry] = await ledger_has(harness, handle.id, "delegates_replaced")
    assert entry == {"round": 1, "state": "SG", "withdrawn": [old], "invited": [new]}

    # The old link no longer answers for Singapore; the new delegate's does.
    cause = await refused(harness.answer(handle.id, 1, SG, Position.OBJECT, "late", delegate_id=old), "NotInvited")
    assert old in cause.message
    await harness.answer(handle.id, 1, SG, Position.APPROVE, delegate_id=new)
    status = await harness.round_status(handle.id, 1)
    assert status.positions[SG].delegate_id == new and old not in status.invited[SG]


async def test_a_state_whose_every_invited_delegate_left_is_not_invited_until_resent(harness: Harness) -> None:
    handle = await harness.start(review(participants=[MY, SG]))
    await harness.round_open(handle.id, 1)
    harness.backend.nobody = {SG}

    receipt = await round_handle(harness, handle.id).execute_update(
        ReviewRoundWorkflow.roster_changed, RosterChange(state=SG, removed=fake_delegates(SG))
    )
    assert receipt.invited == [] and sorted(receipt.withdrawn) == sorted(fake_delegates(SG))
    status = await harness.round_status(handle.id, 1)
    assert status.not_invited == {SG: TAKEN_OFF}
    await harness.answer(handle.id, 1, MY, Position.APPROVE)
    # Past the deadline the round neither closes nor counts Singapore's silence.
    await harness.env.sleep(timedelta(days=15))
    assert (await harness.round_status(handle.id, 1)).is_open
    harness.backend.nobody.clear()
    await round_handle(harness, handle.id).execute_update(
        ReviewRoundWorkflow.resend, ResendInput(state=SG, deadline=timedelta(days=2))
    )
    await harness.answer(handle.id, 1, SG, Position.APPROVE)
    result = await harness.result(handle)
    assert result.rounds[0].positions[SG].position is Position.APPROVE


async def test_a_roster_change_for_a_state_not_in_the_round_is_refused(harness: Harness) -> None:
    handle = await harness.start(review(participants=[MY, SG]))
    await harness.round_open(handle.id, 1)
    await refused(
        round_handle(harness, handle.id).execute_update(
            ReviewRoundWorkflow.roster_changed, RosterChange(state=TL, removed=["TL-x"])
        ),
        "NotParticipant",
    )
    # Nothing was recorded for it, and the round goes on.
    assert "delegates_replaced" not in harness.backend.kinds(handle.id)
    assert (await harness.round_status(handle.id, 1)).is_open


async def test_a_long_running_process_learns_of_a_state_admitted_since_it_started(sqlite_engine: Any) -> None:
    refresher = asyncio.create_task(keep_admitted(sqlite_engine, every=timedelta(milliseconds=10)))
    try:
        with pytest.raises(ValueError):
            MemberState("QS")
        with write_session(sqlite_engine) as session:  # as `aisafe members admit` in another process writes it
            session.add(MembershipRecord(code="QS", name="Quux Ess", member_since=date(2030, 1, 1)))
            session.commit()
        learned = None
        for _ in range(200):
            try:
                learned = MemberState("QS")
                break
            except ValueError:
                await asyncio.sleep(0.01)
        assert learned is not None and learned.official_name == "Quux Ess"
    finally:
        refresher.cancel()
