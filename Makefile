# Doorstep: `make run` starts the bot on the embedded default, `make test` runs the whole suite.
# Both create the virtualenv and install what is needed on first use, and are safe to run again.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
NODE_PEER := tests/wechaty

.PHONY: install run test lint typecheck demo bench clean

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Doorstep needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/doorstep serve

# The WeChat end-to-end tests need the npm packages of the Wechaty puppet server (installed when npm is
# present) and the browser test needs Debian's chromium; without them those tests are skipped, with reasons.
test: install
	@if command -v npm >/dev/null 2>&1 && [ -f $(NODE_PEER)/package.json ] && [ ! -d $(NODE_PEER)/node_modules ]; then \
		npm ci --prefix $(NODE_PEER) --no-audit --no-fund --loglevel=error; fi
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q -rs

SOURCES := core pii store nlp channels handlers tickets knowledge backend bot tests bench

lint: install
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/doorstep demo

bench: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/doorstep bench

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
