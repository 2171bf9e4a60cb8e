"""The Optuna study behind a sweep: storage, sampler, pruner, the trial queue and resume.

Storage: a journal file in the sweep folder (`SWEEP/journal.log`, Optuna's JournalFileBackend)
unless `--storage URL` names a database (`postgresql://user@host/db`, needs the [postgres]
extra; `sqlite:///path`) or a Redis journal (`redis://host:port`, when the redis package is
installed).

The queue: whoever creates the study enqueues one WAITING trial per trial of the sweep (the
grid's combinations, or empty slots that the sampler fills), then marks the study ready. Every
process takes a trial by moving one WAITING trial to RUNNING, which the storage grants to one
process only (Optuna's own `enqueue_trial` queue), so any number of `--join` processes, on one
machine or many, run each trial exactly once and never more trials than the spec asks for.

Resume: a process holds `SWEEP/trials/.NNN.lock` (flock, freed by the kernel when the process
dies, kill -9 included) while it works on trial NNN. A RUNNING trial of this folder whose lock
is free was left by a killed sweep: the next `fastcourse sweep` of the same spec takes it and
continues its run from the run's own checkpoint (a run whose process outlived the sweep is
waited for, and its result taken).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from fastcourse import io
from fastcourse.errors import Interrupted, RunError, UsageError
from fastcourse.locks import hold, is_held
from fastcourse.sweeps.spec import Sweep, describe_params, load_spec
from fastcourse.sweeps.trial import Outcome, run_trial, trial_paths

JOURNAL = "journal.log"
READY = "fastcourse_trials"  # study user attr: the number of trials enqueued (set once they all are)
HOST, FOLDER = "host", "sweep_folder"  # trial user attrs: where the trial runs
# Measured on the 2-core development machine (docs/sweeps.md), the quick overfitting sweep: 131 s
# with 1 job, 145 s with 2 (load about 5; each trial took twice as long beside another), and 548 s
# against 485 and 660 s under load 11-13. Two jobs do not beat one on 2 cores, and one keeps a
# single TensorFlow process in memory.
DEFAULT_JOBS = 1


def sweep(
    spec: str | os.PathLike | dict,
    quick: bool = False,
    jobs: int = DEFAULT_JOBS,
    storage: Optional[str] = None,
    join: bool = False,
):
    """Run a sweep (or continue it) and return its trials as a DataFrame (trials.csv's columns).

    Public as `fastcourse.sweep`::

        import fastcourse
        df = fastcourse.sweep("sweeps/overfitting", quick=True)
        df.sort_values("eval_accuracy", ascending=False).head()
    """
    checked = load_spec(spec, quick=quick)
    return run_sweep(checked, jobs=jobs, storage=storage, join=join)


def run_sweep(sweep: Sweep, jobs: int = DEFAULT_JOBS, storage: Optional[str] = None, join: bool = False, echo=print):
    """Run the checked sweep's remaining trials with `jobs` trial processes; write the report."""
    from fastcourse.sweeps.report import trials_frame, write_report

    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more trial processes")
    folder = io.make_folder(sweep.folder, "sweep folder")
    io.make_folder(folder / "trials", "sweep folder")
    with contextlib.ExitStack() as held:
        if not join:
            try:
                held.enter_context(hold(folder, ".sweep.lock", what="sweep folder"))
            except RunError as exc:
                raise RunError(f"{exc}; to work on the same study together, add --join") from None
        study = open_study(sweep, storage, folder, join)
        echo(
            f"fastcourse: sweep {sweep.study_name}: {sweep.n_trials} trials, {sweep.spec.sampler.name} sampler, "
            f"pruner {sweep.spec.pruner.name}, {jobs} job(s), storage {describe_storage(storage, folder)} -> {folder}"
        )
        Workers(sweep, study, folder, jobs, local=storage is None, echo=echo).run()
        write_report(sweep, study, folder)
    echo(f"fastcourse: sweep report: {folder / 'report.md'}")
    return trials_frame(sweep, study)


def open_storage(url: Optional[str], folder: Path):
    """The Optuna storage: the sweep folder's journal file, or the one `url` names."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url is None:
        return JournalStorage(JournalFileBackend(str(folder / JOURNAL)))
    if url.startswith("redis://"):
        from optuna.storages.journal import JournalRedisBackend

        try:
            return JournalStorage(JournalRedisBackend(url))
        except ImportError:
            raise UsageError(f"--storage {url}: a Redis journal needs the redis package: pip install redis") from None
    if url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres", "mysql", "sqlite"):
        try:
            return _rdb_storage(url)
        except ImportError as exc:
            hint = "pip install 'fastcourse[postgres]'" if url.startswith("postg") else f"install {exc.name}"
            raise UsageError(f"--storage {_safe_url(url)}: the database driver is missing: {hint}") from None
        except Exception as exc:  # sqlalchemy's OperationalError & co.: a server that cannot be reached
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"--storage {_safe_url(url)}: cannot open the database: {first}") from None
    raise UsageError(
        f"--storage {_safe_url(url)}: not a storage URL; give postgresql://user@host/db, sqlite:///file.db "
        f"or redis://host:port (default: a journal file in the sweep folder)"
    )


def _rdb_storage(url: str, tries: int = 3):
    """Optuna's RDBStorage; processes that start together may race to create its tables (one
    gets "already exists"): try again."""
    import optuna

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url)
        except ImportError:
            raise
        except Exception:
            if attempt == tries - 1:
                raise
            time.sleep(1.0 + attempt)


def describe_storage(url: Optional[str], folder: Path) -> str:
    return str(folder / JOURNAL) if url is None else _safe_url(url)


def _safe_url(url: str) -> str:
    """The URL without its password (it is printed and written into the report)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    auth, host = rest.rsplit("@", 1)
    return f"{scheme}://{auth.split(':', 1)[0]}:***@{host}" if ":" in auth else url


