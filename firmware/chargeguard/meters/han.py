"""HAN port: the DLMS/COSEM lists a meter pushes in HDLC frames (Norway's HAN-NVE profile), framer, decoder, driver.

The facts, with their sources in docs/meters.md ("HAN port"):

- Line: the meter pushes, 2400 baud 8E1, on M-Bus levels (an M-Bus slave
  transceiver such as the TSS721 sits between the RJ45 and the UART).
- Lists: List 1 every 2.5 s (the active import power alone), List 2 every
  10 s (adds export, reactive power, per-phase currents and voltages), List 3
  every hour (adds the energy counters and the meter's clock).
- Frame (IEC 62056-46, HDLC frame format type 3): 0x7E, a 2-byte format
  field (0xA0 | segmentation bit 0x08 | an 11-bit length: the bytes between
  the flags), destination and source addresses of 1 to 4 bytes each (the
  last byte of each has bit 0 set), the control byte, HCS, the information
  field, FCS, 0x7E. HCS (over format..control) and FCS (over everything but
  itself) are CRC-16/X-25, low byte first. No byte stuffing: the length
  says where the frame ends.
- Information: the LLC bytes 0xE6 0xE7 0x00, then a DataNotification APDU
  (tag 0x0F): long-invoke-id-and-priority (4 bytes), a date-time (a length
  byte, 0 or 12, then its bytes), and the notification body: one A-XDR Data.
- Body: arrays (0x01) and structures (0x02) holding, per value, a structure
  of its OBIS code (octet string 0x09 of 6 bytes), the value (0x05 int32,
  0x06 uint32, 0x10 int16, 0x12 uint16, 0x0F int8, 0x11 uint8) and a
  structure of the scaler (0x0F: a power of ten) and the unit (0x16 enum:
  27 W, 30 Wh, 33 A, 35 V): the meter says what each number means.

What is taken (OBIS A=1, B=any, E=0): 1.7.0 / 2.7.0 active import / export
power (W); 31.7.0, 51.7.0, 71.7.0 the phase currents; 32.7.0, 52.7.0,
72.7.0 the phase voltages; 21.7.0 / 22.7.0, 41.7.0 / 42.7.0, 61.7.0 /
62.7.0 per-phase import / export power; 1.8.0 / 2.8.0 the energy counters.
A value whose unit is not the one its OBIS code means is dropped (and said).

Refused frames, each counted and said in `error` (the reading is kept):
"fcs mismatch", "hcs mismatch", "too long" (over MAX_FRAME bytes),
"no closing flag", "segmented" (lists over one frame: not sent by the
meters above), "ciphered" (an encrypted APDU: the meter needs a key this
driver does not take), "not a data notification", "malformed" (a Data that
runs past the frame or has a type this decoder does not know), "no scaler"
(values without their scaler and unit, as some meters' lists are sent: no
scaler is guessed, a factor of 10 wrong is a tripped breaker), "no power
values".

Phases and signs: the HAN lists give no per-phase sign unless they carry
per-phase power; a current is then taken as import (a phase never looks
relieved by solar: safe), its power as current x voltage. A three-phase
meter on a 3-wire IT network (230 V between the lines, common in Norway)
measures L1 and L3 only and sends no L2 current; the driver then puts
|I1| + |I3| on L2, the most the L2 line can carry (the three line currents
of a 3-wire system add up to zero as vectors): safe, and the guard gives
less than it could when the loads are balanced. docs/configuration.md says
so ("HAN port", "Grids without a neutral").

Two cadences: List 1 brings a fresh total every 2.5 s, List 2 the
per-phase values every 10 s. The reading keeps the last per-phase values
with `phase_tick_ms` (when they came) and `phase_net_w` (the net power that
came with them); core/cadence.py adds the rise of the fresh total to them.

HanParser
    ``HanParser()``: builds its buffers once (MAX_FRAME bytes for a frame,
    a 256-byte read chunk in the driver). ``feed(data, start=0, end=None)
    -> int`` consumes bytes as P1Parser.feed does (meters/p1.py) and returns
    the index after the byte that completed a frame; then ``ready`` is True,
    ``accepted`` whether the reading was taken, ``error`` why not. Counters:
    ``n_frames``, ``n_accepted``, ``n_rejected``, ``n_crc_errors``.
    ``reading``: a GridReading, changed only by an accepted frame (its
    tick_ms: when the frame's last chunk came, in the driver; 0 in the bare parser). ``crc16_x25(data, start, end)`` is the CRC.

HanMeter
    ``HanMeter(uart, phases, ticks_ms, sleep_ms)``: the driver, the same
    class built with a UART; ``poll()`` and ``async run(on_reading)`` as
    every meter. Nothing is allocated per frame.
"""

from micropython import const

