"""Modbus TCP link (MBAP) for net/modbus.py's ModbusMaster: see that module's doc.

Loaded only when the meter is reached over TCP (meter.host set), so an RTU
meter carries none of this code. Host names are resolved by `resolver()`
with net/dns.py on the device (getaddrinfo would block the event loop).
"""

import errno
import select
import socket

from micropython import const

# The same values as in net/modbus.py (const() cannot be shared).
BUSY = const(0)
DONE = const(1)
_E_UNIT = const(3)
_E_LENGTH = const(5)
_E_LONG = const(6)
_E_REFUSED = const(7)
_E_CLOSED = const(8)
_E_SOCKET = const(9)
_E_PROTOCOL = const(10)

_CHUNK = const(32)  # bytes taken from the socket per read call
_TCP_REQUEST = const(12)  # MBAP (7) + function, address (2), count (2)
_TCP_MAX = const(260)  # MBAP 7 + PDU 253


class TcpLink:
    """Modbus TCP (MBAP) on a non-blocking socket (see module doc)."""

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.buf = bytearray(_TCP_MAX)
        self.pdu = 7
        self._req = bytearray(_TCP_REQUEST)
        self._chunk = bytearray(_CHUNK)
        self._sock = None
        self._poll = None
        self._read = None
        self._connected = False
        self._tid = 0
        self._got = 0

    def begin(self, unit, function, address, count):
        tid = self._tid = (self._tid + 1) & 0xFFFF
        req = self._req
        req[0] = tid >> 8
        req[1] = tid & 0xFF
        req[2] = 0
        req[3] = 0
        req[4] = 0
        req[5] = 6  # unit + the 5-byte PDU
        req[6] = unit
        req[7] = function
        req[8] = address >> 8
        req[9] = address & 0xFF
        req[10] = count >> 8
        req[11] = count & 0xFF

    def renew(self):
        # A retry gets a new transaction id: a late answer to the first try is then skipped.
        tid = self._tid = (self._tid + 1) & 0xFFFF
        self._req[0] = tid >> 8
        self._req[1] = tid & 0xFF

    def _open(self):
        # Non-blocking connect: EINPROGRESS now, writable once connected.
        # Allocates (socket, poll object): once per connection, not per poll.
        ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
        sock = socket.socket(ai[0], ai[1], ai[2])
        self._sock = sock
        sock.setblocking(False)
        poll = self._poll = select.poll()
        poll.register(sock, select.POLLOUT | select.POLLIN)
        # CPython sockets have recv_into, MicroPython's readinto (None = nothing yet).
        self._read = getattr(sock, "recv_into", None) or sock.readinto
        self._connected = False
        try:
            sock.connect(ai[-1])
        except OSError as err:
            code = err.args[0] if err.args else 0
            if code not in (errno.EINPROGRESS, errno.EAGAIN, 115, 11):
                raise

    def send(self, now):
        try:
            if self._sock is None:
                self._open()
            if not self._connected:
                ready = 0
                for entry in self._poll.poll(0):
                    ready = entry[1]
                if not ready:
                    return BUSY
                if ready & (select.POLLERR | select.POLLHUP):
                    self.reset()
                    return -_E_REFUSED
                self._connected = True
                self._poll.modify(self._sock, select.POLLIN)
            # At most 29 bytes (a charger's write): they always fit an empty send buffer.
            sent = self._sock.send(self._req)
            if sent != len(self._req):
                self.reset()
                return -_E_SOCKET
        except OSError as err:
            code = err.args[0] if err.args else 0
            self.reset()
            return -_E_REFUSED if code == errno.ECONNREFUSED else -_E_SOCKET
        self._got = 0
        return DONE

    def receive(self, now):
        buf = self.buf
        chunk = self._chunk
        got = self._got
        try:
            n = self._read(chunk)
        except OSError as err:
            code = err.args[0] if err.args else 0
            if code in (errno.EAGAIN, 11):
                return BUSY
            self.reset()
            return -_E_SOCKET
        if n is None:
            return BUSY
        if n == 0:
            self.reset()
            return -_E_CLOSED
        for i in range(n):
            if got >= _TCP_MAX:
                self.reset()
                return -_E_LONG
            buf[got] = chunk[i]
            got += 1
        while True:
            self._got = got
            if got < 7:
                return BUSY
            if buf[2] or buf[3]:
                self.reset()
                return -_E_PROTOCOL
            length = (buf[4] << 8) | buf[5]
            if length < 3 or length > _TCP_MAX - 6:
                self.reset()
                return -_E_PROTOCOL
            total = 6 + length
            if got < total:
                return BUSY
            if buf[0] == self._req[0] and buf[1] == self._req[1]:
                if got > total:
                    self.reset()
                    return -_E_LENGTH
                self._got = 0
                if buf[6] != self._req[6]:
                    return -_E_UNIT
                return length - 1
            # A late answer to an earlier request: skip it, keep what follows.
            for i in range(got - total):
                buf[i] = buf[total + i]
            got -= total

    def reset(self):
        sock = self._sock
        self._sock = None
        self._connected = False
        self._got = 0
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    close = reset


def is_numeric(host):
    """True for a dotted-decimal IPv4 address."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isdigit() or int(part) > 255:
            return False
    return True


def resolver(platform, link, host):
    """An async function that points `link` at `host`'s address before a request.

    The device asks net/dns.py (platform.dns_server()); a host that reports
    no DNS server (the unix port) leaves the name to getaddrinfo. The name is
    looked up again only while the link has no connection.
    """

    async def resolve():
        if link._sock is not None or platform.dns_server() is None:
            return
        from chargeguard.net import dns

        link.host = await dns.resolve(platform, host)

    return resolve
