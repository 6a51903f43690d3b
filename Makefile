# Every entry point of the project. `make sim` and `make test` set up
# everything they need on a fresh machine (a virtualenv from requirements.txt).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UPY := $(VENV)/bin/micropython
STAMP := $(VENV)/.installed
BOARD ?= esp32_devkit
PORT ?= /dev/ttyUSB0
# Extra arguments, e.g. make test PYTEST_ARGS="-k guard" or make sim SIM_ARGS="--speed 2".
PYTEST_ARGS ?=
SIM_ARGS ?=
REHEARSAL_ARGS ?=

.PHONY: all venv build test test-cpython test-upy sim rehearsal bench deploy clean

all: build

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

build: $(STAMP)
	$(PY) tools/build.py --check-with $(UPY)

test: build
	$(PY) -m pytest -q host_tests $(PYTEST_ARGS)
	$(UPY) tools/upytest.py --lib build/device host_tests

test-cpython: $(STAMP)
	$(PY) -m pytest -q host_tests $(PYTEST_ARGS)

test-upy: build
	$(UPY) tools/upytest.py --lib build/device host_tests

sim: build
	$(PY) tools/sim/run.py $(SIM_ARGS)

# The real firmware booted through platform/esp32.py on the unix port, against
# fakes of the documented machine/network API (tools/rehearsal/); its
# scenarios run in host_tests/system/test_rehearsal.py.
rehearsal: build
	$(PY) tools/rehearsal/rehearsal.py $(REHEARSAL_ARGS)

bench: build
	$(PY) tools/bench.py

deploy: build
	$(VENV)/bin/mpremote connect $(PORT) fs cp -r build/device/* :
	$(VENV)/bin/mpremote connect $(PORT) fs cp boards/$(BOARD).json :board.json
	@if [ -n "$(CONFIG)" ]; then \
		$(VENV)/bin/mpremote connect $(PORT) fs mkdir :data || true; \
		$(VENV)/bin/mpremote connect $(PORT) fs cp $(CONFIG) :data/config.json; fi
	$(VENV)/bin/mpremote connect $(PORT) reset

clean:
	rm -rf build
