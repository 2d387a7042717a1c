"""Packed data (issue 15): training throughput on a pack vs in-memory uint8, a shard reader vs a WebDataset-style
tar walk, and peak resident memory while training on packs of growing size.

    python benchmarks/packed.py [--epochs 3] [--reps 2] [--sizes 100,400,1200] [--shard-size 5000] [--skip-rss]

1. Throughput: `ae` (784-512-256-16 MLP, batch 128) one process, torch on 1 thread, MNIST (54k training
   images), trained by aekit's engine on the in-memory uint8 ImageData and on `aekit pack mnist` (default
   shards), interleaved ``--reps`` times so a busy machine slows both alike. Images/s from metrics.csv's
   epoch seconds (training + validation), first epoch dropped (the pack's first epoch also checks each
   shard's sha256; it is reported apart), and from the CPU time of the whole fit (less sensitive to other
   jobs on the cores; it includes the sha256 checks). Also the time of one epoch of batches alone (no model).
2. Readers: images/s of iterating MNIST's 60k training images as 128-image float batches from the pack, and
   of walking a WebDataset-layout tar of the same images (one raw-bytes member + one label member per sample,
   read with Python's tarfile as webdataset's reader does, without its decoders: a lower bound on its cost).
3. Peak RSS: for each pack size (MB, MNIST tiled, ``--shard-size`` images per shard), one subprocess trains a tiny model
   (784-16-2, MSE, batch 1024) one epoch on a 3,000-image in-memory set (baseline peak, VmHWM) and then one
   epoch on the pack; the table gives the peak added by the pack. For the 400 MB size the same images are
   also trained from a uint8 .npy (memory-mapped in memory): its touched pages count as resident.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import aekit
from aekit.data import load_data
from aekit.data.packed import pack, write_pack
from aekit.train import TrainConfig


def epochs_seconds(data, epochs: int) -> tuple[list[float], float]:
    """(wall seconds of each epoch from metrics.csv, CPU seconds of the whole fit)."""
    torch.manual_seed(0)
    model = aekit.build_model("ae", input_shape=(1, 28, 28), latent_dim=16)
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, patience=0, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        cpu = time.process_time()
        run = aekit.fit(model, data, cfg, out=f"{tmp}/run")
        return [r["seconds"] for r in run.metrics()], time.process_time() - cpu


def loader_seconds(make) -> float:
    """Best of three passes over one epoch of training batches (the data path alone, no model)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _x, _y in make():
            pass
        best = min(best, time.perf_counter() - t0)
    return best


def throughput(tmp: Path, epochs: int, reps: int) -> dict:
    from aekit.train.loader import BatchLoader

    mem = load_data("mnist")
    pack("mnist", tmp / "mnist-pack")
    n = len(mem.splits["train"])
    wall: dict[str, list] = {"memory": [], "packed": []}
    cpu: dict[str, list] = {"memory": [], "packed": []}
    for _ in range(reps):  # interleaved: a busy machine slows both alike
        for kind in ("memory", "packed"):
            data = mem if kind == "memory" else load_data(str(tmp / "mnist-pack"))  # fresh: shards unverified
            w, c = epochs_seconds(data, epochs)
            wall[kind].append(w)
            cpu[kind].append(c)
    rate = {k: n / statistics.median([s for r in v for s in r[1:]]) for k, v in wall.items()}
    cpu_rate = {k: epochs * n / statistics.median(v) for k, v in cpu.items()}
    first = {k: statistics.median([r[0] for r in v]) for k, v in wall.items()}
    packed = load_data(str(tmp / "mnist-pack"))
    loader = {"memory": loader_seconds(lambda: BatchLoader(mem, "train", 128, shuffle=True, seed=0)),
              "packed": loader_seconds(lambda: packed.batch_loader("train", 128, shuffle=True, seed=0))}
    return {"train_images": n, "img_per_s": rate, "ratio": rate["packed"] / rate["memory"],
            "cpu_img_per_s": cpu_rate, "cpu_ratio": cpu_rate["packed"] / cpu_rate["memory"],
            "first_epoch_s": first, "loader_epoch_s": loader, "epochs_s": wall, "fit_cpu_s": cpu}


