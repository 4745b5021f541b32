# SPDX-License-Identifier: BSD-2-Clause
"""Target `beam`, the Erlang image: beam_server = runtime adapter + ERTS, OTP on the FAT disk.

Its C: the runtime (PD base + POSIX adapter) and targets/beam/main.c, which starts ERTS.
Its topology: the LionsOS stack of chrysopolis/system.py. `chrysopolis build` (this
target) writes `sel4-beam.img` and `disk.img`. Its checks boot it: `boot-smoke` (the markers in order, no error line), `shell-smoke` (the
README's session) and `shell-deep` (processes, ETS, binaries, re, zlib, floats, files,
timers, the compiler, entropy across boots), `shell-edit` (OTP's line editor driven by
keystrokes on a narrow terminal), `net-up` (eth0 gets its DHCP address from QEMU's user
network while the shell still works; getifaddrs, the host name, FIONREAD), `tcp-smoke`
(gen_tcp both ways, 10 MB md5-equal) and `net-bad` (gen_tcp's errors: refused, in use,
timeout, a peer closing or resetting mid-transfer), `udp-smoke` (gen_udp on 127.0.0.1, and
host -> guest through a udp hostfwd), `net-many` (700 short connections, nothing leaks),
`net-lan` (two nodes on one virtual LAN, gen_tcp and gen_udp both ways), `http-demo`
(inets: httpd and httpc with the host).
"""

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chrysopolis import boards, config, disk, image, logs, qemu, targets
from chrysopolis.cache import Context, Planner, stage
from chrysopolis.checks import check, clean_log
from chrysopolis.errors import UserError
from chrysopolis.shell import Shell, booted, with_modules
from chrysopolis.stages import elixir, erlang_app
from chrysopolis.stages.erts import LIBGCC_DIR

MAIN = "targets/beam/main.c"

MARKERS = {
    **image.BANNER_MARKERS,
    "handoff": r"Handing off to ERTS core loop\.\.\.",
    "erlang": r"Erlang/OTP 29[^\r\n]*",
    "eshell": r"Eshell V(\d+(?:\.\d+)+) ",
}
# netd's line when DHCP has bound eth0 (runtime/net/netstack.c). QEMU's user network with
# restrict=on offers no router, hence gw 0.0.0.0 (libslirp leaves the option out).
NET_LINE = r"net: eth0 (\d+\.\d+\.\d+\.\d+)/(\d+) gw (\d+\.\d+\.\d+\.\d+) \(dhcp\)"
NET_ADDRESS = ("10.0.2.15", "24")  # what QEMU's user network leases first
NET_BOUND = 20.0  # seconds from the banner to the address: DHCP takes well under one here

# The syscalls left unanswered on purpose, each with its reason. Any other unimplemented
# syscall on the console fails every check of the image.
UNANSWERED_SYSCALLS: dict[int, str] = {}


def heap_written_defines(board: str, ram: str) -> dict[str, str]:
    """memory.c's HEAP_WRITTEN_OFFSET/BYTES (boards.heap_written), if the board has them."""
    b = boards.board(board)
    written = boards.heap_written(b, boards.ram_mib(b, ram))
    if written is None:
        return {}
    return {"HEAP_WRITTEN_OFFSET": hex(written[0]), "HEAP_WRITTEN_BYTES": hex(written[1])}


def erts_archives(erts: Path) -> list[Path]:
    link = json.loads((erts / "link.json").read_text())
    return [erts / a for a in link["archives"]]


@stage(
    "beam",
    sources=image.SOURCES,
    deps=(*image.DEPS, "erts", "otp", "erlang-app", "elixir"),
    files=(*image.FILES, MAIN),
    host=(*image.HOST, "gcc-aarch64-linux-gnu"),
    options={
        "board": boards.DEFAULT_BOARD,
        "ram": boards.board(boards.DEFAULT_BOARD).ram,
        "heap_mib": "rest",  # all the RAM the other PDs leave (image.HEAP_REST)
        "stack_kib": 256,
        "cothread_stack": 0x100000,
        # Below a 256 MiB heap (runtime/pd/pd.c): ERTS's threads use at most ~34 KiB.
        "cothread_stack_small": 0x40000,
        # Count and time file system calls; print `fsstats:` lines at the first line typed.
        "fs_stats": False,
        # Tests only: "NAME:DELAY_MS[,...]" compiles fault injection into the supervisor,
        # which crashes NAME DELAY_MS after boot (chrysopolis/system.py parse_inject).
        "fault_inject": False,
        # Restart policies other than the default (permanent, 3 in 5000 ms, stop), as
        # "NAME:RESTART:INTENSITY:PERIOD_MS:ON_GIVEUP[,...]" (system.parse_policies).
        "supervision": "",
    },
    target=True,
    shell=True,
)
def beam(ctx: Context) -> None:
    """The Erlang image: ERTS 29 in beam_server on seL4, OTP on a FAT disk (sel4-beam.img)."""
    board = ctx.options["board"]
    srcs = [*image.runtime_sources(ctx, posix=True, net=True), ctx.ours(MAIN)]
    # ERTS's archives depend on each other and on libgcc (128-bit division): one group.
    libs = [*erts_archives(ctx.dep("erts")), image.lwip_lib(ctx), LIBGCC_DIR / "libgcc.a"]
    image.compile_client(
        ctx,
        srcs,
        board,
        extra_libs=libs,
        defines={
            "COTHREAD_STACK_SIZE": hex(ctx.options["cothread_stack"]),
            "COTHREAD_STACK_SIZE_SMALL": hex(ctx.options["cothread_stack_small"]),
            **({"CHRYSOPOLIS_FS_STATS": "1"} if ctx.options["fs_stats"] else {}),
            **heap_written_defines(board, ctx.options["ram"]),
        },
        # lwIP's sys_now: runtime/net/netstack.c's, not lib_sddf_lwip's protected call; ERTS's
        # crash dump: main.c learns an out-of-memory end from its slogan.
        ldflags=[
            *image.POSIX_LINK_FLAGS,
            "--wrap=sys_now",
            "--wrap=erl_crash_dump_v",
            "-u",
            "erl_start",
        ],
    )
    image.assemble(
        ctx,
        "sel4-beam",
        board,
        ram=ctx.options["ram"],
        heap_mib=ctx.options["heap_mib"],
        stack_kib=ctx.options["stack_kib"],
        disk_tree=ctx.dep("otp") / "root",
        disk_extra={
            f"/lib/{erlang_app.LIB}": ctx.dep("erlang-app") / "lib" / erlang_app.LIB,
            **erlang_app.boot_files(ctx.dep("erlang-app")),
            **elixir.lib_dirs(ctx.dep("elixir")),
        },
        markers=MARKERS,
        fault_inject=ctx.options["fault_inject"],
        policies=ctx.options["supervision"],
    )


NEEDS = image.NEEDS

# (expression, regex its printed result must match in full)
SHELL_SMOKE = [
    ("1 + 1.", r"2"),
    ('io:format("Hello from seL4!~n").', r"Hello from seL4!\nok"),
    ("lists:seq(1, 5).", r"\[1,2,3,4,5\]"),
]
SHELL_DEEP = [
    # processes: spawn/receive, a linked crash trapped, a crash that leaves the shell alone
    (
        "Self = self(), P = spawn(fun() -> receive {ping, F} -> F ! pong end end), P ! {ping, Self}, "
        "receive pong -> pong after 5000 -> timeout end.",
        r"pong",
    ),
    (
        "process_flag(trap_exit, true), L = spawn_link(fun() -> exit(boom) end), "
        "receive {'EXIT', L, R} -> R after 5000 -> timeout end.",
        r"boom",
    ),
    ("spawn(fun() -> 1 = 2 end), timer:sleep(100), alive.", r"(?s).*alive"),
    (
        "undefined_module:call().",
        r"\*\* exception error: undefined function undefined_module:call/0",
    ),
    ("after_error.", r"after_error"),
    # ETS, maps, binaries and bit syntax
    (
        "T = ets:new(t, [set]), ets:insert(T, [{N, N * N} || N <- lists:seq(1, 1000)]), "
        "{ets:info(T, size), ets:lookup(T, 12)}.",
        r"\{1000,\[\{12,144\}\]\}",
    ),
    (
        "M = maps:from_list([{K, K + 1} || K <- lists:seq(1, 100)]), {maps:size(M), maps:get(50, M)}.",
        r"\{100,51\}",
    ),
    (
        '<<A:4, B:12, Rest/binary>> = <<16#ABCD:16, "tail">>, {A, B, Rest}.',
        r'\{10,3021,<<"tail">>\}',
    ),
    # re, zlib, floats
    (
        're:run("seL4 beam 2026", "([a-zA-Z]+)([0-9])", [{capture, all_but_first, list}]).',
        r'\{match,\["seL","4"\]\}',
    ),
    (
        'Z = zlib:compress(binary:copy(<<"chrysopolis">>, 100)), '
        '{byte_size(Z) < 100, zlib:uncompress(Z) =:= binary:copy(<<"chrysopolis">>, 100)}.',
        r"\{true,true\}",
    ),
    (
        "{math:sqrt(2.0), 1.0e10 / 3, float_to_list(math:pi(), [{decimals, 6}])}.",
        r'\{1\.4142135623730951,3333333333\.3333335,"3\.141593"\}',
    ),
    # a file on the disk
    ('{ok, Bytes} = file:read_file("/releases/29/OTP_VERSION"), Bytes.', r'<<"29\.1\.1\\n">>'),
    # timers against the monotonic clock (bounds checked in shell_deep)
    (
        SLEEP := "T0 = erlang:monotonic_time(millisecond), timer:sleep(200), "
        "erlang:monotonic_time(millisecond) - T0.",
        r"(\d+)",
    ),
    # the compiler: forms in, a loaded module out
    (
        "{ok, Mod, Bin} = compile:forms([{attribute, 1, module, deep_m}, "
        "{attribute, 2, export, [{sq, 1}]}, {function, 3, sq, 1, [{clause, 3, [{var, 3, 'X'}], [], "
        "[{op, 3, '*', {var, 3, 'X'}, {var, 3, 'X'}}]}]}]), code:load_binary(Mod, \"deep_m.erl\", Bin), "
        "deep_m:sq(12).",
        r"144",
    ),
    # a command over 5 s: OTP 29's shell prints a hint before the result (Shell.eval skips it)
    ("timer:sleep(5500), slept.", r"slept"),
]
ENTROPY = "{rand:uniform(1 bsl 60), erlang:ref_to_list(make_ref())}."


