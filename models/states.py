"""The ASEAN member states and their membership dates.

The eleven states below are built in. A state admitted later is data (models/membership.py, `aisafe members
admit`): once its code is registered here with `register_admitted`, `MemberState(code)` takes it too, so payloads,
roster files and links that name it validate without a code change.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from datetime import date
from enum import StrEnum
from typing import Any

# What a member-state code looks like: ISO 3166-1 alpha-2, upper case.
STATE_CODE = re.compile(r"^[A-Z]{2}$")


class MemberState(StrEnum):
    """An ASEAN member state, by its ISO 3166-1 alpha-2 code."""

    BN = "BN"
    KH = "KH"
    ID = "ID"
    LA = "LA"
    MY = "MY"
    MM = "MM"
    PH = "PH"
    SG = "SG"
    TH = "TH"
    TL = "TL"
    VN = "VN"

    @classmethod
    def _missing_(cls, value: object) -> Any:
        """A code admitted as data (`register_admitted`) is a member state too; any other code is not."""
        if not isinstance(value, str) or not STATE_CODE.match(value):
            return None
        with _ADMITTED_LOCK:
            if value not in _ADMITTED:
                return None
            # One object per code, kept in the enum's own map so that `MemberState("XX") is MemberState("XX")`;
            # iterating MemberState still yields the built-in states only.
            existing = cls._value2member_map_.get(value)
            if existing is None:
                existing = str.__new__(cls, value)
                existing._name_ = value
                existing._value_ = value
                cls._value2member_map_[value] = existing
            return existing

    @property
    def official_name(self) -> str:
        return STATE_NAMES.get(self) or _ADMITTED.get(self.value, (self.value, date.max))[0]

    @property
    def member_since(self) -> date:
        return MEMBER_SINCE.get(self) or _ADMITTED.get(self.value, (self.value, date.max))[1]


STATE_NAMES: dict[MemberState, str] = {
    MemberState.BN: "Brunei Darussalam",
    MemberState.KH: "Cambodia",
    MemberState.ID: "Indonesia",
    MemberState.LA: "Lao PDR",
    MemberState.MY: "Malaysia",
    MemberState.MM: "Myanmar",
    MemberState.PH: "Philippines",
    MemberState.SG: "Singapore",
    MemberState.TH: "Thailand",
    MemberState.TL: "Timor-Leste",
    MemberState.VN: "Viet Nam",
}

# Effective dates of ASEAN membership; Timor-Leste joined at the 47th Summit.
MEMBER_SINCE: dict[MemberState, date] = {
    MemberState.ID: date(1967, 8, 8),
    MemberState.MY: date(1967, 8, 8),
    MemberState.PH: date(1967, 8, 8),
    MemberState.SG: date(1967, 8, 8),
    MemberState.TH: date(1967, 8, 8),
    MemberState.BN: date(1984, 1, 7),
    MemberState.VN: date(1995, 7, 28),
    MemberState.LA: date(1997, 7, 23),
    MemberState.MM: date(1997, 7, 23),
    MemberState.KH: date(1999, 4, 30),
    MemberState.TL: date(2025, 10, 26),
}


def in_name_order(states: Iterable[MemberState]) -> list[MemberState]:
    """States as ASEAN lists them: in alphabetical order of their English names (Brunei Darussalam first,
    Viet Nam last), never by code, wherever a list of states is shown or returned."""
    return sorted(states, key=lambda s: s.official_name)


def members_on(day: date) -> list[MemberState]:
    """The member states whose membership is effective on `day`, in ASEAN's order (`in_name_order`)."""
    return in_name_order(s for s in MemberState if MEMBER_SINCE[s] <= day)


# States admitted as data (code: English name, effective date), beyond the built-in eleven; filled from the
# member_state table by models/membership.py wherever a process reads it (CLI, worker, web).
_ADMITTED: dict[str, tuple[str, date]] = {}
_ADMITTED_LOCK = threading.Lock()


def register_admitted(code: str, name: str, since: date) -> MemberState:
    """Make `code` a member state in this process (admitted as data); a built-in state is returned as it is."""
    if not STATE_CODE.match(code):
        raise ValueError(f"{code!r} is not a member-state code: two capital letters (ISO 3166-1 alpha-2), e.g. TL")
    if code in MemberState.__members__:
        return MemberState[code]
    with _ADMITTED_LOCK:
        _ADMITTED[code] = (name, since)
    return MemberState(code)
