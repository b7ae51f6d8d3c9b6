"""Ledger against history, entry by entry: the two independent records must tell the same story.

Three ties, each over every kind of entry:
- every ledger write a history holds (the receipt a ledger activity returned: seq and entry hash) is in the
  ledger as such, and, where the history keeps what was asked (regular activities), with that content;
- every Update the workflow completed, and every step the history shows it took, has exactly one entry with the
  same content (audit/expected.py says which);
- every entry is vouched for by one of those: a receipt, an Update, a step or a position Signal.
Used by `aisafe audit verify` and the auditor's web pages alike.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from audit.bundle import LEDGER, LedgerLine, history_file
from audit.expected import MAIL_KINDS, UPDATE_KINDS, Expected, as_time, dig, expectations, short
from audit.history import WorkflowRecord

# Positions may also arrive as a Signal (the web's fallback when no worker accepted the Update in time),
# carrying the same decision id; a Signal the round refused is recorded as `position_refused`.
POSITION_SIGNAL = "submit_position_signal"
REFUSED = "position_refused"
DECISION_KINDS = {"position", "comment", "disposition", "meeting_recorded"}


@dataclass(frozen=True)
class Finding:
    """One thing that does not hold: where (file, entry, field) and what."""

    file: str
    entry: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file} [{self.entry}] {self.field}: {self.message}"


@dataclass
class CrossCheck:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    decisions_matched: int = 0
    entries_vouched: int = 0


def owner(line: LedgerLine) -> str:
    """The workflow that wrote an entry: every key starts with its workflow id."""
    return line.idempotency_key.split(":", 1)[0]


class _Ledger:
    """The ledger indexed the ways the checks look entries up, and which entries something vouched for."""

    def __init__(self, lines: list[LedgerLine]) -> None:
        self.lines = lines
        self.by_key = {line.idempotency_key: line for line in lines}
        self.by_seq = {line.seq: line for line in lines}
        self.owners = {line.seq: owner(line) for line in lines}
        self.of: dict[tuple[str, str], list[LedgerLine]] = defaultdict(list)
        for line in lines:
            self.of[(self.owners[line.seq], line.kind)].append(line)
        self.claimed: dict[int, Expected | str] = {}  # seq: what vouched for it (an expectation or a Signal)
        self.receipted: set[int] = set()


def cross_check(ledger: list[LedgerLine], workflows: dict[str, WorkflowRecord]) -> CrossCheck:
    result = CrossCheck()
    index = _Ledger(ledger)
    _check_receipts(index, workflows, result)
    mail_recorders = {owner(line) for line in ledger if line.kind in MAIL_KINDS}
    for expected in expectations(workflows, mail_recorders):
        _match(expected, index, workflows, result)
    _check_not_invited(index, result)
    _check_signals(index, workflows, result)
    _check_vouched(index, workflows, result)
    return result


# --- receipts -----------------------------------------------------------------------------------------------


def _check_receipts(index: _Ledger, workflows: dict[str, WorkflowRecord], result: CrossCheck) -> None:
    for _, record in sorted(workflows.items()):
        dangling: dict[str, list[str]] = defaultdict(list)  # by history file (a run's own)
        for update in record.updates.values():  # the receipts positions and comments returned to people
            returned = update.result if isinstance(update.result, dict) else {}
            seq, digest = returned.get("ledger_seq"), returned.get("ledger_entry_hash")
            line = index.by_seq.get(seq) if isinstance(seq, int) else None
            if isinstance(seq, int) and (line is None or line.entry_hash != digest):
                dangling[update.file].append(f"event {update.event_id}: seq {seq}, entry_hash {short(digest)}")
        for write in record.writes:
            line = index.by_seq.get(write.seq)
            if line is None or line.entry_hash != write.entry_hash:
                dangling[write.file].append(
                    f"event {write.event_id}: seq {write.seq}, entry_hash {short(write.entry_hash)}"
                )
                continue
            index.receipted.add(line.seq)
            if write.asked is not None:
                differs = _asked_differs(write.asked, line)
                if differs:
                    result.findings.append(
                        Finding(
                            write.file,
                            f"event {write.event_id}",
                            "ledger_write",
                            f"the workflow wrote {write.asked.get('kind')} {write.asked.get('idempotency_key')} "
                            f"but the ledger answered with seq {line.seq}, {differs}",
                        )
                    )
        for file, receipts in sorted(dangling.items()):
            receipts.sort(key=lambda text: int(text.split(":")[0].removeprefix("event ")))
            result.findings.append(
                Finding(
                    file,
                    receipts[0].split(":")[0],
                    "ledger_write",
                    f"{len(receipts)} receipt(s) of ledger writes this history holds are not in the ledger "
                    f"(first: {receipts[0]}): the entry was removed or the chain rebuilt",
                )
            )


def _asked_differs(asked: dict[str, Any], line: LedgerLine) -> str:
    if asked.get("kind") != line.kind or asked.get("idempotency_key") != line.idempotency_key:
        return f"which is {line.kind} {line.idempotency_key}"
    if asked.get("payload") != _payload(line):
        return "which holds another payload: the write was answered with an earlier entry's receipt"
    return ""


# --- what the histories vouch for ---------------------------------------------------------------------------


def _match(expected: Expected, index: _Ledger, workflows: dict[str, WorkflowRecord], result: CrossCheck) -> None:
    if expected.key is not None:
        line = index.by_key.get(expected.key)
        found = [line] if line is not None else []
    elif expected.key_prefix is not None:
        found = [
            line
            for line in index.of[(expected.workflow_id, expected.kind)]
            if line.idempotency_key.startswith(expected.key_prefix)
        ]
    else:
        assert expected.signature is not None
        found = [
            line
            for line in index.of[(expected.workflow_id, expected.kind)]
            if line.seq not in index.claimed and _signature(expected, line) == expected.wanted
        ][:1]
    if not found:
        _missing(expected, workflows, result)
        return
    for line in found:
        where = f"seq {line.seq}"
        if line.kind != expected.kind:
            result.findings.append(
                Finding(
                    LEDGER,
                    where,
                    "kind",
                    f"{line.idempotency_key} is a {line.kind} entry, but {_file(expected)} "
                    f"shows {expected.what}: a {expected.kind}",
                )
            )
            continue
        earlier = index.claimed.get(line.seq)
        if earlier is not None:
            result.findings.append(
                Finding(
                    _file(expected),
                    f"event {expected.event_id}",
                    "update" if expected.update else "step",
                    f"{expected.kind}: {expected.what} has no entry of its own: {line.idempotency_key} "
                    f"(seq {line.seq}) already records {_what(earlier)}",
                )
            )
            continue
        index.claimed[line.seq] = expected
        mismatches = list(_differences(expected, line))
        for name, ours, theirs in mismatches:
            result.findings.append(
                Finding(LEDGER, where, f"payload.{name}", f"the ledger says {ours!r}, the history says {theirs!r}")
            )
        if expected.update is not None and isinstance(expected.update.result, dict):
            _check_returned_receipt(expected, line, index, result)
        if not mismatches and line.kind in DECISION_KINDS:
            result.decisions_matched += 1


def _file(expected: Expected) -> str:
    """The history file that shows what is expected: the run's own, where the workflow ran more than once."""
    if expected.file:
        return expected.file
    return expected.update.file if expected.update and expected.update.file else history_file(expected.workflow_id)


