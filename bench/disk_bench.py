# SPDX-License-Identifier: BSD-2-Clause
"""Disk-image build time and size for the full OTP tree (the `otp` stage's root/).

Usage: python3 bench/disk_bench.py [runs]   (builds the `otp` stage first if needed)
Prints, per cluster size: median and min build time, apparent and allocated image size.
"""

import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from chrysopolis import disk, sources
from chrysopolis.cache import Planner
from chrysopolis.stages import otp


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    planner = Planner()
    stage_out = planner.ensure("otp")
    root = stage_out / "root"
    lk = planner.lock
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        otp.make_tree(
            sources.require(lk.source("otp-debs")),
            sources.require(lk.source("otp")),
            Path(tmp) / "root",
        )
        print(
            f"otp tree layout (make_tree, versions checked, boot generated): {time.monotonic() - t0:.3f} s"
        )
    files = [p for p in root.rglob("*") if p.is_file()]
    print(f"OTP tree: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.2f} MB")
    for cluster in (4096, 512):
        times, digests = [], set()
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(runs):
                t0 = time.monotonic()
                info = disk.build_disk(root, Path(tmp) / f"otp{i}.img", cluster_bytes=cluster)
                times.append(time.monotonic() - t0)
                digests.add(hashlib.sha256(info.image.read_bytes()).hexdigest())
                allocated = info.image.stat().st_blocks * 512
        print(
            f"cluster {cluster:5d} B: build median {statistics.median(times):.3f} s, min {min(times):.3f} s "
            f"({runs} runs); image {info.size_bytes / 2**20:.0f} MiB apparent, {allocated / 2**20:.1f} MiB "
            f"allocated (sparse); identical across runs: {len(digests) == 1}"
        )


if __name__ == "__main__":
    main()
