"""Emulator of an OpenEVSE WiFi/Ethernet gateway's HTTP API (firmware 4.x) on loopback (CPython, host side).

It follows the OpenEVSE ESP32 firmware (openevse_esp32_firmware: the claims of
src/evse_man.h, the /status fields) and what the real client
python-openevse-http (Home Assistant's) sends and reads, not our driver:

- `GET /status`: state (1 not connected, 2 connected, 3 charging, 254
  sleeping: paused by a claim), vehicle, amp (mA), voltage (V), pilot (A),
  session_energy and watthour (Wh), wattsec, elapsed (s), manual_override,
  the *_version counters and the usual extras (temperatures, wifi, totals).
  No `power` key: firmware 4.x has none (the driver computes it).
- `GET /config`: firmware, version ("4.1.2"), max_current_soft (the owner's
  maximum: the current with no claim), max_current_hard, min_current_hard.
- Claims: `POST /claims/<client>` with a JSON body of state ("active" or
  "disabled"), charge_current, max_current, auto_release; an HTTP claim gets
  priority 500 (EvseManager_Priority_API). `DELETE /claims/<client>`,
  `GET /claims`, `GET /claims/<client>`, `GET /claims/target`.
  The manual override is the claim of client 65537 (EvseClient_OpenEVSE_Manual)
  at priority 1000: `GET/POST/PATCH/DELETE /override`. Arbitration as the
  firmware's: state and charge_current come from the highest-priority claim
  that sets them (the later one on a tie), else active and max_current_soft;
  max_current is the least of all claims that set it, whatever their
  priority. The box offers min(charge_current, max_current, max_current_hard).
  A claim with auto_release true is dropped when the car is unplugged.
  Claims live in RAM: `reboot()` drops them all. Answers: {"msg":"done"};
  a body that is no JSON object: HTTP 400 {"msg":"Could not parse JSON"}.

The car model is the Trydan emulator's (plug, demand, response delay,
energy); a paused box (a "disabled" claim winning) offers nothing. Failure
modes as there: "normal", "hang", "garbage", "error"; `stop()` refuses.
"""

import json
import time

from trydan_emulator import GARBAGE, TrydanEmulator, WriteRecord, _Handler, counted_request

PRIORITY_API = 500
PRIORITY_MANUAL = 1000
CLIENT_MANUAL = 65537  # EVC(EvseClient_Vendor_OpenEVSE, 0x0001)
_PROPS = ("state", "charge_current", "max_current", "auto_release")


