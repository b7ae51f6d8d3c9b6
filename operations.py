"""Coordinator operations against Temporal and the database: the `aisafe` CLI, the demo and tests call these."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from email.utils import parseaddr
from pathlib import Path
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine, func
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.comments import consultation_comments
from activities.documents import store_document
from activities.ledger import LEDGER_INTEGRITY
from models.controlchars import one_line
from models.db import write_session
from models.decisions import MeetingDecision
from models.files import MAX_DOCUMENT_BYTES, InputFileError, format_validation_error, load_yaml
from models.messages import (
    MAX_PARAGRAPH,
    CancelMeetingInput,
    CloseRoundInput,
    Comment,
    ConsultationStatus,
    DispositionInput,
    DocumentRef,
    ExtendInput,
    MeetingRecord,
    MeetingStatus,
    Pledge,
    ProposalInput,
    ProposalStatus,
    RescheduleInput,
    ResendInput,
    ResendReceipt,
    RespondManyInput,
    RespondManyResult,
    RevisionInput,
    RosterChange,
    RosterChangeReceipt,
    RoundControlReceipt,
    RoundStatus,
    SilenceProcedureInput,
    WithdrawInput,
)
from models.positions import Disposition
from models.process import load_proposal_file, read_document
from models.roster import RosterFile
from models.settings import Settings
from models.states import MemberState
from models.tables import DelegateRecord, utcnow
from models.temporal_client import QUERY_TIMEOUT, proposal_status
from models.update_retry import retrying

PROPOSAL_WORKFLOW = "ProposalWorkflow"
RETRY_FOR = 30.0
T = TypeVar("T")


class OperationError(Exception):
    """An operation refused for a reason the user can act on (unknown id, wrong stage...)."""


class LedgerRefused(OperationError):
    """The ledger refused the step's entry (its key already holds other content): the step did not happen.

    Not the user's input at fault but the record's integrity, so the CLI exits 1, not 2.
    """


def import_roster(engine: Engine, roster: RosterFile) -> tuple[int, int, int]:
    """Upsert delegates keyed by state and email; returns (added, updated, unchanged)."""
    added = updated = unchanged = 0
    with write_session(engine) as session:
        for entry in roster.delegates:
            record = session.get(DelegateRecord, entry.delegate_id)
            fields = {
                "role": entry.role.value,
                "name": entry.name,
                "timezone": entry.timezone,
                "sector": entry.sector.value if entry.sector else None,
                "organisation": entry.organisation,
                "active": True,
            }
            if record is None:
                state = entry.state.value if entry.state else None
                session.add(DelegateRecord(id=entry.delegate_id, state=state, email=entry.email, **fields))
                added += 1
            elif any(getattr(record, k) != v for k, v in fields.items()):
                for key, value in fields.items():
                    setattr(record, key, value)
                record.updated_at = utcnow()
                session.add(record)
                updated += 1
            else:
                unchanged += 1
        session.commit()
    return added, updated, unchanged


def replace_roster(engine: Engine, roster: RosterFile) -> tuple[tuple[int, int, int], list[RosterChange]]:
    """Import a roster that is the whole list of each state it names: that state's delegates missing from the file are
    taken off the roster (their links stop working). Returns the import's counts and, per state whose delegates
    changed, who left and who came (the open rounds are told with `tell_rounds`)."""
    states = sorted({e.state.value for e in roster.delegates if e.state is not None})

    def active_by_state() -> dict[str, set[str]]:
        with Session(engine) as session:
            rows = session.exec(
                select(DelegateRecord)
                .where(DelegateRecord.state.in_(states))  # type: ignore[union-attr]
                .where(DelegateRecord.active)
            ).all()
        found: dict[str, set[str]] = {s: set() for s in states}
        for row in rows:
            found[row.state or ""].add(row.id)
        return found

    before = active_by_state()
    counts = import_roster(engine, roster)
    listed = {e.delegate_id for e in roster.delegates}
    with write_session(engine) as session:
        for state in states:
            for record_id in sorted(before[state] - listed):
                record = session.get(DelegateRecord, record_id)
                if record is not None:
                    record.active = False
                    record.updated_at = utcnow()
                    session.add(record)
        session.commit()
    after = active_by_state()
    changes = [
        RosterChange(
            state=MemberState(state),
            removed=sorted(before[state] - after[state]),
            added=sorted(after[state] - before[state]),
        )
        for state in states
        if before[state] != after[state]
    ]
    return counts, changes


async def tell_rounds(
    client: Client, changes: list[RosterChange], task_queue: str
) -> list[tuple[str, RosterChangeReceipt | str]]:
    """Tell every open round of this deployment (its task queue) in which a changed state takes part: (round
    workflow id, its receipt or its refusal)."""
    told: list[tuple[str, RosterChangeReceipt | str]] = []
    if not changes:
        return told
    if not task_queue.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise OperationError(f"not a task queue name: {task_queue!r}")
    query = f"WorkflowType = 'ReviewRoundWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '{task_queue}'"
    rounds = [execution.id async for execution in client.list_workflows(query)]
    for round_id in sorted(rounds):
        try:
            current = await client.get_workflow_handle(round_id).query(
                "status", result_type=RoundStatus, rpc_timeout=QUERY_TIMEOUT
            )
        except RPCError:
            continue  # it closed meanwhile
        for change in changes:
            if change.state not in current.participants or not current.is_open:
                continue
            try:
                told.append((round_id, await _update(client, round_id, "roster_changed", change, RosterChangeReceipt)))
            except OperationError as refusal:
                told.append((round_id, str(refusal)))
    return told


def revoke_delegate(engine: Engine, email: str, state: str | None = None) -> list[DelegateRecord]:
    """Take a delegate (or stakeholder) off the roster: their links stop working at once; the record stays.

    `state` picks one entry when the same address serves several states. Importing a roster that lists them
    again restores them.
    """
    with write_session(engine) as session:
        address = parseaddr(email)[1] or email  # "Name <address>" as a mail client copies it works too
        query = select(DelegateRecord).where(func.lower(DelegateRecord.email) == address.strip().lower())
        if state:
            query = query.where(DelegateRecord.state == state.upper())
        found = list(session.exec(query))
        if not found:
            raise OperationError(f"no delegate with email {email!r}{f' for {state.upper()}' if state else ''}")
        for record in found:
            record.active = False
            record.updated_at = utcnow()
            session.add(record)
        session.commit()
        for record in found:
            session.refresh(record)
        return found


def roster(engine: Engine) -> list[DelegateRecord]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(DelegateRecord).where(DelegateRecord.active).order_by(DelegateRecord.state, DelegateRecord.role)
            ).all()
        )


async def propose(client: Client, engine: Engine, settings: Settings, path: Path) -> str:
    """Validate a proposal file, store its document and start its workflow; returns the proposal id."""
    proposal, body = load_proposal_file(path, settings.max_document_bytes)
    sha256 = await asyncio.to_thread(store_document, engine, body)
    proposal_id = f"{proposal.kind.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    await client.start_workflow(
        PROPOSAL_WORKFLOW,
        ProposalInput(
            proposal_id=proposal_id,
            title=proposal.title,
            kind=proposal.kind,
            lead_state=proposal.lead_state,
            process=proposal.process,
            document=DocumentRef(
                sha256=sha256, version=1, filename=Path(proposal.document).name, size=len(body.encode())
            ),
        ),
        id=proposal_id,
        task_queue=settings.task_queue,
    )
    return proposal_id


async def status(client: Client, proposal_id: str) -> ProposalStatus:
    try:
        return await proposal_status(client, proposal_id)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise OperationError(f"no proposal with id {proposal_id!r}") from None
        raise


async def list_proposals(client: Client, stage: str | None = None) -> list[ProposalStatus]:
    """Proposals, newest first; `stage` (a stage or final status) filters through the AisafeStage search attribute."""
    query = f"WorkflowType = '{PROPOSAL_WORKFLOW}'"
    if stage:
        if not stage.replace("_", "").isalnum():
            raise OperationError(f"not a stage name: {stage!r}")
        query += f" AND AisafeStage = '{stage}'"
    ids = [
        execution.id
        async for execution in client.list_workflows(query)
        if execution.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
    ]
    found = await asyncio.gather(*(status(client, i) for i in ids), return_exceptions=True)
    result = [s for s in found if isinstance(s, ProposalStatus)]
    return sorted(result, key=lambda s: s.started_at or utcnow(), reverse=True)


async def revise(
    client: Client, engine: Engine, proposal_id: str, path: Path, max_document_bytes: int = MAX_DOCUMENT_BYTES
) -> DocumentRef:
    body = read_document(path, max_document_bytes)
    sha256 = await asyncio.to_thread(store_document, engine, body)
    return await _update(
        client,
        proposal_id,
        "revise",
        RevisionInput(sha256=sha256, filename=path.name, size=len(body.encode())),
        DocumentRef,
    )


async def submit(client: Client, proposal_id: str) -> str:
    return await _update(client, proposal_id, "submit", None, str)


async def withdraw(client: Client, proposal_id: str, reason: str) -> ProposalStatus:
    return await _update(client, proposal_id, "withdraw", WithdrawInput(reason=reason), ProposalStatus)


async def pledge(
    client: Client,
    proposal_id: str,
    partner: str,
    amount: Decimal,
    currency: str | None,
    activities: list[str] | None = None,
) -> Pledge:
    try:
        request = Pledge(partner=partner, amount=amount, currency=currency, activities=activities or [])
    except ValidationError as exc:
        raise OperationError(_first_error(exc)) from None
    return await _update(client, proposal_id, "pledge", request, Pledge)


async def consultation(client: Client, proposal_id: str, engine: Engine | None = None) -> ConsultationStatus:
    """The open consultation of a proposal (its comments and their dispositions).

    With `engine`, every comment of every run and its body comes from the ledger: the workflow holds only its
    current run's comments, by hash."""
    child = await _open_child(client, proposal_id, ".consultation-", "consultation")
    status = await client.get_workflow_handle(child).query("status", result_type=ConsultationStatus)
    if engine is not None:
        comments = await asyncio.to_thread(consultation_comments, engine, proposal_id, child)
        status = status.model_copy(update={"comments": comments})
    return status


