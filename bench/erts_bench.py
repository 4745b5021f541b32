# SPDX-License-Identifier: BSD-2-Clause
"""ERTS figures: cold and cached stage times, archive sizes, baseline boot-to-result.

Cold builds run in a private cache (the source store is shared read-only through a
symlink), so the user's cache is neither used nor disturbed. The OTP tree for the boot
comes from the user's cache (`otp` stage). Usage: python bench/erts_bench.py [--runs N]
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

from chrysopolis import baseline, cache, config

ARCHIVES = (
    "libbeam.a",
    "libepcre.a",
    "libz.a",
    "libethread.a",
    "liberts_internal_r.a",
    "libryu.a",
    "libzstd.a",
)


def build(stage: str, cache_dir: Path) -> float:
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "chrysopolis", "build", stage],
        check=True,
        env={**os.environ, "CHRYSOPOLIS_CACHE": str(cache_dir)},
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - t0


def stage_out(stage: str, cache_dir: Path) -> Path:
    outs = [
        p
        for p in (cache_dir / "stages" / stage).iterdir()
        if p.is_dir() and not p.name.startswith(".")
    ]
    assert len(outs) == 1, outs
    return outs[0]


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="baseline boots to take the median of")
    args = ap.parse_args()
    root = cache.Planner().ensure("otp") / "root"
    with tempfile.TemporaryDirectory(prefix="erts-bench-") as tmp:
        tmp_cache = Path(tmp)
        (tmp_cache / "sources").symlink_to(config.cache_dir() / "sources")
        print(f"cold musl stage:     {build('musl', tmp_cache):6.1f} s")
        print(f"cold erts stage:     {build('erts', tmp_cache):6.1f} s  (musl built)")
        print(f"cold baseline stage: {build('baseline', tmp_cache):6.1f} s  (link beam.smp)")
        print(
            f"cached erts build:   {build('erts', tmp_cache):6.1f} s  (whole `chrysopolis build erts`)"
        )

        lib = stage_out("erts", tmp_cache) / "lib"
        stripped = tmp_cache / "stripped"
        stripped.mkdir()
        total = total_stripped = 0
        for name in ARCHIVES:
            shutil.copy2(lib / name, stripped / name)
            subprocess.run(["llvm-objcopy-19", "--strip-debug", str(stripped / name)], check=True)
            size, small = (lib / name).stat().st_size, (stripped / name).stat().st_size
            total, total_stripped = total + size, total_stripped + small
            print(f"  {name:22} {mib(size):>10} with -g, {mib(small):>10} without debug info")
        both = f"{mib(total):>10} with -g, {mib(total_stripped):>10} without debug info"
        print(f"  {'all archives':22} {both}")
        beam = stage_out("baseline", tmp_cache) / "bin" / "beam.smp"
        print(f"  {'beam.smp (static)':22} {mib(beam.stat().st_size):>10} with -g")

        times = []
        for _ in range(args.runs):
            results, _, elapsed = baseline.run(beam, root, ["1 + 1."])
            assert results == ["2"], results
            times.append(elapsed)
        print(
            f"baseline `1 + 1.` start to result and exit: median {statistics.median(times):.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in times)}) under qemu-aarch64-static"
        )


if __name__ == "__main__":
    main()
