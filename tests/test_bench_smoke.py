"""The benchmark works end to end in smoke mode: both figures measured, every position receipted (no timing checks)."""

from __future__ import annotations

import json
import time
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from bench.__main__ import parse_args
from bench.fanout import run_fanout_bench
from bench.history import _best_of_each, _hash_files
from bench.progress import counting, stages
from bench.runner import BASELINE_TURNS, SMOKE, BenchConfig, Figure, median_run, percentile, run_bench, succeeded
from bench.scale import run_scale_bench


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.01


def test_the_median_run_is_reported_unless_a_run_failed() -> None:
    runs = [Figure("bare", "updates/s", 2, seconds, [1.0, 1.0]) for seconds in (1.0, 4.0, 2.0)]
    assert median_run(runs).seconds == 2.0
    runs[1].errors.append("update: timed out")
    assert median_run(runs) is runs[1]


def test_smoke_flag_picks_the_tiny_run_and_keeps_explicit_values(tmp_path: Path) -> None:
    assert parse_args(["--smoke", "--out", str(tmp_path / "r.json")]) == BenchConfig(
        positions=SMOKE.positions,
        concurrency=SMOKE.concurrency,
        out=tmp_path / "r.json",
        review_rounds=0,
        fanout_repeats=0,
        consultation_comments=0,
    )
    assert parse_args(["--smoke", "--fanout-repeats", "2"]).fanout_repeats == 2
    assert parse_args(["--smoke", "--consultation-comments", "300"]).consultation_comments == 300
    assert parse_args(["--smoke", "--concurrency", "2"]).concurrency == 2
    assert parse_args(["--smoke", "--review-rounds", "3"]).review_rounds == 3
    assert parse_args([]).positions == 220 and parse_args([]).review_rounds == 10


