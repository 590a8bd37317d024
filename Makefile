# The two commands of the README. Both create .venv and install dapter-tf into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= demo_out

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Train a target and a converter on the embedded CIFAR-10 sample, export .tflite files, write the report.
demo: install
	$(PY) -m experiments.run_demo --workdir=$(WORKDIR)

# The test suite (what CI runs). Tests that need ../shared/data skip with a reason without it.
test: install
	$(PY) -m pytest -q tests

clean:
	rm -rf $(WORKDIR) .pytest_cache
