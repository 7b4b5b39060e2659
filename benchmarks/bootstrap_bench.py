"""Time a cold and a warm bootstrap of a requirement set; print wall time and where it went.

    python benchmarks/bootstrap_bench.py -r collections/stevedore-requirements.txt \
        -c collections/stevedore-constraints.txt [--repeat 3] [--out bench-out]

Cold: a fresh output directory (nothing downloaded, nothing built). Warm: the same command again
on that directory. Each run is a separate process, as a user would run it; the phase times come
from the engine's own accounting (summed over parallel jobs, so they can exceed the wall time).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one_run(args: list[str], out: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "fromager_dagster", "bootstrap", *args, "-O", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bootstrap failed:\n{proc.stderr}")
    spent = re.search(r"time spent \(summed over jobs\): (.*)", proc.stderr)
    return wall, spent.group(1) if spent else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", nargs="*")
    parser.add_argument("-r", dest="files", action="append", default=[])
    parser.add_argument("-c", dest="constraints", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    ns = parser.parse_args()
    args = [*ns.requirements]
    for f in ns.files:
        args += ["-r", f]
    for c in ns.constraints:
        args += ["-c", c]
    cold, warm = [], []
    for i in range(ns.repeat):
        out = ns.out / f"run{i}"
        shutil.rmtree(out, ignore_errors=True)
        wall, spent = one_run(args, out)
        cold.append(wall)
        print(f"cold #{i + 1}: {wall:5.2f} s wall; {spent}")
        wall, spent = one_run(args, out)
        warm.append(wall)
        print(f"warm #{i + 1}: {wall:5.2f} s wall; {spent}")
    print(
        f"median cold {statistics.median(cold):.2f} s, median warm {statistics.median(warm):.2f} s"
    )


if __name__ == "__main__":
    main()
