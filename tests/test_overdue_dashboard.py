"""The dashboard marks a round overdue (silence is not consent) until the coordinator acts on it (from the ledger)."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from tests.test_dashboard import _write, add_proposal, dashboard  # noqa: F401  (the fixture)


def _article(page: str, proposal_id: str) -> str:
    return page.split(f'id="proposal-{proposal_id}"', 1)[1].split("</article>", 1)[0]


async def test_an_overdue_round_is_marked_until_the_coordinator_extends_it(
    dashboard: tuple[httpx.AsyncClient, Engine],  # noqa: F811
) -> None:
    http, engine = dashboard
    proposal_id = add_proposal(engine, "ASEAN AI SAFE Operational Framework")
    second = f"{proposal_id}-round-2"
    since = "2027-03-01T00:00:00+00:00"
    overdue = {"round": 2, "states": ["SG", "TH"], "deadline": since, "since": since}
    with Session(engine) as session:
        _write(session, proposal_id, "round_overdue", f"{second}:overdue-1", overdue)
        session.commit()

    article = _article((await http.get("/")).text, proposal_id)

    assert 'class="overdue" role="alert"' in article and "Overdue — round 2" in article
    assert f"since {since}: Singapore (SG), Thailand (TH) did not answer" in article
    assert f"aisafe silence-procedure {proposal_id} P14D" in article
    assert f"aisafe close-round {proposal_id} --no-consensus" in article

    extended = {"round": 2, "by": "P7D", "deadline": "2027-03-08T00:00:00+00:00", "states": ["SG", "TH"]}
    with Session(engine) as session:
        _write(session, proposal_id, "round_extended", f"{second}:extended:u-1", extended)
        session.commit()

    assert 'class="overdue"' not in _article((await http.get("/")).text, proposal_id)
