"""net/hass.py: Home Assistant discovery, state and commands on a fake link (both runtimes)."""

import json

from test_commands import api_app
from test_app_optimiser import push_w

from chargeguard.net import hass, hass_entities as entities

CFG = {"topic_prefix": "chargeguard", "discovery_prefix": "homeassistant"}
SLOTS = 16

# From Home Assistant's documentation (developers.home-assistant.io entity_sensor / entity_binary_sensor):
# the classes and units this module may use.
SENSOR_UNITS = {
    "current": ("A", "mA"),
    "power": ("W", "kW"),
    "energy": ("Wh", "kWh"),
    "duration": ("s", "ms", "min", "h", "d"),
    "signal_strength": ("dBm", "dB"),
    "data_size": ("B", "kB", "KiB"),
    "enum": (None,),
    "timestamp": (None,),
    None: (None, "Wh", "W", "A"),
}
STATE_CLASSES = (None, "measurement", "total", "total_increasing")
BINARY_CLASSES = ("plug", "battery_charging", "connectivity", "problem")
CATEGORIES = (None, "diagnostic", "config")
NUMBER_CLASSES = (None, "current", "power")


class FakeLink:
    """net/mqtt.MqttLink's owner API: publishes land in `sent`, a queue drained by drain()."""

    def __init__(self):
        self.connected = True
        self.status_topic = "chargeguard/status"
        self.on_connect = None
        self.on_message = None
        self.subs = []
        self.queue = []
        self.sent = []

    def publish(self, topic, payload, retain=False):
        payload = payload.encode() if type(payload) is str else payload
        for entry in self.queue:
            if entry[0] == topic:
                entry[1] = payload
                entry[2] = retain
                return True
        if len(self.queue) == SLOTS:
            self.queue.pop(0)
        self.queue.append([topic, payload, retain])
        return True

    def room(self):
        return SLOTS - len(self.queue)

    def subscribe(self, topic):
        self.subs.append(topic)

    def drain(self):
        self.sent.extend(self.queue)
        self.queue = []


def count(table):
    return len(list(entities.rows(table)))


def make(chargers=2, doc=None, storage=True, ocpp_at=None):
    app, platform, meter, api, _ = api_app(doc, chargers, ocpp_at)
    link = FakeLink()
    bridge = hass.Hass(link, app.state, api, CFG, platform, log=lambda line: None,
                       storage=app.storage if storage else None, models=["V2C Trydan"] * chargers)
    bridge.attach()
    return app, platform, meter, api, link, bridge


def settle(bridge, link, platform, rounds=200):
    """Run steps, draining the queue, until discovery is done and the states went out."""
    for _ in range(rounds):
        bridge.step(platform.now)
        link.drain()
        if bridge.announced and bridge.discovery is None and bridge.first_states is None:
            return
    raise AssertionError("discovery did not finish")


def configs(link):
    out = {}
    for topic, payload, retain in link.sent:
        if topic.endswith("/config"):
            out[topic] = (payload, retain)
    return out


def last(link, topic):
    for entry in reversed(link.sent):
        if entry[0] == topic:
            return json.loads(entry[1])
    return None


def render(template, doc):
    # value_template is "{{ value_json.KEY }}"; Jinja shows None/True/False as Python does.
    key = template.split("value_json.")[1].split(" ")[0]
    assert key in doc, (key, sorted(doc))
    return str(doc[key])


