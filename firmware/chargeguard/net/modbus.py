"""Modbus master: one request layer over RTU (RS485 serial line) and TCP (MBAP).

Read holding (function 3) or input (function 4) registers; the answers to
writes (functions 5, 6, 16: net/modbus_box.py arms and frames them, for the
Modbus chargers over TCP and RTU) are checked here too. One request is in flight at a time; everything is synchronous
steps that never wait, so the caller's coroutine sleeps between them and the
whole exchange allocates nothing once warm (the request and answer live in
preallocated buffers; errors are constant strings).

ModbusMaster(link, ticks_ms, ticks_diff, timeout_ms=500, retries=1, pause_ms=100)
    ``start(unit, function, address, count, deadline_ms)`` arms a request
    (count 1..125 registers). ``step()`` advances it and returns BUSY (call
    again after a short sleep), DONE or FAILED. After DONE, ``word(i)`` is
    register i of the answer (0..count-1, unsigned 16 bit) and ``tick_ms``
    when the answer arrived. After FAILED, ``error`` says why in words and
    ``exception`` holds the exception code (0 when the meter did not answer
    with one). A request gives up at ``deadline_ms`` after start() whatever
    happens; inside it each attempt waits ``timeout_ms`` for the answer and
    a failed attempt (no answer, a CRC error, a broken frame) is tried again
    up to ``retries`` times. An exception answer is not retried: the meter
    answered, and asking again gives the same answer. Between the end of one
    request and the next send there are at least ``pause_ms`` (meters such
    as the SDM72D and the Carlo Gavazzi EM340 miss or reboot on requests that
    follow too closely: shared/protocols/modbus-meters.md, "Polling gaps").
    Counters: ``n_requests``, ``n_failed``, ``n_retries``.

RtuLink(uart, baud, ticks_ms, ticks_diff)
    The serial line (Modbus over Serial Line V1.02, section 2.5): a frame is
    [unit][PDU][CRC-16/MODBUS, low byte first]; frames are delimited by at
    least 3.5 character times of silence (t3.5; 11 bits a character, so
    38.5 bits / baud, fixed at 1.75 ms above 19200 baud), rounded up to whole
    milliseconds. Before a request the line must have been silent for t3.5:
    bytes found there (an answer that came too late, noise) are dropped and
    counted (``n_noise``). An answer ends when it reaches the length its
    function and byte count announce, or at t3.5 of silence after its last
    byte (then its length decides). The inter-character limit t1.5 cannot
    be seen from software that polls a buffered UART every few ms (the
    ESP32's FIFO and a pty both hide the gaps); a frame broken by a gap
    ends at t3.5 and fails its CRC or its length, the same outcome the spec
    asks for. ``uart`` is the platform's RS485 UART: ``write(buf)`` sends a
    whole frame and returns once the driver enable is released (see
    platform open_rs485), ``read_now(buf)`` copies what arrived, never waits.

TcpLink(host, port) (net/modbus_tcp.py, loaded only for a TCP meter)
    Modbus TCP: [transaction id][protocol 0][length][unit][PDU], no CRC.
    The connection is opened when the first request needs it (non-blocking
    connect, inside the request's deadline) and kept; any error or timeout
    closes it and the next attempt reconnects. Answers whose transaction id
    is not the request's (a late answer to an earlier, timed-out request)
    are skipped. ``host`` must be a numeric IPv4 address by the time a
    request starts: the meter driver resolves names with net/dns.py (never
    the blocking getaddrinfo) on the device.

Both links: ``buf`` holds the last answer, the PDU at offset ``pdu``;
``begin(unit, function, address, count)`` prepares the request,
``send(now)`` returns DONE when sent, BUSY while the line or connection is not
ready, or an error; ``receive(now)`` returns BUSY, the PDU length, or an
error; ``reset()`` drops what is in progress; ``close()``.
"""

from micropython import const

BUSY = const(0)
DONE = const(1)
FAILED = const(2)

# Errors a link returns (negative), an index into _ERRORS (net/modbus_tcp.py
# has its own copies of the codes it returns: keep them in step).
_E_TIMEOUT = const(1)
_E_CRC = const(2)
_E_UNIT = const(3)
_E_FUNCTION = const(4)
_E_LENGTH = const(5)
_E_LONG = const(6)
_E_REFUSED = const(7)
_E_CLOSED = const(8)
_E_SOCKET = const(9)
_E_PROTOCOL = const(10)
_E_DEADLINE = const(11)
_E_BUSY = const(12)
_E_ECHO = const(13)

