"""Fault injection: SIGKILL a training at seeded random moments, some of them while a checkpoint is being written,
resume it after each kill, and compare the result with an unbroken run of the same seed.

    python benchmarks/fault_injection.py [--dataset mnist] [--kills 10] [--epochs 3] [--seed 0]
                                         [--launcher subprocess|forkserver] [--out DIR] [-- extra train flags]

Each session is a real process killed with a real SIGKILL: with ``subprocess`` every session is a fresh
``python -m aekit train ...`` (what a user runs); ``forkserver`` forks each session from a process that has
imported torch and Lightning once, which takes the ~5 s of imports off each of the eleven starts (the default
test suite uses it, tests/test_fault_tolerance.py). A session is started as a user would: the original command
while the run folder has no config.json yet, ``--resume`` after.

Kill moments: with ``random``, a uniform delay from the session's start over its start-up plus a tenth of the
unbroken run's training time, so some land during start-up and data loading, most in training; with ``write``,
after such a delay the harness watches ``checkpoints/`` and kills the moment a checkpoint's temporary file
appears (a kill during the write; the temporary left behind proves it). The figures: kills survived (the run
resumed and went on), resumes that failed (a session that ended by itself with an error or warned of a damaged
checkpoint), and what was lost at the end: epochs missing from metrics.csv, and whether model.safetensors and
metrics.csv (all columns but the wall-time ``seconds``) equal the unbroken run's byte for byte.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

WALL_TIME_COLUMNS = ("seconds",)  # per-epoch wall time: the only metrics.csv column a resumed run cannot repeat


# ------------------------------------------------------------------------------------------------ launchers
def _cli(argv: list[str], log: str) -> None:
    """A forkserver session: ``aekit`` with stdout and stderr to ``log``, exiting with the CLI's status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from aekit.cli import main

    sys.exit(main(argv))


class Session:
    """One process of ``aekit`` (subprocess or forkserver child) with pid, poll, kill and wait."""

    def __init__(self, argv: list[str], log: Path, launcher: str) -> None:
        self.started = time.perf_counter()
        if launcher == "subprocess":
            fh = open(log, "ab")
            self.proc = subprocess.Popen([sys.executable, "-m", "aekit", *argv], stdout=fh, stderr=subprocess.STDOUT)
            fh.close()
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("forkserver")
            self.proc = ctx.Process(target=_cli, args=(argv, str(log)))
            self.proc.start()

    def poll(self) -> int | None:
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.poll()
        return self.proc.exitcode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.wait(timeout)
        self.proc.join(timeout)
        return self.proc.exitcode


def warm_forkserver() -> None:
    """Start the fork server with aekit's training imports done once (each session then starts in a fraction of
    a second). Sessions must pass ``--threads N``: the server's torch is already imported."""
    import multiprocessing

    multiprocessing.set_forkserver_preload(["aekit.cli", "aekit.train.trainer", "aekit.train.module",
                                            "aekit.train.checkpoints", "aekit.train.loader", "aekit.models",
                                            "aekit.data", "aekit.evaluate", "lightning.pytorch", "sklearn.datasets"])
    ctx = multiprocessing.get_context("forkserver")
    p = ctx.Process(target=os.getpid)  # the server starts (and imports) on the first process
    p.start()
    p.join()


# ------------------------------------------------------------------------------------------------ the run
def temporaries(folder: Path, pid: int | None = None) -> list[str]:
    """Hidden temporary files (``.NAME.HOST-PID-XXXXXXXX``) in a folder; with ``pid``, only that process's."""
    try:
        return sorted(n for n in os.listdir(folder) if n.startswith(".") and (pid is None or f"-{pid}-" in n))
    except FileNotFoundError:
        return []


def metrics_without_wall_time(path: Path) -> str:
    rows = list(csv.DictReader(open(path, newline="")))
    buf = io.StringIO()
    keys = [k for k in (rows[0] if rows else {}) if k not in WALL_TIME_COLUMNS]
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def run_to_end(argv: list[str], log: Path, launcher: str, out: Path | None = None) -> tuple[int, float, float]:
    """Run a session to its end: (status, seconds, seconds until ``out/config.json`` appeared, i.e. start-up)."""
    s = Session(argv, log, launcher)
    ready = None
    while s.poll() is None:
        if ready is None and out is not None and (out / "config.json").exists():
            ready = time.perf_counter() - s.started
        time.sleep(0.005)
    seconds = time.perf_counter() - s.started
    return s.wait(), seconds, ready if ready is not None else 0.0


