"""The latent explorer's HTTP API: a FastAPI app over one run, through :class:`aekit.session.RunSession`.

The session loads the run, encodes the test set, projects it to the 2-D map and caches all of it in
``RUN/cache/`` (keyed by the weights' sha256), exactly as `aekit plot` does; this file only validates
requests, places new codes on the map and speaks JSON/PNG. What the page offers follows the model's declared
capabilities (``model.skip_reason``): sliders for a flat code, a code-grid editor for a discrete one, random
samples from a prior (or the reason there are none), a label switch and the code decoded under every class for a
conditional one; morphing and arithmetic run in ``encode_pre`` space.

Model calls and image coding run in worker threads, at most ``compute_slots`` at once (:func:`create_app`), so
the event loop keeps answering the page, ``/api/info`` and static files while they run; a request that finds
every slot taken waits ``busy_wait`` seconds at most, then gets 503 instead of queueing without bound.
"""


import json
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import AekitError

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # an upload larger than this is refused (413)
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # multipart headers; any request body above this is refused
MAX_PIXELS = 4096 * 4096  # decompression-bomb guard, checked from the header before any pixel is decoded
MAX_ABS_Z = 1e3
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF")
MAX_POINTS = 5000  # test images on the map (a seeded subset of larger test sets)
MAX_RANGE_POINTS = 2000  # training codes that set the slider ranges
COMPUTE_SLOTS = 2  # model calls at once: each already uses torch's intra-op threads, more would only contend
BUSY_WAIT_S = 5.0  # how long a request waits for a free slot before it is answered 503
FEATURES = ("flat", "plane", "prior", "discrete", "conditional")  # the model features the page asks about


class RequestError(Exception):
    """A bad request: answered with ``status`` and a one-line ``{"detail": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------- state


@dataclass
class Explorer:
    """What the endpoints read: the session and the test-set arrays it computed (read-only after start)."""

    session: Any  # aekit.session.RunSession
    images: np.ndarray  # (N, C, H, W) uint8 test images on the map
    ids: np.ndarray  # (N,) sorted: each one's index in the test split (the numbers `aekit plot` and the report use)
    labels: np.ndarray  # (N,) int64
    codes: np.ndarray  # (N, code_size) float32, flattened
    xy: np.ndarray  # (N, 2) float32 map positions
    errors: np.ndarray  # (N,) per-image MSE of the reconstruction
    lo: np.ndarray  # (code_size,) slider ranges
    hi: np.ndarray
    projection: str  # "identity" (a 2-D plane code), "pca" or "tsne"
    affine: np.ndarray | None  # (code_size + 1, 2) codes -> map, exact for identity/PCA; None for t-SNE
    startup_s: float = 0.0
    # RunSession's caches are plain dicts: the one lazy session read (pre_codes) is computed under this lock
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model(self):
        return self.session.model

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.model.input_shape)

    @property
    def class_names(self) -> list[str]:
        return [str(n) for n in self.session.run.config["data"].get("class_names") or []]

    @cached_property
    def pre_codes(self) -> np.ndarray:
        """(N, code_size) codes before quantisation: the space to morph and do arithmetic in."""
        with self.lock:
            return self.session.flat("test", pre=True)

    @cached_property
    def class_means(self) -> dict[str, np.ndarray]:
        out = {}
        for i, name in enumerate(self.class_names):
            mask = self.labels == i
            if mask.any():
                out[name] = self.pre_codes[mask].mean(0)
        return out

    # -- model calls (the contract only) ---------------------------------------------------------
    def decode(self, z: np.ndarray) -> np.ndarray:
        """(B, code_size) codes -> (B, C, H, W) float images in [0, 1]."""
        from ..explore import decode_all

        return decode_all(self.model, z)

    def decode_as(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(B, code_size) codes decoded under class labels (B,) (a conditional model's ``decode(z, y)``)."""
        import torch

        from ..explore import as_codes

        codes = as_codes(self.model, z).to(next(self.model.parameters()).device)  # (B, *code_shape)
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=codes.device)  # (B,)
        return self.model.eval().decode(codes, y).float().cpu().numpy()  # (B, C, H, W)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(B, C, H, W) uint8 images, or floats in [0, 1] -> (B, code_size) codes."""
        from ..explore import encode_all

        return encode_all(self.model, x).reshape(len(x), self.model.code_size)

    def indices(self, x: np.ndarray) -> np.ndarray:
        """(B, C, H, W) uint8 or float images -> (B, h, w) codebook indices (discrete models)."""
        from ..explore import encode_all

        return encode_all(self.model, x, encode=self.model.encode_indices)

    def decode_indices(self, idx: np.ndarray) -> np.ndarray:
        from ..explore import decode_indices_all

        return decode_indices_all(self.model, idx[None])[0]

    def place(self, z: np.ndarray) -> np.ndarray:
        """Map position of a new code: the projection's affine map, or the mean of its 5 nearest test codes."""
        if self.affine is not None:
            return np.append(z, 1.0) @ self.affine
        near = np.argsort(((self.codes - z) ** 2).sum(1))[:5]
        return self.xy[near].mean(0)


