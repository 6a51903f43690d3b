"""Emulator of a KEBA KeContact P30 (c-series) on its UDP interface, on loopback (CPython, host side).

It follows KEBA's "KeContact P20/P30 UDP Programmers Guide" as the real client
keba-kecontact 4.3.1 (PyPI; Home Assistant's) uses it, not our driver:

- Requests are datagrams of ASCII text to the box's port (7090); every answer
  goes to port `reply_port` of the sender (7090 on the real box, whatever
  port the request came from: tests on one loopback address give the
  client's own port instead).
- `report 1` (product, serial, firmware), `report 2` (State, Error1/2, Plug,
  Enable sys/user, Max curr, Curr HW, Curr user, Curr FS, Tmo FS, ...),
  `report 3` (U1..U3 V, I1..I3 mA, P mW, PF, E pres and E total in 0.1 Wh),
  `report 100` (the last session): JSON objects with "ID" as a string.
- Commands answered "TCH-OK :done\\n" (or "TCH-ERR\\n"): `curr <mA>` (0 or
  6000..63000; the box's "Curr user"), `currtime <mA> <s>`, `ena 0|1`,
  `failsafe <timeout s: 0 or 10..600> <mA> <save 0|1>`, `display ...`,
  `setenergy`, `output`, `x2`, `x2src` (accepted, no effect here).
- The box offers min(Curr user, Curr HW) while enabled (Enable user = 1),
  else nothing; with a failsafe timeout set, a box that gets no `curr` for
  that long falls back to the failsafe current (0 = stop) until the next
  `curr`. State 3 while the car draws, 2 plugged and allowed, 5 disabled
  (here: "authorisation rejected" is not modelled), 1 not ready (a full car),
  Plug 7 with a car, 0 without.

Failure modes as the other emulators: "normal", "hang" (no answer at all),
"garbage" (answers bytes that are no report and no TCH-OK), "error"
(TCH-ERR to every command; reports still answered); `stop()` closes the
socket (a connected client then gets ICMP port unreachable: refused).
"""

import json
import socket
import threading
import time

from trydan_emulator import MIN_A, TrydanEmulator, WriteRecord

PORT = 7090
GARBAGE = b"\xff\x00{\"ID\": \"2\", \"State\": 3"
TCH_OK = b"TCH-OK :done\n"
TCH_ERR = b"TCH-ERR\n"