def test_discovery_follows_the_documented_schema():
    app, platform, meter, api, link, bridge = make(ocpp_at=1)  # c1 is an OCPP box
    assert link.on_connect == bridge.announce and link.on_message == bridge.on_message
    assert "homeassistant/status" in link.subs and "chargeguard/site/+/set" in link.subs
    bridge.announce()
    settle(bridge, link, platform)
    found = configs(link)
    assert len(found) == count(entities.SITE) + count(entities.DEVICE) + 2 * count(entities.CHARGER) + 2 * count(entities.OCPP), len(found)
    ocpp_objects = [row[1] for row in entities.rows(entities.OCPP)]
    unique = []
    devices = {}
    states = {}
    for topic, (payload, retain) in found.items():
        assert retain
        parts = topic.split("/")
        assert len(parts) == 5 and parts[0] == "homeassistant" and parts[4] == "config", topic
        component, node, obj = parts[1], parts[2], parts[3]
        if obj == "locked":
            # These boxes have no lock: no dead switch, an empty config removes any old one.
            assert payload == b"" and component == "switch", (topic, payload)
            continue
        if obj in ocpp_objects and node == "chargeguard_c0":
            # c0 is no OCPP box: no dead OCPP entities, an empty config removes any old one.
            assert payload == b"", (topic, payload)
            continue
        assert component in ("sensor", "binary_sensor", "number", "select", "switch"), topic
        doc = json.loads(payload)
        assert len(payload) <= 1024
        assert doc["unique_id"] == node + "_" + obj and doc["unique_id"] not in unique
        unique.append(doc["unique_id"])
        assert availability(doc)[0] == "chargeguard/status"
        assert doc["name"] and doc["value_template"].startswith("{{ value_json.")
        device = doc["device"]
        assert device["identifiers"] == [node] and device["manufacturer"] == "ChargeGuard"
        assert device["sw_version"] == app.state.version and "configuration_url" not in device  # no web pages
        if node == "chargeguard":
            assert device["model"] == entities.MODEL and "via_device" not in device
            assert doc["state_topic"] in ("chargeguard/site/state", "chargeguard/device/state")
        else:
            assert device["via_device"] == "chargeguard" and device["model"] == "V2C Trydan"
            assert device["name"] in ("c0", "c1") and node == "chargeguard_" + device["name"]
            assert doc["state_topic"] == "chargeguard/charger/%s/state" % device["name"]
        devices[node] = device["name"]
        states.setdefault(doc["state_topic"], []).append(doc)
        settable = component in ("number", "select", "switch")
        assert ("command_topic" in doc) == settable
        if settable:
            assert doc["command_topic"] == doc["state_topic"][: -len("state")] + obj + "/set"
        cls = doc.get("device_class")
        assert doc.get("state_class") in STATE_CLASSES
        assert doc.get("entity_category") in CATEGORIES
        if component == "sensor":
            assert cls in SENSOR_UNITS, cls
            assert doc.get("unit_of_measurement") in SENSOR_UNITS[cls], (obj, doc)
            if cls == "energy":
                assert doc.get("state_class") == "total_increasing"
            if cls == "enum":
                assert doc["options"] and "unit_of_measurement" not in doc and "state_class" not in doc
            if cls == "timestamp":
                assert "unit_of_measurement" not in doc and "state_class" not in doc
        elif component == "binary_sensor":
            assert cls in BINARY_CLASSES and doc["payload_on"] == "True" and doc["payload_off"] == "False"
        elif component == "number":
            assert cls in NUMBER_CLASSES and doc["min"] < doc["max"] and doc["step"] >= 1
            assert doc["mode"] == "box"
        elif component == "select":
            assert doc["options"] and all(type(option) is str for option in doc["options"])
        elif component == "switch":
            assert doc["payload_on"] == "ON" and doc["payload_off"] == "OFF"
    assert sorted(devices.values()) == ["ChargeGuard", "c0", "c1"]
    # Every entity's key is in the JSON its state topic carries, and renders for its platform.
    for topic, docs in states.items():
        payload = last(link, topic)
        assert payload is not None, topic
        for doc in docs:
            value = render(doc["value_template"], payload)
            if "state_on" in doc:
                assert value in (doc["state_on"], doc["state_off"]), (doc["unique_id"], value)
            if "options" in doc and value != "None":
                assert value in doc["options"], (doc["unique_id"], value)


def availability(doc):
    """The availability topics of a discovery payload (availability_topic, or the availability list)."""
    if "availability_topic" in doc:
        assert "availability" not in doc
        return [doc["availability_topic"]]
    assert doc["availability_mode"] == "all"
    return [entry["topic"] for entry in doc["availability"]]


def non_numeric(doc):
    # Home Assistant's MQTT sensor expects a number when any of these is set (sensor.py, 2023.2 on).
    return doc.get("device_class") in (None, "enum", "timestamp") and "state_class" not in doc \
        and "unit_of_measurement" not in doc


def test_a_null_text_sensor_is_unavailable_never_the_text_none():
    # Home Assistant 2024.3 (tools/ha_check.py): a text/enum/timestamp sensor whose template renders "None"
    # shows the text "None" (a warning per message for a timestamp); only numeric sensors take it as unknown.
    # Every such sensor that can render "None" must go unavailable through an availability on its state topic.
    app, platform, meter, api, link, bridge = make(ocpp_at=1)  # nothing read yet: no car state, no clock
    bridge.announce()
    settle(bridge, link, platform)
    nulls = []
    for topic, (payload, retain) in configs(link).items():
        if not payload or not topic.startswith("homeassistant/sensor/"):
            continue
        doc = json.loads(payload)
        if not non_numeric(doc):
            continue
        obj = topic.split("/")[3]
        if render(doc["value_template"], last(link, doc["state_topic"])) != "None":
            continue
        nulls.append(obj)
        assert availability(doc) == ["chargeguard/status", doc["state_topic"]], (topic, doc)
        template = doc["availability"][1]["value_template"]
        assert template == "{{ 'online' if value_json.%s is not none else 'offline' }}" % obj, template
    assert "status" in nulls, nulls  # the unknown car of a box not read yet


