"""`python -m bench` (`make bench`): positions through the web action path against bare Temporal Updates.

Exit codes: 0 every call succeeded and every position got its receipt, 1 otherwise, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from pathlib import Path

from bench.profile import ProfilerMissing
from bench.runner import DEFAULT_OUT, SMOKE, BenchConfig, BenchError, run_bench, succeeded


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Record N positions through the emailed action links (POST /act/{token}) on the embedded stack, "
            "and make the same number of bare Temporal Updates on the same dev server, in one run; print "
            "throughputs, p50/p99 latencies and their ratios (ours/baseline). For reference it also times bare "
            "Updates that upsert the awaited states' search attribute, and the same positions sent as Updates "
            "straight to round workflows without the web; then the history size, audit verify and fan-out figures."
        ),
    )
    defaults = BenchConfig()
    parser.add_argument(
        "--positions",
        type=int,
        metavar="N",
        help=f"positions to record, rounded up to whole rounds of 11 states (default {defaults.positions})",
    )
    parser.add_argument(
        "--concurrency", type=int, metavar="C", help=f"calls in flight at once (default {defaults.concurrency})"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a tiny run: {SMOKE.positions} positions, concurrency {SMOKE.concurrency} (unless given)",
    )
    parser.add_argument(
        "--review-rounds",
        type=int,
        metavar="R",
        help=f"review rounds of the history/audit proposal, 0 to skip it (default {defaults.review_rounds})",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="PATH", help="results JSON (default %(default)s)"
    )
    parser.add_argument(
        "--fanout-repeats",
        type=int,
        metavar="N",
        help=f"rounds started for the fan-out figure, 0 to skip it (default {defaults.fanout_repeats})",
    )
    parser.add_argument(
        "--consultation-comments",
        type=int,
        metavar="N",
        help=f"comments of the public-scale consultation, 0 to skip it (default {defaults.consultation_comments})",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="PATH",
        help="sample the timed clicks with py-spy into PATH (.svg flame graph, .json speedscope, .txt collapsed)",
    )
    args = parser.parse_args(argv)
    base = SMOKE if args.smoke else defaults
    config = BenchConfig(
        positions=base.positions if args.positions is None else args.positions,
        concurrency=base.concurrency if args.concurrency is None else args.concurrency,
        out=args.out,
        review_rounds=base.review_rounds if args.review_rounds is None else args.review_rounds,
        fanout_repeats=base.fanout_repeats if args.fanout_repeats is None else args.fanout_repeats,
        consultation_comments=(
            base.consultation_comments if args.consultation_comments is None else args.consultation_comments
        ),
        profile=args.profile,
    )
    if config.positions < 1:
        parser.error("--positions must be at least 1")
    if config.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if config.consultation_comments < 0:
        parser.error("--consultation-comments must be 0 (skip) or more")
    return config


def main(argv: list[str] | None = None) -> None:
    """Ends the process with os._exit: a process that used a Temporal client can abort at exit (sdk-python#300)."""
    code = 1
    try:
        config = parse_args(argv)
        results = asyncio.run(run_bench(config))
        code = 0 if succeeded(results) else 1
    except SystemExit as exc:  # argparse: --help (0) or bad arguments (2)
        code = exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        code = 130
    except (BenchError, ProfilerMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except Exception:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
