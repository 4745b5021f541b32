# SPDX-License-Identifier: BSD-2-Clause
"""Erlang on seL4 against the same ERTS on Linux, in the same QEMU and in user mode, interleaved.

    python3 bench/beam_bench.py [ROUNDS]

Four systems run the same emulator objects and .beam files: the seL4 image; Debian's arm64
kernel booted in the same qemu-system-aarch64 with the same machine flags and ERTS
arguments (stage linux-vm, softmmu for both), once with OTP in an initramfs in RAM (the
"initramfs VM") and once reading OTP from the seL4 image's own FAT disk over virtio-blk
(the "FAT VM": option otp_from="disk", the partition mounted read-only, the same private
copy of the disk seL4 boots, on the same virtio-mmio bus); and the static beam.smp under
qemu-aarch64 user mode (no softmmu: it flatters Linux).
Figures: QEMU start to the first shell prompt on seL4 and on both VMs, and start to the
result of `1 + 1.` on the user-mode baseline; the CPU-bound workload W (200k-float sort plus
a 10k-process ring, as measured inside each guest with erlang:monotonic_time) on all four;
the ratios of seL4 to each VM, prompt and W; the smallest `-m` at which the seL4 and the
initramfs VM shells still boot; image and disk sizes. Rounds alternate the systems, each
QEMU system first in turn, so host noise hits them alike.
"""

import dataclasses
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chrysopolis import baseline, cache, config, logs, qemu, targets
from chrysopolis.shell import Shell
from chrysopolis.stages import linux_vm

W = (
    "W = fun() -> T0 = erlang:monotonic_time(millisecond), "
    "L = [rand:uniform() || _ <- lists:seq(1, 200000)], _ = lists:sort(L), Self = self(), "
    "First = lists:foldl(fun(_, Next) -> spawn(fun() -> receive M -> Next ! M end end) end, "
    "Self, lists:seq(1, 10000)), First ! token, receive token -> ok end, "
    "erlang:monotonic_time(millisecond) - T0 end, W()."
)


HANDOFFS: list[float] = []  # QEMU start to beam_server's hand-off to ERTS, per seL4 round


def sel4_round(img: targets.Image, workload: bool = True):
    log = logs.run_log("bench")
    with qemu.boot(img.command(), log) as s:
        s.expect(img.markers["handoff"], 300)
        HANDOFFS.append(s.elapsed())
        shell = Shell(s)
        prompt = shell.wait_ready(300)
        w = int(shell.eval(W, timeout=600)) / 1000 if workload else None
    return prompt, w


def linux_vm_round():
    with linux_vm.booted(log_name="bench-linux-vm") as shell:
        return shell.ready_at, int(shell.eval(W, timeout=600)) / 1000


def fat_vm_round(img: targets.Image):
    """The Linux VM with OTP on `img`'s disk (the bench's private copy), on its disk bus."""
    with linux_vm.booted(log_name="bench-linux-vm-fat", disk=img.disk, disk_bus=img.disk_bus) as sh:
        return sh.ready_at, int(sh.eval(W, timeout=600)) / 1000


def baseline_round():
    t0 = time.monotonic()
    assert baseline.evaluate(["1 + 1."]) == ["2"]
    first = time.monotonic() - t0
    w = int(baseline.evaluate([W])[0]) / 1000
    return first, w


def vm_boots_with(ram: str) -> bool:
    try:
        with linux_vm.booted(ram, log_name="bench-linux-vm", timeout=120):
            return True
    except Exception:
        return False


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    planner = cache.Planner()
    planner.ensure("baseline")
    vm = planner.ensure("linux-vm")
    fat_vm = cache.Planner(options={"linux-vm": {"otp_from": "disk"}}).ensure("linux-vm")
    img = targets.image(planner, "beam")
    # A private disk: QEMU write-locks its disk, and others may boot the cached image meanwhile.
    tmp = Path(tempfile.mkdtemp(prefix="beam-bench-", dir=config.cache_dir() / "runs"))
    subprocess.run(["cp", "--sparse=always", str(img.disk), str(tmp / "disk.img")], check=True)
    try:
        run(rounds, img, dataclasses.replace(img, disk=tmp / "disk.img"), vm, fat_vm)
    finally:
        shutil.rmtree(tmp)


