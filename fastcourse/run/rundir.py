"""Run directories: one process at a time, resumable, never left half-written.

A run directory holds `config.yaml` (the resolved config) and `started.json` (the SHA-256 of
that config and a copy of it) from the start, and `metrics.json` once it is complete; one
without metrics.json is unfinished, and `fastcourse run RUN_DIR` continues it from the last
checkpoint under `checkpoints/` (see fastcourse/train/checkpoint.py).

`claim(run_dir, cfg)` wraps a run: it takes the directory's lock (a second process is
refused), checks that an unfinished run is continued with the config it started with (the
hash in started.json; a difference is refused naming each key, its value then and now, and how
to put it back, and the checkpoints are kept), removes temporary files a killed writer left,
marks a Ctrl-C or SIGTERM with the run directory (the CLI prints the command that resumes),
and on success drops the checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Callable, Iterator, Optional

from fastcourse import io
from fastcourse.errors import RunError, UsageError
from fastcourse.locks import LOCK, locked

CONFIG = "config.yaml"
STARTED = "started.json"  # {"config_sha256": ..., "config": {...}}: the config the run started with
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
    A Ctrl-C or SIGTERM (KeyboardInterrupt) leaves everything in place and carries `run_dir`.
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
                record_start(run_dir, cfg)
            except (UsageError, RunError):
                if fresh:  # a full disk or a read-only folder: leave no empty run directory behind
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
        try:
            yield
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: the checkpoints stay; say where the run is
            if getattr(exc, "run_dir", None) is None:
                exc.run_dir = run_dir
            raise
        except UsageError:
            if fresh and not checkpoint_dir(run_dir).exists():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        except RunError as exc:
            from fastcourse.train.guards import Diverged

            if isinstance(exc, Diverged) or not checkpoint_dir(run_dir).exists():
                raise
            raise RunError(f"{exc}; once fixed, continue with `{resume_command(run_dir)}`") from exc
        shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)


def resume_command(run_dir: str | Path) -> str:
    """The command that continues the run in `run_dir`, ready to paste into a shell."""
    return f"fastcourse run {shlex.quote(str(run_dir))}"


def record_start(run_dir: Path, cfg) -> None:
    """Write config.yaml, then started.json: the SHA-256 of the resolved config and a copy of it,
    against which a resumed run is checked (config.yaml is the file a user may edit)."""
    io.write_text(run_dir / CONFIG, cfg.to_yaml())
    from fastcourse.version import __version__

    resolved = cfg.to_dict()
    io.write_json(
        run_dir / STARTED, {"config_sha256": config_hash(resolved), "config": resolved, "fastcourse": __version__}
    )


def config_hash(resolved: dict) -> str:
    """SHA-256 of a resolved config, without the settings that may change on resume."""
    kept = _without(resolved, RESUME_MAY_DIFFER)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _without(tree: dict, dotted: tuple[str, ...], prefix: str = "") -> dict:
    return {
        k: _without(v, dotted, f"{prefix}{k}.") if isinstance(v, dict) else v
        for k, v in tree.items()
        if f"{prefix}{k}" not in dotted
    }


def started_config(run_dir: Path) -> Optional[dict]:
    """The resolved config the run started with (started.json), or None for a run that has no
    readable record (made before fastcourse wrote one): then config.yaml stands in."""
    try:
        record = json.loads((Path(run_dir) / STARTED).read_text())
        config = record["config"]
        if not isinstance(config, dict) or config_hash(config) != record["config_sha256"]:
            return None  # a damaged or hand-edited record proves nothing
        return config
    except (OSError, ValueError, KeyError, TypeError):
        return None


def config_differences(a: dict, b: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, value in a, value in b) for every value that differs between two config
    dicts, the settings that may differ on resume excluded."""
    diffs = []
    for key in dict.fromkeys([*a, *b]):
        dotted = f"{prefix}{key}"
        if dotted in RESUME_MAY_DIFFER:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += config_differences(va, vb, dotted + ".")
        elif va != vb:
            diffs.append((dotted, va, vb))
    return diffs


def saved_config(run_dir: Path):
    """The run's config.yaml, as a config (the tree checked: the record of a Learner's run names
    its task `learner`, which `fastcourse run` cannot run but `views` and `predict` can open)."""
    from fastcourse.config import load_config

    return load_config(run_dir / CONFIG, record=True)


