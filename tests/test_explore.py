"""aekit.explore: the pure latent-space functions, checked on small trained digits runs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from aekit.errors import ConfigError, NoPriorError
from aekit.explore import (arithmetic, axis_values, cell_box, check_grid, class_means, code_usage, decode_all, defects,
                           denoise, encode_all, interpolate, latent_stats, manifold, max_codes, project, sample_codes,
                           traverse)
from aekit.train import load_run


@pytest.fixture(scope="module")
def ae2(trained_run):
    run = load_run(trained_run("ae", 2, schedule="none"))  # the defects' thresholds were measured at a constant lr
    return run, run.data()


@pytest.fixture(scope="module")
def vae2(trained_run):
    run = load_run(trained_run("vae", 2, schedule="none"))
    return run, run.data()


@pytest.fixture(scope="module")
def ae16(trained_run):
    run = load_run(trained_run("ae", 16))
    return run, run.data()


def test_encode_all_matches_encode_for_uint8_and_float(ae16):
    run, data = ae16
    x, _ = data.split("test")
    codes = encode_all(run.model, x, batch_size=37)  # batches that do not divide N
    assert codes.shape == (len(x), 16) and codes.dtype == np.float32
    with torch.no_grad():
        ref = run.model.encode(x.float() / 255).numpy()
    np.testing.assert_allclose(codes, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(encode_all(run.model, x.float() / 255), codes)
    images = decode_all(run.model, codes[:5])
    assert images.shape == (5, 1, 8, 8) and images.min() >= 0 and images.max() <= 1


def test_vae_encode_all_is_the_posterior_mean(vae2):
    run, data = vae2
    x = data.split("test")[0][:20]
    mu, _ = run.model.posterior(x.float() / 255)
    np.testing.assert_allclose(encode_all(run.model, x), mu.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(encode_all(run.model, x), encode_all(run.model, x))


@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolation_endpoints_decode_the_two_encodings(ae16, mode):
    run, data = ae16
    z = encode_all(run.model, data.split("test")[0][:2])
    codes, images = interpolate(run.model, z[0], z[1], steps=7, mode=mode)
    assert codes.shape == (7, 16) and images.shape == (7, 1, 8, 8)
    np.testing.assert_array_equal(codes[0], z[0])
    np.testing.assert_array_equal(codes[-1], z[1])
    ends = decode_all(run.model, z)
    np.testing.assert_allclose(images[[0, -1]], ends, atol=1e-6)
    if mode == "linear":  # the midpoint of an odd number of steps is the mean code
        np.testing.assert_allclose(codes[3], (z[0] + z[1]) / 2, atol=1e-6)
    else:  # slerp keeps the norm between the two ends' norms (it follows the arc, not the chord)
        norms = np.linalg.norm(codes, axis=1)
        assert norms.min() >= min(np.linalg.norm(z, axis=1)) - 1e-4
    with pytest.raises(ConfigError):
        interpolate(run.model, z[0], z[1], steps=1)
    with pytest.raises(ConfigError):
        interpolate(run.model, z[0], z[1, :3])


def test_arithmetic_is_a_minus_b_plus_c(ae2):
    run, data = ae2
    z = encode_all(run.model, data.split("test")[0][:3])
    code, image = arithmetic(run.model, z[0], z[1], z[2])
    np.testing.assert_allclose(code, z[0] - z[1] + z[2], atol=1e-6)
    np.testing.assert_allclose(image, decode_all(run.model, (z[0] - z[1] + z[2])[None])[0], atol=1e-6)
    labels = data.split("test")[1].numpy()
    codes = encode_all(run.model, data.split("test")[0])
    means = class_means(codes, labels, [3, 1])
    np.testing.assert_allclose(means[0], codes[labels == 3].mean(0), rtol=1e-5)
    with pytest.raises(ConfigError, match="class 42"):
        class_means(codes, labels, [42])


def test_seeded_samples_are_reproducible(ae2, vae2):
    run, data = vae2
    a = sample_codes(run.model, 16, "prior", seed=3)
    assert a.shape == (16, 2)
    np.testing.assert_array_equal(a, sample_codes(run.model, 16, "prior", seed=3))
    assert not np.allclose(a, sample_codes(run.model, 16, "prior", seed=4))
    ae, ae_data = ae2
    with pytest.raises(NoPriorError):
        sample_codes(ae.model, 4, "prior")
    train = encode_all(ae.model, ae_data.split("train")[0])
    fitted = sample_codes(ae.model, 4000, "fitted", train_codes=train, seed=0)
    np.testing.assert_array_equal(fitted[:10], sample_codes(ae.model, 10, "fitted", train_codes=train, seed=0)[:10])
    # the fitted Gaussian sits where the codes are, not at the origin
    np.testing.assert_allclose(fitted.mean(0), train.mean(0), atol=4 * train.std(0).max() / np.sqrt(4000) + 1e-3)
    with pytest.raises(ConfigError, match="train_codes"):
        sample_codes(ae.model, 4, "fitted")


def test_project_and_stats(ae16):
    run, data = ae16
    codes = encode_all(run.model, data.split("test")[0])
    two = codes[:, :2].copy()
    np.testing.assert_array_equal(project(two, "pca"), two)
    p = project(codes, "pca")
    assert p.shape == (len(codes), 2)
    # PCA's first axis carries the most variance of any direction
    assert p[:, 0].var() >= p[:, 1].var() - 1e-6
    t1, t2 = project(codes[:100], "tsne", seed=1), project(codes[:100], "tsne", seed=1)
    np.testing.assert_array_equal(t1, t2)
    with pytest.raises(ConfigError, match="16-D"):
        project(codes, "none")
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="umap-learn"):
            project(codes, "umap")
    stats = latent_stats(codes)
    assert set(stats) == {"min", "max", "mean", "std", "skew"} and len(stats["mean"]) == 16
    np.testing.assert_allclose(stats["max"], codes.max(0), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], codes.std(0), rtol=1e-4)


def test_manifold_grid_has_the_requested_shape(ae16):
    run, _ = ae16
    xs = axis_values(-5, 5, 1.0)
    assert len(xs) == 11 and xs[0] == -5 and xs[-1] == 5
    ys = axis_values(-1, 1, 0.5)
    base = np.full(16, 0.25, np.float32)
    codes, images = manifold(run.model, base, (3, 7), xs, ys)
    assert codes.shape == (5, 11, 16) and images.shape == (5, 11, 1, 8, 8)
    np.testing.assert_array_equal(codes[0, :, 3], xs)  # x along columns
    np.testing.assert_array_equal(codes[:, 0, 7], ys[::-1])  # largest y on top
    assert np.all(np.delete(codes, [3, 7], axis=2) == 0.25)  # the other dims held at base
    np.testing.assert_allclose(images[2, 4], decode_all(run.model, codes[2, 4][None])[0], atol=1e-6)
    with pytest.raises(ConfigError, match="out of range"):
        manifold(run.model, base, (0, 16), xs, ys)


def test_traverse_and_max_codes(ae16):
    run, _ = ae16
    base, lo, hi = np.zeros(16), -np.ones(16), 2 * np.ones(16)
    codes, images = traverse(run.model, base, lo, hi, steps=4)
    assert codes.shape == (16, 4, 16) and images.shape == (16, 4, 1, 8, 8)
    np.testing.assert_allclose(codes[5, :, 5], [-1, 0, 1, 2])
    assert np.all(np.delete(codes[5], 5, axis=1) == 0)
    m = max_codes(np.arange(3.0), [10, 11, 12])
    np.testing.assert_array_equal(m, [[10, 1, 2], [0, 11, 2], [0, 1, 12]])


def test_denoise_scores_against_the_clean_image(ae2):
    from aekit.data import parse_noise

    run, data = ae2
    x = data.split("test")[0][:8]
    r = denoise(run.model, x, parse_noise("gaussian:0.5"), seed=0)
    clean = x.float().numpy() / 255
    np.testing.assert_allclose(r["clean"], clean)
    mse = ((r["noisy"] - clean) ** 2).reshape(8, -1).mean(1)
    np.testing.assert_allclose(r["psnr_noisy"], 10 * np.log10(1 / mse), rtol=1e-4)
    assert r["output"].shape == (8, 1, 8, 8)
    np.testing.assert_array_equal(r["noisy"], denoise(run.model, x, parse_noise("gaussian:0.5"), seed=0)["noisy"])


def test_defects_separate_an_ae_from_a_vae(ae2, vae2):
    found = {}
    for name, (run, data) in (("ae", ae2), ("vae", vae2)):
        x, y = data.split("test")
        found[name] = defects(encode_all(run.model, x), y.numpy(), encode_all(run.model, data.split("train")[0]))
    ae, vae = found["ae"], found["vae"]
    # the KL term centres the codes on the origin: the plain AE's codes lie off to one side of it
    assert ae["asymmetry"] > 1.0 and ae["asymmetry"] > 3 * vae["asymmetry"]
    assert ae["mean_offset"] > 3 * vae["mean_offset"]
    for r in found.values():
        assert r["area_ratio"] >= 1 and 0 <= r["gap_mass"] <= 1 and len(r["area_share"]) == 10


def test_encode_all_is_the_one_encoder(ae16):
    """Any image -> code map of the model runs through it; decode_all takes flattened codes too."""
    run, data = ae16
    x = data.split("test")[0][:9]
    pre = encode_all(run.model, x, batch_size=4, encode=run.model.encode_pre)
    np.testing.assert_allclose(pre, encode_all(run.model, x), atol=1e-6)  # continuous: encode_pre is encode (batching may round)
    assert encode_all(run.model, x[:0]).shape == (0, 16)
    np.testing.assert_array_equal(decode_all(run.model, pre.reshape(9, 16)), decode_all(run.model, pre))
    with pytest.raises(ConfigError, match=r"shape \(N, 16\)"):
        decode_all(run.model, pre[:, :5])


def test_code_usage_grid_checks_and_cell_boxes():
    idx = np.array([[[0, 0], [1, 3]], [[0, 0], [0, 3]]])  # two 2x2 grids over a codebook of 5
    u = code_usage(idx, 5)
    assert u["counts"] == [5, 1, 0, 2, 0] and u["used"] == 3 and u["dead"] == 2 and u["cells"] == 8
    p = np.array([5, 1, 2]) / 8
    assert u["perplexity"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert code_usage(np.zeros((3, 2, 2), int), 4)["perplexity"] == pytest.approx(1.0)  # one entry takes every cell
    np.testing.assert_array_equal(check_grid([[1, 2], [3, 4]], (2, 2), 5), [[1, 2], [3, 4]])
    with pytest.raises(ConfigError, match="not a codebook entry; entries run 0..4"):
        check_grid([[1, 2], [3, 5]], (2, 2), 5)
    with pytest.raises(ConfigError, match="code grid is 2 x 2"):
        check_grid([[1, 2, 3]], (2, 2), 5)
    assert cell_box((1, 2), (7, 7), (28, 28)) == (4, 8, 8, 12)
    assert cell_box((0, 0), (3, 3), (8, 8)) == (0, 3, 0, 3)  # cells of uneven size cover every pixel


def test_one_index_space_for_plot_report_and_explorer(ae2):
    """A view on a seeded subset (the quick report, the explorer) names images by the split's own index, as
    `aekit plot` does: the same number is the same image everywhere."""
    from aekit.errors import ConfigError
    from aekit.session import RunSession

    run, data = ae2
    full, part = RunSession(run, use_cache=False), RunSession(run, limit=40, use_cache=False)
    ids = part.ids("test")
    assert len(ids) == 40 and ids[-1] > 40 and list(full.ids("test")) == list(range(len(full.split("test")[0])))
    shown = part.figure("reconstruct", {"n": 6})[1]
    assert set(shown["indices"]) <= set(ids.tolist())
    again = full.figure("reconstruct", {"indices": shown["indices"]})[1]  # the same numbers in a full view ...
    assert again["mse"] == pytest.approx(shown["mse"], rel=1e-5)  # ... are the same images
    a, b = part.figure("interpolate", {})[1]["a"], part.figure("interpolate", {})[1]["b"]
    assert (a, b) == (int(ids[0]), int(ids[1]))
    missing = next(i for i in range(100) if i not in set(ids.tolist()))
    with pytest.raises(ConfigError, match=f"image {missing} of split 'test' is not among the 40"):
        part.figure("reconstruct", {"indices": [missing]})


@settings(max_examples=200, deadline=None)
@given(lo=st.floats(-1e38, 1e38), width=st.floats(0, 1e38), step=st.floats(1e-3, 1e38))
def test_axis_values_are_counted_not_accumulated(lo, width, step):
    """lo, lo + step, ... up to hi inclusive, counted, so a range far from 0 (1e30 1e30) still gives its points."""
    from hypothesis import assume

    hi = lo + width
    count = (hi - lo) / step + 1
    assume(count <= 1000)
    xs = axis_values(lo, hi, step)
    assert len(xs) == int(np.floor((hi - lo) / step + 0.5)) + 1 >= 1
    assert np.isfinite(xs).all() and xs[0] == np.float32(lo)
