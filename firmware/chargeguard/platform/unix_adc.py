"""The unix port's fake CT clamp ADC (Platform.open_adc): sine currents read from a file, as ADC1 steps."""

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