def test_no_text_sensor_shows_a_state_home_assistant_reserves():
    # "unavailable" as a reason (the box does not answer) would show as Home Assistant's own unavailable state.
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    settle(bridge, link, platform)
    app.state.chargers[0].reason = "unavailable"
    app.state.chargers_seq += 1
    platform.now += hass.MIN_INTERVAL_MS
    bridge.step(platform.now)
    link.drain()
    state = last(link, "chargeguard/charger/c0/state")
    assert state["reason"] == "unreachable", state


def test_what_is_announced_is_recorded_before_it_is_announced():
    # A restart in the middle of an announcement (tools/ha_check.py met it: the optimiser loaded by a command,
    # the firmware restarted within the ~15 s of the re-announcement) must still remove what Home Assistant got.
    app, platform, meter, api, link, bridge = make(chargers=2)
    bridge.announce()
    bridge.step(platform.now)  # the first entities only
    link.drain()
    assert bridge.discovery is not None and configs(link)
    with open(app.storage + "/" + entities.RECORD_FILE) as handle:
        assert json.load(handle) == {"chargers": ["c0", "c1"], "optimiser": False}
    settle(bridge, link, platform)
    assert api.set({"site.peak_limit_w": 4000}) == {}  # loads the optimiser: announced again
    push_w(app, meter, platform, 1000, 0)
    platform.now += hass.MIN_INTERVAL_MS
    bridge.step(platform.now)
    link.drain()
    for _ in range(3):
        bridge.step(platform.now)
        link.drain()
    assert bridge.discovery is not None
    with open(app.storage + "/" + entities.RECORD_FILE) as handle:
        assert json.load(handle) == {"chargers": ["c0", "c1"], "optimiser": True}
    # Restarted with one charger and no optimiser: the others' and the optimiser's entities are removed.
    app2, platform2, _, api2, _ = api_app(None, 1)
    link2 = FakeLink()
    bridge2 = hass.Hass(link2, app2.state, api2, CFG, platform2, log=lambda line: None, storage=app.storage)
    bridge2.announce()
    settle(bridge2, link2, platform2)
    empty = [topic for topic, (payload, _) in configs(link2).items() if payload == b""]
    assert "homeassistant/sensor/chargeguard/quarter_average/config" in empty
    assert "homeassistant/sensor/chargeguard_c1/power/config" in empty
    # Removals first (tools/ha_check.py met it: Home Assistant deletes an entity a moment after its empty config,
    # and a state right behind it warned in the template at a key that is gone): every empty config goes out
    # before the first announced entity, and so long before the first state.
    order = [payload == b"" for topic, payload, retain in link2.sent if topic.endswith("/config")]
    assert order == sorted(order, reverse=True), order
    with open(app.storage + "/" + entities.RECORD_FILE) as handle:
        assert json.load(handle) == {"chargers": ["c0"], "optimiser": False}


def test_one_charger_has_no_priority_number():
    # Home Assistant refuses a number whose max is not above its min (mqtt/number.py: "'max' must be > 'min'"):
    # with one charger the priority (1..1) is no entity, and an empty config removes one announced before.
    app, platform, meter, api, link, bridge = make(chargers=1)
    bridge.announce()
    settle(bridge, link, platform)
    found = configs(link)
    assert found["homeassistant/number/chargeguard_c0/priority/config"] == (b"", True)
    for topic, (payload, retain) in found.items():
        if payload and topic.startswith("homeassistant/number/"):
            doc = json.loads(payload)
            assert doc["min"] < doc["max"], (topic, doc)
    # The command still works through the command API (the only value is 1).
    link.on_message("chargeguard/charger/c0/priority/set", b"1")
    assert not [entry for entry in link.queue if entry[0] == "chargeguard/error"]


def test_charger_state_and_priority_bounds():
    app, platform, meter, api, link, bridge = make(chargers=3)
    bridge.announce()
    settle(bridge, link, platform)
    prio = json.loads(configs(link)["homeassistant/number/chargeguard_c2/priority/config"][0])
    assert prio["min"] == 1 and prio["max"] == 3
    state = last(link, "chargeguard/charger/c0/state")
    assert state["mode"] == "site" and state["max_a"] == 16 and state["enabled"] is True
    assert state["status"] == "connected" and state["connected"] is True and state["charging"] is False
    assert state["offered_current"] is not None and state["last_update"] is None


