"""meters/ct_meter.py: CT clamps as the grid meter, through a fake ADC platform; the unix port's fake ADC; config rules.

Runs on CPython and on the MicroPython unix port.
"""

import asyncio
import math

from chargeguard import config
from chargeguard.core import ct
from chargeguard.meters import ct_meter
from support import Clock, PartPlatform


class FakeAdc:
    """Sine currents (A RMS per channel) as ADC steps of an SCT-013-000 with 33 ohm at 3.3 V; counts bursts."""

    def __init__(self, amps, clock):
        self.amps = amps
        self.clock = clock
        self.bursts = []
        self.fail = False

    def burst(self, bufs, start, count, cycle_us):
        if self.fail:
            raise OSError(5, "ADC read failed")
        self.bursts.append((start, count, cycle_us))
        self.clock.now += cycle_us // 1000  # a burst takes one cycle
        for ch in range(len(bufs)):
            peak = self.amps[ch] * 1.41421356 / 0.048828
            for index in range(count):
                value = 2048 + int(round(peak * math.sin(2 * math.pi * index / count + 0.3 * ch)))
                bufs[ch][start + index] = min(4095, max(0, value))


def doc(phases=3, **meter):
    meter = dict({"type": "ct", "vref_mv": 3300}, **meter)  # the fakes' 3.3 V full scale
    return config.complete({"site": {"phases": phases}, "meter": meter})


def make(amps, phases=3, **meter):
    clock = Clock()
    adc = FakeAdc(amps, clock)
    platform = PartPlatform(clock, "adc", adc)
    d = doc(phases, **meter)
    assert config.validate(d) == []
    return ct_meter.from_config(d["meter"], platform, d), adc, clock, platform


def test_a_window_is_ten_whole_cycles_a_burst_each_with_the_loop_free_between():
    meter, adc, clock, platform = make((10.0, 2.5, 0.0))
    assert platform.module.asked == 3
    asyncio.run(meter.sample_window())
    assert adc.bursts == [(48 * i, 48, 20000) for i in range(10)]
    assert clock.sleeps == [0] * 10  # the loop gets a turn after every 20 ms burst


def test_readings_are_per_phase_magnitudes_taken_as_import():
    meter, adc, clock, platform = make((10.0, 2.5, 0.05))
    got = []
    for _ in range(2):  # the first window finds each clamp's bias
        asyncio.run(meter.sample_window())
        meter.measure(clock.now)
        got.append(list(meter.reading.current_ma))
    r = meter.reading
    assert abs(r.current_ma[0] - 10000) <= 40 and abs(r.current_ma[1] - 2500) <= 20, got
    assert r.current_ma[2] == 0  # 50 mA: under the 200 mA noise floor
    assert r.phase_count == 3 and r.power_w[0] == r.current_ma[0] * 230 // 1000
    assert r.tick_ms == clock.now and r.import_w is None
    assert meter.last_error is None


def test_sixty_hz_and_a_calibrated_factor():
    meter, adc, clock, platform = make((8.0,), phases=1, mains_hz=60, factor_ua=46387)  # 5 % under the label
    asyncio.run(meter.sample_window())
    assert adc.bursts[0] == (0, 40, 16666)
    meter.measure(clock.now)
    asyncio.run(meter.sample_window())
    meter.measure(clock.now)
    assert abs(meter.reading.current_ma[0] - 7600) <= 40


