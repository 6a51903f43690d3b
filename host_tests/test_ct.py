"""core/ct.py: CT clamp RMS over whole mains cycles, DC offset, calibration, noise floor, on synthetic sample buffers.

Runs on CPython and on the MicroPython unix port. The buffers are what the
ESP32's ADC1 would give: 12-bit samples around a mid-rail bias.
"""

import math
from array import array

from chargeguard.core import ct

VREF_MV = 3300
SCT013_000 = ct.factor_ua(VREF_MV, 2000, 33)  # 100 A : 50 mA, 33 ohm burden


def sine(n, rate_hz, mains_hz, amplitude, bias=2048, phase=0.0, third=0.0, noise=0, seed=1):
    """n samples of a mains current as the ADC sees it (rounded, clipped to 0..4095)."""
    out = array("H")
    state = seed
    for index in range(n):
        angle = 2 * math.pi * mains_hz * index / rate_hz + phase
        value = bias + amplitude * math.sin(angle) + third * math.sin(3 * angle)
        if noise:
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            value += state % (2 * noise + 1) - noise
        out.append(min(4095, max(0, int(round(value)))))
    return out


def expected_ma(amplitude, factor=SCT013_000):
    return amplitude / math.sqrt(2) * factor / 1000


def test_window_is_whole_cycles_for_50_and_60_hz():
    assert ct.window_samples(2400, 50, 10) == 480
    assert ct.window_samples(2400, 60, 10) == 400
    for bad in ((2000, 60, 10), (2400, 55, 1), (2400, 50, 0), (4800, 50, 10)):
        try:
            ct.window_samples(*bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_calibration_factors():
    assert SCT013_000 == 48828  # 3.3 V / 4096 / 33 ohm x 2000 turns = 48.8 mA a step
    assert ct.factor_for_voltage_ct(30, 1000, VREF_MV) == 24169  # SCT-013-030: 30 A per volt
    assert ct.recalibrate(48828, 10000, 9500) == 51397


def test_rms_of_a_sine_over_whole_cycles_at_50_and_60_hz_from_any_start():
    for mains in (50, 60):
        n = ct.window_samples(2400, mains, 10)
        for phase in (0.0, 0.7, 2.1):
            channel = ct.CtChannel(SCT013_000)
            channel.measure(sine(n, 2400, mains, 700, phase=phase), n)  # the first window finds the bias
            got = channel.measure(sine(n, 2400, mains, 700, phase=phase), n)
            want = expected_ma(700)  # 24.2 A
            assert abs(got - want) <= want * 0.002, (mains, phase, got, want)


def test_a_part_cycle_window_depends_on_where_it_starts():
    # Why whole cycles: 1.5 cycles read differently by start phase (2 whole ones do not).
    n = 72  # 1.5 cycles of 50 Hz at 2400 Hz
    reads = []
    for phase in (0.0, math.pi / 2):
        channel = ct.CtChannel(SCT013_000)
        for _ in range(3):
            channel.measure(sine(n, 2400, 50, 700, phase=phase), n)
        reads.append(channel.current_ma)
    assert abs(reads[0] - reads[1]) > expected_ma(700) * 0.03, reads
    whole = []
    for phase in (0.0, math.pi / 2):
        channel = ct.CtChannel(SCT013_000)
        for _ in range(3):
            channel.measure(sine(96, 2400, 50, 700, phase=phase), 96)
        whole.append(channel.current_ma)
    assert abs(whole[0] - whole[1]) <= expected_ma(700) * 0.002, whole


def test_dc_offset_is_tracked_as_the_bias_drifts():
    n = ct.window_samples(2400, 50, 10)
    channel = ct.CtChannel(SCT013_000)
    for bias in (1900, 1900, 2010, 2200, 2200):
        got = channel.measure(sine(n, 2400, 50, 500, bias=bias), n)
        assert abs(got - expected_ma(500)) <= expected_ma(500) * 0.002, (bias, got)
        assert abs(channel.offset - bias) <= 1


def test_true_rms_counts_harmonics():
    n = ct.window_samples(2400, 50, 10)
    channel = ct.CtChannel(SCT013_000)
    buf = sine(n, 2400, 50, 600, third=300)
    channel.measure(buf, n)
    got = channel.measure(buf, n)
    want = math.sqrt(600 ** 2 + 300 ** 2) / math.sqrt(2) * SCT013_000 / 1000
    assert abs(got - want) <= want * 0.002, (got, want)


def test_noise_floor_reads_an_idle_clamp_as_zero():
    n = ct.window_samples(2400, 50, 10)
    quiet = sine(n, 2400, 50, 0, noise=3)
    channel = ct.CtChannel(SCT013_000, floor_ma=200)
    channel.measure(quiet, n)
    assert channel.measure(quiet, n) == 0 and channel.rms8 > 0
    # A real small load above the floor still reads.
    assert channel.measure(sine(n, 2400, 50, 10, noise=3), n) > 200


def test_calibrate_against_a_known_load():
    n = ct.window_samples(2400, 50, 10)
    channel = ct.CtChannel(SCT013_000)
    buf = sine(n, 2400, 50, 180)
    channel.measure(buf, n)
    measured = channel.measure(buf, n)
    # A clamp meter says the kettle draws 9.0 A; the clamp, with a burden off its label, reads otherwise.
    assert abs(measured - 9000) > 2000
    channel.factor_ua = ct.recalibrate(channel.factor_ua, 9000, measured)
    assert abs(channel.measure(buf, n) - 9000) <= 45


def test_clipping_never_under_reads():
    n = ct.window_samples(2400, 50, 10)
    channel = ct.CtChannel(SCT013_000)
    buf = sine(n, 2400, 50, 3000)  # beyond the ADC's range: the peaks are cut
    channel.measure(buf, n)
    got = channel.measure(buf, n)
    assert channel.clipped
    assert got >= 2048 / math.sqrt(2) * SCT013_000 / 1000 * 0.999
    channel.measure(sine(n, 2400, 50, 500), n)
    assert not channel.clipped


def test_a_bad_window_is_refused():
    channel = ct.CtChannel(SCT013_000)
    for n in (0, ct.MAX_WINDOW + 1):
        try:
            channel.measure(array("H", [2048] * 600), n)
        except ValueError:
            continue
        raise AssertionError(n)


def test_isqrt():
    for value in (0, 1, 2, 3, 4, 15, 16, 17, 10 ** 6, 268435455):
        root = ct.isqrt(value)
        assert root * root <= value < (root + 1) * (root + 1), value


def test_measure_allocates_nothing():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    n = ct.MAX_WINDOW
    buf = sine(n, 2400, 50, 2000, noise=5)  # the largest sums a window can make
    channel = ct.CtChannel(ct.factor_ua(VREF_MV, 2500, 10))
    channel.measure(buf, n)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(5):
            channel.measure(buf, n)
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before
