"""A hypothesis state machine interleaving the proposal's coordinator Updates on the real dev server.

Each step sends a batch of Updates at once (revisions, pledges, submissions, withdrawals) to one proposal, with
the real ledger (SQLite) behind activities that wait a drawn moment before writing, so their writes finish in
every order. After each batch: every accepted Update has exactly one ledger entry with its content, every entry
has its Update, versions and pledges are numbered without gaps or repeats, and the status agrees.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.documents import store_document
from activities.ledger import LedgerActivities
from devstack.services import start_dev_environment
from models.db import init_db, make_engine
from models.messages import (
    DocumentRef,
    LedgerAppend,
    LedgerReceipt,
    Pledge,
    ProposalInput,
    RevisionInput,
    WithdrawInput,
)
from models.process import DraftingStage, FundingStage, ProcessDefinition
from models.states import MemberState
from models.tables import LedgerEntry
from tests.fakes import FakeBackend
from workflows.consultation import ConsultationWorkflow
from workflows.meeting import MeetingWorkflow
from workflows.proposal import ProposalWorkflow
from workflows.review_round import ReviewRoundWorkflow

T = TypeVar("T")


class Loop:
    """One event loop in a thread of its own, holding the dev server, a client and a worker for the whole module:
    hypothesis drives the state machine synchronously, one step at a time."""

    def __init__(self, data: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.engine = make_engine(f"sqlite:///{data / 'ledger.db'}")
        init_db(self.engine)
        self.task_queue = f"tq-{uuid.uuid4()}"
        self.delays: list[float] = [0.0]
        self.env: WorkflowEnvironment = self.run(self._start())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)

    async def _start(self) -> WorkflowEnvironment:
        env: WorkflowEnvironment = await start_dev_environment()
        self.worker = Worker(
            env.client,
            task_queue=self.task_queue,
            workflows=[ProposalWorkflow, ReviewRoundWorkflow, ConsultationWorkflow, MeetingWorkflow],
            activities=[*self._ledger(), *[a for a in FakeBackend().activities() if _name(a) not in _LEDGER]],
            activity_executor=ThreadPoolExecutor(8),
        )
        self.worker_task = asyncio.create_task(self.worker.run())
        return env

    def _ledger(self) -> list[Any]:
        """The real ledger activities, each waiting a drawn moment first so concurrent writes finish in any order."""
        real = LedgerActivities(self.engine)

        async def pause() -> None:
            await asyncio.sleep(self.delays[hash(activity.info().activity_id) % len(self.delays)])

        @activity.defn(name="append_ledger")
        async def append_ledger(entry: LedgerAppend) -> LedgerReceipt:
            await pause()
            return await asyncio.to_thread(real.append_ledger, entry)

        @activity.defn(name="record_version")
        async def record_version(entry: LedgerAppend) -> LedgerReceipt:
            await pause()
            return await asyncio.to_thread(real.record_version, entry)

        @activity.defn(name="register_proposal")
        async def register_proposal(proposal: ProposalInput) -> LedgerReceipt:
            return await asyncio.to_thread(real.register_proposal, proposal)

        return [append_ledger, record_version, register_proposal]

    def close(self) -> None:
        async def stop() -> None:
            await self.worker.shutdown()
            await self.env.shutdown()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.engine.dispose()


_LEDGER = ("append_ledger", "register_proposal", "record_version")


def _name(fn: Any) -> str:
    return str(getattr(fn, "__temporal_activity_definition").name)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    runner = Loop(tmp_path_factory.mktemp("interleavings"))
    yield runner
    runner.close()


@dataclass
class Sent:
    kind: str
    arg: Any
    result: Any


def _stored(engine: Engine, n: int) -> str:
    """Text number n, stored as the CLI stores a document before it sends the Update."""
    return store_document(engine, f"# Text {n}\n")


def _text(engine: Engine, n: int) -> RevisionInput:
    return RevisionInput(sha256=_stored(engine, n), filename=f"v{n}.md", size=10)


STEP = st.one_of(
    st.tuples(st.just("revise"), st.integers(0, 5)),
    st.tuples(st.just("pledge"), st.integers(1, 9)),
    st.tuples(st.just("submit"), st.just(0)),
    st.tuples(st.just("withdraw"), st.integers(0, 2)),
)


class Interleavings(RuleBasedStateMachine):
    runner: Loop

    def __init__(self) -> None:
        super().__init__()
        self.proposal_id = f"p-{uuid.uuid4().hex[:10]}"
        self.sent: list[Sent] = []
        stages = [
            DraftingStage(),
            FundingStage.model_validate(
                {"model": "voluntary", "budget_target": "1000", "deadline": timedelta(days=1), "reminders": []}
            ),
        ]
        self.runner.run(
            self.client.start_workflow(
                ProposalWorkflow.run,
                ProposalInput(
                    proposal_id=self.proposal_id,
                    title="ASEAN AI SAFE Operational Framework",
                    kind="operational_framework",
                    lead_state=MemberState.MY,
                    process=ProcessDefinition(stages=stages),
                    document=DocumentRef(sha256=_stored(self.runner.engine, -1), version=1, filename="v1.md", size=10),
                ),
                id=self.proposal_id,
                task_queue=self.runner.task_queue,
            )
        )

    @property
    def client(self) -> Client:
        return self.runner.env.client

    @rule(batch=st.lists(STEP, min_size=2, max_size=8), delays=st.lists(st.sampled_from([0.0, 0.01, 0.05]), min_size=1))
    def send_at_once(self, batch: list[tuple[str, int]], delays: list[float]) -> None:
        self.runner.delays = delays
        handle = self.client.get_workflow_handle_for(ProposalWorkflow.run, self.proposal_id)

        async def one(kind: str, n: int) -> Sent:
            arg: Any = None
            try:
                if kind == "revise":
                    arg = _text(self.runner.engine, n)
                    return Sent(kind, arg, await handle.execute_update(ProposalWorkflow.revise, arg))
                if kind == "pledge":
                    arg = Pledge(partner=f"Partner {n}", amount=Decimal(n * 100))
                    return Sent(kind, arg, await handle.execute_update(ProposalWorkflow.pledge, arg))
                if kind == "withdraw":
                    arg = WithdrawInput(reason=f"reason {n}")
                    return Sent(kind, arg, await handle.execute_update(ProposalWorkflow.withdraw, arg))
                return Sent(kind, arg, await handle.execute_update(ProposalWorkflow.submit))
            except WorkflowUpdateFailedError as refused:
                return Sent(kind, arg, refused)
            except RPCError as closed:  # sent after a withdrawal closed the proposal
                assert closed.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION), closed
                return Sent(kind, arg, closed)

        async def batch_at_once() -> list[Sent]:
            return list(await asyncio.gather(*(one(kind, n) for kind, n in batch)))

        self.sent.extend(self.runner.run(batch_at_once()))

    def _entries(self) -> list[LedgerEntry]:
        with Session(self.runner.engine) as session:
            query = select(LedgerEntry).where(LedgerEntry.proposal_id == self.proposal_id).order_by(LedgerEntry.seq)
            return list(session.exec(query))

    @invariant()
    def what_was_accepted_is_what_the_ledger_holds(self) -> None:
        refusals = [s.result for s in self.sent if isinstance(s.result, WorkflowUpdateFailedError)]
        # Refused by the workflow for a reason the coordinator can act on; never by the ledger.
        assert all(getattr(r.cause, "type", None) not in (None, "LedgerIntegrity") for r in refusals), refusals
        accepted = [s for s in self.sent if not isinstance(s.result, WorkflowUpdateFailedError | RPCError)]
        entries = self._entries()
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_kind.setdefault(entry.kind, []).append(json.loads(entry.payload_json))

        versions = [p["document"] for p in by_kind.get("version_uploaded", [])]
        revised = [s.result for s in accepted if s.kind == "revise"]
        assert sorted((d["version"], d["sha256"]) for d in versions) == sorted((d.version, d.sha256) for d in revised)
        assert sorted(d["version"] for d in versions) == list(range(2, len(versions) + 2))

        pledges = by_kind.get("partner_pledge", [])
        pledged = [s.result for s in accepted if s.kind == "pledge"]
        assert sorted((p["partner"], Decimal(p["amount"])) for p in pledges) == sorted(
            (p.partner, p.amount) for p in pledged
        )
        keys = sorted(e.idempotency_key for e in entries if e.kind == "partner_pledge")
        assert keys == sorted(f"{self.proposal_id}:pledge-{n}" for n in range(1, len(pledges) + 1))

        assert len(by_kind.get("submitted", [])) == len([s for s in accepted if s.kind == "submit"]) <= 1
        withdrawn = [s for s in accepted if s.kind == "withdraw"]
        assert [p["reason"] for p in by_kind.get("withdrawn", [])] == [s.arg.reason for s in withdrawn]
        assert len(withdrawn) <= 1

        status = self.runner.run(
            self.client.get_workflow_handle_for(ProposalWorkflow.run, self.proposal_id).query(ProposalWorkflow.status)
        )
        assert [(v.version, v.sha256) for v in status.versions[1:]] == sorted(
            (d["version"], d["sha256"]) for d in versions
        )
        assert sorted(p.amount for p in status.pledges) == sorted(Decimal(p["amount"]) for p in pledges)

    def teardown(self) -> None:
        handle = self.client.get_workflow_handle(self.proposal_id)
        try:
            self.runner.run(handle.terminate("the example is over"))
        except RPCError:  # already closed by a withdrawal
            pass


def test_any_interleaving_of_coordinator_updates_keeps_the_ledger_and_the_workflow_in_step(loop: Loop) -> None:
    Interleavings.runner = loop
    run = Interleavings.TestCase
    run.settings = settings(
        max_examples=15,
        stateful_step_count=4,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    run().runTest()
