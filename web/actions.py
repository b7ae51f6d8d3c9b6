"""Action links: GET shows the confirmation page (changes nothing); POST records the state's position."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from models.ledger import as_utc
from models.messages import PositionReceipt, PositionSubmission, RoundStatus, StatePosition
from models.positions import Position
from models.tables import DelegateRecord, DocumentBlob, DocumentVersion, LedgerEntry, ProposalRecord
from models.timefmt import both, in_utc
from models.tokens import ActionClaims, TokenError, check_csrf, csrf_token, decision_id, verify_action
from web.app import error_page, templates
from web.rendering import markdown_to_html

router = APIRouter()

# Validator rejections from the round workflow, as the delegate should read them.
_REJECTIONS: dict[str, tuple[int, str, str]] = {
    "RoundClosed": (409, "This review round is closed", "Positions can no longer be stated in this round."),
    "WrongRound": (409, "This link is for another round", "Use the link in the most recent email."),
    "NotParticipant": (403, "Not a participant", "Your state is not a participant in this round."),
    "DocumentMismatch": (
        409,
        "The document has changed",
        "This link is for a version that is no longer under review; use the link in the most recent email.",
    ),
}


@dataclass
class ActionContext:
    token: str
    claims: ActionClaims
    delegate: DelegateRecord
    proposal: ProposalRecord
    document_body: str
    version: int


@router.get("/act/{token}", response_class=HTMLResponse)
async def show_action(request: Request, token: str) -> Response:
    context = await _load(request, token)
    if isinstance(context, Response):
        return context
    client: Client = request.app.state.client
    live = await _round_status(client, context.claims.round_workflow_id)
    if live is None or not live.is_open:
        return _closed_page(request, context)
    return _form_page(request, context, live.positions.get(context.claims.state))


@router.post("/act/{token}", response_class=HTMLResponse)
async def record_action(
    request: Request,
    token: str,
    csrf: str = Form(default=""),
    position: str = Form(default=""),
    reason: str = Form(default="", max_length=4000),
) -> Response:
    context = await _load(request, token)
    if isinstance(context, Response):
        return context
    settings = request.app.state.settings
    nonce = check_csrf(settings.signing_key, token, csrf)
    if nonce is None:
        return error_page(
            request, 403, "Form expired or invalid", "The form could not be verified.", "Open the link again and retry."
        )
    try:
        chosen = Position(position)
    except ValueError:
        return _form_page(request, context, None, error="Choose one of the positions below.", status_code=400)
    try:
        submission = PositionSubmission(
            proposal_id=context.claims.proposal_id,
            round=context.claims.round,
            state=context.claims.state,
            delegate_id=context.delegate.id,
            document_sha256=context.claims.document_sha256,
            position=chosen,
            reason=reason,
        )
    except ValueError:
        return _form_page(
            request, context, None, error=f"A reason is required for “{chosen.label}”.", status_code=400, reason=reason
        )

    update_id = decision_id(token, nonce)
    engine: Engine = request.app.state.engine
    receipt = await asyncio.to_thread(_receipt_from_ledger, engine, context.claims, update_id)
    if receipt is None:
        handle = request.app.state.client.get_workflow_handle(context.claims.round_workflow_id)
        try:
            receipt = await handle.execute_update(
                "submit_position", submission, id=update_id, result_type=PositionReceipt
            )
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            status_code, title, message = _REJECTIONS.get(
                kind or "", (409, "Position not recorded", "The round did not accept this position.")
            )
            return error_page(request, status_code, title, message)
        except RPCError as exc:
            return _rpc_error_page(request, exc, context)
    return _receipt_page(request, context, receipt)


async def _load(request: Request, token: str) -> ActionContext | Response:
    """Verify the link and load what the page shows; a Response is the error page to return instead."""
    settings = request.app.state.settings
    try:
        claims = verify_action(settings.signing_key, token)
    except TokenError as exc:
        if exc.expired:
            return error_page(request, 410, "Link expired", exc.reason, "Contact the ASEAN AI SAFE secretariat.")
        return error_page(request, 400, "Invalid link", exc.reason, "Use the link exactly as it appears in the email.")
    loaded = await asyncio.to_thread(_load_records, request.app.state.engine, claims)
    if loaded is None:
        return error_page(
            request, 404, "Unknown proposal", "This link refers to a proposal or document we do not hold."
        )
    delegate, proposal, body, version = loaded
    if delegate is None or not delegate.active or delegate.state != claims.state.value:
        return error_page(
            request,
            403,
            "Delegate not on the roster",
            "This link was issued to a delegate who is no longer on the roster for this state.",
            "Contact your state's focal point or the secretariat.",
        )
    return ActionContext(token, claims, delegate, proposal, body, version)


def _load_records(
    engine: Engine, claims: ActionClaims
) -> tuple[DelegateRecord | None, ProposalRecord, str, int] | None:
    with Session(engine) as session:
        proposal = session.get(ProposalRecord, claims.proposal_id)
        blob = session.get(DocumentBlob, claims.document_sha256)
        version = session.exec(
            select(DocumentVersion.version).where(
                DocumentVersion.proposal_id == claims.proposal_id, DocumentVersion.sha256 == claims.document_sha256
            )
        ).first()
        if proposal is None or blob is None or version is None:
            return None
        return session.get(DelegateRecord, claims.delegate_id), proposal, blob.body, version


def _receipt_from_ledger(engine: Engine, claims: ActionClaims, update_id: str) -> PositionReceipt | None:
    """A receipt already in the ledger for this very form: a repeated POST gets the same receipt."""
    key = f"{claims.round_workflow_id}:position:{update_id}"
    with Session(engine) as session:
        entry = session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == key)).first()
    if entry is None:
        return None
    payload = json.loads(entry.payload_json)
    return PositionReceipt(
        decision_id=update_id,
        proposal_id=claims.proposal_id,
        round=claims.round,
        state=claims.state,
        position=Position(payload["position"]),
        ledger_seq=entry.seq,
        ledger_entry_hash=entry.entry_hash,
        recorded_at=as_utc(entry.recorded_at),
    )


async def _round_status(client: Client, workflow_id: str) -> RoundStatus | None:
    """The open round's live status, or None when the round is over (or unknown)."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
            return None
        return await handle.query("status", result_type=RoundStatus)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _rpc_error_page(request: Request, exc: RPCError, context: ActionContext) -> Response:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return _closed_page(request, context)
    return error_page(
        request,
        503,
        "Service temporarily unavailable",
        "Your position was not recorded because the governance engine did not answer.",
        "Please try again in a few minutes using the same link.",
    )


