"""End to end: the built firmware on the MicroPython unix port against the emulators.

P1 telegrams go in over a pty, the firmware decides, and the V2C Trydan
emulator records the HTTP writes that come out. Every wait is for the
condition the test asserts, with a deadline built from the product's own
periods (telegram period, meter_timeout, control tick, charger timeout,
status line period: the firmware's constants, not copies), so a busy machine
makes a test slower, not red. Speed figures are measured by `make bench`.
"""

import os
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from chargeguard.app import CHARGER_POLL_MS, CHARGER_TIMEOUT_MS, CONTROL_TICK_MS, GC_INTERVAL_MS, STATUS_LINE_MS  # noqa: E402
from run import DEFAULT_HEAP, Simulation, wait_for as wait  # noqa: E402

TELEGRAM_PERIOD_S = 1.0  # DSMR 5: one telegram a second
PUMP_PERIOD_S = 0.5  # how often pump_until() sends one (faster than a meter, to save time)
CONTROL_TICK_S = CONTROL_TICK_MS / 1000
CHARGER_TIMEOUT_S = CHARGER_TIMEOUT_MS / 1000
CHARGER_POLL_S = CHARGER_POLL_MS / 1000
STATUS_LINE_S = STATUS_LINE_MS / 1000
GC_INTERVAL_S = GC_INTERVAL_MS / 1000
# A decided command reaches its box within one charger timeout: the box's
# task may first have to finish (or time out) a poll already in flight.
COMMAND_S = CHARGER_TIMEOUT_S
# What a loaded 2-core host may add to one wake-up of the firmware or of this
# process (scheduling, not product behaviour). Only added where the product
# rule itself has no slack; see docs/development.md, "Timing in tests".
HOST_SLACK_S = 1.0
# Starting the unix port and loading the .mpy files: no product rule; this only
# bounds a firmware that never comes up (well under a second on an idle machine).
BOOT_S = 30.0
# Fast settings so the scenarios take seconds, not minutes.
# ev_response_s 1: the emulator's car follows a limit in 0.2 s (car_delay_s).
FAST_GUARD = {"meter_timeout_s": 3, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1, "ev_response_s": 1}
# No reading for meter_timeout: the control task's next decision and the status line after it.
FAILSAFE_S = FAST_GUARD["meter_timeout_s"] + CONTROL_TICK_S + STATUS_LINE_S + HOST_SLACK_S
RAMP_INTERVAL_S = FAST_GUARD["ramp_interval_s"]
EV_RESPONSE_S = FAST_GUARD["ev_response_s"]
# A raise is followed by the next once ramp_interval has passed and a reading
# ev_response after it shows the car took it (docs/architecture.md, "The
# guard"), then a telegram to decide on.
RAISE_S = max(RAMP_INTERVAL_S, EV_RESPONSE_S) + PUMP_PERIOD_S
# From the first reading to a steady offer: a start at the minimum, at most
# two raises (ramp_step 16 A reaches any target; a second charger starting
# beside the first can hold its raise back once), each command to its box,
# then a status line that shows it.
SETTLE_S = PUMP_PERIOD_S + COMMAND_S + 2 * (RAISE_S + COMMAND_S) + STATUS_LINE_S + HOST_SLACK_S


def intensity_writes(trydan, since_ns):
    return [w for w in trydan.writes() if w.t_ns >= since_ns and w.ok and w.key == "Intensity"]


def grid_line(sim):
    """The firmware's last status line about the grid ("grid  14.1  13.7  14.0 A | ..."), "" before the first."""
    lines = [line for line in sim.lines if line.startswith("grid")]
    return lines[-1] if lines else ""


def in_failsafe(sim):
    """The last grid line says the guard is in its failsafe."""
    return "failsafe" in grid_line(sim)


def said(sim):
    """The firmware's last 20 console lines, for an assertion's message."""
    return "\n".join(sim.lines[-20:])


