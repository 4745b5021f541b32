# SPDX-License-Identifier: BSD-2-Clause
"""Recovery: from a PD's fault to its service again, and the node's own restart, interleaved.

    python3 bench/recovery_bench.py [ROUNDS]

Per round:
- one boot of a fault injection image of `beam` whose supervisor crashes each driver and
  server in turn, 6 s apart, while the shell is idle. For each: the supervisor's fault to
  `SUP|up` (its own clock), and the host's view from the fault line to the answer of an
  expression that needs that PD (a timer, a console round trip, a file read);
- the node's own end (`erlang:halt(abort).` on the default image): the supervisor's exit
  line to the fresh node's `1>`;
- the Linux VM (stage linux-vm, the same QEMU), QEMU start to its shell prompt: what a
  restart costs where the answer to a dead node is a reboot.
"""

import statistics
import sys
import time

from chrysopolis import cache, logs, qemu, targets
from chrysopolis.shell import Shell
from chrysopolis.stages import linux_vm
from chrysopolis.targets import beam_recovery as rec

FIRST_MS = 30000  # the first crash, well after the prompt
GAP_MS = 6000
PROBE_FILE = "/probe.bin"
FILE_PROBE = f'byte_size(element(2, file:read_file("{PROBE_FILE}"))).'
# An expression that needs the PD, and what it answers.
PROBES = {
    "timer_driver": ("timer:sleep(1), slept.", "slept"),
    "serial_driver": ("echoed.", "echoed"),
    "serial_virt_tx": ("echoed.", "echoed"),
    "serial_virt_rx": ("echoed.", "echoed"),
    "blk_driver": (FILE_PROBE, "65536"),
    "blk_virt": (FILE_PROBE, "65536"),
    "fatfs": (FILE_PROBE, "65536"),
}


def drivers_round(img: targets.Image) -> dict[str, tuple[float, float]]:
    """{PD: (fault to SUP|up in ms, fault line to the probe's answer in ms)}."""
    out = {}
    with qemu.boot(img.command(), logs.run_log("bench-recovery")) as s:
        shell = Shell(s)
        shell.wait_ready()
        shell.eval(f'file:write_file("{PROBE_FILE}", rand:bytes(65536)).')
        for pd, (expr, want) in PROBES.items():
            s.expect(rec.FAULT_LINE.format(pd=pd), FIRST_MS / 1000 + 120)
            t0 = time.monotonic()
            up = float(s.expect(rec.UP_LINE.format(pd=pd), 30).group(2))
            got = shell.eval(expr, timeout=60)
            if got != want:
                raise SystemExit(f"{pd}: the probe {expr} answered {got!r}, not {want}")
            out[pd] = (up, (time.monotonic() - t0) * 1000)
    return out


def beam_round(img: targets.Image) -> float:
    """The node's abort to the fresh node's prompt, in s."""
    with qemu.boot(img.command(), logs.run_log("bench-recovery-beam")) as s:
        Shell(s).wait_ready()
        s.send("erlang:halt(abort).\r")
        s.expect(rec.EXIT_LINE, 60)
        t0 = time.monotonic()
        s.expect(r"\n1> ", 120)
        return time.monotonic() - t0


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    crashes = ",".join(f"{pd}:{FIRST_MS + GAP_MS * i}" for i, pd in enumerate(PROBES))
    injected = targets.image(rec._planner(crashes), "beam")
    plain = targets.image(cache.Planner(), "beam")
    cache.Planner().ensure("linux-vm")
    drivers: list[dict[str, tuple[float, float]]] = []
    beams, vms = [], []
    for n in range(1, rounds + 1):
        drivers.append(drivers_round(injected))
        beams.append(beam_round(plain))
        with linux_vm.booted(log_name="bench-recovery-linux-vm") as vm:
            vms.append(vm.ready_at)
        worst = max(served for _, served in drivers[-1].values())
        print(
            f"round {n}: slowest PD back to service {worst:.0f} ms, node restart "
            f"{beams[-1]:.2f} s, Linux VM prompt {vms[-1]:.2f} s",
            flush=True,
        )
    med = statistics.median
    print(f"\nmedian of {rounds} rounds (range)")
    print(f"{'PD':16} {'fault to SUP|up':>22} {'fault to served (host)':>28}")
    for pd in PROBES:
        ups = [r[pd][0] for r in drivers]
        served = [r[pd][1] for r in drivers]
        print(
            f"{pd:16} {med(ups):8.1f} ms ({min(ups):.1f}-{max(ups):.1f}) "
            f"{med(served):10.0f} ms ({min(served):.0f}-{max(served):.0f})"
        )
    print(
        f"beam_server: abort to a fresh 1>     {med(beams):6.2f} s ({min(beams):.2f}-{max(beams):.2f})"
    )
    print(f"Linux VM: QEMU start to its prompt   {med(vms):6.2f} s ({min(vms):.2f}-{max(vms):.2f})")


if __name__ == "__main__":
    main()
