"""The data-source registry: a source is one file (here: one fixture), found by load_data and the CLI alike;
options are validated per source; path sources are claimed by extension or predicate, never by name."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import aekit
from data_helpers import one_line
from aekit.data import (Raw, Request, get_source, list_sources, load_data, option_names, recorded_options, source,
                        spec_help, unregister)
from aekit.data import sources as sources_mod
from aekit.errors import ConfigError, DataError
from aekit.options import opt
from data_helpers import mnist_arrays, write_idx, write_idx_set, write_pngs

BUILTIN = ("mnist", "fashion-mnist", "digits", "quickdraw", "folder", "idx", "npy", "npz", "csv", "table", "odds")





# ---- a whole new source, defined in this file ------------------------------------------------------


@dataclass(frozen=True)
class StripeOptions:
    n: int = opt(48, "how many images")
    invert: bool = opt(False, "white stripes on black")

    def __post_init__(self):
        if self.n < 4:
            raise ConfigError(f"n must be >= 4, got {self.n}", param="n")


@pytest.fixture
def toy():
    """Register `toy-stripes[:WIDTH]` (8x8 images of horizontal or vertical stripes) for one test, then remove it."""

    @source("toy-stripes", "8×8 horizontal or vertical stripes (a test source)", options=StripeOptions, argument="2")
    def load_stripes(req: Request) -> Raw:
        width = int(req.argument or 1)
        rng = np.random.default_rng(req.seed)
        labels = rng.integers(0, 2, req.options.n)  # 0 = horizontal, 1 = vertical
        band = (np.arange(8) // width) % 2 == 0  # (8,)
        horiz = np.broadcast_to(band[:, None], (8, 8))  # (H, W)
        x = np.where(labels[:, None, None] == 0, horiz, horiz.T).astype(np.uint8) * 255  # (N, 8, 8)
        if req.options.invert:
            x = 255 - x
        return Raw(x[:, None], labels, ["horizontal", "vertical"])  # (N, 1, 8, 8)

    yield "toy-stripes"
    if "toy-stripes" in list_sources():  # a test may have removed it already
        unregister("toy-stripes")


def test_toy_source_through_load_data(toy):
    assert toy in list_sources() and "toy-stripes:2" in spec_help()
    d = aekit.load_data(toy, seed=3)
    assert d.shape == (1, 8, 8) and len(d) == 48 and d.class_names == ["horizontal", "vertical"]
    assert [len(d.splits[k]) for k in ("train", "val", "test")] == [38, 5, 5]  # no own test: a seeded one
    img, lab = d.images[0, 0], int(d.labels[0])
    rows_equal = bool((img == img[:, :1]).all())  # constant along each row: horizontal stripes
    assert rows_equal == (lab == 0)
    # The argument and the source's own options (as Python values, CLI text or YAML alike).
    wide = load_data("toy-stripes:4", seed=3, n="12", invert="true")
    horizontal = wide.images[wide.labels == 0][0, 0]  # (8, 8)
    assert len(wide) == 12 and (horizontal[:4] == 0).all() and (horizontal[4:] == 255).all()  # 4-row bands, inverted
    one_line(ConfigError, lambda: load_data(toy, n=2), "n must be >= 4")
    one_line(ConfigError, lambda: load_data(toy, n="many"), "n must be an integer")
    one_line(ConfigError, lambda: load_data(toy, max_per_class=3),
             "max_per_class does not apply to data source 'toy-stripes' (only to quickdraw); it takes n, invert")
    one_line(ConfigError, lambda: load_data(toy, colour="red"), "colour is not a data option", "toy-stripes")
    # Registering the same name twice is a programming error.
    with pytest.raises(RuntimeError, match="registered twice"):
        source("toy-stripes", "again")(lambda req: None)


def test_toy_source_through_the_cli(toy, tmp_path, capsys):
    from aekit.cli import main

    out = tmp_path / "run"
    argv = ["train", "--model", "ae", "--dataset", "toy-stripes:2", "--latent-dim", "2", "--epochs", "1",
            "--batch-size", "16", "--no-progress", "--val-fraction", "0.2"]
    assert main([*argv, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["spec"] == "toy-stripes:2" and config["data"]["shape"] == [1, 8, 8]
    assert (out / "model.safetensors").is_file() and "mse" in json.loads((out / "eval.json").read_text())
    assert recorded_options(config["data"]) == {"val_fraction": 0.2, "seed": 0}  # the recorded shape is no option here
    again = aekit.load_run(out).data()  # reloaded through the registry, split as in training
    direct = load_data("toy-stripes:2", val_fraction=0.2, seed=0)
    assert again.class_names == ["horizontal", "vertical"] and torch.equal(again.images, direct.images)
    assert all(torch.equal(again.splits[k], direct.splits[k]) for k in ("train", "val", "test"))

    unregister(toy)
    one_line(DataError, lambda: load_data(toy), "unknown data spec 'toy-stripes'", "mnist", "quickdraw:cat,dog")
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "gone")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit: error: unknown data spec 'toy-stripes:2'") and "\n" not in err
    assert not (tmp_path / "gone").exists()


def test_cli_option_for_another_source(tmp_path, capsys):
    from aekit.cli import main

    argv = ["train", "--model", "ae", "--dataset", "digits", "--max-per-class", "5", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("aekit: error: --max-per-class does not apply to data source 'digits' (only to quickdraw); "
                   "it takes no options of its own")
    assert not (tmp_path / "r").exists()


# ---- the registry itself ---------------------------------------------------------------------------


def test_builtin_sources_listed():
    listed = list_sources()
    assert set(BUILTIN) <= set(listed) and all(listed[n] and "\n" not in listed[n] for n in listed)
    names = list(listed)
    assert max(names.index(n) for n in ("mnist", "digits", "quickdraw")) < min(
        names.index(n) for n in ("folder", "npy", "idx"))  # named sources first
    assert spec_help() == ("mnist | fashion-mnist | digits | quickdraw:cat,dog | table:data.csv | odds:cardio | "
                           "packed:DIR | PATH (.npy, .npz, .csv, IDX files, a folder of images, a packed folder)")
    assert get_source("FashionMNIST").name == "fashion-mnist" and get_source("fashion_mnist").name == "fashion-mnist"
    one_line(DataError, lambda: get_source("cifar"), "unknown data source 'cifar'", "mnist", "csv")
    assert {"shape", "max_per_class", "download", "val_fraction", "data_dir"} <= set(option_names())


def test_load_names_no_source():
    """load.py dispatches through the registry only: its code (docstrings aside) names no source or format."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(sources_mod.__file__).parent / "load.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef)) and ast.get_docstring(node) is not None:
            node.body = node.body[1:]
    code = ast.unparse(tree)
    assert "def load_data" in code
    for name in ("mnist", "quickdraw", "digits", "npy", "npz", "csv", "idx", "folder", "is_dir", "suffix"):
        assert name not in code, name


