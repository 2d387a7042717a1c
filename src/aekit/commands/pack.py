"""``aekit pack SOURCE OUT``: write any image source as uint8 .npy shards + a manifest (``aekit.data.packed``)."""

from __future__ import annotations

import argparse

from . import _common as c

ORDER = 1  # after the core commands: packing is how data larger than RAM gets to `aekit train`


def add_commands(sub) -> None:
    p = sub.add_parser("pack", help="write a data set as uint8 .npy shards + manifest, streamed when training",
                       description="Pack SOURCE (any --dataset spec: mnist, quickdraw:cat,dog, a folder, .npy/.npz, "
                                   "IDX files, a pack) into the new folder OUT: uint8 .npy shards, labels, and a "
                                   "manifest.json with each shard's count, shape, dtype and sha256. Train, evaluate, "
                                   "encode, plot and serve read it with --dataset OUT (or packed:OUT), a shard at a "
                                   "time. The source's own test split is kept (as the last images); the rest is "
                                   "shuffled once with --seed, so class-sorted sources give mixed shards.")
    p.add_argument("source", metavar="SOURCE", help="data spec, as for --dataset")
    p.add_argument("out", metavar="OUT", help="the new folder to write (must not exist)")
    p.add_argument("--shard-size", type=c.positive_int, default=None, metavar="N",
                   help="images per shard (default: about 32 MiB of pixels; training holds about five shards "
                        "in memory)")
    p.add_argument("--image-size", type=c.size, default=None, metavar="H[xW]", help="resize the images")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="convert to 1 or 3 channels")
    p.add_argument("--seed", type=c.seed, default=0, help="seed of the shuffle (and of a source's sampling)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="keep the source's order (a class-sorted source then gives one-class shards)")
    g = p.add_argument_group("source options")
    g.add_argument("--data-dir", default=None, help="where named datasets are found (env AEKIT_DATA)")
    g.add_argument("--max-per-class", type=c.positive_int, default=None, metavar="N",
                   help="subsample each class (quickdraw)")
    g.add_argument("--shape", type=c.shape3, default=None, metavar="CxHxW", help="shape of flat N x D arrays")
    g.add_argument("--download", action="store_true", default=None, help="download mnist/fashion-mnist when missing")
    p.set_defaults(func=cmd_pack)


def cmd_pack(args: argparse.Namespace) -> int:
    import time

    from ..data.packed import describe_pack, pack

    options = {k: getattr(args, k) for k in ("max_per_class", "shape", "download") if getattr(args, k) is not None}
    t = time.perf_counter()
    manifest = pack(args.source, args.out, shard_size=args.shard_size, shuffle=args.shuffle, seed=args.seed,
                    image_size=args.image_size, channels=args.channels, data_dir=args.data_dir, **options)
    print(f"packed {args.source}: {describe_pack(manifest)} -> {args.out} ({time.perf_counter() - t:.1f} s)")
    print(f"next: aekit train --dataset {args.out} --model ae")
    return 0
