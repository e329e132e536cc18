# mmseg-reclip developer tasks. `make` alone lists them.

VENV        ?= .venv
PY3         ?= python3
VENV_PY     := $(VENV)/bin/python
VENV_PIP    := $(VENV_PY) -m pip
STAMP       := $(VENV)/.installed
REQUIREMENTS := requirements.txt $(wildcard requirements/*.txt) setup.py

# Quiet-ish pip: no progress bars, no version nag, no root warning (CI runs as root).
PIP_FLAGS   ?= --quiet --progress-bar off
export PIP_DISABLE_PIP_VERSION_CHECK = 1
export PIP_ROOT_USER_ACTION = ignore
export PIP_NO_INPUT = 1

LINT_PATHS  ?= mmseg_reclip tools tests configs benchmarks setup.py _mmseg_reclip_hook.py
PYTEST_ARGS ?= -q -rs --durations=15
DEMO_ARGS   ?= --out demo_out

.DEFAULT_GOAL := help
.PHONY: help venv test lint format demo clean distclean

help:
	@echo "mmseg-reclip make targets:"
	@echo "  make venv       create $(VENV) with $(PY3) (if missing) and install the pinned"
	@echo "                  requirements + this package (editable); redone only when"
	@echo "                  requirements*.txt or setup.py change (stamp $(STAMP))"
	@echo "  make test       run the test suite: $(VENV_PY) -m pytest tests $(PYTEST_ARGS)"
	@echo "  make lint       flake8 + isort --check + yapf --diff (settings in setup.cfg)"
	@echo "  make format     isort + yapf in place"
	@echo "  make demo       run tools/demo.py $(DEMO_ARGS)"
	@echo "  make clean      remove work_dirs/, demo_out/, build/, caches"
	@echo "  make distclean  clean, and remove $(VENV) too"

venv: $(STAMP)

$(VENV_PY):
	$(PY3) -m venv $(VENV)

# Same steps as the README: torch first (its pins constrain everything else), then
# the pinned requirements, then this package without re-resolving dependencies.
$(STAMP): $(REQUIREMENTS) | $(VENV_PY)
	$(VENV_PIP) install $(PIP_FLAGS) torch==2.14.1 torchvision==0.29.1 "setuptools>=77.0.3,<81"
	$(VENV_PIP) install $(PIP_FLAGS) -r requirements.txt
	$(VENV_PIP) install $(PIP_FLAGS) -e . --no-deps
	@touch $@

test: venv
	$(VENV_PY) -m pytest tests $(PYTEST_ARGS)

lint: venv
	$(VENV_PY) -m flake8 $(LINT_PATHS)
	$(VENV_PY) -m isort --check-only --diff $(LINT_PATHS)
	$(VENV_PY) -m yapf --diff --recursive $(LINT_PATHS)

format: venv
	$(VENV_PY) -m isort $(LINT_PATHS)
	$(VENV_PY) -m yapf --in-place --recursive $(LINT_PATHS)

demo: venv
	$(VENV_PY) tools/demo.py $(DEMO_ARGS)

clean:
	rm -rf work_dirs demo_out build .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true

distclean: clean
	rm -rf $(VENV)
