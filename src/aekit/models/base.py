"""The model contract every aekit autoencoder follows.

A model is an ``nn.Module`` whose only constructor argument is a frozen config dataclass. It offers
``encode`` (deterministic in eval mode), ``decode`` (values in [0, 1]), ``forward -> Output`` (the model owns
its loss) and ``sample``. Loss terms are summed over pixels and averaged over the batch, so BCE terms are in
nats per image; ``terms["mse"]`` is always the per-pixel mean squared error, reported for every model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, DataError, NoPriorError
from ..options import from_dict, opt

LOSSES = ("mse", "rmse", "bce")
ACTIVATIONS = ("relu", "leaky_relu", "selu", "elu", "tanh", "gelu")


@dataclass(frozen=True)
class Output:
    """What ``forward`` returns: the scalar loss; ``terms``, the weighted parts that sum to the loss
    (``recon``, ``kl``, ``sparsity``, ``commit`` ...); ``stats``, detached diagnostics that are not part of it
    (``mse``, ``elbo``, ``perplexity`` ...); the reconstruction in [0, 1] and the code used to make it.

    In a training step whose diagnostics nobody reads (:meth:`Trainable.wants_stats` False) a family may leave
    ``stats`` empty and ``x_hat`` None: the engine asks for them on every ``STATS_EVERY``-th batch only."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    x_hat: torch.Tensor | None
    z: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a family can do beyond encode/decode/forward, declared on the class (never found with ``hasattr``).
    Front ends ask :meth:`Autoencoder.skip_reason` and show only what applies.

    - ``posterior``: ``posterior(x) -> (mean, logvar)``, each shaped like the code (a VAE).
    - ``likelihood``: ``log_importance_weights(x, k, generator) -> (k, B)``, the IWAE bound on log p(x), and
      ``nll_key``, the name its NLL goes by (``nll_iwae``: Bernoulli; ``nll_iwae_gaussian``: loss mse).
    - ``prior``: ``sample(n, generator)`` draws new images (``prior_ready()`` says whether a second stage
      must be trained first).
    - ``conditional``: ``encode(x, y)``, ``decode(z, y)`` and ``forward(x, y)`` also take labels ``y`` (B,) long
      (-1: unknown; ``y`` left out: no label), ``sample(n, generator, labels=)`` draws images of given classes;
      the engine passes each batch's labels through :meth:`Trainable.forward_batch`.
    - ``discrete``: codes are indices into a codebook (``encode_indices``, ``decode_indices``,
      ``codebook_size``).
    - ``learned_inputs``: :meth:`Autoencoder.learned_inputs` returns images the model learned in input space
      (VampPrior pseudo-inputs, Tomczak & Welling 2018); front ends show them (``aekit plot learned-inputs``).
    """

    posterior: bool = False
    likelihood: bool = False
    prior: bool = False
    conditional: bool = False
    discrete: bool = False
    learned_inputs: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Fields every model shares. Subclasses add their own; all fields have defaults."""

    input_shape: tuple[int, int, int] = opt((1, 28, 28), "image shape C,H,W (set from the data when training)")
    latent_dim: int = opt(2, "code size (VQ: the dimension of each codebook vector)")
    loss: str = opt("bce", "reconstruction loss", choices=LOSSES)
    noise: str = opt("none", "input corruption in training (a denoising AE): gaussian:STD[,MEAN] (x + N(MEAN, STD²), "
                             "clipped; gaussian:0.5 as the Keras blog, gaussian:0.5,0.5 as the Habr article) | "
                             "saltpepper:0.1 | mask:0.3")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # JSON gives lists back; keep tuples so configs stay hashable
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(f"input_shape must be (C, H, W) with positive sizes, got {self.input_shape}", param="input_shape")
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}", param="latent_dim")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}", param="loss")
        from ..data.noise import parse_noise

        parse_noise(self.noise)  # raises ConfigError on a bad spec

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        return from_dict(cls, values, "model")


FEATURES = ("posterior", "likelihood", "prior", "conditional", "discrete", "learned_inputs", "flat", "plane")


