"""The benchmark works end to end in smoke mode: both figures measured, every position receipted (no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import parse_args
from bench.runner import SMOKE, BenchConfig, percentile, run_bench, succeeded


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.01


def test_smoke_flag_picks_the_tiny_run_and_keeps_explicit_values(tmp_path: Path) -> None:
    assert parse_args(["--smoke", "--out", str(tmp_path / "r.json")]) == BenchConfig(
        positions=SMOKE.positions, concurrency=SMOKE.concurrency, out=tmp_path / "r.json", review_rounds=0
    )
    assert parse_args(["--smoke", "--concurrency", "2"]).concurrency == 2
    assert parse_args(["--smoke", "--review-rounds", "3"]).review_rounds == 3
    assert parse_args([]).positions == 220 and parse_args([]).review_rounds == 10


async def test_smoke_run_measures_both_sides_and_receipts_every_position(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    lines: list[str] = []
    returned = await run_bench(BenchConfig(positions=11, concurrency=4, out=out, review_rounds=0), say=lines.append)

    results = json.loads(out.read_text())
    assert results == returned
    assert succeeded(results)
    assert results["config"]["positions"] == 11
    ours, baseline = results["figures"]["ours"], results["figures"]["baseline"]
    for figure in (ours, baseline):
        assert figure["calls"] == figure["completed"] == 11
        assert figure["errors"] == []
        assert figure["throughput_per_s"] > 0
        assert 0 < figure["p50_ms"] <= figure["p99_ms"]
    # Every submitted position got its receipt page, its own ledger entry, and the round closed on it.
    assert results["ours"] == {"receipts": 11, "ledger_positions": 11, "proposals": 1, "proposals_adopted": 1}
    assert [row["figure"] for row in results["table"]] == [
        "throughput (per s)",
        "p50 latency (ms)",
        "p99 latency (ms)",
    ]
    assert all(row["ours"] > 0 and row["baseline"] > 0 and row["ratio"] > 0 for row in results["table"])
    assert results["machine"]["cpu_count"] and results["machine"]["temporalio"]
    printed = "\n".join(lines)
    assert "ratio (ours/baseline)" in printed and "throughput (per s)" in printed
