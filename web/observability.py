"""Request ids, one log line per request and Prometheus request metrics for the web app.

Paths carry action and comment tokens, so nothing here records a path: requests are named by their route's template
(`/act/{token}`), and a request no route matched is `unmatched`. The metrics are served on a listener of their own
(AISAFE_WEB_METRICS_ADDRESS), apart from the pages: the port behind the Ingress or reverse proxy never answers /metrics.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.observability import Answer, http_listener
from models.settings import Settings

log = structlog.stdlib.get_logger("aisafe.web")

REQUEST_ID_HEADER = b"x-request-id"
# What we accept from a proxy or client as a request id: no spaces, quotes or control characters reach a log line.
WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
# Probes every few seconds would drown the log; they are still counted.
UNLOGGED_ROUTES = frozenset({"/healthz"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestMetrics:
    """The web app's Prometheus registry: requests by method, route template and status, their latency, the process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aisafe_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aisafe_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method, route template and status code.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def exposition(self) -> Answer:
        return Answer(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)


def route_template(scope: Scope, arrived: Scope) -> str:
    """The template of the route that answered (`/audit/{proposal_id}`, `/static/{path}`), never the path itself.

    FastAPI from 0.16x keeps included routers whole and leaves `scope["route"]` at the router's own route (no
    prefix); the route as included, prefix and all, is in its effective route context, which its own telemetry reads
    the same way. Earlier versions copy included routes with the prefix into the app, so `scope["route"]` has it. A
    mount (the static files) is found by matching the scope as it `arrived` against the app's mounts.
    """
    effective = scope.get("fastapi", {}).get("effective_route_context")
    for candidate in (getattr(effective, "starlette_route", None), effective, scope.get("route")):
        template = getattr(candidate, "path_format", None)
        if isinstance(template, str) and template:
            return template
    for route in getattr(scope.get("router"), "routes", []):
        if isinstance(route, Mount) and route.matches(arrived)[0] is Match.FULL:
            return route.path_format
    return UNMATCHED


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when well formed (a proxy's id ties its log to ours); otherwise a new one."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if WELL_FORMED_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestObservability:
    """ASGI middleware: a request id (bound to every log line, returned in X-Request-ID), a log line, metrics."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = dict(scope)
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        status = 500  # what the client gets when the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            failure: Exception | None = None
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                failure = exc
                raise
            finally:
                seconds = time.perf_counter() - started
                route = route_template(scope, arrived)
                self.metrics.observe(method, route, status, seconds)
                if route not in UNLOGGED_ROUTES or failure is not None:
                    # An unhandled error's traceback goes on this line, which has the request id; the server's own
                    # line about it, written after the id is unbound, does not.
                    (log.error if failure is not None else log.info)(
                        "request",
                        method=method,
                        route=route,
                        status=status,
                        duration_ms=round(seconds * 1000, 1),
                        exc_info=failure,
                        **_known_ids(scope.get("path_params", {})),
                    )


def _known_ids(path_params: Mapping[str, Any]) -> dict[str, str]:
    """The proposal id when the route names it (the auditor pages); tokens stay out."""
    proposal_id = path_params.get("proposal_id")
    return {"proposal_id": proposal_id} if isinstance(proposal_id, str) else {}


def install(app: FastAPI, settings: Settings) -> None:
    """Request ids, request log lines and metrics for `app`; the metrics listener runs with the app's lifespan."""
    metrics = RequestMetrics()
    app.state.request_metrics = metrics
    # Added last, so outermost: the id is bound before any other middleware or handler logs.
    app.add_middleware(RequestObservability, metrics=metrics)
    if not settings.web_metrics_address:
        return
    address = settings.web_metrics_address
    app_lifespan = app.router.lifespan_context

    async def serve_metrics() -> Answer:
        return metrics.exposition()

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with AsyncExitStack() as stack:
            state = await stack.enter_async_context(app_lifespan(app))
            await stack.enter_async_context(http_listener(address, {"/metrics": serve_metrics}))
            log.info("serving metrics", address=address)
            yield state

    app.router.lifespan_context = lifespan
