"""The ledger's hash chain: how an entry's hash is computed, so writers and verifiers agree."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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
            "recorded_at": recorded_at.isoformat(),
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(material.encode()).hexdigest()


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
