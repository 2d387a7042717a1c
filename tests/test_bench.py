"""`aekit bench` end to end on digits: one model trained by the bench, one finished run re-used."""

from __future__ import annotations

import csv
import shutil

import pytest

from aekit.cli import main


def test_bench_end_to_end_on_digits(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    shutil.copytree(trained_run("vae", 2), out / "runs" / "vae")  # a finished run is re-used, not retrained
    assert main(["bench", "--dataset", "digits", "--models", "ae,vae", "--latent-dim", "2", "--epochs", "1",
                 "--iwae-samples", "10", "--nll-samples", "50", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "re-using" in printed and "ae: training 1 epochs" in printed
    rows = {r["model"]: r for r in csv.DictReader(open(out / "leaderboard.csv"))}
    assert list(rows) == ["ae", "vae", "pca-2"]
    for name in ("ae", "vae"):
        r = rows[name]
        assert 0 < float(r["mse"]) < 0.25 and float(r["psnr"]) > 5 and 0 < float(r["ssim"]) <= 1
        assert float(r["params"]) > 0 and float(r["train_img_per_s"]) > 0 and float(r["fid_recon"]) > 0
        assert 0.1 < float(r["probe_acc"]) <= 1
    assert float(rows["vae"]["nll_iwae"]) > 0 and float(rows["vae"]["fid_samples"]) > 0
    assert rows["ae"]["nll_iwae"] == ""  # no likelihood for an AE
    assert 0 < float(rows["pca-2"]["mse"]) < 0.2
    md = (out / "leaderboard.md").read_text()
    assert "| pca-2 |" in md and "aekit bench --dataset digits" in md
    assert (out / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, message", [
    (["--models", "ae,nope"], "unknown model(s) nope"),
    (["--models", "ae", "--epochs", "0"], "--epochs: expected a whole number >= 1"),
])
def test_bench_bad_inputs_exit_2_with_one_line(tmp_path, capsys, argv, message):
    try:
        code = main(["bench", "--dataset", "digits", "--out", str(tmp_path / "b"), *argv])
    except SystemExit as exc:  # argparse's own one-line errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()
