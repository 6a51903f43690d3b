"""P1 / DSMR smart-meter port: streaming framer, CRC16/ARC check and parser.

Covers DSMR 2.2 to 5.0 and the national variants built on it (BE e-MUCS,
LU Smarty, SE, AT plaintext). Bytes are consumed as they arrive; nothing is
allocated per telegram once the parser is built.

P1Parser
    ``P1Parser()`` builds the buffers (a line buffer, a header buffer, the
    CRC table) once.

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

    Every telegram that started (a ``/`` at a line start) ends in exactly
    one completion, accepted or not. After a completion:

    - ``ready`` True; ``accepted`` True when the reading was taken;
    - ``crc``: "valid", "invalid" or "absent";
    - ``error``: None when accepted, else "crc mismatch",
      "no crc on a DSMR 4+ telegram", "truncated" (a new telegram began
      before this one ended, or the input ended), "too long" (more than
      MAX_TELEGRAM_BYTES) or "no power values";
    - ``reading``: a GridReading, updated in place only when a telegram is
      accepted (its tick_ms is left to the driver);
    - ``header_bytes()``: the identification line, with its leading ``/``
      and without the line end, as fresh bytes (a tool path: it allocates);
    - counters ``n_telegrams``, ``n_accepted``, ``n_rejected``,
      ``n_crc_errors``, ``n_truncated``, ``n_overflows``.

    ``crc16(data, start=0, end=None, crc=0) -> int`` is the same CRC as a
    function, for tools and tests.

Framing: a telegram starts with ``/`` at a line start (the start of the
stream counts); a ``/`` at a line start inside a telegram means it was cut
(counted as truncated) -- except for a pre-4 telegram that already gave a
power value, which some DSMR 2.2 meters end without ``!``: that one is
complete. ``!`` at a line start ends the body; up to 4 hex digits follow
(either case, unpadded accepted), ended by the 4th digit, CR/LF, a ``/``
or ``idle()``. The CRC covers ``/`` through ``!``. A telegram is DSMR 4+
when it has a ``1-3:0.2.8`` version of 40 or more (or one that does not
parse) or an e-MUCS ``0-0:96.1.4`` version; only older telegrams may come
without a CRC. Header text is not used to decide the version.

Values: per-phase net power = import - export; the current's sign comes
from the phase power (the wire never signs it). Whole-amp currents become
max(|I|, |P/U|) (U = the phase voltage, else NOMINAL_VOLTAGE_MV); currents
with decimals are used as given; a phase with power and no current gets
|P/U|. phase_count is the highest phase with a power or a current.
Values that cannot be real (more than MAX_DIGITS significant digits, or
above the per-quantity maximum) are ignored one by one. Everything stays
in small integers, which are 31-bit on the ESP32.

P1Meter
    ``P1Meter(uart, ticks_ms, sleep_ms)``: the driver. ``uart.read_now(buf)``
    copies the bytes already received and returns their count (0 if none)
    without waiting; ``ticks_ms()`` and ``await sleep_ms(ms)`` are the
    platform's.

    ``poll() -> bool``: True when a fresh accepted reading is in
    ``reading`` (tick_ms = when the chunk holding its last byte arrived);
    False when nothing more is there, after a rejected telegram (its error
    kept in ``last_error``), or after READ_CHUNKS_MAX chunks without a
    telegram, so a noisy line cannot hold up the loop. Bytes after a
    completed telegram are kept for the next call.

    ``await run(on_reading)``: the meter task; calls ``on_reading()`` after
    every accepted telegram. Every meter driver has this same ``run``.
"""

from array import array

from micropython import const

from chargeguard.core.model import PHASES, GridReading

