"""Home Assistant's view of the firmware through a real broker (net/hass.py on net/mqtt.py).

The whole firmware runs on the MicroPython unix port with the simulator's
site (tools/sim/run.py); the broker is real (the `broker` fixture:
mosquitto, else amqtt) and paho-mqtt plays Home Assistant: it reads the
discovery, the state and the availability, sends commands good and bad and
its own birth message, and the broker is killed and restarted mid-run.

Every wait is for the condition asserted, with a deadline from the product's
rules (net/mqtt.py's connect deadline and backoff, net/hass.py's tick and
rate limit), never a guessed sleep.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from broker import Watcher  # noqa: E402
from chargeguard.net import hass, hass_entities as entities, mqtt  # noqa: E402
from run import MQTT_HEAP, Simulation, wait_for as wait  # noqa: E402

CONNECT_S = mqtt.CONNECT_TIMEOUT_MS / 1000
BACKOFF_MAX_S = mqtt.BACKOFF_MAX_MS / 1000
HOST_SLACK_S = 1.0  # what a loaded 2-core host may add to a wake-up (as in test_mqtt_system.py)
BOOT_S = 30.0
BROKER_S = 5.0  # bounds a broker that never delivers (no product rule)
CONNECTED_S = BOOT_S + CONNECT_S
RECONNECT_S = BACKOFF_MAX_S + CONNECT_S + HOST_SLACK_S
# All discovery messages: at most the firmware's tick per message (one in flight, hass.ANNOUNCE_TICK_MS
# apart: TICK_MS bounds it with room for a busy host), plus the broker's delivery.
# The one Trydan has no priority number (a priority among one charger: Home Assistant refuses max <= min).
ENTITIES = sum(len(list(entities.rows(table))) for table in (entities.SITE, entities.DEVICE, entities.CHARGER)) - 1
# The one Trydan also gets an empty config per OCPP entity (it is no OCPP box: nothing dead left over), and
# one for its priority.
REMOVALS = len(list(entities.rows(entities.OCPP))) + 1
DISCOVERY_S = (ENTITIES + REMOVALS) * hass.TICK_MS / 1000 + BROKER_S + HOST_SLACK_S
# A state after a change: the rate limit, the task's tick, the delivery.
STATE_S = (hass.MIN_INTERVAL_MS + hass.TICK_MS) / 1000 + mqtt.POLL_MS / 1000 + BROKER_S
TELEGRAM_PERIOD_S = 1.0
# MQTT_HEAP is the link alone; Home Assistant adds the site state, the command
# API and net/hass.py as .mpy (about 4.5 + 10 + 16 KB on the 32-bit port,
# ~1.4x that on this 64-bit port) and its buffers.
HASS_HEAP = "%dK" % (int(MQTT_HEAP[:-1]) + 48)


def configs(watcher, removals=False):
    """The config messages seen by topic; removals: the empty ones too (else only what announces an entity)."""
    out = {}
    for message in watcher.messages:
        if message.topic.startswith("homeassistant/") and message.topic.endswith("/config"):
            out[message.topic] = message.payload
    # An empty config removes an entity (the OCPP ones of a box that is no OCPP box): none announced.
    return {topic: payload for topic, payload in out.items() if payload or removals}


def state(watcher, topic):
    message = watcher.last(topic)
    return None if message is None else json.loads(message.payload)


def feed(sim, condition, timeout_s):
    """Telegrams once a period (the meter goes on) until condition() holds or timeout_s passes."""
    return wait(lambda: sim.send_telegram() is None or condition(), timeout_s, step_s=TELEGRAM_PERIOD_S)


def test_home_assistant_sees_discovery_state_and_availability_and_commands_work(broker, watcher):
    cfg = {"enabled": True, "host": "127.0.0.1", "port": broker.port, "keepalive_s": 2, "password": "sim-mqtt-secret"}
    sim = Simulation(heap=HASS_HEAP, car_delay_s=0.2, run_name="e2e-hass", mqtt=cfg)
    try:
        assert watcher.wait(lambda: watcher.last("chargeguard/status") is not None, CONNECTED_S), "\n".join(sim.lines)
        assert watcher.last("chargeguard/status").payload == b"online"
        # The whole discovery, removals (first) included, before a late client looks at what is retained.
        assert watcher.wait(lambda: len(configs(watcher, True)) == ENTITIES + REMOVALS, DISCOVERY_S), (
            len(configs(watcher, True)), ENTITIES + REMOVALS)
        assert len(configs(watcher)) == ENTITIES
        found = configs(watcher)
        unique = set()
        for topic, payload in found.items():
            doc = json.loads(payload)
            # A text sensor that can be null (status, ip) is also unavailable while it is (net/hass.py _NULLABLE_TEXT).
            topics = [doc["availability_topic"]] if "availability_topic" in doc else [a["topic"] for a in doc["availability"]]
            assert topics[0] == "chargeguard/status" and doc["unique_id"] not in unique
            unique.add(doc["unique_id"])
        trydan = json.loads(found["homeassistant/number/chargeguard_trydan/max_a/config"])
        assert trydan["device"]["via_device"] == "chargeguard" and trydan["device"]["model"] == "v2c_trydan"
        assert trydan["command_topic"] == "chargeguard/charger/trydan/max_a/set"
        # Retained, as Home Assistant needs them after its own restart: a client that comes later gets them.
        late = Watcher(broker.port, topics=("homeassistant/#",))
        try:
            assert late.wait(lambda: len(configs(late)) == ENTITIES, BROKER_S)
            assert all(m.retain for m in late.messages)
        finally:
            late.close()
        # State: the grid as the meter says, the charger as the box says.
        assert feed(sim, lambda: (state(watcher, "chargeguard/site/state") or {}).get("failsafe") is False, STATE_S + BOOT_S)
        assert feed(sim, lambda: (state(watcher, "chargeguard/charger/trydan/state") or {}).get("connected") is True,
                    STATE_S + BOOT_S)
        assert state(watcher, "chargeguard/charger/trydan/state")["max_a"] == 16
        # Energy: the energy task runs beside (lifetime as stored, 0 on a fresh storage; today with the host's clock).
        assert feed(sim, lambda: state(watcher, "chargeguard/charger/trydan/state").get("energy_today") is not None, STATE_S)
        assert type(state(watcher, "chargeguard/charger/trydan/state")["lifetime_energy"]) in (int, float)
        # A good command: applied, published back.
        watcher.publish("chargeguard/charger/trydan/max_a/set", "12")
        assert feed(sim, lambda: state(watcher, "chargeguard/charger/trydan/state")["max_a"] == 12, STATE_S)
        # Bad ones: an error each, nothing changed.
        for topic, payload in (("chargeguard/charger/trydan/max_a/set", "99"),
                               ("chargeguard/charger/nobody/max_a/set", "10"),
                               ("chargeguard/site/mode/set", "turbo")):
            errors = len(watcher.on("chargeguard/error"))
            watcher.publish(topic, payload)
            assert watcher.wait(lambda: len(watcher.on("chargeguard/error")) > errors, STATE_S)
            error = json.loads(watcher.last("chargeguard/error").payload)
            assert error["topic"] == topic and error["message"], error
        assert state(watcher, "chargeguard/charger/trydan/state")["max_a"] == 12
        # The box's lock (V2C's "lock EVSE"): the switch reaches the Trydan and its state comes back from it.
        assert state(watcher, "chargeguard/charger/trydan/state")["locked"] is False
        watcher.publish("chargeguard/charger/trydan/locked/set", "ON")
        assert feed(sim, lambda: state(watcher, "chargeguard/charger/trydan/state")["locked"] is True, STATE_S)
        assert sim.trydan.setting("Locked") == 1
        watcher.publish("chargeguard/charger/trydan/locked/set", "OFF")
        assert feed(sim, lambda: state(watcher, "chargeguard/charger/trydan/state")["locked"] is False, STATE_S)
        assert sim.trydan.setting("Locked") == 0
        # Home Assistant restarts: its birth message brings the discovery again.
        before = len(watcher.messages)
        watcher.publish("homeassistant/status", "online")
        assert watcher.wait(lambda: sum(1 for m in watcher.messages[before:] if m.topic.endswith("/config")) >= ENTITIES,
                            DISCOVERY_S)
        # The broker dies and comes back empty: the firmware reconnects, announces and publishes again.
        broker.kill()
        broker.restart()
        again = Watcher(broker.port)
        try:
            assert again.wait(lambda: again.last("chargeguard/status") is not None
                              and again.last("chargeguard/status").payload == b"online", RECONNECT_S)
            assert again.wait(lambda: len(configs(again)) == ENTITIES, DISCOVERY_S)
            assert feed(sim, lambda: state(again, "chargeguard/site/state") is not None, STATE_S)
            assert feed(sim, lambda: (state(again, "chargeguard/charger/trydan/state") or {}).get("max_a") == 12, STATE_S)
        finally:
            again.close()
        assert sim.firmware.alive()
        assert not any("sim-mqtt-secret" in line for line in sim.lines)
        assert not any(b"sim-mqtt-secret" in m.payload for m in watcher.messages)
    finally:
        sim.stop()
