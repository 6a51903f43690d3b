"""Home Assistant over MQTT: discovery, state topics and `/set` commands.

Loaded only when the `mqtt` section is enabled. Works on three objects it
is given, never on app.py, a driver or the guard: the MQTT link
(net/mqtt.MqttLink: publish(), room(), subscribe(), connected,
status_topic, on_connect, on_message), the site state (state.SiteState)
and the command API (commands.Commands).

Topics (P = mqtt.topic_prefix, D = mqtt.discovery_prefix, S = a charger's
slug: its name lower-cased, anything but a-z 0-9 as "_"):
    P/status                    online / offline (the link: retained, last will)
    P/site/state                JSON: grid, headroom, optimiser, site settings
    P/device/state              JSON: diagnostics (Wi-Fi, uptime, heap, errors)
    P/charger/S/state           JSON: one charger's status and settings
    P/site/<object>/set         commands for the site settings
    P/charger/S/<object>/set    commands for a charger's settings
    P/error                     JSON {"topic": ..., "message": ...} of a refused command
    D/<component>/<node>/<object>/config   discovery, one retained message per entity
Entities read their value from their section's JSON with a value_template;
a JSON null renders "None", which Home Assistant's MQTT sensor and
binary_sensor show as unknown. The rate limit is per state topic: an
entity's state is published at most every MIN_INTERVAL_MS (settings
changed by a command at once), and every REFRESH_MS anyway.

Discovery: the form every Home Assistant version understands, one config
message per entity. Re-announced on every (re)connect of the link and when
Home Assistant announces "online" on D/status. Removed chargers: what was
announced is kept in a small record on flash (hass_entities.RECORD_FILE: the charger
slugs and whether the optimiser's entities were announced). Reading the
retained discovery topics back after connecting is not possible here: the
link receives at most 256 bytes per packet and a config message is larger,
so the broker's copies would be skipped. On the next announcement the
entities of every recorded charger that is gone get an empty retained
config (Home Assistant deletes the entity, the broker the retained copy),
before anything is announced. Checked against a real Home Assistant
(2024.3) by tools/ha_check.py.

Memory: every document (discovery configs, states, errors) is written
into the MQTT link's packet buffer, lent while the link is idle
(MqttLink.lend), behind room for the PUBLISH header, and sent from there
(MqttLink.send_in_place): no copy of a payload is made and none waits in
the link's queue (its copies, 0.4-0.6 KB each, were the blocks the
smallest heaps could not find). So one document is out at a time:
discovery is a generator publishing one entity per look, the first state
documents after it go one at a time (Hass.first_states), and the state
documents due are written one per look at the link's pace (ANNOUNCE_TICK_MS)
until they are all out. A link without lend() (tests' fakes) gets a
bytes copy of each document from a buffer of the writer's own. The
entity tables, the discovery payloads' writer and the /set parsing are
net/hass_entities.py, loaded while announcing and per command and dropped
after (as .mpy its code and strings would hold 8 KB of a stock firmware's
heap for good). Nothing
is done per guard tick: the task wakes every TICK_MS and compares the
state's change counters. Secrets (Wi-Fi, MQTT and admin passwords) are in
none of the objects read here and are never published.

Schema sources (Home Assistant documentation):
    https://www.home-assistant.io/integrations/mqtt/  (discovery topic form,
        discovery_prefix, birth message on homeassistant/status, empty
        retained payload removes, device block: identifiers, name, model,
        manufacturer, sw_version, via_device, configuration_url)
    https://www.home-assistant.io/integrations/sensor.mqtt/ , binary_sensor.mqtt,
        number.mqtt, select.mqtt, switch.mqtt (state_topic, command_topic,
        value_template, availability_topic, min/max/step/mode, options,
        payload_on/payload_off: "ON"/"OFF" by default)
    https://developers.home-assistant.io/docs/core/entity/sensor/ (device
        classes with their units and allowed state classes: current A,
        power W, energy Wh total_increasing, duration s/ms, signal_strength
        dBm, data_size B, enum with options, timestamp: ISO 8601 with a
        zone, no unit, no state class)
    https://developers.home-assistant.io/docs/core/entity/binary-sensor/
        (plug, battery_charging, connectivity, problem)
    entity_category "diagnostic" / "config": home-assistant.io/integrations/mqtt/
"""

from micropython import const

from chargeguard.core.ticks import ticks_diff

