# SPDX-License-Identifier: BSD-2-Clause
"""`chrysopolis run --profile-boot` (chrysopolis/bootprofile.py, docs/boot.md "Boot profile").

Host tests parse the `fsstats:` lines of a real boot's console; the boot test profiles the
Erlang image (it skips unless its sources are stored).
"""

import re

import pytest
from conftest import cli, require_sources

from chrysopolis import bootprofile, image
from chrysopolis.errors import UsageError, UserError

# The console of a real profiled boot of `beam` (fs_stats on, the FAT server's block cache
# in), from its `1> ` on: ERTS read stdin when the line was typed, so fs_stats printed.
CAPTURED = (
    b"1> fsstats: openat 281 calls 1568236 us 0 bytes\r\r\n"
    b"fsstats: newfstatat 30 calls 34328 us 0 bytes\r\r\n"
    b"fsstats: fstat 266 calls 168714 us 0 bytes\r\r\n"
    b"fsstats: read 0 calls 0 us 0 bytes\r\r\n"
    b"fsstats: pread64 0 calls 0 us 0 bytes\r\r\n"
    b"fsstats: lseek 0 calls 0 us 0 bytes\r\r\n"
    b"fsstats: close 267 calls 197109 us 0 bytes\r\r\n"
    b"fsstats: write 0 calls 0 us 0 bytes\r\r\n"
    b"fsstats: pwrite64 0 calls 0 us 0 bytes\r\r\n"
    b"fsstats: readv 266 calls 1267197 us 13491011 bytes\r\r\n"
    b"fsstats: other 0 calls 0 us 0 bytes\r\r\n"
    b"fsstats: beam 264 files 1067 calls 3187965 us\r\r\n"
    b"fsstats: total 1110 calls 3235586 us, lock wait 574 us, first 6622 ms, last 10418 ms\r\r\n"
    b"ok.\r\nok\r\n2> "
)


def test_the_fsstats_lines_of_a_real_boot_parse():
    fs = bootprofile.parse(CAPTURED.decode())
    assert fs.calls["openat"] == (281, 1568236, 0)
    assert fs.calls["readv"] == (266, 1267197, 13491011)
    assert len(fs.calls) == 11
    assert (fs.count, fs.us, fs.lock_wait_us) == (1110, 3235586, 574)
    assert (fs.beam_files, fs.beam_calls, fs.beam_us) == (264, 1067, 3187965)
    # the per-call lines add up to the total (each rounded down to whole us)
    assert sum(c for c, _, _ in fs.calls.values()) == fs.count
    assert 0 <= fs.us - sum(us for _, us, _ in fs.calls.values()) < len(fs.calls)


def test_a_console_without_fsstats_names_the_option():
    with pytest.raises(UserError, match="stage option fs_stats"):
        bootprofile.parse("Eshell V17.1\r\n1> ")
    no_beam = b"\n".join(ln for ln in CAPTURED.split(b"\n") if b"beam " not in ln)
    with pytest.raises(UserError, match="fs_stats"):
        bootprofile.parse(no_beam.decode())


def test_the_rows_add_up():
    fs = bootprofile.parse(CAPTURED.decode())
    p = bootprofile.Profile(0.1, 0.11, 0.4, 0.5, 4.5, fs)
    rows = {what.strip(): ms for what, ms, _ in p.rows()}
    assert rows["Microkit loader + seL4 + monitor"] == pytest.approx(400)
    assert rows["ERTS start (hand-off -> first 1> prompt)"] == pytest.approx(4000)
    assert rows["file-system calls"] == pytest.approx(3235.586)
    assert rows["the rest (ERTS's own CPU)"] == pytest.approx(4000 - 3235.586)
    assert "264 .beam files, 1067 calls" in p.table()


def test_a_target_without_fs_stats_is_refused():
    with pytest.raises(UsageError, match="profile one of beam"):
        bootprofile.require("hello")
    r = cli("run", "hello", "--profile-boot")
    assert r.returncode == 2 and "profile one of beam" in r.stderr, r.stderr
    r = cli("run", "--profile-boot", "--eval", "1.")
    assert r.returncode == 2 and "drop --eval" in r.stderr, r.stderr
    r = cli("run", "--profile-boot", "--shell", "iex")
    assert r.returncode == 2 and "drop --shell" in r.stderr, r.stderr


ROW = re.compile(r"(\S.*?)\s+(-?\d+)(?:  (.*))?")


@pytest.mark.slow
def test_run_profile_boot_prints_where_the_time_goes():
    require_sources(*image.NEEDS)
    r = cli("run", "--profile-boot")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("boot profile of beam (serial log: ")
    rows = {}
    for line in lines[2:-1]:
        m = ROW.fullmatch(line.strip())
        assert m, line
        rows[m[1]] = (int(m[2]), m[3] or "")
    ms = {k: v for k, (v, _) in rows.items()}
    assert list(ms) == [
        "Microkit loader + seL4 + monitor",
        "loader (QEMU start -> jumping to kernel)",
        "seL4 boot (-> dropped to user space)",
        "monitor: PDs made (-> system invocations done)",
        "beam_server init (-> Handing off to ERTS)",
        "ERTS start (hand-off -> first 1> prompt)",
        "file-system calls",
        "module loading",
        "the rest (ERTS's own CPU)",
        "total (QEMU start -> first 1> prompt)",
    ], r.stdout
    assert all(v > 0 for v in ms.values()), r.stdout
    parts = ["loader (QEMU start -> jumping to kernel)", "seL4 boot (-> dropped to user space)"]
    parts.append("monitor: PDs made (-> system invocations done)")
    # each shown rounded to whole ms: sums within a ms per part
    assert abs(sum(ms[p] for p in parts) - ms["Microkit loader + seL4 + monitor"]) <= 3
    erts = ms["ERTS start (hand-off -> first 1> prompt)"]
    assert abs(ms["file-system calls"] + ms["the rest (ERTS's own CPU)"] - erts) <= 2
    top = ["Microkit loader + seL4 + monitor", "beam_server init (-> Handing off to ERTS)"]
    total = sum(ms[p] for p in top) + erts
    assert abs(total - ms["total (QEMU start -> first 1> prompt)"]) <= 3
    assert ms["module loading"] <= ms["file-system calls"]
    files = re.fullmatch(r"(\d+) \.beam files, (\d+) calls", rows["module loading"][1])
    # interactive mode: about 90 modules at boot (embedded mode loaded 264)
    assert files and 50 < int(files[1]) <= int(files[2]), rows["module loading"]
    calls = re.fullmatch(r"(\d+) calls", rows["file-system calls"][1])
    assert calls and int(calls[1]) >= int(files[2])
