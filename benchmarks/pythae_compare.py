"""aekit against pythae (issue 16): time to quality with each tool's own defaults, and seconds per epoch at
identical settings.

    .venv/bin/python benchmarks/pythae_compare.py [--minutes 20] [--threads 2] [--parts quality,speed]
        [--arms aekit,pythae,pythae-bce] [--pythae-python /tmp/pythaeenv/bin/python] [--json results.json]

pythae lives in its own venv, never an aekit dependency (docs/benchmarks.md, "Time to quality against pythae"):

    python3 -m venv /tmp/pythaeenv && /tmp/pythaeenv/bin/pip install -c constraints.txt pythae

This script runs in aekit's venv; every arm runs in a process of its own (aekit's: this script in aekit's
venv; pythae's: this script under ``--pythae-python``), reading the same MNIST split from a .npz this process
exports from ``aekit.load_data("mnist")`` (train 54,000 / val 6,000 / test 10,000, seed 0).

(a) Time to quality. Each tool with its own defaults for an MLP VAE with a 16-d code:

- ``aekit``: what ``aekit train --model vae --dataset mnist --latent-dim 16`` does: ``build_model("vae")``
  (784-1024-512-16, GELU, Bernoulli/BCE loss) and ``TrainConfig.for_model("vae")`` (the family's 40 epochs, batch
  128, Adam 1e-3, cosine schedule,
  early stopping patience 10, precision auto, validation on val every epoch, checkpoints every epoch).
- ``pythae``: ``VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=16))`` (its default MLP, 784-512-16, and its
  default loss, MSE) through ``TrainingPipeline`` with ``BaseTrainerConfig()`` defaults (batch 64, Adam 1e-4,
  no scheduler) but ``output_dir`` and ``num_epochs`` (``--pythae-epochs``, default 100, its own default), on
  the same train images, validating on the same val images.
- ``pythae-bce``: the same with ``reconstruction_loss="bce"``: the likelihood the score below measures, so the
  comparison is fair to it.

After every epoch one function (:func:`test_nelbo`), the same for every arm, scores the model on the 10,000
grey-level test images: Bernoulli BCE summed over pixels plus the analytic KL, nats per image, from the model's
encoder mean/log-variance and its decoder's pixel probabilities, one posterior draw with a fixed seed. The clock
is the wall time of training so far (from the call that starts the tool's training: its setup, validation and
checkpoints count), the evaluation's own time left out. Reported: the training time when the score first
reaches <= 100 and <= 95 nats (the issue's levels; also 120, 110 and 105, to show how far an arm got), each
tool's, and the ratio. A run ends at its own end (aekit: its 40 epochs or early
stopping; pythae: num_epochs), after ``--minutes`` of training, or once it has reached every level.

(b) Per-epoch speed at identical settings: 784-512-16 VAE, BCE, batch 128, Adam 1e-3, the 50,000 training
images of ``benchmarks/throughput.py``, no validation. ``aekit``: ``aekit.fit`` as throughput.py's ``aekit``
arm (progress bar, epoch lines, checkpoints every epoch, fp32); ``pythae``: ``TrainingPipeline`` with
``BaseTrainerConfig(learning_rate=1e-3, per_device_train_batch_size=128)`` and its default MLP (the same
layers). Each epoch is timed from its start to the next's (the last: to the end of training); the first is a
warm-up and is dropped; ``--speed-rounds`` rounds alternate which tool goes first; the figure is the median of
the rounds' ratios (pythae seconds / aekit seconds, > 1: aekit faster). Goal: >= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
# the two levels, and three coarser ones that show how far each arm got when it misses them
LEVELS = (120.0, 110.0, 105.0, 100.0, 95.0)
QUALITY_ARMS = ("aekit", "pythae", "pythae-bce")


# --- the shared evaluation: the same code scores every arm's model -----------------------------------------
def test_nelbo(posterior, decode_probs, x, batch: int = 2000, seed: int = 0) -> float:
    """Negative ELBO in nats per image on the images ``x`` (N, 1, 28, 28) in [0, 1]: BCE summed over pixels
    (a Bernoulli likelihood on the grey levels) + KL(N(mu, sigma^2) || N(0, I)) in closed form (Kingma & Welling
    2014, appendix B), with one posterior draw z = mu + sigma * eps whose eps come from a generator seeded
    ``seed``, so every model sees the same noise. ``posterior(x) -> (mu, logvar)``, ``decode_probs(z)`` -> pixel
    probabilities in [0, 1] (any shape with B rows). torch's BCE caps each log at -100, as pythae's loss does."""
    import torch
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for xb in x.split(batch):
            mu, logvar = posterior(xb)  # (B, D) each
            mu, logvar = mu.float(), logvar.float()
            eps = torch.randn(mu.shape, generator=g)  # (B, D)
            z = mu + eps * torch.exp(0.5 * logvar)
            p = decode_probs(z).float().reshape(len(xb), -1)  # (B, 784)
            bce = F.binary_cross_entropy(p, xb.reshape(len(xb), -1), reduction="none").sum(1)  # (B,)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)  # (B,)
            total += float((bce + kl).sum())
    return total / len(x)


class Tracker:
    """Per-epoch record of one arm: training time so far (evaluation excluded) and the test -ELBO. ``done()``
    says when the run should stop: past the time cap or every level reached."""

    def __init__(self, x_test, minutes: float, stop_when_reached: bool) -> None:
        self.x_test, self.cap, self.stop_when_reached = x_test, minutes * 60.0, stop_when_reached
        self.t0 = time.perf_counter()
        self.eval_seconds = 0.0
        self.epochs: list[dict] = []
        self.capped = False

    def start(self) -> None:
        self.t0, self.eval_seconds = time.perf_counter(), 0.0

    def epoch_end(self, posterior, decode_probs) -> None:
        t = time.perf_counter()
        train_s = t - self.t0 - self.eval_seconds
        score = test_nelbo(posterior, decode_probs, self.x_test)
        self.eval_seconds += time.perf_counter() - t
        self.epochs.append({"epoch": len(self.epochs) + 1, "train_seconds": round(train_s, 3), "test_nelbo": round(score, 4)})
        print(f"epoch {len(self.epochs)}: {train_s:.1f} s training, test -ELBO {score:.3f}", file=sys.stderr, flush=True)
        self.capped = train_s >= self.cap

    def done(self) -> bool:
        best = min((e["test_nelbo"] for e in self.epochs), default=float("inf"))
        return self.capped or (self.stop_when_reached and best <= min(LEVELS))


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def load_npz(path: str, key: str):
    """uint8 images from the exported split -> float32 (N, 1, 28, 28) in [0, 1], as aekit's to_float."""
    import numpy as np
    import torch

    with np.load(path) as f:
        return torch.from_numpy(f[key]).to(torch.float32).div_(255.0)


