"""Issue 6 goal 3, scale: many proposals open at once on one worker process and the dev server.

`proposals` review rounds are started and opened together (11 awaited positions each), then every position is
answered through the emailed action link (POST /act/{token}); the worker runs as its own `aisafe worker`
process so its resident memory can be read alone. The raw-Temporal baseline of bench/runner.py (bare Updates
on a minimal workflow, with its worker in this process) runs in the same run on the same dev server, as do
bare starts of that minimal workflow, so both rates have a baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func
from sqlmodel import Session, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

import operations
from bench.baseline import BaselineInput, BaselineWorkflow
from bench.progress import counting
from bench.runner import (
    _LINK,
    EXAMPLES,
    BenchError,
    CpuMeter,
    Invitation,
    _receipt_hash,
    cpu_seconds,
    open_form,
    percentile,
    press_approve,
    run_baseline,
    timed_calls,
)
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.outcomes import CARRIED
from models.roster import Role, load_roster_file
from models.states import members_on
from models.tables import LedgerEntry, SentEmail
from models.tokens import csrf_token

GOAL_RSS_MIB = 1024
GOAL_PROPOSALS = 1000  # goal 3 is about this many open at once: a smaller run can work but cannot meet it
AISAFE = str(Path(sys.executable).parent / "aisafe")
MIB = 1024 * 1024


# --- the worker process and its memory -----------------------------------------------------------------------


def proc_status_kib(pid: int, key: str) -> int | None:
    """One `kB` figure of /proc/<pid>/status (VmRSS: resident now, VmHWM: the kernel's resident peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class MemorySampler:
    """Samples a process's resident memory every `interval` seconds; keeps the largest sample."""

    pid: int
    interval: float = 0.5
    peak_kib: int = 0
    last_kib: int = 0
    samples: int = 0

    def sample(self) -> None:
        rss = proc_status_kib(self.pid, "VmRSS")
        if rss is not None:
            self.last_kib = rss
            self.peak_kib = max(self.peak_kib, rss)
            self.samples += 1

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    @property
    def kernel_peak_kib(self) -> int | None:
        return proc_status_kib(self.pid, "VmHWM")


def worker_env(stack: EmbeddedStack) -> dict[str, str]:
    """The stack's settings for `aisafe worker`, through the environment (as tests/integration.py passes them)."""
    assert stack.settings is not None
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": str(stack.settings.temporal_address),
        "AISAFE_DATA_DIR": str(stack.data_dir),
        "AISAFE_TASK_QUEUE": stack.task_queue,
        "AISAFE_SMTP_HOST": "127.0.0.1",
        "AISAFE_SMTP_PORT": str(stack.ports.smtp),
        "AISAFE_WEB_HOST": "127.0.0.1",
        "AISAFE_WEB_PORT": str(stack.ports.web),
        "AISAFE_DEV": "1",
        "AISAFE_LOG_FORMAT": "json",
    }


