# The two commands of the README. Both create .venv and install dapter-tf into it on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= demo_out

.PHONY: demo test install browser jvm-test clean

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

# The Android harness's JVM side with Maven (android_app/pom.xml): the Kotlin core's JUnit tests,
# then the app's Android-facing sources compiled against the Android and TFLite API jars. Maven
# (and a JDK) are installed when missing and apt-get can (as root); otherwise this step is skipped.
jvm-test:
	@if ! command -v mvn >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's maven (and a JDK) for the Android harness's Kotlin tests"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven >/dev/null; \
	  fi; \
	fi
	@if command -v mvn >/dev/null; then \
	  set -o pipefail; cd android_app && mvn -B -ntp test | grep -E '^\[ERROR\]|^\[INFO\] (Tests run:|BUILD|Reactor Summary|dapter-bench|TFLite)' ; \
	else \
	  echo "note: no mvn and no root apt-get: the Android harness's Kotlin tests are skipped"; \
	fi

# The test suite (what CI runs): the Kotlin side first, then pytest, whose closing line ends the run.
# Tests that need ../shared/data skip with a reason without it. Two pytest workers (pytest-xdist): most
# of a test's time is one-threaded (a binary's start-up, tracing, tiny models' steps), so two fill two
# cores; --dist loadfile keeps each file in one worker, so a module's fixtures are built once.
TEST_WORKERS ?= 2
test: install browser jvm-test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean:
	rm -rf $(WORKDIR) .pytest_cache android_app/*/target
