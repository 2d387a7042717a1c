"""A run as one self-contained HTML page: config, metrics, the figures embedded as data URIs, and the
figures that do not apply to the model with the reason.

Pure: ``build_report`` returns the HTML text; ``aekit report`` (aekit.commands.explore) has the session make
the figures and writes the file. No script, no stylesheet or image is fetched: the page works offline and can
be mailed.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .fileio import data_uri

LEAD = ("manifold", "latent", "reconstruct", "sample")  # the report opens with these, when they apply
CAPTIONS = {
    "curves": "Training and validation loss per epoch, and each loss term.",
    "reconstruct": "Test images (top) and their reconstructions (bottom); per-image MSE in the titles.",
    "latent": "Codes of the test set coloured by class (projected to 2-D when the code is wider).",
    "density": "All code values pooled (their overall min and max above it) beside each dimension's distribution, "
               "with its min, max, mean, std and skew.",
    "slice3d": "Three code dimensions in 3-D, coloured by class (legend: the class names).",
    "sample": "New images from the model's prior; without one, decoded N(0, I) codes and a Gaussian fitted to the training codes.",
    "manifold": "Decoded grid over two code dimensions, the others held at the mean code.",
    "interpolate": "A walk in latent space (before any quantisation) between two test images (originals at the ends).",
    "arithmetic": "Latent arithmetic: decode(z_a - z_b + z_c), in the code before any quantisation.",
    "traverse": "Each row sweeps one code dimension across its observed range, the others at the mean code.",
    "denoise": "Noisy input, model output and clean target, with PSNR against the clean image.",
    "features": "A table's reconstruction error per feature over the test split: MSE in the scaled space the model "
                "sees (bars, comparable across features) and RMSE in the feature's own units (labels).",
    "defects": "The three defects of a plain AE's latent space (lower is better): unequal class areas (spread of each "
               "class's share), asymmetry about the origin (how far off-centre the origin sits in the codes' extent) "
               "and gaps (the share of the sampler's random draws, in red, that land far from every code).",
    "codes": "How many code-grid cells use each codebook entry over the test set; red bars are dead entries.",
    "swap": "Code swapping: one grid cell set to other codebook entries (the cell outlined); below, what moved.",
    "learned-inputs": "Images the model learned in input space, in its own order; e.g. a VampPrior's pseudo-inputs u_k, "
                      "whose posteriors q(z|u_k) are the components of the prior p(z) = 1/K sum_k q(z|u_k) (Tomczak & "
                      "Welling 2018).",
}

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f4f4f4}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build_report(run, figures: dict[str, bytes] | None = None, skipped: dict[str, str] | None = None) -> str:
    """HTML text of the report: summary, test metrics (RUN/eval.json when present), each figure (name -> PNG
    bytes) with its one-line caption, :data:`LEAD` first, the figures left out (name -> reason), the metrics per
    epoch, the config."""
    cfg = run.config
    model, data = cfg.get("model", {}), cfg.get("data", {})
    title = f"aekit run {run.path.name}: {model.get('name', '?')} on {data.get('spec', '?')}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    code = list(run.model.code_shape)
    parts.append(f"<p>code shape {_fmt(code)} &middot; input shape {_fmt(data.get('shape', '?'))} &middot; "
                 f"figures: {len(figures or {})}</p>")
    eval_path = run.path / "eval.json"
    if eval_path.exists():
        try:
            ev = json.loads(eval_path.read_text())
            if not isinstance(ev, dict):
                raise ValueError("not an object")
            parts.append("<h2>Test metrics</h2>" + _table([{k: v for k, v in ev.items() if not isinstance(v, (dict, list))}]))
        except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
            parts.append("<p>eval.json is damaged; run <code>aekit evaluate</code> again.</p>")
    # The pictures people come for first (the decoded plane and the latent map), then the rest in report order;
    # the per-epoch table after the figures (the curves figure shows it at a glance).
    figures = figures or {}
    order = [k for k in LEAD if k in figures] + [k for k in figures if k not in LEAD]
    for name, png in ((k, figures[k]) for k in order):
        caption = CAPTIONS.get(name, name)
        parts.append(f"<h2>{html.escape(name)}</h2><figure><img alt='{html.escape(name)}' src='{data_uri(png)}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if skipped:
        items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(reason)}</li>" for k, reason in skipped.items())
        parts.append(f"<h2>Not shown for this model</h2><ul class='skipped'>{items}</ul>")
    parts.append("<h2>Metrics per epoch</h2>" + _table(run.metrics()))
    parts.append("<h2>Config</h2><pre>" + html.escape(json.dumps(cfg, indent=2)) + "</pre></body></html>\n")
    return "\n".join(parts)
