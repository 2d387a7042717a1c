"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning") with a learned prior.

Stage 1 (``aekit train``): a conv encoder maps an image to a grid of code vectors, ``downsample`` stride-2
convs below the image (28x28 -> 7x7), each vector is quantised, and a mirrored conv decoder reconstructs the
image from the quantised grid. Stage 2 (``aekit train-stage RUN --stage prior``): an autoregressive prior over
the grids of code indices, trained on the frozen encoder's codes; ``sample`` draws a grid from it and decodes.

Quantisers (``quantizer``):

- ``vq``: the nearest of ``codebook_size`` vectors of ``latent_dim`` dims. Loss = recon
  + ``commitment`` * ||z_e - sg(e)||^2 (the paper's beta = 0.25), summed over the grid like the pixels. The
  codebook follows an exponential moving average of the encoder outputs assigned to each code (paper appendix
  A.1; Razavi et al. 2019); with ``ema_decay=0`` it is learned by gradient instead, through the codebook term
  ||sg(z_e) - e||^2. Codes whose EMA usage falls below ``dead_code_threshold`` are restarted at random encoder
  outputs of the batch (Dhariwal et al. 2020, Jukebox), and the codebook starts from encoder outputs of the
  first batch. Gradients pass the quantiser straight through: z_e + sg(e - z_e) (paper eq. 3).
- ``fsq``: finite scalar quantisation (Mentzer et al. 2023): d = len(fsq_levels) channels, each bounded with
  tanh and rounded to one of L_i levels; the codebook is implicit (prod L_i codes), needs no loss term and
  cannot collapse. Codes then have d dims; ``latent_dim`` is not used.

The prior is a small causal transformer over the raster-ordered grid (a GPT over VQ codes, as Esser et al. 2021;
the paper used a PixelCNN). It is a submodule, so model.safetensors holds it and ``load_run`` gives a ready
prior; its parameters are frozen in stage 1 and trained only by its stage.

Own quantisers, not vector-quantize-pytorch: it installs (plus 5 packages) but its FSQ cannot snap a code back
onto its own grid, which ``decode`` needs, and it gives no commitment loss in eval mode; all it would add is
the 20-line EMA update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, NoPriorError
from ..options import opt
from ..registry import register
from .base import Autoencoder, Capabilities, ModelConfig, Output, Trainable, adam

QUANTIZERS = ("vq", "fsq")
MAX_CODES = 65536  # the prior's output layer has one logit per code


def grid_sizes(h: int, w: int, downsample: int) -> list[tuple[int, int]]:
    """Spatial size entering each stride-2 conv (kernel 4, padding 1: n -> n // 2), then the code grid's."""
    sizes = [(h, w)]
    for _ in range(downsample):
        sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
        if min(sizes[-1]) < 1:
            break  # nothing left to halve (the config refuses this)
    return sizes


@dataclass(frozen=True)
class VQVAEConfig(ModelConfig):
    hidden_channels: int = opt(64, "channels of the VQ-VAE conv encoder and decoder")
    downsample: int = opt(2, "stride-2 convs: the code grid is the image halved that many times (28x28 -> 7x7)")
    res_blocks: int = opt(2, "residual blocks at the code-grid resolution in encoder and decoder")
    quantizer: str = opt("vq", "vq: learned codebook (EMA); fsq: finite scalar quantisation", choices=QUANTIZERS)
    codebook_size: int = opt(512, "vq: codebook entries")
    commitment: float = opt(0.25, "vq: weight beta of the commitment loss")
    ema_decay: float = opt(0.99, "vq: decay of the EMA codebook updates; 0: learn the codebook by gradient")
    dead_code_threshold: float = opt(1.0, "vq: restart codes whose EMA usage per batch falls below this; 0: off")
    fsq_levels: tuple[int, ...] = opt((8, 5, 5, 5), "fsq: levels per code dimension (codes: their product)",
                                      metavar="8,5,5,5")
    prior_width: int = opt(64, "width of the prior's transformer (second stage)")
    prior_layers: int = opt(4, "transformer blocks of the prior")
    prior_heads: int = opt(4, "attention heads of the prior")
    prior_dropout: float = opt(0.0, "dropout in the prior's transformer")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quantizer not in QUANTIZERS:
            raise ConfigError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {self.quantizer!r}", param="quantizer")
        for name in ("hidden_channels", "prior_width", "prior_layers", "prior_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", param=name)
        for name in ("res_blocks", "downsample"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}", param=name)
        _, h, w = self.input_shape
        gh, gw = grid_sizes(h, w, self.downsample)[-1]
        if gh < 1 or gw < 1:  # each cell of the grid would cover more than the whole image
            most = int(math.log2(min(h, w)))
            raise ConfigError(f"downsample {self.downsample} makes the code grid coarser than a {h}x{w} image "
                              f"(its cells would be larger than the image); use at most {most}", param="downsample")
        if not 2 <= self.codebook_size <= MAX_CODES:
            raise ConfigError(f"codebook_size must be in 2..{MAX_CODES}, got {self.codebook_size}", param="codebook_size")
        if not self.commitment >= 0:
            raise ConfigError(f"commitment must be >= 0, got {self.commitment}", param="commitment")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}", param="ema_decay")
        if not self.dead_code_threshold >= 0:
            raise ConfigError(f"dead_code_threshold must be >= 0, got {self.dead_code_threshold}", param="dead_code_threshold")
        if not self.fsq_levels or min(self.fsq_levels) < 2:
            raise ConfigError(f"fsq_levels must be one or more levels, each >= 2, got {self.fsq_levels}", param="fsq_levels")
        if math.prod(self.fsq_levels) > MAX_CODES:
            raise ConfigError(f"fsq_levels {self.fsq_levels} give {math.prod(self.fsq_levels)} codes; at most {MAX_CODES}",
                              param="fsq_levels")
        if self.prior_width % self.prior_heads:
            raise ConfigError(f"prior_heads ({self.prior_heads}) must divide prior_width ({self.prior_width})", param="prior_heads")
        if not 0 <= self.prior_dropout < 1:
            raise ConfigError(f"prior_dropout must be in [0, 1), got {self.prior_dropout}", param="prior_dropout")


