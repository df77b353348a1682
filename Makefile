# Two commands: `make demo` and `make test`. Both install what is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

.PHONY: demo test setup system-deps lint bench clean

demo: setup
	$(VENV)/bin/responsecentre demo

test: setup
	@sh scripts/ensure-system-deps.sh test
	$(PY) -m ruff check responsecentre tests bench
	$(PY) -m pytest

setup: system-deps $(STAMP)

system-deps:
	@sh scripts/ensure-system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV) || { echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

lint: setup
	$(PY) -m ruff check responsecentre tests bench

bench: setup
	$(PY) bench/engine.py

clean:
	rm -rf $(VENV) .cache .data
