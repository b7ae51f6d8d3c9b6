"""Fan-out (issue 6, goal 2): starting a round against sending the same messages over one bare SMTP connection.

- ours: from `operations.propose` (examples/review-round.yaml, whose only stage is a WG-AI review) until the round's
  `send_round_mail` invitation activity has completed: the proposal's and the round's ledger entries written, one
  signed action link per delegate, every message through the outbox and taken by the SMTP sink. The end is seen
  through a long poll on the round's history (no polling interval); the server's own event times give the same
  span without the client's notice, and the activity's share of it.
- baseline: the very bytes the sink received for that round (the proposal id swapped for another of the same
  length), sent again to the same recipients over one `aiosmtplib.SMTP` connection to the same sink, and nothing
  else: connect, one `sendmail` per message, quit.

Both run in this process against the same embedded stack, alternately, after one untimed warm-up round (a worker
that has started rounds before is the normal case). The ratio is that of the medians over the repeats.
"""

from __future__ import annotations

import asyncio
import mailbox
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import Engine, func
from sqlmodel import Session, select
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

import operations
from bench.profile import profiled
from bench.progress import counting
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.roster import load_roster_file
from models.settings import Settings
from models.tables import LedgerEntry, SentEmail
from models.tokens import round_workflow_id

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FANOUT_GOAL = 1.5
ROUND_MAIL = "send_round_mail"
# What starting the first round writes to the ledger before its invitations go out.
LEDGER_KINDS = ("proposal_started", "stage_started", "round_opened")
TIMEOUT_S = 120.0
# Where a round's start spends its time on the server's clock, in order; together they are `server_seconds`.
STEPS = (
    "proposal: started -> asks for its round (its first task, with two ledger entries)",
    "round: asked for -> started (the server starts the child workflow)",
    "round: started -> invitation activity started (its first task, its ledger entry, the activity's dispatch)",
    "invitation activity: started -> completed (every message and its outbox row)",
)


class FanoutError(Exception):
    """The round did not start as it should (too few messages, a missing ledger entry...): nothing to time."""


@dataclass(frozen=True)
class Envelope:
    recipient: str
    state: str
    raw: bytes  # exactly what the sink received


@dataclass(frozen=True)
class RoundStart:
    """One timed start of a round, and what it sent."""

    proposal_id: str
    seconds: float  # propose() called -> the client sees the invitation activity completed
    # The proposal's first event -> the activity's completion event, in the four consecutive spans of STEPS on the
    # server's clock, each ending where the next begins.
    steps: dict[str, float]
    mail: list[Envelope]

    @property
    def server_seconds(self) -> float:
        """The proposal's first event -> the activity's completion event."""
        return sum(self.steps.values())

    @property
    def round_seconds(self) -> float:
        """The round workflow's first event -> the same completion."""
        return self.steps[STEPS[2]] + self.steps[STEPS[3]]

    @property
    def activity_seconds(self) -> float:
        """The invitation activity alone: started -> completed."""
        return self.steps[STEPS[3]]


def _seconds(earlier: HistoryEvent, later: HistoryEvent) -> float:
    return later.event_time.ToDatetime().timestamp() - earlier.event_time.ToDatetime().timestamp()


async def _wait_for_child(handle: WorkflowHandle[Any, Any]) -> tuple[HistoryEvent, HistoryEvent]:
    """The proposal's first event and the one that asks for its first child (the round), once the child has
    started."""
    first: HistoryEvent | None = None
    initiated: HistoryEvent | None = None
    async for event in handle.fetch_history_events(wait_new_event=True):
        first = first or event
        if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            initiated = initiated or event
        elif event.HasField("child_workflow_execution_started_event_attributes") and initiated is not None:
            return first, initiated
        if event.HasField("workflow_execution_completed_event_attributes") or event.HasField(
            "workflow_execution_failed_event_attributes"
        ):
            break
    raise FanoutError(f"the proposal {handle.id} ended before its first round started")


