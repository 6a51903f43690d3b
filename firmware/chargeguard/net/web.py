"""The web interface: the live status page and the REST API (docs/api.md), on microdot.

Loaded only when the `web` section is enabled (drivers.INTERFACE_MODULES).
It reads only the site state (state.SiteState) and changes settings only
through the command API (commands.Commands); it never touches app.py, a
driver or the guard.

Routes (JSON unless said otherwise):
    GET  /                      the status page (www/status.html.gz, gzip)
    GET  /setup, /settings      the setup wizard and the settings page (www/*.html.gz)
    GET  /api/status            the site state: grid, chargers, optimiser, device
    GET  /api/settings          Commands.values: {path: value} of every settable path
    POST|PATCH /api/settings    {path: value, ...} through Commands.set
    POST|PATCH /api/chargers/<index or name>  {key: value} through Commands.set_charger
                                (mode, manual_a, min_a, max_a, priority, enabled = Start/Stop,
                                locked = the box's own lock, where it has one)
    POST /api/login             checks the password (the page's login), 204
    GET  /api/config            the configuration in force, secrets redacted ("***"); needs the password
    PUT  /api/config            a whole configuration (<= MAX_CONFIG_BODY): validated by config.py and
                                stored through Commands.apply_config (all or nothing; "***" keeps the
                                stored secret), then the controller restarts
    GET  /api/setup             the wizard's state: password set, trial join, version
    POST /api/setup/scan        Wi-Fi networks in reach (platform.wifi_scan)
    GET|POST /api/setup/wifi    a trial join {ssid, password}: its state
    POST /api/setup/meter       {"meter": section}: a live reading per phase
    POST /api/setup/charger     {"charger": entry}: the box read once
    POST /api/setup/finish      a whole configuration: stored, then restart
    POST /api/reboot            restart the controller
    (the /api/setup* and /api/reboot handlers are net/webadmin.py, loaded
    for the request and unloaded after it)
Errors: {"errors": {path: message}} with a 4xx status; path "" is the
request as a whole.

Captive portal: while the setup access point is open (net/portal.py,
context "portal"), a request for one of the operating systems' probe URLs
(PROBE_PATHS: Android, Apple, Windows, Firefox) or with a Host header that
is not this device (not an IPv4 address, not wifi.hostname, nor that
name under a domain: hostname.local) is answered 302 to http://<access point address>/ +
PORTAL_PATH, so the phone shows "sign in to network" and opens the setup
page. Outside the portal those paths are unknown routes (404) like any
other.

Security (no TLS on the device: the LAN must be trusted, docs/api.md):
- every change needs the admin password (config `admin.password`; none set:
  every change is refused and says so, except the setup wizard's requests
  and reading the configuration: first boot, the wizard sets the password)
  as HTTP Basic credentials, sent with
  each change (any user name). Basic rather than a session cookie: nothing
  is kept per client (no session table, no token to generate or expire),
  the check is one base64 decode of a header line. No WWW-Authenticate
  challenge is sent, so a browser never caches the credentials itself (a
  cached password would ride along on a cross-site request);
- cross-site requests cannot change anything: a change must carry the
  header `X-ChargeGuard: 1` and a JSON body (both need a CORS preflight a
  foreign page never gets approved: no CORS headers are ever sent), and is
  refused when the browser says it comes from elsewhere (Sec-Fetch-Site
  other than same-origin/none, or an Origin whose host is not Host);
- wrong passwords: after MAX_FAILURES in a row every password check is
  refused for LOCKOUT_MS (429 with Retry-After), for every client (no table
  per address: it would be the heap an attacker fills);
- bounded requests: a line (request line or header) above MAX_LINE bytes,
  more than MAX_HEADERS headers, a head above MAX_HEAD bytes or a body above
  MAX_BODY bytes is answered 413 without being read into the heap; a head
  and body not received within READ_MS gets 408 and the connection closed
  (a client that connects and sends nothing holds one of MAX_CLIENTS slots
  for READ_MS, never the loop); more than MAX_CLIENTS connections at once
  get 503 at once; an answer not taken by the client in WRITE_MS is dropped;
- secrets are never returned: the site state and the command API's values
  hold none, and the password is only compared (in constant time).

Memory: microdot's core (build/lib/microdot, pinned by tools/devlibs.py) and
this module; per request one Request (its head parsed where it was read,
keeping only the headers the firmware reads: _request_class), the parsed
JSON body (<= MAX_BODY) and the answer's JSON. The page is a precompressed file streamed from flash
through one PAGE_CHUNK buffer allocated at start, never held whole (a 1 KB
block per chunk, as microdot's send_file reads, failed on a fragmented
heap).
"""

from micropython import const

import asyncio
import json

from chargeguard.core.ticks import ticks_diff

