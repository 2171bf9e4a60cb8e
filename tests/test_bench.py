"""`fastcourse bench` runs end to end (on a few hundred images: a smoke test, not a timing)."""
import json

import pytest

import fastcourse.lessons.bench as bench
from fastcourse.data.arrays import mnist_sample
from fastcourse.cli import main


def test_bench_ladder_case_writes_table_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "bench_data", lambda quick: mnist_sample().limit(768, 128))
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--cases", "ladder", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["case"] for r in rows] == ["ladder_cnn_1_epoch"] * 4
    assert rows[0]["contender"].startswith("peer") and rows[0]["ratio_to_peer"] == pytest.approx(1.0)
    assert all(r["images_per_second"] > 0 and 0 <= r["test_accuracy"] <= 1 for r in rows)
    assert report["matmul_gflops"] > 0
    printed = capsys.readouterr().out
    assert "images/s (wall)" in printed and "vs peer (steady)" in printed
    assert rows[0]["wall_ratio_to_peer"] == pytest.approx(1.0) and rows[1]["wall_images_per_second"] > 0


def test_unknown_case_is_a_usage_error(capsys):
    assert main(["bench", "--cases", "ladder,warp"]) == 2
    assert "unknown case(s) ['warp']" in capsys.readouterr().err


def test_flops_of_the_ladder_cnn_match_the_published_estimate():
    from fastcourse.lessons.flops import forward_flops_per_image, train_flops_per_image
    from fastcourse.models import build_model

    model = build_model("cnn_bn_dropout", (28, 28, 1), 10)
    assert forward_flops_per_image(model) / 1e6 == pytest.approx(20.5, rel=0.01)  # "about 20.5 MFLOP"
    assert train_flops_per_image(model) / 1e6 == pytest.approx(61.4, rel=0.01)
