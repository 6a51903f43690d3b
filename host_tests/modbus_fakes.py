"""Fakes for the Modbus tests (both runtimes): a clock, a meter on a fake RS485 UART, register images, a Modbus TCP socket."""

import errno
import struct

from chargeguard.core.ticks import ticks_diff
from chargeguard.net.modbus import crc16

F32, I32, U32, I16, U16, U64 = 0, 1, 2, 3, 4, 5
WORDS = (2, 2, 2, 1, 1, 4)


class Clock:
    """A fake millisecond clock; `sleep_ms` advances it (the coroutine never really waits)."""

    def __init__(self, start=1000):
        self.now = start
        self.ticks_diff = ticks_diff

    def ticks_ms(self):
        return self.now

    async def sleep_ms(self, ms):
        self.now += ms if ms > 0 else 1


def run_sync(coro):
    """Run a coroutine that never really suspends (fake sleeps) to its end; its value."""
    try:
        while True:
            coro.send(None)
    except StopIteration as stop:
        return stop.args[0] if stop.args else None


def finish(master, clock, step_ms=5, limit=100000):
    """Step a request to its end, the clock moving step_ms between steps; the result."""
    from chargeguard.net import modbus as mb

    for _ in range(limit):
        r = master.step()
        if r != mb.BUSY:
            return r
        clock.now += step_ms
    raise AssertionError("request never ended")


def mbap(tid, unit, pdu, protocol=0):
    """A Modbus TCP frame: the MBAP header (transaction id, protocol, length, unit) and the PDU."""
    n = len(pdu) + 1
    return bytes((tid >> 8, tid & 0xFF, protocol >> 8, protocol & 0xFF, n >> 8, n & 0xFF, unit)) + bytes(pdu)


class FakeSocket:
    """The connected socket of a TcpLink: answer(request) -> bytes to receive (or None).

    `sent` keeps the last KEEP requests.
    """

    KEEP = 64

    def __init__(self, answer):
        self.answer = answer
        self.pending = bytearray()
        self.sent = []
        self.closed = False

    def send(self, buf):
        request = bytes(buf)
        if len(self.sent) >= self.KEEP:
            self.sent.pop(0)
        self.sent.append(request)
        reply = self.answer(request)
        if reply:
            self.pending.extend(reply)
        return len(request)

    def recv_into(self, buf):
        if not self.pending:
            raise OSError(errno.EAGAIN, "EAGAIN")
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self):
        self.closed = True


def rtu_frame(body):
    """body + its CRC-16/MODBUS, low byte first."""
    crc = crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


class FakeUart:
    """An RS485 UART whose other side is `answer(request) -> bytes or None` (None = silence).

    Bytes of an answer arrive `chunk` at a time, one chunk per read_now call;
    `noise` bytes are waiting before the first request. `requests` keeps the
    last KEEP requests (a fuzz run sends thousands: a list of them all needs
    one large block, which a fragmented MicroPython test heap may not have),
    `count` how many were written in all.
    """

    KEEP = 64

    def __init__(self, answer, chunk=64, noise=b""):
        self.answer = answer
        self.chunk = chunk
        self.pending = bytearray(noise)
        self.requests = []
        self.count = 0

    def write(self, buf):
        request = bytes(buf)
        if len(self.requests) >= self.KEEP:
            self.requests.pop(0)
        self.requests.append(request)
        self.count += 1
        reply = self.answer(request)
        if reply:
            self.pending.extend(reply)

    def read_now(self, buf):
        n = min(len(buf), len(self.pending), self.chunk)
        for i in range(n):
            buf[i] = self.pending[i]
        self.pending = self.pending[n:]
        return n

    def close(self):
        pass


class Image:
    """A meter's registers: `words` {address: value}; addresses in `missing` answer exception 2."""

    def __init__(self, unit=1, function=4):
        self.unit = unit
        self.function = function
        self.words = {}
        self.missing = set()
        self.silent = False

    def answer(self, request):
        if self.silent or len(request) != 8 or request[0] != self.unit:
            return None
        assert rtu_frame(request[:6]) == request, request
        function = request[1]
        address = (request[2] << 8) | request[3]
        count = (request[4] << 8) | request[5]
        if function != self.function:
            return rtu_frame(bytes((self.unit, function | 0x80, 1)))
        data = bytearray()
        for a in range(address, address + count):
            if a in self.missing:
                return rtu_frame(bytes((self.unit, function | 0x80, 2)))
            w = self.words.get(a, 0)
            data.append(w >> 8)
            data.append(w & 0xFF)
        return rtu_frame(bytes((self.unit, function, 2 * count)) + bytes(data))

    def put(self, address, kind, exponent, value, low_first=False):
        """Store `value` (mA, W, mV or Wh) as the meter would: raw = value / 10**exponent in `kind`."""
        if kind == F32:
            raw = value / (10.0**exponent)
            b = struct.pack(">f", raw)
            words = [(b[0] << 8) | b[1], (b[2] << 8) | b[3]]
        else:
            if exponent >= 0:
                assert value % (10**exponent) == 0, (value, exponent)
                raw = value // (10**exponent)
            else:
                raw = value * 10 ** (-exponent)
            n = WORDS[kind]
            raw &= (1 << (16 * n)) - 1
            words = [(raw >> (16 * (n - 1 - i))) & 0xFFFF for i in range(n)]
        if low_first and len(words) > 1:
            words.reverse()
        for i in range(len(words)):
            self.words[address + i] = words[i]


# The values every row is tested with: per phase L1..L3.
CURRENTS_MA = (10500, 7250, 500)
POWERS_W = (2300, -1500, 100)
VOLTAGES_MV = (230100, 231200, 229900)
IMPORT_WH = 12345600
EXPORT_WH = 789000


def image_for(row, unit=1, currents=CURRENTS_MA, powers=POWERS_W):
    """A register image that holds the test values in the layout of `row`."""
    image = Image(unit, row[0])
    low_first = row[1]
    for p in range(row[2]):
        for spec, values in ((row[5], currents), (row[6], powers), (row[7], VOLTAGES_MV)):
            if spec is not None:
                image.put(spec[0] + p * WORDS[spec[1]], spec[1], spec[2], values[p], low_first)
    if row[8] is not None:
        image.put(row[8][0], row[8][1], row[8][2], sum(powers), low_first)
    if row[9] is not None:
        imp, exp, kind, k = row[9]
        image.put(imp, kind, k, IMPORT_WH, low_first)
        if exp is not None:
            image.put(exp, kind, k, EXPORT_WH, low_first)
    return image