MAX_LINE = const(512)  # bytes of the request line or one header line, CRLF included
MAX_HEADERS = const(24)  # header lines of one request
MAX_HEAD = const(3072)  # bytes of the request line and headers together
MAX_BODY = const(1024)  # bytes of a request body (a settings change is ~100)
MAX_CONFIG_BODY = const(8192)  # a configuration import (PUT /api/config): config.MAX_CONFIG_BYTES
MAX_CLIENTS = const(3)  # connections served at once; more get 503
READ_MS = const(5000)  # to receive the head and body of a request
WRITE_MS = const(10000)  # for the client to take the answer
_UNSET = object()  # "not in the request" where None could be a value
PAGE_CHUNK = const(512)  # the page is sent in chunks of this, from one buffer allocated at start
JSON_PIECE = const(256)  # a JSON answer is sent in pieces of about this many bytes (_JsonBody)
MAX_FAILURES = const(5)  # wrong passwords in a row before the lockout
LOCKOUT_MS = const(60000)  # password checks refused after MAX_FAILURES
LISTEN_RETRY_S = const(10)  # a port in use is tried again this often
PAGE = "www/status.html.gz"  # the status page, relative to the firmware's directory
CHANGE_HEADER = "X-ChargeGuard"  # a change must carry it with the value "1"
# Where the captive portal sends a phone: the setup wizard.
PORTAL_PATH = "/setup"
# The connectivity checks of the operating systems, which must not get their
# expected answer while the portal is open: Android (/generate_204,
# /gen_204: expects 204), Apple (/hotspot-detect.html,
# /library/test/success.html: expects "Success"), Windows (/connecttest.txt,
# /ncsi.txt: expects a fixed text; /redirect: its browser's follow-up),
# Firefox (/canonical.html, /success.txt).
PROBE_PATHS = (
    "/generate_204", "/gen_204", "/hotspot-detect.html", "/library/test/success.html", "/connecttest.txt",
    "/ncsi.txt", "/redirect", "/canonical.html", "/success.txt",
)

_CAR = ("unknown", "none", "connected", "charging")


class TooLarge(Exception):
    """A request line, header set or body above its bound (answered 413)."""


class _Reader:
    """A request stream that never holds more than the bounds: line()/fill() for the head (_request_class) and readexactly() for the body.

    What it allocates per request is kept small, as the first requests
    come in the start-up's crowd (the frozen `everything` profile's
    86-88 KB runs answered them 503): a line is not copied out but given
    as a place in `buf` (what came), and on MicroPython the socket is read
    into `chunk` (the Web's PAGE_CHUNK buffer) rather than into a new
    MAX_LINE block per read. What came stays there while the head's lines
    are parsed (the parse runs without a wait, as the page's and the JSON
    answers' uses of that buffer do); only a line not complete yet is
    copied out before the next read, since another request may use the
    buffer while this one waits.
    """

    def __init__(self, stream, chunk=None):
        self.stream = stream
        self.chunk = chunk if hasattr(stream, "readinto") else None
        self.buf = b""  # what came: `chunk` (until the next wait) or a bytes of its own
        self.at = 0  # what is not given out yet starts here in buf
        self.size = 0  # bytes of buf that came
        self.end = 0  # where the line line() gave out ends, its CR LF excluded
        self.head = 0  # head bytes given out
        self.lines = 0
        self.eof = False
        self.limit = MAX_BODY

    def line(self):
        """Where the next head line starts in self.buf (it ends at self.end), or -1 when more must be read (fill()).

        TooLarge past MAX_LINE, MAX_HEAD or MAX_HEADERS. At the end of the
        stream what came is the last line, then every line is empty (as
        microdot's reading took it: the end of the head).
        """
        buf = self.buf
        at = self.at
        cut = buf.find(b"\n", at, self.size)
        if cut < 0:
            if not self.eof:
                return -1
            self.at = self.end = self.size
            return at
        self.at = cut + 1
        self.head += cut + 1 - at
        self.lines += 1
        if cut + 1 - at > MAX_LINE or self.head > MAX_HEAD or self.lines > MAX_HEADERS + 2:
            raise TooLarge()
        self.end = cut - 1 if cut > at and buf[cut - 1] == 13 else cut
        if self.lines == 1 and (buf.startswith(b"PUT /api/config ", at) or buf.startswith(b"POST /api/setup/finish ", at)):
            self.limit = MAX_CONFIG_BODY  # only a configuration import may send more than MAX_BODY
        return at

    async def fill(self):
        # More of the head, after what line() has not given out yet (copied out of the shared buffer first).
        at = self.at
        size = self.size - at
        if size >= MAX_LINE or self.head + size >= MAX_HEAD:
            raise TooLarge()
        rest = self.buf[at : self.size] if size else b""
        self.buf = b""
        self.at = 0
        self.size = size
        chunk = await self._read(MAX_LINE - size)
        if not len(chunk):
            self.eof = True
            self.buf = rest
        elif size:
            self.buf = rest + chunk
            self.size = len(self.buf)
        else:
            self.buf = chunk if self.chunk is None else self.chunk  # the shared buffer: parsed before the next wait
            self.size = len(chunk)

    async def _read(self, count):
        # Up to count bytes: into the shared buffer where the stream reads into one (a view of what
        # came, to be copied before the next wait), else a new bytes.
        chunk = self.chunk
        if chunk is None:
            return await self.stream.read(count)
        into = chunk if count >= len(chunk) else memoryview(chunk)[:count]
        got = None
        while got is None:  # None: nothing to read after all (a non-blocking socket's EAGAIN)
            got = await self.stream.readinto(into)
        return memoryview(chunk)[:got]

    async def readexactly(self, count):
        # One allocation of the body's size (a configuration is up to 8 KB:
        # no growing copies), filled in chunks of at most MAX_LINE.
        if count < 0:
            raise ValueError("negative Content-Length")
        if count > self.limit:
            raise TooLarge()
        data = bytearray(count)
        at = self.at
        have = min(count, self.size - at)
        if have:
            data[:have] = memoryview(self.buf)[at : at + have]  # before any wait: buf may be the shared buffer
        self.buf = b""  # nothing after the body is read
        self.at = self.size = 0
        while have < count:
            chunk = await self._read(min(count - have, MAX_LINE))
            if not len(chunk):
                raise EOFError()
            data[have : have + len(chunk)] = chunk
            have += len(chunk)
        return data

    async def read(self, count=-1):
        # Only for a body microdot did not read (above MAX_BODY): nothing.
        return b""


