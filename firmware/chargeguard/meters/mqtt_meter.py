"""A grid meter fed over MQTT: numbers another system already publishes (Home Assistant, a P1 dongle, evcc).

The meter section (`"type": "mqtt"`, config.py checks it, docs/configuration.md
explains it) names up to four topics on the broker of the `mqtt` section:

- `l1_topic`, `l2_topic`, `l3_topic`: the per-phase values, in `phase_unit`
  ("A": current; "W" or "kW": power, import positive);
- `power_topic`: the net power of the grid connection in `power_unit` ("W" or
  "kW"), import positive, export negative.

Each topic's payload is either a bare number (`12.5`, what Home Assistant's
MQTT statestream and most dongles send; the `*_key` empty), or a JSON object
and `*_key` the name of the member holding the number (first member of that
name, at any depth: net/jsonscan.py). The per-phase topics may be one topic
with three keys. `upside_down` negates every power.

What the reading says (core/model.GridReading):

- per-phase values only: per-phase readings, stamped with the OLDEST of the
  three (a dead phase topic is a stale meter, not an old value taken as new);
- net power only: a totals-only meter (phase_count 0, the guard's worst case);
- both: a meter with two cadences: `tick_ms` is the net power's arrival,
  `phase_tick_ms` the oldest per-phase value's, `phase_net_w` the first net
  power that came after all phases had come (a publisher's round: phases,
  then the total; the guard uses each at its own age, core/guard.py).
  Per-phase values are used only once all have come.

Magnitudes: a current has no sign on MQTT, and a per-phase current given
as power is |P| / (90 % of site.voltage_v) (never less than the real current
at EN 50160's lowest voltage): the guard counts either as load on its phase,
never as export relief (safe). With currents only, the phase power (for the
contracted import limit) is taken as current x site.voltage_v, import.

A value that is no number (Home Assistant's `unavailable`, a JSON without
the key) is not used and said in `last_error`; the reading then ages and
after `guard.meter_timeout_s` the chargers go to their failsafe current, as
with a silent P1 port. So does a broker that is down: the link
(net/mqtt.MqttLink, its own connection with the client id
`<mqtt client id>-meter`, no last will, listen only) reconnects with backoff.

Memory: the link's buffers (MAX_PAYLOAD for an incoming message, a 320-byte
send buffer), one 40-byte number buffer; per message the link's codec makes
the topic and payload objects (net/mqtt.py), nothing here.
"""

from micropython import const

from chargeguard.core.model import GridReading
from chargeguard.core.ticks import ticks_diff
from chargeguard.net import jsonscan

MAX_PAYLOAD = const(512)  # an incoming PUBLISH (topic + payload) larger than this is skipped and logged
_MAX_PACKET = const(320)  # CONNECT (id, user, password <= 128) and SUBSCRIBE (topic <= 128)
_BARE = const(40)  # a bare number payload fits this (with the '{"v":' ... '}' around it)
_LIMIT_MA = const(10000000)  # 10 kA: a larger current is no reading


def _text(payload):
    # A payload for an error message: at most 24 printable characters.
    out = ""
    for index in range(min(len(payload), 24)):
        c = payload[index]
        out += chr(c) if 32 <= c < 127 else "?"
    return out + ("..." if len(payload) > 24 else "")


