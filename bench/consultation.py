"""`python -m bench.consultation` (and a phase of `make bench`): one consultation at public scale, run to its end.

5,000 comments (of 1,500 characters each, 7.5 MB of text) from 1,000 stakeholders go in as Updates while the
deadline is extended; then one bulk disposition answers them all and the consultation closes. The bench checks
what issue 17 asks: every run's history under 10,000 events and every payload under 256 KiB, every comment and
disposition in the ledger once. It prints events per run, the largest payload, runs, wall time and the peak RSS of
the process (worker and client share it).

Exit codes: 0 every check held, 1 otherwise, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.comments import CommentActivities, store_comment_body
from activities.documents import store_document
from activities.ledger import LedgerActivities
from devstack.services import start_dev_environment
from models.db import init_db, make_engine
from models.messages import (
    CommentSubmission,
    ConsultationInput,
    ConsultationMailing,
    ConsultationStatus,
    DocumentRef,
    ExtendInput,
    MailingResult,
    RespondManyInput,
)
from models.positions import Disposition
from models.roster import Sector
from models.settings import Settings
from models.tables import LedgerEntry
from models.update_retry import retrying
from workflows.consultation import ConsultationWorkflow

MAX_EVENTS = 10_000
MAX_PAYLOAD = 256 * 1024
DEFAULT_OUT = Path("bench/consultation-results.json")


@dataclass
class ConsultationFigures:
    comments: int
    stakeholders: int
    comment_chars: int
    runs: int = 0
    events_per_run: list[int] = field(default_factory=list)
    largest_payload_bytes: int = 0
    extensions: int = 0
    retried_sends: int = 0
    queries_asked_again: int = 0
    comments_in_ledger: int = 0
    dispositions_in_ledger: int = 0
    comment_count_returned: int = 0
    comment_seconds: float = 0.0
    wall_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    failures: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.runs < 1:
            self.failures.append("no run of the consultation was found")
        if max(self.events_per_run, default=0) >= MAX_EVENTS:
            self.failures.append(f"a run's history has {max(self.events_per_run)} events (limit {MAX_EVENTS})")
        if self.largest_payload_bytes >= MAX_PAYLOAD:
            self.failures.append(f"a payload of {self.largest_payload_bytes} bytes (limit {MAX_PAYLOAD})")
        for name, value in (
            ("comment entries in the ledger", self.comments_in_ledger),
            ("disposition entries in the ledger", self.dispositions_in_ledger),
            ("comments the consultation returned", self.comment_count_returned),
        ):
            if value != self.comments:
                self.failures.append(f"{value} {name}, not {self.comments}")


def payload_sizes(message: Message) -> Iterator[int]:
    """The encoded size of every Payload inside a history event (inputs, results, markers, memo, headers)."""
    if isinstance(message, Payload):
        yield message.ByteSize()
        return
    for descriptor, value in message.ListFields():
        if descriptor.type != descriptor.TYPE_MESSAGE:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif descriptor.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Message):
                yield from payload_sizes(item)


def _comment_body(number: int, chars: int) -> str:
    head = f"Comment {number}: section {number % 12 + 1} should say who reviews incident reports. "
    return (head * (chars // len(head) + 1))[:chars]


async def run_consultation(
    client: Client,
    engine: Engine,
    *,
    comments: int = 5000,
    stakeholders: int = 1000,
    comment_chars: int = 1500,
    concurrency: int = 8,
    events_per_run: int = 3000,
    open_for: float = 40.0,
    progress: Callable[[str], None] = lambda _: None,
) -> ConsultationFigures:
    """Run one consultation through `comments` comments and a bulk disposition; the figures and what failed."""
    figures = ConsultationFigures(comments=comments, stakeholders=stakeholders, comment_chars=comment_chars)
    started = time.monotonic()
    per_link = -(-comments // stakeholders)
    settings = Settings(comments_per_link=per_link, consultation_events_per_run=events_per_run)
    task_queue = f"bench-consultation-{uuid.uuid4().hex[:8]}"
    proposal_id = f"bench-consultation-{uuid.uuid4().hex[:8]}"
    mailed: list[str] = []

    @activity.defn(name="send_consultation_mail")
    async def send_consultation_mail(mailing: ConsultationMailing) -> MailingResult:
        mailed.append(mailing.step)
        return MailingResult(sent=0, already_sent=0)

    body = "# Framework\n\nThe text under consultation.\n"
    document = DocumentRef(sha256=store_document(engine, body), version=1, filename="framework.md", size=len(body))
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[ConsultationWorkflow],
            activities=[
                LedgerActivities(engine).append_ledger,
                *CommentActivities(settings, engine).activities(),
                send_consultation_mail,
            ],
            activity_executor=executor,
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
            ),
        )
        async with worker:
            handle = await client.start_workflow(
                ConsultationWorkflow.run,
                ConsultationInput(
                    proposal_id=proposal_id,
                    title="Bench consultation",
                    stage_index=0,
                    document=document,
                    sectors=list(Sector),
                    deadline=datetime.now(UTC) + timedelta(seconds=open_for),
                ),
                id=f"{proposal_id}.consultation-0",
                task_queue=task_queue,
            )
            while "invitation" not in mailed:
                await asyncio.sleep(0.05)

            sectors = list(Sector)
            gate = asyncio.Semaphore(concurrency)
            sending = True

            def retried() -> None:
                figures.retried_sends += 1

            async def update(method: Any, *args: object, **kwargs: object) -> object:
                """An Update, sent again while the consultation asks for it (see models/update_retry.py)."""
                return await retrying(
                    lambda: handle.execute_update(method, *args, **kwargs), for_seconds=120, on_retry=retried
                )

            async def comment(number: int) -> None:
                async with gate:
                    text = _comment_body(number, comment_chars)
                    sha256 = await asyncio.to_thread(store_comment_body, engine, text)
                    link = number % stakeholders
                    submission = CommentSubmission(
                        proposal_id=proposal_id,
                        stage_index=0,
                        stakeholder_id=f"SH-{link:06d}",
                        sector=sectors[link % len(sectors)],
                        document_sha256=document.sha256,
                        text_sha256=sha256,
                        text_length=len(text),
                    )
                    await update(ConsultationWorkflow.submit_comment, submission, id=f"c-{number}")
                    if number % 500 == 0:
                        progress(f"comment {number}")

            async def keep_open() -> None:
                """Extend the deadline while comments are still coming, as a coordinator would."""
                while sending:
                    status = await current_status()
                    if (status.deadline - datetime.now(UTC)).total_seconds() < open_for / 2:
                        await update(ConsultationWorkflow.extend, ExtendInput(by=timedelta(seconds=open_for)))
                        figures.extensions += 1
                    await asyncio.sleep(min(1.0, open_for / 8))

            async def current_status() -> ConsultationStatus:
                """The status query, asked again when it met the hand-over to the next run (or a worker's
                replay of it: the SDK fails such a query now and then, "Fatal error in workflow machines")."""
                while True:
                    try:
                        return await handle.query(ConsultationWorkflow.status)
                    except (RPCError, WorkflowQueryFailedError):
                        figures.queries_asked_again += 1
                    await asyncio.sleep(0.2)

            keeper = asyncio.create_task(keep_open())
            await asyncio.gather(*(comment(n) for n in range(comments)))
            sending = False
            await keeper
            figures.comment_seconds = time.monotonic() - started
            progress("comments sent; waiting for the deadline")
            while (await current_status()).is_open:
                await asyncio.sleep(0.5)
            progress("answering every comment at once")
            await update(
                ConsultationWorkflow.respond_many,
                RespondManyInput(all_open=True, disposition=Disposition.NOTED, reason="Noted for the next revision"),
            )
            result = await handle.result()
            figures.comment_count_returned = result.comment_count or 0

    figures.wall_seconds = time.monotonic() - started
    progress("reading the histories")
    async for execution in client.list_workflows(f"WorkflowId = '{handle.id}'"):
        history = await client.get_workflow_handle(handle.id, run_id=execution.run_id).fetch_history()
        figures.events_per_run.append(len(history.events))
        for event in history.events:
            figures.largest_payload_bytes = max(figures.largest_payload_bytes, *payload_sizes(event), 0)
    figures.runs = len(figures.events_per_run)
    with Session(engine) as session:
        for kind in ("comment", "disposition"):
            count = session.exec(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.proposal_id == proposal_id, col(LedgerEntry.kind) == kind)
            ).one()
            if kind == "comment":
                figures.comments_in_ledger = count
            else:
                figures.dispositions_in_ledger = count
    figures.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures.check()
    return figures


async def run_consultation_bench(
    say: Callable[[str], None] = print,
    *,
    comments: int = 5000,
    stakeholders: int = 1000,
    comment_chars: int = 1500,
    concurrency: int = 8,
    events_per_run: int = 3000,
) -> dict[str, Any]:
    """The consultation phase of `make bench`: its own dev server and ledger, one consultation to its end."""
    with tempfile.TemporaryDirectory(prefix="aisafe-bench-consultation-") as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'ledger.db'}")
        init_db(engine)
        env = await start_dev_environment()
        try:
            figures = await run_consultation(
                env.client,
                engine,
                comments=comments,
                stakeholders=stakeholders,
                comment_chars=comment_chars,
                concurrency=concurrency,
                events_per_run=events_per_run,
                progress=lambda step: say(f"consultation: {step}"),
            )
        finally:
            await env.shutdown()
            engine.dispose()
    say(
        f"consultation: {figures.comments} comments in {figures.runs} runs, at most "
        f"{max(figures.events_per_run, default=0)} events a run, largest payload {figures.largest_payload_bytes} "
        f"bytes, {figures.wall_seconds:.0f}s, peak RSS {figures.peak_rss_mib:.0f} MiB"
        + (f"; FAILED: {'; '.join(figures.failures)}" if figures.failures else "")
    )
    return {"consultation": asdict(figures)}


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consultation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--comments", type=int, default=5000)
    parser.add_argument("--stakeholders", type=int, default=1000)
    parser.add_argument("--chars", type=int, default=1500, help="characters in each comment")
    # The server takes at most 10 Updates in flight per workflow; more senders only wait and retry.
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--events-per-run", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if min(args.comments, args.stakeholders, args.chars, args.concurrency) < 1:
        parser.error("every count must be at least 1")
    report = await run_consultation_bench(
        lambda line: print(line, file=sys.stderr, flush=True),
        comments=args.comments,
        stakeholders=args.stakeholders,
        comment_chars=args.chars,
        concurrency=args.concurrency,
        events_per_run=args.events_per_run,
    )
    args.out.write_text(json.dumps(report["consultation"], indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["consultation"], indent=2))
    return 1 if report["consultation"]["failures"] else 0


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    os._exit(code)  # not sys.exit: the Temporal client can abort the interpreter's exit (NOTES.md)
