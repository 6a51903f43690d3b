"""Emulator of a go-e Charger's local HTTP API v2 on loopback (CPython, host side).

It follows go-e's published API v2 documentation (github.com/goecharger/
go-eCharger-API-v2: http-en.md, apikeys-en.md, API_KEYS_FIRMWARE/) and what the
real client `goe` (PyPI) reads, not our driver:

- `GET /api/status` answers every key it knows; `?filter=a,b` (the comma list
  of firmware 051.4 on, URL-encoded or not) answers only those that exist.
  Keys: car (1 idle, 2 charging, 3 wait car, 4 complete), err, alw, acu, amp,
  ama, tcl, frc, psm, nrg (U L1..L3 N, I L1..L3 in A, P L1..L3 N total in W,
  pf L1..L3 N), wh, eto, tpa, cus, lck, modelStatus, pnp, dwo, spl3, clp, rbc,
  rbt, sse, fna, fwv, var, and the time keys of the `goe` client.
- `GET /api/set?key=value[&key=value]`: each value is JSON. Writable: amp
  (6..ama; counted in `flash_writes`: the real box writes it to flash), tcl
  (6..ama or null: the temporary current limit, not in flash, dropped
  `tcl_timeout_s` after the last write, 600 s as documented), frc (0 neutral,
  1 off, 2 on), psm (0..2). The answer is one JSON object with `true` per
  accepted key and an error text per refused one; go-e does not document the
  answer ("TODO for go-e: expected response content"), this is an
  assumption, so the driver accepts a write only on `"<key>":true`. A
  request with a refused key answers HTTP 400, changing nothing.

The box offers min(amp, tcl) (tcl is a limit that "does not change the user
current limit"), nothing while frc = 1. The car model (plug, demand,
response delay, energy) is the Trydan emulator's; ChargeState there is `car`
here. Failure modes as the Trydan emulator's: "normal", "hang", "garbage",
"error"; `stop()` makes it refuse connections.
"""

import json
import time
import urllib.parse

from trydan_emulator import GARBAGE, TrydanEmulator, WriteRecord, _Handler, counted_request

TCL_TIMEOUT_S = 600.0  # "will be reset after 10min if not updated regularly"