def test_optimiser_entities_only_when_it_is_loaded():
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    settle(bridge, link, platform)
    assert not [topic for topic in configs(link) if "/quarter_average/" in topic]
    assert "surplus" not in last(link, "chargeguard/site/state")
    assert api.set({"site.peak_limit_w": 4000}) == {}  # loads the optimiser
    push_w(app, meter, platform, 1000, 0)
    platform.now += hass.MIN_INTERVAL_MS
    settle(bridge, link, platform)
    found = configs(link)
    assert "homeassistant/sensor/chargeguard/quarter_average/config" in found
    platform.now += hass.MIN_INTERVAL_MS
    settle(bridge, link, platform)
    site = last(link, "chargeguard/site/state")
    assert site["peak_limit"] == 4000 and site["peak_limit_w"] == 4000 and "quarter_budget" in site


def test_a_removed_charger_is_deleted_from_home_assistant():
    app, platform, meter, api, link, bridge = make(chargers=2)
    bridge.announce()
    settle(bridge, link, platform)
    # The same flash, a configuration with one charger left.
    app2, platform2, _, api2, _ = api_app(None, 1)
    link2 = FakeLink()
    bridge2 = hass.Hass(link2, app2.state, api2, CFG, platform2, log=lambda line: None, storage=app.storage)
    bridge2.announce()
    settle(bridge2, link2, platform2)
    found = configs(link2)
    # c0's box has no lock: its lock switch gets an empty config at every announcement.
    removed = [topic for topic, (payload, retain) in found.items() if payload == b"" and "/chargeguard_c1/" in topic]
    assert len(removed) == count(entities.CHARGER) + count(entities.OCPP), removed
    assert all(found[topic][1] for topic in removed)  # retained: the broker forgets its copy
    assert "homeassistant/sensor/chargeguard_c0/power/config" in found
    # Once removed, the record forgets it: the next announcement sends nothing empty.
    link2.sent = []
    bridge2.announce()
    settle(bridge2, link2, platform2)
    # c0 alone: its lock (no lock on this box) and its priority (one charger) get empty configs each time.
    assert sorted(topic for topic, (payload, _) in configs(link2).items() if payload == b"") == sorted(
        ["homeassistant/switch/chargeguard_c0/locked/config", "homeassistant/number/chargeguard_c0/priority/config"]
        + [topic.replace("/chargeguard_c1/", "/chargeguard_c0/") for topic in removed if "/locked/" not in topic
           and topic.split("/")[3] in [row[1] for row in entities.rows(entities.OCPP)]]
    )


def test_home_assistant_online_and_reconnect_announce_again():
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    settle(bridge, link, platform)
    link.sent = []
    link.on_message("homeassistant/status", b"offline")
    assert bridge.discovery is None and bridge.announced
    link.on_message("homeassistant/status", b"online")
    assert bridge.discovery is not None and not bridge.announced
    settle(bridge, link, platform)
    assert len(configs(link)) == count(entities.SITE) + count(entities.DEVICE) + 2 * (count(entities.CHARGER) + count(entities.OCPP))
    assert last(link, "chargeguard/site/state") is not None  # the states follow the discovery
    link.sent = []
    link.on_connect()
    settle(bridge, link, platform)
    assert len(configs(link)) == count(entities.SITE) + count(entities.DEVICE) + 2 * (count(entities.CHARGER) + count(entities.OCPP))


def test_settling_until_the_first_announcement_after_boot_is_done():
    # The app's clock task holds its first SNTP try while this says True
    # (App._settling): true from boot, while disconnected too, until the
    # first discovery has gone out; a later announcement does not hold it.
    app, platform, meter, api, link, bridge = make()
    assert bridge.settling()
    link.connected = False
    bridge.announce()
    bridge.step(platform.now)
    assert bridge.settling()
    link.connected = True
    bridge.step(platform.now)
    link.drain()
    assert bridge.settling() and bridge.discovery is not None
    settle(bridge, link, platform)
    assert not bridge.settling()
    link.on_message("homeassistant/status", b"online")
    assert bridge.discovery is not None and not bridge.settling()
    # The interface object the app holds (the link) answers for its Home Assistant.
    from test_mqtt import config

    link = hass.from_config(config(), platform, lambda line: None,
                            {"hostname": "garage", "site_state": app.site_state, "command_api": app.command_api})
    assert link.settling() and link.hass.settling()
    link.hass.settled = True
    assert not link.settling()