from chargeguard.core.model import GridReading

MAX_FRAME = const(1024)  # bytes between the flags; an hourly three-phase List 3 is under 500
_CHUNK = const(256)
_POLL_MS = const(50)  # 2400 baud is 240 bytes/s: a 256-byte chunk fills in about a second
_MIN_FRAME = const(7)  # format (2), two 1-byte addresses, control, HCS (2)

_FLAG = const(0x7E)
_HUNT = const(0)  # waiting for a flag
_OPEN = const(1)  # after a flag: another flag, or a frame's format byte
_LENGTH = const(2)
_BODY = const(3)
_CLOSE = const(4)  # the frame's bytes are in: its closing flag must come

# Reading slots (self._v); _ABSENT = not in this frame.
_IMP = const(0)
_EXP = const(1)
_CUR = const(2)  # 2..4 the phase currents, mA
_VOLT = const(5)  # 5..7 the phase voltages, mV
_PIMP = const(8)  # 8..10 per-phase import power, W
_PEXP = const(11)  # 11..13 per-phase export power, W
_EIMP = const(14)
_EEXP = const(15)
_SLOTS = const(16)
_ABSENT = const(-(1 << 30))

# Units (DLMS enum) and what a slot's value must be in.
_U_W = const(27)
_U_WH = const(30)
_U_A = const(33)
_U_V = const(35)
_MAX_W = const(1000000)
_MAX_MA = const(2000000)
_MAX_MV = const(1000000)
_MAX_WH = const(999999999)

# Decoder states for the OBIS / value / scaler-unit pattern.
_S_NONE = const(0)
_S_OBIS = const(1)  # an OBIS code came: its value next
_S_VALUE = const(2)  # a value came: a scaler-unit structure may follow
_S_SCALER = const(3)  # that structure's header came: the scaler next
_S_UNIT = const(4)  # the scaler came: the unit next


def crc16_x25(data, start, end):
    """CRC-16/X-25 (HDLC's FCS) of data[start:end]: reflected 0x1021, init and final xor 0xFFFF."""
    crc = 0xFFFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def _slot(c, d):
    # The slot of OBIS 1.b.c.d.0.*, or -1 for a value that is not taken.
    if d == 7:
        if c == 1 or c == 2:
            return c - 1
        if c in (31, 51, 71):
            return _CUR + (c - 31) // 20
        if c in (32, 52, 72):
            return _VOLT + (c - 32) // 20
        if c in (21, 41, 61):
            return _PIMP + (c - 21) // 20
        if c in (22, 42, 62):
            return _PEXP + (c - 22) // 20
    elif d == 8 and (c == 1 or c == 2):
        return _EIMP + c - 1
    return -1


def _unit_of(slot):
    if slot < _CUR or _PIMP <= slot < _EIMP:
        return _U_W
    if slot < _VOLT:
        return _U_A
    if slot < _PIMP:
        return _U_V
    return _U_WH


