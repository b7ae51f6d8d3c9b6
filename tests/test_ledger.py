"""The decisions ledger on SQLite and PostgreSQL: append-only, idempotent, one unbroken hash chain per proposal."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, text
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from activities.documents import store_document
from activities.ledger import LedgerActivities
from models.ledger import GENESIS_HASH, canonical_json, document_hash, entry_hash, entry_material, timestamp
from models.messages import DocumentRef, LedgerAppend, LedgerReceipt, ProposalInput
from models.process import MemberReviewStage, ProcessDefinition
from models.states import MemberState
from models.tables import DocumentBlob, DocumentVersion, LedgerEntry, ProposalRecord

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def new_proposal_id() -> str:
    return f"operational-framework-{uuid.uuid4().hex[:8]}"


def entry(proposal_id: str, key: str, kind: str = "position_recorded", **payload: object) -> LedgerAppend:
    return LedgerAppend(proposal_id=proposal_id, kind=kind, idempotency_key=f"{proposal_id}:{key}", payload=payload)


def chain(engine: Engine, proposal_id: str) -> list[LedgerEntry]:
    with Session(engine) as session:
        return list(
            session.exec(select(LedgerEntry).where(LedgerEntry.proposal_id == proposal_id).order_by(LedgerEntry.seq))
        )


def count(engine: Engine, table: type, **where: object) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(getattr(table, column) == value)
        return session.exec(query).one()


def same_entry(receipt: LedgerReceipt) -> tuple[int, str]:
    return receipt.seq, receipt.entry_hash


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands `timestamptz` columns back naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def assert_unbroken(entries: list[LedgerEntry]) -> None:
    """What an auditor checks: seq 1..n, each hash recomputes from the stored fields, each links to the last."""
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    previous = GENESIS_HASH
    for stored in entries:
        assert stored.prev_hash == previous, f"entry {stored.seq} does not link to entry {stored.seq - 1}"
        recomputed = entry_hash(
            proposal_id=stored.proposal_id,
            seq=stored.seq,
            kind=stored.kind,
            idempotency_key=stored.idempotency_key,
            payload_json=stored.payload_json,
            recorded_at=stored.recorded_at,
            prev_hash=stored.prev_hash,
        )
        assert recomputed == stored.entry_hash, f"entry {stored.seq} does not hash to its stored entry_hash"
        previous = stored.entry_hash


def proposal_input(engine: Engine, proposal_id: str) -> ProposalInput:
    body = (EXAMPLES / "operational-framework.md").read_text(encoding="utf-8")
    return ProposalInput(
        proposal_id=proposal_id,
        title="ASEAN AI SAFE Operational Framework",
        kind="operational_framework",
        lead_state=MemberState.MY,
        process=ProcessDefinition(stages=[MemberReviewStage()]),
        document=DocumentRef(
            sha256=store_document(engine, body),
            version=1,
            filename="operational-framework.md",
            size=len(body.encode("utf-8")),
        ),
    )


def test_seq_counts_up_per_proposal_and_each_chain_is_independent(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    first, second = new_proposal_id(), new_proposal_id()

    receipts = [
        ledger.append_ledger(entry(first, "a")),
        ledger.append_ledger(entry(second, "a")),
        ledger.append_ledger(entry(first, "b")),
        ledger.append_ledger(entry(first, "c")),
        ledger.append_ledger(entry(second, "b")),
    ]

    assert [r.seq for r in receipts] == [1, 1, 2, 3, 2]
    assert [e.seq for e in chain(any_engine, first)] == [1, 2, 3]
    assert [e.seq for e in chain(any_engine, second)] == [1, 2]
    assert chain(any_engine, second)[0].prev_hash == GENESIS_HASH


def test_receipt_matches_the_stored_entry(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()

    receipt = ledger.append_ledger(entry(proposal_id, "a", state="MM", position="approve"))

    [stored] = chain(any_engine, proposal_id)
    assert (stored.seq, stored.entry_hash) == (receipt.seq, receipt.entry_hash)
    assert receipt.recorded_at.utcoffset() == timedelta(0)
    assert as_utc(stored.recorded_at) == receipt.recorded_at
    assert json.loads(stored.payload_json) == {"state": "MM", "position": "approve"}


def test_same_idempotency_key_twice_returns_the_same_receipt_and_stores_one_row(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    ledger.append_ledger(entry(proposal_id, "before"))

    first = ledger.append_ledger(entry(proposal_id, "retried", state="PH", position="object"))
    again = ledger.append_ledger(entry(proposal_id, "retried", state="PH", position="object"))  # a retried write

    assert same_entry(again) == same_entry(first) == (2, first.entry_hash)
    assert count(any_engine, LedgerEntry, idempotency_key=f"{proposal_id}:retried") == 1
    assert [e.seq for e in chain(any_engine, proposal_id)] == [1, 2]


@pytest.mark.parametrize(
    "changed",
    [
        {"payload": {"state": "PH", "position": "approve"}},  # another answer under the key
        {"payload": {"state": "PH", "position": "object", "reason": "x"}},  # one field more
        {"kind": "comment"},  # another kind of entry
    ],
)
def test_a_key_repeated_with_other_content_is_refused_loudly_and_nothing_is_written(
    any_engine: Engine, changed: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    first = ledger.append_ledger(entry(proposal_id, "step", state="PH", position="object"))
    conflicting = entry(proposal_id, "step", state="PH", position="object").model_copy(update=changed)

    with caplog.at_level(logging.ERROR, logger="aisafe.ledger"), pytest.raises(ApplicationError) as refused:
        ledger.append_ledger(conflicting)

    assert refused.value.non_retryable and refused.value.type == "LedgerIntegrity"
    assert f"{proposal_id}:step" in refused.value.message and "was not recorded" in refused.value.message
    assert [r.idempotency_key for r in caplog.records] == [f"{proposal_id}:step"]  # type: ignore[attr-defined]
    stored = chain(any_engine, proposal_id)
    assert [(e.seq, e.entry_hash) for e in stored] == [(1, first.entry_hash)]
    assert json.loads(stored[0].payload_json) == {"state": "PH", "position": "object"}


def test_a_retried_append_reports_the_same_recorded_time_in_utc(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()

    first = ledger.append_ledger(entry(proposal_id, "a", state="LA", position="abstain"))
    again = ledger.append_ledger(entry(proposal_id, "a", state="LA", position="abstain"))

    assert again.recorded_at.utcoffset() == timedelta(0)
    assert again == first


def test_every_entry_hash_recomputes_and_links_to_the_previous_entry(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    payloads = [
        {"state": "VN", "position": "approve"},
        {"state": "TL", "position": "object", "reason": "Needs a clause on data sovereignty — « souveraineté »"},
        {"nested": {"list": [1, 2.5, None, True], "when": "2025-10-26T09:00:00+08:00"}},
        {},
    ]

    for index, payload in enumerate(payloads):
        ledger.append_ledger(entry(proposal_id, f"e{index}", **payload))

    entries = chain(any_engine, proposal_id)
    assert len(entries) == 4
    assert entries[0].prev_hash == GENESIS_HASH
    assert_unbroken(entries)
    assert json.loads(entries[1].payload_json)["reason"].endswith("« souveraineté »")


def test_a_changed_stored_field_no_longer_matches_its_hash(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    ledger.append_ledger(entry(proposal_id, "a", state="SG", position="object", reason="Scope too broad"))
    ledger.append_ledger(entry(proposal_id, "b", state="TH", position="approve"))
    with Session(any_engine) as session:
        stored = session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == f"{proposal_id}:a")).one()
        stored.payload_json = stored.payload_json.replace("object", "approve")
        session.add(stored)
        session.commit()

    with pytest.raises(AssertionError, match="entry 1 does not hash"):
        assert_unbroken(chain(any_engine, proposal_id))


def test_twenty_concurrent_appends_to_one_proposal_make_one_unbroken_chain(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    states = [s.value for s in MemberState]

    with ThreadPoolExecutor(max_workers=20) as pool:
        receipts = list(
            pool.map(
                lambda i: ledger.append_ledger(entry(proposal_id, f"c{i}", state=states[i % 11], n=i)),
                range(20),
            )
        )

    assert sorted(r.seq for r in receipts) == list(range(1, 21))
    entries = chain(any_engine, proposal_id)
    assert_unbroken(entries)
    assert {e.idempotency_key for e in entries} == {f"{proposal_id}:c{i}" for i in range(20)}
    by_key = {e.idempotency_key: e.entry_hash for e in entries}
    assert all(by_key[f"{proposal_id}:c{i}"] == receipts[i].entry_hash for i in range(20))


@contextmanager
def chain_held(engine: Engine, proposal_id: str) -> Iterator[None]:
    """Hold the write lock that appends to `proposal_id` queue on, as a slow earlier attempt would."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(hashtextextended(:p, 0))"), {"p": proposal_id})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtextextended(:p, 0))"), {"p": proposal_id})
        else:
            transaction = conn.begin()  # BEGIN IMMEDIATE: takes SQLite's write lock
            try:
                yield
            finally:
                transaction.rollback()


