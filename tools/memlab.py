"""Heap measurements of the firmware on the MicroPython unix ports (bench and budget tests).

A profile is what a configuration turns on; a build is how the firmware gets
onto the interpreter:

    mpy32     32-bit unix port, stock modules (asyncio frozen), the firmware
              as .mpy from build/device: a stock ESP32 firmware + `make deploy`
    frozen32  32-bit unix port with manifest.py frozen in: a custom ESP32 image
    mpy64     the 64-bit unix port from .venv, .mpy (reference only: its heap
              figures are about 1.4x an ESP32's)

The firmware runs unmodified under tools/memprobe.py (which starts it as
main.py does and reports the heap) against the site simulator
(tools/sim/run.py's Simulation), playing the scripted day at a fast pace:
every scene for a second (a telegram every 0.25 s), the P1 cable pulled for
longer than meter_timeout_s (failsafe), charger polls every 5 s and the
firmware's own collection every 10 s as on the device.

Budgets are per profile and build: the heap (-X heapsize) the profile must
run the day in, with no MemoryError and no growth of the live heap. Each new
interface (MQTT, web, OCPP) adds a profile here with its configuration; the
budget tests (host_tests/system/test_heap_budget.py) and `make bench` pick it up.
"""

import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (HERE, os.path.join(HERE, "sim")):
    if path not in sys.path:
        sys.path.insert(0, path)

import upy32  # noqa: E402
from build import mpy_cross_binary  # noqa: E402
from house import DAY  # noqa: E402
from broker import Broker  # noqa: E402
from ports import free_port  # noqa: E402
from run import Simulation, micropython_binary  # noqa: E402

KB = 1024
# Fast enough for seconds-long runs, inside the configuration's limits.
FAST_GUARD = {"meter_timeout_s": 2, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1}
TELEGRAMS_PER_SCENE = 4
TELEGRAM_GAP_S = 0.25


class Profile:
    """A configuration the firmware must fit with: name, what it turns on, budgets per build (bytes).

    chargers: how many simulated V2C Trydans the configuration lists; config:
    sections merged (dicts recursively) into the simulator's configuration,
    e.g. {"mqtt": {...}} once MQTT exists; budgets: {build: heap bytes} the
    profile must run the day in (tests), a build without one is only measured;
    meter: None for the P1 port, else a Modbus model (the simulator's
    emulator on a pty line, read over RTU).
    broker: a real MQTT broker (tools/sim/broker.py) runs beside the sim and
    config's mqtt section gets its port; a run counts only once the
    firmware's MQTT link connected to it.
    ocpp: OCPP boxes (tools/sim/ocpp_emulator.py specs, as Simulation's `ocpp`) that connect to the
    firmware's central system, after the `chargers` Trydans.
    mixed / every_family: the simulator's mixed site, or its site with one box of every family.
    web: the web interface serves on a free loopback port and a client
    (WebClient) uses it through the day as the status page does, plus a
    change and refused requests; a run counts only if every answer came.
    portal: the setup access point is open (no Wi-Fi configured and the
    network down: the device cannot be reached otherwise) with its DNS
    server on a free loopback port; a phone's resolver and connectivity
    check (PortalClient) ask it every scene, and a run counts only if every
    answer came.
    first_boot: the device out of the box: the simulator's config.json is
    removed before the firmware starts (it runs on the defaults, no charger,
    and opens the access point and the setup pages); `chargers` Trydans
    still run on the LAN for the wizard's box check (a WebClient in
    "firstboot" mode: the wizard's requests without a password).
    """

    def __init__(self, name, text, chargers, budgets, config=None, meter=None, broker=False, web=False, portal=False,
                 mixed=False, ocpp=None, every_family=False, first_boot=False, builds=None):
        # builds: the builds that can run it (None: all); the 32-bit ones have no ssl.
        self.builds = builds
        self.first_boot = first_boot
        self.name = name
        self.mixed = mixed
        self.every_family = every_family
        self.ocpp = ocpp
        self.web = web
        self.portal = portal
        self.text = text
        self.chargers = chargers
        self.budgets = budgets
        self.config = config or {}
        self.meter = meter
        self.broker = broker


