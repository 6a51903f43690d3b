"""A real Home Assistant pointed at the simulated firmware's MQTT discovery (make ha-check).

    python tools/ha_check.py [--keep]

What runs, all on 127.0.0.1:
- Home Assistant core HA_VERSION from PyPI in its own virtualenv, build/ha-venv
  (created on first use and kept: about 0.6 GB; its requirements pinned by the
  release's own package_constraints.txt, the integrations it always sets up and
  MQTT's), started headless with a fresh configuration directory
  (build/ha-check/config), onboarded through its REST API (a user, a token), and
  the MQTT integration added as a config entry through its config flow;
- a real broker (tools/sim/broker.py: mosquitto, else amqtt);
- the simulated site with the unmodified firmware (tools/sim/run.py) with MQTT on:
  three Trydans, the third one a box that never answers (its status is unknown), and
  an OCPP 1.6J box (tools/sim/ocpp_emulator.py) with its own entities.

What is checked, from Home Assistant itself (its entity and device registries over
the websocket API, its states over REST, its log):
1. every entity the discovery announces (net/hass_entities.py's tables) exists with the
   unique_id, device, device class, state class, unit, entity category, options
   and number range the tables give, and nothing else under MQTT;
2. the devices: the controller, one per charger with via_device the controller,
   model and firmware version;
3. states agree with the firmware's own state JSON: known where it has a value,
   unknown or unavailable (never the text "None") where it has none;
4. commands sent through Home Assistant (number.set_value, switch.turn_on/off,
   select.select_option) reach the firmware (and the Trydan emulator) and the new
   state comes back; a refused one snaps back; a capacity limit set there loads the
   optimiser, whose entities appear;
5. with the configuration cut to one charger and the firmware restarted (its
   hass.json kept), Home Assistant drops the removed chargers' entities and devices;
   restarted, Home Assistant has the same entities and their states again;
6. home-assistant.log has no warning or error about our payloads (the MQTT
   integration's loggers, templates, our topics and ids).

Every wait is for its condition with a deadline (below); the report says what
passed and failed; the exit status is 0 only when everything passed. --keep
leaves build/ha-check (configuration, logs) for a look.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (os.path.join(HERE, "sim"), os.path.join(HERE, "shims"), os.path.join(ROOT, "firmware")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from broker import Broker, Watcher  # noqa: E402
from ports import free_port  # noqa: E402
from chargeguard import VERSION  # noqa: E402
from chargeguard.net import hass, hass_entities  # noqa: E402
from run import Simulation, micropython_binary  # noqa: E402

# The newest Home Assistant release that runs on Python 3.11 (2024.4 needs 3.12):
# the MQTT discovery of early 2024, one config message per entity, as the many
# installations that are not updated often run it.
HA_VERSION = "2024.3.3"
HA_VENV = os.path.join(ROOT, "build", "ha-venv")
RUN_DIR = os.path.join(ROOT, "build", "ha-check")
SIM_RUN = "ha-check-sim"  # build/<this>: the firmware's filesystem (tools/sim/run.py)
# The integrations this Home Assistant sets up without being asked
# (homeassistant/bootstrap.py's defaults and what they depend on), MQTT, and the
# recorder that analytics imports: their requirements (from each manifest.json of
# the release) go into the venv, so it never installs anything while running
# (--skip-pip).
HA_DOMAINS = (
    "analytics", "api", "application_credentials", "auth", "automation", "backup", "blueprint", "config",
    "counter", "device_automation", "diagnostics", "file_upload", "frontend", "hardware", "http", "image_upload",
    "input_boolean", "input_button", "input_datetime", "input_number", "input_select", "input_text", "logger",
    "lovelace", "mqtt", "network", "onboarding", "person", "recorder", "repairs", "scene", "schedule", "script",
    "search", "system_health", "system_log", "tag", "timer", "trace", "websocket_api", "zone",
)
# hass-nabucasa's acme needs josepy 1.x (2.x dropped ComparableX509); the release's constraints leave it open.
HA_EXTRA = ("josepy<2",)

# Deadlines (seconds). Home Assistant starts in ~2 s here; a busy 2-core CI machine
# gets room, but one that does not answer by then is broken.
PIP_S = 900.0
HA_START_S = 180.0
HA_CALL_S = 30.0  # one REST or websocket call
# The firmware: boot (as the system tests: BOOT_S) plus the MQTT connect deadline.
BOOT_S = 30.0
CONNECT_S = 10.0
# All discovery messages (two in flight per tick of net/hass.py) plus the broker and Home Assistant.
DELIVERY_S = 10.0
# A state after a change: net/hass.py's rate limit and tick, the broker, Home Assistant.
STATE_S = (hass.MIN_INTERVAL_MS + hass.TICK_MS) / 1000 + DELIVERY_S
# The Trydan emulator applies a setting at the driver's next write (its poll, a few seconds).
BOX_S = 15.0
CHARGERS = 3  # Trydans; the third is off from the start
# An OCPP 1.6J box beside them (tools/sim/ocpp_emulator.py): its own entities, the timestamps among them.
OCPP_BOX = {"id": "SIMBOX", "name": "Wallbox", "unit": "A"}
# Three Trydans and the OCPP box with MQTT and Home Assistant on the 64-bit unix port (run.py's OCPP_EXTRA_HEAP_K
# for the box; the device's budgets are tools/memlab.py's).
HEAP = "480K"
TELEGRAM_PERIOD_S = 1.0
PEAK_LIMIT_W = 20000  # a capacity limit above what the site's 25 A breaker passes: the optimiser runs, limits nothing
USER = "check"
PASSWORD = "ha-check-local-only"  # a throwaway user of a throwaway Home Assistant on loopback


def wait_for(condition, timeout_s, step_s=0.25, tick=None):
    """Poll condition() until it is truthy or timeout_s passes (tick() between polls); its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        if tick is not None:
            tick()
        time.sleep(step_s)


