"""One Modbus TCP wallbox connection, for the Modbus charger drivers.

ModbusBox(host, port, platform, timeout_ms)
    ``await read(unit, function, address, count)`` and ``await write(unit,
    function, address, values, count)`` run one request of net/modbus.py's
    ModbusMaster over a TcpLink (net/modbus_tcp.py) to its end, sleeping
    between its steps, and return True when the box answered as asked
    (after a read, ``word(i)`` is register i of the answer). On False,
    ``error`` says why in words ("no answer ...", "connection refused",
    "exception 2: illegal data address ...") and ``exception`` holds the
    Modbus exception code (0 when the box did not answer with one).

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


class ModbusBox:
    """A Modbus TCP box: serialised requests with deadlines (see module doc)."""

    def __init__(self, host, port, platform, timeout_ms):
        self.link = tcp.TcpLink(host, port)
        self.master = mb.ModbusMaster(self.link, platform.ticks_ms, platform.ticks_diff, timeout_ms, 1, _PAUSE_MS)
        self._sleep_ms = platform.sleep_ms
        self._deadline_ms = 2 * timeout_ms + _PAUSE_MS
        self._busy = False
        self.error = None
        self.exception = 0
        self._resolve = None if tcp.is_numeric(host) else tcp.resolver(platform, self.link, host)

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
            try:
                await self._resolve()
            except Exception as err:  # OSError from net/dns.py: no answer, no such name
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