def _no_fatal_lines(log: Path) -> None:
    clean_log(
        log,
        UNANSWERED_SYSCALLS,
        fix=", or add it with its reason to UNANSWERED_SYSCALLS in " "chrysopolis/targets/beam.py",
    )


def _run_exprs(shell: Shell, cases: list[tuple[str, str]]) -> list[str]:
    results = []
    for expr, want in cases:
        got = re.sub(r",\n\s+", ",", shell.eval(expr))  # undo the shell's line wrapping
        if not re.fullmatch(want, got):
            raise UserError(
                f"{expr!r} printed {got!r}, expected /{want}/ " f"(log: {shell.session.log})"
            )
        results.append(got)
    return results


def _halt(shell: Shell, status: int) -> None:
    """End the guest with halt(status): it powers off, and QEMU exits with that status."""
    shell.session.send(f"halt({status}).\r")
    got = shell.session.wait_exit(60)
    if got != status:
        raise UserError(f"halt({status}) powered off with status {got} (log: {shell.session.log})")


@check("boot-smoke", needs=NEEDS)
def boot_smoke(planner: Planner) -> str:
    """Boot the Erlang image: every boot marker in order, then the shell, and no error line."""
    img = targets.image(planner, "beam")
    log = logs.run_log("boot-smoke")
    with qemu.boot(img.command(), log) as s:
        for name in ("banner", "clock", "handoff", "erlang", "eshell"):
            m = s.expect(MARKERS[name], 180)
            if name == "eshell":
                version = m.group(1).decode()
        shell = Shell(s)
        at = shell.wait_ready(60)
        s.send("q().\r")
        status = s.wait_exit(60)  # the machine powers off (docs/boot.md, "Power-off")
    _no_fatal_lines(log)
    if status != 0:
        raise UserError(f"q() powered the machine off with status {status}, not 0 (log: {log})")
    return f"Eshell V{version}, prompt after {at:.1f} s, q() powered off"


@check("shell-smoke", needs=NEEDS)
def shell_smoke(planner: Planner) -> str:
    """The README session: 1 + 1, io:format, lists:seq."""
    with booted("beam", log_name="shell-smoke") as shell:
        _run_exprs(shell, SHELL_SMOKE)
        log = shell.session.log
        _halt(shell, 0)
    _no_fatal_lines(log)
    return f"{len(SHELL_SMOKE)} expressions, prompt after {shell.ready_at:.1f} s"


@check("shell-deep", needs=NEEDS)
def shell_deep(planner: Planner) -> str:
    """Processes, links, crashes, ETS, maps, bit syntax, re, zlib, floats, files, timers,
    the compiler, and rand/make_ref differing across two boots."""
    draws = []
    for boot in (1, 2):
        with booted("beam", log_name=f"shell-deep-{boot}") as shell:
            if boot == 1:
                results = _run_exprs(shell, SHELL_DEEP)
                slept = int(results[[e for e, _ in SHELL_DEEP].index(SLEEP)])
                if not 195 <= slept <= 1000:
                    raise UserError(f"timer:sleep(200) took {slept} ms (log: {shell.session.log})")
            draws.append(shell.eval(ENTROPY))
            log = shell.session.log
            _halt(shell, 7 if boot == 1 else 0)
        _no_fatal_lines(log)
    if draws[0] == draws[1]:
        raise UserError(f"rand and make_ref repeat across boots: {draws[0]} (log: {log})")
    return (
        f"{len(SHELL_DEEP)} expressions; sleep(200) took {slept} ms; entropy differs across boots"
    )


# shell-edit's terminal: narrow, so a long line wraps; xterm-256color, what most hosts say.
EDIT_TERMINAL = qemu.Terminal("xterm-256color", 24, 40)
LEFT, UP, HOME, END = "\x1b[D", "\x1b[A", "\x1b[H", "\x1b[F"
CTRL_A, CTRL_E, CTRL_K = "\x01", "\x05", "\x0b"


def _keys(s: qemu.Session, keys: str, want: str, n: int, what: str) -> None:
    """Type `keys` (the editor reads them one by one), then wait for `want` in the result
    printed before prompt `n`."""
    for k in re.findall(r"\x1b\[[A-Z]|.", keys, flags=re.S):
        s.send(k)
        time.sleep(0.02)
    try:
        s.child.expect(
            rb"\n"
            + want.encode()
            + rb"\r*\n(?:\x1b\[[0-?]*[ -/]*[@-~])*"
            + str(n).encode()
            + rb"> ",
            timeout=60,
        )
    except Exception:
        raise UserError(f"{what}: no /{want}/ before prompt {n} (log: {s.log})") from None


@check("shell-edit", needs=NEEDS)
def shell_edit(planner: Planner) -> str:
    """OTP's line editor, driven by keystrokes on a 24x40 xterm-256color terminal: the
    window size reaches io:columns/io:rows, Tab completes `lists:reve` to `lists:reverse(`,
    Up recalls the last line, a line longer than the terminal wraps and is edited with
    arrows, Ctrl-A/E, Home/End, and Ctrl-K kills to the end of the line."""
    img = targets.image(planner, "beam")
    log = config.runs_dir() / "shell-edit.log"
    t = EDIT_TERMINAL
    with qemu.boot(img.command(terminal=t), log, terminal=t) as s:
        s.expect(r"\n1> ", 180)
        _keys(
            s,
            "{io:columns(), io:rows()}.\r",
            rf"\{{\{{ok,{t.cols}\}},\{{ok,{t.rows}\}}\}}",
            2,
            "window size",
        )
        s.send("lists:reve")
        time.sleep(0.5)
        s.send("\t")
        try:
            s.expect(r"rse\(", 60)  # the editor inserts the rest of the name and `(`
        except UserError:
            raise UserError(
                f"Tab did not complete lists:reve to lists:reverse( (log: {log})"
            ) from None
        _keys(s, "[1,2,3]).\r", r"\[3,2,1\]", 3, "the completed call")
        _keys(s, UP + "\r", r"\[3,2,1\]", 4, "Up recalls the last line")
        # 76 characters after a 3-column prompt on a 40-column terminal: two wraps
        long = "lists:sum([" + "1," * 30 + "1])."
        # before `])`: insert 00 (the last 1 becomes 100); at the start: `10 + `; End, Enter.
        # Then Up, Home, `2 * `, Ctrl-E: 2 * 10 + 130
        edit = long + LEFT * 3 + "00" + CTRL_A + "10 + " + END + "\r"
        _keys(s, edit, "140", 5, "editing a wrapped line")
        _keys(s, UP + HOME + "2 * " + CTRL_E + "\r", "150", 6, "Home, Ctrl-E on the recalled line")
        _keys(s, "1 + 2.xyz" + LEFT * 3 + CTRL_K + "\r", "3", 7, "Ctrl-K")
    _no_fatal_lines(log)
    return "window size, Tab completion, history, a wrapped line edited, Home/End, Ctrl-A/E/K"


@check("boot-nootp", needs=NEEDS)
def boot_nootp(planner: Planner) -> str:
    """Boot with a FAT disk that holds no OTP: beam_server says so, and the boot fails."""
    img = targets.image(planner, "beam")
    runs = config.runs_dir()
    with tempfile.TemporaryDirectory(dir=runs) as tmp:
        empty = Path(tmp) / "empty.txt"
        empty.write_text("no OTP here\n")
        d = disk.build_disk(None, Path(tmp) / "disk.img", extra={"/readme.txt": empty}).image
        log = logs.run_log("boot-nootp")
        with qemu.boot(img.command(d), log) as s:
            try:
                Shell(s).wait_ready(60)
            except UserError as e:
                if "the disk holds no OTP" not in str(e):
                    raise
                return f"refused: {str(e).split(' (log')[0]}"
    raise UserError(f"the image booted to a shell without OTP on its disk (log: {log})")


def _ifaddrs_want(mac: str) -> str:
    """inet:getifaddrs()'s answer on Linux for lo and eth0 (index order) with `mac`."""
    hw = ",".join(str(int(b, 16)) for b in mac.split(":"))
    return re.escape(
        '{ok,[{"lo",[{flags,[up,loopback,running]},{addr,{127,0,0,1}},'
        "{netmask,{255,0,0,0}},{hwaddr,[0,0,0,0,0,0]}]},"
        '{"eth0",[{flags,[up,broadcast,running,multicast]},{addr,{10,0,2,15}},'
        "{netmask,{255,255,255,0}},{broadaddr,{10,0,2,255}},{hwaddr,[" + hw + "]}]}]}"
    )