def readers(tmp: Path) -> dict:
    d = load_data(str(tmp / "mnist-pack"), val_fraction=0.0)
    x, y = d.split("train")
    n = len(x)
    tar = tmp / "mnist-wds.tar"
    with tarfile.open(tar, "w") as t:  # the WebDataset layout: key.ext members, one sample after the other
        for i in range(n):
            for ext, payload in (("u8", x[i].numpy().tobytes()), ("cls", str(int(y[i])).encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
    manifest = json.loads((tmp / "mnist-pack" / "manifest.json").read_text())
    pack_bytes = sum(s["bytes"] for s in manifest["shards"] if s["start"] < n)  # the train pool's shards
    out = {"images": n, "tar_bytes": tar.stat().st_size, "pack_bytes": pack_bytes}
    best = {"pack": float("inf"), "tar": float("inf")}
    for _ in range(3):
        t0 = time.perf_counter()
        for xb, yb in d.batch_loader("train", 128, shuffle=True, seed=0):
            pass
        best["pack"] = min(best["pack"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        batch, labels = [], []
        with tarfile.open(tar, "r|") as t:
            for m in t:
                data = t.extractfile(m).read()
                if m.name.endswith(".u8"):
                    batch.append(np.frombuffer(data, np.uint8).reshape(1, 28, 28))
                else:
                    labels.append(int(data))
                if len(batch) == 128 and len(labels) == 128:
                    torch.from_numpy(np.stack(batch)).float().div_(255)
                    batch, labels = [], []
        best["tar"] = min(best["tar"], time.perf_counter() - t0)
    out["img_per_s"] = {k: n / v for k, v in best.items()}
    return out


PROBE = r"""
import json, sys
from aekit.cli import main
small, data, out = sys.argv[1:4]
common = ["--threads", "1", "train", "--model", "ae", "--hidden-dims", "16", "--latent-dim", "2", "--loss", "mse",
          "--batch-size", "1024", "--epochs", "1", "--patience", "0", "--val-fraction", "0.05", "--no-progress"]
def peak():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
assert main(common + ["--dataset", small, "--out", out + "/run-small"]) == 0
base = peak()
t = __import__("time").perf_counter()
assert main(common + ["--dataset", data, "--out", out + "/run-data"]) == 0
print(json.dumps({"base": base, "peak": peak(), "seconds": __import__("time").perf_counter() - t}))
"""


def rss(tmp: Path, sizes_mb: list[int], shard_size: int) -> list[dict]:
    mnist = load_data("mnist")
    x, y = mnist.images.numpy(), mnist.labels.numpy()
    small = tmp / "small.npz"
    np.savez(small, x=x[:3000], y=y[:3000], x_test=x[60000:61000], y_test=y[60000:61000])
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for mb in sizes_mb:
        n = int(mb * 1e6) // 784 + 2000
        big = tmp / f"pack-{mb}"
        write_pack(big, lambda a, b: x[np.arange(a, b) % len(x)], n, y[np.arange(n) % len(x)], shape=(1, 28, 28),
                   class_names=mnist.class_names, n_test=2000, shard_size=shard_size)
        kinds = [("pack", str(big))]
        if mb == 400:
            npy = tmp / "same.npy"
            np.save(npy, x[np.arange(n) % len(x)])
            kinds.append(("npy (memmap)", str(npy)))
        for kind, spec in kinds:
            with tempfile.TemporaryDirectory(dir=tmp) as out:
                p = subprocess.run([sys.executable, "-c", PROBE, str(small), spec, out], env=env, capture_output=True,
                                   text=True)
                if p.returncode:
                    raise SystemExit(p.stderr[-2000:])
                r = json.loads(p.stdout.strip().splitlines()[-1])
            size = (sum(f.stat().st_size for f in big.glob("shard-*.npy")) if kind == "pack"
                    else Path(spec).stat().st_size)
            rows.append({"kind": kind, "images": n, "shard_size": shard_size, "data_mb": size / 1e6,
                         "base_mb": r["base"] / 1e6,
                         "peak_mb": r["peak"] / 1e6, "added_mb": (r["peak"] - r["base"]) / 1e6,
                         "epoch_s": r["seconds"]})
            print(json.dumps(rows[-1]), flush=True)
        for f in [*big.glob("*")]:
            f.unlink()
        big.rmdir()
        (tmp / "same.npy").unlink(missing_ok=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sizes", default="100,400,1200", help="pack sizes in MB for the RSS table")
    ap.add_argument("--shard-size", type=int, default=5000, help="images per shard of the RSS packs")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if not args.skip_throughput:
            r = throughput(tmp, args.epochs, args.reps)
            print(json.dumps(r), flush=True)
            print(f"ae on MNIST ({r['train_images']} train images), wall: in memory {r['img_per_s']['memory']:,.0f} "
                  f"img/s | packed {r['img_per_s']['packed']:,.0f} img/s | ratio {r['ratio']:.3f}; CPU time: "
                  f"{r['cpu_img_per_s']['memory']:,.0f} vs {r['cpu_img_per_s']['packed']:,.0f} img/s, ratio "
                  f"{r['cpu_ratio']:.3f}; first epoch {r['first_epoch_s']['memory']:.2f} s vs "
                  f"{r['first_epoch_s']['packed']:.2f} s; batches alone (no model) "
                  f"{r['loader_epoch_s']['memory']:.3f} s vs {r['loader_epoch_s']['packed']:.3f} s per epoch",
                  flush=True)
            rd = readers(tmp)
            print(json.dumps(rd), flush=True)
            print(f"readers: pack {rd['img_per_s']['pack']:,.0f} img/s ({rd['pack_bytes'] / 1e6:.1f} MB) | "
                  f"WebDataset-layout tar {rd['img_per_s']['tar']:,.0f} img/s ({rd['tar_bytes'] / 1e6:.1f} MB)",
                  flush=True)
        if not args.skip_rss:
            for row in rss(tmp, [int(s) for s in args.sizes.split(",") if s], args.shard_size):
                print(f"{row['kind']}: {row['data_mb']:,.0f} MB of data -> peak RSS {row['peak_mb']:,.0f} MB "
                      f"(baseline {row['base_mb']:,.0f} MB, +{row['added_mb']:,.0f} MB); epoch {row['epoch_s']:.0f} s")


if __name__ == "__main__":
    main()
