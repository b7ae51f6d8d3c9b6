"""Words shown to people, shared by the emails and the web pages so both name things alike."""

from __future__ import annotations

from decimal import Decimal

from models.messages import ProposalState
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
    StageType.SUMMIT_REPORT: "Report to the ASEAN Summit",
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


# The bodies as a sentence names them: "endorsed by the ADGMIN".
BODY_IN_SENTENCE: dict[StageType, str] = {
    StageType.MEMBER_REVIEW: "the WG-AI",
    StageType.SENIOR_OFFICIALS: "the ADGSOM",
    StageType.MINISTERIAL: "the ADGMIN",
    StageType.FUNDING: "the member states",
}
# A proposal's status in words (the machine values are in docs/json-values.md).
STATUS_WORDS: dict[ProposalState, str] = {
    ProposalState.RUNNING: "running",
    ProposalState.ADOPTED: "adopted",
    ProposalState.NOT_ADOPTED: "not adopted",
    ProposalState.WITHDRAWN: "withdrawn",
    ProposalState.EXPIRED: "expired",
    ProposalState.AGREED: "agreed",
    ProposalState.ENDORSED: "endorsed",
    ProposalState.APPROVED: "approved",
    ProposalState.NOTED: "noted",
    ProposalState.NOT_AGREED: "not agreed",
    ProposalState.NOT_ENDORSED: "not endorsed",
    ProposalState.NOT_FUNDED: "not funded",
}
_BY_BODY = {
    ProposalState.AGREED,
    ProposalState.ENDORSED,
    ProposalState.APPROVED,
    ProposalState.NOTED,
    ProposalState.NOT_AGREED,
    ProposalState.NOT_ENDORSED,
}
SUMMIT_REPORTED = "reported to the ASEAN Summit"


def status_text(status: ProposalState, decided_by: StageType | None = None, summit_reported: bool = False) -> str:
    """A proposal's status as people read it: "endorsed by the ADGMIN; reported to the ASEAN Summit"."""
    text = STATUS_WORDS.get(status, status.value)
    if decided_by in BODY_IN_SENTENCE and status in _BY_BODY:
        text += f" by {BODY_IN_SENTENCE[decided_by]}"
    return f"{text}; {SUMMIT_REPORTED}" if summit_reported else text