# --- workers: each runs in its own process (pythae's in pythae's venv) ---------------------------------------
def worker_aekit_quality(args) -> dict:
    import lightning as L
    import numpy as np
    import torch

    import aekit
    from aekit.train import TrainConfig
    from aekit.train import trainer as trainer_mod

    x_test = load_npz(args.npz, "test")
    data = aekit.load_data("mnist")  # the CLI's data defaults: val_fraction 0.1, seed 0
    with np.load(args.npz) as f:
        same = np.array_equal(f["train"], data.split("train")[0].numpy())
    if not same:
        raise SystemExit("the exported split does not match aekit.load_data('mnist')")
    cfg = TrainConfig.for_model("vae")  # every training default of `aekit train --model vae`
    tracker = Tracker(x_test, args.minutes, not args.run_to_end)

    class Eval(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            model = pl_module.model
            was = model.training
            model.eval()
            tracker.epoch_end(lambda x: model.posterior(x), lambda z: torch.sigmoid(model.decode_logits(z)))
            model.train(was)
            if tracker.done():
                trainer.should_stop = True

    make = trainer_mod.make_trainer
    trainer_mod.make_trainer = lambda out, c, callbacks: make(out, c, [*callbacks, Eval()])
    torch.manual_seed(cfg.seed)  # as the CLI: same seed, same initial weights
    model = aekit.build_model("vae", input_shape=tuple(data.shape), latent_dim=16, **data.model_defaults())
    with tempfile.TemporaryDirectory() as tmp:
        tracker.start()
        run = aekit.fit(model, data, cfg, f"{tmp}/run", data_options={"spec": "mnist", "seed": 0})
        precision = run.config["train"]["precision_used"]
    return {"epochs": tracker.epochs, "capped": tracker.capped, "precision": precision,
            "defaults": {"hidden_dims": list(model.config.hidden_dims), "loss": model.config.loss, **cfg.to_dict()}}


class StopTraining(Exception):
    """Raised from a pythae callback to end its training loop (it has no stop flag)."""


def pythae_vae(loss: str | None):
    from pythae.models import VAE, VAEConfig

    kw = {} if loss is None else {"reconstruction_loss": loss}
    return VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=16, **kw))


