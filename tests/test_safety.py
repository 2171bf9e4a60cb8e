"""Safe artifacts: no pickle or unsafe YAML in the package, models load only in safe mode (a
Lambda layer is refused), and a model file is never replaced by a half-written one."""

from __future__ import annotations

import errno
import io as io_
import json
import os
import re
import tokenize
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from fastcourse import io
from fastcourse.errors import RunError, UsageError
from fastcourse.run.artifacts import load_model, unsafe_parts

PACKAGE = Path(__file__).resolve().parents[1] / "fastcourse"

# What would let a file run code when it is loaded, or load a model unsafely.
UNSAFE = {
    "pickle": re.compile(r"\b(c?[Pp]ickle|cloudpickle|dill|joblib|shelve|marshal)\b"),
    # yaml.load only with fastcourse.safe_yaml's SafeConfigLoader (a yaml.SafeLoader)
    "yaml.load(": re.compile(r"yaml\.(load|unsafe_load|full_load|load_all)\((?!.*Loader=SafeConfigLoader\))"),
    "yaml Loader": re.compile(r"\b(Unsafe|Full)Loader\b|Loader\s*=\s*(yaml\.)?Loader\b"),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "Lambda(": re.compile(r"\bLambda\("),
    "safe_mode=False": re.compile(r"safe_mode\s*=\s*False|enable_unsafe_deserialization"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\("),
}


def _code_lines(text: str) -> list[str]:
    """The source's lines with every comment and string literal blanked out (docstrings name what
    they warn about), read with Python's own tokenizer, so a docstring's inner lines count as text."""
    rows = [list(line) for line in text.split("\n")]
    for tok in tokenize.generate_tokens(io_.StringIO(text).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                row = rows[r - 1]
                a, b = (c0 if r == r0 else 0), (c1 if r == r1 else len(row))
                row[a:b] = " " * (b - a)
    return ["".join(row) for row in rows]


def test_package_source_has_no_unsafe_loading():
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for number, (line, code) in enumerate(zip(text.split("\n"), _code_lines(text)), 1):
            for what, pattern in UNSAFE.items():
                if pattern.search(code):
                    hits.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {what}: {line.strip()}")
    assert not hits, "\n".join(hits)
    assert len(list(PACKAGE.rglob("*.py"))) > 10  # really scanned the package


def test_models_are_loaded_through_the_safe_loader():
    """fastcourse.run.artifacts.load_model is the one place that deserialises a .keras file: it turns a
    refused Lambda layer or a damaged file into one clear line instead of a traceback."""
    direct = re.compile(r"(saving|models)\.load_model\(|from keras\.(saving|models) import load_model")
    hits = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {code.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "run" / "artifacts.py"
        for n, code in enumerate(_code_lines(path.read_text()), 1)
        if direct.search(code)
    ]
    assert not hits, "use fastcourse.run.artifacts.load_model instead:\n" + "\n".join(hits)


def test_scanner_would_catch_each_pattern():
    samples = {
        "pickle": "import pickle",
        "yaml.load(": "yaml.load(text)",
        "allow_pickle=True": "np.load(p, allow_pickle=True)",
        "Lambda(": "layers.Lambda(lambda t: t)",
        "safe_mode=False": "load_model(p, safe_mode=False)",
        "eval/exec": "eval(text)",
        "yaml Loader": "yaml.load(t, Loader=yaml.FullLoader)",
    }
    assert UNSAFE["yaml.load("].search("yaml.load(t, Loader=yaml.Loader)")
    assert not UNSAFE["yaml.load("].search("yaml.load(text, Loader=SafeConfigLoader)")
    for what, sample in samples.items():
        assert UNSAFE[what].search(sample), what
    assert not UNSAFE["pickle"].search("np.load(path, allow_pickle=False)")
    # code is scanned; comments and strings (a docstring's every line) are not
    source = (
        'def f():\n    """Loads it.\n    No pickle is involved."""\n    x = "pickle"  # pickle\n    import pickle\n'
    )
    flagged = [n for n, code in enumerate(_code_lines(source), 1) if UNSAFE["pickle"].search(code)]
    assert flagged == [5], flagged


def _tiny_model(scale: float = 1.0, with_lambda: bool = False) -> keras.Model:
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense")(inputs)
    if with_lambda:
        x = keras.layers.Lambda(lambda t: t * 2.0)(x)  # what fastcourse must refuse to load
    model = keras.Model(inputs, x)
    model.get_layer("dense").set_weights([np.full((4, 3), scale, "float32"), np.zeros(3, "float32")])
    return model


def test_load_model_refuses_a_lambda_layer(tmp_path):
    path = tmp_path / "lambda.keras"
    _tiny_model(with_lambda=True).save(path)
    with pytest.raises(UsageError, match=r"lambda\.keras: refused: it holds a Lambda layer") as err:
        load_model(path)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def _rewrite_config(path, edit) -> None:
    """Rewrite the config.json inside a .keras zip with `edit(config)`; the other members stay."""
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_lambda_refusal_reads_the_saved_config_not_kerass_message(tmp_path, monkeypatch):
    """A Lambda layer, and a Python lambda (`__lambda__`) serialised anywhere else in the config
    (here as a Dense layer's activation), are found in the .keras file's config.json before Keras
    reads the file: Keras' loader is never reached, whatever its error text would say."""

    def keras_must_not_load(*args, **kwargs):
        raise AssertionError("keras.saving.load_model was called on an unsafe file")

    lam = tmp_path / "lambda.keras"
    _tiny_model(with_lambda=True).save(lam)
    func = tmp_path / "func.keras"
    _tiny_model().save(func)
    code = {"class_name": "__lambda__", "config": {"code": "4wEAAAAA", "defaults": None, "closure": None}}
    _rewrite_config(func, lambda c: c["config"]["layers"][1]["config"].update(activation=code))
    monkeypatch.setattr(keras.saving, "load_model", keras_must_not_load)
    with pytest.raises(UsageError, match=r"lambda\.keras: refused: it holds a Lambda layer 'lambda(_\d+)?'"):
        load_model(lam)
    with pytest.raises(UsageError) as err:
        load_model(func)
    assert "func.keras: refused: it holds a Python lambda (`__lambda__`) at config.layers[1].config.activation" in str(
        err.value
    )
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert unsafe_parts(io.save_model(_tiny_model(), tmp_path / "good.keras")) == []


def test_load_model_reports_missing_and_damaged_files(tmp_path):
    with pytest.raises(UsageError, match="no such model file"):
        load_model(tmp_path / "none.keras")
    good = io.save_model(_tiny_model(), tmp_path / "good.keras")
    cut = tmp_path / "cut.keras"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UsageError, match="cut.keras: not a .keras model file"):
        load_model(cut)
    model = load_model(good)  # and a good one loads, in safe mode
    np.testing.assert_allclose(model.get_layer("dense").get_weights()[0], 1.0)


def test_a_failed_save_leaves_the_old_model_file_intact(tmp_path, monkeypatch):
    path = io.save_model(_tiny_model(scale=1.0), tmp_path / "model.keras")
    before = path.read_bytes()
    real = zipfile.ZipFile.open
    written = []

    def open_member(self, name, mode="r", *args, **kwargs):
        if mode == "w":
            written.append(name)
            if len(written) > 1:  # the first member is in the new file: the save fails midway
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", open_member)
    with pytest.raises(RunError, match="model.keras: No space left on device"):
        io.save_model(_tiny_model(scale=5.0), path)
    monkeypatch.undo()
    assert len(written) == 2  # it did fail midway
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temporary file left
    np.testing.assert_allclose(load_model(path).get_layer("dense").get_weights()[0], 1.0)


def test_an_interrupted_save_leaves_the_old_file_too(tmp_path, monkeypatch):
    """Ctrl-C (or any exception) during a save: the old file stays, the temporary one goes."""
    path = io.write_json(tmp_path / "metrics.json", {"accuracy": 0.9})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        io.write_json(path, {"accuracy": 0.1})
    monkeypatch.undo()
    assert path.read_text().strip() == '{\n  "accuracy": 0.9\n}' and len(list(tmp_path.iterdir())) == 1
