"""Consultation at public scale: bodies by hash, limits per link and per comment, runs that continue as new."""

from __future__ import annotations

import html
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.consultation import MAX_EVENTS, MAX_PAYLOAD, run_consultation
from models.ledger import document_hash
from models.tables import CommentBlob, LedgerEntry
from tests.integration import cli
from tests.test_web import Site, form_of, site, worker  # noqa: F401  (fixtures)

__all__ = ["site", "worker"]


def _textarea(page: str) -> str:
    found = re.search(r'<textarea id="text" name="text"[^>]*>(.*?)</textarea>', page, re.S)
    assert found is not None, "the form was not shown again"
    return html.unescape(found.group(1))


def _comment_entries(site: Site) -> list[LedgerEntry]:
    with Session(site.engine) as session:
        return list(
            session.exec(
                select(LedgerEntry).where(LedgerEntry.proposal_id == site.proposal_id, LedgerEntry.kind == "comment")
            )
        )


async def test_a_comment_over_the_size_limit_gets_a_413_page_that_keeps_the_text(site: Site, worker: Worker) -> None:
    site.settings.comment_max_chars = 200
    await site.start_consultation(timedelta(days=1))
    link = f"/comment/{site.comment_token()}"
    long_text = "Section 4 should say who reviews incident reports, <and> how & when. " * 4  # 276 characters

    page = await site.http.post(link, data={"csrf": await form_of(site, link), "text": long_text, "section": "4"})
    assert page.status_code == 413
    assert "at most 200 characters" in page.text and f"this one has {len(long_text.strip())}" in page.text
    assert _textarea(page.text) == long_text and 'value="4"' in page.text
    assert _comment_entries(site) == []

    fits = long_text[:199]
    page = await site.http.post(link, data={"csrf": await form_of(site, link), "text": fits})
    assert page.status_code == 200
    [entry] = _comment_entries(site)
    # The ledger and the workflow carry the hash; the body is stored once under it.
    assert '"text_sha256":"' + document_hash(fits.strip()) + '"' in entry.payload_json
    assert '"text":' not in entry.payload_json
    with Session(site.engine) as session:
        assert session.get(CommentBlob, document_hash(fits.strip())).body == fits.strip()  # type: ignore[union-attr]


async def test_a_link_past_its_comment_limit_gets_a_429_page_that_keeps_the_text(site: Site, worker: Worker) -> None:
    site.settings.comments_per_link = 2
    await site.start_consultation(timedelta(days=1))
    link = f"/comment/{site.comment_token()}"
    for number in (1, 2):
        sent = await site.http.post(link, data={"csrf": await form_of(site, link), "text": f"Comment {number}."})
        assert sent.status_code == 200

    third = "A third comment the stakeholder would like to keep."
    page = await site.http.post(link, data={"csrf": await form_of(site, link), "text": third})
    assert page.status_code == 429
    assert "at most 2 comments" in page.text and _textarea(page.text) == third
    assert len(_comment_entries(site)) == 2

    # The workflow is the authority: with the web's own check out of the way, the consultation still refuses,
    # and the page names the consultation's limit.
    site.settings.comments_per_link = 50
    page = await site.http.post(link, data={"csrf": await form_of(site, link), "text": third})
    assert page.status_code == 429
    assert "at most 2 comments" in page.text and _textarea(page.text) == third
    assert len(_comment_entries(site)) == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=strategies.text(min_size=1, max_size=300).filter(lambda t: t.strip()))
def test_a_body_is_stored_once_under_the_hash_of_what_was_kept(sqlite_engine: Engine, text: str) -> None:
    from activities.comments import store_comment_body

    first = store_comment_body(sqlite_engine, text)
    again = store_comment_body(sqlite_engine, text)
    assert first == again == document_hash(text)
    with Session(sqlite_engine) as session:
        blob = session.get(CommentBlob, first)
    assert blob is not None and blob.body == text and blob.size == len(text.encode("utf-8"))


async def test_a_large_consultation_continues_as_new_and_runs_to_its_end(
    dev_env: WorkflowEnvironment, sqlite_engine: Engine
) -> None:
    """The 5,000-comment bench (`make bench-consultation`) at a size CI can afford, with a small event budget so
    the consultation goes through several runs: every comment and disposition recorded once, every run and every
    payload within the limits."""
    figures = await run_consultation(
        dev_env.client, sqlite_engine, comments=240, stakeholders=40, comment_chars=3000, events_per_run=400, open_for=6
    )
    assert figures.failures == []
    assert figures.runs >= 3
    assert max(figures.events_per_run) < MAX_EVENTS and figures.largest_payload_bytes < MAX_PAYLOAD
    # 720 kB of comments went through; no payload came near a comment's size.
    assert figures.largest_payload_bytes < 3000
    assert figures.comments_in_ledger == figures.dispositions_in_ledger == figures.comment_count_returned == 240
    assert figures.extensions >= 1  # the deadline was extended while the runs handed over


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["d-1", "d-2", "maybe"], "'maybe' is not a disposition"),
        (["d-1", "noted", "--all-open"], "not both"),
        (["noted"], "name the comments"),
    ],
)
def test_aisafe_respond_names_what_is_wrong_with_a_bulk_answer(tmp_path: Path, args: list[str], says: str) -> None:
    env = {**os.environ, "AISAFE_DATA_DIR": str(tmp_path)}
    done = cli("respond", "operational-framework-1a2b3c4d", *args, "--reason", "outside the scope", env=env)
    assert done.code == 2
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
