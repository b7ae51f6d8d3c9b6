"""Inputs and outputs of workflows, updates, queries and activities (evolve only by adding optional fields)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator

from models.decisions import MeetingDecision
from models.positions import (
    AD_REFERENDUM_POSITIONS,
    FUNDING_INDICATION_POSITIONS,
    FUNDING_POSITIONS,
    MINUS_X_POSITIONS,
    REVIEW_POSITIONS,
    DecisionRule,
    Disposition,
    Position,
    SilencePolicy,
)
from models.process import FundingModel, ProcessDefinition, StageType
from models.roster import Role, Sector
from models.rules import Verdict
from models.states import MemberState


class ProposalState(StrEnum):
    RUNNING = "running"
    ADOPTED = "adopted"
    NOT_ADOPTED = "not_adopted"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    # Each body's own word for how a proposal ended (issue 18); `adopted`/`not_adopted` stay for old histories.
    # `decided_by` on ProposalStatus and OutcomeMailing names the body (see models/outcomes.py).
    AGREED = "agreed"  # WG-AI agreed and no higher body was asked
    ENDORSED = "endorsed"  # ADGSOM or ADGMIN endorsed
    APPROVED = "approved"  # ADGMIN approved
    NOTED = "noted"  # ADGMIN noted
    NOT_AGREED = "not_agreed"  # WG-AI did not agree
    NOT_ENDORSED = "not_endorsed"  # ADGSOM or ADGMIN did not endorse
    NOT_FUNDED = "not_funded"  # the funding round did not approve the contributions


class RoundPurpose(StrEnum):
    """What a round of state answers is for; it picks the email, the page and the allowed answers."""

    REVIEW = "review"
    AD_REFERENDUM = "ad_referendum"
    FUNDING = "funding"


# The answers each kind of round takes (the round's validator, its email and its page all use this).
ROUND_ANSWERS: dict[RoundPurpose, list[Position]] = {
    RoundPurpose.REVIEW: REVIEW_POSITIONS,
    RoundPurpose.AD_REFERENDUM: AD_REFERENDUM_POSITIONS,
    RoundPurpose.FUNDING: FUNDING_POSITIONS,
}


class FundingStep(StrEnum):
    """Which step of a funding stage a round is: focal points indicate, then ministers' offices confirm."""

    INDICATION = "indication"
    CONFIRMATION = "confirmation"


def round_answers(purpose: RoundPurpose, rule: DecisionRule, step: FundingStep | None = None) -> list[Position]:
    """The answers a round opened today offers (ROUND_ANSWERS is what rounds before the Charter reading offered)."""
    if step is FundingStep.INDICATION:
        return FUNDING_INDICATION_POSITIONS
    if rule is DecisionRule.ASEAN_MINUS_X and purpose is not RoundPurpose.FUNDING:
        return MINUS_X_POSITIONS
    return ROUND_ANSWERS[purpose]


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


class FundingTerms(BaseModel):
    """A funding round's terms: what each state is asked to contribute (None: it enters an amount)."""

    model: FundingModel
    currency: str
    budget_target: Decimal
    expected: dict[MemberState, Decimal] = Field(default_factory=dict)
    # None in rounds from before contributions were indicated first and confirmed by ministers' offices.
    step: FundingStep | None = None


class ReviewRoundInput(BaseModel):
    """One round in which every participating state answers once (the latest answer stands)."""

    proposal_id: str
    title: str
    round: int = Field(ge=1)
    stage_type: StageType = StageType.MEMBER_REVIEW
    purpose: RoundPurpose = RoundPurpose.REVIEW
    rule: DecisionRule = DecisionRule.CONSENSUS
    silence: SilencePolicy = SilencePolicy.ABSTAIN
    min_participants: int = 2
    reminders: list[timedelta] = Field(default_factory=list)
    allowed: list[Position]
    roles: list[Role]
    document: DocumentRef
    previous_document: DocumentRef | None = None
    participants: list[MemberState]
    deadline: datetime
    funding: FundingTerms | None = None


