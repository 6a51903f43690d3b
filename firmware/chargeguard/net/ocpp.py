"""OCPP 1.6J central system: the WebSocket server the charge points connect to, and OCPP-J's RPC on it.

The interface row `("ocpp", ...)` of drivers.INTERFACE_MODULES: `from_config(section, platform, log,
context)` makes the one `CentralSystem` of the device; its `run()` serves the port (config `ocpp.port`,
default 8887; platform.ocpp_address gives the address, on the unix port 127.0.0.1 and
CHARGEGUARD_OCPP_PORT). Each OCPP charger driver (chargers/ocpp.py) registers itself here by its charge
point id when it is made (`register`); the app starts the server whenever a charger of type `ocpp` is
configured, or `ocpp.enabled` is true (to discover boxes with `ocpp.accept_unknown`).

Connection (OCPP-J 1.6, section 3): `ws://<device>:<port>/<anything>/<charge point id>`. The id is the
last non-empty segment of the path, before any query string, percent-decoded; a box that connects to
`/` gives it as its HTTP Basic user name (OCPP security profile 1), or, when neither names it and one
OCPP charger is configured, it is that one. The subprotocol `ocpp1.6` is answered when offered; a box
that offers none is served all the same (several do), one that offers only others is refused (400).
With a `password` configured for the charger, HTTP Basic (user = the id) is required: wrong or missing
is answered 401 and logged without the password. An unknown id is refused (404) unless
`ocpp.accept_unknown`: then it is served as discovered (answered, listed in `discovered`, never
commanded). A box that connects again replaces its old connection (the old one is closed).

RPC (OCPP-J 1.6, section 4): `[2, id, action, payload]` calls, `[3, id, payload]` results, `[4, id,
code, description, details]` errors. Every call from a box gets one answer, its message id echoed as
it came: a result from the driver, or an error: NotImplemented (unknown action), FormationViolation
(not JSON, not a call of 4 members, a payload that is no object), ProtocolError (a required field
missing), TypeConstraintViolation (a field of the wrong type), PropertyConstraintViolation (a value out
of its set), GenericError (the driver failed, with the exception's type). A message that cannot be
read as a call at all is answered with the id "-1". Calls to the box (`CentralSystem.call`, for the
driver): one in flight per box as the specification asks, each with a deadline; the answer or the
error code comes back, a timeout as ("timeout", None).

Liveness: a WebSocket ping every `ocpp.ping_s` (default 20 s: several boxes drop an idle socket after
30-45 s); a box that never pings nor answers pings is not dropped for that: only a failed write, a
broken frame or the peer's close end a connection. At most MAX_SESSIONS connections at once (more are
closed at once); messages up to `ocpp.max_message` bytes (larger: close 1009), read one at a time into
one buffer that every connection shares (websocket.MessageBuffer), allocated at start: a box's message
is copied out of it before it is handled.
"""

import asyncio
import binascii
import json

from micropython import const

from chargeguard.core.ticks import ticks_diff
from chargeguard.net import websocket as ws

MAX_SESSIONS = const(8)  # connections at once: configured chargers (MAX_CHARGERS) and a few discovered
MAX_DISCOVERED = const(4)
CALL_MS = const(10000)  # one call to a box: its answer within this
_HEAD_BYTES = const(1024)  # the upgrade request head
_TICK_MS = const(1000)

CALL = const(2)
CALLRESULT = const(3)
CALLERROR = const(4)

_POINTS = {}  # charge point id (str) -> driver, filled by register()


class OcppError(Exception):
    """A CALLERROR to answer: args[0] the OCPP error code, args[1] the description."""


def register(point):
    """Make a charger driver (chargers/ocpp.OcppCharger) known by its `charge_point_id`."""
    _POINTS[point.charge_point_id] = point


