"""Sending an Update that the server or the workflow asks us to send again in a moment.

Three answers mean "not applied, send again" for a consultation (checked on the dev server, temporal 1.9.1 /
server 1.32): the workflow's validator refuses with type "Retry" while the run hands over to its continuation; the
server aborts an Update that reached a run as it continued as new (UNAVAILABLE, "workflow update was aborted");
and the server refuses an Update while ten others to the same workflow are in flight (RESOURCE_EXHAUSTED). The
same update id is sent each time, so an Update that was in fact applied is not applied twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

T = TypeVar("T")
RETRY_PAUSE = 0.1
MAX_PAUSE = 2.0


def send_again(exc: BaseException) -> bool:
    """Whether `exc` says the Update was not applied and may be sent again."""
    if isinstance(exc, WorkflowUpdateFailedError):
        cause = exc.cause
        return isinstance(cause, ApplicationError) and cause.type == "Retry"
    if isinstance(exc, RPCError):
        if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            return "in-flight updates" in exc.message
        return exc.status == RPCStatusCode.UNAVAILABLE and "update was aborted" in exc.message
    return False


async def retrying(
    send: Callable[[], Awaitable[T]], *, for_seconds: float, on_retry: Callable[[], None] = lambda: None
) -> T:
    """`send()` again (with a growing pause) while its failure says so, for up to `for_seconds`."""
    loop = asyncio.get_running_loop()
    until = loop.time() + for_seconds
    pause = RETRY_PAUSE
    while True:
        try:
            return await send()
        except (WorkflowUpdateFailedError, RPCError) as exc:
            if not send_again(exc) or loop.time() + pause > until:
                raise
        on_retry()
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, MAX_PAUSE)
