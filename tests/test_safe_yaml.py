"""Hostile and hand-edited YAML: fastcourse.safe_yaml refuses it with one line naming the file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from fastcourse.errors import ConfigError
from fastcourse.safe_yaml import MAX_BYTES, load_yaml, loads_yaml

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)


def refused(text: str, source: str = "cfg.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        loads_yaml(text, source)
    message = str(info.value)
    assert "\n" not in message and message.startswith(source)
    return message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train:\n  epochs: 2\n  epochs: 3\n", "cfg.yaml:3: train.epochs: duplicate key (first at line 2); keep one"),
        ("data: {name: mnist}\ndata: {name: x}\n", "cfg.yaml:2: data: duplicate key (first at line 1)"),
        (
            "train:\n  schedule:\n    phases:\n      - {lr: 1, lr: 2}\n",
            "cfg.yaml:4: train.schedule.phases[0].lr: duplicate key",
        ),
        ("", "cfg.yaml: empty config"),
        ("# only a comment\n", "cfg.yaml: empty config"),
        ("- data\n- model\n", "the top level must be a mapping of sections (data:, model:, train:...), got a list"),
        ("just words\n", "the top level must be a mapping"),
        ("train:\n  epochs: 2\n   lr: 3\n", "cfg.yaml:3:6: malformed YAML: mapping values are not allowed here"),
        ("train: [1, 2\n", "cfg.yaml:2:1: malformed YAML"),
        ("a: 1\n---\nb: 2\n", "cfg.yaml:2:1: malformed YAML: but found another document"),
        ("a: *nowhere\n", "cfg.yaml:1:4: malformed YAML: found undefined alias"),
        ("a: !!python/object:os.system {}\n", "cfg.yaml:1:4: malformed YAML: could not determine a constructor"),
        ("a: \x00\n", "cfg.yaml: character '\\x00' at offset 3 is not allowed"),
        ("a: &x [*x]\n", "a[0]: an alias refers to itself"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "nested more than 100 levels deep"),
        ("x: &x 1\n" + "".join(f"k{i}: *x\n" for i in range(101)), "more than 100 alias uses"),
        ("{k0: 0, k1: 1, k1: 9}", "cfg.yaml:1: k1: duplicate key (first at line 1)"),
    ],
)
def test_refused_with_one_line(text, expected):
    assert expected in refused(text)


def test_billion_laughs_is_refused_quickly():
    start = time.perf_counter()
    assert "expands to more than 100,000 values" in refused(LAUGHS)
    assert time.perf_counter() - start < 1.0


def test_yaml_11_words_stay_strings_and_only_true_false_are_booleans():
    raw = loads_yaml("train:\n  epochs: yes\n  flags: [no, on, off, y, n, Yes, NO]\n  a: true\n  b: False\n")
    assert raw["train"] == {"epochs": "yes", "flags": ["no", "on", "off", "y", "n", "Yes", "NO"], "a": True, "b": False}


def test_yes_for_epochs_is_refused_by_validation_as_not_an_integer(tiny_config):
    from fastcourse.config import load_config

    raw = loads_yaml(yaml.safe_dump(tiny_config()).replace("epochs: 1", "epochs: yes"))
    with pytest.raises(ConfigError, match="epochs.*integer"):
        load_config(raw, origin="cfg.yaml")


def test_merge_keys_may_override_and_aliases_under_the_limit_load():
    raw = loads_yaml("base: &b {lr: 1, epochs: 2}\ntrain:\n  <<: *b\n  lr: 3\n")
    assert raw["train"] == {"lr": 3, "epochs": 2}


def test_files_size_encoding_and_paths(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (MAX_BYTES + 1) + "\n")
    for path, expected in [
        (big, "too large for a config"),
        (tmp_path / "missing.yaml", "no such config file"),
        (tmp_path, "is a folder"),
    ]:
        with pytest.raises(ConfigError, match=expected) as info:
            load_yaml(path)
        assert str(info.value).startswith(str(path))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not UTF-8 text \(byte 0xe9 at offset 9\)"):
        load_yaml(latin)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("\ufeffname: café\n".encode("utf-8"))
    assert load_yaml(bom) == {"name": "café"}
    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  epochs: 1\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=rf"^{dup}:3: train.epochs: duplicate key \(first at line 2\)"):
        load_yaml(dup)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_load_as_safe_load_does(path):
    assert load_yaml(path) == yaml.safe_load(path.read_text())
