"""Alfen Eve (NG9xx platform) over Modbus TCP, as the box's Energy Management System.

Source: Alfen's "Modbus Slave TCP/IP, Implementation of Modbus Slave TCP/IP
for Alfen NG9xx platform", version 2.3 (30-10-2020; knowledge.alfen.com).
On the box (Alfen's Service Installer app): licence "Active load balancing";
Active balancing, Data source "Energy Management System"; TCP/IP EMS, Mode
"Socket"; "Allow reading" and "Allow writing maximum currents" on; a
Validity time of at least 30 s (default 60 s); and the Safe current, the
box's failsafe: what the socket offers when ChargeGuard is silent for the
validity time (set it to what the circuit carries without ChargeGuard; 0 A
would stop charging). For the 1/3-phase register, also "Allow 1- and
3-phased charging".

Port 502; the socket's registers at unit (slave address) 1, or 2 for the
right socket of a dual station (`unit` in the configuration). Function 3
reads, function 16 writes (a float32 must be written in one request, both
registers). Big-endian registers and word order.

Each poll reads two blocks:

- 320..377 (58 registers): current L1..L3 at 320/322/324 (float32, A), real
  power sum at 344 (float32, W), real energy delivered sum at 374 (float64,
  Wh: the meter's total, shown as the session energy's source is not
  given). Floats are decoded by integer arithmetic (no heap floats).
- 1200..1215 (16 registers): 1200 availability (0 = inoperative: an error),
  1201..1205 the mode 3 state as text (A no car; B1, B2, C1, D1 connected;
  C2, D2 charging; E, F and anything else unknown, with "mode 3 state <s>"),
  1206 actual applied max current (float32: `status.offered_ma`), 1208
  remaining validity (u32, s), 1210 the max current written, 1212 the safe
  current (float32), 1214 setpoint accounted for (0 = the box ignores
  ChargeGuard: "setpoint not used (licence? data source EMS?)"), 1215
  phases (1 or 3).

Commanding: 1210-1211, "Modbus Slave Max Current", float32 amps =
offered_ma // 1000 (whole amps, rounded down, at most 32 A), 0 A below 6 A
(the socket stops offering: the pause). It is written when it changes, and
again every 25 s (RENEW_MS) or whenever the box shows less than 30 s of
validity left, so a live ChargeGuard never lets it lapse; a dead one leaves
the box at its safe current within the validity time, by itself.
Phases: when the configuration says 1 phase and the box charges on 3 (or 3
and the box is on 1), 1215 is written once; a box that refuses it (not
allowed) says "phases <n>: 1215 refused" while it is on more phases than
configured (the guard would under-count it).

Errors (`status.error`, `last_error`): the Modbus request's, the ones above,
"safe current <n> A above circuit_a" (the box's own failsafe is more than
the circuit carries: lower it in the Service Installer app), "write 1210=<n>: <why>", "out of
memory", "driver: <exception type>". Nothing raises.
"""

from micropython import const

from chargeguard.core.model import ChargerStatus
from chargeguard.core.ticks import ticks_diff
from chargeguard.net import modbus_box as mbox
from chargeguard.net.modbus_box import ModbusBox

_TIMEOUT_MS = const(2000)
RENEW_MS = const(25000)  # rewrite the max current this often (validity default 60 s)
_RENEW_LEFT_S = const(30)  # ... or when the box shows less validity left than this
_MEASURE_AT = const(320)
_MEASURE_COUNT = const(58)
_STATE_AT = const(1200)
_STATE_COUNT = const(16)
W_MAX_CURRENT = const(1210)
W_PHASES = const(1215)
_SMALL = const(0x3FFFFFFF)

_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)


def decode_f32(hi, lo, scale):
    """round(float32(hi, lo) x scale) as an int (scale 1 or 1000), None for NaN/infinity/too large.

    Integer arithmetic only (the 24-bit significand shortened to 20 bits:
    plenty for a box's amps and watts), so nothing is allocated.
    """
    e = (hi >> 7) & 0xFF
    if e == 0xFF:
        return None
    if e == 0:
        return 0
    m = (((hi & 0x7F) << 16) | lo | 0x800000) >> 4
    m *= scale
    s = e - 146  # value = m x 2**s (m carries 2**-19 .. after the shift)
    if s >= 0:
        if s > 30 or m > _SMALL >> s:
            return None
        m <<= s
    elif s < -30:
        m = 0
    else:
        m = (m + (1 << (-s - 1))) >> -s
    return -m if hi & 0x8000 else m


def decode_f64(w0, w1, w2):
    """round(float64(w0..w3)) as an int from its first three words, None for NaN/infinity/2**30 or more/negative."""
    if w0 & 0x8000:
        return None if w0 & 0x7FFF else 0  # -0.0 is 0; an energy is never negative
    e = (w0 >> 4) & 0x7FF
    if e == 0x7FF:
        return None
    if e < 1022:
        return 0  # below 0.5 (or 0, or subnormal)
    s = e - 1023  # value = 1.f x 2**s
    if s > 29:
        return None
    m = ((w0 & 0xF) | 0x10) << 16 | w1  # 1.f x 2**20 (21 bits)
    if s <= 20:
        whole = m >> (20 - s) if s >= 0 else 0
        half = (m >> (19 - s)) & 1 if s < 20 else w2 >> 15
    else:
        whole = (m << (s - 20)) | (w2 >> (36 - s))
        half = (w2 >> (35 - s)) & 1
    return whole + half


