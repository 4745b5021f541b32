# SPDX-License-Identifier: BSD-2-Clause
"""The Linux baseline: the image's ERTS as a static aarch64 beam.smp under qemu-aarch64.

The same emulator objects as the seL4 image (stage `baseline`) boot the same OTP tree
(stage `otp`) in QEMU user mode on the same emulated CPU: the reference for every speed
figure of the image, and a host Erlang 29 for checking expressions.

Two Linux traits need care. The kernel application resolves a hostname without a
domain through the `inet_gethost` port program, and no port program can run here:
QEMU user mode cannot exec an aarch64 binary without binfmt_misc, so the VM halts. The
emulator therefore runs in its own UTS namespace with a dotted hostname (root, or an
unprivileged user namespace). And OTP's shell is not used: each expression is scanned,
parsed and evaluated by erl_eval, bindings carried from one to the next, and its result
printed on one line behind a marker: the program of chrysopolis/evaluator.py, the one
`run --eval` boots on the seL4 image.
"""

import ctypes
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from chrysopolis import evaluator, toolchain
from chrysopolis.errors import UserError

HOSTNAME = "baseline.chrysopolis"
RELEASE = "29"
# No break handler, no busy-waiting schedulers: the flags the seL4 image boots with.
EMU_FLAGS = ("-Bd", "-sbwt", "none", "-sbwtdcpu", "none", "-sbwtdio", "none")
CLONE_NEWUTS = 0x04000000
CLONE_NEWUSER = 0x10000000


def emulator(beam: Path, root: Path, home: Path | str) -> list[str]:
    """beam.smp under qemu-aarch64 with the OTP tree `root` and our boot script; init's
    flags follow."""
    return [
        toolchain.path("qemu-aarch64-static"),
        str(beam),
        *EMU_FLAGS,
        "--",
        "-root",
        str(root),
        "-bindir",
        str(root / "bin"),
        "-progname",
        "erl",
        "--",
        "-home",
        str(home),
        "-boot",
        str(root / "releases" / RELEASE / "start"),
    ]


def environment(root: Path, home: Path | str) -> dict[str, str]:
    """What erlexec would set for the emulator (it is started without erlexec), with the
    toolchain's qemu-aarch64 on PATH."""
    return {
        **toolchain.env(),
        "BINDIR": str(root / "bin"),
        "ROOTDIR": str(root),
        "EMU": "beam",
        "PROGNAME": "erl",
        "HOME": str(home),
    }


def command(beam: Path, root: Path, home: Path, exprs: list[str], mark: str) -> list[str]:
    return [*emulator(beam, root, home), "-noshell", "-eval", evaluator.code(exprs, mark)]


def dotted_hostname() -> None:
    """In the child before exec: a private UTS namespace named HOSTNAME."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUTS) != 0 and libc.unshare(CLONE_NEWUSER | CLONE_NEWUTS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    name = HOSTNAME.encode()
    if libc.sethostname(name, len(name)) != 0:
        raise OSError(ctypes.get_errno(), "sethostname")


def run(
    beam: Path, root: Path, exprs: list[str], timeout: float = 300
) -> tuple[list[str], str, float]:
    """Boot, evaluate, halt: (results, full output, seconds from start to exit). A result
    is a term on one line; the expression that failed, if any, is last, as its error text
    (`** exception ...` lines: later expressions were not evaluated)."""
    exprs = [e if e.rstrip().endswith(".") else e + "." for e in exprs]
    mark = evaluator.new_mark()
    with tempfile.TemporaryDirectory(prefix="chrysopolis-baseline-") as home:
        env = {**environment(root, home), "ERL_CRASH_DUMP_SECONDS": "0"}
        needs_ns = "." not in socket.gethostname()
        t0 = time.monotonic()
        try:
            r = subprocess.run(
                command(beam, root, Path(home), exprs, mark),
                # The caller's directory: relative paths (compile:file("m.erl")) mean theirs.
                cwd=os.getcwd(),
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                preexec_fn=dotted_hostname if needs_ns else None,
            )
        except subprocess.SubprocessError as e:
            if isinstance(e, subprocess.TimeoutExpired):
                raise UserError(f"the baseline gave no result within {timeout:.0f} s") from None
            raise UserError(
                f"cannot give the baseline a dotted hostname ({e}): OTP would spawn inet_gethost; "
                f"run as root, allow user namespaces, or set a hostname with a domain"
            ) from None
        elapsed = time.monotonic() - t0
    out = r.stdout + r.stderr
    reader = evaluator.Reader(mark)
    for line in r.stdout.splitlines():
        reader.feed(line)
    if reader.status is None or r.returncode != reader.status:
        tail = "\n".join(out.strip().splitlines()[-15:])
        raise UserError(
            f"the baseline beam.smp exited {r.returncode} with {len(reader.results)} of "
            f"{len(exprs)} results:\n{tail}"
        )
    results = [reader.results[k] for k in sorted(reader.results)]
    results += ["\n".join(lines) for _, lines in sorted(reader.errors.items())]
    return results, out, elapsed


def evaluate(exprs: list[str]) -> list[str]:
    """Each expression's result (shell syntax, one line each), evaluated on the baseline."""
    from chrysopolis import cache

    planner = cache.Planner()
    beam = planner.ensure("baseline") / "bin" / "beam.smp"
    root = planner.ensure("otp") / "root"
    return run(beam, root, exprs)[0]
