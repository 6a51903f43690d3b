"""An on/off load end to end: the built firmware with a V2C Trydan and a 2 kW heater on a Shelly relay.

The firmware (unix port) reads P1 telegrams and commands the Trydan
emulator (priority 1, three phases) and the Shelly relay emulator (priority
2, phase B, one 9 A step: tools/sim/run.py --load). Waits are for the
asserted condition with deadlines from the product's periods, as in
test_end_to_end.py (whose helpers and settings this uses).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from run import DEFAULT_HEAP, LOAD_A, MIXED_EXTRA_HEAP_K, Simulation, wait_for as wait  # noqa: E402
from test_end_to_end import (  # noqa: E402
    BOOT_S,
    CHARGER_POLL_S,
    FAST_GUARD,
    SETTLE_S,
    firmware_output,
    pump_until,
    status_lines,
)

HEAP = "%dK" % (int(DEFAULT_HEAP[:-1]) + MIXED_EXTRA_HEAP_K)
MIN_PAUSE_S = 10
GUARD = dict(FAST_GUARD, min_pause_s=MIN_PAUSE_S)
PV_W = 6900  # 10 A per phase of export at 230 V


def trydan_a(sim):
    return 0 if sim.trydan.setting("Paused") else sim.trydan.setting("Intensity")


def state(sim):
    """(Trydan's offer in A, heater relay on)."""
    return trydan_a(sim), sim.load.output()


def test_the_load_is_switched_off_first_and_on_again_when_its_step_fits():
    sim = Simulation(heap=HEAP, car_delay_s=0.2, run_name="e2e-load", guard=GUARD, load=True)
    try:
        # Sunny: 24 A per phase less 2 A of house plus 10 A of export on
        # each: the Trydan's 16 A and the heater's 9 A (phase B) both fit.
        sim.site.set_house((2.0, 2.0, 2.0), pv_w=PV_W)
        assert wait(lambda: status_lines(sim), BOOT_S), firmware_output(sim)
        assert pump_until(sim, lambda: state(sim) == (16, True), SETTLE_S + CHARGER_POLL_S), (state(sim), firmware_output(sim))
        switched = sim.load.switch_log[-1]
        assert switched[1] is True and switched[2] == 300  # every "on" carries the relay's own off timer
        # A cloud and the kettle on phase B: 12 A of house there, so the
        # Trydan at its 6 A minimum and the heater's 9 A would make 27 A of
        # 24. The guard keeps as many running as fit, lowering currents
        # before it pauses anyone: the step cannot be lowered, so the heater
        # (priority 2) goes and the Trydan gets the rest of phase B.
        sim.site.set_house((2.0, 12.0, 2.0), pv_w=0)
        assert pump_until(sim, lambda: state(sim) == (12, False), SETTLE_S), (state(sim), firmware_output(sim))
        assert not pump_until(sim, lambda: state(sim) != (12, False), SETTLE_S), (state(sim), firmware_output(sim))
        # The kettle is off: once min_pause has passed the heater's step fits
        # again beside the Trydan's minimum, so it is switched on and the
        # Trydan gets what is left of phase B: 24 - 2 - 9 = 13 A.
        sim.site.set_house((2.0, 2.0, 2.0), pv_w=0)
        assert pump_until(sim, lambda: state(sim) == (13, True), MIN_PAUSE_S + 2 * SETTLE_S), (state(sim), firmware_output(sim))
        # The sun is back: the heater's step fits again.
        sim.site.set_house((2.0, 2.0, 2.0), pv_w=PV_W)
        assert pump_until(sim, lambda: state(sim) == (16, True), MIN_PAUSE_S + 2 * SETTLE_S), (state(sim), firmware_output(sim))
        # The status line shows the heater at its one step.
        part = status_lines(sim)[-1].split(" | ")[2].split()
        assert part[0] == "Heater" and float(part[1]) == LOAD_A, part
        assert sim.firmware.alive()
    finally:
        sim.stop()


def test_a_dead_controller_leaves_the_load_off_by_the_relays_own_timer():
    # The emulator's clock is stepped: 300 s pass at once.
    from shelly_load_emulator import ShellyLoadEmulator

    now = [1000.0]
    relay = ShellyLoadEmulator(clock=lambda: now[0]).start()
    try:
        relay.switch(True, 300)
        assert relay.output() and relay.drawn_current_ma()[0] == 8695
        now[0] += 299
        assert relay.output()
        now[0] += 1
        assert not relay.output() and relay.drawn_current_ma() == [0, 0, 0]
        assert relay.status()["source"] == "timer"
    finally:
        relay.stop()
