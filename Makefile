# Every entry point of the project. `make sim` and `make test` set up
# everything they need on a fresh machine (a virtualenv from requirements.txt).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UPY := $(VENV)/bin/micropython
STAMP := $(VENV)/.installed
BOARD ?= esp32_devkit
PORT ?= /dev/ttyUSB0
# Extra arguments, e.g. make test PYTEST_ARGS="-k guard" or make sim SIM_ARGS="--scene-s 5 --once"
# (sim options: --day default|solar, --scene-s SECONDS per scene of the day, --once, --heap 96K, --car-delay-s SECONDS,
#  --meter MODEL: a Modbus meter instead of P1, e.g. make sim SIM_ARGS="--meter sdm630", --modbus-tcp: over TCP;
#  or a LAN meter over HTTP: --meter homewizard, homewizard_v2 (HTTPS, token), shelly_em, shelly_3em_gen1; --mixed: a Trydan, a go-e, an
#  OpenEVSE and an Alfen over Modbus TCP on one 25 A breaker; --load: a 2 kW heater on a Shelly relay, an on/off load;
#  --ocpp: a Trydan and an OCPP 1.6J box that connects to the firmware; --ct (or --meter ct): CT clamps on the ADC,
#  fed with the site's currents through the unix port's ADC fake; --meter atm90e32: the metering IC on SPI;
#  --meter han: a Norwegian HAN port; --meter mqtt: a meter fed over MQTT; --every-family: one box of each family;
#  --peak-limit-w W: the capacity tariff's quarter-hour limit, site.peak_limit_w, e.g. SIM_ARGS="--peak-limit-w 4000").
PYTEST_ARGS ?=
SIM_ARGS ?=
REHEARSAL_ARGS ?=
# make meterprobe PROBE_ARGS="--model sdm630 --device /dev/ttyUSB0" (or --host 192.168.1.50): read a Modbus meter once
# (or an HTTP meter: PROBE_ARGS="--model homewizard --host 192.168.1.60"; shelly_em, shelly_em1, shelly_3em_gen1, shelly_em_gen1;
#  a HomeWizard API v2 token: PROBE_ARGS="--homewizard-pair --host 192.168.1.60 --ca-file homewizard-ca.pem")
PROBE_ARGS ?=

.PHONY: all venv build upy32 test test-cpython test-upy test-upy32 sim rehearsal bench deploy check-config meterprobe screenshots clean ha-check

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

# The real firmware booted through platform/esp32.py on the unix port, against
# fakes of the documented machine/network API (tools/rehearsal/); its
# scenarios run in host_tests/system/test_rehearsal.py.
rehearsal: build
	$(PY) tools/rehearsal/rehearsal.py $(REHEARSAL_ARGS)

# A real Home Assistant (PyPI, its venv cached in build/ha-venv) pointed at the
# simulated firmware's MQTT discovery: entities, devices, states, commands, a
# removed charger, its log (tools/ha_check.py, docs/mqtt.md); exit 1 = a check failed.
ha-check: build
	$(PY) tools/ha_check.py

# Heap and latency (tools/bench.py), then the control-quality benchmark
# (tools/replay --all, docs/benchmark.md; exit 3 = a goal missed, reported).
bench: build upy32
	$(PY) tools/bench.py; heap=$$?; $(PY) tools/replay --all --out build/bench; status=$$?; \
	test $$heap -eq 0 && test $$status -eq 0 -o $$status -eq 3

# Checks BOARD, CONFIG (the device's own validator) and PORT before anything
# is copied; the configuration goes to a temporary name, then a rename. The
# guard is off meanwhile (a maintenance boot, tools/deploy.py). FROZEN=1: the
# board runs the image with ChargeGuard frozen in (docs/firmware.md): only
# main.py, boot.py, preboot.mpy, the web pages and the configuration are copied.
FROZEN ?=
deploy: build
	$(PY) tools/deploy.py --port "$(PORT)" --board "$(BOARD)" --config "$(CONFIG)" --mpremote $(VENV)/bin/mpremote $(if $(filter-out 0,$(FROZEN)),--frozen)

# The device's validator on this computer: every error, exit 0 / 1 / 2.
check-config:
	@$(PYTHON) tools/check_config.py "$(CONFIG)"

# A meter (P1, Modbus, HTTP) read from this computer with the firmware's driver (tools/meterprobe.py): values and
# errors in words. The command is not echoed: PROBE_ARGS may hold a HomeWizard token.
meterprobe: $(STAMP)
	@$(PY) tools/meterprobe.py $(PROBE_ARGS)

# The web pages at phone size (390 x 844) for docs/screenshots/ (tools/screenshots.py: the firmware on the
# unix port against the simulator, in Debian's Chromium through playwright).
screenshots: build
	$(PY) tools/screenshots.py

clean:
	rm -rf build
