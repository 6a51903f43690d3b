"""One Modbus wallbox connection (TCP, or RTU on the RS485 port), for the Modbus charger drivers.

ModbusBox(host, port, platform, timeout_ms[, link])
    ``await read(unit, function, address, count)`` and ``await write(unit,
    function, address, values, count)`` run one request of net/modbus.py's
    ModbusMaster over a TcpLink (net/modbus_tcp.py; `link`: another one,
    net/modbus_rtu_box.py's RTU link on the RS485 port) to its end (writes:
    function 5, one coil, 0xFF00 on / 0 off; 6, one register; 16, up to 8
    registers in one request, a float32 or u32 set-point; DONE only when the
    answer echoes the function, address and value or count), sleeping
    between its steps, and return True when the box answered as asked
    (after a read, ``word(i)`` is register i of the answer). On False,
    ``error`` says why in words ("no answer ...", "connection refused",
    "exception 2: illegal data address ...") and ``exception`` holds the
    Modbus exception code (0 when the box did not answer with one).

The drivers' shared steps (chargers/: v2c_trydan_modbus, alfen, abb_terra,
modbus_generic; as net/http.py's apply_box / fail_box for the HTTP ones):
box_amps, poll_box, read_block, took_status, apply_box, write_box,
fail_box. A driver
has `box` (a ModbusBox), `unit`, `status` (ChargerStatus), `last_error`,
`writes_sent`, `_poll_error` (the poll's error, shown again once a command
went through), `_read_status()` (its poll: read_block, then took_status),
`_command(offered_ma)` (writes what the box lacks with write_box; True when
it has the command) and `_forget()` (drops what it believed the box had).

Deadlines: each attempt waits ``timeout_ms`` for its answer, a failed
attempt is tried once more, and the whole request ends ``2 x timeout_ms +
pause`` after it started whatever happens, so a hung box delays only its own
driver. Requests of one box are serialised: a call made while another runs
waits for it (the driver's poll and its commands share the connection, as a
box allows only one or two masters: Alfen two, the others one). A host name
is looked up with net/dns.py on the device (never the blocking getaddrinfo),
again only while the link has no connection.
"""

from micropython import const

from chargeguard.net import modbus as mb
from chargeguard.net import modbus_tcp as tcp

_STEP_MS = const(5)  # how often a request in flight is stepped
_PAUSE_MS = const(20)  # between two requests to one box (TCP needs no t3.5; a little air for small boxes)
_MAX_WRITE = const(8)  # registers one function 16 write carries (a set-point is 1 or 2)
_MIN_A = const(6)  # IEC 61851: no charging below 6 A
_MAX_A = const(32)  # the most any of these boxes takes


def kept_frame(frames, count, size):
    """The function 16 request frame (bytearray of `size`) for `count` registers from dict `frames`, made once."""
    req = frames.get(count)
    if req is None:
        req = frames[count] = bytearray(size)
    return req


def put_words(req, at, values, count):
    """Write values[0..count-1] (ints 0..65535) into bytearray `req` from index `at`, big-endian 16-bit words."""
    for i in range(count):
        req[at + 2 * i] = (values[i] >> 8) & 0xFF
        req[at + 1 + 2 * i] = values[i] & 0xFF


class _Link(tcp.TcpLink):
    """TcpLink that also frames writes: functions 5, 6 (12 bytes, as a read) and 16 (13 + 2 x count).

    The function 16 frames are made once per register count and kept, so a
    write allocates nothing once warm. (Kept out of net/modbus_tcp.py so a
    Modbus meter carries none of it.)
    """

    def __init__(self, host, port):
        tcp.TcpLink.__init__(self, host, port)
        self._read_req = self._req
        self._frames = {}

    def begin(self, unit, function, address, count, values=None):
        if function == 16:
            req = kept_frame(self._frames, count, 13 + 2 * count)
            self._req = self._read_req  # begin() fills the 12-byte head there
            tcp.TcpLink.begin(self, unit, 16, address, count)
            head = self._req
            for i in range(12):
                req[i] = head[i]
            req[5] = 7 + 2 * count  # unit + PDU length
            req[12] = 2 * count
            put_words(req, 13, values, count)
            self._req = req
        else:
            self._req = self._read_req
            # Functions 5 and 6: the value takes the place of the count.
            tcp.TcpLink.begin(self, unit, function, address, count if values is None else values[0])


class _Master(mb.ModbusMaster):
    """ModbusMaster with writes (see ModbusBox.write); the answer is checked by ModbusMaster.step."""

    def start_write(self, unit, function, address, values, count, deadline_ms):
        """Arm a write of values[0..count-1] at `address`: function 5 or 6 (count 1) or 16 (1..8). False when busy."""
        if self._busy:
            self.error = mb._ERRORS[12]  # a request is already in flight
            return False
        if (
            not ((function == 6 or function == 5) and count == 1 or function == 16 and 1 <= count <= _MAX_WRITE)
            or not 0 <= address <= 0xFFFF - count + 1
            or function == 5 and values[0] not in (0, 0xFF00)
        ):
            raise ValueError("modbus write")
        for i in range(count):
            if not 0 <= values[i] <= 0xFFFF:
                raise ValueError("modbus write")
        self.link.begin(unit, function, address, count, values)
        self._function = function
        self._count = count
        self._address = address
        self._echo = count if function == 16 else values[0]
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


