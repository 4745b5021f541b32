# SPDX-License-Identifier: BSD-2-Clause
"""The bring-up image boots on the LionsOS stack (needs the GitHub-hosted sources)."""

import re

import pytest

from chrysopolis import checks, logs, qemu, targets
from chrysopolis.errors import UserError
from chrysopolis.targets import bringup


@pytest.fixture(scope="module")
def planner(stack_planner):
    return stack_planner


@pytest.mark.slow
def test_bringup_smoke(planner):
    summary = checks.load_all()["bringup-smoke"].run(planner)
    assert re.match(r"mounted after [\d.]+ s, clock [\d.]+ -> [\d.]+ s, echo ok", summary)
    log = logs.latest("bringup-smoke").read_text()
    assert bringup.HELLO_TEXT.strip() in log
    assert checks.fatal_line(log.encode()) is None


@pytest.mark.slow
def test_bringup_disk_without_fat_gives_mount_error(planner):
    summary = checks.load_all()["bringup-baddisk"].run(planner)
    assert "cannot mount the FAT volume: the file server refused it" in summary


@pytest.mark.slow
def test_image_layout(planner):
    img = targets.image(planner, "bringup")
    assert img.loader.name == "sel4-bringup.img" and img.loader.stat().st_size > 1 << 20
    assert img.disk is not None
    with open(img.disk, "rb") as f:
        assert f.read(512)[510:512] == b"\x55\xaa"
    system = (img.dir / "chrysopolis.system").read_text()
    assert 'setvar_vaddr="beam_heap_base"' in system


def test_missing_disk_file_is_refused(tmp_path):
    from chrysopolis import boards

    with pytest.raises(UserError, match="disk image .* does not exist"):
        qemu.command(
            boards.board("qemu_virt_aarch64"), tmp_path / "l.img", tmp_path / "nope.img", disk_bus=1
        )