def _what(vouched: Expected | str) -> str:
    return vouched if isinstance(vouched, str) else vouched.what


def _signature(expected: Expected, line: LedgerLine) -> Any:
    assert expected.signature is not None
    try:
        return expected.signature(_payload(line))
    except (TypeError, ValueError):
        return None


def _missing(expected: Expected, workflows: dict[str, WorkflowRecord], result: CrossCheck) -> None:
    if expected.update is not None:
        message = f"{expected.kind}: {expected.what} was accepted and completed but is not in the ledger"
    else:
        key = expected.key or expected.key_prefix or expected.kind
        message = f"{expected.kind}: the history shows {expected.what}, but the ledger has no {key}"
    if not expected.strict:
        record = workflows.get(expected.workflow_id)
        if record is None or not record.closed:
            result.notes.append(f"{message} yet (the workflow was still running at export)")
            return
    result.findings.append(
        Finding(
            _file(expected),
            f"event {expected.event_id}",
            "update" if expected.update else "step",
            message,
        )
    )


def _differences(expected: Expected, line: LedgerLine) -> Iterable[tuple[str, Any, Any]]:
    payload = _payload(line)
    if expected.normalise is not None:
        payload = expected.normalise(payload)
    for name, theirs in expected.fields.items():
        ours = dig(payload, name)
        if name == "text_sha256" and ours is None and isinstance(payload.get("text"), str):
            ours = hashlib.sha256(payload["text"].encode("utf-8")).hexdigest()  # the entry holds the body itself
        elif name == "text_length" and ours is None and isinstance(payload.get("text"), str):
            ours = len(payload["text"])
        elif name == "text" and ours is None and isinstance(theirs, str) and payload.get("text_sha256"):
            # The entry holds the body's hash only (bodies are kept once, by hash): the Update's body must have it.
            ours, theirs = payload["text_sha256"], hashlib.sha256(theirs.encode("utf-8")).hexdigest()
        if not _same(ours, theirs):
            yield name, ours, theirs