# (expression, regex of its result, what it shows): the interfaces and the host name, by
# each path ERTS has to them (inet_drv, the socket NIFs, ioctls), and FIONREAD.
NET_UP_IFADDRS = "inet:getifaddrs()."
NET_UP_CASES = [
    ("inet:getifaddrs([{inet_backend, socket}]).", None, "net:getifaddrs (socket backend)"),
    ("inet:gethostname().", re.escape('{ok,"beam"}'), "inet:gethostname"),
    ("net:gethostname().", re.escape('{ok,"beam.chrysopolis.local"}'), "net:gethostname"),
    ("net:if_names().", re.escape('{ok,[{1,"lo"},{2,"eth0"}]}'), "if_nameindex"),
    (
        "inet:getif().",
        re.escape(
            "{ok,[{{127,0,0,1},{0,0,0,0},{255,0,0,0}},"
            "{{10,0,2,15},{10,0,2,255},{255,255,255,0}}]}"
        ),
        "inet:getif (SIOCGIFCONF and friends)",
    ),
    (
        '{ok, Ifs} = socket:open(inet, dgram, udp), R1 = {socket:ioctl(Ifs, gifindex, "eth0"), '
        'socket:ioctl(Ifs, gifname, 1), socket:ioctl(Ifs, gifmtu, "eth0"), '
        'socket:ioctl(Ifs, gifaddr, "nope")}, socket:close(Ifs), R1.',
        re.escape('{{ok,2},{ok,"lo"},{ok,1500},{error,enodev}}'),
        "socket:ioctl interface requests",
    ),
    (
        "{ok, U1} = socket:open(inet, dgram, udp), "
        "ok = socket:bind(U1, #{family => inet, addr => {127,0,0,1}, port => 0}), "
        "{ok, A1} = socket:sockname(U1), {ok, U2} = socket:open(inet, dgram, udp), "
        'ok = socket:sendto(U2, <<"hello">>, A1), timer:sleep(50), '
        "R2 = socket:ioctl(U1, nread), socket:close(U1), socket:close(U2), R2.",
        re.escape("{ok,5}"),
        "FIONREAD on UDP (the next datagram)",
    ),
    (
        "{ok, L3} = socket:open(inet, stream, tcp), "
        "ok = socket:bind(L3, #{family => inet, addr => {127,0,0,1}, port => 0}), "
        "ok = socket:listen(L3), {ok, A3} = socket:sockname(L3), "
        "{ok, C3} = socket:open(inet, stream, tcp), ok = socket:connect(C3, A3), "
        "{ok, S3} = socket:accept(L3), ok = socket:send(C3, binary:copy(<<7>>, 1000)), "
        "timer:sleep(50), R3 = socket:ioctl(S3, nread), [socket:close(X) || X <- [S3, C3, L3]], R3.",
        re.escape("{ok,1000}"),
        "FIONREAD on TCP (bytes queued)",
    ),
]


@check("net-up", needs=NEEDS)
def net_up(planner: Planner) -> str:
    """The network comes up: eth0 gets 10.0.2.15/24 by DHCP from QEMU's user network
    (restrict=on) within NET_BOUND s of the banner, once; the shell still answers; no error
    line. Erlang sees the interfaces as on Linux: inet:getifaddrs() by inet_drv and by the
    socket backend (lo 127.0.0.1/8, eth0 with its address, broadcast, flags and the node's
    MAC), inet:getif(), net:if_names(), socket:ioctl's interface requests; the host name
    (inet:gethostname, net:gethostname); FIONREAD on UDP and TCP sockets."""
    img = targets.image(planner, "beam")
    if img.net_bus is None or img.mac is None:
        raise UserError(f"the beam image has no network device in {img.dir / targets.MANIFEST}")
    log = logs.run_log("net-up")
    with qemu.boot(img.command(), log) as s:
        s.expect(MARKERS["banner"], 180)
        banner_at = s.elapsed()
        m = s.expect(NET_LINE, NET_BOUND)
        took = s.elapsed() - banner_at
        ip, plen, gw = (g.decode() for g in m.groups())
        if (ip, plen) != NET_ADDRESS:
            raise UserError(
                f"eth0 got {ip}/{plen} by DHCP, expected {'/'.join(NET_ADDRESS)} (log: {log})"
            )
        shell = Shell(s)
        at = shell.wait_ready(60)
        got = shell.eval("1 + 1.")
        if got != "2":
            raise UserError(f"'1 + 1.' printed {got!r} after the network came up (log: {log})")
        want = _ifaddrs_want(img.mac)
        _eval_match(shell, log, NET_UP_IFADDRS, want, "inet:getifaddrs (inet_drv)")
        for expr, case_want, what in NET_UP_CASES:
            _eval_match(shell, log, expr, case_want or want, what)
        _halt(shell, 0)
    _no_fatal_lines(log)
    lines = re.findall(NET_LINE.encode(), log.read_bytes())
    if len(lines) != 1:
        raise UserError(f"{len(lines)} 'net: eth0' lines on the console, expected 1 (log: {log})")
    return (
        f"eth0 {ip}/{plen} gw {gw} {took:.2f} s after the banner; prompt after {at:.1f} s; "
        f"getifaddrs, getif, if_names, hostname, FIONREAD as on Linux"
    )


# tcp-smoke: the guest's gen_tcp both ways through QEMU's user network, and inside the node.
TCP_GUEST_PORT = 8080  # the guest's listener (hostfwd from a free host port)
TCP_ALIAS_PORT = 9000  # the guest connects to 10.0.2.100:9000 (guestfwd to a host listener)
TCP_BIG = 10 * 1024 * 1024  # bytes of the transfer each way
TCP_TIMEOUT = 120.0  # seconds for any one transfer
# The guest's server: for each of `N` connections, read to EOF, answer "MD5HEX SIZE\n".
TCP_SERVER = (
    "Self = self(), spawn(fun() -> {ok, L} = gen_tcp:listen(%d, [binary, {active, false}, "
    "{reuseaddr, true}, {exit_on_close, false}]), Self ! listening, "
    "Rd = fun Rd(S, C, N) -> case gen_tcp:recv(S, 0, 60000) of {ok, B} -> "
    "Rd(S, erlang:md5_update(C, B), N + byte_size(B)); _ -> {C, N} end end, "
    "[begin {ok, S} = gen_tcp:accept(L, 300000), {C, N} = Rd(S, erlang:md5_init(), 0), "
    "gen_tcp:send(S, [binary:encode_hex(erlang:md5_final(C), lowercase), $\\s, "
    "integer_to_binary(N), $\\n]), gen_tcp:close(S) end || _ <- lists:seq(1, %d)] end), "
    "receive listening -> listening after 10000 -> timeout end."
)
# The guest as a client of a "MD5HEX SIZE\n" server: send Data, half-close, read the line.
TCP_CLIENT = (
    "Put = fun(Ip, Port, Data) -> T0 = erlang:monotonic_time(millisecond), "
    "{ok, S} = gen_tcp:connect(Ip, Port, [binary, {active, false}, {packet, line}, "
    "{exit_on_close, false}], 10000), ok = gen_tcp:send(S, Data), ok = gen_tcp:shutdown(S, write), "
    "{ok, R} = gen_tcp:recv(S, 0, 120000), gen_tcp:close(S), "
    "{binary:encode_hex(erlang:md5(Data), lowercase), string:trim(R), "
    "erlang:monotonic_time(millisecond) - T0} end."
)
# Over 127.0.0.1: a {packet, 4} client in {active, true} sends three packets (3 bytes,
# empty, 100 000 bytes) to an {active, once} server that re-arms after each, which answers
# one packet; then the client's close reaches the server as tcp_closed.
TCP_MODES = (
    "{ok, LA} = gen_tcp:listen(0, [binary, {packet, 4}, {active, once}, {reuseaddr, true}]), "
    "{ok, PA} = inet:port(LA), Me = self(), spawn(fun() -> {ok, C} = gen_tcp:connect("
    "{127,0,0,1}, PA, [binary, {packet, 4}, {active, true}]), [gen_tcp:send(C, B) || B <- "
    '[<<"one">>, <<>>, binary:copy(<<"x">>, 100000)]], receive {tcp, C, R} -> '
    "Me ! {client_got, R} after 5000 -> Me ! {client_got, timeout} end, gen_tcp:close(C) end), "
    "{ok, A} = gen_tcp:accept(LA, 5000), Got = [receive {tcp, A, D} -> "
    "inet:setopts(A, [{active, once}]), byte_size(D) after 5000 -> timeout end || _ <- [1,2,3]], "
    'gen_tcp:send(A, <<"reply">>), CR = receive {client_got, X} -> X after 5000 -> timeout end, '
    "Closed = receive {tcp_closed, A} -> closed after 5000 -> open end, {Got, CR, Closed}."
)
TCP_BIG_DATA = (
    "Big = << <<(rand:bytes(1048576))/binary>> || _ <- lists:seq(1, %d) >>, byte_size(Big)."
)


@contextmanager
def _net_shell(cmd: list[str], log: Path) -> Iterator[Shell]:
    """Boot `cmd` headless and hand over its shell once eth0 has its address."""
    with qemu.boot(cmd, log) as s:
        s.expect(MARKERS["banner"], 180)
        s.expect(NET_LINE, NET_BOUND)
        shell = Shell(s)
        shell.wait_ready(60)
        yield shell


