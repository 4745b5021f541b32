# SPDX-License-Identifier: BSD-2-Clause
"""The runtime adapter's pure parts, built for the host and run: memory.c (the heap region
allocator behind mmap/munmap/mremap/brk), paths.c (path folding), entropy.c (the
ChaCha20 DRBG) and pd/dispatch.c's syscall registration (refusing a taken slot and a
number off the table). tests/runtime_host/harness.c drives the real sources through
their syscall handlers, registered as the adapter registers them; the cothread and seL4
parts are exercised on target only."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / "tests" / "runtime_host"
SOURCES = ("posix/memory.c", "posix/paths.c", "posix/entropy.c", "pd/dispatch.c")


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler (cc)")
    exe = tmp_path_factory.mktemp("runtime_host") / "harness"
    subprocess.run(
        [
            cc,
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-parameter",
            f"-I{HOST / 'include'}",
            f"-I{ROOT / 'runtime' / 'include'}",
            HOST / "harness.c",
            *[ROOT / "runtime" / s for s in SOURCES],
            "-o",
            exe,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return exe


def run(exe: Path, *args: str) -> list[str]:
    r = subprocess.run([exe, *args], capture_output=True, text=True)
    failed = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 0 and not failed, "\n".join(failed) or r.stderr
    return r.stdout.splitlines()


def test_memory_region_allocator(harness):
    lines = run(harness, "memory")
    assert len([x for x in lines if x.startswith("ok ")]) >= 30


def test_memory_region_of_gigabytes(harness):
    lines = run(harness, "memory-big")
    assert "ok one 2.5 GiB mapping" in lines
    assert any(x.startswith("ok mmap/munmap among 500 carriers") for x in lines), lines


def test_path_folding(harness):
    lines = run(harness, "paths")
    assert "ok path / + //lib/kernel/ebin -> /lib/kernel/ebin" in lines


def test_chacha20_matches_rfc8439(harness):
    assert run(harness, "chacha") == ["ok chacha20 block matches RFC 8439 2.3.2"]


def test_registration_refuses_taken_slots_and_numbers_off_the_table(harness):
    r = subprocess.run([harness, "register"], capture_output=True, text=True)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and not [x for x in lines if x.startswith("FAIL")], r.stdout
    assert len([x for x in lines if x.startswith("ok ")]) == 8
    errors = [x for x in lines if x.startswith("beam_server: ERROR: ")]
    mmap = subprocess.run(
        ["sh", "-c", "printf '#include <sys/syscall.h>\\nSYS_mmap\\n' | cc -E -P -"],
        capture_output=True,
        text=True,
    ).stdout.split()[-1]  # the host's number for mmap, the slot registered twice
    assert errors == [
        f"beam_server: ERROR: syscall {mmap} (memory.c): registered twice",
        "beam_server: ERROR: syscall 512 (memory.c): out of range of the dispatch table (DISPATCH_MAX)",
        "beam_server: ERROR: syscall 100000 (memory.c): out of range of the dispatch table (DISPATCH_MAX)",
        "beam_server: ERROR: syscall -1 (memory.c): out of range of the dispatch table (DISPATCH_MAX)",
    ]


def random_bytes(exe: Path, n: int) -> bytes:
    (line,) = (x for x in run(exe, "random", str(n)) if x.startswith("random "))
    return bytes.fromhex(line.split()[1])


def test_drbg_differs_per_seed_and_looks_uniform(harness):
    # Each run seeds from clock jitter, as each boot does from the timer.
    a, b = random_bytes(harness, 4096), random_bytes(harness, 4096)
    assert len(a) == 4096 and a != b
    counts = [0] * 256
    for byte in a + b:
        counts[byte] += 1
    expected = len(a + b) / 256
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 400, f"byte histogram too uneven (chi2 {chi2:.0f}, 255 dof)"


def test_drbg_odd_lengths(harness):
    for n in (1, 63, 64, 65, 1000):
        assert len(random_bytes(harness, n)) == n
