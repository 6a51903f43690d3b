"""CPython stand-ins for the clock and sleep MicroPython gives the platform layer.

firmware/chargeguard/platform/common.py imports this module only under
CPython (host tests, tools), where tools/shims is on the path anyway for the
`micropython` stand-in; the device and the unix port never load it, so it
costs them no heap.

The ticks wrap at 2**30, the period of MicroPython's ESP32 port (TICKS_MAX + 1),
so wrap-around bugs show up in host tests as they would on the device.
"""

import asyncio
import time

TICKS_PERIOD = 1 << 30
_TICKS_MASK = TICKS_PERIOD - 1
_TICKS_HALF = TICKS_PERIOD >> 1


def ticks_ms():
    """Milliseconds from an arbitrary point, on the 2**30 ring (time.ticks_ms)."""
    return (time.monotonic_ns() // 1000000) & _TICKS_MASK


def ticks_diff(ticks1, ticks2):
    """Signed ticks1 - ticks2 on the 2**30 ring (time.ticks_diff)."""
    return ((ticks1 - ticks2 + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF


def ticks_add(ticks, delta):
    """ticks + delta on the 2**30 ring (time.ticks_add)."""
    return (ticks + delta) & _TICKS_MASK


def sleep_ms(ms):
    """Awaitable sleep of `ms` milliseconds (asyncio.sleep_ms)."""
    return asyncio.sleep(ms / 1000)