def test_bad_registrations():
    with pytest.raises(ValueError, match="lower-case"):
        source("Bad:Name", "x")
    with pytest.raises(ValueError, match="lower-case"):
        source("a/b", "x")
    with pytest.raises(RuntimeError, match="registered twice"):
        source("fashionmnist", "an alias is taken too")
    with pytest.raises(TypeError, match="dataclass"):
        source("toy-bad", "x", options=dict)
    with pytest.raises(ValueError, match="takes no argument"):
        source("toy-bad", "x", extensions=(".bin",), argument="a")
    with pytest.raises(KeyError):
        unregister("never-registered")
    assert "toy-bad" not in list_sources()


def test_options_typed_and_applicable(tmp_path):
    f = tmp_path / "flat.npy"
    np.save(f, np.zeros((20, 16), np.uint8))
    assert load_data(str(f), shape="1x4x4").shape == (1, 4, 4)  # CLI/YAML text through the typed path
    assert load_data(str(f), shape=[1, 4, 4]).shape == (1, 4, 4)  # JSON list (config.json)
    one_line(ConfigError, lambda: load_data(str(f), shape=(1, 0, 16)), "shape must be three positive integers")
    record = {"spec": str(f), "shape": [1, 4, 4], "seed": 1, "normalization": "uint8/255", "max_per_class": None}
    assert recorded_options(record) == {"seed": 1, "shape": (1, 4, 4)}  # an array file: shape is its option
    assert recorded_options({"spec": "mnist", "shape": [1, 28, 28], "download": True}) == {"download": True}
    one_line(ConfigError, lambda: load_data(str(f), shape="4x4"), "shape must be 3 integers")
    one_line(ConfigError, lambda: load_data(str(f), download=True),
             "download does not apply to data source 'npy' (only to mnist, fashion-mnist); it takes shape")
    one_line(ConfigError, lambda: load_data("digits", max_per_class=3), "max_per_class does not apply to data source 'digits'")
    assert len(load_data("digits", download=None, max_per_class=None)) == 1797  # None: not given
    one_line(ConfigError, lambda: load_data("digits", shape=(1, 8, 8)), "shape does not apply to data source 'digits'")
    np.save(tmp_path / "full_numpy_bitmap_cat.npy", np.zeros((30, 784), np.uint8))
    assert len(load_data("quickdraw:cat", data_dir=tmp_path, max_per_class="7")) == 7
    with pytest.raises(ConfigError) as info:
        load_data("quickdraw:cat", data_dir=tmp_path, max_per_class=0)
    assert info.value.param == "max_per_class"  # the CLI shows it as --max-per-class
    one_line(DataError, lambda: load_data("quickdraw", data_dir=tmp_path), "quickdraw:cat,dog,tree")
    one_line(DataError, lambda: load_data("mnist:foo"), "takes nothing after ':'")


