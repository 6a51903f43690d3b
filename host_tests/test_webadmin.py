"""The setup wizard's API (net/webadmin.py through net/web.py): first-boot access, Wi-Fi scan and trial join,
the meter and charger checks, the finish, reboot, and fuzzed bodies (both runtimes).

Requests go through the server's own handle_request() on in-memory streams,
as in test_web.py; a scenario that needs a task to run between requests
(the trial join) runs in one event loop. host_tests/system/test_wizard_system.py
does it over real sockets against the firmware and the emulators, and in Chromium.
"""

import asyncio
import json

from support import exists
from test_app_optimiser import push_w
from test_web import PASSWORD, Reader, Writer, auth, make, raw, request

from chargeguard.net import web

WIFI_PASSWORD = "home-wifi-pass"


class WifiPlatform:
    """The platform calls the wizard makes: a scan list and a join whose outcome the test chooses."""

    def __init__(self, clock):
        from chargeguard.platform import common

        self.clock = clock
        self.ticks_diff = common.ticks_diff
        self.networks = [("home", -48, True), ("neighbour", -80, True)]
        self.link = "idle"
        self.begun = []  # SSIDs asked (never the password)
        self.stops = 0

    def ticks_ms(self):
        return self.clock()

    async def sleep_ms(self, ms):
        self.clock.now += ms
        await asyncio.sleep(0)

    def wifi_scan(self):
        return list(self.networks)

    def wifi_start(self, hostname, static):
        pass

    def wifi_begin(self, ssid, password):
        self.begun.append(ssid)
        if ssid not in [row[0] for row in self.networks]:
            self.link = "no_ap"
        else:
            self.link = "up" if password == WIFI_PASSWORD else "wrong_password"

    def wifi_status(self):
        return self.link

    def wifi_stop(self):
        self.stops += 1

    def ip_address(self):
        return "192.168.1.77" if self.link == "up" else None


def first_boot(chargers=0):
    app, platform, meter, api, server, clock = make(password="", chargers=max(chargers, 1))
    if not chargers:
        app.state.chargers = []  # as the firmware with no charger configured
    server.platform = WifiPlatform(clock)
    server.first_boot = True  # no configuration stored (startup.py's context)
    return app, platform, meter, api, server, clock


def _bytes(method, path, body=None, password=None, headers=None):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:8080", "X-ChargeGuard: 1"]
    if password:
        lines.append("Authorization: " + auth(password))
    data = b""
    if body is not None:
        data = body if type(body) is bytes else json.dumps(body).encode()
        lines.append("Content-Type: application/json")
        lines.append("Content-Length: %d" % len(data))
    for name in headers or {}:
        lines.append("%s: %s" % (name, headers[name]))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def ask(server, method, path, body=None, password=None):
    """One request inside a running event loop: (status, json)."""
    writer = Writer()
    await server.server.handle_request(Reader(_bytes(method, path, body, password), 64), writer)
    head, _, payload = writer.out.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload) if payload else None


def stored(server):
    with open(server.storage + "/config.json") as handle:
        return json.load(handle)


def test_a_configured_board_without_an_admin_password_refuses_the_wizard_too():
    # A board configured by a file without admin.password: nobody on the LAN
    # (or the open setup network) may read or replace its configuration.
    app, platform, meter, api, server, _ = first_boot()
    server.first_boot = False
    status, doc, _ = request(server, "GET", "/api/config", password=None)
    assert status == 403 and "no admin password is set" in doc["errors"][""], doc
    status, doc, _ = request(server, "POST", "/api/setup/finish", {"site": {"breaker_a": 63}}, password=None)
    assert status == 403 and "no admin password is set" in doc["errors"][""], doc
    assert not exists(server.storage + "/config.json")  # nothing stored


