"""The coordinators' dashboard: every proposal with its stage timeline and its states × rounds matrix.

Built from the ledger alone (one query for a page of proposals, one for their entries) with the same
`audit.record` arrangement the audit report uses, so the page costs no Temporal call per proposal and shows
what the audit report will show. The ledger is written as things happen (a position is in it before the
delegate sees the receipt), so the page is as current as the workflows.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from audit.bundle import LedgerLine
from audit.record import AuditRecord, RoundColumn, StageSpan, build_record
from audit.report import amount, timeline_svg
from models.states import MemberState, in_name_order
from models.tables import LedgerEntry, ProposalRecord
from models.timefmt import in_utc
from web.auth import READERS, require_role
from web.pages import templates

PAGE_SIZE = 20
router = APIRouter(dependencies=[Depends(require_role(*READERS))])


@dataclass(frozen=True)
class StageLine:
    """One stage of the process as planned, and how far it has got."""

    type: str
    status: str  # pending, running, passed, failed, cancelled, or "not reached" once the proposal closed
    outcome: str
    rounds: list[int]
    decision: str | None = None  # the body's own word for what the stage decided (agreed, endorsed, ...)


@dataclass(frozen=True)
class Cell:
    """What one state gave in one round, in words (the colour only repeats it)."""

    label: str
    note: str = ""
    reason: str = ""
    kind: str = "answered"  # answered, deemed, awaiting, silent, absent, not_invited


@dataclass(frozen=True)
class ProposalView:
    proposal: ProposalRecord
    record: AuditRecord
    stages: list[StageLine]
    timeline: Markup
    open_round: RoundColumn | None
    open_deadline: str | None
    consultation: tuple[bool, int, int] | None  # open?, comments, comments answered
    matrix: list[tuple[MemberState, list[Cell]]]
    not_invited: dict[MemberState, str]  # states of the open round nobody was written to, and why
    # Dialogue partners' trust-fund pledges (partner, amount in words, activities), shown apart from the core budget.
    trust_fund: list[tuple[str, str, list[str]]] = field(default_factory=list)
    overdue: str | None = None  # the open round is overdue: since when and who is silent, in words


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, page: int = Query(1, ge=1, le=100_000)) -> Response:
    views, more = await asyncio.to_thread(read_page, request.app.state.engine, page)
    return templates.TemplateResponse(
        request,
        "dashboard.html",
        {"views": views, "page": page, "more": more, "dev": request.app.state.settings.dev},
    )


def read_page(engine: Engine, page: int) -> tuple[list[ProposalView], bool]:
    """The newest proposals on this page, arranged from their ledger entries; and whether older ones follow."""
    with Session(engine) as session:
        proposals = list(
            session.exec(
                select(ProposalRecord)
                .order_by(col(ProposalRecord.created_at).desc(), col(ProposalRecord.id))
                .offset((page - 1) * PAGE_SIZE)
                .limit(PAGE_SIZE + 1)
            )
        )
        more, proposals = len(proposals) > PAGE_SIZE, proposals[:PAGE_SIZE]
        lines: dict[str, list[LedgerLine]] = defaultdict(list)
        if proposals:
            entries = session.exec(
                select(LedgerEntry)
                .where(col(LedgerEntry.proposal_id).in_([p.id for p in proposals]))
                .order_by(col(LedgerEntry.proposal_id), col(LedgerEntry.seq))
            )
            for entry in entries:
                lines[entry.proposal_id].append(LedgerLine.of(entry))
    return [proposal_view(proposal, lines[proposal.id], number) for number, proposal in enumerate(proposals)], more


def proposal_view(proposal: ProposalRecord, lines: list[LedgerLine], number: int) -> ProposalView:
    record = build_record(lines)
    started = next((line.payload for line in lines if line.kind == "proposal_started"), {})
    planned = [str(stage.get("type", "")) for stage in (started.get("process") or {}).get("stages", [])]
    open_round = next((c for c in reversed(record.rounds) if c.closed_at is None), None)
    if record.status != "running":
        open_round = None
    uninvited = not_invited_by_round(lines)
    return ProposalView(
        proposal=proposal,
        record=record,
        stages=_stage_lines(record, planned),
        timeline=timeline_svg(record, title_id=f"timeline-{number}"),
        open_round=open_round,
        open_deadline=in_utc(open_round.deadline) if open_round and open_round.deadline else None,
        consultation=_consultation(record),
        matrix=[
            (state, [cell(record, state, column, uninvited.get(column.round, {})) for column in record.rounds])
            for state in _rows(record)
        ],
        not_invited=uninvited.get(open_round.round, {}) if open_round else {},
        trust_fund=trust_fund_of(record),
        overdue=overdue_by_round(lines).get(open_round.round) if open_round else None,
    )


def trust_fund_of(record: AuditRecord) -> list[tuple[str, str, list[str]]]:
    """Partners' pledges as the dashboard lists them: partner, amount in words, the activities earmarked."""
    currency = f"{record.currency} " if record.currency else ""
    return [(p.contributor, f"{currency}{amount(p.amount)}", p.activities) for p in record.pledges if p.trust_fund]


