"""Free ports on 127.0.0.1 for a server that opens later: the firmware's, a broker's, an emulator's.

    free_port()                     a TCP port
    free_port(socket.SOCK_DGRAM)    a UDP port

Why not bind(("127.0.0.1", 0)) and take what the kernel gives: that port
comes from Linux's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range,
32768-60999 by default), the range every outgoing connection on the
machine takes its local port from. Between the probe and the server's own
bind, seconds later, any connect() may take it, and the server's bind
then fails with EADDRINUSE (a CI run lost an OCPP test to exactly that).
So the port comes from below that range, where connect() never looks,
picked at random (suites run side by side on one machine) and probed.
"""

import os
import random
import socket

LOWEST = 10000  # below it, more of the registered services' ports are taken
ATTEMPTS = 200
# Its own generator, seeded from the OS: a test's random.seed() must not
# make parallel runs pick the same ports.
_pick = random.Random(os.urandom(8))


def ephemeral_floor():
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as numbers:
            return int(numbers.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(kind=socket.SOCK_STREAM):
    """A port on 127.0.0.1 nothing is bound to now, below the ephemeral range; OSError after ATTEMPTS tries."""
    top = ephemeral_floor()
    for _ in range(ATTEMPTS):
        # A range set so low that nothing is left below it: the kernel's pick.
        port = _pick.randrange(LOWEST, top) if top > LOWEST + 1000 else 0
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or in TIME_WAIT): another one
            return probe.getsockname()[1]
    raise OSError("no free port on 127.0.0.1 between %d and %d" % (LOWEST, top))
