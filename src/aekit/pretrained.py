"""A bare model saved without a run folder: ``config.json`` (model name + config, format version) and
``model.safetensors`` — the same two files a run folder keeps, so Hugging Face-style sharing works."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import RunError


def save_pretrained(model, directory) -> Path:
    from .registry import model_to_dict
    from .train.runs import FORMAT_VERSION, WEIGHTS, save_weights, write_json

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RunError(f"{directory} is a file; give a folder to save the model in")
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(model, directory / WEIGHTS)
    write_json(directory / "config.json", {"format_version": FORMAT_VERSION, "model": model_to_dict(model)})
    return directory


def from_pretrained(directory):
    """The model saved by ``model.save_pretrained(directory)`` (or a run folder's), in eval mode."""
    from .errors import ConfigError
    from .registry import model_from_dict
    from .train.runs import WEIGHTS, load_weights

    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise RunError(f"{path} is missing: {directory} holds no saved model (save one with model.save_pretrained)")
    try:
        spec = json.loads(path.read_text())["model"]
        model = model_from_dict(spec)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise RunError(f"{path} is not a saved aekit model ({type(exc).__name__})") from None
    except ConfigError as exc:
        raise RunError(f"{path}: {exc}") from None
    load_weights(model, directory / WEIGHTS)
    return model.eval()