# The request headers the firmware reads (Web.refuse_change, Web.captive; webadmin.py reads none), each as a
# header line's name is matched without a copy (lower-case bytes) and the name request.headers keeps it under.
# Content-Length and Content-Type are request.content_length and request.content_type, as microdot has them.
_HEADERS = (
    (b"host", "Host"),
    (b"origin", "Origin"),
    (b"authorization", "Authorization"),
    (b"x-chargeguard", "X-ChargeGuard"),  # CHANGE_HEADER
    (b"sec-fetch-site", "Sec-Fetch-Site"),
    (b"content-type", "Content-Type"),
    (b"content-length", "Content-Length"),
)
_SPACE = b" \t\n\x0b\x0c\r"  # what microdot's str.strip() takes off a line or a value


def _skip(buf, at, end, space):
    # The first place from `at` (end at most) whose byte is white space (space=True), or is not (False).
    while at < end and (buf[at] in _SPACE) != space:
        at += 1
    return at


def _kept(buf, start, cut):
    # The name in _HEADERS of the header named buf[start:cut] (any case), else None; compared in place.
    size = cut - start
    for low, name in _HEADERS:
        if len(low) == size:
            index = 0
            while index < size:
                char = buf[start + index]
                want = low[index]
                if char != want and not (65 <= char <= 90 and char + 32 == want):
                    break
                index += 1
            else:
                return name
    return None


def _request_class():
    """microdot's Request with a head parser that keeps only what the firmware reads (made with the server).

    microdot's Request.create reads the head line by line (two coroutines
    per line), decodes, splits, strips and lower-cases every header line
    into a case-insensitive dict of all of them, parses the query string
    and the cookies, and its __init__ sets some 25 attributes: 5.2 KB of
    small blocks for a change with seven headers (32-bit), in the
    start-up's crowd. Here the head is parsed where it came
    (_Reader.line), a header the firmware does not read costs nothing, and
    what microdot's dispatch reads first is a class default. The answers
    are microdot's: a request line that is not three words with an HTTP
    version, a header line without a colon, a Content-Length that is no
    integer or below 0: 400; the bounds (_Reader): 413; an empty request:
    None. A request has method, path (without the query), headers (only
    _HEADERS' names, spelled as there), content_length, content_type,
    body, json and stream; no route reads the rest of microdot's (app,
    url, query_string, args, cookies, g, client_addr, sock), so it is not
    made, and after_request() is not available. A header the firmware
    does not read is not decoded either (microdot answered 400 to one
    that was not UTF-8).
    """
    from microdot import Request

    class Head(Request):
        # What microdot's dispatch_request and the firmware read before (or without) setting it, as class
        # defaults: each is a slot of the class's dictionary for good, not of every request's.
        subapp = None  # (the 413 of dispatch_request reads it before find_route sets it)
        g = None  # (dispatch_request asks it for _vary: none)
        content_type = None
        content_length = 0
        _body = b""
        after_request_handlers = ()
        _stream = _json = None  # (the stream and json properties)

        def __init__(self, method, path, headers):
            self.method = method
            self.path = path
            self.headers = headers

        @classmethod  # (not microdot's staticmethod: naming Head in here would make create a closure)
        async def create(cls, app, client_reader, client_writer, client_addr, scheme=None):
            reader = client_reader  # a _Reader
            start = reader.line()
            while start < 0:
                await reader.fill()
                start = reader.line()
            # Three words (microdot: line.split()), the last an HTTP version; read in place.
            buf = reader.buf
            end = reader.end
            start = _skip(buf, start, end, False)
            if start == end:
                return None  # nothing came: the client closed without a request
            cut = _skip(buf, start, end, True)
            at = _skip(buf, cut, end, False)
            stop = _skip(buf, at, end, True)
            version = _skip(buf, stop, end, False)
            last = _skip(buf, version, end, True)
            if version == end or _skip(buf, last, end, False) != end or buf.find(b"/", version, last) < 0:
                raise ValueError("malformed request line")  # 400, as microdot
            query = buf.find(b"?", at, stop)  # the query string: no route reads one
            request = cls(str(buf[start:cut], "utf-8"), str(buf[at : stop if query < 0 else query], "utf-8"), {})
            headers = request.headers
            while True:
                start = reader.line()
                if start < 0:
                    await reader.fill()
                    continue
                buf = reader.buf
                end = reader.end
                start = _skip(buf, start, end, False)
                while end > start and buf[end - 1] in _SPACE:
                    end -= 1
                if start == end:
                    break
                cut = buf.find(b":", start, end)
                if cut < 0:
                    raise ValueError("no colon in a header line")
                name = _kept(buf, start, cut)
                if name is None:
                    continue
                value = str(buf[_skip(buf, cut + 1, end, False) : end], "utf-8")
                if name == "Content-Length":
                    request.content_length = int(value)
                elif name == "Content-Type":
                    request.content_type = value
                else:
                    headers[name] = value
            buf = None  # what came is not held through the body's read
            length = request.content_length
            if length and length <= cls.max_body_length:
                request._body = await reader.readexactly(length)
            elif length:
                request._stream = reader  # a body above microdot's bound, unread: dispatch_request answers 413
            return request

    return Head


