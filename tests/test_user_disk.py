# SPDX-License-Identifier: BSD-2-Clause
"""The user's disk: what the guest writes survives rebuilds; headless runs change nothing.

Host tests build small real FAT disks and read them back with mtools; boot tests run the
Erlang image (they skip unless its sources are stored). Every test has its own out dir
(CHRYSOPOLIS_OUT), so ./out is never touched.
"""

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
from conftest import cli

from chrysopolis import boards, config, disk, logs, qemu, shell, targets, userdisk
from chrysopolis.errors import UserError
from chrysopolis.treehash import file_hash


@pytest.fixture
def out(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRYSOPOLIS_OUT", str(tmp_path / "out"))
    return tmp_path / "out"


def read(image: Path, p: str) -> bytes | None:
    """A file's bytes on a disk image (mtools), None when it is not there."""
    r = subprocess.run(
        ["mtype", "-i", userdisk._vol(image), f"::{p}"],
        capture_output=True,
        env=disk._mtools_env(),
    )
    return r.stdout if r.returncode == 0 else None


def pristine(tmp: Path, name: str, files: dict[str, str]) -> targets.Image:
    """A target image whose pristine disk holds `files` (the loader is never booted)."""
    tree = tmp / f"{name}-tree"
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    d = disk.build_disk(tree, tmp / name / "disk.img", cluster_bytes=512).image
    return targets.Image(
        d.parent, d.parent / "loader.img", d, boards.board(boards.DEFAULT_BOARD), {}
    )


def write(image: Path, files: dict[str, str], tmp: Path) -> None:
    """Put files on a disk image in place, as the guest would."""
    extra = {}
    for i, (p, text) in enumerate(files.items()):
        src = tmp / f"w{i}" / Path(p).name
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(text)
        extra[p] = src
    userdisk.add_files(image, extra)


V1 = {
    "lib/a.beam": "A1",
    "lib/old.beam": "OLD",
    "lib/old-1.0/ebin/o.beam": "O",
    "releases/29/OTP_VERSION": "29.1\n",
}
V2 = {
    "lib/a.beam": "A2",
    "lib/new.beam": "NEW",
    "releases/29/OTP_VERSION": "29.2\n",
}


def use(img: targets.Image, target: str = "t", fresh: bool = False) -> Path:
    with userdisk.in_use(img, target, fresh=fresh) as d:
        return d


# --- host: the update logic on real disk images ------------------------------------------


def test_first_use_is_a_sparse_copy_of_the_pristine_disk(out, tmp_path):
    v1 = pristine(tmp_path, "v1", V1)
    d = use(v1)
    assert d == out / "t-disk" / "disk.img"
    assert file_hash(d) == file_hash(v1.disk)
    st = d.stat()
    assert st.st_blocks * 512 < st.st_size / 4  # holes stay holes
    state = userdisk._read_state(d.parent)
    assert state["pristine_sha256"] == file_hash(v1.disk)
    assert state["files"] == userdisk.listing(v1.disk)[0]
    assert "/lib/old-1.0/ebin/o.beam" in state["files"]


def test_user_files_survive_a_pristine_update_and_otp_files_are_replaced(out, tmp_path):
    v1 = pristine(tmp_path, "v1", V1)
    d = use(v1)
    write(
        d,
        {
            "/keep.txt": "data",
            "/lib/mine.txt": "mine, in an OTP directory",
            "/notes/deep/n.txt": "n",
            "/lib/a.beam": "edited by the guest",  # an OTP file: the new OTP's wins
        },
        tmp_path,
    )
    before = file_hash(d)
    v2 = pristine(tmp_path, "v2", V2)
    assert use(v2) == d
    assert read(d, "/keep.txt") == b"data"
    assert read(d, "/lib/mine.txt") == b"mine, in an OTP directory"
    assert read(d, "/notes/deep/n.txt") == b"n"
    assert read(d, "/lib/a.beam") == b"A2"
    assert read(d, "/lib/new.beam") == b"NEW"
    assert read(d, "/releases/29/OTP_VERSION") == b"29.2\n"
    assert read(d, "/lib/old.beam") is None
    files, dirs = userdisk.listing(d)
    assert "/lib/old-1.0" not in dirs  # the old OTP's directories go with their files
    assert files == sorted(
        [*userdisk.listing(v2.disk)[0], "/keep.txt", "/lib/mine.txt", "/notes/deep/n.txt"]
    )
    state = userdisk._read_state(d.parent)
    assert state["pristine_sha256"] == file_hash(v2.disk)
    assert state["files"] == userdisk.listing(v2.disk)[0]
    assert file_hash(d.with_name(userdisk.PREVIOUS)) == before
    st = d.stat()
    assert st.st_blocks * 512 < st.st_size / 4
    # The same pristine disk again: nothing to do, the disk is not rewritten.
    mtime = d.stat().st_mtime_ns
    use(v2)
    assert d.stat().st_mtime_ns == mtime


def test_reset_restores_the_pristine_disk(out, tmp_path):
    v1 = pristine(tmp_path, "v1", V1)
    d = use(v1)
    write(d, {"/keep.txt": "data"}, tmp_path)
    assert userdisk.reset(v1, "t") == d
    assert file_hash(d) == file_hash(v1.disk)
    assert read(d, "/keep.txt") is None
    assert read(d.with_name(userdisk.PREVIOUS), "/keep.txt") == b"data"
    # --fresh-disk is the same reset, before a boot
    write(d, {"/again.txt": "x"}, tmp_path)
    assert file_hash(use(v1, fresh=True)) == file_hash(v1.disk)


def test_an_update_that_cannot_keep_a_file_changes_nothing(out, tmp_path):
    v1 = pristine(tmp_path, "v1", V1)
    d = use(v1)
    write(d, {"/lib/new.beam": "a file where the new OTP has a directory"}, tmp_path)
    before, state = file_hash(d), userdisk._read_state(d.parent)
    v2 = {k: v for k, v in V2.items() if k != "lib/new.beam"}
    v2 = pristine(tmp_path, "v2", {**v2, "lib/new.beam/x.beam": "X"})
    with pytest.raises(UserError, match=r"chrysopolis disk reset t"):
        use(v2)
    assert file_hash(d) == before
    assert userdisk._read_state(d.parent) == state


def test_a_disk_in_use_is_not_reset_or_updated(out, tmp_path):
    v1, v2 = pristine(tmp_path, "v1", V1), pristine(tmp_path, "v2", V2)
    with userdisk.in_use(v1, "t") as d:
        before = file_hash(d)
        with pytest.raises(UserError, match="in use by another"):
            userdisk.reset(v1, "t")
        with pytest.raises(UserError, match="in use by another"):
            use(v2)
        assert use(v1) == d  # another boot of the same disk may share it
        assert file_hash(d) == before


def test_the_old_published_disk_is_adopted_with_the_guests_files(tmp_path, monkeypatch):
    monkeypatch.delenv("CHRYSOPOLIS_OUT", raising=False)
    monkeypatch.setattr(config, "ROOT", tmp_path / "checkout")
    v1, v2 = pristine(tmp_path, "v1", V1), pristine(tmp_path, "v2", V2)
    # where `run` booted the disk before user disks (./build, the output folder then)
    legacy = tmp_path / "checkout" / "build" / "t" / "disk.img"
    legacy.parent.mkdir(parents=True)
    userdisk.copy(v1.disk, legacy)
    write(legacy, {"/keep.txt": "data"}, tmp_path)
    userdisk.adopt_legacy(v2, "t")
    d = use(v2)
    assert read(d, "/keep.txt") == b"data"
    assert read(d, "/lib/a.beam") == b"A2"
    userdisk.adopt_legacy(v2, "t")  # once only: the user's disk now exists
    assert read(d, "/keep.txt") == b"data"


def test_a_disk_in_the_old_build_folder_moves_to_out(tmp_path, monkeypatch):
    """./build was the output folder before ./out: the user's disk there moves, files kept."""
    monkeypatch.delenv("CHRYSOPOLIS_OUT", raising=False)
    monkeypatch.setattr(config, "ROOT", tmp_path / "checkout")
    v1 = pristine(tmp_path, "v1", V1)
    old = tmp_path / "checkout" / "build" / "t-disk" / "disk.img"
    old.parent.mkdir(parents=True)
    userdisk.copy(v1.disk, old)
    write(old, {"/keep.txt": "data"}, tmp_path)
    userdisk.adopt_legacy(v1, "t")
    assert userdisk.path("t") == tmp_path / "checkout" / "out" / "t-disk" / "disk.img"
    assert not old.exists()
    assert read(use(v1), "/keep.txt") == b"data"


def test_modules_go_on_a_scratch_copy_of_the_users_disk(out, tmp_path):
    d = use(pristine(tmp_path, "v1", V1))
    write(d, {"/keep.txt": "data"}, tmp_path)
    before = file_hash(d)
    ebin = tmp_path / "ebin"
    ebin.mkdir()
    (ebin / "greet.beam").write_bytes(b"FOR1 not really a beam")
    (tmp_path / "scratch").mkdir()
    scratch = shell.with_modules(d, [ebin], tmp_path / "scratch" / "disk.img")
    assert read(scratch, "/keep.txt") == b"data"
    assert read(scratch, "/user/0/greet.beam") == b"FOR1 not really a beam"
    assert b"-pa\n/user/0\n" in read(scratch, shell.USER_ARGS)
    assert read(scratch, "/lib/a.beam") == b"A1"
    assert file_hash(d) == before


def test_a_target_without_a_disk_has_no_user_disk(out, tmp_path):
    img = targets.Image(
        tmp_path, tmp_path / "loader.img", None, boards.board("qemu_virt_aarch64"), {}
    )
    with userdisk.in_use(img, "hello") as d:
        assert d is None
    with pytest.raises(UserError, match="has no disk"):
        userdisk.reset(img, "hello")
    assert not out.exists()


# --- boots: the Erlang image --------------------------------------------------------------


def quit_qemu(child: pexpect.spawn) -> None:
    """Ctrl-A X, as a user leaves an interactive run; QEMU must then exit."""
    child.sendcontrol("a")
    child.send("x")
    child.expect(pexpect.EOF, timeout=30)


@pytest.fixture(scope="module")
def beam(stack_planner):
    return targets.image(stack_planner, "beam")


def evals(*exprs: str) -> list[str]:
    r = cli("run", *[a for e in exprs for a in ("--eval", e)])
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


@pytest.mark.slow
def test_a_guest_file_survives_rebuilds_and_an_otp_update(out, beam, tmp_path):
    r = cli("run", "--keep-writes", "--eval", 'file:write_file("/keep.txt", <<"data">>).')
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    d = userdisk.path("beam")
    assert read(d, "/keep.txt") == b"data"
    r = cli("build")  # republishes out/beam: rmtree + copy
    assert r.returncode == 0, r.stderr
    assert file_hash(out / "beam" / "disk.img") == file_hash(beam.disk)
    assert read(d, "/keep.txt") == b"data"
    # A new image with a different OTP tree on its disk: the user's disk is updated.
    tree = tmp_path / "otp"
    userdisk.extract(beam.disk, tree)
    (tree / "releases" / "29" / "CHANGED").write_text("only in the other image\n")
    other = disk.build_disk(tree, tmp_path / "other" / "disk.img").image
    use(dataclasses.replace(beam, disk=other), "beam")
    assert read(d, "/releases/29/CHANGED") == b"only in the other image\n"
    assert read(d, "/keep.txt") == b"data"
    # Back to this image (its pristine disk differs again): updated on the run, then booted.
    assert evals(
        'file:read_file("/keep.txt").',
        'file:read_file("/releases/29/CHANGED").',
        'file:read_file("/releases/29/OTP_VERSION").',
    ) == ['{ok,<<"data">>}', "{error,enoent}", '{ok,<<"29.1.1\\n">>}']
    assert userdisk._read_state(d.parent)["pristine_sha256"] == file_hash(beam.disk)


@pytest.mark.slow
def test_an_interactive_run_writes_to_the_users_disk(out, beam):
    child = pexpect.spawn(sys.executable, ["-m", "chrysopolis", "run"], timeout=120)
    try:
        child.expect(r"\n1> ")
        child.send('ok = file:write_file("/typed.txt", <<"typed">>).\r')
        child.expect(r"\n2> ")
        quit_qemu(child)
    finally:
        child.close(force=True)
    assert read(userdisk.path("beam"), "/typed.txt") == b"typed"
    assert cli("build").returncode == 0
    assert evals('file:read_file("/typed.txt").') == ['{ok,<<"typed">>}']


@pytest.mark.slow
def test_a_synced_write_survives_sigkill(out, beam):
    """The interactive path (the user's disk, persist=True), then QEMU killed hard."""
    log = logs.run_log("test-user-disk-sigkill")
    with userdisk.in_use(beam, "beam") as d:
        cmd = beam.command(d, persist=True)
        with qemu.boot(cmd, log) as s:
            sh = shell.Shell(s)
            sh.wait_ready()
            got = sh.eval(
                '{ok, F} = file:open("/k.txt", [write]), ok = file:write(F, <<"x">>), '
                "ok = file:sync(F)."
            )
            os.kill(s.child.pid, signal.SIGKILL)  # right after the sync returned
            t = time.monotonic()
            assert got == "ok"
            s.child.expect(pexpect.EOF, timeout=10)
        print(f"QEMU gone {1000 * (time.monotonic() - t):.0f} ms after the SIGKILL")
    assert read(d, "/k.txt") == b"x"
    assert evals('file:read_file("/k.txt").') == ['{ok,<<"x">>}']


# Sector I of file T: T, I (24 bits), then 508 bytes of one value. Every 512-byte sector of
# every file differs, so a block the FAT server's cache (docs/disk.md) served from the wrong
# place, or stale, changes the md5.
PATTERN = (
    "P = fun(T, N) -> << <<T:8, I:24, (binary:copy(<<((I * 7 + T) rem 251)>>, 508))/binary>> "
    "|| I <- lists:seq(0, N - 1) >> end."
)
# Each file is left open after its sync: the sync alone must have put it on the disk.
WRITES = [
    # a new file of 384 KiB
    'New = P(3, 768), {ok, F1} = file:open("/new.bin", [write, binary]), '
    "ok = file:write(F1, New), ok = file:sync(F1).",
    # 50000 bytes over the middle of an existing file, at an odd offset
    'Patch = binary:part(P(4, 100), 7, 50000), {ok, F2} = file:open("/old.bin", [read, write, '
    "binary]), ok = file:pwrite(F2, 70001, Patch), ok = file:sync(F2).",
    # 150000 bytes appended to an existing file of odd size
    'More = binary:part(P(5, 300), 3, 150000), {ok, F3} = file:open("/app.bin", [append, '
    "binary]), ok = file:write(F3, More), ok = file:datasync(F3).",
]
FILES = ["/new.bin", "/old.bin", "/app.bin"]


def pattern(tag: int, sectors: int) -> bytes:
    """PATTERN's P(tag, sectors), on the host."""
    return b"".join(
        bytes([tag]) + i.to_bytes(3, "big") + bytes([(i * 7 + tag) % 251]) * 508
        for i in range(sectors)
    )


def expected() -> dict[str, bytes]:
    """What FILES hold once WRITES ran on a disk with `existing()`."""
    old = bytearray(pattern(1, 512))
    old[70001 : 70001 + 50000] = pattern(4, 100)[7 : 7 + 50000]
    app = pattern(2, 40)[:20001] + pattern(5, 300)[3 : 3 + 150000]
    return {"/new.bin": pattern(3, 768), "/old.bin": bytes(old), "/app.bin": app}


def write_then(beam, tmp_path: Path, name: str, end) -> Path:
    """The user's disk with two existing files, booted once (writes persist): WRITES, then
    `end(session)` ends the machine. Returns the disk."""
    old, app = tmp_path / "old.bin", tmp_path / "app.bin"
    old.write_bytes(pattern(1, 512))
    app.write_bytes(pattern(2, 40)[:20001])
    with userdisk.in_use(beam, "beam") as d:
        userdisk.add_files(d, {"/old.bin": old, "/app.bin": app})
        with qemu.boot(beam.command(d, persist=True), logs.run_log(name)) as s:
            sh = shell.Shell(s)
            sh.wait_ready()
            sh.eval(PATTERN)
            for w in WRITES:
                assert sh.eval(w) == "ok", f"{w} (log: {s.log})"
            end(s)
    return d


def assert_read_back(beam, d: Path, name: str) -> None:
    """A new boot of the same disk reads FILES back as expected(), and so does mtools."""
    want = expected()
    md5s = {p: hashlib.md5(b).hexdigest().upper() for p, b in want.items()}
    with qemu.boot(beam.command(d), logs.run_log(name)) as s:  # a throw-away overlay
        sh = shell.Shell(s)
        sh.wait_ready()
        for i, p in enumerate(FILES):
            got = sh.eval(
                f'{{ok, B{i}}} = file:read_file("{p}"), '
                f"{{byte_size(B{i}), binary:encode_hex(erlang:md5(B{i}))}}."
            )
            assert got == f'{{{len(want[p])},<<"{md5s[p]}">>}}', f"{p} (log: {s.log})"
    for p in FILES:
        assert read(d, p) == want[p], p


@pytest.mark.slow
def test_synced_writes_survive_a_halt(out, beam, tmp_path):
    """Writes, file:sync / file:datasync, then erlang:halt(): the next boot reads them."""

    def halt(s: qemu.Session) -> None:
        s.send("erlang:halt().\r")
        assert s.wait_exit(60) == 0

    d = write_then(beam, tmp_path, "test-user-disk-sync-halt", halt)
    assert_read_back(beam, d, "test-user-disk-sync-halt-back")


@pytest.mark.slow
def test_synced_writes_survive_sigkill(out, beam, tmp_path):
    """Writes, file:sync / file:datasync, then the host kills QEMU: the next boot reads them."""

    def kill(s: qemu.Session) -> None:
        os.kill(s.child.pid, signal.SIGKILL)  # right after the last sync returned
        s.child.expect(pexpect.EOF, timeout=10)

    d = write_then(beam, tmp_path, "test-user-disk-sync-kill", kill)
    assert_read_back(beam, d, "test-user-disk-sync-kill-back")


@pytest.mark.slow
def test_headless_runs_see_the_users_files_and_change_nothing(out, beam):
    r = cli("run", "--keep-writes", "--eval", 'file:write_file("/keep.txt", <<"data">>).')
    assert r.returncode == 0, r.stderr
    d = userdisk.path("beam")
    before = file_hash(d)
    assert evals(
        'file:read_file("/keep.txt").',
        'file:write_file("/scratch.txt", <<"thrown away">>).',
        'file:read_file("/scratch.txt").',
    ) == ['{ok,<<"data">>}', "ok", '{ok,<<"thrown away">>}']
    assert file_hash(d) == before
    assert evals('file:read_file("/scratch.txt").') == ["{error,enoent}"]


@pytest.mark.slow
def test_run_path_boots_a_scratch_copy_of_the_users_disk(out, beam, tmp_path):
    r = cli("run", "--keep-writes", "--eval", 'file:write_file("/keep.txt", <<"data">>).')
    assert r.returncode == 0, r.stderr
    d = userdisk.path("beam")
    before = file_hash(d)
    mods = tmp_path / "mods"
    mods.mkdir()
    src = mods / "greet.erl"
    src.write_text("-module(greet).\n-export([hi/1]).\nhi(Name) -> {hello, Name}.\n")
    r = cli("baseline", "--eval", f'compile:file("{src}", [{{outdir, "{mods}"}}]).')
    assert r.returncode == 0 and "{ok,greet}" in r.stdout, r.stdout + r.stderr
    r = cli(
        "run",
        "--path",
        str(mods),
        "--eval",
        "greet:hi(world).",
        "--eval",
        'file:read_file("/keep.txt").',
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["{hello,world}", '{ok,<<"data">>}']
    assert file_hash(d) == before
    r = cli("run", "--keep-writes", "--path", str(mods), "--eval", "ok.")
    assert r.returncode == 2 and "drop one of the two options" in r.stderr


@pytest.mark.slow
def test_disk_reset_from_the_cli(out, beam):
    r = cli("run", "--keep-writes", "--eval", 'file:write_file("/keep.txt", <<"data">>).')
    assert r.returncode == 0, r.stderr
    r = cli("disk", "path")
    assert r.returncode == 0 and r.stdout.strip() == str(userdisk.path("beam"))
    r = cli("disk", "reset")
    assert r.returncode == 0, r.stderr
    assert file_hash(userdisk.path("beam")) == file_hash(beam.disk)
    assert evals('file:read_file("/keep.txt").') == ["{error,enoent}"]


@pytest.mark.slow
def test_run_hello_has_no_disk(out, stack_planner):
    targets.image(stack_planner, "hello")
    child = pexpect.spawn(sys.executable, ["-m", "chrysopolis", "run", "hello"], timeout=120)
    try:
        child.expect(r"hello from Chrysopolis on seL4")
        quit_qemu(child)
    finally:
        child.close(force=True)
    assert not (out / "hello-disk").exists()
    r = cli("disk", "reset", "hello")
    assert r.returncode == 1 and "boots without a disk" in r.stderr
