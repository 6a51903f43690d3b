"""A last good configuration that no longer starts, end to end: the built firmware on the 32-bit port against the emulators.

A site guarded by a P1 meter and two Trydans, with MQTT (Home Assistant),
whose configuration is both config.json and config.bak (nothing older to
fall back to): as .mpy on the 32-bit port in 110 KB of heap it cannot start
(MemoryError, as after a firmware update that needs more heap). Before safe
mode the board restarted every ~10 s for good, the boxes keeping their
last current. Now two failed starts in a row (chargeguard/trial.py counts
them in config.boot) make the third boot start the guard-only configuration
(chargeguard/safemode.py): MQTT off, both boxes guarded. A restart before
that safe boot has guarded 10 s (killed, as a power cut) makes the next one
failsafe: no meter read, every box held at its failsafe current (paused);
proven there, the next restart is safe mode again, and proven in safe mode
the next one would try the full configuration once more.
"""

import json
import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import memlab  # noqa: E402
import upy32  # noqa: E402
from run import Firmware, Simulation  # noqa: E402
from test_config_trial import (  # noqa: E402
    BOOT_S,
    COMMANDED_S,
    CONFIG_PROVEN_S,
    FAST_GUARD,
    NEWCOMER_HEAP,
    every_box,
    every_box_guarded,
    output,
    pump_until,
    running,
)

RUN = "e2e-safe"
RESTART_DELAY_S = 10.0  # app.RESTART_DELAY_MS: a failed start waits this long before its reset


def storage():
    return os.path.join(ROOT, "build", RUN, "storage")


def reboot(sim, command, kill=False):
    """Stops the firmware (kill: SIGKILL, as a power cut) and boots it again; returns its output lines."""
    if kill:
        sim.firmware.process.kill()
    sim.firmware.stop()
    lines = []
    sim.lines = lines
    root = os.path.join(ROOT, "build", RUN, "root")
    sim.firmware = Firmware(root, storage(), sim.p1.device, None, lines.append, command)
    return lines


def with_mqtt_as_the_last_good(command):
    """A Simulation launch: its configuration plus MQTT is config.json and config.bak."""

    def launch(root_dir):
        path = os.path.join(os.path.dirname(root_dir), "storage", "config.json")
        with open(path) as handle:
            config = json.load(handle)
        # A broker that is not there: the heap is spent at start-up, before any connection.
        config["mqtt"] = {"enabled": True, "host": "127.0.0.1", "port": 1, "password": "broker-secret"}
        for name in ("config.json", "config.bak"):
            with open(os.path.join(os.path.dirname(path), name), "w") as handle:
                json.dump(config, handle, indent=1)
        return command

    return launch


def count():
    with open(os.path.join(storage(), "config.boot")) as handle:
        return int(handle.read().split()[2])


def every_box_held_at_its_failsafe(sim, lines):
    """The last status line offers each box 0 A for "failsafe", and each box is paused."""
    return every_box(sim, lines, lambda amps, reason, box: reason == "failsafe" and amps == 0
                     and int(box.setting("Paused")) == 1)


def test_a_last_good_config_that_cannot_start_twice_runs_guard_only_then_failsafe():
    try:
        binary = memlab.interpreter("mpy32")
    except memlab.Unavailable as why:
        if upy32.in_ci():
            pytest.fail("32-bit MicroPython not available: %s" % why.args[0])
        pytest.skip("32-bit MicroPython not available: %s" % why.args[0])
    command = [binary, "-X", "heapsize=" + NEWCOMER_HEAP, "main.py"]
    sim = Simulation(chargers=2, run_name=RUN, guard=FAST_GUARD, car_delay_s=0.2, launch=with_mqtt_as_the_last_good(command))
    sim.site.set_house((2.0, 2.0, 2.0))
    try:
        lines = sim.lines
        seen = []  # every boot's lines but the last's
        for attempt in (1, 2):
            # It cannot start (were MQTT to fit in NEWCOMER_HEAP one day, lower it until it does not):
            # the failure waits RESTART_DELAY_S, then the reset (the unix port's process ends).
            stopped = lambda: not sim.firmware.alive()  # noqa: E731
            assert pump_until(sim, stopped, BOOT_S + RESTART_DELAY_S), output(lines)
            assert any(line.startswith("ChargeGuard stopped: MemoryError(") for line in lines), output(lines)
            assert not any("SAFE MODE" in line for line in lines), output(lines)
            assert count() == attempt
            seen += lines
            lines = reboot(sim, command)

        # The third boot: the guard-only configuration, said loudly.
        assert pump_until(sim, running(lines, 2), BOOT_S), output(lines)
        said = [line for line in lines if line.startswith(("SAFE MODE", "kept:", "off:", "to leave it:"))]
        assert said[0].startswith("SAFE MODE: the last good configuration (config.bak) did not start in two boots"), output(lines)
        assert said[2] == "off: MQTT/Home Assistant, the energy log", said
        assert said[3].startswith("to leave it:") and "make deploy" in said[3], said
        # A power cut before it has guarded CONFIG_PROVEN_S: the next boot is failsafe.
        assert count() == 3
        seen += lines
        lines = reboot(sim, command, kill=True)
        assert pump_until(sim, running(lines, 2), BOOT_S), output(lines)
        assert any(line.startswith("FAILSAFE MODE: even the guard-only safe mode did not start") for line in lines), output(lines)
        assert pump_until(sim, every_box_held_at_its_failsafe(sim, lines), COMMANDED_S), output(lines)
        # Proven at failsafe, the count says the next restart tries safe mode again.
        held = lambda: count() == 2  # noqa: E731
        assert pump_until(sim, held, CONFIG_PROVEN_S + COMMANDED_S), output(lines)
        seen += lines
        lines = reboot(sim, command)
        assert pump_until(sim, running(lines, 2), BOOT_S), output(lines)
        assert any(line.startswith("SAFE MODE:") for line in lines), output(lines)
        assert pump_until(sim, every_box_guarded(sim, lines), COMMANDED_S), output(lines)
        status = [line for line in list(lines) if line.startswith("grid")]
        assert status[-1].endswith("| SAFE MODE"), status[-1]
        assert not any(line.startswith("mqtt:") for line in lines), output(lines)
        assert sim.firmware.alive() and not any(line.startswith("ChargeGuard stopped") for line in lines), output(lines)
        # Proven in safe mode: the next restart tries the full configuration once more.
        once_more = lambda: count() == 1  # noqa: E731
        assert pump_until(sim, once_more, CONFIG_PROVEN_S + COMMANDED_S), output(lines)
        assert not any("broker-secret" in line for line in seen + lines)
    finally:
        sim.stop()
