"""Put a trained model to work on data: load inputs that fit a run, encode or denoise them in streamed
batches, and write the results (codes as .npy / .npz / .parquet, images as PNG files or a .npy array).

Everything is computed batch by batch from a uint8 (N, C, H, W) tensor, which may be a memory-mapped
.npy file: memory stays bounded by the batch size however large the input is. Outputs are written batch by
batch to a hidden temporary file and renamed at the end (:func:`aekit.fileio.atomic_path`); .npy outputs are
appended with buffered writes, not filled through a memory map, after a free-space check: a memory map on a
full disk dies by SIGBUS, a write gets an error the CLI can report.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import AekitError, ConfigError, DataError, RunError
from .fileio import atomic_path, check_free_space

CODE_FORMATS = (".npy", ".npz", ".parquet")
BACKENDS = ("torch", "onnx", "auto")


def load_input(spec: str, input_shape: tuple[int, int, int], **data_options: Any):
    """``load_data(spec)`` checked against a run's input shape: a shape or channel mismatch is a one-line
    DataError (NaN/inf, empty arrays and unknown formats are rejected by the data layer)."""
    from .data import load_data

    opts = {k: v for k, v in data_options.items() if v is not None}
    if "shape" not in opts and _is_flat(spec):
        opts["shape"] = tuple(input_shape)  # N x D rows read in the run's image shape
    data = load_data(spec, **opts)
    check_shape(data.shape, input_shape, data.name)
    return data


def _is_flat(spec: str) -> bool:
    """True for a .npy file holding a 2-D (N x D) array (read without loading it)."""
    p = Path(str(spec)).expanduser()
    if p.suffix.lower() != ".npy" or not p.is_file():
        return False
    try:
        a = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return False  # the data layer reports the damage
    return a.ndim == 2


def check_shape(shape, input_shape, what: str) -> None:
    shape, input_shape = tuple(int(s) for s in shape), tuple(int(s) for s in input_shape)
    if shape == input_shape:
        return
    if shape[0] * shape[1] * shape[2] == input_shape[0] * input_shape[1] * input_shape[2] and min(shape) == 1:
        c, h, w = input_shape  # flat rows read as a 1-pixel-high strip: same values, other layout
        raise DataError(f"{what}: rows of {shape[0] * shape[1] * shape[2]} values were read as {shape[0]}x{shape[1]}x{shape[2]} "
                        f"but the run was trained on {c}x{h}x{w} images; pass --shape {c}x{h}x{w}")
    if shape[0] != input_shape[0]:
        raise DataError(f"{what}: images have {shape[0]} channel(s) but the run was trained on {input_shape[0]}; "
                        f"pass --channels {input_shape[0]}")
    raise DataError(f"{what}: images are {shape[1]}x{shape[2]} but the run was trained on {input_shape[1]}x{input_shape[2]}; "
                    f"pass --image-size {input_shape[1]}x{input_shape[2]}")


def as_image_tensor(x, input_shape: tuple[int, int, int] | None = None, what: str = "X") -> torch.Tensor:
    """An array-like of images (N, C, H, W), (N, H, W) or (N, H, W, C) — uint8, or floats in [0, 1] —
    as a uint8 tensor (N, C, H, W); ``input_shape`` also reads flat (N, D) rows and is checked."""
    from .data.arrays import as_images

    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 1 or a.size == 0 and a.ndim <= 1:
        raise DataError(f"{what}: expected a batch of images, got an array of shape {a.shape}")
    shape = tuple(input_shape) if input_shape is not None and a.ndim == 2 else None
    imgs = as_images(a, what, shape)  # raises DataError on NaN/inf, bad ranges, empty arrays
    if input_shape is not None:
        check_shape(imgs.shape[1:], input_shape, what)
    return torch.from_numpy(np.ascontiguousarray(imgs))


def progress(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on stderr (images as the unit)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", unit_scale=True, disable=not enabled, leave=False)


def batches(images: torch.Tensor, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, slice) pairs of consecutive uint8 slices of a (possibly memory-mapped) image tensor:
    contiguous reads, front to back."""
    check_batch_size(batch_size)
    for start in range(0, len(images), batch_size):
        yield start, images[start : start + batch_size]


def check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    return batch_size


# ---------------------------------------------------------------- encoders (torch / onnxruntime)

class TorchEncoder:
    """uint8 batch -> flattened codes (B, code_size) with the model's deterministic ``encode`` (VAE: the
    posterior mean)."""

    backend = "torch"

    def __init__(self, model) -> None:
        self.model = model.eval()

    def __call__(self, x_u8: torch.Tensor) -> np.ndarray:
        from .data import to_float

        with torch.inference_mode():
            z = self.model.encode(to_float(x_u8))  # (B, *code_shape)
            return z.reshape(len(z), -1).numpy()


