"""The ledger's hash chain: how an entry's hash is computed, so writers and verifiers agree."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
# One encoder for every call: `json.dumps` with these options builds a new one each time, a quarter of the
# cost of checking an entry's hash. `encode` keeps no state between calls.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def entry_hash(
    *,
    proposal_id: str,
    seq: int,
    kind: str,
    idempotency_key: str,
    payload_json: str,
    recorded_at: datetime,
    prev_hash: str,
) -> str:
    material = canonical_json(
        {
            "proposal_id": proposal_id,
            "seq": seq,
            "kind": kind,
            "idempotency_key": idempotency_key,
            "payload": payload_json,
            "recorded_at": timestamp(recorded_at),
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(material.encode()).hexdigest()


def as_utc(moment: datetime) -> datetime:
    """A stored ledger time in UTC: SQLite hands times back without their zone, and they were UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def timestamp(moment: datetime) -> str:
    """The one text form of a ledger time: UTC, microseconds, `Z`."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
