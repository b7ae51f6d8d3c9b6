"""Alembic owns the ledger schema on SQLite and PostgreSQL: from empty, again, over an older database, by the CLI."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, event, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from models.db import MIGRATION_LOCK, current_revision, head_revision, init_db, make_engine, upgrade_db, write_session
from models.tables import DocumentBlob, DocumentVersion, ProposalRecord, UserAccount
from tests.integration import AISAFE, cli


@pytest.fixture
def empty_engine(any_engine: Engine) -> Engine:
    """The `any_engine` database (a SQLite file, or a PostgreSQL schema of its own) with every table dropped."""
    present = MetaData()
    present.reflect(any_engine)
    present.drop_all(any_engine)
    assert inspect(any_engine).get_table_names() == []
    return any_engine


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)


def cli_env(engine: Engine, data_dir: Path) -> dict[str, str]:
    """The environment that points the CLI at `engine`'s database (on PostgreSQL, at its schema)."""
    url = engine.url
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return {**os.environ, "AISAFE_DATA_DIR": str(data_dir), "AISAFE_DATABASE_URL": url.render_as_string(False)}


def add_proposal_with_document(engine: Engine, proposal_id: str) -> None:
    with write_session(engine) as session:
        session.add(ProposalRecord(id=proposal_id, title="Framework", kind="operational_framework", lead_state="MY"))
        session.add(DocumentBlob(sha256="a" * 64, body="# Framework", size=11))
        session.commit()
        session.add(DocumentVersion(proposal_id=proposal_id, version=1, sha256="a" * 64, filename="framework.md"))
        session.commit()


def test_upgrade_from_empty_gives_the_models_schema(empty_engine: Engine) -> None:
    result = upgrade_db(empty_engine)

    assert (result.before, result.after, result.adopted) == (None, head_revision(), False)
    assert schema_differences(empty_engine) == []
    # The version table is in the database's own schema (on PostgreSQL: the first on the search path).
    assert set(inspect(empty_engine).get_table_names()) == {*SQLModel.metadata.tables, "alembic_version"}
    # The comparison has teeth: an index gone missing is reported.
    with empty_engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_ledger_entry_proposal_id"))
    assert [diff[0] for diff in schema_differences(empty_engine)] == ["add_index"]


def test_constraints_of_the_migrated_schema_hold(empty_engine: Engine) -> None:
    upgrade_db(empty_engine)
    add_proposal_with_document(empty_engine, "p-1")

    with pytest.raises(IntegrityError), write_session(empty_engine) as session:  # unique (proposal_id, version)
        session.add(DocumentVersion(proposal_id="p-1", version=1, sha256="a" * 64, filename="again.md"))
        session.commit()
    with pytest.raises(IntegrityError), write_session(empty_engine) as session:  # foreign key to document_blob
        session.add(DocumentVersion(proposal_id="p-1", version=2, sha256="b" * 64, filename="orphan.md"))
        session.commit()


def test_upgrading_twice_changes_nothing(empty_engine: Engine) -> None:
    upgrade_db(empty_engine)
    add_proposal_with_document(empty_engine, "p-1")

    again = upgrade_db(empty_engine)
    init_db(empty_engine)

    assert (again.before, again.after, again.adopted) == (head_revision(), head_revision(), False)
    assert schema_differences(empty_engine) == []
    with Session(empty_engine) as session:
        assert session.exec(select(ProposalRecord.id)).all() == ["p-1"]


def test_a_database_at_head_costs_init_db_reads_only(empty_engine: Engine) -> None:
    init_db(empty_engine)
    statements: list[str] = []
    event.listen(empty_engine, "before_cursor_execute", lambda _c, _k, sql, *_: statements.append(sql.upper()))

    init_db(empty_engine)

    assert statements, "init_db must look at the database"
    assert not [sql for sql in statements if sql.lstrip().startswith(("CREATE", "ALTER", "INSERT", "UPDATE"))]
    assert not [sql for sql in statements if "ADVISORY" in sql]


def test_a_database_made_by_create_all_is_adopted_with_its_rows(empty_engine: Engine) -> None:
    SQLModel.metadata.create_all(empty_engine)  # what init_db did before migrations
    add_proposal_with_document(empty_engine, "p-old")
    assert current_revision(empty_engine) is None

    result = upgrade_db(empty_engine)

    assert (result.before, result.after, result.adopted) == (None, head_revision(), True)
    assert current_revision(empty_engine) == head_revision()
    assert schema_differences(empty_engine) == []
    with Session(empty_engine) as session:
        assert session.exec(select(ProposalRecord.id)).all() == ["p-old"]
        assert [v.filename for v in session.exec(select(DocumentVersion))] == ["framework.md"]


def test_adoption_creates_the_tables_an_old_database_lacks(empty_engine: Engine) -> None:
    # A ledger made by create_all before the user accounts existed (and so before the tables added since).
    newer = {"user_account", "web_session", "comment_blob"}
    older = [table for name, table in SQLModel.metadata.tables.items() if name not in newer]
    SQLModel.metadata.create_all(empty_engine, tables=older)
    add_proposal_with_document(empty_engine, "p-old")

    init_db(empty_engine)  # the path every process takes at start

    assert current_revision(empty_engine) == head_revision()
    assert schema_differences(empty_engine) == []
    with write_session(empty_engine) as session:
        session.add(UserAccount(name="Audit Office", role="auditor", token_hash="c" * 64, created_at=datetime.now(UTC)))
        session.commit()
        assert session.exec(select(ProposalRecord.id)).all() == ["p-old"]


