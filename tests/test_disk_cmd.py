# SPDX-License-Identifier: BSD-2-Clause
"""`chrysopolis disk ls|get|put`: files in and out of the user's disk, as a user runs them.

Each test makes a real user's disk for `beam` in its own out dir (CHRYSOPOLIS_OUT) from a
small pristine disk (userdisk.in_use writes state.json as a first run does), runs the
command, and reads the disk back with mtools. Nothing boots and nothing is built.
"""

import os
from pathlib import Path

import pytest
from conftest import cli
from test_user_disk import pristine, read

from chrysopolis import userdisk
from chrysopolis.treehash import file_hash

OTP = {
    "lib/kernel-10.0/ebin/kernel.app": "{application, kernel, []}.\n",
    "releases/29/OTP_VERSION": "29.1.1\n",
    "bin/start.boot": "boot",
    "etc/inetrc": "{lookup, [file, dns]}.\n",
}


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The user's disk of `beam` (made from a small pristine disk) and a host work dir."""
    monkeypatch.setenv("CHRYSOPOLIS_OUT", str(tmp_path / "out"))
    img = pristine(tmp_path, "v1", OTP)
    with userdisk.in_use(img, "beam") as d:
        pass
    host = tmp_path / "host"
    host.mkdir()
    return img, d, host


def ok(*args, cwd=None) -> str:
    r = cli("disk", *args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def refused(*args, cwd=None) -> str:
    """The command fails with one line on stderr; that line."""
    r = cli("disk", *args, cwd=cwd)
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


BLOB = os.urandom(70_000) + b"\0\xff" * 3000  # several clusters, every byte value


def test_put_ls_get_round_trip(user):
    _img, d, host = user
    tree(host, {"notes.txt": b"hello\n", "app/data/blob.bin": BLOB, "app/My Config.cfg": b"x=1"})
    (host / "app" / "empty").mkdir()
    assert "-> beam:/notes.txt" in ok("put", str(host / "notes.txt"))
    assert "-> beam:/data/app" in ok("put", str(host / "app"), "/data/")
    assert read(d, "/notes.txt") == b"hello\n"
    assert read(d, "/data/app/data/blob.bin") == BLOB

    top = ok("ls").splitlines()
    assert [ln.split(None, 1) for ln in top if "notes" in ln] == [["6", "/notes.txt"]]
    assert "/data/" in [ln.strip() for ln in top]
    assert "/lib/" in [ln.strip() for ln in top]
    assert not any("/data/app" in ln for ln in top)  # not recursive without -r
    deep = [ln.split(None, 1) for ln in ok("ls", "-r", "/data").splitlines()]
    assert deep == [
        ["/data/app/"],
        ["3", "/data/app/My Config.cfg"],
        ["/data/app/data/"],
        [str(len(BLOB)), "/data/app/data/blob.bin"],
        ["/data/app/empty/"],
    ]
    assert ok("ls", "/DATA/APP/data/BLOB.BIN").split() == [
        str(len(BLOB)),
        "/data/app/data/blob.bin",
    ]

    back = host / "back"
    back.mkdir()
    ok("get", "/data/app", cwd=back)  # default: ./app
    assert (back / "app" / "data" / "blob.bin").read_bytes() == BLOB
    assert (back / "app" / "My Config.cfg").read_bytes() == b"x=1"
    assert (back / "app" / "empty").is_dir()
    ok("get", "/notes.txt", str(back / "n.txt"))
    assert (back / "n.txt").read_bytes() == b"hello\n"
    ok("get", "/lib/kernel-10.0/ebin/kernel.app", str(back))  # into a host directory
    assert (back / "kernel.app").read_text() == OTP["lib/kernel-10.0/ebin/kernel.app"]


def test_get_does_not_overwrite_without_force(user):
    _img, d, host = user
    ok("put", str(tree(host, {"a.txt": b"guest"}) / "a.txt"))
    (host / "a.txt").write_bytes(b"mine")
    line = refused("get", "/a.txt", cwd=host)
    assert "a.txt exists" in line and "--force" in line
    assert (host / "a.txt").read_bytes() == b"mine"
    assert not [p for p in host.iterdir() if p.name.startswith(".disk-get")]
    ok("get", "/a.txt", "--force", cwd=host)
    assert (host / "a.txt").read_bytes() == b"guest"


def test_put_into_the_otp_tree_is_refused_and_changes_nothing(user):
    _img, d, host = user
    f = tree(host, {"x.beam": b"mine", "inetrc": b"{lookup, []}.\n"})
    before = file_hash(d)
    for args, name in (
        (["x.beam", "/lib/kernel-10.0/ebin/"], "/lib/kernel-10.0/ebin/x.beam"),
        (["x.beam", "/releases/x.beam"], "/releases/x.beam"),
        (["x.beam", "/bin/"], "/bin/x.beam"),
        (["x.beam", "/erts-17.1/x.beam"], "/erts-17.1/x.beam"),
        (["inetrc", "/etc/"], "/etc/inetrc"),  # a file state.json lists as the image's
    ):
        line = refused("put", str(f / args[0]), args[1])
        assert line.startswith(f"error: {name} belongs to the image"), line
    assert file_hash(d) == before
    ok("put", str(f / "x.beam"), "/etc/mine.beam")  # a new file beside them is the user's
    assert read(d, "/etc/mine.beam") == b"mine"
    assert read(d, "/etc/inetrc") == OTP["etc/inetrc"].encode()


def test_put_refuses_fat_names_and_overwrites_only_with_force(user):
    _img, d, host = user
    f = tree(host, {"bad:name.txt": b"1", "ok.txt": b"2", "ok2.txt": b"3"})
    before = file_hash(d)
    assert "cannot be stored on a FAT volume" in refused("put", str(f / "bad:name.txt"))
    assert file_hash(d) == before
    ok("put", str(f / "ok.txt"))
    line = refused("put", str(f / "ok2.txt"), "/OK.TXT")
    assert "/ok.txt is already on the disk" in line and "--force" in line
    assert read(d, "/ok.txt") == b"2"
    ok("put", "--force", str(f / "ok2.txt"), "/ok.txt")
    assert read(d, "/ok.txt") == b"3"


def test_missing_paths_and_a_missing_disk_are_one_line(user, tmp_path):
    _img, d, host = user
    assert "`chrysopolis disk ls /`" in refused("ls", "/nope")
    assert "`chrysopolis disk ls /`" in refused("get", "/nope/x.txt", cwd=host)
    assert not list(host.iterdir())
    assert "absent.txt on the host" in refused("put", str(host / "absent.txt"))
    line = refused("ls", "--target", "selftest")
    assert line == (
        "error: no disk yet for selftest: run `chrysopolis run selftest` once "
        "(or `chrysopolis disk reset selftest`)"
    )


def test_put_is_refused_while_a_run_holds_the_disk_and_reads_are_not(user):
    img, d, host = user
    f = tree(host, {"a.txt": b"a"})
    before = file_hash(d)
    with userdisk.in_use(img, "beam"):  # what a running `chrysopolis run` holds
        line = refused("put", str(f / "a.txt"))
        assert "in use by another, running `chrysopolis run`" in line and "quit it" in line
        assert "/etc/" in ok("ls").split()  # reading beside a run is fine
        ok("get", "/etc/inetrc", cwd=host)
    assert file_hash(d) == before
    ok("put", str(f / "a.txt"))
    assert read(d, "/a.txt") == b"a"
