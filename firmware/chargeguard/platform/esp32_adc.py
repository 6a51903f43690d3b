"""The ESP32's CT clamp channels on ADC1 (Platform.open_adc): bursts of samples paced by time.ticks_us."""

import time


class Esp32Adc:
    """The CT clamps' ADC1 channels: burst() samples one stretch, paced by time.ticks_us."""

    def __init__(self, adcs):
        self.adcs = adcs

    def burst(self, bufs, start, count, cycle_us):
        """Sample every channel `count` times evenly over `cycle_us` into bufs[ch][start:start+count] (12 bit).

        Blocks for cycle_us (one mains cycle, 20 ms at 50 Hz): the caller
        yields to the loop between bursts. read_u16() is 0..65535 on every
        port; >> 4 gives the ADC's 12 bits.
        """
        adcs = self.adcs
        channels = len(adcs)
        ticks_us = time.ticks_us
        ticks_diff = time.ticks_diff
        t0 = ticks_us()
        for index in range(count):
            due = index * cycle_us // count
            while ticks_diff(ticks_us(), t0) < due:
                pass
            for ch in range(channels):
                bufs[ch][start + index] = adcs[ch].read_u16() >> 4