async def respond(client: Client, proposal_id: str, comment_id: str, disposition: Disposition, reason: str) -> Comment:
    try:
        answer = DispositionInput(comment_id=comment_id, disposition=disposition, reason=reason)
    except ValidationError as exc:
        raise OperationError(_first_error(exc)) from None
    child = await _open_child(client, proposal_id, ".consultation-", "consultation")
    return await _update(client, child, "respond", answer, Comment)


async def respond_many(
    client: Client, proposal_id: str, comment_ids: list[str], disposition: Disposition, reason: str, *, all_open: bool
) -> RespondManyResult:
    """One disposition for many comments (or every unanswered one): all are answered, or none is."""
    try:
        request = RespondManyInput(comment_ids=comment_ids, all_open=all_open, disposition=disposition, reason=reason)
    except ValidationError as exc:
        raise OperationError(_first_error(exc)) from None
    child = await _open_child(client, proposal_id, ".consultation-", "consultation")
    return await _update(client, child, "respond_many", request, RespondManyResult)


def parse_duration(duration: str) -> timedelta:
    """An ISO 8601 duration as the coordinator typed it, or OperationError (for the CLI to refuse it first)."""
    return _duration(duration)


def _duration(duration: str) -> timedelta:
    """An ISO 8601 duration as the coordinator typed it (P7D, PT48H), or a one-line error."""
    if not duration.upper().startswith("P"):
        raise OperationError(f"{duration!r} is not an ISO 8601 duration such as P7D")
    try:
        return TypeAdapter(timedelta).validate_python(duration)
    except ValidationError as exc:
        raise OperationError(f"{duration!r}: {_first_error(exc)} (write an ISO 8601 duration such as P7D)") from None