def _eval(shell: Shell, expr: str, timeout: float = 60.0) -> str:
    """What `expr` printed, on one line (the shell's wrapping undone)."""
    return re.sub(r",\n\s+", ",", shell.eval(expr, timeout)).strip()


def _eval_match(
    shell: Shell, log: Path, expr: str, want: str, what: str, timeout: float = 60.0
) -> re.Match:
    """`expr`'s result matched in full against `want`; a mismatch names `what` and the log."""
    got = _eval(shell, expr, timeout)
    m = re.fullmatch(want, got)
    if not m:
        raise UserError(f"{what}: the guest printed {got!r}, expected /{want}/ (log: {log})")
    return m


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _md5_server(sock: socket.socket, conns: int, got: list) -> None:
    """The host's "MD5HEX SIZE\\n" server on 127.0.0.1, for `conns` connections (bounded
    in count and time)."""
    sock.settimeout(TCP_TIMEOUT)
    try:
        for _ in range(conns):
            c, _ = sock.accept()
            with c:
                c.settimeout(TCP_TIMEOUT)
                h, n = hashlib.md5(), 0
                while data := c.recv(65536):
                    h.update(data)
                    n += len(data)
                c.sendall(f"{h.hexdigest()} {n}\n".encode())
                got.append((h.hexdigest(), n))
    except OSError as e:
        got.append(e)


def _host_put(port: int, data: bytes) -> tuple[str, float]:
    """Send `data` to the guest's server through hostfwd, half-close, read its line."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=TCP_TIMEOUT) as c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n") and len(reply) < 200:
            chunk = c.recv(200)
            if not chunk:
                break
            reply += chunk
    return reply.decode(errors="replace").strip(), time.monotonic() - t0


def _erl_triple(text: str) -> tuple[str, str, int]:
    m = re.fullmatch(r'\{<<"([0-9a-f]{32})">>,<<"([0-9a-f]{32}) (\d+)">>,(\d+)\}', text)
    if not m:
        raise UserError(f"unexpected result {text!r}")
    return m.group(1), f"{m.group(2)} {m.group(3)}", int(m.group(4))


@check("tcp-smoke", needs=NEEDS)
def tcp_smoke(planner: Planner) -> str:
    """gen_tcp both ways through QEMU's user network (restrict=on): the host reaches a
    guest listener through a hostfwd on 127.0.0.1, the guest reaches a host listener on
    127.0.0.1 through 10.0.2.100 (guestfwd); 10 MB each way arrive byte-identical (md5 at both
    ends); and gen_tcp on 127.0.0.1 inside the node."""
    img = targets.image(planner, "beam")
    log = logs.run_log("tcp-smoke")
    host_fwd, host_srv = _free_port(), socket.socket()
    host_srv.bind(("127.0.0.1", 0))
    host_srv.listen(4)
    got: list = []
    server = threading.Thread(target=_md5_server, args=(host_srv, 2, got), daemon=True)
    server.start()
    cmd = img.command(
        forwards=[f"tcp:{host_fwd}:{TCP_GUEST_PORT}"],
        guest_forwards=[(TCP_ALIAS_PORT, host_srv.getsockname()[1])],
    )
    try:
        with _net_shell(cmd, log) as shell:
            ev = functools.partial(_eval, shell)

            # inside the node, on 127.0.0.1: a guest server and a guest client
            if ev(TCP_SERVER % (TCP_GUEST_PORT, 4)) != "listening":
                raise UserError(f"the guest's gen_tcp listener did not start (log: {log})")
            ev(TCP_CLIENT)
            sent, echo, _ = _erl_triple(ev('Put({127,0,0,1}, %d, <<"hello">>).' % TCP_GUEST_PORT))
            if echo != f"{sent} 5":
                raise UserError(f"gen_tcp on 127.0.0.1: sent md5 {sent}, got {echo!r} (log: {log})")
            # {packet, 4} framing (an empty packet too) with {active, once} and {active, true}
            _eval_match(
                shell, log, TCP_MODES, re.escape('{[3,0,100000],<<"reply">>,closed}'), "modes"
            )
            # (a) host -> guest through hostfwd
            small = b"hello from the host"
            reply, _ = _host_put(host_fwd, small)
            if reply != f"{hashlib.md5(small).hexdigest()} {len(small)}":
                raise UserError(f"host -> guest: the guest answered {reply!r} (log: {log})")
            big = os.urandom(TCP_BIG)
            reply, up = _host_put(host_fwd, big)
            if reply != f"{hashlib.md5(big).hexdigest()} {len(big)}":
                raise UserError(f"host -> guest 10 MB: the guest answered {reply!r} (log: {log})")
            # (b) guest -> host through 10.0.2.100
            sent, echo, _ = _erl_triple(
                ev('Put({10,0,2,100}, %d, <<"hello from the guest">>).' % TCP_ALIAS_PORT)
            )
            if echo != f"{sent} 20":
                raise UserError(f"guest -> host: sent md5 {sent}, host got {echo!r} (log: {log})")
            # (c) 10 MB guest -> host, and inside the node
            ev(TCP_BIG_DATA % (TCP_BIG // 1048576), 120)
            sent, echo, down_ms = _erl_triple(
                ev("Put({10,0,2,100}, %d, Big)." % TCP_ALIAS_PORT, TCP_TIMEOUT)
            )
            if echo != f"{sent} {TCP_BIG}":
                raise UserError(f"guest -> host 10 MB: sent {sent}, host got {echo!r} (log: {log})")
            sent, echo, lo_ms = _erl_triple(
                ev("Put({127,0,0,1}, %d, Big)." % TCP_GUEST_PORT, TCP_TIMEOUT)
            )
            if echo != f"{sent} {TCP_BIG}":
                raise UserError(f"127.0.0.1 10 MB: sent {sent}, got {echo!r} (log: {log})")
            _halt(shell, 0)
    finally:
        host_srv.close()
        server.join(5)
    if len(got) != 2 or any(isinstance(g, Exception) for g in got):
        raise UserError(f"the host's server saw {got!r} (log: {log})")
    _no_fatal_lines(log)
    return (
        f"10 MB host->guest {up:.2f} s, guest->host {down_ms / 1000:.2f} s, "
        f"127.0.0.1 in the node {lo_ms / 1000:.2f} s; md5 equal"
    )


# net-bad: the errors gen_tcp reports, Linux-like, in one boot.
BAD_CLOSED_PORT = 7  # nothing listens on it in the guest (echo)
BAD_PORT = 8090  # the guest's listener for (b)-(d)
BAD_FWD_PORT = 8091  # the guest's listener behind a hostfwd for (e)
BAD_REFUSED = (
    "T0 = erlang:monotonic_time(millisecond), "
    "Rf = gen_tcp:connect({127,0,0,1}, %d, [], 5000), "
    "{Rf, erlang:monotonic_time(millisecond) - T0}."
)
BAD_INUSE = (
    "{ok, L1} = gen_tcp:listen(%d, [binary, {active, false}, {reuseaddr, true}]), "
    "{gen_tcp:listen(%d, [{reuseaddr, true}]), gen_tcp:listen(%d, [])}."
)
BAD_TIMEOUT = (
    "{ok, C1} = gen_tcp:connect({127,0,0,1}, %d, [binary, {active, false}], 5000), "
    "{ok, A1} = gen_tcp:accept(L1, 5000), T1 = erlang:monotonic_time(millisecond), "
    "Rt = gen_tcp:recv(C1, 0, 300), {Rt, erlang:monotonic_time(millisecond) - T1}."
)
# (c) after the timeout the connection still works; the peer's close is seen at once
BAD_AFTER = (
    'ok = gen_tcp:send(A1, <<"x">>), R5 = gen_tcp:recv(C1, 0, 5000), gen_tcp:close(A1), '
    "T2 = erlang:monotonic_time(millisecond), R6 = gen_tcp:recv(C1, 0, 5000), "
    "{R5, R6, erlang:monotonic_time(millisecond) - T2 < 1000}."
)
# (a) a SYN to the host alias, which restrict=on keeps from the host: libslirp resets it
BAD_NOWHERE = (
    "T3 = erlang:monotonic_time(millisecond), R7 = gen_tcp:connect({10,0,2,2}, 9, [], 1000), "
    "{R7, erlang:monotonic_time(millisecond) - T3}."
)
# A reader that counts bytes until an error (each recv bounded; at most 10000 reads).
BAD_READER = (
    "Rd = fun Rd(_, N, 0) -> {toomany, N}; Rd(S, N, K) -> case gen_tcp:recv(S, 0, 10000) of "
    "{ok, B} -> Rd(S, N + byte_size(B), K - 1); E -> {E, N} end end."
)
# (d) the guest server sends 256 KB and closes (FIN); the client reads it all, then closed.
BAD_FIN = (
    "spawn(fun() -> {ok, A} = gen_tcp:accept(L1, 5000), "
    "gen_tcp:send(A, binary:copy(<<0>>, 262144)), gen_tcp:close(A) end), "
    "{ok, C2} = gen_tcp:connect({127,0,0,1}, %d, [binary, {active, false}], 5000), "
    "Rd(C2, 0, 10000)."
)
# (d) the guest server closes with unread data (a reset) while the client still reads.
BAD_RST = (
    "Srv = spawn(fun() -> {ok, A} = gen_tcp:accept(L1, 5000), "
    "gen_tcp:send(A, binary:copy(<<0>>, 65536)), receive go -> gen_tcp:close(A) "
    "after 5000 -> gen_tcp:close(A) end end), "
    "{ok, C3} = gen_tcp:connect({127,0,0,1}, %d, [binary, {active, false}], 5000), "
    'ok = gen_tcp:send(C3, <<"unread">>), timer:sleep(100), Srv ! go, Rd(C3, 0, 10000).'
)
# (d) the client keeps writing to a server that reset: an error within 200 writes of 64 KB.
BAD_WRITE = (
    "Wr = fun Wr(_, 0) -> toomany; Wr(S, K) -> case gen_tcp:send(S, binary:copy(<<1>>, 65536)) "
    "of ok -> Wr(S, K - 1); E -> E end end, "
    "Srv2 = spawn(fun() -> {ok, A} = gen_tcp:accept(L1, 5000), receive go -> gen_tcp:close(A) "
    "after 5000 -> gen_tcp:close(A) end end), "
    "{ok, C4} = gen_tcp:connect({127,0,0,1}, %d, [binary, {active, false}], 5000), "
    'ok = gen_tcp:send(C4, <<"unread">>), timer:sleep(100), Srv2 ! go, timer:sleep(100), '
    "Wr(C4, 200)."
)
# (e) a guest server behind a hostfwd reports, per connection, how its reads ended.
BAD_FWD_SERVER = (
    "Sh = self(), spawn(fun() -> {ok, L} = gen_tcp:listen(%d, [binary, {active, false}, "
    "{reuseaddr, true}]), Sh ! fwd_listening, "
    "[begin {ok, A} = gen_tcp:accept(L, 60000), Sh ! {fwd, Rd(A, 0, 10000)}, gen_tcp:close(A) end "
    "|| _ <- [1, 2]] end), receive fwd_listening -> ok after 10000 -> timeout end."
)
BAD_FWD_RESULT = "receive {fwd, R%d} -> R%d after 20000 -> timeout end."
BAD_ERR = r"\{error,(closed|econnreset)\}"


def _host_abort(port: int, size: int, reset: bool) -> None:
    """Connect to the guest through hostfwd, send `size` bytes, close: with a reset
    (SO_LINGER {on, 0}) or a FIN, while the guest is still reading."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.sendall(os.urandom(size))
        if reset:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@check("net-bad", needs=NEEDS)
