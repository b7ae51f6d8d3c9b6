"""SQLModel tables: the roster, proposals, content-addressed documents and comments, the ledger, the email outbox,
users, and their web sessions.

Table objects and sessions stay inside activities, the web layer and the CLI; workflows see plain models.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Column, DateTime, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class DelegateRecord(SQLModel, table=True):
    __tablename__ = "delegate"

    id: str = Field(primary_key=True, description="models.roster.delegate_id(state, email)")
    state: str | None = Field(default=None, index=True, max_length=2, description="None for stakeholders")
    role: str = Field(index=True)
    name: str
    email: str
    timezone: str
    sector: str | None = None
    organisation: str | None = None
    active: bool = True
    updated_at: datetime = Field(default_factory=utcnow)


class ProposalRecord(SQLModel, table=True):
    __tablename__ = "proposal"

    id: str = Field(primary_key=True)
    title: str
    kind: str
    lead_state: str
    created_at: datetime = Field(default_factory=utcnow)


class DocumentBlob(SQLModel, table=True):
    """A document body stored once under its SHA-256."""

    __tablename__ = "document_blob"

    sha256: str = Field(primary_key=True, max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    size: int
    created_at: datetime = Field(default_factory=utcnow)


class DocumentVersion(SQLModel, table=True):
    __tablename__ = "document_version"
    __table_args__ = (UniqueConstraint("proposal_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: str = Field(index=True)
    version: int
    sha256: str = Field(foreign_key="document_blob.sha256")
    filename: str
    uploaded_at: datetime = Field(default_factory=utcnow)


class LedgerEntry(SQLModel, table=True):
    """One append-only audit record; `entry_hash` chains it to the proposal's previous entry."""

    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("proposal_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: str = Field(index=True)
    seq: int
    kind: str
    idempotency_key: str = Field(unique=True)
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64)


class SentEmail(SQLModel, table=True):
    """The outbox record that makes sending idempotent per (workflow, step, recipient)."""

    __tablename__ = "sent_email"

    idempotency_key: str = Field(primary_key=True)
    message_id: str
    proposal_id: str = Field(index=True)
    delegate_id: str
    step: str
    sent_at: datetime = Field(default_factory=utcnow)


class UserAccount(SQLModel, table=True):
    """A coordinator or auditor of the web app; only the SHA-256 of their API token is kept."""

    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=100)
    role: str = Field(max_length=20)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class WebSession(SQLModel, table=True):
    """A signed-in browser's session. The cookie carries a random id and only its SHA-256 is kept here, so a copy
    of the database signs nobody in; sign-out or an operator's revocation ends it at once."""

    __tablename__ = "web_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class CommentBlob(SQLModel, table=True):
    """A comment body stored once under its SHA-256; workflows and their histories carry only the hash."""

    __tablename__ = "comment_blob"

    sha256: str = Field(primary_key=True, max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    size: int
    created_at: datetime = Field(default_factory=utcnow)


class MembershipRecord(SQLModel, table=True):
    """A member state of ASEAN and the day its membership took effect (models/membership.py reads it)."""

    __tablename__ = "member_state"

    code: str = Field(primary_key=True, max_length=2, description="ISO 3166-1 alpha-2, e.g. TL")
    name: str = Field(max_length=100, description="the English name ASEAN lists it by, e.g. Timor-Leste")
    member_since: date
    admitted_at: datetime = Field(default_factory=utcnow, description="when this row was written")