def charging_one_car_at_16_a(sim):
    """A one-box site (house 2 A a phase) from boot: readings, the car ramped to the box's 16 A and drawing it,
    and the guard counting it at 16 A.

    Asserts within BOOT_S, then within ev_response (the car follows its limit), then readings for
    ev_response past the raise."""
    sim.site.set_house((2.0, 2.0, 2.0))
    assert wait(lambda: at_16_a(sim), BOOT_S, 0.5), said(sim)
    assert wait(lambda: max(sim.trydan.drawn_current_ma()) == 16000, FAST_GUARD["ev_response_s"] + HOST_SLACK_S)
    # And until the guard counts it at 16 A: a load step before then is cut deeper, the guard taking
    # back a raise it has not seen taken (core/guard.py).
    until_the_guard_saw_the_raises(sim, FAST_GUARD["ev_response_s"])


def at_16_a(sim):
    """After one more reading: the grid line shows 16.0 A and the box is set to 16 A."""
    sim.send_telegram()
    return " 16.0 A " in grid_line(sim) and sim.trydan.setting("Intensity") == 16


def fails_safe_while_the_meter_is_silent(sim, words, recover_s):
    """The sim's meter goes silent: the failsafe within FAILSAFE_S and a console line that starts with
    `words`; the meter back: the guard leaves the failsafe within recover_s."""
    sim.meter_silent = True
    sim.send_telegram()
    assert wait(lambda: in_failsafe(sim), FAILSAFE_S, 0.1), said(sim)
    assert any(line.startswith(words) for line in sim.lines), said(sim)
    sim.meter_silent = False

    def recovered():
        sim.send_telegram()
        return not in_failsafe(sim)

    assert wait(recovered, recover_s, 0.25), said(sim)
    assert sim.firmware.alive()
    assert not any("MemoryError" in line for line in sim.lines), said(sim)


def pause_writes(trydan, since_ns, value):
    return [w for w in trydan.writes() if w.t_ns >= since_ns and w.ok and w.key == "Paused" and int(w.value) == value]


def pump_until(sim, condition, timeout_s, period_s=PUMP_PERIOD_S):
    """Send telegrams every period_s until condition() holds; True if it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sim.send_telegram()
        end = min(deadline, time.monotonic() + period_s)
        while time.monotonic() < end:
            if condition():
                return True
            time.sleep(0.01)
    return condition()


def charging_at(trydan, amps):
    return trydan.setting("Intensity") == amps and trydan.setting("Paused") == 0


def status_lines(sim, since=0):
    """The firmware's status lines (they start with "grid"), from line index `since` on."""
    return [line for line in sim.lines[since:] if line.startswith("grid")]


def settled(sim, *amps):
    """The firmware's last status line offers these currents (whole A) with nothing holding them back."""
    lines = status_lines(sim)
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


def boot_and_settle(sim, *amps):
    """Wait for the firmware's first status line, then for these offers to settle and the guard to know it.

    Settled on the boxes is not settled for the guard: until a reading ev_response after a raise (or the
    box's own measurement) shows the car took it, the guard counts the car at its old current, and a load
    step then takes the raise back further than the car's real draw calls for (core/guard.py). So the
    readings go on until ev_response past the boxes' last current write.
    """
    assert wait(lambda: status_lines(sim), BOOT_S), firmware_output(sim)
    assert pump_until(sim, lambda: settled(sim, *amps), SETTLE_S), firmware_output(sim)
    until_the_guard_saw_the_raises(sim, EV_RESPONSE_S)
    assert settled(sim, *amps), firmware_output(sim)


def until_the_guard_saw_the_raises(sim, ev_response_s):
    """Readings until ev_response_s (the site's setting) past the Trydans' last current write: from then on
    the guard counts each car at its offer, not at its current before the last raise (core/guard.py)."""
    last_ns = max([w.t_ns for trydan in sim.trydans for w in intensity_writes(trydan, 0)] or [0])
    seen_ns = last_ns + int(ev_response_s * 1e9)
    assert pump_until(sim, lambda: time.monotonic_ns() >= seen_ns, ev_response_s + PUMP_PERIOD_S)


def start(**kwargs):
    sim = Simulation(heap=os.environ.get("E2E_HEAP", DEFAULT_HEAP), car_delay_s=0.2, run_name="e2e", guard=FAST_GUARD, **kwargs)
    sim.site.set_house((2.0, 2.0, 2.0))
    return sim


def firmware_output(sim):
    return "\n".join(sim.lines[-30:])


