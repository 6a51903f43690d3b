"""Helpers shared by the platform modules (esp32.py, unix.py).

Clock and sleep functions that behave the same under MicroPython and CPython,
and checks of arguments both platforms accept. Imports nothing of the hardware.
"""

import os
import sys
import time

import asyncio
from micropython import const

IS_MICROPYTHON = sys.implementation.name == "micropython"

# Seconds from 1970-01-01 to 2000-01-01 UTC: the Epoch of most bare-metal
# MicroPython ports (ESP32 included), see docs/library/time.rst.
EPOCH_2000_OFFSET = const(946684800)

# A wall time before 2024-01-01 UTC means the clock was never set (the ESP32
# RTC starts at its Epoch after a power loss).
MIN_VALID_WALL_TIME = 1704067200  # not const(): above the ESP32 small-int range

# The period MicroPython's ESP32 port uses for ticks_ms (TICKS_MAX + 1). Under
# CPython the emulation wraps at the same value, so wrap-around bugs show up in
# host tests as they would on the device.
EMU_TICKS_PERIOD = 1 << 30  # not const(): above the ESP32 small-int range
_EMU_TICKS_MASK = const((1 << 30) - 1)
_EMU_TICKS_HALF = const(1 << 29)

DATA_BITS = (5, 6, 7, 8)
STOP_BITS = (1, 2)


def _emu_ticks_ms():
    return (time.monotonic_ns() // 1000000) & _EMU_TICKS_MASK


def emu_ticks_diff(ticks1, ticks2):
    """Signed ticks1 - ticks2 on the emulated 2**30 ring (for CPython)."""
    return ((ticks1 - ticks2 + _EMU_TICKS_HALF) & _EMU_TICKS_MASK) - _EMU_TICKS_HALF


def emu_ticks_add(ticks, delta):
    """ticks + delta on the emulated 2**30 ring (for CPython)."""
    return (ticks + delta) & _EMU_TICKS_MASK


if hasattr(time, "ticks_ms"):
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
else:
    ticks_ms = _emu_ticks_ms
    ticks_diff = emu_ticks_diff
    ticks_add = emu_ticks_add


if hasattr(asyncio, "sleep_ms"):
    # MicroPython: returns a preallocated awaitable, no allocation per call.
    sleep_ms = asyncio.sleep_ms
else:

    def sleep_ms(ms):
        """Awaitable sleep of `ms` milliseconds (CPython)."""
        return asyncio.sleep(ms / 1000)


def check_line(baud, data_bits, parity, stop_bits):
    """Raise ValueError unless the UART line settings are supported.

    `parity` follows machine.UART: None = none, 0 = even, 1 = odd.
    """
    if not isinstance(baud, int) or baud <= 0:
        raise ValueError("baud")
    if data_bits not in DATA_BITS:
        raise ValueError("data_bits")
    if parity is not None and parity not in (0, 1):
        raise ValueError("parity")
    if stop_bits not in STOP_BITS:
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


def getenv(name):
    """The environment variable `name`, or None (both runtimes)."""
    value = os.getenv(name)
    return value if value else None