# -- the Home Assistant venv ------------------------------------------------------------------


def ha_python():
    return os.path.join(HA_VENV, "bin", "python")


def ensure_venv(say):
    """build/ha-venv with homeassistant==HA_VERSION and its integrations' requirements; seconds spent."""
    stamp = os.path.join(HA_VENV, ".installed-" + HA_VERSION)
    if os.path.exists(stamp):
        return 0.0
    started = time.monotonic()
    say("installing Home Assistant %s into %s (once; PyPI)" % (HA_VERSION, os.path.relpath(HA_VENV, ROOT)))
    shutil.rmtree(HA_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", HA_VENV], check=True, timeout=PIP_S)
    pip = [ha_python(), "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = os.path.join(HA_VENV, "wheel")
    subprocess.run(pip + ["download", "--no-deps", "-d", wheels, "homeassistant==" + HA_VERSION], check=True, timeout=PIP_S)
    wheel = os.path.join(wheels, [name for name in os.listdir(wheels) if name.endswith(".whl")][0])
    requirements = []
    constraints = os.path.join(HA_VENV, "package_constraints.txt")
    with zipfile.ZipFile(wheel) as archive:
        with open(constraints, "wb") as handle:
            handle.write(archive.read("homeassistant/package_constraints.txt"))
        for domain in HA_DOMAINS:
            manifest = json.loads(archive.read("homeassistant/components/%s/manifest.json" % domain))
            requirements += [item for item in manifest.get("requirements", ()) if item not in requirements]
    subprocess.run(pip + ["install", "-c", constraints, wheel] + requirements + list(HA_EXTRA), check=True, timeout=PIP_S)
    os.remove(wheel)
    with open(stamp, "w") as handle:
        handle.write(" ".join(requirements) + "\n")
    return time.monotonic() - started


# -- Home Assistant: process, REST, websocket --------------------------------------------------


class HomeAssistant:
    """Home Assistant core on 127.0.0.1:port with its own configuration directory."""

    def __init__(self, run_dir):
        self.config_dir = os.path.join(run_dir, "config")
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.token = None
        self.process = None
        os.makedirs(self.config_dir)
        with open(os.path.join(self.config_dir, "configuration.yaml"), "w") as handle:
            handle.write(
                "homeassistant:\n  name: ChargeGuard check\n  latitude: 52.1\n  longitude: 5.1\n  elevation: 0\n"
                "  unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: NL\n"
                "http:\n  server_host: 127.0.0.1\n  server_port: %d\n"
                "logger:\n  default: warning\n" % self.port
            )
        self.log_path = os.path.join(self.config_dir, "home-assistant.log")

    def start(self):
        out = open(os.path.join(os.path.dirname(self.config_dir), "ha.out"), "ab")
        self.process = subprocess.Popen(
            [ha_python(), "-m", "homeassistant", "--config", self.config_dir, "--skip-pip"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=os.setpgrp,
        )
        out.close()

        def up():
            if self.process.poll() is not None:
                raise RuntimeError("Home Assistant exited (%s): see %s" % (self.process.returncode, self.log_path))
            try:
                return self.request("GET", "/api/onboarding", auth=False) is not None
            except (OSError, ValueError):
                return False

        if not wait_for(up, HA_START_S):
            raise RuntimeError("Home Assistant does not answer on %s after %g s" % (self.base, HA_START_S))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def request(self, method, path, body=None, auth=True, form=False):
        headers = {}
        data = None
        if body is not None:
            if form:
                data = "&".join("%s=%s" % (key, urllib.request.quote(str(value), safe="")) for key, value in body.items())
                data = data.encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = "Bearer " + self.token
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=HA_CALL_S) as response:
            return json.loads(response.read() or b"null")

    def onboard(self):
        """The owner's account (the onboarding API) and an access token for it."""
        client_id = self.base + "/"
        answer = self.request("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Check", "username": USER, "password": PASSWORD, "language": "en"}, auth=False)
        token = self.request("POST", "/auth/token", {
            "grant_type": "authorization_code", "code": answer["auth_code"], "client_id": client_id}, auth=False, form=True)
        self.token = token["access_token"]

    def add_mqtt(self, broker_port):
        """The MQTT integration as a config entry (its config flow, as the UI does); returns the entry."""
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
        if flow.get("step_id") != "broker":
            raise RuntimeError("MQTT config flow: unexpected first step %r" % flow)
        result = self.request("POST", "/api/config/config_entries/flow/" + flow["flow_id"],
                              {"broker": "127.0.0.1", "port": broker_port})
        if result.get("type") != "create_entry":
            raise RuntimeError("MQTT config flow did not create the entry: %r" % result)
        return result["result"]

    def states(self):
        return {item["entity_id"]: item for item in self.request("GET", "/api/states")}

    def call(self, domain, service, data):
        return self.request("POST", "/api/services/%s/%s" % (domain, service), data)

    def registries(self):
        """(devices by id, MQTT entities by unique_id) from the websocket API."""
        from websockets.sync.client import connect

        with connect("ws://127.0.0.1:%d/api/websocket" % self.port, open_timeout=HA_CALL_S, max_size=None) as ws:
            def receive():
                return json.loads(ws.recv(timeout=HA_CALL_S))

            receive()  # auth_required
            ws.send(json.dumps({"type": "auth", "access_token": self.token}))
            if receive().get("type") != "auth_ok":
                raise RuntimeError("websocket: not authenticated")
            out = []
            for number, kind in enumerate(("config/device_registry/list", "config/entity_registry/list"), 1):
                ws.send(json.dumps({"id": number, "type": kind}))
                answer = receive()
                if not answer.get("success"):
                    raise RuntimeError("websocket %s: %r" % (kind, answer))
                out.append(answer["result"])
        devices = {device["id"]: device for device in out[0]}
        entities = {entity["unique_id"]: entity for entity in out[1] if entity["platform"] == "mqtt"}
        return devices, entities

    def log_lines(self):
        """home-assistant.log, after the one a restart renamed to .log.1."""
        lines = []
        for path in (self.log_path + ".1", self.log_path):
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    lines += handle.read().splitlines()
            except OSError:
                pass
        return lines


# -- what the firmware announces ------------------------------------------------------------


def expected_entities(slugs, can_lock, ocpp=(), optimiser=False, prefix="chargeguard"):
    """{unique_id: (row, section, node)} of every entity net/hass.py announces for these chargers (ocpp: their slugs)."""
    node = hass.slug(prefix)
    out = {}
    tables = [(hass_entities.SITE, "site"), (hass_entities.DEVICE, "device")] + ([(hass_entities.OPTIMISER, "site")] if optimiser else [])
    for table, section in tables:
        for row in hass_entities.rows(table):
            out["%s_%s" % (node, row[1])] = (row, section, node)
    for index, name in enumerate(slugs):
        charger = "%s_%s" % (node, name)
        for row in hass_entities.rows(hass_entities.CHARGER):
            if row[1] == "locked" and not can_lock[index]:
                continue
            if row[1] == "priority" and len(slugs) < 2:
                continue
            out["%s_%s" % (charger, row[1])] = (row, "charger/" + name, charger)
        if name in ocpp:
            for row in hass_entities.rows(hass_entities.OCPP):
                out["%s_%s" % (charger, row[1])] = (row, "charger/" + name, charger)
    return out


class Report:
    def __init__(self, say):
        self.say = say
        self.failed = []
        self.passed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            self.say("  ok    %s" % what)
        else:
            self.failed.append(what)
            self.say("  FAIL  %s%s" % (what, (": " + detail) if detail else ""))
        return ok


# -- the checks ------------------------------------------------------------------------------


def _json_state(watcher, section):
    message = watcher.last("chargeguard/%s/state" % section)
    return None if message is None else json.loads(message.payload)


def check_registry(ha, expected, slugs, names, models, report):
    """Entities and devices as announced; returns (devices, entities)."""
    devices, entities = ha.registries()
    missing = sorted(set(expected) - set(entities))
    extra = sorted(set(entities) - set(expected))
    report.check(not missing and not extra, "all %d announced entities exist in Home Assistant, no others" % len(expected),
                 "missing %s, extra %s" % (missing, extra))
    controller = [device for device in devices.values() if ["mqtt", "chargeguard"] in device["identifiers"]]
    report.check(len(controller) == 1, "one controller device")
    if not controller:
        return devices, entities
    controller = controller[0]
    report.check(
        (controller["name"], controller["model"], controller["manufacturer"], controller["sw_version"])
        == ("ChargeGuard", hass_entities.MODEL, hass_entities.MANUFACTURER, VERSION),
        "controller device: name, model, manufacturer, firmware version",
        repr((controller["name"], controller["model"], controller["manufacturer"], controller["sw_version"])))
    for slug, name, model in zip(slugs, names, models):
        found = [device for device in devices.values() if ["mqtt", "chargeguard_" + slug] in device["identifiers"]]
        ok = len(found) == 1 and found[0]["via_device_id"] == controller["id"] and found[0]["name"] == name \
            and found[0]["model"] == model and found[0]["sw_version"] == VERSION
        report.check(ok, "charger device %s via the controller, model %s" % (name, model), repr(found))
    wrong = []
    for unique_id, (row, section, node) in expected.items():
        entity = entities.get(unique_id)
        if entity is None:
            continue
        device = devices.get(entity["device_id"], {})
        if ["mqtt", node] not in device.get("identifiers", ()):
            wrong.append("%s: device %r" % (unique_id, device.get("name")))
        if entity["entity_category"] != row[7]:
            wrong.append("%s: entity_category %r, announced %r" % (unique_id, entity["entity_category"], row[7]))
    report.check(not wrong, "every entity on its device with its entity category", "; ".join(wrong))
    return devices, entities


def check_attributes(ha, expected, entities, report):
    """device_class, state_class, unit, options, number range as Home Assistant shows them."""
    states = ha.states()
    wrong = []
    for unique_id, (row, section, node) in expected.items():
        entity = entities.get(unique_id)
        if entity is None:
            continue
        component, obj, name, key, device_class, state_class, unit, category, extra = row
        attributes = states.get(entity["entity_id"], {}).get("attributes", {})
        shown = (attributes.get("device_class"), attributes.get("state_class"), attributes.get("unit_of_measurement"))
        if shown != (device_class, state_class, unit):
            wrong.append("%s: %r, announced %r" % (entity["entity_id"], shown, (device_class, state_class, unit)))
        if component == "select" and attributes.get("options") != list(extra):
            wrong.append("%s: options %r" % (entity["entity_id"], attributes.get("options")))
        if component == "number":
            low, high, step = extra
            high = len([1 for uid in expected if uid.endswith("_priority")]) if high is None else high
            if (attributes.get("min"), attributes.get("max"), attributes.get("step")) != (low, high, step):
                wrong.append("%s: range %r" % (entity["entity_id"], (attributes.get("min"), attributes.get("max"))))
    report.check(not wrong, "device class, state class, unit, options and ranges as announced", "; ".join(wrong))


def states_agree(ha, expected, entities, watcher):
    """[] when every entity's state agrees with the firmware's JSON (known / unknown), else what does not."""
    states = ha.states()
    sections = {}
    wrong = []
    for unique_id, (row, section, node) in expected.items():
        entity = entities.get(unique_id)
        if entity is None:
            continue
        if section not in sections:
            sections[section] = _json_state(watcher, section)
        doc = sections[section]
        state = states.get(entity["entity_id"], {}).get("state")
        if doc is None:
            wrong.append("%s: no %s state from the firmware yet" % (entity["entity_id"], section))
            continue
        value = doc.get(row[1])
        if row[0] in ("number", "select", "switch") and value is not None and not _shows(row[0], state, value):
            # A setting does not change by itself: Home Assistant must show exactly the firmware's value.
            wrong.append("%s: %r where the firmware has %r" % (entity["entity_id"], state, value))
        elif state == "None":
            wrong.append("%s: the text 'None'" % entity["entity_id"])
        elif value is None and state not in ("unknown", "unavailable"):
            wrong.append("%s: %r where the firmware has no value" % (entity["entity_id"], state))
        elif value is not None and state in ("unknown", "unavailable", None):
            wrong.append("%s: %r where the firmware has %r" % (entity["entity_id"], state, value))
    return wrong


def _shows(component, state, value):
    # Whether Home Assistant's state shows a setting's JSON value (a number as "16" or "-100.0", a switch on/off).
    if component == "switch":
        return state == ("on" if value else "off")
    if component == "number":
        try:
            return float(state) == value
        except (TypeError, ValueError):
            return False
    return state == value


def run_check(say, keep=False):
    """The whole check; returns the Report (report.failed empty: passed)."""
    report = Report(say)
    timings = {}
    started = time.monotonic()
    timings["install"] = ensure_venv(say)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    os.makedirs(RUN_DIR)
    broker = Broker(run_dir=os.path.join(RUN_DIR, "broker")).start()
    say("broker: %s on 127.0.0.1:%d" % (broker.kind, broker.port))
    ha = HomeAssistant(RUN_DIR)
    sim = None
    watcher = None
    record = os.path.join(RUN_DIR, "hass.json")
    try:
        t0 = time.monotonic()
        ha.start()
        ha.onboard()
        entry = ha.add_mqtt(broker.port)
        timings["ha_start"] = time.monotonic() - t0
        report.check(entry.get("state") == "loaded", "Home Assistant %s up, MQTT config entry loaded (%.1f s)"
                     % (HA_VERSION, timings["ha_start"]), repr(entry))
        watcher = Watcher(broker.port, topics=("chargeguard/#",))
        cfg = {"enabled": True, "host": "127.0.0.1", "port": broker.port, "keepalive_s": 10}
        names = ["Trydan", "Trydan2", "Trydan3"][:CHARGERS] + [OCPP_BOX["name"]]
        slugs = [hass.slug(name) for name in names]
        models = ["v2c_trydan"] * CHARGERS + ["ocpp"]

        t0 = time.monotonic()
        sim = _simulation(cfg, CHARGERS, dead=CHARGERS - 1, ocpp=[OCPP_BOX])
        expected = expected_entities(slugs, [True] * CHARGERS + [False], ocpp=slugs[CHARGERS:])
        tick = sim.send_telegram

        def all_there():
            return set(expected) <= set(ha.registries()[1])

        discovery_s = BOOT_S + CONNECT_S + len(expected) * hass.TICK_MS / 1000 + DELIVERY_S
        there = wait_for(all_there, discovery_s, step_s=TELEGRAM_PERIOD_S, tick=tick)
        timings["discovery"] = time.monotonic() - t0
        report.check(there, "discovery: Home Assistant created the entities (%.1f s after the firmware started)"
                     % timings["discovery"])
        devices, entities = check_registry(ha, expected, slugs, names, models, report)
        check_attributes(ha, expected, entities, report)
        wrong = wait_for(lambda: not states_agree(ha, expected, entities, watcher), STATE_S + BOOT_S,
                         step_s=TELEGRAM_PERIOD_S, tick=tick)
        report.check(wrong, "states: known where the firmware has a value (settings exactly), unknown where it has none (never 'None')",
                     "; ".join(states_agree(ha, expected, entities, watcher)[:12]))
        _check_commands(ha, sim, entities, watcher, report, tick)
        # A capacity limit set in Home Assistant loads the optimiser: its entities are announced then.
        ha.call("number", "set_value", {"entity_id": entities["chargeguard_peak_limit_w"]["entity_id"], "value": PEAK_LIMIT_W})
        expected = expected_entities(slugs, [True] * CHARGERS + [False], ocpp=slugs[CHARGERS:], optimiser=True)
        there = wait_for(all_there, STATE_S + len(expected) * hass.TICK_MS / 1000 + DELIVERY_S, step_s=TELEGRAM_PERIOD_S,
                         tick=tick)
        report.check(there, "number.set_value (capacity limit %d W): the optimiser's entities appear" % PEAK_LIMIT_W)
        devices, entities = check_registry(ha, expected, slugs, names, models, report)
        check_attributes(ha, expected, entities, report)
        wrong = wait_for(lambda: not states_agree(ha, expected, entities, watcher), STATE_S, step_s=TELEGRAM_PERIOD_S,
                         tick=tick)
        report.check(wrong, "states with the optimiser as the firmware has them",
                     "; ".join(states_agree(ha, expected, entities, watcher)[:12]))
        # Removal: the configuration cut to one charger, the firmware restarted with its record (hass.json).
        shutil.copy(os.path.join(ROOT, "build", SIM_RUN, "storage", "hass.json"), record)
        sim.stop()
        sim = _simulation(cfg, 1, record=record)
        tick = sim.send_telegram
        expected = expected_entities(slugs[:1], [True])

        def removed():
            devices, entities = ha.registries()
            gone = not any(["mqtt", "chargeguard_" + slug] in device["identifiers"] for slug in slugs[1:]
                           for device in devices.values())
            return gone and set(entities) == set(expected)

        done = wait_for(removed, discovery_s, step_s=TELEGRAM_PERIOD_S, tick=tick)
        devices, entities = ha.registries()
        report.check(done, "removed chargers (%s) and the optimiser no longer loaded: Home Assistant dropped their "
                     "entities and devices" % ", ".join(names[1:]), "left: %s" % sorted(set(entities) ^ set(expected)))
        check_registry(ha, expected, slugs[:1], names[:1], models[:1], report)
        wrong = wait_for(lambda: not states_agree(ha, expected, entities, watcher), STATE_S + BOOT_S,
                         step_s=TELEGRAM_PERIOD_S, tick=tick)
        report.check(wrong, "one charger: states as the firmware has them",
                     "; ".join(states_agree(ha, expected, entities, watcher)[:12]))
        # Home Assistant restarts: the retained discovery and its birth message (the firmware announces again
        # and publishes every state) bring the same entities back with their states.
        ha.stop()
        t0 = time.monotonic()
        ha.start()
        wrong = wait_for(lambda: not states_agree(ha, expected, entities, watcher), discovery_s, step_s=TELEGRAM_PERIOD_S,
                         tick=tick)
        report.check(wrong, "Home Assistant restarted: the entities' states are back (%.1f s)" % (time.monotonic() - t0),
                     "; ".join(states_agree(ha, expected, entities, watcher)[:12]))
        report.check(set(ha.registries()[1]) == set(expected), "after the restart: the same entities, no others")
        _check_log(ha, report)
    except Exception as error:  # a broken step is a failed check with its reason, then the cleanup
        report.check(False, "the check ran to its end", "%s: %s" % (type(error).__name__, error))
    finally:
        if watcher is not None:
            watcher.close()
        if sim is not None:
            sim.stop()
        ha.stop()
        broker.stop()
    timings["total"] = time.monotonic() - started
    report.timings = timings
    if not keep and not report.failed:
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        shutil.rmtree(os.path.join(ROOT, "build", SIM_RUN), ignore_errors=True)
    return report


def _simulation(cfg, chargers, dead=None, ocpp=None, record=None):
    """The simulated site with MQTT on: `chargers` Trydans, then the `ocpp` boxes; dead: the index of a Trydan
    whose address is a port nobody listens on (a box that never answers); record: net/hass.py's hass.json put
    in the storage before the boot."""

    def launch(root):
        storage = os.path.join(os.path.dirname(root), "storage")
        if dead is not None:
            path = os.path.join(storage, "config.json")
            with open(path) as handle:
                config = json.load(handle)
            config["chargers"][dead]["port"] = free_port()
            with open(path, "w") as handle:
                json.dump(config, handle, indent=1)
        if record is not None:
            shutil.copy(record, os.path.join(storage, "hass.json"))
        return [micropython_binary(), "-X", "heapsize=" + HEAP, "main.py"]

    return Simulation(heap=HEAP, car_delay_s=0.5, run_name=SIM_RUN, mqtt=cfg, chargers=chargers, ocpp=ocpp, launch=launch)


def _check_commands(ha, sim, entities, watcher, report, tick):
    """Commands through Home Assistant's services reach the firmware and the box; the state comes back."""

    def entity(unique_id):
        return entities["chargeguard_" + unique_id]["entity_id"]

    def charger(slug):
        return _json_state(watcher, "charger/" + slug) or {}

    def ha_state(entity_id):
        return ha.request("GET", "/api/states/" + entity_id)["state"]

    def wait(condition, timeout_s):
        # A telegram per period while waiting: the meter goes on.
        return wait_for(condition, timeout_s, step_s=TELEGRAM_PERIOD_S, tick=tick)

    trydan = sim.trydans[0]
    ha.call("number", "set_value", {"entity_id": entity("trydan_max_a"), "value": 12})
    ok = wait(lambda: charger("trydan").get("max_a") == 12 and ha_state(entity("trydan_max_a")) in ("12", "12.0"),
                  STATE_S)
    report.check(ok, "number.set_value (Trydan maximum current 12 A): the firmware has it, Home Assistant shows it",
                 "firmware %r, HA %r" % (charger("trydan").get("max_a"), ha_state(entity("trydan_max_a"))))
    ha.call("switch", "turn_on", {"entity_id": entity("trydan_locked")})
    ok = wait(lambda: trydan.setting("Locked") == 1 and ha_state(entity("trydan_locked")) == "on", STATE_S + BOX_S)
    report.check(ok, "switch.turn_on (Trydan lock): the box is locked, Home Assistant shows on")
    ha.call("switch", "turn_off", {"entity_id": entity("trydan_locked")})
    ok = wait(lambda: trydan.setting("Locked") == 0 and ha_state(entity("trydan_locked")) == "off", STATE_S + BOX_S)
    report.check(ok, "switch.turn_off (Trydan lock): the box is unlocked, Home Assistant shows off")
    ha.call("select", "select_option", {"entity_id": entity("trydan2_mode"), "option": "off"})
    ok = wait(lambda: charger("trydan2").get("mode") == "off" and ha_state(entity("trydan2_mode")) == "off"
                  and charger("trydan2").get("offered_current") == 0, STATE_S + BOX_S)
    report.check(ok, "select.select_option (Trydan2 mode off): the firmware offers it 0 A, Home Assistant shows off")
    ha.call("switch", "turn_off", {"entity_id": entity("trydan_enabled")})
    ok = wait(lambda: charger("trydan").get("enabled") is False and ha_state(entity("trydan_enabled")) == "off",
                  STATE_S)
    report.check(ok, "switch.turn_off (Trydan charging enabled): the firmware has it, Home Assistant shows off")
    ha.call("switch", "turn_on", {"entity_id": entity("trydan_enabled")})
    ok = wait(lambda: charger("trydan").get("enabled") is True and ha_state(entity("trydan_enabled")) == "on",
                  STATE_S)
    report.check(ok, "switch.turn_on (Trydan charging enabled): back on")
    # Refused by the configuration's rules (min <= max): an error on P/error, Home Assistant's control snaps back.
    errors = len(watcher.on("chargeguard/error"))
    ha.call("number", "set_value", {"entity_id": entity("trydan_min_a"), "value": 14})
    ok = wait(lambda: len(watcher.on("chargeguard/error")) > errors and ha_state(entity("trydan_min_a")) == "6",
                  STATE_S)
    report.check(ok, "a refused command (minimum 14 A above the maximum 12 A): an error published, Home Assistant back at 6")


# Home Assistant's own complaints that are not about our payloads (this bare install): shown, not failed.
_OURS = ("homeassistant.components.mqtt", "chargeguard", "trydan", "value_json", "homeassistant.helpers.template",
         "homeassistant.components.sensor", "homeassistant.components.number", "homeassistant.components.select",
         "homeassistant.components.switch", "homeassistant.components.binary_sensor")


def _check_log(ha, report):
    ours = []
    others = []
    for line in ha.log_lines():
        if " WARNING " not in line and " ERROR " not in line:
            continue
        (ours if any(word in line for word in _OURS) else others).append(line[:400])
    report.check(not ours, "home-assistant.log: no warning or error about our payloads", "\n        ".join([""] + ours[:20]))
    for line in others:
        # This bare install's own (Python 3.11 deprecation, --skip-pip, the camera platform without numpy).
        report.say("  note  not about our payloads: " + line[24:200])


def main():
    parser = argparse.ArgumentParser(description="A real Home Assistant against the simulated firmware's MQTT discovery")
    parser.add_argument("--keep", action="store_true", help="keep build/ha-check (configuration, logs) after a pass")
    args = parser.parse_args()
    report = run_check(lambda line: print(line, flush=True), keep=args.keep)
    timings = report.timings
    print("ha-check: Home Assistant %s; install %.0f s, Home Assistant start %.1f s, total %.0f s"
          % (HA_VERSION, timings.get("install", 0), timings.get("ha_start", 0), timings["total"]))
    if report.failed:
        print("ha-check: FAILED %d of %d checks (logs kept in %s):" % (len(report.failed), len(report.failed) + report.passed,
                                                                       os.path.relpath(RUN_DIR, ROOT)))
        for what in report.failed:
            print("  - " + what)
        return 1
    print("ha-check: all %d checks passed" % report.passed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