def charge_point_id(path):
    """The charge point id in a request path (bytes): its last non-empty segment, query dropped, %-decoded (str)."""
    end = path.find(b"?")
    if end >= 0:
        path = path[:end]
    path = path.rstrip(b"/")
    segment = path[path.rfind(b"/") + 1 :]
    out = bytearray()
    index = 0
    while index < len(segment):
        byte = segment[index]
        if byte == 37 and index + 2 < len(segment):  # '%'
            try:
                out.append(int(segment[index + 1 : index + 3], 16))
                index += 3
                continue
            except ValueError:
                pass
        out.append(byte)
        index += 1
    return bytes(out).decode()


def basic_credentials(header):
    """(user, password) as bytes from an HTTP Basic Authorization value (bytes), or None."""
    if header is None or header[:6].lower() != b"basic ":
        return None
    try:
        decoded = binascii.a2b_base64(header[6:].strip())
    except Exception:  # not base64
        return None
    colon = decoded.find(b":")
    if colon < 0:
        return None
    return decoded[:colon], decoded[colon + 1 :]


def _same(a, b):
    # Constant time for equal lengths: the time tells a guesser nothing.
    if len(a) != len(b):
        return False
    diff = 0
    for index in range(len(a)):
        diff |= a[index] ^ b[index]
    return diff == 0


class Session:
    """One connection of one charge point: its WebSocket, the call in flight, when it connected."""

    def __init__(self, socket, point, since_ms):
        self.ws = socket
        self.point = point
        self.since_ms = since_ms
        self.task = None
        self.next_id = 0
        self.pending = None  # the message id of our call in flight (str)
        self.answer = None  # (code, payload): "ok" and the result, or the CALLERROR code and its details
        self.event = asyncio.Event()


