"""P1 / DSMR smart-meter port: streaming framer, CRC16/ARC check and parser.

Covers DSMR 2.2 to 5.0 and the national variants built on it (BE e-MUCS,
LU Smarty, SE, AT plaintext). Bytes are consumed as they arrive; nothing is
allocated per telegram once the parser is built.

P1Parser
    ``P1Parser()`` builds the buffers (a line buffer, a header buffer) once;
    the CRC table is a constant (in flash on a frozen image).

    ``feed(data, start=0, end=None) -> int`` consumes ``data[start:end]``
    (bytes, bytearray or memoryview, indexed in place) and returns the
    index right after the byte that completed a telegram, or ``end`` when
    none completed. After each call ``ready`` says whether a telegram
    completed; the caller inspects the result and calls ``feed`` again from
    the returned index::

        i = 0
        while i < n:
            i = parser.feed(buf, i, n)
            if parser.ready:
                use(parser)

    ``idle()`` tells the parser the line went quiet: it completes a
    telegram that is only waiting for an end that may never come (a CRC of
    fewer than 4 digits, a bare ``!`` with no line end, a pre-DSMR 4
    telegram with no ``!`` at all). ``finish()`` marks the end of the input
    (a capture file): as ``idle()``, and a telegram still open is reported
    as truncated; the next byte is again at a line start.

    Every telegram that started (see Framing) ends in exactly one
    completion, accepted or not. After a completion:

    - ``ready`` True; ``accepted`` True when the reading was taken;
    - ``crc``: "valid", "invalid" or "absent";
    - ``error``: None when accepted, else "crc mismatch",
      "no crc on a DSMR 4+ telegram", "truncated" (a new telegram began
      before this one ended, or the input ended), "too long" (more than
      6144 bytes from ``/`` to ``!``) or "no power values";
    - ``reading``: a GridReading, updated in place only when a telegram is
      accepted (its tick_ms is left to the driver);
    - ``header_bytes()``: the identification line, with its leading ``/``
      and without the line end, as fresh bytes (a tool path: it allocates);
    - counters ``n_telegrams``, ``n_accepted``, ``n_rejected``,
      ``n_crc_errors``, ``n_truncated``, ``n_overflows``, and
      ``n_skipped``: bytes outside any telegram (line ends not counted;
      noise dropped from a header line counts too), held at 2**30 - 1.

    ``crc16(data, start=0, end=None, crc=0) -> int`` is the same CRC as a
    function, for tools and tests.

Framing: between telegrams any ``/`` starts one, even after line noise with
no line end. Inside a telegram:

- a ``/`` at a line start means it was cut (counted as truncated) --
  except for a pre-4 telegram that already gave a power value, which some
  DSMR 2.2 meters end without ``!``: that one is complete;
- a second ``/`` in the header line means the first was noise: the
  telegram starts again there, with no completion (a header holds no ``/``);
- a header line that begins mid-line (``/``, 3 letters, a letter or digit,
  at least one more printable character, no ``(``, ``)``, ``!`` or ``/``, up
  to the line end) ends the cut telegram (truncated) and starts the new one
  at its ``/``. A ``/`` inside a text message is followed by ``)`` before
  the line end, so DSMR 2.2 plain-text messages still parse.

``!`` at a line start ends the body; up to 4 hex digits follow
(either case, unpadded accepted), ended by the 4th digit, CR/LF, a ``/``
or ``idle()``. The CRC covers ``/`` through ``!``. A telegram is DSMR 4+
when it has a ``1-3:0.2.8`` version of 40 or more (or one that does not
parse) or an e-MUCS ``0-0:96.1.4`` version; only older telegrams may come
without a CRC. Header text is not used to decide the version.

Values: per-phase net power = import - export; the current's sign comes
from the phase power (the wire never signs it). Whole-amp currents become
max(|I|, |P/U|) (U = the phase voltage, else 230 V); currents
with decimals are used as given; a phase with power and no current gets
|P/U|. phase_count is the highest phase with a power or a current (a
voltage alone is not per-phase data). ``voltage_mv`` is None for a phase
the telegram gave no voltage for; 0 V is a measured value (a lost phase),
reported as 0, and P/U then uses 230 V.
Values that cannot be real (more than 9 significant digits, or above the
per-quantity maximum: 1 MW, 2000 A, 1000 V, 999999999 Wh) are ignored one
by one. Everything stays in small integers, which are 31-bit on the ESP32.

P1Meter
    ``P1Meter(uart, ticks_ms, sleep_ms)``: the driver. It is the same class
    as P1Parser (one class costs less heap than two), built with a UART;
    ``parser`` is the object itself, kept for callers that reach the
    counters through it. ``uart.read_now(buf)`` copies the bytes already
    received and returns their count (0 if none) without waiting;
    ``ticks_ms()`` and ``await sleep_ms(ms)`` are the platform's.

    ``poll() -> bool``: True when a fresh accepted reading is in
    ``reading`` (tick_ms = when the chunk holding its last byte arrived);
    False when nothing more is there, after a rejected telegram (its error
    kept in ``last_error``), or after 32 chunks of 256 bytes without a
    telegram, so a noisy line cannot hold up the loop. Bytes after a
    completed telegram are kept for the next call.

    ``await run(on_reading)``: the meter task; calls ``on_reading()`` after
    every accepted telegram. Every meter driver has this same ``run``.

The limits are private ``const()``s (``_MAX_TELEGRAM_BYTES`` and so on): a
public module constant is a global, which costs heap on the device.
"""

