"""meters/mqtt_meter.py: a grid meter fed over MQTT, against a fake link; its config rules.

Runs on CPython and on the MicroPython unix port. The real broker and
paho-mqtt as the publisher: host_tests/system/test_mqtt_meter_system.py.
"""

from chargeguard import config
from chargeguard.meters.mqtt_meter import MqttMeter
from support import Clock


class FakeLink:
    def __init__(self):
        self.on_message = None
        self.subscribed = []

    def subscribe(self, topic):
        self.subscribed.append(topic)

    async def run(self):
        pass


def make(topics=("h/l1", "h/l2", "h/l3", ""), keys=("", "", "", ""), phase_unit="A", power_unit="W",
         upside_down=False, voltage_v=230):
    link = FakeLink()
    clock = Clock(1000)
    meter = MqttMeter(topics, keys, phase_unit, power_unit, upside_down, voltage_v, link, clock.ticks_ms)
    calls = []
    meter._on_reading = lambda: calls.append(clock.now)
    return meter, link, clock, calls


def test_per_phase_currents_as_bare_numbers_stamped_with_the_oldest():
    meter, link, clock, calls = make()
    link.on_message("h/l1", b"10.5")
    clock.now += 300
    link.on_message("h/l2", b" 2 ")
    assert calls == []  # not all phases yet
    clock.now += 300
    link.on_message("h/l3", b"0.0049")
    r = meter.reading
    assert calls == [1600]
    assert r.phase_count == 3 and r.current_ma == [10500, 2000, 5]
    assert r.tick_ms == 1000  # the oldest value's time: a dead topic ages the reading
    assert r.phase_tick_ms is None  # one cadence
    assert r.power_w == [2415, 460, 1]  # currents counted as import at the site voltage
    assert r.net_power_w() == 2876
    clock.now += 1000
    link.on_message("h/l1", b"11")
    assert r.tick_ms == 1300  # now l2 is the oldest
    assert meter.last_error is None and meter.n_readings == 2


def test_a_value_that_is_no_number_is_said_and_not_used():
    meter, link, clock, calls = make()
    for topic in ("h/l1", "h/l2", "h/l3"):
        link.on_message(topic, b"4")
    clock.now += 1000
    link.on_message("h/l2", b"unavailable")
    assert meter.last_error == "h/l2: no number: 'unavailable'"
    assert meter.reading.current_ma[1] == 4000 and meter.reading.tick_ms == 1000
    assert len(calls) == 1
    link.on_message("h/l2", b"9" * 60)
    assert meter.last_error.startswith("h/l2: no number: '999999999999999999999999...")
    link.on_message("h/l2", b"-3.2")  # a signed current counts as its magnitude
    assert meter.last_error is None and meter.reading.current_ma[1] == 3200
    link.on_message("other/topic", b"12")  # not ours: nothing happens
    assert len(calls) == 2
    link.on_message("h/l3", b"20000")
    assert "no current a house draws" in meter.last_error


def test_json_members_kilowatts_and_upside_down():
    meter, link, clock, calls = make(
        topics=("p/phases", "p/phases", "p/phases", "p/net"), keys=("l1", "l2", "l3", "power"), phase_unit="kW",
        power_unit="kW", upside_down=True)
    link.on_message("p/net", b'{"power": -1.5, "unit": "kW"}')
    r = meter.reading
    assert (r.import_w, r.export_w, r.phase_count) == (1500, 0, 0)  # upside down: export read as import
    assert calls == [1000]  # the net power alone is a totals-only reading
    clock.now += 100
    link.on_message("p/phases", b'{"l1": -0.46, "l2": 0.23, "l3": 0}')
    assert r.power_w == [460, -230, 0]
    assert r.current_ma == [2222, 1111, 0]  # |P| / (90 % of 230 V): never under the real current
    assert r.phase_count == 3 and r.phase_tick_ms == 1100 and r.tick_ms == 1000
    assert r.phase_net_w is None  # the net power that goes with these phases has not come yet
    link.on_message("p/net", b'{"power": -1.2}')
    assert r.phase_net_w == 1200 and r.tick_ms == 1100
    link.on_message("p/phases", b'{"l1": 1, "l3": 2}')
    assert meter.last_error == "p/phases: no number in member \"l2\" of '{\"l1\": 1, \"l3\": 2}'"


