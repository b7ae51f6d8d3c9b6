"""Membership as the workflows read it: the members on a day, from the member_state table (a local activity)."""

from __future__ import annotations

from datetime import date

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import MembersOnDay, MembersOnQuery
    from models.states import MemberState
    from workflows.common import LEDGER_RETRY, LEDGER_TIMEOUT


async def members_on_day(day: date) -> list[MemberState]:
    """The member states on `day`, in ASEAN's order, as `aisafe members` has them (a state admitted since included)."""
    found = await workflow.execute_local_activity(
        "members_on",
        MembersOnQuery(day=day),
        result_type=MembersOnDay,
        start_to_close_timeout=LEDGER_TIMEOUT,
        retry_policy=LEDGER_RETRY,
    )
    return found.states
