"""A wallbox that speaks OCPP 1.6J to ChargeGuard as its central system (net/ocpp.py serves the port).

Config (`chargers[]`, type "ocpp", docs/ocpp.md): `charge_point_id` (the id the box puts in its URL),
`password` (secret; HTTP Basic, OCPP security profile 1; empty = none), `unit` ("auto": learned from
GetConfiguration ChargingScheduleAllowedChargingRateUnit, else "A" or "W"), `stack_level` (of the
failsafe profile; the dynamic one goes one above; -1 = auto: 0 and 1, or one profile at 0 when the box
allows no more), `profile_connector` (0: the whole box, 1: connector 1; -1 = auto: 0, then 1 when 0 is
refused), `pause` ("zero": limit 0, "stop": RemoteStop/StartTransaction, "auto": zero, then stop when
the box refuses 0 and `remote_start_stop` allows it), `id_tags` (comma-separated allow-list for
Authorize; empty = accept all), `meter_interval_s` (MeterValueSampleInterval set in the box; 0 = leave),
`profile_kind` ("absolute", or "relative": see below).

Messages from the box (answers, `on_call`): BootNotification (Pending, interval PENDING_S, until the
box is set up; then Accepted, heartbeat interval HEARTBEAT_S: below), Heartbeat, StatusNotification (connector 1, or 0 when the box has one: Available / Reserved /
Unavailable = no car, Preparing / SuspendedEV / SuspendedEVSE / Finishing = connected, Charging =
charging, Faulted = unknown with the error code as `status.error`), MeterValues (below),
Start/StopTransaction (local transaction ids from 1; session energy = meter - meterStart), Authorize,
DataTransfer (answered "UnknownVendorId": no vendor extension is known), FirmwareStatusNotification,
DiagnosticsStatusNotification (noted). A box that sends anything before its BootNotification is answered
and then asked for one (TriggerMessage) by the next poll().

MeterValues, as boxes send them: `meterValue` a list or one object; each `sampledValue`'s `value` a
string (or a number); an empty value is skipped; measurand absent = Energy.Active.Import.Register;
units W / kW, Wh / kWh, A (absent: the measurand's default); phases "L1" or "L1-N" (the first two
characters count), none = the total; Current.Import per phase -> `status.current_ma` (a box that sends
only a total on one phase is counted on L1), Power.Active.Import (total, or the sum of the phases) ->
`status.power_w`, Energy.Active.Import.Register -> session energy, Current.Offered -> `status.offered_ma`.
Timestamps are not used for the values (they may have no zone, or a box clock that is wrong): a value
is as old as its message; a timestamp only tells the box's clock when ours is not set.

Set-up at each connection (poll(), asked for through `poll_soon` as soon as the answer to the
BootNotification went out, not at the next poll): GetConfiguration of the unit and the stack levels
(unless configured), ClearChargingProfile of the TxDefaultProfiles (a stale one of another backend would
outrank ours), the failsafe profile, then ChangeConfiguration of MeterValueSampleInterval and
MeterValuesSampledData (one key per request). The profile comes before the configuration because a box
with no profile offers its own maximum from the moment it boots with a car plugged in (OCPP 1.6 sets no
lower default; boxes left without a profile were seen charging at their full hardware maximum,
github.com/JoaoPedroBelo/bmw-wallbox-ha issues 15 and 19), and the guard's first command follows the
set-up in the same pass of the box's task.

Pending (OCPP 1.6 edition 2, 4.2): a box's BootNotification is answered Pending; while Pending it may
send nothing but a triggered BootNotification (so no StartTransaction) and answers our requests. The
set-up runs then, and the guard's limit follows, decided once the box was available (`decisions`, set by
the App: its decision count; the command of the pass that ended the set-up was decided before); then a
TriggerMessage has the box boot again at once, and that BootNotification is Accepted. No RemoteStart/Stop
while Pending (4.2). A Pending box counts as drawing nothing (it sends no MeterValues). One that takes no
profile stays Pending; after SETUP_DEADLINE_MS its error says so. A box that talks before its
BootNotification on a connection was accepted before (a reconnect): its BootNotification, asked for by
TriggerMessage, is Accepted at once and its set-up runs right after, as before. Discovered boxes are
Accepted. docs/ocpp.md, "Pending".

Commands (`apply`), each only when the box does not have it yet: SetChargingProfile, TxDefaultProfile,
chargingProfileId 2 at the dynamic stack level, Absolute from now (or Relative), `duration` DYNAMIC_VALID_S, limit in
A (one decimal) or W (A x 230 V x phases), renewed every RENEW_MS. Under it, once per connection,
profile 1 at the failsafe level: the charger's `failsafe_a` (0 = pause), with no end: when ChargeGuard or
the LAN dies the dynamic profile lapses within DYNAMIC_VALID_S and the box falls back to the failsafe
by itself. A box with one stack level gets one profile, the dynamic limit then the failsafe limit as a
second period starting after DYNAMIC_VALID_S. Pausing below 6 A: limit 0 (or per `pause`).

A refusal (Rejected, NotSupported), a CALLERROR or a timeout affects only this charger: the reason is
`status.error` and `last_refusal` ("SetChargingProfile: Rejected (6.0 A)"), and the box is unavailable
to the guard (`status.reachable` False: its last offer counts as drawn) until a command is in force; so
is a box that is connected but not yet set up (BootNotification and the set-up calls). A box that refuses limit 0 and may not be stopped stays
available (it can be commanded above 0) with "cannot pause: ..." as its error.

`profile_kind` "relative" (for a box whose clock drifts or was never set): both profiles go out as
chargingProfileKind Relative without startSchedule, so the box counts them from a start point of its
own, not from a time its clock may not share; the dynamic one keeps its `duration` (docs/ocpp.md).

Status for the site state (state.py copies it when `link_seq` moved; interfaces never read the driver):
`session` (None = not connected), `connected_since_ms` (ticks) and `connected_since_s` (seconds since
1970 UTC, None while the wall clock is not set: filled in by the next message once it is), the action of
the box's last call `last_message`, when anything was last heard `last_message_ms` / `last_message_s`,
`last_refusal` (text) with `last_refusal_ms` / `last_refusal_s`, `vendor`, `model`, `firmware`.
"""

