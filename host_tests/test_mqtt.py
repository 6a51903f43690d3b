"""net/mqtt.py: the link's framing, keepalive, backoff and queue, against a fake socket.

The packets the link writes are umqtt.simple's (the real, pinned library);
the fake broker here reads them back by their MQTT 3.1.1 layout and answers
with bytes the tests choose. The clock is virtual: every sleep of the link
advances it, so keepalive and backoff rules are checked to the millisecond
without waiting. Runs on CPython and on the MicroPython unix port; the real
broker is in host_tests/system/test_mqtt_system.py.
"""

import asyncio
import errno

from chargeguard.net import mqtt

KEEPALIVE_S = 10
SECRET = "broker-secret-pw"


class Clock:
    """A platform whose sleeps advance a virtual clock (no real waiting)."""

    name = "unix"

    def __init__(self):
        self.now = 0

    def ticks_ms(self):
        return self.now

    async def sleep_ms(self, ms):
        self.now += ms
        await asyncio.sleep(0)


class FakeBroker:
    """What the link's sockets talk to: records packets, answers as told."""

    def __init__(self):
        self.opens = []  # virtual time of each connection attempt
        self.refuse = False
        self.auto_connack = 0  # CONNACK return code sent on CONNECT; None = silent
        self.answer_pings = True
        self.take = True  # False: the socket accepts no data (full)
        self.chunk = 0  # > 0: accept at most this many bytes per send
        self.packets = []  # (first byte, body bytes) of every whole packet sent
        self.inbox = bytearray()  # bytes on their way to the client
        self.closed_by_broker = False
        self.conn = None
        self.pending = bytearray()

    def make(self):
        return FakeConn(self)

    def feed(self, data):
        self.inbox += data

    def _parse(self):
        while len(self.pending) >= 2:
            length, index, shift = 0, 1, 0
            while True:
                if index >= len(self.pending):
                    return
                byte = self.pending[index]
                index += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            if len(self.pending) < index + length:
                return
            first = self.pending[0]
            body = bytes(self.pending[index : index + length])
            self.pending = self.pending[index + length :]
            self.packets.append((first, body))
            self._answer(first, body)

    def _answer(self, first, body):
        kind = first & 0xF0
        if kind == 0x10 and self.auto_connack is not None:
            self.feed(bytes([0x20, 2, 0, self.auto_connack]))
        elif kind == 0xC0 and self.answer_pings:
            self.feed(b"\xd0\x00")
        elif kind == 0x80:
            self.feed(bytes([0x90, 3, body[0], body[1], 0]))

    def of_kind(self, kind):
        return [p for p in self.packets if p[0] & 0xF0 == kind]

    def publishes(self):
        """[(topic, payload, retain)] in the order sent."""
        out = []
        for first, body in self.of_kind(0x30):
            size = body[0] << 8 | body[1]
            out.append((body[2 : 2 + size].decode(), body[2 + size :], bool(first & 1)))
        return out


class FakeConn:
    def __init__(self, broker):
        self.broker = broker
        self.open_ = False

    def open(self, host, port):
        broker = self.broker
        broker.opens.append(self.clock.now)
        if broker.refuse:
            raise OSError(errno.ECONNREFUSED)
        broker.conn = self
        broker.inbox = bytearray()
        broker.pending = bytearray()
        broker.closed_by_broker = False
        self.open_ = True

    def ready(self):
        return True

    def send(self, mv):
        broker = self.broker
        if not broker.take:
            return 0
        count = len(mv) if not broker.chunk else min(len(mv), broker.chunk)
        broker.pending += bytes(mv[:count])
        broker._parse()
        return count

    def recv(self, mv):
        broker = self.broker
        if broker.closed_by_broker and not broker.inbox:
            return 0
        if not broker.inbox:
            return None
        count = min(len(mv), len(broker.inbox))
        mv[:count] = broker.inbox[:count]
        broker.inbox = broker.inbox[count:]
        return count

    def close(self):
        self.open_ = False


