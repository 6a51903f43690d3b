"""OpenEVSE (the ESP32 WiFi/Ethernet gateway, firmware 4.1 and later) over its local HTTP API.

Sources: the OpenEVSE ESP32 firmware (openevse_esp32_firmware: src/evse_man.h
for the claims, clients and priorities; the /status and /claims handlers) and
the Home Assistant client python-openevse-http (which the emulator is checked
against). HTTP authentication on the box must be off: this driver sends none,
and a box that wants it answers 401 (shown as "HTTP 401").

Reading: `GET /status` (a flat JSON object of ~60 keys, 1.3-1.8 KB; at most
2048 bytes are read, into the wallbox drivers' shared body buffer). Numbers
are read in place (net/jsonscan.py):

- `state`: 1 no car (A), 2 connected (B), 3 charging (C), 254 sleeping and
  255 disabled (paused: connected when `vehicle` is 1, else no car), 0
  starting, 4..11 faults (vent required, diode check, GFCI, no ground, stuck
  relay, GFCI self-test, over temperature, over current): the car state is
  then unknown and the error "state <n>".
- `amp`: the measured current in mA (the firmware scales amps by 1000), on
  each configured phase (the box measures one line; a three-phase OpenEVSE
  draws the same on each). While charging, a value under 1 A counts as not
  measured (the guard then counts the offer): a box that reports amperes
  instead of milliamperes must never make a charging car look idle.
- `pilot`: the current the box offers (A); `power` (W) when the firmware
  sends it, else voltage x amp x phases; `session_energy` (Wh), else
  `wattsec` / 3600; `elapsed` (s).

Commanding: a claim, `POST /claims/17223` (ChargeGuard's client id, 0x4347
"CG", an unregistered id) with a JSON body, answered HTTP 200
`{"msg":"done"}`. The box gives every HTTP claim the API priority, 500:
above its timer (100), boost (200) and solar divert (50), below a manual
override from its own web page or app (1000), RFID (1030), OCPP (1050) and
its limits (1100). `max_current`, though, caps the current whatever the
priorities ("overrides the charge current irrespective of priority"), so a
manual override can start a car ChargeGuard paused but never draw more than
ChargeGuard allows:

- charge at N A: `{"state":"active","charge_current":N,"max_current":N,"auto_release":false}`
- pause (below 6 A): `{"state":"disabled","max_current":6,"auto_release":false}`

N = offered_ma // 1000 (rounded down), at most 32. `auto_release` false keeps
the claim after the car leaves, so the next car starts within ChargeGuard's
limit too. A claim is sent when the command changes, after the box did not
answer a poll (it may have rebooted: claims live in its RAM), and when a poll
shows the box does not follow it (offering more than N, or not paused):
nothing is re-sent as a keep-alive, the box keeps a claim for ever.

If ChargeGuard dies: the claim stays in force (the last current, or paused)
until the box restarts; then the box's own configured maximum current
applies. That is its failsafe: set the maximum current in the box's settings
to what the circuit may carry without ChargeGuard.

Errors: the HTTP client's error or "HTTP <n>", "invalid JSON", "bad <key>",
"state <n>", "overridden on the box" (a poll shows the box charging above
the claim, or not paused, after the claim was accepted), "claim refused",
"claim: <error>", "out of memory", "driver: <exception type>". Nothing raises.
"""

import time

from chargeguard.core.model import ChargerStatus
from chargeguard.net import jsonscan
from chargeguard.net.http import HttpClient, apply_box, fail_box, poll_box, poll_buffer, put, put_int
from micropython import const

_TIMEOUT_MS = const(2000)
_MIN_A = const(6)
_MAX_A = const(32)
_STATUS_MAX_BODY = const(2048)
_CLAIM_MAX_BODY = const(256)
_BODY_SIZE = const(96)  # the longest claim body, {"state":"active",...}, is 79 bytes
CLIENT_ID = const(17223)  # 0x4347, "CG"
CLAIM_PATH = "/claims/17223"
_UNSENT = const(-1)

_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)


