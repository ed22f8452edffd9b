# lenspipe: `make run` trains and pushes a model on the embedded digits; `make test` runs the suite.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed-$(shell sha256sum $(LOCK) pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
AIRFLOW_LOCK  := requirements-airflow.lock
AIRFLOW_STAMP := $(VENV)/.airflow-$(shell sha256sum $(AIRFLOW_LOCK) 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: install install-airflow postgres-deps redis-deps run test test-fast test-deps bench bench-serving bench-warmup bench-deps bench-scale soak serve clean

install: $(STAMP)

# Idempotent: the stamp is keyed on the lock's and pyproject's hash.
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==24.3.1"
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python --no-build-isolation -e .
	@# With Airflow already installed, this lock just put back a few versions Airflow's lock
	@# overrides: pip check belongs to install-airflow, which must run again.
	@if [ -x $(BIN)/airflow ]; then rm -f $(VENV)/.airflow-*; \
	  echo "install: Airflow present; run make install-airflow (it re-pins and runs pip check)"; \
	else $(BIN)/python -m pip check; fi
	$(BIN)/python tools/check_requires_python.py
	@rm -f $(VENV)/.installed-*
	@touch $@

# Airflow 2.10.5 on top of the main lock (its own lock overrides a few versions); redone
# whenever either lock changes, since `install` puts the main lock's versions back.
install-airflow: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): $(STAMP) $(AIRFLOW_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python -r $(AIRFLOW_LOCK)
	$(BIN)/python -m pip check
	$(BIN)/python tools/check_requires_python.py
	@rm -f $(VENV)/.airflow-*
	@touch $@

# The orchestration tests start a throwaway PostgreSQL cluster with the server binaries of
# Debian's postgresql package (/usr/lib/postgresql/<version>/bin, not on PATH).
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  fi; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "postgres-deps: PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install Debian's postgresql (apt-get install postgresql)"; exit 1; }

# The Celery test's broker: Debian's redis-server, started by the test on a free port (the package's
# own service is not needed; where policy-rc.d forbids it, apt does not start it).
redis-deps:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	  fi; }
	@command -v redis-server >/dev/null || { \
	  echo "redis-deps: redis-server not found; install Debian's redis-server (apt-get install redis-server)"; exit 1; }

run: install
	$(BIN)/lenspipe run $(ARGS)

serve: install
	$(BIN)/lenspipe serve --model_name lenspipe --model_base_path lenspipe-work/serving/lenspipe $(ARGS)

# Test processes (pytest-xdist). A test file runs whole in one process, so its module fixtures
# (a pipeline run, a server) are built once; most of the suite is one-core work in subprocesses.
TEST_WORKERS ?= 2

test: install install-airflow postgres-deps redis-deps test-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# Debian's chromium (with its recommended fonts): the e2e test opens the HTML report in it, headless.
test-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "test-deps: chromium not found; install it (apt-get install chromium) for the report test"; fi; }

test-fast: install install-airflow
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not e2e" $(ARGS)

bench: install
	$(BIN)/python -m bench.pipeline_bench $(ARGS)
	$(BIN)/python -m bench.offline_bench

bench-serving: install bench-deps
	$(BIN)/python -m bench.serving_bench $(ARGS)

# The first request after a version swap, with and without --enable_model_warmup (after `make run`).
bench-warmup: install
	$(BIN)/python -m bench.warmup_bench $(ARGS)

# How cost grows: ExampleGen -> StatisticsGen -> Transform -> one Trainer epoch at 1x, 10x and 100x
# the embedded digits (built once under lenspipe-work/bench-scale/data); writes bench/results/scale.md.
bench-scale: install
	$(BIN)/python -m bench.scale_bench $(ARGS)

# 10 minutes at 64 clients, a new version every 30 s, a rollback every 2 min (not in CI; the suite
# runs 60 s of it): writes bench/results/soak.md.
soak: install
	$(BIN)/python -m bench.soak $(ARGS)

# wrk (Debian) drives the serving benchmark; without it the bench falls back to a Python load
# generator that competes with the server for CPU, and says so in its results.
bench-deps:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq wrk; \
	  else echo "bench-deps: wrk not found; install it (apt-get install wrk) for comparable numbers"; fi; }

clean:
	rm -rf lenspipe-work .pytest_cache
