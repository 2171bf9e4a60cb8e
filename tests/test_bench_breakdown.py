"""Where the seconds to the target go (`--breakdown`) and the machine line beside every ratio: the
arithmetic on clock marks, without running torch or a training."""

from __future__ import annotations

import pytest

from benchmarks import fastai_peer
from fastcourse.bench import breakdown
from fastcourse.bench.report import machine_line

# The marks of one run: 0.5 s building the model, one fit call whose training began 0.3 s after
# the call, whose first execution (8 steps of 128) ended 2.5 s later, and whose 421 steps of 128
# ended at 20.0; the steady rate 6,000 images/s; BN statistics 0.3 s; evaluation 1.2 s (not counted).
MARKS = {
    "build": 0.5,
    "fits": [{"call": 10.0, "begin": 10.3, "first": 12.8, "first_images": 1024, "end": 20.0, "images": 53_888}],
    "steady_images_per_second": 6000.0,
    "bn": 0.3,
    "eval": 1.2,
}


def test_phases_split_the_timed_seconds():
    split = breakdown.phases(MARKS, total=12.0)
    assert list(split) == list(breakdown.PHASES)
    assert split["model build"] == 0.5
    assert split["fit setup (pipeline, compile)"] == pytest.approx(0.3)
    # the first execution less what its 1,024 images cost at the steady rate: the tracing
    assert split["tracing / first step"] == pytest.approx(2.5 - 1024 / 6000)
    assert split["steady steps"] == pytest.approx(53_888 / 6000)
    assert split["batchnorm statistics"] == 0.3
    assert sum(split.values()) == pytest.approx(12.0)  # `other` takes the rest
    assert split["other"] == pytest.approx(12.0 - 0.5 - 0.3 - (2.5 - 1024 / 6000) - 53_888 / 6000 - 0.3)


def test_phases_sum_over_fit_calls_and_survive_missing_marks():
    second = {"call": 30.0, "begin": 30.2, "first": 31.2, "first_images": 1024, "end": 40.0, "images": 53_888}
    split = breakdown.phases({**MARKS, "fits": [*MARKS["fits"], second]}, total=25.0)
    assert split["fit setup (pipeline, compile)"] == pytest.approx(0.5)
    assert split["tracing / first step"] == pytest.approx(2.5 + 1.0 - 2 * 1024 / 6000)
    assert split["steady steps"] == pytest.approx(2 * 53_888 / 6000)
    empty = breakdown.phases({}, total=3.0)  # a run that recorded nothing: all of it is `other`
    assert empty["other"] == 3.0 and sum(empty.values()) == 3.0


def test_roofline_share_and_table():
    # the course CNN's 61.4 MFLOP per training image at 6,000 images/s: 368 GFLOP/s of a 1,000 GFLOP/s matmul
    assert breakdown.roofline_share(6000.0, 61.4e6, 1000.0) == pytest.approx(0.3684)
    assert breakdown.roofline_share(6000.0, 61.4e6, 0.0) == 0.0
    lines = breakdown.table("fastcourse seed 0", MARKS, 12.0, 61.4e6, 1000.0)
    assert lines[0] == "breakdown, fastcourse seed 0: 12.00 s to the target"
    steady = next(line for line in lines if "steady steps" in line)
    assert (
        "8.98 s" in steady and "74.8%" in steady and "6,000 images/s" in steady and "37% of bf16 matmul 1000" in steady
    )
    assert lines[-1].split()[-2:] == ["1.20", "s"]  # the evaluation, beside, not counted


def test_fastai_breakdown_takes_each_phase_median_per_side():
    def run(side, seconds, build):
        return {"side": side, "seconds": seconds, "marks": {**MARKS, "build": build}, "bf16_matmul_gflops": 1000.0}

    runs = [run("fastai", 12.0, 0.1), run("fastai", 13.0, 0.3), run("fastai", 20.0, 0.2), run("fastcourse", 12.0, 0.5)]
    lines = fastai_peer.breakdown_lines(runs, 61.4e6)
    assert lines[0] == "breakdown, fastai: median of 3 runs, 13.00 s"
    assert lines[1].split()[-2:] == ["0.20", "s"]  # model build: the median of 0.1, 0.3, 0.2
    assert any("37% of bf16 matmul 1000" in line for line in lines)
    assert "breakdown, fastcourse: median of 1 runs, 12.00 s" in lines


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""


def test_machine_line_names_cpu_cores_bf16_flags_and_load():
    line = machine_line(CPUINFO, cores=2, load=(1.93, 0.77, 0.29))
    assert line == (
        "machine: Intel(R) Xeon(R) Platinum 8488C, 2 cores, bf16/AMX flags: avx512_bf16 amx_bf16 amx_tile, "
        "load average 1.93 0.77 0.29"
    )
    epyc = "model name\t: AMD EPYC 9R14\nflags\t\t: avx2 avx512f avx512_bf16\n"
    assert "AMD EPYC 9R14, 16 cores, bf16/AMX flags: avx512_bf16," in machine_line(epyc, cores=16, load=(0.5, 0, 0))
    old = "model name\t: Intel(R) Xeon(R) CPU E5-2686 v4\nflags\t\t: avx2 fma\n"
    assert "bf16/AMX flags: none" in machine_line(old, cores=4, load=(1.0, 1.0, 1.0))


def test_machine_line_of_this_machine():
    line = machine_line()
    assert line.startswith("machine: ") and " cores, bf16/AMX flags: " in line and "load average " in line
