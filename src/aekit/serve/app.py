"""The latent explorer's HTTP API: a FastAPI app over one loaded run.

Everything model-related goes through the model contract (``encode``/``decode``/``sample``) and
``aekit.explore``; this file only validates requests, caches arrays and speaks JSON/PNG. The test-set codes,
their 2-D map and reconstruction errors are computed once and cached in ``RUN/cache/`` (keyed by the weights'
size and mtime), so a restart is fast.
"""


import base64
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..errors import AekitError, NoPriorError

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # an upload larger than this is refused (413)
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # multipart headers; any request body above this is refused
MAX_PIXELS = 4096 * 4096  # decompression-bomb guard, checked from the header before any pixel is decoded
MAX_ABS_Z = 1e3
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF")
MAX_POINTS = 5000  # test images on the map (a seeded subset of larger test sets)
MAX_RANGE_POINTS = 2000  # training images encoded for the slider ranges
CACHE_VERSION = 1


class RequestError(Exception):
    """A bad request: answered with ``status`` and a one-line ``{"detail": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------- state


@dataclass
class Explorer:
    """Everything the endpoints read: the model and the precomputed test-set arrays (read-only after start)."""

    model: Any
    run_name: str
    shape: tuple[int, int, int]
    class_names: list[str]
    images: np.ndarray  # (N, C, H, W) uint8 test images on the map
    labels: np.ndarray  # (N,) int64
    codes: np.ndarray  # (N, D) float32
    xy: np.ndarray  # (N, 2) float32 map positions
    errors: np.ndarray  # (N,) per-image MSE of the reconstruction
    lo: np.ndarray  # (D,) slider ranges
    hi: np.ndarray
    projection: str  # "identity" (2-D codes), "pca" or "tsne"
    affine: np.ndarray | None  # (D + 1, 2) codes -> map, exact for identity/PCA; None for t-SNE (nearest points)
    startup_s: float = 0.0

    @property
    def latent_dim(self) -> int:
        return int(self.codes.shape[1])

    # -- model calls (the contract only) ---------------------------------------------------------
    def decode(self, z: np.ndarray) -> np.ndarray:
        """(B, D) codes -> (B, C, H, W) float images in [0, 1]."""
        with torch.inference_mode():
            return self.model.decode(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))).numpy()

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(B, C, H, W) uint8 images -> (B, D) codes."""
        with torch.inference_mode():
            return self.model.encode(torch.from_numpy(x).float().div_(255.0)).numpy()

    def place(self, z: np.ndarray) -> np.ndarray:
        """Map position of a new code: the projection's affine map, or the mean of its 5 nearest test codes."""
        if self.affine is not None:
            return np.append(z, 1.0) @ self.affine
        near = np.argsort(((self.codes - z) ** 2).sum(1))[:5]
        return self.xy[near].mean(0)


def _cache_key(run, projection: str, n: int) -> dict[str, Any]:
    st = (Path(run.path) / "model.safetensors").stat()
    d = run.config["data"]
    return {"version": CACHE_VERSION, "weights": [st.st_size, st.st_mtime_ns], "data": d.get("spec"),
            "shape": list(d["shape"]), "projection": projection, "max_points": n}


def _compute(run, projection: str, n_max: int) -> dict[str, np.ndarray]:
    from ..explore import decode_all, encode_all, project

    model = run.model
    data = run.data()
    images, labels = data.split("test")
    train_images, _ = data.split("train")
    rng = np.random.default_rng(0)
    pick = np.sort(rng.permutation(len(images))[:n_max]) if len(images) > n_max else np.arange(len(images))
    images, labels = images[torch.from_numpy(pick)], labels[torch.from_numpy(pick)]
    codes = np.asarray(encode_all(model, images), dtype=np.float32)  # (N, D)
    recon = decode_all(model, codes)  # (N, C, H, W) in [0, 1]
    errors = ((recon - images.numpy() / 255.0) ** 2).reshape(len(codes), -1).mean(1)  # per-image MSE
    if codes.shape[1] == 2:
        xy = codes.copy()
    else:
        xy = np.asarray(project(codes, method=projection, seed=0), dtype=np.float32)
    if model.has_prior:  # ±3σ of the standard-normal prior
        lo, hi = np.full(codes.shape[1], -3.0, np.float32), np.full(codes.shape[1], 3.0, np.float32)
    else:  # the training codes' extent, padded by 10% so the sliders can leave the data a little
        sub = train_images[torch.from_numpy(rng.permutation(len(train_images))[:MAX_RANGE_POINTS])]
        tc = np.asarray(encode_all(model, sub), dtype=np.float32)
        lo, hi = tc.min(0), tc.max(0)
        pad = np.maximum(0.1 * (hi - lo), 1e-3)
        lo, hi = lo - pad, hi + pad
    return {"images": images.numpy(), "labels": labels.numpy().astype(np.int64), "codes": codes,
            "xy": xy.astype(np.float32), "errors": errors.astype(np.float32), "lo": lo.astype(np.float32),
            "hi": hi.astype(np.float32)}