def pythae_posterior(model):
    def posterior(x):
        out = model.encoder(x)
        return out.embedding, out.log_covariance  # pythae's encoder: mean and log-variance

    return posterior


def worker_pythae_quality(args) -> dict:
    import torch
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    x_train, x_val, x_test = (load_npz(args.npz, k).numpy() for k in ("train", "val", "test"))
    torch.manual_seed(0)
    model = pythae_vae("bce" if args.arm == "pythae-bce" else None)
    tracker = Tracker(torch.from_numpy(x_test), args.minutes, not args.run_to_end)

    class Eval(TrainingCallback):
        def on_epoch_end(self, training_config, **kwargs):
            was = model.training
            model.eval()
            tracker.epoch_end(pythae_posterior(model), lambda z: model.decoder(z).reconstruction)
            model.train(was)
            if tracker.done():
                raise StopTraining

    with tempfile.TemporaryDirectory() as tmp:
        cfg = BaseTrainerConfig(output_dir=tmp, num_epochs=args.pythae_epochs)
        pipeline = TrainingPipeline(model=model, training_config=cfg)
        tracker.start()
        try:
            pipeline(train_data=x_train, eval_data=x_val, callbacks=[Eval()])
        except StopTraining:
            pass
    return {"epochs": tracker.epochs, "capped": tracker.capped,
            "defaults": {"loss": model.model_config.reconstruction_loss, "learning_rate": cfg.learning_rate,
                         "batch_size": cfg.per_device_train_batch_size, "optimizer": cfg.optimizer_cls,
                         "scheduler": cfg.scheduler_cls, "num_epochs": cfg.num_epochs}}


def worker_aekit_speed(args) -> dict:
    sys.path.insert(0, str(HERE.parent))
    import torch
    from throughput import aekit_epochs  # the `aekit` arm of benchmarks/throughput.py

    import aekit
    from aekit.train import TrainConfig

    data = aekit.load_data("mnist", val_fraction=0.0, max_train_samples=50000)
    torch.manual_seed(0)
    # identical settings to pythae's default MLP: 784-512-16 ReLU, not the vae preset's 1024-512 GELU default
    model = aekit.build_model("vae", input_shape=(1, 28, 28), latent_dim=16, hidden_dims=(512,), activation="relu")
    cfg = TrainConfig(epochs=args.speed_epochs, batch_size=128, lr=1e-3, patience=0, precision="32", schedule="none")
    times = aekit_epochs(model, data, cfg, whole=True)
    return {"epochs": [{"wall": w, "cpu": c} for w, c in times]}


def worker_pythae_speed(args) -> dict:
    import torch
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    x = load_npz(args.npz, "speed").numpy()
    torch.manual_seed(0)
    model = pythae_vae("bce")  # its default MLP is aekit's 784-512-16
    marks: list[tuple[float, float]] = []

    class Clock(TrainingCallback):
        def on_epoch_begin(self, training_config, **kwargs):
            marks.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, training_config, **kwargs):
            marks.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as tmp:
        cfg = BaseTrainerConfig(output_dir=tmp, num_epochs=args.speed_epochs, learning_rate=1e-3,
                                per_device_train_batch_size=128)
        TrainingPipeline(model=model, training_config=cfg)(train_data=x, callbacks=[Clock()])
    return {"epochs": [{"wall": b[0] - a[0], "cpu": b[1] - a[1]} for a, b in zip(marks, marks[1:])]}


