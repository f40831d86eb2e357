# NeuNN: `make demo` and `make test` each set up their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/neunn demo --out neunn-demo

test: $(STAMP)
	@[ -n "$$NEUNN_TEST_POSTGRES" ] || echo "note: the case store's PostgreSQL tests are skipped: set NEUNN_TEST_POSTGRES=postgresql://USER:PASS@HOST/postgres (.ci/run starts a server and sets it)"
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) neunn-demo .pytest_cache