async def _wait_for_activity(
    handle: WorkflowHandle[Any, Any], name: str
) -> tuple[HistoryEvent, HistoryEvent, HistoryEvent]:
    """The run's first event, then the started and completed events of its first `name` activity once it completes."""
    first: HistoryEvent | None = None
    scheduled: dict[int, str] = {}
    started: dict[int, HistoryEvent] = {}
    async for event in handle.fetch_history_events(wait_new_event=True):
        first = first or event
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            started[event.activity_task_started_event_attributes.scheduled_event_id] = event
        elif event.HasField("activity_task_completed_event_attributes"):
            scheduled_id = event.activity_task_completed_event_attributes.scheduled_event_id
            if scheduled.get(scheduled_id) == name and first is not None:
                return first, started[scheduled_id], event
        elif event.HasField("activity_task_failed_event_attributes") or event.HasField(
            "workflow_execution_failed_event_attributes"
        ):
            raise FanoutError(f"{handle.id}: {event}")
    raise FanoutError(f"{handle.id} ended before its {name} activity completed")


async def start_round(client: Client, engine: Engine, settings: Settings, proposal_file: Path) -> RoundStart:
    """Propose, and time it until the first round's invitations have all been taken by the sink."""
    started = time.perf_counter()
    proposal_id = await operations.propose(client, engine, settings, proposal_file)
    async with asyncio.timeout(TIMEOUT_S):
        first, initiated = await _wait_for_child(client.get_workflow_handle(proposal_id))
        round_started, activity_started, completed = await _wait_for_activity(
            client.get_workflow_handle(round_workflow_id(proposal_id, 1)), ROUND_MAIL
        )
    seconds = time.perf_counter() - started
    mail = await asyncio.to_thread(_invitations, settings.mail_dir, proposal_id)
    return RoundStart(
        proposal_id=proposal_id,
        seconds=seconds,
        steps={
            STEPS[0]: _seconds(first, initiated),
            STEPS[1]: _seconds(initiated, round_started),
            STEPS[2]: _seconds(round_started, activity_started),
            STEPS[3]: _seconds(activity_started, completed),
        },
        mail=mail,
    )


def _invitations(mail_dir: Path, proposal_id: str) -> list[Envelope]:
    """The round-1 invitations the sink filed for `proposal_id`, byte for byte."""
    found = []
    headers = BytesHeaderParser()
    box = mailbox.Maildir(mail_dir, factory=None, create=False)
    for key in box.keys():
        raw = box.get_bytes(key)
        message = headers.parsebytes(raw)
        if message["X-Aisafe-Proposal"] == proposal_id and message["X-Aisafe-Step"] == "invitation":
            found.append(Envelope(parseaddr(str(message["To"]))[1], str(message["X-Aisafe-State"]), raw))
    return found


def check_round(engine: Engine, start: RoundStart, expected: int) -> None:
    """What starting a round must have produced: a message with its own link per delegate, outbox rows, ledger."""
    recipients = {envelope.recipient for envelope in start.mail}
    if len(start.mail) != expected or len(recipients) != expected:
        raise FanoutError(f"{start.proposal_id}: {len(start.mail)} invitations to {len(recipients)}, not {expected}")
    if not all(b"/act/" in envelope.raw for envelope in start.mail):
        raise FanoutError(f"{start.proposal_id}: an invitation without its action link")
    with Session(engine) as session:
        outbox = session.exec(
            select(func.count())
            .select_from(SentEmail)
            .where(SentEmail.proposal_id == start.proposal_id, SentEmail.step == "invitation")
        ).one()
        kinds = set(session.exec(select(LedgerEntry.kind).where(LedgerEntry.proposal_id == start.proposal_id)).all())
    if outbox != expected:
        raise FanoutError(f"{start.proposal_id}: {outbox} outbox rows, not {expected}")
    if missing := [kind for kind in LEDGER_KINDS if kind not in kinds]:
        raise FanoutError(f"{start.proposal_id}: no ledger entry {missing}")


def _readdressed(mail: list[Envelope], proposal_id: str) -> list[Envelope]:
    """The same messages under another proposal id of the same length, so the copies are told apart."""
    other = proposal_id[::-1].encode()
    return [Envelope(e.recipient, e.state, e.raw.replace(proposal_id.encode(), other)) for e in mail]


