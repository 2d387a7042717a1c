"""The likelihood record: IWAE NLL of a VAE (one stochastic layer, ``vae``) or a hierarchical VAE (``hvae``) on
dynamically binarised MNIST, trained within a time budget, scored on the full test set.

Burda et al. 2016 (table 1) report 86.76 nats for a one-stochastic-layer VAE (2x200 tanh, 50-d code) after
3,280 epochs; issue 16's goals are <= 86.0 nats for one stochastic layer after at most 30 minutes of training,
and <= 82.0 nats for ``hvae`` after at most 60 minutes (Ladder VAE 81.74, IWAE 2-layer 82.90), IWAE-5000 on the
full 10,000-image test set, on 2 CPU cores, with evaluation in <= 15 minutes. The recipe: a wider net, a 50-d code,
linear KL warm-up (Sønderby et al. 2016), a cosine learning-rate decay, and optionally the IWAE-k training
objective. The epoch count is fitted to ``--minutes`` from three calibration epochs of the same trainer.
``--iwae-k K --iwae-minutes M`` trains on the ELBO first and on the K-sample bound for the last M minutes
(``iwae_after``, the model option): each objective is calibrated on its own, and one cosine schedule spans both.
With ``--iwae-restart`` the bound's minutes are a second training instead: the ELBO run (``OUT/elbo``, its own
cosine schedule to zero) is continued from its weights on the K-sample bound (``OUT/run``) with a fresh cosine
from ``--iwae-lr`` (``benchmarks/iwae_finetune.py`` measured this fine-tune first); result.json adds both
trainings' epochs and wall times and keeps the ELBO run's options and result under ``elbo_run``. From the CLI the
second training is ``aekit train --init-from OUT/elbo --iwae-k K --kl-warmup 0 --lr 3e-4 --epochs N
--val-fraction 0 --binarize dynamic --max-minutes M --out OUT/run`` (this script calibrates N and M for you).

One training command and one evaluation command (the second is `aekit evaluate` itself, run in-process; it
writes RUN/eval.json, so every figure in result.json is backed by the run folder's config.json and eval.json):

    python benchmarks/nll_goal.py --minutes 30 --threads 2 --out bench/nll-goal
    aekit evaluate bench/nll-goal/run --metrics elbo,nll --iwae-samples 5000 --binarize static

and for the hierarchical model (--latent-dims: the layers under the top code; --val-fraction 0 trains on all
60,000 training images and keeps the last epoch)

    python benchmarks/nll_goal.py --model hvae --minutes 60 --hidden-dims 512,512 --activation gelu \
        --latent-dim 32 --latent-dims 64 --ladder-width 256 --batch-norm --val-fraction 0 --threads 2 --out bench/hvae-goal
    aekit evaluate bench/hvae-goal/run --metrics elbo,nll --iwae-samples 5000 --binarize static
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def calibrate(build, data, cfg, data_options) -> tuple[float, float]:
    """(seconds per epoch, fixed seconds) of this trainer on this machine: three real epochs of the same model,
    data and config into a throw-away folder. Per epoch: the median of epochs 2-3's own timings (the first
    warms up); fixed: the rest of the wall time (start-up, the first epoch's warm-up, checkpoint writes)."""
    from aekit.train import train

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = train(build(1), data, replace(cfg, epochs=3), Path(tmp) / "run", data_options=data_options)
        wall = time.perf_counter() - t0
        seconds = [row["seconds"] for row in run.metrics()]
    per_epoch = statistics.median(seconds[1:])
    return per_epoch, max(0.0, wall - 3 * per_epoch)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("vae", "hvae"), default="vae")
    p.add_argument("--minutes", type=float, default=30.0, help="training budget")
    p.add_argument("--epochs", type=int, default=None, help="fixed epoch count (overrides --minutes)")
    p.add_argument("--hidden-dims", default="512,512")
    p.add_argument("--latent-dim", type=int, default=50, help="the code (for hvae: the top layer)")
    p.add_argument("--latent-dims", default="64", help="hvae: the layers under the top one, bottom first")
    p.add_argument("--ladder-width", type=int, default=256, help="hvae: width of the MLPs between the layers")
    p.add_argument("--batch-norm", action="store_true")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the 60,000 training images held out for validation (0: train on all of them)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--kl-warmup", type=int, default=None, help="warm-up epochs (default: 10%% of the epochs)")
    p.add_argument("--iwae-k", type=int, default=1, help="training objective samples (1: ELBO)")
    p.add_argument("--iwae-minutes", type=float, default=None,
                   help="with --iwae-k K > 1: the ELBO first, the K-sample bound for the last M minutes of the budget")
    p.add_argument("--iwae-restart", action="store_true",
                   help="with --iwae-minutes: the bound's minutes are a second training from the ELBO run's weights "
                        "(OUT/elbo) with a fresh cosine from --iwae-lr, not the tail of one schedule")
    p.add_argument("--iwae-lr", type=float, default=3e-4, help="--iwae-restart: the second training's learning rate")
    p.add_argument("--weight-ema", type=float, default=0.0,
                   help="the engine's --weight-ema: both trainings keep the moving average of their weights (0: off)")
    p.add_argument("--activation", default="relu")
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--eval-n", type=int, default=None, help="score only the first N test images (default: all)")
    p.add_argument("--train-only", action="store_true", help="train (or re-use the run) and stop")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 on a shared machine (2 threads per process oversubscribe the cores: "
                        "measured 10x slower steps with 5 jobs on 2 cores)")
    p.add_argument("--out", default="bench/nll-goal")
    args = p.parse_args(argv)
    DEFAULTS.update(vars(p.parse_args([])))

    import torch

    torch.set_num_threads(args.threads)

    from aekit import build_model, load_data
    from aekit.cli import main as aekit_main
    from aekit.train import TrainConfig, train

    opts = {"data_dir": args.data_dir} if args.data_dir else {}
    if args.val_fraction != 0.1:
        opts["val_fraction"] = args.val_fraction
    data = load_data("mnist", **opts)
    hidden = tuple(int(h) for h in args.hidden_dims.split(","))
    family = {}
    if args.model == "hvae":
        family = {"latent_dims": tuple(int(d) for d in args.latent_dims.split(",")), "ladder_width": args.ladder_width}

    if args.iwae_minutes is not None and (args.iwae_k < 2 or args.epochs is not None or not 0 < args.iwae_minutes < args.minutes):
        p.error("--iwae-minutes needs --iwae-k > 1, --minutes (not --epochs) and 0 < M < --minutes")
    if args.iwae_restart and args.iwae_minutes is None:
        p.error("--iwae-restart needs --iwae-minutes")

    def build(warmup: int, k: int = args.iwae_k, after: int = 0):
        torch.manual_seed(0)
        return build_model(args.model, input_shape=data.shape, latent_dim=args.latent_dim, hidden_dims=hidden,
                           activation=args.activation, iwae_k=k, iwae_after=after, kl_warmup=warmup,
                           batch_norm=args.batch_norm, **family)

    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=args.lr, schedule="cosine", patience=0,
                      binarize="dynamic", progress=False, weight_ema=args.weight_ema)
    data_options = {"spec": "mnist", **opts}
    out = Path(args.out)
    run_dir = out / "run"
    calibration = None
    if (run_dir / "model.safetensors").exists():
        from aekit.train import load_run

        run = load_run(run_dir)
        print(f"re-using {run_dir}", flush=True)
    else:
        after = 0  # epochs on the ELBO before the --iwae-k bound (--iwae-minutes)
        if args.iwae_restart:
            run, calibration = two_trainings(args, build, data, cfg, data_options, out)
        elif args.iwae_minutes is not None:
            per_elbo, fixed = calibrate(lambda w: build(w, k=1), data, cfg, data_options)
            per_iwae, _ = calibrate(build, data, cfg, data_options)
            # 3 % margin: epoch times drift by a few per cent over half an hour on this machine
            late = max(1, int(args.iwae_minutes * 60 / (per_iwae * 1.03)))
            after = max(1, int(((args.minutes - args.iwae_minutes) * 60 - fixed) / (per_elbo * 1.03)))
            epochs = after + late
            calibration = {"seconds_per_epoch": per_elbo, "seconds_per_iwae_epoch": per_iwae, "fixed_seconds": fixed}
            print(f"calibrated: ELBO {per_elbo:.2f} s/epoch, IWAE-{args.iwae_k} {per_iwae:.2f} s/epoch, {fixed:.0f} s "
                  f"fixed -> {after} + {late} epochs in {args.minutes} min", flush=True)
        elif args.epochs is None:
            per_epoch, fixed = calibrate(build, data, cfg, data_options)
            epochs = max(1, int((args.minutes * 60 - fixed) / (per_epoch * 1.03)))
            calibration = {"seconds_per_epoch": per_epoch, "fixed_seconds": fixed}
            print(f"calibrated: {per_epoch:.2f} s/epoch + {fixed:.0f} s fixed -> {epochs} epochs in {args.minutes} min",
                  flush=True)
        else:
            epochs = args.epochs
        if not args.iwae_restart:
            warmup = args.kl_warmup if args.kl_warmup is not None else max(1, (after or epochs) // 10)
            t0 = time.perf_counter()
            # the budget as a hard limit too (--max-minutes): the calibrated epoch count normally ends first, and
            # with the cosine schedule done; on a machine that slows down, training stops at the budget instead
            limit = args.minutes - (calibration["fixed_seconds"] / 60 if calibration else 0.0)
            run = train(build(warmup, after=after), data, replace(cfg, epochs=epochs, max_minutes=limit), run_dir,
                        data_options=data_options)
            print(f"trained {run.config['result']['epochs_completed']} of {epochs} epochs in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    result = dict(run.config["result"])
    first = out / "elbo" / "config.json"
    if args.iwae_restart and first.exists():  # the two trainings' times and epochs together
        elbo = json.loads(first.read_text())["result"]
        result.update({key: elbo[key] + result[key] for key in ("epochs_completed", "wall_seconds_last_session",
                                                                "train_seconds")})
        print(f"the ELBO training: {elbo['epochs_completed']} epochs, {elbo['wall_seconds_last_session']:.0f} s "
              f"wall (OUT/elbo); the bound's: {run.config['result']['epochs_completed']} epochs", flush=True)
    print(f"training: {result['epochs_completed']} epochs, {result['wall_seconds_last_session']:.0f} s wall "
          f"({result['train_seconds']:.0f} s in epochs)", flush=True)
    if args.train_only:
        return 0

    argv = ["evaluate", str(run_dir), "--metrics", "elbo,nll", "--iwae-samples", str(args.eval_k), "--binarize", "static"]
    if args.eval_n:
        argv += ["--nll-samples", str(args.eval_n)]
    print("aekit " + " ".join(argv), flush=True)
    t0 = time.perf_counter()
    if aekit_main(argv) != 0:
        return 1
    eval_seconds = time.perf_counter() - t0
    ev = json.loads((run_dir / "eval.json").read_text())
    record = {
        "train_command": "python benchmarks/nll_goal.py " + " ".join(argv_given(args)),
        "eval_command": "aekit " + " ".join(argv),
        "model": run.config["model"], "train": run.config["train"], "calibration": calibration,
        "train_wall_seconds": result["wall_seconds_last_session"], "train_seconds": result["train_seconds"],  # both
        "epochs": result["epochs_completed"],
        "test_elbo": ev["elbo"], f"nll_iwae{args.eval_k}": ev["nll_iwae"], "nll_n": ev["nll_n"],
        "full_test_set": ev["nll_n"] == len(data.splits["test"]), "nll_seconds": ev["nll_seconds"],
        "eval_wall_seconds": eval_seconds, "threads": args.threads,
    }
    if first.exists():  # --iwae-restart: the ELBO training's own options and result (OUT/elbo/config.json)
        elbo = json.loads(first.read_text())
        record["elbo_run"] = {"train": elbo["train"], "result": elbo["result"]}
    from aekit.train.runs import write_json

    write_json(out / "result.json", record)
    print(json.dumps({k: v for k, v in record.items() if k not in ("model", "train")}, indent=2))
    return 0


def two_trainings(args, build, data, cfg, data_options, out: Path):
    """--iwae-restart: the ELBO for the budget less --iwae-minutes into OUT/elbo (its own cosine schedule), then
    a second training from its weights on the --iwae-k bound into OUT/run, a fresh cosine from --iwae-lr and no
    warm-up, as benchmarks/iwae_finetune.py measured it. Each objective is calibrated on its own; the budget
    holds both trainings (each one's --max-minutes too). Returns the second run and the calibration."""
    from aekit import build_model
    from aekit.train import load_run, train

    per_elbo, fixed = calibrate(lambda w: build(w, k=1), data, cfg, data_options)
    per_iwae, _ = calibrate(build, data, cfg, data_options)
    first_minutes = args.minutes - args.iwae_minutes
    # 3 % margin: epoch times drift by a few per cent over half an hour on this machine
    first = max(1, int((first_minutes * 60 - fixed) / (per_elbo * 1.03)))
    second = max(1, int((args.iwae_minutes * 60 - fixed) / (per_iwae * 1.03)))
    calibration = {"seconds_per_epoch": per_elbo, "seconds_per_iwae_epoch": per_iwae, "fixed_seconds": fixed,
                   "elbo_epochs": first, "iwae_epochs": second}
    print(f"calibrated: ELBO {per_elbo:.2f} s/epoch, IWAE-{args.iwae_k} {per_iwae:.2f} s/epoch, {fixed:.0f} s fixed "
          f"-> {first} ELBO epochs in {first_minutes} min, then {second} on the bound in {args.iwae_minutes} min",
          flush=True)
    t0 = time.perf_counter()
    elbo_dir = out / "elbo"
    if (elbo_dir / "model.safetensors").exists():
        elbo = load_run(elbo_dir)
        print(f"re-using {elbo_dir}", flush=True)
    else:
        warmup = args.kl_warmup if args.kl_warmup is not None else max(1, first // 10)
        elbo = train(build(warmup, k=1), data, replace(cfg, epochs=first, max_minutes=first_minutes - fixed / 60),
                     elbo_dir, data_options=data_options)
    spent = time.perf_counter() - t0
    print(f"ELBO: {elbo.config['result']['epochs_completed']} of {first} epochs in {spent:.0f} s", flush=True)
    model = build_model(elbo.model.name, config=replace(elbo.model.config, iwae_k=args.iwae_k, iwae_after=0,
                                                        kl_warmup=0))
    model.load_state_dict(elbo.model.state_dict())
    run = train(model, data, replace(cfg, epochs=second, lr=args.iwae_lr,
                                     max_minutes=args.iwae_minutes - fixed / 60),
                out / "run", data_options=data_options)
    print(f"IWAE-{args.iwae_k}: {run.config['result']['epochs_completed']} of {second} epochs in "
          f"{time.perf_counter() - t0 - spent:.0f} s", flush=True)
    return run, calibration


def argv_given(args) -> list[str]:
    """The flags this run was given, for the record (defaults left out)."""
    return [f"--{k.replace('_', '-')} {v}" if v is not True else f"--{k.replace('_', '-')}"
            for k, v in vars(args).items() if v is not None and v is not False and v != DEFAULTS.get(k)]


DEFAULTS: dict = {}


if __name__ == "__main__":
    raise SystemExit(main())