async def resend(
    client: Client, proposal_id: str, state: str | None, deadline: str | None = None, delegate: str | None = None
) -> ResendReceipt:
    """Invite one state of the open round again, after its delegates were put on the roster (or only `delegate`)."""
    if delegate is not None:
        delegate = delegate.strip()
        prefix = delegate.partition("-")[0]
        if not delegate or "-" not in delegate:
            raise OperationError(
                f"{delegate!r} is not a delegate id such as TL-1a2b3c4d5e6f7a8b (aisafe roster show --json lists them)"
            )
        if state is not None and state.strip().upper() != prefix:
            raise OperationError(f"delegate {delegate} speaks for {prefix}, not for {state.strip().upper()}")
        state = prefix
    if state is None:
        raise OperationError("name the state with --state XX, or one delegate with --delegate ID")
    try:
        member = MemberState(state.strip().upper())
    except ValueError:
        raise OperationError(f"{state!r} is not a member state code such as TL") from None
    try:
        request = ResendInput(
            state=member, deadline=_duration(deadline) if deadline is not None else None, delegate_id=delegate
        )
    except ValidationError as exc:
        raise OperationError(f"{deadline!r}: {_first_error(exc)}") from None
    current = await status(client, proposal_id)
    if not current.round_workflow_id:
        raise OperationError(f"{proposal_id} has no open round (it is in stage {current.stage})")
    return await _update(client, current.round_workflow_id, "resend", request, ResendReceipt)


