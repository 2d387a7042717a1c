"""``aekit bench``: train (or reuse) several models on one data set, evaluate each, and build the leaderboard
rows, with the PCA baseline of the same code size as its own row. Training writes run folders (through
``aekit.train``); the leaderboard files themselves are written by the CLI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..errors import ConfigError

# leaderboard columns, in order: (key, header, format)
COLUMNS = (
    ("model", "model", "{}"),
    ("params", "params", "{:,}"),
    ("epochs", "epochs", "{}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("train_img_per_s", "train img/s", "{:,.0f}"),
    ("encode_img_per_s", "encode img/s", "{:,.0f}"),
    ("mse", "MSE/pixel", "{:.5f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("elbo", "ELBO nats", "{:.2f}"),
    ("nll_iwae", "NLL nats", "{:.2f}"),
    ("perplexity", "codebook perplexity", "{:.1f}"),
    ("usage", "codebook usage", "{:.2f}"),
    ("bits_per_image", "prior bits/image", "{:.1f}"),
    ("fid_samples", "FID-clf samples", "{:.2f}"),
    ("fid_recon", "FID-clf recon", "{:.2f}"),
    ("probe_acc", "probe acc", "{:.3f}"),
    ("probe_acc_100", "probe acc 100 labels", "{:.3f}"),
    ("knn_acc", "kNN acc", "{:.3f}"),
    ("model_stats", "model's own stats (test mean)", "{}"),
)
BENCH_METRICS = ("mse", "bce", "psnr", "ssim", "fid", "probe", "knn")
# reported where they apply (a likelihood, a codebook, a trained prior), skipped with a reason elsewhere
BENCH_IF_APPLICABLE = ("elbo", "nll", "codebook", "bits")


def parse_models(text: str) -> list[str]:
    """'ae,vae' -> ['ae', 'vae'], each checked against the registry (a ConfigError names the bad one)."""
    from ..registry import list_models

    names = [t.strip() for t in text.split(",") if t.strip()]
    known = list_models()
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ConfigError(f"unknown model(s) {', '.join(bad) or '(none given)'} in --models; choose from: {', '.join(known)}")
    return list(dict.fromkeys(names))


def _finished(run_dir: Path) -> bool:
    import json

    cfg = run_dir / "config.json"
    try:
        return (run_dir / "model.safetensors").exists() and json.loads(cfg.read_text()).get("status") == "finished"
    except (OSError, ValueError):
        return False


def run_bench(dataset: str, models: list[str], out: str | Path, *, latent_dim: int = 16, epochs: int = 5,
              time_budget_min: float | None = None, max_train_samples: int | None = None, data_dir: str | None = None,
              batch_size: int = 128, iwae_samples: int = 100, nll_samples: int | None = 1000, seed: int = 0,
              max_probe_train: int | None = 20000, log: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """Train each model into ``out/runs/MODEL`` (finished runs are reused), evaluate it on the test split and
    return (leaderboard rows, details per model). A family with second stages (``model.stages``, e.g. a prior
    over a VQ-VAE's codes) has each trained for the same epochs in ``out/runs/MODEL/STAGE``, so its samples can
    be scored. With ``time_budget_min``, models not started before the budget is spent are listed as skipped
    (a run is never cut short: its numbers would mislead)."""
    import torch

    from ..data import load_data
    from ..registry import build_model
    from ..train import TrainConfig, load_run, train
    from ..train.stage import stage_finished, train_stage
    from .suite import evaluate_metrics

    out = Path(out)
    data_opts = {k: v for k, v in {"data_dir": data_dir, "max_train_samples": max_train_samples}.items() if v is not None}
    data = load_data(dataset, seed=seed, **data_opts)
    cache_dir = data_dir if data_dir is not None else _default_cache()
    start = time.perf_counter()
    rows: list[dict] = []
    details: dict[str, dict] = {}
    for name in models:
        run_dir = out / "runs" / name
        if _finished(run_dir):
            log(f"{name}: re-using {run_dir}")
            run = load_run(run_dir)
        else:
            spent = (time.perf_counter() - start) / 60
            if time_budget_min is not None and spent >= time_budget_min:
                log(f"{name}: skipped, the {time_budget_min:g}-minute budget is spent")
                rows.append({"model": name, "status": "skipped (time budget)"})
                continue
            resume = (run_dir / "checkpoints" / "last.ckpt").exists()
            torch.manual_seed(seed)
            model = build_model(name, input_shape=tuple(data.shape), latent_dim=latent_dim)
            cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, patience=0, progress=False)
            log(f"{name}: training {epochs} epochs -> {run_dir}")
            run = train(model, data, cfg, run_dir, resume=resume, data_options={"spec": dataset, **data_opts, "seed": seed})
        stage_seconds = 0.0
        for stage in run.model.stages:
            if not stage_finished(run_dir, stage):
                cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, patience=0, progress=False)
                log(f"{name}: training its {stage} stage {epochs} epochs -> {run_dir / stage}")
                run = train_stage(run_dir, stage, cfg, resume=(run_dir / stage / "checkpoints" / "last.ckpt").exists(),
                                  data_overrides={"data_dir": data_dir} if data_dir is not None else None)
            stage_seconds += (run.config.get("stages", {}).get(stage, {}).get("result", {}).get("train_seconds") or 0.0)
        model = run.model
        m = evaluate_metrics(model, data, [*BENCH_METRICS, *BENCH_IF_APPLICABLE], iwae_samples=iwae_samples,
                             nll_samples=nll_samples, cache_dir=cache_dir, seed=seed, max_probe_train=max_probe_train,
                             skip_inapplicable=True)
        res = run.config.get("result", {})
        n_train = run.config["data"].get("sizes", {}).get("train", len(data.splits["train"]))
        done = res.get("epochs_completed") or epochs
        secs = res.get("train_seconds") or float("nan")
        row = {"model": name, "params": sum(p.numel() for p in model.parameters()), "epochs": done,
               "train_seconds": secs, "train_img_per_s": n_train * done / secs if secs and secs == secs else float("nan"),
               **{k: m[k] for k, _, _ in COLUMNS if k in m}, "status": "ok"}
        if stage_seconds:
            row["stage_seconds"] = round(stage_seconds, 2)  # second stages, apart from the first stage's speed
        # The family's own diagnostics (Output.stats: an IWAE bound, an MMD, MI/TC/dimension-wise KL, KL per
        # layer ...), each its own CSV column and together one Markdown cell: asked of the model, not its name.
        own = {k: m[k] for k in model_stat_names(model, data) if isinstance(m.get(k), (int, float)) and k not in row}
        if own:
            row.update(own)
            row["model_stats"] = ", ".join(f"{k} {v:.4g}" for k, v in own.items())
        if "nll_iwae" in m:
            row["nll_note"] = f"IWAE-{m['iwae_samples']} on {m['nll_n']} test images, grey-level data"
        rows.append(row)
        details[name] = m
        log(f"{name}: MSE {m.get('mse', float('nan')):.5f}, probe {m.get('probe_acc', float('nan')):.3f}")
    # The PCA row: the best linear code of the same size (Hinton & Salakhutdinov 2006's baseline).
    from .pca import pca_baseline

    train_images, train_labels = data.split("train")
    if max_probe_train is not None and len(train_images) > max_probe_train:
        idx = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))[:max_probe_train].sort().values
        train_images, train_labels = train_images[idx], train_labels[idx]
    test_images, test_labels = data.split("test")
    t0 = time.perf_counter()
    pca = pca_baseline(train_images.numpy(), test_images.numpy(), latent_dim, train_labels=train_labels.numpy(),
                       test_labels=test_labels.numpy(), probes=("probe", "knn"), seed=seed)
    c, h, w = data.shape
    rows.append({"model": f"pca-{pca['pca_components']}", "params": (c * h * w + 1) * pca["pca_components"],
                 "train_seconds": time.perf_counter() - t0, "mse": pca["pca_mse"], "psnr": pca["pca_psnr"],
                 **{k: pca[f"pca_{k}"] for k in ("probe_acc", "probe_acc_100", "knn_acc") if f"pca_{k}" in pca},
                 "status": "ok"})
    details["pca"] = pca
    return rows, {"dataset": dataset, "shape": list(data.shape), "latent_dim": latent_dim, "epochs": epochs,
                  "sizes": {k: int(len(v)) for k, v in data.splits.items()}, "models": details}


def model_stat_names(model, data, split: str = "test") -> list[str]:
    """The names of the diagnostics ``model``'s forward pass reports (``Output.stats``) that are not already a
    leaderboard column; found by one forward pass on two images of ``split`` (eval mode, no gradients)."""
    import torch

    from ..data import to_float

    images, labels = data.split(split)
    shown = {k for k, _, _ in COLUMNS}
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.forward_batch(to_float(images[:2]).to(device), labels[:2].to(device))
    return [k for k in out.stats if k not in shown]


def _default_cache() -> Path:
    from ..data.load import default_data_dir

    return default_data_dir()


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def leaderboard_markdown(rows: list[dict], title: str = "") -> str:
    """A Markdown table of the rows (missing values as an en dash)."""
    cols = [(k, h, f) for k, h, f in COLUMNS if any(r.get(k) is not None for r in rows)]
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(h for _, h, _ in cols) + " |")
    lines.append("|" + "|".join("---" if k == "model" else "---:" for k, _, _ in cols) + "|")
    for r in rows:
        if r.get("status", "ok") != "ok":
            lines.append(f"| {r['model']} | {r['status']} |" + " |" * (len(cols) - 2))
            continue
        lines.append("| " + " | ".join(_cell(r, k, f) for k, _, f in cols) + " |")
    return "\n".join(lines) + "\n"


def leaderboard_figure(rows: list[dict], title: str = ""):
    """Bar charts of MSE, probe accuracy and FID-classifier per model; returns a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    panels = [("mse", "test MSE / pixel (lower is better)"), ("probe_acc", "linear-probe accuracy"),
              ("fid_recon", "FID-classifier of reconstructions")]
    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        names = [r["model"] for r in ok if isinstance(r.get(key), (int, float))]
        values = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
        colors = ["0.6" if n.startswith("pca") else "C0" for n in names]
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
