"""A fake Modbus TCP wallbox for the Modbus charger drivers' tests (both runtimes).

FakeBox holds holding registers per unit and answers functions 3, 6 and 16
as a Modbus TCP server does, through a fake socket put under the driver's
TcpLink (the socket layer itself is the system tests', with pymodbus).
Modes: "normal", "hang" (never answers), "garbage" (answers bytes that are
no Modbus TCP), "refuse" (the connection is refused), "exception" (every
request answered with exception `exception_code`).
"""

import errno

import modbus_fakes
from modbus_fakes import Clock, mbap


class FakePlatform:
    """The platform calls a ModbusBox makes, on a fake clock."""

    def __init__(self, clock=None):
        self.clock = clock or Clock()
        self.ticks_ms = self.clock.ticks_ms
        self.ticks_diff = self.clock.ticks_diff
        self.sleep_ms = self.clock.sleep_ms

    def dns_server(self):
        return None


class FakeSocket(modbus_fakes.FakeSocket):
    """The box's end of a TcpLink's socket; none to read once the box refuses (it closed the connection)."""

    def __init__(self, box):
        super().__init__(box.answer)
        self.box = box

    def recv_into(self, buf):
        if self.box.mode == "refuse":
            return 0  # the box closed the connection; connecting again is refused
        return super().recv_into(buf)


class FakeBox:
    """Holding registers by (unit, address); `writes` logs (unit, address, [values])."""

    def __init__(self, units=(1,)):
        self.units = units
        self.regs = {}
        self.coils = {}
        self.input_regs = {}  # (unit, address) -> word, read by function 4
        self.writes = []
        self.requests = []
        self.mode = "normal"
        self.exception_code = 4
        self.garbage = b"\x00\x01\xff\xff\x00\x02\x01\x83"
        self.refuse_writes = {}  # address -> exception code
        self.connects = 0
        self.count = 0  # requests in all
        self.socket = None

    def attach(self, link):
        """Put this box under a TcpLink (replaces its socket layer)."""
        box = self

        def connect():
            box.connects += 1
            if box.mode == "refuse":
                raise OSError(errno.ECONNREFUSED, "ECONNREFUSED")
            sock = box.socket = FakeSocket(box)
            link._sock = sock
            link._read = sock.recv_into
            link._connected = True

        link._open = connect

    def set(self, unit, address, words):
        for i in range(len(words)):
            self.regs[(unit, address + i)] = words[i] & 0xFFFF

    def get(self, unit, address, count=1):
        return [self.regs.get((unit, address + i), 0) for i in range(count)]

    KEEP = 64  # requests kept (a fuzz run sends hundreds: one big list is a large block on a MicroPython heap)

    def answer(self, req):
        if len(self.requests) >= self.KEEP:
            self.requests.pop(0)
        self.requests.append(req)
        self.count += 1
        if self.mode in ("hang", "refuse"):
            return None
        if self.mode == "garbage":
            return self.garbage
        tid = (req[0] << 8) | req[1]
        unit = req[6]
        fn = req[7]
        address = (req[8] << 8) | req[9]
        if unit not in self.units:
            return None  # a gateway without that unit: silence
        if self.mode == "exception":
            return mbap(tid, unit, bytes((fn | 0x80, self.exception_code)))
        if fn == 3 or fn == 4:
            count = (req[10] << 8) | req[11]
            data = bytearray((fn, 2 * count))
            words = self.get(unit, address, count) if fn == 3 else [
                self.input_regs.get((unit, address + i), 0) for i in range(count)]
            for w in words:
                data.extend(bytes((w >> 8, w & 0xFF)))
            return mbap(tid, unit, data)
        if fn == 5 or fn == 6 or fn == 16:
            if fn != 16:
                values = [(req[10] << 8) | req[11]]
            else:
                count = (req[10] << 8) | req[11]
                values = [(req[13 + 2 * i] << 8) | req[14 + 2 * i] for i in range(count)]
            code = self.refuse_writes.get(address)
            if code:
                return mbap(tid, unit, bytes((fn | 0x80, code)))
            self.writes.append((unit, address, values) if fn != 5 else (unit, "coil", address, values))
            if fn == 5:
                self.coils[(unit, address)] = values[0] == 0xFF00
            else:
                self.set(unit, address, values)
            self.on_write(unit, address, values)
            return mbap(tid, unit, bytes(req[7:12]))
        return mbap(tid, unit, bytes((fn | 0x80, 1)))

    def on_write(self, unit, address, values):
        pass
