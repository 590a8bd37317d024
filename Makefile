# The two commands of the README. Both create .venv and install dapter-tf into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= demo_out

.PHONY: demo test install browser clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Train a target and a converter on the embedded CIFAR-10 sample, export .tflite files, write the report.
demo: install
	$(PY) -m experiments.run_demo --workdir=$(WORKDIR)

# The labelling page's test (tests/test_labelling_page.py) drives Debian's Chromium through
# chromedriver. Installed here when missing and apt-get can (as root); otherwise that test skips.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium and chromium-driver for the labelling-page test"; \
	    (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null) \
	      || echo "note: apt-get could not install them: the labelling-page browser test will skip"; \
	  else \
	    echo "note: no chromium/chromedriver and no root apt-get: the labelling-page browser test will skip"; \
	  fi; \
	fi

# The test suite (what CI runs). Tests that need ../shared/data skip with a reason without it.
test: install browser
	$(PY) -m pytest -q tests

clean:
	rm -rf $(WORKDIR) .pytest_cache
