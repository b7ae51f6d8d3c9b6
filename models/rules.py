"""Decision rules: pure functions from the positions of a closed round to its verdict."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from models.positions import DecisionRule, Position


class Verdict(StrEnum):
    PASSED = "passed"
    CHANGES_REQUESTED = "changes_requested"
    NOT_PASSED = "not_passed"


def decide(rule: DecisionRule, positions: Mapping[str, Position]) -> tuple[Verdict, str]:
    """Apply `rule` to the final position of every participating state; returns the verdict and why.

    consensus: passes when no state objects or requests changes and at least one approves
    (abstentions allowed). unanimity: passes only when every state approves.
    Any objection or change request sends the text back for revision.
    """
    if not positions:
        return Verdict.NOT_PASSED, "no participating states"
    blocking = sorted(s for s, p in positions.items() if p in (Position.OBJECT, Position.REQUEST_CHANGES))
    if blocking:
        return Verdict.CHANGES_REQUESTED, f"objection or change request from {', '.join(blocking)}"
    if rule is DecisionRule.UNANIMITY:
        missing = sorted(s for s, p in positions.items() if not p.is_approval)
        if missing:
            return Verdict.NOT_PASSED, f"unanimity not reached: {', '.join(missing)} did not approve"
        return Verdict.PASSED, "all participating states approved"
    if not any(p.is_approval for p in positions.values()):
        return Verdict.NOT_PASSED, "no state approved"
    return Verdict.PASSED, "consensus: no objection"
