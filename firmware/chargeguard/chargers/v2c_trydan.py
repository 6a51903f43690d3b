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
`status.error` (and in `last_error`, which later successes do not clear):
the HTTP client's error or "HTTP <code>" for a request that failed, "invalid
JSON", "bad <Key>" for a field that is missing or not a number, "ChargeState
<n>" / "SlaveError <n>" for a box reporting a fault, "write <Key>: ..." and
"write <Key>=<Value> refused" for a write, "driver: <exception type>" for a
surprise.
"""

import time

import asyncio

from chargeguard.core.model import ChargerStatus
from chargeguard.net.http import HttpClient
from micropython import const

_TIMEOUT_MS = const(2000)  # per HTTP request; the box answers in well under 1 s on a sane Wi-Fi
_MIN_A = const(6)  # IEC 61851: no charging below 6 A
_MAX_A = const(32)  # the box's hardware maximum
_REALTIME_MAX_BODY = const(2048)  # /RealTimeData is ~800 bytes
_WRITE_MAX_BODY = const(64)  # a write answers "OK"
_FLOAT_LIMIT = const(1000000000)  # no Trydan value comes near this

# chargeguard.core.model's CAR_* values, repeated as private consts: an
# imported name would be a global (heap) here. The tests check them.
_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)


def _field(data, key, need=0):
    # The JSON number at `key`, or None when absent. `need`: 1 = required,
    # 2 = a 0/1 flag, 3 = both. Anything else is a malformed reply and
    # raises KeyError(key).
    value = data.get(key)
    if value is None:
        if need & 1:
            raise KeyError(key)
        return None
    # The range check also rejects NaN and infinities, which CPython's json accepts.
    if not (isinstance(value, int) or isinstance(value, float) and -_FLOAT_LIMIT < value < _FLOAT_LIMIT):
        raise KeyError(key)
    if need & 2 and value != 0 and value != 1:
        raise KeyError(key)
    return value


class V2CTrydan:
    """Driver for one V2C Trydan; `status` is updated in place by `poll()`.

    `clock` is the platform's ticks_ms (default: time.ticks_ms on MicroPython,
    a monotonic millisecond clock on CPython); it stamps `status.tick_ms`.
    """

    def __init__(self, host, port=80, timeout_ms=_TIMEOUT_MS, clock=None):
        self.host = host
        self.port = port
        self.timeout_ms = timeout_ms
        self._clock = clock or getattr(time, "ticks_ms", None) or (lambda: time.monotonic_ns() // 1000000)
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0  # write requests sent, for diagnostics
        # Polls and writes use separate clients so a command never queues
        # behind a slow poll; each kind of call is serialised by its flag.
        self._reader = HttpClient(_REALTIME_MAX_BODY)
        self._writer = HttpClient(_WRITE_MAX_BODY)
        self._polling = False
        self._applying = False
        # What we believe the box has, by its key (None = unknown, so the
        # next apply writes it; 0 = no Min/MaxIntensity known).
        self._box = {
            "Intensity": None,
            "Paused": None,
            "Dynamic": None,
            "PauseDynamic": None,
            "MinIntensity": 0,
            "MaxIntensity": 0,
        }
        self._poll_error = None
        # Bumped by every accepted write: a poll that was in flight meanwhile
        # may carry the box's older state and must not overwrite ours.
        self._write_gen = 0
        self._command_seq = 0  # numbers apply() calls; the newest one wins

    async def poll(self):
        """Read /RealTimeData into `status`. Returns True on success; never raises.

        Calls are serialised: one made while another runs waits for it.
        """
        while self._polling:
            # Look again after 10 ms. The app never overlaps calls on one
            # driver; asyncio.Lock would load a module (~0.7 KB heap) for this.
            await asyncio.sleep(0.01)
        self._polling = True
        try:
            gen = self._write_gen
            client = self._reader
            code = await client.get(self.host, self.port, "/RealTimeData", self.timeout_ms)
            if code != 200:
                # Code 0 is no answer at all: see _failed().
                return self._failed(client.error or "HTTP %d" % code, 2 if code == 0 else 1)
            try:
                data = client.json()
                if not isinstance(data, dict):
                    raise ValueError
            except MemoryError:
                return self._failed("out of memory", 1)
            except Exception:
                # ValueError on MicroPython and CPython; RecursionError on deep nesting.
                return self._failed("invalid JSON", 1)
            # Validate everything before touching `status`, so a bad reply
            # never leaves it half updated.
            state = int(_field(data, "ChargeState", 1))
            paused = int(_field(data, "Paused", 3))
            intensity = int(_field(data, "Intensity", 1))
            power = _field(data, "ChargePower")
            energy = _field(data, "ChargeEnergy")
            slave_error = _field(data, "SlaveError")
            dynamic = _field(data, "Dynamic", 2)
            pause_dynamic = _field(data, "PauseDynamic", 2)
            min_a = _field(data, "MinIntensity")
            max_a = _field(data, "MaxIntensity")
            # IntensityMeasure_L1..L3 (one format string costs less heap
            # than three keys).
            key = "IntensityMeasure_L%d"
            l1 = _field(data, key % 1)
            if l1 is None:
                # V2C's published sample payload spells the first key this way; accept both.
                l1 = _field(data, key % 1 + "y")
            l2 = _field(data, key % 2)
            l3 = _field(data, key % 3)
            data = None  # the parsed reply is large: let it go at once

            status = self.status
            status.reachable = True
            status.tick_ms = self._clock()
            if state == 0:
                status.car = _CAR_NONE
            elif state == 1 or (state == 2 and paused):
                status.car = _CAR_CONNECTED
            elif state == 2:
                status.car = _CAR_CHARGING
            else:
                status.car = _CAR_UNKNOWN
            status.power_w = None if power is None else int(round(power))
            status.session_energy_wh = None if energy is None else int(round(energy * 1000))
            # No per-phase data, or firmware that fills the keys with
            # zeros while power flows: unknown, not zero.
            unknown = not (l1 or l2 or l3) and ((power and power > 0) or (l1 is None and l2 is None and l3 is None))
            k = 0
            for amps in (l1, l2, l3):
                status.current_ma[k] = None if unknown or amps is None else int(round(amps * 1000))
                k += 1

            error = None
            # "ChargeState 5", "SlaveError 10": built from the keys, as
            # every long string constant costs heap.
            if state < 0 or state > 2:
                error = "ChargeState" + " %d" % state
            elif slave_error:
                error = "SlaveError" + " %d" % int(slave_error)
            self._poll_error = status.error = error
            if error is not None:
                self.last_error = error

            # MinIntensity / MaxIntensity only count within 6..32 A (apply() checks).
            box = self._box
            box["MinIntensity"] = int(min_a or 0)
            box["MaxIntensity"] = int(max_a or 0)
            if gen == self._write_gen:
                status.offered_ma = 0 if paused else intensity * 1000
                box["Intensity"] = intensity
                box["Paused"] = paused
                box["Dynamic"] = dynamic
                box["PauseDynamic"] = pause_dynamic
            return True
        except KeyError as bad:
            return self._failed("bad %s" % bad.args[0], 1)
        except Exception as err:
            return self._failed("driver: %s" % type(err).__name__, 1)
        finally:
            self._polling = False

    async def apply(self, offered_ma):
        """Command the box to offer `offered_ma` (0 = pause).

        Returns True when the box has the commanded state; never raises.
        Calls are serialised; one still waiting when a newer call arrives is
        superseded and returns False without touching the box, so a dead box
        never builds a queue of stale commands.
        """
        self._command_seq += 1
        seq = self._command_seq
        while True:
            if seq != self._command_seq:
                return False  # superseded while it waited
            if not self._applying:
                break
            await asyncio.sleep(0.01)  # as in poll()
        self._applying = True
        try:
            box = self._box
            # Whole amps, rounded down: never more than the guard gave.
            amps = int(offered_ma) // 1000
            if amps > _MAX_A:
                amps = _MAX_A
            limit = box["MaxIntensity"]
            if _MIN_A <= limit < amps:
                amps = limit
            if amps < _MIN_A or amps < box["MinIntensity"] <= _MAX_A:
                # No charging current fits (the box refuses less than its
                # MinIntensity, and more would exceed the guard's limit):
                # pause, and leave Intensity as it is.
                if box["Paused"] != 1 and not await self._write("Paused", 1):
                    return False
                amps = 0
            else:
                if box["Dynamic"] == 1 and box["PauseDynamic"] != 1 and not await self._write("PauseDynamic", 1):
                    return False
                if box["Intensity"] != amps and not await self._write("Intensity", amps):
                    return False
                if box["Paused"] != 0 and not await self._write("Paused", 0):
                    return False
            self.status.offered_ma = amps * 1000
        except Exception as err:
            return self._failed("driver: %s" % type(err).__name__)
        finally:
            self._applying = False
        self.status.error = self._poll_error
        return True

    def _failed(self, message, poll=0):
        # Notes a failure and returns False. `poll`: 0 = an apply, 1 = a poll
        # (the box is unreachable or talks nonsense), 2 = a poll that got no
        # answer at all: the box may have rebooted meanwhile, so forget what
        # it had and let the next apply write everything.
        status = self.status
        status.error = self.last_error = message
        if poll:
            status.reachable = False
            self._poll_error = message
            if poll == 2:
                self._box["Intensity"] = self._box["Paused"] = None
        return False

    async def _write(self, key, value):
        client = self._writer
        self.writes_sent += 1
        pair = "%s=%d" % (key, value)
        code = await client.get(self.host, self.port, "/write/" + pair, self.timeout_ms)
        if code == 200 and client.body_is(b"OK"):
            self._write_gen += 1
            self._box[key] = value
            return True
        if code == 0:
            self.status.reachable = False
        # "write Intensity=10 refused", "write Intensity: timeout" (short
        # string pieces: a long constant costs more heap).
        if code == 200:
            return self._failed("write " + pair + " refused")
        return self._failed("write " + key + ": " + (client.error or "HTTP %d" % code))


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type v2c_trydan."""
    return V2CTrydan(entry["host"], entry["port"], timeout_ms, platform.ticks_ms)
