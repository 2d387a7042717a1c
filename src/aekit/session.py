"""RunSession: the one middle layer between a run folder and its front ends (`aekit plot`, `aekit report`,
`aekit serve`).

A run is loaded once and each split is encoded once; codes, index grids, reconstruction errors and 2-D
projections (pca / tsne / umap) are cached in memory and in ``RUN/cache/``, keyed by the sha256 of
``model.safetensors`` plus the split, a hash of its images and the options, so a retrained model or other data
never reuses a stale array. The session builds every figure's data (``figure(kind, options) -> (Figure,
numbers)``) and asks the model's declared capabilities which figures apply (``skip_reason(kind)``: None, or
the one-line reason shown instead). It never names a model family.

Codes may be flat ``(D,)`` or spatial ``(D, h, w)``: projections, densities, t-SNE and arithmetic use the
flattened code (``model.code_size`` numbers); sweeps of single dimensions need a flat code; morphing and
arithmetic run in ``model.encode_pre`` space (a discrete model's ``decode`` snaps to its codebook).

Only the cache is written here; the CLI writes figures and reports, the server speaks HTTP. Heavy libraries are
imported inside the methods, so the CLI can read :data:`KINDS` for its help without importing torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

from .errors import ConfigError, NoPriorError, RunError

CACHE_VERSION = 2
MAX_CACHE_BYTES = 64 << 20  # larger arrays (the spatial codes of a big split) stay in memory: re-encoding is cheaper
PROJECTION_SUBSAMPLE = 2000  # t-SNE on 10k points costs ~50 s on 2 cores; 2k keeps it to seconds


@dataclass(frozen=True)
class Kind:
    """A figure: its one-line help, the options it takes (CLI flag names without --) and the model features
    (:data:`aekit.models.base.FEATURES`) or data features (:data:`aekit.data.base.DATA_FEATURES`: "images",
    "table") it needs."""

    help: str
    options: tuple[str, ...]
    needs: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    "reconstruct": Kind("originals above, reconstructions below, per-image MSE", ("n", "split", "indices"), ("images",)),
    "latent": Kind("2-D scatter of the codes coloured by label (projected when wider than 2)", ("n", "split", "method", "dims")),
    "density": Kind("all code values pooled (overall min/max) beside each dimension's density, and a min/max/mean/std/skew "
                    "table", ("n", "split")),
    "slice3d": Kind("3-D scatter of three code dimensions, with a class legend", ("n", "split", "dims")),
    "sample": Kind("new images from the model's prior (a conditional model: --n per class, one row per class, or "
                   "--label CLASS); without a prior, N(0, I) and a Gaussian fitted to the codes", ("n", "label"),
                   ("images",)),
    "manifold": Kind("decode a grid over two code dimensions", ("dims", "range", "step", "n", "split"), ("images", "flat")),
    "interpolate": Kind("morph between two test images", ("a", "b", "steps", "mode", "split"), ("images",)),
    "arithmetic": Kind("latent arithmetic: --expr '3 - 5 + 8' (images or class:NAME means), a - b [+ c], --classes",
                       ("a", "b", "c", "classes", "expr", "split"), ("images",)),
    "traverse": Kind("sweep each code dimension; --mode max: each dimension at its maximum", ("steps", "mode", "split"),
                     ("images", "flat")),
    "denoise": Kind("noisy input / output / clean target with PSNR", ("n", "split", "indices", "noise"), ("images",)),
    "features": Kind("tables: reconstruction error per feature (scaled, and in the feature's own units)", ("split",),
                     ("table",)),
    "curves": Kind("training and validation loss per epoch", ()),
    "defects": Kind("unequal class areas, asymmetry about the origin and the sampler's mass in gaps (random draws in red)",
                    ("n", "split"), ("flat",)),
    "codes": Kind("how often each codebook entry is used over the split (discrete codes)", ("split",), ("discrete",)),
    "swap": Kind("code swapping: one grid cell set to other codebook entries, and what moves", ("a", "cell", "entries", "split"),
                 ("images", "discrete")),
    "learned-inputs": Kind("images the model learned in input space (a VampPrior's pseudo-inputs), the first --n "
                           "(default 64, or all)", ("n",), ("images", "learned_inputs")),
}
OPTION_NAMES = ("n", "split", "indices", "method", "dims", "a", "b", "c", "classes", "expr", "steps", "mode", "range", "step",
                "noise", "cell", "entries", "label")
MODES = {"interpolate": ("linear", "slerp"), "traverse": ("range", "max")}


class RunSession:
    """A loaded run plus everything several figures or requests share, computed once.

    ``limit``: at most this many images per split (a seeded subset; the quick report, the explorer's map).
    ``use_cache``: read and write ``RUN/cache/`` (off: compute in memory only)."""

    def __init__(self, run, data_dir: str | None = None, seed: int = 0, batch_size: int = 1024, progress: bool = True,
                 limit: int | None = None, use_cache: bool = True):
        self.run, self.model = run, run.model
        self.seed, self.batch_size, self.progress, self.limit, self.use_cache = seed, batch_size, progress, limit, use_cache
        self._data_dir = data_dir
        self._splits: dict[str, Any] = {}
        self._memo: dict[str, dict] = {}
        self._image_keys: dict[str, str] = {}
        self._ids: dict[str, Any] = {}

    @classmethod
    def open(cls, path, **options) -> "RunSession":
        from .train.runs import load_run

        return cls(load_run(path), **options)

    # ---- the run, its data and model ---------------------------------------------------------------------
    @cached_property
    def data(self):
        return self.run.data(**({"data_dir": self._data_dir} if self._data_dir else {}))

    @property
    def code_size(self) -> int:
        return self.model.code_size

    @property
    def discrete(self) -> bool:
        return self.model.skip_reason("discrete") is None

    @cached_property
    def weights_sha256(self) -> str:
        """sha256 of ``model.safetensors``: a retrained or replaced model never reuses a cached array."""
        from .fileio import sha256_file

        return sha256_file(self.run.path / "model.safetensors")

    def subset(self, n: int | None, total: int):
        """Seeded, sorted subsample of range(total) of size n (all when n is None or >= total)."""
        import numpy as np

        if n is None or n >= total:
            return np.arange(total)
        return np.sort(np.random.default_rng(self.seed).choice(total, n, replace=False))

    def split(self, name: str):
        """(uint8 images (N, C, H, W) tensor, int labels as numpy) of a split, or of its seeded subset when
        ``limit`` is set."""
        if name not in self._splits:
            images, labels = self.data.split(name)
            if len(images) == 0:
                raise ConfigError(f"split {name!r} of {self.data.name} is empty; choose another --split")
            import numpy as np

            ids = np.arange(len(images))
            if self.limit is not None and len(images) > self.limit:
                import torch

                ids = self.subset(self.limit, len(images))
                keep = torch.from_numpy(ids)
                images, labels = images[keep], labels[keep]
            self._splits[name] = (images, labels.numpy())
            self._ids[name] = ids
        return self._splits[name]

    def ids(self, name: str):
        """The split's own index of each image of :meth:`split` (sorted; ``arange`` unless ``limit`` subsampled):
        the one index space of ``plot``, the report and the explorer, in titles, JSON and options."""
        self.split(name)
        return self._ids[name]

    def position(self, name: str, i: int, flag: str) -> int:
        """Where image ``i`` of split ``name`` (its own index) sits in :meth:`split`; a ConfigError naming ``flag``
        when the split has no image ``i`` or the session's seeded subset left it out."""
        import numpy as np

        ids, total = self.ids(name), len(self.data.split(name)[0])
        if not 0 <= i < total:
            raise ConfigError(f"{flag} is out of range: split {name!r} has images 0..{total - 1}")
        p = int(np.searchsorted(ids, i))
        if p == len(ids) or ids[p] != i:
            raise ConfigError(f"{flag}: image {i} of split {name!r} is not among the {len(ids)} of this view "
                              f"(a seeded subset of {total}); `aekit plot` uses them all")
        return p

    # ---- cached arrays ------------------------------------------------------------------------------------
    def _images_key(self, split: str) -> str:
        """Hash of the split's images: codes of other data (another --data-dir, a changed file) are not reused."""
        import numpy as np

        if split not in self._image_keys:
            images = np.ascontiguousarray(self.split(split)[0].numpy())
            self._image_keys[split] = hashlib.sha256(memoryview(images).cast("B")).hexdigest()
        return self._image_keys[split]

    def cached(self, stem: str, key: dict[str, Any], compute: Callable[[], dict]) -> dict:
        """Arrays from ``compute()`` (a dict of numpy arrays), kept in memory and in ``RUN/cache/{stem}.npz``
        under ``key`` plus the weights' sha256. A damaged or stale file is recomputed and replaced; arrays over
        :data:`MAX_CACHE_BYTES`, or a run folder that cannot be written, are kept in memory only."""
        import numpy as np

        from .fileio import atomic_write

        full = json.dumps({"version": CACHE_VERSION, "weights": self.weights_sha256, **key}, sort_keys=True)
        if full in self._memo:
            return self._memo[full]
        path = self.run.path / "cache" / f"{stem}.npz"
        arrays = None
        if self.use_cache and path.exists():
            try:
                with np.load(path, allow_pickle=False) as f:  # arrays only: nothing is unpickled
                    if str(f["key"]) == full:
                        arrays = {k: f[k] for k in f.files if k != "key"}
            except Exception:  # noqa: BLE001 -- any damage (truncated zip, not an npz, no key): recompute it
                arrays = None
        if arrays is None:
            arrays = compute()
            if self.use_cache and sum(a.nbytes for a in arrays.values()) <= MAX_CACHE_BYTES:
                buf = io.BytesIO()
                np.savez(buf, key=np.array(full), **arrays)
                try:
                    atomic_write(path, buf.getvalue())
                except OSError:
                    pass  # a read-only run folder: serve from memory, recompute next time
        self._memo[full] = arrays
        return arrays

    @property
    def _tag(self) -> str:
        return f"-limit{self.limit}-seed{self.seed}" if self.limit is not None else ""

    def _encoded(self, split: str, what: str, encode) -> Any:
        from .explore import encode_all

        def compute():
            images = self.split(split)[0]
            # a bar only where encoding takes a while (MNIST-sized splits), not for every small set
            bar = self.progress and len(images) >= 5000
            return {"a": encode_all(self.model, images, self.batch_size, progress=bar, encode=encode)}

        return self.cached(f"{what}-{split}{self._tag}", {"what": what, "split": split, "images": self._images_key(split)},
                           compute)["a"]

    def codes(self, split: str, pre: bool = False):
        """Codes of a whole split, (N, *code_shape) float32, encoded once. ``pre``: the code before quantisation
        (``encode_pre``), which a continuous family's contract makes its code itself."""
        if pre and self.discrete:
            return self._encoded(split, "pre", self.model.encode_pre)
        return self._encoded(split, "codes", None)

    def flat(self, split: str, pre: bool = False):
        """:meth:`codes` flattened to (N, code_size): what projections, densities and statistics work on."""
        codes = self.codes(split, pre)
        return codes.reshape(len(codes), self.code_size)

    def sample(self, split: str, n: int | None):
        """(sorted indices, flattened codes (len, code_size)) of a seeded subsample of ``n`` images of the split.
        Only those images are encoded, unless the whole split's codes are already at hand: a figure of 1,000
        points of the 10,000 MNIST test images encodes 1,000."""
        import torch

        images = self.split(split)[0]
        idx = self.subset(n, len(images))
        if len(idx) == len(images) or self._has_codes(split):
            return idx, self.flat(split)[idx]
        from .explore import encode_all

        def compute():
            return {"a": encode_all(self.model, images[torch.from_numpy(idx)], self.batch_size)}

        key = {"what": "codes-sample", "split": split, "n": len(idx), "seed": self.seed, "images": self._images_key(split)}
        codes = self.cached(f"codes-{split}-n{len(idx)}-seed{self.seed}{self._tag}", key, compute)["a"]
        return idx, codes.reshape(len(codes), self.code_size)

    def _has_codes(self, split: str) -> bool:
        """Whether the whole split's codes are in memory already (then a subsample costs nothing)."""
        return any(f'"split": "{split}"' in k and '"what": "codes"' in k for k in self._memo)

    def indices(self, split: str):
        """Codebook indices of a whole split, (N, h, w) int64 (discrete models)."""
        self.require("discrete")
        return self._encoded(split, "indices", self.model.encode_indices)

    def encode_pre(self, images):
        """Flattened ``encode_pre`` codes (N, code_size) of a few images (uint8 or floats in [0, 1])."""
        from .explore import encode_all

        z = encode_all(self.model, images, self.batch_size, encode=self.model.encode_pre)
        return z.reshape(len(z), self.code_size)

    def recon_errors(self, split: str):
        """Per-image MSE of each image's reconstruction, (N,) float32."""
        import numpy as np

        from .explore import as_unit, decode_all

        def compute():
            images, codes = self.split(split)[0], self.codes(split)
            errors = np.empty(len(images), np.float32)
            for s in range(0, len(images), self.batch_size):
                rec = decode_all(self.model, codes[s : s + self.batch_size])  # (B, C, H, W)
                x = as_unit(images[s : s + self.batch_size]).numpy()
                errors[s : s + len(rec)] = ((rec - x) ** 2).reshape(len(rec), -1).mean(1)
            return {"errors": errors}

        return self.cached(f"errors-{split}{self._tag}", {"what": "errors", "split": split, "images": self._images_key(split)},
                           compute)["errors"]

    def reconstructions(self, split: str):
        """Reconstructions of a whole split from its cached codes, (N, C, H, W) float32."""
        import numpy as np

        from .explore import decode_all

        codes = self.codes(split)
        return np.concatenate([decode_all(self.model, codes[i : i + self.batch_size])
                               for i in range(0, len(codes), self.batch_size)]) if len(codes) else \
            np.empty((0, *self.model.input_shape), np.float32)

    def projection(self, split: str, method: str = "pca", n: int | None = None):
        """(indices into the split, (len, 2) points): a seeded subsample of ``n`` flattened codes projected to
        2-D (a 2-D code is its own map for pca/none). Cached per method, subsample and codes."""
        import numpy as np

        from .explore import project

        idx, sub = self.sample(split, n)
        if sub.shape[1] <= 2 and method in ("pca", "none"):
            return idx, project(sub, method if sub.shape[1] == 2 else "pca", self.seed)

        def compute():
            if method in ("tsne", "umap"):
                print(f"projecting {len(sub)} codes with {method} (cached in {self.run.path / 'cache'})", file=sys.stderr)
            return {"points": project(sub, method, self.seed)}

        key = {"what": "projection", "method": method, "seed": self.seed,
               "codes": hashlib.sha256(np.ascontiguousarray(sub).tobytes()).hexdigest()}
        return idx, self.cached(f"projection-{method}-{split}-{len(idx)}-{self.seed}{self._tag}", key, compute)["points"]

    def prior_samples(self, n: int, seed: int | None = None, label: int | None = None):
        """n new images (n, C, H, W) from the model's prior (``model.sample``), seeded; ``label``: all of that
        class (a conditional model). NoPriorError with the model's reason (for an untrained second-stage prior:
        how to train it) when it has none."""
        import torch

        reason = self.model.skip_reason("prior")
        if reason:
            raise NoPriorError(reason)
        device = next(self.model.parameters()).device
        g = torch.Generator(device=device).manual_seed(self.seed if seed is None else seed)
        given = {} if label is None else {"labels": label}  # the conditional contract's keyword
        with torch.no_grad():
            return self.model.eval().sample(n, generator=g, **given).float().cpu().numpy()

    # ---- what applies -------------------------------------------------------------------------------------
    def require(self, feature: str) -> None:
        reason = self.model.skip_reason(feature)
        if reason:
            raise ConfigError(reason)

    def skip_reason(self, kind: str) -> str | None:
        """None when figure ``kind`` applies to this run, else the one-line reason it is left out."""
        from .data.base import DATA_FEATURES

        spec = _kind(kind)
        for feature in spec.needs:  # the data's features first: "a table's rows are not pictures" says it all
            reason = self.data.skip_reason(feature) if feature in DATA_FEATURES else self.model.skip_reason(feature)
            if reason:
                return reason
        if kind == "slice3d" and self.code_size < 3:
            return f"needs at least 3 code dimensions; {self.model.name} has {self.code_size}"
        if kind == "curves":
            try:
                rows = self.run.metrics()
            except RunError as exc:
                return str(exc)
            return None if rows else f"{self.run.path}/metrics.csv is missing or empty: the run has no finished epoch"
        if kind == "sample" and self.discrete:
            # a model with a prior samples it; a Gaussian fitted to the codes serves continuous codes only
            return self.model.skip_reason("prior")
        return None

    def figure(self, kind: str, options: dict | None = None):
        """(matplotlib Figure, JSON-able numbers) of one KIND with the given options (named as the CLI flags,
        without --). A KIND the model cannot do is a ConfigError with the reason."""
        spec = _kind(kind)
        options = dict(options or {})
        extra = sorted(set(options) - set(spec.options))
        if extra:
            raise ConfigError(f"--{extra[0]} does not apply to `plot {kind}`; it takes "
                              f"{', '.join('--' + k for k in spec.options) or 'no options of its own'}")
        reason = self.skip_reason(kind)
        if reason:
            raise ConfigError(f"plot {kind} does not apply to this run: {reason}")
        _check_picture(kind, options, self.code_size)  # before any encoding: sizes come from the options alone
        return BUILDERS[kind](self, options)

    def report_figures(self, quick: bool = False) -> tuple[dict[str, bytes], dict[str, str]]:
        """PNG bytes of every figure that applies, in report order, and the reason for each one left out.
        ``quick`` subsamples (2,000 codes) and projects wide codes with PCA instead of t-SNE."""
        from tqdm.auto import tqdm

        from . import plots

        wide = self.code_size > 2
        per_kind: dict[str, dict] = {"latent": {"method": "pca" if quick or not wide else "tsne"}}
        if quick:
            for k in ("latent", "density", "defects", "slice3d"):
                per_kind.setdefault(k, {})["n"] = PROJECTION_SUBSAMPLE
        if wide and not quick:
            per_kind["latent"]["n"] = PROJECTION_SUBSAMPLE
        figures, skipped = {}, {}
        for kind in tqdm(list(KINDS), desc="report", unit="figure", file=sys.stderr, disable=not self.progress, leave=False):
            reason = self.skip_reason(kind)
            if reason:
                skipped[kind] = reason
                continue
            fig, _ = self.figure(kind, per_kind.get(kind))
            figures[kind] = plots.to_png(fig)
        return figures, skipped


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ConfigError(f"unknown plot kind {kind!r}; use one of {', '.join(KINDS)}")
    return KINDS[kind]


def _check_picture(kind: str, o: dict, code_size: int) -> None:
    """Refuse a --mode the kind does not have and options that would draw more images than one picture holds
    (aekit.limits), from the options alone, before anything is encoded or cached; the kinds that draw split
    images (reconstruct, denoise) are checked in :func:`_pick`."""
    from .limits import MAX_TITLED_IMAGES, require_picture

    if kind in MODES and o.get("mode", MODES[kind][0]) not in MODES[kind]:
        raise ConfigError(f"{kind} --mode is {' or '.join(MODES[kind])}, got {o['mode']!r}")
    if kind == "traverse" and o.get("mode") == "max" and "steps" in o:
        raise ConfigError("--steps does not apply to traverse --mode max")
    if kind == "sample":  # a conditional model's per-class grid is checked in _sample (it needs the class count)
        require_picture(o.get("n") or 64, "plot sample --n", "use a smaller --n")
    elif kind == "manifold" and "range" in o:
        lo, hi = o["range"]
        per_axis = max((hi - lo) / o.get("step", 1.0) + 1, 0.0) if o.get("step", 1.0) > 0 else 0.0
        require_picture(per_axis * per_axis, f"a manifold grid over {lo}..{hi} in steps of {o.get('step', 1.0)}",
                        "use a larger --step or a smaller --range")
    elif kind == "manifold":
        require_picture((o.get("n") or 15) ** 2, "a manifold grid of --n points per axis", "use a smaller --n")
    elif kind == "interpolate":
        require_picture(o.get("steps", 10) + 2, "plot interpolate --steps", "use fewer --steps", MAX_TITLED_IMAGES)
    elif kind == "learned-inputs" and o.get("n", 64) is not None:  # --n all: checked once the count is known
        require_picture(o.get("n", 64), "plot learned-inputs --n", "use a smaller --n")
    elif kind == "traverse" and o.get("mode", "range") == "range":
        require_picture(o.get("steps", 9) * code_size, f"a traversal of {code_size} code dimensions",
                        "use fewer --steps")


# ---- one builder per KIND: (session, options) -> (Figure, numbers) -------------------------------------------

def _pick(s: RunSession, o: dict, default_n: int | None):
    """(split, positions in ``s.split(split)``, the images' own indices): --indices (the split's own numbers),
    else n images spread over the classes (the same pictures every time)."""
    import numpy as np

    from .limits import MAX_TITLED_IMAGES, require_picture

    split = o.get("split", "test")
    total = len(s.split(split)[0])
    if "indices" in o:
        idx = list(o["indices"])
        if not idx:
            raise ConfigError("--indices is empty; give image numbers like 0,5,9")
        require_picture(2 * len(idx), "--indices", "give fewer image numbers", MAX_TITLED_IMAGES)
        pos = np.asarray([s.position(split, i, f"--indices {i}") for i in idx], dtype=np.int64)
        return split, pos, np.asarray(idx)
    n = o.get("n", default_n)
    pos = spread(s.split(split)[1], total if n is None else min(n, total))
    require_picture(2 * len(pos), f"{len(pos)} images of split {split!r} with their outputs", "use a smaller --n or --indices",
                    MAX_TITLED_IMAGES)
    return split, pos, s.ids(split)[pos]


def spread(labels, n: int):
    """The first ``n`` images of a split taken round-robin over its classes (the first image of each class, then
    the second of each, ...), sorted: on class-ordered data ten default images are not ten cats. Unlabelled
    images: the first n. Indices are the split's own, as everywhere (plot, report, explorer)."""
    import numpy as np

    labels = np.asarray(labels)
    if n >= len(labels) or (labels < 0).all():
        return np.arange(min(n, len(labels)))
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rank = np.arange(len(labels)) - np.searchsorted(sorted_labels, sorted_labels)  # position within its class
    pick = order[np.lexsort((sorted_labels, rank))][:n]  # rank-major, class-minor
    return np.sort(pick)


def _index(s: RunSession, o: dict, key: str, default: int, split: str) -> tuple[int, int]:
    """(position in ``s.split(split)``, the split's own index) of option ``key`` (an index of the split), or of
    the ``default``-th image of the view."""
    if key not in o:
        if default >= len(s.ids(split)):
            raise ConfigError(f"split {split!r} has only {len(s.ids(split))} images; give --{key}")
        return default, int(s.ids(split)[default])
    i = o[key]
    return s.position(split, i, f"--{key} {i}" if key != "i" else f"image {i}"), i


def _check_dims(dims, d: int, k: int) -> tuple[int, ...]:
    from .explore.ops import _check_dims as check

    if d < k:
        raise ConfigError(f"this needs {k} code dimensions; the run's code has {d}")
    return check(dims, d, k)


def _reconstruct(s: RunSession, o: dict):
    from . import plots
    from .explore import as_unit, decode_all, encode_all

    split, idx, ids = _pick(s, o, 10)
    x = s.split(split)[0][idx]
    orig = as_unit(x).numpy()
    z = encode_all(s.model, x, s.batch_size)
    rec = decode_all(s.model, z)
    mse = ((rec - orig) ** 2).reshape(len(idx), -1).mean(1)
    spatial = len(s.model.code_shape) == 3 and not s.discrete  # a discrete grid is shown by `plot codes`/`swap`
    fig = plots.reconstruct(orig, rec, mse, ids.tolist(), codes=z if spatial else None)
    return fig, {"split": split, "indices": ids.tolist(), "mse": mse.tolist()}


def _latent(s: RunSession, o: dict):
    from . import plots

    from .explore.latent import require_method

    split = o.get("split", "test")
    method = o.get("method", "pca")
    require_method(method)  # before anything is encoded
    d = s.code_size
    if "dims" in o:  # check options before the (slow) encoding
        if "method" in o:
            raise ConfigError("give either --dims (raw dimensions) or --method (a projection), not both")
        i, j = _check_dims(o["dims"], d, 2)
    reason = s.model.skip_reason("plane")
    if method == "none" and reason:
        raise ConfigError(f"--method none plots raw codes: {reason}")
    labels = s.split(split)[1]
    if "dims" in o:
        idx, codes = s.sample(split, o.get("n"))
        pts, xl, yl, how = codes[:, [i, j]], f"z[{i}]", f"z[{j}]", f"dims {i},{j}"
    else:
        slow = method in ("tsne", "umap") and d > 2
        idx, pts = s.projection(split, method, o.get("n", PROJECTION_SUBSAMPLE if slow else None))
        how = "raw codes" if d <= 2 else method
        xl, yl = ("z[0]", "z[1]") if d <= 2 else (f"{method} 1", f"{method} 2")
    fig = plots.latent_scatter(pts, labels[idx], s.data.class_names, xl, yl,
                               f"{s.model.name} codes of {len(idx)} {split} images ({how})")
    return fig, {"split": split, "indices": idx.tolist(), "points": pts.tolist(), "labels": labels[idx].tolist()}


def _density(s: RunSession, o: dict):
    from . import plots
    from .explore import latent_stats, pooled_stats

    split = o.get("split", "test")
    _, codes = s.sample(split, o.get("n"))
    stats, pooled = latent_stats(codes), pooled_stats(codes)
    return plots.density(codes, stats, pooled), {"split": split, "n": len(codes), **stats, "pooled": pooled}


def _slice3d(s: RunSession, o: dict):
    from . import plots

    dims = _check_dims(o.get("dims", (0, 1, 2)), s.code_size, 3)
    split = o.get("split", "test")
    labels = s.split(split)[1]
    idx, codes = s.sample(split, o.get("n", PROJECTION_SUBSAMPLE))
    pts = codes[:, list(dims)]
    return plots.slice3d(pts, labels[idx], s.data.class_names, dims), {"dims": list(dims), "points": pts.tolist(),
                                                                       "labels": labels[idx].tolist()}


def _sample(s: RunSession, o: dict):
    from . import plots
    from .explore import decode_all, sample_codes

    if s.model.skip_reason("conditional") is None and s.model.has_prior:
        return _class_samples(s, o)
    if "label" in o:  # refused before anything is encoded or drawn
        why = s.model.skip_reason("conditional") or s.model.skip_reason("prior")
        raise ConfigError(f"--label draws one class of a conditional model: {why}")
    n = o.get("n", 64) or 64
    if s.model.has_prior:
        return plots.samples({"samples from the prior": s.prior_samples(n)}), {"n": n, "seed": s.seed, "sources": ["prior"]}
    # no prior: N(0, I) shows what a prior-less code space gives; a Gaussian fitted to the codes does better
    _, train = s.sample("train", 5000)  # a Gaussian fitted to 5,000 codes: the whole train split adds nothing
    panels, numbers = {}, {"n": n, "seed": s.seed, "sources": ["normal", "fitted"], "note": s.model.skip_reason("prior")}
    for src, title in (("normal", "N(0, I) (no prior!)"), ("fitted", "Gaussian fitted to train codes")):
        z = sample_codes(s.model, n, src, train_codes=train, seed=s.seed)
        panels[title] = decode_all(s.model, z)
        numbers[src] = z.tolist()
    return plots.samples(panels), numbers


def _class_samples(s: RunSession, o: dict):
    """A conditional model's samples: --label CLASS (a name or number of the data's classes), n of that class;
    else a grid with one row per class, --n per row (default 8). Every row is drawn with the same seed, so a
    model that draws its code before it reads the label (the cvae) decodes the same codes down each column:
    a column is one style, a row one class (Sohn et al. 2015, fig. 4)."""
    import numpy as np

    from . import plots
    from .limits import require_picture

    names = list(s.data.class_names)
    if "label" in o:  # the label first: a bad one is refused before anything is drawn
        try:
            k = _class_ids(s, str(o["label"]), count=1)[0]
        except ConfigError as exc:
            raise ConfigError(f"--label: {exc}") from None
        n = o.get("n", 64) or 64
        images = s.prior_samples(n, label=k)
        return plots.samples({f"samples of class {names[k]}": images}), {"n": n, "seed": s.seed, "sources": ["prior"],
                                                                          "label": k, "class_name": names[k]}
    per = o.get("n") or 8
    require_picture(per * len(names), f"a grid of --n {per} samples for each of {len(names)} classes", "use a smaller --n")
    if not names:
        raise ConfigError(f"{s.data.name} has no classes to draw a per-class grid of")
    grid = np.stack([s.prior_samples(per, label=k) for k in range(len(names))])  # (K, n, C, H, W)
    fig = plots.class_samples(grid, names, f"{s.model.name}: {per} samples of each class (seed {s.seed} in every row)")
    return fig, {"n": per, "seed": s.seed, "sources": ["prior"], "labels": list(range(len(names))), "class_names": names}


def _manifold(s: RunSession, o: dict):
    import numpy as np

    from . import plots
    from .explore import axis_values, manifold, prior_quantiles

    dims = _check_dims(o.get("dims", (0, 1)), s.code_size, 2)
    if "step" in o and "range" not in o:  # option checks first: nothing is encoded (or cached) for a refusal
        raise ConfigError("--step needs --range LO HI")
    if "range" in o and "n" in o:
        raise ConfigError("give either --range LO HI [--step S] or --n (points per axis), not both")
    if "range" in o:
        xs = ys = axis_values(o["range"][0], o["range"][1], o.get("step", 1.0))  # size checked in _check_picture
    _, codes = s.sample(o.get("split", "test"), PROJECTION_SUBSAMPLE)  # the held code values and the codes' extent
    if "range" not in o:
        n = o.get("n", 15) or 15
        if s.model.has_prior:  # a flat code's prior is N(0, I): quantiles of N(0, 1) give each cell equal mass
            xs = ys = prior_quantiles(n)
        else:  # no prior: cover where the codes actually are
            lo, hi = np.percentile(codes[:, list(dims)], [1, 99], axis=0)
            xs, ys = np.linspace(lo[0], hi[0], n, dtype=np.float32), np.linspace(lo[1], hi[1], n, dtype=np.float32)
    base = codes.mean(0)
    _, images = manifold(s.model, base, dims, xs, ys)
    return plots.manifold(images, xs, ys, dims), {"dims": list(dims), "xs": np.asarray(xs).tolist(),
                                                   "ys": np.asarray(ys).tolist(), "shape": list(images.shape[:2]),
                                                   "base": base.tolist()}


def _interpolate(s: RunSession, o: dict):
    from . import plots
    from .explore import as_unit, interpolate

    split = o.get("split", "test")
    images = s.split(split)[0]
    (a, a_id), (b, b_id) = (_index(s, o, k, d, split) for k, d in (("a", 0), ("b", 1)))
    mode = o.get("mode", "linear")
    if mode not in MODES["interpolate"]:
        raise ConfigError(f"interpolate --mode is linear or slerp, got {mode!r}")
    x = images[[a, b]]
    z = s.encode_pre(x)  # (2, code_size): the continuous space, also for a discrete model
    codes, imgs = interpolate(s.model, z[0], z[1], o.get("steps", 10), mode)
    orig = as_unit(x).numpy()
    return plots.interpolation(imgs, orig[0], orig[1], mode), {"a": a_id, "b": b_id, "mode": mode, "codes": codes.tolist()}


def _class_ids(s: RunSession, text: str, count: int = 3) -> list[int]:
    names = [t.strip() for t in text.split(",") if t.strip()] if count > 1 else [text.strip()]
    if len(names) != count:
        raise ConfigError(f"--classes needs three classes A,B,C (for A - B + C), got {text!r}")
    lookup = {n: i for i, n in enumerate(s.data.class_names)}
    out = []
    for n in names:
        if n in lookup:
            out.append(lookup[n])
        elif n.isdecimal() and int(n) < max(len(s.data.class_names), 1):  # isdigit() passes "²", which int() refuses
            out.append(int(n))
        else:
            known = ", ".join(s.data.class_names) or "none (unlabelled data)"
            raise ConfigError(f"class {n!r} is not in {s.data.name}; known classes: {known}")
    return out


def _arithmetic(s: RunSession, o: dict):
    """A signed combination of codes, decoded: --expr (images and class means, any weights), --classes A,B,C
    (A - B + C on class means), or --a/--b[/--c] images (a - b, + c only when --c is given; with no option at
    all, the example 0 - 1 + 2)."""
    import numpy as np

    from . import plots
    from .explore import as_unit, class_means, combine, decode_all, parse_expr

    split = o.get("split", "test")
    given = [k for k in ("expr", "classes", "a") if k in o] + (["a"] if "a" not in o and ("b" in o or "c" in o) else [])
    if len(given) > 1:
        raise ConfigError("give one of --expr, --classes or --a/--b/--c")
    if "expr" in o:
        terms = parse_expr(o["expr"])
    elif "classes" in o:
        terms = list(zip((1.0, -1.0, 1.0), (f"class:{k}" for k in _class_ids(s, o["classes"]))))
    elif given:
        if "a" not in o or "b" not in o:
            raise ConfigError("image arithmetic needs --a and --b (a - b), and --c to add a third (a - b + c)")
        terms = [(1.0, str(o["a"])), (-1.0, str(o["b"]))] + ([(1.0, str(o["c"]))] if "c" in o else [])
    else:  # the report's example: the first three images of the view (0, 1, 2 unless a subset is shown)
        first = s.ids(o.get("split", "test"))[:3]
        if len(first) < 3:
            raise ConfigError("the example a - b + c needs 3 images; give --expr or --classes")
        terms = [(1.0, str(first[0])), (-1.0, str(first[1])), (1.0, str(first[2]))]
    from .limits import MAX_TITLED_IMAGES, require_picture

    require_picture(2 * len(terms) + 1, "--expr", "use fewer terms", MAX_TITLED_IMAGES)
    images, labels = s.split(split)
    codes, inputs, names = [], [], []
    for w, term in terms:
        if term.startswith("class:"):
            k = _class_ids(s, term[6:], count=1)[0]
            codes.append(class_means(s.flat(split, pre=True), labels, [k])[0])
            first = int(np.flatnonzero(labels == k)[0])  # the first image of the class stands in for its mean
            inputs.append(as_unit(images[[first]]).numpy()[0])
            names.append(f"mean of {s.data.class_names[k] if k < len(s.data.class_names) else k}")
        else:
            i, i_id = _index(s, {"i": int(term)}, "i", 0, split)
            codes.append(s.encode_pre(images[[i]])[0])
            inputs.append(as_unit(images[[i]]).numpy()[0])
            names.append(f"#{i_id}")
    weights = [w for w, _ in terms]
    z, result = combine(s.model, codes, weights)
    text = " ".join(f"{'-' if w < 0 else '+'} {'' if abs(w) == 1 else f'{abs(w):g}*'}{n}" for w, n in zip(weights, names))
    text = text[2:] if text.startswith("+ ") else text
    fig = plots.arithmetic(np.stack(inputs), decode_all(s.model, np.stack(codes)), result, names, weights)
    numbers = {"terms": [{"weight": w, "term": t} for w, t in terms], "expression": text,
               "codes": np.stack(codes).tolist(), "z": z.tolist()}
    return fig, numbers


def _traverse(s: RunSession, o: dict):
    from . import plots
    from .explore import decode_all, latent_stats, max_codes, traverse

    split = o.get("split", "test")
    stats = latent_stats(s.flat(split))
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
    d = s.code_size
    values = codes[range(d), :, range(d)]  # (D, S): the swept value of each row
    return plots.traverse(imgs, values), {"mode": mode, "values": values.tolist(), **stats}


def _denoise(s: RunSession, o: dict):
    from . import plots
    from .data import parse_noise
    from .explore import denoise

    split, idx, ids = _pick(s, o, 10)
    noise = parse_noise(o.get("noise", "gaussian:0.5"))
    r = denoise(s.model, s.split(split)[0][idx], noise, seed=s.seed)
    return plots.denoise(r, str(noise)), {"noise": str(noise), "indices": ids.tolist(),
                                          "psnr_noisy": r["psnr_noisy"].tolist(), "psnr_output": r["psnr_output"].tolist(),
                                          "mean_psnr_noisy": float(r["psnr_noisy"].mean()),
                                          "mean_psnr_output": float(r["psnr_output"].mean())}


def _features(s: RunSession, o: dict):
    """A table's reconstruction error per feature over the split: the mean squared error in the model's scaled
    space (comparable across features) and the root mean squared error in each feature's own units (the run's
    scaler inverted), where images would show pictures."""
    from . import plots
    from .explore import as_unit

    split = o.get("split", "test")
    x = as_unit(s.split(split)[0]).numpy()  # (N, 1, 1, D) scaled rows
    x = x.reshape(len(x), -1)  # (N, D)
    rec = s.reconstructions(split).reshape(len(x), -1)  # (N, D)
    mse = ((rec - x) ** 2).mean(0)  # (D,)
    scaler, names = s.data.scaler, list(s.data.features)
    rmse = ((scaler.inverse(rec) - scaler.inverse(x)) ** 2).mean(0) ** 0.5  # (D,) raw units
    return plots.feature_errors(names, mse, rmse, split), {"split": split, "features": names, "mse": mse.tolist(),
                                                           "rmse_raw": rmse.tolist()}


def _curves(s: RunSession, o: dict):
    from . import plots

    rows = s.run.metrics()
    return plots.curves(rows), {"epochs": rows}


def _defects(s: RunSession, o: dict):
    """The three defects of the article, measured on the split's codes; gaps for the sampler a user would draw
    from (the prior, or without one the Gaussian fitted to 5,000 train codes that `plot sample` shows), whose
    draws are overlaid in red. Wide codes are drawn in the PCA plane of the codes, the draws projected with it."""
    import numpy as np

    from . import plots
    from .explore import defects, sampler_draws

    split = o.get("split", "test")
    labels = s.split(split)[1]
    idx, codes = s.sample(split, o.get("n"))
    _, train = s.sample("train", 5000)  # the same 5,000 codes `plot sample` fits its Gaussian to
    name, draws = sampler_draws(s.model, 2000, train, seed=s.seed)
    result = defects(codes, labels[idx], train, draws, name, seed=s.seed)
    pts, shown = codes, draws
    if codes.shape[1] > 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=s.seed).fit(codes)
        pts, shown = pca.transform(codes), pca.transform(draws)  # (N, 2), (S, 2) in one plane
    elif codes.shape[1] == 1:
        pts, shown = (np.concatenate([a, np.zeros_like(a)], 1) for a in (codes, draws))
    return plots.defects(result, pts, labels[idx], s.data.class_names, shown), {"split": split, "n": len(idx), **result}


