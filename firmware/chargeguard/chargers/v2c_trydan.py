"""V2C Trydan wallbox over its local HTTP API (the one Home Assistant and evcc use).

Reading: `GET /RealTimeData` (JSON) fills `status`. `ChargeState` 0/1/2 means
no car / car connected / charging, but the box keeps 2 after a pause, so a
box reporting `Paused` = 1 counts as connected, not charging. Per-phase
currents come from `IntensityMeasure_L1..3` (firmware 2.5.0 on); older
firmware omits them, and some report zeros while power flows: both give None,
so the guard counts the offered current instead.

Commanding: `GET /write/<Key>=<Value>`, answered by the body `OK`.
`apply(offered_ma)` maps the guard's limit to the box:

- Rounding: Intensity = offered_ma // 1000 (whole amps, rounded down, so the
  box is never allowed more than the guard gave), at most 32 A and at most the
  box's MaxIntensity. Below 6 A, or below the box's MinIntensity, no charging
  current fits: the box is paused instead (a car cannot charge below 6 A).
- Pausing writes `Paused=1` and nothing else (Intensity is left as it is).
- Charging writes, in this order and each only if the box differs:
  `PauseDynamic=1` (only when the box's own dynamic control is on, so it
  stops overriding us), then `Intensity`, then `Paused=0`. Intensity goes
  before the resume so a paused box restarts at the new limit, never at an
  old higher one; when lowering a charging box the Intensity write alone
  makes it safe.
- A value the box already has (per the last poll or the last accepted write)
  is not re-sent. A write counts only when the box answers HTTP 200 with body
  `OK`; otherwise the driver keeps believing the old value, stops the
  sequence, and the next apply retries.

Nothing here raises: every failure ends up as a short text in
`status.error` (and in `last_error`, which later successes do not clear).
"""

import time

import asyncio

from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN, ChargerStatus
from chargeguard.net.http import HttpClient
from micropython import const

TIMEOUT_MS = const(2000)  # per HTTP request; the box answers in well under 1 s on a sane Wi-Fi
MIN_A = const(6)  # IEC 61851: no charging below 6 A
MAX_A = const(32)  # the box's hardware maximum
REALTIME_MAX_BODY = const(2048)  # /RealTimeData is ~800 bytes
WRITE_MAX_BODY = const(64)  # a write answers "OK"
_FLOAT_LIMIT = const(1000000000)  # no Trydan value comes near this

_PHASE_KEYS = ("IntensityMeasure_L1", "IntensityMeasure_L2", "IntensityMeasure_L3")
# V2C's published sample payload spells the first key this way; accept both.
_PHASE1_ALIAS = "IntensityMeasure_L1y"


class _BadField(Exception):
    pass


def _default_clock():
    ticks = getattr(time, "ticks_ms", None)
    if ticks is not None:
        return ticks
    return lambda: time.monotonic_ns() // 1000000


def _number(data, key):
    # A JSON number or None when absent; anything else is a malformed reply.
    value = data.get(key)
    if value is None or isinstance(value, int):
        return value
    # The comparison also rejects NaN, which CPython's json accepts.
    if isinstance(value, float) and -_FLOAT_LIMIT < value < _FLOAT_LIMIT:
        return value
    raise _BadField(key)


def _required_int(data, key):
    value = _number(data, key)
    if value is None:
        raise _BadField(key)
    return int(value)


def _flag(data, key):
    value = _number(data, key)
    if value is None:
        return None
    if value != 0 and value != 1:
        raise _BadField(key)
    return int(value)


def _milli(value):
    # A float in a unit (A, kWh) to an integer in thousandths (mA, Wh).
    return int(round(value * 1000))