class Trainable(nn.Module):
    """What the training engine needs of a module: ``forward(x) -> Output`` plus a recipe. Autoencoders and
    second stages (a prior over codes) both are Trainable, so one LightningModule trains them all."""

    # Set by the engine before each training step: whether this step's diagnostics (Output.stats, x_hat) are
    # wanted. It asks on every STATS_EVERY-th batch (train/module.py) and averages each stat over the steps that
    # report it, so the other steps need only the loss and its terms: a forward pass asks wants_stats().
    diagnose: bool = True

    def wants_stats(self) -> bool:
        """Whether this forward pass computes its diagnostics: always in eval mode (evaluation, validation),
        in training on the steps the engine asks for them (``diagnose``). Families that skip them otherwise make
        the per-step diagnostics cost nothing (issue 16; for ``vae``, a sigmoid, an MSE and the bound: ~1% of a
        784-512-16 step on a CPU thread, more for the IWAE objective's extra decoder pass)."""
        return self.diagnose or not self.training

    def make_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers for ``cfg`` (a TrainConfig); their order and names form the optimizer layout that a
        resumed run must match. Default: one Adam over every parameter."""
        return {"model": adam(self.parameters(), cfg)}

    def forward_batch(self, x: torch.Tensor, y: torch.Tensor) -> Output:
        """The Output for a batch of inputs ``x`` and their labels ``y`` (B,) (-1: unknown): what the engine's
        default training step and its validation score. Default ``self(x)``: labels are not used; a conditional
        model (``capabilities.conditional``) passes them on."""
        return self(x)

    def training_step(self, x: torch.Tensor, y: torch.Tensor, step) -> Output:
        """One optimisation step on a batch; ``step(name, loss)`` back-propagates ``loss`` and steps the named
        optimizer. Returns the Output whose terms and stats are logged."""
        out = self.forward_batch(x, y)
        step("model", out.loss)
        return out

    def prepare_data(self, data) -> None:
        """Called by the trainer with the data set (an ImageData) before anything is written: raise a one-line
        DataError/ConfigError when the model cannot learn from it (a conditional model on a source without
        labels, or with more classes than it was built for). No-op here."""

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Called by the trainer before each training epoch (schedules such as KL warm-up); no-op here."""