def _codes(s: RunSession, o: dict):
    from . import plots
    from .explore import code_usage

    split = o.get("split", "test")
    usage = code_usage(s.indices(split), s.model.codebook_size)
    title = f"{s.model.name}: codebook use over {len(s.split(split)[0])} {split} images"
    return plots.code_usage(usage, title), {"split": split, "codebook_size": int(s.model.codebook_size), **usage}


def _swap(s: RunSession, o: dict):
    import numpy as np

    from . import plots
    from .explore import as_unit, code_usage, encode_all, swap_codes

    split = o.get("split", "test")
    images = s.split(split)[0]
    a, a_id = _index(s, o, "a", 0, split)
    grid = encode_all(s.model, images[a : a + 1], encode=s.model.encode_indices)[0]  # (h, w)
    h, w = grid.shape
    cell = tuple(o.get("cell", (h // 2, w // 2)))
    if len(cell) != 2:
        raise ConfigError(f"--cell takes a row and a column like 3,4, got {','.join(map(str, cell)) or 'nothing'}")
    if not (0 <= cell[0] < h and 0 <= cell[1] < w):
        raise ConfigError(f"--cell {cell[0]},{cell[1]} is outside the {h} x {w} code grid")
    k = int(s.model.codebook_size)
    if "entries" in o:
        entries = list(o["entries"])
        bad = [e for e in entries if not 0 <= e < k]
        if bad or not entries:
            raise ConfigError(f"--entries must be codebook entries 0..{k - 1}, got {','.join(map(str, entries)) or 'none'}")
    else:  # the most used entries of the split (unused ones decode to whatever their random init gives)
        counts = np.asarray(code_usage(s.indices(split), k)["counts"])
        entries = [int(e) for e in np.argsort(-counts, kind="stable") if e != grid[cell]][:7]
    r = swap_codes(s.model, grid, cell, entries)
    fig = plots.swap(as_unit(images[a]).numpy(), r, cell, int(grid[cell]), entries)
    return fig, {"split": split, "a": a_id, "cell": list(cell), "grid": grid.tolist(), "from": int(grid[cell]),
                 "entries": entries, "inside": r["inside"].tolist(), "outside": r["outside"].tolist()}


def _learned_inputs(s: RunSession, o: dict):
    """The first --n (default 64; all) of the images the model learned in input space, in the model's order."""
    import torch

    from . import plots
    from .limits import require_picture

    with torch.no_grad():
        images = s.model.learned_inputs().float().cpu().numpy()  # (K, C, H, W) in [0, 1]
    k = len(images)
    n = k if o.get("n", 64) is None else min(o.get("n", 64), k)
    require_picture(n, f"all {k} learned inputs", "give --n")
    fig = plots.image_grid(images[:n], f"{s.model.name}: {n} of its {k} learned inputs")
    return fig, {"count": k, "shown": n, "shape": list(images.shape[1:])}


BUILDERS: dict[str, Callable] = {
    "reconstruct": _reconstruct, "latent": _latent, "density": _density, "slice3d": _slice3d, "sample": _sample,
    "manifold": _manifold, "interpolate": _interpolate, "arithmetic": _arithmetic, "traverse": _traverse,
    "denoise": _denoise, "features": _features, "curves": _curves, "defects": _defects, "codes": _codes, "swap": _swap,
    "learned-inputs": _learned_inputs,
}