WORKERS = {("quality", "aekit"): worker_aekit_quality, ("quality", "pythae"): worker_pythae_quality,
           ("quality", "pythae-bce"): worker_pythae_quality, ("speed", "aekit"): worker_aekit_speed,
           ("speed", "pythae"): worker_pythae_speed}


def worker_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part")
    ap.add_argument("arm")
    ap.add_argument("npz")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--pythae-epochs", type=int, default=100)
    ap.add_argument("--speed-epochs", type=int, default=4)
    ap.add_argument("--run-to-end", action="store_true")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    result = WORKERS[(args.part, args.arm)](args)
    Path(args.out).write_text(json.dumps(result))


# --- the driver (aekit's venv) --------------------------------------------------------------------------------
def export_split(path: Path) -> None:
    """aekit's MNIST split as uint8 arrays: train/val/test of load_data("mnist"), and throughput.py's 50k."""
    import numpy as np

    import aekit

    data = aekit.load_data("mnist")
    speed = aekit.load_data("mnist", val_fraction=0.0, max_train_samples=50000)
    arrays = {k: data.split(k)[0].numpy() for k in ("train", "val", "test")}
    arrays["speed"] = speed.split("train")[0].numpy()
    np.savez(path, **arrays)


def launch(python: str, part: str, arm: str, npz: Path, tmp: Path, args, tag: str) -> dict:
    out, log = tmp / f"{tag}.json", tmp / f"{tag}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    cmd = [python, str(HERE), "--worker", part, arm, str(npz), str(out), "--threads", str(args.threads),
           "--minutes", str(args.minutes), "--pythae-epochs", str(args.pythae_epochs), "--speed-epochs", str(args.speed_epochs)]
    if args.run_to_end:
        cmd.append("--run-to-end")
    print(f"[{time.strftime('%H:%M:%S')}] {part} {arm} ...", flush=True)
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{part} {arm} failed (exit {rc}); the end of its log:\n{tail}")
    return json.loads(out.read_text())


def first_reach(epochs: list[dict], level: float):
    return next((e for e in epochs if e["test_nelbo"] <= level), None)


def quality(args, npz: Path, tmp: Path) -> dict:
    results = {}
    for arm in args.arms.split(","):
        python = sys.executable if arm == "aekit" else args.pythae_python
        results[arm] = r = launch(python, "quality", arm, npz, tmp, args, f"quality-{arm}")
        for e in r["epochs"]:
            print(f"  {arm} epoch {e['epoch']}: {e['train_seconds']:.1f} s, test -ELBO {e['test_nelbo']:.2f}")
    print("\ntime to quality (training wall time, evaluation excluded; test -ELBO, BCE + KL, nats per image):")
    print("| arm | epochs run | best test -ELBO | " + " | ".join(f"<= {lv:g}" for lv in LEVELS) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in LEVELS) + " |")
    for arm, r in results.items():
        cells = []
        for lv in LEVELS:
            e = first_reach(r["epochs"], lv)
            if e is not None:
                cells.append(f"{e['train_seconds']:.1f} s (epoch {e['epoch']})")
            elif r["capped"]:
                cells.append(f"not reached in {args.minutes:g} min")
            else:
                cells.append(f"not reached (its run ended after {len(r['epochs'])} epochs)")
        best = min((e["test_nelbo"] for e in r["epochs"]), default=float("nan"))
        print(f"| {arm} | {len(r['epochs'])} | {best:.2f} | " + " | ".join(cells) + " |")
    if "aekit" in results:
        for arm in (a for a in results if a != "aekit"):
            for lv in LEVELS:
                a, p = first_reach(results["aekit"]["epochs"], lv), first_reach(results[arm]["epochs"], lv)
                if a and p:
                    text = f"{p['train_seconds'] / a['train_seconds']:.2f}x"
                elif a:
                    text = f"> {args.minutes * 60 / a['train_seconds']:.2f}x ({arm} did not reach it)" if results[arm]["capped"] \
                        else f"inf ({arm} did not reach it in its run)"
                else:
                    text = "n/a (aekit did not reach it)"
                print(f"aekit sooner than {arm} to <= {lv:g}: {text} (goal >= 3x)")
    return results