class _FileBody:
    """A response body that streams a file through one preallocated buffer (microdot takes any object with __anext__)."""

    def __init__(self, handle, chunk):
        self.handle = handle
        self.chunk = chunk

    def __aiter__(self):
        return self

    async def __anext__(self):
        count = self.handle.readinto(self.chunk) if self.handle is not None else 0
        if not count:
            await self.aclose()
            raise StopAsyncIteration
        return memoryview(self.chunk)[:count]

    async def aclose(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class _JsonBody:
    """A response body that writes a JSON document in pieces of about JSON_PIECE bytes (microdot takes any object with __anext__).

    json.dumps of the whole document needs one contiguous block of its size
    (1.2 KB for a two-charger status, up to 8 KB for a configuration) and
    .encode() a second: on a fragmented 64 KB heap such a block was not
    there (a MemoryError in the heap-budget run). Here every scalar is
    encoded on its own, so no block above about that is ever asked for.
    The output is the same JSON text json.dumps gives (no spaces).

    chunk: the Web's PAGE_CHUNK buffer (Web._chunk), shared with the page:
    the pieces are copied into it and a view of it is given out, so a piece
    costs no block of its size either (a joined str and its bytes, about
    265 bytes each, were what the start-up heap could not find in the
    frozen `everything` profile's 66-68 KB runs). Sharing it between
    answers is safe for the reason the page's is: the stream's write()
    copies (or sends) a chunk before anything else runs. None: each piece
    is a joined str encoded (no buffer at hand).
    """

    def __init__(self, doc, chunk=None):
        self._pieces = _walk(doc)
        self._chunk = chunk
        self._carry = None  # a piece that did not fit the buffer's rest: the next chunk's start

    def __aiter__(self):
        return self

    async def __anext__(self):
        chunk = self._chunk
        if chunk is None:
            return self._joined()
        size = 0
        carry = self._carry
        if carry is not None:
            self._carry = None
            if len(carry) > len(chunk):
                return carry  # one value longer than the buffer: as it is
            chunk[: len(carry)] = carry
            size = len(carry)
        pieces = self._pieces
        if pieces is not None and size < JSON_PIECE:
            for piece in pieces:
                data = piece.encode()
                if size + len(data) > len(chunk):
                    self._carry = data
                    break
                chunk[size : size + len(data)] = data
                size += len(data)
                if size >= JSON_PIECE:
                    break
            else:
                self._pieces = None
        if not size:
            raise StopAsyncIteration
        return memoryview(chunk)[:size]

    def _joined(self):
        parts = []
        size = 0
        pieces = self._pieces
        if pieces is None:
            raise StopAsyncIteration
        for piece in pieces:
            parts.append(piece)
            size += len(piece)
            if size >= JSON_PIECE:
                break
        else:
            self._pieces = None
        if not parts:
            raise StopAsyncIteration
        return "".join(parts).encode()


def _walk(value):
    # Containers are opened and closed here; scalars go through json.dumps.
    if isinstance(value, dict):
        yield "{"
        first = True
        for key in value:
            if not first:
                yield ","
            first = False
            yield ('"%s":' % key) if _plain_key(key) else json.dumps(key) + ":"
            yield from _walk(value[key])
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for index in range(len(value)):
            if index:
                yield ","
            yield from _walk(value[index])
        yield "]"
    else:
        yield json.dumps(value)


def _plain_key(key):
    # A key JSON needs no escapes for (every key this API has): no dumps call.
    if not isinstance(key, str):
        return False
    for char in key:
        if char in '"\\' or char < " " or char > "~":
            return False
    return True


def _json(doc, status=200, chunk=None):
    """A Response whose body is `doc` (dict or list) as JSON, streamed in pieces (_JsonBody; chunk: Web._chunk)."""
    from microdot import Response

    return Response(_JsonBody(doc, chunk), status, {"Content-Type": "application/json; charset=UTF-8"})


def _errors(status, path, message, headers=None):
    from microdot import Response

    return Response({"errors": {path: message}}, status, headers)


def _same(given, secret):
    # Constant-time comparison of two byte strings (no early exit on the
    # first difference, none on the length).
    diff = len(given) ^ len(secret)
    size = len(secret)
    for index in range(len(given)):
        diff |= given[index] ^ (secret[index] if index < size else 0)
    return diff == 0


def _b64_password(value):
    # The password of "Basic base64(user:password)"; None when malformed.
    import binascii

    if value is None or not value.startswith("Basic "):
        return None
    try:
        plain = binascii.a2b_base64(value[6:].strip())
    except (ValueError, TypeError):
        return None
    cut = plain.find(b":")
    return plain[cut + 1 :] if cut >= 0 else None


class Web:
    """The status page and the REST API over one site state and one command API.

    state: state.SiteState; api: commands.Commands; password: the admin
    password (str, "" = none set: every change refused); clock: () -> ms
    (platform.ticks_ms); page: path of the gzip-compressed status page;
    host, port: where run() listens.
    """

    def __init__(
        self, state, api, password, clock, log=print, host="127.0.0.1", port=8080, page=PAGE, storage=None, platform=None
    ):
        from microdot import Request

        # microdot's own bounds, as a second line behind _Reader's.
        Request.max_readline = MAX_LINE
        Request.max_content_length = MAX_CONFIG_BODY  # per route: _Reader.limit
        Request.max_body_length = MAX_CONFIG_BODY
        self.state = state
        self.api = api
        self._secret = password.encode() if password else b""
        self.clock = clock
        self.log = log
        self.host = host
        self.port = port
        self.page = page
        self.storage = storage  # the configuration's directory (export and import)
        self.restart_after = None  # set by an import: called once its answer is sent
        self.platform = platform  # the wizard's Wi-Fi scan and join, its meter and charger tests
        self.join = None  # the wizard's trial join (net/webadmin.py): {"ssid", "state", "problem", "ip"}
        self.join_secret = None  # its password, kept only for the finish (never returned)
        self.testing = False  # a meter or charger test is running (one at a time)
        self._chunk = bytearray(PAGE_CHUNK)  # the page's chunks, read in place (no allocation per chunk)
        self.read_ms = READ_MS  # (tests shorten it)
        self.active = 0  # connections being served
        self.failures = 0  # wrong passwords in a row
        self.failed_ms = 0
        self.portal = None  # net/portal.Portal (set by from_config): captive redirects while it is open
        self.hostname = ""  # wifi.hostname: a Host the device answers to as itself
        # No configuration stored: the only state in which the setup
        # wizard's requests need no password (while none is set).
        self.first_boot = False
        # The meter section in force and site.phases (the app's context), for
        # the wizard's meter check; None: read from the stored configuration.
        self.running_meter = None
        self.site_phases = None
        self.server = _Server(self)
        self.server.errorhandler(413)(self.too_large)

    async def run(self):
        """Serve until cancelled (the app's supervised task); a port that cannot be had is tried again every LISTEN_RETRY_S."""
        while True:
            self.log("web: starting the status page and API on http://%s:%d/" % (self.host, self.port))
            try:
                await self.server.start_server(host=self.host, port=self.port)
            except OSError as error:
                self.log("web: cannot listen on port %d (%r); trying again in %d s" % (self.port, error, LISTEN_RETRY_S))
            finally:
                listener = getattr(self.server, "server", None)
                if listener is not None:
                    listener.close()
                    self.server.server = None
            await asyncio.sleep(LISTEN_RETRY_S)

    # -- routes ------------------------------------------------------------------

    async def index(self, request):
        return self.send_page(request, self.page)

    async def setup_page(self, request):
        return self.send_page(request, self.page.replace("status.", "setup."))

    async def settings_page(self, request):
        return self.send_page(request, self.page.replace("status.", "settings."))

    def send_page(self, request, page):
        """A precompressed page from flash, streamed through the one PAGE_CHUNK buffer."""
        from microdot import Response
        import os

        try:
            size = os.stat(page)[6]
            handle = open(page, "rb")
        except OSError:
            return _errors(404, "", "the page (%s) is not installed" % page)
        headers = {
            "Content-Type": "text/html; charset=UTF-8",
            "Content-Encoding": "gzip",
            "Content-Length": str(size),
            "Cache-Control": "no-cache",
        }
        if request.method == "HEAD":
            handle.close()
            return Response(b"", 200, headers)
        return Response(_FileBody(handle, self._chunk), 200, headers)

    async def status(self, request):
        return _json(status_doc(self.state, self.api.values), 200, self._chunk)

    async def settings(self, request):
        if request.method == "GET":
            return _json(self.api.values, 200, self._chunk)
        body = self.change_body(request)
        if not isinstance(body, dict):
            return body
        errors = self.api.set(body)
        if errors:
            return {"errors": errors}, 422
        return _json(self.api.values, 200, self._chunk)

    async def charger(self, request, ref):
        body = self.change_body(request)
        if not isinstance(body, dict):
            return body
        charger = int(ref) if ref.isdigit() else ref
        if self.api.index_of(charger) is None:
            errors = self.api.set_charger(charger, body)
            return {"errors": errors}, 404
        locked = body.pop("locked", None) if "locked" in body else _UNSET
        if locked is not _UNSET:
            # The box's own lock is no setting (Commands.set_lock); checked
            # first, so the call stays all-or-nothing with the settings.
            index = self.api.index_of(charger)
            problem = None
            if type(locked) is not bool:
                problem = "must be true or false"
            elif not self.state.chargers[index].can_lock:
                problem = "this charger's box has no lock ChargeGuard can set"
            if problem is not None:
                return {"errors": {"chargers.%d.locked" % index: problem}}, 422
        if body:
            errors = self.api.set_charger(charger, body)
            if errors:
                return {"errors": errors}, 422
        if locked is not _UNSET:
            errors = self.api.set_lock(charger, locked)
            if errors:
                return {"errors": errors}, 422
        return _json(self.api.values, 200, self._chunk)

    def captive(self, request):
        """The 302 to the setup page for a probe URL or a foreign Host while the portal is open, else None."""
        portal = self.portal
        if portal is None:
            return None
        address = portal.address()
        if address is None:
            return None
        portal.seen(self.clock())
        host = request.headers.get("Host") or ""
        cut = host.rfind(":")
        name = host[:cut] if cut > 0 and not host.endswith("]") else host
        name = name.lower()
        # This device: an address, its host name, or the name under a domain
        # (hostname.local by mDNS, hostname.fritz.box by a router's DNS).
        own = self.hostname
        foreign = bool(name) and not _is_ipv4(name) and name != own and not name.startswith(own + ".")
        if not foreign and request.path not in PROBE_PATHS:
            return None
        from microdot import Response

        location = "http://%s%s%s" % (address, "" if self.port == 80 else ":%d" % self.port, PORTAL_PATH)
        return Response("", 302, {"Location": location, "Cache-Control": "no-store"})

    async def too_large(self, request):
        # microdot's own refusal of a Content-Length above MAX_CONFIG_BODY.
        return _errors(413, "", "request body too large (%d bytes at most, a configuration %d)" % (MAX_BODY, MAX_CONFIG_BODY))

    async def config(self, request):
        """GET: the configuration in force, secrets redacted; PUT: validate and store a whole one, then restart."""
        if request.method == "GET":
            # Before an admin password exists (first boot) the wizard reads it too.
            refused = self.refuse_change(request, True)
            if refused is not None:
                return refused
            self.api.flush(force=True)  # the last run-time change is in the export too
            answer = _with_config(self.storage, _export)
            return _json(answer, 200, self._chunk) if isinstance(answer, dict) else answer
        body = self.change_body(request)
        if not isinstance(body, dict):
            return body
        # Redacted secrets ("***") of an edited export keep the stored values.
        body = _with_config(self.storage, lambda config, current: config.restore_secrets(body, current))
        if not isinstance(body, dict) or "errors" in body:
            return body
        return self.store(body)

    def store(self, body):
        """Validate and store a whole configuration (secrets already restored); restart once the answer is sent.

        The 422 errors, or {"stored": true, "restarting": true}.
        """
        api = self.api
        restart = api.restart
        api.restart = None  # after the answer has gone out, not before
        try:
            errors = api.apply_config(body)
        finally:
            api.restart = restart
        if errors:
            return {"errors": errors}, 422
        self.restart_after = restart
        self.log("web: a new configuration was stored; restarting")
        return {"stored": True, "restarting": True}

    async def setup_state(self, request):
        return await _admin("state", self, request)

    async def setup_step(self, request, step):
        # No password needed before one is set (first boot); the cross-site checks always.
        refused = self.refuse_change(request, True)
        if refused is not None:
            return refused
        body = None
        if request.method == "POST":
            body = self.change_body(request, True)
            if not isinstance(body, dict):
                return body
        return await _admin(step, self, request, body)

    async def reboot(self, request):
        refused = self.refuse_change(request)
        if refused is not None:
            return refused
        self.restart_after = self.api.restart
        self.log("web: restart asked over the web interface")
        return {"restarting": True}

    async def login(self, request):
        refused = self.refuse_change(request)
        if refused is not None:
            return refused
        return "", 204

    # -- security ----------------------------------------------------------------

    def change_body(self, request, setup=False):
        """The JSON object of a change request, or the error Response that refuses it."""
        refused = self.refuse_change(request, setup)
        if refused is not None:
            return refused
        try:
            body = json.loads(str(request.body, "utf-8"))
        except (ValueError, UnicodeError):
            return _errors(400, "", "the body is not valid JSON")
        if not isinstance(body, dict) or not (body or setup):
            return _errors(400, "", "the body must be a JSON object of settings to change, e.g. {\"site.mode\": \"fast\"}")
        return body

    def refuse_change(self, request, setup=False):
        """None when `request` may change settings, else the error Response (403, 415, 429, 401).

        setup: a request of the setup wizard, allowed without a password
        while none is set on a board with no configuration stored
        (first_boot); once a configuration exists, even one without an
        admin password, every change needs the password, so nobody on the
        LAN or the setup network can replace it. The cross-site checks
        always apply.
        """
        headers = request.headers
        if headers.get(CHANGE_HEADER) != "1":
            return _errors(403, "", "a change needs the header %s: 1 (cross-site requests are refused)" % CHANGE_HEADER)
        fetch_site = headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return _errors(403, "", "cross-site request refused")
        origin = headers.get("Origin")
        if origin is not None and origin.split("//", 1)[-1] != headers.get("Host"):
            return _errors(403, "", "cross-site request refused (Origin is not this device)")
        if request.method != "GET" and (request.content_type or "").split(";")[0].strip() != "application/json":
            return _errors(415, "", "the body must be JSON (Content-Type: application/json)")
        if not self._secret:
            if setup and self.first_boot:
                return None
            return _errors(
                403, "", "no admin password is set: every change is refused until admin.password is set in the configuration"
            )
        now = self.clock()
        if self.failures >= MAX_FAILURES:
            wait_ms = LOCKOUT_MS - ticks_diff(now, self.failed_ms)
            if wait_ms > 0:
                return _errors(
                    429, "", "too many wrong passwords: try again in %d s" % (wait_ms // 1000 + 1),
                    {"Retry-After": str(wait_ms // 1000 + 1)},
                )
            self.failures = 0
        given = _b64_password(headers.get("Authorization"))
        if given is None or not _same(given, self._secret):
            self.failures += 1
            self.failed_ms = now
            if given is None:
                return _errors(401, "", "a change needs the admin password (HTTP Basic: any user name, the password)")
            return _errors(401, "", "wrong password")
        self.failures = 0
        return None


def _is_ipv4(name):
    parts = name.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isdigit() or len(part) > 3:
            return False
    return True


async def _admin(name, web, request, body=None):
    # One handler of net/webadmin.py (the wizard's and the settings' rarer
    # requests): loaded for the request; it and every module the request
    # imported (the validator's tables, a candidate's driver) are unloaded
    # after it, so the running controller does not keep their code.
    import sys

    before = list(sys.modules)
    try:
        from chargeguard.net import webadmin

        handler = getattr(webadmin, "on_" + name, None)
        if handler is None:
            return _errors(404, "", "no such setup step: %s" % name)
        answer = await handler(web, request, body)
        # Streamed in pieces like every JSON answer (_JsonBody).
        if isinstance(answer, dict):
            return _json(answer, 200, web._chunk)
        if isinstance(answer, tuple) and isinstance(answer[0], dict):
            return _json(answer[0], answer[1], web._chunk)
        return answer
    except MemoryError:
        return _errors(503, "", "not enough memory for this now: restart the controller and try again")
    finally:
        webadmin = handler = None
        _forget_since(before)
        before = None


def _forget_since(before):
    # Drops every module imported since `before` (a list of sys.modules
    # names) and collects: the code of a rare request is not kept.
    import gc
    import sys

    for name in list(sys.modules):
        if name not in before:
            _forget(name)
    gc.collect()


def _forget(name):
    # Drops a module from sys.modules and from its package.
    import sys

    sys.modules.pop(name, None)
    cut = name.rfind(".")
    package = sys.modules.get(name[:cut]) if cut > 0 else None
    if package is not None and name[cut + 1 :] in package.__dict__:
        delattr(package, name[cut + 1 :])


def _export(config, current):
    return config.redacted(current)


def _with_config(storage, work):
    # Loads config.py (a fifth of the firmware's code) for one call of
    # work(config, current configuration), then unloads it; the error
    # Response when the heap cannot take it.
    import gc
    import sys

    gc.collect()
    try:
        from chargeguard import config

        current = config.load(storage)[0]
        return work(config, current)
    except MemoryError:
        return _errors(503, "", "not enough memory to read the configuration now: restart the controller and try again")
    finally:
        config = current = None
        _forget("chargeguard.config")
        from chargeguard.drivers import CHARGER_MODULES

        for row in CHARGER_MODULES.values():
            if row[1] in sys.modules:
                _forget(row[1])  # the charger rules config.py loaded
        gc.collect()


def status_doc(state, values):
    """The site state as a JSON-ready dict (docs/api.md, GET /api/status); `values`: Commands.values."""
    reading = state.reading
    have = state.have_reading
    doc = {
        "grid": {
            "have_reading": have,
            "age_ms": state.reading_age_ms,
            "failsafe": state.failsafe,
            "phases": state.phases,
            "current_ma": list(reading.current_ma) if have else None,
            "power_w": list(reading.power_w) if have else None,
            "import_w": reading.import_w if have else None,
            "export_w": reading.export_w if have else None,
            "limit_ma": state.limit_ma,
            "headroom_ma": list(state.headroom_ma),
            "month_peak_w": state.month_peak_w,
        },
        "chargers": [],
        "optimiser": None,
        "device": {
            "wifi": state.wifi_state,
            "ssid": state.ssid,
            "ip": state.ip,
            "rssi": state.rssi,
            "uptime_ms": state.uptime_ms,
            "heap_live": state.heap_live,
            "reaction_ms": state.reaction_ms,
            "errors": list(state.errors),
            "error_count": state.error_count,
            "config_source": state.config_source,
            "config_notes": list(state.config_notes),
            "version": state.version,
            "ocpp_discovered": [
                {"charge_point_id": ident, "vendor": vendor, "model": model, "connected": connected}
                for ident, vendor, model, connected in state.ocpp_discovered()
            ],
        },
    }
    chargers = doc["chargers"]
    for index in range(len(state.chargers)):
        charger = state.chargers[index]
        status = charger.status
        settings = charger.settings
        prefix = "chargers.%d." % index
        chargers.append(
            {
                "name": charger.name,
                "mode": values.get(prefix + "mode", settings.mode),
                "mode_in_force": settings.mode,
                "enabled": settings.enabled,
                "locked": status.locked,
                "can_lock": charger.can_lock,
                "manual_a": settings.manual_ma // 1000,
                "min_a": settings.min_ma // 1000,
                "max_a": settings.max_ma // 1000,
                "priority": settings.priority,
                "offered_ma": charger.offered_ma,
                "reason": charger.reason,
                "reachable": status.reachable,
                "car": _CAR[status.car] if 0 <= status.car < len(_CAR) else "unknown",
                "current_ma": list(status.current_ma),
                "power_w": status.power_w,
                "box_offered_ma": status.offered_ma,
                "session_energy_wh": status.session_energy_wh,
                "session_s": status.session_s,
                "error": status.error,
                "ocpp": None if charger.ocpp is None else charger.ocpp.doc(),  # ocppstate.OcppLink
            }
        )
    if state.optimiser is not None:
        doc["optimiser"] = {
            "surplus_w": state.surplus_w,
            "upper_w": state.upper_w,
            "lower_w": state.lower_w,
            "net_target_w": state.net_target_w,
            "quarter_avg_w": state.quarter_avg_w,
            "remaining_wh": state.remaining_wh,
            "peak_limit_w": state.peak_limit_w,
        }
    return doc


# The routes (the module doc lists them): (methods, path, Web method's name). A path is fixed, or a fixed
# prefix and one last <name> segment (_match). A constant: nothing per route on the heap (microdot's route()
# keeps a URLPattern, a bound method and, once matched, a compiled regex and a dict per segment for each).
_ROUTES = (
    (("GET",), "/", "index"),
    (("GET",), "/setup", "setup_page"),
    (("GET",), "/settings", "settings_page"),
    (("GET",), "/api/setup", "setup_state"),
    (("GET", "POST"), "/api/setup/<step>", "setup_step"),
    (("POST",), "/api/reboot", "reboot"),
    (("GET",), "/api/status", "status"),
    (("GET", "POST", "PATCH"), "/api/settings", "settings"),
    (("POST", "PATCH"), "/api/chargers/<ref>", "charger"),
    (("POST",), "/api/login", "login"),
    (("GET", "PUT"), "/api/config", "config"),
)


def _match(pattern, path):
    """What microdot's URLPattern(pattern).match(path) gives for _ROUTES' forms: {} or {name: segment}, else None."""
    cut = pattern.find("<")
    if cut < 0:
        return {} if path == pattern else None
    if not path.startswith(pattern[:cut]) or len(path) == cut or path.find("/", cut) >= 0:
        return None
    return {pattern[cut + 1 : -1]: path[cut:]}


def _Server(web):
    # The class is made here, not at import: no work at import time, and
    # microdot is imported only when the interface is built.
    from microdot import Microdot

    Request = _request_class()

    class Server(Microdot):
        """microdot with bounded reads, deadlines and a cap on connections (see the module docstring)."""

        def __init__(self, web):
            super().__init__()
            self.web = web

        def find_route(self, req):
            # microdot's find_route() over _ROUTES: the same answers (405 for a known path with another
            # method, HEAD as GET, OPTIONS); the handler is the Web's method of that name.
            method = req.method.upper()
            if method == "OPTIONS" and self.options_handler:
                return self.options_handler(req), "", None
            if method == "HEAD":
                method = "GET"
            found = 404
            for methods, pattern, name in _ROUTES:
                req.url_args = _match(pattern, req.path)
                if req.url_args is not None:
                    if method in methods:
                        return getattr(self.web, name), "", None
                    found = 405
            return found, "", None

        def default_options_handler(self, req):
            # microdot's, over _ROUTES.
            allow = []
            for methods, pattern, _ in _ROUTES:
                if _match(pattern, req.path) is not None:
                    allow.extend(methods)
            if "GET" in allow:
                allow.append("HEAD")
            allow.append("OPTIONS")
            return {"Allow": ", ".join(allow)}

        async def handle_request(self, reader, writer):
            web = self.web
            if web.active >= MAX_CLIENTS:
                await _send_close(writer, _plain(503, "busy: too many connections"))
                return
            web.active += 1
            try:
                await self._serve(reader, writer)
            finally:
                web.active -= 1

        async def _serve(self, reader, writer):
            web = self.web
            request = None
            failure = None
            try:
                request = await asyncio.wait_for(
                    Request.create(self, _Reader(reader, web._chunk), writer, writer.get_extra_info("peername")), web.read_ms / 1000
                )
            except TooLarge:
                failure = _errors(
                    413, "", "request too large (line %d, head %d, body %d bytes at most, a configuration %d)"
                    % (MAX_LINE, MAX_HEAD, MAX_BODY, MAX_CONFIG_BODY)
                )
            except asyncio.TimeoutError:
                failure = _errors(408, "", "request not received in time")
            except OSError:
                await _close(writer)
                return
            except MemoryError:
                # Not the client's fault: a 400 would tell it its request
                # was wrong. Try again later, and a line for the owner.
                web.log("web: out of memory while reading a request: answered 503")
                try:
                    failure = _plain(503, "busy: out of memory, try again")
                except MemoryError:
                    await _close(writer)
                    return
            except Exception:
                failure = _errors(400, "", "malformed request")
            if request is None and failure is None:
                await _close(writer)  # the client closed without a request
                return
            if failure is None:
                # The captive portal's redirect comes before any route.
                response = web.captive(request)
                if response is None:
                    response = await self.dispatch_request(request)
            else:
                response = failure
            await _send_close(writer, response, web.log)
            restart = web.restart_after
            if restart is not None:
                web.restart_after = None
                restart()

    return Server(web)


def _plain(status, text):
    from microdot import Response

    return Response(text, status, {"Retry-After": "1"})


async def _send_close(writer, response, log=None):
    try:
        await asyncio.wait_for(response.write(writer), WRITE_MS / 1000)
    except Exception as error:
        # A client gone or too slow is normal; anything else is worth a line.
        if log is not None and not isinstance(error, (OSError, asyncio.TimeoutError)):
            log("web: answer not sent (%r)" % (error,))
    if isinstance(response.body, _FileBody):
        await response.body.aclose()  # also when the client went away mid-file
    await _close(writer)


async def _close(writer):
    try:
        await asyncio.wait_for(writer.aclose(), WRITE_MS / 1000)
    except Exception:
        pass


def from_config(cfg, platform, log, context):
    """What app.py starts for an enabled `web` section (drivers.INTERFACE_MODULES).

    cfg: the `web` section ({"enabled", "port"}); context: the app's dict
    ("site_state", "command_api": calls; "admin_password": the configured
    admin password, "" when none). The platform gives the address:
    platform.web_address(port) (the unix port: 127.0.0.1 and
    CHARGEGUARD_WEB_PORT, default 8080).
    """
    port = cfg.get("port", 80)
    host = "0.0.0.0"
    address = getattr(platform, "web_address", None)
    if address is not None:
        host, port = address(port)
    storage = platform.storage_dir() if hasattr(platform, "storage_dir") else "."
    web = Web(
        context["site_state"](), context["command_api"](), context.get("admin_password") or "", platform.ticks_ms, log,
        host, port, PAGE, storage, platform,
    )
    web.portal = context.get("portal")
    web.running_meter = context.get("meter")
    web.site_phases = context.get("site_phases")
    web.hostname = (context.get("hostname") or "").lower()
    web.first_boot = bool(context.get("first_boot"))
    return web