# Issue 6's targets: the plain-ESP32 subset runs as .mpy in 80 KB (of a plain
# ESP32's ~110 KB Python heap, the rest is left for what the IDF's Wi-Fi, lwIP
# and TLS take as the site runs); everything the project has runs frozen in
# 64 KB (the `everything` profile misses that: see it). The .mpy budgets are the most each profile needed in the runs
# measured, plus 4 KB (the smallest heap of a one-day run moves by about
# 1 KB run to run, and the budget test plays three days: optimiser failed at
# 102 + 2 KB once), so they catch growth; where that is above 80 KB the profile does not fit the
# plain-ESP32 .mpy tier (docs/firmware.md says which). Measured 2026-11-30
# on main after the merges of the lock switch, the HTTP meters, go-e /
# OpenEVSE, the web and the energy counts (each driver row and config key
# adds to what config.py interns at boot), with a collection before each driver is made (without it a 2 KB
# body buffer found no hole at boot in some heap sizes above the smallest:
# modbus ran in 80-82 KB and failed in 83), every heap size swept in 1 KB
# steps over one fast day: core runs from 77, wifi from 82 (84 in the run
# before), modbus from 81, http from 82, and in every size above (up to
# +7 KB tried); optimiser in 98 and from 100 (99 failed); mqtt 95 KB with the link alone, over 128 KB with Home
# Assistant: it has no .mpy budget (measured only), MQTT needs the frozen
# image or a PSRAM board.
# Re-measured 2026-11-30 (later) after the merges of the setup portal, the
# wizard, OCPP, the Modbus/UDP chargers and the MQTT/CT meters and their
# config rows (config.py 16.4 -> 18.2 KB of .mpy, loaded at boot; app.py
# +0.8 KB; the portal's watch, 2.4 KB, on every site with Wi-Fi): every
# .mpy profile grew past its budget, and the budgets were set again from
# the new smallest heaps (2 KB steps, one fast day): core runs from 81 KB
# (79 failed), wifi from 91 (89 failed), http from 88 (86 failed), modbus in
# 96 (86-92 failed at boot: config.py's read found no 640-byte hole). That
# growth is what the plain-ESP32 .mpy tier lost this session: it is the
# issue's open point (docs/firmware.md), not a tolerance.
# optimiser was not swept then and kept 106 KB; the CI run of that evening
# failed it there (a MemoryError in a charger poll), and a sweep of the
# three-day run on main gave: 104 and 106 fail, 108, 110 and 112 run. Its
# budget is that smallest heap plus the margin, like the others.
# Lowered again 2026-11-30 (memcfg, issue 6) after config.py lost the OCPP
# entry's rows (chargers/ocpp_entry.py, loaded only for such an entry),
# app.py its once-per-boot code (startup.py, unloaded after boot) and the
# boot a collection before config.py's import and before flashfile's;
# smallest heaps over three fast days (2 KB steps, memlab.run(..., days=3)),
# with the HAN meter merged: http 86 KB (84 failed; 86 before), modbus 88
# (86 failed; 94 before): those budgets are these plus 4 KB. core 81 (79
# failed; it ran in 79 before the HAN merge), wifi 91 (89 failed),
# optimiser 106 before the merge (104 failed; 108 on main), everything
# frozen 76 before the merge (74 failed; 78 on main): budgets unchanged.
# Lowered again 2026-11-30 (mpytier, issue 6: code resident as .mpy, see
# tools/mpyimports.py) after drivers.py is unloaded once the App is built,
# Home Assistant's entity tables and discovery writer moved to
# net/hass_entities.py (loaded while announcing and per /set) and the command
# API's checks to change.py (with rules.py, loaded per call): smallest heaps
# over three fast days (memlab.run(..., days=3)): core 78 KB (77 failed; on
# main 78 failed, 80 ran), wifi 90 (88 failed at boot: a 2 KB body buffer
# found no hole; 91 before), mqtt 148 (146 and 144 failed; on main 156
# failed a one-day run, 160 ran): budgets these plus 4 KB. mqtt as .mpy now
# has a budget (it catches growth), far above the plain-ESP32 tier: its code
# alone is 103 KB of heap as .mpy (docs/firmware.md). The profile sends no
# /set: with one every scene, 152 KB refuses commands for want of heap and
# 160 applies all (the checks load per call; docs/firmware.md).
# Measured 2026-12-01 (mpytier, issue 6) after the serial devices' opening
# left the resident platform modules (platform/unix_line.py, esp32_line.py:
# loaded per open, dropped after; platform/unix.py 5936 -> 4720 B own heap,
# `.venv/bin/python tools/mpyimports.py --profile wifi`) and the merge of main
# at eb1f1f8, three fast days per size (memlab.run(profile, "mpy32", size,
# days=3), 1 KB steps): wifi 86 KB ran twice and 87-89 ran (85 failed while
# running: the clock task's sync; main at eb1f1f8 in the same session: 89 ran,
# 88 failed the same way), modbus 86 ran three times (85 failed at boot, as on
# main), core 81 (80 failed at boot, as on main), http 88 (87 failed, as on
# main). wifi's and modbus's budgets come down to these plus 4 KB; core's and
# http's measured + 4 are above the budgets they have (82, 90): those are
# left, with less than 4 KB of margin (main grew since they were set).
# Measured 2026-12-01 (coretier, issue 6) after the interfaces' wiring left
# startup.py (attach.py, loaded only when an interface or the setup pages are
# on; the lost-Wi-Fi portal's context made when it opens), App.keep_last_good's
# work went to flashfile.proven (reverted the same day: config.load() then
# needed a larger block, test_config_heap) and config.py's constant tables became
# const(): core ran three fast days in 80 KB (79 failed at boot, the App's
# dict growing in init_app; main then 81, 80 failed there); wifi 86 ran 3 of
# 3 three-day runs (main 3 of 4), modbus 86, http 88 2 of 3 (main 1 of 3).
# After merging main at 7c24973 (the guard's raise take-back, about 0.4 KB
# more after imports) core needs 81 KB again, on main and on the branch
# alike (80 fails on both at boot): every budget is unchanged
# (docs/firmware.md, "The interfaces' wiring out of startup.py").
# Lowered 2026-12-01 (mpycore, issue 6) after app.build()'s configuration
# read and trial steps left app.py (appboot.py), the App's making and wiring
# left startup.py (appinit.py, loaded once startup.py is unloaded), asyncio's
# event module loads before the configuration, and an SNTP sync of a numeric
# server no longer loads net/dns.py: three fast days per size
# (memlab.run(profile, "mpy32", size, days=3), 1 KB steps): core 80 KB ran
# 4 of 4 (79 failed at boot, in init_app; main the same session: 81 ran 3 of
# 4, 80 failed 2 of 2), wifi 85 ran 3 of 3 and 84 2 of 3 (main: 87 ran 2 of
# 2, 86 failed 2 of 2, the clock's sync): budgets these plus 4 KB.
MPY_MARGIN = 4 * KB


# The sections several profiles switch on, a fresh dict per call: _merge keeps
# references, so profiles must never share one.
def _wifi():
    return {"ssid": "home", "password": "sim-password", "ntp_server": "127.0.0.1"}


def _mqtt():
    return {"enabled": True, "host": "127.0.0.1", "password": "sim-mqtt-password"}


def _web():
    return {"enabled": True}


def _admin():
    return {"password": "sim-admin-pass"}


