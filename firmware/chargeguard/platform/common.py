"""Helpers shared by the platform modules (esp32.py, unix.py).

The runtime's clock and sleep, the UART `readinto` both platforms share, and
checks of arguments both platforms accept. Imports nothing of the hardware.

Heap: every function, global and name here stays loaded on the device for
good, so only what both platforms call lives here. The CPython stand-ins for
the clock (ticks that wrap at 2**30 like the ESP32) live in
tools/shims/cpython_platform.py and are never loaded by MicroPython.
"""

import os
import sys

from micropython import const

IS_MICROPYTHON = sys.implementation.name == "micropython"

# readinto() gives up after _POLL_MS without data, looking every _POLL_STEP_MS.
_POLL_MS = const(20)
_POLL_STEP_MS = const(5)

if IS_MICROPYTHON:
    # The runtime's own; sleep_ms returns a preallocated awaitable, so a call
    # allocates nothing.
    from time import ticks_ms, ticks_diff, ticks_add
    from asyncio import sleep_ms
else:
    # CPython: tools/shims is on the path wherever the `micropython` stand-in is.
    from cpython_platform import ticks_ms, ticks_diff, ticks_add, sleep_ms


def bind_clock(platform):
    """Give a Platform the runtime's ticks_ms, ticks_diff, ticks_add and sleep_ms."""
    platform.ticks_ms = ticks_ms
    platform.ticks_diff = ticks_diff
    platform.ticks_add = ticks_add
    platform.sleep_ms = sleep_ms


async def uart_readinto(uart, buf):
    """Copy available bytes into `buf`; return their count (>= 1), or 0 after 20 ms without data.

    The `readinto` method of both platforms' UART objects (bound as a class
    attribute): polls `uart.read_now(buf)` every 5 ms without blocking the
    event loop.
    """
    waited = 0
    while True:
        count = uart.read_now(buf)
        if count:
            # Let other tasks run even when data never stops coming.
            await sleep_ms(0)
            return count
        if waited >= _POLL_MS:
            return 0
        await sleep_ms(_POLL_STEP_MS)
        waited += _POLL_STEP_MS


def check_line(baud, data_bits, parity, stop_bits):
    """Raise ValueError unless the UART line settings are supported.

    `parity` follows machine.UART: None = none, 0 = even, 1 = odd.
    """
    if not isinstance(baud, int) or baud <= 0:
        raise ValueError("baud")
    if data_bits not in (5, 6, 7, 8):
        raise ValueError("data_bits")
    if parity is not None and parity not in (0, 1):
        raise ValueError("parity")
    if stop_bits not in (1, 2):
        raise ValueError("stop_bits")


def makedirs(path):
    """Create `path` and its missing parents; an existing directory is fine."""
    current = ""
    index = 0
    for part in path.split("/"):
        current = part if index == 0 else current + "/" + part
        index += 1
        if not part or part == "." or part == "..":
            continue
        try:
            os.mkdir(current)
        except OSError:
            # EEXIST on both runtimes; any other problem shows at the stat below.
            pass
    os.stat(path)


def unload(name):
    """Drop the per-use module chargeguard.platform.`name` (unix_line, esp32_line) so its heap goes back.

    Out of sys.modules and off its package; imported afresh at the next use.
    """
    sys.modules.pop("chargeguard.platform." + name, None)
    package = sys.modules.get("chargeguard.platform")
    if package is not None and name in package.__dict__:
        delattr(package, name)
