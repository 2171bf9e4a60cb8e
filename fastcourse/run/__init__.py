"""Layer 4, run: a config's data as Sources (inputs.py), the run directory and its lock
(rundir.py), the frame every task runs in (experiment.py), the artifacts every run writes
(artifacts.py), ensembles of any task (ensemble.py) and the run's plots (plots.py)."""
