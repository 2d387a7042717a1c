"""Tables, continued (issue 14): text columns one-hot encoded when asked (categories fit on the train split only,
saved with the run, re-applied by every command to raw CSV and Parquet files), and what `report` and `serve`
make of a tabular run (no image figures or endpoints; the per-feature error chart, the codes' figures)."""

from __future__ import annotations

import csv as csvmod
import json
import re

import numpy as np
import pytest
import torch

from aekit.errors import DataError
from data_helpers import cli, one_line, snapshot

torch.set_num_threads(1)  # several test processes share the cores

COLOURS = ["red", "green", "blue"]
RARE_ROW = 7  # the row given colour "violet" (rare=True): seed 0's split puts it outside the train split


def _rows(n: int = 240, seed: int = 0, rare: bool = False):
    """Two numeric features of very different scales, a colour that shifts them, and 10% outliers."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(COLOURS, n).astype(object)
    shift = np.array([COLOURS.index(c) for c in colour], dtype=float)
    x = np.stack([1000 + 50 * shift + rng.normal(size=n), 0.01 * shift + 0.001 * rng.normal(size=n)], axis=1)
    y = np.zeros(n, dtype=int)
    y[rng.choice(np.delete(np.arange(n), RARE_ROW), n // 10, replace=False)] = 1
    x[y == 1] += rng.normal(size=(int(y.sum()), 2)) * np.array([400, 0.1])
    if rare:
        colour[RARE_ROW] = "violet"
    return x, colour, y


def _write_csv(path, x, colour, y=None):
    lines = ["price,colour,ratio" + (",label" if y is not None else "")]
    lines += [f"{a:.17g},{c},{b:.17g}" + (f",{y[i]}" if y is not None else "") for i, (a, c, b) in
              enumerate(zip(x[:, 0], colour, x[:, 1]))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_parquet(path, x, colour):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # another column order than the CSV: columns are matched by name
    pq.write_table(pa.table({"ratio": x[:, 1], "price": x[:, 0], "colour": list(colour)}), path)
    return path


@pytest.fixture(scope="module")
def cat_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cat")
    x, colour, y = _rows()
    csv = _write_csv(folder / "train.csv", x, colour, y)
    out = folder / "run"
    from aekit.cli import main

    assert main(["train", "--model", "ae", "--dataset", f"table:{csv}", "--categorical", "onehot", "--latent-dim", "2",
                 "--hidden-dims", "16", "--epochs", "8", "--lr", "0.01", "--batch-size", "32", "--out", str(out),
                 "--no-progress", "--no-log-epochs"]) == 0
    return folder, out, x, colour, y


def test_onehot_is_fit_on_the_train_split_and_recorded(cat_run, capsys):
    from aekit.train import load_run

    folder, run_path, x, colour, _ = cat_run
    state = json.loads((run_path / "config.json").read_text())["data"]["table"]
    run = load_run(run_path)
    train = run.data().splits["train"].numpy()
    assert RARE_ROW not in train  # the seeded split the next lines are built on
    # categories come from the train split only: a category that only a test row has is refused, naming it (fit
    # on every row, the run would have trained)
    xr, cr, yr = _rows(rare=True)
    code, _, err = cli(capsys, "train", "--model", "ae", "--dataset", f"table:{_write_csv(folder / 'rare.csv', xr, cr, yr)}",
                       "--categorical", "onehot", "--epochs", "1", "--out", folder / "rare")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (folder / "rare").exists()
    assert "column 'colour' has category 'violet' at line 9 that the training split did not have" in err
    assert state["categories"] == {"colour": sorted(set(colour[train]))} == {"colour": ["blue", "green", "red"]}
    assert state["columns"] == ["price", "colour", "ratio"]
    assert state["features"] == ["price", "colour=blue", "colour=green", "colour=red", "ratio"]
    assert len(state["offset"]) == 5 and run.model.input_shape == (1, 1, 5)
    # the training data themselves, reloaded: the 0/1 columns are where the colours say
    data = run.data()
    raw = data.scaler.inverse(data.values.numpy())  # (N, 5) back in raw units
    np.testing.assert_allclose(raw[:, 1:4], (colour[:, None] == np.array(["blue", "green", "red"])) * 1.0, atol=1e-5)
    np.testing.assert_allclose(raw[:, [0, 4]], x, rtol=1e-4, atol=1e-6)  # float32 in between
    # without --categorical a text column is refused with the fix named
    code, _, err = cli(capsys, "train", "--model", "ae", "--dataset", f"table:{folder / 'train.csv'}", "--epochs", "1",
                       "--out", folder / "nope")
    assert code == 2 and "column 'colour' is not numeric (line 2:" in err and "--categorical" not in err
    assert "categorical: onehot" in err and len(err.strip().splitlines()) == 1 and not (folder / "nope").exists()


def test_every_command_applies_the_encoding_to_raw_csv_and_parquet(cat_run, tmp_path, capsys):
    from aekit.anomaly import AnomalyDetector, auroc
    from aekit.train import load_run

    _, run_path, x, colour, y = cat_run
    keep = np.arange(len(x))
    csv = _write_csv(tmp_path / "new.csv", x[keep], colour[keep])
    parquet = _write_parquet(tmp_path / "new.parquet", x[keep], colour[keep])
    for name, path in (("csv", csv), ("pq", parquet)):
        assert cli(capsys, "anomaly", run_path, "--data", path, "--out", tmp_path / f"{name}.csv", "--no-progress")[0] == 0
        assert cli(capsys, "encode", run_path, "--data", path, "--out", tmp_path / f"{name}.npy", "--backend", "torch",
                   "--no-progress")[0] == 0
    scores = {n: [r["score"] for r in csvmod.DictReader((tmp_path / f"{n}.csv").open())] for n in ("csv", "pq")}
    assert scores["csv"] == scores["pq"] and len(scores["csv"]) == len(keep)
    np.testing.assert_array_equal(np.load(tmp_path / "csv.npy"), np.load(tmp_path / "pq.npy"))
    assert auroc(np.array(scores["csv"], dtype=float), y[keep]) > 0.8  # the far-off rows rank high
    # the codes are the model's codes of the rows encoded by hand: colour -> 0/1 columns, then the scaler
    run = load_run(run_path)
    onehot = (colour[keep][:, None] == np.array(["blue", "green", "red"])) * 1.0
    rows = np.hstack([x[keep][:, :1], onehot, x[keep][:, 1:]])  # (N, 5) in the recorded feature order
    scaled = torch.from_numpy(run.data().scaler.transform(rows)).view(len(rows), 1, 1, 5)
    with torch.no_grad():
        np.testing.assert_allclose(np.load(tmp_path / "csv.npy"), run.model.encode(scaled).numpy(), rtol=1e-4, atol=1e-6)
    assert cli(capsys, "evaluate", run_path)[0] == 0
    # the library takes raw text columns too (the run's encoding), with the CLI's numbers
    det = AnomalyDetector(run_path).fit(_write_parquet(tmp_path / "t.parquet", x[keep][:50], colour[keep][:50]))
    np.testing.assert_allclose(det.decision_function(parquet), np.array(scores["pq"], dtype=float), rtol=1e-4)
    assert det.n_features_in_ == 3 and det.feature_names_ == json.loads((run_path / "config.json").read_text())[
        "data"]["table"]["features"]

    # bad input: one line, exit 2, nothing written
    _write_csv(tmp_path / "violet.csv", x[:10], _rows(rare=True)[1][:10])  # row 7 (line 9): colour "violet"
    (tmp_path / "empty.csv").write_text("price,colour,ratio\n1000,red,0.01\n1000,,0.01\n")
    _write_parquet(tmp_path / "purple.parquet", x[:3], ["red", "purple", "blue"])
    before = snapshot(tmp_path)
    expect = {"violet.csv": "column 'colour' has category 'violet' at line 9 that the training split did not have "
                            "(it knows 'blue', 'green', 'red')",
              "purple.parquet": "column 'colour' has category 'purple' at row 1",
              "empty.csv": "column 'colour' has a missing value"}
    for name, words in expect.items():
        for cmd in ("anomaly", "encode"):  # (evaluate scores the run's own table: above)
            code, _, err = cli(capsys, cmd, run_path, "--data", tmp_path / name, "--out", tmp_path / "o.npy")
            assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (cmd, name, err)
    assert snapshot(tmp_path) == before


def test_detector_one_hot_from_options():
    import pyarrow as pa

    from aekit.anomaly import AnomalyDetector

    x, colour, _ = _rows(80, seed=1)
    table = pa.table({"price": x[:, 0], "colour": list(colour), "ratio": x[:, 1]})
    one_line(DataError, lambda: AnomalyDetector(epochs=1).fit(table), "column 'colour' is not numeric (string)",
             "categorical: onehot")
    det = AnomalyDetector(model="ae", epochs=2, categorical="onehot", hidden_dims=(8,)).fit(table)
    assert det.n_features_in_ == 3 and list(det.feature_names_in_) == ["price", "colour", "ratio"]
    assert det.feature_names_ == ["price", "colour=blue", "colour=green", "colour=red", "ratio"]
    assert det.predict(table).shape == (80,)
    bad = pa.table({"price": [1000.0], "colour": ["teal"], "ratio": [0.0]})
    one_line(DataError, lambda: det.predict(bad), "column 'colour' has category 'teal' at row 0")


# ---- report and serve on a tabular run ---------------------------------------------------------------------


def test_report_shows_what_applies_to_a_table(cat_run, capsys):
    from aekit.report import CAPTIONS

    _, run_path, *_ = cat_run
    assert cli(capsys, "report", run_path, "--quick")[0] == 0
    html = (run_path / "report.html").read_text()
    shown = set(re.findall(r"<img alt='([\w-]+)'", html))
    skipped = dict(re.findall(r"<li><b>([\w-]+)</b>: ([^<]+)</li>", html))
    assert shown == {"latent", "density", "features", "curves", "defects"} and shown | set(skipped) == set(CAPTIONS)
    for kind in ("reconstruct", "sample", "manifold", "interpolate", "arithmetic", "traverse", "denoise", "swap",
                 "learned-inputs"):
        assert "is a table of 5 features: its rows are not pictures" in skipped[kind], kind
    assert "3 code dimensions" in skipped["slice3d"] and "no discrete codebook" in skipped["codes"]
    # the per-feature error chart's numbers: every encoded feature, raw-unit errors on the raw scale
    code, _, err = cli(capsys, "plot", "features", run_path, "--out", run_path / "f.png")
    assert code == 0, err
    numbers = json.loads((run_path / "f.json").read_text())
    assert numbers["features"][1:4] == ["colour=blue", "colour=green", "colour=red"]
    assert numbers["rmse_raw"][0] > 100 * numbers["rmse_raw"][4]  # price (1000s) against ratio (0.01s)
    code, _, err = cli(capsys, "plot", "reconstruct", run_path, "--out", run_path / "r.png")
    assert code == 2 and "its rows are not pictures" in err and not (run_path / "r.png").exists()


def test_serve_answers_info_and_refuses_images(cat_run):
    from fastapi.testclient import TestClient

    from aekit.serve.app import create_app
    from aekit.train import load_run

    _, run_path, *_ = cat_run
    client = TestClient(create_app(load_run(run_path), use_cache=False))
    info = client.get("/api/info").json()
    assert info["columns"] == ["price", "colour=blue", "colour=green", "colour=red", "ratio"]
    assert info["data_features"]["table"] is None and "not pictures" in info["data_features"]["images"]
    assert all("not pictures" in reason for reason in info["panels"].values())
    assert client.get("/api/map").status_code == 200
    item = client.get("/api/test/0").json()
    assert set(item["values"]) == set(info["columns"]) and item["values"]["price"] > 900  # raw units
    requests = [("get", "/api/test/0/image.png", {}), ("get", "/api/test/0/recon.png", {}), ("get", "/api/sample", {}),
                ("post", "/api/decode", {"json": {"z": [0.0, 0.0]}}), ("post", "/api/morph", {"json": {"a": 0, "b": 1}}),
                ("post", "/api/arithmetic", {"json": {"a": 0, "b": 1, "c": 2}}),
                ("post", "/api/upload", {"files": {"file": ("a.png", b"x")}})]
    for method, url, kw in requests:
        r = getattr(client, method)(url, **kw)
        assert r.status_code == 409 and "draws images" in r.json()["detail"] and "not pictures" in r.json()["detail"], url


def test_any_unseen_category_is_refused_in_one_line():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from aekit.data.tables import MISSING, OneHot, read_table

    onehot = OneHot(["price", "colour"], {"colour": sorted(COLOURS)})

    @settings(max_examples=60, deadline=None)
    @given(st.text(min_size=1, max_size=12))
    def check(value):
        cell = value.strip()
        if not cell or cell.lower() in MISSING or cell in COLOURS:
            return
        t = read_table(np.array([[1.0, "red"], [2.0, value]], dtype=object), text=frozenset({"f1"}))
        t.features = ["price", "colour"]
        t.text = {"colour": t.text["f1"]}
        msg = one_line(DataError, lambda: onehot.transform(t), f"column 'colour' has category {cell!r} at row 1")
        assert "it knows 'blue', 'green', 'red'" in msg

    check()
