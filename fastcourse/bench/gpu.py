"""`--gpu` (`make bench-gpu`): the full ensemble on one GPU."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from fastcourse.bench.recipe import course_model

GPU_SKIP = "bench --gpu: no GPU on this machine; skipped (the 6 x 35-epoch ensemble with mixed_float16 needs one)"


def gpu_ensemble(
    dataset: str = "fashion_mnist",
    members: int = 6,
    epochs: int = 35,
    seed: int = 0,
    batch_size: int = 256,
    max_lr: float = 6e-3,
) -> Optional[dict]:
    """6 x 35 epochs of the batchnorm + dropout CNN with the course augmentation, mixed_float16,
    one-cycle, test probabilities averaged. Prints minutes and accuracy; without a GPU prints
    one line and returns None."""
    from fastcourse.train.precision import has_gpu

    if not has_gpu():
        print(GPU_SKIP, flush=True)
        return None
    from fastcourse.config import TrainConfig
    from fastcourse.data import DATASETS
    from fastcourse.data import augment as aug
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.devices import float32_outputs, training_scope
    from fastcourse.train.trainer import fit, predict, seed_everything

    data = DATASETS.get(dataset)(download=False)
    train = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        steps_per_execution=16,
        validate_each_epoch=False,
        precision="mixed_float16",
        schedule={"name": "one_cycle", "max_lr": max_lr},
    )
    source = ArraySource(data.x_train, data.y_train, data.num_classes)
    test = ArraySource(data.x_test, None, data.num_classes)
    start, probs, accs = time.perf_counter(), [], []
    for m in range(members):
        with training_scope("mixed_float16", "none"):
            seed_everything(seed + m, deterministic=False)
            model = float32_outputs(course_model(data))
            fit(model, source, train, seed + m, augment=aug.build("course", {}))
        probs.append(predict(model, test))
        accs.append(float((probs[-1].argmax(1) == data.y_test).mean()))
        print(
            f"bench --gpu: member {m + 1}/{members}: test accuracy {accs[-1]:.4f}, "
            f"{(time.perf_counter() - start) / 60:.1f} min so far",
            flush=True,
        )
    acc = float((np.mean(probs, 0).argmax(1) == data.y_test).mean())
    minutes = (time.perf_counter() - start) / 60
    print(
        f"bench --gpu: {data.name}, {members} x {epochs} epochs, mixed_float16: {minutes:.1f} minutes, "
        f"ensemble test accuracy {acc:.4f} (members {np.mean(accs):.4f} mean)",
        flush=True,
    )
    return {"dataset": data.name, "minutes": minutes, "ensemble_accuracy": acc, "member_accuracy": accs}
