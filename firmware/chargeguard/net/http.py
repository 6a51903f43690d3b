"""A small asyncio HTTP client for devices on the local network.

One `HttpClient` object owns two preallocated buffers: the response head
(status line + headers, at most `max_head` bytes) and the body (at most
`max_body` bytes). A request never grows memory past them: a larger answer is
refused with a clear error. The body stays in the client's buffer until the
next request on that client (`body()`, `body_is()`, `json()`).

Requests are HTTP/1.0 with `Connection: close`: one TCP connection per request,
so a wedged device never leaves a half-used connection behind. One deadline
(`timeout_ms`) covers connect, sending, the head and the body. The connection
is always closed, also on timeout, error or cancellation.

Bodies are read by `Content-Length`, or to the end of the connection when the
server sends none. `Transfer-Encoding` (chunked) is refused with an error:
HTTP/1.0 requests should never get it, and LAN devices do not send it to them.

`get()` / `post()` return the HTTP status code (any code: deciding what a 404
or 500 means is the driver's job), or 0 when no complete response arrived;
`error` then says why. They never raise, except `CancelledError` when the
caller's task is cancelled.

Host names: give numeric IPv4 addresses. On MicroPython a name is resolved once
(that lookup blocks the event loop) and cached per client; CPython resolves in
its executor.
"""

import sys

import asyncio
import errno
import json
import socket

from micropython import const

MAX_BODY = const(2048)  # default body limit, bytes
MAX_HEAD = const(768)  # status line + headers, bytes
_SCRATCH = const(8)  # probe for bytes past a full body buffer
_MAX_LENGTH_DIGITS = const(9)  # a Content-Length beyond this is absurd

_MPY = sys.implementation.name == "micropython"

ERR_TIMEOUT = "timeout"
ERR_BAD_REQUEST = "bad request path"
ERR_DNS = "cannot resolve host"
ERR_NO_RESPONSE = "connection closed without response"
ERR_TRUNCATED_HEAD = "connection closed in response head"
ERR_BAD_STATUS = "bad status line"
ERR_HEAD_TOO_LARGE = "response head too large"
ERR_BAD_LENGTH = "bad Content-Length"
ERR_ENCODING = "Transfer-Encoding (chunked) not supported"
ERR_BODY_TOO_LARGE = "body too large"
ERR_TRUNCATED_BODY = "connection closed before end of body"


class _Fail(Exception):
    pass


def _wait_ms(coro, ms):
    # The one place where the two runtimes' timeout APIs differ; MicroPython's
    # millisecond variant avoids a float on the device.
    if _MPY:
        return asyncio.wait_for_ms(coro, ms)
    return asyncio.wait_for(coro, ms / 1000)


async def _read_into(reader, mv):
    # MicroPython streams read straight into our buffer; CPython's StreamReader
    # has no readinto, so it reads a bytes object and copies (host only).
    if _MPY:
        while True:
            n = await reader.readinto(mv)
            if n is not None:
                return n
    data = await reader.read(len(mv))
    n = len(data)
    mv[:n] = data
    return n


def _os_error(err):
    code = err.args[0] if err.args else None
    if code == errno.ECONNREFUSED:
        return "connection refused"
    if code == errno.ECONNRESET:
        return "connection reset"
    if code == errno.EHOSTUNREACH:
        return "host unreachable"
    return "socket error %s" % code


def _name_at(buf, start, end, name):
    # Index just past "name:" when the header line buf[start:end] has that
    # (lower-case) name in any case, else -1. Compares in place: no allocation.
    n = len(name)
    if end - start <= n or buf[start + n] != 58:  # ':'
        return -1
    for i in range(n):
        c = buf[start + i]
        if 65 <= c <= 90:
            c += 32
        if c != name[i]:
            return -1
    return start + n + 1


def _skip_blanks(buf, pos, end):
    while pos < end and buf[pos] in (32, 9):
        pos += 1
    return pos


