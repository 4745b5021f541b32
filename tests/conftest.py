# SPDX-License-Identifier: BSD-2-Clause
"""Shared fixtures. Tests that need GitHub-hosted sources skip, naming the command."""

import os
import subprocess
import sys

import pytest

from chrysopolis import lock, sources


def cli(*args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """`chrysopolis ARGS` as a user runs it: its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "chrysopolis", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def require_sources(*names: str) -> None:
    """Skip the calling test unless every named source is in the store."""
    lk = lock.load()
    for n in names:
        s = lk.source(n)
        if not sources.present(s):
            pytest.skip(f"source '{n}' absent: {sources.bring_hint(s)}")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private cache directory, so a test never touches the user's store."""
    monkeypatch.setenv("CHRYSOPOLIS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def stack_planner():
    """A planner for images on the LionsOS stack; skips unless their sources are stored."""
    from chrysopolis import cache, image

    require_sources(*image.NEEDS)
    return cache.Planner()


def pytest_sessionfinish(session, exitstatus):
    """CHRYSOPOLIS_NO_SKIP=1 (CI, the fresh-machine check): a skipped test fails the run."""
    if os.environ.get("CHRYSOPOLIS_NO_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        reporter.write_line(
            f"CHRYSOPOLIS_NO_SKIP=1: {len(skipped)} test(s) skipped; that fails the run"
        )
        session.exitstatus = 1