def _page_context(context: ActionContext) -> dict[str, object]:
    deadline = context.claims.expires_at
    return {
        "token": context.token,
        "proposal": context.proposal,
        "claims": context.claims,
        "delegate": context.delegate,
        "state_name": context.claims.state.official_name,
        "version": context.version,
        "deadline_local": both(deadline, context.delegate.timezone),
        "deadline_utc": in_utc(deadline),
    }


def _form_page(
    request: Request,
    context: ActionContext,
    current: StatePosition | None,
    *,
    error: str | None = None,
    status_code: int = 200,
    reason: str = "",
) -> Response:
    settings = request.app.state.settings
    page = _page_context(context) | {
        "document_html": markdown_to_html(context.document_body),
        "positions": list(Position),
        "csrf": csrf_token(settings.signing_key, context.token),
        "current": current,
        "current_at": both(current.recorded_at, context.delegate.timezone) if current else None,
        "error": error,
        "reason": reason,
    }
    return templates.TemplateResponse(request, "action.html", page, status_code=status_code)


def _closed_page(request: Request, context: ActionContext) -> Response:
    return templates.TemplateResponse(request, "closed.html", _page_context(context), status_code=410)


def _receipt_page(request: Request, context: ActionContext, receipt: PositionReceipt) -> Response:
    page = _page_context(context) | {
        "receipt": receipt,
        "recorded_local": both(receipt.recorded_at.astimezone(UTC), context.delegate.timezone),
        "now": datetime.now(UTC),
    }
    return templates.TemplateResponse(request, "receipt.html", page)
