"""net/portal.py and the captive redirects of net/web.py (both runtimes).

The portal task is stepped with a fake platform (time passed in, a button
to hold, an access point that records what it was asked); the web's
redirects go through the server's own handle_request() on in-memory streams
as in test_web.py. host_tests/system/test_portal_system.py does both
against the running firmware.
"""

import sys

from test_web import make, request

from chargeguard.core.apmode import LONG_PRESS_MS, WIFI_LOST_MS
from chargeguard.net import portal as portal_module
from chargeguard.net import web

PROBES = (
    "/generate_204", "/gen_204", "/hotspot-detect.html", "/library/test/success.html", "/connecttest.txt",
    "/ncsi.txt", "/redirect", "/canonical.html", "/success.txt",
)


class FakePlatform:
    """The platform calls the portal makes; the access point and the button as plain attributes."""

    def __init__(self):
        self.now = 1000
        self.pressed = False
        self.ap = None  # (ssid, password) while open
        self.starts = 0
        self.refuse = False

    def ticks_ms(self):
        return self.now

    def ticks_diff(self, a, b):
        return a - b

    def button_pressed(self, now_ms):
        return self.pressed

    def device_id(self):
        return "A1B2"

    def ap_start(self, ssid, password):
        if self.refuse:
            raise OSError(5, "driver busy")
        self.ap = (ssid, password)
        self.starts += 1
        return "192.168.4.1"

    def ap_stop(self):
        self.ap = None

    def dns_address(self):
        return "127.0.0.1", 0  # any free port: the system test asks a real server


class Station:
    def __init__(self, up):
        self.up = up

    def is_up(self):
        return self.up


def make_portal(needs_setup=False, station=None, password=""):
    platform = FakePlatform()
    lines = []
    portal = portal_module.Portal(
        platform, station, portal_module.ap_name(platform), password, needs_setup, station is not None, lines.append
    )
    return portal, platform, lines


def advance(portal, platform, ms, step=100):
    end = platform.now + ms
    while platform.now < end:
        platform.now += step
        portal.step(platform.now)


def test_first_boot_opens_the_named_access_point_and_the_dns_server():
    portal, platform, lines = make_portal(needs_setup=True)
    assert portal.address() is None
    portal.step(platform.now)
    try:
        assert platform.ap == ("ChargeGuard-A1B2", "")
        assert portal.address() == "192.168.4.1"
        assert portal.dns is not None and portal.dns.sock is not None
        assert any("access point 'ChargeGuard-A1B2' open (no configuration yet, no password)" in line for line in lines)
        assert any("DNS server on 127.0.0.1:0 answers every name with 192.168.4.1" in line for line in lines)
        portal.finish()
        portal.step(platform.now + 100)
        assert platform.ap is None and portal.address() is None and portal.dns is None
        assert lines[-1] == "portal: access point closed"
    finally:
        if portal.dns is not None:
            portal.dns.close()


def test_the_access_point_password_is_handed_over_and_never_logged():
    secret = "setup-secret-77"
    portal, platform, lines = make_portal(needs_setup=True, password=secret)
    portal.step(platform.now)
    try:
        assert platform.ap == ("ChargeGuard-A1B2", secret)
        assert any("password set" in line for line in lines)
        assert not any(secret in line for line in lines)
    finally:
        portal.finish()
        portal.step(platform.now + 100)


