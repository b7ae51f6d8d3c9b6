"""What a proposal's ledger says, arranged for people: the stage timeline, the states × rounds matrix,
documents, the consultation's response matrix, meeting records and pledges.

Built from ledger lines alone, so the report of a bundle and the auditor's web page show the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.bundle import LedgerLine
from models.labels import DISPOSITION_LABELS, SECTOR_LABELS, STAGE_BODY_NAMES, status_text
from models.messages import ProposalState
from models.positions import Position
from models.process import StageType
from models.states import MemberState, in_name_order


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _position_label(value: Any) -> str:
    try:
        return Position(value).label
    except ValueError:
        return str(value)


@dataclass
class StageSpan:
    index: int
    stage: str
    body: str
    started_at: datetime
    ended_at: datetime | None = None
    status: str = "running"
    outcome: str = ""
    decision: str | None = None  # the body's own word (agreed, endorsed, ...), from the stage_ended entry


@dataclass
class Answer:
    """One state's answer in one round: the one that stands, with any earlier answers it replaced."""

    position: str
    label: str
    reason: str | None = None
    delegate_id: str | None = None
    decision_id: str | None = None
    recorded_at: datetime | None = None
    amount: str | None = None
    deemed: bool = False
    entry_hash: str | None = None
    earlier: list[Answer] = field(default_factory=list)


@dataclass
class RoundColumn:
    round: int
    stage: str
    purpose: str
    rule: str
    document_version: int | None
    document_sha256: str | None
    opened_at: datetime | None
    deadline: datetime | None
    closed_at: datetime | None = None
    closed_because: str | None = None
    verdict: str | None = None
    reason: str | None = None
    reminders: int = 0
    participants: list[str] = field(default_factory=list)
    not_invited: dict[str, str] = field(default_factory=dict)  # state: why nobody was written to
    resent: list[ResendRow] = field(default_factory=list)
    mailings: list[MailingRow] = field(default_factory=list)


@dataclass
class RecipientRow:
    """One message of a mailing: to whom (a delegate id, never an address) and what the relay said."""

    state: str | None
    delegate_id: str
    outcome: str  # sent, refused or bounced
    code: int | None = None
    reply: str | None = None


@dataclass
class MailingRow:
    """Who a mailing (a round's invitation or reminder, say) actually reached, as its `mail_outcome` entry says."""

    workflow_id: str
    step: str
    round: int | None
    recorded_at: datetime | None
    recipients: list[RecipientRow] = field(default_factory=list)
    not_invited: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.recipients if r.outcome == outcome)


@dataclass
class ResendRow:
    state: str
    delegate_ids: list[str]
    deadline: datetime | None
    recorded_at: datetime | None


@dataclass
class CommentRow:
    comment_id: str
    sector: str
    stakeholder_id: str
    section: str | None
    text: str
    disposition: str | None = None
    reason: str | None = None


@dataclass
class MeetingRow:
    stage: str
    date: datetime | None
    venue: str | None
    chair: str | None
    recorded: bool = False
    held_on: datetime | None = None
    summary: str | None = None
    positions: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    # Meetings that decide as meetings: who attended, the Meeting's decision and paragraph, reservations, and the
    # changes of date on the way (rescheduled, cancelled, deferred, date passed when the stage opened).
    present: list[str] = field(default_factory=list)
    decision: str | None = None
    paragraph: str | None = None
    reservations: dict[str, str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)


@dataclass
class PledgeRow:
    contributor: str
    amount: str | None
    answer: str
    round: int | None = None
    # A dialogue partner's pledge goes to the trust fund, earmarked to these activities, apart from the core budget.
    trust_fund: bool = False
    activities: list[str] = field(default_factory=list)


@dataclass
class DocumentRow:
    version: int
    filename: str
    sha256: str
    size: int | None
    recorded_at: datetime


