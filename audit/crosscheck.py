"""Ledger against history, decision by decision: the two independent records must tell the same story.

Every position, comment, disposition and meeting record in the ledger must be an Update the workflow
accepted (its history says so, with the same content), and every such Update that completed must be in
the ledger. Used by `aisafe audit verify` and the auditor's web pages alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from audit.bundle import LEDGER, LedgerLine, history_file
from audit.history import AcceptedUpdate, WorkflowRecord


@dataclass(frozen=True)
class Finding:
    """One thing that does not hold: where (file, entry, field) and what."""

    file: str
    entry: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file} [{self.entry}] {self.field}: {self.message}"


@dataclass(frozen=True)
class DecisionKind:
    """A kind of decision: the Update that makes it, the ledger entry that records it, what both must agree on."""

    update: str
    ledger_kind: str
    tag: str
    fields: tuple[str, ...]
    keyed_by_update: bool = True  # key `{workflow}:{tag}:{update id}`; else the workflow's one `{workflow}:{tag}`


DECISIONS = (
    DecisionKind(
        "submit_position",
        "position",
        "position",
        ("proposal_id", "round", "state", "delegate_id", "document_sha256", "position", "reason"),
    ),
    DecisionKind(
        "submit_comment",
        "comment",
        "comment",
        ("proposal_id", "stage_index", "stakeholder_id", "sector", "document_sha256", "text", "section"),
    ),
    DecisionKind("respond", "disposition", "disposition", ("comment_id", "disposition", "reason")),
    DecisionKind("record_meeting", "meeting_recorded", "recorded", ("positions", "reasons", "summary"), False),
)
BY_LEDGER_KIND = {d.ledger_kind: d for d in DECISIONS}
# Positions may also arrive as a Signal (the web's fallback when no worker accepted the Update in time),
# carrying the same decision id; a Signal the round refused is recorded as `position_refused`.
POSITION_SIGNAL = "submit_position_signal"
REFUSED = "position_refused"
BY_UPDATE = {d.update: d for d in DECISIONS}


@dataclass
class CrossCheck:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    decisions_matched: int = 0


def cross_check(ledger: list[LedgerLine], workflows: dict[str, WorkflowRecord]) -> CrossCheck:
    result = CrossCheck()
    recorded: set[tuple[str, str]] = set()  # (workflow id, update id or tag) the ledger vouches for

    for line in ledger:
        kind = BY_LEDGER_KIND.get(line.kind)
        if kind is None:
            continue
        where = f"seq {line.seq}"
        parts = line.idempotency_key.split(":")
        if len(parts) != (3 if kind.keyed_by_update else 2) or parts[1] != kind.tag:
            result.findings.append(Finding(LEDGER, where, "idempotency_key", f"not a {line.kind} key"))
            continue
        workflow_id = parts[0]
        record = workflows.get(workflow_id)
        if record is None:
            result.findings.append(
                Finding(LEDGER, where, "idempotency_key", f"names workflow {workflow_id}, whose history is missing")
            )
            continue
        if kind.keyed_by_update:
            update = record.updates.get(parts[2])
            if (update is None or update.name != kind.update) and kind.update == "submit_position":
                update = _signalled(record, parts[2])
            if update is None or update.name != kind.update:
                result.findings.append(
                    Finding(
                        LEDGER,
                        where,
                        "idempotency_key",
                        f"{line.kind} {parts[2]} is in the ledger but {history_file(workflow_id)} shows no "
                        f"accepted {kind.update} update with that id",
                    )
                )
                continue
            recorded.add((workflow_id, update.update_id))
        else:
            done = [u for u in record.updates.values() if u.name == kind.update and u.completed and not u.failed]
            if len(done) != 1:
                result.findings.append(
                    Finding(
                        LEDGER,
                        where,
                        "idempotency_key",
                        f"{line.kind} is in the ledger but {history_file(workflow_id)} shows "
                        f"{len(done)} completed {kind.update} updates, not one",
                    )
                )
                continue
            update = done[0]
            recorded.add((workflow_id, kind.tag))
        submitted = update.args[0] if update.args and isinstance(update.args[0], dict) else {}
        mismatches = list(_differences(kind.fields, line.payload, submitted))
        for name, ours, theirs in mismatches:
            result.findings.append(
                Finding(LEDGER, where, f"payload.{name}", f"the ledger says {ours!r}, the history says {theirs!r}")
            )
        if not mismatches:
            result.decisions_matched += 1

    refused = {line.idempotency_key for line in ledger if line.kind == REFUSED}
    for workflow_id, record in sorted(workflows.items()):
        for name, args, event_id in record.signals:
            decision = (
                args[0].get("decision_id") if name == POSITION_SIGNAL and args and isinstance(args[0], dict) else None
            )
            if decision is None:
                continue
            if (workflow_id, decision) in recorded or f"{workflow_id}:refused:{decision}" in refused:
                continue
            if not record.closed:
                result.notes.append(f"{POSITION_SIGNAL} {decision} in {workflow_id} was not yet recorded at export")
                continue
            result.findings.append(
                Finding(
                    history_file(workflow_id),
                    f"event {event_id}",
                    "signal",
                    f"{POSITION_SIGNAL} {decision} was received but is neither recorded nor refused in the ledger",
                )
            )
        for update in record.updates.values():
            kind = BY_UPDATE.get(update.name)
            if kind is None:
                continue
            key = (workflow_id, update.update_id if kind.keyed_by_update else kind.tag)
            if not update.completed:
                if record.closed:
                    result.findings.append(
                        Finding(
                            history_file(workflow_id),
                            f"event {update.event_id}",
                            "update",
                            f"{update.name} {update.update_id} was accepted but never completed",
                        )
                    )
                else:
                    result.notes.append(
                        f"{update.name} {update.update_id} in {workflow_id} was still in progress at export"
                    )
                continue
            if update.failed or key in recorded:
                continue
            result.findings.append(
                Finding(
                    history_file(workflow_id),
                    f"event {update.event_id}",
                    "update",
                    f"{update.name} {update.update_id} was accepted and completed but is not in the ledger",
                )
            )
    return result


def _differences(
    names: Iterable[str], ledger_payload: dict[str, Any], submitted: dict[str, Any]
) -> Iterable[tuple[str, Any, Any]]:
    for name in names:
        ours, theirs = ledger_payload.get(name), submitted.get(name)
        if ours != theirs:
            yield name, ours, theirs


def _signalled(record: WorkflowRecord, decision_id: str) -> AcceptedUpdate | None:
    """A position Signal with this decision id, seen as the Update it stands in for."""
    for name, args, event_id in record.signals:
        if name == POSITION_SIGNAL and args and isinstance(args[0], dict) and args[0].get("decision_id") == decision_id:
            submission = args[0].get("submission")
            return AcceptedUpdate(
                update_id=decision_id,
                name="submit_position",
                args=[submission if isinstance(submission, dict) else {}],
                event_id=event_id,
                completed=True,
            )
    return None
