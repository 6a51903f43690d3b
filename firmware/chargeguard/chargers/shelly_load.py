"""A Shelly relay (Plus / Pro / Gen3 / Gen4: the RPC API) as an on/off load: a heater, a pump, a boiler.

DESIGN.md §4 "on/off loads": a "charger" with one power step, under the same
gates and priorities as the wallboxes. The configuration gives the load's
current as min_a = max_a (rounded up, at least 6 A: below that ChargeGuard
reserves 6 A for it, which is safe), so the guard offers either 0 (off) or
that step (on); the distribution and the solar modes treat it as a charger
that takes exactly that much.

Source: Shelly's Gen2+ API documentation, Switch component
(shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch): over HTTP,
`GET /rpc/Switch.GetStatus?id=<id>` answers the status object (`output`
true/false; `apower` W, `current` A, `voltage` V where the device meters;
`errors` such as "overtemp", "overpower", "overvoltage" only when present),
and `GET /rpc/Switch.Set?id=<id>&on=true|false[&toggle_after=<s>]` switches,
with an optional flip-back timer in seconds, and answers {"was_on": bool}.
Gen1 devices (Shelly 1, Plug S, 2.5; the /relay API) are not served by this
driver.

Reading (every poll): `reachable`; `car` is CAR_CONNECTED while the relay is
off or on without drawing (a thermostat that opened: `apower` below
_IDLE_W), CAR_CHARGING when on and drawing; `current_ma` is the metered
current on a one-phase load's phase (None on a relay that does not meter,
and on every phase of a load configured with more phases, where the relay
switches a contactor and meters only its coil: the guard then counts the
offered step on each phase); `power_w`; `offered_ma` the step when
the relay is on, else 0. An `errors` list is shown as "shelly <first
error>".

Commanding: on when the guard offers at least the step, off otherwise, and
only when that differs from what the relay has (or is unknown).

Failsafe in the relay itself: every "on" carries toggle_after=FAILSAFE_S,
so a relay that stops hearing from ChargeGuard (ChargeGuard dead, the LAN
down) switches its load off by itself within FAILSAFE_S; while the load
should stay on the "on" is sent again every RENEW_MS (each Switch.Set with
toggle_after arms the timer anew). Off is the safe state of a load: nothing
is charged, nothing trips. Set the relay's own "power on default" to off in
the Shelly app, so a power cut does not switch it on unasked.

Errors (`status.error`, `last_error`): the HTTP client's error or "HTTP <n>",
"invalid JSON", "bad <key>", "shelly <error>", "switch refused",
"switch: <error>", "driver: <exception type>". Nothing raises.
"""

import time

from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, ChargerStatus
from chargeguard.core.ticks import ticks_diff
from chargeguard.net import jsonscan
from chargeguard.net.http import HttpClient, apply_box, fail_box, poll_box, poll_buffer
from micropython import const

_TIMEOUT_MS = const(2000)
_STATUS_MAX_BODY = const(1024)  # a metering relay's status is about 350 bytes
_SET_MAX_BODY = const(128)  # {"was_on":false}
FAILSAFE_S = const(300)  # an "on" the relay was not told again lapses to off after this
RENEW_MS = const(60000)  # "on" is sent again this often while it should last (well inside FAILSAFE_S)
_IDLE_W = const(20)  # on, but drawing less than this: the load's own thermostat is open


