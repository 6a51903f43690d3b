"""KEBA KeContact P30 (c-series, x-series) over its UDP interface (port 7090).

Sources: KEBA's "KeContact P20/P30 UDP Programmers Guide" as the client Home
Assistant uses implements it (keba-kecontact 4.3.1 on PyPI: the commands,
the report fields and their units, the 100 ms pause between datagrams, the
failsafe command's format and ranges). On the box: DIP switch DSW1.3 on
(UDP control, "smart home interface"), and no authorisation required (or
the car authorised by RFID first).

The box answers to UDP port 7090 of the sender, whatever port the request
came from, so ChargeGuard binds port 7090 itself (one socket shared by all
Keba boxes, a request to one box at a time, connected to that box so that
the network stack drops anything from another). Every request waits at
most `timeout_ms` for its answer and is sent once more if none came; there
are at least 100 ms between two datagrams (the box drops closer ones).

Reading (two requests): `report 2` (JSON): State (0 starting, 1 not ready,
2 ready, 3 charging, 4 error, 5 authorisation rejected), Plug (cable at the
box 1, locked 3, at the car too 5 / 7), Error1, Enable user, Max curr (mA,
what the box offers now: `status.offered_ma`), Curr user (mA, the last
`curr`), Curr FS (mA) and Tmo FS (s), the failsafe; `report 3`: I1..I3 (mA),
P (mW), E pres (0.1 Wh, the session's energy). Plug below 5: no car; State
3 charging; 1, 2, 5 connected; 0 and 4 unknown ("state 0", "error <Error1>").

Commanding: `curr <mA>` (whole amps x 1000, 6..32 A) and `ena 1` to charge,
`ena 0` to pause (below 6 A); answered "TCH-OK :done" (else the write
failed). Each only when the box differs (per the last report or the last
accepted command), except `curr`, which is also the keep-alive of the
failsafe: sent again every KEEPALIVE_MS (20 s). The failsafe itself is
configured whenever report 2 shows it otherwise: `failsafe 60 <mA> 0` (60 s
without a `curr` and the box falls back to the entry's `failsafe_a`, 0 =
stop; not saved to the box's flash, so it is sent again after a restart).

Errors (`status.error`, `last_error`): "no answer", "network error",
"invalid JSON", "bad <key>", "state <n>", "error <n>", "<command>
refused", "out of memory", "driver: <exception type>". Nothing raises.
"""

import errno
import socket

from micropython import const

from chargeguard.core.model import ChargerStatus
from chargeguard.core.ticks import ticks_diff
from chargeguard.net import jsonscan

_TIMEOUT_MS = const(2000)
PORT = const(7090)
_MIN_A = const(6)
_MAX_A = const(32)
_GAP_MS = const(100)  # between two datagrams to the box
_STEP_MS = const(10)
KEEPALIVE_MS = const(20000)
FAILSAFE_S = const(60)
_BUF = const(1024)  # report 2 is about 600 bytes

_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)

_link = [None]  # the one UDP socket of all Keba boxes (module doc)


class _Link:
    """Port 7090, a receive buffer, and one request in flight."""

    def __init__(self, local_port, platform):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(socket.getaddrinfo("0.0.0.0", local_port)[0][-1])
        self.sock = sock
        self.buf = bytearray(_BUF)
        self.busy = False
        self.peer = None
        self.sent_at = platform.ticks_ms() - _GAP_MS
        self._read = getattr(sock, "recv_into", None) or sock.readinto

    def port(self):
        try:
            return self.sock.getsockname()[1]
        except Exception:
            return None

    def drain(self):
        # Drops what is waiting (a late answer) and returns its length, 0 for nothing.
        try:
            n = self._read(self.buf)
        except OSError as err:
            if err.args and err.args[0] in (errno.EAGAIN, 11):
                return 0
            raise
        return n or 0


