"""A small asyncio HTTP client for devices on the local network.

One `HttpClient` object owns one preallocated buffer of `max_body` + 1 bytes
(at least 256). The response head is parsed in it line by line, keeping no
more than the line being read: a header line longer than the buffer is
looked at by its name and dropped. The whole head may be at most 1024
bytes. The body then starts at the buffer's start and may be at most
`max_body` bytes. A request never grows memory past the buffer: a larger
answer is refused with an error. The body stays in the buffer until the
next request on that client (`body()`, `body_is()`, `json()`).

Clients whose answers are read and used one at a time (the polls of several
wallboxes) can share one body buffer (`BodyBuffer`): each then owns only a
256-byte buffer for the head. A client holds the shared buffer from the first
byte of its body until `release()` or its next request; a client whose body
starts while another holds it fails at once with "busy" (it never waits for
another device: a box that stalls inside its body delays nobody). A box that
never answers never holds it: the head is read in the client's own buffer.

Requests are `GET`, HTTP/1.0 with `Connection: close`: one TCP connection per
request, so a wedged device never leaves a half-used connection behind. One
deadline (`timeout_ms`) covers connect, sending, the head and the body. The
connection is always closed, also on timeout, error or cancellation.

Persistent connections (net/http_keep.py's `KeptClient`, the HomeWizard v2
meter's: one TLS handshake per connection, not per poll; loaded only by
who uses it): requests go out as HTTP/1.1 and the connection stays open
after an answer that is complete by its framing: an HTTP/1.1 status line, a
`Content-Length` (or a 204/304, no body) whose bytes all came and nothing
after them, and no `Connection: close`. Anything else closes it after the
answer (an answer read to the end of the connection, an HTTP/1.0 answer),
as does every error, timeout, short read and cancellation. Retrying a
request on a fresh connection and falling back from a chunked answer are
KeptClient's (its module doc).
`get(..., body)` POSTs a small JSON body instead (bytes, `Content-Type:
application/json`; the OpenEVSE claim is one) and reads the answer the same way.
`get(..., headers=)` adds header lines (text, each ending in CRLF: a bearer
token, an API version); they are never part of an error text.

HTTPS: `get(..., tls=(context, server_name))` with a context from
net/tls.py's `context(ca)` speaks TLS on the same connection, within the same deadline.
The peer's certificate must chain to `ca` (CERT_REQUIRED) and carry
`server_name` (as its common name or a subject alternative name); the
handshake completes, verified, before a byte of the request (with its
headers: the token) is sent (mbedTLS and OpenSSL send no application data
before a finished handshake). A peer that fails the check gives the error
"tls: ..." in words and gets nothing. The handshake waits on the socket
without blocking (a peer that accepts TCP and never answers the handshake
ends at the deadline like any dead device), but its crypto runs on the
event loop: docs/configuration.md (HomeWizard API v2) has the figures.
net/tls.py (and `ssl`) is loaded only for a TLS request: a build without ssl
(the 32-bit heap-proxy port) runs every plain-HTTP request as before, and the
plain-HTTP drivers carry none of its code.

Bodies are read by `Content-Length`, or to the end of the connection when the
server sends none (then the connection is never kept). `Transfer-Encoding`
(chunked) is refused with an error: HTTP/1.0 requests should never get it,
and LAN devices do not send it to them (a KeptClient falls back to HTTP/1.0).

`get()` returns the HTTP status code (any code: deciding what a 404 or 500
means is the driver's job), or 0 when no complete response arrived; `error`
then says why, in a few words:

    "timeout"             the deadline passed
    "connection refused"  nothing listens on the port (the device reboots)
    "errno N"             any other socket error, N its errno (on MicroPython
                          a host name that does not resolve gives a negative N)
    "bad path"            the path does not start with "/" or has spaces or
                          control characters (nothing is sent)
    "long request"        the request head would be over 1024 bytes
    "no reply"            closed before any byte of an answer
    "short head"          closed inside the response head
    "bad status"          not an "HTTP/1.x NNN" status line
    "long head"           response head over 1024 bytes
    "bad length"          a Content-Length that is not a plain number
    "chunked"             a Transfer-Encoding header
    "long body"           body over `max_body` bytes
    "busy"                the shared body buffer is held by another client
    "tls: ..."            the TLS handshake failed or the peer's certificate
                          is not the one expected (see HTTPS above)
    "short body"          closed before Content-Length bytes came
    "MemoryError"         no heap for the request (then `no_heap` is True:
                          the drivers' fail_box passes it on, never the text)
    other                 the type name of an unexpected exception

It never raises, except `CancelledError` when the caller's task is cancelled.

Host names: numeric IPv4 addresses are best. On MicroPython
socket.getaddrinfo() blocks the event loop for a name, so a name goes to the
resolver given to `use_resolver()` (the app gives net/dns.py's, which never
blocks) inside the request's deadline; without one, getaddrinfo is used. Either
way a name is looked up once per client and again only after a connection
error. CPython resolves in its executor.
"""