def build_explorer(run, projection: str = "pca", max_points: int = MAX_POINTS, use_cache: bool = True) -> Explorer:
    """The session's test-set arrays for the explorer (computed once, then read from ``RUN/cache/``)."""
    from ..errors import ConfigError
    from ..session import RunSession

    if projection not in ("pca", "tsne"):
        raise ConfigError(f"projection must be pca or tsne, got {projection!r}")
    t0 = time.perf_counter()
    s = RunSession(run, limit=max_points, use_cache=use_cache, progress=False)
    model = s.model
    images, labels = s.split("test")
    codes = s.flat("test").astype(np.float32)  # (N, code_size)
    plane = model.skip_reason("plane") is None
    _, xy = s.projection("test", "pca" if plane else projection)
    flat = model.skip_reason("flat") is None
    if flat and model.has_prior:  # ±3σ of a flat code's N(0, I) prior
        lo, hi = np.full(s.code_size, -3.0, np.float32), np.full(s.code_size, 3.0, np.float32)
    else:  # the codes' extent (training codes for the sliders of a flat code), padded by 10%: room to leave the data
        ref = s.flat("train") if flat else codes
        ref = ref[s.subset(MAX_RANGE_POINTS, len(ref))]
        lo, hi = ref.min(0), ref.max(0)
        pad = np.maximum(0.1 * (hi - lo), 1e-3)
        lo, hi = lo - pad, hi + pad
    method = "identity" if plane else projection
    affine = None
    if method != "tsne":  # identity and PCA are affine maps: recover them exactly by least squares
        a = np.hstack([codes, np.ones((len(codes), 1), np.float32)]).astype(np.float64)
        affine = np.linalg.lstsq(a, np.asarray(xy, np.float64), rcond=None)[0]
    ex = Explorer(session=s, images=images.numpy(), ids=np.asarray(s.ids("test")), labels=labels.astype(np.int64), codes=codes,
                  xy=np.asarray(xy, np.float32), errors=s.recon_errors("test"), lo=lo.astype(np.float32),
                  hi=hi.astype(np.float32), projection=method, affine=affine)
    ex.startup_s = time.perf_counter() - t0
    return ex


# ----------------------------------------------------------------------------------------- helpers


def data_url(img: np.ndarray) -> str:
    from ..fileio import data_uri, png_bytes

    return data_uri(png_bytes(img))


def check_code(z: list[float], dim: int, name: str = "z") -> np.ndarray:
    if len(z) != dim:
        raise RequestError(422, f"{name} has {len(z)} values; this model's code has {dim}")
    a = np.asarray(z, dtype=np.float64)
    if not np.isfinite(a).all():
        raise RequestError(422, f"{name} contains NaN or infinity at index {int(np.argmin(np.isfinite(a)))}")
    if np.abs(a).max(initial=0.0) > MAX_ABS_Z:
        raise RequestError(422, f"{name} has a value beyond ±{MAX_ABS_Z:g} (max |z| = {np.abs(a).max():.4g})")
    return a.astype(np.float32)


