"""Run directories: one process at a time, resumable, never left half-written.

A run directory holds `config.yaml` from the start and `metrics.json` once it is complete;
one without metrics.json is unfinished, and `fastcourse run` continues it from the last
checkpoint under `checkpoints/` (see fastcourse/train/checkpoint.py).

`claim(run_dir, cfg)` wraps a run: it takes the directory's lock (a second process is
refused), checks that an unfinished run is continued with the config it started with,
removes temporary files a killed writer left, and on success drops the checkpoints.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator, Optional

from fastcourse import io
from fastcourse.errors import RunError, UsageError
from fastcourse.locks import LOCK, locked

CONFIG = "config.yaml"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
# Settings that may differ between the start of a run and its resumption.
RESUME_MAY_DIFFER = ("out", "train.verbose")
# fastcourse.io.atomic_path's temporary files: ".<name>.<8 random chars><suffix>"
_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9.]+)?$")



def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def is_complete(path: str | Path) -> bool:
    return (Path(path) / METRICS).is_file()


def checkpoint_dir(run_dir: str | Path, *parts: str) -> Path:
    """Where a run keeps resumable state: `checkpoints/` (`checkpoints/<part>/...` for members)."""
    return Path(run_dir, CHECKPOINTS, *parts)


@contextlib.contextmanager
def claim(run_dir: Path, cfg, fresh: bool) -> Iterator[None]:
    """Lock `run_dir`, record or check its config, and tidy up after the run.

    `fresh`: this process just created the directory. If the run then fails on bad input
    before anything was checkpointed, the directory is removed, so a typo leaves no debris.
    """
    run_dir = Path(run_dir)
    with locked(run_dir):
        remove_stale_temps(run_dir)
        if is_run_dir(run_dir):
            check_same_config(run_dir, cfg)
            _refuse_complete(run_dir)  # a complete run is never overwritten
            _announce(run_dir)
        else:
            try:
                io.write_text(run_dir / CONFIG, cfg.to_yaml())
            except (UsageError, RunError):
                if fresh:  # a full disk or a read-only folder: leave no empty run directory behind
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
        try:
            yield
        except UsageError:
            if fresh and not checkpoint_dir(run_dir).exists():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        except RunError as exc:
            from fastcourse.train.guards import Diverged

            if isinstance(exc, Diverged) or not checkpoint_dir(run_dir).exists():
                raise
            raise RunError(f"{exc}; once fixed, continue with `fastcourse run {run_dir}`") from exc
        shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)


def remove_stale_temps(run_dir: Path) -> None:
    """Delete the temporary files of writers killed mid-write (only ever done under the lock)."""
    for folder in [run_dir, *[p for p in checkpoint_dir(run_dir).rglob("*") if p.is_dir()]]:
        for path in folder.glob(".*"):
            if path.is_file() and path.name != LOCK and _TEMP.match(path.name):
                path.unlink(missing_ok=True)


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (settings that may differ excluded)."""
    diffs = []
    for key in dict.fromkeys([*a, *b]):
        dotted = f"{prefix}{key}"
        if dotted in RESUME_MAY_DIFFER:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += config_differences(va, vb, dotted + ".")
        elif va != vb:
            diffs.append(f"{dotted} is {va!r} there, {vb!r} here")
    return diffs


def saved_config(run_dir: Path):
    from fastcourse.config import load_config

    return load_config(run_dir / CONFIG)


def check_same_config(run_dir: Path, cfg) -> None:
    diffs = config_differences(saved_config(run_dir).to_dict(), cfg.to_dict())
    if diffs:
        raise UsageError(f"{run_dir / CONFIG}: this run started with another config ({diffs[0]}); "
                         "a run resumes with the config it started with: drop the change, or start a new run")


def find_unfinished(out: str | Path, cfg) -> Optional[Path]:
    """The newest unfinished run under `out` that was started with this config."""
    candidates = [p for p in Path(out).glob(f"{cfg.name}-*") if is_run_dir(p) and not is_complete(p)]
    for path in sorted(candidates, key=lambda p: (p / CONFIG).stat().st_mtime, reverse=True):
        try:
            if not config_differences(saved_config(path).to_dict(), cfg.to_dict()):
                return path
        except UsageError:
            continue  # a run directory whose config no longer validates is not this run
    return None


def resolve(target: str, overrides: list[str], out: Optional[str], resume: bool, run_dir: Optional[str]):
    """What `fastcourse run` should do: (config, run directory or None for a new one).

    `target` is a config file or a run directory; a run directory is resumed. `resume` picks
    the newest unfinished run of the config under `out`; `run_dir` names the directory to run
    into, continuing it when it holds an unfinished run.
    """
    from fastcourse.config import load_config

    path = Path(target)
    if path.is_dir():
        if run_dir:
            raise UsageError(f"{target} is a run directory: resume it with `fastcourse run {target}`, without --run-dir")
        if not is_run_dir(path):
            raise UsageError(f"{target}: a folder, but not a run directory (no {CONFIG}); "
                             "pass a config file or a run directory")
        _refuse_complete(path)
        return load_config(path / CONFIG, overrides), path
    cfg = load_config(target, overrides)
    if run_dir:
        chosen = Path(run_dir)
        if chosen.exists() and not chosen.is_dir():
            raise UsageError(f"--run-dir {run_dir}: exists and is not a folder")
        if chosen.is_dir() and any(p.name != LOCK for p in chosen.iterdir()):
            if not is_run_dir(chosen):
                raise UsageError(f"--run-dir {run_dir}: a folder with other files in it, not a run directory; "
                                 "choose an empty or new folder")
            check_same_config(chosen, cfg)
            _refuse_complete(chosen)
        return cfg, chosen
    if resume:
        where = Path(out or cfg.out)
        found = find_unfinished(where, cfg)
        if found is None:
            print(f"fastcourse: no unfinished run of {cfg.name} under {where}; starting a new one", flush=True)
            return cfg, None
        return cfg, found
    return cfg, None


def _refuse_complete(path: Path) -> None:
    if is_complete(path):
        raise UsageError(f"{path} is a complete run ({METRICS} exists), nothing to resume; "
                         f"start a new run with `fastcourse run {path / CONFIG}`")


def _announce(path: Path) -> None:
    from fastcourse.train.checkpoint import read_state

    try:
        done = (read_state(checkpoint_dir(path)) or {}).get("epoch", 0)
    except RunError:
        done = 0
    after = f" after {done} completed epoch(s)" if done else ""
    print(f"fastcourse: resuming {path}{after}", flush=True)