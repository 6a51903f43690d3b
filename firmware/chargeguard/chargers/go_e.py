"""go-e Charger (HOME+/HOMEfix hardware 3, Gemini) over its local HTTP API v2.

Source: go-e's own API v2 documentation (github.com/goecharger/go-eCharger-API-v2,
http-en.md for the requests, apikeys-en.md and API_KEYS_FIRMWARE/ for the keys,
modbus-en.md for the volatile/EEPROM split of the current). The owner must allow
"local HTTP API v2" in the go-e app.

Reading: `GET /api/status?filter=car,err,frc,amp,tcl,psm,nrg,wh` (firmware
051.4 and later take the comma list): only the keys used, so the body stays
small (about 200 bytes; at most 1024 are read, into the wallbox drivers'
shared body buffer) and the box does less work. Numbers are read in place
(net/jsonscan.py), nothing is parsed into objects.

- `car` (Unknown/Error=0, Idle=1, Charging=2, WaitCar=3, Complete=4, Error=5;
  null = no link to the charge controller): 1 no car, 2 charging, 3 and 4
  connected (3 is also a car the box is not allowed to charge: forced off), 0,
  5 and null unknown with "car <n>" as the error. `err` other than 0 is shown
  as "err <n>" (the box's fault code).
- `nrg`: U L1 L2 L3 N, I L1 L2 L3 (A), P L1 L2 L3 N total (W), pf...: the
  per-phase currents are nrg[4..6], the power nrg[11]; `wh` is the energy of
  the session (since the car was connected, Wh).
- `amp` is the owner's current (requestedCurrent, set in the app, kept in
  flash), `tcl` the temporary current limit below it, `frc` the force state
  (Neutral=0, Off=1, On=2), `psm` the phase switch mode (0 auto, 1 force one
  phase, 2 force three phases, boxes that can switch; firmware 055.5 on).
  The box offers min(amp, tcl) unless forced off: that is `status.offered_ma`.

Commanding: `GET /api/set?<key>=<value>`; a write counts only on HTTP 200 with
`"<key>":true` in the answer (go-e does not document the answer; the box
sends the JSON result per key).

- Current: through `tcl` ONLY, the temporary current limit that "does not
  change the user current limit" and is not written to flash. `amp` (and
  Modbus holding register 300, "saved in the EEPROM, max. write cycles approx.
  100 000") is never written: the guard changes the current many times a
  day. tcl is whole amps: offered_ma // 1000 (rounded down, never more than
  the guard gave), at most 32 A and at most the owner's `amp`.
- Keep-alive: the box drops tcl "after 10 min if not updated regularly", so
  tcl is written again every 4 minutes (TCL_RENEW_MS), and whenever a poll
  shows the box without it. Nothing else is re-sent unless the box differs.
- A box that answers but refuses tcl (a firmware without it) is switched
  off (`frc=1`) whenever the owner's `amp` is above the guard's offer: it
  cannot be limited, so it must not charge at amp; the error stays
  "write tcl=<n> refused".
- Pause (below 6 A): `frc=1` (off), and nothing else. Resume: tcl first,
  then `frc=2` (on), so a paused box restarts at the new limit, never at an
  old higher one. frc is written only when it changes.
- Phase mode (`psm`) is read and shown, never switched: a box forced to three
  phases while the configuration says fewer is a wrong count for the guard
  (it would under-count this box), so that is reported as the error
  "psm 2: box on 3 phases"; a box on fewer phases than configured is safe.

If ChargeGuard dies: the box keeps the last tcl for up to 10 minutes, then
falls back to the owner's `amp`, the current set in the go-e app. That is the
box's failsafe, so set `amp` in the app to what the circuit may carry without
ChargeGuard (ChargeGuard can only command up to it). A box paused by frc=1 stays
paused until someone changes frc (app, button or ChargeGuard back).

Errors (`status.error`, `last_error`): the HTTP client's error or "HTTP <n>",
"invalid JSON" (the body is not one JSON object), "bad <key>" (missing where
required, or not a number), "car <n>", "err <n>", "psm 2: box on 3 phases",
"write <key>=<n> refused", "write <key>: <error>", "out of memory",
"driver: <exception type>". Nothing raises.
"""