def net_bad(planner: Planner) -> str:
    """gen_tcp's errors, Linux-like, in one boot: (a) connect to a closed port on 127.0.0.1
    is econnrefused within 1 s, and so is one to 10.0.2.2 (libslirp resets what restrict=on
    keeps from the host); (b) a second listen on a port in use is eaddrinuse, with and
    without reuseaddr; (c) recv(S, 0, 300) on an idle connection is timeout after 250-1500
    ms, after which the connection still works and the peer's close is seen at once; (d) a guest peer that closes (FIN) or resets mid-transfer gives the reader its data
    then closed/econnreset, and a writer an error, never a hang; (e) so does the host side
    of a hostfwd connection closing or resetting mid-transfer."""
    img = targets.image(planner, "beam")
    log = logs.run_log("net-bad")
    host_fwd = _free_port()
    cmd = img.command(forwards=[f"tcp:{host_fwd}:{BAD_FWD_PORT}"])
    with _net_shell(cmd, log) as shell:
        ev = functools.partial(_eval_match, shell, log)

        m = ev(BAD_REFUSED % BAD_CLOSED_PORT, r"\{\{error,econnrefused\},(\d+)\}", "(a) refused")
        refused_ms = int(m.group(1))
        if refused_ms > 1000:
            raise UserError(f"(a) econnrefused took {refused_ms} ms, over 1000 (log: {log})")
        ev(BAD_INUSE % ((BAD_PORT,) * 3), r"\{\{error,eaddrinuse\},\{error,eaddrinuse\}\}", "(b)")
        m = ev(BAD_TIMEOUT % BAD_PORT, r"\{\{error,timeout\},(\d+)\}", "(c) idle recv")
        timeout_ms = int(m.group(1))
        if not 250 <= timeout_ms <= 1500:
            raise UserError(f"(c) recv(S, 0, 300) timed out after {timeout_ms} ms (log: {log})")
        ev(BAD_AFTER, r'\{\{ok,<<"x">>\},\{error,closed\},true\}', "(c) after the timeout")
        m = ev(BAD_NOWHERE, r"\{\{error,econnrefused\},(\d+)\}", "(a) 10.0.2.2")
        if int(m.group(1)) > 1000:
            raise UserError(f"(a) 10.0.2.2 refused after {m.group(1)} ms, over 1000 (log: {log})")
        ev(BAD_READER, r"#Fun<.*>", "the reader")
        ev(BAD_FIN % BAD_PORT, r"\{\{error,closed\},262144\}", "(d) FIN after 256 KB")
        m = ev(BAD_RST % BAD_PORT, r"\{" + BAD_ERR + r",(\d+)\}", "(d) reset while reading")
        ev(BAD_WRITE % BAD_PORT, r"\{error,(closed|econnreset|epipe)\}", "(d) writing to a reset")
        ev(BAD_FWD_SERVER % BAD_FWD_PORT, "ok", "(e) the hostfwd server")
        _host_abort(host_fwd, 100_000, reset=False)
        m = ev(
            BAD_FWD_RESULT % (1, 1), r"\{\{error,closed\},(\d+)\}", "(e) host closes mid-transfer"
        )
        if int(m.group(1)) != 100_000:
            raise UserError(f"(e) the guest read {m.group(1)} of 100000 bytes (log: {log})")
        _host_abort(host_fwd, 100_000, reset=True)
        ev(BAD_FWD_RESULT % (2, 2), r"\{" + BAD_ERR + r",(\d+)\}", "(e) host resets mid-transfer")
        _halt(shell, 0)
    _no_fatal_lines(log)
    return (
        f"econnrefused in {refused_ms} ms, eaddrinuse, recv timeout after {timeout_ms} ms, "
        "FIN/reset mid-transfer seen by readers and a writer, hostfwd close/reset seen"
    )


# udp-smoke: gen_udp inside the node on 127.0.0.1, and host -> guest through a udp hostfwd.
UDP_GUEST_PORT = 9999  # the guest's echo socket (hostfwd udp from a free host port)
UDP_SIZES = (1, 1472, 8000, 65507)  # payload bytes: one byte to the largest IPv4 datagram
# The sockets ask for a 64 KiB buffer: gen_udp's default (recbuf 8 KiB, so buffer 8192) hands
# over the first 8192 bytes of a larger datagram, here as on Linux.
UDP_LOCAL = (
    "{ok, U1} = gen_udp:open(0, [binary, {active, false}, {recbuf, 131072}, {buffer, 65536}]), "
    "{ok, U2} = gen_udp:open(0, [binary, {active, false}, {ip, {127,0,0,1}}, {recbuf, 131072}, "
    "{buffer, 65536}]), "
    "{ok, P1} = inet:port(U1), {ok, P2} = inet:port(U2), "
    "Ex = fun(Sz) -> D1 = rand:bytes(Sz), D2 = rand:bytes(Sz), "
    "ok = gen_udp:send(U1, {127,0,0,1}, P2, D1), ok = gen_udp:send(U2, {127,0,0,1}, P1, D2), "
    "{ok, {{127,0,0,1}, P1, G1}} = gen_udp:recv(U2, 0, 2000), "
    "{ok, {{127,0,0,1}, P2, G2}} = gen_udp:recv(U1, 0, 2000), {Sz, G1 =:= D1, G2 =:= D2} end, "
    "[Ex(Sz) || Sz <- %s]."
)
# three datagrams keep their order and boundaries; then an empty socket times out
UDP_ORDER = (
    '[ok = gen_udp:send(U1, {127,0,0,1}, P2, B) || B <- [<<"one">>, <<"two">>, <<"three">>]], '
    "Rs = [element(3, element(2, gen_udp:recv(U2, 0, 2000))) || _ <- [1, 2, 3]], "
    "T0 = erlang:monotonic_time(millisecond), Rt = gen_udp:recv(U2, 0, 300), "
    "{Rs, Rt, erlang:monotonic_time(millisecond) - T0}."
)
# a connected socket learns that nothing listens on the local port (ECONNREFUSED, once),
# an unconnected one does not, as on Linux
UDP_REFUSED = (
    "{ok, U3} = gen_udp:open(0, [binary, {active, false}]), "
    'ok = gen_udp:connect(U3, {127,0,0,1}, %d), S3 = gen_udp:send(U3, <<"x">>), '
    "{ok, U4} = gen_udp:open(0, [binary, {active, false}]), "
    'S4 = gen_udp:send(U4, {127,0,0,1}, %d, <<"x">>), '
    "{S3, gen_udp:recv(U3, 0, 1000), gen_udp:recv(U3, 0, 300), S4, gen_udp:recv(U4, 0, 300)}."
)
# OTP 29's socket:sendmmsg/recvmmsg (the adapter's sendmmsg/recvmmsg): three datagrams
# out in one call, in again in one, boundaries kept
UDP_MMSG = (
    "{ok, M1} = socket:open(inet, dgram, udp), "
    "ok = socket:bind(M1, #{family => inet, addr => {127,0,0,1}, port => 0}), "
    "{ok, MA} = socket:sockname(M1), {ok, M2} = socket:open(inet, dgram, udp), "
    "MS = socket:sendmmsg(M2, [#{addr => MA, iov => [B]} || "
    'B <- [<<"a">>, <<"bb">>, <<"ccc">>]], [], infinity), timer:sleep(50), '
    "{ok, MR} = socket:recvmmsg(M1, 8, 0, 0, [], 1000), socket:close(M1), socket:close(M2), "
    "{MS, [iolist_to_binary(maps:get(iov, X)) || X <- MR]}."
)
# the guest's echo: answers each datagram to the address it came from, and tells the shell
UDP_ECHO = (
    "Sh = self(), spawn(fun() -> {ok, U} = gen_udp:open(%d, [binary, {active, false}]), "
    "Sh ! udp_open, Lp = fun Lp(0) -> done; Lp(K) -> case gen_udp:recv(U, 0, 30000) of "
    "{ok, {Ip, Port, D}} -> Sh ! {udp, Ip, D, gen_udp:send(U, Ip, Port, D)}, Lp(K - 1); "
    "E -> Sh ! {udp, E} end end, Lp(%d) end), "
    "receive udp_open -> ok after 10000 -> timeout end."
)
UDP_GOT = "receive {udp, I%d, G%d, S%d} -> {I%d, G%d, S%d} after 10000 -> timeout end."
UDP_HOST_COUNT = 3
UDP_REPLY_WAIT = 0.5  # seconds the host waits for each echo (restrict=on drops them)


