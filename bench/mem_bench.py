# SPDX-License-Identifier: BSD-2-Clause
"""Memory on seL4 against the same ERTS on the Linux VM, same QEMU, interleaved.

    python3 bench/mem_bench.py [ROUNDS] [SIZE,SIZE,...]

Both systems boot in qemu-system-aarch64 with the same machine flags: the seL4 image built
for each RAM size (`--ram`: an SDK per size, its beam heap the rest of the RAM), and stage
linux-vm (Debian's arm64 kernel, the same ERTS in an initramfs) with that `-m`.
  smallest RAM   the sizes SIZES (default 512M down to 64M; seL4 takes only the board's,
                 multiples of 64M) are tried going down, each system until one size fails:
                 refused at build (seL4), or no prompt, or `1 + 1.` not 2. The smallest that
                 reached the prompt and printed 2 is reported, with the reason the next failed
                 (the first error line of the serial log).
  largest binary `byte_size(binary:copy(<<1>>, N)).` in a spawned process on a fresh node, N
                 a multiple of 16 MiB, at 2G, 512M and the smallest size both reached. An
                 allocation that fails ends the node (ERTS's erts_alloc_enomem on seL4, the
                 OOM killer or the same ERTS exit on Linux), and a freed carrier may linger in
                 ERTS's segment cache, so every probe is a boot of its own. The first probe
                 reads /proc/meminfo in that boot (seL4: the heap's MemFree and
                 MmapLargestFree, the longest free run; Linux: MemFree) and tries the smaller,
                 rounded down to 16 MiB; then steps of 16 MiB doubling away from it until a
                 success and a failure bracket the answer, then bisects to 16 MiB. At most
                 MAX_PROBES boots per system and size, and TIME_BOX seconds: an unsettled
                 answer prints as ">= OK (< FAILED)".
Rounds repeat both parts, the systems alternating boot by boot so host noise hits them alike;
the prompt column is the median of every boot at that size that reached the prompt (QEMU
start to the first `1>`), the binary the median over rounds. Every figure is measured by
this run. The serial logs are in the cache's runs/ directory (mem-bench-*).
"""

import dataclasses
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chrysopolis import boards, cache, checks, config, logs, qemu, targets
from chrysopolis.errors import UsageError, UserError
from chrysopolis.shell import Shell
from chrysopolis.stages import linux_vm

MIB = 1 << 20
SIZES = ("512M", "256M", "192M", "128M", "96M", "64M")
BINARY_SIZES = ("2G", "512M")  # and the smallest size both systems reach
STEP = 16 * MIB
MAX_PROBES = 8
TIME_BOX = 900.0  # seconds of probing per system and size
BOOT_TIMEOUT = 240.0  # QEMU start to the prompt (about 6 s on an idle host)
PROBE_TIMEOUT = 600.0  # a binary of most of 2 GiB is written byte by byte under TCG
SEL4, LINUX = "seL4", "Linux VM"

# {MemTotal, MemFree, MmapLargestFree} in kB from the guest's /proc/meminfo (-1: absent).
MEMINFO = (
    'MbMi = fun(K) -> {ok, B} = file:read_file("/proc/meminfo"), '
    'Ls = [string:lexemes(L, ": ") || L <- string:lexemes(binary_to_list(B), "\\n")], '
    "case [V || [K1, V | _] <- Ls, K1 =:= K] of [V] -> list_to_integer(V); _ -> -1 end end, "
    '{MbMi("MemTotal"), MbMi("MemFree"), MbMi("MmapLargestFree")}.'
)
PROBE = (
    "{_, MbM} = spawn_monitor(fun() -> exit(byte_size(binary:copy(<<1>>, %d))) end), "
    "receive {'DOWN', MbM, _, _, MbX} -> MbX end."
)
# A line of the serial log that says why a boot or a probe failed (the first one is shown).
ERROR_LINE = re.compile(
    checks.FATAL_LINE.pattern.decode()
    + r"|Cannot allocate|Out of memory|Kernel panic|oom-kill|exited \d+|[Ee]rror|[Kk]illed"
)


@dataclasses.dataclass
class Boot:
    ok: bool
    prompt: float | None = None  # QEMU start to the first prompt (s)
    meminfo: tuple[int, int, int] | None = None  # MemTotal, MemFree, MmapLargestFree (kB)
    reason: str = ""