class KebaEmulator(TrydanEmulator):
    """One emulated KEBA P30; `port` 0 picks a free one on 127.0.0.1."""

    def __init__(self, port=0, host="127.0.0.1", *, reply_port=PORT, curr_hw_ma=32000, **kwargs):
        TrydanEmulator.__init__(self, port, host, **kwargs)
        self.reply_port = reply_port
        self.curr_hw_ma = curr_hw_ma
        self.curr_user_ma = curr_hw_ma
        self.enable_user = 1
        self.fs_timeout_s = 0
        self.fs_curr_ma = 0
        self._curr_t = self._clock()
        self.commands = []  # (t_ns, text) of every datagram, bounded
        self._sock = None
        self._thread = None
        self._stop = threading.Event()
        self._boot_t = time.monotonic()

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, self.port))
        sock.settimeout(0.05)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._sock is None:
            return
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        self._sock = None

    # -- the box's state -----------------------------------------------------

    def _fs_active(self):
        return self.fs_timeout_s and self._clock() - self._curr_t >= self.fs_timeout_s

    def max_curr_ma(self):
        """What the box offers now (mA): Max curr of report 2."""
        with self._lock:
            return self._offer_ma() if self.enable_user else 0

    def _offer_ma(self):
        limit = self.fs_curr_ma if self._fs_active() else self.curr_user_ma
        return min(limit, self.curr_hw_ma)

    def _limit_a(self):
        return self._offer_ma() / 1000.0

    def _allows_charging(self):
        return self._plugged and self.enable_user == 1 and self._offer_ma() >= MIN_A * 1000

    def _target_ma(self):
        if not (self._allows_charging() and self._demand):
            return 0
        return int(min(self._offer_ma(), self._car_max_ma))

    def drawn_current_ma(self):
        with self._lock:
            self._advance()
            self._retarget()
            return self._per_phase(self._actual_ma(self._clock()))

    def _state(self):
        if not self._plugged:
            return 1
        if self._actual_ma(self._clock()):
            return 3
        if self.enable_user == 0:
            return 5
        return 2 if self._demand else 1

    # -- reports -----------------------------------------------------------------

    def report(self, number):
        with self._lock:
            self._advance()
            self._retarget()
            now = self._clock()
            sec = int(time.monotonic() - self._boot_t)
            if number == 1:
                return {"ID": "1", "Product": "KC-P30-EC240422-E00", "Serial": "22222222",
                        "Firmware": "P30 v 3.10.16 (160122-125411)", "COM-module": 1, "Backend": 0, "timeQ": 3,
                        "DIP-Sw1": "0x22", "DIP-Sw2": "0x00", "Sec": sec}
            if number == 2:
                offered = self._offer_ma() if self.enable_user else 0
                return {"ID": "2", "State": self._state(), "Error1": self.slave_error, "Error2": 0,
                        "Plug": 7 if self._plugged else 0, "AuthON": 0, "Authreq": 0, "Enable sys": 1 if offered else 0,
                        "Enable user": self.enable_user, "Max curr": offered,
                        "Max curr %": 1000 * offered // self.curr_hw_ma if self.curr_hw_ma else 0,
                        "Curr HW": self.curr_hw_ma, "Curr user": self.curr_user_ma, "Curr FS": self.fs_curr_ma,
                        "Tmo FS": self.fs_timeout_s, "Curr timer": 0, "Tmo CT": 0, "Setenergy": 0, "Output": 0,
                        "Input": 0, "X2 phaseSwitch source": 0, "X2 phaseSwitch": 0, "Serial": "22222222", "Sec": sec}
            if number == 3:
                per_phase = self._per_phase(self._actual_ma(now))
                power_mw = int(round(self._power_w(self._actual_ma(now)) * 1000))
                return {"ID": "3", "U1": self.voltage_v, "U2": self.voltage_v if self.install_phases == 3 else 0,
                        "U3": self.voltage_v if self.install_phases == 3 else 0, "I1": per_phase[0],
                        "I2": per_phase[1], "I3": per_phase[2], "P": power_mw, "PF": 1000 if power_mw else 0,
                        "E pres": int(self._energy_wh * 10), "E total": int(self._energy_wh * 10) + 12345678,
                        "Serial": "22222222", "Sec": sec}
            if number == 100:
                return {"ID": "100", "Session ID": 1, "Curr HW": self.curr_hw_ma, "E start": 12345678,
                        "E pres": int(self._energy_wh * 10), "started[s]": 0, "ended[s]": 0, "started": "",
                        "ended": "", "reason": 0, "timeQ": 3, "RFID tag": "", "RFID class": "",
                        "Serial": "22222222", "Sec": sec}
            return None

    # -- commands ------------------------------------------------------------------

    def command(self, text):
        """The answer (bytes) to one datagram's text, or None for no answer."""
        with self._lock:
            self.commands.append((time.monotonic_ns(), text))
            del self.commands[:-1000]
            mode = self._mode
        if mode == "hang":
            with self._lock:
                self._hung_ns.append(time.monotonic_ns())
            return None
        if mode == "garbage":
            return GARBAGE
        parts = text.split()
        if not parts:
            return None
        if parts[0] == "report" and len(parts) == 2 and parts[1].isdigit():
            data = self.report(int(parts[1]))
            return None if data is None else json.dumps(data).encode()
        if parts[0] == "i":
            return b'"Firmware":"P30 v 3.10.16 (160122-125411)"\n'
        if mode == "error":
            return TCH_ERR
        with self._lock:
            ok = self._command(parts)
            self._write_log.append(WriteRecord(time.monotonic_ns(), parts[0], " ".join(parts[1:]), ok, ""))
        return TCH_OK if ok else TCH_ERR

    def _command(self, parts):
        def ints(n):
            try:
                values = [int(p) for p in parts[1:]]
            except ValueError:
                return None
            return values if len(values) == n else None

        name = parts[0]
        self._advance()
        if name in ("curr", "currtime"):
            values = ints(1 if name == "curr" else 2)
            if values is None or not (values[0] == 0 or 6000 <= values[0] <= 63000):
                return False
            self.curr_user_ma = values[0]
            self._curr_t = self._clock()
        elif name == "ena":
            values = ints(1)
            if values is None or values[0] not in (0, 1):
                return False
            self.enable_user = values[0]
        elif name == "failsafe":
            values = ints(3)
            if values is None or not (values[0] == 0 or 10 <= values[0] <= 600) or values[2] not in (0, 1):
                return False
            if not (values[1] == 0 or 6000 <= values[1] <= 63000):
                return False
            self.fs_timeout_s, self.fs_curr_ma = values[0], values[1]
            self._curr_t = self._clock()
        elif name not in ("display", "setenergy", "output", "x2", "x2src", "setdatetime", "start", "stop", "unlock"):
            return False
        self._retarget()
        return True

    def _serve(self):
        sock = self._sock
        while not self._stop.is_set():
            try:
                data, addr = sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self.command(data.decode("cp437", "replace"))
            if reply is not None:
                try:
                    sock.sendto(reply, (addr[0], self.reply_port or addr[1]))
                except OSError:
                    pass