class PositionSubmission(BaseModel):
    """A delegate's answer, as the web app sends it after verifying the signed link."""

    proposal_id: str
    round: int
    state: MemberState
    delegate_id: str
    document_sha256: str
    position: Position
    reason: str | None = Field(default=None, max_length=4000)
    amount: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)

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
    amount: Decimal | None = None


class PositionSignal(BaseModel):
    """A position sent as a Signal when no worker accepted the Update in time; the same decision id dedupes it."""

    decision_id: str
    submission: PositionSubmission


class PositionReceipt(BaseModel):
    decision_id: str
    proposal_id: str
    round: int
    state: MemberState
    position: Position
    ledger_seq: int
    ledger_entry_hash: str
    recorded_at: datetime
    amount: Decimal | None = None  # the contribution a confirmation commits, as the ledger entry records it


class RoundStatus(BaseModel):
    round: int
    workflow_id: str
    document: DocumentRef
    opened_at: datetime
    deadline: datetime
    is_open: bool
    participants: list[MemberState]
    positions: dict[MemberState, StatePosition]
    purpose: RoundPurpose = RoundPurpose.REVIEW
    stage_type: StageType = StageType.MEMBER_REVIEW
    allowed: list[Position] = Field(default_factory=list)
    previous_document: DocumentRef | None = None
    funding: FundingTerms | None = None
    not_invited: dict[MemberState, str] = Field(default_factory=dict, description="state: why nobody was written to")
    invited: dict[MemberState, list[str]] = Field(default_factory=dict, description="delegate ids whose answer counts")
    state_deadlines: dict[MemberState, datetime] = Field(default_factory=dict, description="fresh deadlines (resend)")
    waiting: str | None = Field(default=None, description="why a round past its deadline is still open")
    overdue: bool = Field(default=False, description="past its deadline with states silent, awaiting the coordinator")
    overdue_since: datetime | None = None
    silence_procedure: dict[MemberState, datetime] = Field(
        default_factory=dict, description="states under a silence procedure, and when it ends"
    )


class RoundOutcome(BaseModel):
    round: int
    document: DocumentRef
    opened_at: datetime
    closed_at: datetime
    closed_because: str
    verdict: Verdict
    reason: str
    positions: dict[MemberState, StatePosition]
    purpose: RoundPurpose = RoundPurpose.REVIEW
    stage_type: StageType = StageType.MEMBER_REVIEW
    participating: list[MemberState] | None = None
    reservations: dict[MemberState, str] = Field(default_factory=dict)


class RevisionInput(BaseModel):
    """A new document version, already stored content-addressed by the caller."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    filename: str
    size: int = Field(ge=0)


class WithdrawInput(BaseModel):
    reason: str = Field(min_length=3, max_length=2000)


class Pledge(BaseModel):
    """A dialogue partner's contribution, recorded by the coordinator."""

    partner: str = Field(min_length=2, max_length=200)
    amount: Decimal = Field(gt=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    recorded_at: datetime | None = None
    # A partner's money goes to the trust fund, earmarked to these activities; it is not the core budget.
    activities: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]] = Field(
        default_factory=list, max_length=20
    )


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFERRED_BACK = "referred_back"  # a meeting returned the text to WG-AI; the stage runs again after it