def read_upload(raw: bytes, shape: tuple[int, int, int], invert: bool = False) -> np.ndarray:
    """Upload bytes -> (1, C, H, W) uint8, converted as the training data was (channels, then size)."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    from ..data.image import convert_channels, resize

    if len(raw) > MAX_UPLOAD_BYTES:
        raise RequestError(413, f"upload is {len(raw)} bytes; the limit is {MAX_UPLOAD_BYTES} (2 MB)")
    if not raw:
        raise RequestError(415, "the upload is empty; send a PNG, JPEG or GIF image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw), formats=list(UPLOAD_FORMATS))  # reads the header only
            if img.width * img.height > MAX_PIXELS:
                raise RequestError(413, f"image is {img.width}x{img.height} pixels; the limit is {MAX_PIXELS} pixels")
            img.seek(0)  # GIF: the first frame
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(413, f"image has too many pixels (limit {MAX_PIXELS})") from None
    except UnidentifiedImageError:
        raise RequestError(415, "unsupported upload: send a PNG, JPEG or GIF image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise RequestError(415, f"could not decode the image ({str(exc)[:120]})") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))  # transparent -> black, the background of MNIST-like data
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    c, h, w = shape
    if img.mode == "L" and c != 3:  # gray already: the RGB round trip gives the same plane (1.7 s at 4096x4096)
        x = np.array(img, dtype=np.uint8)[None, None]  # (1, 1, h, w), a writable copy (torch warns on read-only)
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)[None]  # (1, 3, h, w)
        x = convert_channels(rgb, c if c in (1, 3) else 1)
    x = resize(x, (h, w))
    if invert:
        x = 255 - x
    return np.ascontiguousarray(x)


def sample_note(model) -> str:
    """Why the page cannot draw random samples ("" when it can), naming the registered models that can."""
    reason = model.skip_reason("prior")
    if reason is None:
        return ""
    if model.capabilities.prior:  # declared but not ready: the model's own hint says how to train it
        return reason
    from ..registry import MODELS

    able = [name for name, e in MODELS.items() if e.cls.capabilities.prior]
    return f"{reason}: its codes follow no known distribution. Models with a prior: {', '.join(able) or 'none'}."


# ----------------------------------------------------------------------------------------------- app


def create_app(run, projection: str = "pca", max_points: int = MAX_POINTS, use_cache: bool = True,
               allowed_hosts: list[str] | None = None, compute_slots: int = COMPUTE_SLOTS,
               busy_wait: float = BUSY_WAIT_S):
    """A FastAPI app exploring ``run`` (an ``aekit.train.Run``). ``allowed_hosts`` guards against DNS
    rebinding when set (the CLI sets it to the loopback names). At most ``compute_slots`` requests run model
    calls or decode images at once, in worker threads; one more waits up to ``busy_wait`` seconds, then is
    answered 503."""
    import anyio
    from fastapi import FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field, StrictInt, StrictStr
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ..fileio import png_bytes

    if compute_slots < 1:
        from ..errors import ConfigError

        raise ConfigError(f"compute_slots must be >= 1, got {compute_slots}", param="compute_slots")
    ex = build_explorer(run, projection=projection, max_points=max_points, use_cache=use_cache)
    model = ex.model
    n, size = len(ex.codes), int(model.code_size)
    features = {f: model.skip_reason(f) for f in FEATURES}
    from ..data.base import DATA_FEATURES

    data = ex.session.data
    data_features = {f: data.skip_reason(f) for f in DATA_FEATURES}
    pictures = data_features["images"]  # None, or why the samples are not pictures (a table's rows)
    columns = list(data.features) if data_features["table"] is None else None
    discrete = features["discrete"] is None
    flat = features["flat"] is None
    note = sample_note(model)
    codebook = None
    if discrete:
        from ..explore import code_usage

        usage = code_usage(ex.session.indices("test"), int(model.codebook_size))
        grid = tuple(int(v) for v in ex.session.indices("test").shape[1:])
        order = np.argsort(-np.asarray(usage["counts"]), kind="stable")
        codebook = {"size": int(model.codebook_size), "grid": list(grid), "counts": usage["counts"],
                    "perplexity": usage["perplexity"], "top": [int(k) for k in order[:16]]}

    app = FastAPI(title="aekit explorer", docs_url=None, redoc_url=None)  # the docs pages load a CDN: off
    app.state.explorer = ex
    limiter = anyio.CapacityLimiter(compute_slots)
    app.state.compute_limiter = limiter
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    if allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:3]:
            loc = e.get("loc", ())
            loc = ".".join(str(p) for p in loc[1:]) or (str(loc[0]) if loc else "request")
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(AekitError)
    async def _aekit_error(request: Request, exc: AekitError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def need_pictures(what: str) -> None:
        """Image endpoints on data that are not pictures: 409 with the data's reason, before any work."""
        if pictures:
            raise RequestError(409, f"{what} draws images; {pictures} (ask /api/info, /api/map and /api/test/I)")

    def png(img: np.ndarray) -> Response:
        return Response(png_bytes(img), media_type="image/png", headers={"Cache-Control": "no-store"})

    def in_inference(fn, *args):
        import torch

        with torch.inference_mode():  # thread-local, so set in the worker thread itself; no autograd state kept
            return fn(*args)

    async def compute(fn, *args):
        """``fn(*args)`` in a worker thread once one of the ``compute_slots`` is free: the event loop stays free
        for cheap requests. Every slot still taken after ``busy_wait`` s: 503 with one JSON line (the page shows
        it in its status line; the next slider move asks again)."""
        try:
            limiter.acquire_nowait()
            acquired = True
        except anyio.WouldBlock:  # every slot taken: wait a little (busy_wait 0: not at all)
            acquired = False
            with anyio.move_on_after(busy_wait):
                await limiter.acquire()
                acquired = True
        if not acquired:
            raise RequestError(503, f"busy: {compute_slots} requests are already computing; try again in a moment")
        try:
            # not abandoned on a client disconnect: the slot stays taken until the thread's work is really done
            return await anyio.to_thread.run_sync(in_inference, fn, *args)
        finally:
            limiter.release()

    n_test = len(ex.session.data.split("test")[0])  # the whole split; the map shows the ids of a seeded subset

    def test_index(i: int, status: int = 404, name: str = "test image") -> int:
        """A test image's own index (as in `aekit plot` and the report) -> its row in the explorer's arrays."""
        if not 0 <= i < n_test:
            raise RequestError(status, f"{name} {i} does not exist; test images are 0..{n_test - 1}")
        p = int(np.searchsorted(ex.ids, i))
        if p == n or ex.ids[p] != i:
            raise RequestError(status, f"{name} {i} is not on the map: it shows a seeded {n} of the {n_test} test "
                                       "images (their numbers are /api/map's ids)")
        return p

    def _label(i: int) -> str:
        k = int(ex.labels[i])
        names = ex.class_names
        return names[k] if 0 <= k < len(names) else "?"

    def grid_of(x: np.ndarray) -> list | None:
        """The (h, w) index grid of one image (discrete models), as nested lists."""
        return ex.indices(x[None])[0].tolist() if discrete else None

    Operand = int | str | list[float]

    def resolve(op: Operand, name: str) -> tuple[np.ndarray, np.ndarray, str]:
        """An operand -> (code before quantisation, image to show, caption): a test index, a class name (the
        mean code of its test images) or a code."""
        if isinstance(op, int):
            p = test_index(op, 422, f"{name}: test image")
            return ex.pre_codes[p], ex.images[p], f"#{op} ({_label(p)})"
        if isinstance(op, str):
            if op not in ex.class_means:
                shown = ", ".join(list(ex.class_means)[:12])
                raise RequestError(422, f"{name}: unknown class {op[:40]!r}; classes: {shown}")
            z = ex.class_means[op]
            return z, ex.decode(z[None])[0], f"mean of class {op}"
        z = check_code(op, size, name)
        return z, ex.decode(z[None])[0], "code"

    class CodeIn(BaseModel):
        z: list[float]
        label: StrictInt | StrictStr | None = None  # a conditional model: decode under this class (number or name)

    def class_of(label: int | str) -> int:
        """A class number or name of the data -> its label; 409 for a model that takes no labels, 422 for none
        such (before any work)."""
        if features["conditional"]:
            raise RequestError(409, f"label: {features['conditional']}")
        names = ex.class_names
        if isinstance(label, str) and label in names:
            return names.index(label)
        if isinstance(label, int) and 0 <= label < len(names):
            return label
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise RequestError(422, f"label: no class {str(label)[:40]!r}; classes: 0..{len(names) - 1} ({shown})")

    class IndicesIn(BaseModel):
        indices: list[list[int]]

    class MorphIn(BaseModel):
        a: Operand
        b: Operand
        steps: int = Field(8, ge=2, le=64)
        mode: Literal["linear", "slerp"] = "linear"

    class ArithmeticIn(BaseModel):
        a: Operand
        b: Operand
        c: Operand

    # -- page ------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- JSON / PNG API --------------------------------------------------------------------------
    # /api/info and /api/map never change: rendered once here, so answering them costs the event loop nothing
    info_body = json.dumps({
        "model": model.name, "run": Path(ex.session.run.path).name, "latent_dim": int(model.latent_dim),
        "code_shape": list(model.code_shape), "code_size": size, "features": features,
        "panels": {"sliders": pictures or features["flat"], "grid": pictures or features["discrete"],
                   "sample": pictures or note or None, "styles": pictures or features["conditional"]},
        "data_features": data_features, "columns": columns,
        "codebook": codebook, "shape": list(ex.shape), "class_names": ex.class_names,
        "has_prior": bool(model.has_prior), "sample_note": note,
        "ranges": {"lo": ex.lo.tolist(), "hi": ex.hi.tolist()}, "n_points": n, "n_test": n_test, "projection": ex.projection,
        "map_is_latent": ex.projection == "identity",
        "error": {"median": float(np.median(ex.errors)), "p95": float(np.percentile(ex.errors, 95))},
        "limits": {"max_upload_bytes": MAX_UPLOAD_BYTES, "max_pixels": MAX_PIXELS, "max_abs_z": MAX_ABS_Z,
                   "compute_slots": compute_slots},
        "startup_s": round(ex.startup_s, 3),
    }, allow_nan=False)
    lo, hi = ex.xy.min(0), ex.xy.max(0)
    map_body = json.dumps({"x": np.round(ex.xy[:, 0], 4).tolist(), "y": np.round(ex.xy[:, 1], 4).tolist(),
                           "label": ex.labels.tolist(), "id": ex.ids.tolist(),
                           "bounds": [float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])]}, allow_nan=False)

    @app.get("/api/info")
    async def info():
        return Response(info_body, media_type="application/json")

    @app.get("/api/map")
    async def map_points():
        return Response(map_body, media_type="application/json")

    @app.post("/api/decode")
    async def decode(body: CodeIn):
        need_pictures("/api/decode")
        z = check_code(body.z, size)
        if body.label is not None:
            k = class_of(body.label)
            return await compute(lambda: png(ex.decode_as(z[None], [k])[0]))
        return await compute(lambda: png(ex.decode(z[None])[0]))

    def _styles(z: np.ndarray) -> dict:
        k = len(ex.class_names)
        images = ex.decode_as(np.repeat(z[None], k, 0), np.arange(k))  # (K, C, H, W): one code, every class
        return {"classes": [{"label": i, "name": name, "image": data_url(img)}
                            for i, (name, img) in enumerate(zip(ex.class_names, images))]}

    @app.post("/api/styles")
    async def styles(body: CodeIn):
        """One code decoded under every class of a conditional model: the code keeps the style, the label sets
        the content."""
        need_pictures("/api/styles")
        if features["conditional"]:
            raise RequestError(409, features["conditional"])
        if body.label is not None:
            raise RequestError(422, "label: /api/styles decodes the code under every class; leave label out")
        z = check_code(body.z, size)
        return await compute(_styles, z)

    @app.post("/api/decode_indices")
    async def decode_indices(body: IndicesIn):
        need_pictures("/api/decode_indices")
        if not discrete:
            raise RequestError(409, features["discrete"])
        from ..errors import ConfigError
        from ..explore import check_grid

        try:
            idx = check_grid(body.indices, tuple(codebook["grid"]), codebook["size"])
        except ConfigError as exc:
            raise RequestError(422, str(exc)) from None
        return await compute(lambda: png(ex.decode_indices(idx)))

    @app.get("/api/test/{i}")
    async def test_item(i: int):
        i = test_index(i)
        grid = await compute(grid_of, ex.images[i]) if discrete else None  # an encoder pass: a compute slot
        out = {"index": int(ex.ids[i]), "label": int(ex.labels[i]), "label_name": _label(i), "z": ex.codes[i].tolist(),
               "xy": ex.xy[i].tolist(), "error": float(ex.errors[i]), "indices": grid}
        if columns is not None:  # a table's row in its own units (the run's scaler inverted), where an image would be
            raw = data.scaler.inverse(ex.images[i].reshape(1, -1))[0]
            out["values"] = {name: float(v) for name, v in zip(columns, raw)}
        return out

    @app.get("/api/test/{i}/image.png")
    def test_image(i: int):  # a plain def: PNG coding runs in Starlette's thread pool (no model call, no slot)
        need_pictures("/api/test/I/image.png")
        return png(ex.images[test_index(i)])

    @app.get("/api/test/{i}/recon.png")
    async def test_recon(i: int):
        need_pictures("/api/test/I/recon.png")
        i = test_index(i)
        return await compute(lambda: png(ex.decode(ex.codes[i][None])[0]))

    def _sample(seed: int) -> dict:
        image = ex.session.prior_samples(1, seed=seed)[0]  # (C, H, W) in [0, 1]
        # the sample's own code (its encoding), so the sliders or the grid editor can take it from here
        z = ex.encode(image[None])[0]
        return {"z": z.tolist(), "xy": ex.place(z).tolist(), "image": data_url(image), "indices": grid_of(image)}

    @app.get("/api/sample")
    async def sample(seed: int = Query(0, ge=0, lt=2**31)):
        need_pictures("/api/sample")
        if note:
            raise RequestError(409, note)
        return await compute(_sample, seed)

    def _morph(body: MorphIn) -> dict:
        from ..explore import interpolate

        za, img_a, cap_a = resolve(body.a, "a")
        zb, img_b, cap_b = resolve(body.b, "b")
        codes, images = interpolate(model, za, zb, steps=body.steps, mode=body.mode)
        out = {"frames": [data_url(im) for im in images], "xy": [ex.place(z).tolist() for z in codes],
               "ends": [{"caption": cap_a, "image": data_url(img_a)}, {"caption": cap_b, "image": data_url(img_b)}]}
        if flat:  # a spatial code is thousands of numbers per frame: the page needs only the frames
            out["codes"] = np.round(codes, 5).tolist()
        return out

    @app.post("/api/morph")
    async def morph(body: MorphIn):
        need_pictures("/api/morph")
        return await compute(_morph, body)

    def _arithmetic(body: ArithmeticIn) -> dict:
        from ..explore import arithmetic as _arith

        ops = [resolve(op, k) for op, k in ((body.a, "a"), (body.b, "b"), (body.c, "c"))]
        z, image = _arith(model, *(o[0] for o in ops))
        return {"inputs": [{"caption": cap, "image": data_url(img)} for _, img, cap in ops],
                "result": {"image": data_url(image), "z": z.tolist(), "xy": ex.place(z).tolist()}}

    @app.post("/api/arithmetic")
    async def arithmetic(body: ArithmeticIn):
        need_pictures("/api/arithmetic")
        return await compute(_arithmetic, body)

    def _upload(raw: bytes, invert: bool) -> dict:
        x = read_upload(raw, ex.shape, invert=invert)  # (1, C, H, W) uint8; the pixel count is checked first
        z = ex.encode(x)[0]
        recon = ex.decode(z[None])[0]
        err = float(((recon - x[0] / 255.0) ** 2).mean())
        pct = float((ex.errors <= err).mean() * 100.0)
        return {"z": z.tolist(), "xy": ex.place(z).tolist(), "input": data_url(x[0]), "recon": data_url(recon),
                "error": err, "percentile": pct, "indices": grid_of(x[0])}

    @app.post("/api/upload")
    async def upload(file: UploadFile = File(...), invert: bool = Form(False)):
        need_pictures("/api/upload")
        raw = await file.read(MAX_UPLOAD_BYTES + 1)  # the body is already in memory (BodyLimit): no disk wait
        return await compute(_upload, raw, invert)

    return app


