"""CT clamps end to end: the firmware (build/device, unix port) guards from sample bursts of the ADC fake.

The simulator (tools/sim/run.py, meter "ct") writes the site's per-phase RMS
currents to the file the unix port's ADC fake reads (platform/unix_adc.py);
the fake turns them into bursts of 12-bit samples of a 50 Hz sine around the
mid-rail bias, and meters/ct_meter.py with core/ct.py measure them as on the
board. Checked: the readings follow the site, an overload on L1 is shed
within the product's deadline (the next CT reading, a control decision and
the wallbox's write), the ADC failing ends in the failsafe after
meter_timeout and is said in words, and the guard recovers. Every wait is
for the condition asserted, with a deadline from the product's rules.
"""

import os
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "shims")):
    if path not in sys.path:
        sys.path.insert(0, path)

from chargeguard.app import CONTROL_TICK_MS, STATUS_LINE_MS  # noqa: E402
from chargeguard.meters import ct_meter  # noqa: E402
from run import Simulation, wait_for as wait  # noqa: E402
from test_end_to_end import (  # noqa: E402
    FAST_GUARD,
    HOST_SLACK_S,
    at_16_a,
    charging_one_car_at_16_a,
    fails_safe_while_the_meter_is_silent,
    grid_line,
    intensity_writes,
    said,
    until_the_guard_saw_the_raises,
)

# A new CT reading: at most one POLL_MS after the site changed, plus its window of WINDOW_CYCLES mains cycles.
READING_S = (ct_meter.POLL_MS + ct_meter.WINDOW_CYCLES * 20) / 1000
# The product's deadline for a cut: the reading that shows the overload, the control decision it triggers
# (at the latest the next control tick) and the wallbox's write, on a busy host.
SHED_S = READING_S + CONTROL_TICK_MS / 1000 + HOST_SLACK_S
BREAKER_A = 25
MARGIN_A = 1
LOAD_STEPS = 3


def _amps(sim):
    # "grid  14.1  13.7  14.0 A | ...": the three phases' amperes, or None.
    words = grid_line(sim).split("A")[0].split()[1:]
    try:
        return [float(word) for word in words]
    except ValueError:
        return None


def test_the_guard_sheds_on_ct_clamps_within_its_deadline_and_fails_safe_when_the_adc_fails():
    sim = Simulation(car_delay_s=0.2, run_name="e2e-ct", chargers=1, guard=FAST_GUARD, meter="ct")
    try:
        assert sim.config["meter"]["type"] == "ct"
        # Boot, the first readings and the car ramped to the box's 16 A, drawing it.
        charging_one_car_at_16_a(sim)
        # The reading is the site's (house 2 A + the car on each phase), within the clamp's 0.1 A steps.

        def reads_the_site():
            sim.send_telegram()
            amps = _amps(sim)
            return amps is not None and all(abs(a - 18.0) <= 0.3 for a in amps)

        assert wait(reads_the_site, READING_S + STATUS_LINE_MS / 1000 + HOST_SLACK_S, 0.25), grid_line(sim)
        for step in range(LOAD_STEPS):
            if step:
                sim.site.set_house((2.0, 2.0, 2.0))
                deadline = time.monotonic() + 2 * FAST_GUARD["ramp_interval_s"] + 5 + 4 * READING_S + HOST_SLACK_S
                assert wait(lambda: at_16_a(sim), deadline - time.monotonic(), 0.5), said(sim)
                until_the_guard_saw_the_raises(sim, FAST_GUARD["ev_response_s"])
            house_l1 = 12.0 + step
            sim.site.set_house((house_l1, 2.0, 2.0))
            written_ns = sim.send_telegram()
            assert wait(lambda: intensity_writes(sim.trydan, written_ns), SHED_S, 0.01), said(sim)
            limit = int(intensity_writes(sim.trydan, written_ns)[0].value)
            room = BREAKER_A - MARGIN_A - house_l1
            # The cut fits beside the house (the clamp's reading may be a step under the true current).
            assert room - 1 <= limit <= room, (limit, room, sim.lines[-10:])
        # The ADC stops answering (the sim's pulled cable): the failsafe after meter_timeout, said in words.
        recover_s = READING_S + CONTROL_TICK_MS / 1000 + STATUS_LINE_MS / 1000 + HOST_SLACK_S
        fails_safe_while_the_meter_is_silent(sim, "meter: the ADC does not answer", recover_s)
    finally:
        sim.stop()
