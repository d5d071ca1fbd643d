# Two commands on a fresh machine: `make run` and `make test` (both create .venv if needed).
# `make run MODEL=path/to/model.pt` (or `make demo MODEL=...`) passes --model; without it the
# default yolo11n.pt is used, or yolo11n.yaml (random weights) when it cannot be downloaded.
PYTHON ?= python3
MODEL ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench demo clean

run: $(STAMP)
	$(PY) -m camserver --config config.toml $(if $(MODEL),--model "$(MODEL)")

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
	$(PY) -m camserver.sim.demo --config config.toml $(if $(MODEL),--model "$(MODEL)")
