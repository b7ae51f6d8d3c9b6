"""The coordinators' dashboard from the ledger alone: every kind of matrix cell in words, pages of proposals,
and a fixed number of database queries however many proposals there are (the browser tests drive it live)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from activities.ledger import append_entry
from models.messages import LedgerAppend
from models.settings import Settings
from models.tables import ProposalRecord
from models.users import UserRole, add_user
from web.app import create_app
from web.dashboard import PAGE_SIZE, read_page

OPENED = datetime(2027, 1, 4, 2, 0, tzinfo=UTC)


def _write(session: Session, proposal_id: str, kind: str, key: str, payload: dict[str, Any]) -> None:
    append_entry(session, LedgerAppend(proposal_id=proposal_id, kind=kind, idempotency_key=key, payload=payload))


def _round(number: int, participants: list[str]) -> dict[str, Any]:
    return {
        "round": number,
        "stage": "member_review",
        "purpose": "review",
        "rule": "consensus",
        "document": {"version": number, "sha256": "ab" * 32},
        "participants": participants,
        "deadline": (OPENED + timedelta(days=14 * number)).isoformat(),
    }


def add_proposal(engine: Engine, title: str, *, rounds: bool = True) -> str:
    """A proposal two review rounds in: round 1 closed (one answer, one deemed, one silent), round 2 open."""
    proposal_id = f"p-{uuid.uuid4().hex[:10]}"
    with Session(engine) as session:
        session.add(ProposalRecord(id=proposal_id, title=title, kind="operational_framework", lead_state="MY"))
        started = {"title": title, "process": {"stages": [{"type": "member_review"}, {"type": "senior_officials"}]}}
        _write(session, proposal_id, "proposal_started", f"{proposal_id}:started", started)
        _write(session, proposal_id, "stage_started", f"{proposal_id}:stage-0", {"index": 0, "stage": "member_review"})
        if rounds:
            first, second = f"{proposal_id}-round-1", f"{proposal_id}-round-2"
            _write(session, proposal_id, "round_opened", f"{first}:opened", _round(1, ["PH", "SG", "MM"]))
            position = {"round": 1, "state": "PH", "position": "request_changes", "reason": "Add a safeguard."}
            _write(session, proposal_id, "position", f"{first}:position:a", position)
            closed = {
                "round": 1,
                "closed_at": (OPENED + timedelta(days=14)).isoformat(),
                "verdict": "changes_requested",
                "positions": {"SG": {"position": "abstain", "deemed": True}},
            }
            _write(session, proposal_id, "round_closed", f"{first}:closed", closed)
            _write(session, proposal_id, "round_opened", f"{second}:opened", _round(2, ["PH", "SG", "TH"]))
            for decision, answer in (("b", "abstain"), ("c", "approve")):
                position = {"round": 2, "state": "PH", "position": answer, "reason": ""}
                _write(session, proposal_id, "position", f"{second}:position:{decision}", position)
        session.commit()
    return proposal_id


@pytest.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'aisafe.db'}",
        dev=True,
        secret_key=f"test-signing-key-{uuid.uuid4().hex}",
    )
    app = create_app(settings, client=object())  # type: ignore[arg-type]  (the dashboard never asks Temporal)
    async with app.router.lifespan_context(app):
        engine: Engine = app.state.engine
        token = add_user(engine, "coordinator", UserRole.COORDINATOR)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://aisafe.test", headers=headers) as http:
            yield http, engine


def _cells(html: str, proposal_id: str) -> dict[str, list[str]]:
    """State to the text of its cells, from one proposal's matrix."""
    article = html.split(f'id="proposal-{proposal_id}"', 1)[1].split("</article>", 1)[0]
    rows = re.findall(r"<tr><th scope=\"row\"><abbr[^>]*>(\w\w)</abbr></th>(.*?)</tr>", article, re.S)
    return {
        state: [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells)]
        for state, cells in rows
    }


async def test_every_cell_says_in_words_what_the_state_gave(dashboard: tuple[httpx.AsyncClient, Engine]) -> None:
    http, engine = dashboard
    proposal_id = add_proposal(engine, "ASEAN AI SAFE Operational Framework")
    page = await http.get("/")
    assert page.status_code == 200
    assert _cells(page.text, proposal_id) == {
        "MM": ["No answer silent", "— not asked in this round"],
        "PH": ["Request changes “Add a safeguard.”", "Approve replaced 1 earlier answer"],
        "SG": ["Abstain deemed: no answer by the deadline", "Awaiting no answer yet"],
        "TH": ["— not asked in this round", "Awaiting no answer yet"],
    }
    assert 'class="cell-deemed"' in page.text and 'class="cell-silent"' in page.text
    assert 'round 2 open · deadline <span class="deadline">2027-02-01 02:00 UTC</span>' in page.text
    stages = re.findall(r'<li class="stage stage-([\w ]+)"[^>]*>\s*<span class="stage-name">([^<]+)<', page.text)
    assert stages == [("running", "WG-AI member review"), ("pending", "ADGSOM endorsement")]
    assert page.text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 1
    assert 'aria-labelledby="timeline-0"' in page.text and '<title id="timeline-0">' in page.text


async def test_proposals_come_a_page_at_a_time_with_a_fixed_number_of_queries(
    dashboard: tuple[httpx.AsyncClient, Engine],
) -> None:
    http, engine = dashboard
    ids = [add_proposal(engine, f"Proposal {n}", rounds=n % 2 == 0) for n in range(PAGE_SIZE + 5)]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    views, more = read_page(engine, 1)
    assert len(views) == PAGE_SIZE and more
    # The proposals, then all their ledger entries: never one query a proposal.
    assert len([s for s in statements if s.startswith("SELECT")]) == 2
    older, more = read_page(engine, 2)
    assert len(older) == 5 and not more
    assert {v.proposal.id for v in views} | {v.proposal.id for v in older} == set(ids)

    first = await http.get("/")
    assert 'href="/?page=2" rel="next">Older proposals' in first.text and "Newer proposals" not in first.text
    assert first.text.count('<article class="proposal"') == PAGE_SIZE
    second = await http.get("/?page=2")
    assert second.text.count('<article class="proposal"') == 5 and 'href="/?page=1" rel="prev"' in second.text
    assert (await http.get("/?page=0")).status_code == 400


async def test_the_dashboard_is_for_signed_in_coordinators_and_auditors(
    dashboard: tuple[httpx.AsyncClient, Engine],
) -> None:
    http, engine = dashboard
    anonymous = await http.get("/", headers={"Authorization": "", "Accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/signin?next=/"
    assert (await http.get("/", headers={"Authorization": ""})).status_code == 401
    auditor = add_user(engine, "auditor", UserRole.AUDITOR)
    assert (await http.get("/", headers={"Authorization": f"Bearer {auditor}"})).status_code == 200