import time

from micropython import const

from chargeguard.core.model import ChargerStatus
from chargeguard.core.ticks import ticks_diff

HEARTBEAT_S = const(300)  # BootNotification.conf interval: the WebSocket pings keep the link checked
PENDING_S = const(10)  # a Pending answer's interval: the box boots again after this unless triggered sooner
SETUP_DEADLINE_MS = const(60000)  # a Pending box that took no limit by then is reported, still kept Pending
DYNAMIC_VALID_S = const(60)  # a dynamic limit lapses this long after it was sent
RENEW_MS = const(20000)  # the dynamic profile is sent again this often (3 chances per validity)
RETRY_MS = const(30000)  # a refused set-up step is tried again after this
_FAILSAFE_ID = const(1)
_DYNAMIC_ID = const(2)
_VOLTAGE_V = const(230)  # nominal, to turn amps into watts for a box that takes W only
_MIN_A = const(6)
_CLOCK_VALID_S = const(1704067200)  # 2024-01-01: a wall clock before this was never set

# Bits of OcppCharger._flags: what the box is known to do (learned, kept across connections) ...
_SINGLE_LEVEL = const(0x1)  # it takes one stack level only: one profile with two periods
_ZERO_REFUSED = const(0x2)  # it refuses a limit of 0 (pause then by `pause`)
# ... the configuration's choices ...
_PAUSE_STOP = const(0x4)  # pause "stop" (RemoteStop/StartTransaction)
_PAUSE_AUTO = const(0x8)  # pause "auto" (zero, then stop when 0 is refused); neither bit: "zero"
_REMOTE_START_STOP = const(0x10)
_RELATIVE = const(0x20)  # profile_kind "relative"
# ... this connection's state ...
_BOOTED = const(0x40)  # a BootNotification on this connection
_REGISTERED = const(0x80)  # its BootNotification was answered Accepted on this connection
_LET_IN = const(0x100)  # set up while Pending: its next BootNotification is Accepted
_LATE = const(0x200)  # the set-up deadline passed (reported once)
_TALKED = const(0x400)  # a message before its BootNotification
_SETUP_SOON = const(0x800)  # a BootNotification is being answered: ask for the set-up once it went out
_ACCEPTED = const(0x1000)  # a dynamic profile was accepted on this connection
# ... and the driver's own.
_STOPPED = const(0x2000)  # paused by RemoteStopTransaction
_APPLYING = const(0x4000)  # an apply() is running

_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)


def _car_of(state):
    # The car state a connector status means, or None for one OCPP 1.6 does not have
    # (comparisons, not a dict: no table on the heap for good).
    if state == "Available" or state == "Reserved" or state == "Unavailable":
        return _CAR_NONE
    if state == "Preparing" or state == "SuspendedEV" or state == "SuspendedEVSE" or state == "Finishing":
        return _CAR_CONNECTED
    if state == "Charging":
        return _CAR_CHARGING
    return _CAR_UNKNOWN if state == "Faulted" else None


_SAMPLED = "Current.Import,Power.Active.Import,Energy.Active.Import.Register,Current.Offered"


def _error(code, text):
    from chargeguard.net.ocpp import OcppError

    return OcppError(code, text)


def _field(payload, key, kind, required=True):
    # payload[key] checked against `kind` (a type, or a tuple of str values).
    if key not in payload:
        if required:
            raise _error("ProtocolError", "%s is missing" % key)
        return None
    value = payload[key]
    if type(kind) is tuple:
        if type(value) is not str:
            raise _error("TypeConstraintViolation", "%s must be a string" % key)
        if value not in kind:
            raise _error("PropertyConstraintViolation", "%s: unknown value" % key)
    elif kind is int:
        if type(value) is not int:
            raise _error("TypeConstraintViolation", "%s must be an integer" % key)
    elif type(value) is not kind:
        raise _error("TypeConstraintViolation", "%s must be %s" % (key, "a string" if kind is str else "an object"))
    return value


