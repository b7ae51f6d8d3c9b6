"""Words shown to people, shared by the emails and the web pages so both name things alike."""

from __future__ import annotations

from decimal import Decimal

from models.positions import Disposition
from models.process import StageType
from models.roster import Sector

# The body that takes each stage's decision (or runs it), as emails and pages name it.
STAGE_BODY_NAMES: dict[StageType, str] = {
    StageType.DRAFTING: "Coordinating team",
    StageType.CONSULTATION: "Public consultation",
    StageType.MEMBER_REVIEW: "Working Group on AI Governance (WG-AI)",
    StageType.SENIOR_OFFICIALS: "ASEAN Digital Senior Officials' Meeting (ADGSOM)",
    StageType.MINISTERIAL: "ASEAN Digital Ministers' Meeting (ADGMIN)",
    StageType.FUNDING: "Funding approval by the member states",
}
DECIDING_BODIES = (StageType.MEMBER_REVIEW, StageType.SENIOR_OFFICIALS, StageType.MINISTERIAL)

SECTOR_LABELS: dict[str, str] = {
    Sector.CIVIL_SOCIETY: "Civil society",
    Sector.ACADEMIA: "Academia",
    Sector.INDUSTRY: "Industry",
    Sector.DIALOGUE_PARTNER: "Dialogue partner",
}
DISPOSITION_LABELS: dict[str, str] = {
    Disposition.ACCEPTED: "Accepted",
    Disposition.PARTLY: "Partly accepted",
    Disposition.NOTED: "Noted",
    Disposition.NOT_ACCEPTED: "Not accepted",
}


def money(amount: Decimal, currency: str) -> str:
    """An amount as a reader expects it: currency code, thousands separators, two decimals (`USD 13,636.36`)."""
    return f"{currency} {amount:,.2f}"
