"""Image-folder commands: `fastcourse split` (valid and sample sets from a seed)."""
from __future__ import annotations

import argparse
import json

from fastcourse.cli import arg, command


def _size(text: str) -> float | int:
    value = float(text)
    return int(value) if value >= 1 and value.is_integer() else value


@command("split", "make valid and sample sets from a seed (random, stratified or grouped by a CSV column)", [
    arg("root", help="dataset folder with train/<class>/ images, e.g. data/statefarm"),
    arg("--out", help="new dataset folder (default <root>_split); the originals are never touched"),
    arg("--method", choices=["random", "stratified", "grouped"], default="random"),
    arg("--valid", type=_size, default=0.1, help="fraction (<1) or number of images for valid (default 0.1)"),
    arg("--sample-train", type=int, default=0, help="images in sample/train (0: no sample)"),
    arg("--sample-valid", type=int, default=0, help="images in sample/valid"),
    arg("--seed", type=int, default=0),
    arg("--mode", choices=["symlink", "hardlink", "copy", "move"], default="symlink",
        help="how files reach the new folder; 'move' moves valid images in place (the course's way)"),
    arg("--group-column", default="subject", help="CSV column holding each image's group (grouped)"),
    arg("--groups-csv", help="CSV with the groups (default <root>/driver_imgs_list.csv)"),
    arg("--file-column", default="img", help="CSV column holding the file name (default img)"),
])
def split(args: argparse.Namespace) -> int:
    from fastcourse.data.split import make_split

    summary = make_split(args.root, args.out, args.method, args.valid, args.sample_train, args.sample_valid,
                         args.seed, args.mode, args.group_column, args.groups_csv, args.file_column)
    print(json.dumps(summary, indent=2))
    return 0