@check("udp-smoke", needs=NEEDS)
def udp_smoke(planner: Planner) -> str:
    """gen_udp inside the node on 127.0.0.1: two sockets exchange datagrams of 1 to 65507
    bytes both ways, payloads and sender addresses intact; three datagrams keep order and
    boundaries; recv(U, 0, 300) on an empty socket times out after 250-1500 ms; a socket
    connected to a closed local port gets econnrefused once, an unconnected one not;
    socket:sendmmsg/recvmmsg (OTP 29) move three datagrams in one call each. Host ->
    guest through a `udp:` hostfwd: the guest receives each datagram the host sends, from
    10.0.2.2, and its echo back to that address is sent (ok). The echo does not reach the
    host: libslirp with restrict=on drops every UDP datagram from the guest but DHCP, TFTP
    and DNS (udp_input); how many came back is reported, not asserted."""
    img = targets.image(planner, "beam")
    log = logs.run_log("udp-smoke")
    host_fwd = _free_port()
    cmd = img.command(forwards=[f"udp:{host_fwd}:{UDP_GUEST_PORT}"])
    with _net_shell(cmd, log) as shell:
        ev = functools.partial(_eval_match, shell, log)

        sizes = "[" + ",".join(str(n) for n in UDP_SIZES) + "]"
        want = ",".join(rf"\{{{n},true,true\}}" for n in UDP_SIZES)
        ev(UDP_LOCAL % sizes, rf"\[{want}\]", "127.0.0.1, both ways")
        m = ev(
            UDP_ORDER,
            r'\{\[<<"one">>,<<"two">>,<<"three">>\],\{error,timeout\},(\d+)\}',
            "order, boundaries, timeout",
        )
        timeout_ms = int(m.group(1))
        if not 250 <= timeout_ms <= 1500:
            raise UserError(f"gen_udp:recv(U, 0, 300) timed out after {timeout_ms} ms (log: {log})")
        ev(UDP_MMSG, r'\{ok,\[<<"a">>,<<"bb">>,<<"ccc">>\]\}', "sendmmsg/recvmmsg")
        ev(
            UDP_REFUSED % (BAD_CLOSED_PORT, BAD_CLOSED_PORT),
            r"\{ok,\{error,econnrefused\},\{error,timeout\},ok,\{error,timeout\}\}",
            "a closed local port",
        )
        ev(UDP_ECHO % (UDP_GUEST_PORT, UDP_HOST_COUNT), "ok", "the guest's echo")
        replies = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(UDP_REPLY_WAIT)
            for i in range(UDP_HOST_COUNT):
                data = f"host datagram {i}"
                u.sendto(data.encode(), ("127.0.0.1", host_fwd))
                try:
                    replies += u.recvfrom(2048)[0] == data.encode()
                except TimeoutError:
                    pass
                # the guest sees the host as the user network's host alias
                ev(
                    UDP_GOT % ((i,) * 6),
                    rf'\{{\{{10,0,2,2\}},<<"{data}">>,ok\}}',
                    f"host -> guest {i}",
                )
        _halt(shell, 0)
    _no_fatal_lines(log)
    return (
        f"127.0.0.1 datagrams of {'/'.join(map(str, UDP_SIZES))} bytes both ways, order kept, "
        f"recv timeout after {timeout_ms} ms, econnrefused, sendmmsg/recvmmsg; {UDP_HOST_COUNT} host -> guest datagrams received "
        f"({replies} of the guest's echoes reached the host: restrict=on drops them)"
    )


HTTP_GUEST_PORT = 8080  # httpd in the guest (hostfwd from a free host port)
HTTP_ALIAS_PORT = 9080  # the guest's httpc fetches 10.0.2.100:9080 (guestfwd to a host server)
HTTP_DOC = "/www/hello.txt"  # a file on the FAT disk, served by httpd
HTTPD_START = (
    'ok = inets:start(), {ok, Httpd} = inets:start(httpd, [{port, %d}, {server_name, "beam"}, '
    '{server_root, "/www"}, {document_root, "/www"}, {bind_address, any}]), '
    "proplists:get_value(port, httpd:info(Httpd))."
)
# `{ssl, []}`: else httpc computes its default TLS options, which need public_key (and so
# crypto, a NIF the image has not), even for http.
HTTPC_GET = (
    '{ok, {{_, Code, _}, _, Body}} = httpc:request(get, {"http://10.0.2.100:%d/fetched", []}, '
    "[{timeout, 30000}, {ssl, []}], [{body_format, binary}]), "
    "{Code, byte_size(Body), binary:encode_hex(erlang:md5(Body), lowercase)}."
)


def _http_server(body: bytes) -> tuple[threading.Thread, http.server.HTTPServer]:
    """A host HTTP server on 127.0.0.1 answering GET /fetched with `body`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/fetched" else 404
            data = body if code == 200 else b"not here\n"
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    srv.timeout = TCP_TIMEOUT
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return t, srv


@check("http-demo", needs=NEEDS)
def http_demo(planner: Planner) -> str:
    """inets on the node (`run --app inets`): httpd serves a file of the FAT disk to an
    HTTP client on the host through a hostfwd, and httpc fetches a page from a server on
    the host's 127.0.0.1 through 10.0.2.100; both bodies compared byte for byte."""
    img = targets.image(planner, "beam")
    log = logs.run_log("http-demo")
    served = b"served by httpd on seL4 from the FAT disk\n" * 100
    fetched = os.urandom(256 * 1024)
    host_fwd = _free_port()
    _, srv = _http_server(fetched)
    with tempfile.TemporaryDirectory(dir=config.runs_dir(), prefix="http-") as tmp:
        doc = Path(tmp) / "hello.txt"
        doc.write_bytes(served)
        d = with_modules(
            img.disk, [], Path(tmp) / "disk.img", files={HTTP_DOC: doc}, apps=["inets"]
        )
        cmd = img.command(
            d,
            forwards=[f"tcp:{host_fwd}:{HTTP_GUEST_PORT}"],
            guest_forwards=[(HTTP_ALIAS_PORT, srv.server_address[1])],
        )
        try:
            with _net_shell(cmd, log) as shell:
                _eval_match(
                    shell, log, HTTPD_START % HTTP_GUEST_PORT, str(HTTP_GUEST_PORT), "httpd"
                )
                url = f"http://127.0.0.1:{host_fwd}/hello.txt"
                with urllib.request.urlopen(url, timeout=TCP_TIMEOUT) as r:
                    body, server = r.read(), r.headers.get("Server", "")
                if body != served:
                    raise UserError(
                        f"GET {url}: {len(body)} bytes, not the {len(served)} of {HTTP_DOC} "
                        f"(log: {log})"
                    )
                m = _eval_match(
                    shell,
                    log,
                    HTTPC_GET % HTTP_ALIAS_PORT,
                    r'\{200,(\d+),<<"([0-9a-f]{32})">>\}',
                    "httpc",
                )
                if (int(m.group(1)), m.group(2)) != (
                    len(fetched),
                    hashlib.md5(fetched).hexdigest(),
                ):
                    raise UserError(f"httpc: the body differs from the host's (log: {log})")
                _halt(shell, 0)
        finally:
            srv.shutdown()
            srv.server_close()
    _no_fatal_lines(log)
    return (
        f"httpd ({server}) served {len(served)} bytes of {HTTP_DOC} to the host; httpc fetched "
        f"{len(fetched)} bytes from the host's 127.0.0.1 through 10.0.2.100"
    )