def test_a_long_press_opens_and_a_refusing_driver_is_retried_later():
    station = Station(True)
    portal, platform, lines = make_portal(station=station)
    advance(portal, platform, 2 * LONG_PRESS_MS)
    assert platform.ap is None  # nothing pressed, the station up
    platform.pressed = True
    platform.refuse = True
    advance(portal, platform, LONG_PRESS_MS + 200)
    assert platform.ap is None and any("could not start" in line for line in lines)
    # Held on: tried again after RETRY_MS, not on every step.
    platform.refuse = False
    starts = platform.starts
    advance(portal, platform, portal_module.RETRY_MS // 2)
    assert platform.starts == starts
    # That press is spent; released and held again once the retry is due.
    platform.pressed = False
    advance(portal, platform, portal_module.RETRY_MS // 2 + 200)
    platform.pressed = True
    advance(portal, platform, LONG_PRESS_MS + 200)
    try:
        assert platform.ap is not None and portal.mode.reason == "button"
    finally:
        portal.finish()
        portal.step(platform.now + 100)
    assert platform.ap is None


def test_a_long_loss_of_the_home_wifi_opens_and_its_return_closes():
    station = Station(True)
    portal, platform, lines = make_portal(station=station)
    advance(portal, platform, 1000)
    station.up = False
    advance(portal, platform, WIFI_LOST_MS - 1000, step=1000)
    assert platform.ap is None
    advance(portal, platform, 2000, step=1000)
    try:
        assert platform.ap is not None and any("home Wi-Fi unreachable" in line for line in lines)
    finally:
        station.up = True
        advance(portal, platform, 100)
    assert platform.ap is None and portal.dns is None


class OpenPortal:
    def __init__(self, address):
        self.ip = address
        self.seen_at = []

    def address(self):
        return self.ip

    def seen(self, now_ms):
        self.seen_at.append(now_ms)


def web_with(portal, port=80):
    app, platform, meter, api, server, clock = make()
    server.portal = portal
    server.hostname = "chargeguard"
    server.port = port
    return server


def get(server, path, host):
    headers = {"Host": host} if host is not None else {}
    lines = ["GET %s HTTP/1.1" % path]
    for name in headers:
        lines.append("%s: %s" % (name, headers[name]))
    from test_web import raw

    status, got, body, _ = raw(server, ("\r\n".join(lines) + "\r\n\r\n").encode())
    return status, got


def test_probe_urls_redirect_to_the_setup_page_while_the_portal_is_open():
    portal = OpenPortal("192.168.4.1")
    server = web_with(portal)
    hosts = {
        "/generate_204": "connectivitycheck.gstatic.com", "/gen_204": "clients3.google.com",
        "/hotspot-detect.html": "captive.apple.com", "/library/test/success.html": "www.apple.com",
        "/connecttest.txt": "www.msftconnecttest.com", "/ncsi.txt": "www.msftncsi.com",
        "/redirect": "www.msftconnecttest.com", "/canonical.html": "detectportal.firefox.com",
        "/success.txt": "detectportal.firefox.com",
    }
    for path in PROBES:
        for host in (hosts[path], "192.168.4.1"):
            status, headers = get(server, path, host)
            assert status == 302, (path, host, status)
            assert headers["location"] == "http://192.168.4.1" + web.PORTAL_PATH
            assert headers["cache-control"] == "no-store"
    assert len(portal.seen_at) == 2 * len(PROBES)


def test_an_unknown_host_is_sent_to_the_portal_the_device_itself_is_served():
    server = web_with(OpenPortal("192.168.4.1"))
    for host in ("example.com", "www.google.com:80", "neverssl.com", "chargeguardian.com", "xchargeguard.local"):
        status, headers = get(server, "/some/page?x=1", host)
        assert status == 302 and headers["location"] == "http://192.168.4.1" + web.PORTAL_PATH, host
    for host in ("192.168.4.1", "192.168.1.77:80", "chargeguard", "ChargeGuard.local", "chargeguard.fritz.box", None):
        status, headers = get(server, "/api/status", host)
        assert status == 200, host
    assert get(server, "/nothing-here", "192.168.4.1")[0] == 404


def test_the_location_carries_a_port_other_than_80():
    server = web_with(OpenPortal("127.0.0.1"), port=8080)
    status, headers = get(server, "/generate_204", "connectivitycheck.gstatic.com")
    assert status == 302 and headers["location"] == "http://127.0.0.1:8080" + web.PORTAL_PATH


def test_without_the_portal_probe_paths_are_unknown_routes():
    for portal in (None, OpenPortal(None)):
        server = web_with(portal)
        for path in PROBES:
            status, _ = get(server, path, "connectivitycheck.gstatic.com")
            assert status == 404, path
        status, doc, _ = request(server, "GET", "/api/status", change=False)
        assert status == 200


def test_from_config_hands_the_portal_to_the_web():
    app, platform, meter, api, _, _ = make()

    class Platform:
        ticks_ms = staticmethod(lambda: 0)

        def web_address(self, port):
            return "127.0.0.1", port

    portal = OpenPortal("192.168.4.1")
    context = {"site_state": app.site_state, "command_api": app.command_api, "admin_password": "",
               "portal": portal, "hostname": "Garage-CG"}
    server = web.from_config({"enabled": True, "port": 80}, Platform(), lambda line: None, context)
    assert server.portal is portal and server.hostname == "garage-cg"


def _build(config_doc, board=None):
    import json

    import support
    from chargeguard import app as app_module
    from chargeguard.platform import unix

    storage = support.make_tmpdir("portal")
    if config_doc is not None:
        with open(storage + "/config.json", "w") as handle:
            json.dump(config_doc, handle)
    platform = unix.Platform(board or {"name": "unix", "button": None}, storage_dir=storage, uart_device=storage + "/no-p1")
    return app_module.build(platform, log=lambda line: None)


def test_build_makes_the_portal_only_where_the_access_point_can_open():
    # Out of the box: the portal opens at its first look, and the web pages are on (the portal is them).
    app = _build(None)
    assert app.config_source is None
    assert app.portal is not None and app.portal.mode.needs_setup
    assert [name for name, _ in app.interfaces] == ["web"]
    assert app.interfaces[0][1].portal is app.portal
    assert app.portal.ssid == "ChargeGuard-0000"
    # Configured, no Wi-Fi, on the host's network, no button: nothing can open it, its code is not loaded.
    plain = {"version": 1, "meter": {"type": "p1"}, "chargers": []}
    app = _build(plain)
    assert app.config_source == "config.json" and app.portal is None and app.interfaces == []
    # A configured Wi-Fi, no button: only its long loss can open it, so the
    # portal is made then (test_a_lost_wifi_makes_the_portal_then_it_opens).
    with_wifi = {"version": 1, "meter": {"type": "p1"}, "chargers": [],
                 "wifi": {"ssid": "home", "password": "correct-horse-9", "ap_password": "setup-pass-1"}}
    app = _build(with_wifi)
    assert app.portal is None and app.portal_later is not None
    # A button: the portal is there, closed.
    app = _build(with_wifi, {"name": "unix", "button": 0})
    assert app.portal is not None and not app.portal.mode.needs_setup and app.portal.address() is None
    assert app.portal._password == "setup-pass-1" and app.portal_later is None
    app = _build(plain, {"name": "unix", "button": 0})
    assert app.portal is not None and not app.portal.mode.has_wifi


def test_a_lost_wifi_makes_the_portal_then_it_opens():
    from chargeguard import app as app_module
    from chargeguard.core import apmode

    assert app_module.WIFI_LOST_MS == apmode.WIFI_LOST_MS  # app.py's copy of the rule's constant
    for web_on in (False, True):
        config = {"version": 1, "meter": {"type": "p1"}, "chargers": [], "admin": {"password": "correct-horse-9"},
                  "wifi": {"ssid": "home", "password": "correct-horse-9", "ap_password": "setup-pass-1"},
                  "web": {"enabled": web_on}}
        app = _build(config)
        assert app.portal is None
        up = [True]
        app.network.is_up = lambda: up[0]
        app.watch_wifi(5000)
        up[0] = False
        app.watch_wifi(5000 + WIFI_LOST_MS - 1)  # a router restarting: nothing yet
        assert app.portal is None and app.portal_later is not None
        app.watch_wifi(5000 + WIFI_LOST_MS)
        portal = app.portal
        assert portal is not None and app.portal_later is None and portal._password == "setup-pass-1"
        # Counted from the link's last moment up: it opens at its first step.
        assert portal.mode.step(5000 + WIFI_LOST_MS, False, False) == apmode.OPENED
        assert portal.mode.reason == "wifi_lost"
        if web_on:
            assert portal.pages is None and app.interfaces[0][1].portal is portal
        else:
            assert portal.pages is not None and portal.pages[0] is app and portal.pages[1]["portal"] is portal
            # The context made now (attach.later_context, from the parts
            # startup.py kept) is the one a portal made at boot gets.
            context = portal.pages[1]
            assert sorted(context) == ["admin_password", "charger_models", "command_api", "first_boot", "hostname",
                                       "meter", "portal", "site_phases", "site_state", "web_port"]
            assert context["admin_password"] == "correct-horse-9" and context["hostname"] == "chargeguard"
            assert context["first_boot"] is False and context["web_port"] is None and context["charger_models"] == []
            assert context["meter"]["type"] == "p1" and context["site_phases"] == 3
            assert callable(context["site_state"]) and callable(context["command_api"])
        # Loaded for the wiring (at boot or now) and unloaded after it.
        assert "chargeguard.attach" not in sys.modules


def test_a_portal_that_finds_no_heap_is_made_again_a_minute_later():
    from chargeguard import app as app_module
    from chargeguard.core import apmode

    config = {"version": 1, "meter": {"type": "p1"}, "chargers": [], "admin": {"password": "correct-horse-9"},
              "wifi": {"ssid": "home", "password": "correct-horse-9", "ap_password": "setup-pass-1"}}
    app = _build(config)
    said = []
    app.log = said.append
    up = [True]
    app.network.is_up = lambda: up[0]
    app.watch_wifi(0)  # last up at 0
    up[0] = False

    from chargeguard.net import portal as portal_module

    def no_heap(*args):
        raise MemoryError("memory allocation failed")

    real = portal_module.make
    portal_module.make = no_heap
    try:
        app.watch_wifi(WIFI_LOST_MS)
    finally:
        portal_module.make = real
    assert app.portal is None and app.portal_later is not None  # kept: tried again
    assert said == ["setup access point: not enough memory to open it now, trying again in a minute"]
    app.watch_wifi(WIFI_LOST_MS + app_module.PORTAL_RETRY_MS - 1)
    assert app.portal is None
    app.watch_wifi(WIFI_LOST_MS + app_module.PORTAL_RETRY_MS)
    assert app.portal is not None and app.portal_later is None
    assert app.portal.mode.step(WIFI_LOST_MS + app_module.PORTAL_RETRY_MS, False, False) == apmode.OPENED


# --- the pages while the access point is open, whatever web.enabled says --------------


def _free_tcp_port():
    # A port nobody listens on (both runtimes: MicroPython has no getsockname),
    # below Linux's ephemeral range (32768 on): there an outgoing connection
    # may take it before the portal binds it (tools/sim/ports.py says more).
    import socket

    for port in range(12000 + (_pid() % 500) * 20, 32768, 7):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            return port
        except OSError:
            continue
        finally:
            probe.close()
    raise AssertionError("no free port")


def _pid():
    import os

    getpid = getattr(os, "getpid", None)
    return getpid() if getpid is not None else 0


async def _http_status(port, path):
    """The status of GET `path` on 127.0.0.1:port, or None when nothing listens there. Deadline 5 s."""
    import asyncio

    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except OSError:
        return None
    try:
        # MicroPython's connect does not wait: a refusal comes with the first write.
        writer.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        return int(line.split()[1]) if line else None
    except OSError:
        return None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def _until(check, deadline_ms):
    # Polls `check` (async, returns a value) until it says True; the last value.
    import asyncio
    import time

    start = time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.monotonic() * 1000)
    while True:
        value = await check()
        now = time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.monotonic() * 1000)
        if value or now - start > deadline_ms:
            return value
        await asyncio.sleep(0.05)


