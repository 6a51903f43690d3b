"""The meter fed over MQTT, end to end: the firmware (build/device, unix port), a real broker, paho-mqtt publishing.

tools/sim/mqtt_meter_emulator.py publishes the simulated site's per-phase
currents and net power as Home Assistant would; the firmware's meter
(meters/mqtt_meter.py) subscribes to them on the broker of the `mqtt` section
(here with the MQTT interface off: the meter's own link only). Checked: load
steps published over MQTT cut the wallbox within a telegram period, a value
that is no number is said in words, the integration going silent and the
broker dying both end in the failsafe after meter_timeout, and recovery.
Every wait is for the condition asserted, with a deadline from the product's
rules (net/mqtt.py's constants, the guard's meter_timeout).
"""

import os
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "shims")):
    if path not in sys.path:
        sys.path.insert(0, path)

from chargeguard.net import mqtt  # noqa: E402
from run import MQTT_HEAP, Simulation, wait_for as wait  # noqa: E402
from test_end_to_end import grid_line, in_failsafe, until_the_guard_saw_the_raises  # noqa: E402
from test_mqtt_system import (  # noqa: E402
    BOOT_S, CONNECT_S, FAST_GUARD, HOST_SLACK_S, LOAD_STEPS, RECONNECT_S, TELEGRAM_PERIOD_S, intensity_writes)

METER_TIMEOUT_S = FAST_GUARD["meter_timeout_s"]
# No value for meter_timeout: the control task's next decision (1 s) and the status line after it (1 s).
FAILSAFE_S = METER_TIMEOUT_S + 2 + HOST_SLACK_S
POLL_S = mqtt.POLL_MS / 1000


def _said(sim, text):
    return any(line.startswith("meter: ") and text in line for line in sim.lines)


def _at_16_a(sim):
    # The status line offers 16 A and the box has it. (Its reason may still say
    # "breaker" for a poll period after a raise: with two cadences the low view
    # takes a car's pending change as house load on every phase, core/guard.py.)
    return " 16.0 A " in grid_line(sim) and sim.trydan.setting("Intensity") == 16


def cuts_within_a_telegram_period(sim):
    """Load steps on L1 published over MQTT: every cut reaches the box within one telegram period."""
    for step in range(LOAD_STEPS):
        sim.site.set_house((2.0, 2.0, 2.0))
        # Back at 16 A: a start at 6 A, a raise after ramp_interval once the
        # box's next poll (5 s) shows the car took it, rounds twice a period.
        deadline = time.monotonic() + 2 * FAST_GUARD["ramp_interval_s"] + 5 + 4 * TELEGRAM_PERIOD_S + HOST_SLACK_S
        while not _at_16_a(sim) and time.monotonic() < deadline:
            sim.send_telegram()
            time.sleep(TELEGRAM_PERIOD_S / 2)
        assert _at_16_a(sim), "\n".join(sim.lines[-20:])
        # Until the guard counts the car at its 16 A (a raise not yet seen taken
        # is taken back at a load step, core/guard.py: a deeper cut).
        until_the_guard_saw_the_raises(sim, FAST_GUARD["ev_response_s"])
        sim.site.set_house((12.0 + step, 2.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: intensity_writes(sim.trydan, written_ns), TELEGRAM_PERIOD_S), "\n".join(sim.lines[-20:])
        assert int(intensity_writes(sim.trydan, written_ns)[0].value) == 24 - (12 + step)


def test_the_guard_runs_on_a_meter_fed_over_mqtt_and_fails_safe_without_it(broker):
    mqtt_cfg = {"enabled": False, "host": "127.0.0.1", "port": broker.port, "keepalive_s": 2,
                "password": "sim-mqtt-meter-secret"}
    sim = Simulation(heap=MQTT_HEAP, car_delay_s=0.2, run_name="e2e-mqtt-meter", guard=FAST_GUARD, meter="mqtt",
                     mqtt=mqtt_cfg)
    try:
        sim.site.set_house((2.0, 2.0, 2.0))

        def reading():
            sim.send_telegram()
            return grid_line(sim).startswith("grid") and "--" not in grid_line(sim).split("A")[0]

        # The first values: the link connects (boot + connect deadline) and subscribes.
        assert wait(reading, BOOT_S + CONNECT_S, 0.5), "\n".join(sim.lines[-20:])
        # Load steps on L1 published over MQTT: each cut reaches the box within a telegram period.
        cuts_within_a_telegram_period(sim)
        # Home Assistant's "unavailable": said in words, not used.
        sim.mqtt_meter.client.publish("sim/meter/l2_current", "unavailable")
        assert wait(lambda: _said(sim, "sim/meter/l2_current: no number: 'unavailable'"), 1 + POLL_S + HOST_SLACK_S), (
            "\n".join(sim.lines[-20:]))
        # The integration stops publishing: the failsafe after meter_timeout.
        sim.meter_silent = True
        sim.send_telegram()
        assert wait(lambda: in_failsafe(sim), FAILSAFE_S, 0.1), "\n".join(sim.lines[-20:])
        sim.meter_silent = False

        def recovered():
            sim.send_telegram()
            return not in_failsafe(sim)

        assert wait(recovered, 2 + HOST_SLACK_S, 0.25), "\n".join(sim.lines[-20:])
        # The broker dies: no values, the failsafe; it comes back: the link reconnects
        # (its backoff, at most its ceiling, and a connect) and the guard recovers.
        emulator = sim.mqtt_meter
        emulator.silent = True
        broker.kill()
        assert wait(lambda: in_failsafe(sim), FAILSAFE_S, 0.1), "\n".join(sim.lines[-20:])
        assert wait(lambda: _said(sim, "mqtt: connection lost"), FAILSAFE_S, 0.1), "\n".join(sim.lines[-20:])
        broker.restart()
        emulator.stop()
        from mqtt_meter_emulator import MqttMeterEmulator

        sim.mqtt_meter = MqttMeterEmulator(broker.port)
        assert wait(recovered, RECONNECT_S, 0.25), "\n".join(sim.lines[-20:])
        assert sim.firmware.alive()
        assert not any("MemoryError" in line for line in sim.lines), "\n".join(sim.lines[-20:])
        # The broker password is the link's secret: never in the output.
        assert not any("sim-mqtt-meter-secret" in line for line in sim.lines)
    finally:
        sim.stop()
