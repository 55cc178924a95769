# Two commands do everything on a fresh machine:
#   make run    create .venv if missing, install, run the whole pipeline on configs/tiny.yaml
#   make test   create .venv if missing, install, run the test suite
#
# torch is pinned to 2.13.0, CPU build: from PyTorch's CPU index when it is reachable (a bare `pip install torch`
# from PyPI would pull a multi-GB CUDA build), else from the configured indexes / local wheels. On a GPU machine:
#   make run TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
# (or pre-install any torch>=2.4 into .venv: the project itself only requires torch>=2.4).

PYTHON ?= python3
VENV ?= .venv
CONFIG ?= configs/tiny.yaml
TORCH_SPEC ?= torch==2.13.0
CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(shell curl -fsS -m 5 -o /dev/null $(CPU_INDEX)/torch/ 2>/dev/null && echo "--index-url $(CPU_INDEX)")
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test clean-artifacts

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/llmpipe run --config $(CONFIG)

test: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean-artifacts:
	rm -rf artifacts
