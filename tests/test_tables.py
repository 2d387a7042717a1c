"""Tables (N, D) of raw real-valued features as a data kind: readers, the per-feature scaler fit on the train
split only and saved with the run, missing values and bad columns, the odds: source, and a tabular run that
trains, evaluates, encodes and scores from the CLI with raw unscaled CSV input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aekit.cli import main
from aekit.data import TableData, load_data
from aekit.data.tables import STANDARD_SPAN, Scaler, read_table
from aekit.errors import ConfigError, DataError

torch.set_num_threads(1)  # several test processes share the cores

NAMES = ["price", "ratio", "square", "noise1", "noise2"]


def _raw(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features of wildly different scales (1000s, 0.01s, ...) sharing one latent factor; 10% outliers."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, 1))
    x = np.hstack([1000 + 50 * t, -3 + 0.01 * t, 7 * t**2, 100 + 5 * rng.normal(size=(n, 2))])
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, n // 10, replace=False)] = 1
    x[y == 1] += rng.normal(size=(int(y.sum()), 5)) * np.array([300, 0.06, 40, 30, 30])
    return x, y


def write_csv(path, x, names, labels=None, label_name="label"):
    head = names + ([label_name] if labels is not None else [])
    rows = [",".join(f"{v:.17g}" for v in r) + (f",{labels[i]}" if labels is not None else "") for i, r in enumerate(x)]
    path.write_text(",".join(head) + "\n" + "\n".join(rows) + "\n")
    return path


def one_line(exc_type, fn, *words):
    with pytest.raises(exc_type) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    return msg


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    x, y = _raw()
    return folder, x, y, write_csv(folder / "train.csv", x, NAMES, y)


# ---- loading and the scaler -----------------------------------------------------------------------------


def test_table_source_scales_per_feature_on_the_train_split_only(table):
    _, x, y, csv = table
    d = load_data(f"table:{csv}", val_fraction=0.2, seed=1)
    assert isinstance(d, TableData) and d.images.dtype == torch.float32 and d.shape == (1, 1, 5)
    assert d.features == NAMES and d.labels.tolist() == y.tolist() and d.class_names == ["0", "1"]
    train = x[d.splits["train"].numpy()]
    mean, std = train.mean(0), train.std(0)
    np.testing.assert_allclose(d.scaler.offset, mean - STANDARD_SPAN * std)
    np.testing.assert_allclose(d.scaler.scale, 2 * STANDARD_SPAN * std)
    np.testing.assert_allclose(d.values.numpy(), 0.5 + (x - mean) / std / (2 * STANDARD_SPAN), atol=1e-6)
    assert not np.allclose(d.scaler.offset, x.mean(0) - STANDARD_SPAN * x.std(0))  # val/test rows left out
    # the splits are the image sources' splits: deterministic from the seed
    again = load_data(f"table:{csv}", val_fraction=0.2, seed=1)
    assert all(torch.equal(again.splits[k], d.splits[k]) for k in d.splits) and torch.equal(again.images, d.images)
    mm = load_data(f"table:{csv}", scaler="minmax")
    v = mm.values.numpy()[mm.splits["train"].numpy()]
    np.testing.assert_allclose(v.min(0), 0, atol=1e-7)
    np.testing.assert_allclose(v.max(0), 1, atol=1e-6)
    back = mm.scaler.inverse(mm.values.numpy())  # back to the raw units, to float32 resolution of each range
    np.testing.assert_allclose((back - x) / mm.scaler.scale, 0, atol=1e-6)
    assert mm.describe()["kind"] == "table" and mm.record()["table"]["features"] == NAMES


def test_readers_agree(table, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from scipy.io import savemat

    _, x, y, csv = table
    ref = read_table(csv)
    assert ref.features == NAMES and ref.label_column == "label" and ref.named
    np.testing.assert_allclose(ref.values, x, rtol=1e-15)
    np.save(tmp_path / "t.npy", x)
    assert read_table(tmp_path / "t.npy").features == [f"f{j}" for j in range(5)]
    arrow = pa.table({**{n: x[:, j] for j, n in enumerate(NAMES)}, "label": y})
    pq.write_table(arrow, tmp_path / "t.parquet")
    savemat(tmp_path / "t.mat", {"X": x, "y": y[:, None]})

    class Frame:  # what a data frame offers (pandas and polars are not installed here)
        columns = [*NAMES, "label"]

        def __getitem__(self, name):
            return arrow.column(name).to_numpy()

        def __len__(self):
            return len(x)

    for source in (tmp_path / "t.npy", tmp_path / "t.parquet", tmp_path / "t.mat", arrow, Frame(), x, x.tolist()):
        t = read_table(source)
        np.testing.assert_allclose(t.values, x, rtol=1e-15)
    assert read_table(tmp_path / "t.parquet").labels.tolist() == y.tolist()
    assert read_table(tmp_path / "t.mat").labels.tolist() == y.tolist()
    d = load_data(f"table:{tmp_path / 't.parquet'}", label_column="price")  # another label column
    assert d.features == ["ratio", "square", "noise1", "noise2", "label"]


def test_bad_tables_are_one_line_errors(tmp_path):
    f = tmp_path / "t.csv"
    cases = [("a,b\n1,2\n3,\n", "column 'b' has a missing value (NaN) at line 3"),
             ("a,b\n1,2\n3,NA\n", "column 'b' has a missing value (NaN) at line 3"),
             ("a,b\n1,2\n3,inf\n", "column 'b' has an infinite value (inf) at line 3"),
             ("a,colour\n1,red\n3,blue\n", "column 'colour' is not numeric (line 2: 'red')"),
             ("a,b\n1,2\n3,4,5\n", "line 3 has 3 cells, expected 2"),
             ("a,a\n1,2\n", "column name 'a' appears more than once"),
             ("a,b\n", "no data rows"),
             ("label\n1\n", "no feature columns")]
    for text, words in cases:
        f.write_text(text)
        one_line(DataError, lambda: load_data(f"table:{f}"), str(f), words)
    f.write_text("a,b\n1,2\n")
    one_line(DataError, lambda: load_data(f"table:{f}", label_column="y"), "no column 'y' for the labels")
    one_line(DataError, lambda: load_data(f"table:{f}", image_size=(4, 4)), "not images")
    one_line(ConfigError, lambda: load_data(f"table:{f}", scaler="robust"), "scaler must be one of")
    one_line(DataError, lambda: load_data(f"table:{tmp_path / 'nope.csv'}"), "no such file")
    np.save(tmp_path / "cube.npy", np.zeros((4, 2, 2)))
    one_line(DataError, lambda: load_data(f"table:{tmp_path / 'cube.npy'}"), "must be a table (N, D)")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0], "city": ["x", "y"]}), tmp_path / "s.parquet")
    one_line(DataError, lambda: load_data(f"table:{tmp_path / 's.parquet'}"), "column 'city' is not numeric (string)")


def test_impute_uses_the_train_split_only(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3)) * [1, 10, 100]
    x[[4, 9, 30], 1] = np.nan
    f = write_csv(tmp_path / "m.csv", x, ["a", "b", "c"])
    for how, stat in (("mean", np.nanmean), ("median", np.nanmedian)):
        d = load_data(f"table:{f}", impute=how, val_fraction=0.2)
        train = x[d.splits["train"].numpy()]
        np.testing.assert_allclose(d.scaler.fill[1], stat(train[:, 1]))
        assert torch.isfinite(d.images).all()
    x[:, 2] = np.nan
    write_csv(f, x, ["a", "b", "c"])
    one_line(DataError, lambda: load_data(f"table:{f}", impute="mean"), "column 'c' has no value in the training split")


def test_odds_source_reads_a_mat_from_the_data_folder(tmp_path):
    from scipy.io import savemat

    x, y = _raw(120, seed=5)
    savemat(tmp_path / "toy.mat", {"X": x, "y": y[:, None].astype(float)})
    d = load_data("odds:toy", data_dir=tmp_path)
    assert isinstance(d, TableData) and d.class_names == ["normal", "outlier"] and d.labels.tolist() == y.tolist()
    one_line(DataError, lambda: load_data("odds:cardio", data_dir=tmp_path), "cardio.mat is not in", str(tmp_path),
             "odds.cs.stonybrook.edu")
    one_line(DataError, lambda: load_data("odds", data_dir=tmp_path), "odds:cardio")


def test_scaler_round_trip_and_damage():
    x = np.random.default_rng(0).normal(size=(20, 3))
    s = Scaler.fit(x, "standard")
    back = Scaler.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(back.transform(x), s.transform(x))
    one_line(DataError, lambda: Scaler.from_dict({"scaler": "standard", "offset": [0, 0], "scale": [1]}), "damaged")


# ---- a tabular run through the CLI ---------------------------------------------------------------------


def _fail(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit: error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def table_run(table):
    folder, *_ , csv = table
    out = folder / "run"
    assert main(["train", "--model", "ae", "--dataset", f"table:{csv}", "--latent-dim", "2", "--hidden-dims", "16",
                 "--epochs", "15", "--lr", "0.01", "--batch-size", "32", "--schedule", "none",  # thresholds: constant lr
                 "--out", str(out), "--no-progress"]) == 0
    return out


def test_tabular_run_records_its_scaler_and_reloads(table_run, table):
    from aekit.train import load_run

    _, x, _, csv = table
    cfg = json.loads((table_run / "config.json").read_text())
    assert cfg["model"]["config"]["loss"] == "mse"  # real values: a Gaussian likelihood by default
    state = cfg["data"]["table"]
    assert cfg["data"]["kind"] == "table" and state["features"] == NAMES and state["label_column"] == "label"
    run = load_run(table_run)
    data = run.data()
    train = x[data.splits["train"].numpy()]
    np.testing.assert_allclose(state["offset"], train.mean(0) - STANDARD_SPAN * train.std(0))
    assert json.loads((table_run / "eval.json").read_text())["mse"] < 0.01  # it learned the tables
    # the training file changed: the run's own data no longer matches its scaler
    changed = table_run.parent / "changed"
    changed.mkdir()
    write_csv(changed / "train.csv", x * 2, NAMES)
    cfg2 = {**cfg, "data": {**cfg["data"], "spec": f"table:{changed / 'train.csv'}"}}
    from aekit.train.runs import Run

    one_line(DataError, lambda: Run(table_run, cfg2, run.model).data(), "changed since the run was trained")


def test_tabular_run_scores_and_encodes_raw_csv(table_run, table, tmp_path, capsys):
    import csv as csvmod

    from aekit.anomaly import AnomalyDetector, auroc
    from aekit.train import load_run

    _, x, y, _ = table
    run = load_run(table_run)
    test_idx = run.data().splits["test"].numpy()
    assert main(["anomaly", str(table_run), "--out", str(tmp_path / "own.csv"), "--no-progress"]) == 0
    own = list(csvmod.DictReader((tmp_path / "own.csv").open()))
    assert [int(r["index"]) for r in own] == test_idx.tolist()
    # the same rows as a raw CSV of the user's, columns in another order and the label column kept
    order = NAMES[::-1]
    write_csv(tmp_path / "new.csv", x[test_idx][:, [NAMES.index(n) for n in order]], order, y[test_idx])
    assert main(["anomaly", str(table_run), "--data", str(tmp_path / "new.csv"), "--out", str(tmp_path / "new_s.csv"),
                 "--no-progress"]) == 0
    new = list(csvmod.DictReader((tmp_path / "new_s.csv").open()))
    assert [r["score"] for r in new] == [r["score"] for r in own] and [r["label"] for r in new] == [r["label"] for r in own]
    # everything scored: the outliers (far off in raw units) rank high
    write_csv(tmp_path / "all.csv", x, NAMES)
    assert main(["anomaly", str(table_run), "--data", str(tmp_path / "all.csv"), "--out", str(tmp_path / "all_s.csv"),
                 "--no-progress"]) == 0
    scores = np.array([float(r["score"]) for r in csvmod.DictReader((tmp_path / "all_s.csv").open())])
    assert auroc(scores, y) > 0.9
    # the library gives the same numbers from raw rows (the run's saved scaler applied)
    det = AnomalyDetector(table_run).fit(x[run.data().splits["train"].numpy()])
    np.testing.assert_allclose(det.decision_function(x), scores, rtol=1e-5)
    # encode: codes of the raw CSV are the model's codes of the scaled rows
    assert main(["encode", str(table_run), "--data", str(tmp_path / "all.csv"), "--out", str(tmp_path / "z.npy"),
                 "--backend", "torch", "--no-progress"]) == 0
    scaled = torch.from_numpy(Scaler.from_dict(run.config["data"]["table"]).transform(x)).view(len(x), 1, 1, 5)
    with torch.no_grad():
        ref = run.model.encode(scaled).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), ref, rtol=1e-4, atol=1e-6)
    assert main(["evaluate", str(table_run)]) == 0

    # bad tables: one line, exit 2, nothing written
    path = str(table_run)
    (tmp_path / "nan.csv").write_text(",".join(NAMES) + "\n1,2,3,4,5\n1,2,,4,5\n")
    (tmp_path / "text.csv").write_text(",".join(NAMES) + "\n1,2,3,4,5\n1,2,three,4,5\n")
    (tmp_path / "ragged.csv").write_text(",".join(NAMES) + "\n1,2,3,4,5\n1,2,3,4\n")
    (tmp_path / "four.csv").write_text(",".join(NAMES[:4]) + "\n1,2,3,4\n")
    np.save(tmp_path / "six.npy", np.zeros((3, 6)))
    expect = {"nan.csv": "column 'square' has a missing value (NaN) at line 3",
              "text.csv": "column 'square' is not numeric (line 3: 'three')",
              "ragged.csv": "line 3 has 4 cells, expected 5",
              "four.csv": "has 4 features, but the run is expecting 5 features as input (lacks 'noise2')",
              "six.npy": "has 6 features, but the run is expecting 5"}
    for name, words in expect.items():
        for cmd in (["anomaly", path, "--out", str(tmp_path / "s.csv")], ["encode", path, "--out", str(tmp_path / "c.npy")]):
            assert words in _fail(cmd + ["--data", str(tmp_path / name)], capsys)
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "c.npy").exists()
    assert "--shape applies to images" in _fail(["encode", path, "--shape", "1x1x5", "--out", str(tmp_path / "c.npy")], capsys)


def test_odds_bench_cli(tmp_path, capsys):
    from scipy.io import savemat

    for name, seed in (("toy", 1), ("toy2", 2)):
        x, y = _raw(200, seed=seed)
        savemat(tmp_path / f"{name}.mat", {"X": x, "y": y[:, None].astype(float)})
    out, md = tmp_path / "b.json", tmp_path / "b.md"
    argv = ["anomaly-bench", "--dataset", "odds:toy,toy2", "--data-dir", str(tmp_path), "--model", "ae",
            "--epochs", "5", "--latent-dim", "2", "--seeds", "2", "--lr", "0.01"]
    assert main(argv + ["--out", str(out), "--markdown", str(md)]) == 0
    result = json.loads(out.read_text())
    assert set(result["datasets"]) == {"toy", "toy2"} and result["settings"]["seeds"] == 2
    for d in result["datasets"].values():
        m = d["models"]["ae"]
        assert len(m["roc_auc"]) == 2 and m["roc_auc_mean"] == pytest.approx(np.mean(m["roc_auc"]), abs=1e-4)
        assert m["roc_auc_mean"] > 0.8 and 0 <= m["prn_mean"] <= 1  # the far-off rows are found
    assert "| toy (200, 5, 10.0%) |" in md.read_text() and "**mean**" in md.read_text()
    # a missing table is refused before any training, and nothing is written
    err = _fail(["anomaly-bench", "--dataset", "odds:toy,cardio", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "c.json")], capsys)
    assert "cardio.mat is not in" in err and not (tmp_path / "c.json").exists()
    assert "needs a VAE" in _fail(argv + ["--score", "elbo", "--out", str(tmp_path / "c.json")], capsys)
    assert not (tmp_path / "c.json").exists()