async def test_smoke_run_measures_both_sides_and_receipts_every_position(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # either would make rich treat the pipe as a terminal
        monkeypatch.delenv(variable, raising=False)
    out = tmp_path / "results.json"
    lines: list[str] = []
    returned = await run_bench(
        BenchConfig(positions=11, concurrency=4, out=out, review_rounds=0, fanout_repeats=0, consultation_comments=0),
        say=lines.append,
    )

    results = json.loads(out.read_text())
    assert results == returned
    assert succeeded(results)
    assert results["config"]["positions"] == 11
    ours, baseline = results["figures"]["ours"], results["figures"]["baseline"]
    upserting, direct = results["figures"]["baseline_upserting"], results["figures"]["round_updates"]
    for figure in (ours, baseline, upserting, direct):
        assert figure["calls"] == figure["completed"] == 11
        assert figure["errors"] == []
        assert figure["throughput_per_s"] > 0
        assert 0 < figure["p50_ms"] <= figure["p99_ms"]
    assert "search attribute" in upserting["label"] and results["upsert_throughput_ratio"] > 0
    assert "no web" in direct["label"] and results["round_updates_throughput_ratio"] > 0
    assert [len(turns) for turns in results["baseline_turns_per_s"].values()] == [BASELINE_TURNS, BASELINE_TURNS]
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
    # Not on a terminal (pytest captures both streams): no progress bar, no escape codes, in a pipe or a file.
    captured = capfd.readouterr()
    assert "\x1b[" not in captured.err and "\x1b[" not in captured.out


def test_progress_bar_draws_on_a_terminal_and_nothing_elsewhere() -> None:
    screen, pipe = StringIO(), StringIO()
    for file, terminal in ((screen, True), (pipe, False)):
        with counting("action pages opened", 3, console=Console(file=file, force_terminal=terminal)) as reached:
            reached(2)
    assert "\x1b[" in screen.getvalue() and "action pages opened" in screen.getvalue() and "2/3" in screen.getvalue()
    assert pipe.getvalue() == ""


def test_progress_bar_can_read_its_count_and_draw_only_when_told() -> None:
    done, screen = 0, StringIO()
    with counting("positions answered", 4, follow=lambda: done, console=Console(file=screen, force_terminal=True)):
        done = 4
    assert "4/4" in screen.getvalue()

    # Drawn only when told: between timed calls, never on its own while they run.
    screen = StringIO()
    with counting(
        "fanout repeats", 3, refresh_per_second=None, console=Console(file=screen, force_terminal=True)
    ) as reached:
        reached(1)
        drawn = screen.getvalue()
        time.sleep(0.3)  # an auto-refreshing bar would redraw its spinner several times meanwhile
        assert screen.getvalue() == drawn and "1/3" in drawn


def test_stage_bar_moves_past_the_stages_before_the_line() -> None:
    screen = StringIO()
    names = ("roster", "proposed", "consultation")
    with stages("demo run", names, console=Console(file=screen, force_terminal=True)) as reached:
        reached("consultation: 4 comments from stakeholders")
        time.sleep(0.3)  # a few redraws
    assert "consultation: 4 comments from stakeholders" in screen.getvalue() and "2/3" in screen.getvalue()


def test_the_verify_reference_hashes_what_the_baseline_hashes_and_checks_the_json(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "w.json").write_text('{"events": [{"eventId": "1"}]}')
    (tmp_path / "ledger.jsonl").write_text('{"seq": 1}\n{"seq": 2}\n')
    (tmp_path / "document.md").write_text("# not JSON, and not checked as JSON")
    assert _hash_files(tmp_path, check_json=True) == _hash_files(tmp_path) == 3 * 64
    assert all(
        t > 0 for t in _best_of_each(lambda: _hash_files(tmp_path), lambda: _hash_files(tmp_path, check_json=True))
    )

    (tmp_path / "ledger.jsonl").write_text('{"seq": 1}\n{"seq": \n')
    assert _hash_files(tmp_path) == 3 * 64  # the baseline does not look inside
    with pytest.raises(ValueError):
        _hash_files(tmp_path, check_json=True)


async def test_fanout_times_a_round_start_against_the_same_mail_sent_bare() -> None:
    lines: list[str] = []
    fanout = (await run_fanout_bench(say=lines.append, repeats=1))["fanout"]

    # run_fanout_bench raises unless every delegate got a linked invitation, an outbox row and the ledger entries.
    assert (fanout["messages"], fanout["states"]) == (22, 11)
    assert fanout["baseline_s"] > 0
    assert fanout["ratio"] == pytest.approx(fanout["ours_s"] / fanout["baseline_s"], rel=0.01)
    # Each span lies inside the one around it: the mail activity, the round, the proposal, the client's wait.
    assert 0 < fanout["ours_activity_s"] <= fanout["ours_round_s"] <= fanout["ours_server_s"] <= fanout["ours_s"]
    # The steps follow one another from the proposal's first event to the activity's end: they add up to that span.
    steps = list(fanout["steps_s"].values())
    assert len(steps) == 4 and all(step >= 0 for step in steps) and steps[-1] == fanout["ours_activity_s"]
    assert sum(steps) == pytest.approx(fanout["ours_server_s"], abs=0.002)
    assert fanout["goal_max_ratio"] == 1.5
    assert len(lines) == 2 and "baseline" in lines[-1]


async def test_scale_run_answers_every_position_and_samples_the_worker_process() -> None:
    lines: list[str] = []
    scale = (await run_scale_bench(proposals=2, concurrency=4, say=lines.append))["scale"]

    assert scale["all_started"] and scale["all_answered"]
    assert scale["ledger_positions"] == scale["awaited_positions"] == 22
    # And then every round and proposal closed: nothing was left stuck once the answers were in.
    assert scale["all_closed"] and scale["proposals_closed"] == {"agreed": 2}  # WG-AI is the only body there
    assert scale["seconds"]["all_closed_after_last_answer"] >= scale["seconds"]["ledger_settle_after_last_answer"]
    # The worker ran as its own process and its memory was read from /proc while it worked.
    assert scale["worker_rss_samples"] > 0 and 0 < scale["worker_peak_rss_mib"] < scale["goal_rss_mib"]
    assert scale["baseline_updates_per_s"] > 0 and scale["positions_per_s"] > 0
    assert not scale["met"], "two proposals cannot meet a goal about 1,000"