class Autoencoder(Trainable):
    """Base class: subclasses set ``Config``, build layers in ``__init__`` and implement
    ``encode``, ``decode_logits`` and ``forward``.

    A family may also supply its training recipe: :meth:`make_optimizers` (one fused Adam by default) and
    :meth:`training_step`, which gets a ``step(name, loss)`` callable from the engine (zero-grad, backward,
    gradient clipping, optimizer step, with precision and DDP handled by Lightning). A second stage (a prior
    trained on the frozen codes) is listed in ``stages`` and built by :meth:`stage`.
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    capabilities: ClassVar[Capabilities] = Capabilities()
    # With the posterior capability: p(z) is N(0, I) over the posterior's code, so KL(q || p) splits into
    # closed-form per-dimension parts (the kl metric's kl_per_dim). A family with another prior (a mixture, a
    # hierarchy) sets it False; its KL is then the one its forward pass reports (stats["kl_nats"]).
    standard_prior: ClassVar[bool] = True
    stages: ClassVar[tuple[str, ...]] = ()  # names of second-stage models this family can train (e.g. "prior")
    # options that make a small, fast instance for the contract tests (the test suite needs no per-family code)
    tiny_options: ClassVar[dict[str, Any]] = {}
    name: str = "autoencoder"  # set by the registry to the registered (preset) name

    @property
    def has_prior(self) -> bool:
        """The model can draw new images now (its prior exists and, if it is a second stage, is trained)."""
        return self.capabilities.prior and self.prior_ready()

    def prior_ready(self) -> bool:
        return self.capabilities.prior

    @property
    def code_shape(self) -> tuple[int, ...]:
        """Shape of one code: ``(D,)`` for flat codes, ``(D, h, w)`` for a spatial grid of D-dim vectors."""
        return (self.config.latent_dim,)

    @property
    def code_size(self) -> int:
        """Numbers in one code (the width of a flattened code)."""
        return int(math.prod(self.code_shape))

    def skip_reason(self, feature: str) -> str | None:
        """None when the model supports ``feature`` (one of :data:`FEATURES`), else a one-line reason that a
        front end shows for what it skips."""
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}; one of {', '.join(FEATURES)}")
        caps = self.capabilities
        if feature == "flat":
            return None if len(self.code_shape) == 1 else f"{self.name} has a spatial code {self.code_shape}, not a flat vector"
        if feature == "plane":
            if len(self.code_shape) != 1:
                return f"{self.name} has a spatial code {self.code_shape}, not a 2-D plane"
            return None if self.code_shape[0] == 2 else f"needs a 2-D code; {self.name} has {self.code_shape[0]} dimensions"
        if feature == "prior":
            if not caps.prior:
                return f"{self.name} has no prior to sample from"
            return None if self.prior_ready() else self.prior_hint()
        if getattr(caps, feature):
            return None
        what = {"posterior": "posterior q(z|x) (needs a VAE)", "likelihood": "likelihood bound (needs a VAE)",
                "conditional": "label conditioning", "discrete": "discrete codebook",
                "learned_inputs": "learned input-space images (such as a VampPrior's pseudo-inputs)"}[feature]
        return f"{self.name} has no {what}"

    def prepare_data(self, data) -> None:
        """A conditional model needs labels: a source without any is a DataError (nothing is written)."""
        if self.capabilities.conditional:
            labels = data.labels[data.splits["train"]]  # labels only: packed images stay on disk
            if not bool((labels >= 0).any()):
                raise DataError(f"{self.name} is conditional and needs labelled data; {data.name} has no labels "
                                "(use a labelled source such as mnist, digits or a class-folder dataset)")

    def prior_hint(self) -> str:
        """What to do when the prior must be trained first (families with a second-stage prior override it)."""
        return f"{self.name}'s prior is not trained yet"

    def stage(self, name: str):
        """The second-stage model ``name`` (from ``stages``): an ``nn.Module`` with ``forward(x) -> Output``,
        ``make_optimizers``, ``training_step``). None here."""
        raise ConfigError(f"{self.name} has no stage {name!r}; stages: {', '.join(self.stages) or 'none'}")

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise ConfigError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        from ..data.noise import parse_noise

        self.noise = parse_noise(config.noise)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.input_shape)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D)
        raise NotImplementedError  # abstract: every registered model overrides it

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C, H, W) pre-sigmoid
        raise NotImplementedError  # abstract: every registered model overrides it

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, *code_shape) -> (B, C, H, W) in [0, 1]
        return torch.sigmoid(self.decode_logits(z))

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        """The code before any quantisation, (B, *code_shape): the space to morph and do arithmetic in.
        Continuous families: ``encode``. Discrete ones return the encoder output, and their ``decode`` snaps
        any code to the codebook first."""
        return self.encode(x)

    # --- discrete codes (capabilities.discrete) ----------------------------------------------------------
    # codebook_size: int                                   entries K in the codebook
    # encode_indices(x) -> (B, h, w) long                  index of each grid cell's code
    # decode_indices(idx) -> (B, C, H, W) in [0, 1]        images from a grid of indices
    # code_nll(idx) -> (B,) nats                           the code grid's NLL under the learned prior (prior_ready)

    def learned_inputs(self) -> torch.Tensor:
        """Images the model learned in input space, (K, C, H, W) in [0, 1], detached (``capabilities.
        learned_inputs``; e.g. the pseudo-inputs of a VampPrior). A ConfigError with the reason for a model that
        has none: ask ``skip_reason("learned_inputs")`` first."""
        raise ConfigError(self.skip_reason("learned_inputs") or f"{self.name} does not implement learned_inputs()")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.capabilities.prior and not self.prior_ready():
            raise NoPriorError(self.prior_hint())
        raise NoPriorError(
            f"model {self.name!r} has no prior to sample from; use a VAE, or aekit.explore's fitted-Gaussian sampler"
        )

    # --- saving without a run folder ------------------------------------------------------------------
    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` (name + config) and ``model.safetensors`` to ``directory``; reload with
        :func:`aekit.from_pretrained`."""
        from ..pretrained import save_pretrained

        save_pretrained(self, directory)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Training-time input corruption (denoising autoencoders); identity in eval mode."""
        return self.noise(x) if self.training and self.noise.kind != "none" else x

    def reconstruction_terms(self, logits: torch.Tensor, x: torch.Tensor, *, x_hat: torch.Tensor | None = None
                             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(terms, stats): ``recon`` in the configured loss (summed over pixels, mean over batch) and the
        per-pixel ``mse`` diagnostic (left out when :meth:`wants_stats` is False). ``x_hat``: ``sigmoid(logits)``
        when the caller has it already (the ``Output``'s reconstruction), so it is computed once per step."""
        if self.config.loss == "bce":
            # with logits: exact and stable where sigmoid saturates; the batch sum over B is the mean over images
            # of the per-image sums, in one reduction
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
            if not self.wants_stats():
                return {"recon": recon}, {}
            with torch.no_grad():  # a diagnostic only: nothing recorded for backward
                mse = ((torch.sigmoid(logits) if x_hat is None else x_hat) - x).pow(2).mean()
            return {"recon": recon}, {"mse": mse}
        x_hat = torch.sigmoid(logits) if x_hat is None else x_hat
        sq = (x_hat - x).pow(2).flatten(1)  # (B, P)
        mse = sq.mean()
        if self.config.loss == "mse":
            recon = sq.sum(1).mean()
        else:  # rmse, as the Keras articles' custom loss: root of the per-image mean squared error
            recon = sq.mean(1).clamp_min(1e-12).sqrt().mean()
        return {"recon": recon}, {"mse": mse.detach()}


def adam(params, cfg, lr_scale: float = 1.0, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam with the run's learning rate and weight decay. Fused: one kernel per step instead of ~10 small ops
    per parameter (CPU and CUDA, torch >= 2.4)."""
    params = [p for p in params if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.lr * lr_scale, betas=betas, weight_decay=cfg.weight_decay, fused=True)
