"""Second stages: train a model's stage ``NAME`` (one of ``model.stages``, e.g. a VQ-VAE's prior over its codes)
inside a finished run folder, on the frozen first stage, through the same Lightning engine (LitAutoencoder).

What the engine asks of a stage, ``model.stage(name)``: a Trainable (``forward(inputs) -> Output``,
``make_optimizers``, ``training_step``) whose parameters belong to the model, so ``model.safetensors`` holds
them; and ``prepare(images) -> Tensor``: its training inputs made from a split's uint8 images (N, C, H, W) by
the frozen first stage (a prior: the grids of code indices, (N, h, w)). Nothing here names a family.

The stage's folder is ``RUN/NAME/``: ``metrics.csv`` and ``checkpoints/{best,last}.ckpt`` (``resume``
continues from ``last.ckpt``). At the end ``RUN/model.safetensors`` is rewritten, atomically, with the stage's
best weights, and ``RUN/config.json`` records the stage under ``stages: {NAME: {status, train, result}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, RunError
from .config import TrainConfig
from .runs import CONFIG, WEIGHTS, Run, load_run, read_config, save_weights, write_json


class StageInputs:
    """A stage's inputs per split, offered like ``ImageData.split`` to the BatchLoader."""

    def __init__(self, parts: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.parts = parts
        self.splits = {k: v[0] for k, v in parts.items()}

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.parts[name]


def resolve_stage(model_name: str, stages, name: str | None) -> str:
    """``name``, checked against the model's ``stages``; None picks the model's only stage."""
    stages = tuple(stages)
    if not stages:
        raise ConfigError(f"{model_name} has no second stage to train", param="stage")
    if name is None:
        if len(stages) > 1:
            raise ConfigError(f"stage must be chosen: {model_name} has stages {', '.join(stages)}", param="stage")
        return stages[0]
    if name not in stages:
        raise ConfigError(f"stage {name!r} is not one of {model_name}'s stages: {', '.join(stages)}", param="stage")
    return name


def stage_record(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The ``stages.NAME`` entry of a run's config.json, or None."""
    stages = record.get("stages")
    return stages.get(name) if isinstance(stages, dict) and isinstance(stages.get(name), dict) else None


def stage_finished(run_dir: str | Path, name: str) -> bool:
    try:
        entry = stage_record(read_config(Path(run_dir)), name)
    except RunError:
        return False
    return entry is not None and entry.get("status") == "finished"


def _prepare_dir(run_dir: Path, out: Path, name: str, resume: bool, recorded: bool) -> Path | None:
    """Check the stage folder; return the checkpoint to resume from (or None). ``recorded``: config.json lists
    the stage (retraining the first stage drops it: a stage folder left from before is stale)."""
    from .trainer import _launched_rank

    last = out / "checkpoints" / "last.ckpt"
    if _launched_rank() > 0:  # rank 0 checked the folder and may already have written to it
        return last if resume else None
    if resume:
        from .checkpoints import PREVIOUS, remove_stale

        remove_stale(out)  # temporaries of a killed session
        if not last.exists() and not last.with_name(PREVIOUS).exists():
            raise RunError(f"nothing to resume in {out}: checkpoints/last.ckpt is missing; "
                           f"train the stage with `aekit train-stage {run_dir} --stage {name}`")
        if not recorded:
            raise RunError(f"{out} was trained on the first stage before it was trained further; "
                           f"delete {out} and train the stage again")
        return last
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} already exists: the {name} stage was trained before; pass --resume to continue it, "
                       f"or delete {out} to train it again")
    return None


