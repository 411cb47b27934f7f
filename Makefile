# segmint: the two commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench clean install browser services

# Create the virtual environment and install segmint with its dev tools; redone when
# pyproject.toml changes.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/segmint demo

# The browser tests need Debian's chromium and chromedriver: installed here when missing
# and we are root with apt (otherwise those tests skip, or fail on CI, saying why).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver >/dev/null \
	      || echo "warning: could not install chromium; the browser tests will say so"; \
	  else \
	    echo "note: chromium/chromedriver missing and not root: browser tests will skip"; \
	  fi; \
	fi

# The engine tests start a throwaway PostgreSQL server (Debian package postgresql) and
# run Spark in local mode (Java 17); the MySQL tests a throwaway MariaDB server (Debian
# package mariadb-server): installed here when missing and we are root with apt.
services:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1 \
	    || ! command -v mariadb-install-db >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing postgresql, mariadb-server and a Java runtime for the engine tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends postgresql mariadb-server openjdk-17-jre-headless >/dev/null \
	      || echo "warning: could not install postgresql/mariadb/java; the engine tests will say so"; \
	  else \
	    echo "note: postgresql, mariadb or java missing and not root: engine tests will skip"; \
	  fi; \
	fi

# SEGMINT_DATA points the data-set tests at ../shared/datasets (they skip when it is
# absent, except on CI, where a skip fails the run). The ten slowest tests are listed
# at the end so that a test that grows slow shows in every CI log.
test: $(STAMP) browser services
	SEGMINT_DATA=$${SEGMINT_DATA:-$(abspath ../shared/datasets)} $(BIN)/python -m pytest -n 2 -q --durations=10

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/load_clean.py --rows 1000000
	$(BIN)/python benchmarks/features.py --rows 1000000
	$(BIN)/python benchmarks/segment.py --customers 100k
	$(BIN)/python benchmarks/report.py --customers 100k
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/api.py --requests 300 --batches 20

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