@dataclass
class AuditRecord:
    proposal_id: str
    title: str = ""
    kind: str = ""
    lead_state: str = ""
    status: str = "running"
    closed_reason: str | None = None
    started_at: datetime | None = None
    last_at: datetime | None = None
    stages: list[StageSpan] = field(default_factory=list)
    rounds: list[RoundColumn] = field(default_factory=list)
    answers: dict[tuple[str, int], Answer] = field(default_factory=dict)
    documents: list[DocumentRow] = field(default_factory=list)
    comments: list[CommentRow] = field(default_factory=list)
    meetings: list[MeetingRow] = field(default_factory=list)
    pledges: list[PledgeRow] = field(default_factory=list)
    mailings: list[MailingRow] = field(default_factory=list)
    currency: str | None = None
    entries: int = 0
    decided_by: str | None = None  # the body whose word is the final status (proposal_closed, since issue 18)
    summit_reported: bool = False

    @property
    def status_words(self) -> str:
        """The final status as people read it: "endorsed by the ADGMIN; reported to the ASEAN Summit"."""
        try:
            status = ProposalState(self.status)
        except ValueError:
            return self.status.replace("_", " ")
        try:
            body = StageType(self.decided_by) if self.decided_by else None
        except ValueError:
            body = None
        return status_text(status, body, self.summit_reported)

    @property
    def states(self) -> list[MemberState]:
        """The states the matrix has rows for: every state invited to any round, in the usual order."""
        seen = (
            {state for state, _ in self.answers}
            | {state for column in self.rounds for state in column.participants}
            | {state for column in self.rounds for state in column.not_invited}
        )
        return [s for s in in_name_order(MemberState) if s.value in seen] or in_name_order(MemberState)

    @property
    def not_invited(self) -> list[tuple[RoundColumn, str, str]]:
        """(round, state, why) for every state some round could not write to."""
        return [(column, state, why) for column in self.rounds for state, why in column.not_invited.items()]

    def answer(self, state: MemberState, round_number: int) -> Answer | None:
        return self.answers.get((state.value, round_number))


