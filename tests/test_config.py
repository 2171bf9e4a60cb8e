"""The config validator: every kind of bad config fails at load with one line per problem naming
the file, the dotted key, the value and what is allowed, every problem of a config at once."""

from pathlib import Path

import pytest

from fastcourse.config import load_config, parse_scalar
from fastcourse.errors import ConfigError

# experiment configs; configs/sweeps/ holds sweep specs (tests/test_sweep.py checks those)
CONFIGS = sorted(p for p in Path(__file__).resolve().parents[1].glob("configs/**/*.yaml") if p.parent.name != "sweeps")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_shipped_config_validates(path):
    cfg = load_config(path)  # the whole check `fastcourse run` makes
    assert cfg.train.epochs >= 1
    assert path.read_text().startswith("#"), "each config starts with a header comment"


def error_of(tmp_path, text, overrides=None):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    msg = str(err.value)
    assert all(line.startswith(f"{path}") for line in msg.splitlines()), msg  # one line per problem
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


@pytest.mark.parametrize(
    "section,name,kind",
    [
        ("model", "cnnn", "model"),
        ("data", "mnsit", "dataset"),
        ("augment", "corse", "augmentation"),
    ],
)
def test_unknown_registered_names(tmp_path, section, name, kind):
    msg = error_of(
        tmp_path,
        BASE + f"{section}: {{name: {name}}}\n" if section != "model" else BASE.replace("name: cnn", f"name: {name}"),
    )
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
    msg = error_of(
        tmp_path, BASE.replace("train: {epochs: 2}", "train: {schedule: {name: phases, phases: [[1, -0.1]]}}")
    )
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


@pytest.mark.parametrize(
    "text,words",
    [
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
        # the features task refused these at run time while check passed them (one rule, one place now)
        ("task: {name: features, pseudo_ratio: 1}", ["task.pseudo_ratio = 1", "[0, 1)"]),
        ("task: {name: features, pseudo_rounds: 0}", ["task.pseudo_rounds = 0", "[1, 100]"]),
        ("task: {name: features, finetune_scale: 0}", ["task.finetune_scale = 0", "(0, 10]"]),
        ("task: {name: features, head: {dropout: 5}}", ["task.head.dropout = 5", "[0, 1)"]),
        ("task: {name: features, head: {unit: 5}}", ["task.head.unit: unknown key", "did you mean 'units'"]),
        ("task: {name: features, head: {num_classes: 5}}", ["task.head.num_classes", "set from the data"]),
        ("task: {name: finetune, lr_mult: 0}", ["task.lr_mult = 0", "(0, 1000000]"]),
        ("task: {name: finetune, freeze_epochs: -1}", ["task.freeze_epochs = -1"]),
        ("task: {name: sklearn_features, C: 0}", ["task.C = 0", "(0, inf)"]),
        ("task: {name: sklearn_features}\nensemble: {members: 2}", ["ensemble of task 'sklearn_features'"]),
        # a cached-features task never sees a batch of images: a mix there would be silently unused
        ("task: {name: features}\naugment: {name: none, mix: {name: mixup}}", ["augment.mix with task 'features'"]),
        ("task: {name: sklearn_features}\naugment: {name: course, mix: {name: cutmix}}", ["task: train"]),
    ],
)
def test_values_out_of_range_are_refused(tmp_path, text, words):
    msg = error_of(tmp_path, text + "\n")
    for word in words:
        assert word in msg, (word, msg)


def test_legal_edges_pass(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: ok_name-1.2\nseed: 4294967295\nmodel: {name: cnn_bn_dropout, dropout: 0.0}\n"
        "augment: {name: course, zoom: 0, rotation: '15'}\n"
        "train: {batch_size: 1, jit_compile: false, schedule: {name: constant, lr: 1e-3}}\n"
    )
    cfg = load_config(path)
    assert cfg.augment.args["rotation"] == 15.0 and cfg.train.schedule.args["lr"] == pytest.approx(1e-3)


