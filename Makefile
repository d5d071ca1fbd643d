# Two commands on a fresh machine: `make run` and `make test` (both create .venv if needed).
# `make run MODEL=path/to/model.pt` (or `make demo MODEL=...`) passes --model; without it the
# default yolo11n.pt is used, or yolo11n.yaml (random weights) when it cannot be downloaded.
# `make run ARGS="--http-port 8081"` passes any other flags (python -m camserver --help lists them).
#
# `make run` installs only what running needs; `make test` adds the test, triton, infer and docs
# extras (and PyTriton) on top. One stamp per set, so `make test` after `make run` installs the rest.
# Without an NVIDIA GPU, torch's CPU build comes from its own index when that answers
# (tools/install_torch.py says which it did; TORCH_CPU_INDEX= names another index).
PYTHON ?= python3
MODEL ?=
ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test bench demo clean triton docs docs-build docs-screenshots

run: $(RUN_STAMP)
	$(PY) -m camserver --config config.toml $(if $(MODEL),--model "$(MODEL)") $(ARGS)

test: $(STAMP)
	YOLO_OFFLINE=1 $(PY) -m pytest

bench: $(STAMP)
	YOLO_OFFLINE=1 $(PY) -m bench.fanout

$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) tools/install_torch.py --python $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install -q -e '.[test,triton,infer,docs]'
	$(MAKE) triton
	touch $@

# The inference service (python -m camserver.infer). nvidia-pytriton pins numpy<2, yet runs on
# numpy 2 with camserver/infer/pytriton_env.py's fixes: install it without its dependencies (the
# [infer] extra has them, minus the pin), then give Triton's Python stub its numpy<2 environment.
# Its wheel exists for Linux x86_64/aarch64 with glibc 2.35+ only; elsewhere its tests skip.
PYTRITON := nvidia-pytriton==0.7.0
triton:
	@if $(PY) -m pip install -q --no-deps '$(PYTRITON)'; then $(PY) -m camserver.infer --prepare; \
	else echo "$(PYTRITON) has no wheel for this platform: the inference service's tests will skip"; fi

clean:
	rm -rf $(VENV)

demo: $(RUN_STAMP)
	$(PY) -m camserver.sim.demo --config config.toml $(if $(MODEL),--model "$(MODEL)") $(ARGS)

# The docs site (docs/, mkdocs.yml): regenerate the reference pages from the code, then build and serve it at
# http://127.0.0.1:8000/ (`make docs-build` builds into site/ with --strict, as tests/test_docs.py does).
docs: $(STAMP)
	$(PY) -m camserver.docsgen
	$(VENV)/bin/mkdocs serve

docs-build: $(STAMP)
	$(PY) -m camserver.docsgen
	$(VENV)/bin/mkdocs build --strict

# Screenshots of every view of the page for the docs, from a running server with simulated cameras
# (needs chromium and the shapes test model); commit the PNGs it writes into docs/assets/screenshots/.
docs-screenshots: $(STAMP)
	YOLO_OFFLINE=1 $(PY) tests/docs_screenshots.py