def build_explorer(run, projection: str = "pca", max_points: int = MAX_POINTS, use_cache: bool = True) -> Explorer:
    """Precompute (or read from ``RUN/cache/``) the arrays the explorer serves."""
    from ..errors import ConfigError

    if projection not in ("pca", "tsne"):
        raise ConfigError(f"projection must be pca or tsne, got {projection!r}")
    t0 = time.perf_counter()
    key = _cache_key(run, projection, max_points)
    path = Path(run.path) / "cache" / f"explorer-{projection}.npz"
    arrays = None
    if use_cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:  # arrays only: nothing is unpickled
                if json.loads(str(f["key"])) == key:
                    arrays = {k: f[k] for k in f.files if k != "key"}
        except (OSError, ValueError, KeyError):
            arrays = None  # damaged cache: recompute
    if arrays is None:
        arrays = _compute(run, projection, max_points)
        if use_cache:
            from ..train.runs import atomic_write

            buf = io.BytesIO()
            np.savez(buf, key=np.array(json.dumps(key)), **arrays)
            try:
                atomic_write(path, buf.getvalue())
            except OSError:
                pass  # a read-only run folder: serve anyway, recompute next time
    codes = arrays["codes"]
    d = codes.shape[1]
    method = "identity" if d == 2 else projection
    affine = None
    if method != "tsne":  # identity and PCA are affine maps: recover them exactly by least squares
        a = np.hstack([codes, np.ones((len(codes), 1), np.float32)]).astype(np.float64)
        affine = np.linalg.lstsq(a, arrays["xy"].astype(np.float64), rcond=None)[0]
    c, h, w = (int(v) for v in run.config["data"]["shape"])
    names = [str(n) for n in run.config["data"].get("class_names") or []]
    ex = Explorer(model=run.model, run_name=Path(run.path).name, shape=(c, h, w), class_names=names,
                  images=arrays["images"], labels=arrays["labels"], codes=codes, xy=arrays["xy"],
                  errors=arrays["errors"], lo=arrays["lo"], hi=arrays["hi"], projection=method, affine=affine)
    ex.startup_s = time.perf_counter() - t0
    return ex


# ----------------------------------------------------------------------------------------- helpers


def png_bytes(img: np.ndarray) -> bytes:
    """(C, H, W) float in [0, 1] or uint8 -> PNG bytes (Pillow; fast zlib level: these are tiny)."""
    from PIL import Image

    a = img if img.dtype == np.uint8 else (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    pil = Image.fromarray(a[0]) if a.shape[0] != 3 else Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)))
    buf = io.BytesIO()
    pil.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def data_url(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


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
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)[None]  # (1, 3, h, w)
    c, h, w = shape
    x = resize(convert_channels(rgb, c if c in (1, 3) else 1), (h, w))
    if invert:
        x = 255 - x
    return np.ascontiguousarray(x)


# ----------------------------------------------------------------------------------------------- app


