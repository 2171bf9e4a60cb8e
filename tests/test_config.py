"""The config validator: every kind of bad config fails at load with one line naming the
file, the dotted key, the value and what is allowed."""
from pathlib import Path

import pytest

from fastcourse.config import load_config, parse_scalar
from fastcourse.errors import ConfigError
from fastcourse.tasks.check import load_checked

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.train.epochs >= 1
    assert path.read_text().startswith("#"), "each config starts with a header comment"


def error_of(tmp_path, text, overrides=None):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_checked(path, overrides)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


BASE = "name: t\nmodel: {name: cnn}\ntrain: {epochs: 2}\n"


def test_typo_suggests_the_nearest_key(tmp_path):
    msg = error_of(tmp_path, BASE.replace("epochs", "epoch"))
    assert "train.epoch" in msg and "did you mean 'epochs'" in msg and "allowed:" in msg


def test_unknown_top_level_key(tmp_path):
    msg = error_of(tmp_path, BASE + "trian: {}\n")
    assert "trian: unknown key" in msg and "did you mean 'train'" in msg


def test_wrong_type(tmp_path):
    msg = error_of(tmp_path, BASE.replace("epochs: 2", "epochs: many"))
    assert "train.epochs = 'many'" in msg and "integer" in msg


@pytest.mark.parametrize("value", ["0", "-3"])
def test_non_positive_epochs(tmp_path, value):
    msg = error_of(tmp_path, BASE.replace("epochs: 2", f"epochs: {value}"))
    assert f"train.epochs = {value}" in msg and "greater than 0" in msg


def test_bad_choice_lists_allowed(tmp_path):
    msg = error_of(tmp_path, BASE.replace("epochs: 2", "epochs: 2, optimizer: adagrad"))
    assert "train.optimizer = 'adagrad'" in msg and "'adam'" in msg


@pytest.mark.parametrize("section,name,kind", [
    ("model", "cnnn", "model"), ("data", "mnsit", "dataset"), ("augment", "corse", "augmentation"),
])
def test_unknown_registered_names(tmp_path, section, name, kind):
    msg = error_of(tmp_path, BASE + f"{section}: {{name: {name}}}\n" if section != "model"
                   else BASE.replace("name: cnn", f"name: {name}"))
    assert f"{section}.name = '{name}'" in msg and f"unknown {kind}" in msg and "did you mean" in msg


def test_unknown_schedule(tmp_path):
    msg = error_of(tmp_path, BASE.replace("epochs: 2", "epochs: 2, schedule: {name: cosin}"))
    assert "train.schedule.name = 'cosin'" in msg and "did you mean 'cosine'" in msg


def test_builder_arguments_are_checked_against_its_signature(tmp_path):
    msg = error_of(tmp_path, BASE.replace("name: cnn", "name: cnn, dens: 64"))
    assert "model.dens: unknown key" in msg and "did you mean 'dense'" in msg
    msg = error_of(tmp_path, BASE.replace("name: cnn", "name: cnn, dense: lots"))
    assert "model.dense = 'lots'" in msg
    msg = error_of(tmp_path, BASE.replace("name: cnn", "name: cnn, num_classes: 3"))
    assert "model.num_classes" in msg and "set from the data" in msg


def test_schedule_values_are_checked(tmp_path):
    msg = error_of(tmp_path, BASE.replace("train: {epochs: 2}",
                                          "train: {schedule: {name: phases, phases: [[1, -0.1]]}}"))
    assert "train.schedule (phases)" in msg and "must be > 0" in msg
    msg = error_of(tmp_path, BASE.replace("epochs: 2", "epochs: 3, schedule: {name: phases, phases: [[1, 0.1]]}"))
    assert "phases add up to 1" in msg


def test_malformed_yaml_names_the_line(tmp_path):
    msg = error_of(tmp_path, "name: t\ntrain: {epochs: 2\nmodel: x\n")
    assert f"{tmp_path / 'exp.yaml'}:3:6: malformed YAML" in msg


def test_top_level_must_be_a_mapping(tmp_path):
    assert "must be a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_missing_file():
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("does/not/exist.yaml")


