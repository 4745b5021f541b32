# SPDX-License-Identifier: BSD-2-Clause
"""Elixir on the beam image: IEx on the console (`run --shell iex`, chrysopolis/iex.py)."""

import re
import tempfile
from pathlib import Path

from chrysopolis import config, iex, logs, qemu, targets
from chrysopolis.cache import Planner
from chrysopolis.checks import check
from chrysopolis.errors import UserError
from chrysopolis.shell import Shell, with_modules
from chrysopolis.targets.beam import NEEDS, _eval, _no_fatal_lines

IEX_BOOT_TIMEOUT = 300.0  # interactive mode loads Elixir's modules from the FAT disk
BANNER = r"Interactive Elixir \((\d+\.\d+\.\d+)\)"
# (Elixir, regex its printed result must match in full)
IEX_SMOKE = [
    ("1 + 1", r"2"),
    ("Enum.map(1..5, &(&1 * 2))", r"\[2, 4, 6, 8, 10\]"),
    ('String.upcase("seL4")', r'"SEL4"'),
    ("defmodule Smoke do def triple(x), do: x * 3 end", r"(?s)\{:module, Smoke,\s*<<.*"),
    ("Smoke.triple(14)", r"42"),
    ("h Enum.map", r"(?s).*def map\(enumerable, fun\).*Returns a list where each element.*"),
]


@check("iex-smoke", needs=NEEDS)
def iex_smoke(planner: Planner) -> str:
    """IEx on the console: arithmetic, Enum and String, a module defined at the prompt and
    called, `h Enum.map` from the docs on the disk; System.halt(0) powers off."""
    img = targets.image(planner, "beam")
    log = logs.run_log("iex-smoke")
    with tempfile.TemporaryDirectory(dir=config.runs_dir()) as tmp:
        disk = with_modules(img.disk, [], Path(tmp) / "disk.img", args=iex.init_args(planner))
        with qemu.boot(img.command(disk), log) as s:
            version = s.expect(BANNER, IEX_BOOT_TIMEOUT).group(1).decode()
            shell = Shell(s)
            ready = shell.wait_ready(IEX_BOOT_TIMEOUT)
            for expr, want in IEX_SMOKE:
                got = _eval(shell, expr, 120)
                if not re.fullmatch(want, got):
                    raise UserError(f"{expr!r} printed {got!r}, expected /{want}/ (log: {log})")
            s.send("System.halt(0)\r")
            status = s.wait_exit(60)
    if status != 0:
        raise UserError(f"System.halt(0) powered off with status {status} (log: {log})")
    _no_fatal_lines(log)
    return f"Elixir {version}: {len(IEX_SMOKE)} expressions, iex(1)> after {ready:.1f} s"
