# backpain_report — developer tasks.
#
#   make example        run the example site (dev server + Celery worker) on 127.0.0.1:8000
#                       (another address: make example PORT=8001 HOST=0.0.0.0)
#   make test           run the test suite (PYTEST_ARGS="-k outbox -x" to pass pytest arguments)
#   make test-fast      the inner loop: the unit tier without the tests marked `heavy` (~40 s)
#   make test-future    the unit tier with the clock moved 1,111 days ahead: a date written into
#                       a test fails now, not when it ages out (CI: make test-compat, shifted)
#   make test-compat    the unit tests on the lowest declared dependency versions (Django 5.2 LTS,
#                       WeasyPrint 68, ...) with Python 3.10: nox's oldest session
#   make test-matrix    the unit tests on every Django x Python pair of noxfile.py (nox)
#   make lint           ruff, and mypy on backpain_report/ (make format: ruff's fixes)
#   make docs           the documentation site (Sphinx, furo) into docs/_build/html; `make test` too
#   make check-system   the Debian packages WeasyPrint needs (check-system-test: and the tests);
#                       installed with apt-get when root or `sudo -n` works (APT=0: only check)
#   make bench          measure the rows of issues 11 and 21 on the real stack, into RESULTS.md
#                       (wrk, redis-server, PostgreSQL, the tests' packages; BENCH_ARGS=--quick)
#   make bench-multihost  one worker host vs two, over network namespaces (root, `ip`),
#                       into benchmarks/RESULTS.md (MULTIHOST_ARGS="--reports 500 --rounds 3")
#   make profile        profile the article page and the sign-up (pyinstrument in-process, py-spy
#                       flame graphs of gunicorn under wrk), into benchmarks/profiles/
#   make clean          remove build output, caches and var/ (the example's database and mail)
#
# PYTHON is the newest of python3.13 ... python3.10 / python3 found on PATH or in pyenv;
# override it with `make test PYTHON=python3.11` (a venv made by another Python is rebuilt).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every candidate prints "major minor path" if it runs and is >= 3.10; the newest wins.
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3.10 python3 \
	$(sort $(wildcard /root/.pyenv/versions/*/bin/python3))
find_python = $(shell for p in $(PYTHON_CANDIDATES); do \
	"$$p" -c 'import sys; v = sys.version_info; v >= (3, 10) and print(v[0], v[1], sys.executable)' \
	2>/dev/null; done | sort -n -k1,1 -k2,2 | tail -n 1 | cut -d' ' -f3-)
# PYTHON ?= the newest found (detected once, only when not given on the command line or env).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(find_python)
else ifeq ($(shell "$(PYTHON)" -c 'print(1)' 2>/dev/null),)
# A name such as python3.10 that PATH (or an inactive pyenv shim) cannot run: look in pyenv.
override PYTHON := $(or $(lastword $(sort $(wildcard /root/.pyenv/versions/*/bin/$(PYTHON)))),$(PYTHON))
endif

VENV ?= .venv
VENV_PY := $(VENV)/bin/python
# LOWEST=1 installs every install_requires entry at its declared lower bound (a constraints
# file made by tools/lowest_requirements.py from setup.cfg); the stamp says which kind of install.
LOWEST ?=
STAMP := $(VENV)/.installed$(if $(LOWEST),-lowest)
LOWEST_CONSTRAINTS := $(VENV)/constraints-lowest.txt
PYTEST_ARGS ?=
MANAGE := $(VENV_PY) example_project/manage.py

# The example's address: make example PORT=8001 HOST=0.0.0.0 (every interface).
HOST ?= 127.0.0.1
PORT ?= 8000

# OS packages (one list, shared with .ci/run): checked before the Python install, installed with
# apt-get when root or `sudo -n` works; APT=0 only checks and prints the command.
APT ?= 1
SYSTEM_PACKAGES = tools/system_packages.sh $(if $(filter 0,$(APT)),--check)

.PHONY: help venv venv-example check-system check-system-test check-bench example test test-fast \
	test-future test-compat docs \
	test-matrix lint format clean bench bench-multihost profile node-tools

help:
	@sed -n '2,26s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

# The venv is created only when missing (or when it was made by another Python than $(PYTHON)).
# Two installs into it, each with its stamp, re-run whenever setup.cfg changes: `venv-example`
# (make example) the package and the example extra, what the example site imports and nothing
# more; `venv` (make test, lint, bench, ...) also the test toolchain, so it satisfies both.
EXAMPLE_STAMP := $(VENV)/.installed-example

