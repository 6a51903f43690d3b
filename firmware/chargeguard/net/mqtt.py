"""An MQTT 3.1.1 link to a broker that never blocks the event loop.

umqtt.simple (micropython-lib, pinned by tools/devlibs.py) is the protocol
codec: its MQTTClient encodes every packet we send (CONNECT with the last
will and login, PUBLISH, SUBSCRIBE, PINGREQ) and parses every PUBLISH we
receive. It never touches the network: its "socket" is a _Codec, an
in-memory object that collects what it writes in a preallocated buffer and
hands it, for reading, a packet this module has already received whole.
(Its own socket code cannot be used as it is: connect() calls getaddrinfo and
a blocking connect and read, subscribe() and publish(qos=1) wait for their
answers, wait_msg() switches the socket back to blocking.)

The socket is ours: non-blocking, polled every POLL_MS by the one task
run() (each poll is a non-blocking send or receive: no call waits), with a
deadline on every wait:

- connect: TCP and the broker's CONNACK within CONNECT_TIMEOUT_MS; host
  names through net/dns.py on the ESP32 (its getaddrinfo blocks), numeric
  addresses as they are (the unix port resolves names itself);
- last will: `<topic_prefix>/status` = "offline", retained, published by the
  broker when the link dies; "online", retained, is the first publish after
  every connect;
- keepalive (cfg keepalive_s = K): a PINGREQ once nothing was received or
  sent for K/2; no PINGRESP K/2 after it, or a send stuck for K/2, and the
  link is dead: dropped and reconnected. A broker that stops answering is
  noticed within K of its last packet;
- reconnect: after 1 s, doubling to 60 s while attempts fail; back to 1 s
  after a connection that stayed up for STABLE_MS (a broker that accepts
  and drops at once is not hammered);
- subscriptions are remembered and sent again on every connect;
- incoming PUBLISH (QoS 0) goes to `on_message(topic, payload)`, topic as
  str, payload as bytes; a packet larger than `max_incoming` bytes is read
  past in pieces (never buffered whole), counted in `skipped` and logged;
- publishing is QoS 0 through a bounded queue of `queue` slots made at
  start: a newer payload for a topic already queued replaces the queued one
  in place; when the queue is full the oldest entry is dropped (counted in
  `dropped`). Nothing is sent while disconnected; the queue is kept.
- `on_connect()` is called after every (re)connect, once the CONNACK came
  (the place to publish discovery again).
- publishing in place: while the link is idle, lend() gives a writer the
  send buffer; it writes a payload from payload_at(topic) and
  send_in_place() makes it the next packet (umqtt encodes the header in
  front of it). No copy of the payload exists (net/hass.py's documents).

Memory: the send buffer (`max_packet`, default 1024 bytes, the largest
packet that can be published), the receive buffer (`max_incoming`, default
256), the queue's slots; per publish the codec makes a few small objects
(its header and length bytes), the payload is the caller's (or written in
the send buffer itself). The password is only written into CONNECT
packets; it is never logged or published.
"""

import sys

import errno
import select
import socket

from micropython import const

from chargeguard.core.ticks import ticks_diff
from umqtt import simple as _umqtt

_MPY = sys.implementation.name == "micropython"

POLL_MS = const(50)  # how often the socket is looked at (incoming commands wait at most this)
CONNECT_TIMEOUT_MS = const(10000)  # TCP connect + CONNACK
BACKOFF_MIN_MS = const(1000)
BACKOFF_MAX_MS = const(60000)
STABLE_MS = const(60000)  # a connection this long resets the backoff
_BURST = const(8)  # packets sent or received per poll at most, then the loop gets a turn
_QUEUE_SLOTS = const(16)
_MAX_PACKET = const(1024)
_MAX_INCOMING = const(256)  # commands and Home Assistant's birth message are far smaller

