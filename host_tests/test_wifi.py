"""The Wi-Fi link state machine (net/wifi.py) against a fake station, on both runtimes.

Time is passed in (step(now_ms)), so every deadline of the product rules
(join timeout, backoff) is checked exactly, without sleeping.
"""

from chargeguard.core.ticks import ticks_diff
from chargeguard.net import wifi

PASSWORD = "s3cret-Wifi-pw"


class FakeStation:
    """The platform's station calls (esp32.Platform / unix.Platform), scripted by the test."""

    def __init__(self):
        self.ticks_diff = ticks_diff
        self.link = "connecting"  # what wifi_status() answers
        self.calls = []
        self.started = None

    def wifi_start(self, hostname, static):
        self.started = (hostname, static)

    def wifi_begin(self, ssid, password):
        self.calls.append(("begin", ssid, password))

    def wifi_stop(self):
        self.calls.append(("stop",))

    def wifi_status(self):
        return self.link

    def network_up(self):
        return self.link == "up"

    def ip_address(self):
        return "192.168.1.50" if self.link == "up" else None

    def wifi_rssi(self):
        return -60 if self.link == "up" else None

    def begins(self):
        return len([call for call in self.calls if call[0] == "begin"])


def make(ssid="home", **kwargs):
    station = FakeStation()
    lines = []
    hostname = kwargs.get("hostname", "chargeguard")
    link = wifi.WifiLink(station, ssid, PASSWORD, hostname, kwargs.get("static"), lines.append)
    return link, station, lines


def no_secret(lines):
    for line in lines:
        assert PASSWORD not in line, line


def run_until(link, station, now, end, step_ms=wifi.POLL_MS):
    while ticks_diff(end, now) > 0:
        link.step(now)
        now += step_ms
    return now


def test_boot_join_reports_ssid_ip_rssi_and_reconnects():
    link, station, lines = make(static=None)
    link.start(0)
    assert station.started == ("chargeguard", None)
    assert station.calls == [("begin", "home", PASSWORD)]
    assert link.state == "joining" and not link.is_up()
    assert "joining 'home'" in lines[0] and "DHCP" in lines[0]
    now = run_until(link, station, 0, 3000)  # association and DHCP take 3 s
    assert link.state == "joining"
    station.link = "up"
    link.step(now)
    assert link.is_up() and link.joins == 1 and link.reconnects == 0
    assert lines[-1] == "wifi: connected to 'home', ip 192.168.1.50, rssi -60 dBm, reconnects 0"
    # While up: a status line every REPORT_MS, nothing in between.
    count = len(lines)
    run_until(link, station, now + 1, now + wifi.REPORT_MS)
    assert len(lines) == count
    link.step(now + wifi.REPORT_MS)
    assert len(lines) == count + 1 and "connected to 'home'" in lines[-1]
    no_secret(lines)


