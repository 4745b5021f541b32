# SPDX-License-Identifier: BSD-2-Clause
"""Log files: a new serial log for each boot, their last lines, for error messages that point
at a log."""

import os
import time
from pathlib import Path

from chrysopolis import config

KEEP = 200  # serial logs kept in runs/ (the oldest go first)


def run_log(name: str) -> Path:
    """A new serial log for one boot, <cache>/runs/NAME-YYYYmmdd-HHMMSS-PID.log, made
    (empty) here and never shared with another boot; runs/latest links to it."""
    runs = config.runs_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = runs / f"{name}-{stamp}-{os.getpid()}{f'-{n}' if n else ''}.log"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            continue
    link = runs / f".latest-{os.getpid()}"
    try:
        link.unlink(missing_ok=True)
        link.symlink_to(path.name)
        os.replace(link, runs / "latest")
    except OSError:
        pass  # the link is a convenience
    for old in sorted(runs.glob("*-[0-9]*-[0-9]*-[0-9]*.log"), key=_mtime)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def latest(name: str) -> Path | None:
    """The newest serial log of the boots named `name` (run_log), if any."""
    logs = config.runs_dir().glob(f"{name}-*.log")
    return max((p for p in logs if p.name[len(name) + 1 :][:1].isdigit()), key=_mtime, default=None)


def tail(path: Path, lines: int = 25) -> str:
    """The last `lines` lines of a log ('' if it cannot be read)."""
    try:
        text = Path(path).read_text(errors="replace").replace("\r", "")
        return "\n".join(text.splitlines()[-lines:])
    except OSError:
        return ""