def open_study(sweep: Sweep, url: Optional[str], folder: Path, join: bool):
    """Create the study and its queue of trials, or load it (waiting until its creator has queued them)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, folder)
    sampler = make_sampler(sweep, join)
    pruner = make_pruner(sweep)
    name = sweep.study_name
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=sweep.spec.direction, sampler=sampler, pruner=pruner
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        created = False
    if study.direction.name.lower() != sweep.spec.direction:
        raise UsageError(
            f"{sweep.source}: objective {sweep.spec.objective} ({sweep.spec.direction}), but study {name} in "
            f"{describe_storage(url, folder)} is {study.direction.name.lower()}d; rename the sweep to start a new study"
        )
    ready = study.user_attrs.get(READY)
    if ready is None and (created or not join):
        _enqueue(sweep, study)
    elif ready is None:  # another process is creating it: wait for its queue
        deadline = time.monotonic() + 120
        while (ready := optuna.load_study(storage=storage, study_name=name).user_attrs.get(READY)) is None:
            if time.monotonic() > deadline:
                raise RunError(
                    f"study {name}: its creator has not queued its trials after 120 s; "
                    "run the same command without --join to queue them"
                )
            time.sleep(1.0)
    if ready is not None and int(ready) != sweep.n_trials:
        raise UsageError(
            f"{sweep.source}: {sweep.n_trials} trials, but study {name} was started with {ready}; "
            "keep the spec as it was, or rename the sweep to start a new study"
        )
    return study


def _enqueue(sweep: Sweep, study) -> None:
    """Queue the sweep's trials (those not queued already, after a creator killed mid-way)."""
    trials = study.get_trials(deepcopy=False)
    if sweep.grid:
        have = [t.params or t.system_attrs.get("fixed_params") or {} for t in trials]
        for params in sweep.grid[: sweep.n_trials]:
            if params in have:
                have.remove(params)
            else:
                study.enqueue_trial(params)
    else:
        for _ in range(sweep.n_trials - len(trials)):
            study.enqueue_trial({})
    study.set_user_attr(READY, sweep.n_trials)


def make_sampler(sweep: Sweep, join: bool):
    """The spec's sampler, seeded. A --join process adds its pid to the seed, so that two joined
    random or TPE processes do not draw the same values."""
    import optuna

    seed = sweep.spec.sampler.seed + (os.getpid() if join else 0)
    if sweep.spec.sampler.name == "grid":
        return optuna.samplers.GridSampler({k: list(v) for k, v in sweep.spec.space.items()}, seed=seed)
    if sweep.spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(sweep: Sweep):
    import optuna

    p = sweep.spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