TICK_MS = const(250)  # how often the task looks at the change counters
# While announcing, the task looks at the link's own pace (net/mqtt.POLL_MS):
# one message in flight at a time, the announcement over in about 3 s
# instead of 10-15 s at TICK_MS; its heap (the entity tables' module, the
# generator, the payloads in flight) is then needed for that long only,
# not through the first web answers and the first states at start-up.
ANNOUNCE_TICK_MS = const(50)
MIN_INTERVAL_MS = const(2000)  # a state topic at most this often on change
DEVICE_INTERVAL_MS = const(10000)  # the diagnostics change slowly and matter little
REFRESH_MS = const(60000)  # every state topic at least this often
MAX_COMMAND = const(64)  # bytes of a /set payload; longer is refused
_BUF = const(1024)  # one discovery payload or state JSON (the link's packet buffer is 1024 too)
_LINK_SLOTS = const(2)  # the link's queue (16 by default: 0.1 KB of heap less)
_IN_FLIGHT = const(1)  # discovery payloads queued at once at most (two before: one 0.6 KB block more)
_ENTITIES = "chargeguard.net.hass_entities"
CAR_STATES = ("unknown", "disconnected", "connected", "charging")  # core/model CAR_* in order
# Home Assistant's own states: a text sensor showing one would look unknown or
# unavailable. The guard's reason "unavailable" (the box does not answer) is
# published as "unreachable", the word of the `reachable` entity.
_RESERVED = ("unknown", "unavailable")



def slug(name):
    """A name as a topic level / id part: lower case, a-z 0-9 kept, anything else "_"."""
    out = bytearray(name.lower().encode())
    for index in range(len(out)):
        byte = out[index]
        if not (0x61 <= byte <= 0x7A or 0x30 <= byte <= 0x39):
            out[index] = 0x5F
    return out.decode()