def test_named_source_wins_over_same_named_path(tmp_path, monkeypatch):
    write_pngs(tmp_path / "digits", 3, size=(5, 5))
    monkeypatch.chdir(tmp_path)
    assert len(load_data("digits")) == 1797
    d = load_data("./digits", val_fraction=0)
    assert len(d) == 3 and d.shape == (1, 5, 5)


def test_unsupported_paths(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\0")
    one_line(DataError, lambda: load_data(str(tmp_path / "x.bin")), "unsupported file type .bin",
             ".npy, .npz, .csv, IDX files, a folder of images or a packed folder")
    one_line(DataError, lambda: load_data(str(tmp_path / "nope.npz")), "no such file or folder")
    one_line(DataError, lambda: load_data("nope.csv"), "no such file or folder")


# ---- the idx path source ---------------------------------------------------------------------------


def test_idx_folder_keeps_its_test_split(tmp_path):
    arrays = mnist_arrays(30, 10, seed=2, size=12)
    arrays = (*arrays[:1], arrays[1] % 4, *arrays[2:3], arrays[3] % 4)  # 4 classes: names "0".."3"
    write_idx_set(tmp_path / "kmnist", arrays, gz=True)
    d = load_data(str(tmp_path / "kmnist"))  # a folder, but of IDX files: not the image-folder source
    assert d.shape == (1, 12, 12) and len(d) == 40 and d.class_names == ["0", "1", "2", "3"]
    assert d.splits["test"].tolist() == list(range(30, 40))
    assert np.array_equal(d.split("test")[0][:, 0].numpy(), arrays[2])
    (tmp_path / "kmnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    one_line(DataError, lambda: load_data(str(tmp_path / "kmnist")), "only some IDX files", "t10k-labels-idx1-ubyte")


def test_idx_single_file(tmp_path):
    x, y, _, _ = mnist_arrays(20, 1, seed=4, size=6)
    images = write_idx(tmp_path / "emnist-letters-train-images-idx3-ubyte", x, gz=True)
    d = load_data(str(images), val_fraction=0)
    assert d.shape == (1, 6, 6) and (d.labels == -1).all() and d.class_names == []
    assert np.array_equal(d.images[:, 0].numpy(), x)
    write_idx(tmp_path / "emnist-letters-train-labels-idx1-ubyte", y)
    d = load_data(str(images), val_fraction=0)
    assert np.array_equal(d.labels.numpy(), y) and d.class_names == [str(i) for i in range(int(y.max()) + 1)]
    write_idx(tmp_path / "emnist-letters-train-labels-idx1-ubyte", y[:5])
    one_line(DataError, lambda: load_data(str(images)), "20 images", "5 labels")
    bad = tmp_path / "broken-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x08\x03")
    one_line(DataError, lambda: load_data(str(bad)), "bad magic")


def test_data_package_imports_without_torch():
    code = ("import sys, aekit.data as d; d.list_sources(); d.spec_help(); d.option_names(); "
            "print(sorted(m for m in ('torch', 'PIL', 'sklearn', 'mnist') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
