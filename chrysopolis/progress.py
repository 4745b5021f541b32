"""Progress on long work: a live line on a terminal, plain lines elsewhere (CI logs)."""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True, highlight=False)


@contextmanager
def step(label: str) -> Iterator[None]:
    """Show `label` with a live elapsed time while the body runs; print the outcome after."""
    t0 = time.monotonic()
    try:
        if console.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as p:
                p.add_task(label, total=None)
                yield
        else:
            print(f"… {label}", file=sys.stderr, flush=True)
            yield
    except BaseException:
        console.print(f"[red]✗[/] {label} ({time.monotonic() - t0:.1f} s)")
        raise
    console.print(f"[green]✓[/] {label} ({time.monotonic() - t0:.1f} s)")


@contextmanager
def bytes_task(label: str, total: int) -> Iterator[Callable[[int], None]]:
    if not console.is_terminal:
        yield lambda n: None
        return
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        *Progress.get_default_columns(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    ) as p:
        task = p.add_task(label, total=total or None)
        yield lambda n: p.advance(task, n)