import sys

import asyncio
import errno
import json
import socket

from micropython import const

_MAX_BODY = const(2048)  # default body limit, bytes
_MAX_HEAD = const(1024)  # status line + headers, bytes (counted, not stored)
_MIN_BUFFER = const(256)  # the buffer also holds head lines: never smaller

_MPY = sys.implementation.name == "micropython"

# The async name lookup of use_resolver(), or None.
_resolver = [None]


def use_resolver(resolve):
    """Look host names up with `await resolve(name, timeout_ms)` -> dotted IPv4 text (MicroPython only).

    `resolve` raises ValueError(short text) or OSError when the name does not
    resolve; the request then fails with that text. None restores getaddrinfo.
    """
    _resolver[0] = resolve


def _tls_reason(err):
    # "tls: ..." in words (net/tls.py, loaded for TLS requests only).
    from chargeguard.net import tls

    return tls.reason(err)


def _numeric(host):
    # Dotted digits only: getaddrinfo answers those without a lookup. Over
    # the bytes: a character taken from a str is interned for good on MicroPython.
    for code in host.encode():
        if code != 46 and not 48 <= code <= 57:  # '.', '0'..'9'
            return False
    return True


async def _read_into(reader, mv):
    # MicroPython streams read straight into our buffer; CPython's StreamReader
    # has no readinto, so it reads a bytes object and copies (host only).
    if _MPY:
        while True:
            n = await reader.readinto(mv)
            if n is not None:
                return n
    data = await reader.read(len(mv))
    mv[: len(data)] = data
    return len(data)


def _number(buf, pos, end):
    # The decimal number in buf[pos:end], blanks around it allowed, or -1 when
    # there is none. More than 9 digits is no real length or status: -1 too.
    while pos < end and buf[pos] in b" \t":
        pos += 1
    while end > pos and buf[end - 1] in b" \t":
        end -= 1
    if pos == end or end - pos > 9:
        return -1
    value = 0
    while pos < end:
        c = buf[pos] - 48
        if not 0 <= c <= 9:
            return -1
        value = value * 10 + c
        pos += 1
    return value


def put(buf, at, data, start=0, stop=-1):
    """Copy bytes-like data[start:stop] (stop -1: its end) into bytearray `buf` from index `at`.

    Returns the index past it, or -1 when it does not fit; -1 in `at` stays
    -1, so a request is built by a chain of puts and checked once. Allocates
    nothing (the guard's commands are built this way).
    """
    if stop < 0:
        stop = len(data)
    end = at + stop - start
    if at < 0 or end > len(buf):
        return -1
    if start == 0 and stop == len(data):
        buf[at:end] = data
    else:
        while start < stop:  # a slice of data would be an object
            buf[at] = data[start]
            at += 1
            start += 1
    return end


def put_int(buf, at, value):
    """Write the decimal digits of int `value` (0 or more) into `buf` from `at`, as put(); allocates nothing."""
    if at < 0:
        return -1
    digits = 1
    scale = 1
    while value >= scale * 10:
        scale *= 10
        digits += 1
    if at + digits > len(buf):
        return -1
    while scale:
        buf[at] = 48 + value // scale % 10
        at += 1
        scale //= 10
    return at


class BodyBuffer:
    """A body buffer of `size` bytes that several HttpClients take turns with (see the module doc)."""

    def __init__(self, size):
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.holder = None  # the HttpClient whose body it holds, or None


# The one body buffer that the polls of every wallbox share (made by the first
# driver that asks; all of them read bodies of at most 2048 bytes).
_POLL_MAX_BODY = const(2048)
_poll_buffers = []


def poll_buffer():
    """The BodyBuffer (2049 bytes) shared by the wallbox drivers' polls."""
    if not _poll_buffers:
        _poll_buffers.append(BodyBuffer(_POLL_MAX_BODY + 1))
    return _poll_buffers[0]