# MQTT 3.1.1 packet types (high nibble of the first byte) and CONNACK codes.
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_SUBACK = const(0x90)
_PINGRESP = const(0xD0)
_QOS_BITS = const(0x06)
_SUBACK_FAILURE = const(0x80)
_REFUSALS = ("", "unacceptable protocol version", "client identifier rejected", "server unavailable",
             "bad user name or password", "not authorised")


class _Stop(Exception):
    """The codec wanted bytes that are not there, or had no room for what it wrote."""


class _Codec:
    """umqtt.simple's socket: writes go into `out`, reads come from `inbox[pos:end]`.

    While MQTTClient.connect() encodes CONNECT it is also its socket module
    (socket(), getaddrinfo(), connect()): no network call is made. The
    write that starts at `place` (send_in_place's payload, already in `out`
    where the header written before it ends) only moves past it.
    """

    def __init__(self, size):
        self.out = bytearray(size)
        self.mv = memoryview(self.out)
        self.n = 0  # bytes of `out` holding the packet being encoded / sent
        self.full = False  # the last packet did not fit
        self.inbox = None
        self.pos = 0
        self.end = 0
        self.stop = _Stop()
        self.place = -1  # where a payload written in place starts, -1 = none

    def write(self, buf, length=-1):
        if length < 0:
            length = len(buf)
        n = self.n
        if n + length > len(self.out):
            self.full = True
            raise self.stop
        if n == self.place:
            self.place = -1
            self.n = n + length
            return length
        if length == len(buf):
            self.out[n : n + length] = buf
        else:
            for index in range(length):
                self.out[n + index] = buf[index]
        self.n = n + length
        return length

    def read(self, count):
        pos = self.pos
        if self.inbox is None or pos + count > self.end:
            # umqtt waits for an answer here (CONNACK, SUBACK) or the packet is short.
            raise self.stop
        self.pos = pos + count
        return bytes(self.inbox[pos : pos + count])

    def setblocking(self, flag):
        pass

    def close(self):
        pass

    def socket(self):
        return self

    def getaddrinfo(self, host, port):
        return ((0, 0, 0, "", None),)

    def connect(self, address):
        pass


class _Tcp:
    """A non-blocking TCP socket, polled: nothing here waits."""

    def __init__(self):
        self.sock = None
        self._poll = None

    def open(self, host, port):
        """Start connecting to host (numeric, or a name the runtime resolves) and port."""
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        sock = self.sock = socket.socket(ai[0], ai[1], ai[2])
        sock.setblocking(False)
        try:
            sock.connect(ai[-1])
        except OSError as error:
            if error.args[0] not in (errno.EINPROGRESS, errno.EAGAIN):
                raise
        self._poll = select.poll()
        self._poll.register(sock, select.POLLOUT)

    def ready(self):
        """True once connected; raises OSError when the connection failed."""
        poll = self._poll
        if poll is None:
            return True
        for entry in poll.ipoll(0) if _MPY else poll.poll(0):
            if entry[1] & (select.POLLERR | select.POLLHUP):
                raise OSError(errno.ECONNREFUSED)
            if entry[1] & select.POLLOUT:
                self._poll = None
                return True
        return False

    def send(self, mv):
        """Bytes of mv sent now (0 when the socket is full)."""
        try:
            sent = self.sock.write(mv) if _MPY else self.sock.send(mv)
        except OSError as error:
            if error.args[0] == errno.EAGAIN:
                return 0
            raise
        return sent or 0

    def recv(self, mv):
        """Bytes received into mv, None when none are waiting, 0 when the broker closed."""
        try:
            return self.sock.readinto(mv) if _MPY else self.sock.recv_into(mv)
        except OSError as error:
            if error.args[0] == errno.EAGAIN:
                return None
            raise

    def close(self):
        sock = self.sock
        self.sock = self._poll = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _bytes(value):
    return value.encode() if type(value) is str else value


def _header(size, topic):
    # Bytes of a PUBLISH header with `size` bytes of remaining length and a topic of `topic` bytes.
    head = 3 + topic  # the type byte, the topic's length and the topic
    while True:
        head += 1
        size >>= 7
        if not size:
            return head


