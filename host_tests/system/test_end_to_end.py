"""End to end: the built firmware on the MicroPython unix port against the emulators.

P1 telegrams go in over a pty, the firmware decides, and the V2C Trydan
emulator records the HTTP writes that come out. These check behaviour with
deadlines taken from the product rules (one telegram period, meter_timeout),
with the emulators' own clocks; speed figures are measured by `make bench`.
"""

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from run import Simulation, wait_for as wait  # noqa: E402

TELEGRAM_PERIOD_S = 1.0
# Fast settings so the scenarios take seconds, not minutes.
FAST_GUARD = {"meter_timeout_s": 3, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1}


@pytest.fixture(scope="module", autouse=True)
def built_firmware():
    # `make test` builds first; a bare pytest run builds here.
    if not os.path.exists(os.path.join(ROOT, "build", "device", "main.py")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build.py")], check=True)


def intensity_writes(trydan, since_ns):
    return [w for w in trydan.writes() if w.t_ns >= since_ns and w.ok and w.key == "Intensity"]


def pause_writes(trydan, since_ns, value):
    return [w for w in trydan.writes() if w.t_ns >= since_ns and w.ok and w.key == "Paused" and int(w.value) == value]


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


def charging_at(trydan, amps):
    return trydan.setting("Intensity") == amps and trydan.setting("Paused") == 0


def settled(sim, *amps):
    """The firmware's last status line offers these currents (whole A) with nothing holding them back."""
    lines = [line for line in sim.lines if line.startswith("grid")]
    if not lines:
        return False
    parts = lines[-1].split(" | ")[1:]
    for index, want in enumerate(amps):
        name, value, _, reason = parts[index].split()
        if float(value) != want or reason in ("ramp", "failsafe"):
            return False
        if not charging_at(sim.trydans[index], want):
            return False
    return True


def start(**kwargs):
    sim = Simulation(heap=os.environ.get("E2E_HEAP", "96K"), car_delay_s=0.2, run_name="e2e", guard=FAST_GUARD, **kwargs)
    sim.site.set_house((2.0, 2.0, 2.0))
    return sim


def firmware_output(sim):
    return "\n".join(sim.lines[-30:])


def test_load_step_lowers_the_intensity_within_one_telegram_period():
    sim = start()
    try:
        assert pump_until(sim, lambda: settled(sim, 16), 20), firmware_output(sim)
        # Kettle and oven on L1: 24 A limit - 15 A of house = 9 A for the car.
        sim.site.set_house((15.0, 2.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: intensity_writes(sim.trydan, written_ns), TELEGRAM_PERIOD_S), firmware_output(sim)
        write = intensity_writes(sim.trydan, written_ns)[0]
        assert int(write.value) == 9
        assert write.t_ns - written_ns < TELEGRAM_PERIOD_S * 1e9
        # Worse: only 4 A left on L1, below the 6 A minimum: the car is paused.
        sim.site.set_house((20.0, 2.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: pause_writes(sim.trydan, written_ns, 1), TELEGRAM_PERIOD_S), firmware_output(sim)
        assert sim.firmware.alive()
    finally:
        sim.stop()


def test_silent_meter_puts_the_charger_on_failsafe_within_meter_timeout():
    sim = start()
    try:
        assert pump_until(sim, lambda: settled(sim, 16), 20), firmware_output(sim)
        last_ns = sim.send_telegram()
        timeout_s = FAST_GUARD["meter_timeout_s"]
        # No telegram for longer than meter_timeout: failsafe_a is 0, so a pause.
        assert wait(lambda: pause_writes(sim.trydan, last_ns, 1), timeout_s + 2.5), firmware_output(sim)
        paused = pause_writes(sim.trydan, last_ns, 1)[0]
        delay_s = (paused.t_ns - last_ns) / 1e9
        assert timeout_s <= delay_s <= timeout_s + 2.0, delay_s
        assert any("failsafe" in line for line in sim.lines), firmware_output(sim)
        # Readings come back: charging resumes by itself.
        back_ns = time.monotonic_ns()
        assert pump_until(sim, lambda: pause_writes(sim.trydan, back_ns, 0), 10), firmware_output(sim)
    finally:
        sim.stop()


def test_hung_wallbox_does_not_delay_commands_to_the_other():
    sim = start(chargers=2)
    first, second = sim.trydans
    try:
        # 24 A on each phase less 2 A of house: 16 A for the first, 6 A for the second.
        assert pump_until(sim, lambda: settled(sim, 16, 6), 30), firmware_output(sim)
        sim.site.set_house((1.0, 1.0, 1.0))
        assert pump_until(sim, lambda: settled(sim, 16, 7), 10), firmware_output(sim)
        first.set_mode("hang")  # accepts connections, never answers
        # Let the firmware run into the hung box (polls every 5 s, 2 s timeout).
        pump_until(sim, lambda: False, 6)
        sim.site.set_house((2.0, 2.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: intensity_writes(second, written_ns), TELEGRAM_PERIOD_S), firmware_output(sim)
        assert int(intensity_writes(second, written_ns)[0].value) == 6
        # The guard keeps deciding every telegram: status lines keep coming.
        lines_before = len(sim.lines)
        pump_until(sim, lambda: False, 3)
        assert len(sim.lines) - lines_before >= 2
        assert any("unavailable" in line for line in sim.lines[lines_before:]), firmware_output(sim)
    finally:
        sim.stop()


def test_firmware_runs_in_a_96k_heap_and_reports_it():
    sim = start()
    try:
        assert pump_until(sim, lambda: any("heap" in line for line in sim.lines), 25), firmware_output(sim)
        assert sim.firmware.alive()
        assert not any("MemoryError" in line for line in sim.lines), firmware_output(sim)
    finally:
        sim.stop()
