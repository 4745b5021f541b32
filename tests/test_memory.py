# SPDX-License-Identifier: BSD-2-Clause
"""The Erlang image's memory on the 2G board: big data in one node, and a request for more
than the machine has ending as on Linux (chrysopolis/targets/beam_memory.py)."""

import re

import pytest
from conftest import cli

from chrysopolis import checks


@pytest.fixture(scope="module")
def planner(stack_planner):
    stack_planner.ensure("beam")
    return stack_planner


@pytest.mark.slow
def test_big_data_in_one_node(planner):
    summary = checks.load_all()["mem-big"].run(planner)
    for what in (
        "erlang:memory(total) at 85% of the RAM",
        "a 1 GiB binary",
        "a 10-million-element list",
        "500 MB of data in ETS",
        "a 300 MB heap collected 5 times",
    ):
        assert re.search(rf"{re.escape(what)} \d+ s", summary), summary


@pytest.mark.slow
def test_more_than_the_machine_has_ends_as_on_linux(planner):
    summary = checks.load_all()["mem-oom"].run(planner)
    assert summary == "ERTS refused 4 GiB and exited with status 1"


@pytest.mark.slow
def test_run_shows_erts_running_out_of_memory_and_its_status(planner):
    r = cli("run", "--eval", "binary:copy(<<1>>, 1 bsl 32).", timeout=900)
    assert r.returncode == 1, r.stderr
    assert 'Cannot allocate 4294967296 bytes of memory (of type "binary")' in r.stderr
    assert "Crash dump is being written" in r.stderr