def test_a_migration_waits_for_the_one_under_way(empty_engine: Engine) -> None:
    with write_session(empty_engine) as other:  # another process migrating: it holds the migration lock
        other.connection()  # SQLite: BEGIN IMMEDIATE, the write lock
        if empty_engine.dialect.name == "postgresql":
            other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(upgrade_db, empty_engine)
            time.sleep(1)
            assert not waiting.done()
            other.rollback()
            result = waiting.result(timeout=30)

    assert (result.before, result.after) == (None, head_revision())
    assert schema_differences(empty_engine) == []


def test_cli_db_upgrade_prints_the_revisions(empty_engine: Engine, tmp_path: Path) -> None:
    env = cli_env(empty_engine, tmp_path)
    head = head_revision()

    # Two processes at once, as a worker and the web app starting together: both succeed, one creates.
    started = [
        subprocess.Popen([AISAFE, "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=60) for process in started]
    assert [process.returncode for process in started] == [0, 0], outputs
    endings = sorted(stdout.strip().rsplit(": ", 1)[-1] for stdout, _ in outputs)
    assert endings == sorted([f"revision none -> {head} (created)", f"revision {head} -> {head} (already the newest)"])

    again = cli("db", "upgrade", "--json", env=env)
    assert again.code == 0, again.stderr
    assert again.json() | {"database": None} == {"database": None, "before": head, "after": head, "adopted": False}
    current = cli("db", "current", "--json", env=env)
    assert current.code == 0, current.stderr
    assert (current.json()["current"], current.json()["up_to_date"]) == (head, True)
    assert schema_differences(empty_engine) == []


def test_cli_db_upgrade_adopts_a_data_dir_made_before_migrations(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AISAFE_DATABASE_URL"}
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'aisafe.db'}")  # the default database in the data dir
    SQLModel.metadata.create_all(engine)
    add_proposal_with_document(engine, "p-old")

    before = cli("db", "current", "--data-dir", str(tmp_path / "data"), env=env)
    assert before.code == 0, before.stderr
    assert f"revision none (newest {head_revision()}; run `aisafe db upgrade`)" in before.stdout

    adopted = cli("db", "upgrade", "--data-dir", str(tmp_path / "data"), env=env)
    assert adopted.code == 0, adopted.stderr
    assert f"revision none -> {head_revision()} (adopted" in adopted.stdout
    assert current_revision(engine) == head_revision()
    with Session(engine) as session:
        assert session.exec(select(ProposalRecord.id)).all() == ["p-old"]
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://aisafe:s3cret@127.0.0.1:1/aisafe",
            "error: cannot open the database postgresql://aisafe:***@127.0.0.1:1/aisafe: connection failed",
        ),
        ("not a url", "error: AISAFE_DATABASE_URL is not a database URL"),
        ("oracle2://db/aisafe", "error: cannot open the database oracle2://db/aisafe: Can't load plugin"),
    ],
)
def test_cli_bad_database_url_is_one_line_and_exit_2(url: str, message: str, tmp_path: Path) -> None:
    env = {**os.environ, "AISAFE_DATA_DIR": str(tmp_path), "AISAFE_DATABASE_URL": url}
    for command in ("upgrade", "current"):
        result = cli("db", command, env=env)
        assert result.code == 2, result
        assert result.stderr.startswith(message), result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "s3cret" not in result.stderr


def test_0004_seeds_the_member_states_and_keeps_admissions(empty_engine: Engine) -> None:
    from alembic import command

    from models.db import alembic_config
    from models.membership import admit, members
    from models.states import MEMBER_SINCE, MemberState
    from models.tables import MembershipRecord

    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0003")
    assert "member_state" not in inspect(empty_engine).get_table_names()
    # Before 0004 the built-in dates stand.
    assert {m.code: m.member_since for m in members(empty_engine)} == {s.value: d for s, d in MEMBER_SINCE.items()}

    upgrade_db(empty_engine)

    assert schema_differences(empty_engine) == []
    with Session(empty_engine) as session:
        rows = {r.code: (r.name, r.member_since) for r in session.exec(select(MembershipRecord))}
    assert rows == {s.value: (s.official_name, d) for s, d in MEMBER_SINCE.items()}
    admit(empty_engine, "TL", None, "2025-11-01")
    admit(empty_engine, "QT", "Quux Tee", "2030-01-01")
    with empty_engine.begin() as connection:  # 0004 run again over its own table: it adds only what is missing
        connection.execute(text("UPDATE alembic_version SET version_num = '0003'"))
        connection.execute(text("DELETE FROM member_state WHERE code = 'SG'"))
    upgrade_db(empty_engine)
    with Session(empty_engine) as session:
        rows = {r.code: r.member_since for r in session.exec(select(MembershipRecord))}
    assert len(rows) == len(MEMBER_SINCE) + 1 and rows["SG"] == MEMBER_SINCE[MemberState.SG]
    assert rows["TL"] == date(2025, 11, 1) and rows["QT"] == date(2030, 1, 1)  # admissions are kept


def test_0004_seeds_a_member_state_table_create_all_left_empty(empty_engine: Engine) -> None:
    from models.tables import MembershipRecord

    SQLModel.metadata.create_all(empty_engine)  # adoption: the table exists, empty

    upgrade_db(empty_engine)

    with Session(empty_engine) as session:
        assert len(session.exec(select(MembershipRecord)).all()) == 11
