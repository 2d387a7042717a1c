"""Resume checkpoints that survive a kill at any moment: what ``checkpoints/last.ckpt`` holds, when it is written,
how it is written, and how a run stops on SIGINT/SIGTERM.

- :class:`AtomicCheckpointIO` (Lightning's CheckpointIO plugin): every checkpoint is written to a hidden
  temporary name, fsynced and renamed (``aekit.fileio.atomic_path``); a kill or a full disk mid-write leaves the
  previous file whole. Before ``last.ckpt`` is replaced, the one it replaces is kept as ``last.prev.ckpt``
  (a hard link: no copy), the fallback when ``last.ckpt`` turns out damaged (:func:`pick_checkpoint`).
- :class:`ResumePoints`: writes ``last.ckpt`` at the end of every epoch and mid-epoch every ``checkpoint_every``
  batches / ``checkpoint_minutes`` minutes. In an epoch whose score is the best so far, ``best.ckpt`` becomes a
  hard link to that epoch's ``last.ckpt`` (:meth:`ResumePoints.keep_as_best`): one serialisation and one fsync
  per epoch instead of two (~80 ms of a 4 s MNIST epoch, measured). With the loader's position
  (``loader.BatchLoader.state_dict``), the epoch's running sums (``module.LitAutoencoder.on_save_checkpoint``)
  and the RNG states (:class:`RngState`) in it, a run resumed from it continues at the next batch and ends
  bit-identical to an unbroken one (fp32 on a CPU; tests/test_fault_tolerance.py).
- :class:`StopOnSignal`: SIGINT/SIGTERM finish the step, write ``last.ckpt`` and raise :class:`aekit.errors.Stopped`.

Lightning's own SIGTERM handling (``trainer.received_sigterm``) is replaced for the fit's duration: it aborts a
validation mid-way and exits with status 0, which a job scheduler reads as success.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, WeightAveraging

from ..errors import RunError, Stopped
from ..fileio import atomic_path, remove_stale_temps

LAST, PREVIOUS = "last.ckpt", "last.prev.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through ``atomic_path`` (temporary name, fsync, rename); ``last.ckpt``'s predecessor is
    kept as ``last.prev.ckpt``. Lightning's own ``_atomic_save`` truncates the file it writes in place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        buf = io.BytesIO()
        torch.save(checkpoint, buf)  # serialised first: a full disk then fails in a plain write (OSError ENOSPC)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(buf.getbuffer())
            if path.name == LAST and path.exists():
                keep_previous(path)  # last.ckpt is still the old one here: at every moment a whole file is there


def keep_previous(last: Path) -> None:
    """``last.prev.ckpt`` := the current ``last.ckpt``, atomically (a hard link, or a copy where links fail)."""
    with atomic_path(last.with_name(PREVIOUS)) as tmp:
        tmp.unlink()
        _link_or_copy(last, tmp)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copyfile(src, dst)


def remove_stale(run_dir: Path) -> None:
    """Remove temporaries that killed processes left in a run folder (each write also removes its own)."""
    for name in ("config.json", "metrics.csv", "model.safetensors", "eval.json"):
        remove_stale_temps(run_dir / name)
    for name in (LAST, PREVIOUS, "best.ckpt"):
        remove_stale_temps(run_dir / "checkpoints" / name)


def load_checkpoint_data(path: Path) -> dict:
    """A checkpoint as plain data (``weights_only``: nothing in it runs); raises on a truncated or garbled file."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    ck["optimizer_states"], ck["state_dict"]  # noqa: B018 - both must be there
    return ck


def pick_checkpoint(last: Path, layout: list[str], out: Path, warn: bool = True) -> Path:
    """The checkpoint to resume from: ``last`` when it loads, else ``last.prev.ckpt`` (with one warning line
    naming both); a RunError when neither does, or when it holds another optimizer layout."""
    prev = last.with_name(PREVIOUS)
    failures: list[str] = []
    for path in (last, prev):
        if not path.exists():
            continue
        try:
            states = load_checkpoint_data(path)["optimizer_states"]
        except Exception as exc:  # truncated, garbled, or holding objects that are not plain data
            failures.append(f"{path.name} ({type(exc).__name__})")
            continue
        if len(states) != len(layout):
            raise RunError(f"{path} holds {len(states)} optimizer state(s); this model's layout has {len(layout)} "
                           f"({', '.join(layout)}): resume it with the model and options it was trained with")
        if path != last and warn:  # rank 0 (the folder's writer) only
            why = "is damaged" if last.exists() else "is missing"
            print(f"aekit: warning: {last} {why}; resuming from the previous checkpoint {path}", file=sys.stderr)
            with atomic_path(last) as tmp:  # the damaged file must not become last.prev.ckpt at the next save
                tmp.unlink()
                _link_or_copy(path, tmp)
        return path
    detail = "; ".join(failures)
    raise RunError(f"{last} is damaged or not an aekit checkpoint ({detail}); train {out} again, or restore the file")


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, numpy, python) as plain data a ``weights_only`` load accepts. Dropout,
    the reparameterisation noise and a denoising model's input noise all draw from torch's."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": list(cuda),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def batches_done(trainer) -> int:
    """Batches of the current epoch trained so far. Lightning counts its steps, which are groups of batches
    (loader.Grouped); the loader knows the batches."""
    loader = trainer.train_dataloader
    return loader.position() if hasattr(loader, "position") else trainer.fit_loop.epoch_loop.batch_progress.current.processed


