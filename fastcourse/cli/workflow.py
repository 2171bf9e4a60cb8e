"""Commands around runs: get the data, list runs, compare them."""

from __future__ import annotations

import argparse

from fastcourse.cli import OUT_ARG, arg, command, out_folder


@command(
    "data",
    "get a dataset (dogscats, statefarm, mnist, fashion_mnist) or list what is on this machine",
    [
        arg("action", choices=["get", "list"], help="get NAME: download, check and lay it out; list: what is here"),
        arg("name", nargs="?", help="dataset to get: dogscats, statefarm, mnist or fashion_mnist"),
        arg(
            "--to",
            metavar="FOLDER",
            help="where the dataset goes (default data/<name>; mnist/fashion_mnist: the "
            "Keras cache, so `data.name: mnist` then works offline)",
        ),
        arg("--root", metavar="FOLDER", help="data folder to look in for `list` (default data/)"),
    ],
)
def data(args: argparse.Namespace) -> int:
    from fastcourse.data import download
    from fastcourse.errors import UsageError

    if args.action == "list":
        table = download.list_local(args.root)
        print(table.to_string(index=False, formatters={"size_mb": "{:,.1f}".format}))
        return 0
    if not args.name:
        raise UsageError(f"data get: name a dataset ({', '.join(download.names())})")
    print(f"{args.name}: {download.get(args.name, args.to)}")
    return 0


@command(
    "runs",
    "list run directories in a table: task, model, dataset, epochs, accuracy, minutes, status",
    [
        arg("root", nargs="?", default="runs", metavar="FOLDER", help="folder holding run directories (default runs/)"),
    ],
)
def runs(args: argparse.Namespace) -> int:
    from fastcourse.results.runs import format_runs, list_runs

    print(format_runs(list_runs(args.root)))
    return 0


@command(
    "compare",
    "learning curves of several runs on one PNG, and a markdown table of their config differences",
    [
        arg("run_dirs", nargs="+", metavar="RUN", help="two or more run directories"),
        OUT_ARG,
    ],
)
def compare(args: argparse.Namespace) -> int:
    from fastcourse.results.compare import compare_runs

    png, markdown = compare_runs(args.run_dirs, out_folder(args.out))
    print(markdown)
    print(f"curves: {png}")
    return 0
