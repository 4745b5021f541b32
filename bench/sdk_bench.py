# SPDX-License-Identifier: BSD-2-Clause
"""Benchmark: cold `sdk` stage, no-op `chrysopolis build hello`, hello boot time.

Runs in a private cache (the sel4 and microkit sources imported from the user's store),
so the cold figure really is cold and the user's cache is left alone.

    python bench/sdk_bench.py [--runs N]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chrysopolis import boards, lock, sources

GOAL_NOOP_S = 2.0


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed:\n{r.stdout}{r.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions of the warm figures")
    args = ap.parse_args()

    lk = lock.load()
    stored = {n: sources.require(lk.source(n)) for n in ("sel4", "microkit")}
    tmp = Path(tempfile.mkdtemp(prefix="chrysopolis-bench-"))
    env = {
        **os.environ,
        "CHRYSOPOLIS_CACHE": str(tmp / "cache"),
        "CHRYSOPOLIS_OUT": str(tmp / "out"),
    }
    try:
        for name, path in stored.items():
            timed(["chrysopolis", "sources", "import", name, str(path)], env)

        cold_sdk = timed(["chrysopolis", "build", "sdk"], env)
        first_hello = timed(["chrysopolis", "build", "hello"], env)
        noop = [timed(["chrysopolis", "build", "hello"], env) for _ in range(args.runs)]

        os.environ.update(CHRYSOPOLIS_CACHE=env["CHRYSOPOLIS_CACHE"])
        from chrysopolis.cache import Planner
        from chrysopolis.targets.hello import boot_time

        boots = [boot_time(Planner()) for _ in range(args.runs)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"cold sdk stage (C parts for {len(boards.CONFIGS)} configs, tool): {cold_sdk:.1f} s")
    print(f"first build hello (on a built sdk): {first_hello:.2f} s")
    med = statistics.median(noop)
    verdict = "ok" if med < GOAL_NOOP_S else f"OVER the {GOAL_NOOP_S:.0f} s goal"
    print(
        f"no-op build hello, median of {len(noop)}: {med:.2f} s "
        f"(runs {', '.join(f'{x:.2f}' for x in noop)}) {verdict}"
    )
    boot = statistics.median(boots)
    print(
        f"hello boot, QEMU start to marker, median of {len(boots)}: {boot:.2f} s "
        f"(runs {', '.join(f'{x:.2f}' for x in boots)})"
    )


if __name__ == "__main__":
    main()
