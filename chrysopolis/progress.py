# SPDX-License-Identifier: BSD-2-Clause
"""Progress on long work: a live display on a terminal, plain lines elsewhere (CI logs).

A terminal has one live display at a time (rich refuses a second), so every step and
download opened while one is showing becomes a line of that same display.
"""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True, highlight=False)
_live: Progress | None = None


@contextmanager
def _task(label: str, total: int | None = None) -> Iterator[tuple[Progress, int]]:
    """A line of the one live display, opening the display if none is showing."""
    global _live
    owner = _live is None
    if owner:
        _live = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        _live.start()
    live = _live
    task = live.add_task(label, total=total)
    try:
        yield live, task
    finally:
        live.remove_task(task)
        if owner:
            live.stop()
            _live = None


@contextmanager
def step(label: str) -> Iterator[None]:
    """Show `label` with a live elapsed time while the body runs; print the outcome after."""
    t0 = time.monotonic()
    try:
        if console.is_terminal:
            with _task(label):
                yield
        else:
            print(f"… {label}", file=sys.stderr, flush=True)
            yield
    except BaseException:
        console.print(f"[red]✗[/] {label} ({time.monotonic() - t0:.1f} s)")
        raise
    console.print(f"[green]✓[/] {label} ({time.monotonic() - t0:.1f} s)")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


@contextmanager
def bytes_task(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A download's progress: `advance(n)` after each chunk; its line shows MiB done."""
    if not console.is_terminal:
        yield lambda n: None
        return
    done = 0
    with _task(label, total or None) as (live, task):

        def advance(n: int) -> None:
            nonlocal done
            done += n
            of = f"/{_mib(total)}" if total else ""
            live.update(task, advance=n, description=f"{label} {_mib(done)}{of} MiB")

        yield advance
