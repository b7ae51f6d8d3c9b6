"""`aisafe audit export`: gather a proposal's ledger, histories and documents into a sealed bundle.

The ledger is read before and after the histories are fetched, and the whole is read again if the ledger
grew meanwhile, so a running proposal exports as one consistent moment.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import json_format
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from audit import keys
from audit.bundle import (
    FORMAT,
    LEDGER,
    MANIFEST,
    PROCESS,
    SIGNATURE,
    VERSIONS,
    LedgerLine,
    bundle_files,
    document_file,
    history_file,
    manifest_bytes,
    sha256_file,
)
from audit.history import RUN_SEPARATOR
from models.codec import decode_history
from models.tables import CommentBlob, DocumentBlob, DocumentVersion, LedgerEntry

SNAPSHOT_ATTEMPTS = 5
# comments/<sha256>.txt: each comment body the ledger's `comment` entries name by `text_sha256`.
COMMENTS_DIR = "comments"


class ExportError(Exception):
    """The export cannot be made as asked (unknown proposal, occupied directory): bad input, exit code 2."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    proposal_id: str
    public_key: str
    files: int
    ledger_entries: int
    histories: int
    documents: int


def ledger_lines(engine: Engine, proposal_id: str) -> list[LedgerLine]:
    with Session(engine) as session:
        entries = session.exec(
            select(LedgerEntry).where(LedgerEntry.proposal_id == proposal_id).order_by(LedgerEntry.seq)  # type: ignore[arg-type]
        ).all()
        return [LedgerLine.of(entry) for entry in entries]


async def fetch_histories(client: Client, proposal_id: str) -> dict[str, str]:
    """The history (JSON) of the proposal's workflow and, recursively, of every child it started."""
    histories: dict[str, str] = {}
    waiting = [proposal_id]
    while waiting:
        workflow_id = waiting.pop(0)
        if workflow_id in histories:
            continue
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND and workflow_id == proposal_id:
                raise ExportError(
                    f"Temporal has no history for {proposal_id} (is this the server it ran on, and within the "
                    "namespace's retention?)"
                ) from None
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue  # a child the parent meant to start but the server never did: verify names the gap
            raise
        histories[workflow_id] = await clear_history_json(client, history)
        runs = [history]
        # A workflow that continued as new: its earlier runs too (history/<workflow>@<run>.json), so that every
        # Update and ledger write it made is in the bundle.
        previous = _continued_from(history)
        while previous and f"{workflow_id}{RUN_SEPARATOR}{previous}" not in histories:
            earlier = await client.get_workflow_handle(workflow_id, run_id=previous).fetch_history()
            histories[f"{workflow_id}{RUN_SEPARATOR}{previous}"] = await clear_history_json(client, earlier)
            runs.append(earlier)
            previous = _continued_from(earlier)
        for run in runs:
            for event in run.events:
                if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                    waiting.append(event.start_child_workflow_execution_initiated_event_attributes.workflow_id)
    return histories


def _continued_from(history: WorkflowHistory) -> str:
    first = history.events[0] if history.events else None
    return first.workflow_execution_started_event_attributes.continued_execution_run_id if first else ""


async def clear_history_json(client: Client, history: WorkflowHistory) -> str:
    """The history as JSON with its payloads decoded, so the bundle verifies offline without the codec key."""
    decoded = await decode_history(History(events=history.events), client.data_converter.payload_codec)
    return json_format.MessageToJson(decoded)


async def export_bundle(
    client: Client,
    engine: Engine,
    proposal_id: str,
    out: Path,
    signing_key: str,
    progress: Callable[[str], None] = lambda _: None,
) -> ExportResult:
    key = keys.load_private(signing_key)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty directory; choose a new --out")

    progress("reading the ledger")
    lines = ledger_lines(engine, proposal_id)
    if not lines:
        raise ExportError(f"no proposal {proposal_id!r} in the ledger")
    for _ in range(SNAPSHOT_ATTEMPTS):
        progress("fetching the Temporal histories")
        histories = await fetch_histories(client, proposal_id)
        again = ledger_lines(engine, proposal_id)
        if len(again) == len(lines):
            break
        lines = again  # the proposal moved while we read: read both again
    else:
        raise ExportError(f"{proposal_id} kept changing while it was exported; try again")

    progress("writing the bundle")
    work = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        (work / LEDGER).write_text("".join(line.to_json() + "\n" for line in lines), encoding="utf-8")
        for workflow_id, history in histories.items():
            path = work / history_file(workflow_id)
            path.parent.mkdir(exist_ok=True)
            path.write_text(history + "\n", encoding="utf-8")
        documents = _write_documents(engine, proposal_id, work)
        _write_comment_bodies(engine, lines, work)
        started = lines[0].payload
        (work / PROCESS).write_text(
            json.dumps(started.get("process"), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        public = keys.public_text(key)
        body = {
            "format": FORMAT,
            "proposal_id": proposal_id,
            "title": started.get("title"),
            "kind": started.get("kind"),
            "lead_state": started.get("lead_state"),
            "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "ledger_head": {"seq": lines[-1].seq, "entry_hash": lines[-1].entry_hash},
            "public_key": public,
            "files": {name: sha256_file(work / name) for name in bundle_files(work)},
        }
        raw = manifest_bytes(body)
        (work / MANIFEST).write_bytes(raw)
        (work / SIGNATURE).write_text(keys.sign(key, raw) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(
        path=out,
        proposal_id=proposal_id,
        public_key=public,
        files=len(body["files"]),
        ledger_entries=len(lines),
        histories=len(histories),
        documents=documents,
    )


def _write_documents(engine: Engine, proposal_id: str, root: Path) -> int:
    with Session(engine) as session:
        versions = session.exec(
            select(DocumentVersion).where(DocumentVersion.proposal_id == proposal_id).order_by(DocumentVersion.version)  # type: ignore[arg-type]
        ).all()
        listing = []
        for version in versions:
            path = root / document_file(version.sha256)
            if not path.exists():
                blob = session.get(DocumentBlob, version.sha256)
                if blob is None:
                    continue  # verify will name the version whose text is missing
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(blob.body.encode("utf-8"))
            listing.append({"version": version.version, "filename": version.filename, "sha256": version.sha256})
    (root / VERSIONS).parent.mkdir(exist_ok=True)
    (root / VERSIONS).write_text(json.dumps(listing, indent=2) + "\n", encoding="utf-8")
    return len(listing)


def _write_comment_bodies(engine: Engine, lines: list[LedgerLine], root: Path) -> None:
    """The bodies of the ledger's comments, named by their hash, so an auditor can check each against its entry."""
    hashes = {
        str(line.payload["text_sha256"]) for line in lines if line.kind == "comment" and line.payload.get("text_sha256")
    }
    if not hashes:
        return
    (root / COMMENTS_DIR).mkdir(exist_ok=True)
    with Session(engine) as session:
        for sha256 in sorted(hashes):
            blob = session.get(CommentBlob, sha256)
            if blob is not None:  # a missing body shows as a comment entry without its file
                (root / COMMENTS_DIR / f"{sha256}.txt").write_bytes(blob.body.encode("utf-8"))
