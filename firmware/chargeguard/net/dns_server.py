"""The captive portal's DNS server: every name is the device, over non-blocking UDP.

While the setup access point is open (net/portal.py), a phone that joins it
asks this server for its connectivity-check hosts (connectivitycheck.
gstatic.com, captive.apple.com, www.msftconnecttest.com, ...). Every A
query is answered with the device's own address, so the phone's probe lands
on the device's web server, gets a redirect instead of the answer it
expects, and shows "sign in to network" with the setup page.

Protocol facts (RFC 1035 4.1; RFC 6891 for EDNS):
- header: 12 bytes: ID, flags (QR 0x80 and OPCODE bits 0x78 of byte 2, RD
  0x01 of byte 2; RA 0x80 and RCODE low 4 bits of byte 3), QDCOUNT,
  ANCOUNT, NSCOUNT, ARCOUNT (big endian);
- question: the name as labels (a length byte 1..63, then the label; a 0
  byte ends it; at most 255 bytes in all; a byte >= 0xC0 is a compression
  pointer, never in a query's question), QTYPE (A = 1, AAAA = 28), QCLASS
  (IN = 1);
- answer record: name (here the pointer 0xC00C to the question's name),
  TYPE, CLASS, TTL (32 bits, s), RDLENGTH, RDATA (4 bytes for A);
- over UDP a message is at most 512 bytes; a server without EDNS answers
  without the OPT record (RFC 6891 7), so the additional section is dropped.

Answers: an A (or ANY-type) query of class IN gets one A record, the
device's address, TTL ANSWER_TTL_S; every other query (AAAA, HTTPS, ...)
gets NOERROR with no records ("no such record", so the phone falls back to
IPv4 at once, where NXDOMAIN would make it give up on the name). A packet
that is not a standard query with one well-formed question (a response,
another opcode, a truncated or looping name, anything shorter than a
header) is dropped without an answer.

Memory: one preallocated MAX_PACKET buffer for the query and the answer,
built in place. The socket API offers no recvfrom_into on MicroPython, so
each datagram arrives as one bytes object (<= 512 B) that is copied into the
buffer and dropped; at most MAX_PER_TURN datagrams are handled per poll(),
so a flood costs bounded work per loop turn.
"""

import errno
import socket

from micropython import const

MAX_PACKET = const(512)  # a DNS message over UDP (RFC 1035 4.2.1)
MAX_PER_TURN = const(8)  # datagrams per poll(): a phone joining asks ~10 names at once (A and AAAA of its probe hosts); bounded work per loop turn
POLL_MS = const(50)  # how often run() looks at the socket
ANSWER_TTL_S = const(60)  # phones flush DNS on a network change anyway; short, so a stale entry goes soon
_HEADER = const(12)
_MAX_NAME = const(255)
_TYPE_A = const(1)
_TYPE_ANY = const(255)
_CLASS_IN = const(1)
_ANSWER = const(16)  # pointer 2 + type 2 + class 2 + TTL 4 + rdlength 2 + address 4


def address_bytes(text):
    """The 4 bytes of a dotted IPv4 address; ValueError when it is not one."""
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address: %s" % text)
    out = bytearray(4)
    for index in range(4):
        value = int(parts[index])
        if not 0 <= value <= 255:
            raise ValueError("not an IPv4 address: %s" % text)
        out[index] = value
    return bytes(out)


def answer(buf, size, address):
    """Turn the query in buf[:size] into its answer, in place; its length, or 0 to drop the packet.

    buf: a bytearray of at least MAX_PACKET bytes; address: the 4 bytes every
    A query is answered with. Never raises for any content of buf[:size].
    """
    if size < _HEADER or size > len(buf) or size > MAX_PACKET:
        return 0
    flags = buf[2]
    if flags & 0xF8:
        return 0  # a response (QR), or an opcode other than QUERY
    if buf[4] != 0 or buf[5] != 1:
        return 0  # exactly one question
    pos = _HEADER
    while True:
        if pos >= size:
            return 0  # the name runs past the packet
        length = buf[pos]
        if length == 0:
            pos += 1
            break
        if length > 63:
            return 0  # a pointer or a reserved label type: not in a query's question
        pos += 1 + length
        if pos - _HEADER > _MAX_NAME:
            return 0
    if pos + 4 > size:
        return 0  # no room for QTYPE and QCLASS
    qtype = (buf[pos] << 8) | buf[pos + 1]
    qclass = (buf[pos + 2] << 8) | buf[pos + 3]
    end = pos + 4
    records = 1 if (qtype == _TYPE_A or qtype == _TYPE_ANY) and qclass == _CLASS_IN else 0
    # Header: QR, AA, RD as asked; RA 0 (no recursion here), RCODE 0 (NOERROR).
    buf[2] = 0x84 | (flags & 0x01)
    buf[3] = 0
    buf[6] = 0
    buf[7] = records
    buf[8] = buf[9] = buf[10] = buf[11] = 0
    if records:
        buf[end] = 0xC0  # the name: a pointer to the question's, at offset 12
        buf[end + 1] = _HEADER
        buf[end + 2] = 0
        buf[end + 3] = _TYPE_A
        buf[end + 4] = 0
        buf[end + 5] = _CLASS_IN
        buf[end + 6] = 0
        buf[end + 7] = 0
        buf[end + 8] = (ANSWER_TTL_S >> 8) & 0xFF
        buf[end + 9] = ANSWER_TTL_S & 0xFF
        buf[end + 10] = 0
        buf[end + 11] = 4
        buf[end + 12 : end + 16] = address
        end += _ANSWER
    return end


class DnsServer:
    """Answers every A query with `address` (dotted text) on UDP host:port; see the module doc.

    open() binds (OSError when the port cannot be had), poll() handles what
    has arrived and never raises, close() releases the socket. Counters:
    `answered`, `dropped` (malformed or not a query), `errors` (socket errors
    other than "nothing there").
    """

    def __init__(self, address, host="0.0.0.0", port=53):
        self.address = address_bytes(address)
        self.host = host
        self.port = port
        self.buf = bytearray(MAX_PACKET)
        self.sock = None
        self.answered = 0
        self.dropped = 0
        self.errors = 0

    def open(self):
        """Bind the UDP socket (non-blocking); OSError when the port is taken or the address is not ours."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0][-1])
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def close(self):
        """Release the socket (idempotent)."""
        sock = self.sock
        if sock is not None:
            self.sock = None
            sock.close()

    def poll(self):
        """Handle at most MAX_PER_TURN waiting datagrams; the number handled. Never raises."""
        sock = self.sock
        if sock is None:
            return 0
        buf = self.buf
        handled = 0
        while handled < MAX_PER_TURN:
            try:
                data, peer = sock.recvfrom(MAX_PACKET)
            except OSError as error:
                if not error.args or error.args[0] != errno.EAGAIN:
                    self.errors += 1  # e.g. ICMP port unreachable from an earlier answer (ECONNREFUSED)
                return handled
            except MemoryError:
                # No block for the datagram now (the web at its peak): it
                # stays queued in the network stack for the next turn.
                self.errors += 1
                return handled
            handled += 1
            try:
                size = len(data)
                buf[:size] = data
                data = None
                size = answer(buf, size, self.address)
                if not size:
                    self.dropped += 1
                    continue
                sock.sendto(memoryview(buf)[:size], peer)
                self.answered += 1
            except Exception:
                # A send that fails (the peer's buffer, a bad address) costs
                # that answer only; nothing escapes into the portal task.
                self.errors += 1
        return handled