def build_record(lines: list[LedgerLine]) -> AuditRecord:
    """Arrange ledger lines (in seq order) into the record a person reads."""
    record = AuditRecord(proposal_id=lines[0].proposal_id if lines else "", entries=len(lines))
    rounds: dict[int, RoundColumn] = {}
    comments: dict[str, CommentRow] = {}
    meetings: dict[str, MeetingRow] = {}
    for line in lines:
        payload = line.payload
        at = _time(line.recorded_at)
        record.started_at = record.started_at or at
        record.last_at = at
        workflow_id = line.idempotency_key.split(":")[0]
        match line.kind:
            case "proposal_started":
                record.title = str(payload.get("title", ""))
                record.kind = str(payload.get("kind", ""))
                record.lead_state = str(payload.get("lead_state", ""))
                _add_document(record, payload.get("document"), at)
                for stage in (payload.get("process") or {}).get("stages", []):
                    if stage.get("type") == StageType.FUNDING.value:
                        record.currency = stage.get("currency")
            case "version_uploaded":
                _add_document(record, payload.get("document"), at)
            case "stage_started" if at is not None:
                stage = str(payload.get("stage"))
                record.stages.append(
                    StageSpan(index=int(payload.get("index", 0)), stage=stage, body=_body(stage), started_at=at)
                )
            case "stage_ended":
                for span in record.stages:
                    if span.index == payload.get("index") and span.ended_at is None:
                        span.ended_at, span.status = at, str(payload.get("status", ""))
                        span.decision = payload.get("decision")
                        span.outcome = str(payload.get("outcome", ""))
            case "round_opened":
                number = int(payload.get("round", 0))
                document = payload.get("document") or {}
                rounds[number] = RoundColumn(
                    round=number,
                    stage=str(payload.get("stage", "")),
                    purpose=str(payload.get("purpose", "")),
                    rule=str(payload.get("rule", "")),
                    document_version=document.get("version"),
                    document_sha256=document.get("sha256"),
                    opened_at=at,
                    deadline=_time(payload.get("deadline")),
                    participants=[str(state) for state in payload.get("participants") or []],
                )
            case "position":
                _record_answer(record, payload, line)
            case "reminder_sent":
                if (column := rounds.get(int(payload.get("round", 0)))) is not None:
                    column.reminders += 1
            case "round_closed":
                number = int(payload.get("round", 0))
                if (column := rounds.get(number)) is not None:
                    column.closed_at = _time(payload.get("closed_at"))
                    column.closed_because = payload.get("closed_because")
                    column.verdict, column.reason = payload.get("verdict"), payload.get("reason")
                for state, final in (payload.get("positions") or {}).items():
                    if final.get("deemed") and (state, number) not in record.answers:
                        record.answers[(state, number)] = Answer(
                            position=final.get("position", ""),
                            label=_position_label(final.get("position")),
                            deemed=True,
                            recorded_at=_time(final.get("recorded_at")),
                        )
            case "comment":
                comments[str(payload.get("comment_id"))] = CommentRow(
                    comment_id=str(payload.get("comment_id")),
                    sector=SECTOR_LABELS.get(str(payload.get("sector")), str(payload.get("sector"))),
                    stakeholder_id=str(payload.get("stakeholder_id")),
                    section=payload.get("section"),
                    text=str(payload.get("text", "")),
                )
            case "disposition":
                if (row := comments.get(str(payload.get("comment_id")))) is not None:
                    disposition = str(payload.get("disposition"))
                    row.disposition = DISPOSITION_LABELS.get(disposition, disposition)
                    row.reason = payload.get("reason")
            case "meeting_scheduled":
                meetings[workflow_id] = MeetingRow(
                    stage=_body(str(payload.get("stage", ""))),
                    date=_time(payload.get("date")),
                    venue=payload.get("venue"),
                    chair=payload.get("chair"),
                )
            case "meeting_recorded":
                row = meetings.setdefault(workflow_id, MeetingRow(stage="", date=None, venue=None, chair=None))
                row.recorded, row.held_on = True, _time(payload.get("held_on"))
                row.summary = payload.get("summary")
                row.venue = payload.get("venue") or row.venue
                row.positions = {s: _position_label(p) for s, p in (payload.get("positions") or {}).items()}
                row.reasons = dict(payload.get("reasons") or {})
                if payload.get("decision"):
                    row.present = [str(s) for s in payload.get("present") or []]
                    row.decision = str(payload["decision"]).replace("_", " ")
                    row.paragraph = payload.get("paragraph")
                    row.reservations = dict(payload.get("reservations") or {})
                    if payload["decision"] == "deferred":
                        row.changes.append(f"deferred: {row.paragraph}")
            case "meeting_rescheduled":
                if (row := meetings.get(workflow_id)) is not None:
                    row.date = _time(payload.get("date")) or row.date
                    row.venue = payload.get("venue") or row.venue
                    row.changes.append(f"rescheduled from {payload.get('previous_date')} to {payload.get('date')}")
            case "meeting_cancelled":
                if (row := meetings.get(workflow_id)) is not None:
                    reason = f" ({payload['reason']})" if payload.get("reason") else ""
                    row.changes.append(f"the meeting of {payload.get('date')} was cancelled{reason}")
            case "meeting_date_passed":
                if (row := meetings.get(workflow_id)) is not None:
                    row.changes.append(f"its date {payload.get('date')} had passed when the stage opened")
            case "partner_pledge":
                record.pledges.append(
                    PledgeRow(
                        contributor=str(payload.get("partner")),
                        amount=payload.get("amount"),
                        answer="pledged",
                        trust_fund=True,
                        activities=[str(a) for a in payload.get("activities") or []],
                    )
                )
            case "mail_outcome":
                mailing = _mailing(workflow_id, payload, at)
                record.mailings.append(mailing)
                if mailing.round is not None and (column := rounds.get(mailing.round)) is not None:
                    column.mailings.append(mailing)
            case "not_invited":
                if (column := rounds.get(_int(payload.get("round")) or 0)) is not None:
                    column.not_invited[str(payload.get("state"))] = str(payload.get("reason") or "")
            case "invitation_resent":
                if (column := rounds.get(_int(payload.get("round")) or 0)) is not None:
                    column.resent.append(
                        ResendRow(
                            state=str(payload.get("state")),
                            delegate_ids=[str(d) for d in payload.get("delegate_ids") or []],
                            deadline=_time(payload.get("deadline")),
                            recorded_at=at,
                        )
                    )
            case "proposal_closed":
                record.status = str(payload.get("status", ""))
                record.closed_reason = payload.get("reason")
                record.decided_by = payload.get("decided_by")
            case "summit_reported":
                record.summit_reported = True
            case "withdrawn":
                record.status, record.closed_reason = "withdrawn", payload.get("reason")
    record.rounds = [rounds[n] for n in sorted(rounds)]
    record.comments = list(comments.values())
    record.meetings = list(meetings.values())
    funding = {c.round for c in record.rounds if c.stage == StageType.FUNDING.value}
    states_pledged = [
        PledgeRow(contributor=state, amount=answer.amount, answer=answer.label, round=number)
        for (state, number), answer in sorted(
            record.answers.items(), key=lambda item: (item[0][1], name_key(item[0][0]))
        )
        if number in funding
    ]
    record.pledges = states_pledged + record.pledges  # the states' answers first, then dialogue partners
    return record


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mailing(workflow_id: str, payload: dict[str, Any], at: datetime | None) -> MailingRow:
    recipients = [
        RecipientRow(
            state=None if r.get("state") is None else str(r.get("state")),
            delegate_id=str(r.get("delegate_id", "")),
            outcome=str(r.get("outcome", "")),
            code=_int(r.get("code")),
            reply=None if r.get("reply") is None else str(r.get("reply")),
        )
        for r in payload.get("recipients") or []
        if isinstance(r, dict)
    ]
    missing = {
        str(n.get("state")): str(n.get("reason") or "") for n in payload.get("not_invited") or [] if isinstance(n, dict)
    }
    return MailingRow(
        workflow_id=workflow_id,
        step=str(payload.get("step", "")),
        round=_int(payload.get("round")),
        recorded_at=at,
        recipients=sorted(recipients, key=lambda r: (name_key(r.state or ""), r.delegate_id)),
        not_invited=missing,
    )


