"""Our Python stays lint-clean and formatted (ruff, configured in pyproject.toml)."""

import subprocess
import sys

from chrysopolis import config


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, str(config.ROOT)], capture_output=True, text=True
    )


def test_ruff_check():
    r = ruff("check")
    assert r.returncode == 0, r.stdout


def test_ruff_format():
    r = ruff("format", "--check")
    assert r.returncode == 0, r.stdout
