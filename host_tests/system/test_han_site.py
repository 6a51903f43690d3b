"""A HAN meter end to end: the built firmware reading DLMS/COSEM lists in HDLC frames on its UART.

The simulator (tools/sim/run.py --meter han) writes the frames a Norwegian
meter pushes on its HAN port (tools/sim/han_emulator.py, built apart from the
firmware's decoder) on the P1 pty at 2400 baud: a List 1 (the import power
alone) each period and a List 2 (the phases) every fourth. The firmware must
cut for a load step seen only in a List 1's total, and end in the failsafe
when the frames stop. Waits are for the asserted condition with deadlines
from the product's periods, as in test_end_to_end.py (its helpers).
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from run import DEFAULT_HEAP, HAN_LIST2_EVERY, Simulation, wait_for as wait  # noqa: E402
from test_end_to_end import (  # noqa: E402
    COMMAND_S,
    CONTROL_TICK_S,
    FAST_GUARD,
    HOST_SLACK_S,
    PUMP_PERIOD_S,
    boot_and_settle,
    firmware_output,
    intensity_writes,
    pause_writes,
    pump_until,
)

# meter_timeout must outlast the per-phase values' period (a List 2 every
# HAN_LIST2_EVERY frames at PUMP_PERIOD_S, plus a List 2's 1 s on the line at
# 2400 baud), else the guard runs on the total alone between them.
GUARD = dict(FAST_GUARD, meter_timeout_s=5)
LINE_S = 1.1  # the longest frame (a List 2, about 260 bytes) at 2400 baud, 10 bits a byte


def start():
    sim = Simulation(heap=os.environ.get("E2E_HEAP", DEFAULT_HEAP), car_delay_s=0.2, run_name="e2e-han",
                     guard=GUARD, meter="han")
    sim.site.set_house((2.0, 2.0, 2.0))
    return sim


def test_a_load_step_in_a_list_1_total_is_cut_for_before_the_next_list_2():
    sim = start()
    try:
        boot_and_settle(sim, 16)
        # Frames until a List 2 shows the car at its 16 A (it follows in
        # 0.2 s; ev_response_s later the guard takes the reading as its answer).
        pump_until(sim, lambda: False, GUARD["ev_response_s"] + PUMP_PERIOD_S)
        while sim.han_frames % HAN_LIST2_EVERY != 1:
            sim.send_telegram()
        # 13 A more on L1. The List 1 frames give only the total (+3 kW); the
        # firmware puts the rise on every phase (core/cadence.py): the car's
        # 16 A must come down before the next List 2 shows the phases.
        sim.site.set_house((15.0, 2.0, 2.0))
        step_ns = time.monotonic_ns()
        while sim.han_frames % HAN_LIST2_EVERY != 0:  # the next frame is a List 1
            written_ns = sim.send_telegram()
            if wait(lambda: intensity_writes(sim.trydan, written_ns), CONTROL_TICK_S + COMMAND_S + HOST_SLACK_S):
                break
        cut = intensity_writes(sim.trydan, step_ns)
        assert cut, firmware_output(sim)
        assert 6 <= int(cut[0].value) <= 9, cut[0].value
        assert sim.firmware.alive()
    finally:
        sim.stop()


def test_frames_that_stop_end_in_the_failsafe_within_meter_timeout():
    sim = start()
    try:
        boot_and_settle(sim, 16)
        last_ns = sim.send_telegram()
        latest_s = GUARD["meter_timeout_s"] + CONTROL_TICK_S + COMMAND_S + HOST_SLACK_S
        assert wait(lambda: pause_writes(sim.trydan, last_ns, 1), latest_s), firmware_output(sim)
        # Frames again: charging comes back by itself.
        assert pump_until(sim, lambda: pause_writes(sim.trydan, last_ns, 0),
                          GUARD["ramp_interval_s"] + HAN_LIST2_EVERY * (PUMP_PERIOD_S + LINE_S) + COMMAND_S + HOST_SLACK_S), \
            firmware_output(sim)
    finally:
        sim.stop()