def encode_f32(amps, out):
    """The float32 registers of a whole number 0..32 into out[0], out[1]."""
    if amps <= 0:
        out[0] = out[1] = 0
        return
    e = 0
    while amps >> (e + 1):
        e += 1
    mantissa = (amps << (23 - e)) & 0x7FFFFF
    out[0] = ((e + 127) << 7) | (mantissa >> 16)
    out[1] = mantissa & 0xFFFF


class AlfenEve:
    """Driver for one Alfen Eve socket; `status` is updated in place by `poll()`.

    phases: the configured charger phases (1..3); circuit_a: the circuit's
    rating (A), to check the box's safe current; clock: the platform's ticks_ms.
    """

    def __init__(self, box, clock, unit=1, phases=3, circuit_a=32):
        self.box = box
        self.unit = unit
        self.phases = phases
        self.circuit_a = circuit_a
        self._clock = clock
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0
        self.valid_s = None  # the box's remaining validity of our max current (s), as last read
        self.safe_ma = None  # the box's safe current (mA), as last read
        self.box_phases = None  # 1215 as last read
        self._out = [0, 0]
        self._amps = None  # the max current we last wrote and the box confirmed (None = none)
        self._written_at = 0
        self._phases_refused = False
        self._poll_error = None

    async def poll(self):
        """Read both blocks into `status`. True on success; never raises."""
        return await mbox.poll_box(self)

    async def _read_status(self):
        if not await mbox.read_block(self, 3, _MEASURE_AT, _MEASURE_COUNT):
            return False
        w = self.box.word
        l1 = decode_f32(w(0), w(1), 1000)
        l2 = decode_f32(w(2), w(3), 1000)
        l3 = decode_f32(w(4), w(5), 1000)
        power = decode_f32(w(24), w(25), 1)
        energy = decode_f64(w(54), w(55), w(56))
        if not await mbox.read_block(self, 3, _STATE_AT, _STATE_COUNT):
            return False
        available = w(0)
        c0 = w(1) >> 8
        c1 = w(1) & 0xFF
        applied = decode_f32(w(6), w(7), 1000)
        valid = (w(8) << 16) | w(9) if w(8) < 0x4000 else None
        safe = decode_f32(w(12), w(13), 1000)
        accounted = w(14)
        box_phases = w(15)

        status = self.status
        error = None
        # Mode 3 (IEC 61851) state: a letter, then maybe a digit.
        if c0 == 65 and c1 == 0:  # "A"
            status.car = _CAR_NONE
        elif c0 in (66, 67, 68) and c1 in (49, 50):  # B/C/D, 1/2
            status.car = _CAR_CHARGING if c0 != 66 and c1 == 50 else _CAR_CONNECTED
        else:
            status.car = _CAR_UNKNOWN
            error = "mode 3 state %s%s" % (chr(c0) if 32 < c0 < 127 else "?", chr(c1) if 32 < c1 < 127 else "")
        currents = status.current_ma
        currents[0] = l1
        currents[1] = l2 if self.phases > 1 else None
        currents[2] = l3 if self.phases > 2 else None
        status.power_w = power
        status.session_energy_wh = energy
        status.offered_ma = applied
        self.valid_s = valid
        self.safe_ma = safe
        self.box_phases = box_phases
        if error is None and available == 0:
            error = "inoperative"
        if error is None and accounted == 0 and self._amps is not None:
            error = "setpoint not used (licence? data source EMS?)"
        if error is None and safe is not None and safe > self.circuit_a * 1000:
            error = "safe current %d A above circuit_a" % (safe // 1000)
        if error is None and self._phases_refused and box_phases > self.phases:
            error = "phases %d: 1215 refused" % box_phases
        if valid is not None and valid < _RENEW_LEFT_S:
            self._amps = None  # renew at the next apply
        return mbox.took_status(self, error)

    async def apply(self, offered_ma):
        """Command the socket to offer at most `offered_ma` (0 = stop). True when it has it; never raises."""
        return await mbox.apply_box(self, offered_ma)

    async def _command(self, offered_ma):
        amps = mbox.box_amps(offered_ma)
        now = self._clock()
        if self._amps != amps or ticks_diff(now, self._written_at) >= RENEW_MS:
            encode_f32(amps, self._out)
            if not await mbox.write_box(self, 16, W_MAX_CURRENT, self._out, 2, amps):
                return False
            self._amps = amps
            self._written_at = now
        want = 1 if self.phases == 1 else 3 if self.phases == 3 else 0
        have = self.box_phases
        if want and have in (1, 3) and have != want and not self._phases_refused:
            self._out[0] = want
            if not await mbox.write_box(self, 16, W_PHASES, self._out, 1, want):
                if not self.box.exception:
                    return False
                self._phases_refused = True  # not allowed on this box: not asked again
            else:
                self.box_phases = want
        self.status.offered_ma = amps * 1000
        return True

    def _forget(self):
        # No answer: the box may have restarted (the max current is not kept
        # over a reboot), so the next apply writes it.
        self._amps = None


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type alfen_eve."""
    box = ModbusBox(entry["host"], entry["port"], platform, timeout_ms)
    return AlfenEve(box, platform.ticks_ms, entry.get("unit") or 1, entry["phases"], entry["circuit_a"])
