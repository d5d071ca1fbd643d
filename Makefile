# Two commands on a fresh machine: `make run` and `make test` (both create .venv if needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench demo clean

run: $(STAMP)
	$(PY) -m camserver --config config.toml

test: $(STAMP)
	YOLO_OFFLINE=1 $(PY) -m pytest

bench: $(STAMP)
	YOLO_OFFLINE=1 $(PY) -m bench.fanout

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV)

demo: $(STAMP)
	$(PY) -m camserver.sim.demo --config config.toml