def test_first_boot_reaches_the_wizard_without_a_password_but_not_other_changes():
    app, platform, meter, api, server, _ = first_boot()
    status, doc, _ = request(server, "GET", "/api/setup", change=False)
    assert status == 200 and doc["password_set"] is False and doc["can_scan"] is True
    status, doc, _ = request(server, "GET", "/api/config", password=None)
    assert status == 200 and doc["admin"]["password"] == "" and doc["chargers"] == []
    status, doc, _ = request(server, "POST", "/api/setup/scan", {}, password=None)
    assert status == 200 and [n["ssid"] for n in doc["networks"]] == ["home", "neighbour"], doc
    assert doc["networks"][0] == {"ssid": "home", "rssi": -48, "secured": True}
    # Not the run-time settings, not a reboot: those wait for the password.
    assert request(server, "POST", "/api/settings", {"site.mode": "off"}, password=None)[0] == 403
    assert request(server, "POST", "/api/reboot", {}, password=None)[0] == 403
    # The cross-site checks stay.
    assert request(server, "POST", "/api/setup/scan", {}, change=False)[0] == 403
    cross = {"Sec-Fetch-Site": "cross-site"}
    assert request(server, "POST", "/api/setup/scan", {}, password=None, headers=cross)[0] == 403
    status, doc, _ = request(server, "POST", "/api/setup/scan", b"{}", password=None, headers={"Content-Type": "text/plain"})
    assert status == 415


def test_once_a_password_is_set_every_wizard_step_needs_it():
    app, platform, meter, api, server, clock = make()
    server.platform = WifiPlatform(clock)
    status, doc, _ = request(server, "GET", "/api/setup", change=False)
    assert status == 200 and doc["password_set"] is True
    for method, path, body in (
        ("POST", "/api/setup/scan", {}),
        ("POST", "/api/setup/wifi", {"ssid": "home", "password": WIFI_PASSWORD}),
        ("POST", "/api/setup/meter", {"meter": {"type": "p1"}}),
        ("POST", "/api/setup/charger", {"charger": {"host": "127.0.0.1"}}),
        ("POST", "/api/setup/finish", {"admin": {"password": "a new password"}}),
        ("GET", "/api/setup/options", None),
        ("GET", "/api/config", None),
    ):
        status, doc, _ = request(server, method, path, body, password=None)
        assert status == 401, (path, status, doc)
        status, doc, _ = request(server, method, path, body, password="wrong password!")
        assert status in (401, 429), (path, status)
        server.failures = 0
    assert server.platform.begun == [] and not exists(server.storage + "/config.json")


def test_a_scan_is_refused_while_chargers_are_guarded():
    # On the ESP32 a scan holds the loop for about 2 s.
    app, platform, meter, api, server, clock = make()
    server.platform = WifiPlatform(clock)
    status, doc, _ = request(server, "POST", "/api/setup/scan", {})
    assert status == 409 and "type the network's name" in doc["errors"]["wifi.ssid"], doc


def test_a_trial_join_says_why_it_failed_and_keeps_only_what_worked():
    app, platform, meter, api, server, _ = first_boot()

    async def join(ssid, password):
        status, doc = await ask(server, "POST", "/api/setup/wifi", {"ssid": ssid, "password": password})
        assert status == 202 and doc["state"] == "joining", doc
        for _ in range(200):
            await asyncio.sleep(0)
            status, doc = await ask(server, "GET", "/api/setup/wifi")
            if doc["state"] != "joining":
                return doc
        raise AssertionError("the join never ended")

    async def scenario():
        doc = await join("home", "not the password")
        assert doc["state"] == "failed" and doc["problem"] == "wrong password", doc
        assert server.join_secret is None
        doc = await join("elsewhere", WIFI_PASSWORD)
        assert doc["problem"] == "access point not found", doc
        server.platform.link = "handshake"
        server.platform.wifi_begin = lambda ssid, password: None
        doc = await join("home", WIFI_PASSWORD)
        assert doc["problem"] == "handshake failed (wrong password or weak signal)", doc
        server.platform.link = "connecting"
        doc = await join("home", WIFI_PASSWORD)
        assert doc["problem"] == "no connection within 20 s", doc
        del server.platform.wifi_begin
        doc = await join("home", WIFI_PASSWORD)
        assert doc == {"ssid": "home", "state": "up", "problem": None, "ip": "192.168.1.77"}, doc
        # Bad requests: field errors, nothing started.
        status, doc = await ask(server, "POST", "/api/setup/wifi", {"ssid": "", "password": "short"})
        assert status == 422 and set(doc["errors"]) == {"wifi.ssid", "wifi.password"}, doc

    asyncio.run(scenario())
    assert server.platform.stops == 4


