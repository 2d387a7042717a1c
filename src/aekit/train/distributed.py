"""Several processes (DDP): when one of them is gone, the others stop with one line that says which and how to go on.

A rank that dies (SIGKILL, out of memory, a node lost) leaves the others in a collective: every training step
all-reduces the gradients, so the next one fails at once (gloo: "Connection closed by peer"; NCCL: a
``DistBackendError``). Lightning lets that RuntimeError out of ``trainer.fit``, which aekit's CLI would report as
an internal error. :class:`PeerWatch` turns it into a :class:`aekit.errors.RunError` naming the process that
went and the checkpoint to resume from:

    aekit: error: training process rank 1 of 2 (pid 4242) was killed by SIGKILL, so the run stopped;
    checkpoints/last.ckpt (epoch 3, after batch 20 of 22) is kept: continue with `aekit train --resume --out runs/x`

Rank 0 of Lightning's own launcher (``--devices N`` on one machine) knows its children (the launcher's ``procs``):
it names the dead one and kills the rest (what Lightning's child-process observer would do seconds later,
silently). A child knows its parent, rank 0: when that one is gone the child says so. Under torchrun or SLURM the
launcher itself ends the other processes; the line then names the lost connection.
"""

from __future__ import annotations

import os
import re
import signal
import time

from ..errors import RunError

# what a collective says when a peer process is gone (gloo's TCP transport; NCCL raises DistBackendError)
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _gist(text: str) -> str:
    """The first sentence of a backend's error, without its source location: gloo's ``[.../pair.cc:537] Read error
    [127.0.0.1]:19887: Connection reset by peer. This is typically caused by ...`` -> ``Read error ...: Connection
    reset by peer``."""
    first = re.sub(r"^\[[^\]]*\]\s*", "", (text.strip().splitlines() or [""])[0])
    return first.split(". ")[0].rstrip(".")[:200]


class PeerWatch:
    """Made before ``trainer.fit`` (it notes this process's parent: a DDP child's is rank 0); :meth:`lost` turns
    the error of a collective whose peer is gone into a RunError, and returns None for any other error."""

    def __init__(self, trainer, stopper) -> None:
        self.trainer, self.stopper = trainer, stopper
        self.parent = os.getppid()

    def _started_by_rank_0(self) -> bool:
        """Was this process started by its node's first process (Lightning's launcher), not torchrun or SLURM?"""
        from lightning.fabric.plugins.environments import LightningEnvironment

        env = getattr(self.trainer.strategy, "cluster_environment", None)
        return self.trainer.local_rank > 0 and type(env) is LightningEnvironment

    def _parent_gone(self, wait: float) -> bool:
        """Has rank 0, this process's parent, ended (within ``wait`` seconds)?"""
        if not self._started_by_rank_0():
            return False
        end = time.monotonic() + wait
        while os.getppid() == self.parent and time.monotonic() < end:
            time.sleep(0.01)
        return os.getppid() != self.parent

    @staticmethod
    def _dead(children: list, wait: float) -> list:
        """(local rank, process) of the children that ended with a failure (within ``wait`` seconds)."""
        end = time.monotonic() + wait
        while True:
            dead = [(i + 1, p) for i, p in enumerate(children) if p.poll() not in (None, 0)]
            if dead or not children or time.monotonic() >= end:
                return dead
            time.sleep(0.01)

    def _children(self) -> list:
        return list(getattr(self.trainer.strategy.launcher, "procs", None) or [])  # Lightning's launcher, rank 0

    def _kept(self) -> str:
        points = self.stopper.points
        if points.saved_at is None:
            return f"no checkpoint was written yet: `{self.stopper.resume_command}` starts it over"
        from .checkpoints import epoch_batches

        epoch, batches = points.saved_at
        total = epoch_batches(self.trainer)
        where = f"end of epoch {epoch}" if batches >= total else f"epoch {epoch}, after batch {batches} of {total}"
        return f"checkpoints/last.ckpt ({where}) is kept: continue with `{self.stopper.resume_command}`"

    def lost(self, exc: BaseException) -> RunError | None:
        import torch

        t = self.trainer
        if t.world_size <= 1:
            return None
        rank, world = t.global_rank, t.world_size
        text = str(exc)
        backend = isinstance(exc, getattr(torch.distributed, "DistBackendError", ()))  # NCCL's
        # a killed process's sockets close before it can be waited for (or its children handed to another parent):
        # after a broken connection, give the kernel up to 2 s to say which process ended
        wait = 2.0 if backend or any(s in text for s in PEER_GONE) else 0.0
        children = self._children()
        dead, parent_gone = self._dead(children, wait), self._parent_gone(wait)
        if not (dead or parent_gone or wait):
            return None  # not a lost process: a bug or another failure, reported as it is
        for p in children:
            if p.poll() is None:  # the others stop too (Lightning's observer would SIGKILL them within 5 s)
                p.kill()
                p.wait(10)
        if dead:
            local, p = dead[0]
            who = f"training process rank {t.node_rank * t.num_devices + local} of {world} (pid {p.pid}) {_how(p.returncode)}"
        elif parent_gone:
            who = f"training process rank {t.node_rank * t.num_devices} (pid {self.parent}) is gone"
        else:
            who = f"the connection to another training process broke ({_gist(text) or type(exc).__name__})"
        prefix = f"rank {rank} of {world}: " if rank > 0 else ""
        return RunError(f"{prefix}{who}, so the run stopped; {self._kept()}")


def start_line(trainer, strategy: str = "auto") -> str | None:
    """What rank 0 prints once the processes have met: 'training on 2 processes × 1 node (ddp, gloo)'; None for
    one process. (Lightning's own 'Initializing distributed: GLOBAL_RANK ...' lines, one per rank, are muted.)"""
    if trainer.world_size <= 1:
        return None
    # the strategy asked for (auto: the name of the class Lightning chose, DDPStrategy -> ddp)
    name = strategy if strategy != "auto" else type(trainer.strategy).__name__.removesuffix("Strategy").lower()
    backend = getattr(trainer.strategy, "process_group_backend", None)
    nodes = trainer.num_nodes
    return (f"training on {trainer.num_devices} processes × {nodes} node{'s' if nodes > 1 else ''} "
            f"({', '.join(x for x in (name, backend) if x)})")