class StageReport(BaseModel):
    """One stage as `status --json` shows it under "stages"."""

    type: StageType
    status: StageStatus = StageStatus.PENDING
    outcome: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    rounds: list[int] = Field(default_factory=list)
    workflow_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    decision: str | None = Field(default=None, description="the body's own word, e.g. agreed, endorsed")
    passes: int = Field(default=1, description="how many times the stage ran (a text referred back runs it again)")


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
    stages: list[StageReport] = Field(default_factory=list)
    stage_workflow_id: str | None = Field(default=None, description="the open consultation or meeting")
    pledges: list[Pledge] = Field(default_factory=list)
    consultation: ConsultationStatus | None = Field(default=None, description="filled in by the caller, if open")
    not_invited: dict[MemberState, str] = Field(
        default_factory=dict, description="states of the open round nobody was written to, and why (from the round)"
    )
    decided_by: StageType | None = Field(default=None, description="the body whose word is the final status")
    summit_reported: bool = Field(default=False, description="reported to the ASEAN Summit (summit_report stage)")
    waiting: str | None = Field(default=None, description="why the open round is still open (from the round)")
    overdue_since: datetime | None = Field(
        default=None, description="the open round is overdue (states silent past its deadline) since (from the round)"
    )
    meeting: MeetingStatus | None = Field(default=None, description="the open meeting's date, if any (filled in)")


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
    purpose: RoundPurpose = RoundPurpose.REVIEW
    stage_type: StageType = StageType.MEMBER_REVIEW
    roles: list[Role] = Field(default_factory=lambda: [Role.FOCAL_POINT, Role.ALTERNATE])
    funding: FundingTerms | None = None
    delegate_ids: list[str] | None = Field(
        default=None, description="write only to these delegates (the round's invited ones); None: every delegate"
    )
    allowed: list[Position] | None = Field(default=None, description="the round's answers; None: its purpose's")


class RecipientsQuery(BaseModel):
    """Whom a round would write to: the active delegates of `states` in `roles` (falling back as mail does)."""

    states: list[MemberState]
    roles: list[Role]


class NotInvitedState(BaseModel):
    state: MemberState
    reason: str


class RoundRecipients(BaseModel):
    delegates: dict[MemberState, list[str]] = Field(default_factory=dict)
    nobody: list[NotInvitedState] = Field(default_factory=list)


class ResendInput(BaseModel):
    """`aisafe resend ID --state XX [--deadline P7D]`: invite one state of the open round again."""

    state: MemberState
    deadline: timedelta | None = Field(default=None, description="a fresh deadline for this state, from now")
    delegate_id: str | None = Field(default=None, description="only this delegate of the state (--delegate)")

    @model_validator(mode="after")
    def _positive(self) -> ResendInput:
        if self.deadline is not None and self.deadline <= timedelta(0):
            raise ValueError("a fresh deadline must be a positive duration such as P7D")
        return self


class ResendReceipt(BaseModel):
    round: int
    state: MemberState
    delegate_ids: list[str]
    deadline: datetime
    ledger_seq: int
    ledger_entry_hash: str | None = None  # with the seq, the receipt the audit cross-check matches to its entry


class MembersOnQuery(BaseModel):
    """Which states are ASEAN members on `day` (the `members_on` activity reads the membership table)."""

    day: date


class MembersOnDay(BaseModel):
    day: date
    states: list[MemberState] = Field(default_factory=list, description="in ASEAN's order")


class RosterChange(BaseModel):
    """`aisafe roster import` tells each open round which delegates of a state left the roster and which came."""

    state: MemberState
    removed: list[str] = Field(default_factory=list, description="delegate ids no longer on the roster")
    added: list[str] = Field(default_factory=list, description="delegate ids new on the roster")


class RosterChangeReceipt(BaseModel):
    round: int
    state: MemberState
    withdrawn: list[str] = Field(default_factory=list, description="delegate ids whose links stopped working")
    invited: list[str] = Field(default_factory=list, description="delegate ids written to with a link")
    ledger_seq: int | None = None
    ledger_entry_hash: str | None = None


class CoordinatorAlert(BaseModel):
    """Tells the coordinator at once that a round could not invite some states."""

    proposal_id: str
    title: str
    round: int
    step: str
    workflow_id: str
    not_invited: list[NotInvitedState]
    overdue: list[MemberState] = Field(
        default_factory=list, description="the states silent at the deadline: the round is overdue (step overdue-N)"
    )
    deadline: datetime | None = Field(default=None, description="the deadline that passed (an overdue alert)")


class SilenceProcedureInput(BaseModel):
    """`aisafe silence-procedure ID DURATION`: the silent states of an overdue round are deemed to concur at the end
    of `duration` unless they object meanwhile."""

    duration: timedelta

    @model_validator(mode="after")
    def _positive(self) -> SilenceProcedureInput:
        if self.duration <= timedelta(0):
            raise ValueError("a silence procedure needs a positive duration such as P7D")
        return self


