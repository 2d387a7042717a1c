"""aekit: train, evaluate and explore autoencoders.

Public API (heavy libraries load on first use, never at import):

    data = aekit.load_data("mnist")
    model = aekit.build_model("conv-vae", input_shape=data.shape, latent_dim=2)
    run = aekit.fit(model, data, aekit.TrainConfig(epochs=5), out="runs/cvae")
    run = aekit.load_run("runs/cvae"); z = run.model.encode(x)
"""

__version__ = "0.1.0"

from .errors import AekitError, ConfigError, DataError, NoPriorError, RunError

__all__ = [
    "AekitError", "ConfigError", "DataError", "NoPriorError", "RunError",
    "load_data", "build_model", "list_models", "fit", "TrainConfig", "load_run", "from_pretrained",
]


def __getattr__(name: str):  # lazy: `import aekit` stays fast for the CLI
    if name == "load_data":
        from .data import load_data

        return load_data
    if name in ("build_model", "list_models"):
        from . import registry

        return getattr(registry, name)
    # `aekit.train` and `aekit.evaluate` are the subpackages; the training function is `fit`
    if name == "fit":
        from .train import train

        return train
    if name == "from_pretrained":
        from .pretrained import from_pretrained

        return from_pretrained
    if name in ("TrainConfig", "load_run"):
        from . import train as _train_pkg

        return getattr(_train_pkg, name)
    raise AttributeError(f"module 'aekit' has no attribute {name!r}")
