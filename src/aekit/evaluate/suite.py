"""``evaluate_metrics``: the metrics a user names (``aekit evaluate --metrics``), computed for one model on one
data set; returns a flat JSON-able dict."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..errors import ConfigError
from .metrics import ELBO_KEYS, METRICS, VAE_ONLY, parse_metrics, skip_reason


class _Steps:
    """Progress of :func:`evaluate_metrics` on stderr: "evaluate: fid ..." when a metric starts, and its seconds
    when the next one starts (or at the end). Silent unless ``on``."""

    def __init__(self, on: bool, total: int) -> None:
        self.on, self.total, self.done, self.current, self.t, self.last_tick = on, total, 0, None, 0.0, 0.0

    def __call__(self, name: str | None) -> None:
        import sys

        if not self.on:
            return
        now = time.perf_counter()
        if self.current is not None:
            print(f"evaluate: {self.current} done in {now - self.t:.1f}s", file=sys.stderr, flush=True)
        if name is not None:
            self.done += 1
            print(f"evaluate: {name} ...", file=sys.stderr, flush=True)
        self.current, self.t = name, now
        self.last_tick = now

    def tick(self, done: int, total: int) -> None:
        """Within a long metric (IWAE-5000 of a test set takes minutes): images done and the time left, at most
        every 20 s."""
        import sys

        now = time.perf_counter()
        if not self.on or done >= total or now - self.last_tick < 20:
            return
        self.last_tick = now
        left = (now - self.t) / done * (total - done)
        print(f"evaluate: {self.current} {done}/{total} images, ~{left / 60:.1f} min left", file=sys.stderr, flush=True)


def default_metrics(model) -> tuple[str, ...]:
    """What `aekit evaluate` reports when no --metrics is given: the cheap ones that apply to the model."""
    cheap = ("mse", "bce", "psnr", "ssim", "elbo", "kl", "active", "codebook", "bits")
    return tuple(n for n in cheap if skip_reason(model, n) is None)


@torch.no_grad()
def model_kl(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int) -> float:
    """Mean over the images of the KL the model's forward pass reports (``stats["kl_nats"]``): the sum over an
    hvae's layers, a one-sample estimate against a VampPrior's mixture (seeded)."""
    from ..data import to_float

    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(images), batch_size):
        torch.manual_seed(seed + start)
        x = to_float(images[start : start + batch_size]).to(device)
        out = model.forward_batch(x, labels[start : start + batch_size].to(device))
        total += float(out.stats["kl_nats"]) * len(x)
    return total / len(images)


def is_vae(model) -> bool:
    """The model has a posterior and a likelihood bound (ELBO, IWAE NLL, KL, active units apply)."""
    return model.skip_reason("likelihood") is None and model.skip_reason("posterior") is None


@torch.no_grad()
def evaluate_metrics(model, data, metrics=None, *, split: str = "test", iwae_samples: int = 5000,
                     nll_samples: int | None = None, binarize: str = "none", batch_size: int = 500, seed: int = 0,
                     max_samples: int | None = None, cache_dir: str | Path | None = None,
                     max_probe_train: int | None = None, skip_inapplicable: bool | None = None,
                     progress: bool = False) -> dict:
    """Compute ``metrics`` (names from :data:`METRICS`, or a comma string) of ``model`` on ``data``'s ``split``.

    A metric the model cannot have (an NLL without a likelihood, codebook figures without a codebook) is an
    error when named explicitly; with ``skip_inapplicable`` (default: when ``metrics`` is None or every metric,
    ``all``) it is left out and ``result["skipped"][name]`` gives the one-line reason.

    - mse, bce, psnr, elbo (+ loss terms): :func:`aekit.evaluate.basic.evaluate`; ``binarize="static"`` scores
      a seeded Bernoulli draw (likelihood numbers on binarised MNIST).
    - nll: the IWAE bound with ``iwae_samples`` = K samples on the first ``nll_samples`` images (all if None).
    - ssim: mean SSIM; kl: KL per code dimension and its sum; active: active units (Burda et al. 2016).
    - codebook (discrete codes): ``perplexity`` and ``usage`` (fraction of the codebook used) over the split;
      bits: the split's code grids under the learned prior, ``bits_per_image`` (when the prior is trained).
    - fid: FID-classifier of reconstructions against the split, and of decoded prior samples (models whose prior
      can sample now), and the classifier's accuracy on reconstructions (``cache_dir`` keeps the classifier).
    - probe, knn: accuracies on codes with all / 1000 / 100 training labels; pca: the PCA baseline of the same
      code size (with probe/knn on PCA codes when those are asked for too).

    ``progress``: one stderr line as each metric starts and finishes, with its seconds (some take minutes).
    """
    from ..data import to_float
    from .basic import evaluate
    from .metrics import active_units, code_indices, codebook_stats, encode_all, kl_per_dim, posterior_stats, prior_bits, ssim_per_image

    names = parse_metrics(metrics) if metrics is not None else default_metrics(model)
    if skip_inapplicable is None:
        skip_inapplicable = metrics is None or tuple(names) == METRICS  # nothing named one by one
    skipped = {n: r for n in names if (r := skip_reason(model, n)) is not None}
    if skipped and not skip_inapplicable:
        vae_only = [n for n in skipped if n in VAE_ONLY]
        if vae_only:
            raise ConfigError(f"metric(s) {', '.join(vae_only)} need a VAE (a posterior); {model.name!r} has none")
        name, reason = next(iter(skipped.items()))
        raise ConfigError(f"metric {name} does not apply: {reason}")
    names = tuple(n for n in names if n not in skipped)
    vae = is_vae(model)
    model.eval()
    images, labels = data.split(split)
    if max_samples is not None:
        images, labels = images[:max_samples], labels[:max_samples]
    if len(images) == 0:
        raise ConfigError(f"split {split!r} is empty")
    result: dict = {"split": split, "metrics": list(names)}
    if skipped:
        result["skipped"] = dict(skipped)

    step = _Steps(progress, len(names))
    t0 = time.perf_counter()
    codes = encode_all(model, images, batch_size)  # also the encode-speed figure
    result["encode_img_per_s"] = len(images) / max(time.perf_counter() - t0, 1e-9)

    if any(n in names for n in ("mse", "bce", "psnr", "elbo")):
        step("mse/bce/psnr/elbo")
        base = evaluate(model, data, split, batch_size=batch_size, binarize=binarize, seed=seed, max_samples=max_samples)
        if not vae or "elbo" not in names:
            for key in ELBO_KEYS:
                base.pop(key, None)
        elif not any(key in base for key in ELBO_KEYS):  # loss rmse: no likelihood, so no bound
            result.setdefault("skipped", {})["elbo"] = f"{model.name} was trained with loss {model.config.loss}, " \
                                                        "which is no log-likelihood: no ELBO (loss bce or mse has one)"
        result.update(base)
        from ..train.collapse import spaced, spread_ratio

        result["spread_ratio"] = spread_ratio(model, spaced(images))  # ~0: collapsed to one image (train/collapse.py)
    if "nll" in names:
        step(f"nll (IWAE, K={iwae_samples})")
        if iwae_samples < 1:
            raise ConfigError(f"--iwae-samples must be >= 1 for nll, got {iwae_samples}")
        n_nll = min(len(images), nll_samples) if nll_samples else len(images)
        t0 = time.perf_counter()
        nll = evaluate(model, data, split, iwae_samples=iwae_samples, binarize=binarize, seed=seed,
                       batch_size=max(1, min(batch_size, 2**22 // max(iwae_samples, 1) + 1)), max_samples=n_nll,
                       on_batch=step.tick)
        result.update({model.nll_key: nll[model.nll_key], "iwae_samples": iwae_samples, "nll_n": n_nll,
                       "nll_seconds": round(time.perf_counter() - t0, 2)})
    result["binarize"] = binarize

    if "ssim" in names:
        step("ssim")
        device = next(model.parameters()).device
        total = 0.0
        for i in range(0, len(images), batch_size):
            x = to_float(images[i : i + batch_size]).to(device)
            total += float(ssim_per_image(model.reconstruct(x).float(), x.float()).sum())
        result["ssim"] = total / len(images)
    if "kl" in names or "active" in names:
        step("kl/active")
        mu, logvar = posterior_stats(model, images, batch_size)
        if "kl" in names and model.standard_prior:
            per_dim = kl_per_dim(mu, logvar)
            result["kl"] = float(per_dim.sum())
            result["kl_per_dim"] = [round(float(v), 5) for v in per_dim]
        elif "kl" in names:  # a mixture or hierarchical prior: the KL the model's own forward pass computes
            result["kl"] = model_kl(model, images, labels, batch_size, seed)
            result.setdefault("skipped", {})["kl_per_dim"] = (f"{model.name}'s prior is not N(0, I) over its code, so "
                                                              "its KL has no per-dimension parts")
        if "active" in names:
            count, var = active_units(mu)
            result["active_units"] = count
            result["active_variance"] = [round(float(v), 5) for v in var]

    if "codebook" in names or "bits" in names:
        step("codebook/bits")
        indices = code_indices(model, images, batch_size)  # (N, h, w)
        if "codebook" in names:
            result.update(codebook_stats(indices, model.codebook_size))  # over the whole split, not per batch
        if "bits" in names:
            result.update(prior_bits(model, indices, batch_size))

    if "fid" in names:
        step("fid")
        fid = _fid(model, data, images, labels, batch_size, seed, cache_dir)
        if "fid_samples" not in fid:
            result.setdefault("skipped", {})["fid_samples"] = model.skip_reason("prior")
        result.update(fid)

    probes = tuple(n for n in ("probe", "knn") if n in names)
    if probes or "pca" in names:
        step("probe/knn/pca")
        train_images, train_labels = data.split("train")
        if max_probe_train is not None and len(train_images) > max_probe_train:
            idx = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))[:max_probe_train]
            train_images, train_labels = train_images[idx.sort().values], train_labels[idx.sort().values]
    if probes:
        from .probes import probe_scores

        # spatial codes are probed flattened, (N, D*h*w)
        result.update(probe_scores(encode_all(model, train_images, batch_size).flatten(1).numpy(), train_labels.numpy(),
                                   codes.flatten(1).numpy(), labels.numpy(), kinds=probes, seed=seed))
    if "pca" in names:
        from .pca import pca_baseline

        # the best linear code with as many numbers as the model's code (D*h*w for a spatial code, not D)
        result.update(pca_baseline(train_images.numpy(), images.numpy(), model.code_size, train_labels=train_labels.numpy(),
                                   test_labels=labels.numpy(), probes=probes, seed=seed))
    step(None)
    return result


def _fid(model, data, images, labels, batch_size, seed, cache_dir) -> dict:
    from ..data import to_float
    from .fid import classifier_accuracy, feature_classifier, frechet_distance

    net, info = feature_classifier(data, cache_dir)
    device = next(model.parameters()).device
    real = to_float(images)
    recon = torch.cat([model.reconstruct(real[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(real), batch_size)])
    out = {"fid_recon": frechet_distance(net, real, recon), "classifier_acc_recon": classifier_accuracy(net, recon, labels),
           "classifier_acc_test": info["test_accuracy"]}
    if model.skip_reason("prior") is None:
        g = torch.Generator(device=device).manual_seed(seed)
        samples = torch.cat([model.sample(min(batch_size, len(real) - i), generator=g).float().cpu()
                             for i in range(0, len(real), batch_size)])
        out["fid_samples"] = frechet_distance(net, real, samples)
    return out


__all__ = ["METRICS", "evaluate_metrics", "default_metrics", "is_vae"]