_ERRORS = (
    None,
    "no answer (check address, baud, parity, A/B wiring)",
    "crc error (noise, wrong baud or parity, two units on one address?)",
    "answer from another unit",
    "answer to another function",
    "answer of the wrong length",
    "answer too long",
    "connection refused",
    "connection closed",
    "network error",
    "not a Modbus TCP answer",
    "no answer before the deadline",
    "a request is already in flight",
    "answer does not confirm the write",
)
# Exception codes (Modbus Application Protocol V1.1b3, section 7), in words.
_EXCEPTIONS = (
    "exception from the meter",
    "exception 1: illegal function (try function 3 or 4)",
    "exception 2: illegal data address (wrong model?)",
    "exception 3: illegal data value",
    "exception 4: device failure",
    "exception 5: acknowledge",
    "exception 6: device busy",
    "exception 7",
    "exception 8: memory parity error",
    "exception 9",
    "exception 10: gateway path unavailable",
    "exception 11: gateway target did not answer",
)

_MAX_REGISTERS = const(125)  # function 3/4 limit (the answer's byte count is 1 byte)
_RTU_MAX = const(256)  # the longest RTU frame
_RTU_REQUEST = const(8)  # unit, function, address (2), count (2), CRC (2)
_CHUNK = const(32)  # bytes taken from the UART or socket per read call
_T35_FAST_US = const(1750)  # t3.5 above 19200 baud (fixed by the spec)

