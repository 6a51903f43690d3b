"""CT clamp signal maths: true RMS current from ADC samples over whole mains cycles. Pure: integers, no I/O.

A current transformer (CT) clamp on the mains cable gives a secondary
current I_s = I_p / turns; a burden resistor R turns it into a voltage
around the ADC's mid-rail bias, which the ADC samples (12 bit on the ESP32's
ADC1). Per channel and per window of samples this module gives the RMS of
the primary current in mA:

- whole mains cycles: a window is `window_samples(rate_hz, mains_hz, cycles)`
  samples; over whole cycles the mean of the AC part is exactly 0 and the
  RMS does not depend on where in the cycle the window starts (over a part
  cycle it does: up to +-1/(2 x cycles) of a sine's mean square);
- DC offset tracked: the bias (nominally half the ADC range) drifts with
  temperature and the supply. Each window's own mean is the DC part (the AC
  part averages out over whole cycles); the RMS is taken about it (the
  variance), and the mean becomes the offset the next window's squares are
  taken around (so they stay small integers);
- true RMS: harmonics (a car charger's, a switched-mode supply's) count, as
  they heat the breaker too;
- calibration: `factor_ua(vref_mv, turns, burden_ohm)` (the primary current
  of one ADC step, from the CT's turns ratio, the burden resistor and the
  ADC's full-scale voltage), or `factor_for_voltage_ct(rated_a, rated_mv)`
  for a CT with a built-in burden (SCT-013-030: 30 A gives 1 V), and
  `recalibrate(factor, known_ma, measured_ma)` against a known load (a
  2 kW kettle, measured with a clamp meter);
- noise floor: an RMS below `floor_ma` reads 0 (an unloaded clamp reads a few
  ADC steps of noise, which would otherwise be taken as load);
- clipping: a sample at either end of the ADC range means the peak was
  higher than the burden allows; the RMS then under-reads, so the channel
  reports at least the full-scale sine's RMS and sets `clipped`.

A CT gives the magnitude of the current only (no sign: import and export
look the same) unless a voltage reference is sampled with it; a driver built
on this treats every current as import (load), the safe side for the guard.

Integers only: the sum of squares is kept in two words (below 2**20 each) so
that a window of up to MAX_WINDOW samples never makes a long int (a heap
object on a 32-bit ESP32): measure() allocates nothing.
"""

from micropython import const

ADC_BITS = const(12)  # the ESP32's ADC1
ADC_MAX = const(4095)
MAX_WINDOW = const(512)  # samples per window at most (the two-word division's bound)
_LOW_BITS = const(20)
_LOW_MASK = const(0xFFFFF)
_RMS_SCALE = const(8)  # RMS kept in 1/8 ADC steps
# Whole-window sums stay below 2**30: 4095 x 512 (sum of deviations), and the
# low word below 2**20 + 4095**2.


def window_samples(rate_hz, mains_hz, cycles):
    """Samples in `cycles` whole mains cycles at `rate_hz`; ValueError when that is not a whole number or too many.

    Pick a rate that is a multiple of 300 Hz for 50 and 60 Hz alike (2400 Hz:
    48 and 40 samples a cycle).
    """
    if mains_hz not in (50, 60):
        raise ValueError("mains must be 50 or 60 Hz (is %s)" % mains_hz)
    if cycles < 1 or rate_hz * cycles % mains_hz:
        raise ValueError("%d Hz does not give whole cycles of %d Hz mains in %s cycles" % (rate_hz, mains_hz, cycles))
    n = rate_hz * cycles // mains_hz
    if n > MAX_WINDOW:
        raise ValueError("%d samples a window: at most %d (fewer cycles or a lower rate)" % (n, MAX_WINDOW))
    return n


