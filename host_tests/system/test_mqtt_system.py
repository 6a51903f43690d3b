"""The MQTT link against a real broker, and the guard beside a broken one.

The link (build/device: net/mqtt.py and the pinned umqtt.simple, .mpy) runs on
the MicroPython unix port, in host_tests/system/mqtt_probe.py or in the whole
firmware with the simulator; the broker is real (mosquitto, else amqtt; the
`broker` fixture) and paho-mqtt is the other client. Broken brokers: one
that refuses (nothing listens), one that accepts TCP and never answers
(BlackHole) and one that stops answering mid-session (Stall).

Every wait is for the condition asserted, with a deadline from the link's
own rules (its connect deadline, backoff, keepalive: net/mqtt.py's constants)
or the guard's (one telegram period from a reading to the command).
"""

import os
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from broker import BlackHole, Broker, Stall, Watcher, free_port  # noqa: E402
from chargeguard.net import mqtt  # noqa: E402
from run import MQTT_HEAP, Simulation, micropython_binary, wait_for as wait  # noqa: E402
from test_end_to_end import until_the_guard_saw_the_raises  # noqa: E402

CONNECT_S = mqtt.CONNECT_TIMEOUT_MS / 1000
BACKOFF_MAX_S = mqtt.BACKOFF_MAX_MS / 1000
POLL_S = mqtt.POLL_MS / 1000
KEEPALIVE_S = 2  # the configuration's smallest: a dead link is noticed within it
# What a loaded 2-core host may add to a wake-up (scheduling, not product
# behaviour), as in test_end_to_end.py; and the unix port's start.
HOST_SLACK_S = 1.0
BOOT_S = 30.0
# The broker handing a message on (no product rule: milliseconds when idle);
# this only bounds one that never delivers.
BROKER_S = 5.0
# A first connect: TCP and CONNACK within the connect deadline.
CONNECTED_S = BOOT_S + CONNECT_S
# After the broker is back: the backoff in force (at most its ceiling) plus a connect.
RECONNECT_S = BACKOFF_MAX_S + CONNECT_S + HOST_SLACK_S
# A silent broker: pinged after K/2 without traffic, given up K/2 later, polled every POLL_S.
DEAD_LINK_S = KEEPALIVE_S + 2 * POLL_S + HOST_SLACK_S
TELEGRAM_PERIOD_S = 1.0


class Probe:
    """mqtt_probe.py on the unix port; its output lines in `lines`."""

    def __init__(self, port, topics=(), queue=16, burst=0, keepalive_s=KEEPALIVE_S):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mqtt_probe.py")
        command = [micropython_binary(), script, os.path.join(ROOT, "build", "device"), str(port), str(keepalive_s),
                   str(queue), str(burst)] + list(topics)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        for raw in self.process.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def has(self, text, since=0):
        return any(text in line for line in self.lines[since:])

    def output(self):
        return "\n".join(self.lines[-30:])

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.thread.join(timeout=2)


@pytest.fixture
def probes():
    started = []
    yield started
    for probe in started:
        probe.kill()


def test_online_is_retained_after_connect_and_the_will_says_offline_when_the_device_dies(broker, watcher, probes):
    probe = Probe(broker.port)
    probes.append(probe)
    assert wait(lambda: watcher.last("probe/status") is not None, CONNECTED_S), probe.output()
    assert watcher.last("probe/status").payload == b"online"
    # Retained: a client that comes later is told at once.
    late = Watcher(broker.port, topics=("probe/status",))
    try:
        assert late.wait(lambda: late.on("probe/status"), BROKER_S)
        first = late.on("probe/status")[0]
        assert first.payload == b"online" and first.retain
    finally:
        late.close()
    assert probe.has("mqtt: connected to 127.0.0.1:%d as chargeguard-probe" % broker.port)
    assert not probe.has("probe-secret-pw")
    # The device dies without a word: the broker publishes the last will at
    # the latest when the keepalive (1.5 K) runs out, here when the socket closes.
    probe.kill()
    assert watcher.wait(lambda: watcher.last("probe/status").payload == b"offline", 1.5 * KEEPALIVE_S + HOST_SLACK_S)
    later = Watcher(broker.port, topics=("probe/status",))
    try:
        assert later.wait(lambda: later.on("probe/status"), BROKER_S)
        assert later.on("probe/status")[0].payload == b"offline" and later.on("probe/status")[0].retain
    finally:
        later.close()