async def poll_box(box, path):
    """One poll of an HTTP wallbox driver: GET `path`, then box._take(gen). True on success; never raises.

    The drivers' shared poll (chargers/: v2c_trydan, go_e, openevse, shelly_load). `box`
    has host, port, timeout_ms, _reader (an HttpClient on poll_buffer()),
    _polling (the flag that serialises its polls), _write_gen (bumped by
    every accepted write), _take(gen) (fills its status from the body in
    _reader.buf: False for a body that is not one JSON object, KeyError or
    ValueError(name) for a bad field) and _failed(message, poll, no_heap) (notes the
    failure, returns False; poll 2 = no answer at all, 1 = a bad answer;
    no_heap: the cause was a MemoryError, see fail_box).
    Calls are serialised: one made while another runs waits for it (every
    10 ms: asyncio.Lock would load a module, ~0.7 KB of heap, for this).
    """
    while box._polling:
        await asyncio.sleep(0.01)
    box._polling = True
    client = box._reader
    try:
        gen = box._write_gen
        code = await client.get(box.host, box.port, path, box.timeout_ms)
        if code == 0 and client.error == "busy":
            # Another box's answer holds the shared buffer: this box
            # answered, so its state stays as last read until the next
            # poll. Never a wait: that box may be stalling.
            return False
        if code != 200:
            return box._failed(client.error or "HTTP %d" % code, 2 if code == 0 else 1, client.no_heap)
        if not box._take(gen):
            return box._failed("invalid JSON", 1)
        return True
    except (KeyError, ValueError) as bad:
        return box._failed("bad %s" % bad.args[0], 1)
    except MemoryError:
        return box._failed("out of memory", 1, True)
    except Exception as err:
        return box._failed("driver: %s" % type(err).__name__, 1)
    finally:
        client.release()
        box._polling = False


async def apply_box(box, offered_ma):
    """One command of an HTTP wallbox driver: `await box._command(offered_ma)`, serialised. True when the box has it; never raises.

    The drivers' shared apply (chargers/: v2c_trydan, go_e, openevse,
    shelly_load). `box` has _command_seq and _applying (the counters that
    serialise its commands), _command(offered_ma) (writes what the box
    lacks; True when it has the command, else False after _failed),
    _failed(message, poll, no_heap) and _poll_error (the poll's error, shown again once a
    command went through). A call still waiting when a newer one arrives is
    superseded and returns False without touching the box, so a dead box
    never builds a queue of stale commands.
    """
    box._command_seq += 1
    seq = box._command_seq
    while True:
        if seq != box._command_seq:
            return False  # superseded while it waited
        if not box._applying:
            break
        await asyncio.sleep(0.01)  # as in poll_box
    box._applying = True
    try:
        if not await box._command(offered_ma):
            return False
    except MemoryError:
        return box._failed("out of memory", 0, True)  # no text to make: the heap has none
    except Exception as err:
        return box._failed("driver: %s" % type(err).__name__)
    finally:
        box._applying = False
    box.status.error = box._poll_error
    return True


def fail_box(box, message, poll=0, no_heap=False):
    """Note a failure of an HTTP wallbox driver in its status; returns False.

    no_heap: True when the cause was a MemoryError (the request's
    client.no_heap, or one caught around it): status.no_heap, which app.py
    reads to send the command again after a collection.

    poll: 0 = a command, 1 = a poll (the box is unreachable or talks
    nonsense: not reachable, and the error stays until a poll succeeds),
    2 = a poll that got no answer at all: the box may have rebooted
    meanwhile, so box._forget() drops what it believed the box had and the
    next command writes everything.
    """
    status = box.status
    status.error = box.last_error = message
    status.no_heap = no_heap
    if poll:
        status.reachable = False
        box._poll_error = message
        if poll == 2:
            box._forget()
    return False


