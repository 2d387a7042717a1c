"""One-class anomaly benchmark (Ruff et al. 2018 protocol) on MNIST with aekit, beside Deep SVDD.

    .venv/bin/python benchmarks/anomaly_bench.py --epochs 10

is `aekit anomaly-bench --dataset mnist --model conv-ae --epochs 10 --out bench/anomaly.json --markdown
bench/anomaly.md`: every option of that command is taken (``--model``, ``--classes 0,5``, ``--score``, ...),
and the two output files default to ``bench/``. The markdown table is what docs/benchmarks.md shows.
"""

from __future__ import annotations

import sys

from aekit.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    defaults = {"--out": "bench/anomaly.json", "--markdown": "bench/anomaly.md"}
    extra = [x for k, v in defaults.items() if not any(a == k or a.startswith(k + "=") for a in args) for x in (k, v)]
    sys.exit(main(["anomaly-bench", *args, *extra]))