def _same(ours: Any, theirs: Any) -> bool:
    if ours == theirs:
        return True
    # A time written by `isoformat()` ("+00:00") and by pydantic ("Z") is the same time.
    return (
        isinstance(ours, str)
        and isinstance(theirs, str)
        and as_time(ours) is not None
        and as_time(ours) == as_time(theirs)
    )


def _check_returned_receipt(expected: Expected, line: LedgerLine, index: _Ledger, result: CrossCheck) -> None:
    """A position's or comment's receipt, as the Update returned it to the person, names this very entry (one that
    names no entry at all is counted with the history's other receipts)."""
    update = expected.update
    returned = update.result if update else None
    if not isinstance(returned, dict) or returned.get("ledger_seq") in (None, line.seq):
        return
    if update is None or returned.get("decision_id", returned.get("comment_id")) != update.update_id:
        return  # a receipt of another entry (a disposition returns the comment it answers)
    other = index.by_seq.get(returned["ledger_seq"])
    if other is None or other.entry_hash != returned.get("ledger_entry_hash"):
        return  # a receipt of no entry at all: counted with the history's other receipts
    result.findings.append(
        Finding(
            _file(expected),
            f"event {expected.event_id}",
            "update",
            f"{expected.what} returned the receipt of seq {returned.get('ledger_seq')}, but its entry "
            f"{line.idempotency_key} is seq {line.seq}",
        )
    )


def _check_not_invited(index: _Ledger, result: CrossCheck) -> None:
    """Each state a mailing's `mail_outcome` lists as not invited has its `not_invited` entry, with the same reason,
    and is one the mailing did not reach (no message to it was sent)."""
    for line in index.lines:
        vouched = index.claimed.get(line.seq)
        if line.kind != "mail_outcome" or not isinstance(vouched, Expected):
            continue  # a mail outcome no mailing vouches for is named with the unvouched entries
        payload = _payload(line)
        step, workflow_id = payload.get("step"), index.owners[line.seq]
        reached = {dig(r, "state") for r in payload.get("recipients") or [] if dig(r, "outcome") == "sent"}
        for missing in payload.get("not_invited") or []:
            state, reason = dig(missing, "state"), dig(missing, "reason")
            key = f"{workflow_id}:not-invited:{step}:{state}"
            entry = index.by_key.get(key)
            if state in reached:
                result.findings.append(
                    Finding(
                        LEDGER,
                        f"seq {line.seq}",
                        "payload.not_invited",
                        f"{state} is listed as not invited, but a message to it was sent",
                    )
                )
            if entry is None or entry.kind != "not_invited":
                result.findings.append(
                    Finding(
                        LEDGER,
                        f"seq {line.seq}",
                        "payload.not_invited",
                        f"not_invited: {state} is listed as not invited at {step!r}, but the ledger has no {key}",
                    )
                )
                continue
            index.claimed[entry.seq] = f"the mail outcome of {step!r} (seq {line.seq})"
            if _payload(entry).get("reason") != reason:
                result.findings.append(
                    Finding(
                        LEDGER,
                        f"seq {entry.seq}",
                        "payload.reason",
                        f"the ledger says {_payload(entry).get('reason')!r}, its mail outcome says {reason!r}",
                    )
                )


