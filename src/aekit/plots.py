"""Figures of the latent-space experiments. Each function takes arrays (from ``aekit.explore`` or the run
folder) and returns a matplotlib ``Figure``; nothing here writes a file or touches pyplot's global state
(figures are built with ``matplotlib.figure.Figure``, rendered by Agg in ``to_png``).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def to_png(fig, dpi: int = 80) -> bytes:
    """PNG bytes of a figure (the caller decides where they go)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _hwc(img: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for grey or (H, W, 3) for colour, clipped to [0, 1] for imshow."""
    img = np.clip(np.asarray(img, np.float32), 0.0, 1.0)
    return img[0] if img.shape[0] == 1 else np.transpose(img[:3], (1, 2, 0))


def mosaic(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """(R, Q, C, H, W) -> one (R*(H+pad), Q*(W+pad)[, 3]) picture: one imshow instead of R*Q axes."""
    r, q, c, h, w = images.shape
    out = np.ones((c, r * (h + pad) - pad, q * (w + pad) - pad), np.float32)
    for i in range(r):
        for j in range(q):
            out[:, i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = images[i, j]
    return _hwc(out)


def _tick(v: float) -> str:
    return f"{round(float(v), 3) + 0.0:.3g}"  # + 0.0: no "-0" or "-1.4e-16" at the grid centre


def _imshow(ax, img, title: str | None = None, fontsize: int = 8) -> None:
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def image_rows(rows: Sequence[np.ndarray], row_labels: Sequence[str], titles: Sequence[Sequence[str]] | None = None,
               suptitle: str | None = None):
    """One row of images per entry of ``rows`` (each (Q, C, H, W)), labelled on the left."""
    q = max(len(r) for r in rows)
    fig = _figure(1.1 * q + 0.8, 1.25 * len(rows) + 0.4)
    axes = np.asarray(fig.subplots(len(rows), q, squeeze=False))
    for i, row in enumerate(rows):
        for j in range(q):
            ax = axes[i, j]
            if j < len(row):
                _imshow(ax, _hwc(row[j]), titles[i][j] if titles else None, 7)
            else:
                ax.axis("off")
        axes[i, 0].set_ylabel(row_labels[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def code_maps(codes: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Spatial codes (N, D, h, w) as pictures (N, 1, H, W): the D maps of each code tiled in a near-square grid,
    one grey scale over all of them (so brightness compares across images); returns (pictures, lo, hi)."""
    codes = np.asarray(codes, np.float32)
    n, d, h, w = codes.shape
    lo, hi = float(codes.min()), float(codes.max())
    unit = (codes - lo) / (hi - lo) if hi > lo else np.zeros_like(codes)
    cols = int(np.ceil(np.sqrt(d)))
    rows = int(np.ceil(d / cols))
    grid = np.ones((n, rows, cols, 1, h, w), np.float32)  # unused tiles stay white
    grid.reshape(n, rows * cols, 1, h, w)[:, :d] = unit[:, :, None]
    return np.stack([mosaic(g, pad=1 if d > 1 else 0)[None] for g in grid]), lo, hi


def reconstruct(originals: np.ndarray, recons: np.ndarray, mse: np.ndarray, indices: Sequence[int],
                codes: np.ndarray | None = None):
    """Originals above, reconstructions below, per-image MSE in the titles. A spatial code (N, D, h, w) is
    shown between them as its maps (the Keras article's 7x7 codes read as pictures)."""
    rows, labels = [originals], ["original"]
    titles = [[f"#{i}" for i in indices]]
    if codes is not None and np.ndim(codes) == 4:
        maps, lo, hi = code_maps(codes)
        d, h, w = np.shape(codes)[1:]
        rows.append(maps)
        labels.append(f"code {d}x{h}x{w}")
        titles.append([f"[{lo:.2g}, {hi:.2g}]" if j == 0 else "" for j in range(len(maps))])
    rows.append(recons)
    labels.append("reconstruction")
    titles.append([f"mse {m:.4f}" for m in mse])
    return image_rows(rows, labels, titles, f"reconstructions (mean mse {float(np.mean(mse)):.4f})")


def _label_colors(labels: np.ndarray, class_names: Sequence[str]):
    from matplotlib import colormaps

    k = max(len(class_names), int(labels.max()) + 1 if len(labels) else 1, 1)
    return colormaps["tab10" if k <= 10 else "tab20"].resampled(k), k


def latent_scatter(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], xlabel: str = "z[0]",
                   ylabel: str = "z[1]", title: str = "latent space"):
    """2-D scatter of codes coloured by label, with a colorbar (class index) and a legend (class names)."""
    from matplotlib.colors import BoundaryNorm
    from matplotlib.lines import Line2D

    labels = np.asarray(labels)
    fig = _figure(7.2, 5.6)
    ax = fig.add_subplot()
    known = labels >= 0
    if (~known).any():
        ax.scatter(points[~known, 0], points[~known, 1], s=4, c="0.6", alpha=0.6, label="unknown")
    if known.any():
        cmap, k = _label_colors(labels[known], class_names)
        norm = BoundaryNorm(np.arange(k + 1) - 0.5, k)
        sc = ax.scatter(points[known, 0], points[known, 1], s=4, c=labels[known], cmap=cmap, norm=norm, alpha=0.8)
        fig.colorbar(sc, ax=ax, ticks=np.arange(k), label="class")
        present = sorted(set(labels[known].tolist()))
        names = [class_names[i] if i < len(class_names) else str(i) for i in present]
        handles = [Line2D([], [], marker="o", ls="", color=cmap(norm(i)), label=n) for i, n in zip(present, names)]
        ax.legend(handles=handles, fontsize=7, markerscale=1.2, loc="best", framealpha=0.7, ncols=2 if len(present) > 10 else 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return fig


def density(codes: np.ndarray, stats: dict[str, list[float]], pooled: dict[str, float] | None = None,
            max_panels: int = 16):
    """The pooled histogram of every code value of every dimension (its overall min and max in the title, as the
    Keras article's "from -1.76 to 22.35"), beside the histogram of each dimension (up to ``max_panels``), above a
    min/max/mean/std/skew table."""
    d = codes.shape[1]
    shown = min(d, max_panels)
    cols = min(shown, 4)
    rows = -(-shown // cols)
    table_rows = min(d, 16)
    fig = _figure(3.0 * (cols + 1.4), 2.1 * rows + 0.28 * table_rows + 0.8)
    grid = fig.add_gridspec(rows + 1, cols + 1, height_ratios=[2.1] * rows + [0.28 * table_rows + 0.5],
                            width_ratios=[1.4] + [1] * cols)
    values = codes.reshape(-1)
    p = pooled or {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
                   "std": float(values.std())}
    ax = fig.add_subplot(grid[:rows, 0])
    ax.hist(values, bins=60, density=True, color="tab:green", alpha=0.8)
    ax.set_title(f"all {values.size} values: from {p['min']:.2f} to {p['max']:.2f}\nmean {p['mean']:.2f}, "
                 f"std {p['std']:.2f}", fontsize=9)
    ax.tick_params(labelsize=7)
    for k in range(shown):
        ax = fig.add_subplot(grid[k // cols, 1 + k % cols])
        ax.hist(codes[:, k], bins=40, density=True, color="tab:blue", alpha=0.8)
        ax.set_title(f"z[{k}]", fontsize=9)
        ax.tick_params(labelsize=7)
    ax = fig.add_subplot(grid[rows, :])
    ax.axis("off")
    keys = ("min", "max", "mean", "std", "skew")
    cells = [[f"z[{k}]", *(f"{stats[key][k]:.3g}" for key in keys)] for k in range(table_rows)]
    tab = ax.table(cellText=cells, colLabels=["dim", *keys], loc="center", cellLoc="right")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    fig.suptitle(f"code densities: all values pooled (left), each dimension ({d} dims"
                 f"{'' if d == shown else f', first {shown} shown'})", fontsize=10)
    return fig


def _class_legend(ax, labels: np.ndarray, class_names: Sequence[str], cmap) -> None:
    """A legend of the classes present in ``labels`` (their names; "unknown" for label -1) in ``cmap``'s colours."""
    from matplotlib.lines import Line2D

    present = sorted(set(np.asarray(labels).tolist()))
    handles = [Line2D([], [], marker="o", ls="", color=cmap(int(i)) if i >= 0 else (0.6, 0.6, 0.6, 1.0),
                      label=(class_names[i] if i < len(class_names) else str(i)) if i >= 0 else "unknown")
               for i in present]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper left", framealpha=0.7, ncols=2 if len(handles) > 10 else 1)


def slice3d(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], dims: Sequence[int]):
    """3-D scatter of three chosen code dimensions coloured by label, with a legend of the class names."""
    labels = np.asarray(labels)
    fig = _figure(6.4, 5.6)
    ax = fig.add_subplot(projection="3d")
    cmap, k = _label_colors(labels[labels >= 0] if (labels >= 0).any() else np.zeros(1, int), class_names)
    colors = [cmap(int(v)) if v >= 0 else (0.6, 0.6, 0.6, 1.0) for v in labels]
    ax.scatter(points[:, 0], points[:, 1], points[:, 2], s=4, c=colors, depthshade=False)
    _class_legend(ax, labels, class_names, cmap)
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_zlabel(f"z[{dims[2]}]")
    ax.set_title(f"codes in dimensions {', '.join(map(str, dims))}", fontsize=10)
    return fig


def samples(panels: dict[str, np.ndarray], cols: int = 8):
    """Side-by-side grids of decoded random codes, one panel per source (each (N, C, H, W))."""
    fig = _figure(3.4 * len(panels), 3.7)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, imgs) in zip(axes, panels.items()):
        n = len(imgs)
        rows = -(-n // cols)
        grid = np.ones((rows * cols, *imgs.shape[1:]), np.float32)
        grid[:n] = imgs
        _imshow(ax, mosaic(grid.reshape(rows, cols, *imgs.shape[1:])), title, 9)
    return fig


def image_grid(images: np.ndarray, title: str, cols: int | None = None):
    """One titled mosaic of images (N, C, H, W) in a near-square grid (``cols`` per row), sized so each pixel
    stays visible: learned input-space images such as a VampPrior's pseudo-inputs."""
    n, c, h, w = images.shape
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    rows = -(-n // cols)
    grid = np.ones((rows * cols, c, h, w), np.float32)  # white where the last row is short
    grid[:n] = images
    scale = 2.0 / 80  # inches per image pixel: two screen pixels each at to_png's 80 dpi, capped for big grids
    fig = _figure(min(max(cols * (w + 1) * scale, 3.0), 11), min(max(rows * (h + 1) * scale, 2.0), 14) + 0.3)
    ax = fig.add_subplot()
    _imshow(ax, mosaic(grid.reshape(rows, cols, c, h, w)), title, 9)
    return fig


def class_samples(images: np.ndarray, class_names: Sequence[str], title: str):
    """A conditional model's samples (K, Q, C, H, W): one row per class, named on the left."""
    k, q, _, h, _ = images.shape
    fig = _figure(min(0.55 * q + 1.6, 11), min(0.55 * k + 0.9, 14))
    ax = fig.add_subplot()
    ax.imshow(mosaic(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks(np.arange(k) * (h + 1) + h / 2, [str(n)[:16] for n in class_names], fontsize=7)
    ax.set_title(title, fontsize=9)
    return fig


def manifold(images: np.ndarray, xs: np.ndarray, ys: np.ndarray, dims: Sequence[int]):
    """Decoded grid (R, Q, C, H, W) over two dimensions; x values left to right, y values top (largest) down."""
    r, q, _, h, w = images.shape
    fig = _figure(min(0.55 * q + 1.2, 11), min(0.55 * r + 1.0, 11))
    ax = fig.add_subplot()
    ax.imshow(mosaic(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks((np.arange(q) * (w + 1) + w / 2), [_tick(v) for v in xs], fontsize=7, rotation=90)
    ax.set_yticks((np.arange(r) * (h + 1) + h / 2), [_tick(v) for v in ys[::-1]], fontsize=7)
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_title(f"decoded grid ({r} x {q})", fontsize=10)
    return fig


def interpolation(images: np.ndarray, a: np.ndarray, b: np.ndarray, mode: str = "linear"):
    """The original a, the decoded path (S, C, H, W), the original b, in one row."""
    row = np.concatenate([a[None], images, b[None]])
    titles = ["a", *[f"{t:.2f}" for t in np.linspace(0, 1, len(images))], "b"]
    return image_rows([row], [f"{mode}"], [titles], "interpolation between two test images (originals at the ends)")


def arithmetic(inputs: np.ndarray, decoded: np.ndarray, result: np.ndarray, names: Sequence[str],
               weights: Sequence[float] = (1.0, -1.0, 1.0)):
    """Top row: the inputs (one per term); bottom: their decodings and the decoded combination
    sum_i weights[i] * z_i."""
    signs = [("+" if w > 0 else "-") + (f" {abs(w):g}×" if abs(w) != 1 else "") for w in weights]
    expr = " ".join(f"{s} {n}" for s, n in zip(signs, names))
    expr = expr[2:] if expr.startswith("+ ") else expr
    return image_rows([inputs, np.concatenate([decoded, result[None]])], ["input", "decoded"],
                      [[f"{s} {n}" for s, n in zip(signs, names)], [f"dec {n}" for n in names] + ["result"]],
                      f"latent arithmetic: {expr}")


def traverse(images: np.ndarray, values: np.ndarray, max_rows: int = 16):
    """Rows = code dimensions, columns = the swept value (images (D, S, C, H, W), values (D, S))."""
    d, s, _, h, w = images[:max_rows].shape
    fig = _figure(min(0.6 * s + 1.4, 11), min(0.6 * d + 0.9, 12))
    ax = fig.add_subplot()
    ax.imshow(mosaic(images[:max_rows]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(np.arange(d) * (h + 1) + h / 2, [f"z[{k}] {values[k, 0]:.2g}..{values[k, -1]:.2g}" for k in range(d)],
                  fontsize=7)
    ax.set_xticks([])
    ax.set_title("traversal: each row sweeps one dimension, the others at the mean code", fontsize=9)
    return fig


def max_traverse(mean_image: np.ndarray, images: np.ndarray, maxima: np.ndarray):
    """The mean code's image, then the mean code with dimension k set to its maximum, for each k."""
    row = np.concatenate([mean_image[None], images])
    titles = ["mean", *[f"z[{k}]={m:.2g}" for k, m in enumerate(maxima)]]
    per = 12
    rows = [row[i : i + per] for i in range(0, len(row), per)]
    return image_rows(rows, [""] * len(rows), [titles[i : i + per] for i in range(0, len(row), per)],
                      "mean code with one dimension at its maximum")


def denoise(result: dict[str, np.ndarray], noise: str):
    """Rows: noisy input, model output, clean target; PSNR (dB) against the clean image in the titles."""
    pn, po = result["psnr_noisy"], result["psnr_output"]
    return image_rows([result["noisy"], result["output"], result["clean"]], ["noisy", "output", "clean"],
                      [[f"{v:.1f} dB" for v in pn], [f"{v:.1f} dB" for v in po], [""] * len(pn)],
                      f"denoising {noise}: PSNR noisy {pn.mean():.2f} dB -> output {po.mean():.2f} dB")


def feature_errors(names: Sequence[str], mse: np.ndarray, rmse_raw: np.ndarray, split: str = "test",
                   max_bars: int = 40):
    """A table's reconstruction error per feature: horizontal bars of the MSE in the scaled space the model sees
    (comparable across features), each labelled with the RMSE in the feature's own units. Wide tables show the
    ``max_bars`` largest errors (all of them are in the numbers)."""
    mse, rmse_raw = np.asarray(mse, np.float64), np.asarray(rmse_raw, np.float64)
    order = np.argsort(-mse, kind="stable")[:max_bars]
    fig = _figure(7.0, 1.0 + 0.28 * len(order))
    ax = fig.subplots()
    y = np.arange(len(order))
    ax.barh(y, mse[order], color="tab:blue")
    ax.set_yticks(y, [str(names[i]) for i in order], fontsize=8)
    ax.invert_yaxis()  # largest error on top
    for k, i in enumerate(order):
        ax.text(mse[i], k, f"  RMSE {rmse_raw[i]:.4g}", va="center", fontsize=7)
    ax.set_xlim(0, float(mse[order].max()) * 1.35 if len(order) and mse[order].max() > 0 else 1.0)
    shown = f", the {len(order)} largest of {len(mse)}" if len(order) < len(mse) else ""
    ax.set_title(f"reconstruction error per feature ({split} split{shown}): MSE scaled, RMSE in raw units", fontsize=9)
    ax.set_xlabel("mean squared error in the model's scaled space")
    return fig


def curves(rows: list[dict[str, float]]):
    """Training and validation loss per epoch, and each loss term in its own panel."""
    keys = [k[len("train_"):] for k in rows[0] if k.startswith("train_")] if rows else []
    keys = ["loss", *[k for k in keys if k != "loss"]]
    fig = _figure(3.4 * len(keys), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, key in zip(axes, keys):
        for split, style in (("train", "-o"), ("val", "--s")):
            pts = [(r["epoch"], r[f"{split}_{key}"]) for r in rows if f"{split}_{key}" in r]
            if pts:
                e, v = zip(*pts)
                ax.plot(e, v, style, ms=3, label=split)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    return fig


def defects(result: dict, points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], samples=None):
    """Left: the codes (2-D, or projected like ``samples``) with the sampler's random draws over them in red, as
    the article's red points: filled where a draw lands in a gap (far from every code), faint where it lands
    among codes; right: the three defect numbers of :func:`aekit.explore.defects`."""
    fig = _figure(10.5, 4.6)
    ax, bx = fig.subplots(1, 2, width_ratios=[1.2, 1])
    labels = np.asarray(labels)
    cmap, _ = _label_colors(labels[labels >= 0] if (labels >= 0).any() else np.zeros(1, int), class_names)
    ax.scatter(points[:, 0], points[:, 1], s=3, c=[cmap(int(v)) if v >= 0 else "0.6" for v in labels])
    if samples is not None and len(samples):
        samples = np.asarray(samples)
        far = np.asarray(result.get("in_gap", np.zeros(len(samples), bool)), bool)
        ax.scatter(samples[~far, 0], samples[~far, 1], s=3, c="red", alpha=0.25, lw=0,
                   label=f"random draws among codes ({(~far).mean():.1%})")
        ax.scatter(samples[far, 0], samples[far, 1], s=9, c="red", marker="o", lw=0,
                   label=f"random draws in a gap ({far.mean():.1%})")
        ax.legend(fontsize=7, loc="best", framealpha=0.8, title=f"{result.get('sampler', 'sampler')}",
                  title_fontsize=7)
    ax.plot([0], [0], marker="+", ms=12, mew=1.5, color="k", ls="")  # the origin: defect 2 is about symmetry around it
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("codes, the origin (+) and random draws of the sampler (red)", fontsize=9)
    names = ["1 unequal areas\n(spread of shares)", "2 asymmetry\n(origin off-centre)", "3 gaps\n(draws in a gap)"]
    vals = [result["area_spread"], result["asymmetry"], result["gap_mass"]]
    vals = [v if np.isfinite(v) else 0.0 for v in vals]
    bars = bx.bar(range(len(vals)), vals, color=["tab:orange", "tab:purple", "tab:red"])  # pure red is for the draws only
    bx.bar_label(bars, [f"{v:.3g}" for v in vals], fontsize=8)
    bx.set_xticks(range(len(vals)), names, fontsize=7)
    bx.set_title(f"latent-space defects (lower is better)\ngap radius {result['gap_radius']:.3g} "
                 f"(99 % of codes have a neighbour nearer)", fontsize=9)
    return fig


def code_usage(usage: dict, title: str = "codebook use"):
    """Bars: how many grid cells use each codebook entry (``aekit.explore.code_usage``), with the usage
    perplexity and the count of dead entries in the title."""
    counts = np.asarray(usage["counts"])
    k = len(counts)
    fig = _figure(min(2.0 + 0.05 * k, 11), 3.2)
    ax = fig.add_subplot()
    ax.bar(np.arange(k), counts, width=1.0 if k > 64 else 0.8, color=np.where(counts > 0, "tab:blue", "tab:red"))
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_xlabel("codebook entry")
    ax.set_ylabel("grid cells")
    ax.set_title(f"{title}\nperplexity {usage['perplexity']:.1f} of {k}; {usage['used']} used, {usage['dead']} dead",
                 fontsize=9)
    return fig


def swap(image: np.ndarray, result: dict, cell: Sequence[int], entry: int, entries: Sequence[int]):
    """Code swapping: top, the image, its decode and the decode with cell ``cell`` set to each of ``entries``
    (the cell's pixel box outlined); bottom, how much each pixel moved from the unchanged decode."""
    from matplotlib.patches import Rectangle

    y0, y1, x0, x1 = (int(v) for v in result["box"])
    images, moved = result["images"], result["moved"].max(axis=1)  # (E, C, H, W), (E, H, W)
    q = len(entries) + 2
    fig = _figure(1.1 * q + 0.8, 2.9)
    axes = np.asarray(fig.subplots(2, q, squeeze=False))
    top = [image, result["base"], *images]
    titles = ["image", f"decode\n[{cell[0]},{cell[1]}]={entry}", *[f"-> {e}" for e in entries]]
    vmax = max(float(moved.max()), 1e-6)
    for j in range(q):
        _imshow(axes[0, j], _hwc(top[j]), titles[j], 7)
        if j >= 1:
            axes[0, j].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="tab:red", lw=1.2))
        ax = axes[1, j]
        if j >= 2:
            ax.imshow(moved[j - 2], cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="tab:cyan", lw=1.0))
            ax.set_title(f"in {result['inside'][j - 2]:.2f} / out {result['outside'][j - 2]:.2f}", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
        if j < 2:
            ax.axis("off")
    axes[1, 2].set_ylabel("|change|", fontsize=8)
    fig.suptitle(f"code swapping: grid cell {cell[0]},{cell[1]} (entry {entry}) set to other codebook entries", fontsize=9)
    return fig
