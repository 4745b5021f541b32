# SPDX-License-Identifier: BSD-2-Clause
"""RAM as an option of the image (`--ram`): the sizes a board can have, the SDK built per
size, the loader inside the RAM, QEMU given exactly the image's size."""

import json
import re

import pytest
from conftest import cli, require_sources

from chrysopolis import boards, cache, checks, config, logs, qemu, targets
from chrysopolis.errors import UsageError
from chrysopolis.shell import Shell
from chrysopolis.stages import sdk

B = boards.board(boards.DEFAULT_BOARD)
MIB = boards.MIB


@pytest.mark.parametrize("size, mib", [("64M", 64), ("512M", 512), ("2G", 2048), ("2g", 2048)])
def test_sizes_the_board_can_have(size, mib):
    assert boards.ram_mib(B, size) == mib
    assert boards.ram_mib(B, boards.ram_text(mib)) == mib


@pytest.mark.parametrize("size", ["100M", "32M", "9G", "0G"])
def test_a_size_the_board_cannot_have_lists_the_sizes(size):
    with pytest.raises(UsageError) as e:
        boards.ram_mib(B, size)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"--ram {size} is not a size qemu_virt_aarch64 can have" in msg
    assert "a multiple of 64M from 64M to 8G" in msg


@pytest.mark.parametrize("size", ["3X", "lots", "1.5G", "512", "-1G", ""])
def test_a_malformed_size_names_the_form(size):
    with pytest.raises(UsageError) as e:
        boards.ram_mib(B, size)
    assert "\n" not in str(e.value) and "e.g. 512M or 2G" in str(e.value)


def test_loader_lies_inside_the_ram_with_room_for_the_image():
    assert boards.loader_addr(B, 2048) == 0x7000_0000  # Microkit's own address
    assert boards.loader_addr(B, 512) == 0x5F00_0000
    assert boards.loader_addr(B, 64) == 0x4300_0000
    for mib in range(B.ram_min, B.ram_max + 1, B.ram_step):
        a = boards.loader_addr(B, mib)
        assert a % (2 * MIB) == 0 and B.paddr_top < a
        assert a + boards.LOADER_ROOM <= B.ram_base + mib * MIB


def test_the_dma_reserve_is_where_the_overlay_puts_it():
    assert B.paddr_top == 0x4080_0000
    dts = (config.ROOT / B.kernel_dts_overlay).read_text()
    assert "/delete-node/ vm-memory@40000000;" in dts
    reg = re.search(
        r"dma-memory@([0-9a-f]+) \{\s*reg = <0x0 (0x[0-9a-f]+) 0x0 (0x[0-9a-f]+)>;", dts
    )
    assert int(reg.group(1), 16) == int(reg.group(2), 16) == B.ram_base
    assert int(reg.group(3), 16) == B.dma_reserve


def test_build_sdk_args_carry_the_ram_size():
    args = sdk.build_sdk_args([B.name], ["debug"], 512, config.ROOT / "x.dts")
    assert args[args.index("--qemu-memory") + 1] == "512"
    assert args[args.index("--loader-link-address") + 1] == "0x5f000000"
    assert args[args.index("--kernel-dts-overlay") + 1] == str(config.ROOT / "x.dts")
    default = sdk.build_sdk_args([B.name], ["debug"])
    assert default[default.index("--qemu-memory") + 1] == "2048"
    assert default[default.index("--loader-link-address") + 1] == "0x70000000"
    with pytest.raises(UsageError, match="--ram 100M is not a size"):
        sdk.build_sdk_args([B.name], ["debug"], 100)


def test_stages_over_the_sdk_follow_its_size_and_erts_does_not():
    big, small = cache.Planner(2048), cache.Planner(512)
    assert big.options(cache.get("sdk"))["ram_mib"] == 2048
    assert small.options(cache.get("sdk"))["ram_mib"] == 512
    assert small.options(cache.get("beam"))["ram"] == "512M"
    for name in ("sdk", "lionsos-libc", "sddf", "fatfs", "libmicrokitco-beam", "lwip", "beam"):
        assert big.key(name) != small.key(name), name
    for name in ("microkit-tool", "erts", "otp", "musl"):
        assert big.key(name) == small.key(name), name
    assert cache.Planner().key("beam") == big.key("beam")  # 2G is the default


def test_qemu_gets_exactly_the_image_ram(tmp_path):
    cmd = qemu.command(B, tmp_path / "l.img", ram="512M")
    assert cmd[cmd.index("-m") + 1] == "size=512M"
    assert f"loader,file={tmp_path / 'l.img'},addr=0x5f000000,cpu-num=0" in cmd
    cmd = qemu.command(B, tmp_path / "l.img")
    assert cmd[cmd.index("-m") + 1] == "size=2G" and any("addr=0x70000000" in a for a in cmd)


