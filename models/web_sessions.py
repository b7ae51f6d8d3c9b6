"""Server-side sessions of the web app: opened at sign-in, ended at sign-out, revocable by an operator.

The cookie carries a random id; the database keeps only its SHA-256, so neither a copy of the database nor a
leaked backup can sign anyone in, and a cookie stops working the moment its row is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, update
from sqlmodel import Session, select

from models.db import write_session
from models.ledger import as_utc
from models.tables import UserAccount, WebSession
from models.users import UserError

SESSION_MAX_AGE = timedelta(hours=12)


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(engine: Engine, user: UserAccount, max_age: timedelta = SESSION_MAX_AGE) -> str:
    """A new session for `user`; returns the id for the cookie (it is not kept)."""
    assert user.id is not None, "a stored account"
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with write_session(engine) as session:
        # Rows past their expiry are of no use to anyone: dropping them here keeps the table bounded.
        session.exec(delete(WebSession).where(WebSession.expires_at < now))  # type: ignore[call-overload, arg-type]
        session.add(WebSession(id_hash=_id_hash(session_id), user_id=user.id, created_at=now, expires_at=now + max_age))
        session.commit()
    return session_id


def session_user(engine: Engine, session_id: str) -> UserAccount | None:
    """The active account of a live (not expired, not revoked) session, if any."""
    if not session_id or len(session_id) > 100:
        return None
    with Session(engine) as session:
        row = session.get(WebSession, _id_hash(session_id))
        if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= datetime.now(UTC):
            return None
        user = session.get(UserAccount, row.user_id)
    return user if user is not None and user.revoked_at is None else None


def end_session(engine: Engine, session_id: str) -> None:
    """Sign-out: the session is revoked, so a copy of its cookie no longer works."""
    with write_session(engine) as session:
        session.exec(
            update(WebSession)  # type: ignore[call-overload]
            .where(WebSession.id_hash == _id_hash(session_id), WebSession.revoked_at.is_(None))  # type: ignore[union-attr]
            .values(revoked_at=datetime.now(UTC))
        )
        session.commit()


def revoke_sessions(engine: Engine, name: str) -> int:
    """An operator ends every live session of the user called `name` (their API token stays valid); returns how
    many were ended."""
    now = datetime.now(UTC)
    with write_session(engine) as session:
        user = session.exec(select(UserAccount).where(UserAccount.name == name)).first()
        if user is None:
            raise UserError(f"no user named {name!r}")
        result = session.exec(
            update(WebSession)  # type: ignore[call-overload]
            .where(
                WebSession.user_id == user.id,
                WebSession.revoked_at.is_(None),  # type: ignore[union-attr]
                WebSession.expires_at > now,  # type: ignore[arg-type]
            )
            .values(revoked_at=now)
        )
        session.commit()
    return int(result.rowcount)
