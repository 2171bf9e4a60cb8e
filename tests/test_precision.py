"""resolve_precision: the dtype policy from the CPU's flags and the presence of a GPU."""

from __future__ import annotations

import warnings

import pytest

from fastcourse.errors import UsageError
from fastcourse.train.precision import cpu_features, native_bf16, resolve_precision

AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return str(path)

    return write


def test_features_and_native_bf16(cpuinfo, tmp_path):
    assert {"amx_bf16", "avx2"} <= cpu_features(cpuinfo(AMX))
    assert native_bf16(cpuinfo(AMX)) and native_bf16(cpuinfo(AVX512_BF16))
    assert not native_bf16(cpuinfo(AVX2))
    assert cpu_features(str(tmp_path / "missing")) == set()  # not Linux: no flags, no error


@pytest.mark.parametrize(
    "text, gpu, policy",
    [
        (AMX, False, "mixed_bfloat16"),
        (AVX512_BF16, False, "mixed_bfloat16"),
        (AVX2, False, "float32"),
        (AVX2, True, "mixed_float16"),
        (AMX, True, "mixed_float16"),
    ],
)
def test_auto(cpuinfo, text, gpu, policy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chosen, reason = resolve_precision("auto", cpuinfo(text), gpu=gpu)
    assert chosen == policy and "\n" not in reason


def test_forced_policies_warn_or_fall_back_where_they_cannot_help(cpuinfo):
    with pytest.warns(UserWarning, match="0.25x of float32"):
        assert resolve_precision("mixed_bfloat16", cpuinfo(AVX2), gpu=False)[0] == "mixed_bfloat16"
    # a config written for a GPU trains on a CPU, in float32 (never emulated float16), and says so
    chosen, reason = resolve_precision("mixed_float16", cpuinfo(AMX), gpu=False)
    assert chosen == "float32" and "needs a GPU" in reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("mixed_bfloat16", cpuinfo(AMX), gpu=False)[0] == "mixed_bfloat16"
        assert resolve_precision("float32", cpuinfo(AVX2), gpu=False)[0] == "float32"
        assert resolve_precision("mixed_float16", cpuinfo(AVX2), gpu=True)[0] == "mixed_float16"
    with pytest.raises(UsageError):
        resolve_precision("float16", cpuinfo(AVX2), gpu=False)


def test_auto_is_the_default_and_the_run_says_what_it_chose(cpuinfo, monkeypatch, capsys):
    """`fastcourse run` opens training_scope with train.precision: one line names the policy and why."""
    import keras

    from fastcourse.config import TrainConfig
    from fastcourse.train import devices, precision

    assert TrainConfig().precision == "auto"
    monkeypatch.setattr(devices, "_announced", set())
    monkeypatch.setattr(precision, "has_gpu", lambda: False)
    monkeypatch.setattr(devices, "has_gpu", lambda: False)
    for text, expected, why in [(AVX512_BF16, "mixed_bfloat16", "avx512_bf16"), (AVX2, "float32", "no native bf16")]:
        monkeypatch.setattr(precision, "CPUINFO", cpuinfo(text))
        with devices.training_scope("auto", "none"):
            assert keras.mixed_precision.global_policy().name == expected
        assert keras.mixed_precision.global_policy().name == "float32"
        lines = [ln for ln in capsys.readouterr().out.splitlines() if "precision" in ln]  # stdout: stderr is for errors
        assert len(lines) == 1 and f"precision {expected} (auto: " in lines[0] and why in lines[0]


def test_one_has_gpu():
    from fastcourse.train import devices, precision

    assert devices.has_gpu is precision.has_gpu
