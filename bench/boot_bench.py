# SPDX-License-Identifier: BSD-2-Clause
"""Boot time of built images side by side, with both Linux VMs, interleaved.

    python3 bench/boot_bench.py ROUNDS NAME=DIR [NAME=DIR ...]

Each DIR is a built image directory (its run.json), e.g. `out/beam`, or the same target built
from another checkout or with one lever undone. Every round boots each image (on a private
copy of its disk) and the two Linux VMs of stage linux-vm (OTP in its initramfs, and OTP on
the first image's FAT disk over virtio-blk), in turn, so host noise hits them alike. Figures
per system: QEMU start to beam_server's hand-off to ERTS, and to the first shell prompt;
medians, each image against both VMs, and each image against the one before it (in the
order given: the seconds a lever saved).
"""

import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from chrysopolis import cache, config, logs, qemu, targets
from chrysopolis.shell import Shell
from chrysopolis.stages import linux_vm


def sel4_round(img: targets.Image, disk: Path) -> tuple[float, float]:
    with qemu.boot(img.command(disk), logs.run_log("boot-bench")) as s:
        s.expect(img.markers["handoff"], 300)
        handoff = s.elapsed()
        return handoff, Shell(s).wait_ready(300)


def main() -> None:
    if len(sys.argv) < 3 or not sys.argv[1].isdigit() or "=" not in "".join(sys.argv[2:]):
        sys.exit("usage: python3 bench/boot_bench.py ROUNDS NAME=DIR [NAME=DIR ...]")
    rounds = int(sys.argv[1])
    images = {
        n: targets.from_dir(Path(d).resolve()) for n, d in (a.split("=", 1) for a in sys.argv[2:])
    }
    cache.Planner().ensure("linux-vm")
    tmp = Path(tempfile.mkdtemp(prefix="boot-bench-", dir=config.cache_dir() / "runs"))
    try:
        disks = {}
        for n, img in images.items():  # QEMU write-locks a disk: private copies
            disks[n] = tmp / f"{n}.img"
            subprocess.run(["cp", "--sparse=always", str(img.disk), str(disks[n])], check=True)
        run(rounds, images, disks)
    finally:
        shutil.rmtree(tmp)


def run(rounds: int, images: dict, disks: dict) -> None:
    first = next(iter(images))
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in images}
    vm, fat_vm = [], []
    for i in range(rounds):
        for n, img in images.items():
            times[n].append(sel4_round(img, disks[n]))
        with linux_vm.booted(log_name="boot-bench-linux-vm") as sh:
            vm.append(sh.ready_at)
        img = images[first]
        with linux_vm.booted(
            log_name="boot-bench-linux-vm-fat", disk=disks[first], disk_bus=img.disk_bus
        ) as sh:
            fat_vm.append(sh.ready_at)
        cells = [f"{n} {t[-1][0]:.2f}/{t[-1][1]:.2f}" for n, t in times.items()]
        print(
            f"round {i + 1}: "
            + " | ".join(cells)
            + f" | initramfs VM {vm[-1]:.2f} | FAT VM {fat_vm[-1]:.2f}",
            flush=True,
        )
    med = statistics.median
    vm_m, fat_m = med(vm), med(fat_vm)
    print(
        f"\nmedians of {rounds} (s: QEMU start to the hand-off, hand-off to the prompt, QEMU start to the prompt):"
    )
    print(f"  Linux VM, OTP in its initramfs:   prompt {vm_m:.2f}")
    print(f"  Linux VM, OTP on the FAT disk:    prompt {fat_m:.2f}")
    before = None
    for n, t in times.items():
        h, p, e = med(x[0] for x in t), med(x[1] for x in t), med(x[1] - x[0] for x in t)
        saved = f"; {before - p:.2f} s less than the one before" if before is not None else ""
        print(
            f"  {n:<32}  hand-off {h:.2f}, ERTS start {e:.2f}, prompt {p:.2f}; "
            f"/ initramfs VM {p / vm_m:.2f}, / FAT VM {p / fat_m:.2f}{saved}"
        )
        before = p


if __name__ == "__main__":
    main()