def train_stage(run_dir: str | Path, name: str | None = None, cfg: TrainConfig | None = None, *, resume: bool = False,
                data_overrides: dict[str, Any] | None = None) -> Run | None:
    """Train stage ``name`` of the finished run ``run_dir`` for ``cfg.epochs`` epochs (in all, with ``resume``);
    returns the reloaded run, whose model now has the trained stage (None on a non-zero DDP rank)."""
    from .loader import BatchLoader
    from .module import LitAutoencoder
    from .trainer import _callbacks, _check_checkpoint, make_trainer, quiet_lightning

    cfg = cfg or TrainConfig()
    cfg.check_logger()  # --logger's package is installed, before anything is written
    run_dir = Path(run_dir)
    record = read_config(run_dir)
    if record.get("status") != "finished":
        raise RunError(f"{run_dir} has not finished its first stage; finish it with `aekit train --out {run_dir} --resume`")
    run = load_run(run_dir)
    model = run.model
    name = resolve_stage(model.name, model.stages, name)
    if cfg.binarize != "none":
        raise ConfigError(f"binarize does not apply to the {name} stage: it trains on codes, not pixels", param="binarize")
    out = run_dir / name
    old = stage_record(record, name)
    ckpt_path = _prepare_dir(run_dir, out, name, resume, recorded=old is not None)

    stage = model.stage(name)
    layout = list(stage.make_optimizers(cfg))
    if resume and old is not None:
        old_layout = old.get("train", {}).get("optimizers", layout)
        if old_layout != layout:
            raise RunError(f"{out} was trained with optimizers {', '.join(old_layout)}; this stage has {', '.join(layout)}")
    if resume:
        ckpt_path = _check_checkpoint(ckpt_path, layout, out)  # last.ckpt, or last.prev.ckpt if it is damaged

    data = run.data(**(data_overrides or {}))
    parts = {}
    for split in ("train", "val"):
        images, labels = data.split(split)
        if len(images):
            parts[split] = (stage.prepare(images), labels)  # the frozen first stage's view of the split
    if "train" not in parts:
        raise ConfigError("the training split is empty")
    inputs = StageInputs(parts)
    stage.train()  # load_run left the model in eval mode; Lightning keeps each module's mode

    quiet_lightning()
    has_val = "val" in parts
    monitor = "val_loss" if has_val else None  # no validation split: the last epoch is kept (fit_and_keep_best)
    trainer_ref: dict[str, Any] = {}

    def context() -> tuple[int, int, int]:
        t = trainer_ref.get("t")
        return (t.current_epoch, t.global_rank, t.world_size) if t is not None else (0, 0, 1)

    train_loader = BatchLoader(inputs, "train", cfg.batch_size, shuffle=True, seed=cfg.seed, context=context)
    val_loader = BatchLoader(inputs, "val", 512, shuffle=False, seed=cfg.seed, context=context) if has_val else None
    entry: dict[str, Any] = {"status": "running", "train": {**cfg.to_dict(), "optimizers": layout},
                             "inputs": {"shape": list(parts["train"][0].shape[1:]), "dtype": str(parts["train"][0].dtype)}}

    def mark_running() -> None:  # once the checkpoint (if any) has loaded
        rec = read_config(run_dir)
        rec.setdefault("stages", {})[name] = entry
        write_json(run_dir / CONFIG, rec)

    callbacks, ckpt = _callbacks(out, cfg, monitor, len(train_loader), on_start=mark_running,
                                 resume_command=f"aekit train-stage {run_dir} --stage {name} --resume")
    trainer = make_trainer(out, cfg, callbacks)
    trainer_ref["t"] = trainer
    entry["train"]["precision_used"] = trainer.precision  # what --precision (auto by default) resolved to here
    lit = LitAutoencoder(stage, cfg)

    from .trainer import fit_and_keep_best

    from .loader import Grouped, group_for

    train_loader = Grouped(train_loader, group_for(cfg.checkpoint_every, ckpt_path))  # Lightning's steps: groups
    lit.group = train_loader.group
    result = fit_and_keep_best(trainer, lit, train_loader, val_loader, ckpt_path, ckpt, out, monitor)
    if result is None:
        return None  # rank 0 alone writes the folder
    model.float().cpu().eval()
    save_weights(model, run_dir / WEIGHTS)  # the whole model, now with the stage's best weights (atomic)
    entry["status"] = "finished"
    entry["result"] = result
    rec = read_config(run_dir)
    rec.setdefault("stages", {})[name] = entry
    write_json(run_dir / CONFIG, rec)
    return load_run(run_dir)
