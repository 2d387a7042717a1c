"""Run folders: write and read ``config.json``, ``model.safetensors`` and ``metrics.csv``.

A run folder is self-describing: ``config.json`` names the model and its config, the data spec and shape,
the training options and the versions that made it; the weights are safetensors (never a pickle).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RunError
from ..fileio import atomic_write

FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.csv"


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict[str, float]]:
    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error):
        raise RunError(f"{path} is damaged (not a table of numbers); delete it, or restore it from a backup") from None
    return rows


def versions() -> dict[str, str]:
    import lightning
    import torch

    from .. import __version__

    return {"aekit": __version__, "torch": torch.__version__, "lightning": lightning.__version__}


def read_config(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist; train one with `aekit train --out {run_dir}`")
    path = run_dir / CONFIG
    if not path.exists():
        raise RunError(f"{path} is missing: {run_dir} is not an aekit run folder")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None
    if not isinstance(cfg, dict) or "model" not in cfg or "data" not in cfg:
        raise RunError(f"{path} lacks the 'model' and 'data' sections of an aekit run")
    check_record(cfg, path)
    return cfg


def check_record(cfg: dict[str, Any], path: Path) -> None:
    """The shape of a run's config.json, checked once on read: a hand-damaged field is a one-line RunError
    naming it (the values inside ``model.config`` and ``train`` are checked by their dataclasses)."""
    def bad(field: str, want: str) -> RunError:
        return RunError(f"{path}: {field} must be {want}; the run folder is damaged (restore config.json or retrain)")

    version = cfg.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise bad("format_version", "a whole number")
    if version > FORMAT_VERSION:
        raise RunError(f"{path.parent} was written by a newer aekit (format {version}); upgrade aekit")
    model, data = cfg["model"], cfg["data"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("config"), dict):
        raise bad("model", "an object with a 'name' string and a 'config' object")
    if not isinstance(data, dict) or not isinstance(data.get("spec"), str):
        raise bad("data", "an object with a 'spec' string")
    shape = data.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise bad("data.shape", "three positive whole numbers [C, H, W]")
    if not isinstance(cfg.get("train", {}), dict):
        raise bad("train", "an object of training options")


def save_weights(model, path: Path) -> None:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, save(state))


def load_weights(model, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.exists():
        raise RunError(f"{path} is missing: the run has not finished; resume it with `aekit train --out {path.parent} --resume`")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path} is damaged ({str(exc).splitlines()[0]}); retrain or export it again from checkpoints/best.ckpt") from None
    check_finite(state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise RunError(f"{path} does not fit model {model.name!r}: {' '.join(first[:2])[:300]}") from None


def check_finite(state: dict, path: Path) -> None:
    """Refuse weights holding NaN or infinity: every figure, code and score of such a model is NaN, and the
    server and report would fail far from the cause."""
    import torch

    floats = [t for t in state.values() if t.is_floating_point()]
    bad = sum(int((~torch.isfinite(t)).sum()) for t in floats)
    if bad:
        total = sum(t.numel() for t in floats)
        raise RunError(f"{path} holds non-finite weights ({bad} of {total} values); retrain or resume from a good "
                       "checkpoint")


@dataclass
class Run:
    """A finished (or running) training run, loaded from its folder."""

    path: Path
    config: dict[str, Any]
    model: Any = field(repr=False)

    @property
    def model_name(self) -> str:
        return self.config["model"]["name"]

    def data(self, **overrides: Any):
        """The dataset the run was trained on, split as in training (overrides e.g. ``data_dir``)."""
        from ..data import load_data

        from ..data import recorded_options

        d = self.config["data"]
        data = load_data(d["spec"], **{**recorded_options(d), **overrides})
        if tuple(data.shape) != tuple(d["shape"]):
            raise RunError(f"dataset {d['spec']!r} now has shape {data.shape}, the run was trained on {tuple(d['shape'])}")
        if d.get("kind") is not None:  # another data kind (a table): its scaler must be the recorded one
            from ..data.tables import check_record

            check_record(data, d)
        if d.get("one_class") is not None:  # a run of the one-class benchmark: trained on one class only
            data = data.one_class(int(d["one_class"]), seed=int(d.get("seed", 0)))
        return data

    def metrics(self) -> list[dict[str, float]]:
        return read_metrics(self.path / METRICS)


def load_run(path: str | os.PathLike) -> Run:
    """Load a run folder: the model in eval mode with its best weights, and the config."""
    from ..registry import model_from_dict

    path = Path(path)
    cfg = read_config(path)
    try:
        model = model_from_dict(cfg["model"])
    except ConfigError as exc:
        raise RunError(f"{path / CONFIG}: {exc}") from None
    load_weights(model, path / WEIGHTS)
    model.eval()
    return Run(path=path, config=cfg, model=model)
