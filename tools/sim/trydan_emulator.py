"""Emulator of a V2C Trydan's local HTTP API on loopback (CPython, host side).

It follows the box's published local API and what the real clients
(pytrydan, Home Assistant's v2c integration, evcc) expect, not our driver:

- `GET /RealTimeData` answers the full JSON key set. Firmware 2.5.0 and later
  add `IntensityMeasure_L1..3` and `VoltageMeasure_L1..3`; an emulated older
  firmware (`firmware="2.4.6"`) leaves them out.
- `GET /write/<Key>=<Value>` answers `OK` when the write is accepted. Writable
  keys: Intensity, Paused, Locked, Timer, Dynamic, PauseDynamic,
  DynamicPowerMode, MinIntensity, MaxIntensity, ContractedPower, ChargeMode.
  Values must be decimal integers in range: Intensity 6-32 and within
  MinIntensity..MaxIntensity, flags 0/1, DynamicPowerMode 0-5, Min/MaxIntensity
  6-32 with Min <= Max (lowering MaxIntensity below Intensity lowers
  Intensity), ContractedPower 1-1000000 W, ChargeMode 0 (one phase) / 1 (three).
- Refused writes (unknown key, bad value): what the real box answers is not
  documented anywhere we found. Both real clients accept a write only on
  HTTP 200 with body exactly `OK`, so the emulator answers HTTP 200 with the
  body `ERROR` and changes nothing: the hardest case for a client, since only
  the body tells. `write_error_status` selects another status (e.g. 400).
- `GET /read/<Key>` answers one value as plain text (the box has this too).

Vehicle model: `plug()` connects a car; the box charges when a car is plugged,
wants energy, and the box is neither paused nor locked. ChargeState is 0 (no
car), 1 (connected, not charging) or 2 (charging), and keeps 2 after a pause
until unplugged, as evcc reports for the real box. The car draws
min(Intensity, car maximum) per phase and follows a new limit only after
`response_delay_s` (IEC 61851 allows up to ~5 s; 0 = at once). With
Dynamic=1 and PauseDynamic=0 the box modulates by itself (a coarse stand-in:
the current left under ContractedPower after HousePower, between MinIntensity
and Intensity); PauseDynamic=1 hands the current back to Intensity.
ReadyState is 1 while a car is plugged and draws nothing, and settings
(Paused, Locked, Intensity, ...) outlive a plug session: both are assumptions.

Failure modes, switchable at run time with `set_mode()`: "normal", "hang"
(accept TCP, read the request, never answer), "garbage" (RealTimeData answers
invalid JSON; writes answer a non-OK body and change nothing) and "error"
(HTTP 500 to everything).

Requests held by "hang" mode are stamped too (`hung_requests()`), so a test
can wait until a client is really stuck on the box instead of guessing.
Every write request is logged with a `time.monotonic_ns()` stamp in a bounded
list (`writes()`), so tests and benches can measure command latency.

    emu = TrydanEmulator(port=0, response_delay_s=0).start()
    emu.plug()
    ... http://127.0.0.1:<emu.port>/RealTimeData ...
    emu.drawn_current_ma()  # [L1, L2, L3] for the site simulator
    emu.stop()
"""

import collections
import http.server
import json
import threading
import time

WRITE_LOG_MAX = 1000  # write records kept; older ones are dropped
HANG_MAX_S = 60.0  # a hung connection is dropped after this at the latest
MIN_A = 6
MAX_A = 32
MODES = ("normal", "hang", "garbage", "error")
GARBAGE = b'{"ID":"EMU","ChargeState":2,"ChargePower":73\x00\xff<html>'

WriteRecord = collections.namedtuple("WriteRecord", "t_ns key value ok reason")

_FLAGS = ("Paused", "Locked", "Timer", "Dynamic", "PauseDynamic")
WRITABLE = _FLAGS + (
    "Intensity",
    "DynamicPowerMode",
    "MinIntensity",
    "MaxIntensity",
    "ContractedPower",
    "ChargeMode",
)


def _version_tuple(text):
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