def _numeric(host):
    parts = host.split(".")
    return len(parts) == 4 and all(part.isdigit() for part in parts)


def _link_for(platform, local_port):
    if _link[0] is None:
        _link[0] = _Link(local_port, platform)
    return _link[0]


class KebaP30:
    """Driver for one KEBA P30; `status` is updated in place by `poll()`."""

    def __init__(self, host, port, platform, timeout_ms=_TIMEOUT_MS, failsafe_a=0, local_port=PORT):
        self.host = host
        self.port = port
        self._platform = platform
        self.timeout_ms = timeout_ms
        self.failsafe_ma = failsafe_a * 1000
        self.link = _link_for(platform, local_port)
        self._addr = None
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0
        self.error = None  # why the last request failed
        self.body_len = 0
        self._curr = None  # mA the box has from our `curr` (None = unknown)
        self._ena = None
        self._curr_at = 0
        self._fs_ok = False
        self._poll_error = None

    async def _request(self, command):
        # Sends `command`; True once an answer is in link.buf[:body_len].
        link = self.link
        platform = self._platform
        while link.busy:
            await platform.sleep_ms(_STEP_MS)
        link.busy = True
        try:
            if self._addr is None:
                host = self.host
                if not _numeric(host) and platform.dns_server() is not None:
                    from chargeguard.net import dns

                    host = await dns.resolve(platform, host)  # never the blocking getaddrinfo on a name
                self._addr = socket.getaddrinfo(host, self.port, 0, socket.SOCK_DGRAM)[0][-1]
            sock = link.sock
            if link.peer is not self._addr:
                sock.connect(self._addr)
                link.peer = self._addr
            while link.drain():
                pass
            for _ in range(2):
                wait = _GAP_MS - ticks_diff(platform.ticks_ms(), link.sent_at)
                if wait > 0:
                    await platform.sleep_ms(wait)
                sock.send(command)
                link.sent_at = start = platform.ticks_ms()
                while ticks_diff(platform.ticks_ms(), start) < self.timeout_ms:
                    n = link.drain()
                    if n:
                        self.body_len = n
                        return True
                    await platform.sleep_ms(_STEP_MS)
            self.error = "no answer"
            return False
        except (OSError, ValueError) as err:
            link.peer = None
            self.error = "network error" if isinstance(err, OSError) else str(err.args[0]) if err.args else "dns"
            return False
        finally:
            link.busy = False

    async def poll(self):
        """Read report 2 and report 3 into `status`. True on success; never raises."""
        try:
            if not await self._request(b"report 2"):
                return self._failed(self.error, 2)
            buf = self.link.buf
            end = jsonscan.object_end(buf, self.body_len)
            if end < 0:
                return self._failed("invalid JSON", 1)
            num = jsonscan.number
            required = jsonscan.FLAG_REQUIRED
            state = num(buf, end, b'"State"', 0, -1, required)
            plug = num(buf, end, b'"Plug"', 0, -1, required)
            error1 = num(buf, end, b'"Error1"')
            enabled = num(buf, end, b'"Enable user"')
            offered = num(buf, end, b'"Max curr"')
            curr_user = num(buf, end, b'"Curr user"')
            fs_curr = num(buf, end, b'"Curr FS"')
            fs_tmo = num(buf, end, b'"Tmo FS"')
            if not await self._request(b"report 3"):
                return self._failed(self.error, 2)
            end = jsonscan.object_end(buf, self.body_len)
            if end < 0:
                return self._failed("invalid JSON", 1)
            l1 = num(buf, end, b'"I1"')
            l2 = num(buf, end, b'"I2"')
            l3 = num(buf, end, b'"I3"')
            power_mw = num(buf, end, b'"P"')
            energy = num(buf, end, b'"E pres"')

            status = self.status
            status.reachable = True
            status.tick_ms = self._platform.ticks_ms()
            error = None
            if plug < 5:
                status.car = _CAR_NONE
            elif state == 3:
                status.car = _CAR_CHARGING
            elif state in (1, 2, 5):
                status.car = _CAR_CONNECTED
            else:
                status.car = _CAR_UNKNOWN
                error = "error %s" % error1 if state == 4 else "state %d" % state
            currents = status.current_ma
            currents[0] = l1
            currents[1] = l2
            currents[2] = l3
            status.power_w = None if power_mw is None else (power_mw + 500) // 1000
            status.session_energy_wh = None if energy is None else (energy + 5) // 10
            status.offered_ma = 0 if enabled == 0 else offered
            self._ena = enabled
            self._curr = curr_user
            self._fs_ok = fs_tmo == FAILSAFE_S and fs_curr == self.failsafe_ma
            self._poll_error = status.error = error
            if error is not None:
                self.last_error = error
            return True
        except ValueError as err:
            return self._failed("bad %s" % (err.args[0] if err.args else "report"), 1)
        except MemoryError:
            return self._failed("out of memory", 1, True)
        except Exception as err:
            return self._failed("driver: %s" % type(err).__name__, 1)

    async def apply(self, offered_ma):
        """Command the box to offer at most `offered_ma` (0 = pause). True when it has it; never raises."""
        try:
            amps = int(offered_ma) // 1000
            if amps > _MAX_A:
                amps = _MAX_A
            if not self._fs_ok:
                if not await self._command(("failsafe %d %d 0" % (FAILSAFE_S, self.failsafe_ma)).encode()):
                    return False
                self._fs_ok = True
            now = self._platform.ticks_ms()
            if amps < _MIN_A:
                if self._ena != 0 and not await self._command(b"ena 0"):
                    return False
                self._ena = 0
                amps = 0
                # The failsafe's keep-alive goes on while paused.
                if ticks_diff(now, self._curr_at) >= KEEPALIVE_MS and self._curr:
                    if not await self._command(("curr %d" % self._curr).encode()):
                        return False
                    self._curr_at = now
            else:
                ma = amps * 1000
                if self._curr != ma or ticks_diff(now, self._curr_at) >= KEEPALIVE_MS:
                    if not await self._command(("curr %d" % ma).encode()):
                        return False
                    self._curr = ma
                    self._curr_at = now
                if self._ena != 1:
                    if not await self._command(b"ena 1"):
                        return False
                    self._ena = 1
            self.status.offered_ma = amps * 1000
        except MemoryError:
            return self._failed("out of memory", 0, True)
        except Exception as err:
            return self._failed("driver: %s" % type(err).__name__)
        self.status.error = self._poll_error
        return True

    async def _command(self, command):
        self.writes_sent += 1
        if not await self._request(command):
            self._failed(command.decode() + ": " + self.error, 3)
            return False
        if self.link.buf.find(b"TCH-OK", 0, self.body_len) < 0:
            self._failed(command.decode() + " refused")
            return False
        return True

    def _failed(self, message, how=0, no_heap=False):
        # how: 0 = refused, 1 = a poll answered badly, 2 = a poll without an
        # answer, 3 = a command without one. No answer: the box may have
        # restarted (the failsafe is not saved): everything is sent again.
        # no_heap: the cause was a MemoryError (status.no_heap, for app.py).
        status = self.status
        status.error = self.last_error = message
        status.no_heap = no_heap
        if how:
            status.reachable = False
            if how != 3:
                self._poll_error = message
            if how >= 2:
                self._curr = self._ena = None
                self._fs_ok = False
        return False


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type keba_p30."""
    # The local port: 7090 on the device; the unix port's may be moved (CHARGEGUARD_KEBA_PORT) so that a
    # simulator's emulator on the same host answers there.
    local = getattr(platform, "keba_port", None)
    return KebaP30(entry["host"], entry["port"], platform, timeout_ms, entry["failsafe_a"], local(PORT) if local else PORT)
