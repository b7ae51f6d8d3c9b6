"""Is the worker in this container polling its task queue? Exit 0 yes, 1 no: the worker's health check.

The worker has no HTTP port, so its Docker healthcheck and Kubernetes probes run this beside it (the image has it at
/opt/aisafe/worker_healthcheck.py). A worker polls Temporal under the identity `PID@HOSTNAME`; this asks Temporal which
pollers of the task queue (workflow tasks and activity tasks) it saw lately and looks for this host's.

    python /opt/aisafe/worker_healthcheck.py [--max-age SECONDS] [--ignore-unreachable]

It reads the same settings as the worker (TEMPORAL_*, AISAFE_TASK_QUEUE). --ignore-unreachable is for liveness probes:
when Temporal itself cannot be reached the worker is not at fault and restarting it would not help, so that counts as
alive; readiness probes and the compose healthcheck leave it off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from models.settings import Settings
from models.temporal_client import connect_config, runtime

TASK_TYPES = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}
UNREACHABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}


class TemporalUnreachable(Exception):
    """Temporal did not answer, so the worker's health cannot be told."""


async def problem_with(settings: Settings, host: str, max_age: float, timeout: float) -> str | None:
    """None when this host's worker polled both kinds of task within `max_age` seconds; otherwise what is wrong."""
    try:
        client = await asyncio.wait_for(Client.connect(**connect_config(settings), runtime=runtime()), timeout)
    except (RuntimeError, TimeoutError) as exc:
        raise TemporalUnreachable(f"cannot reach Temporal: {str(exc) or 'timed out'}") from None
    now = time.time()
    for kind, task_type in TASK_TYPES.items():
        request = DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=settings.task_queue), task_queue_type=task_type
        )
        try:
            response = await client.workflow_service.describe_task_queue(request, timeout=timedelta(seconds=timeout))
        except RPCError as exc:
            if exc.status in UNREACHABLE:
                raise TemporalUnreachable(f"Temporal did not answer: {exc.message}") from None
            return f"describing task queue {settings.task_queue!r} failed: {exc.message}"
        ages = [now - p.last_access_time.ToSeconds() for p in response.pollers if p.identity.endswith(f"@{host}")]
        if not ages:
            return f"no {kind}-task poller from {host} on task queue {settings.task_queue!r}"
        if min(ages) > max_age:
            return f"{host} last polled {kind} tasks {min(ages):.0f}s ago (allowed: {max_age:.0f}s)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-age", type=float, default=150.0, help="seconds since this host's last poll (150)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for Temporal (10)")
    parser.add_argument("--ignore-unreachable", action="store_true", help="healthy when Temporal cannot be reached")
    args = parser.parse_args(argv)
    settings = Settings()
    host = socket.gethostname()
    try:
        problem = asyncio.run(problem_with(settings, host, args.max_age, args.timeout))
    except TemporalUnreachable as exc:
        sys.stderr.write(f"worker health unknown: {exc}\n")
        return 0 if args.ignore_unreachable else 1
    if problem:
        sys.stderr.write(f"worker unhealthy: {problem}\n")
        return 1
    sys.stdout.write(f"worker healthy: {host} is polling task queue {settings.task_queue!r}\n")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a process that used a Temporal client can abort at exit (temporalio/sdk-python#300)