def test_the_button_opens_the_setup_pages_with_web_disabled_and_closing_stops_them():
    import asyncio
    import json
    import os
    import sys

    import support
    from chargeguard import app as app_module
    from chargeguard.platform import unix

    storage = support.make_tmpdir("portal-pages")
    button = storage + "/button"
    config = {"version": 1, "meter": {"type": "p1"}, "chargers": [], "admin": {"password": "correct-horse-9"}}
    with open(storage + "/config.json", "w") as handle:
        json.dump(config, handle)
    platform = unix.Platform({"name": "unix", "button": button}, storage_dir=storage, uart_device=storage + "/no-p1")
    lines = []
    app = app_module.build(platform, log=lines.append)
    portal = app.portal
    # web.enabled is off: no web interface; the portal holds what the pages need.
    assert app.interfaces == [] and portal is not None and portal.pages is not None
    port = _free_tcp_port()
    platform.web_address = lambda configured: ("127.0.0.1", port)
    platform.dns_address = lambda: ("127.0.0.1", 0)
    # The server starts within one loop turn and stops as its task is
    # cancelled; 5 s is the slack of a busy machine, not a guess at a sleep.
    deadline_ms = 5000

    async def check():
        answered = lambda: _http_status(port, "/api/setup")  # noqa: E731
        now = platform.ticks_ms()
        portal.step(now)
        assert portal.address() is None
        assert await _http_status(port, "/api/setup") is None  # web.enabled off: nothing listens
        with open(button, "w"):
            pass
        try:
            portal.step(now + 100)
            portal.step(now + 100 + LONG_PRESS_MS)
        finally:
            os.remove(button)
        assert portal.address() == "127.0.0.1" and portal.mode.reason == "button", lines
        assert await _until(answered, deadline_ms) == 200, lines
        assert await _http_status(port, "/api/status") == 200
        assert app.state is not None
        # The owner is done: the access point closes, and the pages with it.
        portal.finish()
        portal.step(now + 200 + LONG_PRESS_MS)
        assert portal.address() is None and portal.web_task is None

        async def refused():
            return await _http_status(port, "/api/setup") is None

        assert await _until(refused, deadline_ms), lines
        assert "portal: setup pages closed" in lines
        # Their heap is given back: no site state, no web modules.
        assert app.state is None and app.api is None
        assert "chargeguard.net.web" not in sys.modules and "chargeguard.commands" not in sys.modules

    asyncio.run(check())


