"""Emulator of a Shelly Gen2+ relay (Plus 1PM / Plus Plug S / Pro 1PM class) switching a resistive load, on loopback.

It follows Shelly's Gen2+ API documentation of the Switch component
(shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch), not our
driver:

- `GET /rpc/Switch.GetStatus?id=<id>`: {"id", "source", "output", "apower"
  (W), "voltage" (V), "freq", "current" (A), "pf", "aenergy": {"total" (Wh),
  "by_minute", "minute_ts"}, "temperature": {"tC", "tF"}}; with a running
  flip-back timer also "timer_started_at" and "timer_duration"; "errors"
  (["overpower"], ...) only when there is one.
- `GET /rpc/Switch.Set?id=<id>&on=true|false[&toggle_after=<s>]`: switches
  and answers {"was_on": <bool>}; toggle_after arms the flip-back timer (each
  Set with it arms it anew; a Set without it cancels a running one). A
  missing or bad parameter: HTTP 400 with an RPC error object
  ({"code": -103, "message": ...}), an unknown id: 404 ({"code": -105}).
- `GET /rpc/Shelly.GetDeviceInfo`: {"id", "mac", "model", "gen": 2, "fw_id",
  "ver", "app"}.
Anything else: 404.

The load: `power_w` at `voltage_v` on one phase while the relay is on and
the load's own thermostat asks for heat (`demand`); `drawn_current_ma()`
gives it per phase for the site model. Failure modes as the other
emulators': "normal", "hang", "garbage", "error"; `stop()` refuses.
"""

import http.server
import json
import threading
import time
import urllib.parse

from trydan_emulator import counted_request

HANG_MAX_S = 60.0
GARBAGE = b'{"output": tru'


class ShellyLoadEmulator:
    """One emulated relay with a load (a 2 kW heater by default) on L1; `clock` gives seconds (tests step it)."""

    def __init__(self, port=0, host="127.0.0.1", *, power_w=2000, voltage_v=230, switch_id=0, clock=time.monotonic):
        self.power_w = power_w
        self.voltage_v = voltage_v
        self.switch_id = switch_id
        self._clock = clock
        self._lock = threading.Lock()
        self._output = False
        self._source = "init"
        self._timer_start = None
        self._timer_s = None
        self._energy_wh = 0.0
        self._since = clock()
        self.demand = True  # the load's thermostat asks for heat
        self.errors = []  # e.g. ["overtemp"]: shown in the status
        self.switch_log = []  # (monotonic ns, on, toggle_after or None)
        self.requests = {"read": 0, "write": 0, "other": 0}
        self._mode = "normal"
        self._release = threading.Event()
        self._server = http.server.ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.emulator = self
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def set_mode(self, mode):
        """"normal", "hang" (accept, never answer), "garbage" (a broken body) or "error" (HTTP 500)."""
        with self._lock:
            self._mode = mode
            if mode != "hang":
                self._release.set()
                self._release = threading.Event()

    # -- the relay and its load -------------------------------------------------

    def _advance(self):
        # Energy up to now; the flip-back timer when it ran out.
        now = self._clock()
        if self._timer_start is not None and now - self._timer_start >= self._timer_s:
            self._energy(self._timer_start + self._timer_s)
            self._output = not self._output
            self._source = "timer"
            self._timer_start = self._timer_s = None
        self._energy(now)

    def _energy(self, until):
        if until > self._since:
            self._energy_wh += self._drawing_w() * (until - self._since) / 3600.0
            self._since = until

    def _drawing_w(self):
        return self.power_w if self._output and self.demand else 0

    def output(self):
        with self._lock:
            self._advance()
            return self._output

    def drawn_current_ma(self):
        """Current the load draws per phase (mA), L1 only."""
        with self._lock:
            self._advance()
            return [int(self._drawing_w() * 1000 / self.voltage_v), 0, 0]

    def status(self):
        """The Switch.GetStatus answer as a dict."""
        with self._lock:
            self._advance()
            watts = float(self._drawing_w())
            data = {
                "id": self.switch_id,
                "source": self._source,
                "output": self._output,
                "apower": round(watts, 1),
                "voltage": float(self.voltage_v),
                "freq": 50.0,
                "current": round(watts / self.voltage_v, 3),
                "pf": 1.0 if watts else 0.0,
                "aenergy": {"total": round(self._energy_wh, 3), "by_minute": [0.0, 0.0, 0.0], "minute_ts": int(time.time())},
                "temperature": {"tC": 41.3, "tF": 106.3},
            }
            if self._timer_start is not None:
                data["timer_started_at"] = round(time.time() - (self._clock() - self._timer_start), 2)
                data["timer_duration"] = self._timer_s
            if self.errors:
                data["errors"] = list(self.errors)
            return data

    def switch(self, on, toggle_after=None):
        """Switch.Set: returns was_on."""
        with self._lock:
            self._advance()
            was_on = self._output
            self._output = on
            self._source = "http"
            if toggle_after is not None:
                self._timer_start, self._timer_s = self._clock(), toggle_after
            else:
                self._timer_start = self._timer_s = None
            self.switch_log.append((time.monotonic_ns(), on, toggle_after))
            return was_on

    def _hang(self):
        self._release.wait(HANG_MAX_S)


def _rpc_error(code, message):
    return json.dumps({"code": code, "message": message}).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ShellyLoadEmulator/1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        emu = self.server.emulator
        path, _, query = self.path.partition("?")
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        kind = "read" if path == "/rpc/Switch.GetStatus" else "write" if path == "/rpc/Switch.Set" else "other"
        mode = counted_request(self, kind)
        if mode is None:
            return
        if mode == "garbage" and kind != "other":
            self._answer(200, GARBAGE)
            return
        if path == "/rpc/Shelly.GetDeviceInfo":
            info = {"id": "shellyplus1pm-emulator", "mac": "A8032AB1C2D3", "model": "SNSW-001P16EU", "gen": 2,
                    "fw_id": "20231107-164738/1.0.8-g", "ver": "1.0.8", "app": "Plus1PM", "auth_en": False}
            self._answer(200, json.dumps(info).encode())
            return
        if kind == "other":
            self._answer(404, _rpc_error(-114, "Method %s failed: Method not found!" % path.rpartition("/")[2]))
            return
        try:
            ident = int(params.get("id", ""))
        except ValueError:
            self._answer(400, _rpc_error(-103, "Invalid argument 'id'!"))
            return
        if ident != emu.switch_id:
            self._answer(404, _rpc_error(-105, "Argument 'id', value %d not found!" % ident))
            return
        if kind == "read":
            self._answer(200, json.dumps(emu.status()).encode())
            return
        on = params.get("on")
        if on not in ("true", "false"):
            self._answer(400, _rpc_error(-103, "Invalid argument 'on'!"))
            return
        toggle_after = None
        if "toggle_after" in params:
            try:
                toggle_after = float(params["toggle_after"])
            except ValueError:
                toggle_after = -1
            if not toggle_after > 0:
                self._answer(400, _rpc_error(-103, "Invalid argument 'toggle_after'!"))
                return
        was_on = emu.switch(on == "true", toggle_after)
        self._answer(200, json.dumps({"was_on": was_on}).encode())

    def _answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