async def wait_for_pollers(client: Client, task_queue: str, worker: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the worker process polls its workflow task queue (or dies, or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    while True:
        if worker.poll() is not None:
            raise BenchError(f"the worker process exited with code {worker.returncode} before it polled")
        described = await client.workflow_service.describe_task_queue(request)
        if described.pollers:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"the worker process did not poll task queue {task_queue!r} within {timeout:.0f}s")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def worker_process(
    stack: EmbeddedStack, log_file: Path, timeout: float = 60
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`aisafe worker` as its own process for the duration; stopped with SIGTERM (then SIGKILL) afterwards."""
    assert stack.client is not None
    with log_file.open("wb") as log:
        worker = subprocess.Popen(
            [AISAFE, "worker"], env=worker_env(stack), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            await wait_for_pollers(stack.client, stack.task_queue, worker, timeout)
            yield worker
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(worker.wait, 30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    await asyncio.to_thread(worker.wait, 10)


# --- progress -------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Counts done out of `total` and says so every `every` seconds while the phase runs."""

    say: Callable[[str], None]
    phase: str
    total: int
    every: float = 5.0
    done: int = 0
    failed: int = 0
    extra: Callable[[], str] | None = None
    started: float = field(default_factory=time.perf_counter)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        failed = f", {self.failed} failed" if self.failed else ""
        extra = f"; {self.extra()}" if self.extra else ""
        return f"  {self.phase}: {self.done}/{self.total} in {elapsed:.0f}s ({rate:.1f}/s){failed}{extra}"

    async def report(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.say(self.line())

    def counted(self, call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        async def run() -> Any:
            try:
                result = await call()
            except BaseException:
                self.failed += 1
                raise
            self.done += 1
            return result

        return run


@contextmanager
def reporting(progress: Progress, refresh_per_second: float = 10) -> Iterator[Progress]:
    """The phase's lines every `progress.every` seconds, and a bar on stderr if that is a terminal."""
    task = asyncio.create_task(progress.report())
    try:
        with counting(
            progress.phase, progress.total, follow=lambda: progress.done, refresh_per_second=refresh_per_second
        ):
            yield progress
    finally:
        task.cancel()


# --- the invitations: read incrementally, each message once ---------------------------------------------------


class InvitationScanner:
    """Round-1 focal-point invitations from the sink's Maildir, parsing only messages not seen before.

    (web.mailbox.read_mailbox parses the whole Maildir on every call: 22 messages a proposal make that quadratic.)
    """

    def __init__(self, mail_dir: Path, proposal_ids: set[str], focal: set[str]) -> None:
        self.mail_dir = mail_dir
        self.proposal_ids = proposal_ids
        self.focal = focal
        self.seen: set[str] = set()
        self.found: dict[str, dict[str, Invitation]] = {p: {} for p in proposal_ids}
        self.count = 0
        self._headers = BytesParser(policy=policy.default)

    def scan(self) -> int:
        """Parse the messages that arrived since the last scan; the number of invitations found so far."""
        for sub in ("new", "cur"):
            folder = self.mail_dir / sub
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                if name in self.seen:
                    continue
                self.seen.add(name)
                try:
                    raw = (folder / name).read_bytes()
                except FileNotFoundError:  # moved from new/ to cur/ while we listed: seen under its new name
                    self.seen.discard(name)
                    continue
                self._consider(raw)
        return self.count

    def _consider(self, raw: bytes) -> None:
        head, _, _ = raw.partition(b"\n\n")
        if b"X-Aisafe-Step: invitation" not in head and b"x-aisafe-step: invitation" not in head.lower():
            return
        message = self._headers.parsebytes(raw)
        proposal_id = str(message.get("X-Aisafe-Proposal", ""))
        state = str(message.get("X-Aisafe-State", ""))
        if (
            proposal_id not in self.proposal_ids
            or str(message.get("X-Aisafe-Round", "")) != "1"
            or parseaddr(str(message.get("To", "")))[1].lower() not in self.focal
            or state in self.found[proposal_id]
        ):
            return
        body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        link = _LINK.search(body.get_content() if body else "")
        if link:
            self.found[proposal_id][state] = Invitation(proposal_id, state, link.group(0))
            self.count += 1


# --- the ledger ------------------------------------------------------------------------------------------------


def ledger_counts(engine: Engine, proposal_ids: list[str]) -> dict[str, int]:
    """Ledger entries of these proposals by kind (positions, rounds closed, proposals closed...)."""
    with Session(engine) as session:
        rows = session.exec(
            select(LedgerEntry.kind, func.count())
            .where(LedgerEntry.proposal_id.in_(proposal_ids))  # type: ignore[attr-defined]
            .group_by(LedgerEntry.kind)
        ).all()
    return {kind: count for kind, count in rows}


def outcomes(engine: Engine, proposal_ids: list[str]) -> dict[str, int]:
    """Proposals by the status their `proposal_closed` ledger entry records."""
    with Session(engine) as session:
        payloads = session.exec(
            select(LedgerEntry.payload_json)
            .where(LedgerEntry.kind == "proposal_closed")
            .where(LedgerEntry.proposal_id.in_(proposal_ids))  # type: ignore[attr-defined]
        ).all()
    found: dict[str, int] = {}
    for payload in payloads:
        status = str(json.loads(payload).get("status"))
        found[status] = found.get(status, 0) + 1
    return found


def invitations_sent(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(SentEmail).where(SentEmail.step == "invitation")).one()


# --- the phases ------------------------------------------------------------------------------------------------


async def start_proposals(
    stack: EmbeddedStack, engine: Engine, proposals: int, concurrency: int, say: Callable[[str], None]
) -> tuple[list[str], float]:
    """operations.propose `proposals` times, `concurrency` at a time; the ids and the wall seconds."""
    assert stack.client is not None and stack.settings is not None
    proposal_file = EXAMPLES / "review-round.yaml"
    start = partial(operations.propose, stack.client, engine, stack.settings, proposal_file)
    progress = Progress(say, "proposals started", proposals)
    # The starts are timed: one redraw a second, a cost too small to show in a rate over many seconds.
    with reporting(progress, refresh_per_second=1):
        seconds, _, results = await timed_calls([progress.counted(start) for _ in range(proposals)], concurrency)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise BenchError(f"{len(failures)} of {proposals} proposals failed to start; first: {failures[0]!r}")
    return [str(r) for r in results], seconds


async def wait_for_rounds(
    scanner: InvitationScanner,
    engine: Engine,
    expected: int,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    """Until every focal point has its round-1 invitation (found in the Maildir), or `timeout` seconds."""
    progress = Progress(say, "focal-point invitations delivered", expected)
    sent = 0

    def extra() -> str:
        return f"{sent} invitations (focal points and alternates) in the outbox"

    progress.extra = extra
    deadline = time.monotonic() + timeout
    with reporting(progress):
        while True:
            progress.done = await asyncio.to_thread(scanner.scan)
            sent = await asyncio.to_thread(invitations_sent, engine)
            if progress.done >= expected:
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"only {progress.done} of {expected} focal-point invitations arrived within {timeout:.0f}s "
                    f"({sent} invitation emails in the outbox)"
                )
            await asyncio.sleep(1.0)


async def baseline_starts(client: Client, workflows: int, concurrency: int) -> tuple[int, float, list[str]]:
    """Bare start_workflow of the minimal workflow, `concurrency` at a time: started, wall seconds, errors."""
    task_queue = f"bench-starts-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[BaselineWorkflow]):

        async def start(number: int) -> WorkflowHandle[BaselineWorkflow, int]:
            return await client.start_workflow(
                BaselineWorkflow.run, BaselineInput(expected=1), id=f"{task_queue}-{number}", task_queue=task_queue
            )

        seconds, _, results = await timed_calls([partial(start, n) for n in range(workflows)], concurrency)
        handles = [r for r in results if not isinstance(r, BaseException)]
        errors = [repr(r) for r in results if isinstance(r, BaseException)][:10]
        gate = asyncio.Semaphore(concurrency)

        async def finish(handle: WorkflowHandle[BaselineWorkflow, int]) -> None:
            async with gate:
                await handle.signal(BaselineWorkflow.finish)

        await asyncio.gather(*(finish(h) for h in handles), return_exceptions=True)
        await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles), return_exceptions=True), timeout=300)
    return len(handles), seconds, errors


async def open_forms(
    http: httpx.AsyncClient, invitations: list[Invitation], concurrency: int, say: Callable[[str], None]
) -> float:
    """GET every action page, as a delegate does before pressing a button (untimed: it records nothing)."""
    progress = Progress(say, "action pages opened", len(invitations))
    gate = asyncio.Semaphore(concurrency)

    async def one(invitation: Invitation) -> None:
        async with gate:
            await open_form(http, invitation)
            progress.done += 1

    with reporting(progress):
        await asyncio.gather(*(one(i) for i in invitations))
    return time.perf_counter() - progress.started


async def wait_for_ledger(
    engine: Engine,
    proposal_ids: list[str],
    kind: str,
    target: int,
    timeout: float,
    say: Callable[[str], None],
    *,
    label: str,
) -> dict[str, int]:
    """Until `target` entries of `kind` for these proposals are in the ledger (or `timeout`); counts by kind."""
    progress = Progress(say, label, target)
    counts: dict[str, int] = {}

    def extra() -> str:
        return (
            f"{counts.get('round_closed', 0)} rounds and {counts.get('proposal_closed', 0)}/{len(proposal_ids)} "
            "proposals closed"
        )

    progress.extra = extra
    deadline = time.monotonic() + timeout
    with reporting(progress):
        while True:
            counts = await asyncio.to_thread(ledger_counts, engine, proposal_ids)
            progress.done = counts.get(kind, 0)
            if progress.done >= target or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(1.0)


# --- the run -------------------------------------------------------------------------------------------------


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


async def run_scale_bench(
    proposals: int = 1000,
    concurrency: int = 32,
    say: Callable[[str], None] = print,
    *,
    open_pages: bool = True,
    answer_within: float | None = None,
) -> dict[str, Any]:
    """Open `proposals` rounds at once on one worker process, answer every position, measure against the baseline."""
    if proposals < 1 or concurrency < 1:
        raise ValueError("proposals and concurrency must be at least 1")
    states = [s.value for s in members_on(datetime.now(UTC).date())]
    positions = proposals * len(states)
    say(
        f"aisafe scale bench: {proposals} proposals x {len(states)} states = {positions} awaited positions, "
        f"concurrency {concurrency}, one worker process"
    )
    run_started = time.perf_counter()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aisafe-scale-") as data_dir:
        ports = StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port())
        started = time.perf_counter()
        async with EmbeddedStack(Path(data_dir), ports, run_worker=False) as stack:
            assert stack.client is not None and stack.settings is not None
            server_pid = stack.temporal.pid if stack.temporal else None
            engine = make_engine(stack.settings.sqlalchemy_url)
            http = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency))
            try:
                async with worker_process(stack, Path(data_dir) / "worker.log") as worker:
                    seconds["stack_and_worker_up"] = time.perf_counter() - started
                    memory = MemorySampler(worker.pid)
                    server_memory = MemorySampler(server_pid) if server_pid else None
                    memory.sample()
                    samplers = [asyncio.create_task(m.run()) for m in (memory, server_memory) if m]
                    say(
                        f"stack up and worker process {worker.pid} polling in {seconds['stack_and_worker_up']:.1f}s "
                        f"(worker RSS {memory.last_kib / 1024:.0f} MiB)"
                    )
                    try:
                        result = await _measure(
                            stack,
                            engine,
                            http,
                            worker,
                            memory,
                            proposals,
                            states,
                            concurrency,
                            server_pid,
                            say,
                            open_pages=open_pages,
                            answer_within=answer_within,
                        )
                    finally:
                        for task in samplers:
                            task.cancel()
                    memory.sample()
                    kernel_peak = memory.kernel_peak_kib
                    worker_alive = worker.poll() is None
            finally:
                await http.aclose()
                engine.dispose()
    seconds["total"] = time.perf_counter() - run_started
    peak_kib = max(memory.peak_kib, kernel_peak or 0)
    scale = result | {
        "worker_peak_rss_mib": round(peak_kib / 1024, 1),
        "worker_peak_rss_sampled_mib": round(memory.peak_kib / 1024, 1),
        "worker_peak_rss_kernel_vmhwm_mib": round(kernel_peak / 1024, 1) if kernel_peak else None,
        "worker_rss_at_end_mib": round(memory.last_kib / 1024, 1),
        "worker_rss_samples": memory.samples,
        "worker_alive_at_end": worker_alive,
        "temporal_server_peak_rss_mib": round(server_memory.peak_kib / 1024, 1) if server_memory else None,
        "goal_rss_mib": GOAL_RSS_MIB,
    }
    scale["seconds"] |= {k: round(v, 2) for k, v in seconds.items()}
    scale["rss_met"] = peak_kib < GOAL_RSS_MIB * 1024
    scale["goal_proposals"] = GOAL_PROPOSALS
    scale["met"] = bool(
        proposals >= GOAL_PROPOSALS
        and scale["all_started"]
        and scale["all_answered"]
        and scale["rss_met"]
        and worker_alive
    )
    say("")
    say(
        f"starts:    {scale['started_per_s']:.1f} proposals/s vs {scale['baseline_started_per_s']:.1f} bare starts/s "
        f"= {scale['starts_ratio']}x; all {proposals} rounds open {scale['rounds_open_per_s']:.1f}/s"
    )
    say(
        f"positions: {scale['positions_per_s']:.1f}/s via POST /act/{{token}} vs {scale['baseline_updates_per_s']:.1f} "
        f"bare Updates/s = {scale['positions_ratio']}x; ledger {scale['ledger_positions']}/{positions}"
    )
    if "all_closed_after_last_answer" in scale["seconds"]:
        say(
            f"closing:   {scale['ledger_counts'].get('proposal_closed', 0)}/{proposals} proposals closed "
            f"{scale['seconds']['all_closed_after_last_answer']:.0f}s after the last answer"
        )
    say(
        f"worker:    peak RSS {scale['worker_peak_rss_mib']:.0f} MiB (goal < {GOAL_RSS_MIB} MiB: "
        f"{'met' if scale['rss_met'] else 'NOT met'}); goal 3 {'met' if scale['met'] else 'NOT met'}"
    )
    say(f"total {seconds['total']:.0f}s")
    return {"scale": scale}


