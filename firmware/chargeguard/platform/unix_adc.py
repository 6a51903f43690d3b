"""The unix port's fake CT clamp ADC: sine currents read from a file, as ADC1 steps.

A platform module of its own (platform/<name>_adc.py, `open_adc(platform,
channels)`), loaded by meters/ct_meter.py only for CT clamps.
"""

import os


def open_adc(platform, channels):
    """A UnixAdc whose clamps carry the RMS currents in the file CHARGEGUARD_CT_AMPS (or board["ct_amps_file"]).

    The file holds one number of amperes per channel ("10.5 2 0.3"), read
    again at every burst (a simulator writes it); the fake adds the
    mid-rail bias and the ADC's 12-bit range as an SCT-013-000 with a 33 ohm
    burden at 3.3 V would give them. OSError when no file is configured.
    """
    path = os.getenv("CHARGEGUARD_CT_AMPS") or platform.board.get("ct_amps_file")
    if not path:
        raise OSError(19, "no CT clamps on the unix port: set CHARGEGUARD_CT_AMPS to a file of amperes")  # ENODEV
    return UnixAdc(path, channels)


class UnixAdc:
    """The fake ADC of open_adc(): sine currents from a file, sampled as the real ADC1 would be (see open_adc)."""

    AMPS_PER_STEP = 0.048828  # SCT-013-000 (2000 turns), 33 ohm, 3.3 V / 4096

    def __init__(self, path, channels):
        self.path = path
        self.channels = channels
        self.phase = 0.0

    def burst(self, bufs, start, count, cycle_us):
        """Fill bufs[ch][start:start+count] with one stretch of `cycle_us` (at once: no real time passes)."""
        import math

        try:
            with open(self.path) as handle:
                amps = [float(word) for word in handle.read().split()]
        except (OSError, ValueError) as error:
            raise OSError(5, "CT amps file %s: %s" % (self.path, error))
        for ch in range(self.channels):
            rms = amps[ch] if ch < len(amps) else 0.0
            peak = rms * 1.41421356 / self.AMPS_PER_STEP
            buf = bufs[ch]
            for index in range(count):
                value = 2048 + int(round(peak * math.sin(2 * math.pi * index / count + self.phase)))
                buf[start + index] = 0 if value < 0 else 4095 if value > 4095 else value
