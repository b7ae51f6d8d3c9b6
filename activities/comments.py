"""Comment bodies stored once under their SHA-256, and the consultation's comments as the ledger holds them.

A consultation's workflow keeps counts, not comments: these read and write the ledger on its behalf (in one
transaction per batch), and give the web and the CLI the comments with their bodies.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ledger import append_entry
from models.db import write_session
from models.ledger import as_utc, document_hash
from models.messages import (
    Comment,
    CommentLimits,
    CommentLookup,
    CommentQuery,
    DispositionBatch,
    DispositionsRecorded,
    LedgerAppend,
)
from models.positions import Disposition
from models.settings import Settings
from models.tables import CommentBlob, LedgerEntry


def store_comment_body(engine: Engine, body: str) -> str:
    """Store `body` (idempotent) and return its SHA-256."""
    sha256 = document_hash(body)
    with write_session(engine) as session:
        if session.get(CommentBlob, sha256) is None:
            session.add(CommentBlob(sha256=sha256, body=body, size=len(body.encode("utf-8"))))
            session.commit()
    return sha256


def comment_bodies(session: Session, hashes: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(hashes))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for blob in session.exec(select(CommentBlob).where(col(CommentBlob.sha256).in_(chunk))):
            found[blob.sha256] = blob.body
    return found


def _ledger_comments(session: Session, proposal_id: str, workflow_id: str) -> dict[str, Comment]:
    """Every comment of one consultation (all its runs), with the disposition the ledger holds last."""
    rows = session.exec(
        select(LedgerEntry)
        .where(
            LedgerEntry.proposal_id == proposal_id,
            col(LedgerEntry.kind).in_(("comment", "disposition")),
            col(LedgerEntry.idempotency_key).startswith(f"{workflow_id}:"),
        )
        .order_by(col(LedgerEntry.seq))
    )
    return fold_comments((e.kind, json.loads(e.payload_json), as_utc(e.recorded_at), e.entry_hash) for e in rows)


def fold_comments(entries: Iterable[tuple[str, dict[str, Any], datetime, str]]) -> dict[str, Comment]:
    """Comments from `comment` and `disposition` entries (kind, payload, recorded at, entry hash) in ledger order."""
    comments: dict[str, Comment] = {}
    for kind, payload, recorded_at, digest in entries:
        comment_id = str(payload.get("comment_id"))
        if kind == "comment":
            comments[comment_id] = Comment(
                comment_id=comment_id,
                stakeholder_id=payload["stakeholder_id"],
                sector=payload["sector"],
                text=payload.get("text"),
                text_sha256=payload.get("text_sha256"),
                section=payload.get("section"),
                submitted_at=recorded_at,
                ledger_entry_hash=digest,
            )
        elif kind == "disposition" and (comment := comments.get(comment_id)) is not None:
            comment.disposition = Disposition(payload["disposition"])
            comment.reason = payload.get("reason")
    return comments


def consultation_comments(engine: Engine, proposal_id: str, workflow_id: str) -> list[Comment]:
    """The consultation's comments in the order they were recorded, each with its body."""
    with Session(engine) as session:
        comments = list(_ledger_comments(session, proposal_id, workflow_id).values())
        bodies = comment_bodies(session, (c.text_sha256 for c in comments if c.text_sha256))
    for comment in comments:
        if comment.text is None and comment.text_sha256:
            comment.text = bodies.get(comment.text_sha256)
    return comments


class CommentActivities:
    """The consultation workflow's reads and batch writes of its comments in the ledger."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self._engine = engine

    def activities(self) -> list[object]:
        return [self.comment_limits, self.lookup_comments, self.record_dispositions]

    @activity.defn(name="comment_limits")
    def comment_limits(self) -> CommentLimits:
        return CommentLimits(
            per_link=self._settings.comments_per_link,
            max_chars=self._settings.comment_max_chars,
            events_per_run=self._settings.consultation_events_per_run,
        )

    @activity.defn(name="lookup_comments")
    def lookup_comments(self, query: CommentQuery) -> CommentLookup:
        """The asked-for comments (no bodies) and the ids this consultation does not hold; no ids: only counts."""
        with Session(self._engine) as session:
            return lookup(_ledger_comments(session, query.proposal_id, query.workflow_id), query)

    @activity.defn(name="record_dispositions")
    def record_dispositions(self, batch: DispositionBatch) -> DispositionsRecorded:
        """One `disposition` entry per comment, all or none: the listed ids, or up to `open_limit` open ones."""
        with write_session(self._engine) as session:
            known = _ledger_comments(session, batch.proposal_id, batch.workflow_id)
            entries = disposition_entries(known, batch)
            for entry in entries:
                append_entry(session, entry)
            session.commit()
        return DispositionsRecorded(
            recorded=[str(e.payload["comment_id"]) for e in entries],
            still_open=sum(1 for c in known.values() if c.disposition is None),
        )


def disposition_entries(known: dict[str, Comment], batch: DispositionBatch) -> list[LedgerAppend]:
    """The batch's ledger entries (marking `known` answered); an unknown id refuses the whole batch."""
    if batch.comment_ids:
        unknown = [i for i in batch.comment_ids if i not in known]
        if unknown:
            raise ApplicationError(
                f"no comment {unknown[0]!r} in this consultation", type="UnknownComment", non_retryable=True
            )
        ids = batch.comment_ids
    else:
        ids = [i for i, c in known.items() if c.disposition is None][: batch.open_limit]
    entries = []
    for comment_id in ids:
        entries.append(
            LedgerAppend(
                proposal_id=batch.proposal_id,
                kind="disposition",
                idempotency_key=f"{batch.workflow_id}:disposition:{batch.update_id}:{comment_id}",
                payload={"comment_id": comment_id, "disposition": batch.disposition.value, "reason": batch.reason},
            )
        )
        known[comment_id].disposition = batch.disposition
    return entries


def lookup(known: dict[str, Comment], query: CommentQuery) -> CommentLookup:
    return CommentLookup(
        comments=[known[i] for i in query.comment_ids if i in known],
        unknown=[i for i in query.comment_ids if i not in known],
        still_open=sum(1 for c in known.values() if c.disposition is None),
        dispositions=dict(Counter(str(c.disposition) for c in known.values() if c.disposition is not None)),
    )