def test_overrides_and_defaults(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(BASE)
    cfg = load_config(path, ["train.batch_size=128", "train.schedule.lr=1e-2", "model.dense=64"])
    assert cfg.train.batch_size == 128 and cfg.model.args["dense"] == 64
    assert cfg.train.schedule.args["lr"] == pytest.approx(0.01)
    assert cfg.data.name == "mnist_sample" and cfg.augment.name == "none"  # defaults in code
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(path, ["train.batch_size"])


def test_phases_define_epochs(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train: {schedule: {name: phases, phases: [[1, 1.0e-3], [4, 1.0e-4]]}}\n")
    assert load_config(path).train.epochs == 5


def test_parse_scalar():
    assert parse_scalar("1e-3") == pytest.approx(1e-3)
    assert parse_scalar("[1, 2]") == [1, 2]
    assert parse_scalar("true") is True
    assert parse_scalar("adam") == "adam"


def test_resolved_config_round_trips(tmp_path):
    import yaml

    cfg = load_config(CONFIGS[0])
    again = load_config(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


# --- bounds and switches -------------------------------------------------------------------

@pytest.mark.parametrize("text,words", [
    ("train: {batch_size: 0}", ["train.batch_size = 0", "greater than 0"]),
    ("train: {batch_size: 100000000}", ["train.batch_size", "less than or equal to 65536"]),
    ("train: {epochs: true}", ["train.epochs = True", "not a number"]),
    ("train: {epochs: yes}", ["train.epochs = 'yes'", "integer"]),  # YAML 1.2: yes is a string
    ("train: {jit_compile: yes}", ["train.jit_compile = 'yes'", "true or false"]),
    ("train: {deterministic: 1}", ["train.deterministic = 1", "true or false"]),
    ("train: {weight_decay: -0.1}", ["train.weight_decay = -0.1"]),
    ("seed: -1", ["seed = -1"]),
    ("seed: 99999999999", ["seed = 99999999999", "4294967295"]),
    ("name: ../elsewhere", ["name = '../elsewhere'", "plain folder name"]),
    ("data: {name: mnist_sample, train_limit: 0}", ["data.train_limit = 0"]),
    ("ensemble: {members: 2, seeds: [1, -1]}", ["ensemble.seeds.1 = -1"]),
    ("model: {name: cnn_bn_dropout, dropout: 1.5}", ["model.dropout = 1.5", "[0, 1)"]),
    ("model: {name: cnn_bn_dropout, dropout: '1.5'}", ["model.dropout = 1.5", "[0, 1)"]),  # converted, then bounded
    ("model: {name: cnn, filters: [8, 0]}", ["model.filters[1] = 0", "[1, 65536]"]),
    ("model: {name: cnn, dense: true}", ["model.dense = True", "not a number"]),
    ("augment: {name: course, zoom: -0.2}", ["augment.zoom = -0.2", "[0, 1)"]),
    ("augment: {name: dogscats, horizontal_flip: yes}", ["augment.horizontal_flip = 'yes'", "true or false"]),
    ("augment: {name: affine, rotation: 720}", ["augment.rotation = 720", "[0, 180]"]),
    ("data: {name: image_folder, path: x, image_size: [4, 4]}", ["data.image_size[0] = 4", "[8, 4096]"]),
    ("data: {name: image_folder, path: x, image_size: [224]}", ["data.image_size = [224]", "give 2"]),
    ("train: {schedule: {name: constant, lr: 0}}", ["train.schedule.lr = 0", "(0, 10]"]),
    ("train: {schedule: {name: one_cycle, pct_start: 1.0}}", ["train.schedule.pct_start = 1.0"]),
    ("task: {name: features, passes: -1}", ["task.passes = -1"]),
])
def test_values_out_of_range_are_refused(tmp_path, text, words):
    msg = error_of(tmp_path, text + "\n")
    for word in words:
        assert word in msg, (word, msg)


def test_legal_edges_pass(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: ok_name-1.2\nseed: 4294967295\nmodel: {name: cnn_bn_dropout, dropout: 0.0}\n"
                    "augment: {name: course, zoom: 0, rotation: '15'}\n"
                    "train: {batch_size: 1, jit_compile: false, schedule: {name: constant, lr: 1e-3}}\n")
    cfg = load_checked(path)
    assert cfg.augment.args["rotation"] == 15.0 and cfg.train.schedule.args["lr"] == pytest.approx(1e-3)
