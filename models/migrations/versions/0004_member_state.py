"""Membership as data: the member states and the day each one's membership took effect, seeded from
models/states.py MEMBER_SINCE.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The founding data as of this revision, written out so that a later change to models/states.py cannot change
# what this migration did.
SEED: list[tuple[str, str, date]] = [
    ("BN", "Brunei Darussalam", date(1984, 1, 7)),
    ("KH", "Cambodia", date(1999, 4, 30)),
    ("ID", "Indonesia", date(1967, 8, 8)),
    ("LA", "Lao PDR", date(1997, 7, 23)),
    ("MY", "Malaysia", date(1967, 8, 8)),
    ("MM", "Myanmar", date(1997, 7, 23)),
    ("PH", "Philippines", date(1967, 8, 8)),
    ("SG", "Singapore", date(1967, 8, 8)),
    ("TH", "Thailand", date(1967, 8, 8)),
    ("TL", "Timor-Leste", date(2025, 10, 26)),
    ("VN", "Viet Nam", date(1995, 7, 28)),
]


def upgrade() -> None:
    # As in 0001: a database made by create_all from these models already has the table, and keeps its rows.
    if "member_state" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "member_state",
            sa.Column("code", sa.String(length=2), nullable=False),
            sa.Column("name", sa.String(length=100), nullable=False),
            sa.Column("member_since", sa.Date(), nullable=False),
            sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("code"),
        )
    table = sa.table(
        "member_state",
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("member_since", sa.Date),
        sa.column("admitted_at", sa.DateTime(timezone=True)),
    )
    present = {row[0] for row in op.get_bind().execute(sa.select(table.c.code))}
    now = datetime.now(UTC)
    rows = [
        {"code": code, "name": name, "member_since": since, "admitted_at": now}
        for code, name, since in SEED
        if code not in present
    ]
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("member_state")