# Longest telegram accepted, bytes from '/' to '!'. DSMR 5 telegrams with a
# full 1024-character text message and four M-Bus devices stay near 4 KB;
# garbage with no end is dropped when it reaches this.
MAX_TELEGRAM_BYTES = const(6144)
# Longest line kept for parsing. Every line read here is under 50 bytes;
# longer ones (text messages, the BE peak history) are only CRC-checked.
LINE_MAX = const(96)
# Longest header kept for header_bytes().
HEADER_MAX = const(64)
# Voltage assumed for I = P/U when the meter gives none for the phase.
NOMINAL_VOLTAGE_MV = const(230000)
# A phase voltage below this is not used for P/U (lost phase, bad value).
MIN_VOLTAGE_MV = const(50000)
# Largest plausible values: anything above is a dummy and ignored.
MAX_POWER_W = const(1000000)
MAX_CURRENT_MA = const(2000000)
MAX_VOLTAGE_MV = const(1000000)
MAX_ENERGY_WH = const(999999999)
# Significant digits a value may have: 10^9 still fits a 31-bit small int.
MAX_DIGITS = const(9)
# First `1-3:0.2.8` version value (DSMR 4.0) whose telegrams carry a CRC.
VERSION_WITH_CRC = const(40)
# P1Meter: quiet time after which idle() completes a telegram that is only
# waiting for its line end (a meter sends CRC and CR/LF back to back).
IDLE_FLUSH_MS = const(200)
# P1Meter: UART read buffer, and how many chunks one read() may consume.
READ_BUFFER_BYTES = const(256)
READ_CHUNKS_MAX = const(32)
# How often the driver looks at the UART when it is quiet. At 115200 baud a
# telegram's end waits at most this long before the guard sees it.
POLL_MS = const(10)

_TICKS_MASK = const(0x3FFFFFFF)  # MicroPython ticks wrap at 2**30

_IDLE = const(0)  # looking for '/' at a line start
_BODY = const(1)  # inside a telegram, before '!'
_CRC = const(2)  # after '!', reading the CRC digits

_END_CRC = const(0)  # '!' seen (CRC digits or none)
_END_CUT = const(1)  # cut short
_END_LONG = const(2)  # over MAX_TELEGRAM_BYTES
_END_NOMARK = const(3)  # pre-4 telegram ended by the next one, no '!'

_U_NONE = const(0)
_U_W = const(1)
_U_WH = const(2)
_U_A = const(3)
_U_V = const(4)

_ABSENT = const(-1)  # value not in the telegram (values are never negative)
_BAD = const(-2)  # a tariff sum that includes an unusable value

_SEPS = b"-:..("  # what follows each OBIS field a, b, c, d, e

_table = None


def _crc_table():
    # Built on first use, not at import, and shared by every parser.
    global _table
    if _table is None:
        table = array("H")
        for byte in range(256):
            crc = byte
            for _ in range(8):
                if crc & 1:
                    crc = (crc >> 1) ^ 0xA001
                else:
                    crc >>= 1
            table.append(crc)
        _table = table
    return _table


def crc16(data, start=0, end=None, crc=0):
    """CRC16/ARC of data[start:end], continuing from `crc`."""
    table = _crc_table()
    if end is None:
        end = len(data)
    i = start
    while i < end:
        crc = (crc >> 8) ^ table[(crc ^ data[i]) & 0xFF]
        i += 1
    return crc


