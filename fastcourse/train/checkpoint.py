"""Per-epoch checkpoints, so that a killed run continues from its last completed epoch.

After each epoch whose loss and weights are finite, `EpochCheckpoint` writes in its folder:

    epoch-0003.keras   the model with its optimizer state (atomic; loads with safe_mode=True)
    state.json         the commit point: completed epochs, which model file, the history and
                       epoch times so far, the dropout seed-generator states

The model file goes to a temporary file, is fsync'd and renamed (`fastcourse.io.save_model`);
state.json is written after it and names it, and older model files are removed only afterwards,
so a kill at any moment leaves a consistent pair. The last two model files are kept, and
state.json names the one before the last (`previous`): a last file found damaged on resume
(cut short by a full disk or a copy, zero bytes, not a zip holding the weights) is named in one
line and the run resumes from the one before, redoing the epoch it lost (from the start when
there is none). A file that reads but no longer fits the model is another matter: that run's
config or code changed, and resuming is refused. `restore(model, folder)` puts a compiled model
back where the last checkpoint left it; `fit(..., checkpoint_dir=...)` does both, and the data
stream and the per-step schedule continue from `initial_epoch`.

Other resumable work (ensemble members, feature chunks) can keep its own progress with
`read_state(folder)` / `write_state(folder, dict)`: one atomic JSON commit point per folder.

Under MultiWorkerMirroredStrategy (multi_worker.py) the chief writes the same files, and
`restore` runs on every worker: the chief reads its checkpoint, then every variable (weights,
optimizer state, seed states) and the epoch count are broadcast from it with one collective
per dtype, so the other workers need no access to the chief's disk.
"""

from __future__ import annotations

import json
import math
import weakref
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import keras
import numpy as np

from fastcourse import io
from fastcourse.errors import RunError

STATE = "state.json"
FORMAT = 1


@dataclass
class CheckpointState:
    """What a checkpoint folder says about the run so far."""

    epoch: int = 0  # completed epochs
    model_file: Optional[str] = None
    history: dict[str, list[float]] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    seed_states: list[list[int]] = field(default_factory=list)
    # the checkpoint before this one, to fall back on when this one is damaged:
    # {"epoch", "model_file", "seed_states"}; None before the second checkpoint
    previous: Optional[dict] = None
    format: int = FORMAT


def read_state(folder: str | Path) -> Optional[dict]:
    """The JSON state committed in `folder`, or None when there is none yet."""
    path = Path(folder) / STATE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable checkpoint state ({exc}); delete {Path(folder)} to start over") from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: not a checkpoint state; delete {Path(folder)} to start over")
    return state


def write_state(folder: str | Path, state: dict) -> Path:
    """Commit `state` atomically: a reader sees the old state or the new one, never a mix."""
    return io.write_json(Path(folder) / STATE, state)


def load_checkpoint(folder: str | Path) -> CheckpointState:
    """The training checkpoint in `folder` (an empty state when there is none)."""
    raw = read_state(folder)
    if raw is None:
        return CheckpointState()
    try:
        state = CheckpointState(**raw)
    except TypeError:
        raise RunError(f"{Path(folder) / STATE}: not a training checkpoint; delete {folder} to start over") from None
    if state.format != FORMAT:
        raise RunError(f"{Path(folder) / STATE}: checkpoint format {state.format}, this fastcourse reads {FORMAT}")
    return state


