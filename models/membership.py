"""Membership as data: which states are ASEAN members, and from which day (the `member_state` table).

The built-in eleven (models/states.py MEMBER_SINCE) seed the table; `aisafe members admit` adds a state or sets a
state's effective date. A round's participants are the members on the day it opens (the proposal workflow asks
through the `members_on` activity).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from sqlmodel import Session, select

from models.controlchars import first_acting
from models.db import write_session
from models.states import MEMBER_SINCE, STATE_CODE, STATE_NAMES, MemberState, in_name_order, register_admitted
from models.tables import MembershipRecord

NAME_LIMIT = 100
log = logging.getLogger(__name__)


class Member(BaseModel):
    """A member state as the `members` command shows it."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    member_since: date


class MembershipError(ValueError):
    """An admission that cannot be made as asked (bad code, name or date); the message says what to write."""


def _rows(engine: Engine) -> list[MembershipRecord]:
    try:
        with Session(engine) as session:
            return list(session.exec(select(MembershipRecord)).all())
    except (OperationalError, ProgrammingError):
        return []  # a database made before migration 0004: the built-in dates stand


def members(engine: Engine) -> list[Member]:
    """Every state that is or will be a member, in ASEAN's order; the table's rows override the built-in dates.

    Registers the states admitted as data in this process, so that `MemberState(code)` accepts them."""
    found = {s.value: Member(code=s.value, name=STATE_NAMES[s], member_since=MEMBER_SINCE[s]) for s in MemberState}
    for row in _rows(engine):
        found[row.code] = Member(code=row.code, name=row.name, member_since=row.member_since)
        register_admitted(row.code, row.name, row.member_since)
    order = in_name_order(MemberState(code) for code in found)
    return [found[s.value] for s in order]


def members_on(engine: Engine, day: date) -> list[MemberState]:
    """The member states whose membership is effective on `day`, in ASEAN's order."""
    return [MemberState(m.code) for m in members(engine) if m.member_since <= day]


def load_admitted(engine: Engine) -> None:
    """Register the states admitted as data in this process (the worker and the web app do it at start)."""
    members(engine)


# How often a long-running process (worker, web app) reads the table again, to learn of a state admitted since it
# started; the worker also learns of one whenever a round or meeting opens (the `members_on` activity).
REFRESH_EVERY = timedelta(minutes=1)


async def keep_admitted(engine: Engine, every: timedelta = REFRESH_EVERY) -> None:
    """Read the membership table again every `every` until cancelled; a failed read is logged and tried again."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            await asyncio.to_thread(load_admitted, engine)
        except SQLAlchemyError as exc:
            log.warning("could not read the member states again: %s", type(exc).__name__)


def admit(engine: Engine, code: str, name: str | None, since: str) -> Member:
    """Admit a state from `since` (or set a member's effective date); returns the member as recorded."""
    code = code.strip().upper()
    if not STATE_CODE.match(code):
        raise MembershipError(f"{code!r} is not a state code: write two letters (ISO 3166-1 alpha-2), e.g. TL")
    try:
        effective = date.fromisoformat(since.strip())
    except ValueError:
        raise MembershipError(f"--since {since!r} is not a date: write YYYY-MM-DD, e.g. 2025-10-26") from None
    built_in = STATE_NAMES.get(MemberState[code]) if code in MemberState.__members__ else None
    everyone = members(engine)
    current = next((m for m in everyone if m.code == code), None)
    if name is not None:
        name = " ".join(name.split())
        if not name or len(name) > NAME_LIMIT or first_acting(name) is not None:
            raise MembershipError(f"--name must be the state's English name on one line (1-{NAME_LIMIT} characters)")
    if built_in is not None and name is not None and name != built_in:
        raise MembershipError(f"{code} is {built_in}; leave out --name, or write --name {built_in!r}")
    name = name or (current.name if current else built_in)
    if name is None:
        raise MembershipError(
            f"{code} is a new member state: give its English name with --name, e.g. --name 'Timor-Leste'"
        )
    taken = next((m for m in everyone if m.name == name and m.code != code), None)
    if taken is not None:
        raise MembershipError(f"{name!r} is already the name of {taken.code}")
    with write_session(engine) as session:
        row = session.get(MembershipRecord, code) or MembershipRecord(code=code, name=name, member_since=effective)
        row.name, row.member_since, row.admitted_at = name, effective, datetime.now(UTC)
        session.add(row)
        session.commit()
    register_admitted(code, name, effective)
    return Member(code=code, name=name, member_since=effective)