class V2CTrydan:
    """Driver for one V2C Trydan; `status` is updated in place by `poll()`."""

    def __init__(self, host, port=80, timeout_ms=TIMEOUT_MS, clock=None):
        self.host = host
        self.port = port
        self.timeout_ms = timeout_ms
        self._clock = clock or _default_clock()
        self.status = ChargerStatus()
        self.last_error = None
        self.firmware_version = None
        self.locked = None  # the box's Locked flag (we never change it)
        self.writes_sent = 0  # write requests sent, for diagnostics
        # Polls and writes use separate clients so a command never queues
        # behind a slow poll; each is serialised by its own lock.
        self._reader = HttpClient(max_body=REALTIME_MAX_BODY)
        self._writer = HttpClient(max_body=WRITE_MAX_BODY)
        self._poll_lock = asyncio.Lock()
        self._apply_lock = asyncio.Lock()
        # What we believe the box has (None = unknown, so the next apply writes).
        self._intensity = None
        self._paused = None
        self._dynamic = None
        self._pause_dynamic = None
        self._min_a = None
        self._max_a = None
        self._poll_error = None
        # Bumped by every accepted write: a poll that was in flight meanwhile
        # may carry the box's older state and must not overwrite ours.
        self._write_gen = 0
        self._command_seq = 0  # numbers apply() calls; the newest one wins

    async def poll(self):
        """Read /RealTimeData into `status`. Returns True on success; never raises."""
        try:
            async with self._poll_lock:
                return await self._poll()
        except Exception as err:
            return self._poll_failed("driver: %s" % type(err).__name__, False)

    async def apply(self, offered_ma):
        """Command the box to offer `offered_ma` (0 = pause).

        Returns True when the box has the commanded state; never raises.
        Calls are serialised; one still waiting when a newer call arrives is
        superseded and returns False without touching the box, so a dead box
        never builds a queue of stale commands.
        """
        self._command_seq += 1
        seq = self._command_seq
        try:
            async with self._apply_lock:
                if seq != self._command_seq:
                    return False
                ok = await self._apply(int(offered_ma))
        except Exception as err:
            self._note_error("driver: %s" % type(err).__name__)
            return False
        if ok:
            self.status.error = self._poll_error
        return ok

    def target_amps(self, offered_ma):
        """The Intensity (A) that `apply(offered_ma)` sets, or 0 for a pause."""
        if offered_ma < MIN_A * 1000:
            return 0
        amps = offered_ma // 1000
        if amps > MAX_A:
            amps = MAX_A
        if self._max_a is not None and amps > self._max_a:
            amps = self._max_a
        if self._min_a is not None and amps < self._min_a:
            # The box refuses less than its MinIntensity, and more would
            # exceed the guard's limit.
            return 0
        return amps

    # -- reading ----------------------------------------------------------

    async def _poll(self):
        gen = self._write_gen
        client = self._reader
        code = await client.get(self.host, self.port, "/RealTimeData", self.timeout_ms)
        if code == 0:
            return self._poll_failed(client.error, True)
        if code != 200:
            return self._poll_failed("HTTP %d" % code, False)
        try:
            data = client.json()
        except Exception:
            # ValueError on MicroPython and CPython; RecursionError on deep nesting.
            return self._poll_failed("invalid JSON", False)
        if not isinstance(data, dict):
            return self._poll_failed("invalid JSON", False)
        try:
            return self._parse(data, gen)
        except _BadField as bad:
            return self._poll_failed("bad %s" % bad.args[0], False)

    def _parse(self, data, gen):
        # Validate everything before touching `status`, so a bad reply never
        # leaves it half updated.
        state = _required_int(data, "ChargeState")
        paused = _flag(data, "Paused")
        if paused is None:
            raise _BadField("Paused")
        intensity = _required_int(data, "Intensity")
        power = _number(data, "ChargePower")
        energy = _number(data, "ChargeEnergy")
        slave_error = _number(data, "SlaveError")
        dynamic = _flag(data, "Dynamic")
        pause_dynamic = _flag(data, "PauseDynamic")
        locked = _flag(data, "Locked")
        min_a = self._limit(_number(data, "MinIntensity"))
        max_a = self._limit(_number(data, "MaxIntensity"))
        l1 = _number(data, _PHASE_KEYS[0])
        if l1 is None:
            l1 = _number(data, _PHASE1_ALIAS)
        l2 = _number(data, _PHASE_KEYS[1])
        l3 = _number(data, _PHASE_KEYS[2])
        version = data.get("FirmwareVersion")

        status = self.status
        status.reachable = True
        status.tick_ms = self._clock()
        if state == 0:
            status.car = CAR_NONE
        elif state == 1 or (state == 2 and paused):
            status.car = CAR_CONNECTED
        elif state == 2:
            status.car = CAR_CHARGING
        else:
            status.car = CAR_UNKNOWN
        status.power_w = None if power is None else int(round(power))
        status.session_energy_wh = None if energy is None else _milli(energy)
        currents = status.current_ma
        if (l1 is None and l2 is None and l3 is None) or (
            power and power > 0 and not l1 and not l2 and not l3
        ):
            # No per-phase data, or firmware that fills the keys with zeros
            # while power flows: unknown, not zero.
            currents[0] = currents[1] = currents[2] = None
        else:
            currents[0] = None if l1 is None else _milli(l1)
            currents[1] = None if l2 is None else _milli(l2)
            currents[2] = None if l3 is None else _milli(l3)

        error = None
        if state < 0 or state > 2:
            error = "ChargeState %d" % state
        elif slave_error:
            error = "SlaveError %d" % int(slave_error)
        self._poll_error = error
        status.error = error
        if error is not None:
            self.last_error = error

        if isinstance(version, str):
            self.firmware_version = version
        self.locked = locked
        self._min_a = min_a
        self._max_a = max_a
        if gen == self._write_gen:
            status.offered_ma = 0 if paused else intensity * 1000
            self._intensity = intensity
            self._paused = paused
            self._dynamic = dynamic
            self._pause_dynamic = pause_dynamic
        return True

    def _limit(self, value):
        # MinIntensity / MaxIntensity only count when they make sense.
        if value is None:
            return None
        value = int(value)
        if value < MIN_A or value > MAX_A:
            return None
        return value

    def _poll_failed(self, message, lost):
        status = self.status
        status.reachable = False
        self._note_error(message)
        self._poll_error = message
        if lost:
            # No answer at all: the box may have rebooted meanwhile, so
            # forget what it had and let the next apply write everything.
            self._intensity = None
            self._paused = None
        return False

    def _note_error(self, message):
        self.status.error = message
        self.last_error = message

    # -- commanding -------------------------------------------------------

    async def _apply(self, offered_ma):
        amps = self.target_amps(offered_ma)
        if amps == 0:
            if self._paused != 1 and not await self._write("Paused", 1):
                return False
            self.status.offered_ma = 0
            return True
        if self._dynamic == 1 and self._pause_dynamic != 1:
            if not await self._write("PauseDynamic", 1):
                return False
        if self._intensity != amps and not await self._write("Intensity", amps):
            return False
        if self._paused != 0 and not await self._write("Paused", 0):
            return False
        self.status.offered_ma = amps * 1000
        return True

    async def _write(self, key, value):
        client = self._writer
        self.writes_sent += 1
        code = await client.get(self.host, self.port, "/write/%s=%d" % (key, value), self.timeout_ms)
        if code == 0:
            self.status.reachable = False
            self._note_error("write %s: %s" % (key, client.error))
            return False
        if code != 200:
            self._note_error("write %s: HTTP %d" % (key, code))
            return False
        if not client.body_is(b"OK"):
            self._note_error("write %s=%d refused" % (key, value))
            return False
        self._write_gen += 1
        if key == "Intensity":
            self._intensity = value
        elif key == "Paused":
            self._paused = value
        elif key == "PauseDynamic":
            self._pause_dynamic = value
        return True


def from_config(entry, platform, timeout_ms=TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type v2c_trydan."""
    return V2CTrydan(entry["host"], entry["port"], timeout_ms, platform.ticks_ms)
