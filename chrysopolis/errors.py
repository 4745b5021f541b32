# SPDX-License-Identifier: BSD-2-Clause
"""Errors the CLI prints as one line, naming the fix, with a non-zero exit."""


class UserError(Exception):
    """Bad input or a missing prerequisite; the message says what to do."""


class StageFailed(UserError):
    """A build stage failed; carries its log so the CLI can show the tail."""

    def __init__(self, stage: str, log: "object", detail: str = "") -> None:
        self.stage = stage
        self.log = log
        super().__init__(f"stage '{stage}' failed{': ' + detail if detail else ''} (log: {log})")


class UsageError(UserError):
    """Bad input refused before anything ran (exit status 2 for `run --eval`)."""


class RunFailed(UserError):
    """A boot that did not end as it should: carries the exit status and its own log."""

    def __init__(self, message: str, status: int, log: "object | None" = None) -> None:
        self.status = status
        self.log = log
        super().__init__(message + (f" (log: {log})" if log else ""))


def no_space(folder: "object", need: int | None = None) -> UserError:
    """The one-line error for a full disk: the folder, the room needed and the room free."""
    import shutil

    try:
        free = f"{shutil.disk_usage(folder).free >> 20} MiB is free"
    except OSError:
        free = "its disk is full"
    return UserError(
        f"no space left in {folder}: this needs "
        f"{'more room' if need is None else f'about {max(need >> 20, 1)} MiB'} and {free}; "
        f"free some space there (or set CHRYSOPOLIS_OUT or CHRYSOPOLIS_CACHE to another disk)"
    )