from micropython import const

from chargeguard.core.model import GridReading

# Longest telegram accepted, bytes from '/' to '!'. DSMR 5 telegrams with a
# full 1024-character text message and four M-Bus devices stay near 4 KB;
# garbage with no end is dropped when it reaches this.
_MAX_TELEGRAM_BYTES = const(6144)
# Longest line kept for parsing. Every line read here is under 50 bytes;
# longer ones (text messages, the BE peak history) are only CRC-checked.
_LINE_MAX = const(96)
# Longest header kept for header_bytes().
_HEADER_MAX = const(64)
# Voltage assumed for I = P/U when the meter gives none for the phase.
_NOMINAL_VOLTAGE_MV = const(230000)
# A phase voltage below this is not used for P/U (lost phase, bad value).
_MIN_VOLTAGE_MV = const(50000)
# Largest plausible values: anything above is a dummy and ignored.
_MAX_POWER_W = const(1000000)
_MAX_CURRENT_MA = const(2000000)
_MAX_VOLTAGE_MV = const(1000000)
_MAX_ENERGY_WH = const(999999999)
# Significant digits a value may have: 10^9 still fits a 31-bit small int.
_MAX_DIGITS = const(9)
# First `1-3:0.2.8` version value (DSMR 4.0) whose telegrams carry a CRC.
_VERSION_WITH_CRC = const(40)
# P1Meter: quiet time after which idle() completes a telegram that is only
# waiting for its line end (a meter sends CRC and CR/LF back to back).
_IDLE_FLUSH_MS = const(200)
# P1Meter: UART read buffer, and how many chunks one poll() may consume.
_READ_BUFFER_BYTES = const(256)
_READ_CHUNKS_MAX = const(32)
# How often the driver looks at the UART when it is quiet. At 115200 baud a
# telegram's end waits at most this long before the guard sees it.
_POLL_MS = const(10)

_TICKS_MASK = const(0x3FFFFFFF)  # MicroPython ticks wrap at 2**30
# n_skipped stops here: a small int on the device (no heap as it grows).
_COUNT_MAX = const(0x3FFFFFFF)
# Shortest header taken as one when it appears mid-line: '/', 3 letters of
# the manufacturer code, the baud rate character and 1 of identification.
_HEADER_MIN = const(6)

_IDLE = const(0)  # between telegrams: looking for '/'
_BODY = const(1)  # inside a telegram, before '!'
_CRC = const(2)  # after '!', reading the CRC digits

_END_CRC = const(0)  # '!' seen (CRC digits or none)
_END_CUT = const(1)  # cut short
_END_LONG = const(2)  # over _MAX_TELEGRAM_BYTES
_END_NOMARK = const(3)  # pre-4 telegram ended by the next one, no '!'

