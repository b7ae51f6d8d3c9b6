"""Documents and diffs rendered to HTML once per version, off the event loop.

Rendering Markdown costs about a second per MB in pure Python; done on the event loop on every view, one
large document stalled every other request. A document is stored under its SHA-256, so what it renders to
never changes: it is rendered once in a worker thread (concurrent first views wait for that one rendering)
and kept, within a bound on the total size, by its hash.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from markupsafe import Markup
from sqlalchemy import Engine

from web.pages import document_body
from web.rendering import DocumentDiff, document_diff, markdown_to_html

_Rendered = TypeVar("_Rendered")
# Rendered HTML kept in memory, in characters: a few dozen large documents, or thousands of usual ones.
DEFAULT_BOUND = 64 * 1024 * 1024
# The size a rendering reports when it must not be kept (its text was not stored yet).
NOT_KEPT = -1


class RenderCache:
    """Values rendered from content-addressed text, least recently used dropped first past `max_chars`."""

    def __init__(self, max_chars: int = DEFAULT_BOUND) -> None:
        self.max_chars = max_chars
        self.renders = 0  # renderings done (not served from the cache): what a test of "render once" counts
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._pending: dict[str, asyncio.Future[Any]] = {}

    async def get(self, key: str, render: Callable[[], tuple[_Rendered, int]]) -> _Rendered:
        """The value under `key`; `render` (run in a worker thread) makes it and says its size when missing."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]  # type: ignore[no-any-return]
        pending = self._pending.get(key)
        if pending is not None:  # another view is rendering it right now: share its result
            return await asyncio.shield(pending)  # type: ignore[no-any-return]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            self.renders += 1
            value, size = await asyncio.to_thread(render)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # nobody else may be waiting: the exception is raised below, not lost
            raise
        finally:
            self._pending.pop(key, None)
        self._store(key, value, size)
        future.set_result(value)
        return value

    def _store(self, key: str, value: object, size: int) -> None:
        if size == NOT_KEPT or size > self.max_chars:
            return  # larger than the whole cache (or not to be kept): served, not kept
        self._items[key] = (value, size)
        self._size += size
        while self._size > self.max_chars:
            _, (_, dropped) = self._items.popitem(last=False)
            self._size -= dropped


cache = RenderCache()


async def rendered_document(engine: Engine, sha256: str) -> Markup:
    """The stored document with this hash as sanitised HTML (empty when it is not stored)."""

    def render() -> tuple[Markup, int]:
        body = document_body(engine, sha256)
        html = markdown_to_html(body or "")
        return html, len(html) if body is not None else NOT_KEPT

    return await cache.get(f"document:{sha256}", render)


async def rendered_diff(
    engine: Engine, old_sha256: str, old_version: int, new_sha256: str, new_version: int
) -> DocumentDiff | None:
    """The changes between two stored versions as HTML, or None when they agree (or the old one is not stored)."""

    def render() -> tuple[DocumentDiff | None, int]:
        old, new = document_body(engine, old_sha256), document_body(engine, new_sha256)
        if old is None or new is None:
            return None, NOT_KEPT
        diff = document_diff(old, new, old_name=f"version {old_version}", new_name=f"version {new_version}")
        return diff, len(diff.html) if diff else 0

    return await cache.get(f"diff:{old_sha256}:{old_version}:{new_sha256}:{new_version}", render)
