"""Wrapping millisecond tick arithmetic, the same as MicroPython's time.ticks_*.

The core never reads a clock; callers pass ticks in. These helpers let pure
code compare ticks correctly across the 2**30 wrap on both runtimes.
"""

from micropython import const

TICKS_PERIOD = const(1 << 30)
_TICKS_MASK = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)


def ticks_diff(end, start):
    """Signed difference end - start in ms, valid while |diff| < 2**29."""
    return ((end - start + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF


def ticks_add(ticks, delta):
    return (ticks + delta) & _TICKS_MASK
