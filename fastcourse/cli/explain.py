"""`fastcourse explain MODEL`: the layer arithmetic table of any registered builder."""

from __future__ import annotations

import argparse

from fastcourse.cli import arg, command


@command(
    "explain",
    "per-layer output shapes and parameter counts of a model, with the formulas",
    [
        arg("model", help="a registered model (`fastcourse list models`), e.g. alexnet"),
        arg("--input-shape", metavar="H,W,C", help="input shape (default: the builder's own, e.g. 227,227,3)"),
        arg("--num-classes", type=int, help="classes of the last layer (default: the builder's own)"),
        arg("--csv", metavar="PATH", help="also write the table as CSV"),
    ],
)
def explain_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from fastcourse import io
    from fastcourse.errors import RunError, UsageError
    from fastcourse.lessons.explain import explain, parse_shape, summary

    try:
        shape = parse_shape(args.input_shape) if args.input_shape else None
    except ValueError as exc:
        raise UsageError(f"--input-shape: {exc}") from None
    if args.num_classes is not None and args.num_classes < 1:
        raise UsageError(f"--num-classes {args.num_classes}: must be 1 or more")
    try:
        table = explain(args.model, shape, args.num_classes)
    except ValueError as exc:  # Keras rejects the shape (e.g. too small for the strides)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{args.model} cannot be built for input shape {args.input_shape or 'default'} "
            f"(too small for its windows and strides?): {first}"
        ) from None
    with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_colwidth", 90):
        print(f"{table.attrs['model']}")
        print(table.drop(columns=["type"]).to_string(index=False))
    s = summary(table)
    print(
        f"total parameters: {s['total_params']:,} (conv {s['conv_params_share']:.1%}, dense "
        f"{s['dense_params_share']:.1%}); multiply-accumulates per image: {s['total_macs']:,} "
        f"(conv {s['conv_macs_share']:.1%}, dense {s['dense_macs_share']:.1%})"
    )
    if not table["matches_keras"].all():
        bad = ", ".join(table.loc[~table["matches_keras"], "layer"])
        raise RunError(f"the formulas disagree with Keras for layers: {bad}")
    if args.csv:
        io.write_text(args.csv, table.to_csv(index=False))
        print(f"table: {args.csv}")
    return 0
