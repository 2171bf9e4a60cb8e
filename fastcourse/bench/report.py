"""The bench's rows, its table and its one parsable line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Row:
    case: str
    contender: str
    images_per_second: float
    gflops: float = 0.0
    roofline_fraction: float = 0.0
    test_accuracy: Optional[float] = None
    seconds: float = 0.0
    ratio_to_peer: Optional[float] = None
    notes: str = ""
    wall_images_per_second: float = 0.0  # images / wall time of the whole fit (setup, tracing included)
    wall_ratio_to_peer: Optional[float] = None
    extra: dict = field(default_factory=dict)


def time_to_reach(curve: list[tuple[float, float]], target: float) -> Optional[float]:
    """Seconds at the first evaluation whose accuracy reaches `target` (curve: (seconds,
    accuracy) after each epoch, in order); None when it never does."""
    for seconds, acc in curve:
        if acc >= target - 1e-9:
            return float(seconds)
    return None


def speedup(peer_seconds: Optional[float], our_seconds: Optional[float]) -> Optional[float]:
    """How many times faster fastcourse reached the target (peer time / our time)."""
    if not peer_seconds or not our_seconds:
        return None
    return float(peer_seconds) / float(our_seconds)


def ratio_line(ratio: Optional[float], note: str = "") -> str:
    """The one parsable line: `time-to-accuracy ratio: 8.4x` (`not reached` when fastcourse
    missed the target; a `>=` bound when the peer itself missed a fixed target)."""
    text = "not reached" if ratio is None else f"{ratio:.1f}x"
    return f"time-to-accuracy ratio: {text}" + (f" ({note})" if note else "")


def describe(options: dict) -> str:
    parts = [f"batch {options.get('batch_size', 64)}", f"spe {options.get('steps_per_execution', 1)}"]
    if "augment" in options:
        parts.append(f"augment {options['augment'][0] if options['augment'] else 'none'}")
    if options.get("schedule"):
        parts.append(", ".join(f"{k} {v}" for k, v in options["schedule"].items()))
    if options.get("fraction", 1.0) < 1.0:
        parts.append(f"cycle {options['fraction']:g} epoch")
    parts += [f"{k} {v}" for k, v in (options.get("train_options") or {}).items()]
    return ", ".join(parts)


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "bf16")  # x86 cpuinfo flags; `bf16` is Arm's feature name


def machine_line(
    cpuinfo: Optional[str] = None, cores: Optional[int] = None, load: Optional[tuple[float, ...]] = None
) -> str:
    """`machine: <CPU model>, 2 cores, bf16/AMX flags: avx512_bf16 amx_bf16 amx_tile, load average
    1.93 0.77 0.29`: printed beside a ratio so that a figure never travels without its machine.
    Reads /proc/cpuinfo, the cores this process may use and os.getloadavg() unless given."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    if load is None:
        load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    bf16 = " ".join(f for f in BF16_FLAGS if f in flags) or "none"
    average = " ".join(f"{x:.2f}" for x in load) or "unknown"
    return f"machine: {model or platform_name()}, {cores} cores, bf16/AMX flags: {bf16}, load average {average}"


def platform_name() -> str:
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def device_description() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"{len(gpus)} GPU(s)" if gpus else f"CPU ({os.cpu_count()} cores)"


def print_table(rows: list[Row]) -> None:
    import pandas as pd

    table = pd.DataFrame(
        [
            {
                "case": r.case,
                "contender": r.contender,
                "images/s (steady)": round(r.images_per_second, 1) if r.images_per_second else "",
                "images/s (wall)": round(r.wall_images_per_second, 1) if r.wall_images_per_second else "",
                "GFLOP/s": round(r.gflops, 1) if r.gflops else "",
                "of matmul": f"{r.roofline_fraction:.0%}" if r.roofline_fraction else "",
                "test acc": f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else "",
                "seconds": round(r.seconds, 1),
                "vs peer (steady)": f"{r.ratio_to_peer:.2f}x" if r.ratio_to_peer else "",
                "vs peer (wall)": f"{r.wall_ratio_to_peer:.2f}x" if r.wall_ratio_to_peer else "",
                "notes": r.notes,
            }
            for r in rows
        ]
    )
    if table.empty:
        return
    with pd.option_context("display.max_colwidth", 70, "display.width", 250):
        print(table.to_string(index=False), flush=True)