class CloseRoundInput(BaseModel):
    """`aisafe close-round ID --no-consensus [--reason TEXT]`: end an overdue round without consensus."""

    no_consensus: bool = True
    reason: str | None = Field(default=None, max_length=2000)


class RoundControlReceipt(BaseModel):
    """What the coordinator's control of an open round did: the round's new deadline (extend, silence procedure)
    and the states it concerns."""

    round: int
    action: str  # extended, silence_procedure, closed_no_consensus
    states: list[MemberState]
    deadline: datetime | None = None
    ledger_seq: int
    ledger_entry_hash: str  # with the seq, what the audit cross-check finds the entry by


class AnswerNotice(BaseModel):
    """Tells a state's other delegates that one of them has answered for the state."""

    proposal_id: str
    title: str
    round: int
    state: MemberState
    delegate_id: str
    decision_id: str
    position: Position
    roles: list[Role]
    deadline: datetime | None = Field(default=None, description="the state's deadline, for the delegate's receipt")


class MailOutcome(StrEnum):
    SENT = "sent"
    REFUSED = "refused"  # the relay refused the address (its reply code), or the message could not be built
    BOUNCED = "bounced"  # the relay refused the finished message


class RecipientOutcome(BaseModel):
    """What became of one recipient's message; delegate ids only, never addresses (this goes to the ledger)."""

    state: MemberState | None
    delegate_id: str
    outcome: MailOutcome
    code: int | None = None
    reply: str | None = None


class MailingResult(BaseModel):
    sent: int
    already_sent: int
    states_without_delegates: list[MemberState] = Field(default_factory=list)
    recipients: list[RecipientOutcome] = Field(default_factory=list)
    not_invited: list[NotInvitedState] = Field(
        default_factory=list, description="states asked for with nobody to write to, or nobody written to"
    )


# --- consultation ---------------------------------------------------------------------------------------


class ConsultationInput(BaseModel):
    proposal_id: str
    title: str
    stage_index: int
    document: DocumentRef
    sectors: list[Sector]
    deadline: datetime
    carried: ConsultationCarry | None = Field(default=None, description="state a continued run starts from")


class CommentSubmission(BaseModel):
    proposal_id: str
    stage_index: int
    stakeholder_id: str
    sector: Sector
    document_sha256: str
    # Before comment bodies were stored by hash the body itself travelled here; now only its hash and length do.
    text: str | None = Field(default=None, min_length=1, max_length=10000)
    section: str | None = Field(default=None, max_length=200)
    text_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    text_length: int | None = Field(default=None, ge=1, description="characters in the body")


class Comment(BaseModel):
    comment_id: str
    stakeholder_id: str
    sector: Sector
    text: str | None = Field(default=None, description="the body, where the reader loaded it from the database")
    section: str | None = None
    submitted_at: datetime
    ledger_entry_hash: str
    disposition: Disposition | None = None
    reason: str | None = None
    text_sha256: str | None = None


class CommentReceipt(BaseModel):
    comment_id: str
    proposal_id: str
    ledger_seq: int
    ledger_entry_hash: str
    recorded_at: datetime


class DispositionInput(BaseModel):
    comment_id: str
    disposition: Disposition
    reason: str = Field(min_length=3, max_length=4000)


class RespondManyInput(BaseModel):
    """One disposition and reason for many comments at once (or every comment still unanswered)."""

    comment_ids: list[str] = Field(default_factory=list, max_length=1000)
    all_open: bool = False
    disposition: Disposition
    reason: str = Field(min_length=3, max_length=4000)

    @model_validator(mode="after")
    def _some(self) -> RespondManyInput:
        if self.all_open == bool(self.comment_ids):
            raise ValueError("give either comment ids or all_open, not both and not neither")
        if len(set(self.comment_ids)) != len(self.comment_ids):
            raise ValueError("a comment id is given twice")
        return self


class RespondManyResult(BaseModel):
    answered: int
    still_open: int