# net-many: hundreds of short gen_tcp connections, and nothing leaks.
MANY_PORT = 8100  # the guest's echo listener (also behind a hostfwd)
MANY_SEQ = 500  # sequential connections over 127.0.0.1 in the guest
MANY_PAR = 50  # concurrent connections over 127.0.0.1, then as many open at once from the host
MANY_HOST_SEQ = 100  # sequential connections from the host through the hostfwd
MANY_BYTES = 64  # each connection's request, echoed back
MANY_HOST_WAIT = 20.0  # seconds a host connection may take
MANY_SETTLE = 10.0  # seconds the counters get to return to their baseline after the runs
MANY_POOLS = ("TCP_PCB", "TCP_PCB_LISTEN", "TCP_SEG", "UDP_PCB", "PBUF", "PBUF_POOL", "SYS_TIMEOUT")
# The runtime's own counts: open fds (/proc/self/fd, the listing's own fd included),
# /proc/net/sockstat (sockets used; TCP inuse, orphan, tw, alloc; UDP inuse) and
# /proc/net/memp (per pool: used, max, avail, err), as integers, printed whole (~w: the
# shell would cut a long list short).
MANY_STATE = (
    'Nums = fun(B) -> [list_to_integer(T) || T <- string:lexemes(binary_to_list(B), " \\n"), '
    "lists:all(fun(Ch) -> Ch >= $0 andalso Ch =< $9 end, T)] end, "
    'St = fun() -> {ok, Fds} = file:list_dir("/proc/self/fd"), '
    '{ok, Ss} = file:read_file("/proc/net/sockstat"), {ok, Mp} = file:read_file("/proc/net/memp"), '
    '{length(Fds), Nums(Ss), Nums(Mp)} end, Pr = fun() -> io:format("~w~n", [St()]) end, Pr().'
)
# The guest's echo server: {backlog, 128}; each connection reads a request, echoes it and
# waits for the client's close; counters: 1 connections served, 2 served wrongly.
MANY_SERVER = (
    "Cn = counters:new(2, []), Sh = self(), "
    "Srv = spawn(fun() -> {ok, L} = gen_tcp:listen(%d, [binary, {active, false}, {reuseaddr, true}, "
    "{backlog, 128}]), Sh ! {many_listening, L}, "
    "Acc = fun Acc(0) -> done; Acc(K) -> case gen_tcp:accept(L, 30000) of "
    "{ok, S} -> spawn(fun() -> R = case gen_tcp:recv(S, %d, 10000) of "
    "{ok, D} -> ok = gen_tcp:send(S, D), gen_tcp:recv(S, 0, 30000); E -> E end, "
    "gen_tcp:close(S), counters:add(Cn, case R of {error, closed} -> 1; _ -> 2 end, 1) end), "
    "Acc(K - 1); _ -> Acc(0) end end, Acc(%d), receive stop -> gen_tcp:close(L) end end), "
    "receive {many_listening, Lm} -> {ok, Lm} after 10000 -> timeout end."
)
# A client over 127.0.0.1: connect, send a numbered request, read its echo, close first.
MANY_CLIENT = (
    "Cl = fun(I) -> {ok, S} = gen_tcp:connect({127,0,0,1}, %d, [binary, {active, false}], 10000), "
    "D = <<I:32, (rand:bytes(%d))/binary>>, ok = gen_tcp:send(S, D), "
    "{ok, D} = gen_tcp:recv(S, byte_size(D), 10000), ok = gen_tcp:close(S) end, "
    "Seq = fun(N) -> T0 = erlang:monotonic_time(millisecond), "
    "Ok = length([I || I <- lists:seq(1, N), (catch Cl(I)) =:= ok]), "
    "{Ok, erlang:monotonic_time(millisecond) - T0} end, "
    "Par = fun(N) -> T0 = erlang:monotonic_time(millisecond), Me = self(), "
    "_ = [spawn(fun() -> Me ! {par, I, catch Cl(I)} end) || I <- lists:seq(1, N)], "
    "Ok = length([I || I <- lists:seq(1, N), "
    "receive {par, I, ok} -> true; {par, I, _} -> false after 30000 -> false end]), "
    "{Ok, erlang:monotonic_time(millisecond) - T0} end, ok."
)
MANY_SERVED = "{counters:get(Cn, 1), counters:get(Cn, 2)}."
MANY_STOP = "Srv ! stop, ok."


class _NetState:
    """One reading of MANY_STATE: fds, /proc/net/sockstat and /proc/net/memp."""

    def __init__(self, text: str, log: Path):
        m = re.fullmatch(r"\{(\d+),\[([\d,]*)\],\[([\d,]*)\]\}", text)
        nums = [int(x) for x in m.group(3).split(",")] if m and m.group(3) else []
        if not m or len(m.group(2).split(",")) != 6 or len(nums) != 4 * len(MANY_POOLS):
            raise UserError(f"the guest's counters read {text!r} (log: {log})")
        self.fds = int(m.group(1))
        self.used, self.inuse, self.orphan, self.tw, self.alloc, self.udp = (
            int(x) for x in m.group(2).split(",")
        )
        self.pool = {
            name: dict(zip(("used", "max", "avail", "err"), nums[4 * i : 4 * i + 4], strict=True))
            for i, name in enumerate(MANY_POOLS)
        }

    def live(self) -> dict:
        """What must return to its baseline: fds, sockets, TCP pcbs other than TIME_WAIT
        (listening, bound, active), orphans, UDP pcbs, every pool's use; TIME_WAIT aside:
        TCP_PCB's use less the TIME_WAIT pcbs, SYS_TIMEOUT's less lwIP's TCP timer, which
        runs while any pcb is in TIME_WAIT (the baseline has no TCP pcb)."""
        d = {"fds": self.fds, "sockets": self.used, "tcp inuse": self.inuse}
        d |= {"tcp orphans": self.orphan, "udp inuse": self.udp}
        d |= {f"{p} used": self.pool[p]["used"] for p in MANY_POOLS}
        d["TCP_PCB used"] -= self.tw
        d["SYS_TIMEOUT used"] -= 1 if self.tw else 0
        return d


def _many_host(port: int, first: int, n: int, failures: list) -> int:
    """`n` host connections through the hostfwd, all open at once: each opened, sent a
    numbered request and its echo read in turn (QEMU's hostfwd listener has a backlog of
    1: SYNs sent together are dropped by the host and retried after 1, 3, 7 s), then all
    closed together. How many were echoed; the others' reasons in `failures`."""
    conns: list[socket.socket] = []
    ok = 0
    try:
        for i in range(first, first + n):
            data = struct.pack(">I", i) + os.urandom(MANY_BYTES)
            got = b""
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=MANY_HOST_WAIT)
                conns.append(c)
                c.sendall(data)
                while len(got) < len(data):
                    chunk = c.recv(len(data) - len(got))
                    if not chunk:
                        break
                    got += chunk
            except OSError as e:
                failures.append(f"{i}: {e!r} after {len(got)} bytes")
                continue
            if got == data:
                ok += 1
            else:
                failures.append(f"{i}: {len(got)} bytes, not the echo")
    finally:
        for c in conns:
            c.close()
    return ok


@check("net-many", needs=NEEDS)
def net_many(planner: Planner) -> str:
    """Many short gen_tcp connections to a guest echo server ({backlog, 128}), each one a
    request, its echo and a close: MANY_SEQ sequential and MANY_PAR concurrent over
    127.0.0.1 in the guest, MANY_PAR open at once and MANY_HOST_SEQ sequential from the
    host through a hostfwd; every one answered. Nothing leaks: the runtime's own counts (open
    fds from /proc/self/fd, sockets and lwIP pcbs from /proc/net/sockstat, lwIP's pools
    from /proc/net/memp) first move with one listener, then, once the server is closed,
    return to their baseline within MANY_SETTLE s, TIME_WAIT pcbs aside (lwIP keeps the
    closing side's pcb 2 MSL, 120 s, and recycles the oldest when the pool is full); no
    pool ever failed an allocation (lwIP counts a TCP_PCB allocation that recycled a
    TIME_WAIT pcb as no failure)."""
    img = targets.image(planner, "beam")
    log = logs.run_log("net-many")
    host_fwd = _free_port()
    total = MANY_SEQ + 2 * MANY_PAR + MANY_HOST_SEQ
    cmd = img.command(forwards=[f"tcp:{host_fwd}:{MANY_PORT}"])
    with _net_shell(cmd, log) as shell:
        ev = functools.partial(_eval_match, shell, log)

        def state(expr: str = "Pr().") -> _NetState:
            lines = _eval(shell, expr).splitlines()
            if lines[-1:] != ["ok"]:
                raise UserError(f"reading the guest's counters printed {lines!r} (log: {log})")
            return _NetState(lines[0].strip(), log)

        base = state(MANY_STATE)
        ev(MANY_SERVER % (MANY_PORT, MANY_BYTES + 4, total), r"\{ok,#Port<[\d.]+>\}", "listener")
        one = state()
        moved = {"fds": one.fds - base.fds, "sockets": one.used - base.used}
        moved["TCP_PCB_LISTEN"] = (
            one.pool["TCP_PCB_LISTEN"]["used"] - base.pool["TCP_PCB_LISTEN"]["used"]
        )
        if moved != {"fds": 1, "sockets": 1, "TCP_PCB_LISTEN": 1}:
            raise UserError(f"one listener moved the counters by {moved}, not 1 each (log: {log})")
        ev(MANY_CLIENT % (MANY_PORT, MANY_BYTES), "ok", "the client")
        m = ev("Seq(%d)." % MANY_SEQ, r"\{(\d+),(\d+)\}", "sequential", 120)
        seq_ok, seq_ms = int(m.group(1)), int(m.group(2))
        m = ev("Par(%d)." % MANY_PAR, r"\{(\d+),(\d+)\}", "concurrent", 60)
        par_ok, par_ms = int(m.group(1)), int(m.group(2))
        if (seq_ok, par_ok) != (MANY_SEQ, MANY_PAR):
            raise UserError(
                f"127.0.0.1: {seq_ok}/{MANY_SEQ} sequential and {par_ok}/{MANY_PAR} concurrent "
                f"connections answered (log: {log})"
            )
        t0 = time.monotonic()
        failures: list = []
        host_par = _many_host(host_fwd, 0, MANY_PAR, failures)
        host_par_s = time.monotonic() - t0
        t0 = time.monotonic()
        host_seq = sum(
            _many_host(host_fwd, MANY_PAR + i, 1, failures) for i in range(MANY_HOST_SEQ)
        )
        host_seq_s = time.monotonic() - t0
        if (host_par, host_seq) != (MANY_PAR, MANY_HOST_SEQ):
            raise UserError(
                f"host: {host_par}/{MANY_PAR} open at once and {host_seq}/{MANY_HOST_SEQ} "
                f"sequential connections echoed; {failures[:5]} (log: {log})"
            )
        deadline = time.monotonic() + MANY_SETTLE
        while True:
            served = ev(MANY_SERVED, r"\{(\d+),(\d+)\}", "served")
            if int(served.group(1)) + int(served.group(2)) == total or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if (int(served.group(1)), int(served.group(2))) != (total, 0):
            raise UserError(
                f"the server saw {served.group(1)} clean closes and {served.group(2)} other "
                f"endings of {total} connections (log: {log})"
            )
        ev(MANY_STOP, "ok", "closing the listener")
        deadline = time.monotonic() + MANY_SETTLE
        while True:
            end = state()
            if end.live() == base.live() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        _halt(shell, 0)
    _no_fatal_lines(log)
    if end.live() != base.live():
        diff = {k: (base.live()[k], v) for k, v in end.live().items() if v != base.live()[k]}
        raise UserError(f"leaked after {total} connections, (before, after): {diff} (log: {log})")
    failed = {
        p: end.pool[p]["err"] - base.pool[p]["err"]
        for p in MANY_POOLS
        if end.pool[p]["err"] != base.pool[p]["err"]
    }
    if failed:
        raise UserError(f"lwIP pools ran out during the runs: {failed} (log: {log})")
    return (
        f"127.0.0.1: {MANY_SEQ} sequential in {seq_ms / 1000:.1f} s, {MANY_PAR} concurrent in "
        f"{par_ms / 1000:.2f} s; host: {MANY_PAR} open at once in {host_par_s:.2f} s, "
        f"{MANY_HOST_SEQ} sequential in {host_seq_s:.1f} s; back to baseline "
        f"({base.fds} fds, {base.used} sockets), {end.tw} pcbs in TIME_WAIT, TCP_PCB peak "
        f"{end.pool['TCP_PCB']['max']}/{end.pool['TCP_PCB']['avail']}"
    )


