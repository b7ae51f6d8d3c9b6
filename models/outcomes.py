"""How a proposal ended, in the deciding body's own word (issue 18, point 3): one function decides it.

WG-AI *agrees* (or *recommends for endorsement* when a higher body follows), ADGSOM *endorses*, ADGMIN
*endorses*, *approves* or *notes*. A proposal that ADGMIN endorsed is "endorsed by the ADGMIN", never
"adopted": `adopted` and `not_adopted` remain only for proposals closed before this word existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.decisions import MeetingDecision
from models.messages import ProposalState
from models.process import StageType

# A round's own words (a meeting's are `MeetingDecision` values).
AGREED = "agreed"
RECOMMENDED = "recommended_for_endorsement"
NOT_AGREED = "not_agreed"
ENDORSED = MeetingDecision.ENDORSED.value
NOT_ENDORSED = MeetingDecision.NOT_ENDORSED.value
REPORTED = "reported"  # a summit_report stage

# The final statuses of a proposal its bodies carried (`adopted` for histories from before their own words).
CARRIED = frozenset(
    {ProposalState.ADOPTED, ProposalState.AGREED, ProposalState.ENDORSED, ProposalState.APPROVED, ProposalState.NOTED}
)
BODIES = (StageType.MEMBER_REVIEW, StageType.SENIOR_OFFICIALS, StageType.MINISTERIAL)
_PASSED_WORDS: dict[str, ProposalState] = {
    AGREED: ProposalState.AGREED,
    RECOMMENDED: ProposalState.AGREED,
    MeetingDecision.ENDORSED.value: ProposalState.ENDORSED,
    MeetingDecision.APPROVED.value: ProposalState.APPROVED,
    MeetingDecision.NOTED.value: ProposalState.NOTED,
}
_FAILED_BY_TYPE: dict[StageType, ProposalState] = {
    StageType.MEMBER_REVIEW: ProposalState.NOT_AGREED,
    StageType.SENIOR_OFFICIALS: ProposalState.NOT_ENDORSED,
    StageType.MINISTERIAL: ProposalState.NOT_ENDORSED,
    StageType.FUNDING: ProposalState.NOT_FUNDED,
}
_PASSED_BY_TYPE: dict[StageType, ProposalState] = {
    StageType.MEMBER_REVIEW: ProposalState.AGREED,
    StageType.SENIOR_OFFICIALS: ProposalState.ENDORSED,
    StageType.MINISTERIAL: ProposalState.ENDORSED,
}


@dataclass(frozen=True)
class StageWord:
    """What one finished stage decided: its type, whether it passed, and the body's word if it said one."""

    type: StageType
    passed: bool
    decision: str | None = None


@dataclass(frozen=True)
class FinalWord:
    status: ProposalState
    decided_by: StageType | None


def round_word(stage_type: StageType, passed: bool, higher_body_follows: bool = False) -> str:
    """The word a round's body says: WG-AI agrees (recommends for endorsement if ADGSOM/ADGMIN follow);
    ADGSOM and ADGMIN endorse ad referendum."""
    if stage_type is StageType.MEMBER_REVIEW:
        return (RECOMMENDED if higher_body_follows else AGREED) if passed else NOT_AGREED
    return ENDORSED if passed else NOT_ENDORSED


def final_state(stages: Sequence[StageWord]) -> FinalWord:
    """The final status of a proposal whose stages all ran (the last one may have failed).

    A failed stage gives its body's "not" word; when all passed, the highest body that decided gives its word
    (a proposal only funding decided on is `approved`)."""
    if stages and not stages[-1].passed:
        last = stages[-1]
        if last.decision == NOT_ENDORSED:
            return FinalWord(ProposalState.NOT_ENDORSED, last.type)
        return FinalWord(_FAILED_BY_TYPE.get(last.type, ProposalState.NOT_ADOPTED), last.type)
    for stage in reversed(stages):
        if stage.type in BODIES:
            word = _PASSED_WORDS.get(stage.decision or "", _PASSED_BY_TYPE[stage.type])
            return FinalWord(word, stage.type)
    funded = any(s.type is StageType.FUNDING for s in stages)
    return FinalWord(ProposalState.APPROVED, StageType.FUNDING if funded else None)


def higher_body_follows(types: Sequence[StageType], index: int) -> bool:
    """Whether ADGSOM or ADGMIN decide after the stage at `index` (then WG-AI recommends rather than agrees)."""
    return any(t in (StageType.SENIOR_OFFICIALS, StageType.MINISTERIAL) for t in types[index + 1 :])