def wait_for_blocked_writers(engine: Engine, expected: int) -> None:
    if engine.dialect.name != "postgresql":
        time.sleep(0.3)  # SQLite has no view of waiting writers; they are parked in busy_timeout
        return
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
            if waiting >= expected:
                return
            conn.rollback()
            time.sleep(0.02)
    raise AssertionError(f"{expected} writers never queued on the proposal's chain lock")


def test_overlapping_attempts_with_one_key_both_get_the_receipt(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    ledger.append_ledger(entry(proposal_id, "opened", kind="round_opened"))
    retried = entry(proposal_id, "position", state="KH", position="approve")

    pool = ThreadPoolExecutor(max_workers=2)
    try:
        with chain_held(any_engine, proposal_id):
            attempts = [pool.submit(ledger.append_ledger, retried) for _ in range(2)]
            wait_for_blocked_writers(any_engine, 2)
        receipts: list[LedgerReceipt | str] = []
        for attempt in attempts:
            try:
                receipts.append(attempt.result(timeout=30))
            except Exception as exc:  # noqa: BLE001 (what failed is the finding)
                receipts.append(f"{type(exc).__name__}")
    finally:
        pool.shutdown(wait=True)

    assert all(isinstance(r, LedgerReceipt) for r in receipts), receipts
    assert {same_entry(r) for r in receipts} == {(2, receipts[0].entry_hash)}  # type: ignore[union-attr]
    assert [e.seq for e in chain(any_engine, proposal_id)] == [1, 2]


# --- proposals and document versions ---------------------------------------------------------------------


def test_register_proposal_records_the_proposal_its_first_version_and_a_started_entry(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    proposal = proposal_input(any_engine, proposal_id)

    receipt = ledger.register_proposal(proposal)

    assert receipt.seq == 1
    with Session(any_engine) as session:
        record = session.get(ProposalRecord, proposal_id)
        assert record is not None
        assert (record.title, record.kind, record.lead_state) == (
            "ASEAN AI SAFE Operational Framework",
            "operational_framework",
            "MY",
        )
        [version] = session.exec(select(DocumentVersion).where(DocumentVersion.proposal_id == proposal_id)).all()
        assert (version.version, version.sha256, version.filename) == (
            1,
            proposal.document.sha256,
            "operational-framework.md",
        )
        blob = session.get(DocumentBlob, version.sha256)
        assert blob is not None and document_hash(blob.body) == version.sha256
    [started] = chain(any_engine, proposal_id)
    assert started.kind == "proposal_started"
    recorded = json.loads(started.payload_json)
    # The ledger keeps the process definition the proposal started with.
    assert ProposalInput.model_validate(recorded) == proposal


def test_register_proposal_twice_records_everything_once(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    proposal = proposal_input(any_engine, proposal_id)

    first = ledger.register_proposal(proposal)
    second = ledger.register_proposal(proposal)

    assert same_entry(second) == same_entry(first)
    assert count(any_engine, ProposalRecord, id=proposal_id) == 1
    assert count(any_engine, DocumentVersion, proposal_id=proposal_id) == 1
    assert count(any_engine, LedgerEntry, proposal_id=proposal_id) == 1


def test_register_proposal_refuses_a_document_that_was_never_stored(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    proposal = proposal_input(any_engine, proposal_id).model_copy(
        update={"document": DocumentRef(sha256=document_hash("never stored"), version=1, filename="x.md", size=12)}
    )

    with pytest.raises(Exception, match="(?i)foreign key"):
        ledger.register_proposal(proposal)

    assert count(any_engine, ProposalRecord, id=proposal_id) == 0
    assert count(any_engine, LedgerEntry, proposal_id=proposal_id) == 0


def test_record_version_adds_the_version_and_its_entry_once(any_engine: Engine) -> None:
    ledger = LedgerActivities(any_engine)
    proposal_id = new_proposal_id()
    ledger.register_proposal(proposal_input(any_engine, proposal_id))
    body = (EXAMPLES / "operational-framework-v2.md").read_text(encoding="utf-8")
    version_2 = DocumentRef(
        sha256=store_document(any_engine, body), version=2, filename="operational-framework-v2.md", size=len(body)
    )
    upload = LedgerAppend(
        proposal_id=proposal_id,
        kind="version_uploaded",
        idempotency_key=f"{proposal_id}:version:2",
        payload={"document": version_2.model_dump(mode="json")},
    )

    first = ledger.record_version(upload)
    again = ledger.record_version(upload)

    assert same_entry(again) == same_entry(first)
    assert first.seq == 2
    with Session(any_engine) as session:
        versions = session.exec(
            select(DocumentVersion).where(DocumentVersion.proposal_id == proposal_id).order_by(DocumentVersion.version)
        ).all()
    assert [(v.version, v.sha256) for v in versions] == [
        (1, document_hash((EXAMPLES / "operational-framework.md").read_text(encoding="utf-8"))),
        (2, version_2.sha256),
    ]
    entries = chain(any_engine, proposal_id)
    assert [e.kind for e in entries] == ["proposal_started", "version_uploaded"]
    assert_unbroken(entries)


def test_store_document_keeps_one_body_per_hash(any_engine: Engine) -> None:
    body = "# ASEAN AI SAFE Funding Model\n\nEqual shares, plus dialogue-partner contributions.\n"

    first = store_document(any_engine, body)
    second = store_document(any_engine, body)

    assert first == second == document_hash(body)
    assert count(any_engine, DocumentBlob, sha256=first) == 1
    with Session(any_engine) as session:
        blob = session.get(DocumentBlob, first)
    assert blob is not None and blob.body == body and blob.size == len(body.encode("utf-8"))


# --- the hash's material, written out: byte for byte what the canonical JSON encoder makes --------------------

AWKWARD = [
    "",
    'say "no"',
    "back\\slash \\u0041 \\n",
    "".join(chr(c) for c in range(32)) + "\x7f",
    "line\u2028paragraph\u2029next\x85",
    "non-BMP \U0001f600 \U0001d11e",
    "non-ASCII é ß 中文 \u00a0",
    "lone \ud800 surrogate \udfff",
    '{"payload":"{\\"nested\\":[1,2]}"}',
]


def reference_material(
    *, proposal_id: str, seq: int, kind: str, idempotency_key: str, payload_json: str, recorded_at: str, prev_hash: str
) -> str:
    """What the ledger hashed before `entry_material` wrote it out: the encoder over the dict."""
    return canonical_json(
        {
            "proposal_id": proposal_id,
            "seq": seq,
            "kind": kind,
            "idempotency_key": idempotency_key,
            "payload": payload_json,
            "recorded_at": recorded_at,
            "prev_hash": prev_hash,
        }
    )


@pytest.mark.parametrize("text", AWKWARD)
def test_entry_material_is_the_canonical_json_of_the_entry_for_awkward_text(text: str) -> None:
    fields = {
        "proposal_id": f"p-{text}",
        "kind": text,
        "idempotency_key": f"{text}:k",
        "payload_json": text * 2,
        "recorded_at": f"2026-11-27T00:00:00.000000Z{text}",
        "prev_hash": text[::-1],
    }
    for seq in (1, 0, -7, 10**30, True):  # a bool seq (which a ledger line may hold) takes the encoder's path
        assert entry_material(seq=seq, **fields) == reference_material(seq=seq, **fields)


@given(st.text(), st.text(), st.text(), st.text(), st.text(), st.text(), st.integers())
def test_entry_material_is_the_canonical_json_of_any_entry(
    proposal_id: str, kind: str, key: str, payload: str, recorded_at: str, prev_hash: str, seq: int
) -> None:
    fields = {
        "proposal_id": proposal_id,
        "seq": seq,
        "kind": kind,
        "idempotency_key": key,
        "payload_json": payload,
        "recorded_at": recorded_at,
        "prev_hash": prev_hash,
    }
    assert entry_material(**fields) == reference_material(**fields)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27T12:58:30.689482Z",  # canonical: used as it is
        "1000-01-01T00:00:00.000000Z",
        "9999-12-31T23:59:59.999999Z",
        "2024-02-29T00:00:00.000000Z",
        "2026-11-27T12:58:30Z",  # not canonical: parsed and written again
        "2026-11-27T12:58:30.689Z",
        "2026-11-27T12:58:30.689482+00:00",
        "2026-11-27T14:58:30.689482+02:00",
        "2026-11-27 12:58:30.689482Z",
        "2026-11-27T12:58:30.689482",
        "0999-01-01T00:00:00.000000Z",  # not times, or not ones `timestamp` could have written
        "2023-02-29T00:00:00.000000Z",
        "2026-11-27T24:00:00.000000Z",
        "2026-13-01T00:00:00.000000Z",
        "2026-11-27T12:58:30.689482ZZ",
        "not a time",
        "",
    ],
)
def test_a_recorded_time_given_as_text_hashes_as_the_time_it_reads_as(text: str) -> None:
    fields = {
        "proposal_id": "p-1",
        "seq": 3,
        "kind": "comment",
        "idempotency_key": "p-1:comment:c1",
        "payload_json": '{"text":"\\u2028 \\"quoted\\""}',
        "prev_hash": "0" * 64,
    }
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        expected = entry_hash(recorded_at=moment, **fields)  # type: ignore[arg-type]
    except ValueError:
        with pytest.raises(ValueError):
            entry_hash(recorded_at=text, **fields)  # type: ignore[arg-type]
        return
    assert entry_hash(recorded_at=text, **fields) == expected  # type: ignore[arg-type]
    material = reference_material(recorded_at=timestamp(moment), **fields)
    assert expected == hashlib.sha256(material.encode()).hexdigest()
