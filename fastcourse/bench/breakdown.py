"""Where the seconds to a target accuracy go (`fastcourse bench --cases time_to_accuracy
--breakdown`): the arithmetic on the clock marks a run records, and its table. Plain Python, so
that the fastai side's marks (recorded in its own environment) split by the same rules.

The marks (`fastcourse.bench.recipe.PhaseClock` and `run_fastcourse(marks=...)` on fastcourse's
side, `benchmarks/fastai_side.py` on fastai's): `build` (seconds building the model), `fits` (per
fit call: perf_counter at the `call`, at the training's `begin`, at the end of the `first`
execution, at the `end` of the last epoch, and the `images` trained and `first_images` in the first
execution), `steady_images_per_second` (the rate after the first steps), `bn` (batchnorm
statistics recomputed, seconds) and `eval` (the evaluations, seconds, outside the timed total).
"""

from __future__ import annotations

from typing import Optional

PHASES = (
    "model build",
    "fit setup (pipeline, compile)",
    "tracing / first step",
    "steady steps",
    "batchnorm statistics",
    "other",
)


def phases(marks: dict, total: float) -> dict[str, float]:
    """Seconds of each phase; they add up to `total` (the timed seconds to the target), `other`
    taking the rest (epoch ends, callbacks, seeding). Tracing / first step is the first
    execution's time less what its images cost at the steady rate; steady steps is every trained
    image at the steady rate."""
    ips = float(marks.get("steady_images_per_second") or 0.0)
    fits = marks.get("fits") or []
    setup = sum(f["begin"] - f["call"] for f in fits if "begin" in f)
    first = sum(
        f["first"] - f["begin"] - (f.get("first_images", 0) / ips if ips else 0.0) for f in fits if "first" in f
    )
    steady = sum(f.get("images", 0) for f in fits) / ips if ips else 0.0
    out = {
        "model build": float(marks.get("build", 0.0)),
        "fit setup (pipeline, compile)": setup,
        "tracing / first step": first,
        "steady steps": steady,
        "batchnorm statistics": float(marks.get("bn", 0.0)),
    }
    out["other"] = total - sum(out.values())
    return out


def roofline_share(images_per_second: float, flops_per_image: float, roofline_gflops: float) -> float:
    """The steady steps' achieved FLOP/s as a share of the matmul roofline."""
    if not roofline_gflops:
        return 0.0
    return images_per_second * flops_per_image / 1e9 / roofline_gflops


def table(
    label: str, marks: dict, total: float, flops_per_image: float, roofline_gflops: Optional[float] = None
) -> list[str]:
    """The breakdown as lines: each phase's seconds and share of `total`, the steady rate with its
    share of the bf16 matmul roofline (`roofline_gflops`, measured in the same run), and the
    evaluation (not counted in `total`)."""
    split = phases(marks, total)
    ips = float(marks.get("steady_images_per_second") or 0.0)
    lines = [f"breakdown, {label}: {total:.2f} s to the target"]
    for name in PHASES:
        seconds = split[name]
        extra = ""
        if name == "steady steps" and ips:
            gflops = ips * flops_per_image / 1e9
            extra = f"  ({ips:,.0f} images/s, {gflops:.0f} GFLOP/s"
            if roofline_gflops:
                share = roofline_share(ips, flops_per_image, roofline_gflops)
                extra += f", {share:.0%} of bf16 matmul {roofline_gflops:.0f}"
            extra += ")"
        lines.append(f"  {name:<30} {seconds:7.2f} s  {seconds / total if total else 0.0:5.1%}{extra}")
    lines.append(f"  {'evaluation (not counted)':<30} {float(marks.get('eval', 0.0)):7.2f} s")
    return lines
