"""Batch encoding, denoising and export (ONNX, TorchScript) through the real CLI, on trained digits runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aekit.cli import main
from aekit.train import load_run


def _digits_images(run_path, split="test"):
    run = load_run(run_path)
    images, labels = run.data().split(split)
    return run, images, labels


def _fail(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("model", ["ae", "vae", "conv-ae"])
def test_onnx_export_matches_torch_with_dynamic_batch(trained_run, tmp_path, model):
    ort = pytest.importorskip("onnxruntime")
    path = trained_run(model, 2)
    assert main(["export", str(path), "--out", str(tmp_path)]) == 0
    run, images, _ = _digits_images(path)
    enc = ort.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 37):  # the batch axis is dynamic
        x = images[:n].float() / 255
        with torch.no_grad():
            z_ref = run.model.encode(x).numpy()
            x_ref = run.model.decode(torch.from_numpy(z_ref)).numpy()
        z = enc.run(None, {"image": x.numpy()})[0]
        x_hat = dec.run(None, {"code": z_ref})[0]
        assert z.shape == (n, 2) and x_hat.shape == (n, *run.model.input_shape)
        np.testing.assert_allclose(z, z_ref, atol=1e-4)
        np.testing.assert_allclose(x_hat, x_ref, atol=1e-4)


def test_onnx_export_conv_vae_on_mnist(trained_run, tmp_path):
    """The 28x28 conv VAE, trained briefly on the bundled MNIST, exported through the CLI: onnxruntime
    gives the posterior mean and the decoded images of real MNIST test digits to 1e-4, and `encode
    --backend onnx` writes the same codes."""
    ort = pytest.importorskip("onnxruntime")
    path = trained_run("conv-vae", 8, dataset="mnist", epochs=1, max_train_samples=1000, val_fraction=0.02)
    assert main(["export", str(path)]) == 0  # default folder: RUN/export
    run = load_run(path)
    images, _ = run.data().split("test")
    x = images[:64].float() / 255  # (64, 1, 28, 28)
    enc = ort.InferenceSession(str(path / "export" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(path / "export" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        z_ref = run.model.encode(x).numpy()
        x_ref = run.model.decode(torch.from_numpy(z_ref)).numpy()
        mu_twice = run.model.encode(x).numpy()
    np.testing.assert_array_equal(z_ref, mu_twice)  # eval encode is the deterministic mean
    z = enc.run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(z, z_ref, atol=1e-4)
    np.testing.assert_allclose(dec.run(None, {"code": z_ref})[0], x_ref, atol=1e-4)
    assert x_ref.std() > 0.05  # a real (non-blank) decoded digit, so the comparison means something
    out = tmp_path / "codes.npy"
    assert main(["encode", str(path), "--split", "test", "--backend", "onnx", "--out", str(out), "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(out)[:64], z_ref, atol=1e-4)


def test_torchscript_export(trained_run, tmp_path):
    path = trained_run("vae", 2)
    assert main(["export", str(path), "--format", "torchscript", "--out", str(tmp_path)]) == 0
    run, images, _ = _digits_images(path)
    x = images[:9].float() / 255
    enc, dec = torch.jit.load(str(tmp_path / "encoder.pt")), torch.jit.load(str(tmp_path / "decoder.pt"))
    with torch.no_grad():
        z = run.model.encode(x)  # the VAE's posterior mean
        torch.testing.assert_close(enc(x), z)
        torch.testing.assert_close(dec(z), run.model.decode(z))


def test_encode_formats_match_the_model(trained_run, tmp_path):
    path = trained_run("ae", 2)
    run, images, labels = _digits_images(path, "all")
    with torch.no_grad():
        ref = run.model.encode(images.float() / 255).numpy()
    assert main(["encode", str(path), "--out", str(tmp_path / "c.npy"), "--no-progress", "--batch-size", "500"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), ref, atol=1e-5)
    assert main(["encode", str(path), "--out", str(tmp_path / "c.npz"), "--split", "test", "--no-progress"]) == 0
    with np.load(tmp_path / "c.npz") as z:
        test_idx = run.data().splits["test"].numpy()
        np.testing.assert_allclose(z["codes"], ref[test_idx], atol=1e-5)
        np.testing.assert_array_equal(z["labels"], labels.numpy()[test_idx])
    pq = pytest.importorskip("pyarrow.parquet")
    assert main(["encode", str(path), "--out", str(tmp_path / "c.parquet"), "--batch-size", "256", "--no-progress"]) == 0
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.column_names == ["z0", "z1", "label"] and table.num_rows == len(images)
    np.testing.assert_allclose(np.stack([table["z0"].to_numpy(), table["z1"].to_numpy()], 1), ref, atol=1e-5)
    # onnxruntime backend gives the same codes
    assert main(["encode", str(path), "--out", str(tmp_path / "o.npy"), "--backend", "onnx", "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), ref, atol=1e-4)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_encode_memory_mapped_npy_in_and_out(trained_run, tmp_path):
    from aekit.apply import encode_all

    path = trained_run("ae", 2)
    run, images, _ = _digits_images(path, "all")
    src = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(src, mode="w+", dtype=np.uint8, shape=(3000, 8, 8))  # N x H x W
    mm[:] = np.resize(images.numpy()[:, 0], (3000, 8, 8))
    del mm
    out = tmp_path / "codes.npy"
    assert main(["encode", str(path), "--data", str(src), "--out", str(out), "--batch-size", "700", "--no-progress"]) == 0
    codes = np.load(out, mmap_mode="r")
    assert codes.shape == (3000, 2) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, encode_all(run.model, np.load(src)), atol=1e-5)
    # flat N x D rows are read in the run's shape
    np.save(tmp_path / "flat.npy", np.load(src).reshape(3000, 64))
    assert main(["encode", str(path), "--data", str(tmp_path / "flat.npy"), "--out", str(tmp_path / "f.npy"), "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), codes, atol=1e-6)


def test_denoise_writes_pngs_and_arrays(trained_run, tmp_path):
    from PIL import Image

    path = trained_run("ae", 2)
    run, images, _ = _digits_images(path, "test")
    out = tmp_path / "png"
    assert main(["denoise", str(path), "--split", "test", "--out", str(out), "--noise", "gaussian:0.3",
                 "--save-input", "--no-progress"]) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 2 * len(images)
    img = np.asarray(Image.open(out / "000.png"))
    assert img.shape == (8, 8) and img.dtype == np.uint8
    assert main(["denoise", str(path), "--split", "test", "--out", str(tmp_path / "d.npy"), "--no-progress"]) == 0
    arr = np.load(tmp_path / "d.npy")
    with torch.no_grad():
        ref = run.model.reconstruct(images.float() / 255).mul(255).round().numpy()
    assert arr.shape == tuple(images.shape) and arr.dtype == np.uint8
    assert np.abs(arr.astype(float) - ref).max() <= 1


def test_bad_input_is_one_line_exit_2(trained_run, tmp_path, capsys):
    path = str(trained_run("ae", 2))
    np.save(tmp_path / "big.npy", np.zeros((5, 28, 28), np.uint8))
    assert "28x28 but the run was trained on 8x8" in _fail(["encode", path, "--data", str(tmp_path / "big.npy"), "--out", str(tmp_path / "c.npy")], capsys)
    np.save(tmp_path / "rgb.npy", np.zeros((5, 8, 8, 3), np.uint8))
    assert "3 channel(s)" in _fail(["anomaly", path, "--data", str(tmp_path / "rgb.npy"), "--split", "all", "--out", str(tmp_path / "s.csv")], capsys)
    bad = np.full((5, 8, 8), 0.5, np.float32)
    bad[2, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert "NaN" in _fail(["denoise", path, "--data", str(tmp_path / "nan.npy"), "--out", str(tmp_path / "d")], capsys)
    np.save(tmp_path / "inf.npy", np.full((5, 8, 8), np.inf, np.float32))
    assert "infinity" in _fail(["encode", path, "--data", str(tmp_path / "inf.npy"), "--out", str(tmp_path / "c.npy")], capsys)
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), np.uint8))
    assert "no images" in _fail(["encode", path, "--data", str(tmp_path / "empty.npy"), "--out", str(tmp_path / "c.npy")], capsys)
    (tmp_path / "x.txt").write_text("1 2 3\n")
    assert "unsupported file type" in _fail(["encode", path, "--data", str(tmp_path / "x.txt"), "--out", str(tmp_path / "c.npy")], capsys)
    assert "unknown output format" in _fail(["encode", path, "--out", str(tmp_path / "c.txt")], capsys)
    assert "not an aekit run" in _fail(["export", str(tmp_path)], capsys)
    # flat rows of the right size, read as a strip: the error names --shape, and --shape reads them
    rows = np.random.default_rng(0).random((5, 64)).astype(np.float32)
    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",")
    assert "pass --shape 1x8x8" in _fail(["encode", path, "--data", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "c.npy")], capsys)
    assert main(["encode", path, "--data", str(tmp_path / "rows.csv"), "--shape", "1x8x8", "--split", "all",
                 "--out", str(tmp_path / "rows.npy"), "--no-progress"]) == 0
    assert np.load(tmp_path / "rows.npy").shape == (5, 2)
    assert "unknown output format .png" in _fail(["denoise", path, "--out", str(tmp_path / "d.png")], capsys)
    (tmp_path / "afile").write_text("x")  # an output folder that is a file
    assert "afile" in _fail(["encode", path, "--out", str(tmp_path / "afile" / "c.npy")], capsys)
    assert "afile" in _fail(["export", path, "--out", str(tmp_path / "afile")], capsys)
    (tmp_path / "dir.npy").mkdir()  # an output file name that is a folder: named as --out, not a temp file
    assert "--out " + str(tmp_path / "dir.npy") + " is a folder" in _fail(["encode", path, "--out", str(tmp_path / "dir.npy")], capsys)
    assert "is a folder" in _fail(["denoise", path, "--out", str(tmp_path / "dir.npy")], capsys)
    assert "is a file" in _fail(["denoise", path, "--out", str(tmp_path / "afile")], capsys)
    for bs in ("0", "-3"):
        with pytest.raises(SystemExit) as exc:
            main(["encode", path, "--out", str(tmp_path / "c.npy"), "--batch-size", bs])
        assert exc.value.code == 2
    assert "--batch-size: expected a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "c.npy").exists() and not (tmp_path / "d").exists() and not (tmp_path / "d.png").exists()


def test_auto_backend_keeps_torch_for_small_jobs_and_times_both_for_large(trained_run, monkeypatch, tmp_path):
    pytest.importorskip("onnxruntime")
    import tempfile

    from aekit import apply

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # temporary exports land here, and must be removed
    run, images, _ = _digits_images(trained_run("conv-ae", 2), "all")
    probe = images[:256]
    small = apply.make_encoder(run.model, "auto", run.path, probe=probe, total=len(images))
    assert small.backend == "torch"  # a fraction of a second of work: not worth an export
    timed = []
    monkeypatch.setattr(apply, "_time", lambda enc, p: timed.append(enc.backend) or {"torch": 2.0, "onnx": 1.0}[enc.backend])
    big = apply.make_encoder(run.model, "auto", run.path, probe=probe, total=10**9)
    assert timed == ["torch", "onnx"] and big.backend == "onnx"
    np.testing.assert_allclose(big(probe), small(probe), atol=1e-4)
    monkeypatch.setattr(apply, "_time", lambda enc, p: {"torch": 1.0, "onnx": 2.0}[enc.backend])
    assert apply.make_encoder(run.model, "auto", run.path, probe=probe, total=10**9).backend == "torch"
    assert not list(tmp_path.iterdir())  # the temporary ONNX exports were removed


def test_onnx_backend_uses_an_export_only_when_its_manifest_matches(trained_run, tmp_path, capsys):
    """RUN/export/encoder.onnx is used only when export.json names the sha256 of the run's weights and of the
    file (a timestamp cannot tell: a copied or replaced file keeps any mtime); else a fresh export, said on
    stderr in one line."""
    pytest.importorskip("onnxruntime")
    import json
    import shutil

    from aekit.export import export_onnx
    from aekit.fileio import sha256_file
    from aekit.registry import build_model

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run("ae", 2), run_dir)
    run, images, _ = _digits_images(run_dir, "all")
    with torch.no_grad():
        ref = run.model.encode(images.float() / 255).numpy()
    torch.manual_seed(123)
    other = build_model("ae", input_shape=run.model.input_shape, latent_dim=2)  # other weights, same shapes
    onnx_path = export_onnx(other, run_dir / "export", parts=("encoder",))["encoder"]
    out = tmp_path / "c.npy"
    argv = ["encode", str(run_dir), "--backend", "onnx", "--out", str(out), "--no-progress"]

    def manifest(file_sha):
        (run_dir / "export" / "export.json").write_text(json.dumps({
            "files": {"encoder": "encoder.onnx"}, "sha256": {"encoder.onnx": file_sha},
            "weights_sha256": sha256_file(run_dir / "model.safetensors")}))

    capsys.readouterr()
    assert main(argv) == 0  # no manifest: a fresh export, not the foreign file
    np.testing.assert_allclose(np.load(out), ref, atol=1e-4)
    err = capsys.readouterr().err.strip()
    assert "encoder.onnx not used (no export.json" in err and "\n" not in err

    manifest(sha256_file(onnx_path))  # the manifest vouches for this file and these weights: used as it is
    assert main(argv) == 0
    assert not np.allclose(np.load(out), ref, atol=1e-3) and capsys.readouterr().err == ""

    onnx_path.write_bytes(b"not an onnx file")  # changed after its manifest: not used
    assert main(argv) == 0
    np.testing.assert_allclose(np.load(out), ref, atol=1e-4)
    assert "sha256 is not the one in export.json" in capsys.readouterr().err

    manifest(sha256_file(onnx_path))  # a manifest that vouches for a damaged file: one line, exit 2
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "not a usable ONNX model" in err and "aekit export" in err and "\n" not in err


def test_encode_float_npy_converts_in_chunks(trained_run, tmp_path):
    """A float32 .npy is checked and converted to uint8 a chunk at a time: numpy never holds a float copy
    of the whole file (the uint8 result is a quarter of its size)."""
    import tracemalloc

    path = trained_run("ae", 2)
    run, images, _ = _digits_images(path, "all")
    n = 1_000_000  # 256 MB of float32 8x8 images
    src = tmp_path / "floats.npy"
    mm = np.lib.format.open_memmap(src, mode="w+", dtype=np.float32, shape=(n, 8, 8))
    base = images.numpy()[:, 0].astype(np.float32) / 255
    for start in range(0, n, len(base)):
        mm[start : start + len(base)] = base[: n - start]
    del mm
    out = tmp_path / "codes.npy"
    tracemalloc.start()
    try:
        assert main(["encode", str(path), "--data", str(src), "--backend", "torch", "--out", str(out), "--no-progress"]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float_bytes = n * 64 * 4
    assert peak < 0.5 * float_bytes, f"numpy peak {peak / 2**20:.0f} MiB for a {float_bytes / 2**20:.0f} MiB float file"
    codes = np.load(out, mmap_mode="r")
    with torch.no_grad():
        ref = run.model.encode(images.float() / 255).numpy()
    np.testing.assert_allclose(codes[: len(ref)], ref, atol=1e-5)
    np.testing.assert_allclose(codes[len(ref) : 2 * len(ref)], ref, atol=1e-5)
