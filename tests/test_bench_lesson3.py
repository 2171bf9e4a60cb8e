"""`fastcourse bench --cases lesson3`: the minutes arithmetic with known numbers, and a tiny run."""

import re

import pytest

import fastcourse.bench.cases as cases
from fastcourse.bench import lesson3
from fastcourse.bench.lesson3 import COURSE, Counts, after_minutes, before_minutes, estimate_line, head_epochs_for
from fastcourse.bench.report import Row
from fastcourse.cli import main

LINE = re.compile(r"^lesson3 estimate: \d+ min \(before: \d+ min\)$")


def test_before_minutes_are_the_course_counts_over_the_rates():
    rates = {"features": 10.0, "head": 100.0, "augmented_pass": 10.0, "full_epoch": 10.0}
    steps = before_minutes(rates)
    assert list(steps.values()) == pytest.approx(
        [
            25_000 / 10 / 60,  # 41.67: 23,000 train + 2,000 valid once through the convs
            8 * 23_000 / 100 / 60,  # 30.67: 8 head epochs on cached features
            3 * (23_000 / 10 + 2_000 / 10) / 60,  # 125.0: 3 augmented epochs, each validated through the convs
        ]
    )
    assert sum(steps.values()) == pytest.approx(197.333, abs=1e-3)


def test_after_minutes_cache_the_augmented_passes_and_train_the_head_on_all():
    rates = {"features": 20.0, "head": 200.0, "augmented_pass": 16.0, "full_epoch": 999.0}
    steps = after_minutes(rates, COURSE, passes=3)
    assert list(steps) == [
        "features (train + valid)",
        "3 augmented passes through the conv part, cached",
        "3 head epochs on clean + 3 augmented feature sets",
    ]
    assert list(steps.values()) == pytest.approx([25_000 / 20 / 60, 3 * 23_000 / 16 / 60, 3 * 4 * 23_000 / 200 / 60])
    assert sum(steps.values()) == pytest.approx(20.8333 + 71.875 + 23.0, abs=1e-3)
    # no passes: the head trains on the clean features for the course's 8 + 3 epochs, no full-model rate used
    none = after_minutes(rates, COURSE, passes=0)
    assert list(none.values()) == pytest.approx([25_000 / 20 / 60, 11 * 23_000 / 200 / 60])
    assert after_minutes(rates, COURSE, passes=3, head_epochs=8)[
        "8 head epochs on clean + 3 augmented feature sets"
    ] == pytest.approx(8 * 4 * 23_000 / 200 / 60)


def test_head_epochs_give_the_head_at_least_the_course_rows():
    assert [head_epochs_for(COURSE, p) for p in (0, 1, 2, 3, 5)] == [11, 6, 4, 3, 2]
    assert head_epochs_for(Counts(head_epochs=4, augmented_epochs=0), 3) == 1


def test_estimate_line_and_verdict():
    assert estimate_line(84.4, 182.2) == "lesson3 estimate: 84 min (before: 182 min)"
    assert LINE.match(estimate_line(84.4, 182.2))
    fast = {"features": 40.0, "head": 2000.0, "augmented_pass": 40.0}
    assert "within the 90-minute target" in lesson3.verdict(fast)
    # 25,000/12/60 = 34.7 min of features, each pass 23,000/12/60 = 31.9 min: 3 and 2 passes are over,
    # 1 pass with the head's 6 epochs over 2 x 23,000 rows (2.3 min) fits: 34.72 + 31.94 + 2.3 = 69
    slow = {"features": 12.0, "head": 2000.0, "augmented_pass": 12.0}
    text = lesson3.verdict(slow)
    assert (
        text.startswith("133 min: over the 90-minute target") and "task.passes: 1, train.epochs: 6 (69 min)" in text
    ), text
    # a slow head: 1 pass fits only with fewer head epochs (4 x 2 x 23,000 rows at 120/s = 25.6 min)
    measured = {"features": 13.8, "head": 118.9, "augmented_pass": 13.2}
    assert "task.passes: 1, train.epochs: 4 (85 min)" in lesson3.verdict(measured)
    # the conv passes alone: 25,000 / 13.8 / 60 = 30.2 min + 3 x 23,000 / 13.2 / 60 = 87.1 min
    assert lesson3.conv_floor_minutes(measured) == pytest.approx(117.3, abs=0.05)
    assert "forward passes alone (features + 3 augmented passes) take 117 min" in lesson3.verdict(measured)
    assert "take 131 min" in text  # 34.7 + 3 x 31.9
    # a fast conv part with a slow head: over the target, but not because of the conv passes
    slow_head = lesson3.verdict({"features": 40.0, "head": 60.0, "augmented_pass": 40.0})
    assert "over the 90-minute target" in slow_head and "alone" not in slow_head, slow_head
    assert "even without augmented passes" in lesson3.verdict({"features": 4.0, "head": 2000.0, "augmented_pass": 4.0})


def test_tiny_lesson3_case_rows_and_line(capsys):
    rows = lesson3.lesson3_case(images=8, size=32, jpeg_size=48, batch_size=4, units=16, rounds=1, epochs=2)
    measured = [r for r in rows if r.case == "lesson3"]
    estimates = [r for r in rows if r.case == "lesson3_estimate"]
    policies = {r.extra["policy"] for r in measured}
    assert "float32" in policies
    assert {r.extra["step"] for r in measured} == set(lesson3.STEPS)
    assert len(measured) == len(lesson3.STEPS) * len(policies)
    assert all(r.images_per_second > 0 for r in measured)
    assert [r.contender.split(":")[0] for r in estimates] == ["dogs vs cats, before", "dogs vs cats, after"]
    rates = estimates[0].extra["rates"]
    # the printed minutes are the arithmetic's on the measured rates
    assert estimates[0].seconds / 60 == pytest.approx(sum(before_minutes(rates["float32"]).values()))
    after_policy = [p for p in policies if p != "float32"] or ["float32"]
    assert estimates[1].seconds / 60 == pytest.approx(sum(after_minutes(rates[after_policy[0]]).values()))
    line = estimates[-1].extra["ratio_line"]
    assert LINE.match(line), line
    assert line == estimate_line(estimates[1].seconds / 60, estimates[0].seconds / 60)
    printed = capsys.readouterr().out
    assert "lesson3: before (float32, the course's path):" in printed and "task.passes: 3" in printed
    assert "could not be checked here" in printed


def test_bench_cli_prints_the_lesson3_line_last(monkeypatch, capsys, tmp_path):
    def fake(**kwargs):
        row = Row("lesson3_estimate", "dogs vs cats, after", 0.0, seconds=60.0)
        row.extra["ratio_line"] = estimate_line(84.0, 182.0)
        return [row]

    monkeypatch.setattr(cases, "lesson3_case", fake)
    assert main(["bench", "--cases", "lesson3", "--json", str(tmp_path / "b.json")]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert "lesson3 estimate: 84 min (before: 182 min)" in lines
    assert lines[lines.index("lesson3 estimate: 84 min (before: 182 min)") + 1].startswith("bench: JSON written")
    assert "lesson3" in cases.CASES and "lesson3" not in cases.DEFAULT_CASES


def test_features_disk_of_the_after_recipe():
    # 94,000 rows (4 x 23,000 + 2,000) of 14 x 14 x 512 float32 values
    assert lesson3.features_gb(COURSE, 3, 224) == pytest.approx(94_000 * 100_352 * 4 / 1e9)
    assert lesson3.features_gb(COURSE, 0, 224) == pytest.approx(25_000 * 100_352 * 4 / 1e9)