import time

from chargeguard.core.model import ChargerStatus
from chargeguard.core.ticks import ticks_diff
from chargeguard.net import jsonscan
from chargeguard.net.http import HttpClient, apply_box, fail_box, poll_box, poll_buffer, put, put_int
from micropython import const

_TIMEOUT_MS = const(2000)
_MIN_A = const(6)  # IEC 61851
_MAX_A = const(32)
_STATUS_MAX_BODY = const(1024)  # the filtered status is about 200 bytes
_SET_MAX_BODY = const(256)  # {"tcl":true}
TCL_RENEW_MS = const(240000)  # tcl lapses 10 min after the last write: renew well before

_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)

STATUS_PATH = "/api/status?filter=car,err,frc,amp,tcl,psm,nrg,wh"
# The two keys a command writes, quoted as the answer has them ({"tcl":true}).
_TCL = b'"tcl"'
_FRC = b'"frc"'
_PATH_SIZE = const(24)  # "/api/set?tcl=32", built in place


class GoeCharger:
    """Driver for one go-e Charger (API v2); `status` is updated in place by `poll()`.

    phases: the configured charger phases (1..3), to see a box forced to more.
    clock: the platform's ticks_ms.
    """

    def __init__(self, host, port=80, timeout_ms=_TIMEOUT_MS, phases=3, clock=None):
        self.host = host
        self.port = port
        self.timeout_ms = timeout_ms
        self.phases = phases
        self._clock = clock or getattr(time, "ticks_ms", None) or (lambda: time.monotonic_ns() // 1000000)
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0
        self.phase_mode = None  # psm as last read (0 auto, 1 one phase, 2 three), None = the box has none
        self._reader = HttpClient(_STATUS_MAX_BODY, poll_buffer())
        self._writer = HttpClient(_SET_MAX_BODY)
        self._path = bytearray(_PATH_SIZE)
        self._path[:9] = b"/api/set?"
        self._path_mv = memoryview(self._path)
        self._polling = False
        self._applying = False
        # What we believe the box has (None = unknown: the next apply writes it).
        self._tcl = None
        self._frc = None
        self._amp = 0  # the owner's current, 0 = unknown
        self._tcl_at = 0  # ticks of the last accepted tcl write
        self._poll_error = None
        self._write_gen = 0
        self._command_seq = 0

    async def poll(self):
        """Read the filtered status into `status`. True on success; never raises."""
        return await poll_box(self, STATUS_PATH)

    def _take(self, gen):
        # Validates everything first, then fills `status`: a bad answer never
        # leaves it half updated. Raises ValueError(key) for a bad field.
        client = self._reader
        buf = client.buf
        end = jsonscan.object_end(buf, client.body_len)
        if end < 0:
            return False
        num = jsonscan.number
        car = num(buf, end, b'"car"')
        err = num(buf, end, b'"err"')
        frc = num(buf, end, b'"frc"', 0, -1, jsonscan.FLAG_REQUIRED)
        amp = num(buf, end, b'"amp"', 0, -1, jsonscan.FLAG_REQUIRED)
        tcl = num(buf, end, b'"tcl"')
        psm = num(buf, end, b'"psm"')
        l1 = num(buf, end, b'"nrg"', 3, 4)  # A -> mA
        l2 = num(buf, end, b'"nrg"', 3, 5)
        l3 = num(buf, end, b'"nrg"', 3, 6)
        power = num(buf, end, b'"nrg"', 0, 11)
        energy = num(buf, end, b'"wh"')

        status = self.status
        status.reachable = True
        status.tick_ms = self._clock()
        error = None
        if car == 1:
            status.car = _CAR_NONE
        elif car == 2:
            status.car = _CAR_CHARGING
        elif car == 3 or car == 4:
            status.car = _CAR_CONNECTED
        else:
            status.car = _CAR_UNKNOWN
            error = "car %s" % car  # "car None": no link to the charge controller
        currents = status.current_ma
        currents[0] = l1
        currents[1] = l2
        currents[2] = l3
        status.power_w = power
        status.session_energy_wh = energy
        self.phase_mode = psm
        if error is None and err:
            error = "err %d" % err
        if error is None and self.phases < 3 and psm == 2:
            error = "psm 2: box on 3 phases"
        self._poll_error = status.error = error
        if error is not None:
            self.last_error = error
        self._amp = amp if _MIN_A <= amp <= _MAX_A else 0
        if gen == self._write_gen:
            limit = amp if tcl is None or tcl > amp else tcl
            status.offered_ma = 0 if frc == 1 else limit * 1000
            self._frc = frc
            if tcl != self._tcl:
                self._tcl = tcl  # lost (lapsed, box rebooted) or changed by someone: rewritten by apply()
        return True

    async def apply(self, offered_ma):
        """Command the box to offer at most `offered_ma` (0 = pause).

        True when the box has it; never raises. Serialised; a call superseded
        while it waits returns False without touching the box.
        """
        return await apply_box(self, offered_ma)

    async def _command(self, offered_ma):
        # Under apply_box: True when the box has the command.
        amps = int(offered_ma) // 1000
        if amps > _MAX_A:
            amps = _MAX_A
        if self._amp and amps > self._amp:
            amps = self._amp  # the box never offers more than the owner's amp
        if amps < _MIN_A:
            if self._frc != 1 and not await self._write(_FRC, 1):
                return False
            amps = 0
        else:
            due = self._tcl != amps or ticks_diff(self._clock(), self._tcl_at) >= TCL_RENEW_MS
            if due and not await self._write(_TCL, amps):
                # A box that answers but refuses tcl (a firmware without
                # it) cannot be limited: off, rather than charging at the
                # owner's amp above the guard's offer.
                error = self.status.error
                if self.status.reachable and self._frc != 1 and (not self._amp or self._amp > amps):
                    await self._write(_FRC, 1)
                self.status.error = self.last_error = error  # the cause, not what followed
                return False
            if self._frc != 2 and not await self._write(_FRC, 2):
                return False
        self.status.offered_ma = amps * 1000
        return True

    def _failed(self, message, poll=0, no_heap=False):
        return fail_box(self, message, poll, no_heap)

    def _forget(self):
        # No answer at all: the box may have rebooted (net/http.fail_box).
        self._tcl = self._frc = None

    async def _write(self, quoted, value):
        # GET /api/set?<key>=<value>; `quoted`: _TCL or _FRC. The path is
        # built in a buffer made once: no string unless it fails.
        client = self._writer
        self.writes_sent += 1
        path = self._path
        end = put_int(path, put(path, put(path, 9, quoted, 1, 4), b"="), value)
        code = await client.get(self.host, self.port, self._path_mv[:end], self.timeout_ms)
        accepted = False
        if code == 200:
            end = jsonscan.object_end(client.buf, client.body_len)
            try:
                accepted = end > 0 and jsonscan.number(client.buf, end, quoted, 0, -1, jsonscan.FLAG_BOOL) == 1
            except ValueError:
                pass  # an error text instead of true
        if accepted:
            self._write_gen += 1
            if quoted is _TCL:
                self._tcl = value
                self._tcl_at = self._clock()
            else:
                self._frc = value
            return True
        if code == 0:
            self.status.reachable = False
        key = "tcl" if quoted is _TCL else "frc"
        if code == 200:
            return self._failed("write " + key + "=%d refused" % value)
        return self._failed("write " + key + ": " + (client.error or "HTTP %d" % code), 0, client.no_heap)


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type go_e."""
    return GoeCharger(entry["host"], entry["port"], timeout_ms, entry["phases"], platform.ticks_ms)