OPTIMISER_BUDGETS = {"frozen32": 64 * KB, "mpy32": 108 * KB + MPY_MARGIN}
# han, swept 2026-11-30 over the three-day run: frozen from 36 KB at most
# (36-64 run); as .mpy 86 fails, 88 and 90 run.
# atm90e32, swept 2026-11-30 (tools/memlab.smallest_heap, then three days):
# frozen from 33 KB (29, 31, 32 fail; 33-64 run; 33 ran three days); as .mpy
# 77 and 79 fail, 80 runs (three days too): 80 + MPY_MARGIN.
ATM90E32_BUDGETS = {"frozen32": 64 * KB, "mpy32": 80 * KB + MPY_MARGIN}
HAN_BUDGETS = {"frozen32": 64 * KB, "mpy32": 88 * KB + MPY_MARGIN}
PROFILES = (
    Profile(
        "core",
        "guard + P1 meter + 2 V2C Trydan wallboxes",
        chargers=2,
        # 2026-12-01 (lead): 81 KB at the smallest on main after the session's
        # merges (80 failed at boot), so 81 + 4; it was 78. coretier's cuts
        # ran it in 80 (three days) until main's guard raise take-back was
        # merged: 81 again on main and on the branch (80 fails on both).
        # mpycore's cuts: 80 ran four three-day runs (see MPY_MARGIN).
        budgets={"frozen32": 64 * KB, "mpy32": 80 * KB + MPY_MARGIN},
    ),
    # What a real board runs: the same plus the Wi-Fi link task and an SNTP
    # sync (to a silent local peer: no answer, retried; the module is loaded
    # for each try). On the unix port the link reports the host's network.
    Profile(
        "wifi",
        "core + Wi-Fi link + SNTP clock",
        chargers=2,
        budgets={"frozen32": 64 * KB, "mpy32": 85 * KB + MPY_MARGIN},
        config={"wifi": _wifi()},
    ),
    Profile(
        "optimiser",
        "wifi + the optimiser: both wallboxes in eco, shared distribution, capacity tariff 9 kW",
        chargers=2,
        budgets=OPTIMISER_BUDGETS,
        # The sim's chargers follow site.mode (their mode is "site"); Wi-Fi
        # and SNTP as in "wifi": the capacity tariff needs the clock.
        config={
            "site": {"mode": "eco", "distribution": "shared", "peak_limit_w": 9000},
            "wifi": _wifi(),
        },
    ),
    # The core profile with a Modbus kWh meter instead of the P1 port: an
    # Eastron SDM630 over RTU (the emulator on a pty line), read every second.
    Profile(
        "modbus",
        "guard + SDM630 over Modbus RTU + 2 V2C Trydan wallboxes",
        chargers=2,
        budgets={"frozen32": 64 * KB, "mpy32": 86 * KB + MPY_MARGIN},
        meter="sdm630",
    ),
    # The core profile with a LAN meter over HTTP instead of the P1 port: a
    # HomeWizard P1 meter (API v1, tools/sim/http_meter_emulator.py), polled
    # every second. Measured 2026-11-30 on the httpmeters branch: 81 KB as
    # .mpy (core 76, modbus 80 in the same runs): the driver's code takes
    # 8.8 KB of heap on import, its body buffer 2 KB.
    Profile(
        "http",
        "guard + HomeWizard P1 meter over HTTP + 2 V2C Trydan wallboxes",
        chargers=2,
        # 2026-12-01 (lead): 88 KB at the smallest (87 failed, mpytier's runs): 88 + 4.
        budgets={"frozen32": 64 * KB, "mpy32": 88 * KB + MPY_MARGIN},
        meter="homewizard",
    ),
    # The http profile on HomeWizard API v2: HTTPS with a token (meters/http_meter.py
    # homewizard_v2, net/http.py TLS) against the emulator's HTTPS server.
    # Measured only: the 32-bit ports (frozen32, mpy32) are built without ssl
    # (tools/upy32.py: MICROPY_PY_SSL=0; their source's lib/mbedtls is empty),
    # so it runs on the 64-bit port alone. Measured 2026-11-30 on the hwv2
    # branch, mpy64, one fast day, 1 KB steps: 135 KB ran, 134 KB failed (http:
    # 128 ran, 127 failed, same session): v2 costs about 7 KB there. With the
    # TLS connection kept between polls (net/http_keep.py), measured the same
    # way on the hwkeep branch: 137 ran, 136 failed (http 128 / 127, same
    # session): about 9 KB. mbedTLS's buffers are outside the GC heap on
    # that port, and on an ESP32 they come from the IDF heap:
    # docs/configuration.md (HomeWizard API v2) has the figures.
    Profile(
        "http_v2",
        "guard + HomeWizard P1 meter over HTTPS (API v2) + 2 V2C Trydan wallboxes",
        chargers=2,
        budgets={},
        meter="homewizard_v2",
        builds=("mpy64",),
    ),
    # The core profile on a Norwegian HAN port instead of the P1 port
    # (meters/han.py): List 1 and List 2 frames at 2400 baud from
    # tools/sim/han_emulator.py on the pty, the guard on two cadences
    # (core/cadence.py). Budgets: HAN_BUDGETS.
    Profile(
        "han",
        "guard + HAN port (DLMS/COSEM over HDLC) + 2 V2C Trydan wallboxes",
        chargers=2,
        budgets=HAN_BUDGETS,
        meter="han",
    ),
    # The mixed site of issue 12 (tools/sim/run.py --mixed): a Trydan, a go-e
    # and an OpenEVSE over HTTP and an Alfen Eve over Modbus TCP (net/modbus,
    # net/modbus_tcp, net/modbus_box, chargers/alfen), four boxes on one
    # breaker. Measured 2026-11-30 on the mbcharge branch, one fast day:
    # frozen32 in 64 KB (peak 61.9 KB, live 37 KB); as .mpy it ran in 110 KB
    # (live 96 KB): above the plain-ESP32 tier, measured only.
    Profile(
        "mbcharge",
        "guard + P1 + Trydan, go-e, OpenEVSE over HTTP and an Alfen over Modbus TCP",
        chargers=4,
        budgets={"frozen32": 64 * KB},  # .mpy: measured only (see above)
        mixed=True,
    ),
    # One box of every family the firmware commands itself (tools/sim/run.py --every-family: Trydan over
    # HTTP and Modbus TCP, go-e, Alfen, ABB, a generic Modbus box, a Keba over UDP, a Shelly relay):
    # eight drivers, the most a configuration holds. Measured only (docs/chargers.md gives the figures).
    Profile(
        "families",
        "guard + P1 + one box of every family: 3 HTTP, 4 Modbus TCP, 1 UDP (Keba)",
        chargers=8,
        budgets={},
        every_family=True,
    ),
    # MQTT (net/mqtt.py and umqtt.simple) connected to a real broker, with
    # Home Assistant (net/hass.py): frozen in 64 KB; as .mpy it does not fit
    # a plain ESP32 (148 KB, see above): its .mpy budget only catches growth.
    Profile(
        "mqtt",
        "wifi + the MQTT link to a broker on loopback",
        chargers=2,
        # hassmem (issue 6): energylog's record code loaded per use, the first HA
        # states one in flight: over three fast days 144 KB ran 3 of 3, 142 ran
        # 3 of 6 (a state payload's copy mid-run), 140 failed. Frozen: 52 ran 4 of 4.
        # hadocs (issue 6, 2026-12-01): Home Assistant's documents sent from the
        # link's packet buffer (MqttLink.send_in_place, no payload copies): frozen
        # 50 ran 5 of 5 (before, the same session: 50 failed 2 of 2 in the MQTT
        # task's 456-byte payload copy), 48 failed 2 of 2 at start-up in a
        # charger's write. The .mpy figure was not measured again (net/mqtt.mpy
        # +435 B, net/hass.mpy +318 B of code).
        budgets={"frozen32": 64 * KB, "mpy32": 144 * KB + MPY_MARGIN},
        config={
            "wifi": _wifi(),
            "mqtt": _mqtt(),
        },
        broker=True,
    ),
    # The core profile with a meter fed over MQTT instead of the P1 port
    # (meters/mqtt_meter.py and its own net/mqtt.py link, listen-only): per-phase
    # currents and the net power published by tools/sim/mqtt_meter_emulator.py
    # to a real broker, the MQTT interface off. Measured 2026-11-30 on the meters
    # branch: frozen it runs in 41 KB (budget 64 like every profile); as .mpy from
    # 90 KB (core 77): over the plain-ESP32 .mpy tier, measured only.
    Profile(
        "mqtt_meter",
        "guard + a meter fed over MQTT (broker on loopback) + 2 V2C Trydan wallboxes",
        chargers=2,
        budgets={"frozen32": 64 * KB},
        meter="mqtt",
        broker=True,
    ),
    # The core profile with CT clamps instead of the P1 port (meters/ct_meter.py,
    # core/ct.py, the platform's ADC module): three clamps sampled in bursts of
    # one 50 Hz cycle, a reading every second, from the site's currents through
    # the unix port's ADC fake (tools/sim/run.py --meter ct). The fake reads a
    # file per burst (its buffers are the fake's, not the board's ADC's).
    Profile(
        "ct",
        "guard + 3 CT clamps on the ADC + 2 V2C Trydan wallboxes",
        chargers=2,
        budgets={"frozen32": 64 * KB},
        meter="ct",
    ),
    # The core profile with an ATM90E32 metering IC on SPI instead of the P1
    # port (meters/atm90e32.py, the platform's SPI module): configured at
    # boot, read every 500 ms, from tools/sim/atm90e32_emulator.py through the
    # unix port's SPI fake (tools/sim/run.py --meter atm90e32); the day's
    # pulled cable is a chip answering FFFFH. Budgets: ATM90E32_BUDGETS.
    Profile(
        "atm90e32",
        "guard + an ATM90E32 metering IC on SPI + 2 V2C Trydan wallboxes",
        chargers=2,
        budgets=ATM90E32_BUDGETS,
        meter="atm90e32",
    ),
    # The web interface (net/web.py on microdot) serving the status page and
    # the REST API to a client that polls /api/status, loads the page, makes
    # a change and sends refused ones (tools/memlab.WebClient).
    Profile(
        "web",
        "wifi + the web interface: status page and REST API, polled by a client",
        chargers=2,
        budgets={"frozen32": 64 * KB},  # .mpy: measured only (docs/api.md gives the figure)
        config={
            "wifi": _wifi(),
            "web": _web(),
            "admin": _admin(),
        },
        web=True,
    ),
    # Every interface the project has, switched on at once: the optimiser,
    # MQTT with Home Assistant to a real broker, and the web interface
    # polled by a client. Issue 6 asks for 64 KB frozen; it does NOT fit:
    # 59.6 KB live (imports of the frozen modules alone take 28 KB: module
    # dicts, function and class objects), measured 2026-11-30 in 1 KB steps
    # over three fast days: 72 KB failed, 73-82 KB ran. The budget is that
    # smallest + 4 KB, so growth is caught; a plain ESP32's ~110 KB heap
    # still holds it (docs/firmware.md). After the session's later merges
    # (OCPP status in the site state and Home Assistant, the setup pages'
    # context, the HAN and CT meters) the live heap is 64-66 KB and 77 KB
    # failed one three-day run in three (a 257-byte web answer piece found no
    # hole at a 76.8 KB peak); 79 and 81 KB ran twice each: budget 79 + 4.
    # Lowered 2026-11-30 (memfrozen, issue 6) after its live objects were cut
    # (the portal made only once the Wi-Fi is lost, web routes as a constant
    # table, Home Assistant's JSON in the MQTT link's packet buffer): 58.8 KB
    # live once started (66.6 before), 49.8 KB after imports (53.8); over
    # three fast days 74 KB ran 3 of 3, 76 and 78 every time, 72 ran 1 of 3
    # and 68-70 failed: each failure is at start-up (first 3-8 s: MQTT
    # discovery, the first web requests and the SNTP try at once, about
    # 4.5 KB live above the steady figure). Budget 74 + 4.
    # Lowered again 2026-11-30 (frozen64, issue 6): the start-up peak cut
    # (Home Assistant's announcement row by row, at the link's pace with one
    # payload in flight; the first SNTP try after it; JSON answers written in
    # the web's page buffer; the P1 CRC table a constant): 57.2 KB live,
    # 48.3 KB after imports; over three fast days 72 KB ran 3 of 3 (a fourth
    # run that shared its folder with another run does not count), 70 ran 3
    # of 4 and 68 2 of 5, each failure at start-up (a Home Assistant state
    # payload or a web command found no hole). Budget 72 + 4.
    # Lowered again 2026-11-30 (hassmem, issue 6): the first Home Assistant
    # states after the announcement one in flight; over three fast days 70 KB
    # ran 7 of 7, 68 1 of 3, failing mid-run now (a state payload's copy in the
    # MQTT task), no longer at start-up. Budget 70 + 4.
    # 2026-12-01 (ocppevery, issue 6): the profile had no OCPP central system, so it
    # was not every interface; now it has ocpp_status's two OCPP boxes too. Measured
    # (memlab.run(p, "frozen32", heap, days=3)): 100 KB ran (79.2 KB live, 57.3 KB
    # after imports), 96 ran 1 of 2, 94, 90 and 86 failed at start-up ("ocpp: out of
    # memory for a connection": no hole for a box's 4 KB message buffer). Budget 100 + 4.
    # Lowered 2026-12-01 (ocppevery): the OCPP connections share one message buffer
    # (websocket.MessageBuffer, allocated with the central system at start, not one
    # per connection at connect): 75.5 KB live (79.2), 61.7 after imports (the 4 KB
    # buffer now among them); three fast days: 92 KB ran 2 of 2, 90 ran 3 of 3, 88
    # failed 2 of 2 at start-up (the MQTT task: a 536- / 636-byte block), 86 failed
    # (an OCPP box's set-up met MemoryError). Budget 90 + 4.
    # Raised to 90 + 8 (lead, 2026-12-01): at 94 KB one run in 12 failed
    # (beside another run on the 2-core machine; its cause not recorded), so
    # a 94 KB gate would fail CI about one time in twelve: a flaky test. The
    # growth check still catches a leak; the 64 KB target stays unmet.
    # hadocs (2026-12-01): with Home Assistant's documents sent in place (no
    # payload copies) 92 KB ran 3 of 3, 90 ran 3 of 4, 88 failed, each failure
    # at start-up ("ocpp: out of memory for a connection"; main at 1f70c92 the
    # same session: 92 ran, 90 failed 3 of 3, 88 failed): not lower, the budget stays.
    # ocppheap (2026-12-01): what failed at 88-90 KB was OCPP's start-up (each box's
    # first connection's 1 KB head buffer; then a set-up call's joined and encoded
    # message). The head now comes into the shared message buffer, calls and answers
    # go out as their parts: 90 KB ran 5 of 5 (main at 5a8494e the same session: 2 of
    # 4, failing at start-up in OCPP), 88 ran 7 of 11 (main 0 of 3), failing at start-up
    # in the web client's first requests, no longer in OCPP;
    # 61,840-61,872 B after imports (61,952-61,984), live 75.4-75.8 KB at its lows. The
    # smallest heap that ran every time is still 90 KB: the budget stays 90 + 8.
    # Then (webstart, the same day) a request is read without a copy per line or a
    # new 512-byte block per socket read, and a change is checked without a copy of
    # every setting: 88 ran 5 of 5 and 3 of 3 on the merged main, 86 ran 6 of 7 and
    # 2 of 2 (the failure: an OCPP box's first command at start-up), 84 failed 2 of 2.
    # The budget is 88 + 8.
    Profile(
        "everything",
        "wifi + optimiser + MQTT/Home Assistant + web interface + OCPP central system with 2 OCPP boxes, all at once",
        chargers=2,
        budgets={"frozen32": 88 * KB + 2 * MPY_MARGIN},  # .mpy: a PSRAM board (docs/firmware.md)
        config={
            "site": {"mode": "eco", "distribution": "shared", "peak_limit_w": 9000},
            "wifi": _wifi(),
            "mqtt": _mqtt(),
            "web": _web(),
            "admin": _admin(),
        },
        broker=True,
        web=True,
        ocpp=[{"id": "BOX1", "unit": "A"}, {"id": "BOX2", "unit": "W"}],
    ),
    # The OCPP central system (net/websocket.py, net/ocpp.py, chargers/ocpp.py) with two OCPP boxes
    # (mobilityhouse's ocpp package) connected, each sending MeterValues every 10 s and renewed
    # profiles every 20 s. Measured 2026-11-30 (2 KB steps, one fast day): frozen it runs from 54 KB
    # (38.8 KB live); as .mpy from 106 KB (99.6 KB live: the three modules' code, 29 KB, stays on
    # the heap), beyond the plain-ESP32 .mpy tier: measured only there.
    Profile(
        "ocpp",
        "guard + P1 meter + the OCPP central system with 2 OCPP boxes connected",
        chargers=0,
        budgets={"frozen32": 64 * KB},
        ocpp=[{"id": "BOX1", "unit": "A"}, {"id": "BOX2", "unit": "W"}],
    ),
)
# The setup portal (issue 9): the web profile's pages and API with the
# access point open and its DNS server answering (net/portal.py,
# net/dns_server.py). The station has no network (CHARGEGUARD_NETWORK_DOWN),
# which is what opens it: the chargers are then unavailable and not polled.
PROFILES = PROFILES + (
    Profile(
        "portal",
        "web + the setup access point open: DNS server and captive redirects, asked by a phone every scene",
        chargers=2,
        budgets={},  # measured only, like web's .mpy figure (docs/firmware.md gives the figures)
        config={
            "wifi": {"ssid": "", "ntp_server": ""},
            "web": _web(),
            "admin": _admin(),
        },
        web=True,
        portal=True,
    ),
    # The setup wizard and the settings page on top of "web" (net/webadmin.py,
    # loaded per request): each scene the client also reads the wizard's
    # state and options, checks the running meter and reads a wallbox once
    # (the charger's driver and config.py's validator loaded and unloaded
    # per request). Measured only (no budget): 70 and 74 KB ran three days,
    # 64-68 and 72 KB did not (2026-11-30, frozen32; docs/api.md gives the
    # figures); the real first boot is the "firstboot" profile below.
    Profile(
        "setup",
        "web + the setup wizard's checks every scene (meter reading, a wallbox read, options)",
        chargers=2,
        budgets={},
        config={
            "wifi": _wifi(),
            "web": _web(),
            "admin": _admin(),
        },
        web="setup",
    ),
    # The real first boot (issue 9): no configuration at all, so no charger
    # guarded; the access point, its DNS server and the setup pages open at
    # boot, and each scene a phone asks the DNS server and the captive check
    # and goes through the wizard's requests (state, options, a scan, the
    # running meter's reading, the LAN's Trydan read once). Frozen: 64 KB ran
    # the three days in 4 of 5 runs (3 of 3 before main's configuration
    # split was merged, then one pass and one failure in the budget test);
    # 62 KB once ran and once lost one wallbox read; 56-60 KB failed
    # (2026-11-30). Not reliably inside 64 KB, so measured only: a budget
    # that fails one run in five would be a flaky test.
    Profile(
        "firstboot",
        "first boot: no configuration, no charger; access point + DNS + setup pages, the wizard's checks every scene",
        chargers=1,
        budgets={},
        web="firstboot",
        portal=True,
        first_boot=True,
    ),
    # The OCPP boxes' status where it is shown (issue 10, item 5): the "ocpp" profile with the web
    # interface polled by a client (GET /api/status carries each box's link) and MQTT with Home
    # Assistant (the OCPP entities and their timestamps), Wi-Fi and SNTP as in "wifi". Measured only:
    # the figures are in docs/ocpp.md.
    Profile(
        "ocpp_status",
        "ocpp + the web interface polled by a client + MQTT/Home Assistant",
        chargers=0,
        budgets={},
        ocpp=[{"id": "BOX1", "unit": "A"}, {"id": "BOX2", "unit": "W"}],
        config={
            "wifi": _wifi(),
            "mqtt": _mqtt(),
            "web": _web(),
            "admin": _admin(),
        },
        broker=True,
        web=True,
    ),
)
BUILDS = ("mpy32", "frozen32", "mpy64")