$(VENV_PY):
	@test -n "$(PYTHON)" || { echo "No Python >= 3.10 found; pass PYTHON=/path/to/python3" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(EXAMPLE_STAMP): setup.cfg pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install -e '.[example]' $(DJANGO_SPEC)
	@touch $@

$(STAMP): setup.cfg pyproject.toml $(if $(LOWEST),tools/lowest_requirements.py) | $(VENV_PY)
	@rm -f $(VENV)/.installed $(VENV)/.installed-lowest
	$(if $(LOWEST),$(VENV_PY) tools/lowest_requirements.py setup.cfg > $(LOWEST_CONSTRAINTS))
	$(VENV_PY) -m pip install -e '.[test,example]' $(DJANGO_SPEC) $(if $(LOWEST),-c $(LOWEST_CONSTRAINTS))
	@touch $@ $(EXAMPLE_STAMP)

venv venv-example:
	@if [ -x "$(VENV_PY)" ] && [ -n "$(PYTHON)" ]; then \
		want=$$("$(PYTHON)" -c 'import sys; print(sys.version_info[:2])'); \
		have=$$("$(VENV_PY)" -c 'import sys; print(sys.version_info[:2])' 2>/dev/null || echo none); \
		if [ "$$want" != "$$have" ]; then \
			echo "$(VENV) is Python $$have, PYTHON is $$want: rebuilding $(VENV)"; \
			rm -rf "$(VENV)"; \
		fi; \
	fi
	@$(MAKE) --no-print-directory $(if $(filter venv-example,$@),$(EXAMPLE_STAMP),$(STAMP)) \
		PYTHON="$(PYTHON)"

# WeasyPrint loads Pango and HarfBuzz at import time: install them (or say how), not a traceback.
# These come before `venv` in the targets below, so a missing package stops make before pip runs.
check-system:
	@PYTHON="$(PYTHON)" $(SYSTEM_PACKAGES) example

# And what the test tiers use (the PDF and browser tools, fonts, a cache server).
check-system-test:
	@PYTHON="$(PYTHON)" $(SYSTEM_PACKAGES) test

example: check-system venv-example
	$(VENV_PY) example_project/run.py setup
	$(VENV_PY) example_project/run.py serve --addr $(HOST):$(PORT)

# axe-core (npm) for the browser tier's accessibility checks, from package-lock.json into
# ./node_modules; the tests load it from there, with no network. Without npm the browser
# tests that need it skip (or fail with BACKPAIN_REQUIRE_SERVICES=1).
AXE := node_modules/axe-core/axe.min.js

$(AXE): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund && touch $@; \
	else echo "npm not found: the browser tier's accessibility checks will not run" >&2; fi

node-tools: $(AXE)

# The documentation site (docs/: Sphinx, furo, MyST Markdown), warnings as errors, so a broken
# link, an orphan page or a bad include fails. -E re-reads every page: the settings table is
# generated from settings_schema.py, which Sphinx does not watch. About 2 s; `make test` runs it.
docs: venv
	$(VENV)/bin/sphinx-build -E -W --keep-going -b html docs docs/_build/html

# The unit tiers and the real-service tiers in two pytest processes side by side
# (tools/test_split.sh; with PYTEST_ARGS, or TEST_SPLIT=0, one plain pytest). pytest exits 5 when
# it collected no test: that is a failure here, never a success.
test: check-system-test venv node-tools docs
	@tools/test_split.sh $(VENV_PY) $(PYTEST_ARGS)

# The inner loop: the unit tier less the tests marked `heavy` (subprocesses, whole PDF renders),
# which every other tier runs, and less the one marked `machine` (it checks that this machine
# has every package `make test` installs; test-fast installs only the example's).
UNIT_TIER := not slow and not services and not browser
test-fast: check-system venv
	@$(VENV_PY) -m pytest -m "$(UNIT_TIER) and not heavy and not machine" -p no:cacheprovider -q \
		$(PYTEST_ARGS); \
	status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# Tests own their clock (issue 20): the unit tier once more with the clock 1,111 days ahead
# (tests/clock_shift.py), so a date near today written into a payload, fixture or expected
# value fails today, not on the day it ages out of its window. The services and browser tiers
# talk to servers and subprocesses whose clocks this cannot move.
CLOCK_SHIFT_DAYS ?= 1111
test-future: check-system venv
	@$(VENV_PY) -m pytest -m "$(UNIT_TIER) and not machine" -p no:cacheprovider -q \
		--clock-shift-days=$(CLOCK_SHIFT_DAYS) $(PYTEST_ARGS); \
	status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# The compatibility matrix (noxfile.py): the unit tier on each Django x Python pair, in venvs of
# its own under .nox/ (reused by the next run). test-compat is its oldest session: Python 3.10
# and every install_requires entry (and the anymail/wagtail extras) at its declared lower bound
# (tools/lowest_requirements.py), Django 5.2 LTS included; the real-services tiers run in `test`.
NOX := $(VENV)/bin/nox
NOX_ARGS ?=
test-compat: check-system venv
	$(NOX) $(NOX_ARGS) -t compat $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

test-matrix: check-system venv
	$(NOX) $(NOX_ARGS) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

# Not part of `make test`: minutes of load on the real stack (see benchmarks/README.md).
BENCH_ARGS ?=
BENCH_APT := sudo apt-get install -y wrk redis-server postgresql

check-bench:
	@missing=""; \
	for tool in wrk redis-server; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v psql >/dev/null || \
		missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "make bench needs programs that are missing:$$missing" >&2; \
		echo "Install them with:" >&2; \
		echo "    $(BENCH_APT)" >&2; \
		exit 1; \
	fi

bench: check-system venv check-bench
	$(VENV_PY) benchmarks/run.py $(BENCH_ARGS)

MULTIHOST_ARGS ?=
bench-multihost: check-system venv
	$(VENV_PY) benchmarks/multihost.py $(MULTIHOST_ARGS)

profile: venv check-bench
	@$(VENV_PY) -c 'import pyinstrument' 2>/dev/null && [ -x $(VENV)/bin/py-spy ] || \
		$(VENV_PY) -m pip install pyinstrument py-spy
	$(VENV_PY) benchmarks/profile_requests.py $(PROFILE_ARGS)
	$(VENV_PY) benchmarks/run.py --rows flamegraphs --seconds 10

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV_PY) -m mypy backpain_report
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache .hypothesis test-artefacts var .venv-compat .nox node_modules
	find . \( -path ./$(VENV) -o -path ./.venv-compat -o -path ./.nox \) -prune -o -name __pycache__ -type d -print -exec rm -rf {} +