class HttpClient:
    """HTTP client with one preallocated, bounded buffer (one request at a time).

    shared: a BodyBuffer of at least max_body + 1 bytes to read bodies into
    (then `buf` is that buffer, and the client's own is 256 bytes for the
    head), or None for a buffer of its own. One connection per request;
    net/http_keep.py's KeptClient keeps it (see the module doc).
    """

    def __init__(self, max_body=_MAX_BODY, shared=None):
        self.max_body = max_body
        self._shared = shared
        if shared is None:
            # One byte more than the limit: reading to the end of the
            # connection needs room to see that a body is too long.
            self.buf = bytearray(max(max_body + 1, _MIN_BUFFER))
            self._mv = memoryview(self.buf)
            self._head = self.buf
            self._head_mv = self._mv
        else:
            if len(shared.buf) <= max_body:
                raise ValueError("shared buffer smaller than max_body + 1")
            self.buf = shared.buf
            self._mv = shared.mv
            self._head = bytearray(_MIN_BUFFER)
            self._head_mv = memoryview(self._head)
        self.status = 0  # HTTP status of the last response, 0 = none
        self.body_len = 0
        self.error = None  # why the last request failed, or None
        self.no_heap = False  # True when it failed because it met MemoryError (error "MemoryError")
        self._busy = False
        # The open connection: MicroPython, a stream on a socket we made;
        # CPython, the stream writer (and _reader its reader). Closed by get()
        # whatever happens, unless the answer leaves it fit to keep
        # (_keep_now: a KeptClient's request only).
        self._sock = None
        self._reader = None
        self._keep_now = False
        self._answered = False  # a byte of an answer came on this connection
        # The address last looked up, reused while requests succeed.
        self._addr = None
        self._addr_host = None
        self._addr_port = 0
        # (host, port, the "Host" header's value as bytes) of the last request.
        self._host_line = (None, 0, None)

    async def get(self, host, port, path, timeout_ms, body=None, headers=None, tls=None):
        """GET path (POST `body`, bytes of JSON, when given); returns the status code, or 0 with `error` set (see module doc).

        path: str, or bytes-like (a command's path built in a buffer of the
        driver's: the request is then made without allocating). headers:
        extra header lines (str, each ending in CRLF) or None; tls:
        (context from net/tls.context(), the name the certificate must carry)
        or None for plain HTTP.

        One request at a time: a call while another is in flight on this
        client returns 0 at once and changes nothing.
        """
        if self._busy:
            # The buffer and `error` belong to the request in flight.
            return 0
        self._busy = True
        self.release()  # the last body is no longer needed
        self.status = 0
        self.body_len = 0
        self.error = None
        self.no_heap = False
        self._keep_now = False
        try:
            if timeout_ms <= 0:
                raise asyncio.TimeoutError
            coro = self._exchange(host, port, path, timeout_ms, body, headers, tls)
            # MicroPython's millisecond variant avoids a float on the device.
            if _MPY:
                self.status = await asyncio.wait_for_ms(coro, timeout_ms)
            else:
                self.status = await asyncio.wait_for(coro, timeout_ms / 1000)
        except asyncio.TimeoutError:
            self.error = "timeout"
        except OSError as err:
            self._addr_host = None  # look the name up again next time (it may have moved)
            code = err.args[0] if err.args else 0
            self.error = "connection refused" if code == errno.ECONNREFUSED else "errno %s" % code
        except ValueError as err:
            # _exchange's own failures: ValueError(short text).
            self.error = err.args[0] if err.args else "ValueError"
        except MemoryError:
            self.error = "MemoryError"
            self.no_heap = True
        except Exception as err:  # never let a surprise escape to the driver
            self.error = type(err).__name__
        finally:
            if not self._keep_now:
                await self._drop()
            self._busy = False
            if self.error is not None or not self.status:
                # Failed or cancelled: no body to keep for the caller.
                self.release()
        if self.error is not None:
            self.status = 0
            self.body_len = 0
        return self.status

    async def _drop(self):
        # Close the connection, if any.
        sock = self._sock
        self._sock = self._reader = None
        self._keep_now = False
        if sock is not None:
            try:
                # CPython: close() then wait until the socket is closed.
                # MicroPython: close() does nothing, wait_closed() closes
                # the socket at once.
                sock.close()
                await sock.wait_closed()
            except Exception:
                pass

    def release(self):
        """Done with the body: a shared body buffer is free for the other clients."""
        shared = self._shared
        if shared is not None and shared.holder is self:
            shared.holder = None

    def body(self):
        """The last response body as a memoryview (valid until the next request or release())."""
        return self._mv[: self.body_len]

    def body_is(self, expected):
        """True if the body equals `expected` (bytes), ignoring surrounding whitespace."""
        # A copy of the body: meant for short answers such as b"OK".
        return bytes(self.body()).strip() == expected

    def json(self):
        """Parse the body as JSON; raises ValueError on invalid JSON."""
        # MicroPython parses a memoryview in place; CPython needs bytes.
        return json.loads(self.body() if _MPY else bytes(self.body()))

    def _request(self, path, host, port, body, headers, keep, buf=None):
        # The request head in `buf` (default: the head buffer); its length,
        # or -1 when it does not fit. Raises ValueError("bad path"). path:
        # str, or bytes-like (a driver's preallocated buffer: then nothing
        # is allocated here); the "Host" value is kept as bytes per host
        # and port.
        if buf is None:
            buf = self._head
        at = put(buf, 0, b"GET " if body is None else b"POST ")
        if type(path) is str:
            path = path.encode()
        end = put(buf, at, path)
        # Spaces and control characters would break (or inject into) the
        # request line; a path must start with "/".
        if not len(path) or path[0] != 47:  # '/'
            raise ValueError("bad path")
        for i in range(len(path)):  # by index: an iterator would be an object
            if path[i] <= 32 or path[i] == 127:
                raise ValueError("bad path")
        if end < 0:
            return -1
        line = self._host_line
        if host != line[0] or port != line[1]:
            line = self._host_line = (host, port, (host if port == 80 else "%s:%d" % (host, port)).encode())
        at = put(buf, end, b" HTTP/1.1\r\nHost: " if keep else b" HTTP/1.0\r\nHost: ")
        at = put(buf, at, line[2])
        at = put(buf, at, b"\r\n" if keep else b"\r\nConnection: close\r\n")
        if body is not None:
            at = put(buf, at, b"Content-Type: application/json\r\nContent-Length: ")
            at = put(buf, put_int(buf, at, len(body)), b"\r\n")
        if headers:
            at = put(buf, at, headers.encode() if type(headers) is str else headers)
        return put(buf, at, b"\r\n")

    async def _exchange(self, host, port, path, timeout_ms, body, headers, tls, keep=False):
        # One request, on the kept connection (KeptClient: net/http_keep.py)
        # or a new one; the status. keep: ask for a persistent connection;
        # _keep_now says whether the answer leaves it fit for the next.
        # The request head first, in the head buffer (free until the answer
        # comes): no string is made for it (a command must not fail for want
        # of heap), and a bad path is refused before anything is sent.
        size = self._request(path, host, port, body, headers, keep)
        self._answered = False
        reused = self._sock is not None
        if reused:
            pass  # the kept connection (KeptClient checked its peer)
        elif _MPY:
            # MicroPython's open_connection keeps its socket to itself:
            # cancelled while connecting (a dead host), that socket would never
            # be closed, and the unix port has no finaliser for it. So connect
            # a socket we hold and can always close; the stream's first write
            # waits for the connection.
            if host != self._addr_host or port != self._addr_port:
                # Done once, and again only after a failure. getaddrinfo
                # blocks the loop for a name (not for a numeric address).
                address = host
                resolve = _resolver[0]
                if resolve is not None and not _numeric(host):
                    address = await resolve(host, timeout_ms)
                self._addr = socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM)[0]
                self._addr_host = host
                self._addr_port = port
            ai = self._addr
            sock = socket.socket(ai[0], ai[1], ai[2])
            reader = self._sock = asyncio.StreamReader(sock)
            sock.setblocking(False)
            try:
                sock.connect(ai[-1])
            except OSError as err:
                if err.errno != errno.EINPROGRESS:
                    raise
            if tls is not None:
                # TLS over the connecting socket; mbedTLS runs the handshake
                # in the first write (the request's) and sends no byte of it
                # before the handshake is over and the certificate checked.
                # The stream waits on the socket as mbedTLS asks (read or
                # write), so a silent peer costs no CPU until the deadline.
                try:
                    sock = tls[0].wrap_socket(sock, server_hostname=tls[1], do_handshake_on_connect=False)
                except (OSError, ValueError) as err:
                    raise ValueError(_tls_reason(err))
                reader = self._sock = asyncio.StreamReader(sock)
        elif tls is not None:
            try:
                reader, self._sock = await asyncio.open_connection(host, port, ssl=tls[0], server_hostname=tls[1])
            except ValueError as err:  # ssl.SSLError: OSError and ValueError (CertificateError)
                raise ValueError(_tls_reason(err))
            except OSError as err:
                if type(err).__module__ == "ssl" or "SSL" in type(err).__name__:
                    raise ValueError(_tls_reason(err))
                raise
        else:
            reader, self._sock = await asyncio.open_connection(host, port)
        if not reused:
            self._reader = reader
        reader = self._reader
        writer = self._sock
        data = self._head_mv
        if size < 0:
            # A head longer than the buffer (a long host name, path or
            # header lines): built the same way in a buffer of its own.
            data = bytearray(_MAX_HEAD)
            size = self._request(path, host, port, body, headers, keep, data)
            if size < 0:
                raise ValueError("long request")
        if not _MPY:
            data = bytes(data[:size])
        writer.write(data if size == len(data) else memoryview(data)[:size])
        if body is not None:
            writer.write(body)
        if tls is not None and _MPY and not reused:
            try:
                await writer.drain()
            except ValueError as err:  # mbedTLS: the certificate fails the check
                raise ValueError(_tls_reason(err))
            except OSError as err:
                code = err.args[0] if err.args else 0
                if type(code) is int and code > 0:
                    raise  # the socket's own errno: refused, reset, unreachable
                raise ValueError(_tls_reason(err))  # mbedTLS's negative codes
        else:
            await writer.drain()

        buf = self._head  # the head is read here
        mv = self._head_mv
        size = len(buf)
        filled = 0  # bytes of buf holding data
        scan = 0  # start of the first line not parsed yet
        dropped = 0  # head bytes already dropped from the buffer
        skip = False  # dropping the rest of a line longer than the buffer
        status = 0
        length = -1  # Content-Length, -1 = read to close
        persistent = False  # an HTTP/1.1 status line and no "Connection: close"
        while True:
            nl = buf.find(b"\n", scan, filled)
            end = filled if nl < 0 else nl
            if dropped + end > _MAX_HEAD:
                raise ValueError("long head")
            if nl < 0 and (scan or filled < size):
                # No complete line: move the partial one to the start, read on.
                # (Overlapping memoryview copies are memmoves on both runtimes.)
                if scan:
                    mv[: filled - scan] = mv[scan:filled]
                    dropped += scan
                    filled -= scan
                    scan = 0
                n = await _read_into(reader, mv[filled:])
                if not n:
                    raise ValueError("short head" if dropped + filled else "no reply")
                self._answered = True
                filled += n
                continue
            # buf[scan:end] is a whole line, or (nl < 0) the start of one that
            # fills the buffer: its start is enough to know what it is.
            if nl >= 0 and end > scan and buf[end - 1] == 13:
                end -= 1
            if skip:
                pass  # the rest of a line already looked at
            elif not status:
                # "HTTP/1.x NNN reason"
                if (
                    end - scan >= 12
                    and buf.find(b"HTTP/1.", scan, scan + 7) == scan
                    and buf[scan + 8] == 32
                    and (end == scan + 12 or buf[scan + 12] == 32)
                ):
                    status = _number(buf, scan + 9, scan + 12)
                if status < 100:
                    raise ValueError("bad status")
                persistent = buf[scan + 7] == 49  # HTTP/1.1 ('1')
                if status == 204 or status == 304:
                    length = 0  # no body, by definition
            elif end == scan:
                break  # the blank line: the body follows
            else:
                # Header names are case-insensitive: lower-case the name in
                # place, then compare it with its colon.
                i = scan
                while i < end and buf[i] != 58:
                    if 65 <= buf[i] <= 90:
                        buf[i] += 32
                    i += 1
                if buf.find(b"content-length:", scan, i + 1) == scan:
                    length = _number(buf, i + 1, end)
                    if length < 0:
                        raise ValueError("bad length")
                elif buf.find(b"transfer-encoding:", scan, i + 1) == scan:
                    raise ValueError("chunked")
                elif buf.find(b"connection:", scan, i + 1) == scan:
                    # "close" among its tokens, any case. A line cut by a
                    # small buffer shows only its start: then not kept.
                    while i < end:
                        if 65 <= buf[i] <= 90:
                            buf[i] += 32
                        i += 1
                    if nl < 0 or buf.find(b"close", scan, end) >= 0:
                        persistent = False
            skip = nl < 0
            if skip:
                dropped += filled
                filled = 0
            else:
                scan = nl + 1

        limit = self.max_body
        if length > limit:
            raise ValueError("long body")
        shared = self._shared
        if shared is not None:
            if shared.holder is not None:
                raise ValueError("busy")
            shared.holder = self
        body = self._mv
        # Body bytes that came with the head move to the body buffer's start.
        got = filled - nl - 1
        if 0 <= length < got:
            got = length  # a server sending more than it announced: ignore the rest
            persistent = False  # ... and never read it as the next answer
        body[:got] = mv[nl + 1 : nl + 1 + got]
        # Without a length, read one byte past the limit to see an overlong body.
        end = length if length >= 0 else limit + 1
        while got < end:
            n = await _read_into(reader, body[got:end])
            if not n:
                if length >= 0:
                    raise ValueError("short body")
                break
            got += n
        if got > limit:
            raise ValueError("long body")
        self.body_len = got
        self._keep_now = keep and persistent and length >= 0
        return status
