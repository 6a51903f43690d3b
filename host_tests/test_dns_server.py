"""net/dns_server.py: the captive portal's answers, built in place (both runtimes).

Packets are built here by hand from RFC 1035 4.1 (header, question, answer
record); host_tests/system/test_portal_system.py asks the running firmware
with a real DNS client (dnspython). The malformed corpus is fixed so it runs
on MicroPython too; under CPython, hypothesis adds random packets and
mutations of good ones (test_fuzzed_packets_never_raise_and_stay_bounded).
"""

import socket

import support

from chargeguard.net import dns_server
from chargeguard.net.dns_server import ANSWER_TTL_S, MAX_PACKET, DnsServer, answer

DEVICE = bytes((192, 168, 4, 1))


def query(name, qtype=1, ident=0x1234, flags=0x0100, qclass=1, extra=b"", counts=(1, 0, 0, 0)):
    packet = bytearray()
    packet += bytes(((ident >> 8) & 0xFF, ident & 0xFF, (flags >> 8) & 0xFF, flags & 0xFF))
    for count in counts:
        packet += bytes(((count >> 8) & 0xFF, count & 0xFF))
    for label in name.split("."):
        raw = label.encode()
        packet.append(len(raw))
        packet += raw
    packet.append(0)
    packet += bytes(((qtype >> 8) & 0xFF, qtype & 0xFF, (qclass >> 8) & 0xFF, qclass & 0xFF))
    return bytes(packet + extra)


def ask(packet):
    buf = bytearray(MAX_PACKET)
    buf[: len(packet)] = packet
    size = answer(buf, len(packet), DEVICE)
    return bytes(buf[:size])


def u16(data, pos):
    return (data[pos] << 8) | data[pos + 1]


def test_an_a_query_gets_the_device_address():
    packet = query("connectivitycheck.gstatic.com")
    reply = ask(packet)
    question_end = len(packet)
    assert reply[:2] == b"\x12\x34"  # the query's ID
    assert reply[2] == 0x85 and reply[3] == 0x00  # QR, AA, RD echoed; NOERROR
    assert (u16(reply, 4), u16(reply, 6), u16(reply, 8), u16(reply, 10)) == (1, 1, 0, 0)
    assert reply[12:question_end] == packet[12:]  # the question as asked
    record = reply[question_end:]
    assert len(record) == 16
    assert record[:2] == b"\xc0\x0c"  # the question's name
    assert (u16(record, 2), u16(record, 4)) == (1, 1)  # A, IN
    assert (record[6] << 24 | record[7] << 16 | record[8] << 8 | record[9]) == ANSWER_TTL_S
    assert u16(record, 10) == 4 and record[12:] == DEVICE


def test_recursion_desired_is_echoed_only_when_asked():
    assert ask(query("a.b", flags=0x0000))[2] == 0x84
    assert ask(query("a.b", flags=0x0100))[2] == 0x85


def test_aaaa_and_other_types_get_an_empty_noerror_answer():
    for qtype in (28, 65, 15, 16, 12):  # AAAA, HTTPS, MX, TXT, PTR
        packet = query("captive.apple.com", qtype)
        reply = ask(packet)
        assert len(reply) == len(packet)
        assert reply[3] & 0x0F == 0  # NOERROR
        assert u16(reply, 4) == 1 and u16(reply, 6) == 0


def test_any_type_gets_the_a_record_and_other_classes_nothing():
    assert u16(ask(query("x.y", 255)), 6) == 1
    assert u16(ask(query("x.y", 1, qclass=3)), 6) == 0  # CHAOS


def test_the_edns_opt_record_is_dropped_from_the_answer():
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # root name, OPT, 1232 bytes, no options
    packet = query("www.msftconnecttest.com", extra=opt, counts=(1, 0, 0, 1))
    reply = ask(packet)
    assert u16(reply, 10) == 0  # ARCOUNT
    assert len(reply) == len(packet) - len(opt) + 16
    assert reply[-4:] == DEVICE


def test_a_longest_name_fits():
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 255 bytes on the wire
    reply = ask(query(name))
    assert reply and reply[-4:] == DEVICE


# A fixed corpus of what must be dropped: every one answers 0 (no reply).
_TOO_LONG = ".".join(["a" * 63] * 4)  # 257 bytes on the wire
MALFORMED = (
    b"",
    b"\x12",
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00",  # 11 bytes: no full header
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",  # a question announced, none there
    query("a.b")[:-1],  # QCLASS cut
    query("a.b")[:-4],  # QTYPE and QCLASS missing
    query("abc.def")[:15],  # a label runs past the end
    query("a.b", flags=0x8180),  # a response, not a query
    query("a.b", flags=0x2800),  # opcode UPDATE
    query("a.b", flags=0x1000),  # opcode STATUS
    query("a.b", counts=(0, 0, 0, 0)),  # no question
    query("a.b", counts=(2, 0, 0, 0)),  # two questions
    query("a.b", counts=(256, 0, 0, 0)),
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # a pointer to itself
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x40abc\x00\x00\x01\x00\x01",  # reserved label type 0x40
    query(_TOO_LONG),  # a name above 255 bytes
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x3f" * 300,  # labels past the end
    b"\xff" * 512,
    b"\x00" * 512,
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x01a" * 250,  # no end of name within 512
)


