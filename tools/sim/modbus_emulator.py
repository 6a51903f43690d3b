"""A Modbus kWh meter for the simulator and the tests: pymodbus as the server.

    ModbusMeterEmulator(model, unit=1, tcp_port=None, baud=9600, parity="N", missing=())

Serves the register map of a model of the firmware's own table
(firmware/chargeguard/meters/modbus_models.py): the registers of every value
the row names are encoded as that meter encodes them (type, word order,
scale), inside the address ranges the vendor map defines (the blocks the
firmware reads, holes included and read as 0). Addresses outside, the
other function code, or registers listed in `missing` (say the EM24's
export register) get the answer a real meter gives: exception 2 (illegal
data address).

RTU: over a pty pair (two ptys bridged by a thread, so that both sides open
a device path like a real serial line): `device` is the path the firmware
opens (CHARGEGUARD_RS485_DEVICE). TCP: `tcp_port=0` picks a free port on
127.0.0.1 (`port` after start()). The server runs its own asyncio loop on a
thread; set_values() may be called from any thread while it runs.

`silent = True` makes the meter stop answering (a cut cable), `requests`
counts the requests it answered.
"""

import asyncio
import os
import select
import struct
import sys
import threading
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIRMWARE = os.path.join(ROOT, "firmware")
for _path in (FIRMWARE, os.path.join(ROOT, "tools", "shims")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from chargeguard.meters import modbus_models  # noqa: E402

WORDS = modbus_models.WORDS
NOMINAL_MV = 230000


def encode(kind, exponent, value, low_first):
    """The registers that hold `value` (mA, W, mV or Wh) as a meter of this type and scale sends it."""
    raw = value / (10.0**exponent)
    if kind == modbus_models.F32:
        b = struct.pack(">f", raw)
        words = [(b[0] << 8) | b[1], (b[2] << 8) | b[3]]
    else:
        n = WORDS[kind]
        number = int(round(raw)) & ((1 << (16 * n)) - 1)
        words = [(number >> (16 * (n - 1 - i))) & 0xFFFF for i in range(n)]
    if low_first and len(words) == 2:
        words.reverse()
    return words


class PtyLine:
    """Two ptys bridged by a thread: a serial line with a device path at each end."""

    def __init__(self):
        self._ends = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._ends.append((master, slave, os.ttyname(slave)))
        self.device = self._ends[0][2]  # the firmware's end
        self.server_device = self._ends[1][2]  # pymodbus's end
        self._stop = os.pipe()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        a = self._ends[0][0]
        b = self._ends[1][0]
        while True:
            ready, _, _ = select.select([a, b, self._stop[0]], [], [], 1.0)
            if self._stop[0] in ready:
                return
            for src, dst in ((a, b), (b, a)):
                if src in ready:
                    try:
                        data = os.read(src, 4096)
                    except OSError:
                        continue  # EIO: nobody has the other end open yet
                    try:
                        os.write(dst, data)
                    except OSError:
                        pass

    def close(self):
        os.write(self._stop[1], b"x")
        self._thread.join(timeout=2)
        for master, slave, _ in self._ends:
            for fd in (master, slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
        for fd in self._stop:
            os.close(fd)


class ModbusMeterEmulator:
    """A Modbus meter of the firmware's table, served by pymodbus (see module doc)."""

    def __init__(self, model, unit=1, tcp_port=None, baud=9600, parity="N", missing=(), row=None):
        self.model = model
        self.row = row if row is not None else modbus_models.row(model)
        if self.row is None:
            raise ValueError("unknown model %s" % model)
        self.unit = unit
        self.tcp_port = tcp_port
        self.baud = baud
        self.parity = parity
        self.missing = set(missing)
        self.silent = False
        self.requests = 0
        self.image = {}
        self.line = None
        self.port = None
        self.device = None
        self._loop = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()
        self.set_values((0, 0, 0), (0, 0, 0))

    # -- the register image ----------------------------------------------------

    def set_values(self, currents_ma, powers_w, voltages_mv=(NOMINAL_MV,) * 3, import_wh=0, export_wh=0):
        """What the meter measures now (per phase L1..L3; the sign of a current comes from its power)."""
        row = self.row
        low_first = row[1]
        image = {}

        def put(spec, value):
            for i, word in enumerate(encode(spec[1], spec[2], value, low_first)):
                image[spec[0] + i] = word

        for p in range(row[2]):
            for spec, values in ((row[5], currents_ma), (row[6], powers_w), (row[7], voltages_mv)):
                if spec is not None:
                    value = abs(values[p]) if values is currents_ma else values[p]
                    put((spec[0] + p * WORDS[spec[1]], spec[1], spec[2]), value)
        if row[8] is not None:
            put(row[8], sum(powers_w))
        if row[9] is not None:
            imp, exp, kind, k = row[9]
            put((imp, kind, k), import_wh)
            if exp is not None:
                put((exp, kind, k), export_wh)
        with self._lock:
            self.image = image

    def ranges(self):
        """[(first address, count)]: the vendor map's ranges this meter answers (the firmware's blocks)."""
        row = self.row
        groups = ([], [])
        for p in range(row[2]):
            for spec in (row[5], row[6], row[7]):
                if spec is not None:
                    start = spec[0] + p * WORDS[spec[1]]
                    groups[0].append((start, start + WORDS[spec[1]]))
        if row[8] is not None:
            groups[0].append((row[8][0], row[8][0] + WORDS[row[8][1]]))
        if row[9] is not None:
            imp, exp, kind, _ = row[9]
            for address in (imp, exp):
                if address is not None:
                    groups[1].append((address, address + WORDS[kind]))
        out = []
        for group in groups:
            if group:
                first = min(start for start, _ in group)
                last = max(end for _, end in group)
                out.append((first, last - first))
        return out

    # -- pymodbus -------------------------------------------------------------

    async def _action(self, function_code, start_address, address, count, current_registers, set_values):
        from pymodbus.constants import ExcCodes

        if function_code != self.row[0]:
            return ExcCodes.ILLEGAL_ADDRESS
        for a in range(address, address + count):
            if a in self.missing:
                return ExcCodes.ILLEGAL_ADDRESS
        with self._lock:
            image = self.image
        for i in range(len(current_registers)):
            current_registers[i] = image.get(start_address + i, 0)
        self.requests += 1
        return None

    def _trace(self, sending, data):
        # What reaches pymodbus: nothing while the meter is silent (a cut cable).
        if sending or not data or not self.silent:
            return data
        return b""

    def _device(self):
        from pymodbus.simulator import DataType, SimData, SimDevice

        blocks = []
        for first, count in self.ranges():
            # A missing register splits its range: reading it is exception 2.
            start = first
            for a in range(first, first + count + 1):
                if a == first + count or a in self.missing:
                    if a > start:
                        blocks.append(SimData(start, count=a - start, values=0, datatype=DataType.REGISTERS))
                    start = a + 1
        empty = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
        # Separate blocks (coils, discrete inputs, holding, input): FC3 reads
        # only the holding ones, FC4 only the input ones, as on the meters.
        hr = blocks if self.row[0] == 3 else [SimData(0xFFFE, count=1, values=0, datatype=DataType.REGISTERS)]
        ir = blocks if self.row[0] == 4 else [SimData(0xFFFE, count=1, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(self.unit, simdata=(empty, empty, hr, ir), action=self._action)

    def start(self):
        """Start serving (RTU on a new pty line, or TCP); returns self once it listens."""
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        started = threading.Event()
        errors = []
        if self.tcp_port is None:
            self.line = PtyLine()
            self.device = self.line.device

        _silent_for_other_units()

        async def open_server():
            if self.tcp_port is None:
                server = ModbusSerialServer(
                    self._device(),
                    framer=FramerType.RTU,
                    port=self.line.server_device,
                    baudrate=self.baud,
                    parity=self.parity,
                    trace_packet=self._trace,
                    ignore_missing_devices=True,
                )
            else:
                server = ModbusTcpServer(self._device(), address=("127.0.0.1", self.tcp_port), trace_packet=self._trace, ignore_missing_devices=True)
            await server.listen()
            return server

        def serve():
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                server = self._server = loop.run_until_complete(open_server())
                if self.tcp_port is not None:
                    self.port = _listening_port(server)
            except Exception as error:  # reported to start()
                errors.append(error)
                started.set()
                return
            started.set()
            loop.run_forever()
            try:
                loop.run_until_complete(server.shutdown())
            except Exception:
                pass
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not started.wait(10) or errors:
            raise RuntimeError("modbus emulator did not start: %s" % (errors[0] if errors else "timeout"))
        return self

    def stop(self):
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.line is not None:
            self.line.close()
            self.line = None


def _silent_for_other_units():
    # A request to another unit address gets no answer on a real bus, and
    # pymodbus is told so with ignore_missing_devices. But its 3.16 SimCore
    # looks an unknown unit up as device 0 and fails with KeyError, which the
    # server answers with exception 4. Raise the exception the server expects
    # for an unknown unit instead.
    from pymodbus.exceptions import NoSuchIdException
    from pymodbus.simulator import simcore

    def get_device(self, device_id):
        if device_id in self.devices:
            return self.devices[device_id]
        raise NoSuchIdException(device_id)

    simcore.SimCore._SimCore__get_device = get_device


def _listening_port(server):
    # pymodbus keeps the asyncio server in `transport`.
    transport = server.transport
    sockets = getattr(transport, "sockets", None)
    if sockets:
        return sockets[0].getsockname()[1]
    return transport.get_extra_info("sockname")[1]
