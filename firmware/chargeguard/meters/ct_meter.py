"""CT clamps on the board's ADC1 pins as the grid meter: one clamp per site phase (core/ct.py does the maths).

The meter section (`"type": "ct"`, config.py checks it): `turns` and
`burden_ohm` (the clamp's turns ratio and the burden resistor across it),
`vref_mv` (the ADC's full-scale voltage), or `factor_ua` (the primary uA of
one ADC step once calibrated against a known load, 0 = from turns and
burden), `factor_ua_l1..l3` (one clamp's own factor, 0 = the meter's:
`factors()`), `mains_hz` (50 | 60), `floor_ma` (an RMS below it reads 0). The pins
are the board's `ct_adc_pins` (ADC1 only: ADC2 cannot be read while Wi-Fi is
on), the first `site.phases` of them for L1, L2, L3.

Sampling never stalls the event loop for long: a window of WINDOW_CYCLES
mains cycles is taken one cycle per burst (20 ms at 50 Hz: SAMPLES_PER_CYCLE
samples of every channel, paced by the platform), with the loop free between
bursts; over whole cycles the RMS does not depend on where each burst starts,
so bursts need not be contiguous. One reading every `POLL_MS`.

A clamp measures the magnitude of the current: no sign, so export looks like
import. The reading is taken as import on every phase (current and power
= current x site.voltage_v): the guard then never counts solar export as
room it can give (safe; surplus charging cannot work from CT clamps without
a voltage reference, which this driver does not sample).

Memory: one array of SAMPLES_PER_CYCLE x WINDOW_CYCLES 16-bit samples per
channel (960 bytes), made once; measuring allocates nothing (core/ct.py).
"""

from array import array

from micropython import const

from chargeguard.core import ct
from chargeguard.core.model import GridReading
from chargeguard.core.ticks import ticks_diff

SAMPLE_RATE_HZ = const(2400)  # whole cycles of 50 Hz (48 samples) and 60 Hz (40)
WINDOW_CYCLES = const(10)  # 200 ms at 50 Hz per reading
POLL_MS = const(1000)


class CtMeter:
    """The driver: `reading`, `last_error`, `async run(on_reading)` as every meter; `channels` (core/ct.CtChannel)."""

    def __init__(self, adc, phases, factors, floor_ma, mains_hz, voltage_v, ticks_ms, sleep_ms):
        self.reading = GridReading()
        self.last_error = None
        self.n_readings = 0
        self._adc = adc
        self._phases = phases
        self._per_cycle = ct.window_samples(SAMPLE_RATE_HZ, mains_hz, 1)
        self._cycle_us = 1000000 // mains_hz
        n = self._n = ct.window_samples(SAMPLE_RATE_HZ, mains_hz, WINDOW_CYCLES)
        self.bufs = [array("H", bytes(2 * n)) for _ in range(phases)]
        self.channels = [ct.CtChannel(factors[phase], floor_ma) for phase in range(phases)]
        self._voltage_v = voltage_v
        self._ticks_ms = ticks_ms
        self._sleep_ms = sleep_ms

    async def sample_window(self):
        """Fill every channel's buffer with one window, a cycle per burst, the loop free between bursts."""
        per = self._per_cycle
        for cycle in range(WINDOW_CYCLES):
            self._adc.burst(self.bufs, cycle * per, per, self._cycle_us)
            await self._sleep_ms(0)

    def measure(self, now):
        """The window's RMS per channel into the reading (stamped `now`); True when it is usable."""
        r = self.reading
        clipped = False
        for phase in range(self._phases):
            channel = self.channels[phase]
            current = channel.measure(self.bufs[phase], self._n)
            clipped = clipped or channel.clipped
            r.current_ma[phase] = current
            r.power_w[phase] = current * self._voltage_v // 1000  # magnitude only: taken as import
        r.phase_count = self._phases
        r.tick_ms = now
        self.n_readings += 1
        if clipped:
            self.last_error = "a clamp's signal is cut at the ADC's range: more current than the burden allows;" \
                " read as at least the full-scale current"
        else:
            self.last_error = None
        return True

    async def run(self, on_reading):
        """The meter task: a window every POLL_MS, on_reading() after each. Never returns."""
        ticks_ms = self._ticks_ms
        while True:
            started = ticks_ms()
            try:
                await self.sample_window()
            except OSError as error:
                # The reading ages: the failsafe after meter_timeout.
                self.last_error = "the ADC does not answer: %s" % (error.args[-1] if error.args else error)
            else:
                if self.measure(ticks_ms()):
                    on_reading()
            left = POLL_MS - ticks_diff(ticks_ms(), started)
            await self._sleep_ms(left if 0 < left <= POLL_MS else 0)


def factors(meter_doc):
    """The primary uA of one ADC step per clamp, L1-L3 (3 ints) for a validated `ct` section: a clamp's own
    `factor_ua_lN`, else `factor_ua`, else from `turns`, `burden_ohm` and `vref_mv` (core/ct.factor_ua)."""
    common = meter_doc["factor_ua"] or ct.factor_ua(meter_doc["vref_mv"], meter_doc["turns"], meter_doc["burden_ohm"])
    return [meter_doc.get("factor_ua_l%d" % n) or common for n in (1, 2, 3)]


def from_config(meter_doc, platform, doc):
    """The driver for a validated `meter` section of type "ct"; doc: the whole configuration (site.phases, voltage)."""
    site = doc["site"]
    # The ADC is a platform module of its own, platform/<name>_adc.py, loaded
    # only here: the Platform class every site loads carries nothing for it.
    module = __import__("chargeguard.platform.%s_adc" % platform.name, None, None, ("open_adc",))
    adc = module.open_adc(platform, site["phases"])
    return CtMeter(adc, site["phases"], factors(meter_doc), meter_doc["floor_ma"], meter_doc["mains_hz"], site["voltage_v"],
                   platform.ticks_ms, platform.sleep_ms)
