"""The ledger's hash chain: how an entry's hash is computed, so writers and verifiers agree."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from json.encoder import encode_basestring
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
    recorded_at: datetime | str,
    prev_hash: str,
) -> str:
    """The entry's hash. `recorded_at` is the time, or its text as a bundle holds it: text that is not a time
    raises ValueError."""
    material = entry_material(
        proposal_id=proposal_id,
        seq=seq,
        kind=kind,
        idempotency_key=idempotency_key,
        payload_json=payload_json,
        recorded_at=recorded_text(recorded_at),
        prev_hash=prev_hash,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def entry_material(
    *, proposal_id: str, seq: int, kind: str, idempotency_key: str, payload_json: str, recorded_at: str, prev_hash: str
) -> str:
    """What an entry's hash is the SHA-256 of: the canonical JSON of its fields (`recorded_at` as `timestamp`
    writes it)."""
    if type(seq) is int and all(
        type(text) is str for text in (proposal_id, kind, idempotency_key, payload_json, recorded_at, prev_hash)
    ):
        # Byte for byte what `canonical_json` makes of the dict below: keys sorted, no spaces, each string escaped
        # by the function the encoder itself calls with ensure_ascii=False, an int as its `repr`. Written out, it
        # takes 40% of the encoder's time, whose walk over the dict was half of what checking a bundle's ledger
        # cost. Anything else (a bool seq, a str subclass...) takes the encoder's own path.
        return (
            f'{{"idempotency_key":{encode_basestring(idempotency_key)},"kind":{encode_basestring(kind)},'
            f'"payload":{encode_basestring(payload_json)},"prev_hash":{encode_basestring(prev_hash)},'
            f'"proposal_id":{encode_basestring(proposal_id)},"recorded_at":{encode_basestring(recorded_at)},'
            f'"seq":{seq!r}}}'
        )
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


def as_utc(moment: datetime) -> datetime:
    """A stored ledger time in UTC: SQLite hands times back without their zone, and they were UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def timestamp(moment: datetime) -> str:
    """The one text form of a ledger time: UTC, microseconds, `Z`."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Text that `timestamp` could have written (a four-digit year, every field in range) is its own canonical form:
# checking a bundle's hashes need not parse each such time and format it again, a quarter of what the check cost.
_CANONICAL_TIME = re.compile(
    r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z"
)


def recorded_text(recorded_at: datetime | str) -> str:
    """The canonical text of a ledger time, given the time or any text `datetime.fromisoformat` reads (with `Z`
    for UTC); raises ValueError for text that is not a time."""
    if isinstance(recorded_at, str):
        if _CANONICAL_TIME.fullmatch(recorded_at):
            datetime.fromisoformat(recorded_at[:-1])  # the pattern lets February 30th through: this does not
            return recorded_at
        recorded_at = datetime.fromisoformat(recorded_at.replace("Z", "+00:00"))
    return timestamp(recorded_at)


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
