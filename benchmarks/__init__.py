"""The comparisons behind the figures in docs/performance.md: fastcourse against the course's
recipe in plain Keras 3 (`peer`, `cases`) and against fastai v2 on PyTorch (`fastai_peer`, which
runs `fastai_side.py` in its own environment). Not part of the fastcourse package or its wheel:
run from the repository, `make bench` / `make bench-fastai` (`python -m benchmarks --help`)."""
