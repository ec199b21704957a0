# One command each: `make demo` (install + run the demo sync), `make test` (install + the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
EMULATOR_PORT ?= 8787
# the emulator's management token in the demo (one copy, in demo.py): with it the attribute-key checks run
DEMO_MANAGEMENT_TOKEN := $(shell sed -n 's/^DEMO_MANAGEMENT_TOKEN = "\(.*\)"$$/\1/p' contentstack_assets/demo.py)

.PHONY: install demo test test-fast dev log emulator lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,celery,k8s]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m contentstack_assets.demo

# three test processes (pytest-xdist): most tests wait on the emulator's latency and on child processes, so
# three share two cores well (the whole suite: ~6 min here instead of ~11)
PYTEST_WORKERS ?= 3

# pytest's exit 5 (no tests collected) is a failure too, with its own message (make alone reports any as 2)
PYTEST = $(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS)
NO_TESTS_FAIL = status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$status

test: install
	$(PYTEST); $(NO_TESTS_FAIL)

test-fast: install
	$(PYTEST) -m "not slow"; $(NO_TESTS_FAIL)

# the Dagster UI on the demo: the emulator in the background, dagster dev with $(DAGSTER_HOME)/dagster.yaml
dev: install
	@mkdir -p $(DAGSTER_HOME) && [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@[ -f demo/users.db ] || $(BIN)/python -c "from contentstack_assets.demo import create_demo_database; create_demo_database()"
	@$(BIN)/python -m contentstack_assets.emulator --port $(EMULATOR_PORT) --project-uid demo00000000000000000001 \
		--attributes plan,ltv,orders,vip,signup_at,birthday --events purchase,signup,newsletter_opt_in \
		--management-token $(DEMO_MANAGEMENT_TOKEN) --latency-ms 5 & echo $$! > $(DAGSTER_HOME)/emulator.pid
	PERSONALIZE_EDGE_URL=http://127.0.0.1:$(EMULATOR_PORT) PERSONALIZE_MANAGEMENT_URL=http://127.0.0.1:$(EMULATOR_PORT) \
		PERSONALIZE_MANAGEMENT_TOKEN=$(DEMO_MANAGEMENT_TOKEN) $(BIN)/dagster dev -w workspace.yaml; \
		kill $$(cat $(DAGSTER_HOME)/emulator.pid) 2>/dev/null || true

# the sync log of one user in the state of `make demo` / `make dev` (`make log UID=usr_000042`)
log: install
	@[ -n "$(UID)" ] || { echo "usage: make log UID=<user uid>"; exit 2; }
	@DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/python -m contentstack_assets.log '$(UID)'

emulator: install
	$(BIN)/python -m contentstack_assets.emulator --port $(EMULATOR_PORT)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .dagster_home .contentstack demo/*.db *.egg-info
