"""`python -m bench --profile PATH`: py-spy attached to this process while the timed calls run, and only then.

Setup (starting workflows, delivering invitations, opening the forms) is left out, so the profile shows
where a click's time goes. py-spy samples without stopping the process (`--nonblocking`) so the timing
stays close to an unprofiled run; the figures of a profiled run are still not the ones to report.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ProfilerMissing(Exception):
    """py-spy is not installed where the bench can find it."""


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise ProfilerMissing("py-spy is not installed: pip install -e '.[bench]' (or make bench-profile)")
    return found


@contextmanager
def profiled(out: Path | None, rate: int = 100) -> Iterator[None]:
    """Sample this process into `out` (speedscope JSON if it ends in .json, an SVG flame graph otherwise)."""
    if out is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = "speedscope" if out.suffix == ".json" else "raw" if out.suffix == ".txt" else "flamegraph"
    spy = subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(os.getpid()),
            "--nonblocking",
            "--threads",
            "--rate",
            str(rate),
            "--format",
            fmt,
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            _, errors = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            errors = "py-spy did not stop within 60 s"
        if not out.exists():
            raise ProfilerMissing(f"py-spy wrote no profile: {errors.strip()[-500:]}")