def _check_signals(index: _Ledger, workflows: dict[str, WorkflowRecord], result: CrossCheck) -> None:
    """Positions sent as Signals: each is recorded (under its decision id) or refused, once."""
    for workflow_id, record in sorted(workflows.items()):
        for name, args, event_id, file in record.signals:
            delivery = args[0] if name == POSITION_SIGNAL and args and isinstance(args[0], dict) else None
            decision = delivery.get("decision_id") if delivery else None
            if decision is None:
                continue
            vouched = False
            for key in (f"{workflow_id}:position:{decision}", f"{workflow_id}:refused:{decision}"):
                line = index.by_key.get(key)
                if line is None:
                    continue
                vouched = True
                if line.seq in index.claimed:
                    continue  # the Update with the same decision id claimed it
                index.claimed[line.seq] = f"{POSITION_SIGNAL} {decision}"
                submission = delivery.get("submission") if isinstance(delivery, dict) else None
                for field_name in ("state", "delegate_id", "position", "document_sha256"):
                    ours, theirs = _payload(line).get(field_name), dig(submission, field_name)
                    if ours != theirs:
                        result.findings.append(
                            Finding(
                                LEDGER,
                                f"seq {line.seq}",
                                f"payload.{field_name}",
                                f"the ledger says {ours!r}, the history says {theirs!r}",
                            )
                        )
                if line.kind == "position":
                    result.decisions_matched += 1
            if vouched:
                continue
            if not record.closed:
                result.notes.append(f"{POSITION_SIGNAL} {decision} in {workflow_id} was not yet recorded at export")
                continue
            result.findings.append(
                Finding(
                    file,
                    f"event {event_id}",
                    "signal",
                    f"{POSITION_SIGNAL} {decision} was received but is neither recorded nor refused in the ledger",
                )
            )
        for update in record.updates.values():
            if not update.completed:
                if record.closed:
                    result.findings.append(
                        Finding(
                            update.file,
                            f"event {update.event_id}",
                            "update",
                            f"{update.name} {update.update_id} was accepted but never completed",
                        )
                    )
                else:
                    result.notes.append(
                        f"{update.name} {update.update_id} in {workflow_id} was still in progress at export"
                    )


def _check_vouched(index: _Ledger, workflows: dict[str, WorkflowRecord], result: CrossCheck) -> None:
    """Every entry has its Update, step, Signal or at least the receipt of the write that made it."""
    for line in index.lines:
        workflow_id = index.owners[line.seq]
        where = f"seq {line.seq}"
        record = workflows.get(workflow_id)
        if record is None:
            result.findings.append(
                Finding(
                    LEDGER,
                    where,
                    "idempotency_key",
                    f"{line.kind} {line.idempotency_key} names workflow {workflow_id}, whose history is missing",
                )
            )
            continue
        claimed = line.seq in index.claimed
        if claimed or line.seq in index.receipted:
            result.entries_vouched += 1
        if claimed:
            continue
        # Kinds only an Update, a mailing or a Signal makes must have theirs; any other needs its write's receipt.
        needs = _NEEDS.get(line.kind)
        if needs is None and line.kind in UPDATE_KINDS:
            needs = "update"
        if needs is not None:
            message = f"{line.kind} {line.idempotency_key} is in the ledger but {record.file} shows {_NEEDED[needs]}"
            if record.continued:  # the run that wrote it may be an earlier one, whose history the bundle lacks
                message += f" (that history is a run continued from an earlier run of {workflow_id}, not in the bundle)"
            if needs == "update" and not record.closed and any(not u.completed for u in record.updates.values()):
                # Exported mid-Update: the entry is written before the Update completes.
                result.notes.append(f"{message} yet (an update was still in progress at export)")
                continue
            result.findings.append(Finding(LEDGER, where, "idempotency_key", message))
        elif line.seq not in index.receipted:
            message = (
                f"{line.kind} {line.idempotency_key} is vouched for by no history: no ledger write there "
                "returned it, and no Update or step of the workflow accounts for it"
            )
            if record.closed:
                result.findings.append(Finding(LEDGER, where, "idempotency_key", message))
            else:
                result.notes.append(f"{message} yet (the workflow was still running at export)")


_NEEDS = {REFUSED: "signal", "mail_outcome": "mailing", "not_invited": "listing"}
_NEEDED = {
    "update": "no completed update with that content",
    "mailing": "no completed mailing whose result it records",
    "listing": "no mail outcome that lists the state as not invited at that step",
    "signal": f"no {POSITION_SIGNAL} with that decision id",
}


def _payload(line: LedgerLine) -> dict[str, Any]:
    try:
        return line.payload
    except ValueError:
        return {}