class OpenEvseEmulator(TrydanEmulator):
    """One emulated OpenEVSE (single phase by default, 32 A hardware)."""

    def __init__(self, port=0, host="127.0.0.1", *, max_current_soft=32, max_current_hard=32, phases=1, **kwargs):
        kwargs.setdefault("firmware", "7.1.3")
        kwargs.setdefault("voltage_v", 230)
        super().__init__(port, host, phases=phases, **kwargs)
        self.max_current_soft = max_current_soft
        self.max_current_hard = max_current_hard
        self.version = "4.1.2"
        self._claims = []  # [client, priority, props] in the order made
        self.claims_version = 0
        self.override_version = 0

    # -- claims -------------------------------------------------------------------

    def claim(self, client, priority, props):
        """Make or replace a claim (props: a dict of _PROPS); returns None or an error text."""
        if not isinstance(props, dict):
            return "Could not parse JSON"
        clean = {}
        for key in _PROPS:
            if key in props:
                clean[key] = props[key]
        state = clean.get("state")
        if state is not None and state not in ("active", "disabled"):
            return "Could not make claim"
        for key in ("charge_current", "max_current"):
            if key in clean and (type(clean[key]) is not int or clean[key] < 0):
                return "Could not make claim"
        with self._lock:
            self._advance()
            for entry in self._claims:
                if entry[0] == client:
                    self._claims.remove(entry)
                    break
            self._claims.append([client, priority, clean])
            self.claims_version += 1
            if client == CLIENT_MANUAL:
                self.override_version += 1
            self._retarget()
        return None

    def release(self, client):
        with self._lock:
            for entry in self._claims:
                if entry[0] == client:
                    self._advance()
                    self._claims.remove(entry)
                    self.claims_version += 1
                    self._retarget()
                    return True
            return False

    def claim_of(self, client):
        with self._lock:
            for entry in self._claims:
                if entry[0] == client:
                    return dict(entry[2])
            return None

    def reboot(self):
        """The box restarts: claims (RAM) are gone."""
        with self._lock:
            self._advance()
            self._claims = []
            self.claims_version += 1
            self._retarget()

    def unplug(self):
        with self._lock:
            self._claims = [entry for entry in self._claims if not entry[2].get("auto_release", True)]
        super().unplug()

    def target(self):
        """(state, charge_current, max_current, {property: client})."""
        state, state_by, current, current_by, best_s, best_c = "active", None, self.max_current_soft, None, -1, -1
        limit, limit_by = self.max_current_hard, None
        for client, priority, props in self._claims:
            if "state" in props and priority >= best_s:
                state, state_by, best_s = props["state"], client, priority
            if "charge_current" in props and priority >= best_c:
                current, current_by, best_c = props["charge_current"], client, priority
            if "max_current" in props and props["max_current"] < limit:
                limit, limit_by = props["max_current"], client
        return state, current, limit, {"state": state_by, "charge_current": current_by, "max_current": limit_by}

    def pilot_a(self):
        _, current, limit, _ = self.target()
        return max(6, min(current, limit, self.max_current_hard))

    # -- the car model's hooks ---------------------------------------------------

    def _allows_charging(self):
        return self._plugged and self.target()[0] == "active"

    def _limit_a(self):
        return self.pilot_a()

    def _phases_used(self):
        return 1 if self.install_phases == 1 or self._car_phases == 1 else 3

    def evse_state(self):
        active = self.target()[0] == "active"
        if not active:
            return 254
        if not self._plugged:
            return 1
        return 3 if self._demand else 2

    # -- the API ---------------------------------------------------------------

    def status(self):
        with self._lock:
            self._advance()
            now = self._clock()
            ma = self._per_phase(self._actual_ma(now))[0]
            wattsec = int(self._energy_wh * 3600)
            state = self.evse_state()
            return {
                "mode": "STA",
                "wifi_client_connected": 1,
                "eth_connected": 0,
                "net_connected": 1,
                "ipaddress": self.host,
                "emoncms_connected": 0,
                "packets_sent": 0,
                "packets_success": 0,
                "mqtt_connected": 0,
                "ohm_hour": "NotConnected",
                "free_heap": 163204,
                "comm_sent": 1234,
                "comm_success": 1234,
                "rapi_connected": 1,
                "evse_connected": 1,
                "amp": ma,
                "voltage": self.voltage_v,
                "pilot": self.pilot_a(),
                "wh": 64582 + int(self._energy_wh),
                "temp": 245,
                "temp1": False,
                "temp2": 245,
                "temp3": False,
                "temp4": False,
                "state": state,
                "status": "active" if state != 254 else "disabled",
                "flags": 0,
                "vehicle": 1 if self._plugged else 0,
                "colour": 3,
                "manual_override": 1 if self.claim_of(CLIENT_MANUAL) is not None else 0,
                "freeram": 163204,
                "divertmode": 1,
                "srssi": -61,
                "elapsed": int(self._charge_s),
                "wattsec": wattsec,
                "watthour": int(self._energy_wh),
                "gfcicount": 0,
                "nogndcount": 0,
                "stuckcount": 0,
                "solar": 0,
                "grid_ie": 0,
                "charge_rate": 0,
                "divert_update": 0,
                "ota_update": 0,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "offset": "+0000",
                "session_energy": round(self._energy_wh, 2),
                "total_energy": 64.582,
                "has_limit": False,
                "config_version": 1,
                "claims_version": self.claims_version,
                "override_version": self.override_version,
                "schedule_version": 1,
                "schedule_plan_version": 1,
                "limit_version": 1,
            }

    def config(self):
        return {
            "firmware": self.firmware,
            "protocol": "-",
            "espflash": 4194304,
            "wifi_serial": self.device_id,
            "version": self.version,
            "buildenv": "openevse_wifi_v1",
            "diode_check": True,
            "gfci_check": True,
            "ground_check": True,
            "relay_check": True,
            "vent_check": True,
            "temp_check": True,
            "max_current_soft": self.max_current_soft,
            "max_current_hard": self.max_current_hard,
            "min_current_hard": 6,
            "service": 2,
            "scale": 220,
            "offset": 0,
            "hostname": "openevse-emu",
            "ssid": "ChargeGuard-sim",
        }

    def claims_list(self):
        with self._lock:
            return [dict(props, client=client, priority=priority) for client, priority, props in self._claims]

    def target_doc(self):
        with self._lock:
            state, current, limit, by = self.target()
            return {
                "properties": {"state": state, "charge_current": current, "max_current": limit},
                "claims": {key: value for key, value in by.items() if value is not None},
            }


