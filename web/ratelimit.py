"""Rate limits for the link pages (`/act/*`, `/comment/*`, GET and POST): per link and per client address.

In process (one web process holds its own counts): a token bucket per link and per address, refilled evenly
over a minute, so a burst up to the limit passes and a steady stream above it gets 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from models.settings import Settings
from web.pages import error_page

MAX_TRACKED = 100_000  # buckets kept per limit; the least recently used go first (and start full again)


class TokenBucket:
    """`per_minute` requests a minute for each key, with bursts up to `per_minute`."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> int | None:
        """Spend one request for `key`: None when allowed, else the seconds until the next one is."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return None if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))


class LinkLimiter:
    """The limits of one web app, from its settings."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_token = TokenBucket(settings.rate_limit_per_token, clock) if settings.rate_limit_per_token else None
        self.per_address = (
            TokenBucket(settings.rate_limit_per_address, clock) if settings.rate_limit_per_address else None
        )
        self.exempt = {a.strip() for a in settings.rate_limit_exempt.split(",") if a.strip()}
        self.trusted_proxies = settings.trusted_proxies

    def client_address(self, request: Request) -> str:
        """The connection's address, or with trusted proxies the X-Forwarded-For entry the outermost one added."""
        peer = request.client.host if request.client else ""
        if self.trusted_proxies:
            forwarded = [a.strip() for h in request.headers.getlist("x-forwarded-for") for a in h.split(",")]
            if len(forwarded) >= self.trusted_proxies and forwarded[-self.trusted_proxies]:
                return forwarded[-self.trusted_proxies][:100]
        return peer

    def check(self, request: Request) -> tuple[str, int] | None:
        """None when the request may go on, else what was exceeded ("address" or "link") and the seconds to wait."""
        address = self.client_address(request)
        if self.per_address is not None and address not in self.exempt:
            wait = self.per_address.take(address)
            if wait is not None:
                return "address", wait
        token = str(request.path_params.get("token", ""))
        if self.per_token is not None:
            wait = self.per_token.take(hashlib.sha256(token.encode(errors="replace")).hexdigest()[:32])
            if wait is not None:
                return "link", wait
        return None


def limiter_of(request: Request) -> LinkLimiter:
    limiter: LinkLimiter | None = getattr(request.app.state, "link_limiter", None)
    if limiter is None:
        limiter = request.app.state.link_limiter = LinkLimiter(request.app.state.settings)
    return limiter


def too_many_requests(request: Request, exceeded: str, wait: int) -> Response:
    message = (
        "This link has been opened too many times in a short time."
        if exceeded == "link"
        else "Too many requests have come from your network in a short time."
    )
    response = error_page(
        request,
        429,
        "Too many requests",
        message,
        f"Wait {wait} second{'s' if wait != 1 else ''}, then open the link again. Nothing was recorded.",
    )
    response.headers["Retry-After"] = str(wait)
    return response


class RateLimitedRoute(APIRoute):
    """A route checked against the link limits before anything else (the body is not even read when refused).

    A route class rather than a dependency: a dependency can only raise, and the app's error handler would
    drop the Retry-After header."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            refused = limiter_of(request).check(request)
            if refused is not None:
                return too_many_requests(request, *refused)
            return await handler(request)

        return limited
