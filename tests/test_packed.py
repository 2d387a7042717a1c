"""Packed data (issue 15, data larger than RAM): `aekit pack` writes uint8 .npy shards + a manifest from any
source, the pack reads back equal to its source, a damaged pack is refused naming the shard, the shard stream
is seeded, resumable and split between DDP ranks by shards, and training on a pack four times larger than the
memory it may add completes an epoch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aekit.cli import main
from aekit.data import load_data
from aekit.data.packed import Pack, write_pack
from aekit.errors import ConfigError, DataError
from data_helpers import cli, one_line


@pytest.fixture(scope="module")
def digits_pack(tmp_path_factory, data_dir) -> Path:
    """scikit-learn's digits packed into 18 shards of 100 images (so the stream has shards to order)."""
    out = tmp_path_factory.mktemp("packs") / "digits"
    assert main(["pack", "digits", str(out), "--shard-size", "100"]) == 0
    return out


@pytest.fixture(scope="module")
def mnist_pack(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("packs") / "mnist"
    assert main(["pack", "mnist", str(out), "--data-dir", str(data_dir)]) == 0
    return out


# ---------------------------------------------------------------- writing and reading back


def test_manifest_lists_every_shard_with_its_sha256(digits_pack):
    m = json.loads((digits_pack / "manifest.json").read_text())
    assert m["format"] == "aekit-pack" and m["count"] == 1797 and m["shape"] == [1, 8, 8] and m["test"] is None
    assert [s["count"] for s in m["shards"]] == [100] * 17 + [97]
    start = 0
    for s in m["shards"]:
        f = digits_pack / s["file"]
        assert hashlib.sha256(f.read_bytes()).hexdigest() == s["sha256"] and f.stat().st_size == s["bytes"]
        assert s["start"] == start and s["shape"] == [s["count"], 1, 8, 8] and s["dtype"] == "uint8"
        a = np.load(f)  # a plain .npy: any NumPy reads a shard
        assert a.dtype == np.uint8 and a.shape == tuple(s["shape"])
        start += s["count"]
    assert not [p for p in digits_pack.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_pack_round_trip_equals_the_source(digits_pack):
    src, d = load_data("digits"), load_data(str(digits_pack))
    assert type(d).__name__ == "PackedData" and d.shape == src.shape and d.class_names == src.class_names
    order = Pack(digits_pack).order()
    assert sorted(order.tolist()) == list(range(len(src)))  # a permutation: every image once
    assert not np.array_equal(order, np.arange(len(src)))  # shuffled at pack time
    assert torch.equal(d.split("all")[0], src.images[order]) and torch.equal(d.labels, src.labels[order])
    x, y = next(d.batches("test", 16))  # ImageData's batch interface, streamed
    assert x.dtype == torch.float32 and x.shape == (16, 1, 8, 8) and torch.equal(y, d.split("test")[1][:16])
    same = load_data(f"packed:{digits_pack}", seed=3)  # the named form reads the same pack
    assert torch.equal(same.split("val")[0], load_data(str(digits_pack), seed=3).split("val")[0])


def test_unshuffled_pack_gives_the_sources_splits(tmp_path, digits_pack):
    """--no-shuffle keeps the source's order, so the seeded carve picks the same images as from the source."""
    out = tmp_path / "plain"
    assert main(["pack", str(digits_pack), str(out), "--no-shuffle", "--shard-size", "512"]) == 0  # a pack repacks
    packed, src = load_data(str(out), seed=5), load_data(str(digits_pack), seed=5)
    for split in ("train", "val", "test"):
        x, y = packed.split(split)
        assert torch.equal(x, src.split(split)[0]) and torch.equal(y, src.split(split)[1])


def test_mnist_pack_keeps_its_test_split(mnist_pack, data_dir):
    src, d = load_data("mnist", data_dir=data_dir), load_data(str(mnist_pack))
    m = json.loads((mnist_pack / "manifest.json").read_text())
    assert m["test"] == {"start": 60000, "count": 10000}
    assert all(s["start"] + s["count"] <= 60000 or s["start"] >= 60000 for s in m["shards"])  # no shard straddles
    xt, yt = d.split("test")
    assert torch.equal(xt, src.split("test")[0]) and torch.equal(yt, src.split("test")[1])  # same images, same order
    assert {k: len(v) for k, v in d.splits.items()} == {k: len(v) for k, v in src.splits.items()}
    order = Pack(mnist_pack).order()
    assert torch.equal(d.split("train")[0], src.images[order[d.splits["train"].numpy()]])


def test_resize_and_channels_apply_when_packing(tmp_path):
    out = tmp_path / "rgb"
    assert main(["pack", "digits", str(out), "--image-size", "12x10", "--channels", "3"]) == 0
    d = load_data(str(out))
    assert d.shape == (3, 12, 10)
    one_line(DataError, lambda: load_data(str(out), image_size=(8, 8)), "packed at a fixed size", "aekit pack")


def test_pack_refuses_bad_input(tmp_path, digits_pack, capsys):
    code, _, err = cli(capsys, "pack", "digits", digits_pack)
    assert code == 2 and "already exists" in err and err.count("\n") == 1
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n1,2,0\n3,4,1\n")
    code, _, err = cli(capsys, "pack", f"table:{csv}", tmp_path / "t")
    assert code == 2 and "not images" in err and not (tmp_path / "t").exists()
    code, _, err = cli(capsys, "pack", "digits", tmp_path / "z", "--shard-size", "0")
    assert code == 2 and "--shard-size" in err
    one_line(DataError, lambda: load_data("packed:" + str(tmp_path / "nope")), "no such folder", "aekit pack")
    one_line(DataError, lambda: load_data(f"packed:{tmp_path}"), "manifest.json", "aekit pack")


# ---------------------------------------------------------------- damaged packs


@pytest.fixture
def pack_copy(digits_pack, tmp_path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(digits_pack, dest)
    return dest


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shard=st.integers(0, 17), where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255))
def test_any_changed_byte_is_refused_naming_the_shard(digits_pack, tmp_path, shard, where, flip):
    """One byte of one shard changed (header or pixels): reading it is a one-line DataError naming that shard."""
    dest = tmp_path / f"d{shard}-{flip}-{where}"
    shutil.copytree(digits_pack, dest)
    f = dest / f"shard-{shard:05d}.npy"
    raw = bytearray(f.read_bytes())
    raw[int(where * len(raw))] ^= flip
    f.write_bytes(bytes(raw))
    msg = one_line(DataError, lambda: load_data(str(dest)).split("all"), f"shard-{shard:05d}.npy", "damaged")
    assert "aekit pack" in msg
    shutil.rmtree(dest)


def test_missing_truncated_or_garbled_pack_refused(pack_copy):
    f = pack_copy / "shard-00003.npy"
    f.write_bytes(f.read_bytes()[:-10])
    one_line(DataError, lambda: load_data(str(pack_copy)), "shard-00003.npy", "damaged")  # caught on open
    f.unlink()
    one_line(DataError, lambda: load_data(str(pack_copy)), "shard-00003.npy", "missing")
    (pack_copy / "manifest.json").write_text("{ not json")
    one_line(DataError, lambda: load_data(str(pack_copy)), "manifest.json", "aekit pack")
    (pack_copy / "manifest.json").write_text(json.dumps({"format": "aekit-pack", "version": 1, "shards": "x"}))
    one_line(DataError, lambda: load_data(str(pack_copy)), "malformed")


def test_training_on_a_damaged_shard_stops_with_one_line(pack_copy, tmp_path, capsys):
    f = pack_copy / "shard-00007.npy"
    raw = bytearray(f.read_bytes())
    raw[-5] ^= 1
    f.write_bytes(bytes(raw))
    code, _, err = cli(capsys, "train", "--model", "ae", "--dataset", pack_copy, "--epochs", "1", "--hidden-dims", "8",
                       "--no-progress", "--out", tmp_path / "run")
    assert code == 2 and "shard-00007.npy is damaged" in err and "Traceback" not in err


# ---------------------------------------------------------------- the shard stream


def train_loader(d, batch_size=64, seed=0, context=lambda: (0, 0, 1), **kw):
    return d.batch_loader("train", batch_size, shuffle=True, seed=seed, context=context, **kw)


def test_shuffle_is_seeded_differs_by_epoch_and_covers_the_split(digits_pack):
    d = load_data(str(digits_pack))
    train = d.splits["train"].numpy()
    a, b = train_loader(d), train_loader(d)
    e0, e1 = a.plan(0), a.plan(1)
    assert np.array_equal(e0, b.plan(0))  # same seed, same epoch: same order
    assert not np.array_equal(e0, e1) and not np.array_equal(e0, train_loader(d, seed=1).plan(0))
    for order in (e0, e1):
        assert np.array_equal(np.sort(order), train)  # every train image once, nothing else
    # the batches are the images of the plan, in that order, as floats in [0, 1]
    batches = list(a)
    x = torch.cat([x for x, _ in batches])
    assert torch.equal(x, d.images[e0].float() / 255) and torch.equal(torch.cat([y for _, y in batches]), d.labels[e0])
    assert [len(x) for x, _ in batches] == [64] * (len(train) // 64) + [len(train) % 64]


@pytest.mark.parametrize("binarize", ["none", "dynamic", "static"])
def test_resume_mid_epoch_gives_the_rest_of_the_epoch(digits_pack, binarize):
    d = load_data(str(digits_pack))

    def train_loader(d, context, **kw):
        return d.batch_loader("train", 64, shuffle=True, seed=0, context=context, binarize=binarize, **kw)

    full = [x for x, _ in train_loader(d, context=lambda: (2, 0, 1))]
    first = train_loader(d, context=lambda: (2, 0, 1))
    it = iter(first)
    for _ in range(5):
        next(it)
    state = first.state_dict()
    assert state == {"epoch": 2, "batch": 5}
    again = train_loader(d, context=lambda: (2, 0, 1))
    again.load_state_dict(state)
    rest = [x for x, _ in again]
    assert len(rest) == len(full) - 5 and all(torch.equal(u, v) for u, v in zip(rest, full[5:]))
    assert len(list(again)) == len(full)  # the state is used once: the next pass is a whole epoch
    other = train_loader(d, context=lambda: (3, 0, 1))
    other.load_state_dict(state)  # a state of another epoch (an end-of-epoch checkpoint) starts the epoch afresh
    assert len(list(other)) == len(full)


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_reads_its_own_shards(digits_pack, world):
    d = load_data(str(digits_pack))
    pack = Pack(digits_pack)
    plans = [train_loader(d, context=lambda r=r: (1, r, world)).plan(1, r, world) for r in range(world)]
    assert len({len(p) for p in plans}) == 1  # equal shares: no rank waits on a collective
    assert len({len(train_loader(d, context=lambda r=r: (1, r, world))) for r in range(world)}) == 1
    allp = np.concatenate(plans)
    assert len(np.unique(allp)) == len(allp) and len(allp) > len(d.splits["train"]) - world
    shards = [set(pack.shard_of(p).tolist()) for p in plans]
    for r in range(world - 1):  # neighbours share at most the shuffle group (2 shards) cut by their boundary
        assert len(shards[r] & shards[r + 1]) <= 2, shards
    assert sum(len(s) for s in shards) <= len(pack.shards) + 2 * (world - 1)


def test_dataloader_workers_keep_the_order(digits_pack):
    d = load_data(str(digits_pack))
    direct = list(train_loader(d))
    loader = torch.utils.data.DataLoader(train_loader(d), batch_size=None, num_workers=2)
    got = list(loader)
    assert len(got) == len(direct) and all(torch.equal(a[0], b[0]) for a, b in zip(got, direct))


def test_the_stream_holds_a_few_shards(digits_pack, monkeypatch):
    """A shard is read when the stream first needs it and let go after its last image: count the shard arrays
    alive at each batch (weak references to what the pack handed out)."""
    import weakref

    d = load_data(str(digits_pack))
    alive: set[int] = set()
    read = d.pack.load_shard

    def tracked(i, writable=False):
        a = read(i, writable)
        alive.add(id(a))
        weakref.finalize(a, alive.discard, id(a))
        return a

    monkeypatch.setattr(d.pack, "load_shard", tracked)
    counts = [len(alive) for _ in train_loader(d, batch_size=32)]  # shuffle groups of 2 shards
    # the group and the shard read ahead; both groups (+1) for a batch that spans two: 18 shards in the pack
    assert max(counts) <= 5 and sorted(counts)[len(counts) // 2] <= 3 and not alive  # all let go at the end


# ---------------------------------------------------------------- the front ends


def test_train_evaluate_encode_plot_on_a_pack(digits_pack, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = cli(capsys, "--threads", "1", "train", "--model", "ae", "--dataset", f"packed:{digits_pack}",
                         "--epochs", "1", "--hidden-dims", "16", "--latent-dim", "2", "--no-progress", "--out", run)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["spec"] == f"packed:{digits_pack}"
    assert cli(capsys, "evaluate", run)[0] == 0
    assert cli(capsys, "encode", run, "--split", "test", "--out", tmp_path / "z.npy", "--no-progress",
               "--batch-size", "50")[0] == 0
    from aekit.explore import encode_all
    from aekit.train import load_run

    r = load_run(run)
    want = encode_all(r.model, r.data().split("test")[0]).reshape(-1, 2)  # in memory, the same images
    assert np.allclose(np.load(tmp_path / "z.npy"), want, atol=1e-6)
    assert cli(capsys, "plot", "latent", run)[0] == 0 and (run / "figures" / "latent.png").exists()


def test_resumed_packed_run_matches_an_unbroken_one(digits_pack, tmp_path):
    base = ["--threads", "1", "train", "--model", "ae", "--dataset", str(digits_pack), "--hidden-dims", "16",
            "--latent-dim", "2", "--no-progress", "--schedule", "none"]  # a cosine over 1 epoch is not one over 2
    assert main([*base, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert main(["--threads", "1", "train", "--resume", "--epochs", "2", "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0
    rows = [(tmp_path / r / "metrics.csv").read_text().splitlines() for r in "ab"]
    strip = [[",".join(line.split(",")[:-1]) for line in r] for r in rows]  # every column but seconds
    assert strip[0] == strip[1]


# ---------------------------------------------------------------- bounded memory

RSS_PROBE = r"""
import json, sys
from aekit.cli import main
small, big, out = sys.argv[1:4]
common = ["--threads", "1", "train", "--model", "ae", "--hidden-dims", "16", "--latent-dim", "2", "--loss", "mse",
          "--batch-size", "1024", "--epochs", "1", "--patience", "0", "--val-fraction", "0.05", "--no-progress"]
def peak():  # bytes. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking (pytest) process
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
assert main(common + ["--dataset", small, "--out", out + "/run-small"]) == 0
base = peak()
assert main(common + ["--dataset", big, "--out", out + "/run-big"]) == 0
print(json.dumps({"base": base, "peak": peak()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS (VmHWM) from /proc")
def test_training_on_a_pack_4x_larger_than_its_memory_bound(tmp_path, data_dir):
    """Training on a pack of S bytes adds less than S / 4 to the process's peak resident memory.

    A hard cap (RLIMIT_AS, a cgroup) would also count torch's and Lightning's own footprint (~0.4 GB of RSS,
    far more address space), so the bound is set against a baseline instead: one process first trains the
    same model one epoch on a tiny in-memory uint8 set (its peak RSS, VmHWM, is the baseline: imports,
    Lightning, allocator pools, a second run's own growth), then one epoch on a pack of S = 408 MB (MNIST tiled
    to 520k images, 2,500-image shards of 2 MB). The pack may raise the peak by at most S / 4 = 102 MB; it
    holds labels and split indices (16 bytes per image, 8 MB), the epoch's order (4 MB), what drawing the
    splits leaves in the allocator, and a few shards (measured: +55 to +60 MB). Reading the pack whole, or one
    memory map over all of it (touched pages count as resident), would add the full 408 MB and fail. ~25 s on
    2 cores: the tiny model (784-16-2, MSE, batches of 1024) keeps the epoch short; the data size is the
    point, not the model."""
    mnist = load_data("mnist", data_dir=data_dir)
    x, y = mnist.images.numpy(), mnist.labels.numpy()
    small = tmp_path / "small.npz"
    np.savez(small, x=x[:3000], y=y[:3000], x_test=x[60000:61000], y_test=y[60000:61000])
    n = 520_000
    big = tmp_path / "big"
    write_pack(big, lambda a, b: x[np.arange(a, b) % len(x)], n, y[np.arange(n) % len(x)], shape=(1, 28, 28),
               class_names=mnist.class_names, n_test=2000, shard_size=2500)
    size = sum(f.stat().st_size for f in big.glob("shard-*.npy"))
    assert size > 400e6
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", RSS_PROBE, str(small), str(big), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rss = json.loads(proc.stdout.strip().splitlines()[-1])
    added = rss["peak"] - rss["base"]
    rows = (tmp_path / "run-big" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # one whole epoch
    sizes = json.loads((tmp_path / "run-big" / "config.json").read_text())["data"]["sizes"]
    assert sizes["train"] + sizes["val"] == n - 2000
    print(f"pack {size / 1e6:.0f} MB; baseline peak RSS {rss['base'] / 1e6:.0f} MB; packed peak "
          f"{rss['peak'] / 1e6:.0f} MB (+{added / 1e6:.0f} MB)")
    assert added < size / 4, f"training on a {size / 1e6:.0f} MB pack added {added / 1e6:.0f} MB of resident memory"


def test_write_pack_checks_its_input(tmp_path):
    x = np.zeros((10, 1, 4, 4), np.uint8)
    one_line(DataError, lambda: write_pack(tmp_path / "a", lambda a, b: x[a:b], 10, np.zeros(9), shape=(1, 4, 4)),
             "10 images but 9 labels")
    one_line(DataError, lambda: write_pack(tmp_path / "b", lambda a, b: x[a:b].astype(np.float32), 10, np.zeros(10),
                                           shape=(1, 4, 4)), "uint8")
    one_line(ConfigError, lambda: write_pack(tmp_path / "c", lambda a, b: x[a:b], 10, np.zeros(10), shape=(1, 4, 4),
                                             shard_size=0), "shard_size")
    assert not list(tmp_path.iterdir())  # nothing half-written