def overdue_by_round(lines: list[LedgerLine]) -> dict[int, str]:
    """Per round, what it is overdue with (`round_overdue`), unless the coordinator has acted since."""
    found: dict[int, str] = {}
    for line in lines:
        if line.kind not in ("round_overdue", "round_extended", "silence_procedure", "round_closed_no_consensus"):
            continue
        try:
            round_number = int(line.payload["round"])
            states = in_name_order(MemberState(s) for s in line.payload.get("states") or [])
        except (KeyError, TypeError, ValueError):
            continue  # not an entry this page can read: the audit report says what is wrong with it
        if line.kind == "round_overdue":
            since = str(line.payload.get("since") or "")
            names = ", ".join(f"{s.official_name} ({s.value})" for s in states)
            found[round_number] = f"since {since}: {names} did not answer"
        else:
            found.pop(round_number, None)
    return found


def not_invited_by_round(lines: list[LedgerLine]) -> dict[int, dict[MemberState, str]]:
    """Per round, the states recorded as not invited and not invited again since (`invitation_resent`)."""
    found: dict[int, dict[MemberState, str]] = defaultdict(dict)
    for line in lines:
        if line.kind not in ("not_invited", "invitation_resent"):
            continue
        try:
            round_number, state = int(line.payload["round"]), MemberState(line.payload["state"])
        except (KeyError, TypeError, ValueError):
            continue  # not an entry this page can read: the audit report says what is wrong with it
        if line.kind == "not_invited":
            found[round_number][state] = str(line.payload.get("reason") or "not invited")
        else:
            found[round_number].pop(state, None)
    return found


def _stage_lines(record: AuditRecord, planned: list[str]) -> list[StageLine]:
    spans = {span.index: span for span in record.stages}
    running = record.status == "running"
    lines = []
    for index, stage_type in enumerate(planned or [span.stage for span in record.stages]):
        span = spans.get(index)
        if span is None:
            lines.append(StageLine(stage_type, "pending" if running else "not reached", "", []))
            continue
        lines.append(StageLine(span.stage, span.status, span.outcome, _rounds_in(record, span), span.decision))
    return lines


def _rounds_in(record: AuditRecord, span: StageSpan) -> list[int]:
    return [
        column.round
        for column in record.rounds
        if column.stage == span.stage
        and column.opened_at is not None
        and span.started_at <= column.opened_at
        and (span.ended_at is None or column.opened_at <= span.ended_at)
    ]


def _consultation(record: AuditRecord) -> tuple[bool, int, int] | None:
    consultations = [span for span in record.stages if span.stage == "consultation"]
    if not consultations and not record.comments:
        return None
    is_open = any(span.ended_at is None for span in consultations) and record.status == "running"
    answered = sum(1 for comment in record.comments if comment.disposition)
    return is_open, len(record.comments), answered


def _rows(record: AuditRecord) -> list[MemberState]:
    """The states asked in any round (the audit record falls back to all states when there is no round)."""
    return record.states if record.rounds else []


def cell(
    record: AuditRecord, state: MemberState, column: RoundColumn, not_invited: dict[MemberState, str] | None = None
) -> Cell:
    """The matrix cell of `state` in round `column`."""
    if not_invited and state in not_invited and column.closed_at is None:
        return Cell("Not invited", not_invited[state], kind="not_invited")
    answer = record.answer(state, column.round)
    if answer is not None and answer.deemed:
        return Cell(answer.label, "deemed: no answer by the deadline", kind="deemed")
    if answer is not None:
        replaced = len(answer.earlier)
        note = f"replaced {replaced} earlier answer{'s' if replaced > 1 else ''}" if replaced else ""
        pledged = f" {record.currency or ''} {amount(answer.amount)}".replace("  ", " ") if answer.amount else ""
        return Cell(answer.label + pledged, note, answer.reason or "")
    if column.participants and state.value not in column.participants:
        return Cell("—", "not asked in this round", kind="absent")
    if column.closed_at is None and record.status == "running":
        return Cell("Awaiting", "no answer yet", kind="awaiting")
    return Cell("No answer", "silent", kind="silent")
