"""Export a model's encoder and decoder as ONNX (or TorchScript) files with a dynamic batch axis.

``encoder.onnx``: float32 images (B, C, H, W) in [0, 1] -> codes (B, *code_shape) — the deterministic
``encode`` (VAE: the posterior mean; a discrete model: its quantised code). ``decoder.onnx``: codes
(B, *code_shape) -> images (B, C, H, W) in [0, 1]. Example inputs come from ``model.code_shape``, so flat
(D,) and spatial (D, h, w) codes export alike; only the batch axis is dynamic.

``aekit export`` (:func:`export`) writes both files and the manifest ``export.json`` (each file's sha256 and the
sha256 of the weights they came from) into a fresh hidden folder beside the target and swaps it in whole, so a
reader never finds a new encoder beside an old decoder; ``aekit encode --backend onnx`` reuses an export only
when its manifest matches the run's weights and the file (:func:`stale_reason`).

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` is tried first: on these small
feed-forward nets it is exact, takes well under a second and needs no onnxscript; the dynamo exporter
(torch's default, needs onnxscript) is the fallback when the first fails.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, RunError

FORMATS = ("onnx", "torchscript")
PARTS = ("encoder", "decoder")
OPSET = 17
MANIFEST = "export.json"
MANIFEST_VERSION = 1


class EncoderPart(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, *code_shape)
        return self.model.encode(x)


class DecoderPart(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, *code_shape) -> (B, C, H, W)
        return self.model.decode(z)


def _part(model, name: str) -> tuple[nn.Module, torch.Tensor, str, str]:
    if name == "encoder":
        return EncoderPart(model).eval(), torch.rand(2, *model.input_shape), "image", "code"
    return DecoderPart(model).eval(), torch.randn(2, *model.code_shape), "code", "image"  # flat or (D, h, w)


def export_onnx(model, out_dir: str | Path, parts=PARTS, opset: int = OPSET) -> dict[str, Path]:
    """Write ``{part}.onnx`` for each part into ``out_dir``; returns part -> path. Each file is written to a
    temporary name and renamed, and checked with ``onnx.checker``."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxscript: pip install 'aekit[export]'") from None
    from .fileio import atomic_write

    out_dir = Path(out_dir)
    model = model.eval().cpu()
    protos = {}
    for name in parts:  # every part is exported and checked before any file is written: no mismatched pair
        if name not in PARTS:
            raise ConfigError(f"unknown part {name!r}; use {', '.join(PARTS)}")
        module, example, in_name, out_name = _part(model, name)
        protos[name] = _to_onnx(module, example, in_name, out_name, opset)
        onnx.checker.check_model(protos[name])
    paths: dict[str, Path] = {}
    for name, proto in protos.items():
        paths[name] = out_dir / f"{name}.onnx"
        atomic_write(paths[name], proto.SerializeToString())
    return paths


def _to_onnx(module: nn.Module, example: torch.Tensor, in_name: str, out_name: str, opset: int):
    import io

    import onnx

    errors = []
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            buf = io.BytesIO()
            torch.onnx.export(module, (example,), buf, input_names=[in_name], output_names=[out_name],
                              dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}}, opset_version=opset,
                              dynamo=False)
            return onnx.load_from_string(buf.getvalue())
        except Exception as exc:  # noqa: BLE001 — any exporter failure falls through to the other exporter
            errors.append(f"torchscript exporter: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        try:
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(module, (example,), input_names=[in_name], output_names=[out_name],
                                        dynamic_shapes=({0: batch},), opset_version=max(opset, 18), dynamo=True,
                                        verbose=False)
            return program.model_proto
        except Exception as exc:  # noqa: BLE001
            errors.append(f"dynamo exporter: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise RunError("ONNX export failed (" + "; ".join(errors) + ")")


def export_torchscript(model, out_dir: str | Path, parts=PARTS) -> dict[str, Path]:
    """Write ``{part}.pt`` TorchScript files (traced; load with ``torch.jit.load``, no aekit needed)."""
    import io

    from .fileio import atomic_write

    out_dir = Path(out_dir)
    model = model.eval().cpu()
    blobs = {}
    for name in parts:  # all traced before any file is written
        module, example, _, _ = _part(model, name)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        blobs[name] = buf.getvalue()
    paths = {}
    for name, blob in blobs.items():
        paths[name] = out_dir / f"{name}.pt"
        atomic_write(paths[name], blob)
    return paths


def export(model, out_dir: str | Path, fmt: str = "onnx", weights_sha256: str | None = None,
           info: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write encoder, decoder and the manifest ``export.json`` (``info``, the format, each file's sha256 and
    ``weights_sha256``: the run's ``model.safetensors`` they came from) into a fresh hidden folder beside
    ``out_dir``, then put that folder in ``out_dir``'s place in one rename; the old folder, if any, is removed
    only after. Returns part -> path in ``out_dir``."""
    from .fileio import atomic_dir, atomic_write, sha256_file

    writers = {"onnx": export_onnx, "torchscript": export_torchscript}
    if fmt not in writers:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        written = writers[fmt](model, tmp)
        manifest = {"format_version": MANIFEST_VERSION, **(info or {}), "format": fmt,
                    "files": {k: p.name for k, p in written.items()},
                    "sha256": {p.name: sha256_file(p) for p in written.values()}, "weights_sha256": weights_sha256}
        atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return {k: out_dir / p.name for k, p in written.items()}


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """``folder/export.json`` when it is an aekit export manifest (a JSON object naming its files), else None."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):  # missing, unreadable, not JSON (UnicodeDecodeError is a ValueError)
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def stale_reason(folder: str | Path, name: str, weights_sha256: str | None) -> str | None:
    """None when ``folder/name`` is what its manifest says and came from the weights with ``weights_sha256``;
    else why it is not to be used (one phrase)."""
    from .fileio import sha256_file

    manifest = read_manifest(folder)
    if manifest is None:
        return f"no {MANIFEST} manifest beside it"
    if weights_sha256 is None or manifest.get("weights_sha256") != weights_sha256:
        return "exported from other weights than the run's model.safetensors"
    sha = manifest.get("sha256")
    expected = sha.get(name) if isinstance(sha, dict) else None
    if not isinstance(expected, str) or sha256_file(Path(folder) / name) != expected:
        return f"its sha256 is not the one in {MANIFEST}"
    return None
