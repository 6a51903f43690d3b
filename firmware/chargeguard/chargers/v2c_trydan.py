"""V2C Trydan wallbox over its local HTTP API (the one Home Assistant and evcc use).

Reading: `GET /RealTimeData` (JSON, ~800 bytes) fills `status`. The body is
not parsed into Python objects (a dict of ~35 keys takes 3-5 KB of heap, which
a busy device may not have): the driver's keys are looked up in the HTTP
client's buffer and their numbers become integers (W, Wh, mA, rounded half to
even) without allocating. The body must be one JSON object (first byte `{`,
last `}`, blanks aside); the rest of its syntax is not checked. Of a key given
twice the first counts (a JSON parser keeps the last); `null` in an optional
key counts as absent; `true`/`false` are no numbers.

`ChargeState` 0/1/2 means no car / car connected / charging, but the box
keeps 2 after a pause, so a box reporting `Paused` = 1 counts as connected,
not charging. Per-phase currents come from `IntensityMeasure_L1..3` (firmware
2.5.0 on); older firmware omits them, and some report zeros while power
flows: both give None, so the guard counts the offered current instead.

Commanding: `GET /write/<Key>=<Value>`, answered by the body `OK`.
`set_lock(locked)` writes `Locked` (the box's own lock, read back from
`Locked` into `status.locked`).
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
JSON" for a body that is not one JSON object, "bad <Key>" for a field that is
missing or not a number (or 10**9 or more after scaling), "ChargeState <n>" /
"SlaveError <n>" for a box reporting a fault, "write <Key>: ..." and "write
<Key>=<Value> refused" for a write, "out of memory" for a MemoryError,
"driver: <exception type>" for another surprise.
"""

import time

import asyncio

from chargeguard.core.model import ChargerStatus
from chargeguard.net.http import HttpClient, apply_box, fail_box, poll_box, poll_buffer, put, put_int
from micropython import const

_TIMEOUT_MS = const(2000)  # per HTTP request; the box answers in well under 1 s on a sane Wi-Fi
_MIN_A = const(6)  # IEC 61851: no charging below 6 A
_MAX_A = const(32)  # the box's hardware maximum
_REALTIME_MAX_BODY = const(2048)  # /RealTimeData is ~800 bytes
_WRITE_MAX_BODY = const(64)  # a write answers "OK"
_PATH_SIZE = const(32)  # "/write/PauseDynamic=1" and the like, in a buffer made once
# No Trydan value comes near _LIMIT (after scaling); stopping at 9 digits
# keeps every step a small int on an ESP32 (31-bit small ints).
_LIMIT = const(1000000000)
_LIMIT_10 = const(100000000)
_EXP_CAP = const(100)  # exponents are counted up to about this

# chargeguard.core.model's CAR_* values, repeated as private consts: an
# imported name would be a global (heap) here. The tests check them.
_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)


# The keys poll() reads, each with its quotes, in one bytes constant (a bytes
# object per key would cost ~0.8 KB more heap). A _K_* const is a key's place
# in it, counting from 0.
_KEYS = (
    b'"ChargeState""Paused""Intensity""ChargePower""ChargeEnergy""SlaveError""Dynamic""PauseDynamic"'
    b'"MinIntensity""MaxIntensity""IntensityMeasure_L1""IntensityMeasure_L1y""IntensityMeasure_L2""IntensityMeasure_L3"'
    b'"ChargeTime""Locked"'
)
_K_STATE = const(0)
_K_PAUSED = const(1)
_K_INTENSITY = const(2)
_K_POWER = const(3)
_K_ENERGY = const(4)
_K_SLAVE_ERROR = const(5)
_K_DYNAMIC = const(6)
_K_PAUSE_DYNAMIC = const(7)
_K_MIN = const(8)
_K_MAX = const(9)
_K_L1 = const(10)
_K_L1Y = const(11)
_K_L2 = const(12)
_K_L3 = const(13)
_K_TIME = const(14)
_K_LOCKED = const(15)