def _scaled(value, exp):
    # value x 10**exp, rounded toward zero.
    while exp > 0:
        value *= 10
        exp -= 1
    while exp < 0:
        value = -(-value // 10) if value < 0 else value // 10
        exp += 1
    return value


class HanParser:
    def __init__(self, uart=None, phases=3, ticks_ms=None, sleep_ms=None):
        self.reading = GridReading()
        self.ready = False
        self.accepted = False
        self.error = None
        self.last_error = None
        self.n_frames = 0
        self.n_accepted = 0
        self.n_rejected = 0
        self.n_crc_errors = 0
        self._frame = bytearray(MAX_FRAME)
        self._v = [_ABSENT] * _SLOTS
        self._state = _HUNT
        self._n = 0
        self._len = 0
        self._phases = phases
        self._uart = uart
        self._ticks_ms = ticks_ms
        self._sleep_ms = sleep_ms
        if uart is not None:
            self._buf = bytearray(_CHUNK)
            self._pos = 0
            self._end = 0
            self._rx_tick = 0

    def feed(self, data, start=0, end=None):
        """Consume data[start:end]; return the index after a completed frame, or end (see the module doc)."""
        if end is None:
            end = len(data)
        self.ready = False
        frame = self._frame
        i = start
        while i < end:
            b = data[i]
            i += 1
            state = self._state
            if state == _BODY:
                frame[self._n] = b
                self._n += 1
                if self._n == self._len:
                    self._state = _CLOSE
            elif state == _HUNT:
                if b == _FLAG:
                    self._state = _OPEN
            elif state == _OPEN:
                if b & 0xF0 == 0xA0:
                    frame[0] = b
                    self._n = 1
                    self._state = _LENGTH
                elif b != _FLAG:
                    self._state = _HUNT  # noise between frames
            elif state == _LENGTH:
                frame[1] = b
                self._n = 2
                length = (frame[0] & 7) << 8 | b
                if length < _MIN_FRAME or length > MAX_FRAME:
                    self._state = _OPEN if b == _FLAG else _HUNT
                    self._done("too long" if length > MAX_FRAME else "malformed")
                    return i
                self._len = length
                self._state = _BODY
            else:  # _CLOSE
                if b == _FLAG:
                    self._state = _OPEN  # a closing flag may open the next frame
                    self._done(self._decode())
                else:
                    self._state = _HUNT
                    self._done("no closing flag")
                return i
        return end

    def _done(self, error):
        self.ready = True
        self.n_frames += 1
        self.error = error
        self.accepted = error is None
        if error is None:
            self.n_accepted += 1
        else:
            self.n_rejected += 1
            if error.endswith("mismatch"):  # "fcs mismatch", "hcs mismatch"
                self.n_crc_errors += 1

    # -- one frame ---------------------------------------------------------

    def _decode(self):
        f = self._frame
        n = self._len
        if crc16_x25(f, 0, n - 2) != f[n - 2] | f[n - 1] << 8:
            return "fcs mismatch"
        if f[0] & 0x08:
            return "segmented"
        i = 2
        for _ in range(2):  # destination, then source address
            k = 0
            while i < n and not f[i] & 1 and k < 3:
                i += 1
                k += 1
            if i >= n or not f[i] & 1:
                return "malformed"
            i += 1
        i += 1  # control
        if i + 2 > n - 2:
            return "malformed"  # no information field
        if crc16_x25(f, 0, i) != f[i] | f[i + 1] << 8:
            return "hcs mismatch"
        i += 2
        end = n - 2
        if i < end and f[i] == 0xE6:
            i += 3  # LLC
        if i >= end:
            return "malformed"
        tag = f[i]
        if tag != 0x0F:
            return "ciphered" if tag in (0xDB, 0xDF, 0xE0) else "not a data notification"
        i += 5  # tag, long-invoke-id-and-priority
        if i < end and f[i] == 0x09:
            i += 1  # a date-time sent as a typed octet string
        if i >= end:
            return "malformed"
        i += 1 + f[i]
        return self._body(f, i, end)

    def _body(self, f, i, end):
        v = self._v
        for k in range(_SLOTS):
            v[k] = _ABSENT
        state = _S_NONE
        slot = -1
        value = 0
        scaler = 0
        unscaled = False
        dropped = None
        while True:
            if i >= end:
                tag = -1  # the end closes a pending value
            else:
                tag = f[i]
                i += 1
            if state == _S_VALUE and tag != 0x02:
                unscaled = unscaled or slot >= 0
                state = _S_NONE
            if tag < 0:
                break
            if tag == 0x01 or tag == 0x02:  # array, structure: a count
                if i >= end:
                    return "malformed"
                count = f[i]
                i += 1
                if count & 0x80:  # long form: the count's bytes follow
                    i += count & 0x7F
                if state == _S_VALUE:
                    state = _S_SCALER if tag == 0x02 and count == 2 else _S_NONE
                    if state == _S_NONE:
                        unscaled = unscaled or slot >= 0
                continue
            if tag == 0x09 or tag == 0x0A:  # octet string, visible string
                if i >= end:
                    return "malformed"
                size = f[i]
                i += 1
                if i + size > end:
                    return "malformed"
                if tag == 0x09 and size == 6:
                    slot = _slot(f[i + 2], f[i + 3]) if f[i] == 1 and f[i + 4] == 0 else -1
                    state = _S_OBIS
                else:
                    state = _S_NONE
                i += size
                continue
            if tag in (0x05, 0x06):
                size = 4
            elif tag in (0x10, 0x12):
                size = 2
            elif tag in (0x0F, 0x11, 0x16, 0x03):
                size = 1
            elif tag in (0x14, 0x15):
                size = 8
            elif tag == 0x19:  # date-time
                size = 12
            elif tag == 0x00:  # null-data
                size = 0
            else:
                return "malformed"
            if i + size > end:
                return "malformed"
            x = 0
            for k in range(size):
                x = x << 8 | f[i + k]
            if size and f[i] & 0x80 and tag in (0x05, 0x10, 0x0F, 0x14):
                x -= 1 << (8 * size)
            i += size
            if state == _S_OBIS and size and tag not in (0x16, 0x03, 0x19):
                value = x
                state = _S_VALUE
            elif state == _S_SCALER and tag == 0x0F:
                scaler = x
                state = _S_UNIT
            elif state == _S_UNIT and tag == 0x16:
                state = _S_NONE
                if slot >= 0:
                    if x != _unit_of(slot):
                        dropped = x
                    else:
                        v[slot] = _scaled(value, scaler + (3 if _CUR <= slot < _PIMP else 0))
            else:
                state = _S_NONE
        if unscaled:
            return "no scaler"
        return self._take(dropped)

    def _take(self, dropped):
        # The frame's values into the reading (only now: a refused frame changes nothing).
        v = self._v
        for k, top in ((_IMP, _MAX_W), (_EXP, _MAX_W), (_EIMP, _MAX_WH), (_EEXP, _MAX_WH)):
            if v[k] != _ABSENT and not 0 <= v[k] <= top:
                v[k] = _ABSENT
        phases = self._phases
        currents = 0
        for p in range(3):
            if v[_CUR + p] != _ABSENT and -_MAX_MA <= v[_CUR + p] <= _MAX_MA:
                currents += 1
            else:
                v[_CUR + p] = _ABSENT
        if v[_IMP] == _ABSENT and v[_EXP] == _ABSENT and not currents:
            return "no power values" if dropped is None else "unit %d where another was meant" % dropped
        r = self.reading
        if v[_IMP] != _ABSENT or v[_EXP] != _ABSENT:
            r.import_w = v[_IMP] if v[_IMP] != _ABSENT else 0
            r.export_w = v[_EXP] if v[_EXP] != _ABSENT else 0
        if v[_EIMP] != _ABSENT:
            r.energy_import_wh = v[_EIMP]
        if v[_EEXP] != _ABSENT:
            r.energy_export_wh = v[_EEXP]
        if currents:
            # A 3-wire IT meter measures L1 and L3 only: L2 carries at most |I1| + |I3|.
            if phases == 3 and v[_CUR + 1] == _ABSENT and v[_CUR] != _ABSENT and v[_CUR + 2] != _ABSENT:
                v[_CUR + 1] = abs(v[_CUR]) + abs(v[_CUR + 2])
            count = 0
            for p in range(phases):
                current = v[_CUR + p]
                volt = v[_VOLT + p]
                r.voltage_mv[p] = volt if volt != _ABSENT and 0 <= volt <= _MAX_MV else None
                if current == _ABSENT:
                    r.current_ma[p] = 0
                    r.power_w[p] = 0
                    continue
                count = p + 1
                current = abs(current)
                pimp = v[_PIMP + p]
                pexp = v[_PEXP + p]
                if pimp != _ABSENT or pexp != _ABSENT:
                    power = (pimp if pimp != _ABSENT else 0) - (pexp if pexp != _ABSENT else 0)
                    r.current_ma[p] = -current if power < 0 else current
                    r.power_w[p] = power
                else:  # no per-phase sign: taken as import (safe)
                    r.current_ma[p] = current
                    r.power_w[p] = current * ((r.voltage_mv[p] or 230000) // 1000) // 1000
            r.phase_count = count
            r.phase_tick_ms = None  # measured with the total: at tick_ms
            r.phase_net_w = None
            self._phase_at = self._rx_tick
            self._net_then = r.net_power_w()
        elif r.phase_count:
            # A List 1: a fresh total beside the last per-phase values (core/cadence.py).
            r.phase_tick_ms = self._phase_at
            r.phase_net_w = self._net_then
        r.tick_ms = self._rx_tick
        self.last_error = None if dropped is None else "unit %d where another was meant: that value dropped" % dropped
        return None

    _net_then = None
    _phase_at = 0
    _rx_tick = 0  # when the bytes of the frame being read came (the driver's; 0 for the bare parser)

    # -- the driver ----------------------------------------------------------

    def poll(self):
        """HanMeter: take in what the UART holds; True when an accepted frame just completed."""
        chunks = 0
        while True:
            if self._pos < self._end:
                self._pos = self.feed(self._buf, self._pos, self._end)
                if self.ready:
                    if self.accepted:
                        return True
                    self.last_error = self.error
            elif chunks >= 4:
                return False
            else:
                n = self._uart.read_now(self._buf)
                if not n:
                    return False
                chunks += 1
                self._rx_tick = self._ticks_ms()
                self._pos = 0
                self._end = n

    async def run(self, on_reading):
        """HanMeter: read the port forever; call on_reading() after every accepted frame."""
        sleep_ms = self._sleep_ms
        while True:
            if self.poll():
                on_reading()
                await sleep_ms(0)
            else:
                await sleep_ms(_POLL_MS)


HanMeter = HanParser


def from_config(meter_doc, platform, doc):
    """The HAN driver for a validated `meter` section of type "han" on the P1 UART; doc: site.phases."""
    parity = {"8E1": 0, "8N1": None}[meter_doc["format"]]
    uart = platform.open_uart(meter_doc["baud"], 8, parity, 1, meter_doc["invert"])
    return HanMeter(uart, doc["site"]["phases"], platform.ticks_ms, platform.sleep_ms)