class OpenEvse:
    """Driver for one OpenEVSE; `status` is updated in place by `poll()`.

    phases: the configured charger phases (the measured current is shown on each).
    """

    def __init__(self, host, port=80, timeout_ms=_TIMEOUT_MS, phases=1, clock=None):
        self.host = host
        self.port = port
        self.timeout_ms = timeout_ms
        self.phases = phases
        self._clock = clock or getattr(time, "ticks_ms", None) or (lambda: time.monotonic_ns() // 1000000)
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0
        self._reader = HttpClient(_STATUS_MAX_BODY, poll_buffer())
        self._writer = HttpClient(_CLAIM_MAX_BODY)
        # The claim's path and body, made once and filled in place: a
        # command makes no string (the texts are made on failure only).
        self._claim_path = CLAIM_PATH.encode()
        self._body = bytearray(_BODY_SIZE)
        self._body_mv = memoryview(self._body)
        self._polling = False
        self._applying = False
        self._sent = _UNSENT  # amps of the claim the box accepted (0 = pause), _UNSENT = none
        self._poll_error = None
        self._write_gen = 0
        self._command_seq = 0

    async def poll(self):
        """Read /status into `status`. True on success; never raises."""
        return await poll_box(self, "/status")

    def _take(self, gen):
        client = self._reader
        buf = client.buf
        end = jsonscan.object_end(buf, client.body_len)
        if end < 0:
            return False
        num = jsonscan.number
        state = num(buf, end, b'"state"', 0, -1, jsonscan.FLAG_REQUIRED)
        vehicle = num(buf, end, b'"vehicle"', 0, -1, jsonscan.FLAG_BOOL)
        amp = num(buf, end, b'"amp"')  # mA
        pilot = num(buf, end, b'"pilot"')  # A
        voltage = num(buf, end, b'"voltage"')
        power = num(buf, end, b'"power"')
        energy = num(buf, end, b'"session_energy"')
        if energy is None:
            energy = num(buf, end, b'"wattsec"')
            if energy is not None:
                energy = (energy + 1800) // 3600
        elapsed = num(buf, end, b'"elapsed"')

        status = self.status
        status.reachable = True
        status.tick_ms = self._clock()
        error = None
        paused = state == 254 or state == 255
        if state == 1:
            status.car = _CAR_NONE
        elif state == 2:
            status.car = _CAR_CONNECTED
        elif state == 3:
            status.car = _CAR_CHARGING
        elif paused and vehicle is not None:
            status.car = _CAR_CONNECTED if vehicle else _CAR_NONE
        else:
            status.car = _CAR_UNKNOWN
            if not paused:
                error = "state %d" % state
        if amp is not None and (amp < 0 or state == 3 and amp < 1000):
            amp = None  # see the module doc: never make a charging car look idle
        currents = status.current_ma
        for line in range(3):
            currents[line] = amp if line < self.phases else None
        if power is None and amp is not None and voltage is not None:
            power = voltage * amp * self.phases // 1000
        status.power_w = power
        status.session_energy_wh = energy
        status.session_s = elapsed
        if gen == self._write_gen:
            status.offered_ma = 0 if paused else (None if pilot is None else pilot * 1000)
            sent = self._sent
            if sent != _UNSENT and error is None:
                # The box does not follow the accepted claim: lost (reboot) or
                # overridden on the box; apply() claims again.
                if (sent == 0 and not paused) or (sent and pilot is not None and pilot > sent):
                    self._sent = _UNSENT
                    error = "overridden on the box"
        self._poll_error = status.error = error
        if error is not None:
            self.last_error = error
        return True

    async def apply(self, offered_ma):
        """Command the box to offer at most `offered_ma` (0 = pause); True when it has it. Never raises."""
        return await apply_box(self, offered_ma)

    async def _command(self, offered_ma):
        # Under apply_box: True when the box has the command.
        amps = int(offered_ma) // 1000
        if amps > _MAX_A:
            amps = _MAX_A
        if amps < _MIN_A:
            amps = 0
        if self._sent != amps and not await self._claim(amps):
            return False
        self.status.offered_ma = amps * 1000
        return True

    async def _claim(self, amps):
        client = self._writer
        self.writes_sent += 1
        if amps:
            buf = self._body
            end = put_int(buf, put(buf, 0, b'{"state":"active","charge_current":'), amps)
            end = put(buf, put_int(buf, put(buf, end, b',"max_current":'), amps), b',"auto_release":false}')
            body = self._body_mv[:end]
        else:
            body = b'{"state":"disabled","max_current":6,"auto_release":false}'
        code = await client.get(self.host, self.port, self._claim_path, self.timeout_ms, body)
        if code == 200 and client.buf.find(b'"done"', 0, client.body_len) >= 0:
            self._write_gen += 1
            self._sent = amps
            return True
        if code == 0:
            self.status.reachable = False
        if code == 200:
            return self._failed("claim refused")
        return self._failed("claim: " + (client.error or "HTTP %d" % code), 0, client.no_heap)

    def _failed(self, message, poll=0, no_heap=False):
        return fail_box(self, message, poll, no_heap)

    def _forget(self):
        # No answer at all: the box may have rebooted (net/http.fail_box).
        self._sent = _UNSENT  # the claim may be lost


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type openevse."""
    return OpenEvse(entry["host"], entry["port"], timeout_ms, entry["phases"], platform.ticks_ms)