def test_the_announcement_goes_at_the_links_pace_then_the_states_at_the_tick():
    # run() looks every ANNOUNCE_TICK_MS (net/mqtt.POLL_MS, the link's own
    # poll) while it announces, so the announcement's heap is held about
    # 2 s at start-up, not 10-15 s; then every TICK_MS, as before.
    import asyncio

    from chargeguard.net import mqtt

    assert hass.ANNOUNCE_TICK_MS == mqtt.POLL_MS and hass.ANNOUNCE_TICK_MS < hass.TICK_MS
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    naps = []  # (ms asked, announcing at that moment)

    class Stop(Exception):
        pass

    class Pace:
        def ticks_ms(self):
            return platform.now

        async def sleep_ms(self, ms):
            naps.append((ms, bridge.discovery is not None or bridge.first_states is not None))
            link.drain()  # the link sent what was queued
            platform.now += ms
            if bridge.announced and len([nap for nap in naps if not nap[1]]) >= 3:
                raise Stop()

    bridge.platform = Pace()
    try:
        asyncio.run(bridge.run())
    except Stop:
        pass
    announcing = [ms for ms, busy in naps if busy]
    after = [ms for ms, busy in naps if not busy]
    assert announcing and set(announcing) == {hass.ANNOUNCE_TICK_MS}, naps
    assert set(after) == {hass.TICK_MS}, naps
    # One message in flight per look: the whole announcement and the four first states in that many looks.
    assert len(announcing) <= len(configs(link)) + 4 + 2, (len(announcing), len(configs(link)))
    for topic in ("site", "charger/c0", "charger/c1", "device"):
        assert last(link, "chargeguard/%s/state" % topic) is not None, topic


def test_the_first_states_after_an_announcement_go_one_at_a_time():
    # Queued together they were ~2 KB of copies (two chargers) right after the
    # announcement's peak: each is queued once the link sent the one before.
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    for _ in range(200):
        bridge.step(platform.now)
        if bridge.announced and bridge.discovery is None:
            break
        link.drain()
    else:
        raise AssertionError("discovery did not finish")
    order = []
    for _ in range(20):
        held = len(link.queue)
        bridge.step(platform.now)
        assert len(link.queue) <= 1, link.queue
        if held:
            assert len(link.queue) == held, "a state queued beside one not yet sent"
        order.extend(entry[0] for entry in link.queue if entry[0].endswith("/state"))
        link.drain()
        if bridge.first_states is None:
            break
    assert order == ["chargeguard/site/state", "chargeguard/charger/c0/state", "chargeguard/charger/c1/state",
                     "chargeguard/device/state"], order
    assert not bridge.settling()
    link.sent = []
    bridge.step(platform.now)  # nothing due again until the rate limits say so
    assert not link.queue, link.queue


def test_discovery_is_streamed_and_waits_while_disconnected():
    app, platform, meter, api, link, bridge = make()
    link.connected = False
    bridge.announce()
    bridge.step(platform.now)
    assert not link.queue
    link.connected = True
    bridge.step(platform.now)
    assert len(link.queue) == 1  # one config payload in flight at a time (the start-up heap)
    bridge.step(platform.now)
    assert len(link.queue) == 1  # not sent yet: nothing more queued
    link.drain()
    bridge.step(platform.now)
    assert len(link.queue) == 1


def test_the_entity_rows_are_each_tables_rows_in_order_one_at_a_time():
    # rows() walks the table's text without splitting all of it (the list
    # of every row stayed live through the announcement): the same rows,
    # in the same order, as a split at ";" gives; the last row is not lost
    # and no empty row is added.
    for table in (entities.SITE, entities.OPTIMISER, entities.DEVICE, entities.CHARGER, entities.OCPP):
        texts = table.split(";")
        got = list(entities.rows(table))
        assert got == [entities._decode(text) for text in texts]
        assert got[-1][1] == texts[-1].split(",")[1]
    assert [row[1] for row in entities.rows("s,a,A,,,,,;b,b,B,,,,,")] == ["a", "b"]
    assert [row[1] for row in entities.rows("s,only,Only,,,,,")] == ["only"]


def test_publishing_on_change_with_a_rate_limit_and_a_refresh():
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    settle(bridge, link, platform)
    link.sent = []
    push_w(app, meter, platform, 2300, 0)
    bridge.step(platform.now)
    link.drain()
    assert last(link, "chargeguard/site/state") is None  # changed, but published less than MIN_INTERVAL_MS ago
    platform.now += hass.MIN_INTERVAL_MS
    bridge.step(platform.now)
    link.drain()
    site = last(link, "chargeguard/site/state")
    assert site["power_l1"] + site["power_l2"] + site["power_l3"] == 2300 and site["failsafe"] is False
    assert site["current_l1"] == app.meter.reading.current_ma[0] / 1000
    link.sent = []
    platform.now += hass.MIN_INTERVAL_MS
    bridge.step(platform.now)
    link.drain()
    assert last(link, "chargeguard/site/state") is None  # nothing changed: nothing sent
    platform.now += hass.REFRESH_MS
    bridge.step(platform.now)
    link.drain()
    assert last(link, "chargeguard/site/state") is not None and last(link, "chargeguard/device/state") is not None
    assert last(link, "chargeguard/charger/c1/state") is not None
    app.heap_live, app.heap_free = 70000, 41000
    app.state.refresh_device(platform.now, True)
    platform.now += hass.DEVICE_INTERVAL_MS
    bridge.step(platform.now)
    link.drain()
    device = last(link, "chargeguard/device/state")
    assert device["heap_used"] == 70000 and device["heap_free"] == 41000, device