def test_the_meter_check_reads_the_running_meter_per_phase():
    app, platform, meter, api, server, _ = first_boot()
    push_w(app, meter, platform, 6900, 0)
    app.decide()
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": {"type": "p1"}}, password=None)
    assert status == 200 and doc["source"] == "running" and doc["phases"] == 3, doc
    assert doc["power_w"] == [2300, 2300, 2300] and doc["current_ma"] == [10000, 10000, 10000], doc
    # A field the validator refuses: its own message, under its path.
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": {"type": "p1", "baud": 1234}}, password=None)
    assert status == 422 and "meter.baud" in doc["errors"] and "9600" in doc["errors"]["meter.baud"], doc
    status, doc, _ = request(
        server, "POST", "/api/setup/meter", {"meter": {"type": "http", "model": "homewizard"}}, password=None
    )
    assert status == 422 and "meter.host" in doc["errors"], doc
    # The P1 port is the running meter's: other settings cannot be read beside it.
    import sys

    for name in ("chargeguard.config", "chargeguard.meters.http_models", "chargeguard.meters.http_meter", "chargeguard.net.webadmin"):
        sys.modules.pop(name, None)  # as on the device: not loaded while the controller runs
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": {"type": "p1", "baud": 9600, "format": "7E1"}},
                             password=None)
    assert status == 409 and "status page" in doc["errors"]["meter.type"], doc
    # What the request loaded (the validator, a driver) is unloaded after it.
    request(server, "POST", "/api/setup/meter", {"meter": {"type": "http", "model": "homewizard"}}, password=None)
    for name in ("chargeguard.config", "chargeguard.net.webadmin", "chargeguard.meters.http_models"):
        assert name not in sys.modules, name


def test_the_meter_check_takes_the_phases_chosen_on_its_step():
    # First boot is three-phase by default: a one-phase meter model is
    # refused against it, and accepted once the step says the site has one.
    app, platform, meter, api, server, _ = first_boot()
    one = {"type": "http", "model": "shelly_em1"}
    assert not exists(server.storage + "/config.json")
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": one}, password=None)
    assert status == 422 and "one phase" in doc["errors"]["meter.model"], doc
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": one, "phases": 1}, password=None)
    # Only what is still missing (the address): the model fits a one-phase site.
    assert status == 422 and list(doc["errors"]) == ["meter.host"], doc
    for bad in (2, "1", True, 0):
        status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": one, "phases": bad}, password=None)
        assert status == 422 and "site.phases" in doc["errors"], (bad, doc)
    assert not exists(server.storage + "/config.json")  # a check stores nothing: the phases are saved at the finish


def test_the_meter_check_takes_the_meter_in_force_from_the_apps_context():
    # As web.from_config sets them from app.build's context: the stored
    # document is not read again for each check.
    from chargeguard import config

    app, platform, meter, api, server, _ = first_boot()
    push_w(app, meter, platform, 2300, 0)
    app.decide()
    server.running_meter = config.check({"meter": {"type": "p1"}}, 10)[0]["meter"]
    server.site_phases = 1
    server.storage = server.storage + "/nowhere"  # a read of the stored document would find nothing
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": {"type": "p1"}}, password=None)
    assert status == 200 and doc["source"] == "running", doc
    # The site in force has one phase: a one-channel model fits it without being told.
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": {"type": "http", "model": "shelly_em1"}},
                             password=None)
    assert status == 422 and list(doc["errors"]) == ["meter.host"], doc


def test_the_charger_check_names_refused_fields_at_the_chargers_index():
    app, platform, meter, api, server, _ = first_boot()
    body = {"index": 2, "charger": {"type": "v2c_trydan", "host": "", "max_a": 99}}
    status, doc, _ = request(server, "POST", "/api/setup/charger", body, password=None)
    assert status == 422 and set(doc["errors"]) == {"chargers.2.host", "chargers.2.max_a"}, doc
    status, doc, _ = request(server, "POST", "/api/setup/charger", {"charger": {"type": "tesla", "host": "1.2.3.4"}},
                             password=None)
    assert status == 422 and "chargers.0.type" in doc["errors"], doc


