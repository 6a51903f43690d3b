"""The sim's solar day, end to end: the built firmware with a car in solar mode, PV in the simulated house.

The car must start only once the export has been at or above the upper
threshold for start_delay, and pause only once the import has been beyond
the lower threshold for stop_delay (the sustain). Every wait is for the
condition asserted, with a deadline made of the sim's own solar settings
(tools/sim/run.py SIM_SOLAR) and the firmware's periods; the lower bounds
are exact (a start or a pause before its delay fails the test).
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from house import SOLAR_DAY, SOLAR_HOUSE_A  # noqa: E402
from run import DEFAULT_SCENE_S, SIM_SOLAR, SOLAR_HEAP, Simulation, day_length_s, sim_config  # noqa: E402
from run import settings_text, wait_for as wait  # noqa: E402
from test_end_to_end import (  # noqa: E402
    BOOT_S,
    COMMAND_S,
    HOST_SLACK_S,
    STATUS_LINE_S,
    firmware_output,
    pause_writes,
    status_lines,
)

TELEGRAM_S = 1.0
UPPER_W = 4000  # the ECO on band's thresholds, the sim's (and the product's) defaults
LOWER_W = -500
HOUSE_W = int(sum(SOLAR_HOUSE_A) * 230)


def start():
    return Simulation(heap=SOLAR_HEAP, car_delay_s=0.2, run_name="e2e-solar", mode="solar", solar=SIM_SOLAR)


def send_until(sim, condition, timeout_s):
    """A telegram every TELEGRAM_S until condition() holds; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sim.send_telegram()
        end = min(deadline, time.monotonic() + TELEGRAM_S)
        while time.monotonic() < end:
            if condition():
                return True
            time.sleep(0.01)
    return condition()


def reason(sim):
    lines = status_lines(sim)
    return lines[-1].split(" | ")[1].split()[-1] if lines else None


def test_a_car_in_solar_mode_starts_after_the_start_delay_and_pauses_after_the_sustain():
    sim = start()
    try:
        trydan = sim.trydan
        sim.site.set_house(SOLAR_HOUSE_A, 0)
        assert wait(lambda: status_lines(sim), BOOT_S), firmware_output(sim)
        assert send_until(sim, lambda: reason(sim) == "solar_wait", STATUS_LINE_S + HOST_SLACK_S), firmware_output(sim)

        # One sun that gives 300 W more export than the upper threshold.
        sim.site.set_house(SOLAR_HOUSE_A, UPPER_W + 300 + HOUSE_W)
        crossed_ns = sim.send_telegram()
        start_s = SIM_SOLAR["start_delay_s"]
        started = send_until(
            sim, lambda: pause_writes(trydan, crossed_ns, 0), start_s + TELEGRAM_S + COMMAND_S + HOST_SLACK_S
        )
        assert started, firmware_output(sim)
        unpaused_ns = pause_writes(trydan, crossed_ns, 0)[0].t_ns
        assert (unpaused_ns - crossed_ns) / 1e9 >= start_s, "started before start_delay"
        assert any("solar_start_delay" in line for line in status_lines(sim)), firmware_output(sim)

        # Sundown: the house and the car import, beyond the lower threshold.
        # The car follows within its response delay (0.2 s here).
        assert send_until(sim, lambda: trydan.charge_power_w() > -LOWER_W, TELEGRAM_S + HOST_SLACK_S)
        sim.site.set_house(SOLAR_HOUSE_A, 0)
        below_ns = sim.send_telegram()
        stop_s = SIM_SOLAR["stop_delay_s"]
        # min_on runs from the start; whichever ends later holds the car.
        hold_s = max(stop_s, SIM_SOLAR["min_on_s"] - (below_ns - unpaused_ns) / 1e9)
        paused = send_until(
            sim, lambda: pause_writes(trydan, below_ns, 1), hold_s + TELEGRAM_S + COMMAND_S + HOST_SLACK_S
        )
        assert paused, firmware_output(sim)
        paused_ns = pause_writes(trydan, below_ns, 1)[0].t_ns
        assert (paused_ns - below_ns) / 1e9 >= stop_s, "paused before the sustain"
        seen = " ".join(status_lines(sim))
        assert "solar_stop_delay" in seen, firmware_output(sim)
        assert send_until(sim, lambda: reason(sim) == "below_threshold", STATUS_LINE_S + HOST_SLACK_S), firmware_output(
            sim
        )
    finally:
        sim.stop()


def test_the_solar_day_shows_each_timer_and_a_cloud_shorter_than_the_sustain():
    # Scenes that show a timer outlast it; the cloud (sun below the house
    # plus a car at its minimum) passes before the sustain ends.
    start_scene = [scene for scene in SOLAR_DAY if scene.pv_w - HOUSE_W >= UPPER_W][0]
    assert start_scene.hold_s >= SIM_SOLAR["start_delay_s"] + 5 * TELEGRAM_S
    car_min_w = 6 * 3 * 230
    clouds = [scene for scene in SOLAR_DAY if scene.text.startswith("a cloud")]
    assert clouds
    for cloud in clouds:
        assert cloud.pv_w - HOUSE_W - car_min_w < LOWER_W, "the cloud must start the sustain"
        assert cloud.hold_s < SIM_SOLAR["stop_delay_s"], cloud.clock
    sunset = [scene for scene in SOLAR_DAY if scene.clock == "17:00"][0]
    assert sunset.hold_s >= SIM_SOLAR["stop_delay_s"] + 5 * TELEGRAM_S
    assert day_length_s(DEFAULT_SCENE_S, SOLAR_DAY) <= 4 * 60


def test_the_solar_sim_configuration_passes_the_firmware_validator_and_is_explained():
    from chargeguard import config

    doc = sim_config([8080], mode="solar", solar=SIM_SOLAR)
    _, errors = config.check(doc)
    assert not errors, errors
    text = "\n".join(settings_text(doc, DEFAULT_SCENE_S))
    assert "start_delay %d s" % SIM_SOLAR["start_delay_s"] in text
    assert "stop_delay %d s" % SIM_SOLAR["stop_delay_s"] in text
    assert "at least %d W" % UPPER_W in text and "beyond %d W" % -LOWER_W in text
