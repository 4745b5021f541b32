# SPDX-License-Identifier: BSD-2-Clause
"""Elixir on the beam image: its applications on the disk, IEx on the console
(`run --shell iex`) and batch Elixir (`run --shell iex --eval`)."""

import json
import struct

import pytest
from conftest import cli

from chrysopolis import checks
from chrysopolis.stages import elixir


@pytest.fixture(scope="module")
def planner(stack_planner):
    stack_planner.ensure("beam")
    return stack_planner


def _chunks(beam: bytes) -> list[str]:
    assert beam[:4] == b"FOR1" and beam[8:12] == b"BEAM"
    names, i = [], 12
    while i < len(beam):
        size = struct.unpack(">I", beam[i + 4 : i + 8])[0]
        names.append(beam[i : i + 4].decode())
        i += 8 + (size + 3) // 4 * 4
    return names


@pytest.mark.slow
def test_elixir_applications_with_their_docs(planner):
    out = planner.ensure("elixir")
    versions = json.loads((out / elixir.MANIFEST).read_text())
    assert versions == {a: "1.20.4" for a in elixir.APPS}
    enum = out / "lib" / "elixir-1.20.4" / "ebin" / "Elixir.Enum.beam"
    assert "Docs" in _chunks(enum.read_bytes())  # IEx's h reads them on the image


@pytest.mark.slow
def test_iex_on_the_console(planner):
    summary = checks.load_all()["iex-smoke"].run(planner)
    assert summary.startswith("Elixir 1.20.4: 6 expressions"), summary


@pytest.mark.slow
def test_batch_elixir_prints_each_result_as_iex_shows_it(planner):
    r = cli(
        "run",
        "--shell",
        "iex",
        "--eval",
        "Enum.map([1, 2, 3], &(&1 * 2))",
        "--eval",
        "x = 1 + 1",
        "--eval",
        'String.upcase("seL4") <> " #{x}"',
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[2, 4, 6]", "2", '"SEL4 2"']


@pytest.mark.slow
def test_batch_elixir_stops_at_an_exception(planner):
    r = cli("run", "--shell", "iex", "--eval", "1 + 1", "--eval", "1 / 0", "--eval", "3")
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == ["2"]
    assert "** (ArithmeticError) bad argument in arithmetic expression" in r.stderr


@pytest.mark.slow
def test_batch_elixir_syntax_error_evaluates_nothing(planner):
    r = cli("run", "--shell", "iex", "--eval", "1 + 1", "--eval", "1 +")
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert "** (SyntaxError) --eval 2, line 1:" in r.stderr


def test_an_unknown_shell_is_refused_in_one_line():
    r = cli("run", "--shell", "bash", "--eval", "1")
    assert r.returncode == 2
    assert r.stderr.strip() == "error: --shell bash: not a shell; use one of: erl, iex"