def test_a_box_with_a_lock_gets_a_lock_switch_that_asks_the_box():
    app, platform, meter, api, link, bridge = make()
    app.can_lock[1] = app.state.chargers[1].can_lock = True
    asked = []
    app.request_lock = lambda index, locked: asked.append((index, locked))
    bridge.announce()
    settle(bridge, link, platform)
    found = configs(link)
    assert found["homeassistant/switch/chargeguard_c0/locked/config"][0] == b""
    doc = json.loads(found["homeassistant/switch/chargeguard_c1/locked/config"][0])
    assert doc["command_topic"] == "chargeguard/charger/c1/locked/set" and doc["name"] == "Lock"
    assert doc["state_topic"] == "chargeguard/charger/c1/state"
    app.statuses[1].locked = False
    link.sent = []
    link.on_message("chargeguard/charger/c1/locked/set", b"ON")
    assert asked == [(1, True)] and bridge.errors == 0
    bridge.step(platform.now)
    link.drain()
    assert last(link, "chargeguard/charger/c1/state")["locked"] is False  # the box says so until it took it
    link.on_message("chargeguard/charger/c0/locked/set", b"ON")
    assert bridge.errors == 1 and asked == [(1, True)]
    link.drain()
    error = last(link, "chargeguard/error")
    assert error["message"] == "chargers.0.locked this charger's box has no lock ChargeGuard can set", error
    link.on_message("chargeguard/charger/c1/locked/set", b"LOCK")
    assert bridge.errors == 2 and asked == [(1, True)]


def test_the_devices_link_to_the_web_pages_once_the_address_is_known():
    app, platform, meter, api, link, bridge = make()
    bridge.web_port = 8080
    assert entities.configuration_url(bridge) is None  # no IP yet: no link that leads nowhere
    app.state.ip = "192.0.2.40"
    assert entities.configuration_url(bridge) == "http://192.0.2.40:8080/"
    bridge.web_port = 80
    assert entities.configuration_url(bridge) == "http://192.0.2.40/"
    bridge.announce()
    settle(bridge, link, platform)
    for topic, (payload, retain) in configs(link).items():
        if payload:
            assert json.loads(payload)["device"]["configuration_url"] == "http://192.0.2.40/", topic


def test_good_commands_change_the_setting_and_publish_it_back():
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    settle(bridge, link, platform)
    cases = (
        ("chargeguard/charger/c1/max_a/set", b"12", "chargers.1.max_a", 12),
        ("chargeguard/charger/c1/manual_a/set", b"10.0", "chargers.1.manual_a", 10),
        ("chargeguard/charger/c0/mode/set", b"manual", "chargers.0.mode", "manual"),
        ("chargeguard/charger/c0/enabled/set", b"OFF", "chargers.0.enabled", False),
        ("chargeguard/charger/c1/priority/set", b"1", "chargers.1.priority", 1),
        ("chargeguard/charger/c1/min_a/set", b"8", "chargers.1.min_a", 8),
        ("chargeguard/site/mode/set", b"manual", "site.mode", "manual"),
        ("chargeguard/site/eco/set", b"OFF", "solar.eco", False),
        ("chargeguard/site/net_power_target_w/set", b"-200", "solar.net_power_target_w", -200),
        ("chargeguard/site/peak_follow_month/set", b"ON", "site.peak_follow_month", True),
        ("chargeguard/site/distribution/set", b"shared", "site.distribution", "shared"),
        ("chargeguard/site/peak_limit_w/set", b"5000", "site.peak_limit_w", 5000),
    )
    for topic, payload, path, value in cases:
        link.sent = []
        link.on_message(topic, payload)
        assert api.values[path] == value, (topic, api.values[path])
        assert bridge.errors == 0, topic
        bridge.step(platform.now)  # at once, whatever the rate limit
        link.drain()
        section = "chargeguard/site/state" if path.startswith(("site", "solar")) else topic.rsplit("/", 2)[0] + "/state"
        state = last(link, section)
        assert state[topic.split("/")[-2]] == value, (topic, state)
    assert api.values["chargers.0.priority"] == 2  # moved by the command API
    assert app.chargers[1].max_ma == 12000 and app.chargers[0].enabled is False


