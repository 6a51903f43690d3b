# HomeWizard API v2 over HTTPS against the emulator (tools/sim/http_meter_emulator.py,
# model homewizard_v2): the firmware's driver on the MicroPython unix port (the
# 64-bit one: it has ssl; the 32-bit heap-proxy port has none) reads it, a wrong
# token and a wrong certificate fail in words and the token never leaks, a peer
# that accepts TCP and never answers the TLS handshake costs the request's
# deadline and never blocks the loop, the whole firmware guards on it and fails
# safe when it stops (tools/sim/run.py --meter homewizard_v2), and the pairing
# of tools/meterprobe.py --homewizard-pair. The TLS connection is kept from
# poll to poll: one handshake for many polls; a meter that closes it (after
# each answer, with or without saying so, or when idle) costs a handshake per
# reconnect and no reading; one that stops answering on it costs the deadline.
# CPython / pytest only.
import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware")):
    if path not in sys.path:
        sys.path.insert(0, path)

from http_meter_emulator import HttpMeterEmulator  # noqa: E402

UPY = os.path.join(ROOT, ".venv", "bin", "micropython")
PROBE = os.path.join(ROOT, "host_tests", "system", "v2_probe_upy.py")
LIB = os.path.join(ROOT, "build", "device")
TIMEOUT_MS = 2000  # meters/http_meter.py _TIMEOUT_MS
# Longest gap a 10 ms ticker may see during a poll: a blocking handshake wait
# would show as the whole deadline (2000 ms); one handshake step's crypto on
# this host takes a few ms; the rest is a busy shared 2-core machine, which
# alone has shown 318 ms (test_dns_ntp.py's MAX_GAP_MS, the same bound):
# far below the 2000 ms a blocking wait shows, so the test still fails on one.
MAX_GAP_MS = 500
POLL_MS = 1000  # v2_probe_upy.py's poll_ms
# The reading's age may reach one poll period plus one request's deadline
# (a poll that reconnects still ends within the deadline), never more.
MAX_AGE_MS = POLL_MS + TIMEOUT_MS
RECONNECT_NOTE = "note: the meter closes every connection: a TLS handshake per poll (poll_ms 2000+ or API v1)"
POWERS = (2300, -460, 115)
CURRENTS = (10000, -2000, 500)


@pytest.fixture
def meter():
    if not os.path.exists(os.path.join(LIB, "main.py")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build.py")], check=True)
    emulator = HttpMeterEmulator("homewizard_v2").start()
    emulator.set_values(CURRENTS, POWERS, import_wh=13779338, export_wh=1000)
    yield emulator
    emulator.stop()


def upy_polls(emulator, count=1, token=None, name=None, ca_file=None):
    """The firmware's driver on the unix port: one dict per poll (see v2_probe_upy.py) and its whole output."""
    args = [UPY, PROBE, LIB, str(emulator.port), ca_file or emulator.ca_file, name or emulator.cert_hostname,
            token or emulator.token, str(count)]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=30 + count * 5)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")], output


def upy_run(emulator, readings):
    """The firmware's meter task (poll every POLL_MS) until `readings` readings: v2_probe_upy.py's "run" summary."""
    args = [UPY, PROBE, LIB, str(emulator.port), emulator.ca_file, emulator.cert_hostname, emulator.token,
            str(readings), "run"]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=30 + readings * 5)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, output
    return json.loads(lines[0])


class Stepper:
    """The probe in "step" mode: one poll per step(), the emulator changed in between."""

    def __init__(self, emulator, count):
        args = [UPY, PROBE, LIB, str(emulator.port), emulator.ca_file, emulator.cert_hostname, emulator.token,
                str(count), "step"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)  # fmt: skip
        self.lines = queue.Queue()
        self.output = []
        threading.Thread(target=self._read, daemon=True).start()
        self.first = True

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def step(self, timeout_s=TIMEOUT_MS / 1000 + 15):
        """The next poll's line (the first poll runs at start)."""
        if not self.first:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        self.first = False
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError("no poll within %d s: %s" % (timeout_s, "".join(self.output[-10:])))

    def close(self):
        self.proc.kill()
        self.proc.wait(10)


