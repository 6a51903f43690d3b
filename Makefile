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

.PHONY: all venv build upy32 test test-cpython test-upy test-upy32 sim bench deploy clean

all: build

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

build: $(STAMP)
	$(PY) tools/build.py --check-with $(UPY)

# The 32-bit unix port (ESP32 heap layout) from ../shared/toolchain, cached in
# build/upy32; without the source or a 32-bit compiler it says why and is
# skipped, except under CI=true where that fails.
upy32: build
	$(PY) tools/upy32.py

test: build upy32
	$(PY) -m pytest -q host_tests $(PYTEST_ARGS)
	$(UPY) tools/upytest.py --lib build/device host_tests
	$(PY) tools/upy32.py --exec plain -- tools/upytest.py --lib build/device host_tests

test-cpython: $(STAMP)
	$(PY) -m pytest -q host_tests $(PYTEST_ARGS)

test-upy: build
	$(UPY) tools/upytest.py --lib build/device host_tests

test-upy32: upy32
	$(PY) tools/upy32.py --exec plain -- tools/upytest.py --lib build/device host_tests

sim: build
	$(PY) tools/sim/run.py $(SIM_ARGS)

bench: build upy32
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