def test_options_come_from_the_firmware_tables():
    app, platform, meter, api, server, _ = first_boot()
    status, doc, _ = request(server, "GET", "/api/setup/options", password=None)
    from chargeguard import config

    assert status == 200 and tuple(doc["meter_types"]) == config.METER_TYPES, doc
    assert tuple(doc["charger_types"]) == config.CHARGER_TYPES
    assert "sdm630" in doc["models"]["modbus"] and "homewizard" in doc["models"]["http"]


def _wizard_doc(server):
    doc = request(server, "GET", "/api/config", password=None)[1]
    doc["site"]["breaker_a"] = 32
    doc["chargers"] = [{"name": "Trydan", "type": "v2c_trydan", "host": "192.168.1.60"}]
    doc["web"]["enabled"] = True
    return doc


def test_the_finish_needs_an_admin_password_and_a_joined_network():
    app, platform, meter, api, server, _ = first_boot()
    doc = _wizard_doc(server)
    status, answer, _ = request(server, "POST", "/api/setup/finish", doc, password=None)
    assert status == 422 and "no default" in answer["errors"]["admin.password"], answer
    doc["admin"]["password"] = "short"
    status, answer, _ = request(server, "POST", "/api/setup/finish", doc, password=None)
    assert status == 422 and "admin.password" in answer["errors"], answer
    doc["admin"]["password"] = PASSWORD
    doc["wifi"]["ssid"] = "home"
    doc["wifi"]["password"] = WIFI_PASSWORD
    status, answer, _ = request(server, "POST", "/api/setup/finish", doc, password=None)
    assert status == 422 and "join home first" in answer["errors"]["wifi.ssid"], answer
    # The same validator as the file: every refused field at once, nothing stored.
    doc["wifi"]["ssid"] = ""
    doc["site"]["breaker_a"] = 0
    doc["chargers"][0]["max_a"] = 99
    status, answer, _ = request(server, "POST", "/api/setup/finish", doc, password=None)
    assert status == 422 and {"site.breaker_a", "chargers.0.max_a"} <= set(answer["errors"]), answer
    assert not exists(server.storage + "/config.json") and server.restarts == []


def test_the_finish_stores_the_joined_network_atomically_then_restarts():
    app, platform, meter, api, server, _ = first_boot()
    doc = _wizard_doc(server)

    async def scenario():
        status, _ = await ask(server, "POST", "/api/setup/wifi", {"ssid": "home", "password": WIFI_PASSWORD})
        assert status == 202
        while server.join["state"] == "joining":
            await asyncio.sleep(0)
        doc["wifi"]["ssid"] = "home"
        doc["wifi"]["password"] = "***"  # the page never sends it again: the joined one is used
        doc["admin"]["password"] = PASSWORD
        return await ask(server, "POST", "/api/setup/finish", doc)

    status, answer = asyncio.run(scenario())
    assert status == 200 and answer["stored"] is True and answer["restarting"] is True, answer
    assert answer["ssid"] == "home" and answer["address"] == "http://192.168.1.77:8080/", answer
    assert server.restarts == [1]
    saved = stored(server)
    assert saved["wifi"] == dict(saved["wifi"], ssid="home", password=WIFI_PASSWORD)
    assert saved["admin"]["password"] == PASSWORD and saved["site"]["breaker_a"] == 32
    assert saved["chargers"][0]["host"] == "192.168.1.60" and saved["web"]["enabled"] is True
    assert WIFI_PASSWORD not in json.dumps(answer) and server.join_secret is None
    # The unix port has no mDNS responder of its own (the host's answers for the host): no name promised.
    assert answer["mdns"] is None


