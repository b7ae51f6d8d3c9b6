"""Content-addressed document store: a version's body is kept once under its SHA-256."""

from __future__ import annotations

from sqlalchemy import Engine

from models.db import write_session
from models.ledger import document_hash
from models.tables import DocumentBlob


def store_document(engine: Engine, body: str) -> str:
    """Store `body` (idempotent) and return its SHA-256."""
    sha256 = document_hash(body)
    with write_session(engine) as session:
        if session.get(DocumentBlob, sha256) is None:
            session.add(DocumentBlob(sha256=sha256, body=body, size=len(body.encode("utf-8"))))
            session.commit()
    return sha256
