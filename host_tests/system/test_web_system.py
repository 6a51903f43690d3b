"""The web interface of the built firmware on the unix port, through real sockets (CPython's http.client).

The simulator runs the firmware with the web interface on a free loopback
port. Checked: the API and the page over HTTP, changes with and without the
password, fuzzed request lines, headers and bodies (a seeded, bounded loop:
the firmware answers each with a status and keeps guarding), and clients
that connect and send nothing: they must not delay a guard decision (the
load step of test_end_to_end still reaches the box within one telegram
period while every connection slot is held) and are dropped after the read
deadline.
"""

import base64
import http.client
import json
import os
import random
import socket
import time

from test_end_to_end import (
    BOOT_S,
    COMMAND_S,
    CONTROL_TICK_S,
    FAST_GUARD,
    HOST_SLACK_S,
    TELEGRAM_PERIOD_S,
    boot_and_settle,
    firmware_output,
    intensity_writes,
    pump_until,
    status_lines,
)

from chargeguard.net.web import CHANGE_HEADER, MAX_BODY, MAX_CLIENTS, MAX_HEADERS, MAX_LINE, READ_MS, WRITE_MS
from ports import free_port
from run import DEFAULT_HEAP, SIM_ADMIN_PASSWORD, WEB_HEAP_K, Simulation, wait_for as wait

HEAP = "%dK" % (int(DEFAULT_HEAP[:-1]) + WEB_HEAP_K)
READ_S = READ_MS / 1000
# An answer is written within the write deadline once the request is read.
ANSWER_S = READ_S + WRITE_MS / 1000 + HOST_SLACK_S
FUZZ_REQUESTS = 120
# A change made over the API takes effect on the next decision (a control
# tick at most) and its command reaches the box within COMMAND_S.
CHANGE_S = CONTROL_TICK_S + COMMAND_S + HOST_SLACK_S
# The status page polls /api/status every 2 s (firmware/www/status.html):
# what the firmware decided shows within two polls.
PAGE_POLL_S = 2.0
PAGE_S = 2 * PAGE_POLL_S + HOST_SLACK_S


def start():
    sim = Simulation(heap=HEAP, car_delay_s=0.2, run_name="web", guard=FAST_GUARD, web_port=free_port())
    sim.site.set_house((2.0, 2.0, 2.0))
    return sim


def ask(sim, method, path, body=None, headers=None):
    """(status, headers dict, body bytes) of one request."""
    connection = http.client.HTTPConnection("127.0.0.1", sim.web_port, timeout=ANSWER_S)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), response.read()
    finally:
        connection.close()


def change_headers(password=SIM_ADMIN_PASSWORD):
    token = base64.b64encode(("admin:" + password).encode()).decode()
    return {"Content-Type": "application/json", CHANGE_HEADER: "1", "Authorization": "Basic " + token}


def web_up(sim):
    try:
        return ask(sim, "GET", "/api/status")[0] == 200
    except OSError:
        return False


def raw_exchange(sim, data, timeout_s=ANSWER_S):
    """Send raw bytes, read until the server closes; the answer's bytes."""
    with socket.create_connection(("127.0.0.1", sim.web_port), timeout=timeout_s) as connection:
        try:
            connection.sendall(data)
        except OSError:
            pass  # the server may close on an oversized request before taking all of it
        out = b""
        try:
            while True:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            pass
        return out


def test_status_settings_and_a_mode_change_over_http():
    sim = start()
    try:
        boot_and_settle(sim, 16)
        assert wait(lambda: web_up(sim), BOOT_S), firmware_output(sim)
        status, headers, body = ask(sim, "GET", "/api/status")
        doc = json.loads(body)
        assert doc["grid"]["have_reading"] and doc["chargers"][0]["name"] == "Trydan"
        assert doc["chargers"][0]["offered_ma"] == 16000
        status, headers, body = ask(sim, "GET", "/")
        assert status == 200 and headers["content-encoding"] == "gzip" and body[:2] == b"\x1f\x8b"
        # Refused: no password, then a cross-site attempt, then a bad value.
        refused = ask(sim, "POST", "/api/chargers/0", json.dumps({"mode": "off"}), {"Content-Type": "application/json", CHANGE_HEADER: "1"})
        assert refused[0] == 401
        cross = dict(change_headers(), **{"Sec-Fetch-Site": "cross-site"})
        assert ask(sim, "POST", "/api/chargers/0", json.dumps({"mode": "off"}), cross)[0] == 403
        bad = ask(sim, "POST", "/api/chargers/0", json.dumps({"max_a": 99}), change_headers())
        assert bad[0] == 422 and "chargers.0.max_a" in json.loads(bad[2])["errors"]
        assert json.loads(ask(sim, "GET", "/api/settings")[2])["chargers.0.mode"] == "site"
        # With the password: the charger is switched off on the next decision.
        status, _, body = ask(sim, "POST", "/api/chargers/0", json.dumps({"mode": "off"}), change_headers())
        assert status == 200 and json.loads(body)["chargers.0.mode"] == "off"
        assert pump_until(sim, lambda: sim.trydan.setting("Paused") == 1, CHANGE_S)
        doc = json.loads(ask(sim, "GET", "/api/status")[2])
        assert doc["chargers"][0]["offered_ma"] == 0 and doc["chargers"][0]["reason"] == "off"
        for reply in (refused, bad):
            assert SIM_ADMIN_PASSWORD.encode() not in reply[2]
    finally:
        sim.stop()


