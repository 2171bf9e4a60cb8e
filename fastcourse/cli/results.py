"""Commands on a finished run: predict, submit, views."""
from __future__ import annotations

import argparse
from pathlib import Path

from fastcourse.cli import arg, command
from fastcourse.errors import UsageError

PREDICT_ARGS = [
    arg("--tta", type=int, default=0, metavar="N",
        help="test-time augmentation: average N augmented predictions and the clean one (default 0)"),
    arg("--augment", metavar="NAME", help="augmentation for --tta / views (default: the run's own)"),
    arg("--batch-size", type=int, default=32, help="images per batch (default 32)"),
    arg("--classes", metavar="A,B,...",
        help="class names in the model's output order, when the run cannot tell them"),
    arg("--on-error", default="raise", choices=["raise", "skip"],
        help="an unreadable image: stop naming it (default), or leave it out"),
]


def _classes(args: argparse.Namespace):
    if not args.classes:
        return None
    names = [c.strip() for c in args.classes.split(",")]
    if not all(names):
        raise UsageError(f"--classes {args.classes!r}: give names separated by commas, e.g. cats,dogs")
    return names


def _check_numbers(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.tta < 0:
        raise UsageError(f"--tta {args.tta}: give 0 (no augmentation) or a positive number of passes")


@command("predict", "write a CSV of class probabilities for every image of a folder", [
    arg("run", help="run directory holding model.keras and config.yaml"),
    arg("folder", help="folder of images (searched recursively, predicted in sorted file order)"),
    arg("--out", help="CSV path (default RUN/predictions_FOLDERNAME.csv)"),
] + PREDICT_ARGS)
def predict(args: argparse.Namespace) -> int:
    from fastcourse.results.predict import predict_folder

    _check_numbers(args)
    preds = predict_folder(args.run, args.folder, tta=args.tta, batch_size=args.batch_size,
                           augment=args.augment, class_names=_classes(args),
                           on_error=args.on_error)
    path = preds.write_csv(args.out or Path(args.run) / f"predictions_{Path(args.folder).resolve().name}.csv")
    tta = f" (TTA: clean + {args.tta} augmented)" if args.tta else ""
    print(f"predicted {len(preds.filenames)} images{tta} -> {path}")
    return 0


@command("submit", "write a Kaggle submission (dogs vs cats or Statefarm) from a run or a predictions CSV", [
    arg("run", nargs="?", help="run directory (omit with --probs)"),
    arg("folder", nargs="?", help="the competition's test folder (omit with --probs)"),
    arg("--kind", required=True, choices=["dogscats", "statefarm"], help="which competition's format"),
    arg("--probs", metavar="CSV", help="use a CSV written by `fastcourse predict` instead of predicting"),
    arg("--out", help="submission path (default beside the run / CSV: submission_KIND.csv[.gz])"),
] + PREDICT_ARGS)
def submit(args: argparse.Namespace) -> int:
    from fastcourse.results.predict import list_images, load_run, predict_folder, read_predictions
    from fastcourse.results.submission import check_kind, check_path, default_name, submission_frame, write_submission

    _check_numbers(args)
    if args.out:
        check_path(args.kind, args.out)
    if args.probs:
        if args.run or args.folder:
            raise UsageError("give either RUN FOLDER or --probs CSV, not both")
        preds = read_predictions(args.probs)
        where = Path(args.probs).parent
    else:
        if not (args.run and args.folder):
            raise UsageError("give RUN and FOLDER (a run directory and the test images), or --probs CSV")
        run = load_run(args.run, _classes(args))
        check_kind(args.kind, run.class_names, list_images(args.folder))  # before a long prediction
        preds = predict_folder(run, args.folder, tta=args.tta, batch_size=args.batch_size, augment=args.augment,
                               on_error=args.on_error)
        where = Path(args.run)
    frame = submission_frame(args.kind, preds.filenames, preds.probs, preds.class_names)
    path = write_submission(frame, args.out or where / default_name(args.kind), args.kind)
    print(f"{args.kind} submission: {len(frame)} rows, columns {','.join(frame.columns)} -> {path}")
    return 0


@command("views", "PNG grids of a run's results on a labelled folder (correct, incorrect, uncertain, ...)", [
    arg("run", help="run directory holding model.keras and config.yaml"),
    arg("folder", help="labelled folder: one subfolder per class (e.g. data/dogscats/valid)"),
    arg("--out", help="folder for the PNGs (default RUN/views)"),
    arg("-n", type=int, default=4, help="images per view (per class for the per-class views; default 4)"),
    arg("--seed", type=int, default=0, help="seed of the random views and of the augmented copies"),
    arg("--index", type=int, default=0, help="which image (in file order) to show augmented (default 0)"),
    arg("--uncertainty", default="auto", choices=["auto", "entropy", "max_prob", "half"],
        help="how 'most uncertain' is measured (auto: |p-0.5| for two classes, else entropy)"),
    arg("--probs", metavar="CSV", help="use a CSV that `fastcourse predict` wrote for FOLDER instead of predicting"),
] + PREDICT_ARGS)
def views(args: argparse.Namespace) -> int:
    import numpy as np

    from fastcourse import io
    from fastcourse.errors import DataError
    from fastcourse.results.predict import image_dataset, labels_of, load_run, predict_folder, read_predictions
    from fastcourse.results.views import write_views

    _check_numbers(args)
    if args.n < 1:
        raise UsageError(f"-n {args.n}: must be at least 1")
    run = load_run(args.run, _classes(args))
    if args.probs:
        preds = read_predictions(args.probs)
        if preds.class_names != run.class_names:
            raise UsageError(f"{args.probs}: its columns {preds.class_names} are not the run's classes "
                             f"{run.class_names}")
        missing = [f for f in preds.filenames if not (Path(args.folder) / f).is_file()]
        if missing:
            raise DataError(f"{args.probs}: {missing[0]} is not in {args.folder} ({len(missing)} missing); "
                            "pass the folder the CSV was predicted from")
        preds.labels = labels_of(preds.filenames, run.class_names, args.folder)
    else:
        preds = predict_folder(run, args.folder, tta=args.tta, batch_size=args.batch_size, augment=args.augment,
                               labelled=True, on_error=args.on_error)
    if not 0 <= args.index < len(preds.filenames):
        raise UsageError(f"--index {args.index}: {args.folder} has {len(preds.filenames)} images")
    augmenter = run.augmenter(args.augment)
    shown = None
    if augmenter is not None:
        name = preds.filenames[args.index]
        image = next(iter(image_dataset(args.folder, [name], run.image_shape, 1)))[0]
        shown = (name, np.asarray(image))
    out = Path(args.out) if args.out else Path(args.run) / "views"
    summary = write_views(args.folder, preds.filenames, preds.labels, preds.probs, preds.class_names, out,
                          n=args.n, seed=args.seed, augment=augmenter, augment_image=shown,
                          uncertainty_by=args.uncertainty)
    io.write_json(out / "views.json", summary)
    print(f"accuracy {summary['accuracy']:.4f} on {len(preds.filenames)} images; "
          f"{len(summary['files'])} views -> {out}")
    if augmenter is None:
        print("no augmented.png: the run has `augment: none` (pass --augment NAME to draw one)")
    return 0
