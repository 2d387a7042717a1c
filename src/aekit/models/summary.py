"""A Keras-like table of a model's layers: name, output shape, parameters."""

from __future__ import annotations

import torch
from torch import nn


def summary_rows(model) -> list[tuple[str, str, str, int]]:
    """(path, layer type, output shape, own parameters) for each leaf layer, in call order, traced on one
    dummy batch through encode and decode."""
    rows: list[tuple[str, str, str, int]] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = []

    def hook(mod, _inp, out):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else "?"
        rows.append((names[mod], type(mod).__name__, str((None, *shape[1:])) if shape != "?" else "?",
                     sum(p.numel() for p in mod.parameters(recurse=False))))

    for mod in model.modules():
        if not list(mod.children()) and not isinstance(mod, nn.Identity):  # a layer that does nothing is no row
            hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(2, *model.input_shape)
            model.decode(model.encode(x))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def summary(model) -> str:
    rows = summary_rows(model)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = ("Layer (type)", "Output shape", "Param #")
    body = [(f"{path} ({kind})", shape, f"{n:,}") for path, kind, shape, n in rows]
    w = [max(len(r[i]) for r in [head, *body]) + 2 for i in range(3)]
    line = "=" * sum(w)
    out = [f'Model: "{model.name}"  input {tuple(model.input_shape)}  code {tuple(model.code_shape)}', line,
           "".join(h.ljust(w[i]) for i, h in enumerate(head)), line]
    out += ["".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in body]
    out += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", line]
    return "\n".join(out)