class TrydanEmulator:
    """One emulated Trydan, served by a background thread on `host:port`."""

    HANDLER = None  # the request handler class (set below; the go-e and OpenEVSE emulators have their own)

    def __init__(
        self,
        port=0,
        host="127.0.0.1",
        *,
        phases=3,
        firmware="2.5.1",
        response_delay_s=2.0,
        voltage_v=230,
        intensity=16,
        min_intensity=MIN_A,
        max_intensity=MAX_A,
        contracted_power_w=6900,
        device_id="EMU0000001",
        write_error_status=200,
        clock=time.monotonic,
    ):
        if phases not in (1, 3):
            raise ValueError("phases must be 1 or 3")
        self.host = host
        self.port = port
        self.install_phases = phases
        self.firmware = firmware
        self.response_delay_s = response_delay_s
        self.voltage_v = voltage_v
        self.device_id = device_id
        self.write_error_status = write_error_status
        self._clock = clock
        self._lock = threading.RLock()
        self._settings = {
            "Paused": 0,
            "Locked": 0,
            "Timer": 0,
            "Intensity": intensity,
            "Dynamic": 0,
            "MinIntensity": min_intensity,
            "MaxIntensity": max_intensity,
            "PauseDynamic": 0,
            "DynamicPowerMode": 0,
            "ContractedPower": contracted_power_w,
            "ChargeMode": 1 if phases == 3 else 0,
        }
        self.house_power_w = 0.0
        self.pv_power_w = 0.0
        self.battery_power_w = 0.0
        self.slave_error = 0
        self._mode = "normal"
        self._release = threading.Event()
        self._write_log = collections.deque(maxlen=WRITE_LOG_MAX)
        self._hung_ns = collections.deque(maxlen=WRITE_LOG_MAX)
        self.requests = {"read": 0, "write": 0, "other": 0}
        # Vehicle and session.
        self._plugged = False
        self._demand = False
        self._car_max_ma = 0
        self._car_phases = 3
        self._charged_in_session = False
        self._energy_wh = 0.0
        self._charge_s = 0.0
        # Drawn current per phase: `_from_ma` until `_switch_t`, then `_to_ma`.
        now = clock()
        self._from_ma = 0
        self._to_ma = 0
        self._switch_t = now
        self._last_t = now
        self._server = None
        self._thread = None

    # -- lifecycle --------------------------------------------------------

    def start(self):
        """Listen and serve in a background thread; returns self (`port` is then set)."""
        server = http.server.ThreadingHTTPServer((self.host, self.port), self.HANDLER)
        server.daemon_threads = True
        server.emulator = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="trydan-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        """Stop serving, drop hung connections and close the socket."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._release.set()
        server.shutdown()
        server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    # -- failure modes ----------------------------------------------------

    @property
    def mode(self):
        return self._mode

    def set_mode(self, mode):
        """Switch to "normal", "hang", "garbage" or "error"; leaving "hang" drops hung connections."""
        if mode not in MODES:
            raise ValueError("unknown mode %r" % (mode,))
        with self._lock:
            if mode == "hang":
                self._release.clear()
            elif self._mode == "hang":
                self._release.set()
            self._mode = mode

    # -- the car and the site ---------------------------------------------

    def plug(self, car_max_ma=32000, car_phases=3, demand=True):
        """Connect a car that can take `car_max_ma` per phase on `car_phases` phases."""
        with self._lock:
            self._advance()
            self._plugged = True
            self._car_max_ma = car_max_ma
            self._car_phases = car_phases
            self._demand = demand
            self._charged_in_session = False
            self._energy_wh = 0.0
            self._charge_s = 0.0
            self._retarget()

    def unplug(self):
        with self._lock:
            self._advance()
            self._plugged = False
            self._demand = False
            self._charged_in_session = False
            self._retarget(immediate=True)

    def set_car(self, max_ma=None, phases=None, demand=None):
        """Change the plugged car: its current cap, phases, or whether it wants energy (full = False)."""
        with self._lock:
            self._advance()
            if max_ma is not None:
                self._car_max_ma = max_ma
            if phases is not None:
                self._car_phases = phases
            if demand is not None:
                self._demand = demand
            self._retarget()

    def set_site(self, house_w=None, pv_w=None, battery_w=None):
        """Values the box's own clamps would show (HousePower, FVPower, BatteryPower)."""
        with self._lock:
            self._advance()
            if house_w is not None:
                self.house_power_w = float(house_w)
            if pv_w is not None:
                self.pv_power_w = float(pv_w)
            if battery_w is not None:
                self.battery_power_w = float(battery_w)
            self._retarget()

    def set_slave_error(self, code):
        with self._lock:
            self.slave_error = code

    def setting(self, key):
        """Current value of a writable setting, e.g. setting("Intensity")."""
        with self._lock:
            return self._settings[key]

    @property
    def plugged(self):
        return self._plugged

    def phases_in_use(self):
        with self._lock:
            return self._phases_used()

    def drawn_current_ma(self):
        """Current the car draws now per charger phase [L1, L2, L3], in mA."""
        with self._lock:
            self._advance()
            return self._per_phase(self._actual_ma(self._clock()))

    def charge_power_w(self):
        with self._lock:
            self._advance()
            return self._power_w(self._actual_ma(self._clock()))

    def charge_state(self):
        with self._lock:
            return self._charge_state()

    # -- write log --------------------------------------------------------

    def writes(self):
        """Logged write requests, oldest first: WriteRecord(t_ns, key, value, ok, reason)."""
        with self._lock:
            return list(self._write_log)

    def clear_writes(self):
        with self._lock:
            self._write_log.clear()

    # -- the API, callable directly too -----------------------------------

    def realtime(self):
        """The /RealTimeData answer as a dict."""
        with self._lock:
            self._advance()
            now = self._clock()
            per_phase = self._per_phase(self._actual_ma(now))
            s = self._settings
            data = {
                "ID": self.device_id,
                "ChargeState": self._charge_state(),
                "ReadyState": 1 if self._plugged and not any(per_phase) else 0,
                "ChargePower": round(self._power_w(self._actual_ma(now)), 1),
                "ChargeEnergy": round(self._energy_wh / 1000.0, 3),
                "SlaveError": self.slave_error,
                "ChargeTime": int(self._charge_s),
                "HousePower": round(self.house_power_w, 1),
                "FVPower": round(self.pv_power_w, 1),
                "BatteryPower": round(self.battery_power_w, 1),
                "Paused": s["Paused"],
                "Locked": s["Locked"],
                "Timer": s["Timer"],
                "Intensity": s["Intensity"],
                "Dynamic": s["Dynamic"],
                "MinIntensity": s["MinIntensity"],
                "MaxIntensity": s["MaxIntensity"],
                "PauseDynamic": s["PauseDynamic"],
                "DynamicPowerMode": s["DynamicPowerMode"],
                "ContractedPower": s["ContractedPower"],
                "FirmwareVersion": self.firmware,
                "SSID": "ChargeGuard-sim",
                "IP": self.host,
                "SignalStatus": 3,
                "VoltageInstallation": self.voltage_v,
            }
            if _version_tuple(self.firmware) >= (2, 5, 0):
                for i in range(3):
                    data["IntensityMeasure_L%d" % (i + 1)] = round(per_phase[i] / 1000.0, 2)
                for i in range(3):
                    on = i < self.install_phases
                    data["VoltageMeasure_L%d" % (i + 1)] = float(self.voltage_v) if on else 0.0
            return data

    def write(self, key, value):
        """Apply one /write/<key>=<value> (value as the text after '=').

        Returns (ok, reason); logs the request like an HTTP write.
        """
        with self._lock:
            ok, reason = self._write(key, value)
            self._write_log.append(WriteRecord(time.monotonic_ns(), key, value, ok, reason))
            return ok, reason

    def _write(self, key, text):
        if key not in WRITABLE:
            return False, "unknown key"
        value = _parse_int(text)
        if value is None:
            return False, "not an integer"
        s = self._settings
        if key in _FLAGS:
            valid = value in (0, 1)
        elif key == "Intensity":
            valid = MIN_A <= value <= MAX_A and s["MinIntensity"] <= value <= s["MaxIntensity"]
        elif key == "MinIntensity":
            valid = MIN_A <= value <= MAX_A and value <= s["MaxIntensity"]
        elif key == "MaxIntensity":
            valid = MIN_A <= value <= MAX_A and value >= s["MinIntensity"]
        elif key == "DynamicPowerMode":
            valid = 0 <= value <= 5
        elif key == "ContractedPower":
            valid = 1 <= value <= 1000000
        else:  # ChargeMode
            valid = value in (0, 1)
        if not valid:
            return False, "value out of range"
        self._advance()
        s[key] = value
        if key == "MaxIntensity" and s["Intensity"] > value:
            s["Intensity"] = value
        if key == "MinIntensity" and s["Intensity"] < value:
            s["Intensity"] = value
        self._retarget()
        return True, ""

    # -- model --------------------------------------------------------------

    def _phases_used(self):
        if self.install_phases == 1 or self._settings["ChargeMode"] == 0 or self._car_phases == 1:
            return 1
        return 3

    def _allows_charging(self):
        s = self._settings
        return self._plugged and not s["Paused"] and not s["Locked"]

    def _charge_state(self):
        if not self._plugged:
            return 0
        if self._allows_charging() and self._demand:
            return 2
        if self._settings["Paused"] and self._charged_in_session:
            return 2  # the real box keeps "charging" after a pause
        return 1

    def _limit_a(self):
        s = self._settings
        limit = s["Intensity"]
        if s["Dynamic"] and not s["PauseDynamic"]:
            spare_w = s["ContractedPower"] - self.house_power_w
            spare_a = int(spare_w // (self.voltage_v * self._phases_used()))
            limit = max(s["MinIntensity"], min(limit, spare_a))
        return limit

    def _target_ma(self):
        if not (self._allows_charging() and self._demand):
            return 0
        return min(self._limit_a() * 1000, self._car_max_ma)

    def _actual_ma(self, now):
        return self._to_ma if now >= self._switch_t else self._from_ma

    def _retarget(self, immediate=False):
        now = self._clock()
        target = self._target_ma()
        if target:
            self._charged_in_session = True
        if target == self._to_ma and not immediate:
            return
        self._from_ma = self._actual_ma(now)
        self._to_ma = target
        self._switch_t = now if immediate else now + self.response_delay_s

    def _advance(self):
        # Integrate energy and charging time up to now; the draw is constant
        # on each side of `_switch_t`.
        now = self._clock()
        start = self._last_t
        if now <= start:
            return
        pieces = []
        if start < self._switch_t < now:
            pieces.append((self._switch_t - start, self._from_ma))
            pieces.append((now - self._switch_t, self._to_ma))
        else:
            pieces.append((now - start, self._actual_ma(start)))
        for seconds, ma in pieces:
            if ma:
                self._energy_wh += self._power_w(ma) * seconds / 3600.0
                self._charge_s += seconds
        self._last_t = now

    def _per_phase(self, ma):
        used = self._phases_used()
        return [ma if i < used else 0 for i in range(3)]

    def _power_w(self, ma):
        return ma * self._phases_used() * self.voltage_v / 1000.0

    # -- HTTP side ----------------------------------------------------------

    def _hang(self):
        with self._lock:
            self._hung_ns.append(time.monotonic_ns())
        self._release.wait(HANG_MAX_S)

    def hung_requests(self):
        """When each request held by "hang" mode arrived (monotonic ns), oldest first."""
        with self._lock:
            return list(self._hung_ns)


def _parse_int(text):
    body = text[1:] if text[:1] == "-" else text
    if not body or not body.isdigit() or not body.isascii():
        return None
    return int(text)


def counted_request(handler, kind):
    """Count a request of `kind` ("read", "write", "other") on the handler's emulator and act out its fault mode.

    "hang" holds the request (until released or HANG_MAX_S) and drops the
    connection, "error" answers 500: both return None, the request is done.
    Otherwise the mode ("ok", "garbage", ...) for the handler to answer by.
    Shared by the HTTP wallbox and load emulators (their `requests`,
    `_mode`, `_lock`, `_hang` and the handler's `_answer(status, body)`).
    """
    emu = handler.server.emulator
    with emu._lock:
        emu.requests[kind] += 1
        mode = emu._mode
    if mode == "hang":
        emu._hang()
        handler.close_connection = True
        return None
    if mode == "error":
        handler._answer(500, b"Internal Server Error")
        return None
    return mode


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TrydanEmulator/1"

    def log_message(self, format, *args):
        pass  # quiet: tests and the simulator poll many times a second

    def do_GET(self):
        emu = self.server.emulator
        path = self.path
        if path == "/RealTimeData":
            kind = "read"
        elif path.startswith("/write/"):
            kind = "write"
        else:
            kind = "other"
        mode = counted_request(self, kind)
        if mode is None:
            return
        if kind == "read":
            if mode == "garbage":
                self._answer(200, GARBAGE, "application/json")
            else:
                self._answer(200, json.dumps(emu.realtime()).encode(), "application/json")
        elif kind == "write":
            self._do_write(emu, path[len("/write/") :], mode)
        elif path.startswith("/read/"):
            key = path[len("/read/") :]
            data = emu.realtime()
            if key in data:
                self._answer(200, str(data[key]).encode())
            else:
                self._answer(emu.write_error_status, b"ERROR")
        else:
            self._answer(404, b"Not found")

    def _do_write(self, emu, pair, mode):
        key, sep, value = pair.partition("=")
        if mode == "garbage":
            with emu._lock:
                emu._write_log.append(WriteRecord(time.monotonic_ns(), key, value, False, "garbage mode"))
            self._answer(200, GARBAGE)
            return
        if not sep:
            with emu._lock:
                emu._write_log.append(WriteRecord(time.monotonic_ns(), key, "", False, "no value"))
            self._answer(emu.write_error_status, b"ERROR")
            return
        ok, _ = emu.write(key, value)
        if ok:
            self._answer(200, b"OK")
        else:
            self._answer(emu.write_error_status, b"ERROR")

    def do_POST(self):
        self._answer(404, b"Not found")

    def _answer(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the firmware went away mid-answer (stopped, or out of heap in a memory run): nothing to answer


TrydanEmulator.HANDLER = _Handler