class Unavailable(Exception):
    """This build cannot run here (args[0]: why)."""


def interpreter(build):
    """Path of the MicroPython binary for build; Unavailable when it cannot be built here."""
    if build == "mpy64":
        return micropython_binary()
    try:
        return upy32.ensure("frozen" if build == "frozen32" else "plain")
    except upy32.Unavailable as why:
        raise Unavailable(why.args[0])


class Run:
    """What one run of the firmware showed."""

    def __init__(self, profile, build, heap, lines, alive, exit_code):
        self.profile = profile
        self.build = build
        self.heap = heap
        self.lines = lines
        self.alive = alive
        self.exit_code = exit_code
        self.base = self._figure("base")
        self.after_imports = self._figure("imports")
        peaks = self._figures("peak")
        self.peak = max(peaks) if peaks else None
        # The firmware's live heap after its latest collection (every 10 s),
        # as its status line shows it once a second.
        self.live_each_second = []
        for line in lines:
            if line.startswith("grid") and "heap " in line:
                self.live_each_second.append(int(line.rsplit("heap ", 1)[1].split()[0]))
        self.live = []  # the same, one entry per change
        for value in self.live_each_second:
            if not self.live or self.live[-1] != value:
                self.live.append(value)
        # The least heap in use each second (memprobe's "peak N M F") from
        # the firmware's first collection on (before it, the start-up is
        # still making things): the live heap after whichever collection
        # came that second, with whatever a task had in flight at that
        # moment. Many more samples than the firmware's own collections:
        # their low points are the live heap with nothing in flight, the
        # figure growth is judged on.
        self.floor_each_second = []
        warm = False
        for line in lines:
            if line.startswith("grid") and "heap " in line:
                warm = True
            elif warm and line.startswith("memprobe: peak "):
                parts = line.split()
                if len(parts) > 4:
                    self.floor_each_second.append(int(parts[4]))
        # A MemoryError anywhere, also where a driver names it in its own words.
        self.memory_errors = [line for line in lines if "MemoryError" in line or "out of memory" in line]
        self.commands = sum(1 for line in lines if line.startswith("grid"))
        # Started with the profile's configuration, not a fallback: a config
        # that failed to parse for want of heap would run with no chargers.
        # The config lines a healthy run prints: the last good copy kept, and the
        # configuration's warnings (configwarn.py: valid but dangerous settings,
        # e.g. an OCPP box without a password), which change nothing that runs.
        count = profile.chargers + len(profile.ocpp or ())
        self.configured = ("ChargeGuard running: %d charger(s)" % count) in lines and not any(
            line.startswith("config:") and "kept as the last good" not in line
            and not line.startswith("config: warning: ") for line in lines
        )
        if getattr(profile, "first_boot", False):
            # Out of the box: the defaults (their config lines say so), no charger.
            self.configured = "ChargeGuard running: 0 charger(s)" in lines
        # With a broker, the MQTT link must have done its job too.
        self.mqtt_ok = not profile.broker or any(line.startswith("mqtt: connected") for line in lines)
        if profile.meter == "mqtt":
            # The meter fed over MQTT has no interface line: its readings are the proof.
            self.mqtt_ok = any(line.startswith("grid") and "--.-" not in line for line in lines)
        # With the web on, every request of the client was answered as it should be.
        self.web_ok = True
        self.web_failures = []
        # With OCPP boxes, each connected and was commanded (a charging profile in force); _run checks.
        self.ocpp_ok = True

    def _figures(self, key):
        values = []
        for line in self.lines:
            if line.startswith("memprobe: " + key + " "):
                values.append(int(line.split()[2]))
        return values

    def _figure(self, key):
        values = self._figures(key)
        return values[-1] if values else None

    def ok(self):
        """Ran to the end: no MemoryError, still running, its own configuration, and the guard kept reporting."""
        return (
            not self.memory_errors and self.alive and self.configured and self.commands > 0 and self.mqtt_ok and self.web_ok
            and self.ocpp_ok
        )

    def failure_site(self):
        """Where the first MemoryError was raised: 'file:line in function' or the firmware's own words."""
        if self.ok():
            return ""
        site = None
        for line in self.lines:
            stripped = line.strip()
            if stripped.startswith("File ") and ", line " in stripped:
                parts = stripped.split('"')
                where = stripped.rsplit(", in ", 1)
                site = "%s:%s in %s" % (parts[1] if len(parts) > 2 else "?", stripped.split(", line ")[1].split(",")[0], where[1] if len(where) > 1 else "?")
            elif "MemoryError" in line or "out of memory" in line:
                if site and stripped.startswith("MemoryError"):
                    return site
                # "ChargeGuard stopped: MemoryError('memory allocation failed, allocating 8194 bytes',); ..."
                if "allocating " in stripped:
                    size = stripped.split("allocating ", 1)[1].split(" bytes", 1)[0]
                    return "%s: MemoryError allocating %s bytes" % (stripped.split(":", 1)[0], size)
                return stripped[:100]
        if not self.configured:
            notes = [line for line in self.lines if line.startswith("config:")]
            return notes[0][:100] if notes else "did not start with its configuration"
        if not self.mqtt_ok:
            return "the MQTT link never connected to the broker"
        if not self.web_ok:
            return "the web interface failed: %s" % "; ".join(self.web_failures[:3])
        if not self.ocpp_ok:
            return "an OCPP box was never commanded"
        return "exit %s, no MemoryError printed" % self.exit_code

    def failure(self):
        """Where it failed, in a line or a few (the MemoryError's traceback when there is one)."""
        if self.ok():
            return ""
        for index, line in enumerate(self.lines):
            # (a driver's or the OCPP server's own words too: "charger X: out of memory")
            if "MemoryError" in line or "out of memory" in line or "startup-error" in line:
                start = max(0, index - 6)
                return "\n".join(self.lines[start : index + 8])
        return "exit %s; last lines:\n%s" % (self.exit_code, "\n".join(self.lines[-8:]))


