"""Helpers for integration tests: the embedded stack on the shared dev server, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from devstack.stack import EmbeddedStack
from models.ledger import GENESIS_HASH, entry_hash
from models.tables import LedgerEntry

AISAFE = str(Path(sys.executable).parent / "aisafe")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`aisafe worker` as its own process, for tests that kill it."""
    return subprocess.Popen(
        [AISAFE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )


def stack_env(stack: EmbeddedStack) -> dict[str, str]:
    assert stack.settings is not None
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": str(stack.settings.temporal_address),
        "AISAFE_DATA_DIR": str(stack.data_dir),
        "AISAFE_TASK_QUEUE": stack.task_queue,
        "AISAFE_SMTP_PORT": str(stack.ports.smtp),
        "AISAFE_WEB_PORT": str(stack.ports.web),
        "AISAFE_DEV": "1",
        "AISAFE_LOG_FORMAT": "json",
    }


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> CliResult:
    done = subprocess.run(
        [AISAFE, *args], capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


async def acli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> CliResult:
    """The CLI run off the event loop, so an in-process worker can keep answering it."""
    return await asyncio.to_thread(cli, *args, env=env, timeout=timeout)


def ledger_entries(stack: EmbeddedStack, proposal_id: str) -> list[LedgerEntry]:
    from models.db import make_engine

    assert stack.settings is not None
    engine = make_engine(stack.settings.sqlalchemy_url)
    with Session(engine) as session:
        entries = list(
            session.exec(select(LedgerEntry).where(LedgerEntry.proposal_id == proposal_id).order_by(LedgerEntry.seq))
        )
    engine.dispose()
    return entries


def assert_chain_intact(entries: list[LedgerEntry]) -> None:
    previous = GENESIS_HASH
    for number, entry in enumerate(entries, start=1):
        assert entry.seq == number
        assert entry.prev_hash == previous
        assert entry.entry_hash == entry_hash(
            proposal_id=entry.proposal_id,
            seq=entry.seq,
            kind=entry.kind,
            idempotency_key=entry.idempotency_key,
            payload_json=entry.payload_json,
            recorded_at=entry.recorded_at,
            prev_hash=entry.prev_hash,
        )
        previous = entry.entry_hash


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database on CI's server (skips the test when AISAFE_TEST_POSTGRES_URL is not set)."""
    import pytest
    from sqlalchemy import create_engine, text

    base = os.environ.get("AISAFE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("AISAFE_TEST_POSTGRES_URL is not set")
    name = f"it_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@asynccontextmanager
async def embedded_stack(data_dir: Path, temporal_address: str) -> AsyncIterator[EmbeddedStack]:
    """The embedded stack (web, SMTP sink, worker, codec on) on a running Temporal server, a task queue of its own."""
    from devstack.services import free_port
    from devstack.stack import StackPorts

    running = EmbeddedStack(
        data_dir,
        StackPorts(web=free_port(), temporal=0, ui=None, smtp=free_port()),
        temporal_address=temporal_address,
        task_queue=f"aisafe-{uuid.uuid4().hex[:8]}",
    )
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