def test_the_finish_tells_the_mdns_name_where_the_platform_answers_it():
    # The ESP32 (platform.mdns): its port's responder answers <wifi.hostname>.local once joined.
    app, platform, meter, api, server, _ = first_boot()
    server.platform.mdns = True
    doc = _wizard_doc(server)

    async def scenario(ssid):
        if ssid:
            status, _ = await ask(server, "POST", "/api/setup/wifi", {"ssid": ssid, "password": WIFI_PASSWORD})
            assert status == 202
            while server.join["state"] == "joining":
                await asyncio.sleep(0)
            doc["wifi"]["password"] = "***"
        doc["wifi"]["ssid"] = ssid
        doc["wifi"]["hostname"] = "garage-cg"
        doc["admin"]["password"] = PASSWORD
        return await ask(server, "POST", "/api/setup/finish", doc)

    status, answer = asyncio.run(scenario("home"))
    assert status == 200 and answer["mdns"] == "http://garage-cg.local:8080/", answer
    # No network joined (the device stays on its own access point): no name to find it by.
    status, answer = asyncio.run(scenario(""))
    assert status == 200 and answer["mdns"] is None, answer


def test_reboot_needs_the_password_and_restarts_after_the_answer():
    app, platform, meter, api, server, _ = make()
    assert request(server, "POST", "/api/reboot", {}, password=None)[0] == 401
    assert server.restarts == []
    status, doc, _ = request(server, "POST", "/api/reboot", {})
    assert status == 200 and doc == {"restarting": True} and server.restarts == [1]


def test_the_settings_and_wizard_pages_are_served_compressed():
    import support

    app, platform, meter, api, server, _ = make()
    for path in ("/setup", "/settings"):
        status, headers, body, _ = raw(server, ("GET %s HTTP/1.1\r\n\r\n" % path).encode())
        if status == 404:
            raise support.Skip("build/device/www is missing: run `make build`")
        assert status == 200 and headers["content-encoding"] == "gzip" and body[:2] == b"\x1f\x8b", (path, headers)
        assert int(headers["content-length"]) == len(body) < 8192


class Rng:
    """A small deterministic generator (the same sequence on both runtimes: MicroPython has no random.Random)."""

    def __init__(self, seed):
        self.state = seed

    def randrange(self, n):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 8) % n

    def choice(self, items):
        return items[self.randrange(len(items))]


def _fuzz_body(rng, step):
    values = [None, True, 0, -1, 2 ** 40, "", "x" * 40, "***", [], [1, 2], {}, {"type": "p1"}, {"a": {"b": {"c": []}}},
              "\u00e9\u6f22", 1.5]
    keys = ["meter", "charger", "index", "ssid", "password", "type", "host", "admin", "wifi", "site", "chargers", "x"]
    body = {}
    for _ in range(rng.randrange(4)):
        body[rng.choice(keys)] = rng.choice(values)
    if step == "meter" and rng.randrange(2):
        body["meter"] = {"type": rng.choice(["p1", "modbus", "http", "x", 3]), rng.choice(keys): rng.choice(values)}
    if step == "charger" and rng.randrange(2):
        body["charger"] = {"type": rng.choice(["v2c_trydan", "go_e", None]), "host": rng.choice(["", "999.1.1.1", 7])}
    return body


def test_fuzzed_bodies_get_a_4xx_and_change_nothing():
    app, platform, meter, api, server, _ = first_boot()
    rng = Rng(9)
    before = dict(api.values)
    for index in range(60):
        step = rng.choice(["scan", "wifi", "meter", "charger", "finish", "options", "nothing"])
        choice = rng.randrange(4)
        if choice == 0:
            data = bytes([rng.randrange(256) for _ in range(rng.randrange(40))])
        elif choice == 1:
            data = b"[" * (1 + rng.randrange(199))
        else:
            data = json.dumps(_fuzz_body(rng, step)).encode()
        status, doc, _ = request(server, "POST", "/api/setup/" + step, data, password=None)
        assert status < 500 or status == 503, (step, data, status, doc)
        if status >= 400 and doc is not None:
            assert type(doc["errors"]) is dict, doc
        assert server.restarts == [] and not exists(server.storage + "/config.json"), (step, data)
        server.join = None  # a started trial join never ends here (no loop between requests)
    assert api.values == before
    big = b'{"meter": "' + b"x" * web.MAX_BODY + b'"}'
    assert request(server, "POST", "/api/setup/meter", big, password=None)[0] == 413


