"""A member state's position in a review round, and how the round's rule reads a set of them."""

from __future__ import annotations

from enum import StrEnum


class Position(StrEnum):
    APPROVE = "approve"
    APPROVE_WITH_RESERVATION = "approve_with_reservation"
    REQUEST_CHANGES = "request_changes"
    ABSTAIN = "abstain"
    OBJECT = "object"
    # A funding round's answers: a state confirms or declines its contribution.
    CONFIRM = "confirm"
    DECLINE = "decline"
    # ASEAN-minus-X as the Charter has it (Art. 21(2)): a state joins, stays out without blocking, or objects
    # (which blocks: flexible participation applies only where there is consensus to apply it).
    PARTICIPATE = "participate"
    OPT_OUT = "opt_out"
    # A focal point's answer in a funding round: the state's contribution, subject to domestic clearance (its
    # minister's office confirms it afterwards with CONFIRM or DECLINE).
    INDICATE = "indicate"

    @property
    def needs_reason(self) -> bool:
        return self in REASON_REQUIRED

    @property
    def label(self) -> str:
        return POSITION_LABELS[self]

    @property
    def is_approval(self) -> bool:
        return self in (Position.APPROVE, Position.APPROVE_WITH_RESERVATION, Position.CONFIRM, Position.INDICATE)

    @property
    def joins(self) -> bool:
        """Takes part in an ASEAN-minus-X arrangement (a funding contribution counts as taking part)."""
        return self is Position.PARTICIPATE or self.is_approval

    @property
    def is_objection(self) -> bool:
        """Blocks consensus; under ASEAN-minus-X it opts the state out instead."""
        return self in (Position.OBJECT, Position.DECLINE)


REASON_REQUIRED = frozenset({Position.APPROVE_WITH_RESERVATION, Position.REQUEST_CHANGES, Position.OBJECT})

POSITION_LABELS: dict[Position, str] = {
    Position.APPROVE: "Approve",
    Position.APPROVE_WITH_RESERVATION: "Approve with reservation",
    Position.REQUEST_CHANGES: "Request changes",
    Position.ABSTAIN: "Abstain",
    Position.OBJECT: "Object",
    Position.CONFIRM: "Confirm the contribution",
    Position.DECLINE: "Decline",
    Position.PARTICIPATE: "Participate",
    Position.OPT_OUT: "Opt out (not join, not block)",
    Position.INDICATE: "Indicate the contribution (subject to domestic clearance)",
}

REVIEW_POSITIONS = [
    Position.APPROVE,
    Position.APPROVE_WITH_RESERVATION,
    Position.REQUEST_CHANGES,
    Position.ABSTAIN,
    Position.OBJECT,
]
# Ad referendum (silence procedure): a state concurs (or stays silent), or breaks the silence by objecting.
AD_REFERENDUM_POSITIONS = [Position.APPROVE, Position.APPROVE_WITH_RESERVATION, Position.OBJECT]
MEETING_POSITIONS = [Position.APPROVE, Position.APPROVE_WITH_RESERVATION, Position.ABSTAIN, Position.OBJECT]
FUNDING_POSITIONS = [Position.CONFIRM, Position.DECLINE]
# A minus-X round asks whether each state joins; an objection blocks the arrangement for all.
MINUS_X_POSITIONS = [Position.PARTICIPATE, Position.OPT_OUT, Position.OBJECT]
# A funding round's first step: the focal point indicates, the minister's office then confirms (FUNDING_POSITIONS).
FUNDING_INDICATION_POSITIONS = [Position.INDICATE, Position.DECLINE]


class DecisionRule(StrEnum):
    CONSENSUS = "consensus"
    UNANIMITY = "unanimity"
    ASEAN_MINUS_X = "asean_minus_x"
    SILENCE = "silence"


class Disposition(StrEnum):
    """The coordinator's answer to a consultation comment (the response-to-comments matrix)."""

    ACCEPTED = "accepted"
    PARTLY = "partly"
    NOTED = "noted"
    NOT_ACCEPTED = "not_accepted"


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