class OnnxEncoder:
    """The same with onnxruntime on an exported ``encoder.onnx`` (float32 input in [0, 1])."""

    backend = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()  # as many as torch uses (aekit --threads)
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def __call__(self, x_u8: torch.Tensor) -> np.ndarray:
        from .data import to_float

        z = self.session.run(None, {self.name: to_float(x_u8).numpy()})[0]  # (B, *code_shape)
        return z.reshape(len(z), -1)


def make_encoder(model, backend: str = "auto", run_path: str | Path | None = None, probe: torch.Tensor | None = None,
                 total: int | None = None):
    """An encoder callable for ``backend``:

    - "torch": the model itself;
    - "onnx": onnxruntime on the run's ``export/encoder.onnx`` when its manifest matches the run's weights and
      the file, else on a fresh export (and a line on stderr says why the saved one was not used);
    - "auto": times torch on ``probe`` (a few hundred images); when encoding ``total`` images would take torch under
      ``AUTO_MIN_SECONDS`` it stays (an export costs about a second), else it also times onnxruntime and
      keeps the faster (measured on 2 cores: onnxruntime about 4x faster for the conv encoder, about even
      for the dense ones). Without onnxruntime, or when the export fails, "auto" is torch.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    torch_enc = TorchEncoder(model)
    if backend == "torch":
        return torch_enc
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if backend == "onnx":
            raise ConfigError("--backend onnx needs onnxruntime: pip install 'aekit[export]'") from None
        return torch_enc
    if backend == "auto":
        if probe is None or len(probe) == 0:
            return torch_enc
        torch_s = _time(torch_enc, probe) / len(probe)  # seconds per image
        if total is not None and total * torch_s < AUTO_MIN_SECONDS:
            return torch_enc
        try:
            onnx_enc = _onnx_encoder(model, run_path)
        except AekitError:  # onnx / onnxscript missing, or the export failed: torch does the job
            return torch_enc
        return onnx_enc if _time(onnx_enc, probe) / len(probe) < torch_s else torch_enc
    return _onnx_encoder(model, run_path)


AUTO_MIN_SECONDS = 2.0


def _onnx_encoder(model, run_path: str | Path | None) -> OnnxEncoder:
    """onnxruntime on the run's exported encoder when its manifest names the sha256 of the run's weights and
    of the file (a resumed, retrained or replaced model makes an export stale; a timestamp cannot tell), else
    on one exported to a temporary folder (removed once the session has read it)."""
    from .export import stale_reason
    from .fileio import sha256_file
    from .train.runs import WEIGHTS

    if run_path is not None:
        path, weights = Path(run_path) / "export" / "encoder.onnx", Path(run_path) / WEIGHTS
        if path.exists():
            reason = stale_reason(path.parent, path.name, sha256_file(weights) if weights.is_file() else None)
            if reason is None:
                try:
                    return OnnxEncoder(path)
                except Exception as exc:  # onnxruntime raises its own exception types on a damaged file
                    raise RunError(f"{path}: not a usable ONNX model ({str(exc).splitlines()[0][:120]}); "
                                   f"re-export it with `aekit export {run_path}`") from None
            print(f"{path} not used ({reason}): exporting the encoder afresh for this job; "
                  f"`aekit export {run_path}` renews the saved one", file=sys.stderr)
    import shutil

    from .export import export_onnx

    tmp = Path(tempfile.mkdtemp(prefix="aekit-onnx-"))
    try:
        return OnnxEncoder(export_onnx(model, tmp, parts=("encoder",))["encoder"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _time(enc, probe: torch.Tensor) -> float:
    """Best of two timed calls on ``probe`` after one warm-up call (seconds); keep the probe small (a few
    hundred images): this is paid before the real work starts."""
    import time

    enc(probe)
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        enc(probe)
        best = min(best, time.perf_counter() - t)
    return best


# ---------------------------------------------------------------- encode

def encode_images(encoder: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor, batch_size: int = 4096,
                  show_progress: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, flattened codes (B, code_size) float32) batch by batch, streamed (for the writers below;
    in memory, :func:`aekit.explore.encode_all` is the one encoder of a whole set)."""
    with progress(len(images), "encode", show_progress) as bar:
        for start, xb in batches(images, batch_size):
            z = np.asarray(encoder(xb), dtype=np.float32)
            bar.update(len(xb))
            yield start, z


def encode_all(model, images, batch_size: int = 4096) -> np.ndarray:
    """All codes of any array-like of images (read and checked by :func:`as_image_tensor`), flattened:
    (N, code_size) float32, through :func:`aekit.explore.encode_all`."""
    from .explore import encode_all as encode_set

    x = images if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 else as_image_tensor(images, model.input_shape)
    return encode_set(model, x, batch_size).reshape(len(x), model.code_size)