def test_wrong_password_backs_off_doubling_up_to_the_ceiling():
    link, station, lines = make()
    station.link = "wrong_password"
    link.start(0)
    link.step(0)
    assert link.state == "waiting" and link.problem == "wrong password"
    assert station.calls[-1] == ("stop",)  # the driver's own attempts end
    assert "could not join 'home': wrong password; next try in 1 s" in lines[-1]
    # Each failed attempt doubles the wait: 1, 2, 4, 8, 16, 32, 60, 60 s.
    now = 0
    waits = []
    for _ in range(8):
        begins = station.begins()
        start = now
        while station.begins() == begins:
            now += 50
            link.step(now)
        waits.append(now - start)
        link.step(now)  # the attempt fails at once again
    expected = [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
    for got, want in zip(waits, expected):
        assert want <= got < want + 100, (waits, expected)
    no_secret(lines)


def test_access_point_absent_at_boot_then_present():
    link, station, lines = make()
    station.link = "no_ap"
    link.start(0)
    now = run_until(link, station, 0, 10000)
    assert link.state in ("waiting", "joining") and link.attempts >= 3
    assert "access point not found" in lines[-1]
    station.link = "connecting"
    # The next attempt starts within the backoff in force (at most 8 s here).
    now = run_until(link, station, now, now + 8000)
    station.link = "up"
    link.step(now)
    assert link.is_up() and link.joins == 1 and link.reconnects == 0


def test_slow_association_is_waited_for_until_the_join_timeout():
    link, station, lines = make()
    link.start(0)
    now = run_until(link, station, 0, wifi.JOIN_TIMEOUT_MS - 500)
    assert link.state == "joining" and station.begins() == 1  # slow, not failed
    station.link = "up"
    link.step(now)
    assert link.is_up() and link.attempts == 1
    # A join that never completes ends at the timeout with a clear message.
    link2, station2, lines2 = make()
    link2.start(0)
    run_until(link2, station2, 0, wifi.JOIN_TIMEOUT_MS)
    assert link2.state == "joining"
    link2.step(wifi.JOIN_TIMEOUT_MS)
    assert link2.state == "waiting"
    assert "no connection within 20 s" in lines2[-1]
    assert station2.calls[-1] == ("stop",)


def test_drop_and_return_counts_reconnects_and_resets_the_backoff():
    link, station, lines = make()
    station.link = "up"
    link.start(0)
    link.step(0)
    assert link.is_up()
    now = 1000
    for drop in range(1, 4):
        station.link = "no_ap"  # the access point restarts
        link.step(now)
        assert link.state == "waiting" and link.drops == drop
        assert "lost 'home': connection lost; next try in 1 s" in lines[-1]
        # Still away for the first attempts: the backoff grows.
        now = run_until(link, station, now, now + 6000)
        assert link.backoff_ms > wifi.RETRY_FIRST_MS
        station.link = "up"
        now = run_until(link, station, now, now + 5000)
        assert link.is_up() and link.reconnects == drop
        assert lines[-1].endswith("reconnects %d" % drop)
        assert link.backoff_ms == wifi.RETRY_FIRST_MS
        now += 1000
    no_secret(lines)


def test_driver_refusing_to_connect_is_a_failed_attempt():
    link, station, lines = make()

    def refuse(ssid, password):
        raise OSError(16)

    station.wifi_begin = refuse
    link.start(0)
    assert link.state == "waiting" and "refused to connect (errno 16)" in lines[-1]


def test_no_ssid_tries_nothing():
    link, station, lines = make(ssid="")
    link.start(0)
    link.step(100)
    assert link.state == "off" and station.calls == [] and station.started is None and lines == []


def build_with(wifi_doc, up):
    import support
    import test_app

    storage = support.make_tmpdir("wifi-app")
    with open(storage + "/config.json", "w") as handle:
        handle.write('{"version": 1, "chargers": [], "wifi": %s}' % wifi_doc)

    class Board(test_app.FakePlatform):
        name = "esp32"

        def open_uart(self, *args):
            raise OSError(19, "no P1 device")

        def network_up(self):
            return up

    lines = []
    return test_app.app_module.build(Board(storage), log=lines.append), lines


def test_build_without_ssid_says_so_plainly():
    app, lines = build_with('{"ssid": ""}', up=False)
    assert app.network is None and app.needs_network
    assert any("wifi: not configured (wifi.ssid is empty): no network, chargers stay unavailable" in line
               for line in lines), lines
    app, lines = build_with('{"ssid": ""}', up=True)
    assert any("using the host's network" in line for line in lines), lines


def test_build_with_ssid_makes_the_link_and_the_resolver():
    from chargeguard.net import http

    doc = '{"ssid": "home", "password": "%s", "hostname": "cg", "ip": "192.168.1.20", "gateway": "192.168.1.1"}'
    try:
        app, lines = build_with(doc % PASSWORD, up=False)
        assert app.network.ssid == "home" and app.network.hostname == "cg"
        assert app.network.static == ("192.168.1.20", "255.255.255.0", "192.168.1.1", "192.168.1.1")
        assert app.ntp_server == "pool.ntp.org"
        assert http._resolver[0] is not None  # host names go through net/dns.py
        no_secret(lines)
    finally:
        http.use_resolver(None)


def test_from_config_builds_static_address_with_gateway_as_default_dns():
    station = FakeStation()
    doc = {"ssid": "home", "password": PASSWORD, "hostname": "cg", "ip": "192.168.1.20",
           "netmask": "255.255.255.0", "gateway": "192.168.1.1", "dns": "", "ntp_server": ""}
    link = wifi.from_config(doc, station, lambda line: None)
    assert link.static == ("192.168.1.20", "255.255.255.0", "192.168.1.1", "192.168.1.1")
    doc["dns"] = "9.9.9.9"
    assert wifi.from_config(doc, station, None).static[3] == "9.9.9.9"
    doc["ip"] = ""
    assert wifi.from_config(doc, station, None).static is None
    assert PASSWORD not in repr(link.__dict__.get("static"))


def test_chargers_are_unavailable_while_the_network_is_down():
    import asyncio

    import test_app

    charger = test_app.FakeCharger()
    app, platform, meter, lines = test_app.make_app([charger])
    up = [False]
    platform.network_up = lambda: up[0]

    app.needs_network = True  # as build() sets it

    async def scenario():
        meter.push(2, 2, 2)
        await asyncio.sleep(0.05)
        assert charger.applied == [] and charger.polls == 0  # nothing can leave
        assert app.statuses[0].reachable is False
        assert app.commands[0].reason == "unavailable"
        assert "charger c0: no network" in lines
        up[0] = True
        charger.status.reachable = True
        app.poll_due[0] = True
        app.wake[0].set()
        await asyncio.sleep(0.05)
        assert charger.polls == 1

    asyncio.run(test_app.run_for(app, 10, scenario))


def test_every_platform_word_for_a_failed_join_has_a_message():
    for word, text in (("wrong_password", "wrong password"), ("handshake", "handshake failed"),
                       ("no_ap", "access point not found"), ("failed", "refused")):
        link, station, lines = make()
        station.link = word
        link.start(0)
        link.step(0)
        assert link.state == "waiting" and text in lines[-1], (word, lines)


def test_a_step_allocates_nothing_while_joining_waiting_or_up():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    for link_state in ("connecting", "no_ap", "up"):
        link, station, lines = make()
        station.link = link_state
        link.start(0)
        link.step(0)  # the change of state (and its console line) happens here
        now = 1
        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            for _ in range(3):  # no report, no new attempt due within 750 ms
                link.step(now)
                now += wifi.POLL_MS
            after = gc.mem_alloc()
        finally:
            gc.enable()
        assert after - before == 0, (link_state, after - before)


def test_a_station_that_fails_to_start_is_started_again_at_the_next_attempt():
    link, station, lines = make()
    starts = []

    def flaky_start(hostname, static):
        starts.append(hostname)
        if len(starts) == 1:
            raise OSError(12290)  # e.g. ESP_ERR_WIFI_NOT_INIT

    station.wifi_start = flaky_start
    link.start(0)
    assert link.state == "waiting" and "cannot start the station (errno 12290)" in lines[-1]
    assert station.begins() == 0
    link.step(wifi.RETRY_FIRST_MS)
    assert starts == ["chargeguard", "chargeguard"] and station.begins() == 1 and link.state == "joining"
    link.step(wifi.RETRY_FIRST_MS + wifi.POLL_MS)
    station.link = "up"
    link.step(wifi.RETRY_FIRST_MS + 2 * wifi.POLL_MS)
    assert link.is_up() and len(starts) == 2  # started once it worked, not at every attempt