def _numeric(host):
    for char in host:
        if char != "." and not "0" <= char <= "9":
            return False
    return True


def _why(error):
    # A few words for the log (never the configuration's secrets: none is in an error).
    if isinstance(error, OSError):
        code = error.args[0] if error.args else 0
        if code == errno.ECONNREFUSED:
            return "connection refused"
        if code == errno.ECONNRESET:
            return "connection reset"
        return "errno %s" % code
    if isinstance(error, ValueError) and error.args:
        return error.args[0]
    return repr(error)


class MqttLink:
    """The link to one broker (run() is its task); see the module doc.

    cfg: the validated `mqtt` section of the configuration (host, port, user,
    password, client_id, topic_prefix, keepalive_s); hostname: the device's
    (wifi.hostname), for the default client id "chargeguard-<hostname>".
    transport: a factory of the socket object (tests give a fake).
    status: False for a link that only listens (the MQTT-fed meter): no
    last will and no "online" on `<topic_prefix>/status`, which is the
    device's availability and belongs to the MQTT interface.

    Public state: connected (bool: CONNACK received, not yet dropped),
    dropped / skipped (counts of queue entries dropped, incoming packets
    skipped), status_topic (str), client_id (str); callbacks on_message and
    on_connect (None or callables, set by the owner; an exception in them
    is logged and the link goes on).
    """

    def __init__(self, platform, cfg, log=print, hostname="chargeguard", queue=_QUEUE_SLOTS,
                 max_packet=_MAX_PACKET, max_incoming=_MAX_INCOMING, transport=_Tcp, status=True):
        self.platform = platform
        self.log = log
        self.host = cfg["host"]
        self.port = cfg["port"]
        self.keepalive_ms = cfg["keepalive_s"] * 1000
        self.client_id = cfg["client_id"] or "chargeguard-" + hostname
        self.status_topic = cfg["topic_prefix"] + "/status"
        self.connected = False
        self.on_message = None
        self.on_connect = None
        self.dropped = 0
        self.skipped = 0
        self._transport = transport
        codec = self._codec = _Codec(max_packet)
        user = cfg["user"]
        client = self._client = _umqtt.MQTTClient(
            self.client_id.encode(), self.host, self.port, user.encode() if user else None,
            cfg["password"].encode(), cfg["keepalive_s"])
        self._status = status
        if status:
            client.set_last_will(self.status_topic.encode(), b"offline", True)
        client.set_callback(self._deliver)
        client.sock = codec
        # The queue: parallel slots, a ring of `count` entries from `head`.
        self._q_topic = [None] * queue
        self._q_payload = [None] * queue
        self._q_retain = bytearray(queue)
        self._q_head = 0
        self._q_count = 0
        self._subs = []
        self._subs_sent = 0
        self._online_due = False
        self._rx = bytearray(max_incoming)
        self._rx_mv = memoryview(self._rx)
        self._rx_n = 0
        self._skip = 0  # bytes of an oversized packet still to read past
        self._tx_off = 0  # bytes of codec.out[:codec.n] already sent
        self._rx_ms = self._tx_ms = self._up_ms = 0
        self._ping_ms = -1  # tick of the unanswered PINGREQ, -1 = none

    # -- the owner's API ------------------------------------------------------

    def publish(self, topic, payload, retain=False):
        """Queue a QoS 0 PUBLISH (topic str/bytes, payload str/bytes); True when queued.

        False (and logged) when it can never be sent: larger than the send
        buffer. A payload for a topic already queued replaces that entry; a
        full queue drops its oldest entry (see `dropped`).
        """
        if len(topic) + len(payload) + 7 > len(self._codec.out):
            self.log("mqtt: %s: %d bytes do not fit the %d-byte packet buffer: not sent" % (
                topic, len(payload), len(self._codec.out)))
            return False
        size = len(self._q_topic)
        index = self._q_head
        for _ in range(self._q_count):
            if self._q_topic[index] == topic:
                self._q_payload[index] = payload
                self._q_retain[index] = retain
                return True
            index = (index + 1) % size
        if self._q_count == size:
            self._pop()
            self.dropped += 1
        index = (self._q_head + self._q_count) % size
        self._q_topic[index] = topic
        self._q_payload[index] = payload
        self._q_retain[index] = retain
        self._q_count += 1
        return True

    def lend(self):
        """The packet buffer (a memoryview of max_packet bytes) while the link is idle, else None.

        Idle: connected, no packet in the buffer still being sent, nothing
        queued and nothing of its own due ("online", subscriptions). A
        writer (net/hass.py's JSON documents) fills a payload into it from
        payload_at(topic) and hands it to send_in_place() before it yields
        to the event loop: no copy of the payload is made. Only while the
        queue is empty, so what goes in place never overtakes what was
        queued before it.
        """
        codec = self._codec
        if not self.connected or self._tx_off < codec.n or self._q_count or self._online_due \
                or self._subs_sent < len(self._subs):
            return None
        return codec.mv

    def payload_at(self, topic):
        """Offset in the lent buffer where a payload for topic (bytes) starts: room for the PUBLISH header before it.

        The header: its type byte, the remaining length (1-2 bytes for the
        default 1024-byte buffer), the topic's length (2) and the topic.
        """
        return _header(len(self._codec.out) - 3, len(topic))

    def send_in_place(self, topic, start, end, retain=False):
        """Send the lent buffer's [start:end] as a QoS 0 PUBLISH to topic (bytes); True when it is the next packet out.

        start: payload_at(topic), where the payload was written after lend()
        gave the buffer, with no yield in between. umqtt.simple encodes the
        header (type and flags, remaining length, topic) into the bytes
        before start; the packet is then the one the link sends next (from
        where its header begins), exactly the bytes publish() would send.
        False (and logged) when the buffer was not lent or start is not
        payload_at(topic).
        """
        codec = self._codec
        if self.lend() is None or start != self.payload_at(topic) or not start <= end <= len(codec.out):
            self.log("mqtt: %s: the packet buffer was not lent for it: not sent" % topic.decode())
            return False
        codec.n = self._tx_off = start - _header(2 + len(topic) + end - start, len(topic))
        codec.full = False
        codec.place = start
        try:
            self._client.publish(topic, codec.mv[start:end], retain)
        except _Stop:
            pass
        if codec.n != end:
            codec.n = self._tx_off = 0
            codec.place = -1
            self.log("mqtt: %s does not fit the packet buffer: not sent" % topic.decode())
            return False
        return True

    def room(self):
        """Free queue slots: a publisher that must not lose entries (discovery) waits for room."""
        return len(self._q_topic) - self._q_count

    def subscribe(self, topic):
        """Subscribe (QoS 0) now if connected and again on every connect; topic str (wildcards allowed)."""
        topic = _bytes(topic)
        if topic not in self._subs:
            self._subs.append(topic)

    async def run(self):
        """Connect, keep connected, reconnect with backoff; runs until cancelled."""
        platform = self.platform
        backoff = BACKOFF_MIN_MS
        while True:
            conn = self._transport()
            why = "closed"
            try:
                await self._session(conn)
            except Exception as error:  # CancelledError is a BaseException: it ends the task
                why = _why(error)
            finally:
                conn.close()
                was_up = self.connected
                self.connected = False
            if was_up and ticks_diff(platform.ticks_ms(), self._up_ms) >= STABLE_MS:
                backoff = BACKOFF_MIN_MS
            if was_up:
                self.log("mqtt: connection lost (%s); reconnecting in %d s" % (why, backoff // 1000))
            else:
                self.log("mqtt: cannot connect to %s:%d (%s); next try in %d s" % (
                    self.host, self.port, why, backoff // 1000))
            await platform.sleep_ms(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_MS)

    # -- one connection -------------------------------------------------------

    async def _session(self, conn):
        platform = self.platform
        codec = self._codec
        self._rx_n = self._skip = self._tx_off = codec.n = 0
        self._ping_ms = -1
        self._online_due = False
        self._subs_sent = 0
        host = self.host
        if getattr(platform, "name", "") == "esp32" and not _numeric(host):
            from chargeguard.net import dns

            host = await dns.resolve(platform, host, CONNECT_TIMEOUT_MS)
        started = platform.ticks_ms()
        conn.open(host, self.port)
        while not conn.ready():
            if ticks_diff(platform.ticks_ms(), started) >= CONNECT_TIMEOUT_MS:
                raise ValueError("no TCP connection within %d s" % (CONNECT_TIMEOUT_MS // 1000))
            await platform.sleep_ms(POLL_MS)
        self._encode_connect()
        self._rx_ms = self._tx_ms = platform.ticks_ms()
        while True:
            self._poll(conn, platform.ticks_ms(), started)
            await platform.sleep_ms(POLL_MS)

    def _poll(self, conn, now, started):
        # One look at the socket: what came in, the deadlines, what can go
        # out. Never waits; allocates nothing while the link is idle.
        self._receive(conn, now)
        codec = self._codec
        if not self.connected:
            if ticks_diff(now, started) >= CONNECT_TIMEOUT_MS:
                raise ValueError("no CONNACK within %d s" % (CONNECT_TIMEOUT_MS // 1000))
            self._send(conn, now)
            return
        half = self.keepalive_ms // 2
        pending = self._tx_off < codec.n
        if pending and ticks_diff(now, self._tx_ms) >= half:
            raise ValueError("the broker takes no data for %d s" % (half // 1000))
        if self._ping_ms != -1:
            if ticks_diff(now, self._ping_ms) >= half:
                raise ValueError("no answer to PINGREQ for %d s" % (half // 1000))
        elif not pending and (ticks_diff(now, self._rx_ms) >= half or ticks_diff(now, self._tx_ms) >= half):
            codec.n = self._tx_off = 0
            self._client.ping()
            self._ping_ms = now
        for _ in range(_BURST):
            if not self._send(conn, now) or not self._next_packet():
                break
        self._send(conn, now)

    def _encode_connect(self):
        codec = self._codec
        codec.n = self._tx_off = 0
        codec.full = False
        saved = _umqtt.socket
        _umqtt.socket = codec  # connect() makes its socket from the module: ours
        try:
            self._client.connect()
        except _Stop:
            # It wrote CONNECT and now reads the CONNACK: that comes from the network, later.
            if codec.full:
                raise ValueError("CONNECT does not fit the packet buffer")
        finally:
            _umqtt.socket = saved
            self._client.sock = codec

    def _send(self, conn, now):
        # Sends what is left of the packet in the buffer; True once it is all out.
        codec = self._codec
        while self._tx_off < codec.n:
            sent = conn.send(codec.mv[self._tx_off : codec.n])
            if not sent:
                return False
            self._tx_off += sent
            self._tx_ms = now
        return True

    def _next_packet(self):
        # Encodes the next packet into the (sent) buffer: "online", pending
        # subscriptions, then the oldest queued message. False when none.
        codec = self._codec
        client = self._client
        codec.n = self._tx_off = 0
        codec.full = False
        if self._online_due:
            self._online_due = False
            client.publish(self._client.lw_topic, b"online", True)
            return True
        if self._subs_sent < len(self._subs):
            topic = self._subs[self._subs_sent]
            self._subs_sent += 1
            try:
                client.subscribe(topic)
            except _Stop:
                # Written; it then waits for the SUBACK, which _packet() reads.
                if codec.full:
                    codec.n = 0
                    self.log("mqtt: subscription %s does not fit the packet buffer" % topic)
            return True
        if not self._q_count:
            return False
        topic, payload, retain = self._pop()
        try:
            client.publish(_bytes(topic), _bytes(payload), retain)
        except _Stop:
            codec.n = 0
            self.log("mqtt: %s does not fit the packet buffer: not sent" % topic)
        return True

    def _pop(self):
        head = self._q_head
        entry = (self._q_topic[head], self._q_payload[head], bool(self._q_retain[head]))
        self._q_topic[head] = self._q_payload[head] = None
        self._q_head = (head + 1) % len(self._q_topic)
        self._q_count -= 1
        return entry

    def _receive(self, conn, now):
        mv = self._rx_mv
        for _ in range(_BURST):
            # The whole buffer when it is empty (the usual case): no slice object per poll.
            got = conn.recv(mv[self._rx_n :] if self._rx_n else mv)
            if got is None:
                return
            if not got:
                raise ValueError("closed by the broker")
            self._rx_ms = now
            if self._skip:
                drop = min(self._skip, got)
                self._skip -= drop
                rest = got - drop
                if rest:
                    mv[:rest] = mv[drop:got]
                got = rest
            self._rx_n += got
            self._frame()

    def _frame(self):
        # Hands every whole packet in the receive buffer to _packet(); starts
        # skipping a packet that cannot fit.
        rx = self._rx
        mv = self._rx_mv
        while self._rx_n >= 2:
            length = 0
            shift = 0
            index = 1
            while True:
                if index >= self._rx_n:
                    return
                byte = rx[index]
                index += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if index > 4:
                    raise ValueError("malformed packet length")
            total = index + length
            if total > len(rx):
                self.skipped += 1
                self.log("mqtt: skipped an incoming packet of %d bytes (type %d): larger than %d" % (
                    total, rx[0] >> 4, len(rx)))
                self._skip = total - self._rx_n
                self._rx_n = 0
                return
            if self._rx_n < total:
                return
            self._packet(total)
            rest = self._rx_n - total
            if rest:
                mv[:rest] = mv[total : self._rx_n]
            self._rx_n = rest

    def _packet(self, total):
        rx = self._rx
        kind = rx[0] & 0xF0
        if kind == _PUBLISH:
            if rx[0] & _QOS_BITS:
                # We subscribe with QoS 0; an acknowledgement would be written into the send buffer.
                self.log("mqtt: skipped a PUBLISH with QoS > 0")
                return
            codec = self._codec
            codec.inbox = self._rx_mv
            codec.pos = 0
            codec.end = total
            try:
                self._client.wait_msg()  # parses it and calls _deliver()
            except _Stop:
                self.log("mqtt: skipped a malformed PUBLISH")
            finally:
                codec.inbox = None
        elif kind == _PINGRESP:
            self._ping_ms = -1
        elif kind == _CONNACK and not self.connected:
            code = rx[3] if total >= 4 else 255
            if code:
                raise ValueError("refused by the broker: %s" % (
                    _REFUSALS[code] if code < len(_REFUSALS) else "code %d" % code))
            self.connected = True
            self._up_ms = self.platform.ticks_ms()
            self._online_due = self._status
            self.log("mqtt: connected to %s:%d as %s" % (self.host, self.port, self.client_id))
            callback = self.on_connect
            if callback is not None:
                try:
                    callback()
                except Exception as error:
                    self.log("mqtt: on_connect failed: %r" % (error,))
        elif kind == _SUBACK and rx[total - 1] == _SUBACK_FAILURE:
            self.log("mqtt: the broker refused a subscription")

    def _deliver(self, topic, payload):
        # umqtt's callback: topic and payload as bytes, copies.
        callback = self.on_message
        if callback is None:
            return
        try:
            topic = topic.decode()
        except UnicodeError:
            self.log("mqtt: skipped a message whose topic is not UTF-8")
            return
        try:
            callback(topic, payload)
        except Exception as error:
            self.log("mqtt: on_message(%s) failed: %r" % (topic, error))


def from_config(cfg, platform, log, context, queue=_QUEUE_SLOTS):
    """The interface the app starts for an enabled `mqtt` section: an MqttLink.

    context: what the app gives every interface ({"hostname": wifi.hostname,
    "site_state": ..., "command_api": ...}); the link uses the host name only.
    queue: its queue's slots (net/hass.py sends its documents in place and
    needs few).
    """
    return MqttLink(platform, cfg, log, context.get("hostname", "chargeguard"), queue)
