# podnet: `make demo` and `make test` each set up a fresh Debian machine (as root) first.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test unit lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m podnet demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest -m "not root and not kubectl" $(PYTEST_ARGS)

lint: setup
	$(PY) -m mypy podnet controlplane endpoints proxy cni dns agent lab

bench: setup
	$(PY) -m bench

clean:
	rm -rf .venv build *.egg-info
