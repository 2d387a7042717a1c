"""The model registry: one decorator fills it, everything else looks models up by name here.

A registered name is a model class plus preset config values (``beta-vae`` is ``VAE`` with ``beta=4``), so a
variant is never a copy of a class, and optionally the training defaults the family is measured with
(``train={"epochs": 40}``): ``aekit train`` starts from them, flags and config files override them, and
:meth:`aekit.TrainConfig.for_model` gives them to Python users.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    description: str
    presets: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields that differ for this family

    def config(self, **overrides: Any):
        """The preset config with ``overrides`` applied; unknown fields are a ConfigError."""
        fields = {f.name for f in dataclasses.fields(self.cls.Config)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"model {self.name!r} has no option(s) {', '.join(unknown)}")
        return self.cls.Config.from_dict({**self.presets, **overrides})


MODELS: dict[str, Entry] = {}


def register(name: str, description: str, *, train: dict[str, Any] | None = None, **presets: Any) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in MODELS:
            raise RuntimeError(f"model {name!r} registered twice")
        MODELS[name] = Entry(name, cls, description, presets, dict(train or {}))
        return cls

    return deco


def _load() -> None:
    from . import models  # noqa: F401  (registers the built-in families)


def get(name: str) -> Entry:
    _load()
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))} (see `aekit models`)")
    return MODELS[name]


def list_models() -> dict[str, str]:
    """name -> one-line description, in registration order."""
    _load()
    return {name: e.description for name, e in MODELS.items()}


def build_model(name: str, config=None, **overrides: Any):
    """Build a registered model from its preset, a config object, or overrides of the preset."""
    entry = get(name)
    cfg = config if config is not None else entry.config(**overrides)
    per_sample = check_size(name, entry.cls, cfg)
    model = entry.cls(cfg)
    model.name = name
    model.activations_per_sample = per_sample  # for the training batch's memory check (aekit.limits.check_batch)
    return model


def model_from_dict(spec: dict[str, Any]):
    """Inverse of :func:`model_to_dict` (``{"name": ..., "config": {...}}``)."""
    try:
        name, values = spec["name"], spec["config"]
    except (KeyError, TypeError):
        raise ConfigError("model spec needs 'name' and 'config'") from None
    entry = get(name)
    return build_model(name, entry.cls.Config.from_dict(values))


def model_to_dict(model) -> dict[str, Any]:
    return {"name": model.name, "config": model.config.to_dict()}


def check_size(name: str, cls: type, cfg) -> int | None:
    """Refuse a config whose model cannot fit, before allocating it: the model is first built on PyTorch's
    ``meta`` device (shapes only, no memory), and its weights, gradients and two Adam moments (float32) must fit
    in the memory available now. Returns the values one sample's forward pass produces (see _activations), or
    None when unknown."""
    import torch

    from .limits import available_memory

    try:
        with torch.device("meta"):
            probe = cls(cfg)
    except (TypeError, OverflowError, RuntimeError) as exc:
        if "verflow" in str(exc):
            raise ConfigError(f"model {name!r}: a size in its options is too large to represent; use smaller sizes") from None
        return  # a family that cannot be built on the meta device is simply built for real
    n = sum(p.numel() for p in probe.parameters()) + sum(b.numel() for b in probe.buffers())
    need, avail = 16 * n, available_memory()
    if need > avail:
        raise ConfigError(f"model {name!r} has {n:,} parameters and would need {need / 2**30:.1f} GiB to train; "
                          f"{avail / 2**30:.1f} GiB is available: use smaller sizes (latent_dim, hidden_dims, filters)",
                          param=("latent_dim", "hidden_dims"))
    return _activations(probe, tuple(cfg.input_shape))


def _activations(probe, input_shape: tuple[int, ...]) -> int | None:
    """Values one input sample produces in a forward pass (the sum of every leaf module's outputs), measured
    by running ``probe`` (a model on the meta device) on one meta sample: what training keeps per sample for
    the backward pass. None when the family's forward cannot run on the meta device."""
    import torch

    total = 0

    def count(_module, _inputs, out) -> None:
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total += t.numel()

    leaves = [m for m in probe.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        probe.eval()  # batch norm in training mode refuses a batch of one
        with torch.device("meta"):
            probe.forward_batch(torch.rand(1, *input_shape), torch.zeros(1, dtype=torch.long))
    except Exception:  # noqa: BLE001 -- an op without a meta kernel: no estimate, the batch check falls back
        return None
    finally:
        for h in hooks:
            h.remove()
    return total
