"""`fastcourse bench` and the repository's comparisons (`python -m benchmarks`) run end to end
(on a few hundred images: a smoke test, not a timing)."""

import json

import pytest

import benchmarks.__main__ as benchmarks_cli
import benchmarks.cases as comparisons
import benchmarks.peer as peer
import fastcourse.bench.cases as cases
import fastcourse.bench.gpu as gpu
import fastcourse.bench.memory as memory
import fastcourse.bench.recipe as recipe
import fastcourse.bench.report as report
from fastcourse.cli import main
from fastcourse.data.arrays import mnist_sample


@pytest.mark.slow  # ~25 s; the time-to-accuracy case stays in the default tier
@pytest.mark.integration
def test_bench_ladder_case_writes_table_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cases, "bench_data", lambda quick: mnist_sample().limit(768, 128))
    out = tmp_path / "bench.json"
    assert benchmarks_cli.main(["--quick", "--cases", "ladder", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["case"] for r in rows] == ["ladder_cnn_1_epoch"] * 4
    assert rows[0]["contender"].startswith("peer") and rows[0]["ratio_to_peer"] == pytest.approx(1.0)
    assert all(r["images_per_second"] > 0 and 0 <= r["test_accuracy"] <= 1 for r in rows)
    assert report["matmul_gflops"] > 0
    printed = capsys.readouterr().out
    assert "images/s (wall)" in printed and "vs peer (steady)" in printed
    assert printed.count("vs peer (steady)") == 1  # the table, printed once
    assert rows[0]["wall_ratio_to_peer"] == pytest.approx(1.0) and rows[1]["wall_images_per_second"] > 0


def test_unknown_case_is_a_usage_error(capsys):
    assert main(["bench", "--cases", "lesson3,warp"]) == 2
    assert "unknown case(s) ['warp']" in capsys.readouterr().err
    # the comparisons left the package: the message says where they are
    assert main(["bench", "--cases", "ladder"]) == 2
    assert "benchmarks/" in capsys.readouterr().err
    assert benchmarks_cli.main(["--cases", "ladder,warp"]) == 2
    assert "unknown case(s) ['warp']" in capsys.readouterr().err


def test_flops_of_the_ladder_cnn_match_the_published_estimate():
    from fastcourse.bench.flops import forward_flops_per_image, train_flops_per_image
    from fastcourse.models import build_model

    model = build_model("cnn_bn_dropout", (28, 28, 1), 10)
    assert forward_flops_per_image(model) / 1e6 == pytest.approx(20.5, rel=0.01)  # "about 20.5 MFLOP"
    assert train_flops_per_image(model) / 1e6 == pytest.approx(61.4, rel=0.01)


# --- time to accuracy, precision, --gpu, memory (issue: time to accuracy 8x) -----------------


def test_time_to_reach_and_the_parsable_ratio_line():
    import re

    curve = [(10.0, 0.80), (21.0, 0.89), (30.5, 0.915), (41.0, 0.91)]
    assert report.time_to_reach(curve, 0.915) == 30.5  # the first epoch at or over the target
    assert report.time_to_reach(curve, 0.89) == 21.0
    assert report.time_to_reach(curve, 0.92) is None
    theirs = [(60.0 * (i + 1), acc) for i, acc in enumerate([0.85, 0.88, 0.90, 0.905, 0.912])]
    ratio = report.speedup(report.time_to_reach(theirs, theirs[-1][1]), report.time_to_reach(curve, theirs[-1][1]))
    assert ratio == pytest.approx(300.0 / 30.5)
    line = report.ratio_line(ratio)
    assert line == "time-to-accuracy ratio: 9.8x"
    assert float(re.fullmatch(r"time-to-accuracy ratio: (\d+(?:\.\d+)?)x", line).group(1)) == 9.8
    assert report.ratio_line(None) == "time-to-accuracy ratio: not reached"
    assert report.speedup(300.0, None) is None


def test_without_fashion_mnist_the_bench_says_how_to_get_it(monkeypatch, capsys):
    from fastcourse.data import DATASETS
    from fastcourse.errors import DataError

    original = DATASETS.get

    def missing(name):
        if name == "fashion_mnist":

            def load(**kwargs):
                raise DataError("fashion_mnist: not found")

            return load
        return original(name)

    monkeypatch.setattr(DATASETS, "get", missing)
    data = recipe.bench_data(quick=True)
    assert data.name == "mnist_sample"
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "Fashion-MNIST" in ln]
    assert "dataset-fashion-mnist" in line and "fastcourse data get fashion_mnist" in line and "0.97" in line


@pytest.mark.integration
def test_time_to_accuracy_case_on_a_tiny_sample(capsys):
    data = mnist_sample().limit(512, 128)
    fast = {
        "batch_size": 128,
        "steps_per_execution": 2,
        "max_lr": 6e-3,
        "augment": None,
        "bn_batches": 2,
        "policy": "float32",
        "restarts": 0.5,
    }
    rows = comparisons.peer_time_to_accuracy_case(data, 0, peer_epochs=1, fast=fast, max_epochs=2, target=0.0)
    out = capsys.readouterr().out
    assert "bench: precision float32" in out and "mixed_bfloat16" in out and "images/s" in out
    theirs, ours = rows
    assert ours.notes == "target 0.0000 reached after 1 cycle(s)" and ours.seconds > 0 and theirs.seconds > 0
    assert ours.ratio_to_peer == pytest.approx(theirs.seconds / ours.seconds)
    assert ours.extra["ratio_line"].startswith(report.ratio_line(ours.ratio_to_peer) + " | machine: ")