def test_malformed_packets_are_dropped():
    for packet in MALFORMED:
        buf = bytearray(MAX_PACKET)
        size = min(len(packet), MAX_PACKET)
        buf[:size] = packet[:size]
        assert answer(buf, size, DEVICE) == 0, packet


def test_sizes_outside_the_buffer_are_dropped():
    buf = bytearray(MAX_PACKET)
    good = query("a.b")
    buf[: len(good)] = good
    assert answer(buf, MAX_PACKET + 1, DEVICE) == 0
    assert answer(bytearray(good), len(good) + 1, DEVICE) == 0  # size beyond the buffer


def test_every_truncation_and_byte_flip_of_a_good_query_is_safe():
    # The fixed-corpus fuzz both runtimes run: every prefix, and every byte
    # of a good query set to each of a few values; nothing raises, an answer
    # always fits the buffer, and an answer is only ever given to a query.
    good = query("connectivitycheck.gstatic.com", extra=b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00", counts=(1, 0, 0, 1))
    buf = bytearray(MAX_PACKET)
    for size in range(len(good) + 1):
        buf[:size] = good[:size]
        got = answer(buf, size, DEVICE)
        assert 0 <= got <= MAX_PACKET
    for pos in range(len(good)):
        for value in (0x00, 0x01, 0x3F, 0x40, 0x80, 0xC0, 0xFF):
            packet = bytearray(good)
            packet[pos] = value
            buf[: len(packet)] = packet
            got = answer(buf, len(packet), DEVICE)
            assert 0 <= got <= MAX_PACKET
            if got:
                assert buf[2] & 0x80 and not packet[2] & 0xF8


def test_fuzzed_packets_never_raise_and_stay_bounded():
    if support.IS_MICROPYTHON:
        support.skip("hypothesis runs under CPython; the fixed corpus above runs here")
    from hypothesis import given, settings, strategies

    base = query("captive.apple.com")

    @settings(max_examples=3000, deadline=None, derandomize=True)
    @given(strategies.one_of(
        strategies.binary(max_size=MAX_PACKET),
        strategies.lists(strategies.tuples(strategies.integers(0, len(base) - 1), strategies.integers(0, 255)),
                         max_size=6),
    ))
    def check(case):
        if isinstance(case, list):
            packet = bytearray(base)
            for pos, value in case:
                packet[pos] = value
        else:
            packet = case
        buf = bytearray(MAX_PACKET)
        buf[: len(packet)] = packet
        got = answer(buf, len(packet), DEVICE)
        assert 0 <= got <= MAX_PACKET
        if got:
            assert buf[2] & 0x80  # an answer, never a query echoed
            assert u16(buf, 4) == 1 and u16(buf, 6) in (0, 1)
            if u16(buf, 6):
                assert bytes(buf[got - 4 : got]) == DEVICE

    check()


def test_address_bytes_checks_the_text():
    assert dns_server.address_bytes("192.168.4.1") == DEVICE
    for bad in ("192.168.4", "192.168.4.256", "a.b.c.d", ""):
        try:
            dns_server.address_bytes(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def _pair():
    server = DnsServer("192.168.4.1", "127.0.0.1", 0)
    server.open()
    port = server.sock.getsockname()[1] if hasattr(server.sock, "getsockname") else None
    return server, port


def test_the_server_answers_over_udp_and_bounds_each_turn():
    if support.IS_MICROPYTHON:
        # MicroPython sockets have no getsockname(): the first free port of a few.
        for port in range(53531, 53600):
            server = DnsServer("192.168.4.1", "127.0.0.1", port)
            try:
                server.open()
                break
            except OSError:
                continue
    else:
        server, port = _pair()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        address = socket.getaddrinfo("127.0.0.1", port, 0, socket.SOCK_DGRAM)[0][-1]
        packets = [query("host%d.example" % index, ident=index) for index in range(dns_server.MAX_PER_TURN + 2)]
        packets.insert(1, b"\xff\x00junk")
        for packet in packets:
            client.sendto(packet, address)
        import time

        # Loopback delivery is immediate; allow the kernel a moment all the same.
        deadline = time.time() + 2
        handled = []
        while sum(handled) < len(packets) and time.time() < deadline:
            count = server.poll()
            assert count <= dns_server.MAX_PER_TURN
            handled.append(count)
            if not count:
                time.sleep(0.01)
        assert sum(handled) == len(packets)
        assert handled[0] == dns_server.MAX_PER_TURN  # bounded work per turn
        assert server.answered == len(packets) - 1 and server.dropped == 1
        client.settimeout(2)
        idents = set()
        for _ in range(len(packets) - 1):
            reply = client.recv(512)
            idents.add(u16(reply, 0))
            assert reply[-4:] == DEVICE
        assert idents == set(range(len(packets) - 1))
        assert server.poll() == 0  # nothing waiting: EAGAIN is no error
        assert server.errors == 0
    finally:
        client.close()
        server.close()
    server.close()  # idempotent
    assert server.poll() == 0


def test_a_receive_without_heap_is_counted_and_tried_next_turn():
    class Starved:
        def recvfrom(self, size):
            raise MemoryError()

        def close(self):
            pass

    server = DnsServer("192.168.4.1", "127.0.0.1", 0)
    server.sock = Starved()
    assert server.poll() == 0 and server.errors == 1
    server.close()
