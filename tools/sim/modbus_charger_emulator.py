"""Wallboxes commanded over Modbus TCP, on loopback (CPython, host side): V2C Trydan, Alfen Eve, ABB Terra AC, Phoenix EV-ETH.

Both reuse the Trydan emulator's car model (plug, demand, response delay,
energy; tools/sim/trydan_emulator.py) and serve their register maps from a
small Modbus TCP server of their own (MBAP, functions 3, 6 and 16; a
thread per connection), so that the failure modes a test needs can be
switched at run time, as for the HTTP boxes: "normal", "hang" (reads the
request, never answers, keeps the connection), "garbage" (answers bytes that
are no Modbus TCP), "error" (exception 4, server device failure, to
everything); `stop()` makes it refuse connections. Every request to a unit
the box does not have goes unanswered (a gateway's silence). The emulators
are checked against pymodbus as the client in host_tests/system.

TrydanModbusEmulator (unit 1): V2C's register sheet (github.com/V2Charge/
Trydan_Modbus_TCP): holding registers 3010..3029 read with function 3
(ChargeState, ChargePower W, ChargeEnergy in 0.01 kWh, SlaveError,
ChargeTime s, PWM, HousePower, FVPower, Paused, Locked, Timer, Intensity,
Dynamic, Payment, OCPP, MinIntensity, MaxIntensity, PauseDynamic,
DynamicPowerMode, ContractedPower), one 16-bit register each; 6010..6021
written with function 6 (Paused, Locked, Timer, Intensity, Dynamic,
Payment, OCPP, MinIntensity, MaxIntensity, PauseDynamic, DynamicPowerMode,
ContractedPower) with the HTTP API's rules: a value out of range is
exception 3 (illegal data value), a register not in the map exception 2.

AlfenEmulator (units 1 = socket 1, 200 = the station): Alfen's "Modbus Slave
TCP/IP for Alfen NG9xx platform" v2.3: function 3 reads, 6 and 16 write;
socket registers 300..425 (meter: voltages, currents 320.., power sum 344,
energies as float64 at 362..), 1200..1215 (availability, mode 3 state as
text, actual applied max current, remaining validity u32, max current
1210-1211 float32 R/W, safe current, setpoint accounted for, 1215 phases
R/W); station 100.. (name, manufacturer, firmware, 1100 active max
current, 1105 sockets). A float32 written with only one of its registers is
refused (exception 3), as the document says. The max current holds for
`validity_s` (default 60) after its last write, then the socket falls back
to `safe_a` by itself; it is lost on a restart (`reboot()`). 1215 is
writable only with `phase_switching=True` ("Allow 1- and 3-phased
charging"), else exception 3. Mode 3 state: A no car, B1 plugged without
PWM (offer below 6 A), B2 plugged and offered but not drawing, C2 charging.

AbbTerraEmulator (unit 1): ABB's "Terra AC Charger Modbus Communication"
v1.7 as GrugBus transcribes it (grugbus/devices/EVSE_ABB_Terra.csv/.md):
0x4000..0x4020 read with function 3 (or 4: GrugBus lists them as input
registers), u32 big-endian: serial, firmware, max current (mA), error code,
socket lock state, charging state (second byte: 0 A .. 4 C2, 5 stopped),
applied current limit (mA), currents (mA), voltages (0.1 V), power (W),
session energy (Wh), 0x4020 communication timeout (s, u16). Writable:
0x4100 current limit (u32 mA, function 16; below 6 A pauses, 6 A or more
resumes), 0x4103 socket lock, 0x4105 start/stop, 0x4106 communication
timeout (u16 s). What the documentation warns about is modelled so that a
test sees it: 0x4105 = 1 clears the charging authorisation (`authorised`
False: no charging until the owner's app gives it back), 0x4103 = 0 while
charging ends the session (state 5 until the car is replugged). No request
for `comm timeout` seconds: the box stops charging by itself until the
next request (its failsafe).

PhoenixEmulator (unit 1, for the generic driver): the Phoenix Contact EV-ETH
controller's registers as PROTOCOLS.md lists them (from evcc's
phoenix-ev-eth template): input register 100 the IEC 61851 state as an
ASCII letter (A..F), input registers 120-121 the power (u32 W, high word
first), holding register 528 the maximum current (A, 6..80 or 0), coil 400
charging enabled (function 5; function 1 reads it).
"""

