"""Inputs and outputs of workflows, updates, queries and activities (evolve only by adding optional fields)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from models.positions import Position
from models.process import MemberReviewStage, ProcessDefinition
from models.rules import Verdict
from models.states import MemberState


class ProposalState(StrEnum):
    RUNNING = "running"
    ADOPTED = "adopted"
    NOT_ADOPTED = "not_adopted"
    WITHDRAWN = "withdrawn"


class DocumentRef(BaseModel):
    """A stored document version: the workflow carries this, never the text."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    version: int = Field(ge=1)
    filename: str
    size: int = Field(ge=0)


class ProposalInput(BaseModel):
    proposal_id: str
    title: str
    kind: str
    lead_state: MemberState
    process: ProcessDefinition
    document: DocumentRef


class ReviewRoundInput(BaseModel):
    proposal_id: str
    title: str
    round: int = Field(ge=1)
    stage: MemberReviewStage
    document: DocumentRef
    participants: list[MemberState]
    deadline: datetime


class PositionSubmission(BaseModel):
    """A delegate's answer, as the web app sends it after verifying the signed link."""

    proposal_id: str
    round: int
    state: MemberState
    delegate_id: str
    document_sha256: str
    position: Position
    reason: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _reason_when_required(self) -> PositionSubmission:
        if self.reason is not None:
            self.reason = self.reason.strip() or None
        if self.position.needs_reason and not self.reason:
            raise ValueError(f"a reason is required for {self.position.label.lower()}")
        return self


class StatePosition(BaseModel):
    position: Position
    reason: str | None = None
    delegate_id: str | None = None
    decision_id: str | None = None
    recorded_at: datetime
    deemed: bool = Field(default=False, description="applied by the silence policy, not stated")


class PositionReceipt(BaseModel):
    decision_id: str
    proposal_id: str
    round: int
    state: MemberState
    position: Position
    ledger_seq: int
    ledger_entry_hash: str
    recorded_at: datetime


class RoundStatus(BaseModel):
    round: int
    workflow_id: str
    document: DocumentRef
    opened_at: datetime
    deadline: datetime
    is_open: bool
    participants: list[MemberState]
    positions: dict[MemberState, StatePosition]


class RoundOutcome(BaseModel):
    round: int
    document: DocumentRef
    opened_at: datetime
    closed_at: datetime
    closed_because: str
    verdict: Verdict
    reason: str
    positions: dict[MemberState, StatePosition]


class RevisionInput(BaseModel):
    """A new document version, already stored content-addressed by the caller."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    filename: str
    size: int = Field(ge=0)


class WithdrawInput(BaseModel):
    reason: str = Field(min_length=3, max_length=2000)


class ProposalStatus(BaseModel):
    id: str
    title: str
    kind: str
    lead_state: MemberState
    stage: str
    status: ProposalState
    round: int
    deadline: datetime | None
    positions: dict[MemberState, Position | None]
    document: DocumentRef
    versions: list[DocumentRef]
    rounds: list[RoundOutcome]
    round_workflow_id: str | None = None
    started_at: datetime | None = None
    closed_reason: str | None = None


class LedgerAppend(BaseModel):
    proposal_id: str
    kind: str
    idempotency_key: str
    payload: dict[str, Any]


class LedgerReceipt(BaseModel):
    seq: int
    entry_hash: str
    recorded_at: datetime


class RoundMailing(BaseModel):
    """Emails to the delegates of `states` for one step of a round (invitation or a reminder)."""

    proposal_id: str
    title: str
    round: int
    step: str
    states: list[MemberState]
    document: DocumentRef
    deadline: datetime


class MailingResult(BaseModel):
    sent: int
    already_sent: int
    states_without_delegates: list[MemberState] = Field(default_factory=list)