def test_a_candidate_meter_sized_to_the_site_is_made_with_the_site():
    # CT clamps, the HAN port and the ATM90E32 read site.phases (and voltage)
    # from the whole document at boot; the setup pages' check gives them the
    # checked site (their from_config takes three arguments).
    from chargeguard.net import webadmin

    seen = []

    class Driver:
        def from_config(self, meter_doc, platform, *doc):
            seen.append((meter_doc["type"], doc))
            raise ValueError("no such port here")

    site = {"site": {"phases": 1, "voltage_v": 230}}
    for kind in ("ct", "han", "atm90e32", "p1"):
        answer, status = asyncio.run(webadmin._candidate_reading({"type": kind}, None, Driver(), site))
        assert status == 422 and "no such port here" in answer["errors"]["meter.type"], answer
    assert seen == [("ct", (site,)), ("han", (site,)), ("atm90e32", (site,)), ("p1", ())]


def test_an_mqtt_fed_meter_is_not_checked_before_its_broker_is_set_up():
    app, platform, meter, api, server, _ = first_boot()
    section = {"type": "mqtt", "power_topic": "home/grid/power"}
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": section}, password=None)
    assert status == 422 and "once its broker is set up" in doc["errors"]["meter.type"], doc


def test_calibration_against_a_known_load_gives_each_phase_its_word():
    from chargeguard import config
    from chargeguard.core import ct
    from chargeguard.net import webadmin

    clamps = config.complete({"site": {"phases": 3}, "meter": {"type": "ct", "factor_ua_l3": 50000}})["meter"]
    label = ct.factor_ua(clamps["vref_mv"], clamps["turns"], clamps["burden_ohm"])
    reading = {"phases": 3, "current_ma": [9500, 7000, 10200]}
    answer = webadmin._calibrate(clamps, dict(reading), [10000, None, 10000])
    assert answer["calibration"] == {"meter.factor_ua_l1": label * 10000 // 9500, "meter.factor_ua_l3": 50000 * 10000 // 10200}
    chip = config.complete({"site": {"phases": 3}, "meter": {"type": "atm90e32"}})["meter"]
    answer = webadmin._calibrate(chip, dict(reading, current_ma=[-9800, 7000, 10200]), [None, 7070])
    assert answer["calibration"] == {"meter.igain_l2": chip["igain_l2"] * 7070 // 7000}
    answer = webadmin._calibrate(chip, dict(reading, current_ma=[-9800, 7000, 10200]), [10000])
    assert answer["calibration"] == {"meter.igain_l1": chip["igain_l1"] * 10000 // 9800}  # the sign is export's
    # A phase with no load on it, a word out of its range: refused, nothing found.
    answer, status = webadmin._calibrate(clamps, dict(reading, current_ma=[40, 7000, 10200]), [10000])
    assert status == 422 and "put the known load" in answer["errors"]["known_ma"], answer
    chip_high = dict(chip, igain_l1=60000)
    answer, status = webadmin._calibrate(chip_high, dict(reading, current_ma=[9000, 7000, 10200]), [10000])
    assert status == 422 and "out of its range" in answer["errors"]["known_ma"], answer  # 66666 > 65535
    # One appliance's current given while the phase carries three times more: refused, never a 3x lower factor.
    answer, status = webadmin._calibrate(clamps, dict(reading, current_ma=[31200, 7000, 10200]), [9100])
    assert status == 422 and "more than 25 % apart" in answer["errors"]["known_ma"], answer
    assert "whole phase" in answer["errors"]["known_ma"]
    answer, status = webadmin._calibrate(clamps, dict(reading, current_ma=[7000, 7000, 10200]), [9100])
    assert status == 422 and "more than 25 % apart" in answer["errors"]["known_ma"], answer
    assert webadmin._known_problem(clamps, [10000, None]) is None
    for bad in ([], [1, 2, 3, 4], ["10"], [True], [50], "10000", [10000.0]):
        assert webadmin._known_problem(clamps, bad), bad
    assert "CT clamps and the ATM90E32" in webadmin._known_problem({"type": "p1"}, [10000])


def test_a_known_load_for_a_meter_that_cannot_be_calibrated_is_refused():
    app, platform, meter, api, server, _ = first_boot()
    status, doc, _ = request(server, "POST", "/api/setup/meter", {"meter": {"type": "p1"}, "known_ma": [10000]},
                             password=None)
    assert status == 422 and "CT clamps and the ATM90E32" in doc["errors"]["known_ma"], doc
