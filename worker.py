"""The aisafe worker: runs the proposal and review-round workflows and their activities (`aisafe worker`)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import timedelta

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.comments import CommentActivities
from activities.email import MailActivities
from activities.ledger import LedgerActivities
from activities.membership import MembershipActivities
from models.db import init_db, make_engine
from models.membership import keep_admitted, load_admitted
from models.observability import ActivityLogContext, WorkerHealth, http_listener
from models.settings import Settings
from models.temporal_client import connect
from workflows.consultation import ConsultationWorkflow
from workflows.meeting import MeetingWorkflow
from workflows.proposal import ProposalWorkflow
from workflows.review_round import ReviewRoundWorkflow

WORKFLOWS = [ProposalWorkflow, ReviewRoundWorkflow, ConsultationWorkflow, MeetingWorkflow]
CACHED_RUNS = 5000
HEARTBEAT_FLUSH = timedelta(seconds=2)


def build_worker(client: Client, settings: Settings, engine: Engine, *, task_queue: str | None = None) -> Worker:
    load_admitted(engine)  # payloads naming a state admitted as data must validate here
    ledger = LedgerActivities(engine)
    mail = MailActivities(settings, engine)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            ledger.append_ledger,
            ledger.register_proposal,
            ledger.record_version,
            mail.find_round_recipients,
            mail.send_round_mail,
            mail.send_coordinator_alert,
            mail.send_answer_notice,
            mail.send_consultation_mail,
            mail.send_meeting_mail,
            mail.send_outcome_mail,
            mail.send_summit_report,
            *CommentActivities(settings, engine).activities(),
            MembershipActivities(engine).members_on,
        ],
        # Ledger activities are synchronous database transactions; they run on these threads.
        activity_executor=ThreadPoolExecutor(max_workers=16),
        # The workflow modules import only side-effect-free code (models, pydantic, temporalio): passing those
        # imports through means each new run executes its workflow module alone, not the whole import tree
        # again. The sandbox's checks on calls (time, randomness, I/O) still apply.
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
        ),
        # Every open proposal and round stays in memory (1,000 proposals are over 2,000 runs): no replay from
        # history on each task. Each cached run is small (see the scale figure in bench/README.md).
        max_cached_workflows=CACHED_RUNS,
        # A mailing's heartbeats reach the server at least this often (by default 80% of its 10 s timeout):
        # under load a heartbeat sent at 8 s arrived after 10 s, and a live mailing was cancelled and retried.
        max_heartbeat_throttle_interval=HEARTBEAT_FLUSH,
        interceptors=[ActivityLogContext()],
    )


async def run_worker(settings: Settings) -> None:
    """Run until cancelled; with the settings for them, serve the SDK's metrics and /healthz, /readyz."""
    engine = make_engine(settings.sqlalchemy_url)
    init_db(engine)
    client = await connect(settings, metrics_address=settings.worker_metrics_address)
    worker = build_worker(client, settings, engine)
    async with worker, AsyncExitStack() as listeners:
        if settings.worker_health_address:
            health = WorkerHealth(worker, client, settings.task_queue)
            await listeners.enter_async_context(http_listener(settings.worker_health_address, health.routes))
        await keep_admitted(engine)  # until cancelled: learns of states admitted since it started


if __name__ == "__main__":
    asyncio.run(run_worker(Settings()))
