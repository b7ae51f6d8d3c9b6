"""A document is rendered to HTML once per version, in a worker thread: a large document's first view never
stalls other requests, and later views render nothing."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from markupsafe import Markup
from sqlmodel import Session
from temporalio.worker import Worker

import web.document_cache as document_cache
from models.ledger import document_hash
from models.messages import DocumentRef, RoundPurpose
from models.tables import DocumentBlob, DocumentVersion
from tests import test_web
from tests.test_web import Site
from web.document_cache import NOT_KEPT, RenderCache

# test_web's app with a real round workflow and ledger, and its worker.
site, worker = test_web.site, test_web.worker


def large_document(megabytes: float) -> tuple[str, str]:
    """A Markdown document of about this size, and the marker that makes its text (and hash) its own."""
    marker = uuid.uuid4().hex
    parts, size, n = [f"# Large framework {marker}\n\n"], 0, 0
    while size < megabytes * 1024 * 1024:
        part = f"## Section {n}\n\n" + "Member states share incident reports within 72 hours. " * 40 + "\n\n"
        parts.append(part)
        size += len(part)
        n += 1
    parts.append(f"The last paragraph {marker}.\n")
    return "".join(parts), marker


def store_version(site: Site, body: str, version: int) -> DocumentRef:
    ref = DocumentRef(sha256=document_hash(body), version=version, filename=f"v{version}.md", size=len(body))
    with Session(site.engine) as session:
        session.add(DocumentBlob(sha256=ref.sha256, body=body, size=ref.size))
        session.add(
            DocumentVersion(proposal_id=site.proposal_id, version=version, sha256=ref.sha256, filename=ref.filename)
        )
        session.commit()
    return ref


class GatedRenderer:
    """The real renderer, held in its worker thread until released: while it is held, the event loop must
    still serve other requests (on the loop, it would block them all until the release that never comes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        real = document_cache.markdown_to_html

        def render(text: str) -> Markup:
            self.calls += 1
            self.started.set()
            if not self.release.wait(timeout=60):
                raise AssertionError("the rendering was never released")
            return real(text)

        monkeypatch.setattr(document_cache, "markdown_to_html", render)


async def test_a_large_documents_first_view_does_not_stall_other_requests_and_renders_once(
    site: Site, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(document_cache, "cache", RenderCache())  # nothing rendered before this test
    body, marker = large_document(2)
    big = store_version(site, body, 3)
    site.v2 = big  # the version the round reviews and its links name
    await site.start_round(1, RoundPurpose.REVIEW, previous_document=None)
    link = site.action_link(1)
    renderer = GatedRenderer(monkeypatch)

    first_view = asyncio.create_task(site.http.get(link))
    while not renderer.started.is_set():  # the page has reached the rendering
        assert not first_view.done(), first_view.result().text[:500]
        await asyncio.sleep(0.01)
    # Two more views of the same version arrive meanwhile, and a health check.
    more_views = [asyncio.create_task(site.http.get(link)) for _ in range(2)]
    health = await asyncio.wait_for(site.http.get("/healthz"), timeout=30)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert not first_view.done() and not any(v.done() for v in more_views)  # all still waiting for the rendering

    renderer.release.set()
    pages = [await first_view, *[await v for v in more_views]]
    for page in pages:
        assert page.status_code == 200
        assert f"The last paragraph {marker}." in page.text and "<h2>Section 1</h2>" in page.text
    assert renderer.calls == 1  # three concurrent first views, one rendering

    again = await site.http.get(link)
    assert again.status_code == 200 and f"The last paragraph {marker}." in again.text
    assert renderer.calls == 1  # a later view renders nothing


async def test_the_diff_between_versions_is_rendered_once_too(
    site: Site, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(document_cache, "cache", RenderCache())  # nothing rendered before this test
    await site.start_round(1, RoundPurpose.REVIEW)  # version 2, with the changes from version 1
    diffs: list[Any] = []
    real = document_cache.document_diff
    monkeypatch.setattr(document_cache, "document_diff", lambda *a, **k: diffs.append(a) or real(*a, **k))
    link = site.action_link(1)
    pages = [await site.http.get(link) for _ in range(3)]
    assert all(p.status_code == 200 and "Changes from version 1" in p.text for p in pages)
    assert len(diffs) == 1
    assert pages[0].text.count('class="diff-add"') == pages[2].text.count('class="diff-add"') > 0


# --- the cache itself -----------------------------------------------------------------------------------------


async def test_the_cache_keeps_what_fits_and_drops_the_least_recently_used() -> None:
    cache = RenderCache(max_chars=10)
    made: list[str] = []

    def render(key: str, size: int) -> Any:
        return lambda: (made.append(key) or f"html of {key}", size)

    assert await cache.get("a", render("a", 4)) == "html of a"
    assert await cache.get("b", render("b", 4)) == "html of b"
    assert await cache.get("a", render("a", 4)) == "html of a"  # kept; now the most recently used
    await cache.get("c", render("c", 4))  # 12 > 10: "b", the least recently used, goes
    await cache.get("a", render("a", 4))
    await cache.get("b", render("b", 4))
    assert made == ["a", "b", "c", "b"]
    await cache.get("huge", render("huge", 11))  # larger than the whole cache: served, not kept
    await cache.get("huge", render("huge", 11))
    await cache.get("missing", render("missing", NOT_KEPT))
    await cache.get("missing", render("missing", NOT_KEPT))
    assert made[-4:] == ["huge", "huge", "missing", "missing"] and cache.renders == len(made)


async def test_concurrent_first_requests_share_one_rendering_and_a_failure_is_not_kept() -> None:
    cache = RenderCache()
    gate = threading.Event()
    calls = 0

    def render() -> tuple[str, int]:
        nonlocal calls
        calls += 1
        if not gate.wait(timeout=30):
            raise AssertionError("never released")
        if calls == 1:
            raise ValueError("the first rendering fails")
        return "html", 4

    waiting = [asyncio.create_task(cache.get("doc", render)) for _ in range(5)]
    while calls == 0:
        await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert calls == 1 and all(isinstance(r, ValueError) for r in results)
    assert await cache.get("doc", render) == "html" and calls == 2  # tried again, then kept
    assert await cache.get("doc", render) == "html" and calls == 2
