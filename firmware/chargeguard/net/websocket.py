"""The server side of WebSocket (RFC 6455): what OCPP-J charge points need, and no more.

Why not microdot's websocket extension: it needs a Microdot application (the
whole HTTP server, routing, request objects) on the OCPP port, reads each
message into new bytes, has no server pings and no way to answer the upgrade
with the subprotocol a charge point asked for. This module is the handshake
and the framing on asyncio streams; its heap is measured in docs/ocpp.md.

Handshake (`receive_head`, `read_head`, `parse_head`, `upgrade_response`): the
request head (at most the caller's limit: more is refused with 431) is read
into the server's message buffer when it came whole with its first byte and
no connection holds that buffer (it is never held across a wait), else into
a buffer of its own (no 1 KB block per connection at start-up, when the boxes
connect and the heap may have no such hole left); the
request line must be `GET <path> HTTP/1.1`, `Upgrade: websocket`,
`Sec-WebSocket-Key` and version 13 are required (else 400 / 426). What a
charge point sends beyond that varies: `Sec-WebSocket-Protocol` may be
missing (then none is answered), list several, or be in any case.

Frames (`WebSocket`): text and binary messages up to the buffer's size
(fragmented ones too, the parts together), larger ones closed with 1009
("message too big"); pings answered with a pong of the same payload; a close
answered and the connection ended. Client frames must be masked (RFC 6455
5.1); an unmasked one is taken as it is (real charge points differ more than
the RFC allows; the payload is no less valid). Nothing is allocated per
frame: the payload is unmasked in place in the message buffer. A frame is
sent as the caller's parts (`send(opcode, *parts)`), never joined into one
block; on MicroPython a str part is written through a view of its bytes.

The message buffer (`MessageBuffer`) is shared by every connection of a
server: one message is read into it at a time. A connection takes it when a
frame's first byte has come and keeps it until that message is read (and
the caller has done with it: `release()`); another connection's frame waits
for it (every 5 ms). Every read the holder does then has a deadline
(`_FRAME_MS`), also the first byte of the next part of a fragmented message,
so one stalling peer holds it up at most that long per frame.

Every read of a started frame and every write has a deadline (`_FRAME_MS`,
`WRITE_MS`): a peer that stalls mid-frame or stops reading is dropped, and
its own task is the only one that waited. Silence between frames is no
error: the caller decides (OCPP: never drop a charge point for silence alone).
"""

import asyncio
import binascii
import hashlib
import time

from micropython import const

from chargeguard.core.ticks import ticks_diff
from chargeguard.platform.common import IS_MICROPYTHON

OP_CONTINUATION = const(0)
OP_TEXT = const(1)
OP_BINARY = const(2)
OP_CLOSE = const(8)
OP_PING = const(9)
OP_PONG = const(10)

_CLOSE_NORMAL = const(1000)
CLOSE_GOING_AWAY = const(1001)
_CLOSE_PROTOCOL_ERROR = const(1002)
CLOSE_UNSUPPORTED = const(1003)
CLOSE_TOO_BIG = const(1009)

HEAD_MS = const(5000)  # the whole request head, from the connection on
_FRAME_MS = const(10000)  # the rest of a frame once its first byte came
WRITE_MS = const(5000)  # one frame handed to a peer that reads

_LINGER_MS = const(500)  # after our close frame, what the peer still sends is read and dropped this long