def _merge(into, changes):
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class PortalClient:
    """What a phone that joined the setup access point does, once per scene: A and AAAA lookups of its
    connectivity-check host (answered with the device, and empty), and the check itself (a 302 to the setup
    page). failures: what did not answer as it should."""

    HOSTS = ("connectivitycheck.gstatic.com", "captive.apple.com", "www.msftconnecttest.com")

    def __init__(self, web_port, dns_port):
        self.web_port = web_port
        self.dns_port = dns_port
        self.count = 0
        self.failures = []

    def _lookup(self, name, kind):
        import dns.message
        import dns.query

        try:
            reply = dns.query.udp(dns.message.make_query(name, kind), "127.0.0.1", port=self.dns_port, timeout=5)
            addresses = [rdata.address for rrset in reply.answer for rdata in rrset]
            want = ["127.0.0.1"] if kind == "A" else []
            if addresses != want:
                self.failures.append("%s %s: %r" % (kind, name, addresses))
        except Exception as error:
            self.failures.append("%s %s: %r" % (kind, name, error))

    def scene(self):
        import http.client

        self.count += 1
        host = self.HOSTS[self.count % len(self.HOSTS)]
        self._lookup(host, "A")
        self._lookup(host, "AAAA")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=10)
            connection.request("GET", "/generate_204", headers={"Host": host})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 302:
                self.failures.append("GET /generate_204: %d, not 302" % response.status)
        except (OSError, http.client.HTTPException) as error:  # as WebClient._ask
            self.failures.append("GET /generate_204: %r" % (error,))


