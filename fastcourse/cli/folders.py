"""Image-folder commands: `fastcourse split` (valid and sample sets from a seed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastcourse.cli import arg, command


def _size(text: str) -> float | int:
    value = float(text)
    return int(value) if value >= 1 and value.is_integer() else value


def format_split(summary: dict) -> str:
    """The split as a readable table: split, images, classes, groups; then where it went."""
    rows = [("split", "images", "classes", "groups")]
    for name, s in summary.get("splits", {}).items():
        rows.append((name, f"{s['images']:,}", str(s["classes"]), "-" if s["groups"] is None else str(s["groups"])))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    asked = summary.get("valid")
    lines.append(
        f"{summary['method']} split (seed {summary['seed']}, valid {asked}, {summary['mode']}) -> {summary['out']}"
    )
    if summary.get("valid_groups"):
        lines.append(f"valid groups: {', '.join(summary['valid_groups'])}")
    return "\n".join(lines)


@command(
    "split",
    "make valid and sample sets from a seed (random, stratified or grouped by a CSV column)",
    [
        arg("root", help="dataset folder with train/<class>/ or <class>/ folders of images, e.g. data/statefarm"),
        arg(
            "--out",
            metavar="FOLDER",
            default=None,
            help="folder to write the new dataset into (default <root>_split); the originals are never touched",
        ),
        arg("--method", choices=["random", "stratified", "grouped"], default="random"),
        arg("--valid", type=_size, default=0.1, help="fraction (<1) or number of images for valid (default 0.1)"),
        arg("--sample-train", type=int, default=0, help="images in sample/train (0: no sample)"),
        arg("--sample-valid", type=int, default=0, help="images in sample/valid"),
        arg("--seed", type=int, default=0),
        arg(
            "--mode",
            choices=["symlink", "hardlink", "copy", "move"],
            default="symlink",
            help="how files reach the new folder; 'move' moves valid images in place (the course's way)",
        ),
        arg("--group-column", default="subject", help="CSV column holding each image's group (grouped)"),
        arg("--groups-csv", help="CSV with the groups (default <root>/driver_imgs_list.csv)"),
        arg("--file-column", default="img", help="CSV column holding the file name (default img)"),
        arg("--json", action="store_true", help="print the summary as JSON (for scripts) instead of a table"),
    ],
)
def split(args: argparse.Namespace) -> int:
    from fastcourse.data.split import make_split
    from fastcourse.errors import UsageError

    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: is a file; --out names a folder to write into")
    summary = make_split(
        args.root,
        args.out,
        args.method,
        args.valid,
        args.sample_train,
        args.sample_valid,
        args.seed,
        args.mode,
        args.group_column,
        args.groups_csv,
        args.file_column,
    )
    print(json.dumps(summary, indent=2) if args.json else format_split(summary))
    return 0
