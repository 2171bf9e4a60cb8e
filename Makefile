# The two commands of the README: `make run` and `make test`. Both create the
# virtual environment and install fastcourse into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install run test test-fast test-notebooks test-slow lint docs bench bench-fastai bench-gpu notebooks notebooks-clean lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,notebooks]'
	touch $(STAMP)

install: $(STAMP)

# The default experiment: the ladder's CNN on the digit sample bundled in the package (offline).
run: $(STAMP)
	$(BIN)/fastcourse run configs/mnist_sample/cnn.yaml

# Two pytest processes (pytest-xdist), a file's tests in one of them (module fixtures are built
# once): on 2 cores about half the wall time of one process, as most tests wait on a child
# process or on Python, not on both cores. TEST_WORKERS=1 runs them in this process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# The unit tier, after every change: no subprocess (CLI runs, fresh interpreters), notebook,
# tf.distribute or download (tests/conftest.py marks those `integration`).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration" $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# Every notebook executed in small mode (minutes each); .ci/run runs it after `make test`.
test-notebooks: $(STAMP)
	$(BIN)/python -m pytest -q -m notebooks

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# What tests/test_lint.py and tests/test_types.py check; `ruff check --fix` and `ruff format` fix most of it.
lint: $(STAMP)
	$(BIN)/ruff check fastcourse tests benchmarks
	$(BIN)/ruff format --check fastcourse tests benchmarks
	$(BIN)/mypy

# The documentation site into site/ (tests/test_docs.py builds it with --strict too).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The comparisons (benchmarks/, not part of the package): fastcourse against the course's recipe
# in plain Keras, with fastcourse's own cases (`fastcourse bench`) in the same run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks

# fastcourse against fastai v2 on PyTorch, same data and CNN, 3 seeds interleaved; builds the
# fastai environment in .bench-fastai/ once (torch and fastai are not fastcourse dependencies).
bench-fastai: $(STAMP)
	$(BIN)/python -m benchmarks --cases fastai --json bench-fastai.json

# The full 6 x 35-epoch ensemble with mixed_float16 on one GPU (minutes and accuracy);
# on a machine without a GPU it prints one line and succeeds.
bench-gpu: $(STAMP)
	$(BIN)/fastcourse bench --gpu

# Execute every notebook in small mode (a few dozen to a few hundred images, minutes in all) and
# save it under notebooks/.small/ (gitignored): the committed full-run outputs are never replaced.
# `make notebooks FULL=1` runs the whole lessons and saves them in place, as the committed copies
# were saved; `NB=notebooks/lesson3.ipynb` picks one. Outputs are cleaned of TensorFlow noise and
# machine paths (tools/notebooks.py).
NB ?= notebooks/*.ipynb
notebooks: $(STAMP)
	$(BIN)/python tools/notebooks.py run $(if $(FULL),--full) $(wildcard $(NB))

# The cleaning step alone (pre-commit runs `python tools/notebooks.py check`).
notebooks-clean: $(STAMP)
	$(BIN)/python tools/notebooks.py clean

# JupyterLab on the notebooks (the [notebooks] extra; `make install` includes it).
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs .pytest_cache