async def extend(client: Client, proposal_id: str, duration: str) -> datetime:
    try:
        by = TypeAdapter(timedelta).validate_python(duration)
        request = ExtendInput(by=by)
    except ValidationError as exc:
        raise OperationError(f"{duration!r}: {_first_error(exc)} (write an ISO 8601 duration such as P7D)") from None
    if not duration.upper().startswith("P"):
        raise OperationError(f"{duration!r} is not an ISO 8601 duration such as P7D")
    child = await _open_child(client, proposal_id, ".consultation-", "consultation")
    return await _update(client, child, "extend", request, datetime)


async def extend_open(
    client: Client, proposal_id: str, duration: str
) -> tuple[str, datetime, RoundControlReceipt | None]:
    """Extend whichever is open: the consultation (as `extend` did) or the open round; says which, and to when."""
    by = _duration(duration)
    try:
        request = ExtendInput(by=by)
    except ValidationError as exc:
        raise OperationError(f"{duration!r}: {_first_error(exc)} (write an ISO 8601 duration such as P7D)") from None
    current = await status(client, proposal_id)
    child = current.stage_workflow_id
    if child and ".consultation-" in child:
        return "consultation", await _update(client, child, "extend", request, datetime), None
    if not current.round_workflow_id:
        raise OperationError(f"{proposal_id} has no open consultation or round (it is in stage {current.stage})")
    receipt = await _update(client, current.round_workflow_id, "extend_round", request, RoundControlReceipt)
    assert receipt.deadline is not None
    return "round", receipt.deadline, receipt


async def silence_procedure(client: Client, proposal_id: str, duration: str) -> RoundControlReceipt:
    """Put the overdue round to its silent states ad referendum: unless they object within `duration`, they concur."""
    by = _duration(duration)
    try:
        request = SilenceProcedureInput(duration=by)
    except ValidationError as exc:
        raise OperationError(f"{duration!r}: {_first_error(exc)} (write an ISO 8601 duration such as P14D)") from None
    return await _update(
        client, await _open_round(client, proposal_id), "silence_procedure", request, RoundControlReceipt
    )


async def close_round(client: Client, proposal_id: str, reason: str | None = None) -> RoundControlReceipt:
    """End the overdue round without consensus; the proposal goes to revision or ends, as its process says."""
    try:
        request = CloseRoundInput(no_consensus=True, reason=reason.strip() or None if reason is not None else None)
    except ValidationError as exc:
        raise OperationError(f"--reason: {_first_error(exc)}") from None
    return await _update(client, await _open_round(client, proposal_id), "close_round", request, RoundControlReceipt)


async def _open_round(client: Client, proposal_id: str) -> str:
    current = await status(client, proposal_id)
    if not current.round_workflow_id:
        raise OperationError(f"{proposal_id} has no open round (it is in stage {current.stage})")
    return current.round_workflow_id


def load_meeting_record(path: Path) -> MeetingRecord:
    """A meeting record file: held_on, venue, summary, positions {STATE: position}, reasons {STATE: text}."""
    data, source = load_yaml(path)
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a mapping with positions (and reasons, summary, held_on)")
    try:
        return MeetingRecord.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(format_validation_error(path, exc, source)) from None


async def record_meeting(client: Client, proposal_id: str, source: Path | MeetingRecord) -> MeetingRecord:
    """Record the open meeting: a record built from the command's options, or a record file (either form)."""
    record = source if isinstance(source, MeetingRecord) else load_meeting_record(source)
    child = await _open_child(client, proposal_id, ".meeting-", "meeting awaiting its record")
    return await _update(client, child, "record_meeting", record, MeetingRecord)


def member_states(text: str, what: str) -> list[MemberState]:
    """`BN,KH,MY` as member states, in the order given, or a one-line error naming what is wrong."""
    codes = [code.strip().upper() for code in text.split(",") if code.strip()]
    if not codes:
        raise OperationError(f"{what}: name at least one member state, e.g. BN,KH,MY")
    states = []
    for code in codes:
        try:
            states.append(MemberState(code))
        except ValueError:
            raise OperationError(f"{what}: {code!r} is not a member state code such as TL") from None
    return states