def config(**changes):
    cfg = {"enabled": True, "host": "192.0.2.10", "port": 1883, "user": "owner", "password": SECRET,
           "client_id": "", "topic_prefix": "cg", "discovery_prefix": "homeassistant", "keepalive_s": KEEPALIVE_S}
    cfg.update(changes)
    return cfg


def make(broker=None, **kwargs):
    clock = Clock()
    broker = broker or FakeBroker()
    lines = []

    def transport():
        conn = broker.make()
        conn.clock = clock
        return conn

    cfg = config(**kwargs.pop("cfg", {}))
    link = mqtt.MqttLink(clock, cfg, lines.append, "garage", transport=transport, **kwargs)
    return link, clock, broker, lines


def drive(link, clock, until, limit_ms, before=None):
    """Run the link until until() holds or limit_ms of virtual time pass; True if it held."""

    async def scenario():
        task = asyncio.create_task(link.run())
        try:
            start = clock.now
            if before:
                before()
            while clock.now - start < limit_ms:
                if until():
                    return True
                await asyncio.sleep(0)
            return until()
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    return asyncio.run(scenario())


def publish_packet(topic, payload, first=0x30):
    body = bytes([len(topic) >> 8, len(topic) & 0xFF]) + topic + payload
    size = len(body)
    head = bytearray([first])
    while True:
        byte = size & 0x7F
        size >>= 7
        head.append(byte | (0x80 if size else 0))
        if not size:
            break
    return bytes(head) + body


def test_connect_carries_will_login_keepalive_then_online_retained_and_on_connect():
    link, clock, broker, lines = make()
    calls = []
    link.on_connect = lambda: calls.append(clock.now)
    assert drive(link, clock, lambda: broker.publishes() and link.connected, 1000)
    first, body = broker.of_kind(0x10)[0]
    # Variable header: "MQTT", level 4, flags, keepalive.
    assert body[:7] == b"\x00\x04MQTT\x04"
    flags = body[7]
    assert flags & 0x80 and flags & 0x40  # user name and password
    assert flags & 0x04 and flags & 0x20  # will, retained
    assert flags & 0x02  # clean session
    assert body[8] << 8 | body[9] == KEEPALIVE_S
    assert b"chargeguard-garage" in body and b"cg/status" in body and b"offline" in body
    assert b"owner" in body and SECRET.encode() in body
    assert link.client_id == "chargeguard-garage"
    assert not link.connected  # the task was cancelled: the socket is closed
    assert broker.publishes()[0] == ("cg/status", b"online", True)
    assert len(calls) == 1
    assert any("connected to 192.0.2.10:1883 as chargeguard-garage" in line for line in lines)
    for line in lines:
        assert SECRET not in line


def test_client_id_from_config_and_no_login_without_user():
    link, clock, broker, lines = make(cfg={"client_id": "cg-1", "user": "", "password": ""})
    assert drive(link, clock, lambda: link.connected, 1000)
    body = broker.of_kind(0x10)[0][1]
    assert not body[7] & 0xC0 and b"cg-1" in body