class GoeEmulator(TrydanEmulator):
    """One emulated go-e Charger (hardware 3, 22 kW: up to 32 A on three phases)."""

    def __init__(self, port=0, host="127.0.0.1", *, amp=16, ama=32, tcl_timeout_s=TCL_TIMEOUT_S, **kwargs):
        kwargs.setdefault("intensity", amp)
        kwargs.setdefault("firmware", "060.4")
        super().__init__(port, host, **kwargs)
        self.tcl_timeout_s = tcl_timeout_s
        self.flash_writes = 0  # writes of amp: the key go-e keeps in flash
        self._goe = {"amp": amp, "ama": ama, "tcl": None, "frc": 0, "psm": 0}
        self._tcl_t = None
        self._boot_t = time.monotonic()

    # -- the box's settings -------------------------------------------------

    def goe_setting(self, key):
        with self._lock:
            self._expire()
            return self._goe[key]

    def _expire(self):
        # tcl lapses when it is not renewed.
        if self._goe["tcl"] is not None and self._clock() - self._tcl_t >= self.tcl_timeout_s:
            self._advance()
            self._goe["tcl"] = None
            self._retarget()

    def _allows_charging(self):
        return self._plugged and self._goe["frc"] != 1

    def _limit_a(self):
        g = self._goe
        limit = min(g["amp"], g["ama"])
        if g["tcl"] is not None:
            limit = min(limit, g["tcl"])
        return limit

    def _phases_used(self):
        if self.install_phases == 1 or self._car_phases == 1 or self._goe["psm"] == 1:
            return 1
        return 3

    def car_state(self):
        if not self._plugged:
            return 1
        if self._allows_charging() and self._demand:
            return 2
        if self._charged_in_session and not self._demand:
            return 4
        return 3

    # -- the API --------------------------------------------------------------

    def status(self, keys=None):
        """The /api/status answer as a dict (only `keys` when given)."""
        with self._lock:
            self._expire()
            self._advance()
            now = self._clock()
            per_phase = self._per_phase(self._actual_ma(now))
            g = self._goe
            used = self._phases_used()
            volts = [float(self.voltage_v) if i < self.install_phases else 0.0 for i in range(3)]
            amps = [round(ma / 1000.0, 2) for ma in per_phase]
            watts = [round(volts[i] * amps[i], 1) for i in range(3)]
            allowed = self._allows_charging()
            data = {
                "car": self.car_state(),
                "err": self.slave_error,
                "alw": allowed,
                "acu": self._limit_a() if allowed else None,
                "amp": g["amp"],
                "ama": g["ama"],
                "tcl": g["tcl"],
                "frc": g["frc"],
                "psm": g["psm"],
                "nrg": volts + [0.0] + amps + watts + [0.0, round(sum(watts), 1)] + [100.0 if a else 0.0 for a in amps] + [0.0],
                "wh": round(self._energy_wh, 3),
                "eto": int(self._energy_wh) + 1234567,
                "tpa": round(sum(watts), 1),
                "cus": 3 if self._plugged else 1,
                "lck": 0,
                "modelStatus": 4 if g["frc"] == 1 else (3 if g["frc"] == 2 else 15),
                "pnp": used if any(per_phase) else 0,
                "dwo": None,
                "spl3": 4200.0,
                "clp": [6, 10, 16, 20, 32],
                "rbc": 7,
                "rbt": int((time.monotonic() - self._boot_t) * 1000),
                "sse": self.device_id,
                "fna": "go-e emulator",
                "fwv": self.firmware,
                "var": 22,
                "tse": True,
                "tsss": 1,
                "tof": 60,
                "tds": 1,
                "utc": time.strftime("%Y-%m-%dT%H:%M:%S.000", time.gmtime()),
                "loc": time.strftime("%Y-%m-%dT%H:%M:%S.000+01:00", time.gmtime()),
            }
            if keys is not None:
                data = {key: data[key] for key in keys if key in data}
            return data

    def set_values(self, pairs):
        """Apply one /api/set (pairs of key and JSON text): (all_ok, {key: True or error text})."""
        with self._lock:
            self._expire()
            results = {}
            values = {}
            for key, text in pairs:
                try:
                    value = json.loads(text)
                except ValueError:
                    results[key] = "invalid json"
                    continue
                problem = self._check(key, value)
                results[key] = True if problem is None else problem
                values[key] = value
            ok = all(result is True for result in results.values())
            if ok:
                self._advance()
                for key, value in values.items():
                    self._goe[key] = value
                    if key == "tcl":
                        self._tcl_t = self._clock()
                    if key == "amp":
                        self.flash_writes += 1
                self._retarget()
            for key, _ in pairs:
                self._write_log.append(WriteRecord(time.monotonic_ns(), key, _text(values.get(key)), ok, "" if ok else str(results[key])))
            return ok, results

    def _check(self, key, value):
        g = self._goe
        whole = type(value) is int
        if key == "amp":
            return None if whole and 6 <= value <= g["ama"] else "value out of range"
        if key == "tcl":
            return None if value is None or whole and 6 <= value <= g["ama"] else "value out of range"
        if key == "frc":
            return None if whole and value in (0, 1, 2) else "value out of range"
        if key == "psm":
            return None if whole and value in (0, 1, 2) else "value out of range"
        return "key not found"


def _text(value):
    return "null" if value is None else str(value)


class _GoeHandler(_Handler):
    server_version = "GoeEmulator/1"

    def do_GET(self):
        emu = self.server.emulator
        path, _, query = self.path.partition("?")
        kind = "read" if path == "/api/status" else "write" if path == "/api/set" else "other"
        mode = counted_request(self, kind)
        if mode is None:
            return
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if kind == "read":
            if mode == "garbage":
                self._answer(200, GARBAGE, "application/json")
                return
            keys = None
            for key, value in pairs:
                if key == "filter":
                    keys = [part for part in value.split(",") if part]
            self._answer(200, json.dumps(emu.status(keys)).encode(), "application/json")
        elif kind == "write":
            if mode == "garbage":
                with emu._lock:
                    for key, value in pairs:
                        emu._write_log.append(WriteRecord(time.monotonic_ns(), key, value, False, "garbage mode"))
                self._answer(200, GARBAGE)
                return
            if not pairs:
                self._answer(400, b'{"error":"no keys"}', "application/json")
                return
            ok, results = emu.set_values(pairs)
            self._answer(200 if ok else 400, json.dumps(results).encode(), "application/json")
        else:
            self._answer(404, b"Not found")


GoeEmulator.HANDLER = _GoeHandler
