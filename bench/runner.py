"""One benchmark run on one embedded stack: the raw-Temporal baseline and the web action path, back to back.

Both sides make the same number of calls with the same concurrency, in the same order over the same number of
workflows (state by state across every open round), against the same dev server through the same client.
Only the calls are timed; starting workflows, delivering invitations and opening the action pages are not.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

import operations
from bench.baseline import BaselineInput, BaselineItem, BaselineWorkflow
from bench.profile import profiled
from bench.progress import announce, counting
from devstack.demo import ENTRY_HASH
from devstack.demo import open_form as demo_open_form
from devstack.services import DEV_SERVER_PRAGMAS, free_port, temporal_binary
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.messages import ProposalState
from models.outcomes import CARRIED
from models.roster import Role, load_roster_file
from models.states import members_on
from models.tables import LedgerEntry
from web.mailbox import read_mailbox

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"

_LINK = re.compile(r"https?://\S+/act/[A-Za-z0-9_\-.]+")


class BenchError(Exception):
    """The benchmark could not measure what it set out to (a call failed, a round never opened...)."""


@dataclass(frozen=True)
class BenchConfig:
    positions: int = 220
    concurrency: int = 32  # the goal is stated at 32 concurrent clients
    out: Path = DEFAULT_OUT
    review_rounds: int = 10  # for the history-size and audit figures; 0 skips them
    fanout_repeats: int = 5  # rounds started for the fan-out figure (median reported); 0 skips it
    consultation_comments: int = 5000  # comments of the public-scale consultation (bench/consultation.py); 0 skips
    profile: Path | None = None  # py-spy output for the timed clicks (bench/profile.py)


# The bare Updates, with and without the search-attribute upsert, are timed this many times each, in turns; the
# median run of each is reported. Single runs of the same calls varied by a quarter on the 2-core machine.
BASELINE_TURNS = 3

SMOKE = BenchConfig(positions=11, concurrency=4, review_rounds=0, fanout_repeats=0, consultation_comments=0)


@dataclass
class Figure:
    """One side's timed calls: how many succeeded, over how long, and each call's latency."""

    label: str
    unit: str
    calls: int
    seconds: float
    latencies_ms: list[float]
    errors: list[str] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # by process, during the timed calls

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def of_calls(
        cls,
        label: str,
        unit: str,
        timed: tuple[float, list[float | None], list[Any]],
        cpu_seconds: dict[str, float],
    ) -> Figure:
        """The figure of what `timed_calls` returned: every call, the latencies of those that finished, and the
        first ten failures."""
        seconds, latencies, results = timed
        failed = [f"update: {r!r}" for r in results if isinstance(r, BaseException)]
        return cls(
            label=label,
            unit=unit,
            calls=len(results),
            seconds=seconds,
            latencies_ms=[t for t in latencies if t is not None],
            errors=failed[:10],
            cpu_seconds=cpu_seconds,
        )

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "calls": self.calls,
            "completed": self.completed,
            "seconds": round(self.seconds, 4),
            "throughput_per_s": round(self.throughput, 2),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms, default=0.0), 2),
            "cpu_ms_per_call": {
                name: round(seconds * 1000 / self.calls, 2) for name, seconds in self.cpu_seconds.items()
            },
            "errors": self.errors,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU time (user + system, every thread) used so far by this process, or by process `pid` (Linux /proc)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass
class CpuMeter:
    """Where the CPU went during the timed calls: this process (web, worker, client) and the Temporal server."""

    server_pid: int | None
    used: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuMeter:
        self._start = (cpu_seconds(), cpu_seconds(self.server_pid) if self.server_pid else None)
        return self

    def __exit__(self, *exc: object) -> None:
        mine, server = self._start
        self.used = {"python_process": (cpu_seconds() or 0.0) - (mine or 0.0)}
        after = cpu_seconds(self.server_pid) if self.server_pid else None
        if server is not None and after is not None:
            self.used["temporal_server"] = after - server


async def timed_calls(
    calls: Sequence[Callable[[], Awaitable[Any]]], concurrency: int, budget: float | None = None
) -> tuple[float, list[float | None], list[Any]]:
    """Run `calls` at most `concurrency` at a time; wall seconds, each call's latency (None if it failed), results.

    With a `budget` (seconds), calls not finished by then are cancelled: their result and latency are None.
    """
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float | None] = [None] * len(calls)

    async def one(index: int, call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            started = time.perf_counter()
            result = await call()
            latencies[index] = (time.perf_counter() - started) * 1000
            return result

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(one(i, c)) for i, c in enumerate(calls)]
    _, pending = await asyncio.wait(tasks, timeout=budget) if tasks else (set(), set())
    seconds = time.perf_counter() - started
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    results = [None if task in pending else (task.exception() or task.result()) for task in tasks]
    return (
        seconds,
        [
            None if task in pending or isinstance(r, BaseException) else t
            for task, r, t in zip(tasks, results, latencies, strict=True)
        ],
        results,
    )


# --- the baseline: bare Updates to a minimal workflow --------------------------------------------------------


async def run_baseline(
    client: Client,
    workflows: int,
    states: list[str],
    concurrency: int,
    server_pid: int | None = None,
    *,
    awaiting: bool = False,
) -> Figure:
    """`workflows` x `len(states)` bare execute_update calls, in the same order the delegates answer; with
    `awaiting`, each Update also upserts the search attribute of the states still awaited."""
    task_queue = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[BaselineWorkflow]):
        handles: list[WorkflowHandle[BaselineWorkflow, int]] = []
        for number in range(workflows):
            handles.append(
                await client.start_workflow(
                    BaselineWorkflow.run,
                    BaselineInput(expected=len(states), states=states),
                    id=f"{task_queue}-{number}",
                    task_queue=task_queue,
                )
            )
        # Every workflow has run its first task before timing starts, as every round has before its invitations.
        await asyncio.gather(*(h.query(BaselineWorkflow.recorded) for h in handles))
        update = BaselineWorkflow.record_awaiting if awaiting else BaselineWorkflow.record
        calls = [
            partial(h.execute_update, update, BaselineItem(state=state, position="approve"))
            for state in states
            for h in handles
        ]
        with CpuMeter(server_pid) as cpu:
            timed = await timed_calls(calls, concurrency)
        figure = Figure.of_calls(
            "bare execute_update on a minimal workflow"
            + (", upserting the awaited states' search attribute" if awaiting else ""),
            "updates/s",
            timed,
            cpu.used,
        )
        if figure.errors:
            await asyncio.gather(*(h.signal(BaselineWorkflow.finish) for h in handles), return_exceptions=True)
        recorded = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=60)
    if not figure.errors and sum(recorded) != len(calls):
        figure.errors.append(f"the baseline workflows recorded {sum(recorded)} of {len(calls)} updates")
    if awaiting and not figure.errors:
        history = await handles[0].fetch_history()
        upserts = sum(1 for e in history.events if e.HasField("upsert_workflow_search_attributes_event_attributes"))
        if upserts != len(states):
            figure.errors.append(f"a baseline workflow upserted its search attribute {upserts} times of {len(states)}")
    return figure


# --- ours: positions through the emailed action links --------------------------------------------------------


@dataclass
class Invitation:
    proposal_id: str
    state: str
    link: str
    csrf: str = ""


@dataclass
class OursRun:
    figure: Figure
    proposal_ids: list[str]
    receipts: int
    rounds_open_seconds: float
    http: httpx.AsyncClient
    ledger_positions: int = 0
    proposals_adopted: int = 0


def _focal_invitations(mail_dir: Path, proposal_ids: set[str], focal: set[str]) -> dict[str, dict[str, Invitation]]:
    """Round-1 invitations to focal points, by proposal and state (one mailbox read for every proposal)."""
    found: dict[str, dict[str, Invitation]] = {p: {} for p in proposal_ids}
    for item in read_mailbox(mail_dir):
        proposal_id = item.aisafe.get("proposal", "")
        link = _LINK.search(item.text)
        if (
            proposal_id in proposal_ids
            and item.aisafe.get("step") == "invitation"
            and item.aisafe.get("round") == "1"
            and parseaddr(item.to)[1].lower() in focal
            and link
        ):
            state = item.aisafe.get("state", "")
            found[proposal_id][state] = Invitation(proposal_id, state, link.group(0))
    return found


async def open_rounds(
    stack: EmbeddedStack, engine: Engine, proposals: int, states: list[str], timeout: float
) -> tuple[list[str], dict[str, dict[str, Invitation]]]:
    """Import the roster, propose `proposals` times, and wait until every focal point has its invitation."""
    assert stack.client is not None and stack.settings is not None
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    await asyncio.to_thread(operations.import_roster, engine, roster)
    focal = {d.email for d in roster.delegates if d.role is Role.FOCAL_POINT}
    proposal_file = EXAMPLES / "review-round.yaml"
    ids: list[str] = []
    with counting("proposals started", proposals) as reached:
        for _ in range(proposals):
            ids.append(await operations.propose(stack.client, engine, stack.settings, proposal_file))
            reached(len(ids))
    deadline = time.monotonic() + timeout
    with counting("invitations arrived", len(ids) * len(states)) as reached:
        while True:
            found = await asyncio.to_thread(_focal_invitations, stack.settings.mail_dir, set(ids), focal)
            arrived = sum(len(found[p]) for p in ids)
            reached(arrived)
            if arrived >= len(ids) * len(states):
                return ids, found
            if time.monotonic() > deadline:
                raise BenchError(
                    f"only {arrived} of {len(ids) * len(states)} invitations arrived within {timeout:.0f}s"
                )
            await asyncio.sleep(0.25)


async def open_form(http: httpx.AsyncClient, invitation: Invitation) -> None:
    """What a delegate sees first (not timed): the confirmation page, whose form carries the CSRF value."""
    try:
        invitation.csrf = await demo_open_form(http, invitation.link)
    except RuntimeError:
        raise BenchError(f"the action page for {invitation.state} on {invitation.proposal_id} has no form") from None


async def press_approve(http: httpx.AsyncClient, invitation: Invitation) -> httpx.Response:
    """The timed part: the click on "Approve" until the receipt page has arrived."""
    return await http.post(invitation.link, data={"csrf": invitation.csrf, "position": "approve", "reason": ""})


def _receipt_hash(response: Any) -> str | None:
    if not isinstance(response, httpx.Response) or response.status_code != 200:
        return None
    entry = ENTRY_HASH.search(response.text)
    return entry.group(1) if entry else None


async def run_ours(
    stack: EmbeddedStack,
    engine: Engine,
    proposals: int,
    states: list[str],
    concurrency: int,
    profile: Path | None = None,
) -> tuple[OursRun, Callable[[], Awaitable[Figure]]]:
    """Open the rounds and their forms (untimed); returns the run and the coroutine that times the clicks."""
    client = stack.client
    assert client is not None
    started = time.perf_counter()
    ids, found = await open_rounds(stack, engine, proposals, states, timeout=60 + 3 * proposals)
    rounds_open_seconds = time.perf_counter() - started
    # The same order as the baseline: state by state, across every open round.
    invitations = [found[p][s] for s in states for p in ids]
    http = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=max(concurrency, 1)))
    gate = asyncio.Semaphore(concurrency)
    opened = 0

    async def gated_open(invitation: Invitation) -> None:
        nonlocal opened
        async with gate:
            await open_form(http, invitation)
            opened += 1

    try:
        with counting("action pages opened", len(invitations), follow=lambda: opened):
            await asyncio.gather(*(gated_open(i) for i in invitations))
    except BaseException:
        await http.aclose()
        raise
    run = OursRun(
        figure=Figure(
            label="POST /act/{token}: click to receipt (web, Update, ledger activity)",
            unit="positions/s",
            calls=len(invitations),
            seconds=0.0,
            latencies_ms=[],
        ),
        proposal_ids=ids,
        receipts=0,
        rounds_open_seconds=rounds_open_seconds,
        http=http,
    )

    async def measure() -> Figure:
        with profiled(profile), CpuMeter(stack.temporal.pid if stack.temporal else None) as cpu:
            seconds, latencies, responses = await timed_calls(
                [partial(press_approve, http, i) for i in invitations], concurrency
            )
        hashes = [_receipt_hash(r) for r in responses]
        run.receipts = len({h for h in hashes if h})
        run.figure.seconds = seconds
        run.figure.cpu_seconds = cpu.used
        run.figure.latencies_ms = [t for t, h in zip(latencies, hashes, strict=True) if t is not None and h]
        run.figure.errors = [
            f"{i.state} on {i.proposal_id}: {r!r}"
            if isinstance(r, BaseException)
            else f"{i.state} on {i.proposal_id}: HTTP {r.status_code}"
            for i, r, h in zip(invitations, responses, hashes, strict=True)
            if not h
        ][:10]
        await verify_ours(client, engine, run, wait=not run.figure.errors)
        return run.figure

    return run, measure


async def verify_ours(client: Client, engine: Engine, run: OursRun, *, wait: bool, timeout: float = 120) -> None:
    """Every round closes once its states answered: wait for each proposal's outcome, count the ledger's positions."""
    deadline = time.monotonic() + timeout
    pending = set(run.proposal_ids) if wait else set()
    while pending and time.monotonic() < deadline:
        statuses = await asyncio.gather(*(operations.status(client, p) for p in pending))
        pending = {s.id for s in statuses if s.status is ProposalState.RUNNING}
        # Carried in the body's own word (agreed, endorsed, ...; adopted before issue 18): the key keeps its name.
        run.proposals_adopted += sum(1 for s in statuses if s.status in CARRIED)
        if pending:
            await asyncio.sleep(0.25)
    if pending:
        run.figure.errors.append(f"{len(pending)} proposal(s) still running {timeout:.0f}s after the last click")

    def count() -> int:
        with Session(engine) as session:
            return session.exec(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.kind == "position")
                .where(LedgerEntry.proposal_id.in_(run.proposal_ids))  # type: ignore[attr-defined]
            ).one()

    run.ledger_positions = await asyncio.to_thread(count)


# --- the run, the table and the results file -----------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        server = subprocess.run(
            [temporal_binary(), "--version"], capture_output=True, text=True, timeout=15, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        server = None
    return {
        "os": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": memory,
        "memory_total_gib": round(memory / 2**30, 1) if memory else None,
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": server,
        "temporal_sqlite_pragmas": list(DEV_SERVER_PRAGMAS),  # how the embedded dev server keeps its SQLite file
    }


def median_run(runs: list[Figure]) -> Figure:
    """The run of median throughput, or the first that failed (so that its errors are reported)."""
    failed = [run for run in runs if run.errors]
    return failed[0] if failed else sorted(runs, key=lambda run: run.throughput)[len(runs) // 2]


def table_rows(ours: Figure, baseline: Figure) -> list[dict[str, Any]]:
    rows = [
        ("throughput (per s)", ours.throughput, baseline.throughput),
        ("p50 latency (ms)", ours.percentile(50), baseline.percentile(50)),
        ("p99 latency (ms)", ours.percentile(99), baseline.percentile(99)),
    ]
    return [
        {
            "figure": name,
            "ours": round(mine, 2),
            "baseline": round(theirs, 2),
            "ratio": round(mine / theirs, 3) if theirs else None,
        }
        for name, mine, theirs in rows
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("figure", "ours", "baseline", "ratio (ours/baseline)")
    cells = [header] + [
        (r["figure"], f"{r['ours']:.1f}", f"{r['baseline']:.1f}", "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for number, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        lines.append("  ".join([first, *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]))
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def run_bench(config: BenchConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the embedded stack, measure both sides, print the table and write the results file."""
    if config.positions < 1 or config.concurrency < 1:
        raise ValueError("positions and concurrency must be at least 1")
    states = [s.value for s in members_on(datetime.now(UTC).date())]
    proposals = math.ceil(config.positions / len(states))
    positions = proposals * len(states)
    if positions != config.positions:
        say(f"note: {config.positions} positions rounded up to {positions} (whole rounds of {len(states)} states)")
    say(
        f"aisafe bench: {positions} positions ({proposals} proposal(s) x {len(states)} states), "
        f"concurrency {config.concurrency}"
    )

    with tempfile.TemporaryDirectory(prefix="aisafe-bench-") as data_dir:
        ports = StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port())
        started = time.perf_counter()
        async with EmbeddedStack(Path(data_dir), ports) as stack:
            assert stack.client is not None and stack.settings is not None
            stack_seconds = time.perf_counter() - started
            say(f"stack up in {stack_seconds:.1f}s (Temporal dev server {stack.settings.temporal_address})")
            engine = make_engine(stack.settings.sqlalchemy_url)
            ours_run: OursRun | None = None
            try:
                ours_run, measure_ours = await run_ours(
                    stack, engine, proposals, states, config.concurrency, config.profile
                )
                say(f"{proposals} round(s) open, {positions} invitations in {ours_run.rounds_open_seconds:.1f}s")
                # No bar while timing: its redraws would take CPU from the calls measured in this process.
                announce(
                    f"timing {positions} bare Updates and {positions} that also upsert a search attribute "
                    f"({BASELINE_TURNS} times each, in turns), then {positions} clicks (no progress bar while timed)"
                )
                server_pid = stack.temporal.pid if stack.temporal else None
                bare_runs: list[Figure] = []
                upserting_runs: list[Figure] = []
                for _ in range(BASELINE_TURNS):
                    for runs, awaiting in ((bare_runs, False), (upserting_runs, True)):
                        runs.append(
                            await run_baseline(
                                stack.client, proposals, states, config.concurrency, server_pid, awaiting=awaiting
                            )
                        )
                baseline, upserting = median_run(bare_runs), median_run(upserting_runs)
                say(f"baseline: {baseline.completed} updates in {baseline.seconds:.2f}s (median of {BASELINE_TURNS})")
                say(f"baseline with the upsert: {upserting.completed} updates in {upserting.seconds:.2f}s (median)")
                ours = await measure_ours()
                say(f"ours: {ours_run.receipts} receipts in {ours.seconds:.2f}s")
                from bench.round_updates import run_round_updates  # here: that module imports this one

                direct = await run_round_updates(stack, engine, proposals, states, config.concurrency)
                say(f"the same positions as Updates to the rounds, no web: {direct.completed} in {direct.seconds:.2f}s")
            finally:
                if ours_run is not None:
                    await ours_run.http.aclose()
                engine.dispose()

    rows = table_rows(ours, baseline)
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "config": {
            "positions": positions,
            "requested_positions": config.positions,
            "concurrency": config.concurrency,
            "workflows": proposals,
            "positions_per_workflow": len(states),
            "order": "state by state across every open round (the same for both sides)",
        },
        "table": rows,
        "figures": {
            "ours": ours.as_json(),
            "baseline": baseline.as_json(),
            "baseline_upserting": upserting.as_json(),
            "round_updates": direct.as_json(),
        },
        "baseline_turns_per_s": {
            "bare": [round(f.throughput, 2) for f in bare_runs],
            "upserting": [round(f.throughput, 2) for f in upserting_runs],
        },
        # What a round's per-answer upsert of the awaited states (DESIGN.md's search attributes) costs alone on
        # this server: the throughput of bare Updates that also upsert it, as a share of bare Updates'.
        "upsert_throughput_ratio": (
            round(upserting.throughput / baseline.throughput, 3) if baseline.throughput else None
        ),
        # The click's Update alone, sent straight to round workflows of its own: the click without the web app.
        "round_updates_throughput_ratio": (
            round(direct.throughput / baseline.throughput, 3) if baseline.throughput else None
        ),
        "ours": {
            "receipts": ours_run.receipts,
            "ledger_positions": ours_run.ledger_positions,
            "proposals": len(ours_run.proposal_ids),
            "proposals_adopted": ours_run.proposals_adopted,
        },
        "setup_seconds": {
            "stack_start": round(stack_seconds, 2),
            "rounds_open": round(ours_run.rounds_open_seconds, 2),
        },
    }
    if config.review_rounds:
        from bench.history import run_history_bench

        results |= await run_history_bench(config.review_rounds, say)
    if config.fanout_repeats:
        from bench.fanout import run_fanout_bench

        results |= await run_fanout_bench(say, repeats=config.fanout_repeats)
    if config.consultation_comments:
        from bench.consultation import run_consultation_bench

        results |= await run_consultation_bench(say, comments=config.consultation_comments)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    partial_file = config.out.with_name(config.out.name + ".tmp")  # a reader never sees half a file
    partial_file.write_text(json.dumps(results, indent=2) + "\n")
    partial_file.replace(config.out)

    say("")
    say(f"ours:     {ours.label}")
    say(f"          {ours.completed}/{ours.calls} positions in {ours.seconds:.2f}s; throughput in positions/s")
    say(f"baseline: {baseline.label}")
    say(f"          {baseline.completed}/{baseline.calls} updates in {baseline.seconds:.2f}s; throughput in updates/s")
    say(f"baseline+upsert: {upserting.label}")
    say(
        f"          {upserting.completed}/{upserting.calls} updates in {upserting.seconds:.2f}s: "
        f"{results['upsert_throughput_ratio']}x the bare Updates' throughput"
    )
    say(f"no web:   {direct.label}")
    say(
        f"          {direct.completed}/{direct.calls} positions in {direct.seconds:.2f}s: "
        f"{results['round_updates_throughput_ratio']}x the bare Updates' throughput"
    )
    sides = (("ours", ours), ("baseline", baseline), ("baseline+upsert", upserting), ("no web", direct))
    for side, figure in sides:
        cpu = ", ".join(f"{name} {ms:.1f} ms" for name, ms in figure.as_json()["cpu_ms_per_call"].items())
        say(f"cpu per call ({side}): {cpu}")
    say("")
    say(format_table(rows))
    for side, figure in sides:
        for error in figure.errors:
            say(f"error ({side}): {error}")
    if "history" in results:
        history, verify = results["history"], results["audit_verify"]
        say("")
        say(
            f"history: largest run {history['largest_run']} has {history['largest_events']} events "
            f"({history['review_rounds']} review rounds and every stage; goal < {history['goal_max_events']}: "
            f"{'met' if history['met'] else 'NOT met'})"
        )
        say(
            f"audit verify: {verify['ours_s'] * 1000:.1f} ms vs reading and hashing the bundle's files "
            f"{verify['baseline_s'] * 1000:.1f} ms = {verify['ratio']}x (goal <= {verify['goal_max_ratio']}x: "
            f"{'met' if verify['met'] else 'NOT met'}; reading, hashing and checking the JSON alone "
            f"{verify['reference_ratio']}x)"
        )
    if "fanout" in results:
        fanout = results["fanout"]
        say(
            f"fan-out: a round's {fanout['messages']} invitations {fanout['ours_s'] * 1000:.0f} ms vs the same "
            f"messages sent bare on one connection {fanout['baseline_s'] * 1000:.0f} ms = {fanout['ratio']}x "
            f"(goal <= {fanout['goal_max_ratio']}x: {'met' if fanout['met'] else 'NOT met'}; the mail activity "
            f"alone {fanout['activity_ratio']}x)"
        )
        for step, seconds in fanout["steps_s"].items():
            say(f"  {seconds * 1000:5.0f} ms  {step}")
    if config.profile:
        say(f"profile of the timed clicks written to {config.profile} (its run's figures are not the ones to report)")
    say(f"\nresults written to {config.out}")
    return results


def succeeded(results: dict[str, Any]) -> bool:
    """Every call of every side completed, and every position got its receipt and its ledger entry."""
    figures = results["figures"]
    positions = results["config"]["positions"]
    return (
        not any(figure["errors"] for figure in figures.values())
        and results["ours"]["receipts"] == positions
        and results["ours"]["ledger_positions"] == positions
        and not results.get("consultation", {}).get("failures")
    )