def test_load_step_lowers_the_intensity_within_one_telegram_period():
    sim = start()
    try:
        boot_and_settle(sim, 16)
        # Kettle and oven on L1: 24 A limit - 15 A of house = 9 A for the car.
        sim.site.set_house((15.0, 2.0, 2.0))
        written_ns = sim.send_telegram()
        # The guard decides on the reading itself: the box hears it before the next telegram.
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
        boot_and_settle(sim, 16)
        last_ns = sim.send_telegram()
        seen = len(sim.lines)  # lines from here on were printed after the last reading
        timeout_s = FAST_GUARD["meter_timeout_s"]
        # No telegram for longer than meter_timeout: failsafe_a is 0, so a pause.
        # The first control tick after meter_timeout decides it; the write
        # reaches the box within one charger timeout.
        latest_s = timeout_s + CONTROL_TICK_S + COMMAND_S
        assert wait(lambda: pause_writes(sim.trydan, last_ns, 1), latest_s), firmware_output(sim)
        paused = pause_writes(sim.trydan, last_ns, 1)[0]
        delay_s = (paused.t_ns - last_ns) / 1e9
        assert timeout_s <= delay_s <= latest_s, delay_s
        # The console says why: the next status line (one per STATUS_LINE_MS)
        # shows no grid reading and the failsafe reason. Waited for, not
        # looked up: the line comes up to a period after the pause write.
        assert wait(
            lambda: any("--.-" in line and " failsafe" in line for line in status_lines(sim, seen)),
            STATUS_LINE_S + HOST_SLACK_S,
        ), firmware_output(sim)
        # Readings come back: charging resumes by itself at the next reading
        # once ramp_interval has passed since the cut.
        back_ns = time.monotonic_ns()
        resume_s = RAMP_INTERVAL_S + PUMP_PERIOD_S + COMMAND_S + HOST_SLACK_S
        assert pump_until(sim, lambda: pause_writes(sim.trydan, back_ns, 0), resume_s), firmware_output(sim)
    finally:
        sim.stop()


def test_hung_wallbox_does_not_delay_commands_to_the_other():
    sim = start(chargers=2)
    first, second = sim.trydans
    try:
        # 24 A on each phase less 2 A of house: 16 A for the first, 6 A for the second.
        boot_and_settle(sim, 16, 6)
        sim.site.set_house((1.0, 1.0, 1.0))
        assert pump_until(sim, lambda: settled(sim, 16, 7), SETTLE_S), firmware_output(sim)
        first.set_mode("hang")  # accepts connections, never answers
        # The firmware asks each box once per poll period: wait until a
        # request of it is really stuck on the first box.
        assert pump_until(sim, first.hung_requests, CHARGER_POLL_S + HOST_SLACK_S), firmware_output(sim)
        hung_ns = first.hung_requests()[0]
        sim.site.set_house((2.0, 2.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: intensity_writes(second, written_ns), TELEGRAM_PERIOD_S), firmware_output(sim)
        write = intensity_writes(second, written_ns)[0]
        assert int(write.value) == 6
        # ... and it got there while the firmware still waited on the hung box.
        assert write.t_ns < hung_ns + CHARGER_TIMEOUT_S * 1e9, (write.t_ns - hung_ns) / 1e9
        # The guard keeps deciding: status lines keep coming, and once the
        # request timed out the hung box shows as unavailable.
        seen = len(sim.lines)

        def reported():
            lines = status_lines(sim, seen)
            return len(lines) >= 2 and any(" unavailable" in line for line in lines)

        assert pump_until(sim, reported, CHARGER_TIMEOUT_S + 2 * STATUS_LINE_S + HOST_SLACK_S), firmware_output(sim)
    finally:
        sim.stop()


def test_firmware_runs_in_a_96k_heap_and_reports_it():
    sim = start()
    try:
        # The live heap is measured at the first periodic collection and shown
        # on the status lines from then on.
        shown_s = BOOT_S + GC_INTERVAL_S + STATUS_LINE_S
        assert pump_until(sim, lambda: any("heap" in line for line in status_lines(sim)), shown_s), firmware_output(sim)
        assert sim.firmware.alive()
        assert not any("MemoryError" in line for line in sim.lines), firmware_output(sim)
    finally:
        sim.stop()
