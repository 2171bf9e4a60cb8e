"""`fastcourse export RUN --format savedmodel|tflite [--out FOLDER]`: a run's model for serving,
with its preprocessing inside and its class names beside it (fastcourse.results.export)."""

from __future__ import annotations

import argparse

from fastcourse.cli import OUT_ARG, arg, command


@command(
    "export",
    "write a run's model for serving (SavedModel or TFLite), preprocessing inside, with its classes",
    [
        arg("run", help="run directory holding model.keras"),
        arg(
            "--format",
            default="savedmodel",
            metavar="FORMAT",
            help="savedmodel (TensorFlow Serving, tf.saved_model.load) or tflite (TFLite / LiteRT); default savedmodel",
        ),
        OUT_ARG,
    ],
)
def export_command(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from fastcourse import io
    from fastcourse.errors import RunError, UsageError
    from fastcourse.results.export import FORMATS, export_run, read_classes  # no TensorFlow until it runs

    if args.format not in FORMATS:  # checked here, not by argparse, for a one-line error
        raise UsageError(f"--format {args.format!r}: use one of {', '.join(FORMATS)}")
    run = Path(args.run)
    if not run.is_dir():
        raise UsageError(f"{run}: no such run directory; give the folder `fastcourse run` printed")
    if not (run / "model.keras").is_file():
        raise UsageError(f"{run}: not a finished run (no model.keras); give the folder `fastcourse run` printed")
    if args.out is not None:
        try:
            io.make_folder(args.out, "--out folder")  # before any model loads
        except RunError as exc:  # e.g. a path under a file: the user's to fix
            raise UsageError(f"{exc}; choose a writable folder") from None

    folder = export_run(run, args.format, args.out)
    info = json.loads((folder / "export.json").read_text())
    print(
        f"fastcourse: {args.format} export of {run}: {folder} (classes: {', '.join(read_classes(folder))}; "
        f"input float32 {info['input']['shape'][1:]} raw 0-255 pixels; largest difference from the Keras model "
        f"on {info['probe_images']} images {info['max_abs_diff_vs_keras']:.1e})"
    )
    return 0
