# SPDX-License-Identifier: BSD-2-Clause
"""Cold build time of the LionsOS stack stages, and the system generation time.

Usage: python3 bench/lionsos_bench.py [runs]
Builds `sdk` and `musl` in the normal cache if needed, then, per run, builds lionsos-libc,
libmicrokitco-fat/-beam, sddf and fatfs cold in a throwaway cache that shares the sources
and those two stages (symlinked under their keys). Prints the median per stage.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from chrysopolis import config, system
from chrysopolis.cache import Planner

SHARED = ("sdk", "musl")
STAGES = ("lionsos-libc", "libmicrokitco-fat", "libmicrokitco-beam", "sddf", "fatfs")


def cold_run(shared: dict[str, Path]) -> dict[str, float]:
    real_sources = config.cache_dir() / "sources"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHRYSOPOLIS_CACHE"] = tmp
        try:
            (Path(tmp) / "sources").symlink_to(real_sources)
            planner = Planner()
            for name, out in shared.items():
                link = planner.out_path(name)
                link.parent.mkdir(parents=True)
                link.symlink_to(out)
            times = {}
            for name in STAGES:
                t0 = time.monotonic()
                planner.ensure(name)
                times[name] = time.monotonic() - t0
            return times
        finally:
            del os.environ["CHRYSOPOLIS_CACHE"]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    planner = Planner()
    shared = {n: planner.ensure(n) for n in SHARED}
    results = [cold_run(shared) for _ in range(runs)]
    for name in STAGES:
        ts = [r[name] for r in results]
        print(f"{name:20s} cold build median {statistics.median(ts):.2f} s, min {min(ts):.2f} s")
    total = [sum(r.values()) for r in results]
    jobs = os.cpu_count()
    print(f"{'all five':20s} median {statistics.median(total):.2f} s ({runs} runs, -j{jobs})")
    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for _ in range(runs):
            t0 = time.monotonic()
            system.generate(Path(tmp))
            times.append(time.monotonic() - t0)
    print(f"{'system.generate':20s} median {statistics.median(times):.3f} s (sdfgen, dtc, blobs)")


if __name__ == "__main__":
    main()
