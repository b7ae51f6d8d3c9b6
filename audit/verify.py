"""`aisafe audit verify`: check a bundle with nothing but the bundle (and, better, the published public key).

Checks, in order: the manifest's signature; every file's SHA-256 and that no file was added or removed; the
ledger's hash chain; that documents are what their names say and every decision names one of them; and the
cross-check of ledger against history, over every kind of entry (audit/crosscheck.py). A bundle passes when no
check finds anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from audit import keys
from audit.bundle import (
    DOCUMENTS_DIR,
    HISTORY_DIR,
    LEDGER,
    MANIFEST,
    SIGNATURE,
    VERSIONS,
    LedgerLine,
    NotABundle,
    bundle_files,
    parse_ledger,
    read_manifest,
)
from audit.crosscheck import Finding, cross_check
from audit.history import RUN_SEPARATOR, HistoryFormatError, WorkflowRecord, merge_runs, parse_history
from models.ledger import GENESIS_HASH

DOCUMENT_FIELDS = {"position": "document_sha256", "comment": "document_sha256"}


@dataclass
class Verification:
    path: Path
    proposal_id: str
    public_key: str
    key_pinned: bool
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        return {
            "bundle": str(self.path),
            "proposal_id": self.proposal_id,
            "ok": self.ok,
            "public_key": self.public_key,
            "public_key_fingerprint": keys.fingerprint(self.public_key) if self.public_key else None,
            "key_pinned": self.key_pinned,
            "counts": self.counts,
            "findings": [f.__dict__ for f in self.findings],
            "notes": self.notes,
        }


def verify_bundle(root: Path, public_key: str | None = None) -> Verification:
    """Verify the bundle at `root`; raises NotABundle when it is not one, and keys.KeyFormatError for a bad key."""
    manifest = read_manifest(root)
    if public_key is not None:
        keys.load_public(public_key)  # a malformed pinned key is bad input, not a failed check
    result = Verification(
        path=root,
        proposal_id=manifest.proposal_id,
        public_key=manifest.public_key,
        key_pinned=public_key is not None,
    )
    add = result.findings.append

    # 1. The seal.
    if public_key is not None and public_key.strip() != manifest.public_key:
        add(Finding(MANIFEST, "-", "public_key", "the bundle names another key than the one given with --public-key"))
    signer = public_key.strip() if public_key is not None else manifest.public_key
    if not manifest.signature:
        add(Finding(SIGNATURE, "-", "signature", "missing"))
    elif not manifest.public_key and public_key is None:
        add(Finding(MANIFEST, "-", "public_key", "missing: nothing to check the signature with"))
    elif not keys.signature_holds(signer, manifest.raw, manifest.signature):
        add(Finding(SIGNATURE, "-", "signature", f"does not verify with key {keys.fingerprint(signer)}"))

    # 2. Every file, and nothing else. Each file is read once, here; the checks after this one use what was read.
    contents = {name: (root / name).read_bytes() for name in bundle_files(root)}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    listed = manifest.files
    for name in sorted(contents.keys() - listed.keys()):
        add(Finding(name, "-", "file", "not listed in the manifest"))
    for name, digest in sorted(listed.items()):
        if name not in contents:
            add(Finding(name, "-", "file", "listed in the manifest but missing"))
        elif digests[name] != digest:
            add(Finding(name, "-", "sha256", "the file's hash differs from the manifest's"))
    result.counts["files"] = len(listed)

    # 3. The ledger's chain.
    ledger = _check_ledger(contents.get(LEDGER), manifest.proposal_id, add)
    result.counts["ledger_entries"] = len(ledger)

    # 4. Documents.
    documents = _in_folder(contents, DOCUMENTS_DIR, ".md")
    _check_documents(documents, digests, contents.get(VERSIONS), ledger, add)
    result.counts["documents"] = len(documents)

    # 5. Ledger against history.
    workflows = _read_histories(_in_folder(contents, HISTORY_DIR, ".json"), contents, add)
    result.counts["histories"] = len(workflows)
    for record in workflows.values():
        for child in record.children:
            if child not in workflows:
                add(
                    Finding(
                        f"{HISTORY_DIR}/",
                        "-",
                        "children",
                        f"{record.workflow_id} started {child}, whose history is missing",
                    )
                )
    if ledger and workflows:
        checked = cross_check(ledger, workflows)
        result.findings.extend(checked.findings)
        result.notes.extend(checked.notes)
        result.counts["decisions_matched"] = checked.decisions_matched
        result.counts["entries_vouched"] = checked.entries_vouched
    if public_key is None and manifest.public_key:
        result.notes.append(
            f"checked against the key inside the bundle ({keys.fingerprint(manifest.public_key)}); pass "
            "--public-key with the separately published key to rule out a re-sealed bundle"
        )
    return result


def _in_folder(names: Iterable[str], folder: str, suffix: str) -> list[PurePosixPath]:
    """The files directly in `folder` whose names end in `suffix`: what `Path.glob(f"*{suffix}")` lists there."""
    return [
        PurePosixPath(name)
        for name in names
        if name.startswith(f"{folder}/") and "/" not in name[len(folder) + 1 :] and name.endswith(suffix)
    ]


def _check_ledger(data: bytes | None, proposal_id: str, add: Any) -> list[LedgerLine]:
    if data is None:
        return []
    try:
        ledger = parse_ledger(data.decode("utf-8"))
    except ValueError as exc:
        add(Finding(LEDGER, "-", "line", str(exc)))
        return []
    previous = GENESIS_HASH
    for expected_seq, line in enumerate(ledger, start=1):
        where = f"seq {line.seq}"
        if line.proposal_id != proposal_id:
            add(Finding(LEDGER, where, "proposal_id", f"{line.proposal_id!r}, not the bundle's {proposal_id!r}"))
        if line.seq != expected_seq:
            add(Finding(LEDGER, where, "seq", f"expected {expected_seq}: an entry is missing or out of order"))
        if line.prev_hash != previous:
            add(Finding(LEDGER, where, "prev_hash", "does not match the previous entry's hash: the chain is broken"))
        try:
            computed = line.computed_hash()
        except ValueError:
            add(Finding(LEDGER, where, "recorded_at", f"not a time: {line.recorded_at!r}"))
            computed = ""
        if computed and computed != line.entry_hash:
            add(Finding(LEDGER, where, "entry_hash", "does not match the entry's content: the entry was altered"))
        try:
            line.payload  # noqa: B018  (parses it)
        except ValueError:
            add(Finding(LEDGER, where, "payload_json", "not JSON"))
        previous = line.entry_hash
    return ledger


def _check_documents(
    documents: list[PurePosixPath],
    digests: dict[str, str],
    versions_json: bytes | None,
    ledger: list[LedgerLine],
    add: Any,
) -> None:
    present = {path.stem for path in documents}
    for path in sorted(documents, key=lambda path: path.stem):
        if digests[str(path)] != path.stem:
            add(Finding(str(path), "-", "sha256", "the text does not hash to the name it is filed under"))
    if versions_json is not None:
        try:
            versions = json.loads(versions_json.decode("utf-8"))
            for version in versions:
                if version["sha256"] not in present:
                    add(Finding(VERSIONS, f"version {version['version']}", "sha256", "the text is not in the bundle"))
        except (ValueError, KeyError, TypeError):
            add(Finding(VERSIONS, "-", "file", "not a list of versions"))
    for line in ledger:
        try:
            payload = line.payload
        except ValueError:
            continue
        names = [payload.get(DOCUMENT_FIELDS[line.kind])] if line.kind in DOCUMENT_FIELDS else []
        document = payload.get("document")
        if isinstance(document, dict):
            names.append(document.get("sha256"))
        for sha in names:
            if sha not in present:
                add(Finding(LEDGER, f"seq {line.seq}", "document", f"names document {sha}, which is not in the bundle"))


def _read_histories(histories: list[PurePosixPath], contents: dict[str, bytes], add: Any) -> dict[str, WorkflowRecord]:
    """Each workflow's record, its runs merged: `<workflow>.json` is its latest run, `<workflow>@<run>.json` earlier
    runs of a workflow that continued as new."""
    runs: dict[str, dict[str, WorkflowRecord]] = {}
    for path in sorted(histories):
        name = str(path)
        workflow_id, _, run_id = path.stem.partition(RUN_SEPARATOR)
        try:
            runs.setdefault(workflow_id, {})[run_id] = parse_history(workflow_id, contents[name], name)
        except (ValueError, HistoryFormatError) as exc:
            add(Finding(name, "-", "history", str(exc)))
    workflows: dict[str, WorkflowRecord] = {}
    for workflow_id, records in runs.items():
        if "" not in records:
            for run_id in sorted(records):
                add(
                    Finding(
                        f"{HISTORY_DIR}/{workflow_id}{RUN_SEPARATOR}{run_id}.json",
                        "-",
                        "history",
                        f"an earlier run of {workflow_id}, whose latest run's history is missing",
                    )
                )
            continue
        workflows[workflow_id], strays = merge_runs(workflow_id, records)
        for run_id in strays:
            add(
                Finding(
                    f"{HISTORY_DIR}/{workflow_id}{RUN_SEPARATOR}{run_id}.json",
                    "-",
                    "history",
                    f"a run of {workflow_id} that no run in the bundle continues from",
                )
            )
    return workflows


__all__ = ["NotABundle", "Verification", "verify_bundle"]