class P1Parser:
    """Streaming P1 telegram framer and parser (see the module docstring)."""

    def __init__(self):
        self._tbl = _crc_table()
        self._lb = bytearray(LINE_MAX)
        self._hb = bytearray(HEADER_MAX)
        self._obis = [0, 0, 0, 0, 0]
        self._p_imp = [0, 0, 0]
        self._p_exp = [0, 0, 0]
        self._cur = [0, 0, 0]
        self._cur_dec = [False, False, False]
        self._volt = [0, 0, 0]
        self._scratch = GridReading()
        self.reading = GridReading()
        self._state = _IDLE
        self._at_ls = True  # the stream start counts as a line start
        self._crc = 0
        self._given = 0
        self._digits = 0
        self._ll = 0
        self._total = 0
        self._hlen = 0
        self._vdec = 0
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
        self._begin()

    def header_bytes(self):
        """The last telegram's header line (with '/'), as new bytes."""
        n = self._hlen
        return bytes(self._hb[:n]) if n > 0 else b""

    def feed(self, data, start=0, end=None):
        """Consume data[start:end]; return where to continue (see module doc)."""
        if end is None:
            end = len(data)
        self.ready = False
        tbl = self._tbl
        lb = self._lb
        state = self._state
        at_ls = self._at_ls
        crc = self._crc
        ll = self._ll
        total = self._total
        i = start
        while i < end:
            b = data[i]
            if state == _BODY:
                if b == 0x2F and at_ls:
                    # A new telegram begins: this one never got its '!'.
                    self._ll = 0
                    self._state = _IDLE
                    self._at_ls = True
                    if not self._v4 and self._has_power():
                        self._close(_END_NOMARK, crc)
                    else:
                        self._close(_END_CUT, crc)
                    return i  # the '/' is read again as the next start
                total += 1
                if total > MAX_TELEGRAM_BYTES:
                    self._ll = ll  # a header cut here is still reported
                    self._state = _IDLE
                    self._at_ls = False
                    self._close(_END_LONG, crc)
                    self._ll = 0
                    return i + 1
                crc = (crc >> 8) ^ tbl[(crc ^ b) & 0xFF]
                if b == 0x0A or b == 0x0D:
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
                    if ll < LINE_MAX:
                        lb[ll] = b
                        ll += 1
                    else:
                        ll = LINE_MAX + 1  # overlong: only CRC-checked
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
                # A '/' is left for the next telegram. After a clean end
                # (4th digit, CR/LF, '/') the next byte is at a line start,
                # so that "!1F28/ISK5..." still frames; after junk it is not.
                self._state = _IDLE
                self._at_ls = b == 0x2F or b == 0x0A or b == 0x0D or digit >= 0
                self._ll = 0
                self._close(_END_CRC, crc)
                return i
            else:
                if b == 0x2F and at_ls:
                    state = _BODY
                    self._begin()
                    crc = tbl[0x2F]
                    total = 1
                    lb[0] = b
                    ll = 1
                    at_ls = False
                else:
                    at_ls = b == 0x0A or b == 0x0D
            i += 1
        self._state = state
        self._at_ls = at_ls
        self._crc = crc
        self._ll = ll
        self._total = total
        return end

    def idle(self):
        """The line went quiet: complete a telegram only waiting for its end."""
        self.ready = False
        if self._state == _CRC:
            self._state = _IDLE
            self._at_ls = True
            self._close(_END_CRC, self._crc)
        elif self._state == _BODY and self._at_ls and not self._v4 and self._has_power():
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

    # -- per telegram -----------------------------------------------------

    def _begin(self):
        # Forget the previous telegram's values (assignments only).
        self._v4 = False
        self._hlen = -1  # header not yet complete
        self._imp = _ABSENT
        self._exp = _ABSENT
        self._e_imp = _ABSENT
        self._e_exp = _ABSENT
        self._e_imp_t = _ABSENT
        self._e_exp_t = _ABSENT
        self._avg = _ABSENT
        self._peak = _ABSENT
        for k in range(PHASES):
            self._p_imp[k] = _ABSENT
            self._p_exp[k] = _ABSENT
            self._cur[k] = _ABSENT
            self._cur_dec[k] = False
            self._volt[k] = _ABSENT

    def _has_power(self):
        if self._imp >= 0 or self._exp >= 0:
            return True
        for k in range(PHASES):
            if self._p_imp[k] >= 0 or self._p_exp[k] >= 0:
                return True
        return False

    def _close(self, how, crc):
        self.ready = True
        self.accepted = False
        self.crc = "absent"
        self.n_telegrams += 1
        if self._hlen < 0:
            # Cut inside the header line: keep what there is of it.
            self._end_line(self._ll)
        error = None
        if how == _END_LONG:
            self.n_overflows += 1
            error = "too long"
        elif how == _END_CUT:
            self.n_truncated += 1
            error = "truncated"
        else:
            if self._digits and how == _END_CRC:
                if self._given == crc:
                    self.crc = "valid"
                else:
                    self.crc = "invalid"
                    self.n_crc_errors += 1
                    error = "crc mismatch"
            elif self._v4:
                error = "no crc on a DSMR 4+ telegram"
            if error is None:
                error = self._derive()
        self._digits = 0
        self.error = error
        if error is None:
            self.accepted = True
            self.n_accepted += 1
            self.reading.copy_from(self._scratch)
        else:
            self.n_rejected += 1

    def _derive(self):
        # Fill the scratch reading from the collected values.
        r = self._scratch
        r.reset()
        power = False
        if self._imp >= 0:
            r.import_w = self._imp
            power = True
        if self._exp >= 0:
            r.export_w = self._exp
            power = True
        count = 0
        for k in range(PHASES):
            p_imp = self._p_imp[k]
            p_exp = self._p_exp[k]
            cur = self._cur[k]
            volt = self._volt[k]
            if volt > 0:
                r.voltage_mv[k] = volt
            has_p = p_imp >= 0 or p_exp >= 0
            if not has_p and cur < 0:
                continue
            count = k + 1
            net = 0
            if has_p:
                power = True
                if p_imp > 0:
                    net = p_imp
                if p_exp > 0:
                    net -= p_exp
                r.power_w[k] = net
            if cur >= 0 and self._cur_dec[k]:
                mag = cur
            else:
                mag = _amps(-net if net < 0 else net, volt)
                if cur > mag:
                    mag = cur
            r.current_ma[k] = -mag if net < 0 else mag
        r.phase_count = count
        if not power:
            return "no power values"
        r.energy_import_wh = _energy(self._e_imp, self._e_imp_t)
        r.energy_export_wh = _energy(self._e_exp, self._e_exp_t)
        if self._avg >= 0:
            r.avg_demand_w = self._avg
        if self._peak >= 0:
            r.month_peak_w = self._peak
        return None

    # -- per line ---------------------------------------------------------

    def _end_line(self, n):
        lb = self._lb
        if self._hlen < 0:
            # The first line is the header: keep it for header_bytes().
            if n > HEADER_MAX:
                n = HEADER_MAX
            if n > LINE_MAX:
                n = LINE_MAX
            hb = self._hb
            for k in range(n):
                hb[k] = lb[k]
            self._hlen = n
            return
        if n > LINE_MAX:
            return
        # OBIS reference a-b:c.d.e, each field 1..3 digits, then '('.
        obis = self._obis
        f = 0
        v = 0
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
                v = v * 10 + c - 0x30
                digits += 1
            elif digits and c == _SEPS[f]:
                obis[f] = v
                f += 1
                if f == 5:
                    break
                v = 0
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
        s = j
        while s > i and lb[s - 1] != 0x28:
            s -= 1
        a = obis[0]
        c = obis[2]
        d = obis[3]
        e = obis[4]
        if a == 1:  # electricity, any channel b (XT211 sends 1-1:)
            if d == 7 and e == 0:
                group = c // 10
                kind = c - group * 10
                if kind != 1 and kind != 2:
                    return
                if group == 0:
                    v = self._value(s, j, _U_W, MAX_POWER_W)
                    if kind == 1:
                        self._imp = v
                    else:
                        self._exp = v
                elif 2 <= group <= 7:
                    phase = (group - 2) >> 1
                    if (group & 1) == 0:  # 21/41/61 import, 22/42/62 export
                        v = self._value(s, j, _U_W, MAX_POWER_W)
                        if kind == 1:
                            self._p_imp[phase] = v
                        else:
                            self._p_exp[phase] = v
                    elif kind == 1:  # 31/51/71 current
                        self._cur[phase] = self._value(s, j, _U_A, MAX_CURRENT_MA)
                        self._cur_dec[phase] = self._vdec > 0
                    else:  # 32/52/72 voltage
                        self._volt[phase] = self._value(s, j, _U_V, MAX_VOLTAGE_MV)
            elif d == 8 and (c == 1 or c == 2) and e <= 9:
                v = self._value(s, j, _U_WH, MAX_ENERGY_WH)
                if c == 1:
                    if e == 0:
                        self._e_imp = v
                    else:
                        self._e_imp_t = _add_tariff(self._e_imp_t, v)
                elif e == 0:
                    self._e_exp = v
                else:
                    self._e_exp_t = _add_tariff(self._e_exp_t, v)
            elif c == 1 and e == 0 and d == 4:
                self._avg = self._value(s, j, _U_W, MAX_POWER_W)
            elif c == 1 and e == 0 and d == 6:
                self._peak = self._value(s, j, _U_W, MAX_POWER_W)
            elif c == 0 and d == 2 and e == 8:
                v = self._value(s, j, _U_NONE, MAX_ENERGY_WH)
                # A version that does not parse is taken as new: a CRC is
                # then required, the safe side.
                if v < 0 or v >= VERSION_WITH_CRC:
                    self._v4 = True
        elif a == 0 and c == 96 and d == 1 and e == 4:
            self._v4 = True  # e-MUCS (BE) version line: always with CRC

    def _value(self, i, j, unit, limit):
        # Number in lb[i:j] ("00.498*kW"), scaled to W, Wh, mA or mV.
        # Returns -1 when it is not a plain number of the wanted unit or
        # cannot be real. Sets _vdec to the count of decimals on the wire.
        lb = self._lb
        m = 0
        sig = 0
        dec = 0
        dot = False
        seen = False
        while i < j:
            c = lb[i]
            if 0x30 <= c <= 0x39:
                seen = True
                if dot:
                    dec += 1
                if m or c != 0x30:
                    sig += 1
                    if sig > MAX_DIGITS:
                        return -1
                    m = m * 10 + c - 0x30
            elif c == 0x2E and not dot:
                dot = True
            else:
                break
            i += 1
        if not seen:
            return -1
        self._vdec = dec
        got = _U_NONE
        exp = 0
        if i < j:
            if lb[i] != 0x2A:  # '*'
                return -1
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
                return -1
        if got != unit:
            return -1
        shift = exp - dec
        if shift > 0:
            f = 1
            while shift:
                f *= 10
                shift -= 1
            if m > limit // f:
                return -1
            m *= f
        elif shift < 0:
            if shift < -MAX_DIGITS:
                return -1
            f = 1
            while shift:
                f *= 10
                shift += 1
            q = m // f
            if m - q * f >= f - (m - q * f):  # round half up, no overflow
                q += 1
            m = q
        if m > limit:
            return -1
        return m