class MqttMeter:
    """The driver (see the module doc). `reading`, `last_error`, `async run(on_reading)` as every meter.

    topics: (l1, l2, l3, power) topic str or "" (none); keys: the same with
    the JSON member names ("" = bare number); phase_unit "A" | "W" | "kW",
    power_unit "W" | "kW"; voltage_v: site.voltage_v; link: an object with
    on_message, subscribe(topic) and async run() (net/mqtt.MqttLink);
    ticks_ms: the platform's.
    """

    def __init__(self, topics, keys, phase_unit, power_unit, upside_down, voltage_v, link, ticks_ms):
        self.reading = GridReading()
        self.last_error = None
        self.n_messages = 0
        self.n_readings = 0
        self._topics = topics
        self._keys = [b'"' + key.encode() + b'"' if key else None for key in keys]
        phases = 0
        while phases < 3 and topics[phases]:
            phases += 1
        self._phases = phases
        self._has_power = bool(topics[3])
        self._phase_scale = 3 if phase_unit != "W" else 0  # A -> mA, kW -> W; W as it is
        self._phase_current = phase_unit == "A"
        self._power_scale = 3 if power_unit == "kW" else 0
        self._sign = -1 if upside_down else 1
        self._voltage_v = voltage_v
        self._floor_v = voltage_v * 9 // 10
        self._link = link
        self._ticks_ms = ticks_ms
        self._phase_ms = [0, 0, 0]
        self._got = 0  # bit per value received at least once: 1, 2, 4 phases, 8 power
        self._net_w = None
        self._fresh = 0  # bit per phase received since the last net power
        self._buf = bytearray(_BARE)
        self._buf[0:5] = b'{"v":'
        self._on_reading = None
        link.on_message = self._message

    def _number(self, payload, key, scale):
        """The number in a payload (see the module doc) x 10**scale, int; ValueError when there is none."""
        if key is None:
            # A bare number: parsed as the member of a one-member object.
            size = len(payload)
            if size > _BARE - 6:
                raise ValueError("no number: '%s'" % _text(payload))
            buf = self._buf
            buf[5 : 5 + size] = payload
            buf[5 + size] = 125  # '}'
            try:
                value = jsonscan.number(buf, 6 + size, b'"v"', scale, -1, jsonscan.FLAG_REQUIRED)
            except ValueError:
                raise ValueError("no number: '%s'" % _text(payload))
            return value
        try:
            value = jsonscan.number(payload, len(payload), key, scale, -1, jsonscan.FLAG_REQUIRED)
        except ValueError:
            raise ValueError("no number in member %s of '%s'" % (key.decode(), _text(payload)))
        return value

    def _message(self, topic, payload):
        # The link's on_message: every configured value on this topic.
        self.n_messages += 1
        now = self._ticks_ms()
        used = False
        topics = self._topics
        for slot in range(4):
            if topics[slot] != topic:
                continue
            used = True
            try:
                self._take(slot, payload, now)
            except ValueError as error:
                self.last_error = "%s: %s" % (topic, error.args[0])
                return
        if used:
            self.last_error = None
            self._publish(now)

    def _take(self, slot, payload, now):
        reading = self.reading
        if slot == 3:
            value = self._number(payload, self._keys[3], self._power_scale) * self._sign
            self._net_w = value
            reading.import_w = value if value > 0 else 0
            reading.export_w = -value if value < 0 else 0
            reading.tick_ms = now
            self._got |= 8
            if self._fresh == (1 << self._phases) - 1:
                # Every phase came since the last net power: this one goes with them.
                reading.phase_net_w = value
                self._fresh = 0
            return
        value = self._number(payload, self._keys[slot], self._phase_scale)
        if self._phase_current:
            current = value if value >= 0 else -value
            power = current * self._voltage_v // 1000
        else:
            power = value * self._sign
            current = (power if power >= 0 else -power) * 1000 // self._floor_v
        if current >= _LIMIT_MA:
            raise ValueError("%d A is no current a house draws" % (current // 1000))
        reading.current_ma[slot] = current
        reading.power_w[slot] = power
        self._phase_ms[slot] = now
        self._got |= 1 << slot
        self._fresh |= 1 << slot

    def _publish(self, now):
        # Stamp the reading and tell the app, once what it needs has come.
        reading = self.reading
        phases = self._phases
        all_phases = (1 << phases) - 1
        have_phases = phases and self._got & all_phases == all_phases
        oldest = now
        if have_phases:
            oldest = self._phase_ms[0]
            for slot in range(1, phases):
                # The oldest of them (ticks wrap: compare by difference).
                if ticks_diff(self._phase_ms[slot], oldest) < 0:
                    oldest = self._phase_ms[slot]
        if self._has_power:
            if not self._got & 8:
                return
            if have_phases:
                reading.phase_count = phases
                reading.phase_tick_ms = oldest
            else:
                reading.phase_count = 0
        else:
            if not have_phases:
                return
            reading.phase_count = phases
            reading.tick_ms = oldest
        self.n_readings += 1
        callback = self._on_reading
        if callback is not None:
            callback()

    async def run(self, on_reading):
        """The meter task: subscribe, keep the link up; on_reading() after each usable message. Never returns."""
        self._on_reading = on_reading
        seen = []
        for topic in self._topics:
            if topic and topic not in seen:
                seen.append(topic)
                self._link.subscribe(topic)
        await self._link.run()


def from_config(meter_doc, platform, doc):
    """The driver for a validated `meter` section of type "mqtt"; doc: the whole configuration (its mqtt, site, wifi)."""
    from chargeguard.net.mqtt import MqttLink

    broker = doc["mqtt"]
    client_id = broker["client_id"] or "chargeguard-" + doc["wifi"]["hostname"]
    cfg = {
        "host": broker["host"],
        "port": broker["port"],
        "user": broker["user"],
        "password": broker["password"],
        "client_id": client_id + "-meter",
        "topic_prefix": broker["topic_prefix"],
        "keepalive_s": broker["keepalive_s"],
    }
    meter = None

    def log(text):
        # The link's words become the meter's error: the app logs a change of it.
        if meter is not None and not text.startswith("mqtt: connected"):
            meter.last_error = text

    link = MqttLink(platform, cfg, log, queue=1, max_packet=_MAX_PACKET, max_incoming=MAX_PAYLOAD, status=False)
    topics = (meter_doc["l1_topic"], meter_doc["l2_topic"], meter_doc["l3_topic"], meter_doc["power_topic"])
    keys = (meter_doc["l1_key"], meter_doc["l2_key"], meter_doc["l3_key"], meter_doc["power_key"])
    meter = MqttMeter(topics, keys, meter_doc["phase_unit"], meter_doc["power_unit"], meter_doc["upside_down"],
                      doc["site"]["voltage_v"], link, platform.ticks_ms)
    return meter
