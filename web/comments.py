"""Comment links for stakeholders: GET shows the document and a comment form (changes nothing); POST stores the
comment's body under its SHA-256 and sends the hash to the open consultation. Comments are advisory: they are
answered, never counted as votes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.comments import consultation_comments, store_comment_body
from models.ledger import as_utc
from models.messages import Comment, CommentReceipt, CommentSubmission, ConsultationStatus
from models.roster import Role, Sector
from models.tables import CommentBlob, DelegateRecord, ProposalRecord
from models.timefmt import both
from models.tokens import CommentClaims, TokenError, check_csrf, csrf_token, decision_id, verify_comment
from models.update_retry import retrying
from web.document_cache import rendered_document
from web.pages import (
    document_version,
    error_page,
    form_expired_page,
    ledger_entry,
    live_status,
    rejection_type,
    templates,
    token_error_page,
    unavailable_page,
)
from web.ratelimit import RateLimitedRoute
from workflows.consultation import ConsultationWorkflow

router = APIRouter(route_class=RateLimitedRoute)

NOT_RECORDED = "Your comment was not recorded"
MAX_SECTION = 200
# A consultation refuses messages for a moment while it continues as new; the page sends the comment again.
RETRY_FOR = 10.0

_REJECTIONS: dict[str, tuple[int, str, str]] = {
    "WrongConsultation": (409, "This link is for another consultation", "Use the link in the most recent email."),
    "NotInvited": (403, "Not invited", "Your sector is not invited to comment in this consultation."),
    "DocumentMismatch": (
        409,
        "The document has changed",
        "This link is for a version that is no longer under consultation; use the link in the most recent email.",
    ),
}


@dataclass
class CommentContext:
    token: str
    claims: CommentClaims
    stakeholder: DelegateRecord
    sector: Sector
    proposal: ProposalRecord
    document_body: str
    version: int


@router.get("/comment/{token}", response_class=HTMLResponse)
async def show_comment_form(request: Request, token: str) -> Response:
    context = await _load(request, token)
    if isinstance(context, Response):
        return context
    client: Client = request.app.state.client
    try:
        live = await live_status(client, context.claims.consultation_workflow_id, ConsultationStatus)
    except RPCError:
        return unavailable_page(request, "This page could not be shown")
    if live is None or not live.is_open:
        return await _closed_page(request, context, live)
    if live.document.sha256 != context.claims.document_sha256:
        return error_page(request, *_REJECTIONS["DocumentMismatch"])
    return await _form_page(request, context, live)


@router.post("/comment/{token}", response_class=HTMLResponse)
async def submit_comment(
    request: Request,
    token: str,
    csrf: str = Form(default=""),
    text: str = Form(default=""),
    section: str = Form(default=""),
) -> Response:
    context = await _load(request, token)
    if isinstance(context, Response):
        return context
    nonce = check_csrf(request.app.state.settings.signing_keys, token, csrf)
    if nonce is None:
        return form_expired_page(request)
    update_id = decision_id(token, nonce)
    engine: Engine = request.app.state.engine
    # This very form was sent before (a double click, a retried request, or after the window closed).
    recorded = await asyncio.to_thread(_comment_from_ledger, engine, context.claims, update_id)
    if recorded is not None:
        return _receipt_page(request, context, *recorded)

    async def again(error: str, status_code: int = 400) -> Response:
        return await _reshow(request, context, error, text=text, section=section, status_code=status_code)

    settings = request.app.state.settings
    # Browsers send a textarea's line breaks as CRLF; count (and keep) them as the stakeholder typed them.
    comment_text = text.replace("\r\n", "\n").strip()
    if not comment_text:
        return await again("Write your comment before sending it.")
    if len(comment_text) > settings.comment_max_chars:
        return await again(_too_long(settings.comment_max_chars, len(comment_text)), 413)
    if len(section.strip()) > MAX_SECTION:
        return await again(f"The section reference can be at most {MAX_SECTION} characters long.")
    sent = len(await asyncio.to_thread(_own_comments, engine, context))
    if sent >= settings.comments_per_link:
        return await again(_limit_reached(settings.comments_per_link), 429)
    # The body is stored before the consultation hears of it: the workflow, its history and the ledger carry only
    # the hash, and an auditor finds the body under it.
    text_sha256 = await asyncio.to_thread(store_comment_body, engine, comment_text)
    submission = CommentSubmission(
        proposal_id=context.claims.proposal_id,
        stage_index=context.claims.stage_index,
        stakeholder_id=context.stakeholder.id,
        sector=context.sector,
        document_sha256=context.claims.document_sha256,
        text_sha256=text_sha256,
        text_length=len(comment_text),
        section=section.strip() or None,
    )
    handle = request.app.state.client.get_workflow_handle(context.claims.consultation_workflow_id)
    try:
        receipt = await _send(handle, submission, update_id)
    except WorkflowUpdateFailedError as exc:
        kind = rejection_type(exc)
        if kind == "ConsultationClosed":
            return await _closed_page(request, context, await _live_or_none(request, context))
        if kind == "CommentTooLong":
            return await again(_too_long(_limit_in(exc), len(comment_text)), 413)
        if kind == "CommentLimit":
            return await again(_limit_reached(_limit_in(exc)), 429)
        if kind == "Retry":
            return await again("The consultation is busy for a moment. Your comment is below: send it again.", 503)
        status_code, title, message = _REJECTIONS.get(
            kind, (409, "Comment not recorded", "The consultation did not accept this comment.")
        )
        return error_page(request, status_code, title, message)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return await _closed_page(request, context, None)
        return unavailable_page(request, NOT_RECORDED)
    return _receipt_page(request, context, receipt, comment_text, submission.section)


async def _send(handle: WorkflowHandle[Any, Any], submission: CommentSubmission, update_id: str) -> CommentReceipt:
    """Send the comment, again while the consultation or the server asks for that (models/update_retry.py)."""
    return await retrying(
        lambda: handle.execute_update(
            ConsultationWorkflow.submit_comment, submission, id=update_id, result_type=CommentReceipt
        ),
        for_seconds=RETRY_FOR,
    )


def _too_long(limit: int, length: int) -> str:
    return f"A comment can be at most {limit:,} characters long; this one has {length:,}. Shorten it and send it again."


def _limit_reached(limit: int) -> str:
    return (
        f"Each link can send at most {limit} comments to this consultation, and yours has sent {limit}. "
        "Your comment was not recorded; it is below, so you can keep it."
    )


def _limit_in(exc: WorkflowUpdateFailedError) -> int:
    """The limit the workflow named in its refusal (its settings may differ from this web process's)."""
    message = str(getattr(exc.cause, "message", ""))
    numbers = [int(w.replace(",", "")) for w in message.split() if w.replace(",", "").isdigit()]
    return numbers[0] if numbers else 0


async def _load(request: Request, token: str) -> CommentContext | Response:
    """Verify the link and load what the page shows; a Response is the error page to return instead."""
    try:
        claims = verify_comment(request.app.state.settings.signing_keys, token)
    except TokenError as exc:
        return token_error_page(request, exc)
    loaded = await asyncio.to_thread(_load_records, request.app.state.engine, claims)
    stakeholder, sector, records = loaded
    if stakeholder is None or sector is None:
        return error_page(
            request,
            403,
            "Not on the stakeholder list",
            "This link was issued to someone who is no longer invited to comment.",
            "Contact the ASEAN AI SAFE secretariat.",
        )
    if records is None:
        return error_page(
            request, 404, "Unknown proposal", "This link refers to a proposal or document we do not hold."
        )
    proposal, body, version = records
    return CommentContext(token, claims, stakeholder, sector, proposal, body, version)


def _load_records(
    engine: Engine, claims: CommentClaims
) -> tuple[DelegateRecord | None, Sector | None, tuple[ProposalRecord, str, int] | None]:
    with Session(engine) as session:
        stakeholder = session.get(DelegateRecord, claims.stakeholder_id)
        if stakeholder is None or stakeholder.role != Role.STAKEHOLDER or not stakeholder.active:
            return None, None, None
        try:
            sector = Sector(stakeholder.sector or "")
        except ValueError:
            return stakeholder, None, None
        proposal = session.get(ProposalRecord, claims.proposal_id)
        document = document_version(session, claims.proposal_id, claims.document_sha256)
        if proposal is None or document is None:
            return stakeholder, sector, None
        return stakeholder, sector, (proposal, *document)


def _comment_from_ledger(
    engine: Engine, claims: CommentClaims, update_id: str
) -> tuple[CommentReceipt, str, str | None] | None:
    """The receipt (with the comment as sent) already in the ledger for this very form, if any."""
    with Session(engine) as session:
        entry = ledger_entry(session, f"{claims.consultation_workflow_id}:comment:{update_id}")
    if entry is None:
        return None
    payload = json.loads(entry.payload_json)
    text = payload.get("text")
    if text is None and payload.get("text_sha256"):
        with Session(engine) as session:
            blob = session.get(CommentBlob, payload["text_sha256"])
        text = blob.body if blob else ""
    receipt = CommentReceipt(
        comment_id=payload.get("comment_id", update_id),
        proposal_id=claims.proposal_id,
        ledger_seq=entry.seq,
        ledger_entry_hash=entry.entry_hash,
        recorded_at=as_utc(entry.recorded_at),
    )
    return receipt, text or "", payload.get("section")


def _own_comments(engine: Engine, context: CommentContext) -> list[Comment]:
    """This link's comments in the consultation (every run of it), with their bodies, from the ledger."""
    claims = context.claims
    comments = consultation_comments(engine, claims.proposal_id, claims.consultation_workflow_id)
    return [c for c in comments if c.stakeholder_id == context.stakeholder.id]


def _page_context(context: CommentContext) -> dict[str, object]:
    return {
        "token": context.token,
        "proposal": context.proposal,
        "claims": context.claims,
        "stakeholder": context.stakeholder,
        "sector": context.sector.value,
        "version": context.version,
    }


async def _own(request: Request, context: CommentContext) -> list[dict[str, object]]:
    zone = context.stakeholder.timezone
    comments = await asyncio.to_thread(_own_comments, request.app.state.engine, context)
    return [{"comment": c, "submitted": both(c.submitted_at, zone)} for c in comments]


async def _form_page(
    request: Request,
    context: CommentContext,
    live: ConsultationStatus,
    *,
    error: str | None = None,
    status_code: int = 200,
    text: str = "",
    section: str = "",
) -> Response:
    settings = request.app.state.settings
    page = _page_context(context) | {
        # Once per version and off the loop, as on the action page: a large text must not stall other requests.
        "document_html": await rendered_document(request.app.state.engine, context.claims.document_sha256),
        "deadline": both(live.deadline, context.stakeholder.timezone),
        "csrf": csrf_token(settings.signing_keys, context.token),
        "own": await _own(request, context),
        "max_chars": settings.comment_max_chars,
        "per_link": settings.comments_per_link,
        "error": error,
        "text": text,
        "section": section,
    }
    return templates.TemplateResponse(request, "comment.html", page, status_code=status_code)


async def _reshow(
    request: Request, context: CommentContext, error: str, *, text: str, section: str, status_code: int = 400
) -> Response:
    """The form again with what the stakeholder wrote and why it was not taken (a 4xx, or 503 to send again)."""
    try:
        live = await live_status(request.app.state.client, context.claims.consultation_workflow_id, ConsultationStatus)
    except RPCError:
        return error_page(request, status_code, "Comment not recorded", error, "Open the link again and retry.")
    if live is None or not live.is_open:
        return await _closed_page(request, context, live)
    return await _form_page(request, context, live, error=error, status_code=status_code, text=text, section=section)


async def _live_or_none(request: Request, context: CommentContext) -> ConsultationStatus | None:
    """The consultation's status for a page that can do without it."""
    try:
        return await live_status(request.app.state.client, context.claims.consultation_workflow_id, ConsultationStatus)
    except RPCError:
        return None


async def _closed_page(request: Request, context: CommentContext, live: ConsultationStatus | None) -> Response:
    """The closed page; the link's comments come from the ledger, whatever `live` says."""
    page = _page_context(context) | {"own": await _own(request, context)}
    return templates.TemplateResponse(request, "comment_closed.html", page, status_code=410)


def _receipt_page(
    request: Request, context: CommentContext, receipt: CommentReceipt, text: str, section: str | None
) -> Response:
    page = _page_context(context) | {
        "receipt": receipt,
        "text": text,
        "section": section,
        "recorded_local": both(receipt.recorded_at.astimezone(UTC), context.stakeholder.timezone),
    }
    return templates.TemplateResponse(request, "comment_receipt.html", page)