def test_the_queue_keeps_the_newest_and_drops_the_oldest(broker, watcher, probes):
    # 20 messages queued before the first connect, 8 slots: the last 8 go out.
    probe = Probe(broker.port, queue=8, burst=20)
    probes.append(probe)
    assert wait(lambda: watcher.on("probe/count"), CONNECTED_S + 1 + HOST_SLACK_S), probe.output()
    sent = sorted(int(m.topic.rsplit("/", 1)[1]) for m in watcher.messages if m.topic.startswith("probe/q/"))
    assert sent == list(range(12, 20))


def test_messages_are_delivered_oversized_ones_skipped_and_subscriptions_restored_after_a_broker_restart(
        broker, watcher, probes):
    probe = Probe(broker.port, topics=("probe/cmd/#",))
    probes.append(probe)
    assert wait(lambda: probe.has("ON_CONNECT 1"), CONNECTED_S), probe.output()
    # The subscription is sent right after the CONNACK; a retained message
    # reaches it whether it arrives before or after the SUBACK.
    watcher.publish("probe/cmd/a", "hello", retain=True)
    assert wait(lambda: probe.has("MSG probe/cmd/a 5 hello"), BROKER_S + POLL_S), probe.output()
    # Larger than the probe's 256-byte receive buffer: read past, logged; the next one arrives.
    watcher.publish("probe/cmd/big", "x" * 2000)
    watcher.publish("probe/cmd/b", "after")
    assert wait(lambda: probe.has("MSG probe/cmd/b 5 after"), BROKER_S + POLL_S), probe.output()
    # 1 type byte, 2 length bytes, 2 + 13 topic bytes, the payload.
    assert probe.has("skipped an incoming packet of 2018 bytes") and not probe.has("MSG probe/cmd/big"), probe.output()
    # The broker crashes and comes back (empty: no persistence).
    seen = len(probe.lines)
    broker.kill()
    assert wait(lambda: probe.has("mqtt: connection lost", seen), HOST_SLACK_S + POLL_S), probe.output()
    broker.restart()
    assert wait(lambda: probe.has("ON_CONNECT 2", seen), RECONNECT_S), probe.output()
    again = Watcher(broker.port, topics=("probe/#",))
    try:
        # Availability is published again, and the subscription is back.
        assert again.wait(lambda: again.on("probe/status") and again.on("probe/status")[-1].payload == b"online",
                          BROKER_S)
        again.publish("probe/cmd/c", "again", retain=True)
        assert wait(lambda: probe.has("MSG probe/cmd/c 5 again", seen), BROKER_S + POLL_S), probe.output()
    finally:
        again.close()


def test_a_broker_that_stops_answering_mid_session_is_dropped_within_the_keepalive(broker, probes):
    stall = Stall(broker.port)
    try:
        probe = Probe(stall.port)
        probes.append(probe)
        assert wait(lambda: probe.has("ON_CONNECT 1"), CONNECTED_S), probe.output()
        seen = len(probe.lines)
        stall.stall()
        # (wait() itself is the bound: no second clock reading after it, which
        # a loaded host could push past DEAD_LINK_S after a timely drop.)
        assert wait(lambda: probe.has("mqtt: connection lost (no answer to PINGREQ", seen), DEAD_LINK_S), probe.output()
        # While it stays silent, connecting fails at the connect deadline;
        # once it answers again the link comes back.
        assert wait(lambda: probe.has("no CONNACK within", seen), RECONNECT_S), probe.output()
        stall.resume()
        assert wait(lambda: probe.has("ON_CONNECT 2", seen), RECONNECT_S), probe.output()
    finally:
        stall.close()


def test_a_black_holed_broker_is_given_up_at_the_connect_deadline(probes):
    hole = BlackHole()
    try:
        probe = Probe(hole.port)
        probes.append(probe)
        assert wait(lambda: probe.has("no CONNACK within %d s" % CONNECT_S), BOOT_S + CONNECT_S + HOST_SLACK_S), probe.output()
        assert hole.accepted
        assert not probe.has("ON_CONNECT")
    finally:
        hole.close()


# ---------------------------------------------------------------- the guard


# ev_response_s 1: the emulator's car follows a limit in 0.2 s.
FAST_GUARD = {"meter_timeout_s": 3, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1, "ev_response_s": 1}
LOAD_STEPS = 6  # overload steps measured while the broker misbehaves


def intensity_writes(trydan, since_ns):
    return [w for w in trydan.writes() if w.t_ns >= since_ns and w.ok and w.key == "Intensity"]


def settled(sim):
    lines = [line for line in sim.lines if line.startswith("grid")]
    return bool(lines) and " 16.0 A ok" in lines[-1] and sim.trydan.setting("Intensity") == 16