# --- encoder and decoder (paper section 4.1: strided 4x4 convs and 3x3/1x1 residual blocks) ---------------------
class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 4)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, inner, 3, padding=1), nn.ReLU(), nn.Conv2d(inner, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build_encoder(cfg: VQVAEConfig, code_dim: int) -> nn.Sequential:
    c, h, w = cfg.input_shape
    hidden, layers, channels = cfg.hidden_channels, [], c
    for i in range(cfg.downsample):  # halve the resolution; the last conv reaches the full width
        out = hidden if i == cfg.downsample - 1 else max(1, hidden // 2)
        layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.ReLU()]
        channels = out
    layers.append(nn.Conv2d(channels, hidden, 3, padding=1))
    layers += [ResBlock(hidden) for _ in range(cfg.res_blocks)]
    layers += [nn.ReLU(), nn.Conv2d(hidden, code_dim, 1)]  # (B, code_dim, h, w): z_e
    return nn.Sequential(*layers)


def build_decoder(cfg: VQVAEConfig, code_dim: int) -> nn.Sequential:
    c, h, w = cfg.input_shape
    sizes = grid_sizes(h, w, cfg.downsample)
    hidden = cfg.hidden_channels
    layers: list[nn.Module] = [nn.Conv2d(code_dim, hidden, 3, padding=1)]
    layers += [ResBlock(hidden) for _ in range(cfg.res_blocks)]
    layers.append(nn.ReLU())
    channels = hidden
    for i in reversed(range(cfg.downsample)):  # layer i maps sizes[i+1] back to sizes[i] exactly
        (h_in, w_in), (h_out, w_out) = sizes[i + 1], sizes[i]
        out = c if i == 0 else max(1, hidden // 2)
        # 4x4 stride 2 padding 1 doubles the size; output_padding 1 restores a row/column an odd size lost
        layers.append(nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1, output_padding=(h_out - 2 * h_in, w_out - 2 * w_in)))
        if i > 0:
            layers.append(nn.ReLU())
        channels = out
    if cfg.downsample == 0:
        layers.append(nn.Conv2d(channels, c, 3, padding=1))
    return nn.Sequential(*layers)  # (B, C, H, W) logits


# --- quantisers ---------------------------------------------------------------------------------------------
class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantisation onto K learned vectors, with EMA updates and dead-code restarts."""

    def __init__(self, size: int, dim: int, commitment: float, decay: float, dead_threshold: float, eps: float = 1e-5) -> None:
        super().__init__()
        self.size, self.dim, self.commitment, self.decay, self.eps = size, dim, commitment, decay, eps
        self.dead_threshold = dead_threshold
        embed = torch.randn(size, dim) / math.sqrt(dim)
        if decay > 0:
            self.register_buffer("embed", embed)  # (K, D), moved only by the EMA
            self.register_buffer("embed_sum", embed.clone())  # EMA of the sum of vectors assigned to each code
        else:
            self.embed = nn.Parameter(embed)  # learned through the codebook loss
        self.register_buffer("usage", torch.ones(size))  # EMA of how many grid cells pick each code per batch
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def pre(self, z: torch.Tensor) -> torch.Tensor:  # the encoder output is the pre-quantisation code
        return z

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N,) index of the nearest code
        e = self.embed.detach().to(flat.dtype)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)  # (N, K) squared distances
        return dist.argmin(1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:  # (...) -> (..., D)
        return F.embedding(idx, self.embed)

    def snap(self, z: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> nearest codes, same shape
        return self.codes(self.indices(z)).to(z.dtype)

    def codes(self, idx: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B, D, h, w)
        return self.lookup(idx).permute(0, 3, 1, 2)

    def indices(self, z: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B, h, w)
        b, d, h, w = z.shape
        return self.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    @torch.no_grad()
    def update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        """One training step's codebook update from encoder outputs ``flat`` (N, D) and their codes (N,)."""
        flat = flat.float()
        if not bool(self.initialised):  # start from encoder outputs: no code begins far from the data
            self._restart(torch.ones(self.size, dtype=torch.bool, device=flat.device), flat)
            self.initialised.fill_(True)
            return
        counts = torch.bincount(idx, minlength=self.size).to(flat.dtype)  # (K,)
        sums = torch.zeros(self.size, self.dim, device=flat.device).index_add_(0, idx, flat)  # (K, D)
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # one codebook over all ranks
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        decay = self.decay if self.decay > 0 else 0.99  # a learned codebook still tracks usage for restarts
        self.usage.mul_(decay).add_(counts, alpha=1 - decay)
        if self.decay > 0:
            self.embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
            n = self.usage.sum()
            size = (self.usage + self.eps) / (n + self.size * self.eps) * n  # Laplace smoothing: no division by 0
            self.embed.copy_(self.embed_sum / size.unsqueeze(1))
        if self.dead_threshold > 0:
            dead = self.usage < self.dead_threshold
            if dead.any():
                self._restart(dead, flat)

    def _restart(self, which: torch.Tensor, flat: torch.Tensor) -> None:
        """Move the codes ``which`` (K,) bool onto random encoder outputs of the batch."""
        k = int(which.sum())
        pick = flat[torch.randint(len(flat), (k,), device=flat.device)]  # (k, D)
        self.embed.data[which] = pick.to(self.embed.dtype)
        reset = max(self.dead_threshold, 1.0)
        self.usage[which] = reset
        if self.decay > 0:
            self.embed_sum[which] = pick * reset

    def forward(self, z: torch.Tensor):
        """z_e (B, D, h, w) -> (z_q with straight-through gradients, indices (B, h, w), loss terms)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # (N, D), N = B*h*w
        idx = self.nearest(flat.detach())  # (N,)
        q = self.lookup(idx).to(z.dtype)  # (N, D) before this step's update
        # losses summed over the code grid and dims, averaged over the batch (like the pixel terms)
        terms = {"commit": self.commitment * (flat - q.detach()).pow(2).sum() / b}
        if self.decay == 0:
            terms["codebook"] = (flat.detach() - q).pow(2).sum() / b
        if self.training:
            self.update(flat.detach(), idx)
        q = flat + (q - flat).detach()  # straight-through: the decoder's gradient reaches the encoder unchanged
        return q.view(b, h, w, d).permute(0, 3, 1, 2), idx.view(b, h, w), terms


class FSQ(nn.Module):
    """Finite scalar quantisation (Mentzer et al. 2023, appendix A.1): bound each channel to L_i levels, round.

    ``pre`` gives the continuous code (each channel in [-1, 1]); ``snap`` rounds any code to the nearest grid
    point and is idempotent, so ``decode`` can take codes before or after quantisation."""

    def __init__(self, levels: tuple[int, ...], eps: float = 1e-3) -> None:
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.float32)
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)  # even L: levels sit at half-integers before the shift
        self.register_buffer("half_l", half_l, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half_l), persistent=False)
        self.register_buffer("half_width", torch.floor(lv / 2), persistent=False)
        self.register_buffer("low", -torch.floor(lv / 2), persistent=False)  # integer levels: low .. low + L - 1
        self.register_buffer("levels", lv, persistent=False)
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.float64), 0)
        self.register_buffer("basis", basis.long(), persistent=False)
        self.size = int(math.prod(levels))

    def _view(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(1, -1, 1, 1)

    def pre(self, z: torch.Tensor) -> torch.Tensor:  # (B, d, h, w) -> the bounded code, each channel in [-1, 1]
        bounded = torch.tanh(z + self._view(self.shift)) * self._view(self.half_l) - self._view(self.offset)
        return bounded / self._view(self.half_width)

    def _integers(self, c: torch.Tensor) -> torch.Tensor:  # codes -> integer levels low .. low + L - 1
        k = torch.round(c * self._view(self.half_width))
        return torch.minimum(torch.maximum(k, self._view(self.low)), self._view(self.low + self.levels - 1))

    def snap(self, c: torch.Tensor) -> torch.Tensor:
        return self._integers(c) / self._view(self.half_width)

    def indices(self, c: torch.Tensor) -> torch.Tensor:  # (B, d, h, w) codes -> (B, h, w)
        digits = (self._integers(c) - self._view(self.low)).long()  # (B, d, h, w) in 0 .. L-1
        return (digits * self.basis.view(1, -1, 1, 1)).sum(1)

    def codes(self, idx: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B, d, h, w)
        digits = (idx.unsqueeze(1) // self.basis.view(1, -1, 1, 1)) % self.levels.long().view(1, -1, 1, 1)
        return (digits.float() + self._view(self.low)) / self._view(self.half_width)

    def forward(self, c: torch.Tensor):
        """Bounded codes (B, d, h, w) -> (quantised with straight-through gradients, indices, no loss terms)."""
        q = c + (self.snap(c) - c).detach()  # straight-through rounding
        return q, self.indices(c.detach()), {}


# --- the prior: a causal transformer over the code grid ----------------------------------------------------------
class Block(nn.Module):
    """Pre-norm transformer block (as nanoGPT) with a key/value cache for sampling one position at a time."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        if cache is not None:  # sampling: attend to every earlier position, computed once
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        x = x + F.dropout(self.proj(y.transpose(1, 2).reshape(b, t, c)), self.dropout, self.training)
        return x + self.mlp(self.ln2(x))


class CodePrior(nn.Module):
    """p(grid) = prod_t p(idx_t | idx_<t) over the raster order; a start token K begins every grid."""

    def __init__(self, codes: int, positions: int, cfg: VQVAEConfig) -> None:
        super().__init__()
        self.codes, self.positions = codes, positions
        width = cfg.prior_width
        self.tok = nn.Embedding(codes + 1, width)
        self.pos = nn.Parameter(torch.randn(positions, width) * 0.02)
        self.drop = nn.Dropout(cfg.prior_dropout)
        self.blocks = nn.ModuleList(Block(width, cfg.prior_heads, cfg.prior_dropout) for _ in range(cfg.prior_layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, codes)
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool))  # set by the prior's training step

    def logits(self, idx: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, N, K): position t predicts idx_t
        start = torch.full_like(idx[:, :1], self.codes)
        x = self.tok(torch.cat([start, idx[:, :-1]], 1)) + self.pos  # (B, N, W), shifted right by one
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))

    def nll(self, idx: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B,) nats
        logp = F.log_softmax(self.logits(idx).float(), -1)  # (B, N, K)
        # gather, not cross_entropy: CUDA's nll_loss refuses Lightning's deterministic mode
        return -logp.gather(-1, idx.unsqueeze(-1)).squeeze(-1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:  # -> (n, N) long
        device = self.pos.device
        caches: list[list] = [[] for _ in self.blocks]
        token = torch.full((n, 1), self.codes, dtype=torch.long, device=device)
        out = []
        for t in range(self.positions):
            x = self.tok(token) + self.pos[t]  # (n, 1, W)
            for block, cache in zip(self.blocks, caches):
                x = block(x, cache)
            probs = F.softmax(self.head(self.ln(x[:, -1])).float(), -1)  # (n, K)
            token = torch.multinomial(probs, 1, generator=generator)  # (n, 1)
            out.append(token)
        return torch.cat(out, 1)


class PriorStage(Trainable):
    """The second stage: trains ``model.prior`` on the frozen first stage's code grids. Inputs are index grids
    (B, h, w) made by :meth:`prepare`; the loss is their NLL in nats per grid."""

    def __init__(self, model: "VQVAE") -> None:
        super().__init__()
        self.prior = model.prior  # the model's own module: training it here trains the model's prior
        self._first = (model,)  # a tuple: the autoencoder is not part of this stage's parameters or state
        self.prior.requires_grad_(True)

    @torch.no_grad()
    def prepare(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> their code grids (N, h, w) long, by the frozen first stage."""
        from ..data import to_float

        model = self._first[0]
        was = model.training
        model.eval()
        device = next(model.parameters()).device
        parts = [model.encode_indices(to_float(images[i : i + batch_size]).to(device)).cpu()
                 for i in range(0, len(images), batch_size)]
        model.train(was)
        return torch.cat(parts) if parts else torch.zeros(0, *model.grid, dtype=torch.long)

    def make_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"prior": adam(self.prior.parameters(), cfg)}

    def forward(self, idx: torch.Tensor) -> Output:
        nll = self.prior.nll(idx.flatten(1))  # (B,)
        loss = nll.mean()
        stats = {"bits_per_image": loss.detach() / math.log(2)}
        return Output(loss=loss, terms={"nll": loss}, x_hat=idx, z=idx, stats=stats)

    def training_step(self, x: torch.Tensor, y: torch.Tensor, step) -> Output:
        out = self(x)
        step("prior", out.loss)
        self.prior.trained.fill_(True)
        return out


# --- the model ----------------------------------------------------------------------------------------------
@register("vq-vae", "discrete codes: conv encoder -> 7x7 grid of 512 codes (or FSQ), EMA codebook, prior as a 2nd "
                    "stage (van den Oord et al. 2017)", latent_dim=64)
class VQVAE(Autoencoder):
    Config = VQVAEConfig
    capabilities = Capabilities(discrete=True, prior=True)
    stages = ("prior",)
    tiny_options = {"hidden_channels": 8, "res_blocks": 1, "downsample": 1, "codebook_size": 16,
                    "prior_width": 16, "prior_layers": 1, "prior_heads": 2}

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__(config)
        _, h, w = config.input_shape
        self.grid = grid_sizes(h, w, config.downsample)[-1]
        if config.quantizer == "fsq":
            self.quantizer = FSQ(tuple(config.fsq_levels))
            self.code_dim = len(config.fsq_levels)
        else:
            self.quantizer = VectorQuantizer(config.codebook_size, config.latent_dim, config.commitment, config.ema_decay,
                                             config.dead_code_threshold)
            self.code_dim = config.latent_dim
        self.encoder = build_encoder(config, self.code_dim)
        self.decoder = build_decoder(config, self.code_dim)
        self.prior = CodePrior(self.codebook_size, self.grid[0] * self.grid[1], config)
        self.prior.requires_grad_(False)  # stage 1 leaves it alone (and DDP then ignores it)

    # --- codes ---------------------------------------------------------------------------------------------
    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.code_dim, *self.grid)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.size

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D, h, w) before quantisation
        return self.quantizer.pre(self.encoder(x))

    def snap(self, z: torch.Tensor) -> torch.Tensor:  # any code (B, D, h, w) -> the nearest codebook entries
        return self.quantizer.snap(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) quantised
        return self.snap(self.encode_pre(x))

    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:  # (B, h, w) long
        return self.quantizer.indices(self.encode_pre(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:  # (B, D, h, w), snapped first -> (B, C, H, W)
        return self.decoder(self.snap(z))

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B, C, H, W) in [0, 1]
        return torch.sigmoid(self.decoder(self.quantizer.codes(idx)))

    # --- training ----------------------------------------------------------------------------------------------
    def make_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam((p for n, p in self.named_parameters() if not n.startswith("prior.")), cfg)}

    def forward(self, x: torch.Tensor) -> Output:
        z_e = self.encode_pre(self.corrupt(x))  # (B, D, h, w)
        z_q, idx, terms = self.quantizer(z_e)
        logits = self.decoder(z_q)
        recon, stats = self.reconstruction_terms(logits, x)
        terms = {**recon, **terms}
        counts = torch.bincount(idx.flatten(), minlength=self.codebook_size).float()
        p = counts / counts.sum()
        # perplexity exp(H) of the batch's code distribution: K if every code is used equally, 1 if one code is
        stats["perplexity"] = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
        stats["usage"] = (counts > 0).float().mean()  # fraction of the codebook used in the batch
        return Output(loss=sum(terms.values()), terms=terms, x_hat=torch.sigmoid(logits), z=z_q, stats=stats)

    # --- the prior (second stage) -----------------------------------------------------------------------------
    def prior_ready(self) -> bool:
        return bool(self.prior.trained)

    def prior_hint(self) -> str:
        return f"{self.name} has no prior yet: train it with `aekit train-stage RUN --stage prior`"

    def stage(self, name: str) -> PriorStage:
        if name != "prior":
            return super().stage(name)
        return PriorStage(self)

    def code_nll(self, idx: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B,) nats under the prior
        if not self.prior_ready():
            raise NoPriorError(self.prior_hint())
        return self.prior.nll(idx.flatten(1))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.prior_ready():
            raise NoPriorError(self.prior_hint())
        idx = self.prior.sample(n, generator).view(n, *self.grid)  # (n, h, w)
        return self.decode_indices(idx)