def name_key(code: str) -> str:
    """Sort key putting state codes in ASEAN's order (by English name); anything else after them, as written."""
    try:
        return f"0{MemberState(code).official_name}"
    except ValueError:
        return f"1{code}"


def _body(stage: str) -> str:
    try:
        return STAGE_BODY_NAMES[StageType(stage)]
    except (ValueError, KeyError):
        return stage


def _add_document(record: AuditRecord, document: Any, at: datetime | None) -> None:
    if isinstance(document, dict) and at is not None:
        record.documents.append(
            DocumentRow(
                version=int(document.get("version", 0)),
                filename=str(document.get("filename", "")),
                sha256=str(document.get("sha256", "")),
                size=document.get("size"),
                recorded_at=at,
            )
        )


def _record_answer(record: AuditRecord, payload: dict[str, Any], line: LedgerLine) -> None:
    key = (str(payload.get("state")), int(payload.get("round", 0)))
    answer = Answer(
        position=str(payload.get("position")),
        label=_position_label(payload.get("position")),
        reason=payload.get("reason"),
        delegate_id=payload.get("delegate_id"),
        decision_id=payload.get("decision_id"),
        recorded_at=_time(line.recorded_at),
        amount=payload.get("amount"),
        entry_hash=line.entry_hash,
    )
    previous = record.answers.get(key)
    if previous is not None:
        answer.earlier = [*previous.earlier, previous]
        previous.earlier = []
    record.answers[key] = answer
