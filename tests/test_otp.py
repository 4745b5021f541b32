# SPDX-License-Identifier: BSD-2-Clause
"""The `otp` stage: Debian's OTP 29.1.1 .beam files laid out for the disk, versions checked."""

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from chrysopolis import disk, erlterm, lock, sources
from chrysopolis.errors import UserError
from chrysopolis.stages import otp

BOOTED = ("kernel", "stdlib", "compiler", "sasl")


@pytest.fixture(scope="module")
def inputs():
    """The pinned .debs and OTP source (fetched from Debian's archive if the store lacks them)."""
    lk = lock.load()
    return sources.fetch(lk.source("otp-debs")), sources.fetch(lk.source("otp"))


@pytest.fixture(scope="module")
def tree(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("otp") / "root"
    manifest = otp.make_tree(*inputs, out)
    return out, manifest


def test_tree_has_the_booted_apps_and_boot_scripts(tree):
    root, manifest = tree
    assert manifest["otp_version"] == "29.1.1"
    assert manifest["apps"]["kernel"] == "11.0.4" and manifest["apps"]["erts"] == "17.1"
    for app in BOOTED:
        ebin = root / "lib" / f"{app}-{manifest['apps'][app]}" / "ebin"
        assert (ebin / f"{app}.app").is_file()
        assert len(list(ebin.glob("*.beam"))) > 10
        assert all(b.read_bytes()[:4] == b"FOR1" for b in ebin.glob("*.beam"))  # BEAM containers
    for rel in ("releases/29/start.boot", "releases/29/start_clean.boot", "bin/start.boot"):
        assert (root / rel).read_bytes()[:1] == b"\x83"
    # What an Eshell, re, zlib, compile:forms, rand, ets and file need is on the disk.
    have = {p.stem for p in root.glob("lib/*/ebin/*.beam")}
    assert {
        "shell",
        "edlin",
        "user_drv",
        "prim_tty",
        "re",
        "zlib",
        "compile",
        "rand",
        "ets",
        "file",
    } <= have


def test_no_native_executables_on_the_disk(tree):
    root, _ = tree
    for p in root.rglob("*"):
        if p.is_file():
            head = p.read_bytes()[:4]
            assert head != b"\x7fELF" and head[:2] != b"#!", p  # no Linux binaries, no scripts


def test_start_boot_loads_compiler_and_every_module_exists(tree):
    root, manifest = tree
    boot = root / "releases/29/start.boot"
    _, _, instrs = erlterm.etf_decode(boot.read_bytes())
    loaded = [
        i[1][2][0][1] for i in instrs if i[0] == "apply" and i[1][:2] == ("application", "load")
    ]
    started = [
        i[1][2][0] for i in instrs if i[0] == "apply" and i[1][:2] == ("application", "start_boot")
    ]
    assert loaded == ["stdlib", "compiler"] and started == ["kernel", "stdlib"]
    assert all(p.startswith("$ROOT/lib/") for i in instrs if i[0] == "path" for p in i[1])
    assert otp.check_boot(root, boot) == manifest["boot_module_loads"]["start.boot"]
    assert (
        manifest["boot_module_loads"]["start.boot"]
        > manifest["boot_module_loads"]["start_clean.boot"]
    )
    text = (root / "releases/29/start.script").read_text()
    assert '{path,["$ROOT/lib/compiler-10.0.6/ebin"]}' in text


def test_boot_codec_and_app_loading_match_systools(inputs):
    """Debian's boot files re-encode byte for byte, and adding sasl as we add compiler gives
    exactly Debian's start_sasl script (less sasl's start): our layout is systools' layout."""
    rel = inputs[0] / otp.DEB_ROOT / "releases/29"
    for name in ("start_clean.boot", "start_sasl.boot", "no_dot_erlang.boot"):
        data = (rel / name).read_bytes()
        assert erlterm.etf_encode(erlterm.etf_decode(data)) == data
    clean = erlterm.etf_decode((rel / "start_clean.boot").read_bytes())
    spec = erlterm.app_spec(inputs[0] / otp.DEB_ROOT / "lib/sasl-4.4/ebin/sasl.app")[2]
    ours = otp.add_loaded_app(clean, "sasl-4.4", spec)
    sasl = erlterm.etf_decode((rel / "start_sasl.boot").read_bytes())
    start = (
        erlterm.Atom("apply"),
        (
            erlterm.Atom("application"),
            erlterm.Atom("start_boot"),
            [erlterm.Atom("sasl"), erlterm.Atom("permanent")],
        ),
    )
    assert erlterm.etf_encode(
        (sasl[0], sasl[1], [i for i in sasl[2] if i != start])
    ) == erlterm.etf_encode(ours)


def fake_otp(tmp: Path, src_vsn: dict[str, str], beam_vsn: dict[str, str]) -> tuple[Path, Path]:
    src, root = tmp / "src", tmp / "install"
    for app, vsn in src_vsn.items():
        mk = src / "erts" / "vsn.mk" if app == "erts" else src / "lib" / app / "vsn.mk"
        mk.parent.mkdir(parents=True, exist_ok=True)
        key = "VSN" if app == "erts" else f"{app.upper()}_VSN"
        mk.write_text(f"# generated\n{key} = {vsn}\n")
    for app, vsn in beam_vsn.items():
        ebin = root / "lib" / f"{app}-{vsn}" / "ebin"
        ebin.mkdir(parents=True)
        (ebin / f"{app}.app").write_text(
            f'{{application, {app},\n [{{vsn, "{vsn}"}}, {{modules, []}}]}}.\n'
        )
    return src, root


VERSIONS = {
    "kernel": "11.0.4",
    "stdlib": "8.1",
    "compiler": "10.0.6",
    "sasl": "4.4",
    "erts": "17.1",
    "inets": "9.8",
}


def test_version_check_accepts_a_matching_tree(tmp_path):
    src, root = fake_otp(tmp_path, VERSIONS, VERSIONS)
    assert otp.check_versions(src, root) == VERSIONS


def test_version_check_refuses_a_mismatch_naming_it(tmp_path):
    src, root = fake_otp(tmp_path, {**VERSIONS, "stdlib": "8.0", "erts": "17.0"}, VERSIONS)
    with pytest.raises(UserError) as e:
        otp.check_versions(src, root)
    msg = str(e.value)
    assert "stdlib: .beam files are 8.1" in msg and "source says 8.0" in msg
    assert "erts: .beam files are 17.1" in msg and "kernel" not in msg.split(":", 1)[1]


def test_version_check_refuses_a_missing_app(tmp_path):
    beams = {k: v for k, v in VERSIONS.items() if k != "compiler"}
    src, root = fake_otp(tmp_path, VERSIONS, beams)
    with pytest.raises(UserError, match="compiler: not in"):
        otp.check_versions(src, root)


def test_otp_tree_fits_on_a_disk_and_reads_back(tree, tmp_path):
    root, _ = tree
    info = disk.build_disk(root, tmp_path / "otp.img")
    assert info.files == sum(1 for p in root.rglob("*") if p.is_file())
    off = disk.partition_offset(info.image)
    r = subprocess.run(
        ["mtype", "-i", f"{info.image}@@{off}", "::/releases/29/start.boot"],
        capture_output=True,
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    assert r.stdout == (root / "releases/29/start.boot").read_bytes()


@pytest.fixture(scope="module")
def host_root(inputs, tree, tmp_path_factory):
    """A chroot whose / is the disk tree, plus erlang-base's amd64 emulator (in /emu, as seL4's
    image has its emulator outside the disk) and the forky libraries it links."""
    if platform.machine() != "x86_64" or os.geteuid() != 0:
        pytest.skip("booting the tree in a chroot needs root on x86_64")
    runtime = sources.fetch(lock.load().source("otp-host-runtime"))
    ch = tmp_path_factory.mktemp("host") / "root"
    shutil.copytree(tree[0], ch)
    shutil.copytree(runtime / "usr", ch / "usr", symlinks=True)
    (ch / "lib64").symlink_to("usr/lib64")
    (ch / "emu").mkdir()
    for exe in ("beam.smp", "erl_child_setup"):
        shutil.copy2(inputs[0] / otp.DEB_ROOT / "erts-17.1/bin" / exe, ch / "emu" / exe)
    (ch / "dev").mkdir()
    try:
        os.mknod(ch / "dev/null", 0o20666, os.makedev(1, 3))  # ERTS reopens /dev/null at start
        open(ch / "dev/null", "w").close()
    except OSError as e:
        pytest.skip(f"cannot make /dev/null in the chroot: {e}")
    return ch


def boot(ch: Path, *init_args: str, stdin: str = "", boot: str = "/releases/29/start") -> str:
    """Start the emulator the way beam_server does: -root /, our boot script, embedded mode."""
    env = {
        "BINDIR": "/emu",
        "ROOTDIR": "/",
        "EMU": "beam",
        "PROGNAME": "erl",
        "HOME": "/",
        "TERM": "dumb",
    }
    # A dotted hostname (as beam_server's uname gives) keeps kernel from spawning inet_gethost.
    cmd = [
        "unshare",
        "--uts",
        "sh",
        "-c",
        'hostname chrysopolis.local && exec "$@"',
        "sh",
        shutil.which("chroot") or "/usr/sbin/chroot",
        str(ch),
        "/emu/beam.smp",
        "-Bd",
        "--",
        "-root",
        "/",
        "-bindir",
        "/emu",
        "-progname",
        "erl",
        "--",
        "-home",
        "/",
        "-boot",
        boot,
        "-mode",
        "embedded",
        *init_args,
    ]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=60)
    return r.stdout + r.stderr


WORKLOAD = """io:format("~p~n", [[
 re:run("hello world", "w(o)r", [{capture, all_but_first, list}]),
 zlib:uncompress(zlib:compress(<<"abc">>)),
 begin {ok, M, B} = compile:forms([{attribute,1,module,m}, {attribute,2,export,[{f,0}]},
                                   {function,3,f,0,[{clause,3,[],[],[{integer,3,42}]}]}]),
       {module, m} = code:load_binary(M, "m.beam", B), m:f() end,
 is_float(rand:uniform()),
 begin T = ets:new(t, []), ets:insert(T, {a, 1}), ets:lookup(T, a) end,
 file:read_file("/releases/29/OTP_VERSION"),
 code:which(lists),
 begin {ok, [S]} = file:consult("/releases/29/start.script"),
       {ok, Boot} = file:read_file("/releases/29/start.boot"), S =:= binary_to_term(Boot) end]]),
 halt()."""


def test_tree_boots_an_eshell_with_root_slash(host_root):
    out = boot(host_root, stdin="1 + 1.\nlists:seq(1, 5).\nhalt().\n")
    assert "Eshell V17.1" in out and "1> 2\n" in out and "2> [1,2,3,4,5]" in out, out


def test_tree_runs_re_zlib_compile_rand_ets_file(host_root):
    out = boot(host_root, "-noshell", "-eval", WORKLOAD)
    assert (
        '[{match,["o"]},<<"abc">>,42,true,[{a,1}],{ok,<<"29.1.1\\n">>},'
        '"/lib/stdlib-8.1/ebin/lists.beam",true]'
    ) in "".join(out.split()), out
    # Debian's own boot script lacks the compiler, which embedded mode then cannot load.
    assert "Failed to eval" in boot(
        host_root, "-noshell", "-eval", WORKLOAD, boot="/releases/29/start_clean"
    )


def test_inetrc_resolves_without_inet_gethost(host_root):
    """The tree's /etc/inetrc (read through `-kernel inetrc`, as beam_server passes it) makes
    the resolver use the hosts file and DNS: localhost resolves, an unknown name fails
    cleanly, and nothing asks for the inet_gethost port program, which a PD cannot spawn."""
    expr = (
        'io:format("~p~n", [{inet_db:res_option(lookup), inet:getaddr("localhost", inet), '
        'inet:getaddr("no-such-host.invalid", inet)}]), halt().'
    )
    out = boot(host_root, "-kernel", "inetrc", "'/etc/inetrc'", "-noshell", "-eval", expr)
    assert "{[file,dns],{ok,{127,0,0,1}},{error,nxdomain}}" in "".join(out.split()), out
    assert "inet_gethost" not in out, out