def restore(model: keras.Model, folder: str | Path) -> CheckpointState:
    """Load the last checkpoint's weights, optimizer state and seed states into a compiled model.

    Under MultiWorkerMirroredStrategy every worker must call it: the chief's checkpoint is
    restored everywhere (see the module's docstring)."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        state = _restore_from_chief(model, folder, strategy)
        _BOUND[model] = (Path(folder), state)
        return state
    return _restore_here(model, folder)


def _restore_here(model: keras.Model, folder: str | Path) -> CheckpointState:
    folder = Path(folder)
    state = load_checkpoint(folder)
    if not state.epoch:
        return state
    path = folder / str(state.model_file)
    if problem := damage(path):
        state = _fall_back(folder, state, path, problem)
        if not state.epoch:
            return state
        path = folder / str(state.model_file)
    _build_optimizer(model)
    try:
        # weights only: nothing from the file is deserialised into code
        model.load_weights(path)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:  # a sound file of another model
        raise RunError(
            f"cannot resume from {path}: {str(exc).splitlines()[0]}; the run's model no longer "
            f"matches its checkpoint, delete {folder} to start over"
        ) from None
    seeds = _seed_variables(model)
    if len(seeds) != len(state.seed_states):
        raise RunError(
            f"cannot resume from {path}: {len(state.seed_states)} seed states for {len(seeds)} "
            f"random layers; delete {folder} to start over"
        )
    for variable, value in zip(seeds, state.seed_states):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return state


WEIGHTS_MEMBER = "model.weights.h5"  # the member of a .keras zip that load_weights reads


def damage(path: str | Path) -> Optional[str]:
    """Why `path` cannot be a checkpoint's model file (missing, zero bytes, cut short, a member
    failing its CRC, no weights in it), or None when it reads as a whole .keras zip.

    Reads the file once (the zip's CRC of every member): a small fraction of an epoch."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "zero bytes"
        with zipfile.ZipFile(path) as archive:
            if WEIGHTS_MEMBER not in archive.namelist():
                return f"no {WEIGHTS_MEMBER} in it"
            bad = archive.testzip()
    except FileNotFoundError:
        return "missing"
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
        return "truncated? not a whole .keras zip"
    return f"{bad} fails its CRC check" if bad else None


def _fall_back(folder: Path, state: CheckpointState, path: Path, problem: str) -> CheckpointState:
    """The previous checkpoint's state (epoch 0 when there is none or it is damaged too), said
    in one line and committed, so the next save keeps it as the one to fall back on."""
    prev = state.previous or {}
    prev_path = folder / str(prev.get("model_file"))
    prev_epoch = int(prev.get("epoch") or 0)
    also = ""
    if prev_epoch and (prev_problem := damage(prev_path)):
        also, prev_epoch = f"; the one before, {prev_path.name}, too ({prev_problem})", 0
    lost = (
        f"epoch {state.epoch} is redone"
        if state.epoch == prev_epoch + 1
        else f"epochs {prev_epoch + 1}-{state.epoch} are redone"
    )
    start = f"resuming from epoch {prev_epoch} instead" if prev_epoch else "starting from the beginning instead"
    print(f"fastcourse: checkpoint {path} is damaged ({problem}){also}: {start}; {lost}", flush=True)
    back = CheckpointState(
        epoch=prev_epoch,
        model_file=prev.get("model_file") if prev_epoch else None,
        history={k: list(v[:prev_epoch]) for k, v in state.history.items()} if prev_epoch else {},
        epoch_seconds=list(state.epoch_seconds[:prev_epoch]),
        seed_states=list(prev.get("seed_states") or []) if prev_epoch else [],
    )
    write_state(folder, asdict(back))
    return back


def _build_optimizer(model: keras.Model) -> None:
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


# model -> (checkpoint folder, state) of its last multi-worker restore, for the multi-worker loop
# (fastcourse.train.multi_worker.fit_multi_worker) when its caller does not pass the folder
_BOUND: "weakref.WeakKeyDictionary[keras.Model, tuple[Path, CheckpointState]]" = weakref.WeakKeyDictionary()


def take_binding(model: keras.Model) -> Optional[tuple[Path, CheckpointState]]:
    """The folder and state of `model`'s last multi-worker `restore`, forgotten once taken."""
    return _BOUND.pop(model, None)


def _restore_from_chief(model: keras.Model, folder: str | Path, strategy) -> CheckpointState:
    """Every worker: the chief (replica 0) restores from its folder, then broadcasts the epoch
    count and, when there is a checkpoint, every variable of the model and its optimizer."""
    import tensorflow as tf

    # Creating a variable under this strategy is a collective, so every worker must create the
    # same ones in the same order: the optimizer's slots here, on all of them. Keras' loader
    # creates variables of its own (a reference Optimizer), so the chief reads its file in a
    # thread of its own, where no strategy is in scope and those stay local.
    _build_optimizer(model)
    failure: Optional[RunError] = None
    state = CheckpointState()
    try:
        state = _in_own_thread(_restore_here, model, folder)  # the others' folders are empty
    except RunError as exc:
        failure = exc
    (epoch,) = broadcast_from_chief(strategy, [tf.constant(-1 if failure else state.epoch, tf.int64)])
    epoch = int(epoch)
    if failure is not None:
        raise failure
    if epoch < 0:
        raise RunError(
            "the chief worker could not restore its checkpoint (its output says why); "
            "start every worker again once it can"
        )
    if epoch == 0:
        return state
    variables = [*model.variables, *(model.optimizer.variables if model.optimizer is not None else [])]
    values = broadcast_from_chief(strategy, [tf.convert_to_tensor(keras.ops.convert_to_numpy(v)) for v in variables])
    for variable, value in zip(variables, values):
        variable.assign(value)
    if state.epoch != epoch:  # a worker other than the chief: it continues where the chief stopped
        state = CheckpointState(epoch=epoch)
    return state


def _in_own_thread(fn, *args):
    """fn(*args) in a new thread (no tf.distribute scope there, fresh Keras state); its result or error."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def broadcast_from_chief(strategy, tensors: list) -> list:
    """The chief's (replica 0's) values of `tensors` on every worker: an all-reduce of the chief's
    values and zeros elsewhere, one collective per dtype (a collective needs one dtype)."""
    import tensorflow as tf

    @tf.function
    def run(values):
        def replica(*vs):
            ctx = tf.distribute.get_replica_context()
            first = tf.equal(ctx.replica_id_in_sync_group, 0)
            masked = [tf.where(first, v, tf.zeros_like(v)) for v in vs]
            out = list(masked)
            for dtype in sorted({v.dtype for v in masked}, key=lambda d: d.name):
                index = [i for i, v in enumerate(masked) if v.dtype == dtype]
                for i, r in zip(index, ctx.all_reduce(tf.distribute.ReduceOp.SUM, [masked[i] for i in index])):
                    out[i] = r
            return out

        return strategy.run(replica, args=tuple(values))

    return [strategy.experimental_local_results(v)[0] for v in run(list(tensors))]


def save(model: keras.Model, folder: str | Path, state: CheckpointState) -> None:
    """Write the model file, then commit the state that names it (and the one before it), then
    drop older files: the last two model files stay."""
    folder = Path(folder)
    name = f"epoch-{state.epoch:04d}.keras"
    io.save_model(model, folder / name)  # temporary file, fsync, rename
    state.previous = _previous(folder, state.epoch)
    state.model_file = name
    state.seed_states = [np.asarray(v.numpy()).tolist() for v in _seed_variables(model)]
    write_state(folder, asdict(state))
    keep = {name, (state.previous or {}).get("model_file")}
    for old in folder.glob("epoch-*.keras"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _previous(folder: Path, epoch: int) -> Optional[dict]:
    """The last committed checkpoint before `epoch`, as `CheckpointState.previous` holds it."""
    try:
        committed = read_state(folder) or {}
    except RunError:  # an unreadable state names no file to keep
        return None
    for candidate in (committed, committed.get("previous") or {}):
        if candidate.get("model_file") and 0 < int(candidate.get("epoch") or 0) < epoch:
            return {k: candidate.get(k) for k in ("epoch", "model_file", "seed_states")}
    return None


def _seed_variables(model: keras.Model) -> list:
    # Dropout & co. draw from a SeedGenerator whose counter is a variable that model files do
    # not hold; without it a resumed run would repeat the first epoch's dropout masks.
    return [v for v in model.variables if v.name == "seed_generator_state"]


def _finite(model: keras.Model, logs: dict) -> bool:
    if not all(math.isfinite(float(v)) for v in logs.values() if np.ndim(v) == 0):
        return False
    return all(bool(np.isfinite(keras.ops.convert_to_numpy(v)).all()) for v in model.trainable_variables)


class EpochCheckpoint(keras.callbacks.Callback):
    """Checkpoint after every healthy epoch; an epoch with a NaN loss or weights is never saved.

    `timer` (the trainer's Throughput) supplies the epoch times; `guard` (StopOnNonFinite)
    says whether the loss broke during the epoch.
    """

    def __init__(self, folder: str | Path, state: CheckpointState, timer=None, guard=None):
        super().__init__()
        self.folder = Path(folder)
        self.state = CheckpointState(**asdict(state))
        self._prior_seconds = list(state.epoch_seconds)
        self.timer, self.guard = timer, guard

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if (self.guard is not None and self.guard.tripped) or not _finite(self.model, logs):
            return
        for key, value in logs.items():
            if np.ndim(value) == 0:
                self.state.history.setdefault(key, []).append(float(value))
        self.state.epoch = epoch + 1
        if self.timer is not None:
            self.state.epoch_seconds = self._prior_seconds + list(self.timer.seconds)
        save(self.model, self.folder, self.state)

    def last_good(self) -> str:
        if not self.state.epoch:
            return "no epoch completed, so there is no checkpoint"
        return f"the checkpoint of epoch {self.state.epoch} is kept in {self.folder}"