def meeting_record(
    *,
    present: str,
    decision: str,
    paragraph: str | None,
    paragraph_file: Path | None,
    reservations: list[str],
    held_on: str | None = None,
) -> MeetingRecord:
    """The Meeting's record from `record-meeting`'s options: who was present, the decision, its paragraph and any
    state's reservation (`XX=text`)."""
    try:
        word = MeetingDecision(decision.strip().lower())
    except ValueError:
        choices = ", ".join(d.value for d in MeetingDecision)
        raise OperationError(f"--decision: {decision!r} is not one of {choices}") from None
    if (paragraph is None) == (paragraph_file is None):
        raise OperationError("give the decision paragraph with --paragraph TEXT or --paragraph-file FILE (one of them)")
    if paragraph_file is not None:
        try:
            paragraph = read_document(paragraph_file, MAX_PARAGRAPH * 4).strip()
        except InputFileError as exc:
            raise OperationError(str(exc)) from None
    held: datetime | None = None
    if held_on is not None:
        try:
            held = datetime.fromisoformat(held_on)
        except ValueError:
            raise OperationError(
                f"--held-on: {held_on!r} is not a date and time such as 2027-01-15T09:00:00+08:00"
            ) from None
    reserved: dict[MemberState, str] = {}
    for item in reservations:
        code, sep, text = item.partition("=")
        if not sep or not text.strip():
            raise OperationError(f'--reservation: write STATE="text", e.g. SG="on paragraph 4" (not {item!r})')
        (state,) = member_states(code, "--reservation")
        if state in reserved:
            raise OperationError(f"--reservation: {state.value} is given twice")
        reserved[state] = text.strip()
    try:
        return MeetingRecord(
            present=member_states(present, "--present"),
            decision=word,
            paragraph=paragraph,
            reservations=reserved,
            held_on=held,
        )
    except ValidationError as exc:
        raise OperationError(_first_error(exc).removeprefix("Value error, ")) from None


async def reschedule(client: Client, proposal_id: str, date: str, venue: str | None) -> MeetingStatus:
    """Give the open meeting a new date (and venue): the invitations go again with the calendar entry updated."""
    try:
        when = datetime.fromisoformat(date)
    except ValueError:
        raise OperationError(f"--date: {date!r} is not a date and time such as 2027-02-01T09:00:00+08:00") from None
    if when.tzinfo is None:
        raise OperationError(f"--date: give {date!r} with its UTC offset, e.g. 2027-02-01T09:00:00+08:00")
    try:
        request = RescheduleInput(date=when, venue=one_line(venue) if venue is not None else None)
    except (ValidationError, ValueError) as exc:
        message = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise OperationError(f"--venue: {message}") from None
    child = await _open_child(client, proposal_id, ".meeting-", "meeting")
    return await _update(client, child, "reschedule", request, MeetingStatus)


async def cancel_meeting(client: Client, proposal_id: str, reason: str | None) -> MeetingStatus:
    """Cancel the open meeting's date (METHOD:CANCEL to every invitee); it waits for `reschedule`."""
    try:
        request = CancelMeetingInput(reason=one_line(reason) if reason is not None else None)
    except (ValidationError, ValueError) as exc:
        message = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise OperationError(f"--reason: {message}") from None
    child = await _open_child(client, proposal_id, ".meeting-", "meeting")
    return await _update(client, child, "cancel_meeting", request, MeetingStatus)


async def _open_child(client: Client, proposal_id: str, marker: str, what: str) -> str:
    current = await status(client, proposal_id)
    child = current.stage_workflow_id
    if not child or marker not in child:
        raise OperationError(f"{proposal_id} has no open {what} (it is in stage {current.stage})")
    return child


def _refusal(cause: BaseException | None) -> OperationError:
    """The error a failed Update reaches the user with: the workflow's own refusal, or the activity's within."""
    while isinstance(cause, ActivityError):  # a handler's activity failed: what the activity said counts
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        kind = LedgerRefused if cause.type == LEDGER_INTEGRITY else OperationError
        return kind(cause.message)
    return OperationError(str(cause))


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


async def _update(client: Client, proposal_id: str, name: str, arg: object, result_type: type[T]) -> T:
    handle = client.get_workflow_handle(proposal_id)
    # One update id for every attempt: an Update sent again (see models/update_retry.py) is applied once.
    update_id = str(uuid.uuid4())

    async def send() -> T:
        if arg is None:
            return await handle.execute_update(name, id=update_id, result_type=result_type)
        return await handle.execute_update(name, arg, id=update_id, result_type=result_type)

    try:
        return await retrying(send, for_seconds=RETRY_FOR)
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc.cause) from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise OperationError(f"{proposal_id!r} is not running (unknown, or already closed)") from None
        raise
