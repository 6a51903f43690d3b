"""The configuration a device boots with, end to end: the built firmware on the unix port against the emulators.

The case from the field: charging under a good configuration, the owner
installs one with `breaker_a: 0` and the device restarts. It must keep
guarding the wallbox under the last good configuration and say which
setting was refused and that the new file was not applied.
"""

import json
import os
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from run import DEFAULT_HEAP, Firmware, Simulation, wait_for as wait  # noqa: E402
from test_end_to_end import until_the_guard_saw_the_raises  # noqa: E402

TELEGRAM_PERIOD_S = 1.0
CONFIG_PROVEN_S = 10.0  # app.CONFIG_PROVEN_MS: the guard has decided this long with a configuration
STATUS_PERIOD_S = 1.0  # app.STATUS_LINE_MS
# ev_response_s 1: the emulator's car follows a limit in 0.2 s (car_delay_s).
FAST_GUARD = {"meter_timeout_s": 3, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1, "ev_response_s": 1}
EV_RESPONSE_S = FAST_GUARD["ev_response_s"]
RUN = "e2e-config"


def pump_until(sim, condition, timeout_s, period_s=0.5):
    """Send telegrams every period_s until condition() holds; True if it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sim.send_telegram()
        end = time.monotonic() + period_s
        while time.monotonic() < end:
            if condition():
                return True
            time.sleep(0.01)
    return condition()


def storage():
    return os.path.join(ROOT, "build", RUN, "storage")


def restart(sim, config_text, remove_last_good=False):
    """Stops the firmware, installs config_text as config.json, boots it again.

    Returns the new firmware's output lines and when the old one had stopped (monotonic ns).
    """
    sim.firmware.stop()
    stopped_ns = time.monotonic_ns()
    with open(os.path.join(storage(), "config.json"), "w") as handle:
        handle.write(config_text)
    if remove_last_good and os.path.exists(os.path.join(storage(), "config.bak")):
        os.remove(os.path.join(storage(), "config.bak"))
    lines = []
    sim.lines = lines
    sim.firmware = Firmware(os.path.join(ROOT, "build", RUN, "root"), storage(), sim.p1.device, DEFAULT_HEAP, lines.append)
    return lines, stopped_ns


def status_lines(lines):
    return [line for line in list(lines) if line.startswith("grid")]


def commanding(lines, amps):
    """The last status line offers `amps` to the charger with nothing holding it back."""
    status = status_lines(lines)
    if not status:
        return False
    name, value, _, reason = status[-1].split(" | ")[1].split()
    return float(value) == amps and reason not in ("ramp", "failsafe", "unavailable")


def output(lines):
    return "\n".join(list(lines)[-40:])


def test_an_invalid_new_config_keeps_the_box_guarded_by_the_last_good_one():
    sim = Simulation(car_delay_s=0.2, run_name=RUN, guard=FAST_GUARD)
    sim.site.set_house((2.0, 2.0, 2.0))
    try:
        assert pump_until(sim, lambda: sim.trydan.setting("Intensity") == 16, 20), output(sim.lines)
        # Once it has guarded for CONFIG_PROVEN_S the configuration is the last good copy.
        kept = lambda: any("kept as the last good configuration" in line for line in sim.lines)  # noqa: E731
        assert pump_until(sim, kept, CONFIG_PROVEN_S + 5), output(sim.lines)
        with open(os.path.join(storage(), "config.bak")) as handle:
            assert json.load(handle)["site"]["breaker_a"] == 25

        bad = json.loads(json.dumps(sim.config))
        bad["site"]["breaker_a"] = 0
        lines, _ = restart(sim, json.dumps(bad, indent=1))
        assert pump_until(sim, lambda: len(status_lines(lines)) >= 2, 20), output(lines)
        assert "config: config.json has 1 refused setting: it was NOT applied" in lines, output(lines)
        assert "config: config.json refused site.breaker_a: must be between 6 and 630 A (is 0)" in lines, output(lines)
        assert any("still guarding with the last good configuration (config.bak" in line for line in lines)
        assert status_lines(lines)[-1].endswith("last good config (config.json not applied)"), output(lines)
        assert "Trydan" in status_lines(lines)[-1]

        # Still guarded: the restarted firmware commands the box again (its status line says what it
        # offers and why, and the box reached it)...
        assert pump_until(sim, lambda: commanding(lines, 16) and sim.trydan.setting("Intensity") == 16, 20), output(lines)
        until_the_guard_saw_the_raises(sim, EV_RESPONSE_S)
        # ... and kettle and oven on L1 leave 24 - 15 = 9 A for the car.
        sim.site.set_house((15.0, 2.0, 2.0))
        written_ns = sim.send_telegram()
        lowered = lambda: any(w.t_ns >= written_ns and w.ok and w.key == "Intensity" and int(w.value) == 9  # noqa: E731
                              for w in sim.trydan.writes())
        assert wait(lowered, TELEGRAM_PERIOD_S), output(lines)
        # The refused file never replaced the last good copy.
        with open(os.path.join(storage(), "config.bak")) as handle:
            assert json.load(handle)["site"]["breaker_a"] == 25
        assert sim.firmware.alive()
        assert not any("MemoryError" in line or "out of memory" in line for line in lines), output(lines)
    finally:
        sim.stop()


def test_with_no_valid_config_ever_nothing_is_commanded_and_the_console_says_what_to_fix():
    sim = Simulation(car_delay_s=0.2, run_name=RUN, guard=FAST_GUARD)
    sim.site.set_house((2.0, 2.0, 2.0))
    try:
        bad = json.loads(json.dumps(sim.config))
        bad["site"]["breaker_a"] = 0
        bad["chargers"][0]["max_a"] = 40
        lines, restarted_ns = restart(sim, json.dumps(bad), remove_last_good=True)
        # Three status periods with telegrams flowing: long enough for any command to go out.
        assert pump_until(sim, lambda: len(status_lines(lines)) >= 3, 20), output(lines)
        assert [w for w in sim.trydan.writes() if w.t_ns >= restarted_ns] == []
        assert "config: config.json refused site.breaker_a: must be between 6 and 630 A (is 0)" in lines, output(lines)
        assert "config: config.json refused chargers.0.max_a: must be between 6 and 32 A (is 40)" in lines
        assert any("no valid configuration: nothing is commanded until config.json is fixed" in line for line in lines)
        assert status_lines(lines)[-1].endswith("NO VALID CONFIG: nothing commanded"), output(lines)
        # With no valid configuration the setup access point opens (net/portal.py), the guard running on.
        assert any(line.startswith("portal: access point 'ChargeGuard-") for line in lines), output(lines)
        assert not os.path.exists(os.path.join(storage(), "config.bak"))
    finally:
        sim.stop()
