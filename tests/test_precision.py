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


@pytest.mark.parametrize("text, gpu, policy", [
    (AMX, False, "mixed_bfloat16"),
    (AVX512_BF16, False, "mixed_bfloat16"),
    (AVX2, False, "float32"),
    (AVX2, True, "mixed_float16"),
    (AMX, True, "mixed_float16"),
])
def test_auto(cpuinfo, text, gpu, policy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chosen, reason = resolve_precision("auto", cpuinfo(text), gpu=gpu)
    assert chosen == policy and "\n" not in reason


def test_forced_policies_warn_or_refuse_where_they_cannot_help(cpuinfo):
    with pytest.warns(UserWarning, match="0.25x of float32"):
        assert resolve_precision("mixed_bfloat16", cpuinfo(AVX2), gpu=False)[0] == "mixed_bfloat16"
    with pytest.raises(UsageError, match="needs a GPU"):
        resolve_precision("mixed_float16", cpuinfo(AMX), gpu=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("mixed_bfloat16", cpuinfo(AMX), gpu=False)[0] == "mixed_bfloat16"
        assert resolve_precision("float32", cpuinfo(AVX2), gpu=False)[0] == "float32"
        assert resolve_precision("mixed_float16", cpuinfo(AVX2), gpu=True)[0] == "mixed_float16"
    with pytest.raises(UsageError):
        resolve_precision("float16", cpuinfo(AVX2), gpu=False)