class Workers:
    """`jobs` threads, each taking a trial (a left one first, then a queued one), running its
    process and telling the study how it ended, until none is left."""

    def __init__(self, sweep: Sweep, study, folder: Path, jobs: int, local: bool, echo: Callable[[str], Any]):
        self.sweep, self.study, self.folder, self.jobs, self.local, self.echo = sweep, study, folder, jobs, local, echo
        self.stop = threading.Event()
        self.pick = threading.Lock()
        self.active: set[int] = set()
        self.interrupted: Optional[str] = None
        self.errors: list[BaseException] = []

    def run(self) -> None:
        threads = [threading.Thread(target=self._work, name=f"sweep-job-{i}", daemon=True) for i in range(self.jobs)]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.5)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the trials, which keep their checkpoints
            self.stop.set()
            for t in threads:
                t.join()
            raise
        if self.errors:
            raise self.errors[0]
        if self.interrupted:
            raise Interrupted(self.interrupted, 130 if self.interrupted == "SIGINT" else 143)

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                with contextlib.ExitStack() as held:
                    with self.pick:
                        picked = self._next(held)
                    if picked is None:
                        return
                    self._run(*picked)
        except BaseException as exc:  # shown by the main thread
            self.errors.append(exc)
            self.stop.set()

    def _next(self, held: contextlib.ExitStack):
        """(trial, steps reported already) of a trial left RUNNING by a killed sweep, else of a
        queued one; its lock is held in `held`. None when there is nothing left to do."""
        import optuna
        from optuna.trial import TrialState

        here = str(self.folder.resolve())
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = frozen.user_attrs
            mine = (attrs.get(HOST), attrs.get(FOLDER)) == (socket.gethostname(), here) or (
                self.local and HOST not in attrs  # killed between taking it and labelling it
            )
            if not mine or frozen.number in self.active or is_held(self.folder / "trials", _lock(frozen.number)):
                continue
            if self._hold(held, frozen.number):
                self.echo(f"fastcourse: trial {frozen.number:03d}: continuing (its sweep process was stopped)")
                return optuna.Trial(self.study, frozen._trial_id), set(frozen.intermediate_values)
        storage = self.study._storage  # Optuna's own queue pop (Study._pop_waiting_trial_id), without
        # its fallback of creating a new trial when the queue is empty: the sweep never runs more trials
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if frozen.number in self.active or not self._hold(held, frozen.number):
                continue
            try:
                taken = storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING)
            except optuna.exceptions.UpdateFinishedTrialError:
                taken = False
            if not taken:
                held.close()
                self.active.discard(frozen.number)
                continue
            trial = optuna.Trial(self.study, frozen._trial_id)
            trial.set_user_attr(HOST, socket.gethostname())
            trial.set_user_attr(FOLDER, here)
            return trial, set()
        return None

    def _hold(self, held: contextlib.ExitStack, number: int) -> bool:
        try:
            held.enter_context(hold(self.folder / "trials", _lock(number), what=f"sweep trial {number:03d} in"))
        except RunError:
            return False
        self.active.add(number)
        held.callback(self.active.discard, number)
        return True

    def _run(self, trial, reported: set[int]) -> None:
        from optuna.trial import TrialState

        params = describe_params(trial.params) if trial.params else "new"
        self.echo(f"fastcourse: trial {trial.number:03d} ({params}) started")
        prune = self.sweep.spec.pruner.name != "none"
        outcome = run_trial(trial, self.sweep, self.folder, self.stop, prune, reported)
        for key, value in outcome.values.items():
            trial.set_user_attr(key, value)
        if outcome.error:
            trial.set_user_attr("error", outcome.error)
        if outcome.state == "interrupted":
            if not self.stop.is_set():  # the trial's run was stopped by Ctrl-C or SIGTERM: stop here too
                self.interrupted = self.interrupted or "SIGINT"
                self.stop.set()
            return
        if outcome.state == "complete":
            metric = "eval_accuracy" if self.sweep.spec.objective == "accuracy" else "eval_loss"
            self.study.tell(trial.number, outcome.values[metric])
        elif outcome.state == "pruned":
            self.study.tell(trial.number, state=TrialState.PRUNED)
        else:
            self.study.tell(trial.number, state=TrialState.FAIL)
        self.echo(f"fastcourse: trial {trial.number:03d} ({describe_params(trial.params)}): {_summary(outcome)}")


def _lock(number: int) -> str:
    return f".{number:03d}.lock"


def _summary(outcome: Outcome) -> str:
    v = outcome.values
    if outcome.state == "complete":
        return (
            f"{v['eval_split']} accuracy {v['eval_accuracy']:.4f}, train {_fmt(v.get('train_accuracy'))}, "
            f"{v['epochs']} epoch(s), {v['process_seconds']:.0f} s"
        )
    if outcome.state == "pruned":
        return f"pruned after {v.get('epochs')} epoch(s)"
    return f"failed: {outcome.error}"


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


__all__ = ["sweep", "run_sweep", "open_study", "open_storage", "DEFAULT_JOBS", "trial_paths"]
