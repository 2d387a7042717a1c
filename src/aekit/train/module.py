"""The LightningModule that trains any model of the contract.

Per-step work is kept to the model's own forward/backward: loss terms are summed into one tensor per split
(no ``self.log`` per step, which costs more than a small MLP step), and the epoch means are computed once,
reduced across ranks, and logged at the end of the epoch. Optimisation is manual so that families with two
optimizers (VAE-GAN) can override ``training_step`` without changing the engine.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from ..models import Autoencoder
from .config import TrainConfig


class LitAutoencoder(L.LightningModule):
    def __init__(self, model: Autoencoder, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.automatic_optimization = False
        self._keys: dict[str, list[str]] = {}
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._epoch_start = 0.0
        self._cached: tuple[int, dict[str, float]] | None = None

    # --- accumulation --------------------------------------------------------------------------------
    def _accumulate(self, split: str, loss: torch.Tensor, terms: dict[str, torch.Tensor], n: int) -> None:
        if split not in self._keys:
            self._keys[split] = ["loss", *terms]
        values = torch.stack([loss.detach().float(), *(t.detach().float() for t in terms.values())]) * n
        self._sums[split] = values if split not in self._sums else self._sums[split] + values
        self._counts[split] = self._counts.get(split, 0) + n

    def _reset(self, split: str) -> None:
        self._sums.pop(split, None)
        self._counts[split] = 0

    # --- steps ---------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, _ = batch
        opt = self.optimizers()
        out = self.model(x)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(out.loss)
        opt.step()
        self._accumulate("train", out.loss, out.terms, x.shape[0])

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        out = self.model(x)
        self._accumulate("val", out.loss, out.terms, x.shape[0])

    # --- epochs --------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._reset("train")
        self._reset("val")
        self._cached = None
        self._epoch_start = time.perf_counter()
        self.model.on_epoch_start(self.current_epoch, self.cfg.epochs)

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    def epoch_metrics(self) -> dict[str, float]:
        """Means of every term over the epoch, reduced over ranks; computed once per epoch (a collective:
        every rank must call it)."""
        if self._cached is not None and self._cached[0] == self.current_epoch:
            return self._cached[1]
        row: dict[str, float] = {"epoch": float(self.current_epoch)}
        for split in ("train", "val"):
            if split not in self._sums:
                continue
            sums = torch.cat([self._sums[split], torch.tensor([float(self._counts[split])], device=self._sums[split].device)])
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            means = (sums[:-1] / sums[-1].clamp_min(1)).tolist()
            row.update({f"{split}_{k}": v for k, v in zip(self._keys[split], means)})
        row["lr"] = float(self.optimizers().param_groups[0]["lr"])
        row["seconds"] = time.perf_counter() - self._epoch_start
        self._cached = (self.current_epoch, row)
        return row

    def on_train_epoch_end(self) -> None:
        row = self.epoch_metrics()
        # logged once per epoch: the checkpoint and early-stopping callbacks monitor these
        self.log_dict({k: v for k, v in row.items() if k != "epoch"}, on_epoch=True, sync_dist=False)
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()

    def configure_optimizers(self):
        # fused Adam: one kernel per step instead of ~10 small ops per parameter (CPU and CUDA, torch >= 2.4)
        opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=True)
        if self.cfg.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.cfg.epochs)
            return {"optimizer": opt, "lr_scheduler": sched}
        return opt
