"""Helpers shared by the test modules, for CPython (pytest) and the unix port."""

import os
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


def _dirname(path):
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "."


HERE = _dirname(__file__)


class Skip(Exception):
    """Raised by a test that cannot run on this runtime; the reason is args[0]."""


def skip(reason):
    if not IS_MICROPYTHON:
        import pytest

        pytest.skip(reason)
    raise Skip(reason)


def fixture_path(*parts):
    return HERE + "/fixtures/" + "/".join(parts)


def read_fixture(*parts):
    with open(fixture_path(*parts), "rb") as handle:
        return handle.read()


_counter = [0]


def exists(path):
    """True when `path` is there (file or folder); both runtimes (MicroPython's os has no path module)."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def make_tmpdir(tag="t"):
    """A fresh empty directory under build/test-tmp (both runtimes)."""
    root = _dirname(HERE) + "/build/test-tmp"
    for path in (_dirname(root), root):
        try:
            os.mkdir(path)
        except OSError:
            pass
    _counter[0] += 1
    path = "%s/%s-%d-%d" % (root, tag, _pid(), _counter[0])
    try:
        os.mkdir(path)
    except OSError:
        for name in os.listdir(path):
            os.remove(path + "/" + name)
    return path


def _pid():
    getpid = getattr(os, "getpid", None)
    if getpid:
        return getpid()
    # The unix port has no getpid; the clock keeps parallel runs apart enough.
    import time

    return time.ticks_ms() & 0xFFFFFF


class Clock:
    """A fake millisecond clock for both runtimes: `now` moves only when the test or a sleep moves it.

    `sleep_ms(ms)` records ms in `sleeps`, adds it to `now` and gives the
    event loop one turn (so other tasks run, as on the device) without
    really waiting.
    """

    def __init__(self, now=0):
        self.now = now
        self.sleeps = []

    def ticks_ms(self):
        return self.now

    async def sleep_ms(self, ms):
        import asyncio

        self.sleeps.append(ms)
        self.now += ms
        await asyncio.sleep(0)


class PartModule:
    """Stands in for a platform part module (platform/<name>_spi.py, <name>_adc.py): it opens `device`.

    `asked` keeps the channel count the last open_adc was given.
    """

    def __init__(self, device):
        self.device = device
        self.asked = None

    def open_spi(self, platform):
        return self.device

    def open_adc(self, platform, channels):
        self.asked = channels
        return self.device


class PartPlatform:
    """A Platform named "testfake" on `clock` whose platform/testfake_<part>.py opens `device`.

    The driver imports chargeguard.platform.<name>_<part>; the fake is put
    in sys.modules under that name, and kept as `module`.
    """

    name = "testfake"

    def __init__(self, clock, part, device):
        self.ticks_ms = clock.ticks_ms
        self.sleep_ms = clock.sleep_ms
        self.module = PartModule(device)
        sys.modules["chargeguard.platform.testfake_" + part] = self.module


# CPython keeps every int above 256 as an object: replacing one attribute's
# value by another of the same size may still move a few dozen bytes in
# tracemalloc's books. A leak per call would be far above this.
CPYTHON_SLACK = 256


def heap_growth(work, settle=None):
    """Bytes the heap kept after `work()` ran, with the collector off: 0 = it allocates nothing (both runtimes).

    On MicroPython gc.mem_alloc() before and after (small ints are not
    objects there). Under CPython tracemalloc: `settle()` (default: `work`)
    runs first with tracing on, so that objects replaced from untraced ones
    do not count, and up to CPYTHON_SLACK bytes read as 0.
    """
    if IS_MICROPYTHON:
        import gc

        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            work()
            after = gc.mem_alloc()
        finally:
            gc.enable()
        return after - before
    import tracemalloc

    tracemalloc.start()
    try:
        (settle or work)()
        before = tracemalloc.get_traced_memory()[0]
        work()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return 0 if after - before <= CPYTHON_SLACK else after - before


class FakeMachine:
    """A fake `machine` module for importing a platform part against it (both runtimes).

        with FakeMachine("esp32_spi", Pin=FakePin, SPI=FakeSpi) as module:
            ...  # module: chargeguard.platform.esp32_spi, imported fresh

    `machine` holds the keyword arguments as attributes. On leaving, the part
    is unloaded and the `machine` module there was before (if any) is back.
    """

    def __init__(self, part, **members):
        self.part = "chargeguard.platform." + part
        self.machine = _Namespace()
        for name in members:
            setattr(self.machine, name, members[name])
        self.saved = None

    def __enter__(self):
        self.saved = sys.modules.get("machine")
        sys.modules["machine"] = self.machine
        sys.modules.pop(self.part, None)
        __import__(self.part)
        return sys.modules[self.part]

    def __exit__(self, kind, value, trace):
        sys.modules.pop(self.part, None)
        if self.saved is None:
            sys.modules.pop("machine", None)
        else:
            sys.modules["machine"] = self.saved
        return False


class _Namespace:
    pass


async def ticker(gaps, step_ms=10):
    """Wake every step_ms until cancelled, keeping in gaps[0] the longest time (ms) between two turns.

    The event loop's longest stall while the task runs: near step_ms when
    nothing blocks it. For both runtimes (and scripts run on the unix port
    with build/device on their path).
    """
    from chargeguard.platform import common

    last = common.ticks_ms()
    while True:
        await common.sleep_ms(step_ms)
        now = common.ticks_ms()
        gaps[0] = max(gaps[0], common.ticks_diff(now, last))
        last = now