# net-lan: two nodes on one virtual LAN (chrysopolis/nodes.py), each its own MAC and address.
LAN_LINE = r"net: eth0 (\d+\.\d+\.\d+\.\d+)/(\d+) gw (\d+\.\d+\.\d+\.\d+) \(static\)"
LAN_NODES = (0, 1)
LAN_TCP_PORT = 7000  # each node's gen_tcp server (TCP_SERVER, one connection)
LAN_UDP_PORT = 7001  # each node's gen_udp socket
LAN_TCP_BYTES = 1024 * 1024
LAN_UDP_SIZES = (1, 1472, 8000)  # one byte, a full frame, a fragmented datagram
LAN_UDP_OPEN = (
    "{ok, U} = gen_udp:open(%d, [binary, {active, false}, {recbuf, 65536}, {buffer, 65536}]), "
    "inet:port(U)."
)
LAN_UDP_SEND = "[gen_udp:send(U, %s, %d, binary:copy(<<%d>>, Sz)) || Sz <- %s]."
LAN_UDP_RECV = (
    "[case gen_udp:recv(U, 0, 5000) of {ok, {Ip, Po, B}} -> "
    "{Ip, Po, byte_size(B), B =:= binary:copy(<<%d>>, byte_size(B))}; E -> E end || _ <- %s]."
)


def _erl_ip(addr: str) -> str:
    return "{" + addr.replace(".", ",") + "}"


@contextmanager
def _lan_nodes(planner: Planner, lan: str, ns: tuple[int, ...]) -> Iterator[list[tuple]]:
    """Nodes `ns` of LAN `lan` booted headless at once: (shell, settings) each, once every
    eth0 has its static address and every shell its prompt."""
    from contextlib import ExitStack

    from chrysopolis import nodes

    with ExitStack() as stack:
        booting = []
        for n in ns:
            node = nodes.settings(node=n, lan=lan)
            img, kw = stack.enter_context(nodes.attached(planner, "beam", node))
            s = stack.enter_context(qemu.boot(img.command(**kw), logs.run_log(f"net-lan-{n}")))
            booting.append((s, node))
        out = []
        for s, node in booting:
            s.expect(MARKERS["banner"], 180)
            m = s.expect(LAN_LINE, NET_BOUND)
            got = m.group(1).decode() + "/" + m.group(2).decode()
            if got != node.ip:
                raise UserError(
                    f"node {node.node} has eth0 {got}, expected {node.ip} (log: {s.log})"
                )
            shell = Shell(s)
            shell.wait_ready(120)
            out.append((shell, node))
        yield out


@check("net-lan", needs=NEEDS)
def net_lan(planner: Planner) -> str:
    """Two nodes on one virtual LAN (`run --lan L --node N`: -netdev dgram through the
    hub on 127.0.0.1): each boots with its own MAC (…:01, …:02, the hub sees frames from
    both) and static address (10.0.3.10/24, 10.0.3.11/24) and hostname (node0, node1); each
    node's gen_tcp client sends 1 MiB to the other's server (md5 equal), and gen_udp
    datagrams of 1, 1472 and 8000 bytes go each way with the sender's address and port."""
    from chrysopolis import nodes

    lan = f"check-{os.getpid()}"
    t0 = time.monotonic()
    with _lan_nodes(planner, lan, LAN_NODES) as [(sh0, n0), (sh1, n1)]:
        booted_in = time.monotonic() - t0
        pairs = ((sh0, n0, sh1, n1), (sh1, n1, sh0, n0))
        for sh, n in ((sh0, n0), (sh1, n1)):
            log = sh.session.log
            ev = functools.partial(_eval_match, sh, log)
            ev("inet:gethostname().", rf'\{{ok,"{n.hostname}"\}}', f"node {n.node}'s hostname")
            ev(TCP_SERVER % (LAN_TCP_PORT, 1), "listening", f"node {n.node}'s gen_tcp server")
            ev(TCP_CLIENT, r"#Fun<.*>", "the client")
            ev(LAN_UDP_OPEN % LAN_UDP_PORT, rf"\{{ok,{LAN_UDP_PORT}\}}", "gen_udp:open")
            ev(TCP_BIG_DATA % (LAN_TCP_BYTES // 1048576), str(LAN_TCP_BYTES), "the data")
        tcp_ms = []
        for sh, n, _peer_sh, peer in pairs:
            log = sh.session.log
            sent, echo, ms = _erl_triple(
                _eval(sh, f"Put({_erl_ip(peer.address)}, {LAN_TCP_PORT}, Big).", TCP_TIMEOUT)
            )
            if echo != f"{sent} {LAN_TCP_BYTES}":
                raise UserError(
                    f"gen_tcp node {n.node} -> node {peer.node}: sent md5 {sent}, the peer got "
                    f"{echo!r} (log: {log})"
                )
            tcp_ms.append(ms)
        sizes = "[" + ",".join(map(str, LAN_UDP_SIZES)) + "]"
        for sh, n, peer_sh, peer in pairs:
            _eval_match(
                sh,
                sh.session.log,
                LAN_UDP_SEND % (_erl_ip(peer.address), LAN_UDP_PORT, n.node, sizes),
                r"\[" + ",".join(["ok"] * len(LAN_UDP_SIZES)) + r"\]",
                f"gen_udp:send node {n.node} -> node {peer.node}",
            )
            ip = n.address.replace(".", ",")
            want = ",".join(rf"\{{\{{{ip}\}},{LAN_UDP_PORT},{sz},true\}}" for sz in LAN_UDP_SIZES)
            _eval_match(
                peer_sh,
                peer_sh.session.log,
                LAN_UDP_RECV % (n.node, sizes),
                rf"\[{want}\]",
                f"gen_udp node {n.node} -> node {peer.node}",
            )
        logs_ = [sh0.session.log, sh1.session.log]
        _halt(sh0, 0)
        _halt(sh1, 0)
    for log in logs_:
        _no_fatal_lines(log)
    hub_log = nodes.lan_dir(lan) / "hub.log"
    macs = set(re.findall(r"mac ([0-9a-f:]{17}) at", hub_log.read_text()))
    if macs != {n0.mac, n1.mac}:
        raise UserError(
            f"the hub saw frames from {sorted(macs)}, expected {n0.mac} and {n1.mac} "
            f"(log: {hub_log})"
        )
    shutil.rmtree(nodes.lan_dir(lan), ignore_errors=True)  # the hub exits by itself when idle
    return (
        f"both nodes up in {booted_in:.1f} s; macs {n0.mac}/{n1.mac}; 1 MiB gen_tcp "
        f"0->1 {tcp_ms[0]} ms, 1->0 {tcp_ms[1]} ms, md5 equal; gen_udp "
        f"{'/'.join(map(str, LAN_UDP_SIZES))} bytes both ways"
    )