def crc16(data, start=0, end=None, crc=0xFFFF):
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of data[start:end]; sent low byte first.

    Bit by bit, no table: a poll checks about 50 bytes (a millisecond or two
    on the ESP32), and a 512-byte table would be heap held for good.
    """
    if end is None:
        end = len(data)
    while start < end:
        crc ^= data[start]
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        start += 1
    return crc


def frame_silence_ms(baud):
    """t3.5 in whole milliseconds (rounded up) for `baud`: 38.5 bit times, 1.75 ms above 19200."""
    if baud > 19200:
        return (_T35_FAST_US + 999) // 1000
    return (38500 + baud - 1) // baud


def error_text(code):
    """The words for a link error code (see _ERRORS)."""
    return _ERRORS[code] if 0 < code < len(_ERRORS) else "error %d" % code


class RtuLink:
    """Modbus RTU framing on an RS485 UART (see module doc)."""

    def __init__(self, uart, baud, ticks_ms, ticks_diff):
        self.uart = uart
        self.buf = bytearray(_RTU_MAX)
        self.pdu = 1
        self._req = bytearray(_RTU_REQUEST)
        self._chunk = bytearray(_CHUNK)
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.silence_ms = frame_silence_ms(baud)
        self._last = ticks_ms()  # last byte seen or sent on the line
        self._got = 0
        self._want = 0  # expected answer length, 0 = not known yet
        self._unit = 0
        self.n_noise = 0

    def begin(self, unit, function, address, count):
        req = self._req
        req[0] = unit
        req[1] = function
        req[2] = address >> 8
        req[3] = address & 0xFF
        req[4] = count >> 8
        req[5] = count & 0xFF
        crc = crc16(req, 0, 6)
        req[6] = crc & 0xFF
        req[7] = crc >> 8
        self._unit = unit

    def _drain(self, now):
        # Bytes outside a transaction: noise or a late answer. Dropped; they
        # restart the silence the next frame needs.
        n = self.uart.read_now(self._chunk)
        if n:
            self.n_noise += n
            self._last = now
        return n

    def send(self, now):
        if self._drain(now) or self._ticks_diff(now, self._last) < self.silence_ms:
            return BUSY
        self.uart.write(self._req)
        self._last = self._ticks_ms()
        self._got = 0
        self._want = 0
        return DONE

    def receive(self, now):
        chunk = self._chunk
        buf = self.buf
        got = self._got
        n = self.uart.read_now(chunk)
        if n:
            self._last = now
            for i in range(n):
                if got >= _RTU_MAX:
                    self._got = got
                    return -_E_LONG
                buf[got] = chunk[i]
                got += 1
            self._got = got
            if not self._want and got >= 3:
                # [unit][function][byte count | exception code], or a write's
                # echo: [unit][5, 6 or 16][address (2)][value | count (2)][CRC].
                fn = buf[1]
                self._want = 5 if fn & 0x80 else 8 if fn == 5 or fn == 6 or fn == 16 else buf[2] + 5
            if not self._want or got < self._want:
                return BUSY
        elif not got or self._ticks_diff(now, self._last) < self.silence_ms:
            return BUSY
        # Complete by length, or ended by t3.5 of silence.
        if self._want and got > self._want:
            return -_E_LENGTH
        if got < 4 or crc16(buf, 0, got - 2) != buf[got - 2] | (buf[got - 1] << 8):
            return -_E_CRC
        if self._want != got:
            return -_E_LENGTH
        if buf[0] != self._unit:
            return -_E_UNIT
        return got - 3

    def renew(self):
        pass  # the same frame is sent again

    def reset(self):
        self._got = 0
        self._want = 0

    def close(self):
        close = getattr(self.uart, "close", None)
        if close:
            close()


class ModbusMaster:
    """The request layer: one request in flight, retries, deadline, pause (see module doc)."""

    def __init__(self, link, ticks_ms, ticks_diff, timeout_ms=500, retries=1, pause_ms=100):
        self.link = link
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.pause_ms = pause_ms
        self.error = None
        self.exception = 0
        self.tick_ms = 0
        self.count = 0
        self._function = 0
        self._count = 0
        self._busy = False
        self._sent = False
        self._tries = 0
        self._start = 0
        self._deadline_ms = 0
        self._sent_at = 0
        self._ended = ticks_ms()
        self._first = True
        self.n_requests = 0
        self.n_failed = 0
        self.n_retries = 0

    def start(self, unit, function, address, count, deadline_ms):
        """Arm a read of `count` registers at `address` (function 3 or 4). False when one is in flight."""
        if self._busy:
            self.error = _ERRORS[_E_BUSY]
            return False
        if function not in (3, 4) or not 1 <= count <= _MAX_REGISTERS or not 0 <= address <= 0xFFFF - count + 1:
            raise ValueError("modbus request")
        self.link.begin(unit, function, address, count)
        self._function = function
        self._count = count
        self._busy = True
        self._sent = False
        self._tries = 0
        self._start = self._ticks_ms()
        self._deadline_ms = deadline_ms
        self.error = None
        self.exception = 0
        self.count = 0
        self.n_requests += 1
        return True

    def step(self):
        """Advance the request in flight; BUSY, DONE or FAILED (see module doc). Never waits."""
        if not self._busy:
            return FAILED if self.error else DONE
        now = self._ticks_ms()
        diff = self._ticks_diff
        link = self.link
        if diff(now, self._start) >= self._deadline_ms:
            return self._fail(_E_TIMEOUT if self._sent or self._tries else _E_DEADLINE, now)
        if not self._sent:
            if not self._first and diff(now, self._ended) < self.pause_ms:
                return BUSY
            r = link.send(now)
            if r == BUSY:
                return BUSY
            if r < 0:
                return self._retry(-r, now)
            self._sent = True
            self._sent_at = now
            return BUSY
        r = link.receive(now)
        if r == BUSY:
            if diff(now, self._sent_at) >= self.timeout_ms:
                return self._retry(_E_TIMEOUT, now)
            return BUSY
        if r < 0:
            return self._retry(-r, now)
        # A PDU of r bytes at buf[pdu]: [function][byte count][data] or [function | 0x80][code].
        buf = link.buf
        p = link.pdu
        function = buf[p]
        if function == self._function | 0x80 and r == 2:
            code = buf[p + 1]
            self.exception = code
            self._end(now)
            self.n_failed += 1
            self.error = _EXCEPTIONS[code] if code < len(_EXCEPTIONS) else _EXCEPTIONS[0]
            return FAILED
        if function != self._function:
            return self._retry(_E_FUNCTION, now)
        if function == 5 or function == 6 or function == 16:
            # A write's answer echoes [function][address (2)][value (5, 6) | count (16)].
            if r != 5:
                return self._retry(_E_LENGTH, now)
            if (buf[p + 1] << 8 | buf[p + 2]) != self._address or (buf[p + 3] << 8 | buf[p + 4]) != self._echo:
                return self._fail(_E_ECHO, now)
            self.tick_ms = now
            self._end(now)
            return DONE
        if r != 2 + 2 * self._count or buf[p + 1] != 2 * self._count:
            return self._retry(_E_LENGTH, now)
        self.count = self._count
        self.tick_ms = now
        self._end(now)
        return DONE

    def abort(self):
        """Drop the request in flight, if any (the caller failed midway: out of memory, cancelled)."""
        if self._busy:
            self.link.reset()
            self._end(self._ticks_ms())
            self.n_failed += 1

    def word(self, index):
        """Register `index` of the last answer (0..count-1) as an unsigned 16-bit int."""
        buf = self.link.buf
        i = self.link.pdu + 2 + 2 * index
        return (buf[i] << 8) | buf[i + 1]

    def _end(self, now):
        self._busy = False
        self._first = False
        self._ended = now

    def _retry(self, code, now):
        self.link.reset()
        if self._tries < self.retries and self._ticks_diff(now, self._start) < self._deadline_ms:
            self._tries += 1
            self.n_retries += 1
            self._sent = False
            self._ended = now  # the pause applies before the new try, too
            self._first = False
            self.link.renew()
            return BUSY
        return self._fail(code, now)

    def _fail(self, code, now):
        self.link.reset()
        self._end(now)
        self.n_failed += 1
        self.error = _ERRORS[code]
        return FAILED