@pytest.mark.integration
def test_time_to_accuracy_breakdown_adds_up_to_the_seconds(capsys):
    """fastcourse's case alone, with --breakdown: the phases add up to the timed seconds, the steady
    steps are the trained images at the measured rate, and the split is printed with the roofline."""
    data = mnist_sample().limit(1024, 128)
    fast = {**recipe.FAST_TO_ACCURACY, "steps_per_execution": 2, "bn_batches": 2, "policy": "float32", "fraction": 1.0}
    (row,) = cases.time_to_accuracy_case(data, 0, fast, max_epochs=1, target=0.0, breakdown=True)
    split, marks = row.extra["phases"], row.extra["marks"]
    assert sum(split.values()) == pytest.approx(row.seconds)
    assert split["steady steps"] == pytest.approx(1024 // 128 * 128 / marks["steady_images_per_second"])
    assert all(split[k] > 0 for k in ("model build", "fit setup (pipeline, compile)", "batchnorm statistics"))
    assert marks["eval"] > 0 and row.extra["bf16_matmul_gflops"] > 0
    out = capsys.readouterr().out
    assert "breakdown, fastcourse seed 0:" in out and "of bf16 matmul" in out and "machine: " in out


def test_bench_gpu_without_a_gpu_prints_one_line(capsys):
    from fastcourse.train.precision import has_gpu

    if has_gpu():
        pytest.skip("this machine has a GPU: bench --gpu would train for real")
    assert main(["bench", "--gpu"]) == 0
    assert capsys.readouterr().out.strip() == gpu.GPU_SKIP


@pytest.mark.slow  # ~15 s of training in child processes
@pytest.mark.integration
def test_memory_case_on_tiny_sizes_returns_rss_figures(capsys):
    rows = memory.memory_case((16, 48), warm=False, size=32, distinct=8, units=8, epochs=1, batch_size=8)
    assert [r.case for r in rows] == ["memory_feature_head"] * 2
    for r in rows:
        assert r.extra["peak_rss_mb"] > 50 and r.images_per_second > 0 and r.extra["features_file_mb"] > 0
    assert "peak RSS at 48 images" in capsys.readouterr().out


@pytest.mark.integration
def test_features_case_compares_folder_with_memory_and_cached_heads():
    from fastcourse.bench.features import features_case

    rows = features_case(images=8, size=32, batch_size=4, epochs=2, units=8, rounds=2)
    assert [r.case for r in rows] == ["features_vgg16_32"] * 2 + ["features_head"] * 2
    assert all(r.images_per_second > 0 for r in rows)
    assert rows[3].ratio_to_peer == pytest.approx(rows[3].images_per_second / rows[2].images_per_second, rel=1e-6)


def test_the_peer_is_plain_keras():
    """The peer trains Keras' own BatchNormalization (fastcourse's fused layer would speed the peer
    up too and hide the comparison); same layers, names and weight shapes otherwise."""
    import keras

    from fastcourse.data.arrays import mnist_sample
    from fastcourse.models.blocks import BatchNorm

    data = mnist_sample()
    ours, plain = recipe.course_model(data), peer.plain_keras_model(data)
    bn = [layer for layer in plain.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bn) == 5 and all(type(layer) is keras.layers.BatchNormalization for layer in bn)
    assert sum(isinstance(layer, BatchNorm) for layer in ours.layers) == 5
    assert [x.name for x in plain.layers] == [x.name for x in ours.layers]
    assert [w.shape for w in plain.weights] == [w.shape for w in ours.weights]


@pytest.mark.integration
def test_bn_epoch_case_reports_the_overhead_and_true_figures(capsys):
    from fastcourse.bench.bn_epoch import bn_epoch_case

    (row,) = bn_epoch_case(mnist_sample().limit(640, 128), 0, epochs=3)
    assert row.case == "bn_epoch" and 0 < row.extra["overhead_share"] < 1
    assert len(row.extra["bn_epoch_seconds"]) == len(row.extra["epoch_seconds"]) == 3
    # the last epoch's val figure is the model the run evaluates
    assert row.extra["val_accuracy"][-1] == pytest.approx(row.extra["final_accuracy"], abs=1e-6)
    assert "of an epoch" in capsys.readouterr().out


def test_features_precision_rates_float32_and_bf16(capsys):
    import keras

    from fastcourse.bench.features import precision_rates

    rows = precision_rates(images=4, size=32, batch_size=2, rounds=1)
    assert [r.contender.split(", ")[1] for r in rows] == ["float32", "mixed_bfloat16"]
    assert all(r.images_per_second > 0 for r in rows)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert capsys.readouterr().out.count("images/s") == 2