async def _measure(
    stack: EmbeddedStack,
    engine: Engine,
    http: httpx.AsyncClient,
    worker: subprocess.Popen[bytes],
    memory: MemorySampler,
    proposals: int,
    states: list[str],
    concurrency: int,
    server_pid: int | None,
    say: Callable[[str], None],
    *,
    open_pages: bool,
    answer_within: float | None,
) -> dict[str, Any]:
    assert stack.client is not None and stack.settings is not None
    positions = proposals * len(states)
    seconds: dict[str, float] = {}
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    await asyncio.to_thread(operations.import_roster, engine, roster)
    focal = {d.email for d in roster.delegates if d.role is Role.FOCAL_POINT}

    # 1. Start every proposal (timed: the client's start calls), then wait for every round to open.
    opening_started = time.perf_counter()
    ids, seconds["starts"] = await start_proposals(stack, engine, proposals, concurrency, say)
    say(f"{proposals} proposals started in {seconds['starts']:.1f}s ({proposals / seconds['starts']:.1f}/s)")
    scanner = InvitationScanner(stack.settings.mail_dir, set(ids), focal)
    await wait_for_rounds(scanner, engine, positions, timeout=120 + 5.0 * proposals, say=say)
    seconds["rounds_open"] = time.perf_counter() - opening_started
    say(
        f"all {proposals} rounds open ({positions} focal-point invitations) {seconds['rounds_open']:.1f}s after the "
        f"first start; worker RSS {memory.last_kib / 1024:.0f} MiB"
    )
    if worker.poll() is not None:
        raise BenchError(f"the worker process exited with code {worker.returncode}")

    # 2. The baselines, on the same dev server while our rounds stay open: bare starts, then bare Updates.
    started_count, seconds["baseline_starts"], start_errors = await baseline_starts(
        stack.client, proposals, concurrency
    )
    say(f"baseline: {started_count} bare starts in {seconds['baseline_starts']:.1f}s")
    baseline = await run_baseline(stack.client, proposals, states, concurrency, server_pid)
    say(f"baseline: {baseline.completed} bare Updates in {baseline.seconds:.1f}s ({baseline.throughput:.1f}/s)")

    # 3. Every delegate opens their page (untimed), then every position is answered (timed), state by state.
    invitations = [scanner.found[p][s] for s in states for p in ids]
    if open_pages:
        seconds["forms_open"] = await open_forms(http, invitations, concurrency, say)
        say(f"{len(invitations)} action pages opened in {seconds['forms_open']:.1f}s")
    else:
        # The very value the page's form would carry (web/actions.py makes it with the same function and key).
        for invitation in invitations:
            invitation.csrf = csrf_token(stack.settings.signing_keys, invitation.link.rsplit("/", 1)[1])
        say("action pages not opened: each form's CSRF value made as the page makes it")
    progress = Progress(say, "positions answered", positions)
    progress.extra = lambda: f"worker RSS {memory.last_kib / 1024:.0f} MiB"
    worker_cpu = cpu_seconds(worker.pid)
    # The answers are timed (the throughput figure and its CPU per call): one redraw a second, no more.
    with reporting(progress, refresh_per_second=1), CpuMeter(server_pid) as cpu:
        seconds["positions"], latencies, responses = await timed_calls(
            [progress.counted(partial(press_approve, http, i)) for i in invitations], concurrency, answer_within
        )
    unanswered = sum(1 for r in responses if r is None)  # cut off by the answering budget
    if unanswered:
        say(f"the answering budget of {answer_within:.0f}s ran out: {unanswered} positions not answered (cancelled)")
    worker_cpu_after = cpu_seconds(worker.pid)
    if worker_cpu is not None and worker_cpu_after is not None:
        cpu.used["worker_process"] = worker_cpu_after - worker_cpu
    receipts = sum(1 for r in responses if _receipt_hash(r))
    queued = sum(1 for r in responses if isinstance(r, httpx.Response) and r.status_code == 202)
    errors = [
        f"{i.state} on {i.proposal_id}: {r!r}"
        if isinstance(r, BaseException)
        else f"{i.state} on {i.proposal_id}: HTTP {r.status_code}"
        for i, r in zip(invitations, responses, strict=True)
        if r is not None and not _receipt_hash(r) and not (isinstance(r, httpx.Response) and r.status_code == 202)
    ]
    answered = sum(1 for r in responses if r is not None) - len(errors)
    ok_latencies = [t for t, r in zip(latencies, responses, strict=True) if t is not None and _receipt_hash(r)]
    say(
        f"{receipts} receipts, {queued} queued (202, sent as a Signal), {len(errors)} failed in "
        f"{seconds['positions']:.1f}s ({answered / seconds['positions']:.1f}/s)"
    )

    # 4. Every position must reach the ledger. (A cancelled POST may still have reached the round: the ledger can
    # hold a few more than were answered.)
    answers_done = time.perf_counter()
    counts = await wait_for_ledger(
        engine, ids, "position", answered, timeout=120 + 0.2 * proposals, say=say, label="positions in the ledger"
    )
    seconds["ledger_settle_after_last_answer"] = time.perf_counter() - answers_done
    ledger_positions = counts.get("position", 0)
    # 5. Then every round and proposal must close, or the work at this scale has something stuck: once its 11
    # states have answered, a round sends the answer notices still going and closes, and its proposal closes and
    # sends the outcome to every delegate. Not among the goal's figures; the worker's memory is sampled through it.
    if not unanswered:
        counts = await wait_for_ledger(
            engine, ids, "proposal_closed", proposals, timeout=120 + 2.0 * proposals, say=say, label="proposals closed"
        )
        seconds["all_closed_after_last_answer"] = time.perf_counter() - answers_done
        say(
            f"{counts.get('round_closed', 0)} rounds and {counts.get('proposal_closed', 0)} proposals closed "
            f"{seconds['all_closed_after_last_answer']:.1f}s after the last answer"
        )
    by_status = await asyncio.to_thread(outcomes, engine, ids)
    positions_per_s = _rate(answered, seconds["positions"])
    started_per_s = _rate(proposals, seconds["starts"])
    baseline_started_per_s = _rate(started_count, seconds["baseline_starts"])
    return {
        "proposals": proposals,
        "awaited_positions": positions,
        "concurrency": concurrency,
        "path": (
            "positions: POST /act/{token} (web app in the bench process -> Update on the round workflow -> ledger "
            "local activity in the worker process -> receipt page), the form opened first by an untimed GET; "
            "starts: operations.propose (document stored, ProposalWorkflow started)"
        ),
        "all_started": len(ids) == proposals,
        "all_answered": ledger_positions == positions and answered == positions and not errors,
        "answered": answered,
        "unanswered_when_budget_ran_out": unanswered,
        "answer_within_s": answer_within,
        "action_pages_opened": open_pages,
        "started_per_s": started_per_s,
        "rounds_open_per_s": _rate(proposals, seconds["rounds_open"]),
        "baseline_started_per_s": baseline_started_per_s,
        "starts_ratio": round(started_per_s / baseline_started_per_s, 3) if baseline_started_per_s else None,
        "baseline_start_errors": start_errors,
        "positions_per_s": positions_per_s,
        "positions_p50_ms": round(percentile(ok_latencies, 50), 1),
        "positions_p99_ms": round(percentile(ok_latencies, 99), 1),
        "baseline_updates_per_s": round(baseline.throughput, 2),
        "baseline_p50_ms": round(baseline.percentile(50), 1),
        "baseline_p99_ms": round(baseline.percentile(99), 1),
        "baseline_errors": baseline.errors,
        "positions_ratio": round(positions_per_s / baseline.throughput, 3) if baseline.throughput else None,
        "receipts": receipts,
        "queued_as_signal": queued,
        "position_errors": errors[:10],
        "position_error_count": len(errors),
        "ledger_positions": ledger_positions,
        "ledger_counts": counts,
        "all_closed": counts.get("proposal_closed", 0) == proposals,
        "proposals_closed": by_status,
        # Carried in the body's own word (agreed, endorsed, ...; adopted before issue 18): the key keeps its name.
        "proposals_adopted": sum(n for status, n in by_status.items() if status in {s.value for s in CARRIED}),
        "cpu_seconds_during_positions": {k: round(v, 2) for k, v in cpu.used.items()},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=run_scale_bench.__doc__)
    parser.add_argument("--proposals", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    parser.add_argument("--no-pages", action="store_true", help="make each form's CSRF value instead of a GET")
    parser.add_argument("--answer-within", type=float, metavar="S", help="stop answering after S seconds")
    args = parser.parse_args()

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    results = asyncio.run(
        run_scale_bench(
            args.proposals, args.concurrency, say, open_pages=not args.no_pages, answer_within=args.answer_within
        )
    )
    say(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.flush()
    scale = results["scale"]
    os._exit(0 if scale["all_started"] and scale["all_answered"] and scale["rss_met"] else 1)
