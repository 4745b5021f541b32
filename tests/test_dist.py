# SPDX-License-Identifier: BSD-2-Clause
"""Erlang distribution: names, cookies and ports (dist.py), and the cluster checks."""

import os
import stat

import pytest
from conftest import cli

from chrysopolis import checks, dist, epmd
from chrysopolis.errors import UsageError


@pytest.mark.parametrize(
    "sname, name, want",
    [
        ("beam1", None, ("beam1", False)),
        ("beam1@localhost", None, ("beam1", False)),
        (None, "beam1@127.0.0.1", ("beam1", True)),
        (None, "n_2", ("n_2", True)),
    ],
)
def test_names(sname, name, want):
    assert dist.parse_name(sname, name) == want


@pytest.mark.parametrize(
    "sname, name, msg",
    [
        ("1beam", None, "a node name is a letter"),
        ("beam@otherhost", None, "host part must be localhost"),
        (None, "beam@localhost", "host part must be 127.0.0.1"),
        ("a", "b", "give one"),
    ],
)
def test_bad_names_are_refused_naming_the_fix(sname, name, msg):
    with pytest.raises(UsageError, match=msg):
        dist.parse_name(sname, name)


def test_cookie_from_option_file_or_home(tmp_path, monkeypatch):
    assert dist.cookie("abc_1", None) == "abc_1"
    with pytest.raises(UsageError, match="letters, digits"):
        dist.cookie("a b", None)
    f = tmp_path / "c"
    f.write_text("FROMFILE\nignored\n")
    assert dist.cookie(None, f) == "FROMFILE"
    with pytest.raises(UsageError, match="--cookie-file"):
        dist.cookie(None, tmp_path / "absent")
    # no option: ~/.erlang.cookie, made as erl makes it when missing
    monkeypatch.setattr(dist, "COOKIE_FILE", tmp_path / ".erlang.cookie")
    made = dist.cookie(None, None)
    assert len(made) == 20 and made.isupper()
    assert stat.S_IMODE(os.stat(tmp_path / ".erlang.cookie").st_mode) == 0o400
    assert dist.cookie(None, None) == made


def test_a_node_reaches_the_host_epmd_the_linux_ports_and_its_peers():
    rules = dist.guest_forwards([40001, 40002])
    assert rules[0] == (epmd.PORT, epmd.PORT)
    assert (9100, 9100) in rules and (9109, 9109) in rules and (40002, 40002) in rules
    args = dist.init_args(dist.Node("beam1", False, 40001), "ck")
    assert args[args.index("-setcookie") + 1] == "ck"
    assert "inet_dist_listen_min" in args and "40001" in args
    assert "net_kernel:start('beam1@localhost'" in args[-1]


def test_cluster_refuses_a_bad_cookie_before_booting():
    r = cli("cluster", "2", "--cookie", "a b", timeout=60)
    assert r.returncode == 2 and "--cookie: use letters" in r.stderr


def test_baseline_needs_an_expression_or_a_name():
    r = cli("baseline", timeout=60)
    assert r.returncode == 2 and "--sname NAME" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dist-smoke", "dist-nodedown", "dist-badcookie"])
def test_check(stack_planner, name):
    stack_planner.ensure("beam")
    assert checks.load_all()[name].run(stack_planner)


def test_a_cookie_without_a_node_name_is_refused():
    r = cli("run", "--cookie", "ck", "--eval", "1.", timeout=60)
    assert r.returncode == 2 and "--cookie goes with --sname or --name" in r.stderr


@pytest.mark.slow
def test_run_sname_boots_a_distributed_node(stack_planner):
    stack_planner.ensure("beam")
    r = cli(
        "run",
        "--sname",
        "solo",
        "--cookie",
        "ck123",
        "--eval",
        "node().",
        "--eval",
        "erlang:get_cookie().",
        "--eval",
        "net_adm:ping(solo@localhost).",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["solo@localhost", "ck123", "pong"]
