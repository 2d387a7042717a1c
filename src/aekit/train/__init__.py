"""Training on PyTorch Lightning and the run folder. Lightning is imported only when training starts."""

from .config import TrainConfig
from .runs import Run, load_run

__all__ = ["TrainConfig", "Run", "load_run", "train"]


def train(*args, **kwargs):
    from .trainer import train as _train

    return _train(*args, **kwargs)


train.__doc__ = "See :func:`aekit.train.trainer.train`."