_GUID = const(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")


def _now_ms():
    ticks = getattr(time, "ticks_ms", None)
    return ticks() if ticks else int(time.monotonic() * 1000)


def wait_ms(awaitable, timeout_ms):
    """asyncio.wait_for with a deadline in ms on MicroPython and CPython; raises asyncio.TimeoutError."""
    if hasattr(asyncio, "wait_for_ms"):
        return asyncio.wait_for_ms(awaitable, timeout_ms)
    return asyncio.wait_for(awaitable, timeout_ms / 1000)


class HandshakeError(Exception):
    """A refused upgrade: args[0] the HTTP status (int), args[1] its reason text."""


async def read_head(reader, buf, size=0):
    """Read an HTTP request head into `buf` (a bytearray; its first `size` bytes came already); returns its
    length, up to and with the blank line.

    Raises HandshakeError(431) when the head does not fit, (400) when the
    peer closes first; the caller puts the HEAD_MS deadline around it.
    """
    view = memoryview(buf)
    # MicroPython's streams read into the buffer: no chunk of up to its size
    # as well (a second 1 KB block while a box connects); CPython's copy.
    readinto = getattr(reader, "readinto", None)
    while True:
        if size >= len(buf):
            raise HandshakeError(431, "Request Header Fields Too Large")
        if readinto is not None:
            count = await readinto(view[size:])
        else:
            chunk = await reader.read(len(buf) - size)
            count = len(chunk)
            view[size : size + count] = chunk
        if not count:
            raise HandshakeError(400, "Bad Request")
        start = size - 3 if size > 3 else 0
        size += count
        end = buf.find(b"\r\n\r\n", start, size)
        if end >= 0:
            return end + 4


async def receive_head(reader, shared, limit):
    """The request head (bytes, up to and with the blank line) of at most `limit` bytes, as read_head.

    A head that has come whole with its first byte (a charge point sends it
    in one piece) is read into the shared MessageBuffer when no connection
    holds it, without a wait in between, so it is never held: no block of
    `limit` bytes is allocated for it (at start-up, when the boxes connect,
    the heap may have no such hole left). Any other head is read into a
    buffer of its own, as before. The caller puts HEAD_MS around it.
    """
    first = bytearray(1)
    reader_into = getattr(reader, "readinto", None)
    if reader_into is not None:
        count = await reader_into(first)
    else:
        chunk = await reader.read(1)
        count = len(chunk)
        first[:count] = chunk
    if not count:
        raise HandshakeError(400, "Bad Request")
    # MicroPython's stream reads its socket straight (no buffer of its own):
    # what came already is read from the socket without waiting (None: nothing).
    sock = getattr(reader, "s", None)
    buf = shared.buf
    size = 1
    if sock is not None and shared.holder is None and len(buf) >= limit:
        buf[0] = first[0]
        size += sock.readinto(memoryview(buf)[1:limit]) or 0
        end = buf.find(b"\r\n\r\n", 0, size)
        if end >= 0:
            return bytes(memoryview(buf)[: end + 4])
        if size >= limit:
            raise HandshakeError(431, "Request Header Fields Too Large")
        own = bytearray(limit)
        own[:size] = memoryview(buf)[:size]
    else:
        own = bytearray(limit)
        own[0] = first[0]
    first = None
    size = await read_head(reader, own, size)
    return bytes(memoryview(own)[:size])  # one copy (a slice of the bytearray would be a second)


def _header(head, lower, name):
    # The value of header `name` (lower case bytes, with the colon) in the
    # head (bytes; `lower` the same in lower case: one copy for every
    # header), stripped, or None. Names are compared without case.
    pos = lower.find(b"\r\n" + name)
    if pos < 0:
        return None
    pos += 2 + len(name)
    end = head.find(b"\r\n", pos)
    return head[pos:end].strip()


def parse_head(head):
    """(path, key, protocols, authorization) of a WebSocket upgrade request head (bytes).

    path: the request target as sent (bytes); key: Sec-WebSocket-Key (bytes);
    protocols: the Sec-WebSocket-Protocol list, lower case (bytes, b"" when
    absent); authorization: the Authorization value (bytes) or None. Raises
    HandshakeError(400 / 405 / 426) for what is no WebSocket upgrade.
    """
    line_end = head.find(b"\r\n")
    parts = head[:line_end].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise HandshakeError(400, "Bad Request")
    if parts[0] != b"GET":
        raise HandshakeError(405, "Method Not Allowed")
    lower = head.lower()
    upgrade = _header(head, lower, b"upgrade:")
    key = _header(head, lower, b"sec-websocket-key:")
    if upgrade is None or upgrade.lower() != b"websocket" or not key:
        raise HandshakeError(400, "Bad Request")
    if _header(head, lower, b"sec-websocket-version:") != b"13":
        raise HandshakeError(426, "Upgrade Required")
    protocols = _header(head, lower, b"sec-websocket-protocol:") or b""
    return parts[1], key, protocols.lower(), _header(head, lower, b"authorization:")


def sha1(data):
    """SHA-1 digest (20 bytes) of `data` (bytes): hashlib's where the firmware has it (the ESP32 port
    does), else computed here by FIPS 180-4 section 6.1 (once per handshake, so speed does not matter)."""
    if hasattr(hashlib, "sha1"):
        return hashlib.sha1(data).digest()
    mask = 0xFFFFFFFF
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    size = len(data)
    data = bytes(data) + b"\x80" + bytes((55 - size) % 64) + (size * 8).to_bytes(8, "big")
    w = [0] * 80
    for block in range(0, len(data), 64):
        for t in range(16):
            w[t] = int.from_bytes(data[block + 4 * t : block + 4 * t + 4], "big")
        for t in range(16, 80):
            x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
            w[t] = ((x << 1) | (x >> 31)) & mask
        a, b, c, d, e = h
        for t in range(80):
            if t < 20:
                f = (b & c) | (~b & d)
                k = 0x5A827999
            elif t < 40:
                f = b ^ c ^ d
                k = 0x6ED9EBA1
            elif t < 60:
                f = (b & c) | (b & d) | (c & d)
                k = 0x8F1BBCDC
            else:
                f = b ^ c ^ d
                k = 0xCA62C1D6
            temp = (((a << 5) | (a >> 27)) + f + e + k + w[t]) & mask
            e = d
            d = c
            c = ((b << 30) | (b >> 2)) & mask
            b = a
            a = temp
        h = [(x + y) & mask for x, y in zip(h, (a, b, c, d, e))]
    return b"".join(x.to_bytes(4, "big") for x in h)


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (bytes): base64(SHA-1(key + GUID)), bytes."""
    return binascii.b2a_base64(sha1(key + _GUID)).strip()


def upgrade_response(key, protocol):
    """The 101 answer (bytes); `protocol` (bytes) is the subprotocol chosen, or None for none."""
    text = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
    text += accept_key(key) + b"\r\n"
    if protocol:
        text += b"Sec-WebSocket-Protocol: " + protocol + b"\r\n"
    return text + b"\r\n"


def refusal(status, reason, extra=b""):
    """An HTTP error answer to a refused upgrade (bytes); `extra` more header lines, each ending in CRLF."""
    return b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n%s\r\n" % (status, reason.encode(), extra)


def frame_header(opcode, length, out):
    """Write an unmasked final frame's header into `out` (bytearray >= 10); returns its length."""
    out[0] = 0x80 | opcode
    if length < 126:
        out[1] = length
        return 2
    if length < 65536:
        out[1] = 126
        out[2] = length >> 8
        out[3] = length & 255
        return 4
    out[1] = 127
    for index in range(8):
        out[9 - index] = (length >> (8 * index)) & 255
    return 10


class ConnectionClosed(Exception):
    """The connection ended: args[0] the close code sent or received (int), args[1] why (str)."""


async def _read_exactly(reader, view):
    # Fill the memoryview from the stream (MicroPython streams read into
    # it; CPython's have no readinto, so a copy there).
    size = len(view)
    got = 0
    readinto = getattr(reader, "readinto", None)
    while got < size:
        if readinto is not None:
            count = await readinto(view[got:])
        else:
            chunk = await reader.read(size - got)
            count = len(chunk)
            view[got : got + count] = chunk
        if not count:
            raise ConnectionClosed(CLOSE_GOING_AWAY, "closed by the peer")
        got += count


class MessageBuffer:
    """The message buffer of `size` bytes that a server's connections take turns with (see the module doc)."""

    def __init__(self, size):
        self.buf = bytearray(size)
        self.holder = None  # the WebSocket whose message it holds, or None


class WebSocket:
    """One accepted WebSocket connection on asyncio streams.

    shared: the server's MessageBuffer; a message larger than its buf is
    refused with close 1009. `receive()` gives the next text or binary
    message as (opcode, length) with the payload in buf[:length], and the
    buffer held until `release()` (the caller's, once done with the payload);
    `send(opcode, payload)` writes one frame, serialised with the pongs and
    pings of the same connection. Raises ConnectionClosed when the
    connection ends; never raises anything else from the network.
    """

    def __init__(self, reader, writer, shared):
        self.reader = reader
        self.writer = writer
        self.shared = shared
        self.buf = shared.buf
        self.closed = False
        self.pongs = 0  # pongs received (a peer that answers pings)
        self._head = bytearray(14)  # a frame header, read or written
        self._writing = False


    def release(self):
        """Give the shared buffer back (the payload of the last receive() is gone then); no-op when not held."""
        if self.shared.holder is self:
            self.shared.holder = None

    async def _take(self):
        shared = self.shared
        while shared.holder is not None and shared.holder is not self:
            await asyncio.sleep(0.005)
        shared.holder = self

    async def receive(self):
        """The next data message: (opcode, length); payload in buf[:length], the buffer held until release().

        Raises ConnectionClosed (the buffer released)."""
        size = 0
        opcode = 0
        head = self._head
        view = memoryview(head)
        done = False  # a message returned: its caller releases the buffer
        try:
            while True:
                # The first byte may take forever (a quiet charge point); the
                # rest of the frame has _FRAME_MS, and so has the next part of a
                # fragmented message (its first part holds the shared buffer).
                if opcode:
                    try:
                        await wait_ms(_read_exactly(self.reader, view[:1]), _FRAME_MS)
                    except asyncio.TimeoutError:
                        await self.close(_CLOSE_PROTOCOL_ERROR, "frame stalled")
                else:
                    await _read_exactly(self.reader, view[:1])
                await self._take()
                try:
                    await wait_ms(self._frame(view), _FRAME_MS)
                except asyncio.TimeoutError:
                    await self.close(_CLOSE_PROTOCOL_ERROR, "frame stalled")
                fin = head[0] & 0x80
                code = head[0] & 15
                length = self._length
                if code >= OP_CLOSE:
                    # Control frames: at most 125 bytes, never fragmented; read
                    # into the header's own room when it fits.
                    if length > 125 or not fin:
                        await self.close(_CLOSE_PROTOCOL_ERROR, "bad control frame")
                    payload = memoryview(self.buf)[size : size + length] if size + length <= len(self.buf) else None
                    if payload is None:
                        await self.close(CLOSE_TOO_BIG, "message too big")
                    await self._payload(payload)
                    if code == OP_PING:
                        await self.send(OP_PONG, payload)
                    elif code == OP_PONG:
                        self.pongs += 1
                    elif code == OP_CLOSE:
                        received = payload[0] << 8 | payload[1] if length >= 2 else _CLOSE_NORMAL
                        await self.close(_CLOSE_NORMAL, "closed by the peer", received)
                    else:
                        await self.close(_CLOSE_PROTOCOL_ERROR, "unknown opcode %d" % code)
                    if not opcode:
                        self.release()  # no message in the buffer
                    continue
                if code == OP_CONTINUATION:
                    if not opcode:
                        await self.close(_CLOSE_PROTOCOL_ERROR, "continuation without a message")
                elif code in (OP_TEXT, OP_BINARY):
                    if opcode:
                        await self.close(_CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
                    opcode = code
                else:
                    await self.close(_CLOSE_PROTOCOL_ERROR, "unknown opcode %d" % code)
                if size + length > len(self.buf):
                    await self.close(CLOSE_TOO_BIG, "message too big")
                await self._payload(memoryview(self.buf)[size : size + length])
                size += length
                if fin:
                    done = True
                    return opcode, size
        finally:
            if not done:
                self.release()

    async def _frame(self, view):
        # The rest of the header after its first byte: length and mask.
        head = self._head
        await _read_exactly(self.reader, view[1:2])
        length = head[1] & 127
        at = 2
        if length == 126:
            await _read_exactly(self.reader, view[2:4])
            length = head[2] << 8 | head[3]
            at = 4
        elif length == 127:
            await _read_exactly(self.reader, view[2:10])
            length = 0
            for index in range(2, 10):
                length = length << 8 | head[index]
                if length > 0xFFFFFF:
                    length = 0xFFFFFF  # far beyond any buffer: refused as too big
            at = 10
        self._length = length
        self._masked = head[1] & 128
        if self._masked:
            await _read_exactly(self.reader, view[at : at + 4])
            self._mask_at = at

    async def _payload(self, payload):
        try:
            await wait_ms(_read_exactly(self.reader, payload), _FRAME_MS)
        except asyncio.TimeoutError:
            await self.close(_CLOSE_PROTOCOL_ERROR, "frame stalled")
        if self._masked:
            head = self._head
            at = self._mask_at
            for index in range(len(payload)):
                payload[index] ^= head[at + (index & 3)]

    async def send(self, opcode, *parts):
        """Write one final frame whose payload is `parts` one after the other (each str, bytes, bytearray or
        memoryview): an OCPP message is sent as its pieces (the driver's JSON text among them), never
        joined into one block, nor encoded on MicroPython. Raises ConnectionClosed."""
        # A str's UTF-8 bytes: on MicroPython a view of the str itself (no copy), on CPython encoded.
        parts = [(memoryview(part) if IS_MICROPYTHON else part.encode()) if type(part) is str else part for part in parts]
        length = 0
        for part in parts:
            length += len(part)  # in bytes, not characters
        if self.closed:
            raise ConnectionClosed(CLOSE_GOING_AWAY, "closed")
        while self._writing:
            await asyncio.sleep(0.005)
            if self.closed:
                raise ConnectionClosed(CLOSE_GOING_AWAY, "closed")
        self._writing = True
        try:
            head = bytearray(10)
            count = frame_header(opcode, length, head)
            self.writer.write(head[:count])
            for part in parts:
                self.writer.write(part)
            await wait_ms(self.writer.drain(), WRITE_MS)
        except Exception as error:
            self._drop()
            raise ConnectionClosed(CLOSE_GOING_AWAY, "write failed: %s" % type(error).__name__)
        finally:
            self._writing = False

    async def close(self, code, why, received=None):
        """Send a close frame with `code` (best effort), end the connection, raise ConnectionClosed(code, why)."""
        if not self.closed:
            try:
                await self.send(OP_CLOSE, bytes((code >> 8, code & 255)))
                if received is None:
                    await self._linger()
            except ConnectionClosed:
                pass
            self._drop()
        raise ConnectionClosed(code if received is None else received, why)

    async def _linger(self):
        # Read and drop what the peer still sends (the rest of a message
        # too big, its close frame) for up to _LINGER_MS: a socket closed with
        # unread data is reset, and the peer would lose our close frame.
        # Into the header's room: the shared buffer may hold another
        # connection's message (a close from another task).
        reader = self.reader
        view = memoryview(self._head)
        readinto = getattr(reader, "readinto", None)
        left = _LINGER_MS
        while left > 0:
            start = _now_ms()
            try:
                if readinto is not None:
                    count = await wait_ms(readinto(view), left)
                else:
                    count = len(await wait_ms(reader.read(len(view)), left))
            except Exception:  # the deadline, a reset
                return
            if not count:
                return
            left -= ticks_diff(_now_ms(), start)

    def _drop(self):
        self.closed = True
        close_stream(self.writer)


def close_stream(writer):
    """Close an asyncio stream's socket now, on both runtimes (MicroPython's Stream.close() does nothing:
    its socket is closed by wait_closed(), which a caller in a finally or a task being cancelled may never reach)."""
    try:
        writer.close()
        sock = getattr(writer, "s", None)  # MicroPython's Stream
        if sock is not None:
            sock.close()
    except Exception:  # already gone
        pass