class ShellyLoad:
    """Driver for one Shelly Gen2+ relay switching one load; `status` is updated in place by `poll()`.

    step_ma: the load's current when on (the entry's min_a, mA); phases:
    the load's phases (1: the relay's metered current is the load's);
    switch_id: the Switch component (0 on single-relay devices); clock: the
    platform's ticks_ms.
    """

    def __init__(self, host, port=80, timeout_ms=_TIMEOUT_MS, step_ma=6000, phases=1, switch_id=0, clock=None):
        self.host = host
        self.phases = phases
        self.port = port
        self.timeout_ms = timeout_ms
        self.step_ma = step_ma
        self._clock = clock or getattr(time, "ticks_ms", None) or (lambda: time.monotonic_ns() // 1000000)
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0
        # The paths as bytes, made once: a request then makes no string.
        self._status_path = ("/rpc/Switch.GetStatus?id=%d" % switch_id).encode()
        self._set_on = ("/rpc/Switch.Set?id=%d&on=true&toggle_after=%d" % (switch_id, FAILSAFE_S)).encode()
        self._set_off = ("/rpc/Switch.Set?id=%d&on=false" % switch_id).encode()
        self._reader = HttpClient(_STATUS_MAX_BODY, poll_buffer())
        self._writer = HttpClient(_SET_MAX_BODY)
        self._polling = False
        self._applying = False
        self._on = None  # what the relay has as far as we know; None = unknown
        self._on_at = 0  # ticks of the last accepted "on"
        self._poll_error = None
        self._write_gen = 0
        self._command_seq = 0

    async def poll(self):
        """Read the relay's status into `status`. True on success; never raises."""
        return await poll_box(self, self._status_path)

    def _take(self, gen):
        # Everything validated first: a bad answer never half-fills `status`.
        client = self._reader
        buf = client.buf
        end = jsonscan.object_end(buf, client.body_len)
        if end < 0:
            return False
        num = jsonscan.number
        output = num(buf, end, b'"output"', 0, -1, jsonscan.FLAG_REQUIRED | jsonscan.FLAG_BOOL)
        power = num(buf, end, b'"apower"')
        current = num(buf, end, b'"current"', 3)  # A -> mA
        error = None
        at = buf.find(b'"errors"', 0, end)
        if at >= 0:
            # ["overtemp", ...]: the first one names the fault.
            start = buf.find(b'"', buf.find(b"[", at, end), end)
            stop = buf.find(b'"', start + 1, end) if start >= 0 else -1
            if start >= 0 and stop > start + 1:
                error = "shelly " + str(bytes(buf[start + 1 : stop]), "utf-8")
        status = self.status
        status.reachable = True
        status.tick_ms = self._clock()
        status.car = CAR_CHARGING if output and (power is None or power >= _IDLE_W) else CAR_CONNECTED
        currents = status.current_ma
        if self.phases == 1:
            currents[0] = current
            currents[1] = currents[2] = 0 if current is not None else None
        status.power_w = power
        self._poll_error = status.error = error
        if error is not None:
            self.last_error = error
        if gen == self._write_gen:
            status.offered_ma = self.step_ma if output else 0
            self._on = output == 1
        return True

    async def apply(self, offered_ma):
        """Switch the load on when `offered_ma` reaches its step, else off. True when the relay has it; never raises."""
        return await apply_box(self, offered_ma)

    async def _command(self, offered_ma):
        # Under apply_box: True when the box has the command.
        on = int(offered_ma) >= self.step_ma
        due = self._on is not on or (on and ticks_diff(self._clock(), self._on_at) >= RENEW_MS)
        if due and not await self._switch(on):
            return False
        self.status.offered_ma = self.step_ma if on else 0
        return True

    async def _switch(self, on):
        client = self._writer
        self.writes_sent += 1
        code = await client.get(self.host, self.port, self._set_on if on else self._set_off, self.timeout_ms)
        if code == 200 and client.buf.find(b'"was_on"', 0, client.body_len) >= 0:
            self._write_gen += 1
            self._on = on
            if on:
                self._on_at = self._clock()
            return True
        if code == 0:
            self.status.reachable = False
        if code == 200:
            return self._failed("switch refused")
        return self._failed("switch: " + (client.error or "HTTP %d" % code), 0, client.no_heap)

    def _failed(self, message, poll=0, no_heap=False):
        return fail_box(self, message, poll, no_heap)

    def _forget(self):
        # No answer at all: the box may have rebooted (net/http.fail_box).
        self._on = None


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type shelly_load (its step: min_a; switch 0)."""
    return ShellyLoad(
        entry["host"], entry["port"], timeout_ms, entry["min_a"] * 1000, entry["phases"], 0, platform.ticks_ms
    )