class HttpClient:
    """HTTP client with preallocated, bounded buffers (one request at a time)."""

    def __init__(self, max_body=MAX_BODY, max_head=MAX_HEAD):
        self.max_body = max_body
        self.buf = bytearray(max_body)
        self._mv = memoryview(self.buf)
        self._head = bytearray(max_head)
        self._head_mv = memoryview(self._head)
        self._scratch = memoryview(bytearray(_SCRATCH))
        self.status = 0  # HTTP status of the last response, 0 = none
        self.body_len = 0
        self.error = None  # why the last request failed, or None
        self._busy = False
        self._sock = None  # MicroPython: the raw socket, closed by us
        self._writer = None  # CPython: the stream writer
        self._ai = None  # MicroPython: cached getaddrinfo entry
        self._ai_key = None

    async def get(self, host, port, path, timeout_ms):
        """GET path; returns the status code, or 0 with `error` set."""
        return await self.request("GET", host, port, path, None, timeout_ms)

    async def post(self, host, port, path, body, timeout_ms, content_type="application/json"):
        """POST a body (bytes or str); returns the status code, or 0 with `error` set."""
        return await self.request("POST", host, port, path, body, timeout_ms, content_type)

    async def request(self, method, host, port, path, body, timeout_ms, content_type=None):
        """Send one request and read the answer into the client's buffers.

        Returns the HTTP status code, or 0 when the request failed (`error`
        says why: timeout, connection refused, a malformed or oversize answer).
        One request at a time: a call while another is in flight on this
        client returns 0 at once and changes nothing.
        """
        if self._busy:
            # One request at a time per client: the buffers and `error` belong
            # to the request in flight, so this call touches nothing.
            return 0
        self._busy = True
        self.status = 0
        self.body_len = 0
        self.error = None
        ok = False
        try:
            if timeout_ms <= 0:
                raise asyncio.TimeoutError
            if isinstance(body, str):
                body = body.encode()
            head = self._request_head(method, host, port, path, body, content_type)
            self.status = await _wait_ms(self._exchange(host, port, head, body), timeout_ms)
            ok = True
        except asyncio.TimeoutError:
            self.error = ERR_TIMEOUT
        except _Fail as fail:
            self.error = fail.args[0]
        except OSError as err:
            self.error = _os_error(err)
        except Exception as err:  # never let a surprise escape to the driver
            self.error = "http client: %s" % type(err).__name__
        finally:
            await self._close(ok)
            self._busy = False
        if not ok:
            self.status = 0
            self.body_len = 0
        return self.status

    def body(self):
        """The last response body as a memoryview (valid until the next request)."""
        return self._mv[: self.body_len]

    def body_is(self, expected):
        """True if the body equals `expected` (bytes), ignoring surrounding whitespace."""
        start = 0
        end = self.body_len
        buf = self.buf
        while start < end and buf[start] in (32, 9, 13, 10):
            start += 1
        while end > start and buf[end - 1] in (32, 9, 13, 10):
            end -= 1
        if end - start != len(expected):
            return False
        for i in range(end - start):
            if buf[start + i] != expected[i]:
                return False
        return True

    def json(self):
        """Parse the body as JSON; raises ValueError on invalid JSON."""
        # MicroPython parses a memoryview in place; CPython needs bytes.
        if _MPY:
            return json.loads(self.body())
        return json.loads(bytes(self.body()))

    def _request_head(self, method, host, port, path, body, content_type):
        if not path or path[0] != "/":
            raise _Fail(ERR_BAD_REQUEST)
        raw = path.encode()
        for c in raw:
            # Spaces and control characters would break (or inject into) the request line.
            if c <= 32 or c == 127:
                raise _Fail(ERR_BAD_REQUEST)
        if port != 80:
            host = "%s:%d" % (host, port)
        head = "%s %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n" % (method, path, host)
        if body is not None:
            head += "Content-Type: %s\r\nContent-Length: %d\r\n" % (
                content_type or "application/octet-stream",
                len(body),
            )
        return (head + "\r\n").encode()

    async def _open(self, host, port):
        if not _MPY:
            reader, writer = await asyncio.open_connection(host, port)
            self._writer = writer
            return reader, writer
        # MicroPython's open_connection keeps its socket to itself: cancelled
        # while connecting (a dead host), that socket would never be closed, and
        # the unix port has no finaliser for it. So connect a socket we hold and
        # can always close; the stream's first write waits for the connection.
        if self._ai_key != (host, port):
            try:
                self._ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            except OSError:
                raise _Fail(ERR_DNS)
            self._ai_key = (host, port)
        ai = self._ai
        sock = socket.socket(ai[0], ai[1], ai[2])
        self._sock = sock
        sock.setblocking(False)
        try:
            sock.connect(ai[-1])
        except OSError as err:
            if err.errno != errno.EINPROGRESS:
                raise
        stream = asyncio.StreamReader(sock)
        return stream, stream

    async def _close(self, ok):
        sock = self._sock
        if sock is not None:
            self._sock = None
            try:
                sock.close()
            except OSError:
                pass
        writer = self._writer
        if writer is not None:
            self._writer = None
            if not ok:
                # A failed or cancelled exchange: drop the connection at once
                # rather than wait for a peer that may never read.
                writer.transport.abort()
                return
            writer.close()
            try:
                await writer.wait_closed()
            except Exception:
                pass

    async def _exchange(self, host, port, head, body):
        reader, writer = await self._open(host, port)
        writer.write(head)
        if body:
            writer.write(body)
        await writer.drain()

        buf = self._head
        mv = self._head_mv
        size = len(buf)
        filled = 0  # bytes of buf holding data
        scan = 0  # start of the first line not parsed yet
        status = 0
        length = -1  # Content-Length, -1 = read to close
        body_start = -1
        while body_start < 0:
            if filled == size:
                raise _Fail(ERR_HEAD_TOO_LARGE)
            n = await _read_into(reader, mv[filled:])
            if n == 0:
                raise _Fail(ERR_TRUNCATED_HEAD if filled else ERR_NO_RESPONSE)
            filled += n
            while True:
                nl = buf.find(b"\n", scan, filled)
                if nl < 0:
                    break
                end = nl
                if end > scan and buf[end - 1] == 13:
                    end -= 1
                if status == 0:
                    status = self._parse_status(buf, scan, end)
                elif end == scan:
                    body_start = nl + 1
                    break
                else:
                    value = _name_at(buf, scan, end, b"content-length")
                    if value >= 0:
                        length = self._parse_length(buf, value, end)
                    elif _name_at(buf, scan, end, b"transfer-encoding") >= 0:
                        raise _Fail(ERR_ENCODING)
                scan = nl + 1

        limit = self.max_body
        if length > limit:
            raise _Fail(ERR_BODY_TOO_LARGE)
        got = filled - body_start  # body bytes that came with the head
        if length >= 0 and got > length:
            got = length  # a server sending more than it announced: ignore the rest
        if got > limit:
            raise _Fail(ERR_BODY_TOO_LARGE)
        body_mv = self._mv
        body_mv[:got] = mv[body_start : body_start + got]
        if length >= 0:
            while got < length:
                n = await _read_into(reader, body_mv[got:length])
                if n == 0:
                    raise _Fail(ERR_TRUNCATED_BODY)
                got += n
        else:
            while True:
                if got == limit:
                    # Full: any further byte means the body did not fit.
                    if await _read_into(reader, self._scratch):
                        raise _Fail(ERR_BODY_TOO_LARGE)
                    break
                n = await _read_into(reader, body_mv[got:])
                if n == 0:
                    break
                got += n
        self.body_len = got
        return status

    def _parse_status(self, buf, start, end):
        # "HTTP/1.x NNN reason"
        if end - start < 12 or buf[start : start + 7] != b"HTTP/1.":
            raise _Fail(ERR_BAD_STATUS)
        pos = start + 8
        if buf[pos] != 32:
            raise _Fail(ERR_BAD_STATUS)
        code = 0
        for i in range(pos + 1, pos + 4):
            c = buf[i]
            if not 48 <= c <= 57:
                raise _Fail(ERR_BAD_STATUS)
            code = code * 10 + c - 48
        if code < 100 or (end > pos + 4 and buf[pos + 4] != 32):
            raise _Fail(ERR_BAD_STATUS)
        return code

    def _parse_length(self, buf, pos, end):
        pos = _skip_blanks(buf, pos, end)
        while end > pos and buf[end - 1] in (32, 9):
            end -= 1
        if pos == end or end - pos > _MAX_LENGTH_DIGITS:
            raise _Fail(ERR_BAD_LENGTH)
        value = 0
        for i in range(pos, end):
            c = buf[i]
            if not 48 <= c <= 57:
                raise _Fail(ERR_BAD_LENGTH)
            value = value * 10 + c - 48
        return value
