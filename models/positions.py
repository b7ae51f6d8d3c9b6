"""A member state's position in a review round, and how the round's rule reads a set of them."""

from __future__ import annotations

from enum import StrEnum


class Position(StrEnum):
    APPROVE = "approve"
    APPROVE_WITH_RESERVATION = "approve_with_reservation"
    REQUEST_CHANGES = "request_changes"
    ABSTAIN = "abstain"
    OBJECT = "object"

    @property
    def needs_reason(self) -> bool:
        return self in REASON_REQUIRED

    @property
    def label(self) -> str:
        return POSITION_LABELS[self]

    @property
    def is_approval(self) -> bool:
        return self in (Position.APPROVE, Position.APPROVE_WITH_RESERVATION)


REASON_REQUIRED = frozenset({Position.APPROVE_WITH_RESERVATION, Position.REQUEST_CHANGES, Position.OBJECT})

POSITION_LABELS: dict[Position, str] = {
    Position.APPROVE: "Approve",
    Position.APPROVE_WITH_RESERVATION: "Approve with reservation",
    Position.REQUEST_CHANGES: "Request changes",
    Position.ABSTAIN: "Abstain",
    Position.OBJECT: "Object",
}


class DecisionRule(StrEnum):
    CONSENSUS = "consensus"
    UNANIMITY = "unanimity"


class SilencePolicy(StrEnum):
    """What a state that never answers before the deadline counts as."""

    ABSTAIN = "abstain"
    CONCUR = "concur"
    OBJECT = "object"

    @property
    def deemed_position(self) -> Position:
        return {
            SilencePolicy.ABSTAIN: Position.ABSTAIN,
            SilencePolicy.CONCUR: Position.APPROVE,
            SilencePolicy.OBJECT: Position.OBJECT,
        }[self]
