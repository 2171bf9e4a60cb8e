"""Pick the Keras dtype policy from what the machine can do (`train.precision`, default auto).

| requested      | GPU            | CPU with AMX / AVX-512 BF16 | other CPU                 |
|----------------|----------------|-----------------------------|---------------------------|
| auto (default) | mixed_float16  | mixed_bfloat16              | float32                   |
| float32        | float32        | float32                     | float32                   |
| mixed_bfloat16 | mixed_bfloat16 | mixed_bfloat16              | mixed_bfloat16, a warning |
| mixed_float16  | mixed_float16  | float32, said in one line   | float32, said in one line |

bfloat16 pays off on a CPU only with native bf16 units (AMX, AVX-512 BF16); without them
TensorFlow emulates it and training got slower, not faster. float16 pays off only on a GPU:
on a CPU it is emulated and ~90x slower than float32, so a config written for a GPU trains in
float32 on a CPU rather than not at all.
"""

from __future__ import annotations

import warnings

import tensorflow as tf

from fastcourse.errors import UsageError

CPUINFO = "/proc/cpuinfo"
POLICIES = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
BF16_FLAGS = frozenset({"amx_bf16", "amx_tile", "avx512_bf16"})


def cpu_features(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 `flags`, Arm `Features`); empty elsewhere."""
    try:
        with open(cpuinfo or CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:  # not Linux, or no procfs: assume nothing
        pass
    return set()


def native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively: AMX or AVX-512 BF16."""
    return bool(cpu_features(cpuinfo) & BF16_FLAGS)


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU (the one place fastcourse asks)."""
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(requested: str, cpuinfo: str | None = None, gpu: bool | None = None) -> tuple[str, str]:
    """(Keras dtype policy name, one-line reason) for `requested` on this machine.

    "auto": mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native bf16, else float32.
    Forced mixed_bfloat16 without native bf16 runs, with a warning; forced mixed_float16
    without a GPU becomes float32, and the reason says so. An unknown name is a UsageError.
    `cpuinfo` and `gpu` (default: detected) exist so tests can describe other machines.
    """
    if requested not in POLICIES:
        raise UsageError(f"precision {requested!r}: choose one of {', '.join(POLICIES)}")
    gpu = has_gpu() if gpu is None else gpu
    bf16 = native_bf16(cpuinfo)
    if requested == "auto":
        if gpu:
            return "mixed_float16", "auto: a GPU is present, float16 runs on its tensor cores"
        if bf16:
            flags = ", ".join(sorted(cpu_features(cpuinfo) & BF16_FLAGS)) or "native bf16"
            return "mixed_bfloat16", f"auto: no GPU, and this CPU computes bf16 natively ({flags})"
        return "float32", "auto: no GPU, and this CPU has no native bf16 (AMX or AVX-512 BF16)"
    if requested == "mixed_bfloat16" and not gpu and not bf16:
        warnings.warn(
            "mixed_bfloat16 on a CPU without AMX/AVX-512 BF16 ran at 0.25x of float32 in our "
            "measurement; use float32 or auto",
            stacklevel=2,
        )
    if requested == "mixed_float16" and not gpu:
        # Never float16 on a CPU: TF's CPU float16 kernels are emulated. cnn_bn_dropout at batch 64
        # on an AMX Xeon trained 12 images/s in float16 vs 1,086 in float32: a run that never ends.
        return "float32", (
            "mixed_float16 needs a GPU and none was found, so float32 (float16 on a CPU trained ~90x slower)"
        )
    return requested, "as requested"
