"""Commands on a finished run of any kind (array dataset or image folders): predict, submit, views.

Each takes `--out FOLDER` (default: the run directory) and prints the paths it wrote:
RUN/predictions_<folder>.csv, RUN/submission_<kind>.csv[.gz], RUN/views/*.png + views.json.
Without a FOLDER they work on the run's own data, decoded as in training: its evaluation split
(predict, views) or its test/ images (submit).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastcourse.cli import OUT_ARG, arg, command, out_folder
from fastcourse.errors import UsageError


def _tta_arg(text: str):
    """--tta's value: a number of augmented passes, or flip."""
    if text == "flip":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of augmented passes, or flip") from None


PREDICT_ARGS = [
    arg(
        "--tta",
        type=_tta_arg,
        default=0,
        metavar="N|flip",
        help="test-time augmentation: average N augmented predictions and the clean one, or with flip "
        "each image's and its mirror image's (clothes, photos; never digits) (default 0)",
    ),
    arg("--augment", metavar="NAME", help="augmentation for --tta / views (default: the run's own)"),
    arg("--batch-size", type=int, default=32, help="images per batch (default 32)"),
    arg("--classes", metavar="A,B,...", help="class names in the model's output order, when the run cannot tell them"),
    arg(
        "--on-error",
        default="raise",
        choices=["raise", "skip"],
        help="an unreadable image: stop naming it (default), or leave it out",
    ),
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
    from fastcourse.results.predict import check_tta

    check_tta(args.tta)


def _out(args: argparse.Namespace, default) -> Path:
    """The --out folder (checked before any model loads), default `default`; RUN must exist."""
    if args.run and not Path(args.run).is_dir():
        raise UsageError(f"{args.run}: no such run directory")
    return out_folder(args.out, default)


def _tta_note(args: argparse.Namespace) -> str:
    if args.tta == "flip":
        return " (TTA: the mean of each image and its mirror image)"
    return f" (TTA: clean + {args.tta} augmented)" if args.tta else ""


@command(
    "predict",
    "write a CSV of class probabilities for every image of a folder (or the run's eval split)",
    [
        arg("run", help="run directory holding model.keras and config.yaml"),
        arg(
            "folder",
            nargs="?",
            help="folder of images (searched recursively, predicted in sorted file order); "
            "default: the run's own evaluation split (test for arrays, valid for folders)",
        ),
        OUT_ARG,
    ]
    + PREDICT_ARGS,
)
def predict(args: argparse.Namespace) -> int:
    from fastcourse.results.predict import load_run, predict_eval, predict_folder

    _check_numbers(args)
    out = _out(args, args.run)
    run = load_run(args.run, _classes(args))
    if args.folder:
        preds = predict_folder(
            run, args.folder, tta=args.tta, batch_size=args.batch_size, augment=args.augment, on_error=args.on_error
        )
        name = Path(args.folder).resolve().name
    else:
        preds = predict_eval(run, tta=args.tta, batch_size=args.batch_size, augment=args.augment)
        name = preds.split or "eval"
    path = preds.write_csv(out / f"predictions_{name}.csv")
    print(f"predicted {len(preds.filenames)} images{_tta_note(args)}")
    print(path)
    return 0


@command(
    "submit",
    "write a Kaggle submission (dogs vs cats or Statefarm) from a run or a predictions CSV",
    [
        arg("run", nargs="?", help="run directory (omit with --probs)"),
        arg("folder", nargs="?", help="the competition's test folder (default: the run's dataset's test/)"),
        arg("--kind", required=True, choices=["dogscats", "statefarm"], help="which competition's format"),
        arg("--probs", metavar="CSV", help="use a CSV written by `fastcourse predict` instead of predicting"),
        arg(
            "--out",
            metavar="FOLDER",
            default=None,
            help="folder to write submission_KIND.csv[.gz] into (default: the run directory, or the CSV's folder)",
        ),
    ]
    + PREDICT_ARGS,
)
def submit(args: argparse.Namespace) -> int:
    from fastcourse.results.predict import list_images, load_run, predict_eval, predict_folder, read_predictions
    from fastcourse.results.submission import check_kind, default_name, submission_frame, write_submission

    _check_numbers(args)
    if args.probs:
        if args.run or args.folder:
            raise UsageError("give either RUN [FOLDER] or --probs CSV, not both")
        out = _out(args, Path(args.probs).parent)
        preds = read_predictions(args.probs)
    else:
        if not args.run:
            raise UsageError("give RUN (a run directory) and FOLDER (the test images), or --probs CSV")
        out = _out(args, args.run)
        run = load_run(args.run, _classes(args))
        if args.folder:
            check_kind(args.kind, run.class_names, list_images(args.folder))  # before a long prediction
            preds = predict_folder(
                run, args.folder, tta=args.tta, batch_size=args.batch_size, augment=args.augment, on_error=args.on_error
            )
        else:
            check_kind(args.kind, run.class_names)
            preds = predict_eval(run, tta=args.tta, batch_size=args.batch_size, augment=args.augment, split="test")
    frame = submission_frame(args.kind, preds.filenames, preds.probs, preds.class_names)
    path = write_submission(frame, out / default_name(args.kind), args.kind)
    print(f"{args.kind} submission: {len(frame)} rows, columns {','.join(frame.columns)}{_tta_note(args)}")
    print(path)
    return 0


@command(
    "views",
    "PNG grids of a run's results (correct, incorrect, uncertain, ...) on its eval split or a folder",
    [
        arg("run", help="run directory holding model.keras and config.yaml"),
        arg(
            "folder",
            nargs="?",
            help="labelled folder: one subfolder per class (e.g. data/dogscats/valid); "
            "default: the run's own evaluation split (arrays or folders)",
        ),
        arg(
            "--out",
            metavar="FOLDER",
            default=None,
            help="folder to write views/ into (default: the run directory, so RUN/views/)",
        ),
        arg("-n", type=int, default=4, help="images per view (per class for the per-class views; default 4)"),
        arg("--seed", type=int, default=0, help="seed of the random views and of the augmented copies"),
        arg("--index", type=int, default=0, help="which image (in file order) to show augmented (default 0)"),
        arg(
            "--uncertainty",
            default="auto",
            choices=["auto", "entropy", "max_prob", "half"],
            help="how 'most uncertain' is measured (auto: |p-0.5| for two classes, else entropy)",
        ),
        arg(
            "--probs", metavar="CSV", help="use a CSV that `fastcourse predict` wrote for FOLDER instead of predicting"
        ),
    ]
    + PREDICT_ARGS,
)
def views(args: argparse.Namespace) -> int:
    import numpy as np

    from fastcourse import io
    from fastcourse.errors import DataError
    from fastcourse.results.predict import (
        labels_of,
        load_run,
        model_images,
        predict_eval,
        predict_folder,
        read_predictions,
        saved_eval,
    )
    from fastcourse.results.views import write_views

    _check_numbers(args)
    if args.n < 1:
        raise UsageError(f"-n {args.n}: must be at least 1")
    out = _out(args, args.run) / "views"
    run = load_run(args.run, _classes(args))
    if args.probs:
        if not args.folder:
            raise UsageError("--probs CSV needs the FOLDER it was predicted from")
        preds = read_predictions(args.probs)
        if preds.class_names != run.class_names:
            raise UsageError(
                f"{args.probs}: its columns {preds.class_names} are not the run's classes {run.class_names}"
            )
        missing = [f for f in preds.filenames if not (Path(args.folder) / f).is_file()]
        if missing:
            raise DataError(
                f"{args.probs}: {missing[0]} is not in {args.folder} ({len(missing)} missing); "
                "pass the folder the CSV was predicted from"
            )
        preds.labels = labels_of(preds.filenames, run.class_names, args.folder)
        preds.folder = Path(args.folder)
    elif args.folder:
        preds = predict_folder(
            run,
            args.folder,
            tta=args.tta,
            batch_size=args.batch_size,
            augment=args.augment,
            labelled=True,
            on_error=args.on_error,
        )
    else:
        # the run's eval split: the probabilities it saved when they still fit the data, else predict
        preds = (saved_eval(run) if not args.tta and not args.augment else None) or predict_eval(
            run, tta=args.tta, batch_size=args.batch_size, augment=args.augment
        )
    if not 0 <= args.index < len(preds.filenames):
        raise UsageError(f"--index {args.index}: there are {len(preds.filenames)} images")
    augmenter = run.augmenter(args.augment)
    shown = None
    if augmenter is not None:
        name = preds.filenames[args.index]
        if preds.images is not None:
            image = np.asarray(preds.images[args.index], np.float32)
        else:
            image = model_images(run, [str(preds.folder / name)])[0]
        shown = (name, image)
    summary = write_views(
        preds.folder,
        preds.filenames,
        preds.labels,
        preds.probs,
        preds.class_names,
        out,
        n=args.n,
        seed=args.seed,
        augment=augmenter,
        augment_image=shown,
        uncertainty_by=args.uncertainty,
        display=preds.display_image,
        split=preds.split,
    )
    json_path = io.write_json(out / "views.json", summary)
    print(
        f"{preds.split + ' ' if preds.split else ''}accuracy {summary['accuracy']:.4f} on {len(preds.filenames)} images"
    )
    for path in [*summary["files"].values(), json_path]:
        print(path)
    if augmenter is None:
        print("no augmented.png: the run has `augment: none` (pass --augment NAME to draw one)")
    return 0
