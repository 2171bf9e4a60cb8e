"""Sweeps: one config trained over a search space, each trial its own `fastcourse run`, on Optuna.

    fastcourse sweep sweeps/overfitting            # the lesson's 12-trial grid (dropout x augmentation x BN)
    fastcourse sweep my_sweep.yaml --jobs 2
    fastcourse sweep my_sweep.yaml --storage postgresql://host/db --join   # on as many machines as you like

    import fastcourse
    df = fastcourse.sweep("sweeps/overfitting", quick=True)   # the trials as a DataFrame

- `spec.py`: the sweep spec (base config, search space, objective, sampler, pruner), validated
  the way configs are, every trial's config checked before any trial runs;
- `study.py`: the Optuna study (storage, sampler, pruner), the trial queue, resume after kill -9;
- `trial.py`: one trial: a `fastcourse run` process into `SWEEP/trials/NNN/`, its per-epoch
  records fed to the pruner, its results read back;
- `report.py`: trials.csv, report.md (the best trial, which settings overfit or underfit),
  overfitting.png, best.yaml.

This layer sits beside lessons/ and bench/: it imports the config check (tasks/), run
directories (run/) and nothing above; Optuna is imported inside the functions that need it.
"""
