"""Decision rules: pure functions from the positions of a closed round to its verdict."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from models.positions import DecisionRule, Position
from models.states import MemberState


class Verdict(StrEnum):
    PASSED = "passed"
    CHANGES_REQUESTED = "changes_requested"
    NOT_PASSED = "not_passed"
    # The coordinator closed an overdue round: states stayed silent, and silence is not consent.
    NO_CONSENSUS = "no_consensus"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    participating: list[str] | None = None  # ASEAN-minus-X: the states that take part


def decide(
    rule: DecisionRule,
    positions: Mapping[str, Position],
    *,
    min_participants: int = 2,
    objection_blocks: bool = False,
    silent: Collection[str] = (),
) -> Decision:
    """Apply `rule` to the final position of every participating state.

    `silent` are the participating states that never answered (absent from `positions`). Silence is not consent:
    under consensus or unanimity a silent state means there is no consensus. (Rounds from before this rule deemed
    each silent state to have taken a position by their silence policy and pass it in `positions` instead.)
    `objection_blocks`: ASEAN-minus-X as the Charter has it (participate / opt_out / object).

    consensus: passes when no state objects or requests changes and at least one approves (abstentions
    allowed). unanimity: only when every state approves. asean_minus_x: objecting states opt out; passes
    when at least `min_participants` approve, and names them. silence: passes unless a state broke the
    silence by objecting or requesting changes. An objection or change request sends the text back.
    """
    if not positions and not silent:
        return Decision(Verdict.NOT_PASSED, "no participating states")
    changes = _in_order(s for s, p in positions.items() if p is Position.REQUEST_CHANGES)
    objecting = _in_order(s for s, p in positions.items() if p.is_objection)
    approving = _in_order(s for s, p in positions.items() if p.is_approval)

    unanswered = _in_order(str(s) for s in silent)
    if rule is DecisionRule.ASEAN_MINUS_X and objection_blocks:
        return _flexible_participation(positions, changes, min_participants, unanswered)
    if rule is DecisionRule.ASEAN_MINUS_X:
        if changes:
            return Decision(Verdict.CHANGES_REQUESTED, f"change request from {', '.join(changes)}")
        if unanswered:  # minus-X applies only where there is a consensus to apply it (Art. 21(2))
            return _silence_is_not_consent(unanswered)
        return _enough_take_part(approving, objecting, min_participants, counted_as="approved")

    blocking = _in_order({*changes, *objecting})
    if blocking:
        word = "silence broken by" if rule is DecisionRule.SILENCE else "objection or change request from"
        return Decision(Verdict.CHANGES_REQUESTED, f"{word} {', '.join(blocking)}")
    if unanswered and rule is not DecisionRule.SILENCE:
        return _silence_is_not_consent(unanswered)
    if rule is DecisionRule.SILENCE:
        return Decision(Verdict.PASSED, "silence procedure: no state objected")
    if rule is DecisionRule.UNANIMITY:
        missing = _in_order(s for s, p in positions.items() if not p.is_approval)
        if missing:
            return Decision(Verdict.NOT_PASSED, f"unanimity not reached: {', '.join(missing)} did not approve")
        return Decision(Verdict.PASSED, "all participating states approved")
    if not approving:
        return Decision(Verdict.NOT_PASSED, "no state approved")
    return Decision(Verdict.PASSED, "consensus: no objection")


def _in_order(codes: Iterable[str]) -> list[str]:
    """State codes as ASEAN lists states: by English name (Cambodia before Indonesia), whatever the codes."""

    def name(code: str) -> str:
        try:
            return MemberState(code).official_name
        except ValueError:
            return code

    return sorted(codes, key=name)


def _silence_is_not_consent(unanswered: list[str]) -> Decision:
    return Decision(
        Verdict.NO_CONSENSUS, f"no consensus: {', '.join(unanswered)} did not answer (silence is not consent)"
    )


def _flexible_participation(
    positions: Mapping[str, Position], changes: list[str], min_participants: int, unanswered: list[str]
) -> Decision:
    """ASEAN-minus-X under Art. 21(2): applies only where there is a consensus to apply it, so where every state
    answered and none objects; names the states that take part."""
    if changes:
        return Decision(Verdict.CHANGES_REQUESTED, f"change request from {', '.join(changes)}")
    blocking = _in_order(s for s, p in positions.items() if p is Position.OBJECT)
    joining = _in_order(s for s, p in positions.items() if p.joins)
    opted_out = _in_order(s for s, p in positions.items() if p in (Position.OPT_OUT, Position.DECLINE))
    if blocking:
        return Decision(
            Verdict.CHANGES_REQUESTED,
            f"objection from {', '.join(blocking)}: ASEAN-minus-X applies only where no member state objects",
            joining,
        )
    if unanswered:
        return _silence_is_not_consent(unanswered)
    return _enough_take_part(joining, opted_out, min_participants, counted_as="participate")


def _enough_take_part(joining: list[str], opted_out: list[str], min_participants: int, *, counted_as: str) -> Decision:
    """Passes with at least `min_participants` taking part, and names them and the states that opted out."""
    out = f"; {', '.join(opted_out)} opted out" if opted_out else ""
    if len(joining) < min_participants:
        return Decision(
            Verdict.NOT_PASSED,
            f"ASEAN-minus-X needs {min_participants} participating states, {len(joining)} {counted_as}{out}",
            joining,
        )
    return Decision(Verdict.PASSED, f"ASEAN-minus-X: {', '.join(joining)} participate{out}", joining)