def test_the_firmware_reads_the_v2_meter_over_https(meter):
    polls, _ = upy_polls(meter, 3)
    assert [p["ok"] for p in polls] == [True] * 3, polls
    assert all(p["l1_w"] == POWERS[0] and p["error"] is None for p in polls)
    assert meter.requests == 3 and meter.auth_failures == 0


def test_a_wrong_token_says_so_and_never_shows_the_token(meter):
    wrong = "0123456789ABCDEF0123456789ABCDEF"
    polls, output = upy_polls(meter, 1, token=wrong)
    assert not polls[0]["ok"]
    assert polls[0]["error"].startswith("HTTP 401 (user:unauthorized): the meter refuses the token: pair again")
    assert meter.auth_failures == 1 and meter.requests == 0
    assert wrong not in output and meter.token not in output


def test_a_wrong_certificate_gets_no_request_and_no_token(meter):
    # The peer's certificate carries another name, or chains to another CA:
    # the handshake fails before any byte of the request (with the token) goes out.
    polls, output = upy_polls(meter, 1, name="appliance/p1dongle/000000000000")
    assert polls[0]["error"] == "tls: certificate name is not the expected one: no token sent" \
        " (meter.ca_file, meter.cert_hostname)"  # fmt: skip
    other = HttpMeterEmulator("homewizard_v2").start()  # its own, different test CA
    try:
        polls, output = upy_polls(meter, 1, ca_file=other.ca_file)
    finally:
        other.stop()
    assert polls[0]["error"].startswith("tls: certificate not signed by the trusted CA: no token sent"), polls
    assert meter.requests == 0 and meter.auth_failures == 0 and meter.pair_requests == 0
    assert meter.token not in output


def test_a_peer_that_never_answers_the_tls_handshake_costs_the_deadline_and_never_blocks_the_loop(meter):
    meter.mode = "hang"  # accepts TCP, reads the ClientHello, never answers
    polls, _ = upy_polls(meter, 2)
    for poll in polls:
        assert not poll["ok"] and poll["error"] == "no answer within %d ms (timeout)" % TIMEOUT_MS
        assert TIMEOUT_MS - 50 <= poll["ms"] <= TIMEOUT_MS + 1000, poll
        assert poll["gap_ms"] < MAX_GAP_MS, poll
    meter.mode = "ok"
    polls, _ = upy_polls(meter, 1)
    assert polls[0]["ok"] and polls[0]["gap_ms"] < MAX_GAP_MS, polls


def test_ten_polls_make_one_tls_connection(meter):
    polls, _ = upy_polls(meter, 10)
    assert all(p["ok"] for p in polls), polls
    assert [p["connections"] for p in polls] == [1] * 10
    assert meter.handshakes == 1 and meter.connections == 1 and meter.requests == 10
    # Only the first poll pays the handshake: the loop stays free on every one.
    assert all(p["gap_ms"] < MAX_GAP_MS for p in polls), polls


@pytest.mark.parametrize("close_after", ("header", "silent", "idle"))
def test_a_meter_that_closes_the_connection_costs_a_handshake_per_poll_and_no_reading(meter, close_after):
    # "header": Connection: close on each answer (the client closes it);
    # "silent": the meter closes after each answer without saying so, and
    # "idle": it closes connections idle for 0.5 s, under the 1 s poll period:
    # the client finds the kept connection dead at its next request and sends
    # it again on a fresh one within the same poll.
    if close_after == "idle":
        meter.idle_close_s = 0.5
    else:
        meter.close_after = close_after
    state = upy_run(meter, 6)
    # Said once it is clear (5 polls in a row connected), with the reading: no error.
    assert state["errors"] == [RECONNECT_NOTE], state
    assert state["readings"] == 6 and state["polls"] == 6, state  # no poll without its reading
    assert state["max_age_ms"] <= MAX_AGE_MS, state
    assert state["gap_ms"] < MAX_GAP_MS, state
    assert meter.handshakes == 6 and state["connections"] == 6, (meter.handshakes, state)
    assert meter.requests == 6  # each request answered once: none sent twice


def test_a_meter_that_keeps_idle_connections_longer_than_the_poll_period_keeps_one(meter):
    meter.idle_close_s = 3.0
    state = upy_run(meter, 5)
    assert state["errors"] == [] and state["readings"] == 5, state
    assert state["max_age_ms"] <= MAX_AGE_MS, state
    assert meter.handshakes == 1 and state["connections"] == 1, (meter.handshakes, state)


