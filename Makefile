# Two commands matter on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN_DIR ?= .run

# Prefect's server must never phone home from these machines.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: run test bench sandbox install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/runbooks up --dir $(RUN_DIR) $(ARGS)

sandbox: $(STAMP)
	$(VENV)/bin/runbooks sandbox --dir $(RUN_DIR)/sandbox

# Two workers, one test file each at a time (module fixtures such as a `runbooks up` stack stay whole):
# most tests wait on real servers, so this halves the wall time on 2 cores.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) benchmarks/sandbox_api.py
	$(PY) benchmarks/rollback.py
	$(PY) benchmarks/github.py
	$(PY) benchmarks/certificates.py
	$(PY) benchmarks/scaling.py

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache
