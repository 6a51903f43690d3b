"""The ESP32's CT clamp channels on ADC1: bursts of samples paced by time.ticks_us.

A platform module of its own (platform/<name>_adc.py, `open_adc(platform,
channels)`), loaded by meters/ct_meter.py only for CT clamps: the Platform
class, loaded on every site, carries nothing for them.
"""

import time

import machine


def open_adc(platform, channels):
    """The first `channels` of board["ct_adc_pins"] as an Esp32Adc (`burst(bufs, start, count, cycle_us)`).

    ADC1 pins only (GPIO32-39): ADC2 cannot be read while Wi-Fi is on
    (ESP-IDF GPIO docs). 11 dB attenuation: about 0-3.1 V full scale, the
    mid-rail bias of a CT circuit inside it. Raises ValueError for a board
    without enough ADC1 pins.
    """
    board = platform.board
    pins = board.get("ct_adc_pins") or ()
    if len(pins) < channels:
        raise ValueError("board %s has %d CT clamp pins (ct_adc_pins), %d needed" % (board.get("name"), len(pins), channels))
    adcs = []
    for pin in pins[:channels]:
        if not 32 <= pin <= 39:
            raise ValueError("GPIO%d is no ADC1 pin (32-39): ADC2 cannot be read with Wi-Fi on" % pin)
        adcs.append(machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB))
    return Esp32Adc(adcs)


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