def test_two_cadences_net_power_fast_phases_slow():
    meter, link, clock, calls = make(topics=("h/l1", "h/l2", "h/l3", "h/net"))
    for topic in ("h/l1", "h/l2", "h/l3"):
        link.on_message(topic, b"5")
    assert calls == []  # the net power is configured: wait for it
    link.on_message("h/net", b"3450")
    r = meter.reading
    assert calls == [1000] and r.phase_count == 3 and r.phase_tick_ms == 1000
    assert r.phase_net_w == 3450  # the first net power after all phases goes with them
    clock.now += 2500
    link.on_message("h/net", b"5000")
    assert r.tick_ms == 3500 and r.phase_tick_ms == 1000 and r.import_w == 5000 and r.phase_net_w == 3450
    clock.now += 7500
    for topic in ("h/l1", "h/l2", "h/l3"):
        link.on_message(topic, b"6")
    assert r.phase_tick_ms == 11000 and r.phase_net_w == 3450 and r.tick_ms == 3500
    clock.now += 100
    link.on_message("h/net", b"4140")
    assert r.phase_net_w == 4140 and r.tick_ms == 11100


def test_a_one_phase_site_and_power_only_meters():
    meter, link, clock, calls = make(topics=("h/l1", "", "", ""), phase_unit="W")
    link.on_message("h/l1", b"-2300")
    assert meter.reading.phase_count == 1 and meter.reading.current_ma[0] == 11111 and calls
    meter, link, clock, calls = make(topics=("", "", "", "h/net"))
    link.on_message("h/net", b"-4200.4")
    assert meter.reading.phase_count == 0 and meter.reading.net_power_w() == -4200


def test_run_subscribes_each_topic_once():
    import asyncio

    meter, link, clock, calls = make(topics=("p/x", "p/x", "p/x", "p/net"), keys=("a", "b", "c", ""))
    asyncio.run(meter.run(lambda: None))
    assert link.subscribed == ["p/x", "p/net"]


def _doc(meter, phases=3, host="192.168.1.5"):
    doc = {"site": {"phases": phases}, "meter": meter, "mqtt": {"host": host}}
    return dict(config.validate(doc))


def test_config_rules_of_an_mqtt_meter():
    three = {"type": "mqtt", "l1_topic": "a/l1", "l2_topic": "a/l2", "l3_topic": "a/l3"}
    assert _doc(three) == {}
    assert _doc({"type": "mqtt", "power_topic": "a/p", "power_unit": "kW"}) == {}
    assert _doc({"type": "mqtt", "l1_topic": "a/l1"}, phases=1) == {}
    errors = _doc({"type": "mqtt", "l1_topic": "a/l1", "l3_topic": "a/l3"})
    assert list(errors) == ["meter.l2_topic"]
    assert errors["meter.l2_topic"].startswith("must be set: a 3-phase site needs all three per-phase topics or none"
                                               " (a phase without a value would be taken as unloaded)")
    assert "meter.l2_topic" in _doc({"type": "mqtt", "l1_topic": "a", "l2_topic": "b"}, phases=1)
    assert "meter.power_topic" in _doc({"type": "mqtt"})
    assert "wildcards" in _doc({"type": "mqtt", "power_topic": "a/+/p"})["meter.power_topic"]
    assert "meter.phase_unit" in _doc(dict(three, phase_unit="mA"))
    assert _doc(three, host="")["mqtt.host"].startswith("must be set for a meter of type mqtt")
    assert "meter.baud" in _doc(dict(three, baud=9600))  # a P1 field: unknown here


def test_the_app_builds_the_meter_with_the_broker_of_the_mqtt_section():
    from chargeguard import startup

    doc = config.complete({"meter": {"type": "mqtt", "power_topic": "a/p"},
                           "mqtt": {"host": "127.0.0.1", "password": "pw-not-shown", "client_id": "cg"}})
    assert config.validate(doc) == []

    class Platform:
        name = "unix"

        def ticks_ms(self):
            return 0

    meter = startup.make_meter(doc["meter"], Platform(), doc)
    assert meter._link.client_id == "cg-meter" and meter._link.host == "127.0.0.1"
    assert meter.reading.phase_count == 0 and meter.last_error is None