# Units of a value; also the index of their limit in the tuple in _end_line.
_U_NONE = const(0)
_U_W = const(1)
_U_WH = const(2)
_U_A = const(3)
_U_V = const(4)

_ABSENT = const(-1)  # value not in the telegram (values are never negative)
_BAD = const(-2)  # a tariff sum that includes an unusable value

# What a telegram gave lives in one list (P1Parser._v), so that starting a
# telegram is one loop and the parser has few attributes. Slots:
_S_IMP = const(0)  # 1-0:1.7.0 total import W; _S_IMP + 1: 2.7.0 export
_S_PHASE = const(2)  # 21/22.7.0 L1 import/export W, then L2 (41/42), L3 (61/62)
_S_CUR = const(8)  # 31/51/71.7.0 current mA, L1..L3
_S_VOLT = const(11)  # 32/52/72.7.0 voltage mV, L1..L3
_S_DEC = const(14)  # decimals the current had on the wire, L1..L3
_S_EREG = const(17)  # 1.8.0 / 2.8.0 energy registers Wh, import then export
_S_ETAR = const(19)  # sum of 1.8.x / 2.8.x tariff registers Wh (or _BAD)
_S_AVG = const(21)  # 1-0:1.4.0 BE average demand W
_S_PEAK = const(22)  # 1-0:1.6.0 BE month peak W
_S_V4 = const(23)  # >= 0: a DSMR 4+ telegram, which must carry a CRC
_S_HLEN = const(24)  # length of the header line kept, -1 until it ended
_SLOTS = const(25)

# The CRC16/ARC table (reflected polynomial 0xA001) as two 256-byte
# constants, the entries' low and high bytes: frozen, bytes constants stay
# in flash (a table built at run time took 0.5 KB of heap); as .mpy they
# cost what the built table did. An entry is _CRC_HI[i] << 8 | _CRC_LO[i];
# test_p1.py checks them against the polynomial.
_CRC_LO = (
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
)
_CRC_HI = (
    b"\x00\xc0\xc1\x01\xc3\x03\x02\xc2\xc6\x06\x07\xc7\x05\xc5\xc4\x04"
    b"\xcc\x0c\x0d\xcd\x0f\xcf\xce\x0e\x0a\xca\xcb\x0b\xc9\x09\x08\xc8"
    b"\xd8\x18\x19\xd9\x1b\xdb\xda\x1a\x1e\xde\xdf\x1f\xdd\x1d\x1c\xdc"
    b"\x14\xd4\xd5\x15\xd7\x17\x16\xd6\xd2\x12\x13\xd3\x11\xd1\xd0\x10"
    b"\xf0\x30\x31\xf1\x33\xf3\xf2\x32\x36\xf6\xf7\x37\xf5\x35\x34\xf4"
    b"\x3c\xfc\xfd\x3d\xff\x3f\x3e\xfe\xfa\x3a\x3b\xfb\x39\xf9\xf8\x38"
    b"\x28\xe8\xe9\x29\xeb\x2b\x2a\xea\xee\x2e\x2f\xef\x2d\xed\xec\x2c"
    b"\xe4\x24\x25\xe5\x27\xe7\xe6\x26\x22\xe2\xe3\x23\xe1\x21\x20\xe0"
    b"\xa0\x60\x61\xa1\x63\xa3\xa2\x62\x66\xa6\xa7\x67\xa5\x65\x64\xa4"
    b"\x6c\xac\xad\x6d\xaf\x6f\x6e\xae\xaa\x6a\x6b\xab\x69\xa9\xa8\x68"
    b"\x78\xb8\xb9\x79\xbb\x7b\x7a\xba\xbe\x7e\x7f\xbf\x7d\xbd\xbc\x7c"
    b"\xb4\x74\x75\xb5\x77\xb7\xb6\x76\x72\xb2\xb3\x73\xb1\x71\x70\xb0"
    b"\x50\x90\x91\x51\x93\x53\x52\x92\x96\x56\x57\x97\x55\x95\x94\x54"
    b"\x9c\x5c\x5d\x9d\x5f\x9f\x9e\x5e\x5a\x9a\x9b\x5b\x99\x59\x58\x98"
    b"\x88\x48\x49\x89\x4b\x8b\x8a\x4a\x4e\x8e\x8f\x4f\x8d\x4d\x4c\x8c"
    b"\x44\x84\x85\x45\x87\x47\x46\x86\x82\x42\x43\x83\x41\x81\x80\x40"
)
_CRC_SLASH = const(0xDC41)  # the CRC of "/" alone (from 0): where every telegram's CRC starts