def test_refused_connack_is_logged_and_retried_with_backoff_doubling_to_60_s():
    link, clock, broker, lines = make()
    broker.auto_connack = 5
    assert drive(link, clock, lambda: len(broker.opens) >= 10, 400000)
    gaps = [b - a for a, b in zip(broker.opens, broker.opens[1:])]
    # Each gap: the backoff plus the polls of one refused attempt (< 1 s).
    expected = [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
    for gap, delay in zip(gaps, expected):
        assert delay <= gap < delay + 1000, (gaps, expected)
    assert not link.connected
    assert any("refused by the broker: not authorised" in line for line in lines)


def test_unreachable_broker_and_a_silent_one_are_given_up_at_the_connect_deadline():
    link, clock, broker, lines = make()
    broker.refuse = True
    assert drive(link, clock, lambda: len(broker.opens) >= 2, 10000)
    assert any("connection refused" in line for line in lines)
    link, clock, broker, lines = make()
    broker.auto_connack = None  # accepts TCP, never answers
    assert drive(link, clock, lambda: len(broker.opens) >= 2, 30000)
    assert mqtt.CONNECT_TIMEOUT_MS <= broker.opens[1] - broker.opens[0] < mqtt.CONNECT_TIMEOUT_MS + 1000 + 200
    assert any("no CONNACK within 10 s" in line for line in lines)


def test_keepalive_pings_and_a_silent_broker_is_dropped_within_the_keepalive():
    link, clock, broker, lines = make()
    # An answering broker: pings every K/2 of silence, the link stays up.
    assert drive(link, clock, lambda: clock.now >= 5 * KEEPALIVE_S * 1000, 10 * KEEPALIVE_S * 1000)
    pings = len(broker.of_kind(0xC0))
    assert 8 <= pings <= 11, pings
    assert len(broker.opens) == 1
    # Stops answering mid-session: dropped within K of its last packet, then reconnected.
    link, clock, broker, lines = make()
    state = {}

    def silent_then_check():
        if link.connected and "t" not in state:
            state["t"] = clock.now
            broker.answer_pings = False
        return len(broker.opens) >= 2

    assert drive(link, clock, silent_then_check, 10 * KEEPALIVE_S * 1000)
    lost = [line for line in lines if "connection lost" in line]
    assert lost and "no answer to PINGREQ" in lost[0], lines
    assert broker.opens[1] - state["t"] <= KEEPALIVE_S * 1000 + 1000 + 200


def test_a_broker_that_takes_no_data_is_dropped():
    link, clock, broker, lines = make()

    def stop_taking():
        if link.connected:
            broker.take = False
            link.publish("cg/x", b"1")
        return len(broker.opens) >= 2

    assert drive(link, clock, stop_taking, 10 * KEEPALIVE_S * 1000)
    assert any("takes no data" in line or "PINGREQ" in line for line in lines), lines


def test_backoff_resets_after_a_stable_connection_only():
    link, clock, broker, lines = make()
    assert drive(link, clock, lambda: link.connected, 1000)
    # Refused four times (1, 2, 4, 8 s), then a connection that lasts past
    # STABLE_MS and drops: the next try comes after 1 s again.
    link, clock, broker, lines = make()
    broker.auto_connack = 5
    marks = {}

    def scenario():
        if len(broker.opens) == 4 and "ok" not in marks:
            marks["ok"] = True
            broker.auto_connack = 0
        if link.connected and "up" not in marks:
            marks["up"] = clock.now
        if "up" in marks and clock.now - marks["up"] >= mqtt.STABLE_MS and "drop" not in marks:
            marks["drop"] = clock.now
            broker.closed_by_broker = True
        return "drop" in marks and len(broker.opens) >= 6

    assert drive(link, clock, scenario, 200000)
    # Before it, the fourth refusal had doubled the backoff to 8 s.
    assert broker.opens[4] - broker.opens[3] >= 8000
    assert broker.opens[5] - marks["drop"] <= 1000 + 200
    assert any("closed by the broker" in line for line in lines)


def test_incoming_messages_reach_on_message_and_oversized_ones_are_skipped_in_pieces():
    link, clock, broker, lines = make(max_incoming=64)
    got = []
    link.on_message = lambda topic, payload: got.append((topic, payload))
    link.subscribe("cg/+/set")
    big = publish_packet(b"cg/a/set", b"x" * 300)
    small = publish_packet(b"cg/b/set", b"42")

    def scenario():
        if link.connected and not broker.inbox and "fed" not in got:
            got.append("fed")
            # Three small ones, the big one split by the socket, one more right behind it.
            broker.feed(publish_packet(b"cg/c/set", b"on") + big + small)
        return len(got) >= 3

    assert drive(link, clock, scenario, 5000)
    assert got[1:] == [("cg/c/set", b"on"), ("cg/b/set", b"42")]
    assert link.skipped == 1
    assert any("skipped an incoming packet of %d bytes" % len(big) in line for line in lines)
    # The subscription went out with the connect.
    body = broker.of_kind(0x80)[0][1]
    assert b"cg/+/set" in body


def test_bad_incoming_packets_are_logged_and_change_nothing():
    link, clock, broker, lines = make()
    got = []

    def boom(topic, payload):
        got.append(payload)
        raise ValueError("bad payload")

    link.on_message = boom
    fed = []

    def scenario():
        if link.connected and not fed:
            fed.append(1)
            broker.feed(publish_packet(b"cg/\xff/set", b"1"))  # topic not UTF-8
            broker.feed(publish_packet(b"cg/q/set", b"\x00\x01" + b"1", first=0x32))  # QoS 1, packet id 1
            broker.feed(publish_packet(b"cg/z/set", b"2"))
        return bool(got)

    assert drive(link, clock, scenario, 5000)
    assert got == [b"2"]
    assert len(broker.opens) == 1
    joined = "\n".join(lines)
    assert "not UTF-8" in joined and "QoS > 0" in joined and "on_message(cg/z/set) failed" in joined


def test_subscriptions_are_sent_again_on_every_connect():
    link, clock, broker, lines = make()
    link.subscribe("homeassistant/status")
    link.subscribe("cg/+/set")
    link.subscribe("cg/+/set")  # once only

    def scenario():
        if link.connected and len(broker.of_kind(0x80)) == 2 and len(broker.opens) == 1:
            broker.closed_by_broker = True
        return len(broker.of_kind(0x80)) >= 4

    assert drive(link, clock, scenario, 10000)
    topics = [body[4:] for first, body in broker.of_kind(0x80)]
    assert topics == [b"homeassistant/status\x00", b"cg/+/set\x00"] * 2


def test_queue_coalesces_per_topic_and_drops_the_oldest_when_full():
    link, clock, broker, lines = make(queue=4)
    assert link.room() == 4
    assert link.publish("cg/a", b"1") and link.publish("cg/b", b"1") and link.publish("cg/a", b"2", True)
    assert link.room() == 2  # the newer payload for cg/a replaced the queued one
    for name in ("c", "d", "e", "f"):
        assert link.publish("cg/" + name, b"1")
    assert link.room() == 0 and link.dropped == 2  # cg/a and cg/b went
    assert drive(link, clock, lambda: len(broker.publishes()) >= 5, 2000)
    assert broker.publishes() == [("cg/status", b"online", True), ("cg/c", b"1", False), ("cg/d", b"1", False),
                                  ("cg/e", b"1", False), ("cg/f", b"1", False)]
    link, clock, broker, lines = make(queue=4)
    assert link.publish("cg/a", b"1") and link.publish("cg/a", "2", True)
    assert drive(link, clock, lambda: len(broker.publishes()) >= 2, 2000)
    assert broker.publishes()[1] == ("cg/a", b"2", True)


def test_a_packet_larger_than_the_buffer_is_refused_and_partial_sends_complete():
    link, clock, broker, lines = make(max_packet=128)
    assert not link.publish("cg/big", b"x" * 200)
    assert link.room() == 16
    assert any("do not fit the 128-byte packet buffer" in line for line in lines)
    broker.chunk = 3  # the socket takes three bytes at a time
    payload = b"y" * 100
    assert link.publish("cg/fits", payload, True)
    assert drive(link, clock, lambda: len(broker.publishes()) >= 2, 5000)
    assert broker.publishes()[1] == ("cg/fits", payload, True)


def test_the_packet_buffer_is_lent_only_while_the_link_is_idle():
    # MqttLink.lend: net/hass.py writes its JSON documents in it and sends them from there.
    link, clock, broker, lines = make()
    assert link.lend() is None  # not connected
    steps = []

    def until():
        if not steps and link.connected and ("cg/status", b"online", True) in broker.publishes() \
                and link.lend() is not None:
            broker.take = False  # the socket takes nothing: the next packet stays in the buffer
            link.publish("cg/x", b"1")
            assert link.lend() is None  # queued, not yet in the buffer
            steps.append("queued")
        elif steps == ["queued"] and link.room() == 16:
            assert link.lend() is None  # in the buffer, not sent
            broker.take = True
            steps.append("busy")
        elif steps == ["queued", "busy"] and ("cg/x", b"1", False) in broker.publishes():
            return link.lend() is not None
        return False

    assert drive(link, clock, until, 5000)
    assert steps == ["queued", "busy"]
    assert link.lend() is None  # drive() cancelled the task: disconnected


def test_a_payload_written_in_place_goes_out_as_the_packet_publish_sends():
    # One- and two-byte remaining lengths, the second sent three bytes at a time.
    link, clock, broker, lines = make()
    payloads = [b'{"a":1}', bytes(range(32, 127)) * 3]
    steps = []

    def until():
        kinds = broker.of_kind(0x30)
        if not link.connected or link.lend() is None:
            return False
        if len(steps) == 2 * len(payloads):
            return True
        payload = payloads[len(steps) // 2]
        if len(steps) % 2 == 0:
            if len(steps) == 2:
                broker.chunk = 3
            link.publish("cg/doc", payload, True)  # the queued way, for comparison
        else:
            topic = b"cg/doc"
            buf = link.lend()
            at = link.payload_at(topic)
            assert at == 5 + len(topic)
            buf[at : at + len(payload)] = payload
            assert link.send_in_place(topic, at, at + len(payload), True)
            assert link.lend() is None  # it is the packet going out
        steps.append(len(kinds))
        return False

    assert drive(link, clock, until, 5000)
    sent = broker.of_kind(0x30)
    assert broker.publishes()[-4:] == [("cg/doc", payloads[0], True)] * 2 + [("cg/doc", payloads[1], True)] * 2
    # Byte for byte the packet umqtt.simple's publish() makes, header included.
    assert sent[-4] == sent[-3] and sent[-2] == sent[-1]
    assert len(payloads[1]) > 127  # (a two-byte remaining length)


def test_send_in_place_refuses_a_buffer_it_did_not_lend_or_a_wrong_start():
    link, clock, broker, lines = make()
    results = []

    def until():
        if not link.connected or link.lend() is None:
            return False
        buf = link.lend()
        topic = b"cg/doc"
        at = link.payload_at(topic)
        buf[at : at + 2] = b"{}"
        results.append(link.send_in_place(topic, at - 1, at + 2))  # not where the header ends
        results.append(link.send_in_place(topic, at, len(buf) + 1))  # past the buffer
        link.publish("cg/q", b"1")
        results.append(link.send_in_place(topic, at, at + 2))  # a packet is queued: not lent
        return True

    assert drive(link, clock, until, 5000)
    assert results == [False, False, False]
    assert sum(1 for line in lines if "cg/doc: the packet buffer was not lent for it: not sent" in line) == 3
    assert ("cg/doc", b"{}", False) not in broker.publishes()


def test_nothing_is_sent_while_disconnected_and_the_queue_is_kept():
    link, clock, broker, lines = make()
    broker.refuse = True
    link.publish("cg/a", b"1")
    assert drive(link, clock, lambda: len(broker.opens) >= 2, 5000)
    assert link.room() == 15 and not broker.packets


def build_with(mqtt_doc):
    import support
    import test_app

    storage = support.make_tmpdir("mqtt-app")
    with open(storage + "/config.json", "w") as handle:
        handle.write('{"version": 1, "chargers": [], "wifi": {"hostname": "garage"}, "mqtt": %s}' % mqtt_doc)

    class Board(test_app.FakePlatform):
        name = "unix"

        def open_uart(self, *args):
            raise OSError(19, "no P1 device")

    lines = []
    return test_app.app_module.build(Board(storage), log=lines.append), lines


def test_the_app_starts_the_link_only_when_mqtt_is_enabled():
    import sys

    saved = sys.modules.pop("chargeguard.net.mqtt", None)
    try:
        app, lines = build_with('{"enabled": false, "host": "192.0.2.10"}')
        assert app.interfaces == []
        # Not even imported: a site without MQTT keeps its heap.
        assert "chargeguard.net.mqtt" not in sys.modules
        app, lines = build_with('{"enabled": true, "host": "192.0.2.10", "password": "%s"}' % SECRET)
        assert [name for name, _ in app.interfaces] == ["mqtt"]
        link = app.interfaces[0][1]
        assert link.client_id == "chargeguard-garage" and link.status_topic == "chargeguard/status"
        assert link.host == "192.0.2.10" and link.port == 1883 and link.keepalive_ms == 30000
        for line in lines:
            assert SECRET not in line
    finally:
        if saved is not None:
            sys.modules["chargeguard.net.mqtt"] = saved


def test_fuzzed_incoming_bytes_never_end_the_link():
    # Random packets (a valid fixed header around random bytes, and raw
    # noise): each is skipped, logged or ends the connection, never the task.
    link, clock, broker, lines = make(max_incoming=64)
    got = []
    link.on_message = lambda topic, payload: got.append(payload)
    seed = [12345]

    def rand(n):
        seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return seed[0] % n

    fed = [0]

    def scenario():
        if link.connected and not broker.inbox:
            fed[0] += 1
            size = rand(80)
            body = bytes(rand(256) for _ in range(size))
            if not rand(20):
                broker.feed(b"\x30\xff\xff\xff\xff\x01")  # a length of more than 4 bytes
            elif rand(4):
                kind = (0x30, 0x32, 0x34, 0x20, 0x90, 0xD0, 0xB0, 0x00, 0xF0)[rand(9)]
                broker.feed(bytes([kind | rand(2), size]) + body)
            else:
                broker.feed(body)
        return fed[0] >= 300

    async def watch():
        task = asyncio.create_task(link.run())
        start = clock.now
        while clock.now - start < 3600000 and not scenario():
            await asyncio.sleep(0)
        alive = not task.done()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return alive

    assert asyncio.run(watch())
    assert fed[0] >= 300
    # Noise that cannot be framed any more (a malformed length, or a length
    # that swallows the answers to the pings) ends the connection, and the
    # link comes back.
    assert len(broker.opens) >= 2 and any("connection lost" in line for line in lines)


def test_an_idle_link_allocates_nothing_per_poll():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    link, clock, broker, lines = make()
    conn = broker.make()
    conn.clock = clock
    conn.open("192.0.2.10", 1883)
    link._encode_connect()
    now = 0
    # Connect, "online" out, then warm.
    for _ in range(10):
        link._poll(conn, now, 0)
        now += mqtt.POLL_MS
    assert link.connected and broker.publishes()
    polls = (KEEPALIVE_S * 1000 // 2) // mqtt.POLL_MS - 20  # well before the next PINGREQ
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(polls):
            link._poll(conn, now, 0)
            now += mqtt.POLL_MS
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before
    assert not broker.of_kind(0xC0)  # no ping yet: the polls were idle ones


def test_the_app_runs_each_interface_as_a_supervised_task():
    import test_app

    app, platform, meter, lines = test_app.make_app([test_app.FakeCharger()])
    runs = []

    class Interface:
        async def run(self):
            runs.append(1)
            if len(runs) == 1:
                raise OSError(113)  # its first run fails: logged and restarted, the guard goes on
            await asyncio.sleep(3600)

    app.interfaces = [("mqtt", Interface())]

    async def scenario():
        start = platform.ticks_ms()
        limit = 10 * test_app.app_module.TASK_RESTART_MS
        while len(runs) < 2 and platform.ticks_diff(platform.ticks_ms(), start) < limit:
            await asyncio.sleep(0.01)

    decisions = app.decisions
    asyncio.run(test_app.run_for(app, 10, scenario))
    assert len(runs) == 2 and app.decisions > decisions
    assert any(line.startswith("task mqtt failed") for line in lines), lines
