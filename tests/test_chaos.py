"""Faults injected into the real stack: the worker killed again and again, the mail relay down, the Temporal
server killed, the database gone. Each test counts what it checks: every position recorded exactly once,
every email sent exactly once per recipient and step, and the proposal carried through to its outcome."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from temporalio.testing import WorkflowEnvironment

import operations
from devstack.demo import answer, invitations, read_mails, wait_for
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.messages import PositionSubmission, RoundStatus
from models.positions import Position
from models.states import MemberState
from tests.conftest import POSTGRES_URL
from tests.integration import assert_chain_intact, ledger_entries, stack_env, start_worker
from tests.test_integration import focal_points, make_stack, propose_sample
from workflows.common import MAIL_RETRY


def kill(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait()


async def adopted(stack: EmbeddedStack, proposal_id: str) -> None:
    async def done() -> bool:
        return (await operations.status(stack.client, proposal_id)).status.value == "agreed"  # type: ignore[arg-type]

    await wait_for(done, "adoption", timeout=120)


def assert_each_email_once(stack: EmbeddedStack, proposal_id: str) -> Counter[str]:
    """No Message-ID twice and no (recipient, step) twice; returns the count of emails per step kind."""
    assert stack.settings
    mails = read_mails(stack.settings.mail_dir, proposal_id)
    assert len({m.message_id for m in mails}) == len(mails)
    assert len({(m.to, m.step) for m in mails}) == len(mails)
    return Counter("notice" if m.step.startswith("notice-") else m.step for m in mails)


async def test_worker_killed_again_and_again_and_mail_relay_down_lose_and_repeat_nothing(
    tmp_path: Path, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISAFE_ACCEPT_TIMEOUT", "120")
    stack = await make_stack(tmp_path, dev_env, run_worker=False)
    env = stack_env(stack)
    worker = start_worker(env)
    try:
        assert stack.settings and stack.client
        proposal_id = await propose_sample(stack)
        links = focal_points(await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22))
        states = sorted(links)
        kills = 0
        async with httpx.AsyncClient(timeout=180) as http:
            # Three times: answers in flight when the worker is killed; a new worker takes over.
            for batch in (states[0:3], states[3:6], states[6:9]):
                answering = [asyncio.create_task(answer(http, links[s], "approve")) for s in batch]
                await asyncio.sleep(0.3)
                kill(worker)
                kills += 1
                worker = start_worker(env)
                await asyncio.gather(*answering)
            # The mail relay goes away: the answer notices to the other delegates wait and are retried.
            stack.sink.stop()
            for state in states[9:]:
                await answer(http, links[state], "approve")
            await asyncio.sleep(5)
            stack.sink.start()
        await adopted(stack, proposal_id)
        await stack.client.get_workflow_handle(proposal_id).result()

        entries = ledger_entries(stack, proposal_id)
        assert_chain_intact(entries)
        assert kills == 3
        assert [e.kind for e in entries].count("position") == 11  # each state answered once: once in the ledger

        async def notices_arrived() -> bool:
            return assert_each_email_once(stack, proposal_id)["notice"] == 22

        # A notice whose attempts failed on killed workers and on the absent relay waits out its backoff, which grows
        # to MAIL_RETRY's maximum interval: the last may come that long after the relay is back (seen on CI).
        retry_cap = MAIL_RETRY.maximum_interval.total_seconds() if MAIL_RETRY.maximum_interval else 0
        await wait_for(notices_arrived, "the delayed answer notices", timeout=retry_cap + 60)
        sent = assert_each_email_once(stack, proposal_id)
        assert sent["invitation"] == 22  # 11 states × 2 delegates
        # Each answer told to the state's other delegate, and a receipt to the one who answered: once each.
        assert sent["notice"] == 22
    finally:
        worker.kill()
        worker.wait()
        await stack.stop()


def journal_mode(database: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


async def test_temporal_server_killed_mid_round_the_proposal_resumes(tmp_path: Path) -> None:
    stack = EmbeddedStack(
        tmp_path / "data",
        StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port()),
        task_queue=f"aisafe-{uuid.uuid4().hex[:8]}",
    )
    await stack.start()
    try:
        assert stack.settings and stack.client and stack.temporal
        # Persisted, so a restart keeps the proposal; in a write-ahead log (devstack.services.DEV_SERVER_PRAGMAS).
        assert journal_mode(stack.data_dir / "temporal.db") == "wal"
        proposal_id = await propose_sample(stack)
        links = focal_points(await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22))
        states = sorted(links)
        async with httpx.AsyncClient(timeout=180) as http:
            for state in states[:5]:
                await answer(http, links[state], "approve")
            # Killed, not stopped: what the server committed must outlive its process.
            assert stack.temporal.pid is not None
            os.kill(stack.temporal.pid, signal.SIGKILL)
            await asyncio.to_thread(stack.temporal.stop)  # reaps it
            await asyncio.to_thread(stack.temporal.start)
            for state in states[5:]:
                await answer(http, links[state], "approve")
        await adopted(stack, proposal_id)
        entries = ledger_entries(stack, proposal_id)
        assert_chain_intact(entries)
        assert [e.kind for e in entries].count("position") == 11
        assert [e.kind for e in entries].count("round_opened") == 1  # resumed, not restarted
        assert assert_each_email_once(stack, proposal_id)["invitation"] == 22
    finally:
        await stack.stop()


@pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL (AISAFE_TEST_POSTGRES_URL; .ci/run sets it)")
async def test_database_unavailable_ledger_activities_retry_and_catch_up(
    tmp_path: Path, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert POSTGRES_URL
    database = f"chaos_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{database}"
    monkeypatch.setenv("AISAFE_DATABASE_URL", url)

    def outage(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {'false' if on else 'true'}"))
            if on:
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": database}
                )

    stack = await make_stack(tmp_path, dev_env)
    try:
        assert stack.settings and stack.client
        assert stack.settings.sqlalchemy_url == url
        proposal_id = await propose_sample(stack)
        links = focal_points(await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22))
        states = sorted(links)
        async with httpx.AsyncClient(timeout=60) as http:
            for state in states[:4]:
                await answer(http, links[state], "approve")
        status = await operations.status(stack.client, proposal_id)

        # The database goes away while positions keep arriving: the round accepts them; the ledger activity
        # fails, is retried, and records each once the database is back.
        handle = stack.client.get_workflow_handle(f"{proposal_id}.round-1")
        # The round takes answers only from the delegates it invited; the Updates below come from them.
        invited = (await handle.query("status", result_type=RoundStatus)).invited
        outage(True)
        in_flight = [
            asyncio.create_task(
                handle.execute_update(
                    "submit_position",
                    PositionSubmission(
                        proposal_id=proposal_id,
                        round=1,
                        state=MemberState(state),
                        delegate_id=invited[MemberState(state)][0],
                        document_sha256=status.document.sha256,
                        position=Position.APPROVE,
                    ),
                    id=f"chaos-{state}",
                )
            )
            for state in states[4:]
        ]
        async with httpx.AsyncClient(timeout=60) as http:
            meanwhile = await http.get(links[states[5]])
        assert meanwhile.status_code == 503 and "try again" in meanwhile.text  # a clear page, never a 500
        await asyncio.sleep(4)
        assert not any(task.done() for task in in_flight)  # waiting on the ledger, not lost
        outage(False)
        await asyncio.wait_for(asyncio.gather(*in_flight), timeout=120)
        await adopted(stack, proposal_id)
        entries = ledger_entries(stack, proposal_id)
        assert_chain_intact(entries)
        positions = [e for e in entries if e.kind == "position"]
        assert len(positions) == 11
        assert sum(1 for e in positions if ":position:chaos-" in e.idempotency_key) == 7
    finally:
        await stack.stop()
        with admin.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()
