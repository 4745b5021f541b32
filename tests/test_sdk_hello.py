# SPDX-License-Identifier: BSD-2-Clause
"""The Microkit SDK stage and the `hello` target: built from the pinned sources, booted in QEMU."""

import subprocess
import xml.etree.ElementTree as ET

import pytest
from conftest import require_sources
from elftools.elf.elffile import ELFFile

from chrysopolis import boards, cache, system, targets
from chrysopolis.checks import load_all as load_checks
from chrysopolis.errors import UserError
from chrysopolis.stages import sdk


def _one_line_user_error(fn, *args) -> str:
    with pytest.raises(UserError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_unknown_board_is_refused():
    msg = _one_line_user_error(sdk.build_sdk_args, ["qemu_virt_nosuch"], ["debug"])
    assert "qemu_virt_nosuch" in msg and boards.DEFAULT_BOARD in msg


def test_unknown_config_is_refused():
    msg = _one_line_user_error(sdk.build_sdk_args, [boards.DEFAULT_BOARD], ["fast"])
    assert "'fast'" in msg and "debug" in msg


def test_build_sdk_args_use_the_debian_cross_compiler():
    args = sdk.build_sdk_args([boards.DEFAULT_BOARD], ["debug", "release"])
    assert args[args.index("--boards") + 1] == "qemu_virt_aarch64"
    assert args[args.index("--configs") + 1] == "debug,release"
    assert args[args.index("--toolchain-prefix-aarch64") + 1] == "aarch64-linux-gnu"
    assert "--skip-tool" in args  # the tool is built by cargo offline, not by build_sdk.py


def test_hello_system_description_has_one_pd():
    root = ET.fromstring(system.single_pd(boards.board(boards.DEFAULT_BOARD), "hello", "x.elf"))
    pds = root.findall("protection_domain")
    assert [pd.get("name") for pd in pds] == ["hello"]
    assert pds[0].find("program_image").get("path") == "x.elf"


@pytest.fixture(scope="module")
def planner():
    require_sources("sel4", "microkit")
    return cache.Planner()


def _aarch64_elf(path) -> None:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64 and elf.header["e_machine"] == "EM_AARCH64", path


@pytest.mark.slow
@pytest.mark.sources
def test_sdk_layout(planner):
    out = planner.ensure("sdk")
    for config in sdk.CONFIGS:
        bdir = sdk.board_dir(out, boards.DEFAULT_BOARD, config)
        for name in ("sel4.elf", "loader.elf", "monitor.elf"):
            _aarch64_elf(bdir / "elf" / name)
        assert (bdir / "lib" / "libmicrokit.a").is_file()
        assert (bdir / "lib" / "microkit.ld").is_file()
        assert (bdir / "include" / "microkit.h").is_file()
        assert (bdir / "include" / "sel4" / "sel4.h").is_file()
    r = subprocess.run([out / "bin" / "microkit", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--board" in r.stdout


@pytest.mark.slow
@pytest.mark.sources
def test_hello_image_boots_and_prints_marker(planner):
    img = targets.image(planner, "hello")
    assert img.loader.is_file() and "hello" in img.markers
    _aarch64_elf(img.dir / "hello.elf")
    summary = load_checks()["hello"].run(planner)
    assert summary.startswith("marker after ")