def run(rounds: int, img: targets.Image, booted: targets.Image, vm: Path, fat_vm: Path) -> None:
    s_prompt, s_w, l_prompt, l_w, f_prompt, f_w, b_first, b_w = ([] for _ in range(8))
    # The three QEMU systems take turns to go first, after the last round's user-mode run: a
    # system booted right after it was measured slower (seL4's hand-off 0.19 s in the first
    # round, 0.40 s after), so each one gets that place once in three rounds.
    systems = [
        lambda: (s_prompt, s_w, sel4_round(booted)),
        lambda: (l_prompt, l_w, linux_vm_round()),
        # The same disk seL4 boots (its writes go to a throw-away overlay).
        lambda: (f_prompt, f_w, fat_vm_round(booted)),
    ]
    for i in range(rounds):
        for k in range(len(systems)):
            prompts, ws, (prompt, w) = systems[(i + k) % len(systems)]()
            prompts.append(prompt)
            ws.append(w)
        p, w, lp, lw, fp, fw = s_prompt[-1], s_w[-1], l_prompt[-1], l_w[-1], f_prompt[-1], f_w[-1]
        f, bw = baseline_round()
        b_first.append(f)
        b_w.append(bw)
        print(
            f"round {i + 1}: seL4 prompt {p:.2f} s (hand-off {HANDOFFS[-1]:.2f} s), W {w:.2f} s | "
            f"initramfs VM prompt {lp:.2f} s, W {lw:.2f} s | "
            f"FAT VM prompt {fp:.2f} s, W {fw:.2f} s | "
            f"baseline 1+1 {f:.2f} s, W {bw:.2f} s",
            flush=True,
        )
    med = statistics.median
    print(f"\nmedian of {rounds}:")
    print(
        f"  seL4:         QEMU start to 1> prompt {med(s_prompt):.2f} s "
        f"(to the hand-off to ERTS {med(HANDOFFS):.2f} s); W {med(s_w):.2f} s"
    )
    print(f"  initramfs VM: QEMU start to 1> prompt {med(l_prompt):.2f} s; W {med(l_w):.2f} s")
    print(f"  FAT VM:       QEMU start to 1> prompt {med(f_prompt):.2f} s; W {med(f_w):.2f} s")
    print(f"  user mode:    start to result of 1 + 1 {med(b_first):.2f} s; W {med(b_w):.2f} s")
    print(
        f"  prompt ratio seL4 / initramfs VM: {med(s_prompt) / med(l_prompt):.2f}; "
        f"seL4 / FAT VM: {med(s_prompt) / med(f_prompt):.2f}"
    )
    print(
        f"  W ratio seL4 / initramfs VM: {med(s_w) / med(l_w):.2f}; "
        f"seL4 / FAT VM: {med(s_w) / med(f_w):.2f}; "
        f"seL4 / user mode: {med(s_w) / med(b_w):.2f}; "
        f"initramfs VM / user mode: {med(l_w) / med(b_w):.2f}"
    )
    # seL4's memory map is fixed when the SDK is built (QEMU's DTB for the image's RAM).
    print(f"  -m the seL4 shell boots with: {img.ram} (the image's, fixed by its SDK build)")
    smallest = None
    for ram in ("2G", "1G", "512M", "256M", "128M", "96M", "64M"):
        if not vm_boots_with(ram):
            break
        smallest = ram
    print(f"  smallest -m reaching the initramfs VM shell (of 2G..64M): {smallest}")
    for f in (img.loader, img.dir / "beam_server.elf", img.disk):
        st = Path(f).stat()
        print(
            f"  {f.name}: {st.st_size / 2**20:.1f} MiB apparent, "
            f"{st.st_blocks * 512 / 2**20:.1f} MiB allocated"
        )
    for f in (vm / linux_vm.KERNEL, vm / linux_vm.INITRD):
        print(f"  initramfs VM {f.name}: {f.stat().st_size / 2**20:.1f} MiB")
    print(
        f"  FAT VM {linux_vm.INITRD}: {(fat_vm / linux_vm.INITRD).stat().st_size / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