def write_codes(path: str | Path, n: int, dim: int, coded: Iterator[tuple[int, np.ndarray]],
                labels: np.ndarray | None = None) -> Path:
    """Write streamed codes to .npy, .npz (codes + labels) or .parquet (columns z0..z{D-1} + label, one row
    group per batch). Written to a temporary name, then renamed; .npy and .npz first check the free space
    they need (:class:`aekit.fileio.DiskFullError`, nothing created)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CODE_FORMATS:
        raise ConfigError(f"{path}: unknown output format {suffix or '(none)'}; use {', '.join(CODE_FORMATS)}")
    codes_bytes = n * dim * 4 + NPY_HEADER
    if suffix == ".npy":
        check_free_space(path, codes_bytes)
    elif suffix == ".npz":  # the codes' .npy beside it, and the archive: both at once, for a moment
        check_free_space(path, 2 * codes_bytes + (8 * n if labels is not None else 0))
    # .parquet: its size depends on the encoding; a full disk there is a write error, and the temp file goes
    with atomic_path(path, suffix) as tmp:
        if suffix == ".parquet":
            _write_parquet(tmp, dim, coded, labels)
        elif suffix == ".npy":
            _fill_npy(tmp, (n, dim), np.float32, coded)
        else:  # .npz: the codes go through a .npy beside it, then into the archive in chunks
            npy = tmp.with_suffix(".codes.npy")
            try:
                _fill_npy(npy, (n, dim), np.float32, coded)
                codes = np.load(npy, mmap_mode="r")
                extra = {"labels": np.asarray(labels)} if labels is not None else {}
                with open(tmp, "wb") as fh:
                    np.savez(fh, codes=codes, **extra)
                del codes
            finally:
                npy.unlink(missing_ok=True)
    return path


NPY_HEADER = 128  # bytes before the data of a .npy of a few dimensions (format 1.0 pads the header to 64)


def _fill_npy(path: Path, shape: tuple[int, ...], dtype, parts: Iterator[tuple[int, np.ndarray]]) -> None:
    """Write a .npy file of ``shape`` batch by batch (consecutive batches, front to back) with buffered writes:
    memory stays one batch, and a full disk is an OSError (ENOSPC) here rather than a SIGBUS in a memory map's
    page fault."""
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    rows = 0
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for start, x in parts:
            x = np.ascontiguousarray(x, dtype=dtype)
            if start != rows or x.shape[1:] != tuple(shape[1:]):
                raise RuntimeError(f"batch of shape {x.shape} at row {start}; expected row {rows} of {shape}")
            fh.write(memoryview(x).cast("B"))
            rows += len(x)
    if rows != shape[0]:
        raise RuntimeError(f"wrote {rows} rows of {shape[0]}")


def _write_parquet(path: Path, dim: int, coded, labels) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("writing .parquet needs pyarrow (pip install pyarrow); or write .npy / .npz") from None
    fields = [pa.field(f"z{i}", pa.float32()) for i in range(dim)]
    if labels is not None:
        fields.append(pa.field("label", pa.int64()))
    schema = pa.schema(fields)
    with pq.ParquetWriter(str(path), schema) as writer:
        for start, z in coded:
            cols = [pa.array(z[:, i]) for i in range(dim)]
            if labels is not None:
                cols.append(pa.array(np.asarray(labels[start : start + len(z)], dtype=np.int64)))
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))


# ---------------------------------------------------------------- denoise

def denoise_images(model, images: torch.Tensor, batch_size: int = 1024, noise=None, seed: int = 0,
                   show_progress: bool = False) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, input uint8 (B, C, H, W), reconstruction uint8 (B, C, H, W)); ``noise`` (a
    ``aekit.data.Noise``) corrupts the input first, to show a denoising autoencoder at work."""
    from .data import to_float

    model.eval()
    g = torch.Generator().manual_seed(seed)
    with progress(len(images), "denoise", show_progress) as bar, torch.inference_mode():
        for start, xb in batches(images, batch_size):
            x = to_float(xb)  # (B, C, H, W)
            if noise is not None:
                x = noise(x, generator=g).clamp(0.0, 1.0)
            x_hat = model.reconstruct(x)
            to_u8 = lambda t: t.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()  # noqa: E731
            bar.update(len(xb))
            yield start, to_u8(x), to_u8(x_hat)


def write_images_npy(path: Path, shape: tuple[int, ...], parts: Iterator[tuple[int, np.ndarray]]) -> Path:
    """Write a uint8 .npy (N, C, H, W) batch by batch after a free-space check; atomic rename at the end."""
    path = Path(path)
    check_free_space(path, int(np.prod(shape)) + NPY_HEADER)
    with atomic_path(path, ".npy") as tmp:
        _fill_npy(tmp, shape, np.uint8, parts)
    return path


def write_png(path: Path, img: np.ndarray) -> None:
    """One uint8 (C, H, W) image as PNG (gray for C=1), written atomically."""
    from .fileio import atomic_write, png_bytes

    # files on disk: the usual zlib level; not fsynced one by one (thousands of small files, made again at will)
    atomic_write(path, png_bytes(img, compress_level=6), durable=False)
