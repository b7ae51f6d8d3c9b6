"""The dashboard makes a state nobody was written to stand out, until it is invited again (from the ledger)."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from tests.test_dashboard import _cells, _write, add_proposal, dashboard  # noqa: F401  (the fixture)


async def test_a_state_not_invited_stands_out_until_it_is_invited_again(
    dashboard: tuple[httpx.AsyncClient, Engine],  # noqa: F811
) -> None:
    http, engine = dashboard
    proposal_id = add_proposal(engine, "ASEAN AI SAFE Operational Framework")
    second = f"{proposal_id}-round-2"
    reason = "no delegate in role focal_point, alternate"
    with Session(engine) as session:
        for state, why in (("TH", reason), ("SG", "every recipient was refused or bounced")):
            entry = {"round": 2, "state": state, "step": "invitation", "reason": why}
            _write(session, proposal_id, "not_invited", f"{second}:not-invited:invitation:{state}", entry)
        session.commit()

    page = await http.get("/")
    assert page.status_code == 200
    cells = _cells(page.text, proposal_id)
    assert cells["TH"] == ["— not asked in this round", f"Not invited {reason}"]
    assert cells["SG"][1] == "Not invited every recipient was refused or bounced"
    assert page.text.count('class="cell-not_invited"') == 2
    article = page.text.split(f'id="proposal-{proposal_id}"', 1)[1].split("</article>", 1)[0]
    assert 'class="not-invited" role="alert"' in article and "round 2 cannot pass" in article
    assert f"aisafe resend {proposal_id} --state TH" in article

    with Session(engine) as session:
        resent = {
            "round": 2,
            "state": "TH",
            "delegate_ids": ["TH-0123456789abcdef"],
            "deadline": "2027-03-01T00:00:00Z",
        }
        _write(session, proposal_id, "invitation_resent", f"{second}:resent:u-1", resent)
        session.commit()
    page = await http.get("/")
    cells = _cells(page.text, proposal_id)
    assert cells["TH"][1] == "Awaiting no answer yet" and cells["SG"][1].startswith("Not invited")
    assert "--state TH" not in page.text and f"aisafe resend {proposal_id} --state SG" in page.text