def test_a_meter_that_stops_answering_on_the_kept_connection_costs_the_deadline_and_never_blocks(meter):
    probe = Stepper(meter, 4)
    try:
        first = probe.step()
        assert first["ok"] and first["connections"] == 1, first
        meter.mode = "hang"  # the next request on the kept connection gets no answer
        hung = probe.step()
        assert not hung["ok"] and hung["error"] == "no answer within %d ms (timeout)" % TIMEOUT_MS, hung
        assert TIMEOUT_MS - 50 <= hung["ms"] <= TIMEOUT_MS + 1000, hung  # no retry past the deadline
        assert hung["gap_ms"] < MAX_GAP_MS, hung
        assert meter.requests == 1
        meter.mode = "ok"
        back = probe.step()
        # The hung connection was dropped: a fresh one (a second handshake), then kept again.
        assert back["ok"] and back["connections"] == 2 and back["gap_ms"] < MAX_GAP_MS, back
        again = probe.step()
        assert again["ok"] and again["connections"] == 2, again
        assert meter.handshakes == 2 and meter.requests == 3
    finally:
        probe.close()


def test_a_restarting_meter_drops_the_kept_connection_and_the_firmware_reconnects(meter):
    probe = Stepper(meter, 3)
    try:
        assert probe.step()["ok"]
        meter.mode = "refuse"  # closes the kept connection, refuses new ones
        refused = probe.step()
        assert not refused["ok"] and refused["error"].startswith("connection refused"), refused
        meter.mode = "ok"
        back = probe.step()
        assert back["ok"] and back["connections"] == 3, back  # the first, the refused try, then a fresh one
        assert meter.handshakes == 2
    finally:
        probe.close()


@pytest.mark.parametrize("close_after", (None, "silent"))
def test_the_cpython_side_keeps_its_connection_too(meter, close_after):
    # net/http.py's CPython path (asyncio's ssl streams: the tools and host
    # tests run the driver there): the same reuse and the same retry.
    import asyncio

    from chargeguard.meters import http_meter
    from chargeguard.platform import unix

    meter.close_after = close_after
    doc = {"model": "homewizard_v2", "host": "127.0.0.1", "port": meter.port, "channel": 0, "upside_down": False,
           "poll_ms": 1000, "token": meter.token, "ca_file": meter.ca_file, "cert_hostname": meter.cert_hostname}

    async def scenario():
        driver = http_meter.from_config(doc, unix.Platform({"rs485_device": None}))
        try:
            for _ in range(4):
                assert await asyncio.wait_for(driver.poll(), TIMEOUT_MS / 1000 + 3), driver.last_error
        finally:
            await driver.client.close()
        return driver.client.connections

    connections = asyncio.run(scenario())
    expected = 1 if close_after is None else 4
    assert connections == expected and meter.handshakes == expected and meter.requests == 4


def test_repeated_polls_keep_the_heap_flat(meter):
    polls, _ = upy_polls(meter, 12)
    assert all(p["ok"] for p in polls), polls
    heaps = [p["heap"] for p in polls[2:]]
    # Each handshake's mbedTLS memory is freed with its connection (on the unix
    # port it is in the GC heap): nothing stays from poll to poll.
    assert max(heaps) - min(heaps) <= 1024, heaps


# -- the firmware end to end --------------------------------------------------------------


def _amps(text):
    try:
        return float(text)
    except ValueError:
        return -1.0


def _grid_lines(sim):
    return [line for line in sim.lines if line.startswith("grid")]


# As in test_http_meter_emulator.py: meter_timeout 2 s, a hung request's
# deadline 2 s, a control tick and a status line (1 s each), on a busy machine.
FAILSAFE_DEADLINE_S = 15
RECOVERY_DEADLINE_S = 20


