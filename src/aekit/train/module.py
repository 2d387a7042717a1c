"""The LightningModule that trains any model of the contract — every family, and second stages too.

Optimisation is manual: the model supplies its recipe (``make_optimizers`` and ``training_step``) and gets a
:class:`Step` that does zero-grad, backward, gradient clipping and the optimizer step through Lightning (so
precision plugins, DDP gradient sync and checkpointing of every optimizer's state stay Lightning's job).
A one-optimizer family uses the base recipe; VAE-GAN brings three optimizers without touching this file.

Per-step work is kept to the model's own forward/backward: loss terms are summed into one tensor per split
(no ``self.log`` per step, which costs more than a small MLP step), and the epoch means are computed once,
reduced across ranks, and logged at the end of the epoch. The model's diagnostics (``Output.stats``) are asked
for on every ``STATS_EVERY``-th training batch only (``Trainable.diagnose``; a family skips them on the others),
and each is averaged over the steps that reported it: ``train_<stat>`` is a mean over every 8th batch for the
families that skip, over every batch for a stat reported every step; validation reports every batch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import torch

from ..errors import ConfigError, RunError
from .config import TrainConfig


# Training batches whose diagnostics are read: 0, 8, 16, ... of each epoch (the first always, so a short epoch
# has them too). One in 8 keeps the epoch means of a 400-batch MNIST epoch within sampling noise of the
# every-batch means while the other 7 steps pay nothing for them.
STATS_EVERY = 8
STATS = "/stats"  # the accumulator of a split's diagnostics: "train/stats", "val/stats"


class NonFinite(Exception):
    """Raised by :class:`Step` when a loss is NaN or infinite (caught by the engine, never seen by users)."""

    def __init__(self, optimizer: str) -> None:
        super().__init__(optimizer)
        self.optimizer = optimizer


class Step:
    """``step(name, loss)``: back-propagate ``loss`` and step the optimizer called ``name``.

    Gradients are zeroed right before the backward pass, so each optimizer sees only the gradient of the loss
    it was given (a discriminator loss does not leak into the encoder's update). With several optimizers the
    backward pass is also limited to the stepped optimizer's parameters (``backward(inputs=...)``): autograd then
    skips the other networks' weight gradients, and a recipe may step one network while a later loss on the same
    graph (``retain_graph=True``) still passes through the networks it has not stepped yet."""

    def __init__(self, lit: "LitAutoencoder", optimizers: dict, direct: bool = False) -> None:
        self.lit, self.optimizers, self.direct = lit, optimizers, direct
        self.clip, self.check_grads = lit.cfg.grad_clip, lit.cfg.on_nan == "skip"
        several = len(optimizers) > 1
        self.inputs = {k: {"inputs": [p for g in o.param_groups for p in g["params"]]} if several else {}
                       for k, o in optimizers.items()}

    def __call__(self, name: str, loss: torch.Tensor, retain_graph: bool = False) -> None:
        opt = self.optimizers[name]
        if not torch.isfinite(loss.detach()).all():  # one flag read per step: NaN must never reach the weights
            raise NonFinite(name)
        opt.zero_grad(set_to_none=True)
        if self.direct:  # what Lightning's backward comes to here (see plain_loop), less ~0.3 ms of hook dispatch
            loss.backward(retain_graph=retain_graph, **self.inputs[name])
        else:
            self.lit.manual_backward(loss, retain_graph=retain_graph, **self.inputs[name])
        if self.clip > 0:
            self.lit.clip_gradients(opt, gradient_clip_val=self.clip, gradient_clip_algorithm="norm")
        if self.check_grads:  # a finite loss can still have NaN gradients: they must not be applied
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
                opt.zero_grad(set_to_none=True)
                raise NonFinite(name)
        if self.direct:  # Lightning's step, less its strategy/precision/closure layers: the step counter still counts
            opt._on_before_step()
            opt.optimizer.step()
            opt._on_after_step()
        else:
            opt.step()


def _scalars(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Values to stack as float32 scalars (most already are: then no op at all)."""
    if all(t.dtype is torch.float32 and t.dim() == 0 for t in parts):
        return parts
    return [t.reshape(()).float() for t in parts]


_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def plain_loop(trainer, lit: L.LightningModule) -> bool:
    """True when Lightning's manual backward and optimizer step would only call ``loss.backward()`` and
    ``optimizer.step()`` (one process, a precision plugin that neither scales the loss nor wraps the step, no
    callback or module hook on backward or step): Step then calls them itself. Lightning's dispatch of the three
    hooks over every callback costs ~0.5 ms a step, ~4% of a 784-512-16 MLP step on one CPU thread (measured)."""
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy

    plugin = type(trainer.precision_plugin)
    return (type(trainer.strategy) is SingleDeviceStrategy
            and all(getattr(plugin, f) is getattr(Precision, f)
                    for f in ("pre_backward", "backward", "post_backward", "optimizer_step", "_wrap_closure"))
            and all(getattr(type(cb), h) is getattr(Callback, h) for cb in trainer.callbacks for h in _HOOKS)
            and all(getattr(type(lit), h) is getattr(L.LightningModule, h) for h in (*_HOOKS, "backward"))
            and all(hasattr(o, "_on_before_step") and hasattr(o, "_on_after_step") for o in lit._optimizers()))


class LitAutoencoder(L.LightningModule):
    def __init__(self, model, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.automatic_optimization = False
        self.optimizer_names: list[str] = []
        self._keys: dict[str, list[str]] = {}
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._epoch_start = 0.0
        self._resumed_seconds = 0.0  # of the epoch in progress when its checkpoint was saved
        self.skipped = 0
        self._cached: tuple[int, dict[str, float]] | None = None
        self._step: Step | None = None
        self.group = 1  # batches per Lightning step (loader.Grouped; set by the trainer)

    # --- accumulation --------------------------------------------------------------------------------
    def _accumulate(self, split: str, out, n: int) -> None:
        """Loss terms go to ``loss_<term>`` columns, diagnostics (``stats``, whenever a step reports them) under
        their own names."""
        if split not in self._keys:
            self._keys[split] = ["loss", *(f"loss_{k}" for k in out.terms)]
        parts = [out.loss, *out.terms.values()]
        with torch.no_grad():  # on-device sums, no .item(): nothing waits on the step and no graph is built
            values = torch.stack(_scalars(parts)).mul_(n)
            if split in self._sums:
                self._sums[split].add_(values)
            else:
                self._sums[split] = values
        self._counts[split] = self._counts.get(split, 0) + n
        if out.stats:
            self._add_stats(split + STATS, out.stats, n)

    def _add_stats(self, key: str, stats: dict[str, torch.Tensor], n: int) -> None:
        """Each diagnostic keeps its own count: the sums vector is [sum_1 .. sum_K, count_1 .. count_K]. A family
        that skips its diagnostics on unread steps (``wants_stats``) is counted on the read ones; one that reports
        some of them on every step, on every step."""
        names = self._keys.setdefault(key, [])
        with torch.no_grad():
            values = torch.stack(_scalars(list(stats.values()))).mul_(n)
            if list(stats) == names and key in self._sums:  # the usual step: the same diagnostics as before
                self._sums[key].add_(torch.cat([values, torch.full_like(values, n)]))
                return
            new = [k for k in stats if k not in names]
            if new or key not in self._sums:  # a name not seen before in this run: widen the sums
                k_old = len(names)
                old = self._sums.get(key, values.new_zeros(2 * k_old))  # new_zeros: --precision 64 makes
                pad = values.new_zeros(len(new))  # float64 the default dtype, and the sums stay float32
                self._sums[key] = torch.cat([old[:k_old], pad, old[k_old:], pad])
                names.extend(new)
            idx = torch.tensor([names.index(k) for k in stats], device=values.device)
            self._sums[key].index_add_(0, torch.cat([idx, idx + len(names)]), torch.cat([values, torch.full_like(values, n)]))
        self._counts[key] = self._counts.get(key, 0) + n

    def running_loss(self) -> float | None:
        """Mean training loss of the epoch so far (this process), for the progress bar; None before a step."""
        sums, n = self._sums.get("train"), self._counts.get("train", 0)
        return float(sums[0]) / n if sums is not None and n else None

    def _reset(self, split: str) -> None:
        for key in (split, split + STATS):
            if key.endswith(STATS):  # the diagnostics' names stay (every epoch reports them)
                if key in self._sums:
                    self._sums[key] = torch.zeros_like(self._sums[key])
            else:  # the terms: named again by the epoch's first step (--iwae-after changes them between epochs)
                self._sums.pop(key, None)
                self._keys.pop(key, None)
            self._counts[key] = 0

    def _optimizers(self) -> list:
        opts = self.optimizers()
        return opts if isinstance(opts, list) else [opts]

    # --- steps ---------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if self._step is None:  # one per fit (on_train_start drops it): building it costs like a small op
            self._step = Step(self, dict(zip(self.optimizer_names, self._optimizers())), plain_loop(self.trainer, self))
        if isinstance(batch, list):  # a group of batches (loader.Grouped), each its own optimizer step
            for j, (x, y) in enumerate(batch):
                self._train_batch(x, y, batch_idx * self.group + j)
        else:
            self._train_batch(*batch, batch_idx)

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor, batch_idx: int) -> None:
        """One batch: the model's step, its loss terms (and, on every STATS_EVERY-th batch, its diagnostics)
        added to the epoch's sums. ``batch_idx``: the batch's place in the epoch."""
        self.model.diagnose = batch_idx % STATS_EVERY == 0
        try:
            out = self.model.training_step(x, y, self._step)
        except NonFinite as exc:
            weights_ok = all(torch.isfinite(p).all() for p in self.model.parameters())
            if self.cfg.on_nan == "skip" and weights_ok:  # counted, not hidden: metrics.csv has the skipped steps
                self.skipped += 1
                return
            raise RunError(self._diverged(x, y, exc.optimizer, batch_idx)) from None
        finally:
            self.model.diagnose = True  # outside the engine's steps the model computes everything
        self._accumulate("train", out, x.shape[0])

    def _kept(self) -> str:
        last = Path(self.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        return "the last good checkpoint is kept (checkpoints/last.ckpt)" if last.exists() else "no checkpoint was written yet"

    @torch.no_grad()
    def _diverged(self, x: torch.Tensor, y: torch.Tensor, optimizer: str, batch_idx: int) -> str:
        """The one-line message: where it happened and which loss terms are not finite."""
        try:
            out = self.model.forward_batch(x, y)
            bad = [k for k, v in out.terms.items() if not torch.isfinite(v).all()] or ["loss"]
        except Exception:  # the message must not fail in its turn
            bad = ["loss"]
        return (f"training diverged: the loss ({', '.join(bad)}; optimizer {optimizer!r}) became NaN or infinite at "
                f"epoch {self.current_epoch}, step {batch_idx}; {self._kept()}. Lower --lr, set --grad-clip, or pass --on-nan skip")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._accumulate("val", self.model.forward_batch(x, y), x.shape[0])  # labels reach a conditional model

    # --- epochs --------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._reset("train")
        self._reset("val")
        self._cached = None
        self.skipped = 0
        self._epoch_start = time.perf_counter()
        self.model.on_epoch_start(self.current_epoch, self.cfg.epochs)

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    # --- resuming mid-epoch ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The running sums of the epoch in progress go into every checkpoint: a run resumed mid-epoch reports
        the same epoch means as an unbroken one (plain data: tensors, numbers and strings, for weights_only).
        With several processes the sums are first added up over the ranks (every rank saves together: a
        collective is safe here), so the checkpoint holds the whole epoch so far whatever the number of processes
        it is resumed with; rank 0 takes them back and the other ranks start from zero (on_load_checkpoint)."""
        sums, counts = {}, dict(self._counts)
        for split, values in self._sums.items():  # the same splits in the same order on every rank
            both = torch.cat([values.detach(), torch.tensor([float(counts[split])], device=values.device)])
            if self.trainer.world_size > 1:
                both = self.trainer.strategy.reduce(both, reduce_op="sum")
            sums[split], counts[split] = both[:-1].cpu().clone(), int(round(float(both[-1])))
        checkpoint["aekit_epoch"] = {
            "sums": sums, "counts": counts,
            "keys": {k: list(v) for k, v in self._keys.items()}, "skipped": self.skipped,
            "seconds": time.perf_counter() - self._epoch_start,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "current_model_state" in checkpoint:  # saved under --weight-ema: state_dict holds the average
            from lightning.pytorch.callbacks import WeightAveraging

            if not any(isinstance(cb, WeightAveraging) for cb in self.trainer.callbacks):
                # resumed without it: training continues from the optimizer's own weights (with it, the callback
                # restores both; this hook runs before the weights load)
                checkpoint["state_dict"] = checkpoint["current_model_state"]
        state = checkpoint.get("aekit_epoch")
        if state is None:  # a checkpoint from before mid-epoch resuming: it was saved at an epoch's end
            return
        self._sums, self._counts = dict(state["sums"]), dict(state["counts"])
        self._keys = {k: list(v) for k, v in state["keys"].items()}
        for split in [k for k in self._keys if STATS not in k and k + STATS not in self._keys]:
            self._split_stats(split)  # a checkpoint from before STATS_EVERY: one row of terms and stats
        for key in [k for k in self._keys if k.endswith(STATS)]:
            if key in self._sums and len(self._sums[key]) == len(self._keys[key]):  # sums without counts (old)
                self._sums[key] = torch.cat([self._sums[key], torch.full_like(self._sums[key], self._counts[key])])
        if self.trainer.global_rank > 0:  # rank 0 carries every rank's sums so far (on_save_checkpoint)
            self._sums = {k: torch.zeros_like(v) for k, v in self._sums.items()}
            self._counts = {k: 0 for k in self._counts}
        self.skipped = int(state["skipped"])
        self._resumed_seconds = float(state["seconds"])

    def _split_stats(self, split: str) -> None:
        """Move a split's diagnostics (the keys after ``loss`` and ``loss_<term>``) to their own accumulator,
        with the same count (an old checkpoint read them on every batch)."""
        keys = self._keys[split]
        n_terms = next((i for i, k in enumerate(keys) if i > 0 and not k.startswith("loss_")), len(keys))
        if n_terms == len(keys):
            return
        self._keys[split], self._keys[split + STATS] = keys[:n_terms], keys[n_terms:]
        if split in self._sums:
            sums = self._sums[split]
            self._sums[split], self._sums[split + STATS] = sums[:n_terms].clone(), sums[n_terms:].clone()
            self._counts[split + STATS] = self._counts.get(split, 0)

    def on_train_start(self) -> None:
        # Resumed mid-epoch, Lightning skips on_train_epoch_start (that epoch has started): its per-epoch state is
        # set here. Resumed at an epoch's end, on_train_epoch_start comes next and sets it afresh.
        self._step = None  # the optimizers of this fit
        scheds = self.lr_schedulers()
        for sched in scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []:
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):  # the checkpoint's lr came from the saved
                for g, base, f in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):  # session's
                    g["lr"] = base * f(sched.last_epoch)  # --epochs: this session's schedule at this epoch
        self._sums = {k: v.to(self.device) for k, v in self._sums.items()}
        self._epoch_start = time.perf_counter() - self._resumed_seconds
        self.model.on_epoch_start(self.current_epoch, self.cfg.epochs)

    def epoch_metrics(self) -> dict[str, float]:
        """Means of every term over the epoch, reduced over ranks; computed once per epoch (a collective:
        every rank must call it)."""
        if self._cached is not None and self._cached[0] == self.current_epoch:
            return self._cached[1]
        row: dict[str, float] = {"epoch": float(self.current_epoch)}
        if self.skipped and "train" not in self._sums:
            raise RunError(f"training diverged: every step of epoch {self.current_epoch} had a NaN or infinite loss "
                           "(--on-nan skip skipped them all); lower --lr or set --grad-clip")
        for split in ("train", "val"):
            for key in (split, split + STATS):  # the terms, then the diagnostics (each with its own count)
                if key not in self._sums:
                    continue
                total = torch.cat([self._sums[key], torch.tensor([float(self._counts[key])], device=self._sums[key].device)])
                total = self.trainer.strategy.reduce(total, reduce_op="sum")
                if key.endswith(STATS):  # [sums, counts] of each diagnostic; one never reported has no column
                    k = len(self._keys[key])
                    sums, counts = total[:k], total[k : 2 * k]
                    row.update({f"{split}_{name}": v for name, v, c in
                                zip(self._keys[key], (sums / counts.clamp_min(1)).tolist(), counts.tolist()) if c > 0})
                else:
                    means = (total[:-1] / total[-1].clamp_min(1)).tolist()
                    row.update({f"{split}_{k}": v for k, v in zip(self._keys[key], means)})
        bad = [k for k in ("train_loss", "val_loss") if k in row and not math.isfinite(row[k])]
        if bad:  # a run must never finish "successfully" with NaN metrics
            raise RunError(f"training diverged: {bad[0]} is NaN or infinite at epoch {self.current_epoch}; {self._kept()}. "
                           "Lower --lr or set --grad-clip")
        row["lr"] = float(self._optimizers()[0].param_groups[0]["lr"])
        if self.cfg.on_nan == "skip":
            row["skipped_steps"] = float(self.skipped)
        row["seconds"] = time.perf_counter() - self._epoch_start
        self._cached = (self.current_epoch, row)
        return row

    def on_train_epoch_end(self) -> None:
        row = self.epoch_metrics()
        # logged once per epoch: the checkpoint and early-stopping callbacks monitor these
        self.log_dict({k: v for k, v in row.items() if k != "epoch"}, on_epoch=True, sync_dist=False)
        scheds = self.lr_schedulers()
        for sched in scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []:
            sched.step()

    def configure_optimizers(self):
        named = self.model.make_optimizers(self.cfg)
        if not named:
            raise ConfigError(f"{type(self.model).__name__}.make_optimizers returned no optimizer")
        self.optimizer_names = list(named)
        optimizers = list(named.values())
        if self.cfg.schedule == "cosine":
            # cosine decay to 0 over this session's --epochs, in closed form (Loshchilov & Hutter 2017, no
            # restarts): a run resumed with more epochs decays over the new total from where it stands, where
            # CosineAnnealingLR would keep the saved T_max and climb back up after it
            epochs = self.cfg.epochs

            def cosine(epoch: int) -> float:
                return 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))

            return optimizers, [torch.optim.lr_scheduler.LambdaLR(o, cosine) for o in optimizers]
        return optimizers
