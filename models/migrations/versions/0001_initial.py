"""The initial ledger schema: roster, proposals, documents, ledger, email outbox, user accounts.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A ledger made by SQLModel's create_all before migrations existed is adopted: the tables it already has stay
    # as they are, rows and all (create_all made them from these same models); only the missing ones are created.
    present = set(sa.inspect(op.get_bind()).get_table_names())

    if "delegate" not in present:
        op.create_table(
            "delegate",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("state", sa.String(length=2), nullable=True),
            sa.Column("role", sa.String(), nullable=False),
            sa.Column("name", sa.String(), nullable=False),
            sa.Column("email", sa.String(), nullable=False),
            sa.Column("timezone", sa.String(), nullable=False),
            sa.Column("sector", sa.String(), nullable=True),
            sa.Column("organisation", sa.String(), nullable=True),
            sa.Column("active", sa.Boolean(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_delegate_role", "delegate", ["role"], unique=False)
        op.create_index("ix_delegate_state", "delegate", ["state"], unique=False)

    if "proposal" not in present:
        op.create_table(
            "proposal",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("title", sa.String(), nullable=False),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("lead_state", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )

    if "document_blob" not in present:
        op.create_table(
            "document_blob",
            sa.Column("sha256", sa.String(length=64), nullable=False),
            sa.Column("body", sa.Text(), nullable=False),
            sa.Column("size", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("sha256"),
        )

    if "document_version" not in present:
        op.create_table(
            "document_version",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("proposal_id", sa.String(), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("sha256", sa.String(), nullable=False),
            sa.Column("filename", sa.String(), nullable=False),
            sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["sha256"], ["document_blob.sha256"]),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("proposal_id", "version"),
        )
        op.create_index("ix_document_version_proposal_id", "document_version", ["proposal_id"], unique=False)

    if "ledger_entry" not in present:
        op.create_table(
            "ledger_entry",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("proposal_id", sa.String(), nullable=False),
            sa.Column("seq", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("idempotency_key", sa.String(), nullable=False),
            sa.Column("payload_json", sa.Text(), nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("prev_hash", sa.String(length=64), nullable=False),
            sa.Column("entry_hash", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("idempotency_key"),
            sa.UniqueConstraint("proposal_id", "seq"),
        )
        op.create_index("ix_ledger_entry_proposal_id", "ledger_entry", ["proposal_id"], unique=False)

    if "sent_email" not in present:
        op.create_table(
            "sent_email",
            sa.Column("idempotency_key", sa.String(), nullable=False),
            sa.Column("message_id", sa.String(), nullable=False),
            sa.Column("proposal_id", sa.String(), nullable=False),
            sa.Column("delegate_id", sa.String(), nullable=False),
            sa.Column("step", sa.String(), nullable=False),
            sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("idempotency_key"),
        )
        op.create_index("ix_sent_email_proposal_id", "sent_email", ["proposal_id"], unique=False)

    if "user_account" not in present:
        op.create_table(
            "user_account",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("name", sa.String(length=100), nullable=False),
            sa.Column("role", sa.String(length=20), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("token_hash"),
        )
        op.create_index("ix_user_account_name", "user_account", ["name"], unique=True)


def downgrade() -> None:
    op.drop_table("user_account")
    op.drop_table("sent_email")
    op.drop_table("ledger_entry")
    op.drop_table("document_version")
    op.drop_table("document_blob")
    op.drop_table("proposal")
    op.drop_table("delegate")
