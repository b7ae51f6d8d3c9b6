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
