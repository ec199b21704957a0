# One command each: `make demo` (install + run the demo sync), `make test` (install + the whole suite, in the
# main environment and then, for tests/warehouses/, in the second: `make test-warehouses`), `make test-fast`
# (the unit layer, tests/unit: under a minute).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
EMULATOR_PORT ?= 8787
# the package's console script (pyproject [project.scripts]): log, emulator, demo
CLI    := $(BIN)/contentstack-assets

.PHONY: install install-warehouses demo test test-fast test-warehouses dev example-dbt log emulator lint format \
	bench bench-drt-venv clean

# dbt and duckdb (examples/dbt_duckdb and its test) add about 40 s to a fresh install
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,celery,k8s,dbt,duckdb,mysql,snowflake,bigquery,redshift]'
	touch $(STAMP)

install: $(STAMP)

# the second environment, for the tests of what cannot share the first (pyproject's `fakesnow` and
# `databricks` extras say why: fakesnow needs snowflake-connector-python 4 and SQLAlchemy 2.0, and both bring
# pyarrow): tests/warehouses/ (Snowflake against a fakesnow server) and the dialect compile tests
# (Databricks'). No dbt, no servers' drivers, no byte-compiling of every installed file: about 50 s here with
# pip's cache warm (its bundled pip does; the main install upgrades pip), the tests about 15 s.
WVENV  ?= .venv-warehouses
WBIN   := $(WVENV)/bin
WSTAMP := $(WVENV)/.installed-stamp
WAREHOUSE_TESTS := tests/warehouses tests/integration/test_source_dialects.py

$(WSTAMP): pyproject.toml
	$(PYTHON) -m venv $(WVENV)
	$(WBIN)/python -m pip install --quiet --no-compile -e '.[dev,snowflake,fakesnow,databricks]'
	touch $(WSTAMP)

install-warehouses: $(WSTAMP)

demo: install
	$(CLI) demo

# three test processes (pytest-xdist): most tests wait on the emulator's latency and on child processes, so
# three share two cores well (the whole suite: ~6 min here instead of ~11)
PYTEST_WORKERS ?= 3

# pytest's exit 5 (no tests collected) is a failure too, with its own message (make alone reports any as 2)
PYTEST_ONE = $(BIN)/python -m pytest -q -p no:cacheprovider
PYTEST = $(PYTEST_ONE) -n $(PYTEST_WORKERS)
NO_TESTS_FAIL = status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$status

# tests/: unit (the engine and the spec called directly), integration (through Dagster, the emulator over
# HTTP, real databases), resilience (crash, faults, hostile input and servers, concurrency)
# then the second environment's tests (test-warehouses), whatever the first run gave; in the first, the tests
# of tests/warehouses/ skip with the reason (on CI too: CONTENTSTACK_WAREHOUSES_VENV=1 makes them fail there
# only in .venv-warehouses)
test: install install-warehouses
	$(PYTEST); status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; \
		status=1; fi; $(MAKE) --no-print-directory test-warehouses || exit 1; exit $$status

# tests/warehouses/ and the dialect compile tests in .venv-warehouses: about 15 s
test-warehouses: install-warehouses
	CONTENTSTACK_WAREHOUSES_VENV=1 $(WBIN)/python -m pytest -q -p no:cacheprovider $(WAREHOUSE_TESTS); \
		$(NO_TESTS_FAIL)

# the unit layer in one process: about 20 s here, where workers would spend longer importing Dagster
test-fast: install
	$(PYTEST_ONE) tests/unit; $(NO_TESTS_FAIL)

# the Dagster UI on the demo: its folder prepared (demo/users.db, $(DAGSTER_HOME)/dagster.yaml), the emulator
# with the demo's keys and management token in the background (so the attribute-key checks run), `dg dev`
# (what `dagster dev` says supersedes it; dagster-dg-cli, a dev extra) pointed at it by the variables
# `demo --print-env` prints
dev: install
	@$(CLI) demo --prepare --keep-database
	@$(CLI) emulator --demo --port $(EMULATOR_PORT) & echo $$! > $(DAGSTER_HOME)/emulator.pid
	env $$($(CLI) demo --print-env http://127.0.0.1:$(EMULATOR_PORT)) $(BIN)/dg dev -w workspace.yaml; \
		kill $$(cat $(DAGSTER_HOME)/emulator.pid) 2>/dev/null || true

# examples/dbt_duckdb end to end: dbt seeds and builds dim_users in a DuckDB file, then the users sync reads it
# and pushes to the emulator, run in the background with the demo's keys (one `dagster asset materialize` of
# every asset: the dbt assets first, as the sync depends on dim_users)
example-dbt: install
	@mkdir -p $(DAGSTER_HOME)
	@$(CLI) emulator --demo --port $(EMULATOR_PORT) & echo $$! > $(DAGSTER_HOME)/emulator-dbt.pid
	PERSONALIZE_EDGE_URL=http://127.0.0.1:$(EMULATOR_PORT) \
		$(BIN)/dagster asset materialize -f examples/dbt_duckdb/definitions.py --select '*'; \
		status=$$?; kill $$(cat $(DAGSTER_HOME)/emulator-dbt.pid) 2>/dev/null || true; exit $$status

# the sync log of one user in the state of `make demo` / `make dev` (`make log UID=usr_000042`)
log: install
	@[ -n "$(UID)" ] || { echo "usage: make log UID=<user uid>"; exit 2; }
	@DAGSTER_HOME=$(DAGSTER_HOME) $(CLI) log '$(UID)'

emulator: install
	$(CLI) emulator --port $(EMULATOR_PORT)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# drt (PyPI drt-core), the open-source reverse-ETL peer `make bench` also runs, in a venv of its own
# (bench/.venv-drt, git-ignored) so that nothing of it enters the project's: bench/drt_peer.py runs its `drt run`
DRT_VERSION ?= 1.2.1
DRT_VENV    := bench/.venv-drt
DRT_STAMP   := $(DRT_VENV)/.installed-$(DRT_VERSION)

$(DRT_STAMP):
	$(PYTHON) -m venv $(DRT_VENV)
	$(DRT_VENV)/bin/python -m pip install --quiet 'drt-core[duckdb,postgres]==$(DRT_VERSION)'
	touch $(DRT_STAMP)

bench-drt-venv: $(DRT_STAMP)

bench: install bench-drt-venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(WVENV) bench/.venv-drt .dagster_home .contentstack demo/*.db *.egg-info