def decimal(text, scale):
    """The decimal number `text` (str, or an int / float a box sent) times 10**scale, rounded half up, as an int.

    "1.5" with scale 3 -> 1500; "-2e3" with 0 -> -2000. None for "" or what is no number.
    """
    if type(text) is int:
        return text * 10 ** scale
    if type(text) is float:
        text = repr(text)
    if type(text) is not str:
        return None
    text = text.strip()
    neg = text[:1] == "-"
    if neg or text[:1] == "+":
        text = text[1:]
    exp = 0
    cut = text.find("e")
    if cut < 0:
        cut = text.find("E")
    if cut >= 0:
        try:
            exp = int(text[cut + 1 :])
        except ValueError:
            return None
        text = text[:cut]
    point = text.find(".")
    whole = text if point < 0 else text[:point]
    frac = "" if point < 0 else text[point + 1 :]
    digits = whole + frac
    if not digits or not digits.isdigit() or len(digits) > 18 or not -12 <= exp <= 12:
        return None
    shift = scale + exp - len(frac)
    value = int(digits)
    if shift >= 0:
        value *= 10 ** shift
    else:
        div = 10 ** -shift
        value = (value + div // 2) // div
    return -value if neg else value


def parse_time(text):
    """Seconds since 1970 UTC of an ISO 8601 date-time (str), or None. No zone = UTC; an offset is applied."""
    from chargeguard.core.localtime import days

    if type(text) is not str or len(text) < 19 or text[4] != "-" or text[10] not in "Tt ":
        return None
    try:
        seconds = days(int(text[0:4]), int(text[5:7]), int(text[8:10])) * 86400
        seconds += int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
    except ValueError:
        return None
    rest = text[19:]
    while rest[:1] == "." or rest[:1].isdigit():
        rest = rest[1:]
    if len(rest) >= 6 and rest[0] in "+-":
        try:
            offset = int(rest[1:3]) * 3600 + int(rest[4:6]) * 60
        except ValueError:
            return None
        seconds += -offset if rest[0] == "+" else offset
    return seconds


def iso_time(seconds):
    """ISO 8601 UTC text of seconds since 1970 ("2026-11-30T05:00:00Z")."""
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (t[0], t[1], t[2], t[3], t[4], t[5])


class OcppCharger:
    """One OCPP 1.6J charge point; `status` (ChargerStatus) is updated in place as its messages come.

    charge_point_id: str; password: str ("" = none); settings from the config entry (see the module
    text); clock: the platform's ticks_ms; wall: the platform's wall_time (seconds since 1970) or None;
    discovered: a box that is not configured: answered, never commanded.
    """

    discovered = False  # True on the instance of a discovered box only

    def __init__(self, charge_point_id, password="", phases=3, failsafe_a=0, unit="auto", stack_level=-1,
                 profile_connector=-1, pause="auto", remote_start_stop=False, id_tags="", meter_interval_s=10,
                 clock=None, wall=None, discovered=False, profile_kind="absolute"):
        # One instance dict per box (MicroPython: 8 bytes an entry, in a table that
        # grows in steps: 29, 37, 47, 59 entries): the yes/no facts are bits of
        # `_flags`, and a box that is not discovered has no `discovered` entry.
        self.charge_point_id = charge_point_id
        self.password = password
        self.phases = phases
        self.failsafe_ma = failsafe_a * 1000
        self.unit = unit  # "A", "W" or "auto" until learned
        self.stack_level = stack_level  # the failsafe's; -1 until learned
        self.connector = profile_connector  # -1 until learned
        flags = _PAUSE_STOP if pause == "stop" else _PAUSE_AUTO if pause == "auto" else 0
        if remote_start_stop:
            flags |= _REMOTE_START_STOP
        if profile_kind == "relative":
            flags |= _RELATIVE
        self._flags = flags
        # A tuple (no spare room as a list has); the empty one is no object of its own.
        self.id_tags = tuple(tag.strip() for tag in id_tags.split(",") if tag.strip()) if id_tags else ()
        self.meter_interval_s = meter_interval_s
        if discovered:
            self.discovered = True
        self._clock = clock or getattr(time, "ticks_ms", None) or (lambda: time.monotonic_ns() // 1000000)
        self._wall = wall
        self.central = None  # set by net/ocpp.from_config
        self.status = ChargerStatus()
        self.last_error = None
        self.last_refusal = None
        self.last_refusal_ms = None
        self.last_refusal_s = None
        self.session = None
        self.connected_since_ms = None
        self.connected_since_s = None
        self.last_message = None
        self.last_message_ms = None
        self.last_message_s = None
        self.link_seq = 0  # bumped whenever one of the status fields above changed
        self.vendor = None
        self.model = None
        self.firmware = None
        self._pending_at = None  # ticks of the first Pending answer of this boot, None = not Pending
        self._setup = 0  # set-up steps done on this connection (see poll)
        self._setup_at = None
        # Set by the App: a callable that has poll() run at once by this box's task (then its command).
        self.poll_soon = None
        # Set by the App: a callable giving its count of guard decisions. A Pending box is let in with a
        # limit the guard decided once the box was available to it, not the command it held before.
        self.decisions = None
        self._ready_decision = None  # decisions() when the set-up of a Pending box ended
        self._box_clock = None  # (box seconds, our ticks) from the last timestamp
        self._sent_ma = None  # the dynamic limit the box has, None = unknown
        self._sent_at = 0
        self._transaction = 0
        self._meter_start = None
        self._next_transaction = 1
        self._command_seq = 0

    # ----------------------------------------------------------- connection

    def attach(self, session):
        """A connection of this box is up (net/ocpp.py)."""
        self.session = session
        self.connected_since_ms = self._clock()
        self.connected_since_s = self._wall_s()
        self.link_seq += 1
        self._flags &= ~(_BOOTED | _REGISTERED | _LET_IN | _LATE | _TALKED | _ACCEPTED)
        self._pending_at = None
        self._setup = 0
        self._setup_at = None
        self._sent_ma = None
        # Not commandable until its set-up is done: till then the guard
        # counts it as unavailable (its last offer as drawn).
        self.status.reachable = False
        self.status.error = "connected, no BootNotification yet"

    def detach(self, session, why):
        """Its connection `session` ended (why: text)."""
        if self.session is not session:
            return
        self.session = None
        self.connected_since_ms = None
        self.connected_since_s = None
        self.link_seq += 1
        self.status.reachable = False
        self.status.error = "not connected (%s)" % why
        self.last_error = self.status.error

    def heard(self):
        """Any message came: it is alive (one wall clock read: a long int on a 32-bit port, per message, not per tick)."""
        now = self._clock()
        wall = self._wall_s()
        self.last_message_ms = now
        self.last_message_s = wall
        if wall is not None and self.connected_since_s is None and self.connected_since_ms is not None:
            # Connected before the clock was set (NTP came later): dated now, from the ticks since.
            self.connected_since_s = wall - ticks_diff(now, self.connected_since_ms) // 1000
        self.link_seq += 1

    def answered(self):
        """The answer to the box's last call went out (net/ocpp.py): after a BootNotification, the set-up now."""
        if self._flags & _SETUP_SOON:
            self._flags &= ~_SETUP_SOON
            if self.poll_soon is not None:
                self.poll_soon()

    def _refused(self, text):
        # The last refusal, with when it came.
        self.last_refusal = text[:80]  # a box's CALLERROR code is its own text: bounded
        self.last_refusal_ms = self._clock()
        self.last_refusal_s = self._wall_s()
        self.link_seq += 1

    # ------------------------------------------------------------ messages in

    def on_call(self, action, payload):
        """The JSON text of the answer to the box's call `action` with `payload` (dict); raises OcppError."""
        self.last_message = action
        handler = _HANDLERS.get(action)
        if handler is None:
            raise _error("NotImplemented", "%s is not known" % action)
        if action != "BootNotification" and not self._flags & _BOOTED:
            self._flags |= _TALKED
        return handler(self, payload)

    def _boot(self, payload):
        vendor = _field(payload, "chargePointVendor", str)
        model = _field(payload, "chargePointModel", str)
        firmware = _field(payload, "firmwareVersion", str, False)
        self.vendor = vendor[:20]
        self.model = model[:20]
        self.firmware = firmware[:50] if firmware else None
        self.link_seq += 1
        self._flags |= _BOOTED
        if self._flags & (_LET_IN | _TALKED) or self.discovered:
            # Let in: set up while Pending (OCPP 1.6, 4.2), or a box that
            # talked before booting on this connection (only a box once
            # accepted may: a reconnect, whose BootNotification we asked for),
            # or a discovered box (never commanded). No slower than before:
            # a reconnect's set-up starts now, as it always did.
            if not self._flags & _LET_IN:
                self._setup = 0
                self._flags |= _SETUP_SOON
                self._sent_ma = None
                self.status.reachable = False
                self.status.error = "connected, setting up"
            elif self.status.error and self.status.error.startswith("Pending"):
                self.status.error = None
            self._flags = self._flags & ~_LET_IN | _REGISTERED
            self._pending_at = None
            return '{"status":"Accepted","currentTime":"%s","interval":%d}' % (iso_time(self._utc()), HEARTBEAT_S)
        if self._pending_at is None or self._flags & _REGISTERED:
            # A new boot: Pending until its profiles and configuration are
            # in, so it may not start a transaction before (4.2, 4.2.1). Its
            # BootNotification again after PENDING_S (the box's retry) is the
            # same boot: the set-up goes on.
            self._flags = self._flags & ~(_REGISTERED | _LATE | _ACCEPTED) | _SETUP_SOON
            self._pending_at = self._clock()
            self._setup = 0
            self._sent_ma = None
            status = self.status
            status.reachable = False
            status.error = "connected, Pending: setting up"
            # Pending, it sends no MeterValues: counted as drawing nothing
            # (4.2.1), not at its offer, which the guard would otherwise take
            # for part of the grid reading and give out again. A box that
            # charges all the same is then counted in the house's load: safe.
            status.tick_ms = self._clock()
            for phase in range(3):
                status.current_ma[phase] = 0 if phase < self.phases else None
        return '{"status":"Pending","currentTime":"%s","interval":%d}' % (iso_time(self._utc()), PENDING_S)

    def _heartbeat(self, payload):
        return '{"currentTime":"%s"}' % iso_time(self._utc())

    def _status_notification(self, payload):
        connector = _field(payload, "connectorId", int)
        error_code = _field(payload, "errorCode", str)
        state = _field(payload, "status", str)
        car = _car_of(state)
        if car is None:
            raise _error("PropertyConstraintViolation", "status: unknown value")
        self._learn_clock(payload.get("timestamp"))
        if connector == 1 or connector == 0 and state == "Faulted":
            status = self.status
            status.car = car
            status.tick_ms = self._clock()
            if state == "Faulted" or error_code != "NoError":
                info = payload.get("vendorErrorCode") or payload.get("info")
                status.error = "%s %s" % (state, error_code) + (" (%s)" % info[:32] if type(info) is str else "")
                self.last_error = status.error
            elif status.error and (status.error.startswith("Faulted") or status.error.startswith("Unavailable")):
                status.error = None
            if status.car != _CAR_CHARGING:
                for phase in range(3):
                    status.current_ma[phase] = 0 if status.car == _CAR_NONE else status.current_ma[phase]
        return "{}"

    def _meter_values(self, payload):
        _field(payload, "connectorId", int)
        values = payload.get("meterValue")
        if type(values) is dict:
            values = [values]  # one object instead of a list: seen in the field
        if type(values) is not list:
            raise _error("ProtocolError" if values is None else "TypeConstraintViolation", "meterValue must be a list")
        currents = [None, None, None]
        total_a = None
        power = None
        phase_power = None
        energy = None
        offered = None
        for item in values:
            if type(item) is not dict or type(item.get("sampledValue")) not in (list, dict):
                raise _error("TypeConstraintViolation", "meterValue items need a sampledValue list")
            self._learn_clock(item.get("timestamp"))
            samples = item["sampledValue"]
            if type(samples) is dict:
                samples = [samples]
            for sample in samples:
                if type(sample) is not dict:
                    raise _error("TypeConstraintViolation", "sampledValue items must be objects")
                measurand = sample.get("measurand") or "Energy.Active.Import.Register"
                unit = sample.get("unit") or ""
                phase = sample.get("phase")
                index = -1
                if type(phase) is str and phase[:1] == "L" and phase[1:2] in ("1", "2", "3") and phase[2:3] in ("", "-"):
                    if phase[2:] in ("", "-N"):
                        index = int(phase[1:2]) - 1
                    else:
                        continue  # a line-to-line value (L1-L2): not a phase's draw
                if measurand == "Current.Import":
                    value = decimal(sample.get("value"), 3)  # A -> mA
                    if value is None:
                        continue
                    if index < 0:
                        total_a = value
                    else:
                        currents[index] = value
                elif measurand == "Power.Active.Import":
                    value = decimal(sample.get("value"), 3 if unit == "kW" else 0)
                    if value is None:
                        continue
                    if index < 0:
                        power = value
                    else:
                        phase_power = (phase_power or 0) + value
                elif measurand == "Energy.Active.Import.Register":
                    value = decimal(sample.get("value"), 3 if unit == "kWh" else 0)
                    if value is not None and index < 0:
                        energy = value
                elif measurand == "Current.Offered":
                    value = decimal(sample.get("value"), 3)
                    if value is not None and index < 0:
                        offered = value
        status = self.status
        status.tick_ms = self._clock()
        if currents[0] is not None or currents[1] is not None or currents[2] is not None:
            for phase in range(3):
                status.current_ma[phase] = currents[phase] if phase < self.phases else None
        elif total_a is not None:
            # One current for the box: a single-phase box's L1; for more phases the
            # current of each (a charging car draws the same on each).
            for phase in range(3):
                status.current_ma[phase] = total_a if phase < self.phases else None
        if power is None:
            power = phase_power
        if power is not None:
            status.power_w = power
        if offered is not None:
            status.offered_ma = offered
        if energy is not None:
            if self._meter_start is None or energy < self._meter_start:
                self._meter_start = energy
            status.session_energy_wh = energy - self._meter_start
        return "{}"

    def _start_transaction(self, payload):
        _field(payload, "connectorId", int)
        tag = _field(payload, "idTag", str)
        meter_start = _field(payload, "meterStart", int)
        _field(payload, "timestamp", str)
        self._transaction = self._next_transaction
        self._next_transaction += 1
        self._meter_start = meter_start
        self.status.session_energy_wh = 0
        self._flags &= ~_STOPPED
        return '{"transactionId":%d,"idTagInfo":{"status":"%s"}}' % (self._transaction, self._tag_status(tag))

    def _stop_transaction(self, payload):
        transaction = _field(payload, "transactionId", int)
        meter_stop = _field(payload, "meterStop", int)
        _field(payload, "timestamp", str)
        if transaction == self._transaction and self._meter_start is not None and meter_stop >= self._meter_start:
            self.status.session_energy_wh = meter_stop - self._meter_start
        if transaction == self._transaction:
            self._transaction = 0
        tag = payload.get("idTag")
        if type(tag) is str:
            return '{"idTagInfo":{"status":"%s"}}' % self._tag_status(tag)
        return "{}"

    def _authorize(self, payload):
        return '{"idTagInfo":{"status":"%s"}}' % self._tag_status(_field(payload, "idTag", str))

    def _tag_status(self, tag):
        return "Accepted" if not self.id_tags or tag in self.id_tags else "Invalid"

    def _data_transfer(self, payload):
        _field(payload, "vendorId", str)
        return '{"status":"UnknownVendorId"}'

    def _notification(self, payload):
        _field(payload, "status", str)
        return "{}"

    # --------------------------------------------------------------- clocks

    def _learn_clock(self, text):
        seconds = parse_time(text)
        if seconds is not None:
            self._box_clock = (seconds, self._clock())

    def _wall_s(self):
        # Our wall clock in seconds since 1970 UTC, None while it is not set.
        wall = self._wall() if self._wall else None
        return wall if wall is not None and wall >= _CLOCK_VALID_S else None

    def _utc(self):
        # Now in seconds since 1970: our wall clock once set, else the box's
        # as its last timestamp told it (the profile's start must be in the
        # box's time), else our clock as it is.
        wall = self._wall() if self._wall else int(time.time())
        if wall >= _CLOCK_VALID_S or self._box_clock is None:
            return wall
        seconds, at = self._box_clock
        return seconds + ticks_diff(self._clock(), at) // 1000

    # ------------------------------------------------------------ calls out

    async def _call(self, action, payload):
        # (code, result) of one call; a refusal or failure noted.
        session = self.session
        if session is None or self.central is None:
            return "disconnected", None
        code, result = await self.central.call(session, action, payload)
        if code != "ok":
            self._refused("%s: %s" % (action, code))
        elif type(result) is not dict:
            code, result = "FormationViolation", None
        return code, result

    async def poll(self):
        """Set-up steps with a connected box (TriggerMessage, configuration, failsafe profile); True when connected.

        The box sends its values itself: nothing is asked here but what the
        configuration needs. Never raises.
        """
        try:
            await self._poll()
        except MemoryError:
            self.status.error = self.last_error = "out of memory"
        except Exception as err:
            self.status.error = self.last_error = "driver: %s" % type(err).__name__
        return self.session is not None

    async def _poll(self):
        if self.session is None or self.discovered:
            return
        now = self._clock()
        if self._setup_at is not None and ticks_diff(now, self._setup_at) < RETRY_MS:
            return
        if not self._flags & _BOOTED:
            if self._flags & _TALKED:
                self._setup_at = now
                code, result = await self._call("TriggerMessage", '{"requestedMessage":"BootNotification"}')
            return
        if (self._pending_at is not None and not self._flags & _LET_IN and not self._flags & _LATE
                and ticks_diff(now, self._pending_at) >= SETUP_DEADLINE_MS):
            # Bounded: reported once; the box stays Pending (it may not start
            # a transaction) and the set-up is tried again.
            self._flags |= _LATE
            self.status.reachable = False
            self._overdue()
            self.link_seq += 1
        if self._setup == 0:
            await self._learn()
            self._setup = 1
        if self._setup == 1:
            # Profiles another backend left behind would outrank ours: the
            # TxDefaultProfiles go (ours are sent again below). A box that
            # answers "Unknown" (none there) or refuses is no reason to stop.
            await self._call("ClearChargingProfile", '{"chargingProfilePurpose":"TxDefaultProfile"}')
            self._setup = 2
        if self._setup == 2:
            # Before the configuration: without a profile the box offers its
            # own maximum (a box with one stack level gets its failsafe as the
            # dynamic profile's second period, sent right after this poll).
            if not (self._flags & _SINGLE_LEVEL or await self._failsafe_profile()):
                self._setup_at = now
                return
            if self.meter_interval_s:
                await self._configure("MeterValueSampleInterval", "%d" % self.meter_interval_s)
                await self._configure("MeterValuesSampledData", _SAMPLED)
            self._setup = 3
            self._setup_at = None
            # Ready for the guard's commands: available from its next decision on.
            self._commanded()
            self._ready_decision = self.decisions() if self.decisions is not None else None

    async def _learn(self):
        # The unit and stack levels the box takes, when not configured.
        if self.unit != "auto" and self.stack_level >= 0:
            return
        code, result = await self._call(
            "GetConfiguration", '{"key":["ChargingScheduleAllowedChargingRateUnit","ChargeProfileMaxStackLevel"]}'
        )
        if code != "ok":
            return
        for item in result.get("configurationKey") or ():
            if type(item) is not dict or type(item.get("value")) is not str:
                continue
            value = item["value"]
            if item.get("key") == "ChargingScheduleAllowedChargingRateUnit" and self.unit == "auto":
                # "Current", "Power" or both (a CSL); amps when the box takes them.
                if "Current" in value:
                    self.unit = "A"
                elif "Power" in value:
                    self.unit = "W"
            elif item.get("key") == "ChargeProfileMaxStackLevel" and self.stack_level < 0:
                level = decimal(value, 0)
                if level == 0:
                    self._flags |= _SINGLE_LEVEL
                    self.stack_level = 0

    async def _configure(self, key, value):
        code, result = await self._call("ChangeConfiguration", '{"key":"%s","value":"%s"}' % (key, value))
        if code == "ok" and result.get("status") not in ("Accepted", "RebootRequired"):
            self._refused("ChangeConfiguration %s: %s" % (key, result.get("status")))

    def _unit(self):
        return "W" if self.unit == "W" else "A"

    def _limit(self, milliamps):
        # The limit as JSON number text in the box's unit.
        if self._unit() == "W":
            return "%d.0" % (milliamps * _VOLTAGE_V * self.phases // 1000)
        return "%d.%d" % (milliamps // 1000, milliamps % 1000 // 100)

    def _profile(self, profile_id, level, periods, duration):
        # Absolute from now (our clock, else the box's), or Relative: no
        # startSchedule, the box counts from its own start point.
        if self._flags & _RELATIVE:
            kind = "Relative"
            start = ""
        else:
            kind = "Absolute"
            start = '"startSchedule":"%s",' % iso_time(self._utc())
        return (
            '{"connectorId":%d,"csChargingProfiles":{"chargingProfileId":%d,"stackLevel":%d,'
            '"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":"%s",'
            '"chargingSchedule":{%s%s"chargingRateUnit":"%s","chargingSchedulePeriod":[%s]}}}'
            % (max(self.connector, 0), profile_id, level, kind, duration, start, self._unit(), periods)
        )

    async def _set_profile(self, profile_id, level, periods, duration, milliamps):
        # SetChargingProfile, trying connector 1 when 0 is refused (learned).
        # milliamps: the limit, named in a refusal ("6.0 A"; made only then).
        while True:
            code, result = await self._call("SetChargingProfile", self._profile(profile_id, level, periods, duration))
            if code == "ok" and result.get("status") == "Accepted":
                if self.connector < 0:
                    self.connector = 0
                return True
            self._refused("SetChargingProfile: %s (%s)" % (result.get("status") if code == "ok" else code,
                                                          self._shown(milliamps)))
            if code in ("ok", "NotSupported", "PropertyConstraintViolation") and self.connector < 0:
                self.connector = 1
                continue
            return False

    def _shown(self, milliamps):
        return self._limit(milliamps) + " " + self._unit()

    async def _failsafe_profile(self):
        # The lower profile: failsafe_a with no end. Refused, the dynamic
        # limit still goes out (it matters more); the reason is noted.
        level = self.stack_level if self.stack_level >= 0 else 0
        self.stack_level = level
        period = '{"startPeriod":0,"limit":%s}' % self._limit(self.failsafe_ma)
        if not await self._set_profile(_FAILSAFE_ID, level, period, "", self.failsafe_ma):
            # Why the box's own failsafe is not what failsafe_a says.
            if self.failsafe_ma == 0:
                self._flags |= _ZERO_REFUSED
                self.last_error = "the box refuses limit 0: its own failsafe cannot pause"
            else:
                self.last_error = "failsafe profile refused (%s)" % self.last_refusal
        return True

    async def apply(self, offered_ma):
        """Make the box offer at most `offered_ma` (0 = pause) by its dynamic profile; True when it has it.

        Sent when it differs from what the box has or is due for renewal
        (RENEW_MS); superseded calls return False. Never raises.
        """
        if self.discovered:
            return False
        self._command_seq += 1
        seq = self._command_seq
        while self._flags & _APPLYING:
            if seq != self._command_seq:
                return False
            await _sleep_ms(10)
        if seq != self._command_seq:
            return False
        self._flags |= _APPLYING
        try:
            return await self._apply(offered_ma)
        except MemoryError:
            status = self.status
            status.error = self.last_error = "out of memory"
            status.no_heap = True  # app.py sends it again after a collection
            return False
        except Exception as err:
            self.status.error = self.last_error = "driver: %s" % type(err).__name__
            return False
        finally:
            self._flags &= ~_APPLYING

    async def _apply(self, offered_ma):
        status = self.status
        if self.session is None:
            return False
        if not self._flags & _BOOTED or self._setup < 3:
            return False  # poll() finishes the set-up first
        milliamps = int(offered_ma) // 100 * 100  # 0.1 A steps, rounded down
        if milliamps < _MIN_A * 1000:
            milliamps = 0
        now = self._clock()
        if milliamps == self._sent_ma and ticks_diff(now, self._sent_at) < RENEW_MS:
            if not self._flags & (_REGISTERED | _LET_IN):
                await self._admit()
            return True
        if milliamps == 0 and (self._flags & _PAUSE_STOP or self._flags & _ZERO_REFUSED and self._flags & _PAUSE_AUTO):
            if not self._flags & _REGISTERED:
                # RemoteStop is not allowed while Pending (OCPP 1.6, 4.2), and
                # nothing else pauses this box: it is let in once it takes a
                # limit it can hold (the guard's next offer above 0).
                status.error = "Pending: waits for a limit above 0 (the box refuses 0)"
                return False
            if self._flags & (_PAUSE_STOP | _REMOTE_START_STOP):
                return await self._remote_stop()
            # Commandable above 0 all the same: reachable, with the reason.
            self._commanded()
            status.error = self.last_error = "cannot pause: the box refuses limit 0 (allow remote_start_stop)"
            return False
        periods = '{"startPeriod":0,"limit":%s}' % self._limit(milliamps)
        if self._flags & _SINGLE_LEVEL:
            if not (self.failsafe_ma == 0 and self._flags & _ZERO_REFUSED):
                periods += ',{"startPeriod":%d,"limit":%s}' % (DYNAMIC_VALID_S, self._limit(self.failsafe_ma))
            duration = ""
            level = self.stack_level
        else:
            duration = '"duration":%d,' % DYNAMIC_VALID_S
            level = self.stack_level + 1
        if await self._set_profile(_DYNAMIC_ID, level, periods, duration, milliamps):
            self._sent_ma = milliamps
            self._sent_at = now
            self._flags |= _ACCEPTED
            status.offered_ma = milliamps
            self._commanded()
            if not self._flags & _REGISTERED:
                if not self._flags & _LET_IN:
                    await self._admit()
            elif self._flags & _STOPPED and milliamps and self._flags & _REMOTE_START_STOP:
                await self._remote_start()
            return True
        if (milliamps == 0 or self._flags & _SINGLE_LEVEL and self.failsafe_ma == 0) and not self._flags & _ZERO_REFUSED:
            self._flags |= _ZERO_REFUSED  # a box that refuses 0: never sent again
            return await self._apply(offered_ma)
        if self._flags & _ACCEPTED:
            pass  # this box took such profiles before: a refusal now is no quirk to learn
        elif not self._flags & _SINGLE_LEVEL and level > 0:
            self._flags |= _SINGLE_LEVEL  # a box that refuses the higher level: one profile from now on
            return await self._apply(offered_ma)
        elif self.unit == "auto":
            self.unit = "W"  # the unit was not learned and amps are refused: watts then
            return await self._apply(offered_ma)
        # Not applied: unavailable to the guard (its last offer counts as drawn) until a command is.
        status.reachable = False
        status.error = self.last_error = self.last_refusal
        if self._flags & _LATE and not self._flags & _REGISTERED:
            self._overdue()
        return False

    async def _admit(self):
        # Set up while Pending, and the limit in force is one the guard
        # decided with the box available (the command of the pass that ended
        # the set-up was decided before): the box may come in now, at once
        # (TriggerMessage: it boots again before its interval, OCPP 1.6 4.2).
        if self._flags & _LET_IN or self.decisions is not None and self.decisions() == self._ready_decision:
            return
        self._flags |= _LET_IN
        if self.status.error and self.status.error.startswith("Pending"):
            self.status.error = None
        await self._call("TriggerMessage", '{"requestedMessage":"BootNotification"}')

    def _overdue(self):
        # The Pending box's error once SETUP_DEADLINE_MS passed without a profile taken.
        self.status.error = self.last_error = "Pending: took no charging profile in %d s (%s)" % (
            SETUP_DEADLINE_MS // 1000, self.last_refusal or "no answer")

    def _commanded(self):
        # A command is in force: the box is available to the guard.
        status = self.status
        status.reachable = True
        error = status.error
        if error and (error.startswith("connected") or error.startswith("SetChargingProfile")
                      or error.startswith("cannot pause") or error.startswith("pause refused")
                      or error == "out of memory"):  # a command or set-up step that found no heap: passed
            status.error = None

    async def _remote_stop(self):
        if self._transaction == 0:
            self._flags |= _STOPPED
            self._sent_ma = 0
            self._commanded()
            return True
        code, result = await self._call("RemoteStopTransaction", '{"transactionId":%d}' % self._transaction)
        if code == "ok" and result.get("status") == "Accepted":
            self._flags |= _STOPPED
            self._sent_ma = 0
            self._sent_at = self._clock()
            self.status.offered_ma = 0
            self._commanded()
            return True
        self.status.error = self.last_error = "pause refused: %s" % (self.last_refusal or "Rejected")
        return False

    async def _remote_start(self):
        tag = self.id_tags[0] if self.id_tags else "ChargeGuard"
        code, result = await self._call("RemoteStartTransaction", '{"connectorId":1,"idTag":"%s"}' % tag)
        if code == "ok" and result.get("status") == "Accepted":
            self._flags &= ~_STOPPED


async def _sleep_ms(ms):
    import asyncio

    await asyncio.sleep(ms / 1000)


_HANDLERS = {
    "BootNotification": OcppCharger._boot,
    "Heartbeat": OcppCharger._heartbeat,
    "StatusNotification": OcppCharger._status_notification,
    "MeterValues": OcppCharger._meter_values,
    "StartTransaction": OcppCharger._start_transaction,
    "StopTransaction": OcppCharger._stop_transaction,
    "Authorize": OcppCharger._authorize,
    "DataTransfer": OcppCharger._data_transfer,
    "FirmwareStatusNotification": OcppCharger._notification,
    "DiagnosticsStatusNotification": OcppCharger._notification,
}


def from_config(entry, platform, timeout_ms):
    """The driver for a `chargers[]` entry of type "ocpp"; registered with the central system (net/ocpp.py)."""
    from chargeguard.net import ocpp

    point = OcppCharger(
        entry["charge_point_id"],
        entry["password"],
        entry["phases"],
        entry["failsafe_a"],
        entry["unit"],
        entry["stack_level"],
        entry["profile_connector"],
        entry["pause"],
        entry["remote_start_stop"],
        entry["id_tags"],
        entry["meter_interval_s"],
        clock=platform.ticks_ms,
        wall=getattr(platform, "wall_time", None),
        profile_kind=entry["profile_kind"],
    )
    point.status.error = "not connected"
    ocpp.register(point)
    return point
