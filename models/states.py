"""The ASEAN member states and their membership dates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from enum import StrEnum


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

    @property
    def official_name(self) -> str:
        return STATE_NAMES[self]

    @property
    def member_since(self) -> date:
        return MEMBER_SINCE[self]


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
    return sorted(states, key=lambda s: STATE_NAMES[s])


def members_on(day: date) -> list[MemberState]:
    """The member states whose membership is effective on `day`, in ASEAN's order (`in_name_order`)."""
    return in_name_order(s for s in MemberState if MEMBER_SINCE[s] <= day)
