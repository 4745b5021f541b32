# SPDX-License-Identifier: BSD-2-Clause
"""Named checks: each boots a real image and asserts on its serial output.

A target module defines its checks beside its image (`@check`); `clean_log` is the one
rule for the lines that mean the system itself went wrong.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chrysopolis.cache import Planner
from chrysopolis.errors import UserError
from chrysopolis.registry import Registry


@dataclass
class Check:
    name: str
    run: Callable[[Planner], str]  # returns a one-line summary; raises UserError on failure
    doc: str
    needs: tuple[str, ...]  # lock names of the sources it needs (for skipping in tests)


REGISTRY: Registry[Check] = Registry("check", ["chrysopolis.targets"])


def check(name: str, *, needs: tuple[str, ...] = ()):
    def register(fn: Callable[[Planner], str]) -> Callable[[Planner], str]:
        REGISTRY.add(name, Check(name, fn, (fn.__doc__ or "").strip().split("\n")[0], needs))
        return fn

    return register


def load_all() -> dict[str, Check]:
    return REGISTRY.load()


# A line on the serial console that means the system, not one expression, went wrong: the
# Microkit monitor's report of a PD fault, seL4's fault messages, LionsOS's complaint about
# a syscall nobody answers, an assertion, our PD's fatal errors, ERTS dying.
FATAL_LINE = re.compile(
    rb"MON\|ERROR|\b[Ff]aults?\b|VMFault|POSIX\|ERROR|Unimplemented syscall|[Aa]ssertion|"
    rb"beam_server: ERROR|Kernel pid terminated|Crash dump"
)
# LionsOS's line for a syscall nobody registered (it answers -ENOSYS).
UNIMPLEMENTED = re.compile(rb"POSIX\|ERROR: Unimplemented syscall number: (\d+)")


def fatal_line(text: bytes, unanswered: dict[int, str] | None = None) -> str | None:
    """The first fatal line in `text`, skipping unimplemented syscalls left so on purpose."""
    for m in FATAL_LINE.finditer(text):
        start = text.rfind(b"\n", 0, m.start()) + 1
        line = text[start:].split(b"\n", 1)[0].strip()
        syscall = UNIMPLEMENTED.search(line)
        if syscall and int(syscall.group(1)) in (unanswered or {}):
            continue
        return line.decode(errors="replace")
    return None


def clean_log(log: Path, unanswered: dict[int, str] | None = None, fix: str = "") -> None:
    """Refuse a serial log with a fatal line; an unanswered syscall names where to answer it."""
    line = fatal_line(log.read_bytes(), unanswered)
    if line is None:
        return
    syscall = UNIMPLEMENTED.search(line.encode())
    if syscall:
        raise UserError(
            f"the guest called syscall {int(syscall.group(1))}, which nothing answers: "
            f"answer it in runtime/ (docs/syscalls.md){fix} (log: {log})"
        )
    raise UserError(f"the serial log has an error line: {line!r} (log: {log})")