class BodyLimit:
    """ASGI middleware: refuse (413) any request body above ``max_bytes``, declared or streamed, before the
    app (or the multipart parser) sees it. Bodies are small here, so the checked body is buffered and replayed."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._refuse(send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        msg = json.dumps({"detail": f"request body too large; uploads are limited to {MAX_UPLOAD_BYTES} bytes (2 MB)"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(msg)).encode())]})
        await send({"type": "http.response.body", "body": msg.encode()})


EVERY_INTERFACE = ("", "*")  # spellings of the wildcard address that socket.bind and uvicorn read as 0.0.0.0


def host_address(host: str):
    """The IP address a ``--host`` value names, as ``socket.bind`` reads it ('' and '*' are 0.0.0.0, IPv6 may
    be bracketed, IPv4 shorthand such as '0' or '127.1' is the C library's), or None for a host name."""
    import ipaddress
    import socket

    h = host.strip("[]")
    if h in EVERY_INTERFACE:
        return ipaddress.IPv4Address("0.0.0.0")
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except OSError:
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    addr = host_address(host)
    return addr is not None and addr.is_loopback


def is_every_interface(host: str) -> bool:
    """True for a host that binds every interface: '', '*', 0.0.0.0, '::' and their other spellings."""
    addr = host_address(host)
    return addr is not None and addr.is_unspecified


__all__ = ["create_app", "build_explorer", "Explorer", "is_loopback", "is_every_interface", "host_address",
           "MAX_UPLOAD_BYTES", "MAX_PIXELS"]
