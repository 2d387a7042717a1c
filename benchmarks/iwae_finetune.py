"""Does the IWAE-k objective still pay at the end of training (issue 16, the hvae record)? Fine-tune a finished run
for a few minutes on the k-sample bound, or on the ELBO for the same time, and score both on the same images.

    OMP_NUM_THREADS=1 python benchmarks/iwae_finetune.py bench/hvae-goal/run bench/hv/vk5 --iwae-k 5 --epochs 8
    OMP_NUM_THREADS=1 python benchmarks/iwae_finetune.py bench/hvae-goal/run bench/hv/vk1 --iwae-k 1 --epochs 24
    aekit evaluate bench/hv/vk5 --metrics nll --iwae-samples 5000 --binarize static --max-samples 1000

The run's weights and options are kept but ``iwae_k`` (and no KL warm-up); training is the engine's
(``aekit.fit``), on all 60,000 MNIST training images with dynamic binarisation, a fresh cosine schedule from
``--lr``, stopped by ``--minutes`` whichever objective runs. Results: docs/benchmarks.md, "The hierarchical
likelihood record".
"""

from __future__ import annotations

import argparse
import dataclasses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="the finished run to start from")
    p.add_argument("out", help="the fine-tuned run folder")
    p.add_argument("--iwae-k", type=int, required=True, help="1: the ELBO; K > 1: the K-sample bound")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--minutes", type=float, default=8.0, help="training time cap")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weight-ema", type=float, default=0.0, help="the engine's --weight-ema (0: off)")
    args = p.parse_args(argv)

    import torch

    import aekit

    torch.set_num_threads(args.threads)
    old = aekit.load_run(args.run).model
    model = aekit.build_model(old.name, config=dataclasses.replace(old.config, iwae_k=args.iwae_k, iwae_after=0,
                                                                  kl_warmup=0))
    model.load_state_dict(old.state_dict())
    data = aekit.load_data("mnist", val_fraction=0.0)
    cfg = aekit.TrainConfig(epochs=args.epochs, lr=args.lr, binarize="dynamic", max_minutes=args.minutes, patience=0,
                            progress=False, weight_ema=args.weight_ema)
    aekit.fit(model, data, cfg, args.out, data_options={"spec": "mnist", "val_fraction": 0.0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
