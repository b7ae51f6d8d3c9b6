"""Auditor pages (read-only): proposals filtered through the search attributes, one proposal's verified
record (timeline and positions matrix), and its sealed bundle to download.

Each proposal page exports and verifies a fresh bundle with the same `audit` library the CLI uses, so what
the page says verified is what an auditor's own `aisafe audit verify` would say of the download.
"""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from temporalio.client import Client, WorkflowExecutionStatus

from audit.bundle import read_ledger
from audit.export import ExportError, export_bundle
from audit.record import build_record
from audit.report import STYLE_HASH, render_report
from audit.verify import Verification, verify_bundle
from models.messages import ProposalState
from models.process import StageType
from models.states import MemberState, in_name_order
from web.headers import CSP
from web.pages import error_page, templates

router = APIRouter(prefix="/audit")
PROPOSAL_WORKFLOW = "ProposalWorkflow"
# Every final status (`adopted` / `not_adopted` remain for proposals closed before the bodies had their own words).
FINAL_STATUSES = tuple(s.value for s in ProposalState if s is not ProposalState.RUNNING)
KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PROPOSAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


class BadFilter(ValueError):
    pass


def listing_query(stage: str, kind: str, lead_state: str, since: str, until: str) -> str:
    """The visibility query for the filters; every value is checked against what it may be, never pasted raw."""
    clauses = [f"WorkflowType = '{PROPOSAL_WORKFLOW}'"]
    if stage:
        if stage not in {s.value for s in StageType} | {"revision", *FINAL_STATUSES}:
            raise BadFilter(f"unknown stage {stage!r}")
        clauses.append(f"AisafeStage = '{stage}'")
    if kind:
        if not KIND.match(kind):
            raise BadFilter(f"a kind is lower-case letters, digits and underscores, not {kind!r}")
        clauses.append(f"AisafeKind = '{kind}'")
    if lead_state:
        if lead_state not in {s.value for s in MemberState}:
            raise BadFilter(f"unknown member state {lead_state!r}")
        clauses.append(f"AisafeLeadState = '{lead_state}'")
    for bound, text, operator in (("from", since, ">="), ("to", until, "<")):
        if text:
            try:
                day = date.fromisoformat(text)
            except ValueError:
                raise BadFilter(f"the {bound} date must look like 2027-01-31, not {text!r}") from None
            if operator == "<":
                day = date.fromordinal(day.toordinal() + 1)  # the whole of the last day
            clauses.append(f"StartTime {operator} '{day.isoformat()}T00:00:00Z'")
    return " AND ".join(clauses)


@router.get("", response_class=HTMLResponse)
async def proposals(
    request: Request, stage: str = "", kind: str = "", lead_state: str = "", since: str = "", until: str = ""
) -> Response:
    filters = {"stage": stage, "kind": kind, "lead_state": lead_state, "since": since, "until": until}
    try:
        query = listing_query(stage, kind, lead_state, since, until)
    except BadFilter as exc:
        return error_page(request, 400, "Bad filter", str(exc), "Correct the filter and search again.")
    client: Client = request.app.state.client
    rows: list[dict[str, Any]] = []
    async for execution in client.list_workflows(query, limit=500):
        attributes = execution.typed_search_attributes
        rows.append(
            {
                "id": execution.id,
                "started": execution.start_time,
                "closed": execution.close_time,
                "running": execution.status == WorkflowExecutionStatus.RUNNING,
                **{
                    pair.key.name: pair.value
                    for pair in attributes
                    if pair.key.name in ("AisafeStage", "AisafeKind", "AisafeLeadState", "AisafeRound")
                },
            }
        )
    return templates.TemplateResponse(
        request,
        "audit_list.html",
        {
            "rows": rows,
            "filters": filters,
            "stages": [s.value for s in StageType] + ["revision", *FINAL_STATUSES],
            "states": in_name_order(MemberState),
        },
    )


async def _sealed(request: Request, proposal_id: str, folder: Path) -> Verification:
    settings = request.app.state.settings
    await export_bundle(
        request.app.state.client, request.app.state.engine, proposal_id, folder, settings.audit_signing_key
    )
    return await asyncio.to_thread(verify_bundle, folder)


def _bad_id(request: Request, proposal_id: str) -> Response | None:
    if PROPOSAL_ID.match(proposal_id):
        return None
    return error_page(request, 404, "Not found", f"There is no proposal {proposal_id!r}.")


@router.get("/{proposal_id}", response_class=HTMLResponse)
async def proposal_record(request: Request, proposal_id: str) -> Response:
    if (bad := _bad_id(request, proposal_id)) is not None:
        return bad
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "bundle"
        try:
            verification = await _sealed(request, proposal_id, folder)
        except ExportError as exc:
            return error_page(request, 404, "Not found", str(exc))
        record = build_record(read_ledger(folder))
    links = {"All proposals": "/audit", "Download the sealed bundle (.zip)": f"/audit/{proposal_id}/bundle.zip"}
    response = HTMLResponse(render_report(record, verification, links=links))
    response.headers["Content-Security-Policy"] = CSP.replace("style-src 'self'", f"style-src '{STYLE_HASH}'")
    return response


@router.get("/{proposal_id}/bundle.zip")
async def proposal_bundle(request: Request, proposal_id: str) -> Response:
    if (bad := _bad_id(request, proposal_id)) is not None:
        return bad
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / proposal_id
        try:
            await _sealed(request, proposal_id, folder)
        except ExportError as exc:
            return error_page(request, 404, "Not found", str(exc))
        data = await asyncio.to_thread(_zip, folder)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{proposal_id}-audit-bundle.zip"'},
    )


def _zip(folder: Path) -> bytes:
    """The bundle as a zip whose top folder is the proposal id; unzipped, it verifies as it is."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()
