# Entry points. Each target creates .venv/ and installs ponte into it when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-postgres lint bench clean browser

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/ponte demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check etl tests bench
	$(BIN)/mypy etl

# Debian's Chromium for the status page's browser tests (tests/serve/test_status_browser.py,
# through Playwright, which never downloads a browser of its own here). Needs root.
browser:
	test -x /usr/bin/chromium || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	/usr/bin/chromium --version

clean:
	rm -rf $(VENV) ponte.db ponte.db-wal ponte.db-shm

# Real Tryton and BottleCRM servers on loopback for tests/realsys/ (cache folder .cache/realsys/,
# or PONTE_TEST_REALSYS_DIR). Standard library only: no .venv needed.
REALSYS := $(PYTHON) tests/realsys/setup/realsys.py
.PHONY: realsys realsys-stop realsys-reset realsys-status realsys-clean

realsys:
	$(REALSYS) up

realsys-stop:
	$(REALSYS) stop $(SYSTEMS)

realsys-reset:
	$(REALSYS) reset $(SYSTEMS)

realsys-status:
	$(REALSYS) status

realsys-clean:
	$(REALSYS) clean
