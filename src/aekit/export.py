"""Export a model's encoder and decoder as ONNX (or TorchScript) files with a dynamic batch axis.

``encoder.onnx``: float32 images (B, C, H, W) in [0, 1] -> codes (B, *code_shape) — the deterministic
``encode`` (VAE: the posterior mean; a discrete model: its quantised code). ``decoder.onnx``: codes
(B, *code_shape) -> images (B, C, H, W) in [0, 1]. Example inputs come from ``model.code_shape``, so flat
(D,) and spatial (D, h, w) codes export alike; only the batch axis is dynamic.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` is tried first: on these small
feed-forward nets it is exact, takes well under a second and needs no onnxscript; the dynamo exporter
(torch's default, needs onnxscript) is the fallback when the first fails.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError, RunError

FORMATS = ("onnx", "torchscript")
PARTS = ("encoder", "decoder")
OPSET = 17


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


def export(model, out_dir: str | Path, fmt: str = "onnx") -> dict[str, Path]:
    if fmt == "onnx":
        return export_onnx(model, out_dir)
    if fmt == "torchscript":
        return export_torchscript(model, out_dir)
    raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