def test_every_problem_is_reported_at_once(tmp_path):
    """Tree, sections, bounds, schedule and overrides: one ConfigError, one line per problem."""
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: t\nseed: -1\nmodel: {name: cnn, dense: 0, dens: 3}\n"
        "augment: {name: course, zoom: 2}\ntrain: {batch_size: 0}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, ["train.schedule.lr=-1", "train.epochs", "data.train_limit=[1"])
    lines = str(err.value).splitlines()
    assert lines == err.value.problems
    # a key an override set names the override; every other line names the file
    assert all(
        line.startswith("--set " if "--set" in line or "train.schedule.lr" in line else str(path)) for line in lines
    )
    for words in (
        ["seed = -1"],
        ["train.batch_size = 0"],
        ["model.dense = 0", "[1, 65536]"],
        ["model.dens: unknown key"],
        ["augment.zoom = 2", "[0, 1)"],
        ["train.schedule.lr = -1.0"],
        ["--set 'train.epochs'", "key.path=value"],
        ["--set data.train_limit", "not valid YAML"],
    ):
        assert any(all(w in line for w in words) for line in lines), (words, lines)
    assert len(lines) == 8, lines


def test_a_valid_tree_with_bad_sections_reports_them_all(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {name: cnn, dense: 0}\naugment: {name: corse}\ntask: {name: features, passes: -2}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(err.value.problems) == 3 and "did you mean 'course'" in str(err.value)


@pytest.mark.parametrize(
    "override,words",
    [
        ("train.schedule.phases=[[2, 1e-3]", ["--set train.schedule.phases", "not valid YAML", "close the brackets"]),
        ("x=!!python/object:os.system ls", ["--set x", "!!python/object:os.system", "YAML tag"]),
        ("model.name=!custom 3", ["--set model.name", "!custom", "YAML tag"]),
        ("name={a: 1", ["--set name", "not valid YAML"]),
        ("train.epochs.x=3", ["--set train.epochs.x", "train.epochs is a value, not a section"]),
        ("=3", ["--set '=3'", "empty part"]),
    ],
)
def test_a_bad_override_is_one_line_naming_its_key(tmp_path, override, words):
    path = tmp_path / "exp.yaml"
    path.write_text(BASE)
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert len(err.value.problems) == 1, err.value.problems
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_one_way_to_load_a_config():
    """fastcourse.load_config is config.load_config, the whole check; no other loader is left."""
    import importlib.util

    import fastcourse
    import fastcourse.config

    assert fastcourse.load_config is fastcourse.config.load_config
    for gone in ("read_config", "validate_config", "validate_tree", "read_raw", "load_checked"):
        assert not hasattr(fastcourse.config, gone), gone
    assert importlib.util.find_spec("fastcourse.tasks.check") is None


def test_a_set_override_is_named_as_such():
    """A problem with a key an override set names `--set`, not the file it was applied to."""
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS[0], ["train.bach_size=3", "model.filterz=2"])
    lines = err.value.problems
    typo = "--set train.bach_size: unknown key; did you mean 'batch_size'?"
    assert any(line.startswith(typo) for line in lines), lines
    assert any(line.startswith("--set model.filterz") for line in lines), lines
    assert not any(str(CONFIGS[0]) in line for line in lines), lines


def test_no_task_repeats_a_rule_of_the_config():
    """A bound lives in fastcourse.config (ARG_BOUNDS); no task or dataset function refuses its own
    arguments by number again (they once disagreed: check passed pseudo_ratio 1, run refused it)."""
    import ast
    import inspect

    from fastcourse.config import ARG_BOUNDS
    from fastcourse.data import folder_sets
    from fastcourse.tasks import features, finetune, sklearn, train

    for module in (features, finetune, sklearn, train, folder_sets):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.If) and any(isinstance(n, ast.Raise) for n in node.body):
                names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
                numbers = [
                    n
                    for n in ast.walk(node.test)
                    if isinstance(n, ast.Constant)
                    and isinstance(n.value, (int, float))
                    and not isinstance(n.value, bool)
                ]
                assert not (names & set(ARG_BOUNDS) and numbers), (module.__name__, ast.unparse(node.test))


def test_a_bad_declared_field_does_not_hide_the_sections_arguments(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data: {name: image_folder, path: x, train_limit: 0, image_size: [4, 16]}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(err.value.problems) == 2, err.value.problems
    assert "data.train_limit = 0" in str(err.value) and "data.image_size[0] = 4" in str(err.value)
