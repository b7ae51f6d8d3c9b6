"""Coordinator, auditor and ASEAN Secretariat accounts of the web app: API tokens, shown once and stored only as a hash.

Delegates never need an account: their signed email links are their identity.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from models.db import write_session
from models.settings import write_secret
from models.tables import UserAccount

TOKEN_PREFIX = "aisafe_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$")


class UserRole(StrEnum):
    COORDINATOR = "coordinator"
    AUDITOR = "auditor"
    # Reads the dashboard and the audit record, acts on nothing (issue 18).
    ASEAN_SECRETARIAT = "asean_secretariat"


class UserError(ValueError):
    """A user operation that cannot be done as asked (bad name, taken name, unknown user)."""


def token_hash(token: str) -> str:
    # The token is 256 random bits, so a plain SHA-256 cannot be brute-forced; no slow hash is needed.
    return hashlib.sha256(token.strip().encode()).hexdigest()


def add_user(engine: Engine, name: str, role: UserRole) -> str:
    """Create an account and return its API token, which is not kept and cannot be shown again."""
    if not NAME.match(name):
        raise UserError(f"a user name is 1-100 letters, digits, spaces or ._@-, not {name!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with write_session(engine) as session:
        if session.exec(select(UserAccount).where(UserAccount.name == name)).first() is not None:
            raise UserError(f"there is already a user named {name!r} (revoke it first to issue a new token)")
        session.add(UserAccount(name=name, role=role.value, token_hash=token_hash(token)))
        session.commit()
    return token


def find_user(engine: Engine, token: str) -> UserAccount | None:
    """The active account the token belongs to, if any."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with Session(engine) as session:
        user = session.exec(select(UserAccount).where(UserAccount.token_hash == token_hash(token))).first()
    return user if user is not None and user.revoked_at is None else None


def user_by_id(engine: Engine, user_id: int) -> UserAccount | None:
    with Session(engine) as session:
        user = session.get(UserAccount, user_id)
    return user if user is not None and user.revoked_at is None else None


def revoke_user(engine: Engine, name: str) -> None:
    """Revoke an account: its token and sessions stop working at once; the name is freed for a new account."""
    with write_session(engine) as session:
        user = session.exec(select(UserAccount).where(UserAccount.name == name)).first()
        if user is None:
            raise UserError(f"no user named {name!r}")
        # Keep the row for the record, under a name that frees the original for a new account.
        user.name = f"{name} (revoked {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ})"[:100]
        user.revoked_at = datetime.now(UTC)
        session.add(user)
        session.commit()


def list_users(engine: Engine) -> list[UserAccount]:
    with Session(engine) as session:
        return list(session.exec(select(UserAccount).order_by(UserAccount.id)))  # type: ignore[arg-type]


def dev_coordinator_token(engine: Engine, data_dir: Path) -> str:
    """Dev mode only: the token of a 'dev coordinator' account, kept in the data dir so each `aisafe dev`
    can print it."""
    path = data_dir / "dev-coordinator.token"
    if path.exists() and find_user(engine, path.read_text().strip()) is not None:
        return path.read_text().strip()
    name = "dev coordinator"
    if any(u.name == name for u in list_users(engine)):
        revoke_user(engine, name)
    token = add_user(engine, name, UserRole.COORDINATOR)
    write_secret(path, token)
    return token