def test_the_entity_tables_are_loaded_only_while_announcing_or_for_a_command():
    import sys

    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    assert "chargeguard.net.hass_entities" in sys.modules  # the announcement streams from it
    settle(bridge, link, platform)
    assert "chargeguard.net.hass_entities" not in sys.modules  # dropped once it is done
    link.on_message("chargeguard/charger/c1/max_a/set", b"12")
    assert api.values["chargers.1.max_a"] == 12 and bridge.errors == 0
    link.on_message("chargeguard/charger/c1/max_a/set", b"99")
    assert api.values["chargers.1.max_a"] == 12 and bridge.errors == 1
    assert "chargeguard.net.hass_entities" not in sys.modules  # loaded per command, dropped after
    # A command while an announcement streams leaves it loaded for the announcement.
    bridge.announce()
    link.on_message("chargeguard/charger/c1/max_a/set", b"13")
    assert api.values["chargers.1.max_a"] == 13 and "chargeguard.net.hass_entities" in sys.modules
    settle(bridge, link, platform)
    assert "chargeguard.net.hass_entities" not in sys.modules


def test_no_heap_for_the_entity_tables_refuses_a_command_and_delays_the_announcement():
    app, platform, meter, api, link, bridge = make()
    real = hass._entities

    def no_heap():
        raise MemoryError("memory allocation failed")

    hass._entities = no_heap
    try:
        bridge.announce()
        bridge.step(platform.now)
        link.drain()
        assert bridge.discovery is None and not bridge.announced and configs(link) == {}
        link.on_message("chargeguard/charger/c1/max_a/set", b"12")
        assert api.values["chargers.1.max_a"] == 16 and bridge.errors == 1
        link.drain()
        assert "not enough memory" in (last(link, "chargeguard/error") or {}).get("message", ""), link.sent
    finally:
        hass._entities = real
    settle(bridge, link, platform)  # the announcement goes out once the tables load
    assert len(configs(link)) == count(entities.SITE) + count(entities.DEVICE) + 2 * (count(entities.CHARGER) + count(entities.OCPP))


def test_bad_commands_change_nothing_and_say_why():
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    settle(bridge, link, platform)
    cases = (
        ("chargeguard/charger/c1/max_a/set", b"99", "between 6 and 32"),
        ("chargeguard/charger/c1/max_a/set", b"twelve", "whole number"),
        ("chargeguard/charger/c1/max_a/set", b"12.5", "whole number"),
        ("chargeguard/charger/c1/min_a/set", b"20", "chargers.1.max_a"),
        ("chargeguard/charger/nope/max_a/set", b"12", "no charger 'nope' (chargers: c0, c1)"),
        ("chargeguard/charger/c0/power/set", b"12", "unknown setting 'power'"),
        ("chargeguard/charger/c0/mode/set", b"turbo", "must be one of"),
        ("chargeguard/charger/c0/enabled/set", b"yes", "ON or OFF"),
        ("chargeguard/charger/c0/max_a/set", b"1" * 65, "too long"),
        ("chargeguard/charger/c0/mode/set", b"\xff\xfe", "not UTF-8"),
        ("chargeguard/site/peak_limit_w/set", b"1000", "site.peak_limit_w"),
        ("chargeguard/site/failsafe/set", b"ON", "unknown setting"),
        ("chargeguard/other/set", b"1", "unknown command topic"),
    )
    before = dict(api.values)
    for number, (topic, payload, words) in enumerate(cases):
        link.sent = []
        link.on_message(topic, payload)
        assert bridge.errors == number + 1, topic
        assert api.values == before, topic
        link.drain()
        error = last(link, "chargeguard/error")
        assert error["topic"] == topic and words in error["message"], (topic, error)
        bridge.step(platform.now)  # the state in force goes back (HA's control snaps back)
        link.drain()
        assert last(link, "chargeguard/site/state") is not None
    assert not api.pending and app.chargers[1].max_ma == 16000


class LendingLink(FakeLink):
    """A FakeLink that lends its packet buffer as net/mqtt.MqttLink.lend does: only while idle (nothing queued,
    nothing being sent: `sending`); send_in_place queues what was written there (a copy, as the broker gets it)."""

    def __init__(self):
        FakeLink.__init__(self)
        self.packet = memoryview(bytearray(1024))
        self.sending = False
        self.in_place = 0  # documents sent from the buffer

    def lend(self):
        return None if self.sending or self.queue else self.packet

    def payload_at(self, topic):
        return 5 + len(topic)

    def send_in_place(self, topic, start, end, retain=False):
        assert self.lend() is not None and start == self.payload_at(topic) and end <= len(self.packet)
        self.in_place += 1
        self.queue.append([topic.decode(), bytes(self.packet[start:end]), retain])
        return True


