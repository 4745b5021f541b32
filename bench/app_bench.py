# SPDX-License-Identifier: BSD-2-Clause
"""Your application on seL4: the edit-build loop and the boot into it, interleaved.

    python3 bench/app_bench.py [ROUNDS]

Per round: a one-line change to a copy of examples/kvstore, then `chrysopolis build --app`
on it with everything else cached (the goal: under 10 s); QEMU start to the application's
first output line and to its listener (`kvstore: listening`) on the seL4 image; and, for
scale, QEMU start to the Linux VM's shell prompt (stage linux-vm, the same QEMU; it boots
no release: OTP's own start).
"""

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chrysopolis import apps, cache, config, logs, qemu, targets
from chrysopolis.stages import linux_vm

EXAMPLE = config.ROOT / "examples" / "kvstore"
FIRST = r"kvstore: store up"
LISTENING = r"kvstore: listening on TCP port"


def build_round(app: Path, n: int) -> float:
    src = app / "src" / "kvstore_app.erl"
    text = src.read_text()
    marker = "%% bench edit"
    lines = [ln for ln in text.splitlines() if not ln.startswith(marker)]
    src.write_text("\n".join([*lines, f"{marker} {n}"]) + "\n")
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "chrysopolis", "build", "--app", str(app)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"build --app failed:\n{r.stderr}")
    return time.monotonic() - t0


def boot_round(img: targets.Image) -> tuple[float, float]:
    with qemu.boot(img.command(), logs.run_log("bench-app")) as s:
        s.expect(FIRST, 300)
        first = s.elapsed()
        s.expect(LISTENING, 60)
        return first, s.elapsed()


def linux_vm_round() -> float:
    with linux_vm.booted(log_name="bench-app-linux-vm") as shell:
        return shell.ready_at


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    planner = cache.Planner()
    plain = targets.image(planner, "beam")
    img = apps.image(plain, apps.build(planner, plain, [EXAMPLE]))
    planner.ensure("linux-vm")
    builds, firsts, listens, vms = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "kvstore"
        shutil.copytree(EXAMPLE, app)
        build_round(app, 0)  # the first build of the copy compiles every module
        for n in range(1, rounds + 1):
            builds.append(build_round(app, n))
            first, listening = boot_round(img)
            firsts.append(first)
            listens.append(listening)
            vms.append(linux_vm_round())
            print(
                f"round {n}: build {builds[-1]:.2f} s, seL4 first output {first:.2f} s, "
                f"listening {listening:.2f} s, Linux VM prompt {vms[-1]:.2f} s",
                flush=True,
            )
    med = statistics.median
    print(f"\nmedian of {rounds} rounds")
    print(f"one-line change to a new image (build --app)      {med(builds):6.2f} s")
    print(f"seL4: QEMU start to the app's first output        {med(firsts):6.2f} s")
    print(f"seL4: QEMU start to its TCP listener              {med(listens):6.2f} s")
    print(f"Linux VM: QEMU start to the shell prompt           {med(vms):6.2f} s")


if __name__ == "__main__":
    main()
