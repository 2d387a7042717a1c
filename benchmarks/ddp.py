"""Several processes against one: the same training with the same global batch, compared metric by metric and
weight by weight.

    python benchmarks/ddp.py [--dataset digits] [--samples 1400] [--epochs 3] [--batch 64] [--out DIR]
                             [--launchers lightning,torchrun,nodes]

The reference is one process with ``--batch-size B``; each other run has two processes with ``--batch-size B/2``
(``--batch-size`` is per process), started by

- ``lightning``: ``aekit train --devices 2 --strategy ddp`` (Lightning starts the second process itself);
- ``torchrun``: ``torchrun --standalone --nproc-per-node 2 -m aekit train --devices 2 --strategy ddp``;
- ``nodes``: two ``torchrun --nnodes 2 --node-rank R --nproc-per-node 1`` on this machine (two "nodes" on
  127.0.0.1) with ``--devices 1 --num-nodes 2``.

Every process runs on one thread, gloo on the CPU. Printed: the largest relative difference of any loss column of
metrics.csv over the epochs, the largest absolute difference of any weight of model.safetensors, and the wall time
of each run (start-up included: each process imports torch and Lightning). ``--samples`` should be even, so that
two processes share out exactly the images of one.

``--kills K`` then starts K long 2-process runs (Lightning's launcher) per victim, SIGKILLs rank 1 (the child) or
rank 0 the moment the first mid-epoch checkpoint exists, and prints how long the other process took to end and
the last line it printed.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def common(args) -> list[str]:
    return ["--threads", "1", "train", "--model", args.model, "--dataset", args.dataset, "--max-train-samples",
            str(args.samples), "--epochs", str(args.epochs), "--patience", "0", "--seed", str(args.seed),
            "--no-progress", *args.extra]


def run(commands: list[list[str]], log: Path) -> float:
    """Start the commands at once (the nodes of one run), wait for all; seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    with open(log, "wb") as fh:
        procs = [subprocess.Popen(c, env=env, stdout=fh, stderr=subprocess.STDOUT) for c in commands]
        codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{' '.join(commands[0])} failed ({codes}); see {log}")
    return time.perf_counter() - start


def compare(reference: Path, other: Path) -> tuple[float, float]:
    def rows(p: Path) -> list[dict[str, float]]:
        return [{k: float(v) for k, v in r.items() if "_loss" in k} for r in csv.DictReader(open(p / "metrics.csv"))]

    a, b = rows(reference), rows(other)
    assert len(a) == len(b), (len(a), len(b))
    rel = max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-12) for x, y in zip(a, b) for k in x)
    wa, wb = load_file(reference / "model.safetensors"), load_file(other / "model.safetensors")
    return rel, max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def kill_one(args, out: Path, victim: str) -> tuple[float, str]:
    """A 2-process run killed at its first checkpoint: (seconds until every process ended, its last line)."""
    cmd = [PYTHON, "-m", "aekit", *common(args), "--epochs", "100000", "--checkpoint-every", "5", "--devices", "2",
           "--strategy", "ddp", "--accelerator", "cpu", "--batch-size", str(args.batch // 2), "--out", str(out)]
    log = out.with_suffix(".log")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=fh, stderr=subprocess.STDOUT)
    children: list[int] = []
    while not children or not (out / "checkpoints" / "last.ckpt").exists():
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before the kill; see {log}")
        children = [int(c) for t in Path(f"/proc/{proc.pid}/task").glob("*/children") for c in t.read_text().split()]
        time.sleep(0.005)
    pids = [proc.pid, children[0]]
    os.kill(pids[1] if victim == "rank 1" else pids[0], signal.SIGKILL)
    start = time.perf_counter()
    while any(alive(p) for p in pids):
        proc.poll()
        time.sleep(0.005)
    return time.perf_counter() - start, log.read_text().strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ae")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--samples", type=int, default=1400)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="the global batch")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--launchers", default="lightning,torchrun,nodes")
    ap.add_argument("--port", type=int, default=29617, help="the first node's port (nodes)")
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--kills", type=int, default=0, help="kill experiments per victim (rank 1, rank 0)")
    ap.add_argument("extra", nargs="*", help="more `aekit train` flags, after --")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="aekit-ddp-"))
    root.mkdir(parents=True, exist_ok=True)
    half = str(args.batch // 2)
    aekit = [PYTHON, "-m", "aekit"]
    cpu2 = ["--strategy", "ddp", "--accelerator", "cpu", "--batch-size", half]
    runs = {
        "lightning": [[*aekit, *common(args), "--devices", "2", *cpu2, "--out", str(root / "lightning")]],
        "torchrun": [[TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "aekit", *common(args), "--devices", "2",
                      *cpu2, "--out", str(root / "torchrun")]],
        "nodes": [[TORCHRUN, "--nnodes", "2", "--node-rank", str(r), "--nproc-per-node", "1", "--master-addr",
                   "127.0.0.1", "--master-port", str(args.port), "-m", "aekit", *common(args), "--devices", "1",
                   "--num-nodes", "2", *cpu2, "--out", str(root / "nodes")] for r in (0, 1)],
    }
    print(f"{args.model} on {args.dataset} ({args.samples} training images), {args.epochs} epochs, global batch "
          f"{args.batch}; load average {os.getloadavg()[0]:.2f}")
    seconds = run([[*aekit, *common(args), "--batch-size", str(args.batch), "--out", str(root / "one")]], root / "one.log")
    print("| run | processes x batch | wall s | largest loss difference (relative) | largest weight difference |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| one process | 1 x {args.batch} | {seconds:.1f} | - | - |")
    for name in filter(None, args.launchers.split(",")):
        seconds = run(runs[name], root / f"{name}.log")
        rel, weight = compare(root / "one", root / name)
        print(f"| {name} | 2 x {half} | {seconds:.1f} | {rel:.1e} | {weight:.1e} |", flush=True)
    for victim in ("rank 1", "rank 0") if args.kills else ():
        for i in range(args.kills):
            seconds, line = kill_one(args, root / f"kill-{victim.replace(' ', '')}-{i}", victim)
            print(f"SIGKILL of {victim}: all processes ended {seconds:.2f} s later; last line: {line}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end; runs in {root}")


if __name__ == "__main__":
    main()
