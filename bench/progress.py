"""Progress bars for the benchmarks' long phases: on stderr, drawn only when stderr is a terminal.

The CLI's bar (starter.milestones: spinner, caption, bar, done/total, elapsed, gone when done), but not that
helper itself: its console is fixed, and its bar takes over stdout even when stdout is a file, so
`make bench > file` on a terminal would lose the bench's lines to the terminal.

A bar's redraws cost CPU in the process being measured: never open one around a timed call with the default
rate. `refresh_per_second=None` draws only when the caller updates it (between timed calls).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class _Bar(Progress):
    """Progress that can read its one task's count from `follow` at each redraw instead of being told."""

    follow: Callable[[], int] | None = None

    def get_renderables(self) -> Iterable[RenderableType]:
        if self.follow is not None and self.tasks:
            self.update(self.tasks[0].id, completed=self.follow())
        yield from super().get_renderables()


def _bar(console: Console | None, refresh_per_second: float | None) -> _Bar:
    console = console or Console(stderr=True, soft_wrap=True)
    return _Bar(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
        auto_refresh=refresh_per_second is not None,
        refresh_per_second=refresh_per_second or 1,
        # Lines printed to stdout go above the bar only when stdout is that terminal too: a redirected stdout
        # keeps every line.
        redirect_stdout=sys.stdout.isatty(),
    )


@contextmanager
def counting(
    caption: str,
    total: int,
    *,
    follow: Callable[[], int] | None = None,
    refresh_per_second: float | None = 10,
    console: Console | None = None,
) -> Iterator[Callable[[int], None]]:
    """A bar over `total` steps; yields `reached(done)`, or reads `follow()` at each redraw if given."""
    bar = _bar(console, refresh_per_second)
    bar.follow = follow
    with bar:
        task = bar.add_task(caption, total=total)

        def reached(done: int) -> None:
            bar.update(task, completed=done, refresh=refresh_per_second is None)

        yield reached


@contextmanager
def stages(caption: str, names: Sequence[str], *, console: Console | None = None) -> Iterator[Callable[[str], None]]:
    """A bar over `names`; yields `reached(line)`: a line starting with a name moves the bar past the ones before
    it, and every line becomes its caption (starter.milestones, for the bench)."""
    bar = _bar(console, 10)
    with bar:
        task = bar.add_task(caption, total=len(names))

        def reached(line: str) -> None:
            passed = next((i for i, name in enumerate(names) if line.startswith(name)), None)
            if passed is not None:
                bar.update(task, completed=max(passed, bar.tasks[0].completed))
            bar.update(task, description=line.strip())

        yield reached
        bar.update(task, completed=len(names))


def announce(line: str, *, console: Console | None = None) -> None:
    """A status line on stderr, only on a terminal: what runs now where a bar must not."""
    console = console or Console(stderr=True, soft_wrap=True)
    if console.is_terminal:
        console.print(line, markup=False, highlight=False)