async def send_bare(settings: Settings, mail: list[Envelope]) -> float:
    """The baseline: seconds to connect, send `mail` one message at a time over that one connection, and quit."""
    sender = parseaddr(settings.mail_from)[1]
    started = time.perf_counter()
    async with aiosmtplib.SMTP(hostname=settings.smtp_host, port=settings.smtp_port, timeout=30) as smtp:
        await smtp.ehlo()
        options = ["BODY=8BITMIME"] if smtp.supports_extension("8BITMIME") else []
        for envelope in mail:
            await smtp.sendmail(sender, [envelope.recipient], envelope.raw, mail_options=options)
    return time.perf_counter() - started


async def run_fanout_bench(
    say: Callable[[str], None] = print, repeats: int = 5, *, profile: Path | None = None
) -> dict[str, Any]:
    """Time `repeats` round starts against the same mail sent bare; `profile` samples the timed round starts."""
    proposal_file = EXAMPLES / "review-round.yaml"
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    with tempfile.TemporaryDirectory(prefix="aisafe-bench-fanout-") as scratch:
        ports = StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port())
        async with EmbeddedStack(Path(scratch) / "data", ports) as stack:
            assert stack.client is not None and stack.settings is not None
            client, settings = stack.client, stack.settings
            engine = make_engine(settings.sqlalchemy_url)
            await asyncio.to_thread(operations.import_roster, engine, roster)
            warm_up = await start_round(client, engine, settings, proposal_file)
            expected = len(warm_up.mail)
            check_round(engine, warm_up, expected)
            states = len({envelope.state for envelope in warm_up.mail})
            say(f"fanout: {expected} invitations to {states} states; warm-up round {warm_up.seconds:.3f}s")
            starts: list[RoundStart] = []
            bare: list[float] = []
            # Each repeat is timed: the bar is drawn only when told, between repeats, never during one.
            with profiled(profile), counting("fanout repeats", repeats, refresh_per_second=None) as reached:
                for number in range(repeats):
                    start = await start_round(client, engine, settings, proposal_file)
                    check_round(engine, start, expected)
                    starts.append(start)
                    bare.append(await send_bare(settings, _readdressed(start.mail, start.proposal_id)))
                    say(
                        f"fanout {number + 1}/{repeats}: ours {start.seconds:.3f}s (round {start.round_seconds:.3f}s,"
                        f" mail activity {start.activity_seconds:.3f}s), baseline {bare[-1]:.3f}s"
                    )
                    reached(number + 1)
    ours = statistics.median(s.seconds for s in starts)
    baseline = statistics.median(bare)
    round_only = statistics.median(s.round_seconds for s in starts)
    activity_only = statistics.median(s.activity_seconds for s in starts)
    return {
        "fanout": {
            "messages": expected,
            "states": states,
            "bytes": sum(len(e.raw) for e in starts[-1].mail),
            "ours_s": round(ours, 4),
            "baseline_s": round(baseline, 4),
            "ratio": round(ours / baseline, 2),
            "goal_max_ratio": FANOUT_GOAL,
            "met": ours / baseline <= FANOUT_GOAL,
            "statistic": f"median of {repeats}, after one warm-up round",
            # Where the time goes, each against the same baseline: the span on the server's clock, the round
            # workflow alone (its ledger entry, then the mailing) and the invitation activity alone.
            "ours_server_s": round(statistics.median(s.server_seconds for s in starts), 4),
            "ours_round_s": round(round_only, 4),
            "round_ratio": round(round_only / baseline, 2),
            "ours_activity_s": round(activity_only, 4),
            "activity_ratio": round(activity_only / baseline, 2),
            "ours_runs_s": [round(s.seconds, 4) for s in starts],
            "baseline_runs_s": [round(b, 4) for b in bare],
            "best_ratio": round(min(s.seconds for s in starts) / min(bare), 2),
            # The median of each step. The client waits longer than `ours_server_s`: it reads the proposal file,
            # stores its document and calls start before the first event, and hears of the last by long poll.
            "steps_s": {step: round(statistics.median(s.steps[step] for s in starts), 4) for step in STEPS},
        }
    }