def test_without_a_button_file_the_unix_port_has_no_button():
    from chargeguard.platform import unix, unix_ap

    storage = __import__("support").make_tmpdir("portal-button")
    platform = unix.Platform({"name": "unix", "button": storage + "/held"}, storage_dir=storage)
    unix_ap.attach(platform)
    assert platform.button_pressed(0) is False
    with open(storage + "/held", "w"):
        pass
    assert platform.button_pressed(0) is True
    plain = unix.Platform({"name": "unix", "button": None}, storage_dir=storage)
    unix_ap.attach(plain)
    assert plain.button_pressed(0) is False


def test_pages_that_cannot_start_leave_the_access_point_open_and_say_why():
    import json

    import support
    from chargeguard import app as app_module
    from chargeguard.platform import unix

    storage = support.make_tmpdir("portal-nopages")
    with open(storage + "/config.json", "w") as handle:
        json.dump({"version": 1, "meter": {"type": "p1"}, "chargers": []}, handle)
    platform = unix.Platform({"name": "unix", "button": storage + "/button"}, storage_dir=storage, uart_device=storage + "/no-p1")
    lines = []
    app = app_module.build(platform, log=lines.append)
    portal = app.portal

    def no_address(port):
        raise MemoryError("memory allocation failed")

    platform.web_address = no_address
    platform.dns_address = lambda: ("127.0.0.1", 0)
    portal.mode.needs_setup = True  # opens at the next look, as a button would
    portal.step(platform.ticks_ms())
    try:
        assert portal.address() == "127.0.0.1" and portal.web_task is None, lines
        assert any("not enough heap for the setup pages" in line for line in lines), lines
        assert app.state is None and app.api is None  # given back
    finally:
        portal.finish()
        portal.step(platform.ticks_ms() + 100)
    assert portal.address() is None and lines[-1] == "portal: access point closed", lines
