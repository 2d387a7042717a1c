"""``train``: fit a model on an ImageData with Lightning and write the run folder."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, RunError
from .config import TrainConfig
from .runs import CONFIG, FORMAT_VERSION, METRICS, WEIGHTS, Run, read_config, read_metrics, save_weights, versions, write_csv, write_json


def _callbacks(run_dir: Path, cfg: TrainConfig, monitor: str | None, n_batches: int, on_start=None, resume_command: str = ""):
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar

    from .checkpoints import ResumePoints, RngState, StopOnSignal
    from .distributed import start_line

    class EpochCSV(Callback):
        """One row per epoch in ``metrics.csv``, rewritten atomically after every epoch, so a killed run keeps
        every finished epoch; on resume, rows from epochs the checkpoint does not cover are dropped.
        (Lightning's CSVLogger puts train and val on separate rows and flushes only every 100 steps.)"""

        def on_train_start(self, trainer, pl_module) -> None:
            self.rows = [{**r, "epoch": int(r["epoch"])} for r in read_metrics(run_dir / METRICS)
                         if "epoch" in r and r["epoch"] < trainer.current_epoch]  # read back as floats
            if trainer.is_global_zero and on_start is not None:
                on_start()  # the checkpoint (if any) has loaded: only now is the run "running" again
            if trainer.is_global_zero and (line := start_line(trainer, cfg.strategy)) is not None:
                print(line, flush=True)  # several processes: rank 0 says so, once

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            row = pl_module.epoch_metrics()
            if trainer.is_global_zero:
                self.rows.append({**row, "epoch": int(row["epoch"])})
                write_csv(run_dir / METRICS, self.rows)
                if cfg.log_epochs:
                    line = epoch_line(row, trainer.max_epochs)
                    bar = trainer.progress_bar_callback
                    bar.print(line) if bar is not None else print(line, flush=True)  # above a live bar, not into it

    class RelocatableCheckpoint(ModelCheckpoint):
        """Lightning stores absolute paths in its checkpoint state and drops the best score when the folder
        moved; here the paths are rebased onto this run folder, so a moved (mv) or copied (cp -r) run resumes
        with its own best checkpoint and best score, never the original folder's."""

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            old = str(state_dict.get("dirpath") or self.dirpath)

            def here(p):
                return str(Path(self.dirpath) / Path(p).name) if p and str(p).startswith(old) else p

            state = {**state_dict, "dirpath": self.dirpath, "best_model_path": here(state_dict.get("best_model_path")),
                     "kth_best_model_path": here(state_dict.get("kth_best_model_path")),
                     "last_model_path": here(state_dict.get("last_model_path")),
                     "best_k_models": {here(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
            super().load_state_dict(state)

        def _save_checkpoint(self, trainer, filepath: str) -> None:
            # Lightning's own, less the write: best.ckpt becomes a hard link to the last.ckpt that ResumePoints
            # writes next in this epoch-end (the same weights), so an improving epoch serialises and fsyncs once
            points.keep_as_best(filepath)
            self._last_global_step_saved = trainer.global_step
            self._last_checkpoint_saved = filepath
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.after_save_checkpoint(proxy(self))

    from weakref import proxy

    folder = (run_dir / "checkpoints").absolute()
    points = ResumePoints(folder, every=cfg.checkpoint_every, minutes=cfg.checkpoint_minutes)
    # best.ckpt only: last.ckpt, the resume point, is ResumePoints' (every epoch, and mid-epoch on a schedule)
    ckpt = RelocatableCheckpoint(dirpath=str(folder), filename="best", monitor=monitor, mode="min", save_last=False,
                                 save_on_train_epoch_end=True, enable_version_counter=False)
    # Lightning runs Checkpoint callbacks last, in this order: best.ckpt is decided, then last.ckpt is written
    # (recording the new best) and best.ckpt linked to it
    from .checkpoints import WeightEMA

    # --weight-ema before StopOnSignal: a stop saves last.ckpt in its on_train_batch_end, after the group's update
    ema = [WeightEMA(cfg.weight_ema)] if cfg.weight_ema else []
    cbs = [EpochCSV(), RngState(), *ema, StopOnSignal(points, resume_command or f"aekit train --resume --out {run_dir}"),
           ckpt, points]
    if cfg.patience and monitor is not None:
        cbs.append(EarlyStopping(monitor=monitor, mode="min", patience=cfg.patience, check_on_train_epoch_end=True))
    if cfg.max_minutes:
        from .checkpoints import TimeLimit

        cbs.append(TimeLimit(cfg.max_minutes * 60.0))
    class LossBar(TQDMProgressBar):
        """Lightning's bar with the epoch's running training loss (read only when the bar redraws), counting
        batches: Lightning's own count is of batch groups (loader.Grouped)."""

        @property
        def total_train_batches(self):
            return getattr(self.trainer.train_dataloader, "batches", None) or super().total_train_batches

        def on_train_epoch_start(self, trainer, *args) -> None:
            super().on_train_epoch_start(trainer, *args)
            self._drawn = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            from lightning.pytorch.callbacks.progress.tqdm_progress import _update_n

            loader = trainer.train_dataloader
            n = loader.position() if hasattr(loader, "position") else batch_idx + 1
            total = self.train_progress_bar.total
            if not self.is_disabled and (n - getattr(self, "_drawn", 0) >= self.refresh_rate or (total and n >= total)):
                self._drawn = n
                _update_n(self.train_progress_bar, n)
                self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

        def get_metrics(self, trainer, pl_module) -> dict:
            metrics = {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k != "v_num"}
            loss = pl_module.running_loss() if hasattr(pl_module, "running_loss") else None
            return {**metrics, "loss": f"{loss:.4g}"} if loss is not None else metrics

    if cfg.progress:
        cbs.append(LossBar(refresh_rate=max(1, n_batches // 25)))  # few redraws: each costs a step
    return cbs, ckpt


def epoch_line(row: dict[str, float], epochs: int | None) -> str:
    """One line per epoch: 'epoch 3/10  train 45.12 (recon 40.01, kl 5.11)  val 44.10  1.2s' -- the losses and
    the loss terms (a one-term loss shows no breakdown)."""
    def terms(split: str) -> str:
        parts = [f"{k[len(split) + 6:]} {v:.4g}" for k, v in row.items() if k.startswith(f"{split}_loss_")]
        return f" ({', '.join(parts)})" if len(parts) > 1 else ""

    text = f"epoch {int(row['epoch']) + 1}/{epochs}  train {row['train_loss']:.4g}{terms('train')}"
    if "val_loss" in row:
        text += f"  val {row['val_loss']:.4g}"
    if row.get("skipped_steps"):
        text += f"  skipped {int(row['skipped_steps'])} steps"
    return text + f"  {row['seconds']:.1f}s"


def _logger(run_dir: Path, cfg: TrainConfig):
    """Lightning's logger for ``--logger`` (csv: none; EpochCSV writes metrics.csv whatever the choice). One
    point per epoch: LitAutoencoder logs the epoch means once per epoch."""
    if cfg.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        # version "": RUN/tensorboard itself holds the event files (a resumed run appends to them)
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    if cfg.logger == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        # a local store in the run folder, no tracking server: `mlflow ui --backend-store-uri sqlite:///RUN/mlruns/mlflow.db`.
        # SQLite, not MLflow's ./mlruns file store, which MLflow 3 refuses ("maintenance mode")
        store = (run_dir / "mlruns").absolute()
        store.mkdir(parents=True, exist_ok=True)
        return MLFlowLogger(experiment_name="aekit", run_name=run_dir.name, tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
                            artifact_location=(store / "artifacts").as_uri())
    return False


def quiet_lightning() -> None:
    """Keep the console to the progress bar and the results."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("mlflow", "alembic"):  # --logger mlflow: "Creating initial MLflow database tables..." and the like
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|num_workers|LeafSpec|isinstance\(treespec|Checkpoint directory .* exists and is not empty).*")
    # DDP: the epoch means are reduced over the ranks before they are logged (module.epoch_metrics)
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
    # --logger tensorboard|mlflow: aekit logs once per epoch, on purpose (log_every_n_steps is set out of reach)
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
    # --val-fraction 0: training on every image, with no validation split, is a choice the user made
    warnings.filterwarnings("ignore", message=r".*defined a `validation_step` but have no `val_dataloader`.*")
    # a run without validation saved before its best.ckpt stopped following the training loss: on resume that
    # callback state is left unread on purpose (the last epoch is kept, fit_and_keep_best)
    warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint need to be provided.*"
                                              r"RelocatableCheckpoint\{'monitor': 'train_loss'.*")
    # a run saved under --weight-ema and resumed without it: LitAutoencoder.on_load_checkpoint continues from the
    # optimizer's own weights
    warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint need to be provided.*WeightEMA.*")
    # --weight-ema turned on when resuming a run trained without it: the average starts from the weights resumed
    warnings.filterwarnings("ignore", message=r".*checkpoint was not created with WeightAveraging.*")


def make_trainer(out: Path, cfg: TrainConfig, callbacks: list):
    """The Lightning Trainer of a run folder, or of a second stage's folder inside one (``train/stage.py``)."""
    import lightning as L

    from .checkpoints import AtomicCheckpointIO
    from .hardware import choose_precision

    # auto: what this machine computes fast (train/hardware.py); config.json records it as train.precision_used
    precision = choose_precision(cfg.precision, cfg.accelerator, warn=_launched_rank() == 0)
    return L.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=precision, callbacks=callbacks, logger=_logger(out, cfg), default_root_dir=str(out),
        plugins=[AtomicCheckpointIO()],  # every checkpoint: temporary name, fsync, rename
        enable_progress_bar=cfg.progress, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=10**9, deterministic=True, use_distributed_sampler=False,
    )


def _launched_rank() -> int:
    """The global rank this process was started as (DDP children re-run the command with these set; torchrun sets
    RANK, srun SLURM_PROCID: one task per process, docs/scaling.md)."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        if int(os.environ.get(var, "0") or 0) > 0:
            return 1
    return 0


def prepare_run_dir(out: Path, resume: bool) -> Path | None:
    """Check the folder; return the checkpoint to resume from (or None)."""
    out = Path(out)
    if _launched_rank() > 0:  # rank 0 checked the folder and may already have written to it
        return out / "checkpoints" / "last.ckpt" if resume else None
    if resume:
        record = read_config(out)
        from .checkpoints import PREVIOUS, remove_stale

        remove_stale(out)  # temporaries of a killed session
        last = out / "checkpoints" / "last.ckpt"
        if not last.exists() and not last.with_name(PREVIOUS).exists():
            if record.get("status") == "running" and not (out / WEIGHTS).exists():
                # stopped before its first checkpoint (killed in epoch 0): nothing to keep, start it over
                print(f"{out} has no checkpoint yet (stopped during its first epoch): starting it over")
                return None
            raise RunError(f"nothing to resume in {out}: checkpoints/last.ckpt is missing")
        return last
    from .checkpoints import remove_stale

    remove_stale(out)  # a session killed before it wrote config.json may have left a temporary of it
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} already exists; pass --resume to continue it, or choose another --out")
    return None


def _check_checkpoint(path: Path | None, layout: list[str], out: Path) -> Path | None:
    """The checkpoint to resume from: ``path`` (last.ckpt) when it loads as data (weights_only) and holds one
    state per optimizer of the layout, else the one it replaced (last.prev.ckpt, with a one-line warning);
    a RunError when neither does."""
    if path is None:
        return None
    from .checkpoints import pick_checkpoint

    return pick_checkpoint(Path(path), layout, out, warn=_launched_rank() == 0)


def fit_and_keep_best(trainer, lit, train_loader, val_loader, ckpt_path, ckpt, out: Path, monitor: str | None) -> dict | None:
    """Fit ``lit`` (resuming from ``ckpt_path``), load the best checkpoint of ``out`` into ``lit.model`` and return
    the run's result record; None on a non-zero DDP rank. Shared by first and second stages.

    ``monitor`` is ``"val_loss"``, or None without a validation split: then the last epoch is kept and there is
    no early stopping. The training loss is no yardstick across epochs: it is measured while the weights move,
    and a KL warm-up scales its KL term up epoch by epoch, so its lowest value falls in the warm-up (an hvae
    trained 338 epochs on all 60,000 MNIST images kept its epoch 3: 127.1 nats of IWAE NLL, where its last
    epoch scores 82.9)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .checkpoints import StopOnSignal
    from .distributed import PeerWatch

    stopper = next(cb for cb in trainer.callbacks if isinstance(cb, StopOnSignal))
    peers = PeerWatch(trainer, stopper)  # several processes: one of them gone is a one-line RunError
    start = time.perf_counter()
    with stopper.handlers():  # SIGINT/SIGTERM: finish the step, save last.ckpt, raise Stopped
        try:
            # weights_only: a checkpoint is data; never run code from it, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says
            trainer.fit(lit, train_dataloaders=train_loader, val_dataloaders=val_loader,
                        ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        except SIGTERMException:  # Lightning's own, when SIGTERM came before our handler replaced its handler
            stopper.signum = stopper.signum or signal.SIGTERM
            raise stopper.stopped(trainer) from None
        except RuntimeError as exc:  # a collective whose peer process is gone (killed, out of memory, node lost)?
            lost = peers.lost(exc)
            if lost is None:
                raise
            raise lost from None
    seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return None
    if monitor is None:  # nothing held out to choose by: the weights training ended with
        best = out / "checkpoints" / "last.ckpt"
    else:
        best = Path(ckpt.best_model_path) if ckpt.best_model_path else out / "checkpoints" / "last.ckpt"
        if not best.is_relative_to(out.absolute()) or not best.exists():  # never another folder's checkpoint
            best = out / "checkpoints" / ("best.ckpt" if (out / "checkpoints" / "best.ckpt").exists() else "last.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    lit.model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    rows = read_metrics(out / METRICS)
    best_score = ckpt.best_model_score
    early = trainer.early_stopping_callback
    if early is not None and early.stopped_epoch and rows:  # say why training ended before --epochs
        top = min(rows, key=lambda r: r.get(monitor, float("inf")))
        print(f"stopped early at epoch {early.stopped_epoch + 1}: {monitor} did not improve for {early.patience} "
              f"epochs; best epoch {int(top['epoch']) + 1} ({monitor} {top[monitor]:.4g}) is the one kept", flush=True)
    from .checkpoints import TimeLimit

    limit = next((cb for cb in trainer.callbacks if isinstance(cb, TimeLimit)), None)
    stopped_by = None
    if limit is not None and limit.stopped_epoch is not None:
        stopped_by = "max_minutes"
        print(f"stopped at the time budget after epoch {limit.stopped_epoch + 1} of {trainer.max_epochs} "
              f"(--max-minutes {limit.seconds / 60:g}: one more epoch would end past it)", flush=True)
    elif early is not None and early.stopped_epoch:
        stopped_by = "patience"
    return {
        "stopped_by": stopped_by,
        "epochs_completed": len(rows),
        # the epoch whose weights the run keeps: the best on the validation loss, or the last without validation
        "best_epoch": (int(min(rows, key=lambda r: r.get(monitor, float("inf")))["epoch"]) if monitor else
                       int(rows[-1]["epoch"])) if rows else None,
        **({f"best_{monitor}": float(best_score) if best_score is not None else None} if monitor else {}),
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in rows), 2),
        "wall_seconds_last_session": round(seconds, 2),
    }


def train(model, data, cfg: TrainConfig, out: str | Path, *, resume: bool = False, data_options: dict[str, Any] | None = None,
          init_from: dict[str, Any] | None = None) -> Run:
    """Train ``model`` on ``data`` and write the run folder ``out``; returns the loaded best run.

    ``data_options`` are the loader options (spec, val_fraction, ...) recorded so ``Run.data()`` can reload
    the same splits. With ``resume``, training continues from ``out/checkpoints/last.ckpt`` up to
    ``cfg.epochs`` epochs in all. ``init_from`` records where the model's starting weights came from
    (``aekit train --init-from``: the source run, its weights' sha256) in config.json.
    """
    from .loader import BatchLoader
    from .module import LitAutoencoder
    from ..registry import model_to_dict

    out = Path(out)
    from ..limits import check_batch

    check_batch(model, min(cfg.batch_size, max(len(data.splits["train"]), 1)))  # before anything is allocated or written
    cfg.check_logger()  # --logger's package is installed
    ckpt_path = prepare_run_dir(out, resume)
    if tuple(model.input_shape) != tuple(data.shape):
        raise ConfigError(f"model input shape {model.input_shape} does not match the data's {data.shape}")
    if len(data.splits["train"]) == 0:
        raise ConfigError("the training split is empty")
    model.prepare_data(data)  # the model refuses data it cannot learn from (a conditional one without labels)
    if cfg.binarize != "none" and model.config.loss != "bce":
        raise ConfigError("--binarize needs --loss bce (a Bernoulli likelihood)")

    quiet_lightning()

    has_val = len(data.splits.get("val", [])) > 0
    monitor = "val_loss" if has_val else None  # no validation split: the last epoch is kept (fit_and_keep_best)
    trainer_ref: dict[str, Any] = {}

    def context() -> tuple[int, int, int]:
        t = trainer_ref.get("t")
        return (t.current_epoch, t.global_rank, t.world_size) if t is not None else (0, 0, 1)

    # data kept on disk brings its own batches (same arguments; a pack streams its shards: aekit.data.shards)
    loader = getattr(data, "batch_loader", None) or (lambda *a, **k: BatchLoader(data, *a, **k))
    train_loader = loader("train", cfg.batch_size, shuffle=True, seed=cfg.seed, binarize=cfg.binarize, context=context)
    val_loader = loader("val", 512, shuffle=False, seed=cfg.seed,
                        binarize="static" if cfg.binarize != "none" else "none", context=context) if has_val else None
    record_ref: dict[str, Any] = {}
    callbacks, ckpt = _callbacks(out, cfg, monitor, len(train_loader), on_start=lambda: write_json(out / CONFIG, record_ref["r"]))
    trainer = make_trainer(out, cfg, callbacks)
    trainer_ref["t"] = trainer
    lit = LitAutoencoder(model, cfg)

    layout = list(model.make_optimizers(cfg))  # the optimizer layout, e.g. ["model"] or VAE-GAN's three
    if len(layout) > 1 and (cfg.devices > 1 or cfg.num_nodes > 1 or cfg.strategy != "auto"):
        # DDP's reducer wants every parameter's gradient from each backward pass; a several-optimizer recipe
        # back-propagates each loss into its own network only (module.Step)
        raise ConfigError(f"{model.name} trains with {len(layout)} optimizers ({', '.join(layout)}), which runs on one "
                          "device only; leave out --devices and --strategy", param="strategy")
    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        **{"versions": versions()},
        "model": model_to_dict(model),
        # "shape" is the images' (C, H, W); a flat-array fold shape the user gave is kept as "fold_shape"
        "data": {**{("fold_shape" if k == "shape" else k): v for k, v in (data_options or {"spec": data.name}).items()},
                 "shape": list(data.shape), **data.record(),  # its kind and scaling (a table: the scaler)
                 "class_names": list(data.class_names), "sizes": {k: int(len(v)) for k, v in data.splits.items()}},
        "train": {**cfg.to_dict(), "optimizers": layout, "precision_used": trainer.precision},  # precision: as asked
        "status": "running",
        **({"init_from": init_from} if init_from is not None else {}),
    }
    if resume:
        old = read_config(out)
        if "init_from" in old:
            record["init_from"] = old["init_from"]
        if old["model"] != json.loads(json.dumps(record["model"])):
            raise RunError(f"{out} holds a {old['model']['name']!r} run with another config; resume it with the same model options")
        old_layout = old.get("train", {}).get("optimizers", ["model"])
        if old_layout != layout:
            raise RunError(f"{out} was trained with optimizers {', '.join(old_layout)}; this model has {', '.join(layout)}: "
                           "resume it with the same model and options")
        record["result"] = old.get("result", {})
        ckpt_path = _check_checkpoint(ckpt_path, layout, out)
    record_ref["r"] = record
    if trainer.is_global_zero and not resume:
        write_json(out / CONFIG, record)  # a resumed run's record is rewritten once its checkpoint has loaded

    from .loader import Grouped, group_for

    train_loader = Grouped(train_loader, group_for(cfg.checkpoint_every, ckpt_path))  # Lightning's steps: groups
    lit.group = train_loader.group
    result = fit_and_keep_best(trainer, lit, train_loader, val_loader, ckpt_path, ckpt, out, monitor)
    if result is None:
        return None  # a non-zero DDP rank: rank 0 alone writes the folder
    model.float().eval()  # --precision 64 trains in float64; run folders hold float32 weights like every other
    save_weights(model, out / WEIGHTS)
    from .collapse import split_ratio, warning

    # collapse to the mean image: the loss curve looks fine, the reconstructions are one picture (train/collapse.py)
    ratio = split_ratio(model, data, "val" if has_val else "train")
    result["spread_ratio"] = None if ratio is None else round(ratio, 4)
    if (line := warning(ratio)) is not None:
        print(line, file=sys.stderr, flush=True)
    record["status"] = "finished"
    record["result"] = result
    write_json(out / CONFIG, record)
    return Run(path=out, config=record, model=model)