def _past(buf, pos, low=0, high=32):
    # Past the bytes low..high from pos: by default JSON whitespace (and other
    # control bytes, which no valid body has there). The body's closing "}"
    # stops it.
    while low <= buf[pos] <= high:
        pos += 1
    return pos


def _value(buf, end, index, need=0, scale=0):
    # The JSON number of the key number `index` of _KEYS in buf[:end], as an
    # int times 10**scale, or None when the key is absent or null. `need`
    # bits: 1 = required (null too is then bad), 2 = a 0/1 flag, 4 = round
    # (half to even, as round() does) instead of truncating toward zero (as
    # int() does). A missing required key, or a value that is no number or
    # is 10**9 or more in size after scaling, raises KeyError(name).
    #
    # The scan reads the bytes in place and builds no object, so a poll never
    # fails for want of heap. Comparing the key with its quotes keeps
    # "Intensity" from matching "MaxIntensity" or "IntensityMeasure_L1"; a
    # match not followed by ':' is a string value, and the search goes on.
    # The first match wins, so of duplicated keys the first counts. A key of
    # ours inside a nested value would match too: the box sends none.
    #
    # buf[end - 1] must be "}" (_take checks): no scan runs past it, so
    # reads need no bounds checks.
    key = 0
    while index:
        key = _KEYS.find(b'"', key + 1) + 1
        index -= 1
    last = _KEYS.find(b'"', key + 1) - key  # the closing quote, from `key`
    value = _LIMIT  # out of range: bad, unless a number replaces it
    neg = False
    pos = 0
    while True:
        pos = buf.find(b'"', pos, end)
        if pos < 0:
            if need & 1:
                break
            return None
        i = 1
        while i <= last and buf[pos + i] == _KEYS[key + i]:
            i += 1
        pos = _past(buf, pos + i)
        if i > last and buf[pos] == 58:  # ':'
            pos = _past(buf, pos + 1)
            if buf.find(b"null", pos, pos + 4) == pos and not need & 1:
                return None  # as absent, as it always was for an optional key
            # -?digits(.digits)?([eE][+-]?digits)?: first find where the
            # parts are, then add up the digits that the scale and the
            # exponent make whole.
            neg = buf[pos] == 45  # '-'
            start = pos = pos + neg
            pos = _past(buf, pos, 48, 57)
            whole = pos - start  # digits before the point; 0 = no number
            if buf[pos] == 46:  # '.'
                pos = _past(buf, pos + 1, 48, 57)
            stop = pos
            exp = 0
            if buf[pos] | 32 == 101:  # 'e' or 'E'
                pos += 1
                sign = buf[pos] == 45
                if buf[pos] in b"+-":
                    pos += 1
                first = pos
                while 48 <= buf[pos] <= 57:
                    if exp < _EXP_CAP:  # beyond it the value is out of range or 0 anyway
                        exp = exp * 10 + buf[pos] - 48
                    pos += 1
                if pos == first:
                    whole = 0
                if sign:
                    exp = -exp
            # The number must end where the member does ("16abc", "1.2.3",
            # "true", a string do not).
            pos = _past(buf, pos)
            if whole and buf[pos] in b",}":
                value = 0
                keep = whole + scale + exp  # digits that end up before the point
                next_digit = 0  # the first digit dropped
                sticky = False  # a later digit dropped is not 0
                count = 0
                while start < stop or count < keep:
                    digit = 0  # an exponent or scale past the last digit
                    if start < stop:
                        digit = buf[start] - 48
                        start += 1
                        if digit < 0:
                            continue  # the point
                    if count < keep:
                        if value >= _LIMIT_10:
                            value = _LIMIT  # 10 digits or more: out of range
                            break
                        value = value * 10 + digit
                    elif count == keep:
                        next_digit = digit
                    elif digit:
                        sticky = True
                    count += 1
                if need & 4:
                    if next_digit > 5 or next_digit == 5 and (sticky or value & 1):
                        value += 1
                elif need & 2 and (next_digit or sticky):
                    value = 2  # a flag with a fraction: not 0 or 1
            break
    if value >= _LIMIT or need & 2 and (value > 1 or neg and value):
        raise KeyError(_KEYS[key + 1 : key + last].decode())
    return -value if neg else value


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
        # The polls of all boxes read their bodies into one shared buffer
        # (2 KB of heap per box less): a poll whose answer arrives while
        # another box's is being read is skipped (net/http.py, "busy").
        self._reader = HttpClient(_REALTIME_MAX_BODY, poll_buffer())
        self._writer = HttpClient(_WRITE_MAX_BODY)
        # A write's path, built in place: a command makes no string (it
        # must not fail for want of heap; the text is made on failure only).
        self._path = bytearray(_PATH_SIZE)
        self._path[:7] = b"/write/"
        self._path_mv = memoryview(self._path)
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
        return await poll_box(self, b"/RealTimeData")

    def _take(self, gen):
        # Fills `status` and `_box` from the /RealTimeData body in the
        # reader's buffer; `gen` is _write_gen when the request went out.
        # Returns False when the body is not one JSON object; raises
        # KeyError(name) for a bad field. Allocates nothing on success (the
        # MicroPython test checks): the body is scanned in place for our keys
        # only, as a parsed reply (a dict of ~35 keys, 3-5 KB) could fail
        # for want of heap. Beyond the outer braces the JSON is not
        # validated: what we read is checked, the rest is the box's business.
        client = self._reader
        buf = client.buf
        end = client.body_len
        start = 0
        while start < end and buf[start] <= 32:
            start += 1
        while end > start and buf[end - 1] <= 32:
            end -= 1
        if end - start < 2 or buf[start] != 123 or buf[end - 1] != 125:  # '{' ... '}'
            return False
        # Validate everything before touching `status`, so a bad reply never
        # leaves it half updated.
        state = _value(buf, end, _K_STATE, 1)
        paused = _value(buf, end, _K_PAUSED, 3)
        intensity = _value(buf, end, _K_INTENSITY, 1)
        power = _value(buf, end, _K_POWER, 4)  # W
        energy = _value(buf, end, _K_ENERGY, 4, 3)  # kWh -> Wh
        slave_error = _value(buf, end, _K_SLAVE_ERROR)
        dynamic = _value(buf, end, _K_DYNAMIC, 2)
        pause_dynamic = _value(buf, end, _K_PAUSE_DYNAMIC, 2)
        min_a = _value(buf, end, _K_MIN)
        max_a = _value(buf, end, _K_MAX)
        # Phase currents, A -> mA.
        l1 = _value(buf, end, _K_L1, 4, 3)
        if l1 is None:
            # V2C's published sample payload spells the first key this way; accept both.
            l1 = _value(buf, end, _K_L1Y, 4, 3)
        l2 = _value(buf, end, _K_L2, 4, 3)
        l3 = _value(buf, end, _K_L3, 4, 3)
        charge_s = _value(buf, end, _K_TIME)  # the session's charging time (s)
        locked = _value(buf, end, _K_LOCKED, 2)  # optional: None when the box does not say

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
        status.power_w = power
        status.session_energy_wh = energy
        status.session_s = charge_s
        if gen == self._write_gen:
            status.locked = None if locked is None else locked == 1
        # No per-phase data, or firmware that fills the keys with zeros
        # while power flows: unknown, not zero.
        if not (l1 or l2 or l3) and ((power and power > 0) or (l1 is None and l2 is None and l3 is None)):
            l1 = l2 = l3 = None
        currents = status.current_ma
        currents[0] = l1
        currents[1] = l2
        currents[2] = l3

        error = None
        # "ChargeState 5", "SlaveError 10": built from the keys, as every
        # long string constant costs heap.
        if state < 0 or state > 2:
            error = "ChargeState" + " %d" % state
        elif slave_error:
            error = "SlaveError" + " %d" % slave_error
        self._poll_error = status.error = error
        if error is not None:
            self.last_error = error

        # MinIntensity / MaxIntensity only count within 6..32 A (apply() checks).
        box = self._box
        box["MinIntensity"] = min_a or 0
        box["MaxIntensity"] = max_a or 0
        if gen == self._write_gen:
            status.offered_ma = 0 if paused else intensity * 1000
            box["Intensity"] = intensity
            box["Paused"] = paused
            box["Dynamic"] = dynamic
            box["PauseDynamic"] = pause_dynamic
        return True

    async def apply(self, offered_ma):
        """Command the box to offer `offered_ma` (0 = pause).

        Returns True when the box has the commanded state; never raises.
        Calls are serialised; one still waiting when a newer call arrives is
        superseded and returns False without touching the box, so a dead box
        never builds a queue of stale commands.
        """
        return await apply_box(self, offered_ma)

    async def _command(self, offered_ma):
        # Under apply_box: True when the box has the command.
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
            if box["Paused"] != 1 and not await self._write("Paused", _K_PAUSED, 1):
                return False
            amps = 0
        else:
            if box["Dynamic"] == 1 and box["PauseDynamic"] != 1 and not await self._write("PauseDynamic", _K_PAUSE_DYNAMIC, 1):
                return False
            if box["Intensity"] != amps and not await self._write("Intensity", _K_INTENSITY, amps):
                return False
            if box["Paused"] != 0 and not await self._write("Paused", _K_PAUSED, 0):
                return False
        self.status.offered_ma = amps * 1000
        return True

    async def set_lock(self, locked):
        """Lock (True) or unlock (False) the box: `Locked=1` / `Locked=0`.

        A locked Trydan does not charge until it is unlocked (V2C's "lock
        EVSE" switch); the guard's own limits are unaffected. Returns True
        when the box accepted it (status.locked then follows at once);
        never raises. Serialised with apply(): the guard's commands and this
        never interleave their writes.
        """
        while self._applying:
            await asyncio.sleep(0.01)  # as in poll()
        self._applying = True
        try:
            if not await self._write("Locked", _K_LOCKED, 1 if locked else 0):
                return False
            self.status.locked = bool(locked)
        except MemoryError:
            return self._failed("out of memory", 0, True)
        except Exception as err:
            return self._failed("driver: %s" % type(err).__name__)
        finally:
            self._applying = False
        self.status.error = self._poll_error
        return True

    def _failed(self, message, poll=0, no_heap=False):
        return fail_box(self, message, poll, no_heap)

    def _forget(self):
        # No answer at all: the box may have rebooted (net/http.fail_box).
        self._box["Intensity"] = self._box["Paused"] = None

    async def _write(self, key, index, value):
        # GET /write/<key>=<value>; `index`: the key's place in _KEYS (the
        # path's bytes come from there). True when the box answered "OK".
        client = self._writer
        self.writes_sent += 1
        at = 0
        while index:
            at = _KEYS.find(b'"', at + 1) + 1
            index -= 1
        path = self._path
        end = put_int(path, put(path, put(path, 7, _KEYS, at + 1, _KEYS.find(b'"', at + 1)), b"="), value)
        code = await client.get(self.host, self.port, self._path_mv[:end], self.timeout_ms)
        if code == 200 and client.body_is(b"OK"):
            self._write_gen += 1
            self._box[key] = value
            return True
        if code == 0:
            self.status.reachable = False
        # "write Intensity=10 refused", "write Intensity: timeout" (short
        # string pieces: a long constant costs more heap).
        if code == 200:
            return self._failed("write " + key + "=%d refused" % value)
        return self._failed("write " + key + ": " + (client.error or "HTTP %d" % code), 0, client.no_heap)


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type v2c_trydan."""
    return V2CTrydan(entry["host"], entry["port"], timeout_ms, platform.ticks_ms)