@dataclass
class Report:
    kills: list[dict] = field(default_factory=list)
    resumes_failed: int = 0
    fallbacks: int = 0
    final_code: int | None = None
    seconds: float = 0.0

    @property
    def during_writes(self) -> int:
        return sum(1 for k in self.kills if k["temporaries"])


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def checkpoint_position(out: Path) -> list[int] | None:
    """(epoch, batches of it) that ``last.ckpt`` holds: where the next session continues; None: no checkpoint."""
    last = out / "checkpoints" / "last.ckpt"
    if not last.exists():
        return None
    import torch

    return torch.load(last, map_location="cpu", weights_only=True)["callbacks"]["ResumePoints"]["saved_at"]


def inject(out: Path, train_argv: list[str], *, kills: int, seed: int, launcher: str, startup: float,
           interval: float, epoch_batches: int, total_batches: int, write_kills: int, startup_kills: int,
           logs: Path) -> Report:
    """Kill and resume a training ``kills`` times, then let it finish; ``train_argv`` are the ``aekit`` flags
    (``--threads``, ``train`` and its options, without ``--out``).

    Moments, drawn from ``seed``: ``startup_kills`` sessions are killed uniformly within ``startup`` seconds of
    their start (imports, data, loading the checkpoint). The others aim at points spread over the whole run,
    kill k at a uniform batch of the k-th of ``kills`` equal slices of the first 80 % of its ``total_batches``:
    the session is watched until its ``last.ckpt`` has reached that batch, then killed after a uniform delay
    of up to ``interval`` seconds (about one checkpoint interval: anywhere between two checkpoints), or, for
    ``write_kills`` of them, at the first moment after that when one of the session's own checkpoint
    temporaries exists (mid-write). Aiming at batches, not times, keeps the kills spread over the run however
    slow a session's start-up is on a busy machine."""
    import torch  # noqa: F401 - imported now, not on the first look at a checkpoint while a session runs

    rng = random.Random(seed)
    modes = ["write"] * write_kills + ["startup"] * startup_kills + ["random"] * (kills - write_kills - startup_kills)
    rng.shuffle(modes)
    targets = [int(0.8 * total_batches * (k + rng.random()) / kills) for k in range(kills)]  # increasing
    report = Report()
    t0 = time.perf_counter()
    logs.mkdir(parents=True, exist_ok=True)
    fresh = [*train_argv, "--out", str(out)]
    threads = train_argv[:2] if train_argv[:1] == ["--threads"] else []
    resume = [*threads, "train", "--resume", "--out", str(out), "--no-progress"]
    last = out / "checkpoints" / "last.ckpt"

    def batches_done() -> int:
        at = checkpoint_position(out)
        return at[0] * epoch_batches + at[1] if at else 0

    for i, mode in enumerate(modes):
        argv = resume if (out / "config.json").exists() else fresh
        log = logs / f"session-{i:02d}.log"
        s = Session(argv, log, launcher)
        if mode == "startup":
            delay = rng.uniform(0.0, startup)
            while time.perf_counter() - s.started < delay and s.poll() is None:
                time.sleep(0.002)
        else:
            seen, done = None, -1
            while done < targets[i] and s.poll() is None:
                stamp = _stamp(last)
                if stamp != seen:  # a new last.ckpt (every write is a rename: a new inode)
                    seen, done = stamp, batches_done() if stamp else 0
                time.sleep(0.003)
            delay, reached = rng.uniform(0.0, interval), time.perf_counter()
            while mode == "random" and time.perf_counter() - reached < delay and s.poll() is None:
                time.sleep(0.002)
        if mode == "write":  # now the next checkpoint write: kill the moment its temporary file appears
            while not temporaries(out / "checkpoints", s.proc.pid) and s.poll() is None:
                pass
        if s.poll() is not None:  # it ended by itself: finished too soon, or failed
            report.resumes_failed += s.poll() != 0
            raise RuntimeError(f"session {i} ended by itself (status {s.poll()}) before kill {i + 1}; see {log}")
        s.kill()
        s.wait()
        text = log.read_text(errors="replace")
        report.kills.append({"mode": mode, "after_s": round(time.perf_counter() - s.started, 3),
                             "session": "resume" if argv is resume else "fresh",
                             "temporaries": temporaries(out / "checkpoints", s.proc.pid),  # its own: killed mid-write
                             "next_resumes_from": checkpoint_position(out)})
        report.resumes_failed += "aekit: error" in text
        report.fallbacks += "resuming from the previous checkpoint" in text
    log = logs / "session-final.log"
    report.final_code, _, _ = run_to_end(resume if (out / "config.json").exists() else fresh, log, launcher)
    text = log.read_text(errors="replace")
    report.resumes_failed += report.final_code != 0 or "aekit: error" in text
    report.fallbacks += "resuming from the previous checkpoint" in text
    report.seconds = time.perf_counter() - t0
    return report