def _count(count, n):
    # count + n, held at _COUNT_MAX.
    return count + n if count < _COUNT_MAX - n else _COUNT_MAX


def crc16(data, start=0, end=None, crc=0):
    """CRC16/ARC of data[start:end], continuing from `crc`."""
    lo = _CRC_LO
    hi = _CRC_HI
    if end is None:
        end = len(data)
    while start < end:
        k = (crc ^ data[start]) & 0xFF
        crc = (hi[k] << 8) | ((crc >> 8) ^ lo[k])
        start += 1
    return crc


class P1Parser:
    """Streaming P1 telegram framer and parser; with a UART, the P1 driver (see module doc)."""

    def __init__(self, uart=None, ticks_ms=None, sleep_ms=None):
        self._lb = bytearray(_LINE_MAX)
        self._hb = bytearray(_HEADER_MAX)
        self._obis = [0, 0, 0, 0, 0]
        self._v = [_ABSENT] * _SLOTS
        self._v[_S_HLEN] = 0
        self.reading = GridReading()
        self._state = _IDLE
        self._at_ls = True  # the stream start counts as a line start
        # A header that began mid-line inside a telegram (see feed()): its
        # bytes from '/' (_cb), their count (0: none) and CRC. `_restart`:
        # the cut telegram was just reported; the new one is taken up at
        # the next call.
        self._cb = bytearray(_HEADER_MAX)
        self._cn = 0
        self._ccrc = 0
        self._restart = False
        self._crc = 0
        self._given = 0
        self._digits = 0
        self._ll = 0
        self._total = 0
        self.ready = False
        self.accepted = False
        self.crc = "absent"
        self.error = None
        self.n_telegrams = 0
        self.n_accepted = 0
        self.n_rejected = 0
        self.n_crc_errors = 0
        self.n_truncated = 0
        self.n_overflows = 0
        self.n_skipped = 0
        # The driver (P1Meter).
        self.parser = self
        self.last_error = None
        self._uart = uart
        self._ticks_ms = ticks_ms
        self._sleep_ms = sleep_ms
        self._buf = bytearray(_READ_BUFFER_BYTES) if uart else None
        self._pos = 0
        self._end = 0
        self._rx_tick = 0  # when the chunk in _buf arrived
        self._quiet = True  # idle() already ran since the last byte

    def header_bytes(self):
        """The last telegram's header line (with '/'), as new bytes."""
        n = self._v[_S_HLEN]
        return bytes(self._hb[:n]) if n > 0 else b""

    def feed(self, data, start=0, end=None):
        """Consume data[start:end]; return where to continue (see module doc)."""
        if end is None:
            end = len(data)
        self.ready = False
        if self._restart:
            self._take_up()
        lo = _CRC_LO
        hi = _CRC_HI
        lb = self._lb
        cb = self._cb
        state = self._state
        at_ls = self._at_ls
        crc = self._crc
        ll = self._ll
        total = self._total
        cn = self._cn
        ccrc = self._ccrc
        skipped = self.n_skipped
        i = start
        while i < end:
            b = data[i]
            if state == _BODY:
                if b == 0x2F:
                    if at_ls:
                        # A new telegram begins: this one never got its '!'.
                        self.n_skipped = skipped
                        self._cn = 0
                        self._ll = 0
                        self._state = _IDLE
                        self._at_ls = True
                        self._close(_END_NOMARK if self._v[_S_V4] < 0 and self._has_power() else _END_CUT, crc)
                        return i  # the '/' is read again as the next start
                    if self._v[_S_HLEN] < 0:
                        # A second '/' in the header line, which never holds
                        # one (IEC 62056-21): what came before was noise.
                        # Start again here, silently.
                        skipped = _count(skipped, total)
                        crc = _CRC_SLASH
                        total = 1
                        lb[0] = b
                        ll = 1
                        i += 1
                        continue
                total += 1
                if total > _MAX_TELEGRAM_BYTES:
                    self.n_skipped = skipped
                    self._cn = 0
                    self._ll = ll  # a header cut here is still reported
                    self._state = _IDLE
                    self._at_ls = False
                    self._close(_END_LONG, crc)
                    self._ll = 0
                    return i + 1
                k = (crc ^ b) & 0xFF
                crc = (hi[k] << 8) | ((crc >> 8) ^ lo[k])
                if b == 0x0A or b == 0x0D:
                    if cn >= _HEADER_MIN:
                        # A header line began mid-line: the telegram was cut
                        # there. Report it as truncated; the new one (its CRC
                        # runs from its '/') is taken up at the next call, and
                        # this line end is read again as its first.
                        self.n_skipped = skipped
                        self._state = _BODY
                        self._crc = ccrc
                        self._total = cn
                        self._cn = cn
                        self._restart = True
                        self._at_ls = False
                        self._ll = 0
                        self._close(_END_CUT, crc)
                        return i
                    cn = 0
                    if ll:
                        self._end_line(ll)
                        ll = 0
                    at_ls = True
                elif b == 0x21 and at_ls:
                    state = _CRC
                    self._given = 0
                    self._digits = 0
                    at_ls = False
                else:
                    at_ls = False
                    if b == 0x2F:
                        # Mid-line '/': a text message's, or the header of a
                        # telegram that cut this one. Follow it while it
                        # looks like a header: '/', 3 letters, a letter or
                        # digit (the baud rate character), then printable
                        # text without '(', ')', '!' or '/', to the line end.
                        cb[0] = b
                        cn = 1
                        ccrc = _CRC_SLASH
                    elif cn:
                        k = (ccrc ^ b) & 0xFF
                        ccrc = (hi[k] << 8) | ((ccrc >> 8) ^ lo[k])
                        if cn < 4:
                            ok = 0x41 <= (b & 0xDF) <= 0x5A
                        elif cn == 4:
                            ok = 0x30 <= b <= 0x39 or 0x41 <= (b & 0xDF) <= 0x5A
                        else:
                            ok = 0x20 <= b <= 0x7E and b != 0x28 and b != 0x29 and b != 0x21
                        if ok and cn < _HEADER_MAX:
                            cb[cn] = b
                            cn += 1
                        else:
                            cn = 0
                    if ll < _LINE_MAX:
                        lb[ll] = b
                        ll += 1
                    else:
                        ll = _LINE_MAX + 1  # overlong: only CRC-checked
            elif state == _CRC:
                if 0x30 <= b <= 0x39:
                    digit = b - 0x30
                elif 0x41 <= (b & 0xDF) <= 0x46:
                    digit = (b & 0xDF) - 0x37
                else:
                    digit = -1
                if digit >= 0:
                    self._given = (self._given << 4) | digit
                    self._digits += 1
                    if self._digits < 4:
                        i += 1
                        continue
                    i += 1  # four digits: complete at once
                elif b != 0x2F:
                    i += 1  # CR/LF (or junk) ends the CRC and is consumed
                # A '/' is left for the next telegram ("!1F28/ISK5...").
                self.n_skipped = skipped
                self._state = _IDLE
                self._at_ls = True
                self._ll = 0
                self._close(_END_CRC, crc)
                return i
            elif b == 0x2F:
                # No telegram in progress: any '/' starts one, even after
                # line noise with no line end. Forget the previous one's
                # values (the header length too: -1 until its line ends).
                state = _BODY
                v = self._v
                for k in range(_SLOTS):
                    v[k] = _ABSENT
                crc = _CRC_SLASH
                total = 1
                lb[0] = b
                ll = 1
                cn = 0
                at_ls = False
            elif b != 0x0A and b != 0x0D and skipped < _COUNT_MAX:
                skipped += 1  # outside any telegram (line ends not counted)
            i += 1
        self._state = state
        self._at_ls = at_ls
        self._crc = crc
        self._ll = ll
        self._total = total
        self._cn = cn
        self._ccrc = ccrc
        self.n_skipped = skipped
        return end

    def _take_up(self):
        # The header that cut the last telegram (feed(), `_restart`) becomes
        # the first line of the telegram in progress; its CRC and byte
        # count are already in _crc and _total.
        self._restart = False
        v = self._v
        for k in range(_SLOTS):
            v[k] = _ABSENT
        n = self._cn
        cb = self._cb
        lb = self._lb
        for k in range(n):
            lb[k] = cb[k]
        self._ll = n
        self._cn = 0
        self._state = _BODY

    def idle(self):
        """The line went quiet: complete a telegram only waiting for its end."""
        self.ready = False
        if self._restart:
            self._take_up()
        if self._state == _CRC:
            self._state = _IDLE
            self._at_ls = True
            self._close(_END_CRC, self._crc)
        elif self._state == _BODY and self._at_ls and self._v[_S_V4] < 0 and self._has_power():
            self._state = _IDLE
            self._at_ls = True
            self._ll = 0
            self._close(_END_NOMARK, self._crc)

    def finish(self):
        """End of input: complete or drop what is pending (see module doc)."""
        self.idle()
        if not self.ready and self._state == _BODY:
            self._state = _IDLE
            self._close(_END_CUT, self._crc)
            self._ll = 0
        self._at_ls = True

    def poll(self):
        """P1Meter: take in what the UART holds; True when an accepted telegram just completed."""
        chunks = 0
        while True:
            if self._pos < self._end:
                self._pos = self.feed(self._buf, self._pos, self._end)
            elif chunks >= _READ_CHUNKS_MAX:
                return False
            else:
                n = self._uart.read_now(self._buf)
                now = self._ticks_ms()
                if n:
                    chunks += 1
                    self._rx_tick = now
                    self._quiet = False
                    self._pos = 0
                    self._end = n
                    continue
                if self._quiet or (now - self._rx_tick) & _TICKS_MASK < _IDLE_FLUSH_MS:
                    return False
                self._quiet = True
                self.idle()
                chunks = _READ_CHUNKS_MAX  # the line is quiet: done after this
            if self.ready:
                if self.accepted:
                    self.reading.tick_ms = self._rx_tick
                    return True
                self.last_error = self.error

    async def run(self, on_reading):
        """P1Meter: read the port forever; call on_reading() after every accepted telegram.

        One coroutine for the life of the driver, sleeping _POLL_MS (10 ms)
        between looks at the UART: nothing is allocated per poll or per
        telegram.
        """
        sleep_ms = self._sleep_ms
        while True:
            if self.poll():
                on_reading()
                await sleep_ms(0)  # let the chargers' tasks send at once
            else:
                await sleep_ms(_POLL_MS)

    # -- per telegram -----------------------------------------------------

    def _has_power(self):
        # A total or per-phase power value (slots _S_IMP.._S_CUR - 1).
        v = self._v
        for k in range(_S_CUR):
            if v[k] >= 0:
                return True
        return False

    def _close(self, how, crc):
        self.ready = True
        self.accepted = False
        self.crc = "absent"
        self.n_telegrams += 1
        v = self._v
        if v[_S_HLEN] < 0:
            # Cut inside the header line: keep what there is of it.
            self._end_line(self._ll)
        error = None
        if how == _END_LONG:
            self.n_overflows += 1
            error = "too long"
        elif how == _END_CUT:
            self.n_truncated += 1
            error = "truncated"
        elif self._digits and how == _END_CRC:
            if self._given == crc:
                self.crc = "valid"
            else:
                self.crc = "invalid"
                self.n_crc_errors += 1
                error = "crc mismatch"
        elif v[_S_V4] >= 0:
            error = "no crc on a DSMR 4+ telegram"
        if error is None and not self._has_power():
            error = "no power values"
        self._digits = 0
        self.error = error
        if error is not None:
            self.n_rejected += 1
            return
        self.accepted = True
        self.n_accepted += 1
        # Accepted: only now is the reading touched, so a rejected
        # telegram leaves the previous one in place.
        r = self.reading
        r.reset()
        if v[_S_IMP] >= 0:
            r.import_w = v[_S_IMP]
        if v[_S_IMP + 1] >= 0:
            r.export_w = v[_S_IMP + 1]
        count = 0
        for k in range(3):
            p_imp = v[_S_PHASE + 2 * k]
            p_exp = v[_S_PHASE + 1 + 2 * k]
            cur = v[_S_CUR + k]
            volt = v[_S_VOLT + k]
            if volt >= 0:
                r.voltage_mv[k] = volt  # 0 V is measured: a lost phase
            has_p = p_imp >= 0 or p_exp >= 0
            if not has_p and cur < 0:
                continue
            count = k + 1
            net = 0
            if has_p:
                if p_imp > 0:
                    net = p_imp
                if p_exp > 0:
                    net -= p_exp
                r.power_w[k] = net
            if cur >= 0 and v[_S_DEC + k] > 0:
                mag = cur
            else:
                # |I| in mA = |P| / U, with U in decivolts so that every
                # step stays in 31-bit small ints (|P| <= _MAX_POWER_W).
                u = (volt if volt >= _MIN_VOLTAGE_MV else _NOMINAL_VOLTAGE_MV) // 100
                p = -net if net < 0 else net
                q = p // u
                mag = q * 10000 + ((p - q * u) * 10000 + (u >> 1)) // u
                if cur > mag:
                    mag = cur
            r.current_ma[k] = -mag if net < 0 else mag
        r.phase_count = count
        # Energy: the total register when given, else the tariff sum.
        e = v[_S_EREG] if v[_S_EREG] >= 0 else v[_S_ETAR]
        r.energy_import_wh = e if e >= 0 else None
        e = v[_S_EREG + 1] if v[_S_EREG + 1] >= 0 else v[_S_ETAR + 1]
        r.energy_export_wh = e if e >= 0 else None
        if v[_S_AVG] >= 0:
            r.avg_demand_w = v[_S_AVG]
        if v[_S_PEAK] >= 0:
            r.month_peak_w = v[_S_PEAK]

    # -- per line ---------------------------------------------------------

    def _end_line(self, n):
        lb = self._lb
        v = self._v
        if v[_S_HLEN] < 0:
            # The first line is the header: keep it for header_bytes().
            if n > _HEADER_MAX:
                n = _HEADER_MAX
            hb = self._hb
            for k in range(n):
                hb[k] = lb[k]
            v[_S_HLEN] = n
            return
        if n > _LINE_MAX:
            return
        # OBIS reference a-b:c.d.e, each field 1..3 digits, then '('.
        obis = self._obis
        f = 0
        x = 0
        digits = 0
        i = 0
        while True:
            if i >= n:
                return
            c = lb[i]
            i += 1
            if 0x30 <= c <= 0x39:
                if digits == 3:
                    return
                x = x * 10 + c - 0x30
                digits += 1
            elif digits and c == b"-:..("[f]:
                obis[f] = x
                f += 1
                if f == 5:
                    break
                x = 0
                digits = 0
            else:
                return
        # The value is the last '(...)' group: 1.6.0 has a timestamp first.
        j = n
        while j > i and lb[j - 1] == 0x20:
            j -= 1
        if j <= i or lb[j - 1] != 0x29:
            return
        j -= 1
        i = j
        while i > 0 and lb[i - 1] != 0x28:
            i -= 1
        # Which value the line holds: its slot in _v and its unit.
        a = obis[0]
        c = obis[2]
        d = obis[3]
        e = obis[4]
        if a == 0:
            if c == 96 and d == 1 and e == 4:
                v[_S_V4] = 1  # e-MUCS (BE) version line: always with CRC
            return
        if a != 1:  # electricity, any channel b (XT211 sends 1-1:)
            return
        unit = _U_W
        if d == 7 and e == 0:
            group = c // 10
            kind = c - group * 10  # 1 import (or current), 2 export (or voltage)
            if kind != 1 and kind != 2:
                return
            if group == 0:
                slot = _S_IMP + kind - 1
            elif 2 <= group <= 7:
                phase = (group - 2) >> 1
                if (group & 1) == 0:  # 21/41/61 import, 22/42/62 export
                    slot = _S_PHASE + 2 * phase + kind - 1
                elif kind == 1:  # 31/51/71 current
                    slot = _S_CUR + phase
                    unit = _U_A
                else:  # 32/52/72 voltage
                    slot = _S_VOLT + phase
                    unit = _U_V
            else:
                return
        elif d == 8 and (c == 1 or c == 2) and e <= 9:
            slot = (_S_EREG if e == 0 else _S_ETAR) + c - 1
            unit = _U_WH
        elif c == 1 and e == 0 and d == 4:
            slot = _S_AVG
        elif c == 1 and e == 0 and d == 6:
            slot = _S_PEAK
        elif c == 0 and d == 2 and e == 8:
            slot = _S_V4
            unit = _U_NONE
        else:
            return
        # The value in lb[i:j] ("00.498*kW"), scaled to W, Wh, mA or mV:
        # x = -1 when it is not a plain number of the wanted unit or cannot
        # be real. One pass: `break` leaves x at -1.
        x = -1
        m = 0
        sig = 0
        dec = 0
        dot = False
        seen = False
        while True:
            while i < j:
                c = lb[i]
                if 0x30 <= c <= 0x39:
                    seen = True
                    if dot:
                        dec += 1
                    if m or c != 0x30:
                        sig += 1
                        if sig > _MAX_DIGITS:
                            break  # a digit then stops the unit check below
                        m = m * 10 + c - 0x30
                elif c == 0x2E and not dot:
                    dot = True
                else:
                    break
                i += 1
            if not seen:
                break
            got = _U_NONE
            exp = 0
            if i < j:
                if lb[i] != 0x2A:  # '*'
                    break
                i += 1
                if i < j and (lb[i] | 0x20) == 0x6B:  # k
                    exp = 3
                    i += 1
                rest = j - i
                c = (lb[i] | 0x20) if rest > 0 else 0
                if rest == 1 and c == 0x77:  # W
                    got = _U_W
                elif rest == 2 and c == 0x77 and (lb[i + 1] | 0x20) == 0x68:  # Wh
                    got = _U_WH
                elif rest == 1 and exp == 0 and c == 0x61:  # A -> mA
                    got = _U_A
                    exp = 3
                elif rest == 1 and exp == 0 and c == 0x76:  # V -> mV
                    got = _U_V
                    exp = 3
                else:
                    break
            if got != unit:
                break
            # The largest plausible value of the unit (a version is below any).
            limit = (_MAX_ENERGY_WH, _MAX_POWER_W, _MAX_ENERGY_WH, _MAX_CURRENT_MA, _MAX_VOLTAGE_MV)[unit]
            shift = exp - dec
            if shift < -_MAX_DIGITS:
                break
            f = 10 ** (shift if shift > 0 else -shift)  # at most 10**9: a small int
            if shift > 0:
                if m > limit // f:
                    break
                m *= f
            elif shift < 0:
                q = m // f
                if m - q * f >= f - (m - q * f):  # round half up, no overflow
                    q += 1
                m = q
            if m <= limit:
                x = m
            break
        if slot == _S_V4:
            # A version that does not parse is taken as new: a CRC is
            # then required, the safe side.
            if 0 <= x < _VERSION_WITH_CRC:
                return
            x = 1
        elif _S_ETAR <= slot < _S_AVG:
            # A tariff register: one unusable register spoils the sum.
            t = v[slot]
            if t == _ABSENT:
                t = 0
            x = t + x if t >= 0 and 0 <= x <= _MAX_ENERGY_WH - t else _BAD
        v[slot] = x
        if unit == _U_A:
            v[slot + _S_DEC - _S_CUR] = dec


# The driver is the parser built with a UART (see the module doc).
P1Meter = P1Parser


def from_config(meter_doc, platform):
    """The P1 driver for a validated `meter` section, on the platform's P1 UART."""
    # The two formats the config allows: 8N1, or 7E1 (parity 0 = even).
    seven = meter_doc["format"] == "7E1"
    uart = platform.open_uart(meter_doc["baud"], 7 if seven else 8, 0 if seven else None, 1, meter_doc["invert"])
    return P1Meter(uart, platform.ticks_ms, platform.sleep_ms)
