# SPDX-License-Identifier: BSD-2-Clause
"""The runtime adapter on seL4: the self-test image boots and every check passes
(needs the GitHub-hosted sources)."""

import re
import subprocess

import pytest

from chrysopolis import checks, image, logs, targets
from chrysopolis.stages.lionsos import LLVM_BIN


@pytest.fixture(scope="module")
def planner(stack_planner):
    return stack_planner


@pytest.mark.slow
def test_selftest_passes_on_two_boots(planner):
    summary = checks.load_all()["runtime-selftest"].run(planner)
    m = re.match(r"(\d+) checks passed in [\d.]+ s; getrandom differs across boots", summary)
    assert m and int(m.group(1)) >= 30
    log = logs.latest("runtime-selftest-1").read_bytes()
    for name in (
        b"8 threads, mutex held across yields",
        b"pthread_cond_timedwait times out",
        b"timerfd wakes epoll_wait(-1)",
        b"readdir (getdents64) lists /selftest",
    ):
        assert b"selftest: ok " + name in log


@pytest.mark.slow
def test_musl_threads_run_over_our_clone(planner):
    """musl's pthread_create links (no duplicate), with __clone and __unmapself from threads.c
    and every libmicrokitco switch reached through the __wrap_ functions."""
    img = targets.image(planner, "selftest")
    elf = img.loader.parent / "beam_server.elf"
    syms = subprocess.run(
        [LLVM_BIN / "llvm-nm", elf], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r" W pthread_create$", syms, re.M)
    dwarf = subprocess.run(
        [LLVM_BIN / "llvm-dwarfdump", "--name=__clone", "--name=__unmapself", elf],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert dwarf.count("threads.c") >= 2
    for fn in image.WRAPPED:
        assert re.search(rf" T __wrap_{fn}$", syms, re.M)


@pytest.mark.slow
def test_a_cothread_stack_overrun_is_reported(planner):
    summary = checks.load_all()["stack-overflow"].run(planner)
    assert re.fullmatch(r"cothread \d+ \(thread \d+\) reported, status 139", summary), summary
    log = logs.latest("stack-overflow").read_bytes()
    assert b"selftest: descending 72 frames of 1024 bytes" in log
    assert b"selftest: FAIL" not in log