import collections
import math
import socket
import socketserver
import struct
import threading
import time

from trydan_emulator import MIN_A, TrydanEmulator, WriteRecord

MODES = ("normal", "hang", "garbage", "error")
GARBAGE = b"\x00\x01\xff\xff\x00\x02\x01\x83HTTP/1.1 200 OK\r\n"
HANG_MAX_S = 60.0


class _ModbusHandler(socketserver.BaseRequestHandler):
    def handle(self):
        emu = self.server.emulator
        sock = self.request
        with emu._lock:
            emu._mb_conns.add(sock)
        try:
            self._serve(emu, sock)
        finally:
            with emu._lock:
                emu._mb_conns.discard(sock)

    def _serve(self, emu, sock):
        buf = b""
        while True:
            try:
                data = sock.recv(512)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 7:
                length = (buf[4] << 8) | buf[5]
                if len(buf) < 6 + length:
                    break
                frame, buf = buf[: 6 + length], buf[6 + length :]
                reply = emu.handle_frame(frame)
                if reply is None:
                    continue
                try:
                    sock.sendall(reply)
                except OSError:
                    return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ModbusTcpBox:
    """The Modbus TCP side shared by the emulators (mixed into a TrydanEmulator subclass)."""

    def write_coil(self, unit, address, on):
        return 1  # no coils: illegal function

    UNITS = (1,)
    READ_FUNCTIONS = (3,)

    def _init_modbus(self):
        self._mb_server = None
        self._mb_thread = None
        self._mb_conns = set()
        self.mb_requests = collections.Counter()  # by function code
        self.mb_writes = collections.deque(maxlen=1000)  # (t_ns, unit, address, values, exception)

    def start(self):
        server = _Server((self.host, self.port), _ModbusHandler)
        server.emulator = self
        self._mb_server = server
        self.port = server.server_address[1]
        self._mb_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._mb_thread.start()
        return self

    def stop(self):
        server = self._mb_server
        if server is None:
            return
        self._mb_server = None
        self._release.set()
        with self._lock:
            conns = list(self._mb_conns)
        for sock in conns:  # a stopped box drops its connections too, then refuses new ones
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.shutdown()
        server.server_close()
        self._mb_thread.join(5)

    def handle_frame(self, frame):
        """The answer to one MBAP frame (bytes), or None for no answer."""
        if frame[2:4] != b"\x00\x00" or len(frame) < 8:
            return None
        tid = frame[0:2]
        unit = frame[6]
        pdu = frame[7:]
        fn = pdu[0]
        with self._lock:
            self.mb_requests[fn] += 1
            self.requests["read" if fn in (3, 4) else "write" if fn in (6, 16) else "other"] += 1
            mode = self._mode
        if mode == "hang":
            with self._lock:
                self._hung_ns.append(time.monotonic_ns())
            self._release.wait(HANG_MAX_S)
            return None
        if mode == "garbage":
            return GARBAGE
        if unit not in self.UNITS:
            return None
        if mode == "error":
            return self._mbap(tid, unit, bytes((fn | 0x80, 4)))
        if fn in self.READ_FUNCTIONS and len(pdu) == 5:
            address, count = struct.unpack(">HH", pdu[1:5])
            if not 1 <= count <= 125:
                return self._mbap(tid, unit, bytes((fn | 0x80, 3)))
            with self._lock:
                words = self.read_registers(unit, address, count)
            if isinstance(words, int):
                return self._mbap(tid, unit, bytes((fn | 0x80, words)))
            return self._mbap(tid, unit, bytes((fn, 2 * count)) + struct.pack(">%dH" % count, *words))
        if fn == 1 and len(pdu) == 5 and hasattr(self, "read_coils"):
            address, count = struct.unpack(">HH", pdu[1:5])
            with self._lock:
                bits = self.read_coils(unit, address, count)
            if isinstance(bits, int):
                return self._mbap(tid, unit, bytes((0x81, bits)))
            data = bytearray((len(bits) + 7) // 8)
            for i, bit in enumerate(bits):
                if bit:
                    data[i // 8] |= 1 << (i % 8)
            return self._mbap(tid, unit, bytes((1, len(data))) + bytes(data))
        if fn in (5, 6) and len(pdu) == 5:
            address, value = struct.unpack(">HH", pdu[1:5])
            if fn == 5 and value not in (0, 0xFF00):
                return self._mbap(tid, unit, bytes((0x85, 3)))
            values = [value]
        elif fn == 16 and len(pdu) >= 6:
            address, count = struct.unpack(">HH", pdu[1:5])
            if pdu[5] != 2 * count or len(pdu) != 6 + 2 * count or not 1 <= count <= 123:
                return self._mbap(tid, unit, bytes((0x90, 3)))
            values = list(struct.unpack(">%dH" % count, pdu[6:]))
        else:
            return self._mbap(tid, unit, bytes((fn | 0x80, 1)))
        with self._lock:
            code = self.write_coil(unit, address, values[0] == 0xFF00) if fn == 5 else self.write_registers(
                unit, address, values)
            self.mb_writes.append((time.monotonic_ns(), unit, address, values, code))
        if code:
            return self._mbap(tid, unit, bytes((fn | 0x80, code)))
        return self._mbap(tid, unit, pdu[:5])

    @staticmethod
    def _mbap(tid, unit, pdu):
        return tid + struct.pack(">HHB", 0, len(pdu) + 1, unit) + pdu


def _f32(value):
    b = struct.pack(">f", value)
    return [(b[0] << 8) | b[1], (b[2] << 8) | b[3]]


def _f64(value):
    b = struct.pack(">d", value)
    return [(b[i] << 8) | b[i + 1] for i in (0, 2, 4, 6)]


def _text(text, words):
    b = text.encode()[: 2 * words - 1].ljust(2 * words, b"\x00")
    return [(b[i] << 8) | b[i + 1] for i in range(0, 2 * words, 2)]


# -- V2C Trydan ----------------------------------------------------------------

TRYDAN_READ = ("ChargeState", "ChargePower", "ChargeEnergy", "SlaveError", "ChargeTime", "PWM", "HousePower", "FVPower",
               "Paused", "Locked", "Timer", "Intensity", "Dynamic", "Payment", "OCPP", "MinIntensity", "MaxIntensity",
               "PauseDynamic", "DynamicPowerMode", "ContractedPower")
TRYDAN_WRITE = ("Paused", "Locked", "Timer", "Intensity", "Dynamic", "Payment", "OCPP", "MinIntensity", "MaxIntensity",
                "PauseDynamic", "DynamicPowerMode", "ContractedPower")
TRYDAN_READ_AT = 3010
TRYDAN_WRITE_AT = 6010


class TrydanModbusEmulator(ModbusTcpBox, TrydanEmulator):
    """One V2C Trydan over Modbus TCP (see module doc); `port` 0 picks a free one."""

    def __init__(self, port=0, host="127.0.0.1", **kwargs):
        TrydanEmulator.__init__(self, port, host, **kwargs)
        self._init_modbus()

    def read_registers(self, unit, address, count):
        if address < TRYDAN_READ_AT or address + count > TRYDAN_READ_AT + len(TRYDAN_READ):
            return 2
        data = self.realtime()
        data.setdefault("PWM", 0)
        data["Payment"] = data["OCPP"] = 0
        data["ChargeEnergy"] = min(int(round(data["ChargeEnergy"] * 100)), 0xFFFF)
        data["ContractedPower"] = min(data["ContractedPower"], 0xFFFF)
        words = []
        for key in TRYDAN_READ[address - TRYDAN_READ_AT : address - TRYDAN_READ_AT + count]:
            words.append(int(round(data.get(key, 0))) & 0xFFFF)
        return words

    def write_registers(self, unit, address, values):
        if len(values) != 1 or not TRYDAN_WRITE_AT <= address < TRYDAN_WRITE_AT + len(TRYDAN_WRITE):
            return 2
        key = TRYDAN_WRITE[address - TRYDAN_WRITE_AT]
        if key in ("Payment", "OCPP"):
            return 0  # accepted, no effect in the model
        ok, _ = self._write(key, str(values[0]))
        self._write_log.append(WriteRecord(time.monotonic_ns(), key, str(values[0]), ok, ""))
        return 0 if ok else 3


# -- Alfen Eve -----------------------------------------------------------------


class AlfenEmulator(ModbusTcpBox, TrydanEmulator):
    """One Alfen Eve socket (unit 1) and its station (unit 200), see module doc."""

    UNITS = (1, 200)

    def __init__(self, port=0, host="127.0.0.1", *, safe_a=6.0, validity_s=60.0, phase_switching=True,
                 station_max_a=32.0, **kwargs):
        kwargs.setdefault("firmware", "6.4.0-4210")
        TrydanEmulator.__init__(self, port, host, **kwargs)
        self._init_modbus()
        self.safe_a = safe_a
        self.validity_s = validity_s
        self.phase_switching = phase_switching
        self.station_max_a = station_max_a
        self._max_a = None  # the Modbus max current, None = not set / lapsed
        self._max_t = None
        self._charge_phases = 3 if self.install_phases == 3 else 1
        self.available = 1

    # -- the box's own state ---------------------------------------------------

    def _expire(self):
        if self._max_a is not None and self._clock() - self._max_t >= self.validity_s:
            self._advance()
            self._max_a = None
            self._retarget()

    def applied_a(self):
        """The socket's actual applied max current (A): the Modbus max current while valid, else the safe current."""
        with self._lock:
            self._expire()
            return self._limit_a()

    def max_current(self):
        with self._lock:
            self._expire()
            return self._max_a

    def remaining_s(self):
        with self._lock:
            self._expire()
            if self._max_a is None:
                return 0
            return max(0, math.ceil(self.validity_s - (self._clock() - self._max_t)))

    def charge_phases(self):
        return self._charge_phases

    def reboot(self):
        """A restart: the max current and its validity are lost (the safe current applies)."""
        with self._lock:
            self._advance()
            self._max_a = None
            self._retarget()

    def _limit_a(self):
        limit = self.safe_a if self._max_a is None else self._max_a
        return min(limit, self.station_max_a)

    def _allows_charging(self):
        return self._plugged and self.available and self._limit_a() >= MIN_A

    def _phases_used(self):
        if self.install_phases == 1 or self._car_phases == 1 or self._charge_phases == 1:
            return 1
        return 3

    def _target_ma(self):
        if not (self._allows_charging() and self._demand):
            return 0
        return int(min(self._limit_a() * 1000, self._car_max_ma))

    def mode3_state(self):
        with self._lock:
            self._expire()
            self._advance()
            if not self._plugged:
                return "A"
            if not self._allows_charging():
                return "B1"
            return "C2" if self._actual_ma(self._clock()) else "B2"

    # -- registers ---------------------------------------------------------------

    def _socket_image(self):
        self._expire()
        self._advance()
        now = self._clock()
        per_phase = self._per_phase(self._actual_ma(now))
        volts = [float(self.voltage_v) if i < self.install_phases else 0.0 for i in range(3)]
        amps = [ma / 1000.0 for ma in per_phase]
        watts = [volts[i] * amps[i] for i in range(3)]
        image = {300: [3], 305: [0]}
        image[301] = [0, 0, 0, 200]
        for i in range(3):
            image[306 + 2 * i] = _f32(volts[i])
            image[312 + 2 * i] = _f32(400.0 if self.install_phases == 3 else 0.0)
            image[320 + 2 * i] = _f32(amps[i])
            image[328 + 2 * i] = _f32(1.0 if amps[i] else 0.0)
            image[338 + 2 * i] = _f32(watts[i])
            image[346 + 2 * i] = _f32(watts[i])
            image[354 + 2 * i] = _f32(0.0)
            image[362 + 4 * i] = _f64(self._energy_wh * (amps[i] / sum(amps)) if sum(amps) else 0.0)
        image[318] = _f32(0.0)
        image[326] = _f32(sum(amps))
        image[334] = _f32(1.0)
        image[336] = _f32(50.0)
        image[344] = _f32(sum(watts))
        image[352] = _f32(sum(watts))
        image[360] = _f32(0.0)
        image[374] = _f64(self._energy_wh)
        for address in range(378, 426, 4):
            image[address] = _f64(0.0)
        image[1200] = [self.available]
        image[1201] = _text(self.mode3_state(), 5)
        image[1206] = _f32(float(self._limit_a()))
        remaining = 0 if self._max_a is None else max(0, math.ceil(self.validity_s - (now - self._max_t)))
        image[1208] = [remaining >> 16, remaining & 0xFFFF]
        image[1210] = _f32(float(self._max_a or 0.0))
        image[1212] = _f32(float(self.safe_a))
        image[1214] = [1 if self._max_a is not None else 0]
        image[1215] = [self._charge_phases]
        return image

    def _station_image(self):
        image = {100: _text("ALF_1000", 17), 117: _text("Alfen NV", 5), 122: [1], 123: _text(self.firmware, 17),
                 140: _text("NG910", 17), 157: _text("EMU000001", 11)}
        image[1100] = _f32(float(self.station_max_a))
        image[1102] = _f32(25.0)
        image[1104] = [0]
        image[1105] = [1]
        return image

    def read_registers(self, unit, address, count):
        image = self._station_image() if unit == 200 else self._socket_image()
        words = {}
        for start, values in image.items():
            for i, w in enumerate(values):
                words[start + i] = w
        out = []
        for a in range(address, address + count):
            if a not in words:
                # Inside a block of the map: a reserved register reads NaN
                # (0xFFFF); outside every block: illegal data address.
                if not any(s <= a < s + 200 for s in (100, 300, 1100, 1200)):
                    return 2
                out.append(0xFFFF)
            else:
                out.append(words[a])
        return out

    def write_registers(self, unit, address, values):
        if unit != 1:
            return 2
        if address == 1210 or address == 1211:
            if address != 1210 or len(values) != 2:
                return 3  # a float32 must be written whole, in one request
            (amps,) = struct.unpack(">f", struct.pack(">HH", values[0], values[1]))
            if amps != amps or amps < 0 or amps > 80:
                return 3
            self._advance()
            self._max_a = float(amps)
            self._max_t = self._clock()
            self._retarget()
            self._write_log.append(WriteRecord(time.monotonic_ns(), "max_current", "%g" % amps, True, ""))
            return 0
        if address == 1215 and len(values) == 1:
            if not self.phase_switching or values[0] not in (1, 3) or self.install_phases == 1:
                return 3
            self._advance()
            self._charge_phases = values[0]
            self._retarget()
            self._write_log.append(WriteRecord(time.monotonic_ns(), "phases", str(values[0]), True, ""))
            return 0
        return 2  # read-only or not in the map



# -- ABB Terra AC --------------------------------------------------------------


class AbbTerraEmulator(ModbusTcpBox, TrydanEmulator):
    """One ABB Terra AC (unit 1), see module doc."""

    READ_FUNCTIONS = (3, 4)

    def __init__(self, port=0, host="127.0.0.1", *, comm_timeout_s=600, max_a=32, **kwargs):
        TrydanEmulator.__init__(self, port, host, **kwargs)
        self._init_modbus()
        self.comm_timeout_s = comm_timeout_s
        self.max_a = max_a
        self._limit_ma = max_a * 1000  # no limit written yet: the hardware maximum
        self.authorised = True
        self.session_ended = False
        self.forbidden_writes = []  # (address, value) of writes to 0x4103 / 0x4105
        self._last_request_t = self._clock()

    def handle_frame(self, frame):
        with self._lock:
            self._check_comm()
            self._last_request_t = self._clock()
            self._retarget()
        return ModbusTcpBox.handle_frame(self, frame)

    def _check_comm(self):
        self._advance()
        self._retarget()

    def comm_lost(self):
        return self.comm_timeout_s and self._clock() - self._last_request_t >= self.comm_timeout_s

    def limit_a(self):
        with self._lock:
            return self._limit_a()

    def _limit_a(self):
        return min(self._limit_ma, self.max_a * 1000) / 1000.0

    def _allows_charging(self):
        return (self._plugged and self.authorised and not self.session_ended and self._limit_a() >= MIN_A
                and not self.comm_lost())

    def _target_ma(self):
        if not (self._allows_charging() and self._demand):
            return 0
        return int(min(self._limit_a() * 1000, self._car_max_ma))

    def drawn_current_ma(self):
        with self._lock:
            self._advance()
            self._retarget()
            return self._per_phase(self._actual_ma(self._clock()))

    def unplug(self):
        with self._lock:
            self.session_ended = False
        TrydanEmulator.unplug(self)

    def charging_state(self):
        if not self._plugged:
            return 0
        if self.session_ended:
            return 5
        if not self.authorised:
            return 1
        if not self._allows_charging():
            return 3 if self._demand else 2
        return 4 if self._actual_ma(self._clock()) else 2

    def _image(self):
        self._advance()
        self._retarget()
        now = self._clock()
        per_phase = self._per_phase(self._actual_ma(now))
        volts = [self.voltage_v * 10 if i < self.install_phases else 0 for i in range(3)]
        power = int(round(self._power_w(self._actual_ma(now))))
        socket_state = 0x111 if self._plugged else 0
        u32 = []
        for value in (0x1234, 0x5678, 0x00010605, self.max_a * 1000, 0, socket_state, self.charging_state() << 8,
                      int(self._limit_a() * 1000) if self._allows_charging() or self._limit_a() < MIN_A else 0):
            u32.append(value)
        u32 += per_phase + volts + [power, int(self._energy_wh)]
        words = []
        for value in u32:
            words += [(value >> 16) & 0xFFFF, value & 0xFFFF]
        return words + [self.comm_timeout_s]

    def read_registers(self, unit, address, count):
        if address < 0x4000 or address + count > 0x4021:
            return 2
        return self._image()[address - 0x4000 : address - 0x4000 + count]

    def write_registers(self, unit, address, values):
        if address == 0x4100 and len(values) == 2:
            limit = (values[0] << 16) | values[1]
            if limit > 80000:
                return 3
            self._advance()
            self._limit_ma = limit
            self._retarget()
            self._write_log.append(WriteRecord(time.monotonic_ns(), "limit", str(limit), True, ""))
            return 0
        if address == 0x4106 and len(values) == 1:
            self.comm_timeout_s = values[0]
            self._write_log.append(WriteRecord(time.monotonic_ns(), "comm_timeout", str(values[0]), True, ""))
            return 0
        if address in (0x4103, 0x4105) and len(values) == 1:
            self.forbidden_writes.append((address, values[0]))
            self._advance()
            if address == 0x4105 and values[0] == 1:
                self.authorised = False
            if address == 0x4103 and values[0] == 0 and self._actual_ma(self._clock()):
                self.session_ended = True
            self._retarget()
            return 0
        return 2


# -- Phoenix Contact EV-ETH (for the generic driver) ---------------------------


class PhoenixEmulator(ModbusTcpBox, TrydanEmulator):
    """A Phoenix Contact EV-ETH controller (unit 1), see module doc."""

    READ_FUNCTIONS = (3, 4)

    def __init__(self, port=0, host="127.0.0.1", *, current_a=16, **kwargs):
        TrydanEmulator.__init__(self, port, host, **kwargs)
        self._init_modbus()
        self._current_a = current_a
        self._enabled = True

    def current_a(self):
        return self._current_a

    def enabled(self):
        return self._enabled

    def _limit_a(self):
        return self._current_a

    def _allows_charging(self):
        return self._plugged and self._enabled and self._current_a >= MIN_A

    def state_letter(self):
        if not self._plugged:
            return "A"
        if self._allows_charging() and self._demand:
            return "C"
        return "B"

    def read_registers(self, unit, address, count):
        # Function 3 and 4 share the map here (the input registers and the one holding register).
        self._advance()
        image = {100: ord(self.state_letter()), 528: self._current_a}
        power = int(round(self._power_w(self._actual_ma(self._clock()))))
        image[120] = power >> 16
        image[121] = power & 0xFFFF
        out = []
        for a in range(address, address + count):
            if a not in image:
                return 2
            out.append(image[a])
        return out

    def read_coils(self, unit, address, count):
        if address != 400 or count != 1:
            return 2
        return [self._enabled]

    def write_coil(self, unit, address, on):
        if address != 400:
            return 2
        self._advance()
        self._enabled = on
        self._retarget()
        self._write_log.append(WriteRecord(time.monotonic_ns(), "enable", str(int(on)), True, ""))
        return 0

    def write_registers(self, unit, address, values):
        if address != 528 or len(values) != 1:
            return 2
        if values[0] and not MIN_A <= values[0] <= 80:
            return 3
        self._advance()
        self._current_a = values[0]
        self._retarget()
        self._write_log.append(WriteRecord(time.monotonic_ns(), "current", str(values[0]), True, ""))
        return 0