class _OpenEvseHandler(_Handler):
    server_version = "OpenEvseEmulator/1"

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status, doc):
        self._answer(status, json.dumps(doc).encode(), "application/json")

    def _route(self, method):
        emu = self.server.emulator
        path = self.path.partition("?")[0]
        body = self._body() if method in ("POST", "PATCH") else b""
        kind = "read" if path in ("/status", "/config") else "write" if method != "GET" else "other"
        mode = counted_request(self, kind)
        if mode is None:
            return
        if mode == "garbage":
            if method != "GET":
                with emu._lock:
                    emu._write_log.append(WriteRecord(time.monotonic_ns(), path, body.decode(errors="replace"), False, "garbage mode"))
            self._answer(200, GARBAGE, "application/json")
            return
        if path == "/status" and method == "GET":
            self._json(200, emu.status())
        elif path == "/config" and method == "GET":
            self._json(200, emu.config())
        elif path == "/claims" and method == "GET":
            self._json(200, emu.claims_list())
        elif path == "/claims/target" and method == "GET":
            self._json(200, emu.target_doc())
        elif path.startswith("/claims/") or path == "/override":
            if path == "/override":
                client, priority = CLIENT_MANUAL, PRIORITY_MANUAL
            else:
                digits = path[len("/claims/") :]
                if not digits.isdigit() or not digits.isascii() or int(digits) > 0xFFFFFFFE:
                    self._json(404, {"msg": "Not found"})
                    return
                client, priority = int(digits), PRIORITY_API
            self._claim_request(emu, method, client, priority, body, path)
        else:
            self._json(404, {"msg": "Not found"})

    def _claim_request(self, emu, method, client, priority, body, path):
        if method == "GET":
            props = emu.claim_of(client)
            if props is None:
                self._json(200 if client == CLIENT_MANUAL else 404, {} if client == CLIENT_MANUAL else {"msg": "Not found"})
            else:
                self._json(200, props)
        elif method == "POST":
            try:
                props = json.loads(body)
            except ValueError:
                props = None
            problem = emu.claim(client, priority, props)
            with emu._lock:
                emu._write_log.append(WriteRecord(time.monotonic_ns(), path, body.decode(errors="replace"), problem is None, problem or ""))
            if problem is None:
                self._json(200, {"msg": "done"})
            else:
                self._json(400, {"msg": problem})
        elif method == "DELETE":
            found = emu.release(client)
            self._json(200 if found else 404, {"msg": "done" if found else "Not found"})
        elif method == "PATCH" and client == CLIENT_MANUAL:
            # Toggle the manual override: none -> the opposite of what the box does now.
            props = emu.claim_of(client)
            if props is None:
                state = "disabled" if emu.target()[0] == "active" else "active"
                emu.claim(client, priority, {"state": state, "auto_release": True})
            else:
                emu.release(client)
            self._json(200, {"msg": "Updated"})
        else:
            self._json(405, {"msg": "Method not allowed"})

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_DELETE(self):
        self._route("DELETE")

    def do_PATCH(self):
        self._route("PATCH")


OpenEvseEmulator.HANDLER = _OpenEvseHandler