def speed(args, npz: Path, tmp: Path) -> dict:
    rounds = []
    for r in range(args.speed_rounds):
        order = ("aekit", "pythae") if r % 2 == 0 else ("pythae", "aekit")
        this = {}
        for arm in order:
            python = sys.executable if arm == "aekit" else args.pythae_python
            eps = launch(python, "speed", arm, npz, tmp, args, f"speed-{arm}-{r}")["epochs"][1:]  # first: warm-up
            this[arm] = {"wall": statistics.median(e["wall"] for e in eps), "cpu": statistics.median(e["cpu"] for e in eps)}
        rounds.append(this)
        print(f"round {r}: " + ", ".join(f"{a} {this[a]['wall']:.2f} s wall / {this[a]['cpu']:.2f} s CPU per epoch" for a in order)
              + f"; aekit {this['pythae']['wall'] / this['aekit']['wall']:.3f}x (wall), "
                f"{this['pythae']['cpu'] / this['aekit']['cpu']:.3f}x (CPU)", flush=True)
    summary = {a: {k: statistics.median(r[a][k] for r in rounds) for k in ("wall", "cpu")} for a in ("aekit", "pythae")}
    for k in ("wall", "cpu"):
        summary[f"ratio_{k}"] = statistics.median(r["pythae"][k] / r["aekit"][k] for r in rounds)
    print(f"per epoch (median): aekit {summary['aekit']['wall']:.2f} s, pythae {summary['pythae']['wall']:.2f} s; "
          f"aekit against pythae (median of the rounds' ratios, > 1: aekit faster): wall {summary['ratio_wall']:.3f}x, "
          f"CPU {summary['ratio_cpu']:.3f}x (goal >= 1.3x)")
    return {"rounds": rounds, "summary": summary}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="cap on each quality arm's training time")
    ap.add_argument("--threads", type=int, default=2, help="torch/OMP threads in every process")
    ap.add_argument("--parts", default="quality,speed", help="comma-separated: quality, speed")
    ap.add_argument("--arms", default=",".join(QUALITY_ARMS), help="quality arms, comma-separated")
    ap.add_argument("--pythae-python", default="/tmp/pythaeenv/bin/python", help="the python of pythae's venv")
    ap.add_argument("--pythae-epochs", type=int, default=100, help="pythae's num_epochs (its default: 100)")
    ap.add_argument("--run-to-end", action="store_true",
                    help="keep training after the last level is reached (to the tool's end or --minutes)")
    ap.add_argument("--speed-rounds", type=int, default=3)
    ap.add_argument("--speed-epochs", type=int, default=4, help="epochs per speed run (the first is dropped)")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--logs", help="keep the workers' logs in this folder (default: a temporary one)")
    args = ap.parse_args()
    bad = [a for a in args.arms.split(",") if a not in QUALITY_ARMS]
    if bad:
        ap.error(f"unknown arm {bad[0]!r}; choose from {', '.join(QUALITY_ARMS)}")
    if not Path(args.pythae_python).exists():
        ap.error(f"{args.pythae_python} not found: build pythae's venv first (see the docstring)")
    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(args.logs) if args.logs else Path(t)
        tmp.mkdir(parents=True, exist_ok=True)
        npz = Path(t) / "mnist_split.npz"
        export_split(npz)
        parts = args.parts.split(",")
        print(f"{args.threads} thread(s) per process" + (f"; quality cap {args.minutes:g} min per arm" if "quality" in parts else ""),
              flush=True)
        out = {"threads": args.threads, "minutes": args.minutes}
        if "quality" in parts:
            out["quality"] = quality(args, npz, tmp)
        if "speed" in parts:
            out["speed"] = speed(args, npz, tmp)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
