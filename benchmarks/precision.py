"""fp32 against bf16-mixed training throughput of conv-ae on this machine's CPU, as a ratio within one process.

    python benchmarks/precision.py [--samples 1536] [--epochs 2] [--repeats 3] [--threads 1] [--json PATH]

Each repeat trains conv-ae (32,64,64,64 filters, 16-d code, batch 128, Adam) through aekit's engine
(``aekit.fit``) with ``--precision 32`` and with ``--precision bf16-mixed`` on the same MNIST images, the two in
alternating order, and the same module in a bare PyTorch loop (fp32, and under ``torch.autocast("cpu",
torch.bfloat16)``), so a slowdown is shown to be the hardware's and not the engine's. Images/s are over the
epochs after the first (a warm-up: oneDNN builds its kernels in the first steps). A busy machine slows both
precisions of a repeat alike; the ratio is the figure to read. The CPU's model, its bf16-related flags and the
load average are printed with the result: ``--precision auto`` (``aekit.train.hardware``) picks bf16-mixed only
where ``avx512_bf16`` or ``amx_bf16`` is among the flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch

import aekit
from aekit.data import load_data, to_float
from aekit.train import TrainConfig
from aekit.train.hardware import NATIVE_BF16_CPU_FLAGS, read_cpuinfo

FLAGS_SHOWN = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "avx512_fp16")


def build():
    torch.manual_seed(0)
    return aekit.build_model("conv-ae", input_shape=(1, 28, 28), latent_dim=16)


def engine_rate(data, n: int, precision: str, epochs: int) -> float:
    """Images/s of aekit's engine (epoch seconds from metrics.csv; the first epoch dropped)."""
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, patience=0, precision=precision, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        seconds = [r["seconds"] for r in aekit.fit(build(), data, cfg, out=f"{tmp}/run").metrics()]
    return n / statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def bare_rate(x: torch.Tensor, bf16: bool, steps: int, batch_size: int = 128) -> float:
    """Images/s of the module in the loop a PyTorch user writes (2 warm-up steps not timed)."""
    model = build()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    total, t0 = 0, 0.0
    for i in range(steps + 2):
        if i == 2:
            t0, total = time.perf_counter(), 0
        xb = x[torch.randint(len(x), (batch_size,), generator=g)]  # (B, 1, 28, 28)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(xb).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += len(xb)
    return total / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1536, help="MNIST training images (batch 128)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per engine run; the first is a warm-up")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bare-steps", type=int, default=8, help="timed steps of the bare loop per precision (0: skip)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    model_name, flags = read_cpuinfo()
    shown = [f for f in FLAGS_SHOWN if f in flags]
    native = any(f in flags for f in NATIVE_BF16_CPU_FLAGS)
    data = load_data("mnist", val_fraction=0.0, max_train_samples=args.samples)
    n = len(data.splits["train"])
    x = to_float(data.split("train")[0])  # (N, 1, 28, 28)
    load_before = os.getloadavg()
    print(f"CPU: {model_name or '?'} ({os.cpu_count()} cores); flags: {' '.join(shown) or '-'}; native bf16: {native}; "
          f"torch {torch.__version__} (capability {torch.backends.cpu.get_cpu_capability()}), {args.threads} thread(s)")
    print(f"conv-ae, {n} MNIST images, batch 128, {args.epochs} epochs per run (first dropped); "
          f"load average {load_before[0]:.2f} at the start")

    rows = []
    for r in range(args.repeats):
        order = ("32", "bf16-mixed") if r % 2 == 0 else ("bf16-mixed", "32")  # alternate: drift hits both alike
        rate = {p: engine_rate(data, n, p, args.epochs) for p in order}
        row = {"repeat": r, "engine_fp32": rate["32"], "engine_bf16": rate["bf16-mixed"],
               "engine_ratio": rate["32"] / rate["bf16-mixed"]}
        if args.bare_steps:
            b32, b16 = bare_rate(x, False, args.bare_steps), bare_rate(x, True, args.bare_steps)
            row.update(bare_fp32=b32, bare_bf16=b16, bare_ratio=b32 / b16)
        rows.append(row)
        bare = (f" | bare loop fp32 {row['bare_fp32']:,.0f}, bf16 autocast {row['bare_bf16']:,.0f} img/s "
                f"({row['bare_ratio']:.1f}x)") if args.bare_steps else ""
        print(f"repeat {r}: aekit fp32 {row['engine_fp32']:,.0f} img/s, bf16-mixed {row['engine_bf16']:,.0f} img/s "
              f"(fp32/bf16 {row['engine_ratio']:.1f}x){bare}", flush=True)
    load_after = os.getloadavg()
    ratio = statistics.median(r["engine_ratio"] for r in rows)
    print(f"median fp32/bf16-mixed ratio: {ratio:.1f}x; load average {load_after[0]:.2f} at the end")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpu": model_name, "flags": shown, "native_bf16": native, "torch": torch.__version__,
                       "threads": args.threads, "images": n, "epochs": args.epochs, "rows": rows,
                       "median_engine_ratio": ratio, "load_before": load_before, "load_after": load_after}, fh, indent=1)


if __name__ == "__main__":
    main()