def _fuzz_request(rng):
    """One malformed or hostile request (bytes): mutated request lines, headers and bodies."""
    methods = [b"GET", b"POST", b"PATCH", b"PUT", b"DELETE", b"OPTIONS", b"HEAD", b"G\x00T", b"", b"POST POST"]
    paths = [b"/api/status", b"/api/settings", b"/api/chargers/0", b"/api/chargers/%ff", b"/", b"*", b"//..//",
             b"/api/chargers/" + b"9" * 40, b"/" + b"x" * rng.randint(0, 2 * MAX_LINE), b"/api/login",
             b"/api/setup/finish", b"/api/setup/meter", b"/api/setup/charger", b"/api/setup/wifi", b"/api/reboot"]
    versions = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9", b"", b"HTTP/1.1 extra", b"\xff\xfe"]
    line = b" ".join([rng.choice(methods), rng.choice(paths), rng.choice(versions)])
    headers = []
    for _ in range(rng.randint(0, MAX_HEADERS + 4)):
        name = rng.choice([b"Host", b"Content-Type", b"Content-Length", b"X-ChargeGuard", b"Authorization", b"Cookie",
                           b"Origin", b"Sec-Fetch-Site", b"X" * rng.randint(1, 40), b""])
        value = rng.choice([b"1", b"application/json", b"-1", b"99999999", b"0", b"Basic %%%%", b"Basic " + b"A" * 300,
                            bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 60))), b"x" * rng.randint(0, 2 * MAX_LINE)])
        headers.append(name + rng.choice([b": ", b":", b" ", b""]) + value)
    body = rng.choice([b"", b"{", b"{}", b'{"site.mode": "off"}', b"[" * 400, b"\x00" * 50, b"null",
                       json.dumps({"chargers.0.max_a": rng.randint(-10, 100)}).encode(), b"x" * rng.randint(0, 2 * MAX_BODY)])
    if rng.random() < 0.5:
        headers.append(b"Content-Length: %d" % (len(body) + rng.choice([0, 0, -1, 5, 10000])))
    end = rng.choice([b"\r\n", b"\n", b"\r\n"])
    return line + end + end.join(headers) + (end if headers else b"") + end + body