def check_same_config(run_dir: Path, cfg, overrides: tuple[str, ...] = (), source: Optional[str] = None) -> None:
    """Refuse to continue the run in `run_dir` with a config other than the one it started with.

    The one-line UsageError names every key that differs (then and now), where the new value
    comes from (the edited config.yaml, an override, or another config file `source`) and how to
    put it back; the checkpoints are never touched."""
    run_dir = Path(run_dir)
    start = started_config(run_dir)
    now = cfg.to_dict()
    if start is None:  # a run without a start record: its config.yaml is the record
        start, record = saved_config(run_dir).to_dict(), CONFIG
    else:
        record = STARTED
        if config_hash(now) == config_hash(start):
            return
    diffs = config_differences(start, now)
    if not diffs:
        return
    set_keys = {item.split("=", 1)[0].strip(): item for item in overrides if "=" in item}
    shown = "; ".join(
        f"{key} is {_yaml(new)}, the run started with {_yaml(old)}"
        + (f" (from --set {set_keys[key]})" if key in set_keys else "")
        for key, old, new in diffs[:6]
    ) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
    restore = " ".join(f"--set {shlex.quote(f'{key}={_yaml(old)}')}" for key, old, _ in diffs)
    if source is not None:  # another config file aimed at this run directory
        fix = (
            f"continue that run with `{resume_command(run_dir)}`, or give {source} another --run-dir to start a new run"
        )
    elif record == STARTED and any(key not in set_keys for key, _, _ in diffs):
        fix = (
            f"put the values back in {run_dir / CONFIG} ({STARTED} holds the original), or resume with "
            f"`{resume_command(run_dir)} {restore}`"
        )
    else:
        fix = (
            f"resume with `{resume_command(run_dir)}` (no --set for those keys), or start a new run from a config file"
        )
    raise UsageError(
        f"{run_dir}: this run started with another config ({record}): {shown}. Its checkpoints were "
        f"trained with that config and are kept; {fix}"
    )


def _yaml(value) -> str:
    """A value as YAML writes it inline (what --set takes)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def find_unfinished(out: str | Path, cfg) -> Optional[Path]:
    """The newest unfinished run under `out` that was started with this config."""
    candidates = [p for p in Path(out).glob(f"{cfg.name}-*") if is_run_dir(p) and not is_complete(p)]
    for path in sorted(candidates, key=lambda p: (p / CONFIG).stat().st_mtime, reverse=True):
        try:
            start = started_config(path)
            if start is None:
                start = saved_config(path).to_dict()
            if not config_differences(start, cfg.to_dict()):
                return path
        except UsageError:
            continue  # a run directory whose config no longer validates is not this run
    return None


def remove_stale_temps(run_dir: Path) -> None:
    """Delete the temporary files of writers killed mid-write (only ever done under the lock)."""
    for folder in [run_dir, *[p for p in checkpoint_dir(run_dir).rglob("*") if p.is_dir()]]:
        for path in folder.glob(".*"):
            if path.is_file() and path.name != LOCK and _TEMP.match(path.name):
                path.unlink(missing_ok=True)


def resolve(
    target: str,
    overrides: list[str],
    out: Optional[str],
    resume: bool,
    run_dir: Optional[str],
    load: Optional[Callable] = None,
):
    """What `fastcourse run` should do: (config, run directory or None for a new one).

    `target` is a config file or a run directory; a run directory is resumed. `resume` picks
    the newest unfinished run of the config under `out`; `run_dir` names the directory to run
    into, continuing it when it holds an unfinished run. `load(source, overrides)` reads a
    config (default: fastcourse.config.load_config, the whole check).
    """
    if load is None:
        from fastcourse.config import load_config as load

    path = Path(target)
    if path.is_dir():
        if run_dir:
            raise UsageError(
                f"{target} is a run directory: resume it with `{resume_command(target)}`, without --run-dir"
            )
        if not is_run_dir(path):
            raise UsageError(
                f"{target}: a folder, but not a run directory (no {CONFIG}); pass a config file or a run directory"
            )
        _refuse_complete(path)
        cfg = load(path / CONFIG, overrides)
        check_same_config(path, cfg, tuple(overrides))
        return cfg, path
    cfg = load(target, overrides)
    if run_dir:
        chosen = Path(run_dir)
        if chosen.exists() and not chosen.is_dir():
            raise UsageError(f"--run-dir {run_dir}: exists and is not a folder")
        if chosen.is_dir() and any(p.name != LOCK for p in chosen.iterdir()):
            if not is_run_dir(chosen):
                raise UsageError(
                    f"--run-dir {run_dir}: a folder with other files in it, not a run directory; "
                    "choose an empty or new folder"
                )
            check_same_config(chosen, cfg, tuple(overrides), source=str(target))
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
        raise UsageError(
            f"{path} is a complete run ({METRICS} exists), nothing to resume; "
            f"start a new run with `fastcourse run {path / CONFIG}`"
        )


def _announce(path: Path) -> None:
    from fastcourse.train.checkpoint import read_state

    try:
        done = (read_state(checkpoint_dir(path)) or {}).get("epoch", 0)
    except RunError:
        done = 0
    after = f" after {done} completed epoch(s)" if done else ""
    print(f"fastcourse: resuming {path}{after}", flush=True)
