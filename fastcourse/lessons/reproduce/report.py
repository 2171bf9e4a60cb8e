"""The reproduction's report: results.csv, report.md, report.html and learning_curves.png, every
finished step's clean test accuracy beside the course's printed figure (MNIST) or the public
anchor for that kind of model (Fashion-MNIST)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from fastcourse import io
from fastcourse.lessons.reproduce.plan import REUSED_STEP, step_wall_seconds
from fastcourse.run import records

# (reference accuracy, where it comes from). MNIST: the figures the course's notebook printed
# (the 2017 notebooks' printed figures). Fashion-MNIST: the public anchor for that kind of model
# (published results: logistic ~0.84, MLP ~0.885, CNN 0.915, CNN + BN + augmentation 0.935); a range is
# compared at its midpoint.
REFERENCES: dict[str, dict[str, tuple[float, str]]] = {
    "mnist": {
        "linear": (0.9240, "course"),
        "hidden": (0.9397, "course"),
        "cnn": (0.9926, "course"),
        "cnn_augment": (0.9919, "course (peak 0.9945)"),
        "cnn_bn": (0.9945, "course (peak 0.9960)"),
        "cnn_bn_dropout": (0.9945, "course"),
        "ensemble": (0.9969, "course (members 0.995)"),
    },
    "fashion_mnist": {
        "linear": (0.84, "anchor: linear/logistic ~0.84"),
        "hidden": (0.885, "anchor: MLP 0.88-0.89"),
        "cnn": (0.915, "anchor: 2-conv CNN 0.91-0.92"),
        "cnn_augment": (0.915, "anchor: 2-conv CNN 0.91-0.92"),
        "cnn_bn": (0.935, "anchor: conv+BN+augment 0.93-0.94"),
        "cnn_bn_dropout": (0.935, "anchor: conv+BN+augment 0.93-0.94"),
        "ensemble": (0.935, "anchor: conv+BN+augment 0.93-0.94 (single model)"),
    },
}


def results_table(run_dir: Path, plan: dict):
    """One row per finished step: accuracy, reference, difference, epochs, minutes."""
    import pandas as pd

    refs = REFERENCES[plan["dataset"]]
    rows = []
    for step in plan["steps"]:
        sdir = run_dir / step
        if not (sdir / "metrics.json").is_file():
            continue
        m = json.loads((sdir / "metrics.json").read_text())
        seconds = step_wall_seconds(run_dir, step)
        seconds = m.get("train_seconds", 0.0) if seconds is None else seconds
        ref, source = refs[step]
        note = ""
        if "member_accuracy" in m:
            acc, rules = m["member_accuracy"], m["rules"]
            note = (
                f"{m['ensemble_members']} members {acc['mean']:.4f} ± {acc['std']:.4f}; "
                f"geometric {records.eval_accuracy(rules['geometric']):.4f}, "
                f"vote {records.eval_accuracy(rules['vote']):.4f}"
            )
            reused = [str(x["index"]) for x in m.get("members", []) if x.get("reused_from")]
            if reused:
                note += f"; member {', '.join(reused)} is the {REUSED_STEP} step's run (not trained again)"
        row = {
            "step": step,
            "model": m.get("model"),
            "augment": m.get("augment"),
            "data": m.get("dataset"),
            # the reproduced datasets are arrays: their evaluation split is test
            "test accuracy": records.eval_accuracy(m),
            "reference": ref,
            "difference": records.eval_accuracy(m) - ref,
            "reference source": source,
            "epochs": m.get("epochs"),
            "minutes": seconds / 60.0,
            "notes": note,
        }
        rows.append(row)
        tta = m.get("tta")
        if tta:  # beside the plain ensemble, never instead of it
            rows.append(
                {
                    **row,
                    "step": f"{step} + {tta['kind']} TTA",
                    "test accuracy": records.eval_accuracy(tta),
                    "difference": records.eval_accuracy(tta) - ref,
                    "minutes": tta["seconds"] / 60.0,
                    "notes": (
                        "the same members on the mean of each test image and its mirror image; members "
                        f"{tta['member_accuracy']['mean']:.4f} ± {tta['member_accuracy']['std']:.4f}; "
                        "minutes: the extra predictions"
                    ),
                }
            )
    return pd.DataFrame(rows)


def table_markdown(table) -> str:
    return table.to_markdown(index=False, floatfmt=("", "", "", "", ".4f", ".4f", "+.4f", "", "", ".1f", ""))


def write_report(run_dir: Path, plan: dict):
    """results.csv, report.md, report.html and learning_curves.png in the reproduction directory."""
    table = results_table(run_dir, plan)
    io.write_text(run_dir / "results.csv", table.to_csv(index=False))
    plot_all_curves(run_dir, plan, run_dir / "learning_curves.png")
    ds = plan["dataset"]
    intro = (
        "Clean test accuracy of every ladder step and the ensemble, compared with "
        + ("the course's printed figures" if ds == "mnist" else "public anchors for each kind of model")
        + "."
    )
    q = plan.get("quick")
    settings = [
        f"quick smoke run: at most {q['train_limit']} training and {q['test_limit']} test images, "
        f"batch {q['batch_size']}, phases {q['phases']}, {q['members']} ensemble members"
        if q
        else (
            "each step's model and augmentation from its config, its training from the budget"
            if plan.get("budget")
            else "each step's config (the course's settings)"
        )
    ]
    b = plan.get("budget")
    if b:
        settings.append(
            f"budget {b['seconds'] / 60:.0f} min (estimated {b['estimate_seconds'] / 60:.1f} min of "
            f"training): one-cycle, batch {b['settings']['batch_size']}, precision "
            f"{b['settings']['precision']}; epochs per step {b['epochs']} (after the first steps the "
            "epochs of the steps to come follow the time they left)"
        )
    settings += [f"overridden in every step: {o}" for o in plan.get("overrides", [])]
    if plan.get("data_name"):
        settings.append(f"data: {plan['data_name']} (the real data is not on this machine)")
    settings.append("minutes are wall time on this machine")
    lines = [
        f"# Reproduction: the MNIST lesson on {ds}",
        "",
        intro,
        "",
        *[f"- {item}" for item in settings],
        "",
        table_markdown(table),
        "",
        "![learning curves of all steps](learning_curves.png)",
        "",
    ]
    io.write_text(run_dir / "report.md", "\n".join(lines))
    formats = {"test accuracy": "{:.4f}", "reference": "{:.4f}", "difference": "{:+.4f}", "minutes": "{:.1f}"}
    table_html = table.to_html(index=False, border=0, formatters={k: v.format for k, v in formats.items()})
    items = "".join(f"<li>{html.escape(item)}</li>" for item in settings)
    io.write_text(
        run_dir / "report.html",
        "\n".join(
            [
                "<!doctype html><html><head><meta charset='utf-8'>",
                f"<title>fastcourse reproduction: {html.escape(ds)}</title>",
                "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse}"
                " td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}</style></head><body>",
                f"<h1>Reproduction: the MNIST lesson on {html.escape(ds)}</h1>",
                f"<p>{html.escape(intro)}</p><ul>{items}</ul>",
                table_html,
                "<p><img src='learning_curves.png' alt='learning curves of all steps'></p>",
                "</body></html>",
                "",
            ]
        ),
    )
    return table


def plot_all_curves(run_dir: Path, plan: dict, path: Path) -> Path:
    """Clean test accuracy and training loss per epoch, every finished step on one figure."""
    import pandas as pd
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is never switched
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 4.2))
    ax_acc, ax_loss = fig.subplots(1, 2)
    for step in plan["steps"]:
        hist = run_dir / step / "history.csv"
        if not (run_dir / step / "metrics.json").is_file() or not hist.is_file():
            continue
        h = pd.read_csv(hist)
        label = step + (" (member mean)" if step == "ensemble" else "")
        if "val_accuracy" in h:
            (line,) = ax_acc.plot(h["epoch"], h["val_accuracy"], marker="o", ms=3, label=label)
            if step == "ensemble":  # the combined ensemble beside its members' mean
                acc = records.eval_accuracy(json.loads((run_dir / step / "metrics.json").read_text()))
                ax_acc.plot(
                    h["epoch"].iloc[-1],
                    acc,
                    marker="*",
                    ms=14,
                    color=line.get_color(),
                    linestyle="none",
                    label="ensemble (averaged)",
                )
        if "loss" in h:
            ax_loss.plot(h["epoch"], h["loss"], marker="o", ms=3, label=label)
    for ax, title in ((ax_acc, "clean test accuracy"), (ax_loss, "training loss")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"{plan['dataset']}: learning curves of every step")
    return io.save_figure(fig, path)