def compare(unbroken: Path, resumed: Path) -> dict:
    """What the kills cost at the end (all zero / True when nothing was lost)."""
    a, b = list(csv.DictReader(open(unbroken / "metrics.csv"))), list(csv.DictReader(open(resumed / "metrics.csv")))
    steps = [json.loads((r / "config.json").read_text())["result"]["epochs_completed"] for r in (unbroken, resumed)]
    return {
        "epochs_lost": len(a) - len(b),
        "epochs_completed": steps,
        "weights_identical": (unbroken / "model.safetensors").read_bytes() == (resumed / "model.safetensors").read_bytes(),
        "metrics_identical_but_wall_time": metrics_without_wall_time(unbroken / "metrics.csv") == metrics_without_wall_time(resumed / "metrics.csv"),
        "temporaries_left": temporaries(resumed) + temporaries(resumed / "checkpoints"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--model", default="vae")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--write-kills", type=int, default=4, help="how many of the kills wait for a checkpoint write")
    ap.add_argument("--startup-kills", type=int, default=2, help="how many of the kills land during start-up")
    ap.add_argument("--checkpoint-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0, help="seed of the training and of the kill moments")
    ap.add_argument("--launcher", choices=("subprocess", "forkserver"), default="subprocess")
    ap.add_argument("--out", type=Path, default=Path("runs/fault-injection"))
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} exists; remove it or pass another --out")
    train_argv = ["--threads", "1", "train", "--model", args.model, "--dataset", args.dataset, "--epochs", str(args.epochs),
                  "--seed", str(args.seed), "--checkpoint-every", str(args.checkpoint_every), "--no-progress", *extra]
    if args.launcher == "forkserver":
        warm_forkserver()
    args.out.mkdir(parents=True, exist_ok=True)
    code, unbroken_s, startup_s = run_to_end([*train_argv, "--out", str(args.out / "unbroken")], args.out / "unbroken.log",
                                             args.launcher, args.out / "unbroken")
    if code != 0:
        sys.exit(f"the unbroken run failed (status {code}); see {args.out / 'unbroken.log'}")
    record = json.loads((args.out / "unbroken" / "config.json").read_text())
    epoch_batches = -(-record["data"]["sizes"]["train"] // record["train"]["batch_size"])
    total = epoch_batches * args.epochs
    report = inject(args.out / "killed", train_argv, kills=args.kills, seed=args.seed, launcher=args.launcher,
                    startup=startup_s, interval=(unbroken_s - startup_s) * args.checkpoint_every / total,
                    epoch_batches=epoch_batches, total_batches=total, write_kills=args.write_kills,
                    startup_kills=args.startup_kills, logs=args.out / "logs")
    cmp = compare(args.out / "unbroken", args.out / "killed")
    print(json.dumps({"command": " ".join(sys.argv), "unbroken_seconds": round(unbroken_s, 1), "startup_seconds": round(startup_s, 1),
                      "kills_survived": len(report.kills) if report.final_code == 0 else 0,
                      "kills_during_checkpoint_writes": report.during_writes, "resumes_failed": report.resumes_failed,
                      "fallbacks_to_previous_checkpoint": report.fallbacks, **cmp,
                      "injection_seconds": round(report.seconds, 1), "kills": report.kills}, indent=1))


if __name__ == "__main__":
    main()
