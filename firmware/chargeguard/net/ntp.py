"""SNTP time over non-blocking UDP: one sync sets the wall clock.

MicroPython's `ntptime` module uses a blocking socket with a 1 s timeout and
a blocking getaddrinfo: on a flaky network it would stall the guard. This
client sends one SNTP request (RFC 4330) from a non-blocking socket, polls
for the answer between sleeps, and gives up at a deadline.

Protocol facts (RFC 4330): a 48-byte packet; the client sends LI 0, VN 4,
Mode 3 (first byte 0x23) and its own Transmit Timestamp (bytes 40..47),
which the server echoes as Originate Timestamp (bytes 24..31): an answer that
does not echo it is not ours. The answer has Mode 4, a Stratum of 1..15 (0 is
a "kiss-o'-death": try later) and the Transmit Timestamp in seconds since
1900-01-01 at bytes 40..43 (fraction at 44..47). Seconds with the top bit
clear belong to era 1 (from 2036-02-07), so they are 2**32 later.

`sync()` sets the wall clock (Platform.set_wall_time) once. The app's clock
task calls it at boot and every few hours while online, importing this
module only for the sync (and net/dns.py for a server given by name: a
numeric one needs no lookup); offline the RTC keeps the time.
"""

import errno
import socket

from micropython import const

_PORT = const(123)
_TIMEOUT_MS = const(3000)
_POLL_MS = const(20)
_UNIX_TO_NTP = 2208988800  # seconds from 1900-01-01 to 1970-01-01 (RFC 868)


def build_request(stamp):
    """The 48-byte request (bytearray) with `stamp` (0..2**31) as Transmit Timestamp seconds."""
    packet = bytearray(48)
    packet[0] = 0x23  # LI 0, VN 4, Mode 3 (client)
    for index in range(4):
        packet[43 - index] = (stamp >> (8 * index)) & 0xFF
    return packet


def parse_answer(data, request):
    """Seconds since 1970-01-01 UTC (int) from a server's answer to `request`.

    Returns None for a packet that is not the answer to `request`; raises
    ValueError("ntp: ...") for an answer that cannot be used.
    """
    if len(data) < 48 or data[24:32] != request[40:48]:
        return None
    if data[0] & 0x07 != 4:
        raise ValueError("ntp: not a server answer")
    if not 1 <= data[1] <= 15:
        raise ValueError("ntp: server not synchronised (stratum %d)" % data[1])
    seconds = (data[40] << 24) | (data[41] << 16) | (data[42] << 8) | data[43]
    if not data[40] & 0x80:
        seconds += 1 << 32  # era 1 (RFC 4330 section 3)
    if data[44] & 0x80:
        seconds += 1  # round the fraction
    return seconds - _UNIX_TO_NTP


async def query(platform, server, timeout_ms=_TIMEOUT_MS, port=_PORT):
    """The time from `server` (a name or IPv4 address) in seconds since 1970 UTC, within `timeout_ms`.

    Names are looked up with net/dns.py (never blocking). Raises ValueError
    with a short text ("ntp: no answer", "dns: ...") or OSError.
    """
    start = platform.ticks_ms()
    address = server
    if not _numeric(server):
        # Only for a name: net/dns.py (about 2 KB of heap as .mpy) is not
        # loaded beside a sync of a numeric server (the clock's sync is what
        # failed first in the smallest heaps with Wi-Fi, docs/firmware.md).
        from chargeguard.net import dns

        address = await dns.resolve(platform, server, timeout_ms)
    left = timeout_ms - platform.ticks_diff(platform.ticks_ms(), start)
    target = socket.getaddrinfo(address, port, 0, socket.SOCK_DGRAM)[0][-1]
    request = build_request(platform.ticks_ms() & 0x7FFFFFFF)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.sendto(request, target)
        start = platform.ticks_ms()
        while True:
            try:
                data = sock.recv(64)
            except OSError as error:
                if not error.args or error.args[0] != errno.EAGAIN:
                    raise
                data = None
            if data:
                seconds = parse_answer(data, request)
                if seconds is not None:
                    return seconds
                continue
            if platform.ticks_diff(platform.ticks_ms(), start) >= left:
                raise ValueError("ntp: no answer")
            await platform.sleep_ms(_POLL_MS)
    finally:
        sock.close()


async def sync(platform, server, log=print, quiet_drift_s=-1, port=_PORT):
    """Ask `server` once and set the wall clock; True when it was set.

    Logs what happened: the time set (always when quiet_drift_s < 0, else
    only when the clock was more than quiet_drift_s seconds off), or why
    there was no answer. Never raises for a network or protocol failure.
    """
    try:
        seconds = await query(platform, server, _TIMEOUT_MS, port)
    except (OSError, ValueError) as error:
        text = error.args[0] if error.args else type(error).__name__
        if type(text) is int:
            text = "errno %d" % text
        log("time: no answer from %s (%s); the clock runs on" % (server, text))
        return False
    drift = seconds - platform.wall_time()
    platform.set_wall_time(seconds)
    if quiet_drift_s < 0 or drift > quiet_drift_s or drift < -quiet_drift_s:
        log("time: set from %s (%s UTC, was %+d s off)" % (server, _iso(seconds), drift))
    return True


def _numeric(host):
    # Dotted digits only: an IPv4 address, as config.py accepts no host name
    # whose last label is all digits (dns.resolve() returns those as they
    # are). Over the bytes: a character taken from a str is interned for good.
    for code in host.encode():
        if code != 46 and not 48 <= code <= 57:  # '.', '0'..'9'
            return False
    return True


def _iso(seconds):
    # "2026-11-29 20:50:01" from seconds since 1970 (days-to-civil, H. Hinnant).
    days, rest = divmod(seconds, 86400)
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return "%04d-%02d-%02d %02d:%02d:%02d" % (year, month, day, rest // 3600, rest % 3600 // 60, rest % 60)
