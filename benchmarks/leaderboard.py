"""The MNIST leaderboard: ``aekit bench`` over every registered family at a 16-d code.

Runs the CLI in-process with torch limited to ``--threads`` (1 on the shared 2-core machine: two threads per
process oversubscribe the cores when several jobs run). Extra arguments go to ``aekit bench``.

    flock /tmp/aekit-heavy.lock python benchmarks/leaderboard.py --epochs 3 --max-train-samples 20000 \
        --out bench/mnist-z16
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    threads = 1
    if "--threads" in argv:
        i = argv.index("--threads")
        threads = int(argv[i + 1])
        del argv[i : i + 2]
    import torch

    torch.set_num_threads(threads)
    from aekit.cli import main as aekit

    defaults = ["--dataset", "mnist", "--models", "ae,deep-ae,conv-ae,dae,sparse-ae,vae,conv-vae,beta-vae",
                "--latent-dim", "16"]
    given = {a for a in argv if a.startswith("--")}
    for flag, value in zip(defaults[::2], defaults[1::2]):
        if flag not in given:
            argv += [flag, value]
    return aekit(["bench", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
