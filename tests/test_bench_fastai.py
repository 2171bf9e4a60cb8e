"""`python -m benchmarks --cases fastai` (`make bench-fastai`): the medians, the parsable ratio
line, and the interleaved runs (with a stand-in for the fastai environment: torch is not a test
dependency)."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from benchmarks import fastai_peer
from fastcourse.bench.report import Row


def _run(side, seed, seconds, reached=True, acc=0.9):
    return {"side": side, "seed": seed, "seconds": seconds, "accuracy": acc, "epochs": 1, "reached": reached}


def test_ratio_is_fastcourse_median_over_fastai_median():
    runs = [_run("fastai", s, t) for s, t in enumerate((20.0, 22.0, 30.0))]
    runs += [_run("fastcourse", s, t) for s, t in enumerate((18.0, 17.6, 40.0))]
    rows = fastai_peer.fastai_rows(runs, 0.8981)
    assert [r.contender for r in rows[-2:]] == ["fastai: median of 3", "fastcourse: median of 3"]
    assert rows[-2].seconds == 22.0 and rows[-1].seconds == 18.0
    line = rows[-1].extra["ratio_line"]
    assert line.startswith("fastai ratio: 0.82x | machine: ") and "cores" in line and "load average" in line


def test_a_missed_target_is_no_ratio():
    runs = [_run("fastai", 0, 20.0), _run("fastcourse", 0, 10.0, reached=False, acc=0.85)]
    rows = fastai_peer.fastai_rows(runs, 0.8981)
    assert rows[-1].extra["ratio_line"].startswith("fastai ratio: not reached | machine: ")
    assert "NOT reached" in rows[1].notes


@pytest.mark.slow  # ~20 s of fresh processes
@pytest.mark.integration
def test_sides_interleave_in_fresh_processes(tmp_path, monkeypatch):
    """A stand-in fastai Python that logs its calls: the order alternates by seed, and the real
    fastcourse side reaches a low target on a small sample."""
    from fastcourse.data import DATASETS

    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo fastai >> "{log}"\n'
        'echo \'{"side": "fastai", "seed": 0, "seconds": 100.0, "accuracy": 0.99, "epochs": 1, "reached": true}\'\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    data = DATASETS.get("mnist_sample")().limit(1024, 256)
    data.name = "fashion_stand_in"  # a Fashion-MNIST name takes FASHION_TARGET, lowered for the small sample
    monkeypatch.setattr(fastai_peer, "FASHION_TARGET", 0.5)
    calls = []
    real = fastai_peer._run_side

    def spy(command):
        calls.append("fastai" if command[0] == str(fake) else "fastcourse")
        return real(command)

    monkeypatch.setattr(fastai_peer, "_run_side", spy)
    rows = fastai_peer.fastai_case(data, seeds=(0, 1), python=fake)
    assert calls == ["fastai", "fastcourse", "fastcourse", "fastai"]
    assert log.read_text().split() == ["fastai", "fastai"]
    ours = [r for r in rows if r.contender.startswith("fastcourse seed")]
    assert len(ours) == 2 and all(r.test_accuracy >= 0.5 for r in ours)
    assert rows[-1].extra["ratio_line"].startswith("fastai ratio: ")
    ratio = float(rows[-1].extra["ratio_line"].split()[2].rstrip("x"))
    assert ratio == pytest.approx(rows[-1].seconds / 100.0, abs=0.005)


def test_rows_are_rows():
    rows = fastai_peer.fastai_rows([_run("fastai", 0, 1.0), _run("fastcourse", 0, 1.0)], 0.5)
    assert all(isinstance(r, Row) for r in rows)
    assert json.dumps(rows[-1].extra) and np.isclose(rows[-1].ratio_to_peer, 1.0)