def first_error(log: Path | None, exc: BaseException | None) -> str:
    """The first error line of the serial log, else the exception's first line."""
    if log is not None and log.is_file():
        text = ANSI.sub("", log.read_text(errors="replace")).replace("\r", "")
        for line in text.splitlines():
            if ERROR_LINE.search(line):
                return line.strip()[:160]
    if exc is not None:
        return (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    return "no error line in the serial log"


ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[ -/]*[0-~])")


class System:
    """Boots one system at a RAM size to its prompt."""

    name: str
    last_log: Path | None = None  # the serial log of the latest boot

    def sizes(self, sizes: list[str]) -> list[str]:
        return sizes

    def refusal(self, size: str) -> str | None:
        return None

    @contextmanager
    def booted(self, size: str) -> Iterator[tuple[Shell, Path]]:
        raise NotImplementedError
        yield


class Sel4(System):
    name = SEL4

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.board = boards.board(boards.DEFAULT_BOARD)
        self.images: dict[str, targets.Image | str] = {}

    def sizes(self, sizes: list[str]) -> list[str]:
        ok = []
        for s in sizes:
            try:
                boards.ram_mib(self.board, s)
                ok.append(s)
            except UserError:
                pass
        return ok

    def image(self, size: str) -> targets.Image | str:
        """The image for `size` on a private copy of its disk (QEMU locks a disk, and others
        may boot the cached image meanwhile), or why the build refused it."""
        if size not in self.images:
            try:
                mib = boards.ram_mib(self.board, size)
                img = targets.image(cache.Planner(ram_mib=mib), "beam")
            except UserError as e:  # a size too small is a UsageError; a broken build not
                what = "refused at build" if isinstance(e, UsageError) else "build failed"
                self.images[size] = f"{what}: {str(e).splitlines()[0]}"
            else:
                disk = self.tmp / f"disk-{size}.img"
                subprocess.run(["cp", "--sparse=always", str(img.disk), str(disk)], check=True)
                self.images[size] = dataclasses.replace(img, disk=disk)
        return self.images[size]

    def refusal(self, size: str) -> str | None:
        img = self.image(size)
        return img if isinstance(img, str) else None

    @contextmanager
    def booted(self, size: str) -> Iterator[tuple[Shell, Path]]:
        img = self.image(size)
        assert not isinstance(img, str)
        log = self.last_log = logs.run_log(f"mem-bench-sel4-{size}")
        with qemu.boot(img.command(), log) as s:
            shell = Shell(s)
            shell.wait_ready(BOOT_TIMEOUT)
            yield shell, log


class Linux(System):
    name = LINUX

    @contextmanager
    def booted(self, size: str) -> Iterator[tuple[Shell, Path]]:
        name = f"mem-bench-linux-vm-{size}"
        self.last_log = config.runs_dir() / f"{name}.log"
        with linux_vm.booted(size, log_name=name, timeout=BOOT_TIMEOUT) as shell:
            yield shell, config.runs_dir() / f"{name}.log"


