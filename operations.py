"""Coordinator operations against Temporal and the database: the `aisafe` CLI, the demo and tests call these."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.documents import store_document
from models.db import write_session
from models.messages import DocumentRef, ProposalInput, ProposalStatus, RevisionInput, WithdrawInput
from models.process import load_proposal_file, read_document
from models.roster import RosterFile
from models.settings import Settings
from models.tables import DelegateRecord, utcnow
from models.temporal_client import proposal_status

PROPOSAL_WORKFLOW = "ProposalWorkflow"
T = TypeVar("T")


class OperationError(Exception):
    """An operation refused for a reason the user can act on (unknown id, wrong stage...)."""


def import_roster(engine: Engine, roster: RosterFile) -> tuple[int, int, int]:
    """Upsert delegates keyed by state and email; returns (added, updated, unchanged)."""
    added = updated = unchanged = 0
    with write_session(engine) as session:
        for entry in roster.delegates:
            record = session.get(DelegateRecord, entry.delegate_id)
            fields = {"role": entry.role.value, "name": entry.name, "timezone": entry.timezone, "active": True}
            if record is None:
                session.add(DelegateRecord(id=entry.delegate_id, state=entry.state.value, email=entry.email, **fields))
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


def roster(engine: Engine) -> list[DelegateRecord]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(DelegateRecord).where(DelegateRecord.active).order_by(DelegateRecord.state, DelegateRecord.role)
            ).all()
        )


async def propose(client: Client, engine: Engine, settings: Settings, path: Path) -> str:
    """Validate a proposal file, store its document and start its workflow; returns the proposal id."""
    proposal, body = load_proposal_file(path)
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
    ids = [
        execution.id
        async for execution in client.list_workflows(f"WorkflowType = '{PROPOSAL_WORKFLOW}'")
        if execution.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
    ]
    found = await asyncio.gather(*(status(client, i) for i in ids), return_exceptions=True)
    result = [s for s in found if isinstance(s, ProposalStatus)]
    if stage:
        result = [s for s in result if stage in (s.stage, s.status.value)]
    return sorted(result, key=lambda s: s.started_at or utcnow(), reverse=True)


async def revise(client: Client, engine: Engine, proposal_id: str, path: Path) -> DocumentRef:
    body = read_document(path)
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


async def _update(client: Client, proposal_id: str, name: str, arg: object, result_type: type[T]) -> T:
    handle = client.get_workflow_handle(proposal_id)
    try:
        if arg is None:
            return await handle.execute_update(name, result_type=result_type)
        return await handle.execute_update(name, arg, result_type=result_type)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise OperationError(cause.message if isinstance(cause, ApplicationError) else str(cause)) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise OperationError(f"no running proposal with id {proposal_id!r}") from None
        raise
