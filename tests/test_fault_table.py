"""Fault injection through the real CLI, one table row per hostile input.

Every row runs `.venv/bin/fastcourse ...` in a subprocess inside a tmp folder of its own and
asserts: the exit status; that stderr holds exactly ONE line (`lines` for a row with several
problems, all reported at once; no TensorFlow, absl or CUDA log line: they are hidden), each
starting `fastcourse: error:` and naming the culprit (file, key, value) (an interrupted run: one
line saying so, then the command that resumes); no traceback; every file that existed before is
byte for byte unchanged; and no partial file (`.*.tmp`, an atomic write's
`.<name>.<8 chars><suffix>`, `*.partial`) is left. New files may only be `.lock` files (and the
run directory's wall.json). Rows run two at a time (a module fixture) to fit 2 cores.

Adding a case is one row in CASES: Case(id, argv, setup, exit status, words in the line).
`{t}` in argv is the case's folder; setup(t) writes the inputs (helpers below).

Config rows use `fastcourse check`; rows that need data, a run directory or the file system use
`fastcourse run`. Exit 2 for bad input (an invalid config, for check as for run), 1 for run-time
failures, 130 when interrupted. test_check_and_run_agree_on_every_config_row runs every config
row through both commands (in this process) and asserts they give the same answer.
Failures of the file system are injected by a sitecustomize.py the subprocess imports at start-up
(SITECUSTOMIZE below, put on PYTHONPATH) when FASTCOURSE_TEST_FAULT is set (ENOSPC in io.atomic_path's
writer, EROFS for a folder, Ctrl-C during a write).

Inputs decided LEGAL (accepted, sometimes converted), and why:
- YAML `1e-3` (a string to YAML 1.1) where a number is expected: converted, because users copy
  it from papers; `yes`/`no`/`on`/`off` stay strings (YAML 1.2) and are refused as numbers and
  as switches: switches take only true/false, numbers never take true/false.
- a UTF-8 BOM at the start of a config: Windows editors write it.
- `<<: *base` merge keys: the one sanctioned way to repeat keys.
- float image arrays in [0, 1]: scaled to 0..255 (a uint8 cast would truncate them to 0/1);
  floats in [0, 255] are rounded; integers in 0..255 are cast to uint8. Anything else refused.
- labels of shape (N, 1), integral floats, and one-hot (N, classes) rows: converted to ids.
- EXIF-rotated JPEGs, CMYK JPEGs, hidden files (.DS_Store, ._AppleDouble) and __MACOSX/ in
  image folders: decoded (rotated, to RGB) or ignored, never reported as bad files (the
  `legal-image-kinds` row puts them beside one corrupt file: only that one is named).
- valid/ lacking a class that train/ has: a warning (its accuracy leaves the class out);
  valid/ having a class train/ lacks is refused.
- corrupt images with the default data.on_error=skip: skipped with one summary line; the rows
  here use on_error=raise to see the culprit named.
- edges of every range (dropout 0, zoom 0, batch_size 1, seed 2**32-1) are legal.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

ROOT = Path(__file__).resolve().parents[1]
FASTCOURSE = Path(sys.executable).parent / "fastcourse"
WORKERS = 2
TIMEOUT = 240

TINY = {
    "name": "tiny",
    "seed": 1,
    "data": {"name": "mnist_sample", "train_limit": 64, "test_limit": 32},
    "model": {"name": "cnn", "filters": [4, 8], "dense": 16},
    "train": {"epochs": 1, "batch_size": 32, "verbose": 0},
}
PARTIAL = re.compile(r"(^\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9.]+)?$|\.tmp$|\.partial$)")


# --- setup helpers: each returns setup(t) -----------------------------------------------------


def tiny(**dotted) -> dict:
    """TINY with `section__key=value` changes (None deletes the key)."""
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    for key, value in dotted.items():
        node, *_ = cfg, None
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return cfg


def text(body: str | bytes, name: str = "c.yaml"):
    def setup(t: Path):
        p = t / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body if isinstance(body, bytes) else textwrap.dedent(body).encode())

    return setup


def conf(**dotted):
    """c.yaml = TINY with changes."""
    return text(yaml.safe_dump(tiny(**dotted), sort_keys=False))


def conf_line(line: str):
    """c.yaml = TINY plus `line` appended (YAML the dumper would not write: duplicates, `yes`)."""
    return text(yaml.safe_dump(TINY, sort_keys=False) + line + "\n")


def both(*setups):
    def setup(t: Path):
        for s in setups:
            s(t)

    return setup


def _png(path: Path, color=(200, 30, 30), size=(16, 16), mode="RGB"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else tuple(color) + (0,)).save(path)
    return path


def folder(
    breakage: Optional[Callable[[Path], None]] = None,
    classes=("cats", "dogs"),
    valid_classes=None,
    n=2,
    on_error="raise",
):
    """An image folder t/data (train/ and valid/ of 16x16 PNGs), broken by breakage(root), and
    c.yaml training on it."""

    def setup(t: Path):
        root = t / "data"
        for split, names in (("train", classes), ("valid", valid_classes or classes)):
            for k, cls in enumerate(names):
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    _png(root / split / cls / f"{cls}{i}.png", color=(60 * k, 100 + i, 200 - 60 * k))
        if breakage:
            breakage(root)
        cfg = tiny(data={"name": "image_folder", "path": str(root), "on_error": on_error, "image_size": [16, 16]})
        (t / "c.yaml").write_text(yaml.safe_dump(cfg))

    return setup


def _corrupt(root):
    p = root / "train" / "cats" / "cats0.png"
    p.write_bytes(p.read_bytes()[:16] + bytes(range(256)) * 2)


def _truncated(root):
    from PIL import Image

    p = root / "train" / "cats" / "cats0.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:5000])


def _zero_byte(root):
    (root / "train" / "cats" / "cats0.png").write_bytes(b"")


def _not_an_image(root):
    (root / "train" / "dogs" / "notes.jpg").write_text("my notes, not a picture\n")


def _empty_classes(root):
    for f in (root / "train").rglob("*.png"):
        f.unlink()


def _legal_kinds(root):
    """EXIF-rotated and CMYK JPEGs, hidden files, __MACOSX/: all legal; one corrupt file, named
    last in sort order, is the only one the error may name."""
    from PIL import Image

    cats = root / "train" / "cats"
    img = Image.new("RGB", (20, 12), (10, 200, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90
    img.save(cats / "a_exif.jpg", exif=exif.tobytes())
    Image.new("CMYK", (16, 16), (0, 128, 255, 0)).save(cats / "b_cmyk.jpg")
    (cats / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(64))
    (cats / "._cats0.png").write_bytes(b"\0\5\26\7" + bytes(60))  # AppleDouble: not a PNG at all
    (root / "train" / "__MACOSX" / "cats").mkdir(parents=True)
    (root / "train" / "__MACOSX" / "cats" / "._x.png").write_bytes(b"junk")
    (cats / "zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))


def arrays(name="a.npz", **change):
    """t/a.npz: a tiny MNIST-like set (uint8 20x28x28, labels 0..9) with arrays replaced by
    change[key](array); c.yaml trains on it through data: {name: mnist, path: ...}."""

    def setup(t: Path):
        rng = np.random.default_rng(0)
        a = {
            "x_train": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
            "y_train": np.arange(40) % 10,
            "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
            "y_test": np.arange(20) % 10,
        }
        for key, fn in change.items():
            a[key] = fn(a[key])
        np.savez(t / name, **a)
        (t / "c.yaml").write_text(
            yaml.safe_dump(tiny(data={"name": "mnist", "path": str(t / name), "download": False}))
        )

    return setup


def array_file(body: bytes, name="a.npz"):
    def setup(t: Path):
        (t / name).write_bytes(body)
        (t / "c.yaml").write_text(
            yaml.safe_dump(tiny(data={"name": "mnist", "path": str(t / name), "download": False}))
        )

    return setup


def _nan(x):
    x = x.astype(np.float32)
    x[3, 1, 1] = np.nan
    return x


def _set(i, v):
    def fn(y):
        y = y.copy()
        y[i] = v
        return y

    return fn


def run_dir(config: Optional[dict] = None, files: Optional[dict[str, bytes | str]] = None, name="rd"):
    """t/rd: a run directory holding config.yaml (the resolved TINY, or `config`) and `files`."""

    def setup(t: Path):
        from fastcourse.config import load_config

        d = t / name
        d.mkdir()
        (d / "config.yaml").write_text(load_config(config or TINY).to_yaml())
        for rel, body in (files or {}).items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(body if isinstance(body, bytes) else body.encode())

    return setup


def started_run_dir(config: Optional[dict] = None, name="rd"):
    """t/rd: an unfinished run directory as `fastcourse run` starts one: config.yaml and
    started.json (the hash and a copy of the resolved config)."""

    def setup(t: Path):
        from fastcourse.config import load_config
        from fastcourse.run.rundir import record_start

        (t / name).mkdir()
        record_start(t / name, load_config(config or TINY))

    return setup


def edit(rel: str, old: str, new: str):
    """Replace `old` by `new` in t/rel (a hand edit)."""

    def setup(t: Path):
        text = (t / rel).read_text()
        assert old in text, text
        (t / rel).write_text(text.replace(old, new))

    return setup


def locked_by_other(rel="rd"):
    """Another process holds t/rel/.lock (flock, its pid in .lock.pid) while the case runs."""

    def setup(t: Path):
        d = t / rel
        d.mkdir(exist_ok=True)
        code = (
            "import fcntl, os, sys\n"
            f"fd = os.open({str(d / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            f"open({str(d / '.lock.pid')!r}, 'w').write(str(os.getpid()))\n"
            "print('held', flush=True); sys.stdin.read()"
        )
        holder = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout.readline().strip() == "held"
        return lambda: holder.communicate("", timeout=30)

    return setup


@dataclass
class Case:
    id: str
    argv: list[str]
    setup: Callable[[Path], Optional[Callable]]
    exit: int
    words: list[str]
    fault: str = ""  # FASTCOURSE_TEST_FAULT for the injected sitecustomize.py (SITECUSTOMIZE)
    # new files allowed (relative paths): a lock, and the wall time a run directory has had
    # (run.frame.WallClock's wall.json); a run that got going leaves its run directory
    new: str = r"(^|/)(\.lock|wall\.json)$"
    env: dict = field(default_factory=dict)
    xfail: str = ""  # a known defect in a file this suite's owner does not own: the reason
    lines: int = 1  # error lines (a config with several problems names them all at once)

    def param(self):
        marks = [pytest.mark.xfail(reason=self.xfail, strict=True)] if self.xfail else []
        if self.id.startswith("cfg-") and self.id not in CONFIG_CASES_IN_THE_DEFAULT_TIER:
            marks.append(pytest.mark.slow)
        return pytest.param(self, id=self.id, marks=marks)


# Every config case is a `fastcourse check` or `run` process (~4 s of TensorFlow import each); the
# same rules are checked in-process, one line per problem, by tests/test_config.py. These run in
# the default tier, one per kind of problem (YAML, file, tree, section, value, override, rule
# across sections, run); every other config case is `slow` (`make test-slow`).
CONFIG_CASES_IN_THE_DEFAULT_TIER = {
    "cfg-duplicate-top-key",
    "cfg-malformed-yaml",
    "cfg-missing-file",
    "cfg-not-utf8",
    "cfg-alias-bomb",
    "cfg-top-level-list",
    "cfg-unknown-model",
    "cfg-rotation-720",
    "cfg-every-problem-at-once",
    "cfg-override-unclosed-list",
    "cfg-mix-of-cached-features",
    "cfg-run-refuses-dup-key",
}


CHECK = ["check", "{t}/c.yaml"]
RUN = ["run", "{t}/c.yaml", "--out", "{t}/runs"]
BIG = "name: big\n" + "".join(f"k{i}: {'x' * 90}\n" for i in range(12_000))
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefg", "bcdefgh")
)

CASES = [
    # --- configs: `fastcourse check` (exit 2, as `run`) --------------------------------------
    Case("cfg-duplicate-top-key", CHECK, conf_line("name: again"), 2, ["c.yaml", "name", "duplicate key"]),
    Case(
        "cfg-duplicate-nested-key",
        CHECK,
        text("train:\n  epochs: 1\n  epochs: 2\n"),
        2,
        ["c.yaml:3", "train.epochs", "duplicate key"],
    ),
    Case("cfg-empty-file", CHECK, text(""), 2, ["c.yaml", "empty config"]),
    Case("cfg-only-comments", CHECK, text("# nothing here\n"), 2, ["c.yaml", "empty config"]),
    Case("cfg-top-level-list", CHECK, text("- a\n- b\n"), 2, ["c.yaml", "mapping", "a list"]),
    Case("cfg-top-level-scalar", CHECK, text("just words\n"), 2, ["c.yaml", "mapping", "just words"]),
    Case("cfg-malformed-yaml", CHECK, text("train: {epochs: 2\nmodel: x\n"), 2, ["c.yaml:", "malformed YAML"]),
    Case("cfg-not-utf8", CHECK, text(b"name: caf\xe9\n"), 2, ["c.yaml", "not UTF-8", "0xe9"]),
    Case("cfg-control-character", CHECK, text("name: a\x07b\n"), 2, ["c.yaml", "not allowed"]),
    Case("cfg-too-large", CHECK, text(BIG), 2, ["c.yaml", "too large"]),
    Case("cfg-alias-bomb", CHECK, text(BOMB), 2, ["c.yaml", "alias"]),
    Case("cfg-is-a-folder", ["check", "{t}"], text("name: x\n", "other.yaml"), 2, ["is a folder"]),
    Case("cfg-missing-file", ["check", "{t}/nope.yaml"], text("name: x\n"), 2, ["nope.yaml", "no such config"]),
    Case("cfg-yes-as-number", CHECK, text("train: {epochs: yes}\n"), 2, ["c.yaml", "train.epochs = 'yes'"]),
    Case("cfg-true-as-number", CHECK, conf(train__batch_size=True), 2, ["train.batch_size = True", "not a number"]),
    Case(
        "cfg-on-as-switch", CHECK, text("train: {jit_compile: on}\n"), 2, ["train.jit_compile = 'on'", "true or false"]
    ),
    Case("cfg-no-as-string-ok-but-typo", CHECK, conf_line("trian: {epochs: no}"), 2, ["trian", "did you mean 'train'"]),
    Case("cfg-unknown-train-key", CHECK, conf(train__bach_size=8), 2, ["train.bach_size", "did you mean 'batch_size'"]),
    Case("cfg-unknown-model", CHECK, conf(model={"name": "cnnn"}), 2, ["model.name = 'cnnn'", "did you mean 'cnn'"]),
    Case("cfg-batch-size-zero", CHECK, conf(train__batch_size=0), 2, ["train.batch_size = 0", "greater than 0"]),
    Case("cfg-batch-size-huge", CHECK, conf(train__batch_size=10**7), 2, ["train.batch_size = 10000000", "65536"]),
    Case("cfg-negative-epochs", CHECK, conf(train__epochs=-3), 2, ["train.epochs = -3"]),
    Case("cfg-weight-decay", CHECK, conf(train__weight_decay=2.0), 2, ["train.weight_decay = 2.0", "less than 1"]),
    Case("cfg-negative-seed", CHECK, conf(seed=-5), 2, ["seed = -5", "greater than or equal to 0"]),
    Case("cfg-name-is-a-path", CHECK, conf(name="../../etc"), 2, ["name = '../../etc'", "plain folder name"]),
    Case(
        "cfg-zero-learning-rate",
        CHECK,
        conf(train__schedule={"name": "constant", "lr": 0}),
        2,
        ["train.schedule.lr = 0", "(0, 10]"],
    ),
    Case(
        "cfg-negative-phase-rate",
        CHECK,
        conf(train__epochs=None, train__schedule={"name": "phases", "phases": [[1, -0.1]]}),
        2,
        ["train.schedule (phases)", "> 0"],
    ),
    Case(
        "cfg-dropout-above-1",
        CHECK,
        conf(model={"name": "cnn_bn_dropout", "dropout": 1.5}),
        2,
        ["model.dropout = 1.5", "[0, 1)"],
    ),
    Case(
        "cfg-negative-zoom", CHECK, conf(augment={"name": "course", "zoom": -0.1}), 2, ["augment.zoom = -0.1", "[0, 1)"]
    ),
    Case(
        "cfg-rotation-720",
        CHECK,
        conf(augment={"name": "affine", "rotation": 720}),
        2,
        ["augment.rotation = 720", "[0, 180]"],
    ),
    Case(
        "cfg-unknown-fill-mode",
        CHECK,
        conf(augment={"name": "fashion", "fill_mode": "black"}),
        2,
        ["augment.fill_mode = 'black'", "'constant'"],
    ),
    Case(
        "cfg-mix-unknown-name",
        CHECK,
        conf(augment={"name": "fashion", "mix": {"name": "mixupp", "alpha": 0.4}}),
        2,
        ["augment.mix.name = 'mixupp'", "'mixup' or 'cutmix'"],
    ),
    Case(
        "cfg-mix-alpha-zero",
        CHECK,
        conf(augment={"name": "none", "mix": {"name": "cutmix", "alpha": 0}}),
        2,
        ["augment.mix.alpha = 0", "greater than 0"],
    ),
    Case(
        "cfg-randaugment-magnitude-9",
        CHECK,
        conf(augment={"name": "randaugment", "magnitude": 9}),
        2,
        ["augment.magnitude = 9", "[0, 1]"],
    ),
    Case(
        "cfg-ema-momentum-1", CHECK, conf(train={"ema": {"momentum": 1}}), 2, ["train.ema.momentum = 1", "less than 1"]
    ),
    Case("cfg-accumulate-0", CHECK, conf(train={"accumulate": 0}), 2, ["train.accumulate = 0", "greater than 0"]),
    Case(
        "cfg-tiny-image-size",
        CHECK,
        conf(data={"name": "image_folder", "path": "x", "image_size": [4, 4]}),
        2,
        ["data.image_size[0] = 4", "data.image_size[1] = 4", "[8, 4096]"],
        lines=2,
    ),
    Case(
        "cfg-zero-filters",
        CHECK,
        conf(model={"name": "cnn", "filters": [4, 0]}),
        2,
        ["model.filters[1] = 0", "[1, 65536]"],
    ),
    Case(
        "cfg-ensemble-seed-count",
        CHECK,
        conf(ensemble={"members": 3, "seeds": [1, 2]}),
        2,
        ["ensemble", "2 seeds for 3 members"],
    ),
    Case(
        "cfg-data-supplied-arg",
        CHECK,
        conf(model={"name": "cnn", "num_classes": 3}),
        2,
        ["model.num_classes", "set from the data"],
    ),
    Case(
        "cfg-builder-arg-type",
        CHECK,
        conf(model={"name": "cnn", "dense": "wide"}),
        2,
        ["model.dense = 'wide'", "integer"],
    ),  # imports the builder: TensorFlow
    Case("cfg-override-without-equals", CHECK + ["--set", "train.epochs"], conf(), 2, ["key.path=value"]),
    Case("cfg-override-yes", CHECK + ["--set", "train.epochs=yes"], conf(), 2, ["train.epochs = 'yes'"]),
    Case(
        "cfg-override-unclosed-list",
        CHECK + ["--set", "train.schedule.phases=[[2, 1e-3]"],
        conf(),
        2,
        ["--set train.schedule.phases", "not valid YAML", "close the brackets"],
    ),
    Case(
        "cfg-override-yaml-tag",
        CHECK + ["--set", "name=!!python/object/apply:os.system [ls]"],
        conf(),
        2,
        ["--set name", "!!python/object/apply:os.system", "YAML tag"],
    ),
    Case("cfg-override-into-a-value", CHECK + ["--set", "seed.x=1"], conf(), 2, ["--set seed.x", "not a section"]),
    Case(
        "cfg-pseudo-ratio-1",
        CHECK,
        conf(task={"name": "features", "pseudo_ratio": 1}),
        2,
        ["task.pseudo_ratio = 1", "[0, 1)"],
    ),
    Case(
        "cfg-pseudo-rounds-0",
        CHECK,
        conf(task={"name": "features", "pseudo_rounds": 0}),
        2,
        ["task.pseudo_rounds = 0", "[1, 100]"],
    ),
    Case(
        "cfg-head-argument",
        CHECK,
        conf(task={"name": "features", "head": {"dropout": 2}}),
        2,
        ["task.head.dropout = 2", "[0, 1)"],
    ),
    Case(
        "cfg-ensemble-of-sklearn",
        CHECK,
        conf(task={"name": "sklearn_features"}, ensemble={"members": 2}),
        2,
        ["ensemble of task 'sklearn_features'", "remove the ensemble section"],
    ),
    Case(
        "cfg-mix-of-cached-features",
        CHECK,
        conf(task={"name": "features"}, augment={"name": "none", "mix": {"name": "mixup"}}),
        2,
        ["augment.mix with task 'features'", "remove augment.mix"],
    ),
    Case(
        "cfg-every-problem-at-once",
        CHECK + ["--set", "augment.zoom=[1"],
        conf(seed=-1, train__batch_size=0, model={"name": "cnn", "dense": 0, "dens": 3}),
        2,
        ["seed = -1", "train.batch_size = 0", "model.dense = 0", "model.dens: unknown key", "--set augment.zoom"],
        lines=5,
    ),
    Case(
        "cfg-run-refuses-too",
        RUN,
        conf(model={"name": "cnn_bn_dropout", "dropout": 1.5}),
        2,
        ["c.yaml", "model.dropout = 1.5"],
    ),
    Case("cfg-run-refuses-dup-key", RUN, conf_line("seed: 2"), 2, ["c.yaml", "seed", "duplicate key"]),
    # --- image folders: `fastcourse run` on data: {name: image_folder, on_error: raise} ------
    Case("img-corrupt", RUN, folder(_corrupt), 2, ["cats0.png"]),
    Case("img-truncated", RUN, folder(_truncated), 2, ["cats0.png", "truncated"]),
    Case("img-zero-byte", RUN, folder(_zero_byte), 2, ["cats0.png"]),
    Case("img-not-an-image", RUN, folder(_not_an_image), 2, ["notes.jpg", "not an image"]),
    Case("img-empty-class-folders", RUN, folder(_empty_classes), 2, ["no images"]),
    Case("img-valid-has-extra-class", RUN, folder(valid_classes=("cats", "dogs", "birds")), 2, ["birds"]),
    Case("img-one-class", RUN, folder(classes=("cats",)), 2, ["need at least 2"]),
    Case("img-legal-kinds-beside-one-bad", RUN, folder(_legal_kinds), 2, ["zz_bad.png"]),
    Case(
        "img-missing-folder",
        RUN,
        both(folder(), lambda t: (t / "data").rename(t / "gone")),
        2,
        ["data", "no such folder"],
    ),
    # --- arrays: `fastcourse run` on data: {name: mnist, path: a.npz} ------------------------
    Case("arr-nan-pixels", RUN, arrays(x_train=_nan), 2, ["a.npz", "x_train", "NaN"]),
    Case("arr-label-out-of-range", RUN, arrays(y_train=_set(5, 12)), 2, ["a.npz", "y_train", "label 12", "0..9"]),
    Case("arr-label-count", RUN, arrays(y_test=lambda y: y[:-1]), 2, ["a.npz", "19 labels for 20 images"]),
    Case(
        "arr-pixels-above-255", RUN, arrays(x_train=lambda x: x.astype(np.int32) * 3), 2, ["a.npz", "x_train", "0..255"]
    ),
    Case("arr-shapes-differ", RUN, arrays(x_test=lambda x: x[:, :20]), 2, ["a.npz", "x_test", "must match"]),
    Case("arr-not-an-npz", RUN, array_file(b"id,label\n1,2\n"), 2, ["a.npz", "not an .npz"]),
    Case("arr-truncated-npz", RUN, array_file(b"PK\x03\x04" + bytes(30)), 2, ["a.npz", "not an .npz"]),
    # --- outputs and the file system ----------------------------------------------------------
    Case("fs-out-is-a-file", ["run", "{t}/c.yaml", "--out", "{t}/c.yaml"], conf(), 2, ["c.yaml", "is a file"]),
    Case(
        "fs-out-under-a-file",
        ["run", "{t}/c.yaml", "--out", "{t}/c.yaml/runs"],
        conf(),
        2,
        ["c.yaml/runs", "Not a directory", "--out"],
    ),
    Case(
        "fs-run-dir-is-a-file",
        ["run", "{t}/c.yaml", "--run-dir", "{t}/c.yaml"],
        conf(),
        2,
        ["--run-dir", "not a folder"],
    ),
    Case("fs-read-only-out", RUN, conf(), 2, ["runs", "Read-only file system", "writable"], fault="erofs:runs"),
    Case(  # mkdir's ENOENT under /proc: any failure to create an output folder is exit 2
        "fs-out-in-proc",
        ["run", "{t}/c.yaml", "--out", "/proc/fastcourse-out"],
        conf(),
        2,
        ["/proc/fastcourse-out", "No such file or directory", "writable"],
    ),
    Case("fs-disk-full-config", RUN, conf(), 1, ["config.yaml", "No space left on device"], fault="enospc:config.yaml"),
    Case(
        "fs-disk-full-metrics",
        ["run", "{t}/c.yaml", "--run-dir", "{t}/rd"],
        conf(),
        1,
        ["metrics.json", "No space left on device"],
        fault="enospc:metrics.json",
        new=r"^rd/",
    ),
    # --- run directories and interrupted runs ---------------------------------------------------
    Case(
        "rd-folder-not-a-run",
        ["run", "{t}/photos"],
        text("x", "photos/holiday.jpg"),
        2,
        ["photos", "not a run directory"],
    ),
    Case("rd-resume-complete-run", ["run", "{t}/rd"], run_dir(files={"metrics.json": "{}"}), 2, ["rd", "complete run"]),
    Case(
        "rd-damaged-config",
        ["run", "{t}/rd"],
        both(run_dir(), text("name: a\nname: b\n", "rd/config.yaml")),
        2,
        ["rd/config.yaml", "duplicate key"],
    ),
    Case(
        "rd-other-files",
        ["run", "{t}/c.yaml", "--run-dir", "{t}/photos"],
        both(conf(), text("x", "photos/holiday.jpg")),
        2,
        ["--run-dir", "not a run directory"],
    ),
    Case(
        "rd-another-config",
        ["run", "{t}/c.yaml", "--run-dir", "{t}/rd"],
        both(conf(train__batch_size=16), run_dir()),
        2,
        ["config.yaml", "train.batch_size"],
    ),
    Case(
        "rd-locked-by-another-run",
        ["run", "{t}/rd"],
        both(run_dir(), locked_by_other()),
        1,
        ["rd", "in use by another fastcourse run", "pid"],
    ),
    Case(
        "rd-damaged-checkpoint-state",
        ["run", "{t}/rd"],
        run_dir(files={"checkpoints/state.json": "{not json"}),
        1,
        ["state.json", "unreadable checkpoint state"],
    ),
    # a truncated checkpoint is no error: the run falls back on the one before (test_checkpoint_damage.py)
    Case(
        "rd-interrupted-while-writing",
        ["run", "{t}/c.yaml", "--run-dir", "{t}/rd"],
        conf(train__epochs=2),
        130,
        ["interrupted", "fastcourse run {t}/rd"],
        fault="interrupt:state.json",
        new=r"^rd/",
    ),
    Case(
        "rd-edited-config",
        ["run", "{t}/rd"],
        both(started_run_dir(), edit("rd/config.yaml", "dense: 16", "dense: 64")),
        2,
        ["model.dense is 64, the run started with 16", "started.json", "--set model.dense=16"],
    ),
    Case(
        "rd-resume-with-another-value",
        ["run", "{t}/rd", "--set", "train.batch_size=8"],
        started_run_dir(),
        2,
        ["train.batch_size is 8, the run started with 32", "from --set train.batch_size=8", "no --set"],
    ),
]

SITECUSTOMIZE = '''
"""Test-only fault injection for tests/test_fault_table.py (FASTCOURSE_TEST_FAULT=kind:name)."""
import os

_spec = os.environ.get("FASTCOURSE_TEST_FAULT", "")
if _spec:
    import contextlib, errno, pathlib

    from fastcourse import io

    _kind, _name = _spec.split(":", 1)
    _real_atomic_path = io.atomic_path

    @contextlib.contextmanager
    def _atomic_path(path, suffix=None):
        with _real_atomic_path(path, suffix) as tmp:
            yield tmp  # the writer has written its bytes; now the fault hits
            if pathlib.Path(path).name == _name:
                if _kind == "enospc":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
                if _kind == "interrupt":
                    raise KeyboardInterrupt

    io.atomic_path = _atomic_path

    if _kind == "erofs":
        _real_mkdir = pathlib.Path.mkdir

        def _mkdir(self, *args, **kwargs):
            if _name in pathlib.Path(self).parts:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return _real_mkdir(self, *args, **kwargs)

        pathlib.Path.mkdir = _mkdir
'''


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@dataclass
class Outcome:
    folder: Path
    code: int
    stdout: str
    stderr: str
    lines: list[str]
    before: dict[str, str]
    after: dict[str, str]
    seconds: float


def run_case(case: Case, t: Path, inject: Path) -> Outcome:
    import time

    t.mkdir(parents=True)
    cleanup = case.setup(t)
    before = snapshot(t)
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",  # a level the user sets is kept: 2 would show `failed call to cuInit`
        "FASTCOURSE_OFFLINE": "1",
        "PYTHONPATH": str(inject),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        **case.env,
    }
    env.pop("FASTCOURSE_TEST_FAULT", None)
    if case.fault:
        env["FASTCOURSE_TEST_FAULT"] = case.fault
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(FASTCOURSE), *[a.format(t=t) for a in case.argv]],
            cwd=t,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        if cleanup:
            cleanup()
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return Outcome(t, proc.returncode, proc.stdout, proc.stderr, lines, before, snapshot(t), time.monotonic() - start)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, request) -> dict[str, Outcome]:
    """Every selected case (-k works), run WORKERS at a time (the slow ones, which import
    TensorFlow, first)."""
    # this file's cases only: other test files may parametrize a "case" of their own
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if getattr(item, "callspec", None) and isinstance(item.callspec.params.get("case"), Case)
    }
    base = tmp_path_factory.mktemp("faults")
    inject = base / "_inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SITECUSTOMIZE)
    order = sorted([c for c in CASES if c.id in selected], key=lambda c: c.argv[0] == "check")  # runs first
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {c.id: pool.submit(run_case, c, base / c.id, inject) for c in order}
    results = {k: f.result() for k, f in futures.items()}
    if os.environ.get("FAULT_TABLE_TIMES"):
        Path(os.environ["FAULT_TABLE_TIMES"]).write_text(
            "".join(
                f"{o.seconds:7.1f}s {k} exit {o.code}\n"
                for k, o in sorted(results.items(), key=lambda kv: kv[1].seconds)
            )
        )
    return results


def test_table_is_large_and_ids_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert CONFIG_CASES_IN_THE_DEFAULT_TIER <= {c.id for c in CASES}  # a renamed case is not dropped silently


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_fault(case: Case, outcomes):
    got = outcomes[case.id]
    shown = f"exit {got.code}\nstdout: {got.stdout[-2000:]}\nstderr: {got.stderr[-4000:]}"
    assert "Traceback" not in got.stderr, shown
    assert got.code == case.exit, shown
    if case.exit == 130:  # interrupted: one line saying so, then the command that resumes
        assert len(got.lines) == 2 and got.lines[0].startswith("fastcourse: interrupted (Ctrl-C)"), shown
        assert got.lines[1] == case.words[-1].format(t=got.folder), shown
    else:
        assert len(got.lines) == case.lines, shown
        assert all(line.startswith("fastcourse: error: ") for line in got.lines), shown
    line = "\n".join(got.lines)
    for word in case.words:
        assert word.format(t=got.folder).lower() in line.lower(), (word, line)
    changed = [k for k, h in got.before.items() if got.after.get(k) != h]
    assert not changed, f"files changed or removed: {changed}"
    new = [k for k in got.after if k not in got.before]
    partial = [k for k in got.after if PARTIAL.search(Path(k).name)]
    assert not partial, f"partial files left: {partial}"
    assert all(re.search(case.new, k) for k in new), f"new files: {new}"


# --- legal inputs, in process (fast) -----------------------------------------------------------


def test_legal_arrays_are_converted(tmp_path):
    from fastcourse.data.arrays import mnist

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 28, 28)).astype(np.uint8)
    np.savez(
        tmp_path / "a.npz",
        x_train=x / 255.0,
        y_train=np.eye(10)[np.arange(10)],
        x_test=x.astype(np.float64),
        y_test=(np.arange(10) % 10).astype(np.float32)[:, None],
    )
    data = mnist(path=str(tmp_path / "a.npz"), download=False)
    assert data.x_train.dtype == np.uint8 and data.x_train.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(data.x_train[..., 0], x)  # 0-1 floats scaled back, not truncated to 0/1
    np.testing.assert_array_equal(data.x_test[..., 0], x)
    np.testing.assert_array_equal(data.y_train, np.arange(10))  # one-hot rows
    np.testing.assert_array_equal(data.y_test, np.arange(10))  # (N, 1) integral floats


def test_legal_yaml_spellings(tmp_path):
    from fastcourse.config import load_config

    path = tmp_path / "c.yaml"
    path.write_bytes(
        b"\xef\xbb\xbf"  # a BOM
        + b"name: no\ntrain: {epochs: 1, schedule: {name: constant, lr: 1e-3}, jit_compile: false}\n"
    )
    cfg = load_config(path)
    assert cfg.name == "no" and cfg.train.schedule.args["lr"] == pytest.approx(1e-3)


def test_directory_fsync_unsupported_is_tolerated_but_other_errors_are_not(tmp_path, monkeypatch):
    import errno

    from fastcourse import io
    from fastcourse.errors import RunError

    real = os.fsync

    def fsync(fd, fail=errno.EINVAL):
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(fail, os.strerror(fail))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    io.write_text(tmp_path / "a.txt", "ok")  # EINVAL on the folder: tolerated
    assert (tmp_path / "a.txt").read_text() == "ok"
    monkeypatch.setattr(os, "fsync", lambda fd: fsync(fd, errno.EIO))
    with pytest.raises(RunError, match=r"a\.txt: Input/output error"):
        io.write_text(tmp_path / "a.txt", "new")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