class ConsultationCarry(BaseModel):
    """What a consultation run hands its continuation: counts and deadlines, never comments (they are in the ledger)."""

    deadline: datetime
    extensions: int
    comments: int
    per_link: dict[str, int]
    closed: bool
    open: int | None = None
    run: int = 1
    limits: CommentLimits | None = None


class CommentLimits(BaseModel):
    """The limits the worker's settings put on each consultation (read once per run, so replay agrees)."""

    per_link: int
    max_chars: int
    events_per_run: int | None = None


class CommentLookup(BaseModel):
    """Comments of one consultation as its ledger holds them (no bodies); `unknown` lists ids it does not hold."""

    comments: list[Comment]
    unknown: list[str]
    still_open: int
    dispositions: dict[str, int] = Field(default_factory=dict, description="answered comments per disposition")


class CommentQuery(BaseModel):
    workflow_id: str
    proposal_id: str
    comment_ids: list[str]


class DispositionBatch(BaseModel):
    """Dispositions to record, one ledger entry per comment, in one transaction (ids, or up to `limit` open ones)."""

    workflow_id: str
    proposal_id: str
    update_id: str
    comment_ids: list[str] = Field(default_factory=list)
    open_limit: int = 0
    disposition: Disposition
    reason: str


class DispositionsRecorded(BaseModel):
    recorded: list[str]
    still_open: int


class ExtendInput(BaseModel):
    by: timedelta

    @model_validator(mode="after")
    def _positive(self) -> ExtendInput:
        if self.by <= timedelta(0):
            raise ValueError("an extension must be a positive duration such as P7D")
        return self


class ConsultationStatus(BaseModel):
    workflow_id: str
    deadline: datetime
    is_open: bool
    document: DocumentRef
    comments: list[Comment]
    # Since comments are kept by hash the workflow holds counts, and `comments` lists this run's only.
    comment_count: int | None = None
    open_count: int | None = None
    runs: int | None = None
    dispositions: dict[str, int] | None = Field(default=None, description="when closed: comments per disposition")


class ConsultationMailing(BaseModel):
    proposal_id: str
    title: str
    stage_index: int
    step: str
    sectors: list[Sector]
    document: DocumentRef
    deadline: datetime


# --- meetings -----------------------------------------------------------------------------------------------


class MeetingInput(BaseModel):
    proposal_id: str
    title: str
    stage_index: int
    stage_type: StageType
    date: datetime
    venue: str | None
    chair: MemberState
    grace: timedelta
    rule: DecisionRule
    min_participants: int = 2
    participants: list[MemberState]
    roles: list[Role]
    document: DocumentRef
    # Meetings started under the `meetings-decide` patch record the Meeting's decision, not a roll call, and take
    # reschedules and cancellations; older ones (False) replay as they ran.
    decides: bool = False
    sitting: int = Field(default=1, ge=1, description="the stage's meeting count: a text referred back meets again")


MAX_PARAGRAPH = 3000  # the decision paragraph of a Joint Media Statement runs to a few sentences
MAX_RESERVATION = 1000