class _Out:
    """A JSON writer into one preallocated buffer: a document from start(at) to its "}" (take() copies it out).

    lend: None for a buffer of its own (`size` bytes), or a call that lends
    one (a memoryview) or gives None while its owner still needs it: the
    MQTT link's packet buffer (MqttLink.lend), free whenever the link is
    idle. A borrowed buffer is this writer's from ready() until the
    document is handed back (MqttLink.send_in_place), with no yield to the
    event loop in between.
    """

    def __init__(self, size, lend=None):
        self.lend = lend
        self.buf = None if lend is not None else memoryview(bytearray(size))
        self.base = 0  # where the document starts in buf
        self.n = 0
        self.over = False

    def ready(self):
        """True when a document can be written now (a buffer of its own, or the lent one is free)."""
        if self.lend is None:
            return True
        self.buf = self.lend()
        return self.buf is not None

    def raw(self, text):
        data = text.encode() if type(text) is str else text
        n = self.n
        end = n + len(data)
        if end > len(self.buf):
            self.over = True
            return
        self.buf[n:end] = data
        self.n = end

    def start(self, at=0):
        self.base = self.n = at
        self.over = False
        self.raw("{")

    def key(self, name):
        if self.n > self.base + 1:
            self.raw(",")
        self.raw('"')
        self.raw(name)
        self.raw('":')

    def string(self, name, value):
        self.key(name)
        self.quoted(value)

    def quoted(self, value):
        if value is None:
            self.raw("null")
            return
        self.raw('"')
        data = value.encode()
        for byte in data:
            if byte < 0x20 or byte == 0x22 or byte == 0x5C:
                break
        else:
            self.raw(data)  # the usual case: nothing to escape, one copy
            self.raw('"')
            return
        for byte in data:  # rare: a quote, a backslash or a control character (shown as a space)
            if byte == 0x22 or byte == 0x5C:
                self.put(0x5C)
            self.put(byte if byte >= 0x20 else 0x20)
        self.raw('"')

    def put(self, byte):
        if self.n >= len(self.buf):
            self.over = True
            return
        self.buf[self.n] = byte
        self.n += 1

    def number(self, name, value):
        self.key(name)
        self.raw("null" if value is None else "%d" % value)

    def milli(self, name, value):
        # mA as A with three decimals (integers only: no float formatting).
        self.key(name)
        if value is None:
            self.raw("null")
            return
        sign = "-" if value < 0 else ""
        value = -value if value < 0 else value
        self.raw("%s%d.%03d" % (sign, value // 1000, value % 1000))

    def flag(self, name, value):
        self.key(name)
        self.raw("null" if value is None else ("true" if value else "false"))

    def take(self):
        """Close the document and copy it out (bytes), None when it did not fit."""
        self.raw("}")
        return None if self.over else bytes(self.buf[self.base : self.n])


class Hass:
    """Home Assistant on one MQTT link; run() is its task (see the module doc).

    link: net/mqtt.MqttLink (or an object with its methods); state:
    state.SiteState; api: commands.Commands; cfg: the `mqtt` section
    (topic_prefix, discovery_prefix); platform: ticks_ms() and sleep_ms();
    storage: the directory for hass_entities.RECORD_FILE (None: no record kept, removed
    chargers are then not cleaned up); models: a model name per charger
    (the driver type), shown on its HA device.
    """

    def __init__(self, link, state, api, cfg, platform, log=print, storage=None, models=None, web_port=None):
        self.link = link
        self.web_port = web_port  # the web pages' port (hass_entities.configuration_url), None when not served
        self.state = state
        self.api = api
        self.platform = platform
        self.log = log
        self.storage = storage
        prefix = cfg["topic_prefix"]
        self.prefix = prefix
        self.discovery_prefix = cfg["discovery_prefix"]
        self.node = slug(prefix)
        self.slugs = []
        for index in range(len(state.chargers)):
            name = slug(state.chargers[index].name)
            if name in self.slugs:
                name = "%s_%d" % (name, index)
            self.slugs.append(name)
        self.models = models or ["EV charger"] * len(state.chargers)
        # The link's packet buffer when it lends it (net/mqtt.MqttLink.lend): 1 KB of heap less, and each
        # document is sent from where it was written (send_in_place), no copy.
        self.in_place = hasattr(link, "send_in_place")
        self.out = _Out(_BUF, link.lend if self.in_place else None)
        # State documents due, a bit each (1 << 0 the site's, 1 << 1..n the chargers', 1 << n+1 the
        # device's): written one at a time whenever the buffer is free (in place: one per look of the
        # task, at the link's pace).
        self._todo = 0
        self._error = None  # (topic, message) of a refusal to publish once the buffer is free
        self.slots = link.room()  # the queue's size: discovery waits until it is nearly empty
        self.discovery = None  # the generator while announcing
        self._pending = False  # an announcement waits for the heap to load the entity tables
        self.announced = False
        self.settled = False  # the first announcement (after boot) is done
        self.errors = 0  # refused commands
        self._seen = [-1, -1, -1, -1, -1]  # grid, chargers, optimiser, device, settings seqs published
        self._sent = [0, 0, 0]  # site, chargers, device: ticks of the last publish
        self._force = True
        self._opt_announced = False
        # After an announcement: the next of the first state documents (0 the site's, 1..n the chargers', n+1
        # the device's), each queued once the link sent the one before; None when they are out.
        self.first_states = None

    def attach(self):
        """Set the link's callbacks and subscriptions (once, before run())."""
        link = self.link
        link.on_connect = self.announce
        link.on_message = self.on_message
        link.subscribe(self.prefix + "/site/+/set")
        link.subscribe(self.prefix + "/charger/+/+/set")
        link.subscribe(self.discovery_prefix + "/status")

    def announce(self):
        """Start (again) publishing discovery, then every state (after a connect, HA's "online")."""
        self.announced = False
        self.first_states = None
        self._todo = 0
        self._pending = True
        self._start_discovery()

    def _start_discovery(self):
        # The entity tables are loaded for the announcement; a heap that
        # cannot take them now leaves it pending: step() tries again.
        try:
            entities = _entities()
        except MemoryError:
            self.discovery = None
            return
        self.discovery = entities.discover(self)
        self._pending = False

    def settling(self):
        """True until the first announcement after boot and the states after it are out (the app's clock task waits for it)."""
        return not self.settled

    async def run(self):
        """Publish discovery and state while the link is up; runs until cancelled."""
        platform = self.platform
        while True:
            self.step(platform.ticks_ms())
            # At the link's pace while something is to go out (not while it is down: announce() starts over).
            busy = self.link.connected and (self.discovery is not None or self.first_states is not None or self._todo)
            await platform.sleep_ms(ANNOUNCE_TICK_MS if busy else TICK_MS)

    def step(self, now):
        """One look: discovery in progress, else the state topics due. Never waits.

        With the link's buffer lent (in place), every document waits until
        the link is idle again, so one goes per look.
        """
        link = self.link
        out = self.out
        if not link.connected or not out.ready():
            return  # (the link is sending a packet from its buffer, or has one queued: the next tick)
        if self._error is not None:
            self._publish_error(*self._error)
            if not out.ready():
                return
        if self._pending:
            self._start_discovery()
            if self._pending:
                return
        if self.discovery is not None:
            # The generator publishes one entity per next() (its config written in place or queued).
            while link.room() > self.slots - _IN_FLIGHT and out.ready():
                try:
                    next(self.discovery)
                except StopIteration:
                    self.discovery = None
                    _unload_entities()  # its code and tables, until the next announcement
                    self.announced = True
                    self.first_states = 0
                    break
            if self.discovery is not None:
                return
        if self.first_states is not None:
            self._publish_first(now)
        elif self.announced:
            self.publish_states(now)

    # -- state ---------------------------------------------------------------

    def publish_states(self, now):
        """Publish the sections whose counters moved (rate-limited), and all every REFRESH_MS."""
        state = self.state
        seen = self._seen
        sent = self._sent
        force = self._force
        self._force = False
        settings = state.settings_seq != seen[4]
        if settings:
            seen[4] = state.settings_seq
        if force or settings or _due(now, sent[0], state.grid_seq != seen[0] or state.optimiser_seq != seen[2], MIN_INTERVAL_MS):
            if state.optimiser_seq != seen[2] and (state.optimiser is None) == self._opt_announced:
                # The optimiser was loaded by a command: its entities need announcing.
                self.announce()
                return
            seen[0] = state.grid_seq
            seen[2] = state.optimiser_seq
            sent[0] = now
            self._todo |= 1
        count = len(state.chargers)
        if force or settings or _due(now, sent[1], state.chargers_seq != seen[1], MIN_INTERVAL_MS):
            seen[1] = state.chargers_seq
            sent[1] = now
            self._todo |= ((1 << count) - 1) << 1
        if force or _due(now, sent[2], state.device_seq != seen[3], DEVICE_INTERVAL_MS):
            seen[3] = state.device_seq
            sent[2] = now
            self._todo |= 1 << (count + 1)
        # Each document due, in that order, written when the buffer is free (the newest figures then).
        index = 0
        while self._todo:
            bit = 1 << index
            if self._todo & bit:
                if not self._document(index, now):
                    return  # the buffer is busy: the next look goes on
                self._todo &= ~bit
            index += 1

    def _publish_first(self, now):
        # Every state after an announcement, one document in flight at a time
        # (the link's pace, ANNOUNCE_TICK_MS): queued at once they were 2 KB
        # of copies with two chargers, held together just after the
        # announcement's own peak. Bookkeeping as publish_states() does it.
        if self.link.room() < self.slots or not self.out.ready():
            return  # the document before is still queued or being sent
        state = self.state
        seen = self._seen
        sent = self._sent
        index = self.first_states
        count = len(state.chargers)
        if index == 0:
            if (state.optimiser is None) == self._opt_announced:
                self.announce()  # the optimiser came or went during the announcement
                return
            self._force = False
            seen[4] = state.settings_seq
            seen[0] = state.grid_seq
            seen[2] = state.optimiser_seq
            sent[0] = now
            self._document(0, now)
        elif index <= count:
            if index == 1:
                seen[1] = state.chargers_seq
                sent[1] = now
            self._document(index, now)
        else:
            seen[3] = state.device_seq
            sent[2] = now
            self._document(index, now)
            self.first_states = None
            self.settled = True
            return
        self.first_states = index + 1

    def _document(self, index, now):
        # State document `index` (0 the site's, 1..n a charger's, n+1 the device's), written and published;
        # False (nothing written) while the buffer is not free.
        if not self.out.ready():
            return False
        count = len(self.state.chargers)
        if index == 0:
            name = self.prefix + "/site/state"
        elif index <= count:
            name = "%s/charger/%s/state" % (self.prefix, self.slugs[index - 1])
        else:
            name = self.prefix + "/device/state"
        topic = self.begin(name)
        if index == 0:
            self._site()
        elif index <= count:
            self._charger(index - 1, now)
        else:
            self._device()
        if not self.send(topic):
            self.log("hass: %s does not fit %d bytes: not published" % (name, _BUF))
        return True

    def begin(self, name):
        """Start a document for topic `name` (str) in the writer (`out`, ready()); returns the topic to give send().

        In place: the topic as bytes, the document written behind room for the PUBLISH header.
        """
        if self.in_place:
            topic = name.encode()
            self.out.start(self.link.payload_at(topic))
            return topic
        self.out.start()
        return name

    def send(self, topic, retain=False):
        """Publish the document written since begin(): sent in place, or a copy queued; False when it did not fit."""
        out = self.out
        if self.in_place:
            out.raw("}")
            return not out.over and self.link.send_in_place(topic, out.base, out.n, retain)
        payload = out.take()
        if payload is None:
            return False
        self.link.publish(topic, payload, retain)
        return True

    def _site(self):
        state = self.state
        out = self.out
        reading = state.reading if state.have_reading else None
        for phase in range(3):
            value = reading.current_ma[phase] if reading is not None and phase < reading.phase_count else None
            out.milli("current_l%d" % (phase + 1), value)
        for phase in range(3):
            value = reading.power_w[phase] if reading is not None and phase < reading.phase_count else None
            out.number("power_l%d" % (phase + 1), value)
        out.number("import_power", None if reading is None else reading.import_w)
        out.number("export_power", None if reading is None else reading.export_w)
        out.number("import_energy", None if reading is None else reading.energy_import_wh)
        out.number("export_energy", None if reading is None else reading.energy_export_wh)
        out.number("month_peak", state.month_peak_w)
        for phase in range(3):
            out.milli("headroom_l%d" % (phase + 1), state.headroom_ma[phase] if phase < state.phases else None)
        out.milli("breaker_limit", state.limit_ma)
        out.flag("failsafe", state.failsafe)
        out.number("telegram_age", state.reading_age_ms)
        values = self.api.values
        out.string("mode", values["site.mode"])
        out.string("distribution", values["site.distribution"])
        out.flag("eco", values["solar.eco"])
        out.number("net_power_target_w", values["solar.net_power_target_w"])
        out.number("peak_limit_w", values["site.peak_limit_w"])
        out.flag("peak_follow_month", values["site.peak_follow_month"])
        if state.optimiser is not None:
            out.number("surplus", state.surplus_w)
            out.number("quarter_average", state.quarter_avg_w)
            out.number("quarter_budget", state.remaining_wh)
            out.number("peak_limit", state.peak_limit_w)

    def _charger(self, index, now):
        charger = self.state.chargers[index]
        status = charger.status
        out = self.out
        car = status.car if 0 <= status.car < len(CAR_STATES) else 0
        out.string("status", None if car == 0 else CAR_STATES[car])
        out.flag("connected", None if car == 0 else car >= 2)
        out.flag("charging", None if car == 0 else car == 3)
        out.flag("reachable", status.reachable)
        out.number("power", status.power_w)
        out.number("session_energy", status.session_energy_wh)
        out.number("session_time", status.session_s)
        # kWh with three decimals (Wh exactly, integers only): the unit the Energy dashboard shows.
        out.milli("energy_today", charger.energy_today_wh)
        out.milli("lifetime_energy", charger.energy_lifetime_wh)
        out.milli("offered_current", charger.offered_ma)
        reason = charger.reason
        out.string("reason", "unreachable" if reason in _RESERVED else reason)
        out.number("last_update", ticks_diff(now, status.tick_ms) // 1000 if status.tick_ms else None)
        out.string("error", status.error or "")
        values = self.api.values
        prefix = "chargers.%d." % index
        out.string("mode", values[prefix + "mode"])
        for key in ("manual_a", "min_a", "max_a", "priority"):
            out.number(key, values[prefix + key])
        out.flag("enabled", values[prefix + "enabled"])
        out.flag("locked", status.locked)
        link = charger.ocpp
        if link is not None:
            from chargeguard.ocppstate import iso_utc  # loaded: the site has an OCPP box

            out.flag("ocpp_connected", link.connected)
            out.string("connected_since", iso_utc(link.connected_since_s))
            out.string("last_message", link.last_message or "")
            out.string("last_message_at", iso_utc(link.last_message_s))
            out.string("last_refusal", (link.last_refusal or "")[:120])

    def _device(self):
        state = self.state
        out = self.out
        out.number("rssi", state.rssi)
        out.string("ip", state.ip)
        out.number("uptime", state.uptime_ms // 1000)
        out.number("heap_used", state.heap_live or None)
        out.number("heap_free", state.heap_free or None)
        out.number("reaction_time", state.reaction_ms)
        out.string("last_error", state.errors[-1][:120] if state.errors else "")
        out.number("error_count", state.error_count)

    # -- commands ----------------------------------------------------------------

    def on_message(self, topic, payload):
        """The link's callback: HA's birth message or a /set command (topic str, payload bytes)."""
        if topic == self.discovery_prefix + "/status":
            if payload == b"online":
                self.log("hass: Home Assistant is online: announcing again")
                self.announce()
            return
        message = self.command(topic, payload)
        if message is not None:
            self.errors += 1
            self.log("hass: %s refused: %s" % (topic, message))
            if self.out.ready():
                self._publish_error(topic, message)
            else:
                # The link is sending a packet from the buffer: published by the next step (a later refusal
                # replaces it, as the link's queue replaces a message queued for the same topic).
                self._error = (topic, message)
        self._force = True  # the state in force goes back, also after a refusal (HA's slider snaps back)

    def _publish_error(self, topic, message):
        self._error = None
        out = self.out
        error = self.begin(self.prefix + "/error")
        out.string("topic", topic)
        out.string("message", message)
        self.send(error)

    def command(self, topic, payload):
        """Apply one /set message through the command API; None when applied, else the message.

        The entity tables (hass_entities.py) are loaded to parse it and
        dropped before the command API loads its checks (unless an
        announcement is streaming them): the two never add up on the heap.
        """
        try:
            entities = _entities()
        except MemoryError:
            return "not enough memory to take a command now: nothing changed, try again"
        try:
            parsed = entities.parse(self, topic, payload)
        finally:
            del entities
            if self.discovery is None:
                _unload_entities()  # before the command API loads its checks: never both at once
        if type(parsed) is str:
            return parsed
        index, name, value = parsed
        if index < 0:
            path = ("solar." if name in ("eco", "net_power_target_w") else "site.") + name
            errors = self.api.set({path: value})
        elif name == "locked":
            errors = self.api.set_lock(index, value)
        else:
            errors = self.api.set_charger(index, {name: value})
        if not errors:
            return None
        return "; ".join(["%s %s" % (path, errors[path]) if path else errors[path] for path in errors])


def _entities():
    # net/hass_entities.py, imported (MemoryError when the heap cannot take it).
    from chargeguard.net import hass_entities

    return hass_entities


def _unload_entities():
    # hass_entities.py's heap back (imported afresh for the next announcement or command).
    import sys

    sys.modules.pop(_ENTITIES, None)
    package = sys.modules.get("chargeguard.net")
    if package is not None and "hass_entities" in package.__dict__:
        delattr(package, "hass_entities")


def _due(now, last, moved, interval):
    # A section is due when it changed and `interval` passed, or REFRESH_MS passed.
    age = ticks_diff(now, last)
    return (moved and age >= interval) or age >= REFRESH_MS


def from_config(cfg, platform, log, context):
    """What app.py starts for an enabled `mqtt` section (drivers.INTERFACE_MODULES): the link, with Home Assistant on it.

    Returns net/mqtt's MqttLink (the interface object the app and the
    link's own tests know) whose run() also runs Home Assistant's loop: the
    link's task beside it, both ending together. context: {"hostname",
    "site_state", "command_api"} from the app (the last two are calls; both
    are needed here), and "charger_models" (driver type per charger) and
    "web_port" (the web pages' port, None when off: hass_entities.configuration_url) when
    the app gives them. hass_entities.RECORD_FILE goes to the platform's storage_dir().
    """
    from chargeguard.net import mqtt

    # Its queue holds only discovery's empty (removing) configs, one at a time: every document goes in place.
    link = mqtt.from_config(cfg, platform, log, context, _LINK_SLOTS)
    storage = platform.storage_dir() if hasattr(platform, "storage_dir") else None
    bridge = Hass(link, context["site_state"](), context["command_api"](), cfg, platform, log, storage,
                  context.get("charger_models"), context.get("web_port"))
    bridge.attach()
    link_run = link.run

    async def run():
        import asyncio

        task = asyncio.create_task(link_run())
        try:
            await bridge.run()
        finally:
            task.cancel()

    link.run = run  # the instance's run: the app supervises both as one task
    link.settling = bridge.settling  # App.clock_task's first SNTP try waits for the announcement
    link.hass = bridge
    return link
