"""The ATM90E32 end to end: the firmware (build/device, unix port) guards from the metering IC's emulator.

tools/sim/atm90e32_emulator.py holds the chip's register image (the site's
signed per-phase currents at 230 V, 50 Hz); the unix port's SPI fake
(platform/unix_spi.py) carries each 32-bit access to it over 127.0.0.1, and
meters/atm90e32.py configures and reads it as on the board. Checked: the
driver and the fake against the emulator (start-up, signed power, export),
then the firmware: an overload on L1 shed within the product's deadline (the
next poll, a control decision and the wallbox's write), a chip that answers
FFFFH ending in the failsafe after meter_timeout, said in words, and the
guard recovering. Every wait is for the condition asserted, with a deadline
from the product's rules.
"""

import asyncio
import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "shims")):
    if path not in sys.path:
        sys.path.insert(0, path)

from atm90e32_emulator import Atm90e32Emulator  # noqa: E402
from chargeguard import config  # noqa: E402
from chargeguard.app import CONTROL_TICK_MS, STATUS_LINE_MS  # noqa: E402
from chargeguard.meters import atm90e32  # noqa: E402
from chargeguard.platform import unix  # noqa: E402
from run import ATM90E32_POLL_MS, Simulation, wait_for as wait  # noqa: E402
from test_end_to_end import (  # noqa: E402
    FAST_GUARD,
    HOST_SLACK_S,
    charging_one_car_at_16_a,
    fails_safe_while_the_meter_is_silent,
    intensity_writes,
    said,
)

READING_S = ATM90E32_POLL_MS / 1000  # a new reading at most one poll after the site changed
# The product's deadline for a cut: the reading that shows the overload, the control decision it triggers
# (at the latest the next control tick) and the wallbox's write, on a busy host.
SHED_S = READING_S + CONTROL_TICK_MS / 1000 + HOST_SLACK_S
BREAKER_A = 25
MARGIN_A = 1


def test_the_driver_through_the_unix_spi_fake_reads_the_emulator_signed():
    emulator = Atm90e32Emulator().start()
    try:
        platform = unix.Platform({"atm90e32_address": emulator.address})
        os.environ.pop("CHARGEGUARD_ATM90E32", None)
        doc = config.complete({"site": {"phases": 3}, "meter": {"type": "atm90e32", "igain_l2": 30000}})
        assert config.validate(doc) == []
        meter = atm90e32.from_config(doc["meter"], platform, doc)
        emulator.chip.set_site((10000, -6000, 0), (230000, 231000, 229000), 4999)
        assert asyncio.run(meter.start()) is True
        assert emulator.chip.writes[:3] == [(0x70, 0x789A), (0x7F, 0x55AA), (0x00, 1)]
        assert emulator.chip.writes[-1] == (0x7F, 0) and emulator.chip.regs[0x66] == 30000
        assert meter.measure(7) is True, meter.last_error
        r = meter.reading
        assert r.power_w == [2300, -1386, 0]
        # L2 reads high by its gain over the emulator's calibration: what an installer calibrates away.
        assert r.current_ma == [10000, -(6000 * 30000 // 25498), 0]
        assert r.voltage_mv == [230000, 231000, 229000]
        # The emulator keeps the chip's rules: relocked, a calibration write is not taken; a soft reset stops metering.
        meter.write(0x61, 1234)
        assert emulator.chip.regs[0x61] == 41820
        meter.write(0x70, 0x789A)
        assert meter.measure(8) is False and "answers 0000H to every read" in meter.last_error
        assert not meter.configured  # the start-up runs again
        assert asyncio.run(meter.start()) is True and meter.measure(8) is True
        emulator.chip.mode = "ones"
        assert meter.measure(8) is False and "answers FFFFH to every read" in meter.last_error
        emulator.chip.mode = "mute"
        started = time.monotonic()
        with pytest.raises(OSError):
            meter.measure(9)
        assert time.monotonic() - started < 1.0  # the fake's deadline, not a hang
    finally:
        emulator.stop()


def test_the_guard_sheds_on_the_atm90e32_within_its_deadline_and_fails_safe_when_the_chip_goes_silent():
    sim = Simulation(car_delay_s=0.2, run_name="e2e-atm90e32", chargers=1, guard=FAST_GUARD, meter="atm90e32")
    try:
        assert sim.config["meter"]["type"] == "atm90e32"
        charging_one_car_at_16_a(sim)
        house_l1 = 13.0
        sim.site.set_house((house_l1, 2.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: intensity_writes(sim.trydan, written_ns), SHED_S, 0.01), said(sim)
        limit = int(intensity_writes(sim.trydan, written_ns)[0].value)
        room = BREAKER_A - MARGIN_A - house_l1
        assert room - 1 <= limit <= room, (limit, room, sim.lines[-10:])
        # The chip goes silent (MISO floats high): the failsafe after meter_timeout, said in words. A chip
        # that read FFFFH everywhere is configured again first: a poll for the start-up, then the reading.
        recover_s = 2 * READING_S + CONTROL_TICK_MS / 1000 + STATUS_LINE_MS / 1000 + HOST_SLACK_S
        fails_safe_while_the_meter_is_silent(sim, "meter: the ATM90E32 answers FFFFH", recover_s)
    finally:
        sim.stop()
