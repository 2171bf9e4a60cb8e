"""`fastcourse bench-features`: head training on cached conv features vs the same head on the
frozen full model, on the same generated image folder, in one run (lesson 3 saw 35x)."""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from fastcourse.cli import arg, command


@command("bench-features", "epochs/s of a dense head on cached VGG features vs on the frozen full model", [
    arg("--images", type=int, default=64, help="training images in the generated folder (default 64)"),
    arg("--size", type=int, default=64, help="image size (default 64)"),
    arg("--epochs", type=int, default=3, help="timed epochs per side; the first (tracing) is dropped"),
    arg("--batch-size", type=int, default=16),
    arg("--units", type=int, default=256, help="head width (default 256)"),
    arg("--folder", help="use this image folder instead of a generated one"),
])
def bench_features(args: argparse.Namespace) -> int:
    import numpy as np

    from fastcourse.config import TrainConfig
    from fastcourse.data.features import precompute_features
    from fastcourse.data.folders import open_folder
    from fastcourse.data.sources import FeaturePart, FeatureSource, FolderSource
    from fastcourse.data.synthetic import make_image_folder
    from fastcourse.models.heads import dense_head
    from fastcourse.models.surgery import attach_head, cut_model, set_trainable
    from fastcourse.models.vgg import vgg16
    from fastcourse.train.trainer import fit, seed_everything

    seed_everything(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder or make_image_folder(f"{tmp}/data", "dogscats", classes=2, per_class=args.images // 2,
                                                size=args.size, test=0)
        data = open_folder(root)
        files = data.split("train")
        size = (args.size, args.size)
        source = FolderSource(files.files, files.labels, data.num_classes, size)
        conv = cut_model(vgg16((*size, 3), include_top=False, weights=None), "block5_conv3")
        # trace once on one batch, so the figure is the steady-state throughput
        precompute_features(conv, source.take(args.batch_size), f"{tmp}/warm", batch_size=args.batch_size,
                            verbose=False)
        t0 = time.perf_counter()
        paths = precompute_features(conv, source, f"{tmp}/cache", batch_size=args.batch_size, desc="bench")
        precompute_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        precompute_features(conv, source, f"{tmp}/cache", batch_size=args.batch_size, desc="bench", verbose=False)
        reuse_s = time.perf_counter() - t0
        train = TrainConfig(epochs=args.epochs + 1, batch_size=args.batch_size, verbose=0,
                            validate_each_epoch=False, bn_recalibrate=0)
        head = dense_head(tuple(conv.output_shape[1:]), data.num_classes, units=args.units, dropout=0.5)
        cached = fit(head, FeatureSource([FeaturePart(p, files.labels) for p in paths], data.num_classes), train, 0)
        full = attach_head(conv, dense_head(tuple(conv.output_shape[1:]), data.num_classes, units=args.units,
                                            dropout=0.5))
        set_trainable(full, "head")
        frozen = fit(full, source, train, 0)
    cached_eps = 1.0 / float(np.median(cached.epoch_seconds[1:]))
    frozen_eps = 1.0 / float(np.median(frozen.epoch_seconds[1:]))
    print(json.dumps({
        "images": len(files), "image_size": args.size, "batch_size": args.batch_size, "timed_epochs": args.epochs,
        "precompute_images_per_s": round(len(files) / precompute_s, 1), "cache_reuse_s": round(reuse_s, 3),
        "cached_head_epochs_per_s": round(cached_eps, 2), "frozen_full_epochs_per_s": round(frozen_eps, 3),
        "speedup": round(cached_eps / frozen_eps, 1),
    }, indent=2))
    return 0