def guard_cuts_within_a_telegram_period(sim):
    """Load steps on L1, each lowering the car's limit: every cut reaches the box within one telegram period."""
    for step in range(LOAD_STEPS):
        # Back to a light house, and the car back at 16 A (ramp_step 16 A, ramp_interval 1 s).
        sim.site.set_house((2.0, 2.0, 2.0))
        # Settled: the firmware's status line offers 16 A and the box has it (a
        # start at 6 A, one raise once ramp_interval has passed and a reading
        # ev_response after the start shows the car took it, telegrams twice a period).
        raise_s = max(FAST_GUARD["ramp_interval_s"], FAST_GUARD["ev_response_s"])
        deadline = time.monotonic() + 2 * raise_s + 4 * TELEGRAM_PERIOD_S + HOST_SLACK_S
        while not settled(sim) and time.monotonic() < deadline:
            sim.send_telegram()
            time.sleep(TELEGRAM_PERIOD_S / 2)
        assert settled(sim), "\n".join(sim.lines[-20:])
        # Until the guard counts the car at its 16 A: a load step while a raise is
        # not yet seen taken makes the guard take the raise back (core/guard.py), a
        # deeper cut than the one asserted here (a CI run saw 6 A, not 12).
        until_the_guard_saw_the_raises(sim, FAST_GUARD["ev_response_s"])
        sim.site.set_house((12.0 + step, 2.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: intensity_writes(sim.trydan, written_ns), TELEGRAM_PERIOD_S), "\n".join(sim.lines[-20:])
        assert int(intensity_writes(sim.trydan, written_ns)[0].value) == 24 - (12 + step)


def firmware_with_broker(port, keepalive_s=KEEPALIVE_S):
    mqtt_cfg = {"enabled": True, "host": "127.0.0.1", "port": port, "keepalive_s": keepalive_s,
                "password": "sim-mqtt-secret"}
    # The heap is the 64-bit counterpart of the mqtt profile's (memory is gated in test_heap_budget.py).
    sim = Simulation(heap=MQTT_HEAP, car_delay_s=0.2, run_name="e2e-mqtt", guard=FAST_GUARD, mqtt=mqtt_cfg)
    sim.site.set_house((2.0, 2.0, 2.0))
    assert wait(lambda: any(line.startswith("grid") for line in sim.lines), BOOT_S), "\n".join(sim.lines)
    return sim


def test_the_guard_keeps_its_pace_with_the_broker_black_holed_refusing_or_stalled(broker):
    hole = BlackHole()
    stall = Stall(broker.port)
    refusing = free_port()  # nothing listens there
    try:
        for port, case in ((hole.port, "black hole"), (refusing, "refused"), (stall.port, "stalled")):
            sim = firmware_with_broker(port)
            try:
                if case == "stalled":
                    # Connected first, then the broker goes quiet mid-session.
                    watcher = Watcher(broker.port, topics=("chargeguard/status",))
                    try:
                        assert watcher.wait(lambda: watcher.on("chargeguard/status"), CONNECTED_S), "\n".join(sim.lines)
                    finally:
                        watcher.close()
                    stall.stall()
                guard_cuts_within_a_telegram_period(sim)
                if case == "black hole":
                    assert wait(lambda: any("no CONNACK" in line for line in sim.lines), CONNECT_S + HOST_SLACK_S)
                elif case == "refused":
                    assert any("connection refused" in line for line in sim.lines), "\n".join(sim.lines)
                else:
                    assert wait(lambda: any("no answer to PINGREQ" in line for line in sim.lines), DEAD_LINK_S)
                assert sim.firmware.alive()
                assert not any("sim-mqtt-secret" in line for line in sim.lines)
            finally:
                sim.stop()
            stall.resume()
    finally:
        hole.close()
        stall.close()


def test_the_firmware_publishes_availability_and_its_will(broker, watcher):
    sim = firmware_with_broker(broker.port)
    try:
        assert watcher.wait(lambda: watcher.last("chargeguard/status") is not None, CONNECTED_S), "\n".join(sim.lines)
        assert watcher.last("chargeguard/status").payload == b"online"
        assert any("mqtt: connected to 127.0.0.1:%d as chargeguard-chargeguard" % broker.port in line for line in sim.lines)
        sim.firmware.process.kill()  # a power cut, as far as the broker can tell
        sim.firmware.process.wait()
        assert watcher.wait(lambda: watcher.last("chargeguard/status").payload == b"offline",
                            1.5 * KEEPALIVE_S + HOST_SLACK_S)
    finally:
        sim.stop()
