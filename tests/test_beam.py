# SPDX-License-Identifier: BSD-2-Clause
"""The Erlang image on seL4: boot, shell, batch evaluation, user code (needs the sources)."""

import pytest
from conftest import cli, require_sources

from chrysopolis import cache, checks, image


@pytest.fixture(scope="module")
def planner(stack_planner):
    stack_planner.ensure("beam")
    return stack_planner


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "boot-smoke",
        "shell-smoke",
        "shell-deep",
        "boot-nootp",
        "net-up",
        "tcp-smoke",
        "net-bad",
        "udp-smoke",
        "http-demo",
        "net-many",
        "net-lan",
    ],
)
def test_check(planner, name):
    assert checks.load_all()[name].run(planner)


@pytest.mark.slow
def test_run_eval_prints_each_result(planner):
    r = cli(
        "run",
        "--eval",
        "1 + 1.",
        "--eval",
        'io:format("Hello from seL4!~n").',
        "--eval",
        "lists:seq(1, 5).",
        "--eval",
        "erlang:system_info(otp_release).",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["2", "ok", "[1,2,3,4,5]", '"29"']
    assert r.stderr.splitlines() == ["Hello from seL4!"]  # what the guest prints


@pytest.mark.slow
def test_run_path_loads_user_modules(planner, tmp_path):
    src = tmp_path / "greet.erl"
    src.write_text("-module(greet).\n-export([hi/1]).\nhi(Name) -> {hello, Name, from, seL4}.\n")
    r = cli("baseline", "--eval", f'compile:file("{src}", [{{outdir, "{tmp_path}"}}]).')
    assert r.returncode == 0 and "{ok,greet}" in r.stdout, r.stdout + r.stderr
    r = cli("run", "--path", str(tmp_path), "--eval", "greet:hi(world).")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{hello,world,from,seL4}"


@pytest.mark.slow
def test_run_eval_with_a_forward(planner):
    # QEMU takes the hostfwd (127.0.0.1 only) next to restrict=on; the guest boots as before.
    r = cli("run", "--forward", "tcp:18080:8080", "--eval", "1 + 1.")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["2"]


@pytest.mark.slow
def test_run_app_loads_an_otp_application_of_the_disk(planner):
    r = cli(
        "run", "--app", "inets", "--eval", "{code:is_loaded(httpd) =/= false, code:which(httpd)}."
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '{true,"/lib/inets-9.8/ebin/httpd.beam"}'


def test_unknown_app_is_refused_naming_the_apps(planner):
    r = cli("run", "--app", "cowboy", "--eval", "1.", timeout=120)
    assert r.returncode == 2
    assert "--app cowboy: the disk has no such OTP application; give one of" in r.stderr
    assert "inets" in r.stderr


def test_bad_forward_is_refused_before_booting():
    r = cli("run", "--forward", "8080", "--eval", "1 + 1.", timeout=60)
    assert r.returncode == 2
    assert "--forward '8080' is not [tcp:|udp:]HOSTPORT:GUESTPORT" in r.stderr


def test_eval_without_full_stop_is_refused_before_booting():
    r = cli("run", "--eval", "1 + 1", timeout=60)
    assert r.returncode == 2
    assert "must end with a full stop" in r.stderr


def test_path_without_beams_is_refused(tmp_path):
    require_sources(*image.NEEDS)
    r = cli("run", "--path", str(tmp_path), "--eval", "ok.", timeout=300)
    assert r.returncode == 2
    assert "no .beam files there" in r.stderr


@pytest.mark.slow
def test_batch_runs_leave_the_image_unchanged(planner):
    from chrysopolis import targets
    from chrysopolis.treehash import file_hash

    disk = targets.image(planner, "beam").disk
    before = file_hash(disk)
    r = cli(
        "run",
        "--eval",
        'file:write_file("/scratch.txt", <<"written by the guest">>).',
        "--eval",
        'file:read_file("/scratch.txt").',
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["ok", '{ok,<<"written by the guest">>}']
    assert file_hash(disk) == before


@pytest.mark.slow
def test_beam_server_carries_the_net_client(planner, tmp_path):
    """beam_server.elf declares the net client's and lib_sddf_lwip's config sections at
    sdfgen's sizes, links netd, and lwIP's globals clash with none of ERTS's."""
    import subprocess

    from chrysopolis import system
    from chrysopolis.stages import lionsos
    from chrysopolis.targets.beam import erts_archives

    llvm = lionsos.LLVM_BIN
    elf = planner.ensure("beam") / "beam_server.elf"
    outputs = system.generate(tmp_path)
    heads = subprocess.run(
        [llvm / "llvm-readelf", "-S", "--wide", elf], capture_output=True, text=True
    ).stdout
    sizes = {}
    for line in heads.splitlines():
        f = line.split("]", 1)[-1].split()
        if len(f) >= 5 and f[0].startswith("."):
            sizes[f[0]] = int(f[4], 16)
    for b in outputs.blobs:
        if b.elf == "beam_server.elf":
            assert sizes[b.section] == b.data.stat().st_size, b.section
    syms = subprocess.run([llvm / "llvm-nm", elf], capture_output=True, text=True).stdout
    assert " netstack_start" in syms and " sddf_lwip_init" in syms

    def globals_of(archive):
        r = subprocess.run(
            [llvm / "llvm-nm", "-g", "--defined-only", archive], capture_output=True, text=True
        )
        return {f[2] for f in (line.split() for line in r.stdout.splitlines()) if len(f) == 3}

    lwip = globals_of(planner.ensure("lwip") / "lib" / lionsos.LWIP_LIB)
    for archive in erts_archives(planner.ensure("erts")):
        assert not lwip & globals_of(archive), archive.name


@pytest.mark.slow
def test_image_rebuilds_byte_identical(planner):
    import shutil

    from chrysopolis.treehash import file_hash

    files = ("sel4-beam.img", "disk.img", "beam_server.elf", "chrysopolis.system")
    out = planner.ensure("beam")
    before = {f: file_hash(out / f) for f in files}
    shutil.rmtree(out)
    again = cache.Planner().ensure("beam")
    assert {f: file_hash(again / f) for f in files} == before


@pytest.mark.slow
def test_a_node_image_is_packed_from_the_build_without_recompiling(planner, tmp_path):
    """Node 1's image is the same ELFs packed with MAC ...:02 (seconds, cached); packing
    node 0's MAC the same way gives the build's own image byte for byte."""
    import time

    from chrysopolis import nodes, targets
    from chrysopolis.treehash import file_hash

    img = targets.image(planner, "beam")
    t0 = time.monotonic()
    one = nodes.node_image(planner, "beam", nodes.node_mac(1))
    assert time.monotonic() - t0 < 60
    assert one.loader != img.loader and one.disk == img.disk and one.mac == "52:54:00:c5:00:02"
    assert bytes.fromhex("525400c50002") in one.loader.read_bytes()
    assert nodes.node_image(planner, "beam", nodes.node_mac(1)).loader == one.loader  # cached
    assert nodes.node_image(planner, "beam", nodes.node_mac(0)) == img
    nodes._pack(planner, "beam", img, img.mac, tmp_path / "node0")
    assert file_hash(tmp_path / "node0" / img.loader.name) == file_hash(img.loader)


@pytest.mark.slow
def test_run_eval_with_a_static_address_hostname_and_node(planner):
    r = cli(
        "run",
        "--node",
        "2",
        "--ip",
        "10.0.2.50/24,10.0.2.2",
        "--hostname",
        "alpha.example",
        "--eval",
        "inet:gethostname().",
        "--eval",
        "{ok, S} = gen_udp:open(0), inet:sockname(S).",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == '{ok,"alpha"}'  # inet keeps the domain apart
    from chrysopolis import logs

    assert "net: eth0 10.0.2.50/24 gw 10.0.2.2 (static)" in logs.latest("beam").read_text()


def test_bad_node_settings_are_refused_before_booting():
    for args, want in (
        (("--ip", "10.0.3.300/24"), "--ip '10.0.3.300/24'"),
        (("--hostname", "a_b"), "--hostname 'a_b' is not a host name"),
        (("--lan", "demo"), "--lan demo needs --node N"),
    ):
        r = cli("run", *args, "--eval", "1.", timeout=60)
        assert r.returncode == 2, r.stderr
        assert want in r.stderr and len(r.stderr.strip().splitlines()) == 1
