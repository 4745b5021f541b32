# SPDX-License-Identifier: BSD-2-Clause
"""Our code stays lint-clean and formatted: ruff for Python, clang-format-19 for C."""

import shutil
import subprocess
import sys

import pytest

from chrysopolis import config
from chrysopolis.cli import c_sources


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


def test_c_is_clang_formatted():
    clang_format = shutil.which("clang-format-19")
    if clang_format is None:
        pytest.skip("clang-format-19 absent: run `chrysopolis setup`")
    r = subprocess.run(
        [clang_format, "--dry-run", "--Werror", *map(str, c_sources())],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