@pytest.mark.parametrize(
    "size, want",
    [("100M", "a multiple of 64M from 64M to 8G"), ("3X", "e.g. 512M or 2G")],
)
@pytest.mark.parametrize("command", ["run", "build", "check"])
def test_the_cli_refuses_a_bad_size_in_one_line(command, size, want):
    extra = {"run": ["--eval", "ok."], "build": ["beam"], "check": ["boot-smoke"]}[command]
    r = cli(command, "--ram", size, *extra, timeout=60)
    assert r.returncode == (2 if command == "run" else 1), r.stderr
    assert r.stderr.count("\n") == 1 and want in r.stderr, r.stderr


# --- built: the SDK at a second size -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.sources
@pytest.mark.parametrize("mib", [512, 2048])
def test_the_sdk_gives_sel4_all_the_ram_but_the_dma_reserve(mib):
    require_sources("sel4", "microkit")
    out = cache.Planner(mib).ensure("sdk")
    platform = json.loads((sdk.board_dir(out, B.name, "debug") / "platform_gen.json").read_text())
    top = B.ram_base + mib * MIB
    heap = boards.heap_reserve(B, mib)
    # from 256 MiB, the heap's RAM is kept from seL4 too (it would clear it at boot)
    end = top if heap is None else heap[0]
    assert platform["memory"] == [{"start": 0x4080_0000, "end": end}]
    # the reserves are device memory: sdfgen's fixed-address regions come from there
    assert any(d["start"] <= B.ram_base and B.paddr_top <= d["end"] for d in platform["devices"])
    if heap is not None:
        assert any(d["start"] <= heap[0] and top <= d["end"] for d in platform["devices"])


@pytest.mark.slow
@pytest.mark.sources
def test_hello_boots_in_the_smallest_ram():
    require_sources("sel4", "microkit")
    from chrysopolis.targets import hello

    p = cache.Planner(B.ram_min)
    assert targets.image(p, "hello").ram == "64M"
    assert hello.boot_time(p) < 30


# --- built and booted: the Erlang image at other sizes -----------------------------------------


@pytest.mark.slow
@pytest.mark.sources
def test_beam_boots_in_512m_with_the_rest_as_heap(stack_planner):
    p = cache.Planner(512)
    img = targets.image(p, "beam")
    manifest = json.loads((img.dir / targets.MANIFEST).read_text())
    assert manifest["ram"] == "512M" and 400 < manifest["heap_mib"] < 512, manifest
    log = logs.run_log("test-ram-512m")
    with qemu.boot(img.command(), log) as s:
        shell = Shell(s)
        shell.wait_ready(120)
        assert shell.eval("1 + 1.") == "2"
        assert shell.eval("erlang:system_info(otp_release).") == '"29"'
    assert "-m size=512M" in " ".join(img.command())


@pytest.mark.slow
@pytest.mark.sources
def test_a_ram_too_small_for_a_fixed_heap_names_the_smallest_that_fits(stack_planner):
    p = cache.Planner(512, options={"beam": {"heap_mib": 512}})
    with pytest.raises(UsageError) as e:
        targets.image(p, "beam")
    m = re.fullmatch(
        r"--ram 512M is too small for the protection domains \(beam_server's heap 512 MiB\); "
        r"the smallest RAM that fits is (\d+)M: give --ram \1M or more",
        str(e.value),
    )
    assert m and 512 < int(m.group(1)) <= 640, str(e.value)


@pytest.mark.slow
@pytest.mark.sources
def test_run_ram_64m_evaluates(stack_planner):
    r = cli("run", "--ram", "64M", "--eval", "1 + 1.", timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["2"]
    assert targets.image(cache.Planner(64), "beam").ram == "64M"  # built by that run


@pytest.mark.slow
@pytest.mark.sources
def test_shell_smoke_at_64m(stack_planner):
    cache.use_ram(64)  # as `check --ram 64M`: the check's own planners follow it
    try:
        p = cache.Planner()
        assert checks.load_all()["shell-smoke"].run(p)
    finally:
        cache.use_ram(None)
    manifest = json.loads((targets.image(p, "beam").dir / targets.MANIFEST).read_text())
    assert manifest["heap_mib"] >= 32, manifest


def test_the_heap_ram_kept_from_sel4_is_clean_but_for_the_loader():
    base, size = boards.heap_reserve(B, 2048)
    assert (base, base + size) == (
        B.paddr_top + boards.KERNEL_RAM_MIB * MIB,
        B.ram_base + 2048 * MIB,
    )
    # QEMU's RAM starts zeroed: only the loader's image may be in the heap's RAM
    assert boards.heap_written(B, 2048) == (boards.loader_addr(B, 2048) - base, boards.LOADER_ROOM)
    assert boards.heap_reserve(B, 128) is None and boards.heap_written(B, 128) is None
