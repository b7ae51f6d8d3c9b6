"""Ledger activities: append-only, idempotent, hash-chained entries per proposal."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, bindparam, insert, text
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.db import write_session
from models.ledger import GENESIS_HASH, as_utc, canonical_json, entry_hash
from models.messages import DocumentRef, LedgerAppend, LedgerReceipt, ProposalInput
from models.tables import DocumentVersion, LedgerEntry, ProposalRecord

log = logging.getLogger("aisafe.ledger")

# The ApplicationError type a refused entry reaches the workflow (and, through an Update, the coordinator) with.
LEDGER_INTEGRITY = "LedgerIntegrity"

# Built once: the delegate waits on this write, and building the statements (and loading ORM objects) for
# every entry took three times the CPU of running them.
_BY_KEY = select(
    LedgerEntry.seq,
    LedgerEntry.entry_hash,
    LedgerEntry.recorded_at,
    LedgerEntry.proposal_id,
    LedgerEntry.kind,
    LedgerEntry.payload_json,
).where(LedgerEntry.idempotency_key == bindparam("key"))
_HEAD = (
    select(LedgerEntry.seq, LedgerEntry.entry_hash)
    .where(LedgerEntry.proposal_id == bindparam("proposal_id"))
    .order_by(LedgerEntry.seq.desc())  # type: ignore[attr-defined]
    .limit(1)
)
_INSERT = insert(LedgerEntry)


class LedgerIntegrityError(Exception):
    """An entry whose idempotency key is already in the ledger with other content.

    A key stands for one step of one workflow. The same key arriving again is a retry of that step and must
    carry the same entry; other content under it means two steps were given one key, and answering with the
    earlier receipt would tell the second step it was recorded when it was not.
    """

    def __init__(self, entry: LedgerAppend, seq: int) -> None:
        self.key = entry.idempotency_key
        super().__init__(
            f"ledger integrity: the key {entry.idempotency_key!r} is already entry {seq} of "
            f"{entry.proposal_id} with other content; this {entry.kind} entry was not recorded"
        )


def append_entry(session: Session, entry: LedgerAppend) -> LedgerReceipt:
    """Append `entry` to its proposal's chain inside the caller's transaction.

    A key already in the ledger with the same entry (a retried write) returns its receipt; with other content it
    raises `LedgerIntegrityError`.
    """
    if session.get_bind().dialect.name == "postgresql":
        # Writers of one proposal's chain queue here (before the key check, so a concurrent retry of the
        # same entry finds it); SQLite's BEGIN IMMEDIATE already serialises writers.
        session.exec(text("SELECT pg_advisory_xact_lock(hashtextextended(:p, 0))").bindparams(p=entry.proposal_id))
    payload_json = canonical_json(entry.payload)
    existing = session.execute(_BY_KEY, {"key": entry.idempotency_key}).first()
    if existing is not None:
        same = (existing.proposal_id, existing.kind, existing.payload_json) == (
            entry.proposal_id,
            entry.kind,
            payload_json,
        )
        if not same:
            raise LedgerIntegrityError(entry, existing.seq)
        return LedgerReceipt(seq=existing.seq, entry_hash=existing.entry_hash, recorded_at=as_utc(existing.recorded_at))
    head = session.execute(_HEAD, {"proposal_id": entry.proposal_id}).first()
    seq = head.seq + 1 if head else 1
    prev_hash = head.entry_hash if head else GENESIS_HASH
    recorded_at = datetime.now(UTC)
    digest = entry_hash(
        proposal_id=entry.proposal_id,
        seq=seq,
        kind=entry.kind,
        idempotency_key=entry.idempotency_key,
        payload_json=payload_json,
        recorded_at=recorded_at,
        prev_hash=prev_hash,
    )
    session.execute(
        _INSERT,
        {
            "proposal_id": entry.proposal_id,
            "seq": seq,
            "kind": entry.kind,
            "idempotency_key": entry.idempotency_key,
            "payload_json": payload_json,
            "recorded_at": recorded_at,
            "prev_hash": prev_hash,
            "entry_hash": digest,
        },
    )
    return LedgerReceipt(seq=seq, entry_hash=digest, recorded_at=recorded_at)


@contextmanager
def refusing_conflicts() -> Iterator[None]:
    """Turn a conflicting entry into a non-retryable failure: retrying cannot make it right, and a workflow
    or coordinator told "recorded" would be told something false."""
    try:
        yield
    except LedgerIntegrityError as exc:
        log.error("ledger entry refused: %s", exc, extra={"idempotency_key": exc.key})
        raise ApplicationError(
            str(exc), {"idempotency_key": exc.key}, type=LEDGER_INTEGRITY, non_retryable=True
        ) from None


class LedgerActivities:
    """Activities that write the ledger (and the tables it vouches for) in one transaction each."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="append_ledger")
    @refusing_conflicts()
    def append_ledger(self, entry: LedgerAppend) -> LedgerReceipt:
        with write_session(self._engine) as session:
            receipt = append_entry(session, entry)
            session.commit()
            return receipt

    @activity.defn(name="register_proposal")
    @refusing_conflicts()
    def register_proposal(self, proposal: ProposalInput) -> LedgerReceipt:
        """Record a new proposal, its first document version and its process definition."""
        with write_session(self._engine) as session:
            if session.get(ProposalRecord, proposal.proposal_id) is None:
                session.add(
                    ProposalRecord(
                        id=proposal.proposal_id,
                        title=proposal.title,
                        kind=proposal.kind,
                        lead_state=proposal.lead_state.value,
                    )
                )
            _add_version(session, proposal.proposal_id, proposal.document)
            receipt = append_entry(
                session,
                LedgerAppend(
                    proposal_id=proposal.proposal_id,
                    kind="proposal_started",
                    idempotency_key=f"{proposal.proposal_id}:started",
                    payload=proposal.model_dump(mode="json"),
                ),
            )
            session.commit()
            return receipt

    @activity.defn(name="record_version")
    @refusing_conflicts()
    def record_version(self, entry: LedgerAppend) -> LedgerReceipt:
        """Record an uploaded document version (its body is already stored under its hash)."""
        document = DocumentRef.model_validate(entry.payload["document"])
        with write_session(self._engine) as session:
            _add_version(session, entry.proposal_id, document)
            receipt = append_entry(session, entry)
            session.commit()
            return receipt


def _add_version(session: Session, proposal_id: str, document: DocumentRef) -> None:
    exists = session.exec(
        select(DocumentVersion).where(
            DocumentVersion.proposal_id == proposal_id, DocumentVersion.version == document.version
        )
    ).first()
    if exists is None:
        session.add(
            DocumentVersion(
                proposal_id=proposal_id,
                version=document.version,
                sha256=document.sha256,
                filename=document.filename,
            )
        )