def create_app(run, projection: str = "pca", max_points: int = MAX_POINTS, use_cache: bool = True,
               allowed_hosts: list[str] | None = None):
    """A FastAPI app exploring ``run`` (an ``aekit.train.Run``). ``allowed_hosts`` guards against DNS
    rebinding when set (the CLI sets it to the loopback names)."""
    from fastapi import FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    ex = build_explorer(run, projection=projection, max_points=max_points, use_cache=use_cache)
    n, dim = len(ex.codes), ex.latent_dim
    has_prior = bool(getattr(ex.model, "has_prior", False))
    sample_note = ("" if has_prior else
                   f"{ex.model.name} has no prior: a plain autoencoder's codes follow no known distribution, so there "
                   "is nothing to sample from. Train a VAE (vae, conv-vae, beta-vae) to sample.")
    class_means = {}
    for i, name in enumerate(ex.class_names):
        mask = ex.labels == i
        if mask.any():
            class_means[name] = ex.codes[mask].mean(0)

    app = FastAPI(title="aekit explorer", docs_url=None, redoc_url=None)  # the docs pages load a CDN: off
    app.state.explorer = ex
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    if allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

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

    def png(img: np.ndarray) -> Response:
        return Response(png_bytes(img), media_type="image/png", headers={"Cache-Control": "no-store"})

    def test_index(i: int) -> int:
        if not 0 <= i < n:
            raise RequestError(404, f"test image {i} does not exist; indices run 0..{n - 1}")
        return i

    Operand = int | str | list[float]

    def resolve(op: Operand, name: str) -> tuple[np.ndarray, np.ndarray, str]:
        """An operand -> (code, image to show, caption): a test index, a class name (its mean code) or a code."""
        if isinstance(op, int):
            if not 0 <= op < n:
                raise RequestError(422, f"{name}: test index {op} is out of range 0..{n - 1}")
            return ex.codes[op], ex.images[op], f"#{op} ({_label(op)})"
        if isinstance(op, str):
            if op not in class_means:
                shown = ", ".join(list(class_means)[:12])
                raise RequestError(422, f"{name}: unknown class {op[:40]!r}; classes: {shown}")
            z = class_means[op]
            return z, ex.decode(z[None])[0], f"mean of class {op}"
        z = check_code(op, dim, name)
        return z, ex.decode(z[None])[0], "code"

    def _label(i: int) -> str:
        k = int(ex.labels[i])
        return ex.class_names[k] if 0 <= k < len(ex.class_names) else "?"

    class CodeIn(BaseModel):
        z: list[float]

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
    @app.get("/api/info")
    async def info():
        return {
            "model": ex.model.name, "run": ex.run_name, "latent_dim": dim, "shape": list(ex.shape),
            "class_names": ex.class_names, "has_prior": has_prior, "sample_note": sample_note,
            "ranges": {"lo": ex.lo.tolist(), "hi": ex.hi.tolist()}, "n_points": n, "projection": ex.projection,
            "map_is_latent": ex.projection == "identity",
            "error": {"median": float(np.median(ex.errors)), "p95": float(np.percentile(ex.errors, 95))},
            "limits": {"max_upload_bytes": MAX_UPLOAD_BYTES, "max_pixels": MAX_PIXELS, "max_abs_z": MAX_ABS_Z},
            "startup_s": round(ex.startup_s, 3),
        }

    @app.get("/api/map")
    async def map_points():
        lo, hi = ex.xy.min(0), ex.xy.max(0)
        return {"x": np.round(ex.xy[:, 0], 4).tolist(), "y": np.round(ex.xy[:, 1], 4).tolist(),
                "label": ex.labels.tolist(), "bounds": [float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])]}

    @app.post("/api/decode")
    async def decode(body: CodeIn):
        z = check_code(body.z, dim)
        return png(ex.decode(z[None])[0])

    @app.get("/api/test/{i}")
    async def test_item(i: int):
        i = test_index(i)
        return {"index": i, "label": int(ex.labels[i]), "label_name": _label(i), "z": ex.codes[i].tolist(),
                "xy": ex.xy[i].tolist(), "error": float(ex.errors[i])}

    @app.get("/api/test/{i}/image.png")
    async def test_image(i: int):
        return png(ex.images[test_index(i)])

    @app.get("/api/test/{i}/recon.png")
    async def test_recon(i: int):
        return png(ex.decode(ex.codes[test_index(i)][None])[0])

    @app.get("/api/sample")
    async def sample(seed: int = Query(0, ge=0, lt=2**31)):
        if not has_prior:
            raise RequestError(409, sample_note)
        from ..explore import sample_codes

        try:
            z = np.asarray(sample_codes(ex.model, 1, source="prior", seed=seed), dtype=np.float32)[0]
        except NoPriorError as exc:
            raise RequestError(409, str(exc)) from None
        return {"z": z.tolist()}

    @app.post("/api/morph")
    async def morph(body: MorphIn):
        from ..explore import interpolate

        za, img_a, cap_a = resolve(body.a, "a")
        zb, img_b, cap_b = resolve(body.b, "b")
        codes, images = interpolate(ex.model, za, zb, steps=body.steps, mode=body.mode)
        return {"frames": [data_url(im) for im in images], "codes": np.round(codes, 5).tolist(),
                "xy": [ex.place(z).tolist() for z in codes],
                "ends": [{"caption": cap_a, "image": data_url(img_a)}, {"caption": cap_b, "image": data_url(img_b)}]}

    @app.post("/api/arithmetic")
    async def arithmetic(body: ArithmeticIn):
        from ..explore import arithmetic as _arith

        ops = [resolve(op, k) for op, k in ((body.a, "a"), (body.b, "b"), (body.c, "c"))]
        z, image = _arith(ex.model, *(o[0] for o in ops))
        return {"inputs": [{"caption": cap, "image": data_url(img)} for _, img, cap in ops],
                "result": {"image": data_url(image), "z": z.tolist(), "xy": ex.place(z).tolist()}}

    @app.post("/api/upload")
    async def upload(file: UploadFile = File(...), invert: bool = Form(False)):
        raw = await file.read(MAX_UPLOAD_BYTES + 1)
        x = read_upload(raw, ex.shape, invert=invert)
        z = ex.encode(x)[0]
        recon = ex.decode(z[None])[0]
        err = float(((recon - x[0] / 255.0) ** 2).mean())
        pct = float((ex.errors <= err).mean() * 100.0)
        return {"z": z.tolist(), "xy": ex.place(z).tolist(), "input": data_url(x[0]), "recon": data_url(recon),
                "error": err, "percentile": pct}

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


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


__all__ = ["create_app", "build_explorer", "Explorer", "is_loopback", "MAX_UPLOAD_BYTES", "MAX_PIXELS"]