def epoch_batches(trainer) -> int:
    """Batches per training epoch (Lightning's num_training_batches counts groups of them)."""
    return getattr(trainer.train_dataloader, "batches", None) or trainer.num_training_batches


class RngState(Callback):
    """Saves the RNG states in every checkpoint; a resumed run gets them back just before training goes on.
    (Lightning saves no RNG state.) On several processes each rank restores rank 0's states."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return rng_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._loaded is not None:
            set_rng_state(self._loaded)
            self._loaded = None


class ResumePoints(Checkpoint):
    """Writes ``last.ckpt``: at every epoch's end and, mid-epoch, every ``every`` batches and every ``minutes``
    minutes (0: off). A Checkpoint callback, so Lightning runs its epoch-end hook after ModelCheckpoint's (and
    EarlyStopping's): ``last.ckpt`` then records the epoch's best score and patience. (ModelCheckpoint's own
    ``save_last`` writes ``last.ckpt`` only in epochs whose ``best.ckpt`` improved.)"""

    def __init__(self, dirpath: Path, every: int = 0, minutes: float = 0.0) -> None:
        self.dirpath, self.every, self.seconds = Path(dirpath), every, minutes * 60.0
        self._last_time = time.monotonic()
        self.unsaved = 0  # batches trained since last.ckpt was written (or loaded)
        self.saved_at: tuple[int, int] | None = None  # (epoch, batches of it) that last.ckpt holds
        self._best: Path | None = None  # best.ckpt, to be linked to the next last.ckpt (keep_as_best)

    @property
    def path(self) -> Path:
        return self.dirpath / LAST

    def keep_as_best(self, path: str | Path) -> None:
        """ModelCheckpoint found a new best at this epoch's end: ``path`` (best.ckpt) becomes a hard link to the
        ``last.ckpt`` written next, in this same epoch-end (Lightning runs this callback right after it). That file
        holds the same weights plus the resume state; a kill before it is written leaves the previous best whole."""
        self._best = Path(path)

    def save(self, trainer) -> None:
        # where the checkpoint stands, recorded in it (state_dict): a stop message of a resumed session names it
        self.saved_at = (trainer.current_epoch, batches_done(trainer))
        trainer.save_checkpoint(str(self.path))
        best, self._best = self._best, None
        if best is not None and trainer.is_global_zero:  # rank 0 writes the folder
            with atomic_path(best) as tmp:  # a whole file under the name at every moment, as for last.ckpt
                tmp.unlink()
                _link_or_copy(self.path, tmp)
        self._last_time = time.monotonic()
        self.unsaved = 0

    def state_dict(self) -> dict[str, Any]:
        return {"saved_at": list(self.saved_at) if self.saved_at else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        at = state_dict.get("saved_at")
        self.saved_at = (int(at[0]), int(at[1])) if at else None

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_time = time.monotonic()
        self.unsaved = 0

    def due(self, trainer) -> bool:
        """A mid-epoch save after this batch? Never after an epoch's last batch: validation and the epoch-end
        save come next (a checkpoint taken there would resume past the epoch's validation)."""
        if trainer.fit_loop.epoch_loop.batch_progress.current.processed >= trainer.num_training_batches:
            return False
        steps = trainer.fit_loop.epoch_loop.total_batch_idx + 1  # batches of the whole run, across resumes
        due = (self.every > 0 and steps % self.every == 0) or (0 < self.seconds <= time.monotonic() - self._last_time)
        if trainer.world_size > 1:  # every rank must take part in a save: one decision for all
            due = trainer.strategy.reduce_boolean_decision(due, all=False)
        return due

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.unsaved += 1
        if self.due(trainer):
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.save(trainer)


class StopOnSignal(Callback):
    """SIGINT (Ctrl-C) and SIGTERM (a pre-empted or cancelled job) ask training to stop: the step in progress
    finishes, ``last.ckpt`` is written and :class:`Stopped` is raised (exit status 130 / 143 in the CLI); a
    second Ctrl-C stops at once. A signal during an epoch's last batch or its validation lets the epoch finish
    with its own checkpoint and stops before the next epoch; one after the last epoch lets the run finish.
    Handlers are installed only in the main thread, for the fit's duration (:meth:`handlers`)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, points: ResumePoints, resume_command: str) -> None:
        self.points, self.resume_command = points, resume_command
        self.signum: int | None = None

    def _handler(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        if self.signum is None and signum == signal.SIGINT:
            print("\naekit: stopping after this step (Ctrl-C again to stop at once)", file=sys.stderr)
        self.signum = self.signum or signum

    def _install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                signal.signal(sig, self._handler)

    @contextlib.contextmanager
    def handlers(self) -> Iterator["StopOnSignal"]:
        """This object's handlers for the fit; the previous ones are restored afterwards, however it ends."""
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.getsignal(sig) for sig in self.SIGNALS} if main else {}
        self.signum = None
        self._install()
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def on_train_start(self, trainer, pl_module) -> None:
        self._install()  # Lightning put its own SIGTERM handler in front of ours when the fit began

    def _requested(self, trainer) -> bool:
        stop = self.signum is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        return stop

    def stopped(self, trainer) -> Stopped:
        name = signal.Signals(self.signum or signal.SIGTERM).name
        code = 128 + int(self.signum or signal.SIGTERM)
        if self.points.saved_at is None:  # only when the signal beat Lightning's start-up (its SIGTERMException)
            return Stopped(f"stopped by {name} before the first checkpoint; `{self.resume_command}` starts it over", code)
        epoch, batches = self.points.saved_at
        total = epoch_batches(trainer)
        where = f"at the end of epoch {epoch}" if batches >= total else f"in epoch {epoch} after batch {batches} of {total}"
        return Stopped(f"stopped by {name} {where}; checkpoint saved ({self.points.path.parent.name}/{LAST}); "
                       f"continue with `{self.resume_command}`", code)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # a signal that came during validation or the epoch's end: last.ckpt (that epoch's end) is current
        if self.points.unsaved == 0 and self.points.saved_at is not None and self._requested(trainer):
            raise self.stopped(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        last_batch = trainer.fit_loop.epoch_loop.batch_progress.current.processed >= trainer.num_training_batches
        if not last_batch and self._requested(trainer):
            self.points.save(trainer)  # ResumePoints is a Checkpoint callback: Lightning runs it after this one
            raise self.stopped(trainer)


class TimeLimit(Callback):
    """``--max-minutes``: at each epoch's end, training stops when one more epoch as long as this one would end
    past the budget, so a session never runs over it by more than an epoch's variation (Lightning's own
    ``max_time`` stops mid-epoch, with no epoch row and no checkpoint of the epoch in progress). The run then
    finishes as after early stopping: the best epoch's weights, config.json's ``result.stopped_by``."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start, self.epoch_start, self.stopped_epoch = seconds, 0.0, 0.0, None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = self.epoch_start = time.perf_counter()  # a session resumed mid-epoch starts no epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        now = time.perf_counter()
        if now - self.start + (now - self.epoch_start) > self.seconds and trainer.current_epoch + 1 < trainer.max_epochs:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch


class WeightEMA(WeightAveraging):
    """``--weight-ema``: Lightning's weight-averaging callback keeping an exponential moving average of the weights
    (and of batch norm's running statistics). Validation, every checkpoint's ``state_dict`` and so the run's model
    are the average; the raw weights travel in the checkpoint for resuming (Lightning's ``WeightAveraging``).

    The average is updated once per Lightning step, which here is a group of batches (loader.Grouped): it moves by
    ``1 - decay**n`` for the ``n`` training batches of the group, so ``decay`` is per batch whatever the grouping
    and however many optimizers a family steps per batch (vae-gan steps three). Integer buffers (batch norm's step
    counts) are copied, not averaged. Lightning copies the model in ``setup``, before the strategy moves it to its
    device and precision (``--precision 64``, a GPU): ``on_fit_start`` brings the copy along."""

    def __init__(self, decay: float) -> None:
        super().__init__(multi_avg_fn=self._move)
        self.decay, self.steps = decay, 1

    def on_fit_start(self, trainer, pl_module) -> None:
        average = self._average_model.module
        for a, c in zip([*average.parameters(), *average.buffers()], [*pl_module.parameters(), *pl_module.buffers()]):
            a.data = a.data.to(device=c.device, dtype=c.dtype)

    @torch.no_grad()
    def _move(self, averaged: list, current: list, _n) -> None:
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - self.decay ** self.steps)
        else:
            torch._foreach_copy_(averaged, current)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps = len(batch) if isinstance(batch, list) else 1  # a group of (x, y) batches, or one batch
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