def test_firmware_guards_on_the_v2_meter_fails_safe_when_the_handshake_hangs_and_never_logs_the_token():
    from run import Simulation, wait_for

    guard = {"meter_timeout_s": 2, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1}
    sim = Simulation(car_delay_s=0.2, run_name="http-meter-v2-e2e", chargers=1, guard=guard, meter="homewizard_v2")
    try:
        token = sim.http.token
        sim.site.set_house((20.0, 3.0, 3.0))

        def shows_house():
            sim.send_telegram()
            return any(_amps(line.split()[1]) >= 20.0 for line in _grid_lines(sim)[-1:])

        assert wait_for(shows_house, 20, 0.25), "\n".join(sim.lines[-15:])
        sim.meter_silent = True  # the emulator accepts TCP and never answers the handshake
        sim.send_telegram()
        assert wait_for(lambda: any("failsafe" in line for line in _grid_lines(sim)[-1:]), FAILSAFE_DEADLINE_S, 0.1), (
            "\n".join(sim.lines[-15:])
        )
        assert wait_for(lambda: any(line.startswith("meter: no answer within 2000 ms") for line in sim.lines),
                        FAILSAFE_DEADLINE_S, 0.1), "\n".join(sim.lines[-15:])  # fmt: skip
        sim.meter_silent = False

        def recovered():
            sim.send_telegram()
            return not any("failsafe" in line for line in _grid_lines(sim)[-1:])

        assert wait_for(recovered, RECOVERY_DEADLINE_S, 0.25), "\n".join(sim.lines[-15:])
        # The meter forgets the firmware's user (a new pairing elsewhere): 401 in words.
        sim.http.users.clear()
        assert wait_for(lambda: any(line.startswith("meter: HTTP 401 (user:unauthorized)") for line in sim.lines),
                        FAILSAFE_DEADLINE_S, 0.1), "\n".join(sim.lines[-15:])  # fmt: skip
        assert sim.firmware.alive()
        assert not any(token in line for line in sim.lines)
        assert not any("MemoryError" in line or "Traceback" in line for line in sim.lines), "\n".join(sim.lines[-15:])
    finally:
        sim.stop()


# -- the installer's pairing: tools/meterprobe.py --homewizard-pair ------------------------


def probe(*args, timeout=60):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "meterprobe.py")] + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.returncode, result.stdout + result.stderr


def test_meterprobe_pairs_when_the_button_is_pressed_and_prints_the_token_once(meter):
    # The owner presses the button while the probe asks: the probe's 403s
    # are answered with a token once pressed.
    def press_when_asked():
        deadline = time.monotonic() + 20
        while meter.pair_requests < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        meter.press_button()

    presser = threading.Thread(target=press_when_asked, daemon=True)
    presser.start()
    code, out = probe("--homewizard-pair", "--host", "127.0.0.1", "--port", str(meter.port), "--ca-file",
                      meter.ca_file, "--wait-s", "30")  # fmt: skip
    presser.join(5)
    assert code == 0, out
    assert "press the button" in out.lower()
    tokens = [t for t in meter.users.values() if t != meter.token]
    assert len(tokens) == 1 and out.count(tokens[0]) == 1, out  # printed once
    assert '"cert_hostname": "appliance/p1dongle/5c2fafaabbcc"' in out
    assert '"model": "homewizard_v2"' in out
    # The token works: the probe reads the meter with it (the pasted config's values).
    code, out = probe("--model", "homewizard_v2", "--host", "127.0.0.1", "--port", str(meter.port), "--token",
                      tokens[0], "--ca-file", meter.ca_file, "--cert-hostname", meter.cert_hostname)  # fmt: skip
    assert code == 0 and "L1:" in out, out
    assert tokens[0] not in out


def test_meterprobe_pairing_gives_up_at_its_deadline_in_words(meter):
    code, out = probe("--homewizard-pair", "--host", "127.0.0.1", "--port", str(meter.port), "--ca-file",
                      meter.ca_file, "--wait-s", "3")  # fmt: skip
    assert code == 1, out
    assert "no button press within 3 s" in out, out
    assert meter.pair_requests >= 2  # it kept asking


def test_meterprobe_pairing_refuses_a_meter_whose_certificate_does_not_check_out(meter):
    other = HttpMeterEmulator("homewizard_v2").start()
    try:
        code, out = probe("--homewizard-pair", "--host", "127.0.0.1", "--port", str(meter.port), "--ca-file",
                          other.ca_file, "--wait-s", "3")  # fmt: skip
    finally:
        other.stop()
    assert code == 1 and "certificate" in out, out
    assert meter.pair_requests == 0
