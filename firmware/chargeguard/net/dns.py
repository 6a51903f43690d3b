"""A small DNS resolver that never blocks the event loop: one A query over non-blocking UDP.

On MicroPython socket.getaddrinfo() blocks until the name is resolved (or
the resolver's own timeout passes, seconds later), stalling every task. This
asks the DNS server the platform reports (the DHCP lease's, WLAN.ifconfig()[3]
on the ESP32) itself, polls the socket between sleeps, and gives up at a
deadline. Numeric IPv4 addresses are returned as they are, with no query.

Protocol facts (RFC 1035): a 12-byte header (id, flags with RD = 0x0100,
QDCOUNT 1), the question (length-prefixed labels, a 0 byte, QTYPE A = 1,
QCLASS IN = 1); the answer echoes the id, sets QR (0x8000), carries RCODE in
the low 4 bits of the flags (3 = no such name) and ANCOUNT records whose
names may be compressed (a byte >= 0xC0 starts a 2-byte pointer).

A name under `.local` (a broker at homeassistant.local) is asked for by
multicast DNS instead, as a one-shot query (RFC 6762 5.1): the same packet,
without RD (18.6), to 224.0.0.251 port 5353 from this socket's own port;
a responder answers a query from a port other than 5353 by unicast to it,
echoing the id and the question (6.7). Its answer's class carries the
cache-flush bit (10.2), which the parser does not look at. No responder
having the name is no answer at all: "dns: no answer" at the deadline.

`resolve()` returns the dotted address, or raises ValueError with a short
text ("dns: no server", "dns: no answer", "dns: no such name", "dns: bad
answer"); OSError from the socket passes through.
"""

import errno
import socket

from micropython import const

_PORT = const(53)
_TIMEOUT_MS = const(3000)
_POLL_MS = const(20)
_MAX_ANSWER = const(512)  # a UDP DNS answer is at most 512 bytes (RFC 1035 4.2.1)
# Where a .local name is asked for (RFC 6762 3, 5.1); names, not const(),
# so that the tests can point them at a responder on loopback.
MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353


def is_numeric(host):
    """True for a dotted-decimal IPv4 address (four numbers 0..255)."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part or len(part) > 3 or not part.isdigit() or int(part) > 255:
            return False
    return True


def is_mdns(name):
    """True for a name under `.local`, which only multicast DNS answers (RFC 6762 3)."""
    return name.lower().endswith(".local")


def build_query(name, ident, recurse=True):
    """The query packet (bytearray) for the A record of `name`; ValueError for a name DNS cannot carry.

    `recurse` sets RD (a unicast server should recurse); an mDNS query has
    it clear (RFC 6762 18.6).
    """
    packet = bytearray(12)
    packet[0] = (ident >> 8) & 0xFF
    packet[1] = ident & 0xFF
    if recurse:
        packet[2] = 0x01  # RD
    packet[5] = 1  # QDCOUNT
    for label in name.split("."):
        raw = label.encode()
        if not 1 <= len(raw) <= 63:
            raise ValueError("dns: bad name")
        packet.append(len(raw))
        packet.extend(raw)
    packet.extend(b"\x00\x00\x01\x00\x01")  # end of name, QTYPE A, QCLASS IN
    return packet


def _skip_name(data, pos):
    # Position after the (possibly compressed) name at `pos`.
    size = len(data)
    while pos < size:
        length = data[pos]
        if length >= 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length
    raise ValueError("dns: bad answer")


def parse_answer(data, ident):
    """The first A record of an answer to query `ident` as dotted text; None when the packet is not that answer.

    Raises ValueError("dns: no such name") for RCODE 3 or an answer without
    an A record, ValueError("dns: bad answer") for a malformed one.
    """
    if len(data) < 12 or data[0] != (ident >> 8) & 0xFF or data[1] != ident & 0xFF or not data[2] & 0x80:
        return None  # someone else's packet: keep waiting
    rcode = data[3] & 0x0F
    if rcode == 3:
        raise ValueError("dns: no such name")
    if rcode:
        raise ValueError("dns: server error %d" % rcode)
    questions = (data[4] << 8) | data[5]
    answers = (data[6] << 8) | data[7]
    pos = 12
    for _ in range(questions):
        pos = _skip_name(data, pos) + 4
    for _ in range(answers):
        pos = _skip_name(data, pos)
        if pos + 10 > len(data):
            raise ValueError("dns: bad answer")
        kind = (data[pos] << 8) | data[pos + 1]
        length = (data[pos + 8] << 8) | data[pos + 9]
        pos += 10
        if pos + length > len(data):
            raise ValueError("dns: bad answer")
        if kind == 1 and length == 4:
            return "%d.%d.%d.%d" % (data[pos], data[pos + 1], data[pos + 2], data[pos + 3])
        pos += length  # a CNAME or another record: the A record follows
    raise ValueError("dns: no such name")


async def resolve(platform, name, timeout_ms=_TIMEOUT_MS, server=None, port=_PORT):
    """The IPv4 address of `name` as text, within `timeout_ms`; never blocks the loop.

    `server` defaults to platform.dns_server(), or for a `.local` name to
    the mDNS group (MDNS_GROUP, MDNS_PORT). The query is sent again halfway
    through the deadline (UDP may lose it).
    """
    if is_numeric(name):
        return name
    multicast = server is None and is_mdns(name)
    if multicast:
        server = MDNS_GROUP
        port = MDNS_PORT
    elif server is None:
        server = platform.dns_server()
    if not server:
        raise ValueError("dns: no server")
    ident = platform.ticks_ms() & 0xFFFF
    query = build_query(name, ident, not multicast)
    # getaddrinfo of a numeric address answers at once (no lookup).
    address = socket.getaddrinfo(server, port, 0, socket.SOCK_DGRAM)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.sendto(query, address)
        start = platform.ticks_ms()
        resent = False
        while True:
            try:
                data = sock.recv(_MAX_ANSWER)
            except OSError as error:
                if not error.args or error.args[0] != errno.EAGAIN:
                    raise  # nothing there yet is EAGAIN; anything else is a real failure
                data = None
            if data:
                found = parse_answer(data, ident)
                if found is not None:
                    return found
                continue
            elapsed = platform.ticks_diff(platform.ticks_ms(), start)
            if elapsed >= timeout_ms:
                raise ValueError("dns: no answer")
            if not resent and elapsed >= timeout_ms // 2:
                resent = True
                sock.sendto(query, address)
            await platform.sleep_ms(_POLL_MS)
    finally:
        sock.close()


