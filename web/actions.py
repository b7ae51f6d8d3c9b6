"""Action links: GET shows the confirmation page (changes nothing); POST records the state's answer.

One page serves every kind of round, read from the live round status: a WG-AI review (with the changes
from the previous version), an ADGSOM/ADGMIN ad referendum (silence procedure) and a funding confirmation.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from models.labels import DECIDING_BODIES, STAGE_BODY_NAMES, money
from models.ledger import as_utc
from models.messages import (
    ROUND_ANSWERS,
    FundingStep,
    FundingTerms,
    PositionReceipt,
    PositionSignal,
    PositionSubmission,
    RoundPurpose,
    RoundStatus,
)
from models.positions import Position
from models.process import FundingModel, StageType
from models.tables import DelegateRecord, LedgerEntry, ProposalRecord
from models.timefmt import both, in_utc
from models.tokens import ActionClaims, TokenError, check_csrf, csrf_token, decision_id, verify_action
from web.document_cache import rendered_diff, rendered_document
from web.pages import (
    document_version_number,
    error_page,
    form_expired_page,
    ledger_entries,
    ledger_entry,
    live_status,
    rejection_type,
    templates,
    token_error_page,
    unavailable_page,
)
from web.ratelimit import RateLimitedRoute
from web.rendering import AmountError, parse_amount

router = APIRouter(route_class=RateLimitedRoute)

NOT_RECORDED = "Your answer was not recorded"
NO_CHOICE = "Nothing was recorded: choose one of the answers below, then press the button to send it."

# Validator rejections from the round workflow that no re-shown form can fix, as the delegate should read them.
_REJECTIONS: dict[str, tuple[int, str, str]] = {
    "RoundClosed": (409, "This round is closed", "Answers can no longer be given in this round."),
    "WrongRound": (409, "This link is for another round", "Use the link in the most recent email."),
    "NotParticipant": (403, "Not a participant", "Your state is not a participant in this round."),
    "NotInvited": (403, "Not invited", "This round did not invite you to answer for your state."),
    "DeadlinePassed": (409, "The deadline has passed", "The deadline for your state's answer has passed."),
    "DocumentMismatch": (
        409,
        "The document has changed",
        "This link is for a version that is no longer under review; use the link in the most recent email.",
    ),
}

REASON_LABELS = {
    RoundPurpose.REVIEW: "Reason or comment (required for a reservation, a change request or an objection)",
    RoundPurpose.AD_REFERENDUM: "Reason or comment (required for a reservation or an objection)",
    RoundPurpose.FUNDING: "Comment (optional)",
}
SUBMIT_LABELS = {
    RoundPurpose.REVIEW: "Record this position",
    RoundPurpose.AD_REFERENDUM: "Send this answer",
    RoundPurpose.FUNDING: "Send this answer",
}
RECEIPT_TITLES = {
    RoundPurpose.REVIEW: "Position recorded",
    RoundPurpose.AD_REFERENDUM: "Answer recorded",
    RoundPurpose.FUNDING: "Answer recorded",
}


@dataclass(frozen=True)
class RoundOpening:
    """What the ledger recorded when the round opened: enough to word a receipt or a closed page."""

    purpose: RoundPurpose
    stage_type: StageType
    funding: FundingTerms | None


@dataclass
class ActionContext:
    """The link's claims and the records behind it, read in one database visit.

    An answer (POST) also reads, in the same visit, the round's opening and whether this very form was
    recorded before; the document's text is read only by the pages that show it.
    """

    token: str
    claims: ActionClaims
    delegate: DelegateRecord
    proposal: ProposalRecord
    version: int
    opening: RoundOpening | None = None
    recorded: tuple[PositionReceipt, Decimal | None] | None = None


@router.get("/act/{token}", response_class=HTMLResponse)
async def show_action(request: Request, token: str) -> Response:
    context = await _load(request, token)
    if isinstance(context, Response):
        return context
    client: Client = request.app.state.client
    try:
        live = await live_status(client, context.claims.round_workflow_id, RoundStatus)
    except RPCError:
        return unavailable_page(request, "This page could not be shown")
    if live is None or not live.is_open:
        return await _closed_page(request, context)
    if context.claims.state not in live.participants:
        status_code, title, message = _REJECTIONS["NotParticipant"]
        return error_page(request, status_code, title, message)
    if live.document.sha256 != context.claims.document_sha256:
        return error_page(request, *_REJECTIONS["DocumentMismatch"])
    return await _form_page(request, context, live)


@router.post("/act/{token}", response_class=HTMLResponse)
async def record_action(
    request: Request,
    token: str,
    csrf: str = Form(default=""),
    position: str = Form(default=""),
    reason: str = Form(default="", max_length=4000),
    amount: str = Form(default=""),
) -> Response:
    settings = request.app.state.settings
    nonce = check_csrf(settings.signing_keys, token, csrf)
    if nonce is None:
        # A form that was never ours or has expired; a bad link still gets its own page from _load.
        context = await _load(request, token)
        return context if isinstance(context, Response) else form_expired_page(request)
    update_id = decision_id(token, nonce)
    context = await _load(request, token, answering=update_id)
    if isinstance(context, Response):
        return context
    # This very form was recorded before (a double click, a retried request, or after the round closed).
    if context.recorded is not None:
        return _receipt_page(request, context, *context.recorded)

    async def again(error: str, keep_choice: bool = True) -> Response:
        checked = position if keep_choice else ""
        return await _reshow(request, context, error, reason=reason, amount=amount, checked=checked)

    # No default and no guess: a form sent without a deliberate choice (a mail scanner pressing the only button,
    # or a value this page never offered) records nothing and is shown again.
    try:
        chosen = Position(position)
    except ValueError:
        return await again(NO_CHOICE, keep_choice=False)
    pledged: Decimal | None = None
    if chosen in (Position.CONFIRM, Position.INDICATE):
        try:
            pledged = parse_amount(amount)
        except AmountError as exc:
            return await again(str(exc))
    try:
        submission = PositionSubmission(
            proposal_id=context.claims.proposal_id,
            round=context.claims.round,
            state=context.claims.state,
            delegate_id=context.delegate.id,
            document_sha256=context.claims.document_sha256,
            position=chosen,
            reason=reason,
            amount=pledged,
        )
    except ValueError:
        return await again(f"A reason is required for “{chosen.label}”.")

    handle = request.app.state.client.get_workflow_handle(context.claims.round_workflow_id)
    try:
        receipt = await _submit(handle, submission, update_id, settings.accept_timeout)
        if receipt is None:
            return await _received_page(request, context, chosen, update_id)
    except WorkflowUpdateFailedError as exc:
        kind = rejection_type(exc)
        state_name = context.claims.state.official_name
        if kind == "PositionNotAllowed":
            return await again(
                f"“{chosen.label}” is not an answer this round takes; choose one of the answers below.",
                keep_choice=False,
            )
        if kind == "AmountRequired":
            doing = "indicating it" if chosen is Position.INDICATE else "confirming"
            return await again(f"Enter the amount {state_name} pledges (above zero) before {doing}.")
        status_code, title, message = _REJECTIONS.get(
            kind, (409, "Answer not recorded", "The round did not accept this answer.")
        )
        return error_page(request, status_code, title, message)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return await _closed_page(request, context)
        return unavailable_page(request, NOT_RECORDED)
    return _receipt_page(request, context, receipt, receipt.amount)


async def _submit(
    handle: WorkflowHandle[Any, Any], submission: PositionSubmission, decision: str, within: float
) -> PositionReceipt | None:
    """Record the position through the Update, in one call that waits for the receipt; None when it is safely
    queued but not yet recorded.

    If the receipt does not come within `within` seconds (no worker running, or one that cannot reach the
    database), the same decision also goes as a Signal, which the server keeps durably. The round records a
    decision once, under its id, whichever of the two arrives first; a Signal for an Update it already
    accepted changes nothing.
    """
    try:
        return await asyncio.wait_for(
            handle.execute_update("submit_position", submission, id=decision, result_type=PositionReceipt),
            timeout=within,
        )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        await handle.signal("submit_position_signal", PositionSignal(decision_id=decision, submission=submission))
        return None


async def _received_page(request: Request, context: ActionContext, chosen: Position, decision: str) -> Response:
    opening = context.opening or await asyncio.to_thread(_round_opening, request.app.state.engine, context.claims)
    page = _page_context(context, opening.purpose, opening.stage_type) | {"position": chosen, "decision_id": decision}
    return templates.TemplateResponse(request, "received.html", page, status_code=202)


async def _load(request: Request, token: str, *, answering: str | None = None) -> ActionContext | Response:
    """Verify the link and load what the page shows; a Response is the error page to return instead.

    `answering` is the decision id of a submitted form: the round's opening and any answer already
    recorded under that id are read in the same visit.
    """
    settings = request.app.state.settings
    try:
        claims = verify_action(settings.signing_keys, token)
    except TokenError as exc:
        return token_error_page(request, exc)
    loaded = await asyncio.to_thread(_load_records, request.app.state.engine, claims, answering)
    if loaded is None:
        return error_page(
            request, 404, "Unknown proposal", "This link refers to a proposal or document we do not hold."
        )
    delegate, proposal, version, opening, recorded = loaded
    if delegate is None or not delegate.active or delegate.state != claims.state.value:
        return error_page(
            request,
            403,
            "Delegate not on the roster",
            "This link was issued to a delegate who is no longer on the roster for this state.",
            "Contact your state's focal point or the secretariat.",
        )
    return ActionContext(token, claims, delegate, proposal, version, opening, recorded)


def _load_records(
    engine: Engine, claims: ActionClaims, answering: str | None
) -> (
    tuple[
        DelegateRecord | None,
        ProposalRecord,
        int,
        RoundOpening | None,
        tuple[PositionReceipt, Decimal | None] | None,
    ]
    | None
):
    with Session(engine) as session:
        proposal = session.get(ProposalRecord, claims.proposal_id)
        version = document_version_number(session, claims.proposal_id, claims.document_sha256)
        if proposal is None or version is None:
            return None
        delegate = session.get(DelegateRecord, claims.delegate_id)
        if answering is None:
            return delegate, proposal, version, None, None
        opened, recorded = ledger_entries(
            session, f"{claims.round_workflow_id}:opened", f"{claims.round_workflow_id}:position:{answering}"
        )
        return delegate, proposal, version, _opening(opened), _answer(claims, answering, recorded)


def _answer(
    claims: ActionClaims, update_id: str, entry: LedgerEntry | None
) -> tuple[PositionReceipt, Decimal | None] | None:
    """The receipt (and committed amount) already in the ledger for this very form, if any."""
    if entry is None:
        return None
    payload = json.loads(entry.payload_json)
    receipt = PositionReceipt(
        decision_id=update_id,
        proposal_id=claims.proposal_id,
        round=claims.round,
        state=claims.state,
        position=Position(payload["position"]),
        ledger_seq=entry.seq,
        ledger_entry_hash=entry.entry_hash,
        recorded_at=as_utc(entry.recorded_at),
    )
    amount = payload.get("amount")
    return receipt, Decimal(amount) if amount is not None else None


def _round_opening(engine: Engine, claims: ActionClaims) -> RoundOpening:
    with Session(engine) as session:
        return _opening(ledger_entry(session, f"{claims.round_workflow_id}:opened"))


def _opening(entry: LedgerEntry | None) -> RoundOpening:
    payload = json.loads(entry.payload_json) if entry is not None else {}
    funding = payload.get("funding")
    return RoundOpening(
        purpose=RoundPurpose(payload.get("purpose", RoundPurpose.REVIEW)),
        stage_type=StageType(payload.get("stage", StageType.MEMBER_REVIEW)),
        funding=FundingTerms.model_validate(funding) if funding else None,
    )


def _page_context(context: ActionContext, purpose: RoundPurpose, stage_type: StageType) -> dict[str, object]:
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
        "purpose": purpose.value,
        "stage_type": stage_type.value,
        "decision_body": f"the {STAGE_BODY_NAMES[stage_type]}"
        if stage_type in DECIDING_BODIES
        else "the member states",
    }


async def _form_page(
    request: Request,
    context: ActionContext,
    live: RoundStatus,
    *,
    error: str | None = None,
    status_code: int = 200,
    reason: str = "",
    amount: str = "",
    checked: str = "",
) -> Response:
    settings = request.app.state.settings
    state = context.claims.state
    current = live.positions.get(state)
    funding = live.funding
    engine: Engine = request.app.state.engine
    sha256 = context.claims.document_sha256
    # Rendered once per version, in a worker thread: a large document never stalls the other requests.
    document_html = await rendered_document(engine, sha256)
    previous = live.previous_document
    changes = None
    if previous is not None and previous.sha256 != sha256:
        changes = await rendered_diff(engine, previous.sha256, previous.version, sha256, context.version)
    expected = funding.expected.get(state) if funding else None
    # A state under a silence procedure (an overdue round's, for the silent states only) concurs or objects.
    purpose = RoundPurpose.AD_REFERENDUM if state in live.silence_procedure else live.purpose
    allowed = ROUND_ANSWERS[purpose] if state in live.silence_procedure else live.allowed
    page = _page_context(context, purpose, live.stage_type) | {
        "document_html": document_html,
        "positions": allowed or ROUND_ANSWERS[live.purpose],
        "reason_label": REASON_LABELS[purpose],
        "csrf": csrf_token(settings.signing_keys, context.token),
        "current": current,
        "current_at": both(current.recorded_at, context.delegate.timezone) if current else None,
        "current_amount": money(current.amount, funding.currency) if current and current.amount and funding else None,
        "previous": previous,
        "changes": changes,
        "funding": funding,
        "voluntary": funding is not None and funding.model is FundingModel.VOLUNTARY,
        "expected": money(expected, funding.currency) if funding and expected is not None else None,
        **_flexible_answers(live),
        "budget_target": money(funding.budget_target, funding.currency) if funding else None,
        "error": error,
        "reason": reason,
        "amount": amount,
        "checked": checked,
        "submit_label": SUBMIT_LABELS[purpose],
        "silence_procedure": state in live.silence_procedure and live.purpose is not RoundPurpose.AD_REFERENDUM,
    }
    return templates.TemplateResponse(request, "action.html", page, status_code=status_code)


def _flexible_answers(live: RoundStatus) -> dict[str, object]:
    """What the page says about a minus-X round's answers and a funding round's step."""
    step = live.funding.step if live.funding else None
    return {
        "minus_x": Position.PARTICIPATE in live.allowed,
        "funding_step": step.value if step else None,
        # A minister's office confirms the amount indicated; it does not enter one.
        "voluntary": live.funding is not None
        and live.funding.model is FundingModel.VOLUNTARY
        and step is not FundingStep.CONFIRMATION,
    }


def _receipt_title(position: Position, amount: Decimal | None) -> str | None:
    if position is Position.INDICATE:
        return "Contribution indicated, subject to domestic clearance"
    return "Contribution confirmed" if amount is not None else None


async def _reshow(
    request: Request, context: ActionContext, error: str, *, reason: str, amount: str, checked: str
) -> Response:
    """The form again with what the delegate typed and chose, and why it was not taken (400)."""
    try:
        live = await live_status(request.app.state.client, context.claims.round_workflow_id, RoundStatus)
    except RPCError:
        return error_page(request, 400, "Answer not recorded", error, "Open the link again and retry.")
    if live is None or not live.is_open:
        return await _closed_page(request, context)
    return await _form_page(
        request, context, live, error=error, status_code=400, reason=reason, amount=amount, checked=checked
    )


async def _closed_page(request: Request, context: ActionContext) -> Response:
    opening = await asyncio.to_thread(_round_opening, request.app.state.engine, context.claims)
    page = _page_context(context, opening.purpose, opening.stage_type)
    return templates.TemplateResponse(request, "closed.html", page, status_code=410)


def _receipt_page(
    request: Request, context: ActionContext, receipt: PositionReceipt, amount: Decimal | None
) -> Response:
    opening = context.opening
    assert opening is not None, "an answer's context is loaded with the round's opening"
    currency = opening.funding.currency if opening.funding else ""
    page = _page_context(context, opening.purpose, opening.stage_type) | {
        "receipt": receipt,
        "title": _receipt_title(receipt.position, amount) or RECEIPT_TITLES[opening.purpose],
        "amount": money(amount, currency).strip() if amount is not None else None,
        "recorded_local": both(receipt.recorded_at.astimezone(UTC), context.delegate.timezone),
        "now": datetime.now(UTC),
    }
    return templates.TemplateResponse(request, "receipt.html", page)
