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
	@# ultralytics depends on opencv-python, the GUI build that needs libGL. Remove it and
	@# reinstall the headless build last so that it alone owns cv2.
	$(PY) -m pip uninstall -q -y opencv-python
	$(PY) -m pip install -q --force-reinstall --no-deps \
	  "opencv-python-headless==$$($(PY) -c 'from importlib.metadata import version; print(version("opencv-python-headless"))')"
	$(PY) -c 'import re, cv2, sys; sys.exit(0 if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()) else "cv2 is not the headless build")'
	touch $@

clean:
	rm -rf $(VENV)

demo: $(STAMP)
	$(PY) -m camserver.demo --config config.toml
