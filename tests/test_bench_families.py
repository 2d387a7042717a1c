"""`aekit bench` reports each family's own diagnostics (its Output.stats): the IWAE bound of `iwae` beside its
ELBO, the MMD of `wae-mmd`, the MI / total correlation / dimension-wise KL of `beta-tc-vae`, asked of the model,
never of its name."""

from __future__ import annotations

import csv
import shutil

import pytest

from aekit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = {"iwae": ("iwae_bound", "elbo"), "wae-mmd": ("mmd",), "beta-tc-vae": ("mi_nats", "tc_nats", "dim_kl_nats")}


@pytest.fixture(scope="module")
def board(trained_run, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-families")
    for name in FAMILIES:  # finished runs are re-used: the bench only evaluates them
        shutil.copytree(trained_run(name, 2, epochs=1), out / "runs" / name)
    assert main(["bench", "--dataset", "digits", "--models", ",".join(FAMILIES), "--latent-dim", "2", "--epochs", "1",
                 "--iwae-samples", "5", "--nll-samples", "20", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    rows = {r["model"]: r for r in csv.DictReader(open(out / "leaderboard.csv"))}
    return rows, (out / "leaderboard.md").read_text()


def test_each_family_reports_its_own_terms(board):
    rows, md = board
    for name, keys in FAMILIES.items():
        cell = rows[name]["model_stats"]
        for key in keys:
            if key != "elbo":  # the ELBO has its own column
                assert f"{key} " in cell, (name, key, cell)
                assert float(rows[name][key]) == pytest.approx(float(cell.split(f"{key} ")[1].split(",")[0]), rel=1e-3)
    assert "model's own stats" in md and "iwae_bound" in md and "tc_nats" in md
    assert "mmd" not in rows["beta-tc-vae"]["model_stats"]  # each row lists only its own model's stats


def test_the_numbers_mean_what_their_names_say(board):
    rows, _ = board
    iwae = rows["iwae"]
    # the train-k (5) IWAE bound is at least the ELBO (Burda et al. 2016, Theorem 1), up to sampling noise,
    # and the NLL column (IWAE-K on the first images) is the same kind of bound, negated
    assert float(iwae["iwae_bound"]) >= float(iwae["elbo"]) - 1.0
    assert float(iwae["nll_iwae"]) > 0 and float(iwae["iwae_bound"]) < 0
    assert float(rows["wae-mmd"]["mmd"]) >= -0.05  # an unbiased MMD^2 estimate: ~0 or above
    tc = rows["beta-tc-vae"]
    parts = sum(float(tc[k]) for k in ("mi_nats", "tc_nats", "dim_kl_nats"))
    assert parts == pytest.approx(float(tc["kl_nats"]), abs=1e-2)  # the three parts are the KL estimate
    assert rows["pca-2"]["model_stats"] == ""  # a baseline has no model stats
