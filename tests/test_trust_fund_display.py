"""Partners' trust-fund pledges, earmarked to activities, shown apart from the core budget in the audit report and
on the dashboard (both read the ledger)."""

from __future__ import annotations

import json
import re

from audit.bundle import LedgerLine
from audit.record import build_record
from audit.report import render_report
from web.dashboard import trust_fund_of


def line(seq: int, kind: str, payload: dict[str, object]) -> LedgerLine:
    text = json.dumps(payload)
    return LedgerLine("p-1", seq, kind, f"p-1:{kind}-{seq}", text, "2026-12-04T00:00:00Z", "0" * 64, f"{seq:064x}")


LEDGER = [
    line(1, "partner_pledge", {"partner": "Japan", "amount": "150000.00", "activities": ["capacity building"]}),
    line(2, "partner_pledge", {"partner": "Korea", "amount": "80000.00"}),  # before pledges named activities
]


def test_the_report_lists_partners_pledges_in_their_own_table_with_their_activities() -> None:
    html = render_report(build_record(LEDGER), None)

    table = re.search(r'<table id="trust-fund">.*?</table>', html, re.S)
    assert table is not None
    assert "apart from the core budget" in table.group(0)
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", table.group(0))
    assert rows == [("Japan", "capacity building", "150,000.00"), ("Korea", "not earmarked", "80,000.00")]
    assert "Member states' contributions (core budget)" not in html  # no state has answered in a funding round


def test_the_dashboard_lists_the_trust_fund_apart() -> None:
    assert trust_fund_of(build_record(LEDGER)) == [
        ("Japan", "150,000.00", ["capacity building"]),
        ("Korea", "80,000.00", []),
    ]


def test_status_lists_contributions_indicated_and_confirmed_apart_from_the_trust_fund() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal
    from types import SimpleNamespace

    import starter
    from models.messages import DocumentRef, Pledge, RoundOutcome, StatePosition
    from models.positions import Position
    from models.rules import Verdict
    from models.states import MemberState

    now = datetime(2026, 12, 4, tzinfo=UTC)
    share = Decimal("100000.00")

    def closed(number: int, answers: dict[MemberState, Position]) -> RoundOutcome:
        return RoundOutcome(
            round=number,
            document=DocumentRef(sha256="a" * 64, version=1, filename="v1.md", size=1),
            opened_at=now,
            closed_at=now,
            closed_because="all states answered",
            verdict=Verdict.PASSED,
            reason="",
            positions={s: StatePosition(position=p, recorded_at=now, amount=share) for s, p in answers.items()},
        )

    indicated = closed(1, {MemberState.VN: Position.INDICATE, MemberState.BN: Position.INDICATE})
    confirmed = closed(2, {MemberState.BN: Position.CONFIRM})
    current = SimpleNamespace(
        rounds=[indicated, confirmed], pledges=[Pledge(partner="Japan", amount=Decimal(5000), activities=["training"])]
    )

    assert [*starter._contribution_lines(current), *starter._trust_fund_lines(current)] == [
        "contributions indicated by focal points (subject to domestic clearance): 200,000.00 from 2 state(s): BN, VN",
        "contributions confirmed by ministers' offices: 100,000.00 from 1 state(s): BN",
        "trust fund (dialogue partners' pledges, apart from the core budget):",
        "  Japan: 5,000.00 — earmarked to training",
    ]
