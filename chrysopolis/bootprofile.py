# SPDX-License-Identifier: BSD-2-Clause
"""`chrysopolis run --profile-boot`: where a boot's time goes (docs/boot.md, "Boot profile").

The image is built with the stage option `fs_stats` (runtime/posix/fs_stats.c), booted
headless on its pristine disk, and the host stamps the serial markers as they arrive. One
typed line makes ERTS read stdin, and fs_stats prints its `fsstats:` lines then.
"""

import re
import time
from dataclasses import dataclass

from chrysopolis import cache, logs, qemu, shell, targets
from chrysopolis.errors import UsageError, UserError

OPTION = "fs_stats"
# The serial markers, in boot order: (name, regex).
MARKERS = [
    ("kernel", rb"LDR\|INFO: jumping to kernel"),
    ("sel4", rb"Booting all finished, dropped to user space"),
    ("monitor", rb"MON\|INFO: completed system invocations"),
    ("handoff", rb"Handing off to ERTS core loop"),
]
CALL = re.compile(r"fsstats: (\w+) (\d+) calls (\d+) us (\d+) bytes")
BEAM = re.compile(r"fsstats: beam (\d+) files (\d+) calls (\d+) us")
TOTAL = re.compile(r"fsstats: total (\d+) calls (\d+) us, lock wait (\d+) us")


@dataclass(frozen=True)
class FsStats:
    """What fs_stats printed: per call name (count, us, bytes read), and the totals."""

    calls: dict[str, tuple[int, int, int]]
    count: int
    us: int
    lock_wait_us: int
    beam_files: int
    beam_calls: int
    beam_us: int


def parse(text: str) -> FsStats:
    """The `fsstats:` lines of a console log (CRs and other lines around them are fine);
    UserError when the total or the beam line is missing (an image without fs_stats)."""
    text = text.replace("\r", "")
    calls = {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in CALL.finditer(text)}
    total, beam = TOTAL.search(text), BEAM.search(text)
    if total is None or beam is None:
        raise UserError(
            "no 'fsstats: total' and 'fsstats: beam' lines on the console: the image was not "
            f"built with the stage option {OPTION}"
        )
    return FsStats(
        calls,
        int(total[1]),
        int(total[2]),
        int(total[3]),
        int(beam[1]),
        int(beam[2]),
        int(beam[3]),
    )


@dataclass(frozen=True)
class Profile:
    """Host seconds from QEMU's start to each marker, and the guest's fs_stats."""

    kernel: float  # the loader jumps to seL4
    sel4: float  # seL4 has booted and starts the monitor
    monitor: float  # the Microkit monitor has started every PD
    handoff: float  # beam_server hands off to ERTS
    prompt: float  # the first `1>`
    fs: FsStats

    def rows(self) -> list[tuple[str, float, str]]:
        """(what, ms, count) of the table; indented rows are parts of the row above."""
        ms = 1000.0
        erts = (self.prompt - self.handoff) * ms
        fs = self.fs
        return [
            ("Microkit loader + seL4 + monitor", self.monitor * ms, ""),
            ("  loader (QEMU start -> jumping to kernel)", self.kernel * ms, ""),
            ("  seL4 boot (-> dropped to user space)", (self.sel4 - self.kernel) * ms, ""),
            (
                "  monitor: PDs made (-> system invocations done)",
                (self.monitor - self.sel4) * ms,
                "",
            ),
            ("beam_server init (-> Handing off to ERTS)", (self.handoff - self.monitor) * ms, ""),
            ("ERTS start (hand-off -> first 1> prompt)", erts, ""),
            ("  file-system calls", fs.us / ms, f"{fs.count} calls"),
            (
                "    module loading",
                fs.beam_us / ms,
                f"{fs.beam_files} .beam files, {fs.beam_calls} calls",
            ),
            ("  the rest (ERTS's own CPU)", erts - fs.us / ms, ""),
            ("total (QEMU start -> first 1> prompt)", self.prompt * ms, ""),
        ]

    def table(self) -> str:
        lines = [f"{'':50}{'ms':>7}"]
        for what, ms, count in self.rows():
            lines.append(f"{what:50}{ms:7.0f}  {count}".rstrip())
        return "\n".join(lines)


def require(target: str) -> None:
    """Refuse a target whose stage has no fs_stats option (before building anything)."""
    try:
        st = cache.get(target)
    except UserError as e:
        raise UsageError(str(e)) from None
    if not st.shell or OPTION not in st.options:
        can = sorted(n for n, s in cache.load_all().items() if s.shell and OPTION in s.options)
        raise UsageError(
            f"--profile-boot: target '{target}' cannot count its file-system calls; "
            f"profile one of {', '.join(can)}"
        )


def profile(target: str, timeout: float = shell.BOOT_TIMEOUT) -> tuple[Profile, str]:
    """Build TARGET with fs_stats, boot it headless on its pristine disk (a throw-away
    overlay) and halt it: its profile and the serial log's path."""
    require(target)
    cache.use_option(target, OPTION, True)
    img = targets.image(cache.Planner(), target)
    log = logs.run_log(f"{target}-profile")
    with qemu.boot(img.command(), log, qemu.HEADLESS) as s:
        stamps = {}
        for name, marker in MARKERS:
            s.expect(marker, timeout)
            stamps[name] = s.elapsed()
        sh = shell.Shell(s)
        sh.wait_ready(timeout)
        stamps["prompt"] = sh.ready_at
        # ERTS reads stdin for this line: fs_stats prints, before the line's result.
        sh.eval("ok.")
        s.send("halt().\r")
        status = s.wait_exit(60)
    if status != 0:
        raise UserError(f"the profiled boot ended with status {status} (log: {log})")
    fs = parse(log.read_bytes().decode(errors="replace"))
    return Profile(fs=fs, **stamps), str(log)


def main(target: str) -> None:
    t0 = time.monotonic()
    p, log = profile(target)
    print(f"boot profile of {target} (serial log: {log})")
    print(p.table())
    print(f"(profiled in {time.monotonic() - t0:.0f} s, the build included)")
