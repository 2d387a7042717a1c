"""Exploration commands: `aekit plot KIND RUN` (one experiment -> PNG + JSON) and `aekit report RUN`.

This is the only layer that writes: aekit.explore computes arrays, aekit.plots draws Figures, this module
renders them to bytes and writes them atomically into RUN/figures/ (or --out), RUN/cache/ and RUN/report.html.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, RunError
from . import _common as c

ORDER = 30

# kind -> (help, options it takes besides the common --out/--seed/--data-dir/--batch-size)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "reconstruct": ("originals above, reconstructions below, per-image MSE", ("n", "split", "indices")),
    "latent": ("2-D scatter of the codes coloured by label (projected when wider than 2)", ("n", "split", "method", "dims")),
    "density": ("per-dimension density of the codes and a min/max/mean/std/skew table", ("n", "split")),
    "slice3d": ("3-D scatter of three code dimensions", ("n", "split", "dims")),
    "sample": ("decode random codes: the prior (VAE) or N(0, I) and a fitted Gaussian (AE)", ("n",)),
    "manifold": ("decode a grid over two code dimensions", ("dims", "range", "step", "n", "split")),
    "interpolate": ("morph between two test images", ("a", "b", "steps", "mode", "split")),
    "arithmetic": ("a - b + c in latent space, on images or class means", ("a", "b", "c", "classes", "split")),
    "traverse": ("sweep each code dimension; --mode max: each dimension at its maximum", ("steps", "mode", "split")),
    "denoise": ("noisy input / output / clean target with PSNR", ("n", "split", "indices", "noise")),
    "curves": ("training and validation loss per epoch", ()),
    "defects": ("unequal class areas, asymmetry and gaps of the latent space", ("n", "split")),
}
MODES = {"interpolate": ("linear", "slerp"), "traverse": ("range", "max")}
PROJECTION_SUBSAMPLE = 2000  # t-SNE on 10k points costs ~50 s on 2 cores; 2k keeps it to seconds


def _count(text: str) -> int | None:
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return n


def add_commands(sub) -> None:
    S = argparse.SUPPRESS  # absent unless given, so a flag a KIND does not take is an error, not ignored
    kinds = "\n".join(f"  {k:<12} {h}" for k, (h, _) in KINDS.items())
    p = sub.add_parser("plot", help="one latent-space experiment of a run -> RUN/figures/KIND.png (+ .json)",
                       description=f"KIND is one of:\n{kinds}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", metavar="KIND", help="see the list above")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", default=None, metavar="PNG", help="picture to write (default RUN/figures/KIND.png); numbers go beside it as .json")
    p.add_argument("--seed", type=int, default=0, help="subsampling, sampling and noise seed")
    p.add_argument("--data-dir", default=None, help="override the run's data directory")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--n", type=_count, default=S, metavar="N|all", help="how many images / codes / samples")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default=S, help="default test")
    p.add_argument("--indices", type=c.int_list, default=S, metavar="I,J,..", help="images of the split to show")
    p.add_argument("--method", choices=("pca", "tsne", "umap", "none"), default=S, help="latent: projection of wide codes")
    p.add_argument("--dims", type=c.int_list, default=S, metavar="I,J[,K]", help="raw code dimensions to plot")
    p.add_argument("--a", type=int, default=S, metavar="IDX", help="image index in the split")
    p.add_argument("--b", type=int, default=S, metavar="IDX")
    p.add_argument("--c", type=int, default=S, metavar="IDX")
    p.add_argument("--classes", default=S, metavar="A,B,C", help="arithmetic on class means (names or label numbers)")
    p.add_argument("--steps", type=int, default=S, help="interpolation / traversal steps")
    p.add_argument("--mode", default=S, help="interpolate: linear|slerp; traverse: range|max")
    p.add_argument("--range", type=float, nargs=2, default=S, metavar=("LO", "HI"), help="manifold grid range")
    p.add_argument("--step", type=float, default=S, help="manifold grid step")
    p.add_argument("--noise", default=S, help="denoise: gaussian:0.5 | saltpepper:0.1 | mask:0.3")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="self-contained HTML report of a run -> RUN/report.html")
    p.add_argument("run", help="run folder")
    p.add_argument("--quick", action="store_true", help="subsample and skip t-SNE (seconds, not minutes)")
    p.add_argument("--data-dir", default=None, help="override the run's data directory")
    p.set_defaults(func=cmd_report)


class Session:
    """A loaded run plus what several figures share (data, codes per split), computed once."""

    def __init__(self, run, data_dir: str | None = None, seed: int = 0, batch_size: int = 1024, progress: bool = True,
                 limit: int | None = None):
        self.run, self.model, self.seed, self.batch_size, self.progress = run, run.model, seed, batch_size, progress
        self.limit = limit  # at most this many images per split (a seeded subset): the quick report
        self._data_dir = data_dir
        self._codes: dict[str, Any] = {}
        self._splits: dict[str, Any] = {}

    @cached_property
    def data(self):
        return self.run.data(**({"data_dir": self._data_dir} if self._data_dir else {}))

    @property
    def dim(self) -> int:
        return self.model.latent_dim

    def split(self, name: str):
        """(uint8 images, int labels as numpy) of a split, or of its seeded subset when ``limit`` is set."""
        if name not in self._splits:
            images, labels = self.data.split(name)
            if len(images) == 0:
                raise ConfigError(f"split {name!r} of {self.data.name} is empty; choose another --split")
            if self.limit is not None and len(images) > self.limit:
                keep = self.subset(self.limit, len(images))
                images, labels = images[keep], labels[keep]
            self._splits[name] = (images, labels.numpy())
        return self._splits[name]

    def codes(self, name: str):
        """Codes of a whole split (N, D), encoded once per session with a progress bar."""
        from ..explore import encode_all

        if name not in self._codes:
            images = self.split(name)[0]
            # a bar only where encoding takes a while (MNIST-sized splits), not for every small set
            bar = self.progress and len(images) >= 5000
            self._codes[name] = encode_all(self.model, images, self.batch_size, progress=bar)
        return self._codes[name]

    def subset(self, n: int | None, total: int):
        """Seeded, sorted subsample of range(total) of size n (all when n is None or >= total)."""
        import numpy as np

        if n is None or n >= total:
            return np.arange(total)
        return np.sort(np.random.default_rng(self.seed).choice(total, n, replace=False))

    def weights_key(self) -> str:
        """Hash of the weights file: a retrained or replaced model never reuses a cached projection."""
        h = hashlib.sha256()
        with open(self.run.path / "model.safetensors", "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:16]

    def projection(self, codes, method: str, split: str):
        """project() of the codes, cached in RUN/cache/ for the slow methods (t-SNE, UMAP)."""
        import numpy as np

        from ..explore import project
        from ..train.runs import atomic_write

        if method in ("pca", "none") or codes.shape[1] <= 2:
            return project(codes, method if codes.shape[1] > 2 or method != "none" else "none", self.seed)
        key = f"{self.weights_key()}-{split}-{hashlib.sha256(codes.tobytes()).hexdigest()[:12]}"
        path = self.run.path / "cache" / f"projection-{method}-{len(codes)}-{self.seed}.npz"
        if path.exists():
            try:
                with np.load(path) as f:
                    if str(f["key"]) == key:
                        return f["points"]
            except (OSError, ValueError, KeyError):
                pass  # damaged or old cache: recompute and replace it
        print(f"projecting {len(codes)} codes with {method} (cached in {path.parent})", file=sys.stderr)
        points = project(codes, method, self.seed)
        buf = io.BytesIO()
        np.savez(buf, points=points, key=np.array(key))
        atomic_write(path, buf.getvalue())
        return points


# ---- one builder per KIND: (session, options) -> (Figure, numbers) -------------------------------------------

def _pick(s: Session, o: dict, default_n: int | None):
    """Indices into the split: --indices, else a seeded subsample of --n."""
    split = o.get("split", "test")
    images, labels = s.split(split)
    if "indices" in o:
        idx = list(o["indices"])
        if not idx:
            raise ConfigError("--indices is empty; give image numbers like 0,5,9")
        bad = [i for i in idx if not 0 <= i < len(images)]
        if bad:
            raise ConfigError(f"index {bad[0]} is out of range: split {split!r} has images 0..{len(images) - 1}")
        import numpy as np

        return split, np.asarray(idx)
    n = o.get("n", default_n)
    return split, (s.subset(n, len(images)) if n is not None and n < len(images) else __import__("numpy").arange(len(images)))


def _first(s: Session, o: dict, default_n: int):
    """The first n images of the split (or --indices): the same pictures every time."""
    import numpy as np

    if "indices" in o:
        return _pick(s, o, None)
    split = o.get("split", "test")
    total = len(s.split(split)[0])
    n = o.get("n", default_n)
    return split, np.arange(total if n is None else min(n, total))


def _reconstruct(s: Session, o: dict):
    from .. import plots
    from ..explore import decode_all, encode_all

    split, idx = _first(s, o, 10)
    x = s.split(split)[0][idx]
    orig = x.float().numpy() / 255.0
    rec = decode_all(s.model, encode_all(s.model, x, s.batch_size))
    mse = ((rec - orig) ** 2).reshape(len(idx), -1).mean(1)
    return plots.reconstruct(orig, rec, mse, idx.tolist()), {"split": split, "indices": idx.tolist(), "mse": mse.tolist()}


def _check_dims(dims, d: int, k: int) -> tuple[int, ...]:
    from ..explore.ops import _check_dims as check

    if d < k:
        raise ConfigError(f"this needs {k} code dimensions; the run's code has {d}")
    return check(dims, d, k)


def _latent(s: Session, o: dict):
    from .. import plots

    split = o.get("split", "test")
    method = o.get("method", "pca")
    if "dims" in o:  # check options before the (slow) encoding
        if "method" in o:
            raise ConfigError("give either --dims (raw dimensions) or --method (a projection), not both")
        i, j = _check_dims(o["dims"], s.dim, 2)
    if method == "none" and s.dim != 2:
        raise ConfigError(f"--method none plots raw codes and needs a 2-D code; this run's code is {s.dim}-D")
    codes, labels = s.codes(split), s.split(split)[1]
    if "dims" in o:
        idx = s.subset(o.get("n"), len(codes))
        pts, xl, yl, how = codes[idx][:, [i, j]], f"z[{i}]", f"z[{j}]", f"dims {i},{j}"
    else:
        slow = method in ("tsne", "umap") and s.dim > 2
        idx = s.subset(o.get("n", PROJECTION_SUBSAMPLE if slow else None), len(codes))
        pts = s.projection(codes[idx], method, split)
        how = "raw codes" if s.dim <= 2 else method
        xl, yl = ("z[0]", "z[1]") if s.dim <= 2 else (f"{method} 1", f"{method} 2")
    fig = plots.latent_scatter(pts, labels[idx], s.data.class_names, xl, yl,
                               f"{s.model.name} codes of {len(idx)} {split} images ({how})")
    return fig, {"split": split, "indices": idx.tolist(), "points": pts.tolist(), "labels": labels[idx].tolist()}


def _density(s: Session, o: dict):
    from .. import plots
    from ..explore import latent_stats

    split = o.get("split", "test")
    codes = s.codes(split)
    codes = codes[s.subset(o.get("n"), len(codes))]
    stats = latent_stats(codes)
    return plots.density(codes, stats), {"split": split, "n": len(codes), **stats}


def _slice3d(s: Session, o: dict):
    from .. import plots

    dims = _check_dims(o.get("dims", (0, 1, 2)), s.dim, 3)
    split = o.get("split", "test")
    codes, labels = s.codes(split), s.split(split)[1]
    idx = s.subset(o.get("n", PROJECTION_SUBSAMPLE), len(codes))
    pts = codes[idx][:, list(dims)]
    return plots.slice3d(pts, labels[idx], s.data.class_names, dims), {"dims": list(dims), "points": pts.tolist()}


def _sample(s: Session, o: dict):
    from .. import plots
    from ..explore import decode_all, sample_codes

    n = o.get("n", 64) or 64
    sources = ("prior",) if s.model.has_prior else ("normal", "fitted")
    train = s.codes("train") if "fitted" in sources else None
    titles = {"prior": "prior N(0, I)", "normal": "N(0, I) (no prior!)", "fitted": "Gaussian fitted to train codes"}
    panels, numbers = {}, {"n": n, "seed": s.seed}
    for src in sources:
        z = sample_codes(s.model, n, src, train_codes=train, seed=s.seed)
        panels[titles[src]] = decode_all(s.model, z)
        numbers[src] = z.tolist()
    return plots.samples(panels), numbers


def _manifold(s: Session, o: dict):
    import numpy as np

    from .. import plots
    from ..explore import axis_values, manifold, prior_quantiles

    dims = _check_dims(o.get("dims", (0, 1)), s.dim, 2)
    codes = s.codes(o.get("split", "test"))
    if "step" in o and "range" not in o:
        raise ConfigError("--step needs --range LO HI")
    if "range" in o:
        if "n" in o:
            raise ConfigError("give either --range LO HI [--step S] or --n (points per axis), not both")
        xs = ys = axis_values(o["range"][0], o["range"][1], o.get("step", 1.0))
        if len(xs) > 60:
            raise ConfigError(f"the grid would be {len(xs)} x {len(xs)} images; use a larger --step")
    else:
        n = o.get("n", 15) or 15
        if s.model.has_prior:  # quantiles of N(0, 1): each cell holds equal prior mass
            xs = ys = prior_quantiles(n)
        else:  # a plain AE has no prior: cover where its codes actually are
            lo, hi = np.percentile(codes[:, list(dims)], [1, 99], axis=0)
            xs, ys = np.linspace(lo[0], hi[0], n, dtype=np.float32), np.linspace(lo[1], hi[1], n, dtype=np.float32)
    base = codes.mean(0)
    grid, images = manifold(s.model, base, dims, xs, ys)
    return plots.manifold(images, xs, ys, dims), {"dims": list(dims), "xs": np.asarray(xs).tolist(),
                                                   "ys": np.asarray(ys).tolist(), "shape": list(images.shape[:2]),
                                                   "base": base.tolist()}


def _index(o: dict, key: str, default: int, total: int, split: str) -> int:
    i = o.get(key, default)
    if not 0 <= i < total:
        raise ConfigError(f"--{key} {i} is out of range: split {split!r} has images 0..{total - 1}")
    return i


def _interpolate(s: Session, o: dict):
    from .. import plots
    from ..explore import encode_all, interpolate

    split = o.get("split", "test")
    images = s.split(split)[0]
    a, b = (_index(o, k, d, len(images), split) for k, d in (("a", 0), ("b", 1)))
    mode = o.get("mode", "linear")
    if mode not in MODES["interpolate"]:
        raise ConfigError(f"interpolate --mode is linear or slerp, got {mode!r}")
    x = images[[a, b]]
    z = encode_all(s.model, x)
    codes, imgs = interpolate(s.model, z[0], z[1], o.get("steps", 10), mode)
    orig = x.float().numpy() / 255.0
    return plots.interpolation(imgs, orig[0], orig[1], mode), {"a": a, "b": b, "mode": mode, "codes": codes.tolist()}


def _class_ids(s: Session, text: str) -> list[int]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if len(names) != 3:
        raise ConfigError(f"--classes needs three classes A,B,C (for A - B + C), got {text!r}")
    lookup = {n: i for i, n in enumerate(s.data.class_names)}
    out = []
    for n in names:
        if n in lookup:
            out.append(lookup[n])
        elif n.lstrip("-").isdigit() and 0 <= int(n) < max(len(s.data.class_names), 1):
            out.append(int(n))
        else:
            known = ", ".join(s.data.class_names) or "none (unlabelled data)"
            raise ConfigError(f"class {n!r} is not in {s.data.name}; known classes: {known}")
    return out


def _arithmetic(s: Session, o: dict):
    import numpy as np

    from ..explore import arithmetic, class_means, decode_all
    from .. import plots

    split = o.get("split", "test")
    images, labels = s.split(split)
    if "classes" in o:
        if any(k in o for k in ("a", "b", "c")):
            raise ConfigError("give either --a/--b/--c (images) or --classes (class means), not both")
        ids = _class_ids(s, o["classes"])
        z = class_means(s.codes(split), labels, ids)  # (3, D)
        # show the first image of each class as its stand-in
        inputs = np.stack([images[int(np.flatnonzero(labels == k)[0])].float().numpy() / 255.0 for k in ids])
        names = [f"mean of {s.data.class_names[k] if k < len(s.data.class_names) else k}" for k in ids]
        numbers = {"classes": ids}
    else:
        idx = [_index(o, k, d, len(images), split) for k, d in (("a", 0), ("b", 1), ("c", 2))]
        z = s.codes(split)[idx]
        inputs = images[idx].float().numpy() / 255.0
        names = [f"{k} #{i}" for k, i in zip("abc", idx)]
        numbers = {"indices": idx}
    result_z, result = arithmetic(s.model, z[0], z[1], z[2])
    fig = plots.arithmetic(inputs, decode_all(s.model, z), result, names)
    return fig, {**numbers, "z_a": z[0].tolist(), "z_b": z[1].tolist(), "z_c": z[2].tolist(), "z": result_z.tolist()}


def _traverse(s: Session, o: dict):
    from .. import plots
    from ..explore import decode_all, latent_stats, max_codes, traverse

    split = o.get("split", "test")
    stats = latent_stats(s.codes(split))
    mode = o.get("mode", "range")
    if mode not in MODES["traverse"]:
        raise ConfigError(f"traverse --mode is range or max, got {mode!r}")
    if mode == "max":
        if "steps" in o:
            raise ConfigError("--steps does not apply to traverse --mode max")
        codes = max_codes(stats["mean"], stats["max"])
        imgs = decode_all(s.model, [stats["mean"], *codes])
        return plots.max_traverse(imgs[0], imgs[1:], stats["max"]), {"mode": mode, "codes": codes.tolist(), **stats}
    codes, imgs = traverse(s.model, stats["mean"], stats["min"], stats["max"], o.get("steps", 9))
    values = codes[range(s.dim), :, range(s.dim)]  # (D, S): the swept value of each row
    return plots.traverse(imgs, values), {"mode": mode, "values": values.tolist(), **stats}


def _denoise(s: Session, o: dict):
    from .. import plots
    from ..data import parse_noise
    from ..explore import denoise

    split, idx = _first(s, o, 10)
    spec = o.get("noise", "gaussian:0.5")
    noise = parse_noise(spec)
    r = denoise(s.model, s.split(split)[0][idx], noise, seed=s.seed)
    return plots.denoise(r, str(noise)), {"noise": str(noise), "indices": idx.tolist(),
                                          "psnr_noisy": r["psnr_noisy"].tolist(), "psnr_output": r["psnr_output"].tolist(),
                                          "mean_psnr_noisy": float(r["psnr_noisy"].mean()),
                                          "mean_psnr_output": float(r["psnr_output"].mean())}


def _curves(s: Session, o: dict):
    from .. import plots

    rows = s.run.metrics()
    if not rows:
        raise RunError(f"{s.run.path}/metrics.csv is missing or empty: the run has no finished epoch")
    return plots.curves(rows), {"epochs": rows}


def _defects(s: Session, o: dict):
    from .. import plots
    from ..explore import defects, project

    split = o.get("split", "test")
    codes, labels = s.codes(split), s.split(split)[1]
    idx = s.subset(o.get("n"), len(codes))
    train = s.codes("train")
    train = train[s.subset(5000, len(train))]
    result = defects(codes[idx], labels[idx], train, seed=s.seed)
    pts = codes[idx] if s.dim <= 2 else project(codes[idx], "pca", s.seed)
    return plots.defects(result, pts, labels[idx], s.data.class_names), {"split": split, "n": len(idx), **result}


BUILDERS: dict[str, Callable] = {
    "reconstruct": _reconstruct, "latent": _latent, "density": _density, "slice3d": _slice3d, "sample": _sample,
    "manifold": _manifold, "interpolate": _interpolate, "arithmetic": _arithmetic, "traverse": _traverse,
    "denoise": _denoise, "curves": _curves, "defects": _defects,
}
OPTION_NAMES = ("n", "split", "indices", "method", "dims", "a", "b", "c", "classes", "steps", "mode", "range", "step", "noise")


def make_figure(s: Session, kind: str, options: dict | None = None):
    """(Figure, numbers) of one KIND with the given options (names as the CLI flags, without --)."""
    if kind not in BUILDERS:
        raise ConfigError(f"unknown plot kind {kind!r}; use one of {', '.join(KINDS)}")
    options = dict(options or {})
    extra = sorted(set(options) - set(KINDS[kind][1]))
    if extra:
        raise ConfigError(f"--{extra[0]} does not apply to `plot {kind}`; it takes "
                          f"{', '.join('--' + k for k in KINDS[kind][1]) or 'no options of its own'}")
    return BUILDERS[kind](s, options)


def cmd_plot(args: argparse.Namespace) -> int:
    import json

    from .. import plots
    from ..train.runs import atomic_write

    if args.kind not in KINDS:
        raise ConfigError(f"unknown plot kind {args.kind!r}; use one of {', '.join(KINDS)}")
    options = {k: getattr(args, k) for k in OPTION_NAMES if hasattr(args, k)}
    s = Session(c.load_run(args.run), args.data_dir, args.seed, args.batch_size)
    fig, numbers = make_figure(s, args.kind, options)
    out = Path(args.out) if args.out else s.run.path / "figures" / f"{args.kind}.png"
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file, got {out}")
    atomic_write(out, plots.to_png(fig))
    atomic_write(out.with_suffix(".json"), json.dumps({"kind": args.kind, **numbers}) + "\n")
    if args.kind == "defects":
        c.print_metrics({k: numbers[k] for k in ("area_ratio", "asymmetry", "mean_abs_skew", "gap_fraction",
                                                  "normal_miss_fraction")}, f"latent-space defects of {s.model.name}:")
    elif args.kind == "denoise":
        print(f"PSNR noisy {numbers['mean_psnr_noisy']:.2f} dB -> output {numbers['mean_psnr_output']:.2f} dB")
    print(out)
    return 0


def report_figures(s: Session, quick: bool = False) -> dict[str, bytes]:
    """PNG bytes of every figure that applies to the run, in report order. ``quick`` subsamples (2,000 codes)
    and projects wide codes with PCA instead of t-SNE."""
    from tqdm.auto import tqdm

    from .. import plots

    kinds = [k for k in KINDS if not (k == "slice3d" and s.dim < 3) and not (k == "curves" and not s.run.metrics())]
    per_kind: dict[str, dict] = {"latent": {"method": "pca" if quick or s.dim <= 2 else "tsne"}}
    if quick:
        for k in ("latent", "density", "defects", "slice3d"):
            per_kind.setdefault(k, {})["n"] = PROJECTION_SUBSAMPLE
    if s.dim > 2 and not quick:
        per_kind["latent"]["n"] = PROJECTION_SUBSAMPLE
    figures = {}
    for kind in tqdm(kinds, desc="report", unit="figure", file=sys.stderr, disable=not s.progress, leave=False):
        fig, _ = make_figure(s, kind, per_kind.get(kind))
        figures[kind] = plots.to_png(fig)
    return figures


def write_report(run_path, quick: bool = False, data_dir: str | None = None, progress: bool = True) -> Path:
    """Make every applicable figure of the run and write RUN/report.html (self-contained); returns its path."""
    from ..report import build_report
    from ..train.runs import atomic_write

    # quick: every split capped to a seeded 5,000 images, so encoding stays a few seconds on MNIST
    s = Session(c.load_run(str(run_path)), data_dir, progress=progress, limit=5000 if quick else None)
    html = build_report(s.run, report_figures(s, quick))
    out = s.run.path / "report.html"
    atomic_write(out, html)
    return out


def cmd_report(args: argparse.Namespace) -> int:
    print(write_report(args.run, quick=args.quick, data_dir=args.data_dir))
    return 0
