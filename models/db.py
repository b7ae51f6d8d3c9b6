"""Database engines for SQLite (default) and PostgreSQL, and the ledger schema's migrations.

Alembic owns the schema: the scripts live in `models/migrations` (shipped with the package, no alembic.ini).
After changing `models/tables.py`, write the next revision and review it:
    .venv/bin/python -c "from models.db import *; new_revision(make_engine('sqlite:///rev.db'), 'what changed')"
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, inspect, text
from sqlmodel import Session, SQLModel, create_engine

from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

_WRITE = "aisafe_write"
# How the stack's SQLite files are kept, the ledger's and the Temporal dev server's (devstack/services.py): a
# write-ahead log, synced at checkpoints. A commit survives any crash of a process; only an operating-system crash
# or a power cut can lose the last ones.
SQLITE_JOURNAL = {"journal_mode": "WAL", "synchronous": "NORMAL"}
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# One PostgreSQL advisory lock key for "the ledger schema is being migrated" (the bytes of "aisafe").
MIGRATION_LOCK = 0x616973616665
# Alembic keeps its running context in module globals, so threads of one process migrate one at a time too.
_IN_PROCESS = threading.Lock()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, and immediate transactions for writers."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let the "begin" hook below open transactions
            cursor = dbapi_connection.cursor()
            for name, value in SQLITE_JOURNAL.items():
                cursor.execute(f"PRAGMA {name}={value}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            # Writers take the write lock up front and queue (busy_timeout); readers never wait in WAL mode.
            immediate = connection.get_execution_options().get(_WRITE, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def write_session(engine: Engine) -> Session:
    """A session that writes: on SQLite it takes the write lock when it begins, so writers queue, never fail."""
    return Session(engine.execution_options(**{_WRITE: True}))


@dataclass(frozen=True)
class Upgrade:
    before: str | None
    after: str | None
    adopted: bool
    """The database had the ledger's tables but no migration history: made by `create_all` before migrations."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code; env.py runs the migrations on `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database or one made before migrations."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that holds the right to migrate, so processes starting together migrate one at a time.

    PostgreSQL: an advisory lock released at commit. SQLite: BEGIN IMMEDIATE (make_engine's write option), which
    takes the write lock up front; the others wait on busy_timeout. Both run DDL inside the transaction, so the
    one that waited finds the schema at head and does nothing.
    """
    with _IN_PROCESS, engine.execution_options(**{_WRITE: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        yield connection


def upgrade_db(engine: Engine) -> Upgrade:
    """Migrate the database to the newest revision; a ledger made by `create_all` before migrations is adopted.

    Adoption: the initial revision keeps every table it finds (rows and all), creates those missing and records
    itself, which is a stamp that also fills gaps; later revisions then run as usual.
    """
    with _migration_transaction(engine) as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        adopted = before is None and bool(set(inspect(connection).get_table_names()) & set(SQLModel.metadata.tables))
        command.upgrade(alembic_config(connection), "head")
        after = MigrationContext.configure(connection).get_current_revision()
    return Upgrade(before=before, after=after, adopted=adopted)


def init_db(engine: Engine) -> None:
    """Bring the schema to head; called by every process at start, so a database already there costs one read."""
    if current_revision(engine) != head_revision():
        upgrade_db(engine)


def new_revision(engine: Engine, message: str) -> None:
    """Write the next migration script from what the models have that `engine`'s database (at head) lacks."""
    init_db(engine)
    with engine.connect() as connection:
        command.revision(
            alembic_config(connection), message, autogenerate=True, rev_id=f"{int(head_revision() or 0) + 1:04d}"
        )