def _meminfo(shell: Shell) -> tuple[int, int, int]:
    got = shell.eval(MEMINFO, 60).strip()
    m = re.fullmatch(r"\{(-?\d+),(-?\d+),(-?\d+)\}", got)
    if m is None:
        raise UserError(f"/proc/meminfo: the guest printed {got!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def boot_to_prompt(sys_: System, size: str) -> Boot:
    """One boot: the prompt, `1 + 1.` -> 2, and /proc/meminfo."""
    if (why := sys_.refusal(size)) is not None:
        return Boot(False, reason=why)
    sys_.last_log = None
    try:
        with sys_.booted(size) as (shell, _):
            prompt = shell.ready_at
            got = shell.eval("1 + 1.", 120).strip()
            if got != "2":
                return Boot(False, prompt, reason=f"`1 + 1.` printed {got!r}")
            return Boot(True, prompt, _meminfo(shell))
    except Exception as e:  # a boot that dies: its reason, not a crash of the bench
        return Boot(False, reason=first_error(sys_.last_log, e))


class Bisect:
    """The largest N (a multiple of STEP) that one probe of `binary:copy(<<1>>, N)` passes."""

    def __init__(self) -> None:
        self.ok = 0  # the largest N that passed
        self.failed: int | None = None  # the smallest N that failed
        self.jump = STEP  # away from the first guess, doubling
        self.probes = 0
        self.seconds = 0.0
        self.guess: int | None = None
        self.note = ""

    def done(self) -> bool:
        settled = self.failed is not None and self.failed - self.ok <= STEP
        return settled or self.probes >= MAX_PROBES or self.seconds >= TIME_BOX

    def next_n(self, meminfo: tuple[int, int, int] | None) -> int:
        if self.guess is None:
            _, free, run = meminfo or (0, 0, -1)
            kb = min(free, run) if run >= 0 else free
            self.guess = max(STEP, kb * 1024 // STEP * STEP)
            return self.guess
        if self.failed is None:
            n = self.ok + self.jump
        elif self.ok == 0:
            n = max(STEP, self.failed - self.jump)
        else:
            return self.ok + (self.failed - self.ok) // STEP // 2 * STEP
        self.jump *= 2
        return n

    def record(self, n: int, passed: bool) -> None:
        if passed:
            if self.failed is not None and self.ok == 0:
                self.jump = STEP  # bracketed: bisect from here
            self.ok = max(self.ok, n)
        else:
            if self.failed is None and self.ok:
                self.jump = STEP
            self.failed = n if self.failed is None else min(self.failed, n)
            if n == STEP:
                self.failed = STEP  # nothing passes: 0 is the answer
                self.ok = 0
                self.probes = MAX_PROBES

    def text(self) -> str:
        if self.failed == STEP and self.ok == 0:
            return f"< {STEP // MIB}"
        if self.failed is not None and self.failed - self.ok <= STEP:
            return f"{self.ok // MIB}"
        upper = f" (< {self.failed // MIB})" if self.failed is not None else ""
        return f">= {self.ok // MIB}{upper}"


def probe(sys_: System, size: str, b: Bisect) -> Boot:
    """One fresh boot, one `binary:copy`: N from the bisection (the first boot's guess
    from its own /proc/meminfo)."""
    sys_.last_log = None
    n = ready = mi = None
    t0 = time.monotonic()
    try:
        with sys_.booted(size) as (shell, _):
            ready = shell.ready_at
            boot = Boot(False, ready)
            mi = _meminfo(shell) if b.guess is None else None
            boot.meminfo = mi
            n = b.next_n(mi)
            got = shell.eval(PROBE % n, PROBE_TIMEOUT).strip()
            boot.ok = got == str(n)
            if not boot.ok:
                boot.reason = f"the probe printed {got[:120]!r}"
    except Exception as e:  # the node died (what the probe is for) or never booted
        boot = Boot(False, ready, mi, reason=first_error(sys_.last_log, e))
    b.seconds += time.monotonic() - t0
    b.probes += 1
    if n is not None:
        b.record(n, boot.ok)
        what = "ok" if boot.ok else f"failed: {boot.reason}"
        print(f"  {sys_.name:8} {size:>4}: binary of {n // MIB} MiB {what}", flush=True)
    else:
        print(f"  {sys_.name:8} {size:>4}: no probe ({boot.reason})", flush=True)
        b.probes = MAX_PROBES  # the size does not boot: nothing to bisect
        b.note = boot.reason
    return boot


def mib(size: str) -> int:
    n = int(size[:-1])
    return n * 1024 if size.endswith("G") else n


def run_round(systems: list[System], sizes: list[str], seen: dict, log_line) -> dict:
    """One round: the smallest sizes, then the largest binaries; returns
    {"smallest": {sys: size}, "why": {sys: "SIZE: reason"}, "binary": {(sys, size): text},
    "notes": [why a size had no probe]}. Every boot goes into seen[(system, size)]."""
    smallest: dict[str, str | None] = {s.name: None for s in systems}
    why: dict[str, str] = {}
    todo = {s.name: s.sizes(sizes) for s in systems}
    going = {s.name: True for s in systems}
    for size in sorted({x for v in todo.values() for x in v}, key=mib, reverse=True):
        for s in systems:  # alternating: seL4, then the Linux VM, at each size
            if not going[s.name] or size not in todo[s.name]:
                continue
            b = boot_to_prompt(s, size)
            seen.setdefault((s.name, size), []).append(b)
            if b.ok:
                smallest[s.name] = size
                mi = " ".join(f"{v // 1024}" for v in b.meminfo)
                log_line(
                    f"  {s.name:8} {size:>4}: prompt {b.prompt:.2f} s, 1 + 1 = 2; meminfo MiB {mi}"
                )
            else:
                going[s.name] = False
                why[s.name] = f"{size}: {b.reason}"
                log_line(f"  {s.name:8} {size:>4}: FAILED: {b.reason}")
    both = [smallest[s.name] for s in systems]
    at = list(BINARY_SIZES)
    if all(both):
        common = max(both, key=mib)  # the smallest size both reached
        if common not in at:
            at.append(common)
    binary: dict = {}
    notes: list[str] = []
    for size in at:
        bis = {s.name: Bisect() for s in systems}
        while not all(x.done() for x in bis.values()):
            for s in systems:
                if not bis[s.name].done():
                    if s.refusal(size) is not None:
                        bis[s.name].note = s.refusal(size)
                        bis[s.name].probes = MAX_PROBES
                        continue
                    seen.setdefault((s.name, size), []).append(probe(s, size, bis[s.name]))
        for s in systems:
            x = bis[s.name]
            binary[(s.name, size)] = x.text() if x.guess is not None else "-"
            if x.note:
                notes.append(f"{s.name} {size}: no binary probe: {x.note}")
    return {"smallest": smallest, "why": why, "binary": binary, "notes": notes}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    sizes = sys.argv[2].split(",") if len(sys.argv) > 2 else list(SIZES)
    board = boards.board(boards.DEFAULT_BOARD)
    for s in sizes:
        if not boards.SIZE.fullmatch(s):
            raise SystemExit(f"usage: mem_bench.py [ROUNDS 1-10] [SIZE,...]; {s!r} is no size")
    if not 1 <= rounds <= 10:
        raise SystemExit("usage: mem_bench.py [ROUNDS 1-10] [SIZE,...]")
    cache.Planner().ensure("linux-vm")
    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-", dir=config.cache_dir() / "runs"))
    try:
        systems: list[System] = [Sel4(tmp), Linux()]
        seen: dict = {}
        results = []
        t0 = time.monotonic()
        for i in range(rounds):
            print(f"round {i + 1}:", flush=True)
            results.append(run_round(systems, sizes, seen, lambda t: print(t, flush=True)))
        report(results, seen, sizes, board, time.monotonic() - t0)
    finally:
        shutil.rmtree(tmp)


def report(results: list, seen: dict, sizes: list[str], board, took: float) -> None:
    med = statistics.median
    at = sorted({k[1] for r in results for k in r["binary"]} | set(sizes), key=mib, reverse=True)

    def p(name: str, size: str) -> str:
        boots = seen.get((name, size), [])
        xs = [b.prompt for b in boots if b.prompt is not None]
        if xs:
            return f"{med(xs):.2f}"
        if name == SEL4 and mib(size) % board.ram_step:
            return "n/a"  # not a size the board can have
        if any(b.reason.startswith("refused") for b in boots):
            return "refused"
        return "failed" if boots else ""

    def mem(name: str, size: str) -> str:
        mis = [b.meminfo for b in seen.get((name, size), []) if b.meminfo]
        if not mis:
            return ""
        return f"{med(m[0] for m in mis) // 1024:.0f}/{med(m[1] for m in mis) // 1024:.0f}"

    def bin_(name: str, size: str) -> str:
        xs = [r["binary"].get((name, size)) for r in results]
        xs = [x for x in xs if x is not None]
        if not xs:
            return ""
        nums = [int(x) for x in xs if x.isdigit()]
        return f"{med(nums):.0f}" if len(nums) == len(xs) else xs[-1]

    print(
        f"\n{len(results)} round(s), {took / 60:.1f} min. Prompt: median over the boots at "
        "that size; /proc/meminfo at the prompt (seL4: the beam heap); largest binary: "
        f"{STEP // MIB} MiB steps, a fresh boot per probe"
    )
    print(
        f"  {'RAM':>5} | {'prompt (s)':^19} | {'MemTotal/MemFree (MiB)':^23} | largest binary (MiB)"
    )
    print(f"  {'':>5} | {SEL4:>8} {LINUX:>10} | {SEL4:>10} {LINUX:>12} | {SEL4:>9} {LINUX:>10}")
    for size in at:
        print(
            f"  {size:>5} | {p(SEL4, size):>8} {p(LINUX, size):>10} | "
            f"{mem(SEL4, size):>10} {mem(LINUX, size):>12} | "
            f"{bin_(SEL4, size):>9} {bin_(LINUX, size):>10}"
        )
    for r_i, r in enumerate(results, start=1):
        sm = r["smallest"]
        tried = ", ".join(sizes)
        print(
            f"  round {r_i}: smallest RAM reaching the prompt and 1 + 1 = 2 (of {tried}): "
            f"{SEL4} {sm[SEL4] or 'none'}, {LINUX} {sm[LINUX] or 'none'} "
            f"({SEL4}: multiples of {boards.ram_text(board.ram_step)} only)"
        )
        for k, v in r["why"].items():
            print(f"    {k} failed at {v}")
        for note in r["notes"]:
            print(f"    {note}")


if __name__ == "__main__":
    main()