class MeetingRecord(BaseModel):
    """What the secretariat records after a meeting: who was present, the Meeting's decision and its paragraph,
    any state's reservation (`aisafe record-meeting ID --present ... --decision ... --paragraph ...`).

    Meetings from before the `meetings-decide` patch took a roll call of `positions` instead (and still replay)."""

    held_on: datetime | None = None
    venue: str | None = Field(default=None, max_length=200)
    summary: str | None = Field(default=None, max_length=10000)
    positions: dict[MemberState, Position] = Field(default_factory=dict)
    reasons: dict[MemberState, str] = Field(default_factory=dict)
    present: list[MemberState] | None = None
    decision: MeetingDecision | None = None
    paragraph: str | None = Field(default=None, max_length=MAX_PARAGRAPH)
    reservations: dict[MemberState, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _reasons_where_required(self) -> MeetingRecord:
        missing = sorted(s.value for s, p in self.positions.items() if p.needs_reason and not self.reasons.get(s))
        if missing:
            raise ValueError(f"a reason is required for the position of {', '.join(missing)}")
        unknown = sorted(s.value for s in self.reasons if s not in self.positions)
        if unknown:
            raise ValueError(f"reasons given for states without a recorded position: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _roll_call_or_decision(self) -> MeetingRecord:
        # Every record from before the decision form had a roll call, so this refuses no recorded payload.
        if self.decision is None:
            if not self.positions:
                raise ValueError("record the Meeting's decision (and who was present), or a roll call of positions")
            return self
        if self.positions:
            raise ValueError("a record holds the Meeting's decision or a roll call of positions, not both")
        if not self.present:
            raise ValueError("name the states present at the meeting")
        if len(set(self.present)) != len(self.present):
            raise ValueError("a state is named twice among those present")
        paragraph = (self.paragraph or "").strip()
        if not paragraph:
            raise ValueError("the decision paragraph is required (as it will appear in the Joint Media Statement)")
        if "\n\n" in paragraph.replace("\r\n", "\n"):
            raise ValueError("the decision paragraph must be one paragraph (no blank line)")
        absent = sorted(s.value for s in self.reservations if s not in self.present)
        if absent:
            raise ValueError(f"reservations from states not present: {', '.join(absent)} (absent states are consulted)")
        empty = sorted(s.value for s, text in self.reservations.items() if not text.strip())
        if empty:
            raise ValueError(f"a reservation needs its text: {', '.join(empty)}")
        long = sorted(s.value for s, text in self.reservations.items() if len(text) > MAX_RESERVATION)
        if long:
            raise ValueError(f"a reservation is at most {MAX_RESERVATION} characters: {', '.join(long)}")
        return self


class MeetingOutcome(BaseModel):
    recorded: bool
    record: MeetingRecord | None = None
    verdict: Verdict | None = None
    reason: str
    participating: list[MemberState] | None = None
    decision: MeetingDecision | None = None  # meetings that decide as meetings: the Meeting's word
    absent: list[MemberState] = Field(default_factory=list)  # participants not present: consulted ad referendum


class RescheduleInput(BaseModel):
    """A new date (and venue) for a meeting: `aisafe reschedule ID --date ... [--venue ...]`."""

    date: datetime
    venue: str | None = Field(default=None, max_length=200)


class CancelMeetingInput(BaseModel):
    """Cancel a meeting's date (`aisafe cancel-meeting ID`); the stage waits for a reschedule."""

    reason: str | None = Field(default=None, max_length=1000)


class MeetingStatus(BaseModel):
    """A meeting as the coordinator sees it: its date now, whether it is waiting for a new date, and why."""

    date: datetime
    venue: str | None
    sequence: int
    held: bool
    waiting_for_date: str | None = None  # why the meeting needs a reschedule (cancelled, date passed, deferred)
    decision: MeetingDecision | None = None


class MeetingMailing(BaseModel):
    proposal_id: str
    title: str
    stage_index: int
    stage_type: StageType
    step: str
    date: datetime
    venue: str | None
    chair: MemberState
    states: list[MemberState]
    roles: list[Role]
    document: DocumentRef
    sequence: int = 0  # the calendar entry's SEQUENCE: each reschedule or cancellation adds one
    sitting: int = 1  # see MeetingInput.sitting: a later sitting is a new calendar entry (its own UID)
    reason: str | None = None  # a cancellation's reason
    previous_date: datetime | None = None  # a reschedule's former date; a date-passed alert's date


class OutcomeMailing(BaseModel):
    """The closing notice to every delegate (and invited stakeholder) of a proposal."""

    proposal_id: str
    title: str
    status: ProposalState
    reason: str | None
    document: DocumentRef
    decided_by: StageType | None = None
    summit_reported: bool = False


class SummitReportMailing(BaseModel):
    """The notice to the contact for the Leaders that a proposal is reported to the ASEAN Summit."""

    proposal_id: str
    title: str
    stage_index: int
    status: ProposalState
    decided_by: StageType | None = None
    summit: str | None = None
    document: DocumentRef


ProposalStatus.model_rebuild()