def test_fuzzed_requests_get_answers_and_the_guard_keeps_going():
    sim = start()
    try:
        boot_and_settle(sim, 16)
        assert wait(lambda: web_up(sim), BOOT_S), firmware_output(sim)
        rng = random.Random(20261130)
        statuses = {}
        for index in range(FUZZ_REQUESTS):
            data = _fuzz_request(rng)
            answer = raw_exchange(sim, data)
            if answer:
                assert answer.startswith(b"HTTP/1."), (data[:200], answer[:200])
                status = int(answer.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500 or status == 503, (data[:300], answer[:300])
                assert SIM_ADMIN_PASSWORD.encode() not in answer
            if index % 10 == 0:
                sim.send_telegram()
        assert set(statuses) & {400, 413}, statuses
        assert sim.firmware.alive(), firmware_output(sim)
        assert not [line for line in sim.lines if "MemoryError" in line or "Traceback" in line], firmware_output(sim)
        # Still serving and still guarding, settings untouched by the fuzz.
        assert web_up(sim)
        settings = json.loads(ask(sim, "GET", "/api/settings")[2])
        assert settings["site.mode"] == "fast" and settings["chargers.0.max_a"] == 16
        lines_before = len(status_lines(sim))
        assert pump_until(sim, lambda: len(status_lines(sim)) > lines_before + 1, 3 + HOST_SLACK_S)
    finally:
        sim.stop()


def test_clients_that_send_nothing_do_not_delay_the_guard():
    sim = start()
    hung = []
    try:
        boot_and_settle(sim, 16)
        assert wait(lambda: web_up(sim), BOOT_S), firmware_output(sim)
        # Every connection slot held by a client that connects and sends nothing, and more waiting.
        for _ in range(MAX_CLIENTS + 2):
            hung.append(socket.create_connection(("127.0.0.1", sim.web_port), timeout=ANSWER_S))
        opened = time.monotonic()
        # The load step of test_end_to_end: the box hears the cut before the next telegram.
        sim.site.set_house((15.0, 2.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: intensity_writes(sim.trydan, written_ns), TELEGRAM_PERIOD_S), firmware_output(sim)
        write = intensity_writes(sim.trydan, written_ns)[0]
        assert int(write.value) == 9 and write.t_ns - written_ns < TELEGRAM_PERIOD_S * 1e9
        # The silent clients are answered 408 and dropped after the read deadline (the extra ones got 503 at once).
        answers = []
        for connection in hung:
            out = b""
            while True:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                out += chunk
            answers.append(out.split(b" ", 2)[1] if out else b"")
        assert sorted(answers).count(b"408") >= 1 and set(answers) <= {b"408", b"503"}, answers
        assert time.monotonic() - opened < ANSWER_S
        assert web_up(sim)
        assert sim.firmware.alive()
    finally:
        for connection in hung:
            connection.close()
        sim.stop()


def test_status_page_follows_a_load_step_in_chromium():
    """Headless Chromium (Debian's, through playwright) on the status page while the house load steps up."""
    import pytest

    chromium = "/usr/bin/chromium"
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        why = "playwright is not installed (%s)" % error
    if why is None and not os.path.exists(chromium):
        why = "%s is missing (Debian's chromium package; .ci/run installs it)" % chromium
    if why is not None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI must run the browser test: " + why)
        pytest.skip(why)
    sim = start()
    try:
        boot_and_settle(sim, 16)
        assert wait(lambda: web_up(sim), BOOT_S), firmware_output(sim)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 390, "height": 844})
                page.goto("http://127.0.0.1:%d/" % sim.web_port)
                offered = page.locator("[data-charger='0'] .offered")
                page_s = PAGE_S
                page.wait_for_function("document.querySelector(\"[data-charger='0'] .offered\") !== null",
                                       timeout=page_s * 1000)
                assert "Offered 16.0 A" in offered.inner_text()
                bar = page.locator("[data-phase='0'] .bar i")
                width_before = float(bar.evaluate("e => parseFloat(e.style.width)"))
                # Load step on L1: the guard cuts the car to 9 A; the page must show it.
                sim.site.set_house((15.0, 2.0, 2.0))
                # The guard cuts on the telegram itself; the page shows it within two polls.
                assert pump_until(sim, lambda: "Offered 9.0 A" in offered.inner_text(), TELEGRAM_PERIOD_S + page_s)
                assert "held back: the main breaker" in page.locator("[data-charger='0'] .reason").inner_text()
                assert float(bar.evaluate("e => parseFloat(e.style.width)")) > width_before
                # Fits a phone: nothing wider than the screen.
                assert page.evaluate("document.documentElement.scrollWidth") <= 390
                # A mode change from the page needs the password: refused first, then done after logging in.
                page.select_option("[data-charger='0'] select", "off")
                page.wait_for_function("document.getElementById('msg').textContent.indexOf('log in') >= 0",
                                       timeout=page_s * 1000)
                assert sim.trydan.setting("Paused") == 0
                page.fill("#pw", "not the password")
                page.click("#login button")
                page.wait_for_function("document.getElementById('msg').textContent.indexOf('wrong password') >= 0",
                                       timeout=page_s * 1000)
                page.fill("#pw", SIM_ADMIN_PASSWORD)
                page.click("#login button")
                page.wait_for_function("document.getElementById('msg').textContent.indexOf('logged in') >= 0",
                                       timeout=page_s * 1000)
                page.select_option("[data-charger='0'] select", "off")
                assert pump_until(sim, lambda: sim.trydan.setting("Paused") == 1, CHANGE_S)
                page.wait_for_function("document.querySelector(\"[data-charger='0'] .reason\").textContent == 'switched off'",
                                       timeout=page_s * 1000)
            finally:
                browser.close()
    finally:
        sim.stop()
