"""Wall time of `aekit demo` (what `make demo` runs once .venv exists), end to end, into a fresh run folder.

    .venv/bin/python benchmarks/demo_time.py [--repeats 1] [--out /tmp/demo-bench]

Issue 13's goal: the demo shows the product at its best in <= 3 minutes on 2 CPU cores. Each repeat starts a
new process (imports included, as a user's `make demo` does) and deletes the run folder first, so nothing is
re-used. Prints the seconds of each repeat, the test metrics the demo printed, and the median.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default="/tmp/demo-bench", help="run folder (deleted before each repeat)")
    args = p.parse_args()
    aekit = Path(sys.executable).with_name("aekit")
    times = []
    for r in range(args.repeats):
        shutil.rmtree(args.out, ignore_errors=True)
        t0 = time.perf_counter()
        res = subprocess.run([str(aekit), "demo", "--out", args.out], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if res.returncode != 0:
            print(res.stdout[-2000:], res.stderr[-2000:], sep="\n")
            return res.returncode
        times.append(seconds)
        metrics = res.stdout.split("test metrics:")[-1].split("report:")[0].split()
        print(f"repeat {r + 1}: {seconds:.1f} s  test metrics: {' '.join(metrics)}", flush=True)
    print(f"median {statistics.median(times):.1f} s over {len(times)} repeat(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
