# SPDX-License-Identifier: BSD-2-Clause
"""Log files: their last lines, for error messages that point at a log."""

from pathlib import Path


def tail(path: Path, lines: int = 25) -> str:
    """The last `lines` lines of a log ('' if it cannot be read)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
