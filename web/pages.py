"""What the link pages share: templates, error pages, live workflow look-ups and ledger receipts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from models.labels import DISPOSITION_LABELS, SECTOR_LABELS, money
from models.tables import DocumentBlob, DocumentVersion, LedgerEntry
from models.tokens import TokenError
from web.rendering import (
    stage_label,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
# The templates ship with the code: no stat() of each template file on every page.
templates.env.auto_reload = False
templates.env.filters["money"] = money
templates.env.filters["stage_label"] = stage_label
templates.env.globals["DISPOSITION_LABELS"] = DISPOSITION_LABELS
templates.env.globals["SECTOR_LABELS"] = SECTOR_LABELS

_Status = TypeVar("_Status", bound=BaseModel)


def error_page(request: Request, status_code: int, title: str, message: str, advice: str | None = None) -> Response:
    return templates.TemplateResponse(
        request,
        "error.html",
        {"title": title, "message": message, "advice": advice, "status_code": status_code},
        status_code=status_code,
    )


def token_error_page(request: Request, exc: TokenError) -> Response:
    """A link that cannot be honoured: 410 once its deadline has passed, 400 when it is not ours (or its key is
    retired: a forged link looks the same)."""
    if exc.expired:
        return error_page(request, 410, "Link expired", exc.reason, "Contact the ASEAN AI SAFE secretariat.")
    if exc.retired:
        return error_page(
            request, 400, "Link no longer valid", exc.reason, "Contact the ASEAN AI SAFE secretariat if you have none."
        )
    return error_page(request, 400, "Invalid link", exc.reason, "Use the link exactly as it appears in the email.")


def unavailable_page(request: Request, not_recorded: str) -> Response:
    return error_page(
        request,
        503,
        "Service temporarily unavailable",
        f"{not_recorded} because the governance engine did not answer.",
        "Please try again in a few minutes using the same link.",
    )


def form_expired_page(request: Request) -> Response:
    return error_page(
        request, 403, "Form expired or invalid", "The form could not be verified.", "Open the link again and retry."
    )


async def live_status(client: Client, workflow_id: str, result_type: type[_Status]) -> _Status | None:
    """A running workflow's "status" query, or None when it has finished (or never existed).

    Raises RPCError when Temporal does not answer; callers show a 503 page."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
            return None
        return await handle.query("status", result_type=result_type)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def rejection_type(exc: WorkflowUpdateFailedError) -> str:
    """The ApplicationError type a workflow's update validator (or handler) rejected with, or ""."""
    cause = exc.cause
    return (cause.type or "") if isinstance(cause, ApplicationError) else ""


def ledger_entry(session: Session, idempotency_key: str) -> LedgerEntry | None:
    return ledger_entries(session, idempotency_key)[0]


def ledger_entries(session: Session, *idempotency_keys: str) -> list[LedgerEntry | None]:
    """The entries under these keys, in the same order (None for a key not in the ledger), in one query."""
    found = session.exec(
        select(LedgerEntry).where(LedgerEntry.idempotency_key.in_(idempotency_keys))  # type: ignore[attr-defined]
    ).all()
    by_key = {entry.idempotency_key: entry for entry in found}
    return [by_key.get(key) for key in idempotency_keys]


def ledger_payload(engine: Engine, idempotency_key: str) -> dict[str, Any] | None:
    with Session(engine) as session:
        entry = ledger_entry(session, idempotency_key)
    return json.loads(entry.payload_json) if entry is not None else None


def document_version_number(session: Session, proposal_id: str, sha256: str) -> int | None:
    """The version number of a proposal's document with this SHA-256, if it is one of its versions."""
    return session.exec(
        select(DocumentVersion.version).where(
            DocumentVersion.proposal_id == proposal_id, DocumentVersion.sha256 == sha256
        )
    ).first()


def document_version(session: Session, proposal_id: str, sha256: str) -> tuple[str, int] | None:
    """The body and version number of a proposal's stored document version, if it is one of its versions."""
    blob = session.get(DocumentBlob, sha256)
    version = document_version_number(session, proposal_id, sha256)
    if blob is None or version is None:
        return None
    return blob.body, version


def document_body(engine: Engine, sha256: str) -> str | None:
    with Session(engine) as session:
        blob = session.get(DocumentBlob, sha256)
        return blob.body if blob is not None else None