def factor_ua(vref_mv, turns, burden_ohm):
    """The primary current (uA) of one ADC step: vref / 4096 across the burden, times the turns ratio.

    vref_mv: the ADC's full-scale voltage (ESP32 ADC1 at 11 dB: about 3100 mV,
    the board's calibration gives it); turns: the CT's ratio (SCT-013-000:
    100 A : 50 mA = 2000); burden_ohm: the resistor across its output. Run once
    at start-up.
    """
    if vref_mv <= 0 or turns <= 0 or burden_ohm <= 0:
        raise ValueError("vref, turns and burden must be more than 0")
    # In this order every step stays a small int (SCT-013-000, 33 ohm, 3300 mV: 200000 x 1000).
    return vref_mv * turns // burden_ohm * 1000 // (ADC_MAX + 1)


def factor_for_voltage_ct(rated_a, rated_mv, vref_mv):
    """The same for a CT with a built-in burden: `rated_a` gives `rated_mv` RMS at its output (SCT-013-030: 30 A, 1000 mV)."""
    if rated_a <= 0 or rated_mv <= 0 or vref_mv <= 0:
        raise ValueError("rated current, rated voltage and vref must be more than 0")
    # One step is vref/4096 mV at the output, i.e. rated_a/rated_mv A per mV.
    return rated_a * 1000000 // rated_mv * vref_mv // (ADC_MAX + 1)


def recalibrate(factor, known_ma, measured_ma):
    """The factor that makes `measured_ma` (read with `factor`) read `known_ma` (a known load)."""
    if known_ma <= 0 or measured_ma <= 0:
        raise ValueError("calibrate with a load the clamp measures (known and measured more than 0)")
    return factor * known_ma // measured_ma


def isqrt(n):
    """floor(sqrt(n)) of an int n >= 0, by Newton's method on small ints."""
    if n < 2:
        return n if n > 0 else 0
    x = n
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + n // x) >> 1
    return x


class CtChannel:
    """One CT clamp: `measure(samples, n)` gives the RMS primary current (mA) of a window (see the module doc).

    factor_ua: the primary uA of one ADC step (factor_ua(), recalibrate());
    floor_ma: RMS below it reads 0. After measure(): current_ma, rms8 (RMS in
    1/8 ADC steps), offset (the tracked DC bias, ADC steps), clipped.
    """

    def __init__(self, factor_ua, floor_ma=0):
        self.factor_ua = factor_ua
        self.floor_ma = floor_ma
        self.offset = (ADC_MAX + 1) // 2
        self.current_ma = 0
        self.rms8 = 0
        self.clipped = False

    def measure(self, samples, n):
        """The RMS primary current (mA) of samples[0:n] (n whole cycles, <= MAX_WINDOW); allocates nothing."""
        if n <= 0 or n > MAX_WINDOW:
            raise ValueError("window of %d samples (1..%d)" % (n, MAX_WINDOW))
        off = self.offset
        total = 0
        low = 0
        high = 0
        clipped = False
        for index in range(n):
            x = samples[index]
            if x <= 0 or x >= ADC_MAX:
                clipped = True
            d = x - off
            total += d
            low += d * d
            if low > _LOW_MASK:
                high += low >> _LOW_BITS
                low &= _LOW_MASK
        # Mean square about `off`: (high * 2**20 + low) // n, in small ints.
        mean_sq = (high // n << _LOW_BITS) + (((high % n) << _LOW_BITS) + low) // n
        # The window's mean (rounded): its DC part.
        mean = (2 * total + n) // (2 * n)
        var = mean_sq - mean * mean
        if var < 0:
            var = 0
        rms8 = isqrt(var * _RMS_SCALE * _RMS_SCALE)
        self.offset = off + mean
        if clipped:
            # The peaks were cut: at least a full-scale sine (amplitude of half the range).
            full8 = (ADC_MAX + 1) // 2 * _RMS_SCALE * 1000 // 1414
            if rms8 < full8:
                rms8 = full8
        self.clipped = clipped
        self.rms8 = rms8
        # factor / 8 first: the product stays a small int up to 0.5 A a step (2 kA full scale).
        current = rms8 * (self.factor_ua >> 3) // 1000
        if current < self.floor_ma:
            current = 0
        self.current_ma = current
        return current