def test_each_clamp_has_its_own_factor_when_set():
    # Clamps of one model differ by a few %: L2's own factor (5 % under the
    # label) reads 5 % less; L1 and L3 keep the meter's.
    label = ct.factor_ua(3300, 2000, 33)
    assert ct_meter.factors(doc(factor_ua_l2=label * 95 // 100)["meter"]) == [label, label * 95 // 100, label]
    assert ct_meter.factors(doc(factor_ua=50000, factor_ua_l3=51000)["meter"]) == [50000, 50000, 51000]
    meter, adc, clock, platform = make((8.0, 8.0, 8.0), factor_ua_l2=label * 95 // 100)
    for _ in range(2):
        asyncio.run(meter.sample_window())
        meter.measure(clock.now)
    r = meter.reading
    assert abs(r.current_ma[0] - 8000) <= 40 and abs(r.current_ma[2] - 8000) <= 40, r.current_ma
    assert abs(r.current_ma[1] - 7600) <= 40, r.current_ma
    errors = dict(config.validate(doc(factor_ua_l1=5)))
    assert set(errors) == {"meter.factor_ua_l1"}, errors


def test_the_run_loop_reads_once_a_second_and_an_adc_error_ages_the_reading():
    meter, adc, clock, platform = make((6.0, 6.0, 6.0))
    calls = []

    async def main():
        task = asyncio.create_task(meter.run(lambda: calls.append(clock.now)))
        while len(calls) < 3:
            await asyncio.sleep(0)
        adc.fail = True
        stamp = meter.reading.tick_ms
        for _ in range(50):
            await asyncio.sleep(0)
        task.cancel()
        return stamp

    stamp = asyncio.run(main())
    assert calls[1] - calls[0] == ct_meter.POLL_MS and calls[2] - calls[1] == ct_meter.POLL_MS
    assert meter.reading.tick_ms == stamp  # no new reading: the guard's failsafe follows
    assert meter.last_error == "the ADC does not answer: ADC read failed"


def test_clipping_is_said():
    meter, adc, clock, platform = make((150.0, 1.0, 1.0))
    asyncio.run(meter.sample_window())
    meter.measure(clock.now)
    assert "cut at the ADC's range" in meter.last_error
    assert meter.reading.current_ma[0] >= 70000  # never under the full-scale sine's RMS


def test_config_rules_of_ct_clamps():
    assert config.validate(doc()) == []
    errors = dict(config.validate(doc(mains_hz=55, burden_ohm=0, factor_ua=5)))
    assert set(errors) == {"meter.mains_hz", "meter.burden_ohm", "meter.factor_ua"}, errors
    assert "meter.host" in dict(config.validate(doc(host="x")))  # not a CT field


def test_the_unix_fake_adc_reads_amps_from_a_file():
    import os

    from chargeguard.platform import unix
    from support import make_tmpdir

    path = make_tmpdir() + "/amps"
    with open(path, "w") as handle:
        handle.write("12.5 3\n")
    old = os.getenv("CHARGEGUARD_CT_AMPS")
    platform = unix.Platform({})
    try:
        os.environ["CHARGEGUARD_CT_AMPS"] = path if hasattr(os, "environ") else None
    except AttributeError:
        pass
    if os.getenv("CHARGEGUARD_CT_AMPS") != path:
        platform.board["ct_amps_file"] = path  # MicroPython's os has no environ
    try:
        d = doc(phases=3)
        meter = ct_meter.from_config(d["meter"], platform, d)
        for _ in range(2):
            asyncio.run(meter.sample_window())
            meter.measure(0)
        assert abs(meter.reading.current_ma[0] - 12500) <= 50 and abs(meter.reading.current_ma[1] - 3000) <= 20
        assert meter.reading.current_ma[2] == 0
    finally:
        # Put back whatever the run had, also when an assertion failed: the
        # later tests' firmware processes inherit os.environ.
        if hasattr(os, "environ"):
            if old is None:
                os.environ.pop("CHARGEGUARD_CT_AMPS", None)
            else:
                os.environ["CHARGEGUARD_CT_AMPS"] = old


def test_the_esp32_adc_takes_the_boards_adc1_pins_and_paces_a_burst():
    import json

    import support

    class FakeAdc1:
        ATTN_11DB = 3

        def __init__(self, pin, atten=None):
            self.pin = pin
            self.atten = atten
            self.reads = 0

        def read_u16(self):
            self.reads += 1
            return (self.pin.id * 1000 + self.reads) << 4 & 0xFFFF

    class FakePin:
        def __init__(self, pin_id):
            self.id = pin_id

    class FakeTime:
        def __init__(self):
            self.us = 0

        def ticks_us(self):
            self.us += 7  # each look at the clock takes a little time
            return self.us

        def ticks_diff(self, a, b):
            return a - b

    with support.FakeMachine("esp32_adc", ADC=FakeAdc1, Pin=FakePin) as esp32_adc:
        clock = esp32_adc.time = FakeTime()

        class Board:
            pass

        platform = Board()
        cut = support.HERE.rfind("/")
        root = support.HERE[:cut] if cut > 0 else "."
        with open(root + "/boards/esp32_devkit.json") as handle:
            platform.board = json.load(handle)
        adc = esp32_adc.open_adc(platform, 3)
        assert [a.pin.id for a in adc.adcs] == [36, 39, 34] and adc.adcs[0].atten == FakeAdc1.ATTN_11DB
        bufs = [[0] * 8 for _ in range(3)]
        adc.burst(bufs, 4, 4, 1000)
        assert bufs[0][4:] == [(36 * 1000 + n) & 0xFFF for n in (1, 2, 3, 4)] and bufs[0][:4] == [0] * 4
        assert clock.us >= 750  # the 4th sample waited for 3/4 of the cycle
        platform.board["ct_adc_pins"] = [36, 25]  # GPIO25 is on ADC2
        try:
            esp32_adc.open_adc(platform, 2)
        except ValueError as error:
            assert "GPIO25 is no ADC1 pin" in error.args[0]
        else:
            raise AssertionError("an ADC2 pin was taken")
        try:
            esp32_adc.open_adc(platform, 3)
        except ValueError as error:
            assert "2 CT clamp pins" in error.args[0]
        else:
            raise AssertionError("too few pins were taken")
