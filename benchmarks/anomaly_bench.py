"""One-class anomaly benchmark (Ruff et al. 2018 protocol) on MNIST with aekit, beside Deep SVDD.

    .venv/bin/python benchmarks/anomaly_bench.py --epochs 10 --out bench/anomaly.json

Same as `aekit anomaly-bench --dataset mnist --model conv-ae --epochs 10 --out bench/anomaly.json --markdown
table.md`; the markdown table (beside Deep SVDD) is what docs/benchmarks.md shows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aekit.anomaly import DEEP_SVDD_MNIST, benchmark_markdown, one_class_benchmark


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="conv-ae")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--score", default="recon")
    p.add_argument("--classes", default=None)
    p.add_argument("--out", default="bench/anomaly.json")
    a = p.parse_args()
    classes = [int(c) for c in a.classes.split(",")] if a.classes else None
    result = one_class_benchmark(a.dataset, a.model, a.epochs, classes, a.latent_dim, a.score, progress=False,
                                 log=lambda s: print(s, flush=True))
    md = benchmark_markdown(result, DEEP_SVDD_MNIST if a.dataset == "mnist" else None)
    print(md)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "markdown": md}, indent=2) + "\n")


if __name__ == "__main__":
    main()