def _add_tariff(total, value):
    # Sum of tariff registers; one unusable register spoils the sum.
    if total == _BAD or value < 0:
        return _BAD
    if total == _ABSENT:
        return value
    if value > MAX_ENERGY_WH - total:
        return _BAD
    return total + value


def _energy(register, tariffs):
    # The total register when given, else the tariff sum, else None.
    if register >= 0:
        return register
    if tariffs >= 0:
        return tariffs
    return None


def _amps(power_w, voltage_mv):
    # |I| in mA = P / U, with U in decivolts so that every step stays in
    # 31-bit small ints (power_w <= MAX_POWER_W, U >= MIN_VOLTAGE_MV).
    if voltage_mv < MIN_VOLTAGE_MV:
        voltage_mv = NOMINAL_VOLTAGE_MV
    ud = voltage_mv // 100
    q = power_w // ud
    r = power_w - q * ud
    return q * 10000 + (r * 10000 + (ud >> 1)) // ud


class P1Meter:
    """The P1 driver: UART bytes in, accepted readings out (see module doc)."""

    def __init__(self, uart, ticks_ms, sleep_ms=None):
        self._uart = uart
        self._ticks_ms = ticks_ms
        self._sleep_ms = sleep_ms
        self.parser = P1Parser()
        self.reading = self.parser.reading
        self.last_error = None
        self._buf = bytearray(READ_BUFFER_BYTES)
        self._pos = 0
        self._end = 0
        self._rx_tick = 0  # when the chunk in _buf arrived
        self._quiet_checked = True  # idle() already ran since the last byte

    def poll(self):
        """Take in what the UART holds; True when an accepted telegram just completed."""
        parser = self.parser
        chunks = 0
        while True:
            if self._pos < self._end:
                self._pos = parser.feed(self._buf, self._pos, self._end)
                if parser.ready and self._completed():
                    return True
                continue
            if chunks >= READ_CHUNKS_MAX:
                return False
            n = self._uart.read_now(self._buf)
            now = self._ticks_ms()
            if not n:
                if not self._quiet_checked and (now - self._rx_tick) & _TICKS_MASK >= IDLE_FLUSH_MS:
                    self._quiet_checked = True
                    parser.idle()
                    if parser.ready:
                        return self._completed()
                return False
            chunks += 1
            self._rx_tick = now
            self._quiet_checked = False
            self._pos = 0
            self._end = n

    async def run(self, on_reading):
        """Read the port forever; call on_reading() after every accepted telegram.

        One coroutine for the life of the driver, sleeping POLL_MS between
        looks at the UART: nothing is allocated per poll or per telegram.
        """
        sleep_ms = self._sleep_ms
        while True:
            if self.poll():
                on_reading()
                await sleep_ms(0)  # let the chargers' tasks send at once
            else:
                await sleep_ms(POLL_MS)

    def _completed(self):
        parser = self.parser
        if parser.accepted:
            self.reading.tick_ms = self._rx_tick
            return True
        self.last_error = parser.error
        return False


_FORMATS = {"8N1": (8, None, 1), "7E1": (7, 0, 1)}  # bits, parity (0 = even), stop


def from_config(meter_doc, platform):
    """The P1 driver for a validated `meter` section, on the platform's P1 UART."""
    bits, parity, stop = _FORMATS[meter_doc["format"]]
    uart = platform.open_uart(meter_doc["baud"], bits, parity, stop, meter_doc["invert"])
    return P1Meter(uart, platform.ticks_ms, platform.sleep_ms)
