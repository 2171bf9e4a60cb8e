# The two commands of the README: `make run` and `make test`. Both create the
# virtual environment and install fastcourse into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install run test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The default experiment: the ladder's CNN on the digit sample bundled in the package (offline).
run: $(STAMP)
	$(BIN)/fastcourse run configs/mnist_sample/cnn.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/fastcourse bench

clean:
	rm -rf $(VENV) runs .pytest_cache