def test_documents_are_written_in_the_links_lent_buffer_and_wait_while_it_sends():
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    settle(bridge, link, platform)
    lender = LendingLink()
    lent = hass.Hass(lender, app.state, api, CFG, platform, log=lambda line: None, storage=None,
                     models=["V2C Trydan"] * 2)
    lent.attach()
    assert lent.out.buf is None  # no buffer of its own
    lent.announce()
    settle(lent, lender, platform)
    # The same documents, byte for byte, as with a buffer of its own; every one sent from the lent buffer.
    assert configs(lender) == configs(link)
    assert lender.in_place == len([entry for entry in lender.sent if entry[1]])
    assert last(lender, "chargeguard/site/state") == last(link, "chargeguard/site/state")
    for topic in ("chargeguard/site/state", "chargeguard/charger/c0/state", "chargeguard/charger/c1/state",
                  "chargeguard/device/state"):
        mine = [entry[1] for entry in link.sent if entry[0] == topic]
        lent_one = [entry[1] for entry in lender.sent if entry[0] == topic]
        assert mine and mine == lent_one, topic
    # While a packet is being sent from the buffer: nothing is written, a refusal waits for the next step.
    lender.sent = []
    lender.sending = True
    lender.on_message("chargeguard/charger/c1/max_a/set", b"99")
    bridge_errors = lent.errors
    lent._force = True
    lent.step(platform.now)
    lender.drain()
    assert lender.sent == [] and bridge_errors == 1
    lender.sending = False
    # Then one document per step (the link sends each before the next is written): the error, then the states.
    topics = []
    for _ in range(10):
        lent.step(platform.now)
        assert len(lender.queue) <= 1
        topics.extend(entry[0] for entry in lender.queue)
        lender.drain()
    assert topics == ["chargeguard/error", "chargeguard/site/state", "chargeguard/charger/c0/state",
                      "chargeguard/charger/c1/state", "chargeguard/device/state"], topics
    error = last(lender, "chargeguard/error")
    assert error["topic"] == "chargeguard/charger/c1/max_a/set" and "between 6 and 32" in error["message"]


def test_state_documents_due_wait_for_the_lent_buffer_and_an_idle_step_allocates_nothing():
    app, platform, meter, api, link, bridge = make()
    lender = LendingLink()
    lent = hass.Hass(lender, app.state, api, CFG, platform, log=lambda line: None, storage=None,
                     models=["V2C Trydan"] * 2)
    lent.attach()
    lent.announce()
    settle(lent, lender, platform)
    lender.sent = []
    platform.now += hass.REFRESH_MS  # every state document due at once
    lent.step(platform.now)  # the site's document is written, the others wait for the buffer
    assert [entry[0] for entry in lender.queue] == ["chargeguard/site/state"] and lent._todo
    lent.step(platform.now)  # the buffer is still busy: nothing more is written, nothing is lost
    assert len(lender.queue) == 1 and lent._todo
    for _ in range(6):
        lent.step(platform.now)
        lender.drain()
    assert [entry[0] for entry in lender.sent] == ["chargeguard/site/state", "chargeguard/charger/c0/state",
                                                   "chargeguard/charger/c1/state", "chargeguard/device/state"]
    assert not lent._todo
    idle_steps_allocate_nothing(lent, lender, platform)


def idle_steps_allocate_nothing(bridge, link, platform):
    """20 looks with nothing due: nothing queued, and (on MicroPython) no heap allocated."""
    import gc
    import sys

    micro = sys.implementation.name == "micropython"
    gc.collect()
    before = gc.mem_alloc() if micro else 0
    for _ in range(20):
        platform.now += hass.TICK_MS
        bridge.step(platform.now)
    after = gc.mem_alloc() if micro else 0
    assert not link.queue and after == before, (link.queue, after - before)


def test_slugs_and_the_json_writer():
    assert hass.slug("Garage Left") == "garage_left" and hass.slug("V2C-1") == "v2c_1"
    out = hass._Out(64)
    out.start()
    out.string("a", 'say "hi"\\')
    out.milli("b", -1500)
    out.milli("c", 7)
    out.flag("d", None)
    out.string("e", "\u00e9\nx")
    assert json.loads(out.take()) == {"a": 'say "hi"\\', "b": -1.5, "c": 0.007, "d": None, "e": "\u00e9 x"}
    small = hass._Out(8)
    small.start()
    small.string("long", "x" * 20)
    assert small.take() is None


def test_an_idle_step_publishes_and_allocates_nothing():
    app, platform, meter, api, link, bridge = make()
    bridge.announce()
    settle(bridge, link, platform)
    link.sent = []
    platform.now += hass.MIN_INTERVAL_MS
    bridge.step(platform.now)  # whatever was pending since the settle goes now
    link.drain()
    link.sent = []
    idle_steps_allocate_nothing(bridge, link, platform)