class ModbusBox:
    """A Modbus TCP box: serialised requests with deadlines (see module doc)."""

    def __init__(self, host, port, platform, timeout_ms, link=None):
        # link: another link than Modbus TCP to host:port (net/modbus_rtu_box.py: the RS485 port).
        self.link = _Link(host, port) if link is None else link
        self.master = _Master(self.link, platform.ticks_ms, platform.ticks_diff, timeout_ms, 1, _PAUSE_MS)
        self._sleep_ms = platform.sleep_ms
        self._deadline_ms = 2 * timeout_ms + _PAUSE_MS
        self._busy = False
        self.error = None
        self.exception = 0
        self._resolve = None if link is not None or tcp.is_numeric(host) else tcp.resolver(platform, self.link, host)

    def word(self, index):
        """Register `index` of the last read's answer, unsigned 16 bit."""
        return self.master.word(index)

    async def read(self, unit, function, address, count):
        """Read `count` registers (function 3 or 4); True when they arrived."""
        await self._take()
        try:
            return await self._run(self.master.start(unit, function, address, count, self._deadline_ms))
        finally:
            self._busy = False

    async def write(self, unit, function, address, values, count):
        """Write values[0..count-1] (function 6 or 16); True when the box confirmed it."""
        await self._take()
        try:
            return await self._run(self.master.start_write(unit, function, address, values, count, self._deadline_ms))
        finally:
            self._busy = False

    async def _take(self):
        while self._busy:
            await self._sleep_ms(_STEP_MS)
        self._busy = True

    async def _run(self, started):
        master = self.master
        if self._resolve is not None:
            # One try at a time (not nested): each nesting level makes every
            # request's coroutine a GC block bigger (host_tests/system/test_write_cost.py).
            try:
                await self._resolve()
            except BaseException as err:  # OSError from net/dns.py (no answer, no such name), no heap, cancelled
                if started:
                    master.abort()  # armed, never sent: not left in flight (every later one would be refused)
                if isinstance(err, MemoryError) or not isinstance(err, Exception):
                    raise  # no heap: the drivers' apply_box / poll_box, "out of memory" with status.no_heap
                self.error = str(err.args[0]) if err.args else type(err).__name__
                self.exception = 0
                return False
        if not started:
            self.error = master.error
            self.exception = 0
            return False
        try:
            while True:
                r = master.step()
                if r == mb.DONE:
                    self.error = None
                    self.exception = 0
                    return True
                if r == mb.FAILED:
                    self.error = master.error
                    self.exception = master.exception
                    return False
                await self._sleep_ms(_STEP_MS)
        except BaseException:
            # Out of memory, or the task cancelled: the request must not
            # stay in flight, or every later one would be refused.
            master.abort()
            raise

    def close(self):
        self.link.close()


# -- the Modbus charger drivers' shared steps (module doc) ---------------------


def box_amps(offered_ma):
    """An offer (mA) as the whole amperes a box takes: rounded down, at most 32, 0 (pause) below 6."""
    amps = int(offered_ma) // 1000
    if amps > _MAX_A:
        return _MAX_A
    return amps if amps >= _MIN_A else 0


async def poll_box(driver):
    """A driver's poll: `await driver._read_status()`. True when the box was read; never raises."""
    try:
        return await driver._read_status()
    except MemoryError:
        return fail_box(driver, "out of memory", 1, True)
    except Exception as err:
        return fail_box(driver, "driver: %s" % type(err).__name__, 1)


async def read_block(driver, function, address, count):
    """Read `count` registers of the driver's unit into its box (then box.word(i)); False after fail_box."""
    box = driver.box
    if await box.read(driver.unit, function, address, count):
        return True
    return fail_box(driver, box.error, 1 if box.exception else 2)


def took_status(driver, error):
    """End of a poll that read the box: reachable, stamped with the answer's tick, `error` (None: fine). True."""
    status = driver.status
    status.reachable = True
    status.tick_ms = driver.box.master.tick_ms
    driver._poll_error = status.error = error
    if error is not None:
        driver.last_error = error
    return True


async def apply_box(driver, offered_ma):
    """A driver's apply: `await driver._command(offered_ma)`. True when the box has it; never raises.

    After a command that went through, the status shows the poll's error again (a command's refusal is
    cleared by the next success)."""
    try:
        if not await driver._command(offered_ma):
            return False
    except MemoryError:
        return fail_box(driver, "out of memory", 0, True)
    except Exception as err:
        return fail_box(driver, "driver: %s" % type(err).__name__)
    driver.status.error = driver._poll_error
    return True


async def write_box(driver, function, register, values, count, value):
    """Write values[0..count-1] at `register` of the driver's unit (function 5, 6 or 16; `value` for the
    error text "write <register>=<value>: <why>"). True when the box confirmed it, else False after fail_box."""
    driver.writes_sent += 1
    box = driver.box
    if await box.write(driver.unit, function, register, values, count):
        return True
    return fail_box(driver, "write %d=%d: %s" % (register, value, box.error), 0 if box.exception else 3)


def fail_box(driver, message, how=0, no_heap=False):
    """Note a failure in the driver's status and `last_error`; returns False.

    no_heap: True when the cause was a MemoryError (status.no_heap: app.py sends the command again
    after a collection).

    how: 0 = a command the box refused (a Modbus exception), 1 = a poll the box answered badly, 2 = a
    poll without an answer, 3 = a command without an answer. 1-3: not reachable; 1 and 2: the error
    stays until a poll succeeds; 2 and 3: the box may have restarted, so driver._forget() drops what it
    believed the box had and the next apply writes everything.
    """
    status = driver.status
    status.error = driver.last_error = message
    status.no_heap = no_heap
    if how:
        status.reachable = False
        if how != 3:
            driver._poll_error = message
        if how >= 2:
            driver._forget()
    return False
