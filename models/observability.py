"""What the processes tell operators: a tiny HTTP listener for probes and scrapes, the worker's health, and the
workflow and activity ids bound to every line an activity logs."""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import structlog
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

log = logging.getLogger(__name__)

# A probe or a scrape sends a few hundred bytes; anything slower or larger than this is not one.
MAX_REQUEST_HEAD = 8192
READ_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def json(cls, status: int, document: Mapping[str, Any]) -> Answer:
        return cls(status, json.dumps(document).encode() + b"\n", "application/json")


Handler = Callable[[], Awaitable[Answer]]


def split_address(address: str) -> tuple[str, int]:
    """`0.0.0.0:9000` -> ("0.0.0.0", 9000); `[::]:9000` -> ("::", 9000)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@asynccontextmanager
async def http_listener(address: str, routes: Mapping[str, Handler]) -> AsyncIterator[asyncio.Server]:
    """Answer GET (and HEAD) for `routes` on `address` while the block runs: one request per connection.

    For health probes and Prometheus scrapes on an internal port; not a web server for people.
    """
    host, port = split_address(address)
    server = await asyncio.start_server(partial(_answer, routes), host, port, limit=MAX_REQUEST_HEAD)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def _answer(routes: Mapping[str, Handler], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
        method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        handler = routes.get(target.split("?", 1)[0])
        if handler is None:
            answer = Answer(404, b"not found\n")
        elif method not in ("GET", "HEAD"):
            answer = Answer(405, b"method not allowed\n")
        else:
            try:
                answer = await handler()
            except Exception:
                log.exception("answering %s failed", target.split("?", 1)[0])
                answer = Answer(500, b"internal error\n")
        reason = http.HTTPStatus(answer.status).phrase
        writer.write(
            f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {answer.content_type}\r\n"
            f"Content-Length: {len(answer.body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
        )
        if method != "HEAD":
            writer.write(answer.body)
        await writer.drain()
    except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # a slow, malformed or abandoned request gets no answer
    finally:
        writer.close()


# --- the worker's health ---------------------------------------------------------------------------------------------


class TemporalUnreachable(Exception):
    """Temporal did not answer, so whether this worker polls cannot be told."""


class WorkerHealth:
    """The worker's /healthz (liveness) and /readyz (readiness) answers.

    Ready: the worker runs and Temporal saw it poll both workflow and activity tasks within `max_age` seconds (a long
    poll lasts about a minute, so 150 s leaves room). Alive: the same, except that a Temporal outage counts as alive,
    because the worker is not at fault and restarting it would not help. The answer from Temporal is kept a few
    seconds, so probes and stray requests do not turn into a stream of calls to it.
    """

    TASK_TYPES = {
        "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    }
    UNREACHABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}

    def __init__(
        self,
        worker: Worker,
        client: Client,
        task_queue: str,
        *,
        max_age: float = 150.0,
        timeout: float = 4.0,
        keep_for: float = 5.0,
    ) -> None:
        self.worker = worker
        self.client = client
        self.task_queue = task_queue
        self.identity = worker.config().get("identity") or client.identity
        self.max_age, self.timeout, self.keep_for = max_age, timeout, keep_for
        self._checked: tuple[float, str | None, bool] | None = None  # (when, problem, unreachable)
        self._lock = asyncio.Lock()

    @property
    def routes(self) -> dict[str, Handler]:
        return {"/healthz": partial(self.answer, ready=False), "/readyz": partial(self.answer, ready=True)}

    async def answer(self, *, ready: bool) -> Answer:
        if not self.worker.is_running:
            return Answer.json(503, {"status": "stopped"})
        problem, unreachable = await self._polling_problem()
        if unreachable:
            return Answer.json(503 if ready else 200, {"status": "temporal unreachable", "detail": problem})
        if problem:
            return Answer.json(503, {"status": "not polling", "detail": problem})
        return Answer.json(200, {"status": "ok"})

    async def _polling_problem(self) -> tuple[str | None, bool]:
        async with self._lock:
            now = time.monotonic()
            if self._checked is None or now - self._checked[0] > self.keep_for:
                try:
                    self._checked = (now, await self._ask_temporal(), False)
                except TemporalUnreachable as exc:
                    self._checked = (now, str(exc), True)
            return self._checked[1], self._checked[2]

    async def _ask_temporal(self) -> str | None:
        """None when Temporal saw this worker poll both kinds of task lately; otherwise what is wrong."""
        for kind, task_type in self.TASK_TYPES.items():
            request = DescribeTaskQueueRequest(
                namespace=self.client.namespace, task_queue=TaskQueue(name=self.task_queue), task_queue_type=task_type
            )
            try:
                response = await self.client.workflow_service.describe_task_queue(
                    request, timeout=timedelta(seconds=self.timeout)
                )
            except RPCError as exc:
                if exc.status in self.UNREACHABLE:
                    raise TemporalUnreachable(f"Temporal did not answer: {exc.message}") from None
                return f"describing task queue {self.task_queue!r} failed: {exc.message}"
            except RuntimeError as exc:  # the client's connection is (re)made lazily and failed
                raise TemporalUnreachable(f"cannot reach Temporal: {exc}") from None
            now = time.time()
            ages = [now - p.last_access_time.ToSeconds() for p in response.pollers if p.identity == self.identity]
            if not ages:
                return f"Temporal lists no {kind}-task poller {self.identity} on task queue {self.task_queue!r}"
            if min(ages) > self.max_age:
                return f"last polled {kind} tasks {min(ages):.0f}s ago (allowed: {self.max_age:.0f}s)"
        return None


# --- activity log context --------------------------------------------------------------------------------------------


class ActivityLogContext(Interceptor):
    """Every line an activity logs carries its workflow id, run id, activity type and attempt, and the proposal id."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindActivityContext(next)


class _BindActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        # Bound, not scoped: the SDK runs each activity attempt in a task of its own, and its line about a failed
        # attempt ("Completing activity as failed") is written in that task after this returns; it carries the ids
        # too. Cleared first, should a context ever be shared.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            activity_type=info.activity_type,
            activity_id=info.activity_id,
            attempt=info.attempt,
            **({"proposal_id": proposal_id} if (proposal_id := proposal_id_of(input.args)) else {}),
        )
        return await self.next.execute_activity(input)


def proposal_id_of(args: Sequence[Any]) -> str | None:
    """The proposal an activity works for: every activity input model names it."""
    proposal_id = getattr(args[0], "proposal_id", None) if args else None
    return proposal_id if isinstance(proposal_id, str) else None
