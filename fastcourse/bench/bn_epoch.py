"""`bn_epoch`: what the true per-epoch figures cost. The trainer recomputes batchnorm statistics
before each epoch's validation (fastcourse.train.trainer.TrueValidation); this case trains the
course's batchnorm + dropout CNN through the trainer and reports that time as a share of the
epoch, with the per-epoch validation accuracies beside the final evaluation."""

from __future__ import annotations

import numpy as np

from fastcourse.bench.recipe import course_model
from fastcourse.bench.report import Row
from fastcourse.data import ArrayDataset

TARGET = 0.05  # at most 5% of an epoch


def bn_epoch_case(data: ArrayDataset, seed: int, epochs: int = 3, batch_size: int = 64) -> list[Row]:
    """Per-epoch recomputation overhead (% of the epoch's training time) on the middle epochs:
    the first also traces the probe, and the last does the full `train.bn_recalibrate`
    recomputation that fit() has always done once at the end."""
    from fastcourse.config import TrainConfig
    from fastcourse.data import augment as aug
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.devices import float32_outputs, training_scope
    from fastcourse.train.trainer import epoch_bn_batches, evaluate, fit, seed_everything

    epochs = max(3, int(epochs))
    train = TrainConfig(epochs=epochs, batch_size=batch_size, verbose=0)
    source = ArraySource(data.x_train, data.y_train, data.num_classes)
    valid = ArraySource(data.x_test, data.y_test, data.num_classes)
    with training_scope("auto", "none"):
        seed_everything(seed, deterministic=False)
        model = float32_outputs(course_model(data))
        result = fit(model, source, train, seed, augment=aug.build("course", {}), validation=valid)
        final = evaluate(model, valid)["accuracy"]
    bn_s, epoch_s = result.extra["bn_epoch_seconds"], result.epoch_seconds
    middle = [b / e for b, e in zip(bn_s[1:-1], epoch_s[1:-1])]
    share = float(np.median(middle))
    val = result.history["val_accuracy"]
    k = epoch_bn_batches(result.steps_per_epoch, train.bn_recalibrate)
    print(
        f"bench: per-epoch BN statistics ({k} batches of {batch_size}, {result.steps_per_epoch} steps an epoch): "
        f"{share:.1%} of an epoch ({'within' if share <= TARGET else 'NOT within'} the {TARGET:.0%} target); "
        f"val accuracy per epoch {', '.join(f'{v:.4f}' for v in val)}, final evaluation {final:.4f}",
        flush=True,
    )
    return [
        Row(
            "bn_epoch",
            f"true per-epoch figures: BN statistics from {k} batches before each validation",
            result.images_per_second,
            test_accuracy=final,
            seconds=float(np.median(epoch_s[1:-1])),
            notes=f"{share:.1%} of an epoch (target <= {TARGET:.0%}); first epoch (traces) {bn_s[0] / epoch_s[0]:.1%}",
            extra={
                "overhead_share": share,
                "bn_epoch_seconds": bn_s,
                "epoch_seconds": epoch_s,
                "val_accuracy": val,
                "final_accuracy": final,
                "batches": k,
            },
        )
    ]
