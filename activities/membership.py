"""The membership activity: which states are ASEAN members on a day, read from the member_state table."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine
from temporalio import activity

from models.membership import members_on
from models.messages import MembersOnDay, MembersOnQuery


class MembershipActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="members_on")
    async def members_on(self, query: MembersOnQuery) -> MembersOnDay:
        """The member states on `query.day`, in ASEAN's order (a state admitted since is registered here too)."""
        states = await asyncio.to_thread(members_on, self._engine, query.day)
        return MembersOnDay(day=query.day, states=states)
