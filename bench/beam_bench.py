"""Erlang on seL4 against the same ERTS on Linux (qemu-aarch64 user mode), interleaved.

    python3 bench/beam_bench.py [ROUNDS]

Figures: QEMU start to the first shell prompt on seL4, and start to the result of `1 + 1.`
on the baseline; the CPU-bound workload W (200k-float sort plus a 10k-process ring, as
measured inside each guest with erlang:monotonic_time) on both and their ratio; the
smallest `-m` at which the seL4 shell still boots; image and disk sizes. Rounds alternate
the two systems so host noise hits both alike.
"""

import statistics
import sys
import time
from pathlib import Path

from chrysopolis import baseline, config, qemu, stages, targets
from chrysopolis.shell import Shell

W = ("W = fun() -> T0 = erlang:monotonic_time(millisecond), "
     "L = [rand:uniform() || _ <- lists:seq(1, 200000)], _ = lists:sort(L), Self = self(), "
     "First = lists:foldl(fun(_, Next) -> spawn(fun() -> receive M -> Next ! M end end) end, "
     "Self, lists:seq(1, 10000)), First ! token, receive token -> ok end, "
     "erlang:monotonic_time(millisecond) - T0 end, W().")


def sel4_round(img: targets.Image, ram: str | None = None, workload: bool = True):
    log = config.cache_dir() / "runs" / "bench.log"
    with qemu.boot(qemu.command(img.board, img.loader, img.disk, ram=ram), log) as s:
        shell = Shell(s)
        prompt = shell.wait_ready(300)
        w = int(shell.eval(W, timeout=600)) / 1000 if workload else None
    return prompt, w


def baseline_round():
    t0 = time.monotonic()
    assert baseline.evaluate(["1 + 1."]) == ["2"]
    first = time.monotonic() - t0
    w = int(baseline.evaluate([W])[0]) / 1000
    return first, w


def boots_with(img: targets.Image, ram: str) -> bool:
    try:
        sel4_round(img, ram, workload=False)
        return True
    except Exception:
        return False


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    planner = stages.Planner()
    planner.ensure("baseline")
    img = targets.image(planner, "beam")
    s_prompt, s_w, b_first, b_w = [], [], [], []
    for i in range(rounds):
        p, w = sel4_round(img)
        s_prompt.append(p)
        s_w.append(w)
        f, bw = baseline_round()
        b_first.append(f)
        b_w.append(bw)
        print(f"round {i + 1}: seL4 prompt {p:.2f} s, W {w:.2f} s | "
              f"baseline 1+1 {f:.2f} s, W {bw:.2f} s", flush=True)
    med = statistics.median
    print(f"\nmedian of {rounds}:")
    print(f"  seL4:     QEMU start to 1> prompt {med(s_prompt):.2f} s; W {med(s_w):.2f} s")
    print(f"  baseline: start to result of 1 + 1 {med(b_first):.2f} s; W {med(b_w):.2f} s")
    print(f"  W ratio seL4 / baseline: {med(s_w) / med(b_w):.2f}")
    smallest = None
    for ram in ("2G", "1536M", "1280M", "1G", "768M", "512M"):
        if not boots_with(img, ram):
            break
        smallest = ram
    print(f"  smallest -m reaching the seL4 shell (of 2G..512M): {smallest}")
    for f in (img.loader, img.dir / "beam_server.elf", img.disk):
        st = Path(f).stat()
        print(f"  {f.name}: {st.st_size / 2**20:.1f} MiB apparent, "
              f"{st.st_blocks * 512 / 2**20:.1f} MiB allocated")


if __name__ == "__main__":
    main()