class CentralSystem:
    """The OCPP server of the device. Attributes for the status: `sessions` (id -> Session), `discovered`
    (id -> the discovered driver), `listening` (the server is up), `last_error` (text)."""

    def __init__(self, cfg, platform, log):
        self.platform = platform
        self.log = log
        address = getattr(platform, "ocpp_address", None)
        self.host, self.port = address(cfg["port"]) if address else ("0.0.0.0", cfg["port"])
        self.ping_ms = cfg["ping_s"] * 1000
        self.max_message = cfg["max_message"]
        # At start, before the small objects of the run: a hole this big may be gone later.
        self.shared = ws.MessageBuffer(cfg["max_message"])
        self.accept_unknown = cfg["accept_unknown"]
        self.sessions = {}
        self.discovered = {}
        self.connections = 0
        self.listening = False
        self.last_error = None

    async def run(self):
        """Serve charge points until cancelled; pings each connection every ping_s."""
        server = await asyncio.start_server(self._serve, self.host, self.port)
        self.listening = True
        self.log("ocpp: central system on ws://%s:%d/<charge point id>" % (self.host, self.port))
        platform = self.platform
        last_ping = platform.ticks_ms()
        try:
            while True:
                await platform.sleep_ms(_TICK_MS)
                now = platform.ticks_ms()
                if self.ping_ms and ticks_diff(now, last_ping) >= self.ping_ms:
                    last_ping = now
                    for session in list(self.sessions.values()):
                        try:
                            await session.ws.send(ws.OP_PING, b"cg")
                        except ws.ConnectionClosed:
                            pass  # its own task ends it
        finally:
            self.listening = False
            server.close()

    async def _serve(self, reader, writer):
        # One connection: handshake, then its messages until it ends.
        self.connections += 1
        session = None
        socket = None
        try:
            if self.connections > MAX_SESSIONS:
                return
            point, protocol, key = await self._handshake(reader, writer)
            if point is None:
                return
            socket = ws.WebSocket(reader, writer, self.shared)
            writer.write(ws.upgrade_response(key, protocol))
            await ws.wait_ms(writer.drain(), ws.WRITE_MS)
            session = Session(socket, point, self.platform.ticks_ms())
            session.task = asyncio.current_task()
            old = self.sessions.get(point.charge_point_id)
            self.sessions[point.charge_point_id] = session
            if old is not None:
                try:
                    await old.ws.close(ws.CLOSE_GOING_AWAY, "replaced")
                except ws.ConnectionClosed:
                    pass
                self._end(old, "replaced by a new connection")
                if old.task is not None:
                    old.task.cancel()
            point.attach(session)
            self.log("ocpp: %s connected" % point.charge_point_id)
            while True:
                opcode, length = await socket.receive()
                if opcode != ws.OP_TEXT:
                    socket.release()
                    await socket.close(ws.CLOSE_UNSUPPORTED, "binary frame")
                await self._message(session, socket, length)
        except ws.ConnectionClosed as closed:
            if session is not None:
                self.log("ocpp: %s disconnected (%d, %s)" % (session.point.charge_point_id, closed.args[0], closed.args[1]))
        except ws.HandshakeError as refused:
            try:
                extra = b'WWW-Authenticate: Basic realm="OCPP"\r\n' if refused.args[0] == 401 else b""
                writer.write(ws.refusal(refused.args[0], refused.args[1], extra))
                await ws.wait_ms(writer.drain(), ws.WRITE_MS)
            except Exception:  # the peer went away first
                pass
        except asyncio.TimeoutError:
            pass  # a head or an answer not in time: the connection goes
        except asyncio.CancelledError:
            pass  # replaced by a new connection of the same box
        except MemoryError:
            self.last_error = "out of memory for a connection"
            self.log("ocpp: " + self.last_error)
        except OSError:
            pass  # the peer reset the connection
        finally:
            self.connections -= 1
            if socket is not None:
                socket.release()  # cancelled or failed while it held the shared buffer
            if session is not None:
                if self.sessions.get(session.point.charge_point_id) is session:
                    del self.sessions[session.point.charge_point_id]
                self._end(session, "disconnected")
            ws.close_stream(writer)

    def _end(self, session, why):
        session.ws._drop()
        if session.pending is not None:
            session.answer = ("disconnected", None)
            session.event.set()
        session.point.detach(session, why)

    async def _handshake(self, reader, writer):
        # (driver, subprotocol to answer, key), or raises HandshakeError.
        head = await ws.wait_ms(ws.receive_head(reader, self.shared, _HEAD_BYTES), ws.HEAD_MS)
        path, key, protocols, authorization = ws.parse_head(head)
        protocol = None
        if protocols:
            if b"ocpp1.6" not in [item.strip() for item in protocols.split(b",")]:
                raise ws.HandshakeError(400, "Bad Request")
            protocol = b"ocpp1.6"
        ident = charge_point_id(path)
        credentials = basic_credentials(authorization)
        if not ident and credentials is not None:
            ident = credentials[0].decode()
        if not ident and len(_POINTS) == 1:
            for ident in _POINTS:
                pass
        point = _POINTS.get(ident)
        if point is None:
            point = self.discovered.get(ident)
        if point is None:
            if not self.accept_unknown or not ident or len(ident) > 48:
                self.log("ocpp: refused unknown charge point %r" % ident[:48])
                raise ws.HandshakeError(404, "Not Found")
            if len(self.discovered) >= MAX_DISCOVERED:
                raise ws.HandshakeError(503, "Service Unavailable")
            from chargeguard.chargers.ocpp import OcppCharger

            point = OcppCharger(ident, clock=self.platform.ticks_ms, discovered=True)
            self.discovered[ident] = point
            self.log("ocpp: discovered charge point %s (not commanded: add it to chargers[] to use it)" % ident)
        password = point.password
        if password:
            if credentials is None or credentials[0].decode() != ident or not _same(credentials[1], password.encode()):
                self.log("ocpp: %s: wrong or missing password" % ident)
                raise ws.HandshakeError(401, "Unauthorized")
        return point, protocol, key

    async def _message(self, session, socket, length):
        # One text message from the box (in the shared buffer, which it releases): a call answered, or
        # the answer to ours.
        point = session.point
        point.heard()
        message_id = "-1"
        try:
            try:
                try:
                    # MicroPython parses the buffer itself (no copy of the message per message);
                    # CPython's json takes no memoryview: a copy there.
                    view = memoryview(socket.buf)[:length]
                    message = json.loads(view if ws.IS_MICROPYTHON else bytes(view))
                finally:
                    view = None
                    socket.release()
            except Exception:  # ValueError, UnicodeError
                raise OcppError("FormationViolation", "invalid JSON")
            if type(message) is not list or not message or type(message[0]) is not int:
                raise OcppError("FormationViolation", "not an OCPP-J message")
            kind = message[0]
            if kind == CALL:
                if len(message) != 4:
                    raise OcppError("FormationViolation", "a call has 4 members")
                message_id = message[1]
                if type(message_id) is not str or type(message[2]) is not str:
                    raise OcppError("FormationViolation", "message id and action must be strings")
                if type(message[3]) is not dict:
                    raise OcppError("FormationViolation", "payload must be an object")
                result = point.on_call(message[2], message[3])
                text = None
            elif kind == CALLRESULT or kind == CALLERROR:
                self._answer(session, message)
                return
            else:
                raise OcppError("FormationViolation", "unknown message type")
        except OcppError as error:
            text = '[4,%s,"%s",%s,{}]' % (json.dumps(message_id), error.args[0], json.dumps(error.args[1]))
        except MemoryError:
            text = '[4,%s,"InternalError","out of memory",{}]' % json.dumps(message_id)
        except Exception as error:  # a driver bug answers, never ends the connection
            text = '[4,%s,"GenericError",%s,{}]' % (json.dumps(message_id), json.dumps(type(error).__name__))
        if text is None:
            # The driver's answer as it is, between its frame's pieces (no joined copy of the message).
            await session.ws.send(ws.OP_TEXT, "[3,", json.dumps(message_id), ",", result, "]")
        else:
            await session.ws.send(ws.OP_TEXT, text)
        point.answered()  # after a BootNotification: its set-up, now the box has the answer

    def _answer(self, session, message):
        # A CALLRESULT / CALLERROR: only the one for our call in flight counts.
        if len(message) < 3 or session.pending is None or message[1] != session.pending:
            return
        if message[0] == CALLRESULT:
            session.answer = ("ok", message[2])
        else:
            session.answer = (message[2] if type(message[2]) is str else "GenericError", None)
        session.pending = None
        session.event.set()

    async def call(self, session, action, payload, timeout_ms=CALL_MS):
        """Send `action` with `payload` (JSON text) to the box; (code, result).

        code "ok" with the result payload (dict), an OCPP error code with None,
        "timeout", "busy" (another call did not end in time) or "disconnected".
        Never raises.
        """
        platform = self.platform
        start = platform.ticks_ms()
        while session.pending is not None:
            if session.ws.closed:
                return "disconnected", None
            if ticks_diff(platform.ticks_ms(), start) >= timeout_ms:
                return "busy", None
            await platform.sleep_ms(20)
        if session.ws.closed:
            return "disconnected", None
        session.next_id += 1
        message_id = "cg%d" % session.next_id
        session.pending = message_id
        session.answer = None
        session.event.clear()
        try:
            # The payload (the driver's JSON text) is sent as it is, after its call's head: no joined copy.
            await session.ws.send(ws.OP_TEXT, '[2,"%s","%s",' % (message_id, action), payload, "]")
            left = timeout_ms - ticks_diff(platform.ticks_ms(), start)
            if left > 0:
                await ws.wait_ms(session.event.wait(), left)
        except ws.ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            pass
        finally:
            # Also when no heap was left for the frame (MemoryError, up to
            # the driver): a call left pending would make the next "busy".
            if session.pending == message_id:
                session.pending = None
        answer = session.answer
        if answer is None:
            return ("disconnected" if session.ws.closed else "timeout"), None
        return answer


def from_config(cfg, platform, log, context):
    """The central system for the config's `ocpp` section (port, ping_s, max_message, accept_unknown)."""
    central = CentralSystem(cfg, platform, log)
    for point in _POINTS.values():
        point.central = central
    return central