def _launch(profile, build, heap, mode=None, broker=None, env=None):
    binary = interpreter(build)

    def launch(root):
        if profile.first_boot:
            # Out of the box: no configuration at all.
            os.remove(os.path.join(os.path.dirname(root), "storage", "config.json"))
        elif profile.config:
            # The simulator wrote its configuration beside root; the profile's sections go on top.
            path = os.path.join(os.path.dirname(root), "storage", "config.json")
            with open(path) as handle:
                config = json.load(handle)
            _merge(config, profile.config)
            if broker is not None:
                config["mqtt"]["port"] = broker.port
            with open(path, "w") as handle:
                json.dump(config, handle, indent=1)
        if build == "frozen32":
            # The filesystem would shadow the frozen package and the frozen
            # device libraries ('' is first on sys.path).
            for name in ("chargeguard", "umqtt", "microdot"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        # Compiled like the firmware (tools/build.py): source would be
        # compiled on the heap, and a long source name would be interned.
        for name in ("memprobe", "memprobe_parts", "memprobe_census"):
            subprocess.run(
                [mpy_cross_binary(), "-O3", "-s", name + ".mpy", "-o", os.path.join(root, name + ".mpy"),
                 os.path.join(HERE, name + ".py")],
                check=True,
            )
        command = [binary, "-X", "heapsize=%d" % heap, "-m", "memprobe"]
        if mode:
            command = ["env", "CHARGEGUARD_PROBE=" + mode] + command
        if env:
            command = ["env"] + ["%s=%s" % item for item in sorted(env.items())] + command
        return command

    return launch


def _wait_started(sim, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sim.firmware.alive():
        if any(line.startswith("ChargeGuard running") for line in sim.lines):
            return True
        time.sleep(0.02)
    return False


def _out_of_memory(lines):
    return any("MemoryError" in line or "out of memory" in line for line in lines)


def play_day(sim, days=1, on_scene=None):
    """The scripted day at the fast pace (about 16 s a day)."""
    for day in range(days):
        for scene in DAY:
            if not sim.firmware.alive() or _out_of_memory(sim.lines):
                return  # the run has failed: no need to play it to the end
            if on_scene:
                on_scene(day, scene)
            sim.site.set_house(scene.amps)
            sim.meter_silent = scene.meter_silent
            # Silent scenes last past meter_timeout_s, so the guard goes to failsafe.
            count = (FAST_GUARD["meter_timeout_s"] + 1) * 4 if scene.meter_silent else TELEGRAMS_PER_SCENE
            for _ in range(count):
                sim.send_telegram()
                time.sleep(TELEGRAM_GAP_S)
        sim.meter_silent = False


def run(profile, build, heap, days=1, min_seconds=0.0, on_scene=None, mode=None, growth=False):
    """Run the firmware for `days` fast days (and at least min_seconds) in `heap` bytes; a Run.

    mode: tools/memprobe.py's CHARGEGUARD_PROBE, e.g. "breakdown" (the
    start-up's parts, Run.parts()). growth: a live heap figure every second
    (Run.floor_each_second), the probe collecting in a second that had no
    collection (CHARGEGUARD_PROBE_FLOOR); it lowers Run.peak in a roomy
    heap, so make bench's runs leave it off.
    """
    broker = Broker().start() if profile.broker else None
    try:
        return _run(profile, build, heap, days, min_seconds, on_scene, broker, mode, growth)
    finally:
        if broker is not None:
            broker.stop()


class WebClient:
    """What a phone with the status page open does, once per scene: GET /api/status (the page polls it), the page
    itself every few scenes, a mode change with the password, and a refused (cross-site) change. failures: what
    did not answer as it should."""

    def __init__(self, port, password, setup=False):
        self.port = port
        self.password = password
        self.setup = setup  # also the setup wizard's requests (the "setup" profile)
        self.box = None  # the first charger's entry, for the wizard's box check
        self.count = 0
        self.failures = []

    def _ask(self, method, path, body=None, headers=None, want=200, timeout_s=10):
        import http.client

        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            connection.close()
            if response.status != want and response.status not in (want if type(want) is tuple else ()):
                self.failures.append("%s %s: %d, not %s %r" % (method, path, response.status, want, data[:200]))
            return data
        except (OSError, http.client.HTTPException) as error:
            # HTTPException: an answer cut short (IncompleteRead: the firmware
            # closed mid-body, seen in make bench's search below setup's
            # smallest heap) is that heap's failure, not the harness's.
            self.failures.append("%s %s: %r" % (method, path, error))
        return b"{}"

    def _first_boot(self):
        # The wizard on a device out of the box: no password is set yet, so
        # its steps need none (and every other change is refused).
        self.count += 1
        self._ask("GET", "/api/status")
        if self.count % 4 == 1:
            self._ask("GET", "/setup")
        change = {"Content-Type": "application/json", "X-ChargeGuard": "1"}
        self._ask("GET", "/api/setup")
        self._ask("GET", "/api/setup/options", None, change)
        if self.count % 4 == 3:
            self._ask("POST", "/api/setup/scan", "{}", change)
        self._ask("POST", "/api/setup/meter", '{"meter": {"type": "p1"}, "phases": 3}', change, (200, 422), 20)
        if self.box is not None:
            self._ask("POST", "/api/setup/charger", json.dumps({"charger": self.box}), change)
        self._ask("POST", "/api/chargers/1", '{"mode": "fast"}', change, want=(403, 404, 422))

    def scene(self):
        import base64

        if self.setup == "firstboot":
            self._first_boot()
            return
        self.count += 1
        self._ask("GET", "/api/status")
        if self.count % 4 == 1:
            self._ask("GET", "/")
        change = {"Content-Type": "application/json", "X-ChargeGuard": "1",
                  "Authorization": "Basic " + base64.b64encode(("admin:" + self.password).encode()).decode()}
        mode = "fast" if self.count % 2 else "site"
        self._ask("POST", "/api/chargers/1", json.dumps({"mode": mode}), change)
        self._ask("POST", "/api/settings", '{"site.mode": "off"}', {"Content-Type": "text/plain"}, want=403)
        if self.setup:
            self._ask("GET", "/api/setup")
            if self.box is None:
                # (a refused export is a failure already noted: tried again next scene)
                data = self._ask("GET", "/api/config", None, change)
                try:
                    exported = json.loads(data)
                except ValueError:  # cut short (e.g. out of heap mid-answer): a failure of this run, not of the bench
                    self.failures.append("GET /api/config: not JSON: %r" % data[:100])
                    exported = {}
                self.box = (exported.get("chargers") or [None])[0]
            self._ask("GET", "/api/setup/options", None, change)
            # 422 while the day's pulled P1 cable leaves the meter silent (the
            # check then waits out its 11 s: webadmin.METER_TEST_MS).
            self._ask("POST", "/api/setup/meter", '{"meter": {"type": "p1"}}', change, (200, 422), 20)
            if self.box is not None:
                self._ask("POST", "/api/setup/charger", json.dumps({"charger": self.box}), change)
            if self.count % 4 == 2:
                self._ask("GET", "/settings")


def _run(profile, build, heap, days, min_seconds, on_scene, broker, mode=None, growth=False):
    client = None
    web_port = None
    if profile.web:
        web_port = free_port()
        client = WebClient(web_port, profile.config.get("admin", {}).get("password", ""), profile.web if profile.web in ("setup", "firstboot") else False)
        inner = on_scene

        def on_scene(day, scene):
            if inner:
                inner(day, scene)
            client.scene()

    env = {"CHARGEGUARD_PROBE_FLOOR": "1"} if growth else {}
    phone = None
    if profile.portal:
        import socket

        dns_port = free_port(socket.SOCK_DGRAM)
        env["CHARGEGUARD_DNS_PORT"] = str(dns_port)
        if not profile.first_boot:
            env["CHARGEGUARD_NETWORK_DOWN"] = "1"  # what opens it on a configured site
        phone = PortalClient(web_port, dns_port)
        inner_portal = on_scene

        def on_scene(day, scene):
            if inner_portal:
                inner_portal(day, scene)
            phone.scene()

    sim = Simulation(
        web_port=web_port,
        car_delay_s=0.5,
        run_name="mem-%s-%s" % (profile.name, build),
        chargers=profile.chargers,
        guard=FAST_GUARD,
        launch=_launch(profile, build, heap, mode=mode, broker=broker, env=env),
        **_site(profile, broker)
    )
    if client is not None and profile.first_boot and sim.trydans:
        # The box on the LAN the wizard reads (not in any configuration yet).
        client.box = {"name": "Trydan", "type": "v2c_trydan", "host": "127.0.0.1", "port": sim.trydans[0].port}
    try:
        if _wait_started(sim):
            if phone is not None:
                # The access point opens at the portal task's first look.
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and not any(line.startswith("portal: DNS server") for line in sim.lines):
                    time.sleep(0.02)
            started = time.monotonic()
            play_day(sim, days, on_scene)
            while sim.firmware.alive() and time.monotonic() - started < min_seconds and not _out_of_memory(sim.lines):
                sim.send_telegram()
                time.sleep(TELEGRAM_GAP_S)
            time.sleep(1.2)  # the last status and peak lines
        alive = sim.firmware.alive()
        commanded = all(box.limit_a() is not None for box in sim.boxes if hasattr(box, "limit_a"))
    finally:
        code = sim.stop()
    result = Run(profile, build, heap, list(sim.lines), alive, code)
    result.ocpp_ok = commanded
    if client is not None:
        result.web_failures = client.failures
        result.web_ok = client.count > 0 and not client.failures
    if phone is not None:
        result.web_failures = result.web_failures + phone.failures
        result.web_ok = result.web_ok and phone.count > 0 and not phone.failures
    return result


def _site(profile, broker):
    """The simulated site a profile's configuration needs (Simulation's keyword arguments): its meter, the MQTT
    meter's broker, the mixed site, OCPP boxes, one box of every family. The same for the day's runs and for
    gc_pause_us: a profile whose site is missing fails to start (the MQTT meter has no broker port)."""
    return {
        "meter": profile.meter,
        "mqtt": {"enabled": False, "host": "127.0.0.1", "port": broker.port} if profile.meter == "mqtt" else None,
        "mixed": profile.mixed,
        "ocpp": profile.ocpp,
        "every_family": profile.every_family,
    }


def smallest_heap(profile, build, low, high, step=KB, on_step=None):
    """The smallest heap (multiple of step) in [low, high] that runs one fast day; (heap, Run just below it).

    Bisection: `high` must run (it is checked first); every probe is a fresh
    run. The Run just below the result says what fails first (its traceback).
    """
    low = low // step * step
    high = -(-high // step) * step
    top = run(profile, build, high)
    if on_step:
        on_step(high, top)
    if not top.ok():
        return None, top
    below = None
    while high - low > step:
        middle = (low + high) // 2 // step * step
        attempt = run(profile, build, middle)
        if on_step:
            on_step(middle, attempt)
        if attempt.ok():
            high = middle
        else:
            low = middle
            below = attempt
    return high, below


def gc_pause_us(profile, build, heap=2048 * KB):
    """(longest gc.collect() in us, bytes live, longest with the firmware alone) in a heap of `heap` bytes.

    The first two with the heap filled by copies of the firmware's App (the
    worst case of a big heap); the last with only the firmware's own objects.
    """
    broker = None
    sim = None
    try:
        # Inside the try: a site that fails to start must not leave its broker running.
        broker = Broker().start() if profile.broker else None
        sim = Simulation(
            run_name="mem-gc-%s-%s" % (profile.name, build),
            chargers=profile.chargers,
            guard=FAST_GUARD,
            launch=_launch(profile, build, heap, mode="gcpause", broker=broker),
            **_site(profile, broker)
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sim.firmware.alive():
            if any(line.startswith("memprobe: gcpause") for line in sim.lines):
                break
            time.sleep(0.05)
    finally:
        if sim is not None:
            sim.stop()
        if broker is not None:
            broker.stop()
    for line in sim.lines:
        if line.startswith("memprobe: gcpause"):
            parts = line.split()
            return int(parts[2]), int(parts[3]), int(parts[5])
    raise RuntimeError("gcpause: no figure; the firmware said:\n" + "\n".join(sim.lines[-10:]))
