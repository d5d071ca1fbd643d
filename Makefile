# Two commands on a fresh machine: `make run` and `make test` (both create .venv if needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench demo clean triton

run: $(STAMP)
	$(PY) -m camserver --config config.toml

test: $(STAMP)
	YOLO_OFFLINE=1 $(PY) -m pytest

bench: $(STAMP)
	YOLO_OFFLINE=1 $(PY) -m bench.fanout

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,triton,infer]'
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

demo: $(STAMP)
	$(PY) -m camserver.sim.demo --config config.toml
