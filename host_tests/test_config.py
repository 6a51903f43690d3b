# Tests of chargeguard.config: schema rules, completion, migration, secrets,
# and storage that survives corrupt files and power cuts. Runs under pytest
# and on the MicroPython unix port (tools/upytest.py).
import json
import os

from chargeguard import config
from support import IS_MICROPYTHON, exists, make_tmpdir, skip

HOST = "192.168.1.60"
WIFI_SECRET = "hunter2-wifi-pw"
ADMIN_SECRET = "s3cret-admin-pw"
MQTT_SECRET = "mqtt-broker-pw"


def base(chargers=1):
    """A valid partial document: everything else comes from the defaults."""
    entries = []
    for index in range(chargers):
        entries.append({"name": "Box %d" % (index + 1), "host": "192.168.1.%d" % (60 + index)})
    return {"chargers": entries}


def put(doc, path, value):
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        key = int(part) if part.isdigit() else part
        if type(node) is dict and key not in node:
            node[key] = {}
        node = node[key]
    node[parts[-1]] = value
    return doc


def error_map(doc):
    errors = config.validate(doc)
    out = {}
    for path, message in errors:
        assert type(path) is str and type(message) is str
        out.setdefault(path, message)
    return out


def assert_valid(doc):
    errors = config.validate(doc)
    assert errors == [], errors


def assert_error(doc, path, fragment=None):
    errors = error_map(doc)
    assert path in errors, (path, errors)
    if fragment is not None:
        assert fragment in errors[path], (path, fragment, errors[path])
    return errors[path]


def full(doc):
    return config.normalise(doc)


def write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def doc_a():
    return put(base(), "name", "Alpha")


def doc_b():
    doc = put(base(2), "name", "Bravo")
    put(doc, "wifi", {"ssid": "home", "password": WIFI_SECRET, "ap_password": "setup-only-88"})
    put(doc, "admin", {"password": ADMIN_SECRET})
    put(doc, "mqtt", {"password": MQTT_SECRET})
    return doc


# ------------------------------------------------------------ field rules

# (path, good values, bad values, fragment the message for the first bad
#  value must contain, changes to the base document that the good values need)
FIELD_CASES = (
    ("name", ("Garage", "x" * 32, "Zürich ⚡"), ("", "x" * 33, "a\nb", 5, None), "1 to 32", None),
    ("site.phases", (1, 3), (2, 0, "3", True, 3.0), "1 or 3", {"chargers": []}),
    ("site.voltage_v", (100, 230, 260), (99, 261, "230", 230.0, False), "between 100 and 260 V", None),
    ("site.breaker_a", (7, 25, 630), (5, 631, "25", True, None), "between 6 and 630 A", None),
    ("site.margin_a", (0, 1, 19), (-1, 625, "1", [1]), "between 0 and 624 A", None),
    ("site.max_import_w", (0, 1000, 9200, 500000), (1, 999, 500001, -5, "0", True),
     "0 (no limit) or between 1000 and 500000 W", None),
    ("site.scheme", ("grid", "house"), ("meter", "", 1, "GRID"), "grid, house", None),
    ("site.balanced_load", (True, False), (1, 0, "false", "yes", None), "true or false", None),
    ("guard.meter_timeout_s", (2, 10, 300), (1, 301, "10", True), "between 2 and 300 s", None),
    ("guard.min_pause_s", (0, 180, 3600), (-1, 3601, 180.5), "between 0 and 3600 s", None),
    ("guard.ramp_step_a", (1, 2, 32), (0, 33, "2"), "between 1 and 32 A", None),
    ("guard.ramp_interval_s", (1, 5, 60), (0, 61, None), "between 1 and 60 s", None),
    ("guard.ev_response_s", (0, 5, 30), (-1, 31, False), "between 0 and 30 s", None),
    ("meter.type", ("p1",), ("modbus_rtu", "ct_clamp", "", 1, "P1"), "p1", None),
    ("meter.baud", (9600, 115200), (19200, 0, "115200", True), "9600 or 115200 baud", {"meter": {"format": "7E1"}}),
    ("meter.format", ("8N1", "7E1"), ("8E1", "", 8), "8N1, 7E1", None),
    ("meter.invert", (True, False), (1, 0, "true", None), "true or false", None),
    ("chargers.0.name", ("Trydan", "x" * 32), ("", "x" * 33, "a\tb", 1), "1 to 32", None),
    ("chargers.0.type", ("v2c_trydan", "go_e", "openevse"), ("goe", "go-e", "", "V2C_TRYDAN", "OpenEVSE", 1),
     "go_e, keba_p30, modbus_generic, ocpp, openevse, shelly_load, v2c_trydan", None),
    (
        "chargers.0.host",
        (HOST, "127.0.0.1", "10.0.0.1", "223.255.255.254", "trydan.local", "evse-1", "a" * 63, "box1.lan.example"),
        ("", "192.168.1.300", "192.168.1", "192.168.01.5", "0.0.0.0", "224.0.0.1", "255.255.255.255", "my host",
         "-bad.local", "bad-.local", "a..b", "a" * 64, "http://1.2.3.4", "1.2.3.4:80", "1234", "b\u00e9", 5, None),
        None,
        None,
    ),
    ("chargers.0.port", (1, 80, 65535), (0, 65536, "80", True, 80.0), "between 1 and 65535", None),
    ("chargers.0.phases", (1, 2, 3), (0, 4, "3", True), "between 1 and 3", None),
    ("chargers.0.phase_map", ("ABC", "BCA", "CAB", "ACB"), ("AB", "ABD", "AAB", "", "ABCA", "abc", 3), None, None),
    ("chargers.0.min_a", (6, 10, 16), (5, 33, "6", True), "between 6 and 32 A", None),
    ("chargers.0.max_a", (6, 16, 32), (5, 33, 40, "16", 16.0), "between 6 and 32 A", None),
    ("chargers.0.circuit_a", (6, 16, 80), (5, 81, "16", None), "between 6 and 80 A", None),
    ("chargers.0.priority", (1,), (0, 2, 9, "1", True), None, None),
    ("chargers.0.failsafe_a", (0, 6, 10, 16), (-1, 5, 17, 33, "0", False), "0 (pause)", None),
    ("chargers.0.mode", ("site", "off", "fast", "manual", "eco", "solar", "excess"), ("pv", "Solar", "", None, 1),
     "site, off, fast, manual, eco, solar, excess", None),
    ("site.mode", ("off", "fast", "manual", "eco", "solar", "excess"), ("site", "pv", "", None, 1),
     "off, fast, manual, eco, solar, excess", None),
    ("site.distribution", ("shared", "priority", "sequential_optimized", "sequential_strict"),
     ("equal", "Priority", "", 1, None), "shared, priority, sequential_optimized, sequential_strict", None),
    ("site.peak_limit_w", (0, 2500, 4000, 500000), (1, 2499, 500001, -1, "0", True, 2500.0),
     "0 (off) or between 2500 and 500000 W", None),
    ("site.peak_follow_month", (True, False), (1, 0, "true", None), "true or false", None),
    ("solar.eco", (True, False), (1, "on", None), "true or false", None),
    ("solar.eco_on_upper_w", (1001, 4000, 100000), (-100001, 100001, "4000", 4000.0, True), "between -100000 and 100000 W",
     None),
    ("solar.eco_on_lower_w", (-3499, -500, 0, 3999), (100001, "x", None), "between -100000 and 100000 W",
     {"solar": {"net_power_target_w": 5000}}),
    ("solar.eco_off_upper_w", (-3000, 1000, 3999), (100001, False), "between -100000 and 100000 W", None),
    ("solar.eco_off_lower_w", (-100000, -3500, -501), (-100001, "0"), "between -100000 and 100000 W", None),
    ("solar.net_power_target_w", (-200, 0, 100000), (100001, -100001, "0", 0.5), "between -100000 and 100000 W",
     None),
    ("solar.start_delay_s", (0, 60, 3600), (-1, 3601, "60", True), "between 0 and 3600 s", None),
    ("solar.stop_delay_s", (0, 180, 3600), (-1, 3601, 180.0), "between 0 and 3600 s", None),
    ("solar.min_on_s", (0, 120, 3600), (-1, 3601, None), "between 0 and 3600 s", None),
    ("solar.min_off_s", (0, 180, 3600), (-1, 3601, "180"), "between 0 and 3600 s", None),
    ("solar.excess_threshold_w", (0, 13000, 1000000), (-1, 1000001, "13000"), "between 0 and 1000000 W", None),
    ("chargers.0.manual_a", (6, 12, 16), (5, 17, 33, "6", True), "between", None),
    ("chargers.0.enabled", (True, False), (1, 0, "false", None), "true or false", None),
    ("wifi.ssid", ("", "home", "x" * 32, "é" * 16), ("x" * 33, "é" * 17, "a\x00b", 5), None, None),
    ("wifi.password", ("", "12345678", "x" * 63), ("1234567", "x" * 64, "bad\npassword", 12345678), None, None),
    ("wifi.hostname", ("chargeguard", "cg-garage", "a", "x" * 32), ("", "x" * 33, "-cg", "cg-", "cg.lan", "c g", "1234",
                                                                 "b\u00e9", 5), "letters, digits", None),
    ("wifi.ip", ("192.168.1.20", "192.168.1.9"), ("192.168.1", "192.168.1.300", "dhcp", 5), "IPv4 address",
     {"wifi": {"gateway": "192.168.1.1"}}),
    ("wifi.netmask", ("255.255.255.0", "255.255.0.0"), ("255.255.255", "x", 24), "IPv4 address", None),
    ("wifi.gateway", ("192.168.1.1", "192.168.1.254"), ("router", "192.168.1.256", 1), "IPv4 address",
     {"wifi": {"ip": "192.168.1.20"}}),
    ("wifi.dns", ("", "192.168.1.1", "9.9.9.9"), ("dns.example", "1.1.1", True), "IPv4 address",
     {"wifi": {"ip": "192.168.1.20", "gateway": "192.168.1.1"}}),
    ("wifi.ntp_server", ("", "pool.ntp.org", "192.168.1.1", "ntp1"), ("pool ntp", "1.2.3.4:123", "224.0.0.1", 123),
     None, None),
    ("admin.password", ("", "12345678", "x" * 64), ("1234567", "x" * 65, True), None, None),
    ("mqtt.enabled", (False, True), (1, "true", None), "true or false", {"mqtt": {"host": "192.168.1.5"}}),
    ("mqtt.host", ("", "192.168.1.5", "broker.lan"), ("broker lan", "224.0.0.1", "1.2.3.4:1883", 5), None, None),
    ("mqtt.port", (1, 1883, 65535), (0, 65536, "1883", 1883.0), "between 1 and 65535", None),
    ("mqtt.user", ("", "ha", "x" * 64), ("x" * 65, "a\nb", 5), "printable", None),
    ("mqtt.password", ("", "p", "x" * 128), ("x" * 129, "a\nb", 5), None, None),
    ("mqtt.client_id", ("", "cg-1", "a.b_c"), ("a b", "x" * 65, "b\u00e9", 5), "letters, digits", None),
    ("mqtt.topic_prefix", ("chargeguard", "home/cg", "x" * 64), ("", "a/+/b", "a/#", "/cg", "cg/", "a//b", "c g",
                                                               "x" * 65, 5), None, None),
    ("mqtt.discovery_prefix", ("homeassistant", "ha"), ("#", "ha/", "", "+", None), None, None),
    ("mqtt.keepalive_s", (2, 30, 3600), (0, 1, 3601, "30"), "between 2 and 3600 s", None),
)


def merge(doc, changes):
    for key in changes:
        if type(changes[key]) is dict and type(doc.get(key)) is dict:
            merge(doc[key], changes[key])
        else:
            doc[key] = changes[key]
    return doc


def test_every_field_accepts_good_and_rejects_bad_values():
    for path, goods, bads, fragment, changes in FIELD_CASES:
        for value in goods:
            doc = merge(base(), changes or {})
            errors = config.validate(put(doc, path, value))
            assert errors == [], (path, value, errors)
        for value in bads:
            doc = merge(base(), changes or {})
            errors = error_map(put(doc, path, value))
            assert path in errors, (path, value, errors)
            if fragment is not None and value is bads[0]:
                assert fragment in errors[path], (path, value, errors[path])


def test_static_ip_needs_a_gateway_on_its_network():
    def wifi(**fields):
        doc = base()
        doc["wifi"] = fields
        return doc

    assert config.validate(wifi(ip="192.168.1.20", gateway="192.168.1.1")) == []
    assert config.validate(wifi(ip="10.1.2.3", netmask="255.255.0.0", gateway="10.1.0.1", dns="9.9.9.9")) == []
    assert_error(wifi(ip="192.168.1.20"), "wifi.gateway", "must be set with wifi.ip")
    assert_error(wifi(ip="192.168.1.20", gateway="192.168.2.1"), "wifi.gateway", "network of wifi.ip and wifi.netmask")
    assert_error(wifi(ip="192.168.1.20", gateway="192.168.1.1", netmask="255.0.255.0"), "wifi.netmask", "network mask")
    assert_error(wifi(ip="192.168.1.20", gateway="192.168.1.1", netmask="0.0.0.0"), "wifi.netmask", "network mask")
    assert_error(wifi(ip="192.168.1.20", gateway="192.168.1.1", netmask=""), "wifi.netmask", "must be set")
    # Without ip, the other address fields have no use: said, not ignored.
    assert_error(wifi(gateway="192.168.1.1"), "wifi.gateway", "only with a fixed address")
    assert_error(wifi(dns="192.168.1.1"), "wifi.dns", "only with a fixed address")
    # A bad ip is reported once, with no follow-on error about the gateway.
    errors = error_map(wifi(ip="192.168.1.300", gateway="192.168.1.1"))
    assert sorted(errors) == ["wifi.ip"], errors


def solar(**fields):
    doc = base()
    doc["solar"] = fields
    return doc


def test_solar_band_lower_must_be_below_upper_one_watt_either_side():
    assert config.validate(solar(eco_on_upper_w=4000, eco_on_lower_w=3999, net_power_target_w=4299)) == []
    message = assert_error(solar(eco_on_upper_w=4000, eco_on_lower_w=4000, net_power_target_w=4300),
                           "solar.eco_on_upper_w", "must be above eco_on_lower_w, 4000 W (is 4000)")
    assert "not in the file" not in message
    assert config.validate(solar(eco_off_upper_w=1000, eco_off_lower_w=999, eco_on_lower_w=1000,
                                 net_power_target_w=1300)) == []
    assert_error(solar(eco_off_upper_w=1000, eco_off_lower_w=1000, eco_on_lower_w=1001, net_power_target_w=1301),
                 "solar.eco_off_upper_w", "above eco_off_lower_w")
    # Only the lower threshold written: the error is on the default it meets, and says so.
    message = assert_error(solar(eco_on_lower_w=4000, net_power_target_w=4300), "solar.eco_on_upper_w")
    assert "not in the file: follows from solar.eco_on_lower_w" in message, message


def test_solar_eco_on_band_must_be_above_eco_off_band():
    assert config.validate(solar(eco_on_upper_w=1001)) == []
    assert_error(solar(eco_on_upper_w=1000), "solar.eco_on_upper_w", "above eco_off_upper_w, 1000 W (is 1000)")
    assert_error(solar(eco_off_lower_w=-500), "solar.eco_on_lower_w", "above eco_off_lower_w, -500 W (is -500)")
    # The rule names the written field and says which default it meets.
    message = assert_error(solar(eco_off_upper_w=4000), "solar.eco_on_upper_w")
    assert "not in the file: follows from solar.eco_off_upper_w" in message, message


def test_solar_net_power_target_at_least_300_w_above_each_lower_threshold():
    assert config.validate(solar(net_power_target_w=-200)) == []  # ECO on lower -500 + 300
    assert_error(solar(net_power_target_w=-201), "solar.net_power_target_w", "eco_on_lower_w + 300 W, -200 W (is -201)")
    # A higher ECO on lower threshold raises the floor for the target.
    message = assert_error(solar(eco_on_lower_w=0), "solar.net_power_target_w", "at least eco_on_lower_w + 300 W")
    assert "follows from solar.eco_on_lower_w" in message, message


def test_peak_limit_is_off_or_at_least_what_fluvius_bills():
    assert config.validate(put(base(), "site.peak_limit_w", 2500)) == []
    assert_error(put(base(), "site.peak_limit_w", 2499), "site.peak_limit_w", "0 (off) or between 2500 and 500000 W")


def test_defaults_carry_the_optimiser_settings_the_core_expects():
    from chargeguard.core import optsettings

    doc = config.defaults()
    assert config.DISTRIBUTIONS == optsettings.DISTRIBUTIONS
    opt = optsettings.optimiser_from_config(doc)  # the core's own checks accept every default
    core = optsettings.OptimiserSettings()
    for key in ("eco", "eco_on_upper_w", "eco_on_lower_w", "eco_off_upper_w", "eco_off_lower_w", "net_power_target_w",
                "excess_threshold_w", "distribution", "peak_limit_w", "peak_follow_month"):
        assert getattr(opt, key) == getattr(core, key), key
    for key in ("start_delay", "stop_delay", "min_on", "min_off"):
        assert doc["solar"][key + "_s"] * 1000 == getattr(core, key + "_ms"), key
    assert doc["site"]["mode"] == "fast" and config.charger_defaults()["mode"] == "site"


def test_a_charger_in_site_mode_follows_site_mode():
    from chargeguard.core.settings_doc import charger_from_config

    doc, errors = config.check({"site": {"mode": "solar"}, "chargers": [{"host": HOST}, {"host": HOST, "mode": "fast"}]})
    assert errors == []
    modes = [charger_from_config(entry, doc["site"]["mode"]).mode for entry in doc["chargers"]]
    assert modes == ["solar", "fast"]


def test_range_message_names_range_and_value():
    message = assert_error(put(base(), "chargers.0.max_a", 40), "chargers.0.max_a")
    assert message == "must be between 6 and 32 A (is 40)", message
    message = assert_error(put(base(), "site.voltage_v", 99), "site.voltage_v")
    assert message == "must be between 100 and 260 V (is 99)", message


def test_type_errors_say_what_was_given():
    assert "(is '25')" in assert_error(put(base(), "site.breaker_a", "25"), "site.breaker_a", "whole number")
    assert "(is true)" in assert_error(put(base(), "site.breaker_a", True), "site.breaker_a", "whole number")
    assert "(is 25.0)" in assert_error(put(base(), "site.breaker_a", 25.0), "site.breaker_a", "whole number")
    assert "(is null)" in assert_error(put(base(), "site.breaker_a", None), "site.breaker_a")
    assert "(is 1)" in assert_error(put(base(), "meter.invert", 1), "meter.invert", "true or false")
    assert "(is a list)" in assert_error(put(base(), "name", ["x"]), "name", "text")


def test_meter_type_message_names_supported_types():
    message = assert_error(put(base(), "meter.type", "sdm630"), "meter.type")
    for name in config.METER_TYPES:
        assert name in message
    assert "'sdm630'" in message


def test_host_message_names_field_and_value():
    assert_error(put(base(), "chargers.0.host", ""), "chargers.0.host", "must be set")
    assert_error(put(base(), "chargers.0.host", "my host"), "chargers.0.host", "'my host'")
    assert_error(put(base(), "chargers.0.host", "239.1.1.1"), "chargers.0.host", "unicast")


def test_long_values_are_shortened_in_messages():
    message = assert_error(put(base(), "chargers.0.host", "bad host " * 20), "chargers.0.host")
    assert len(message) < 160, message


def test_section_and_document_must_be_objects():
    assert_error(put(base(), "site", [1]), "site", "object")
    assert_error(put(base(), "guard", None), "guard", "object")
    assert_error(put(base(), "chargers", {}), "chargers", "list")
    assert_error(put(base(), "chargers", [5]), "chargers.0", "object")
    for value in ([], "x", 5, None, True):
        errors = config.validate(value)
        assert len(errors) == 1 and errors[0][0] == "" and "object" in errors[0][1], errors


def test_unknown_keys_are_errors():
    assert_error(put(base(), "breaker", 25), "breaker", "unknown setting")
    message = assert_error(put(base(), "site.breaker", 25), "site.breaker", "unknown setting")
    assert "breaker_a" in message  # the list of known keys helps spot the typo
    assert_error(put(base(), "chargers.0.maxa", 16), "chargers.0.maxa", "unknown")
    assert_error(put(base(), "wifi.pass", "x"), "wifi.pass", "unknown")


def test_version_must_be_current_in_validate():
    assert_error(put(base(), "version", 0), "version", "migrate")
    assert_error(put(base(), "version", "1"), "version")
    assert_valid(put(base(), "version", 1))


# ---------------------------------------------------------- cross-field rules


def test_margin_must_leave_six_amps():
    doc = put(put(base(), "site.breaker_a", 10), "site.margin_a", 4)
    assert_valid(doc)
    message = assert_error(put(doc, "site.margin_a", 5), "site.margin_a", "at most 4 A")
    assert "10 A breaker" in message
    assert_error(put(put(base(), "site.breaker_a", 6), "site.margin_a", 1), "site.margin_a")
    assert_valid(put(put(base(), "site.breaker_a", 6), "site.margin_a", 0))


def test_p1_at_9600_baud_needs_7e1():
    doc = put(base(), "meter.baud", 9600)
    assert_error(doc, "meter.format", "7E1")
    assert_valid(put(doc, "meter.format", "7E1"))
    assert_valid(put(put(base(), "meter.baud", 115200), "meter.format", "8N1"))


def test_one_phase_site_needs_phase_map_a():
    doc = put(base(), "site.phases", 1)
    assert_valid(doc)  # the charger's phases and phase_map default from the site
    assert full(doc)["chargers"][0]["phases"] == 1
    assert full(doc)["chargers"][0]["phase_map"] == "A"
    put(doc, "chargers.0.phases", 1)
    put(doc, "chargers.0.phase_map", "B")
    assert_error(doc, "chargers.0.phase_map", "'A' on a 1-phase site")
    put(doc, "chargers.0.phase_map", "A")
    assert_valid(doc)


def test_charger_phases_at_most_site_phases():
    doc = put(put(base(), "site.phases", 1), "chargers.0.phases", 3)
    assert_error(doc, "chargers.0.phases", "at most 1")
    assert_valid(put(put(base(), "site.phases", 3), "chargers.0.phases", 3))


def test_phase_map_length_matches_phases():
    doc = put(put(base(), "chargers.0.phases", 1), "chargers.0.phase_map", "ABC")
    assert_error(doc, "chargers.0.phase_map", "1 site phase")
    assert_valid(put(doc, "chargers.0.phase_map", "B"))  # 1-phase charger on L2
    doc = put(put(base(), "chargers.0.phases", 2), "chargers.0.phase_map", "CA")
    assert_valid(doc)
    assert_error(put(doc, "chargers.0.phase_map", "C"), "chargers.0.phase_map")


def test_min_max_circuit_failsafe_manual_cross_rules():
    doc = put(put(base(), "chargers.0.min_a", 10), "chargers.0.max_a", 8)
    assert_error(doc, "chargers.0.max_a", "at least min_a, 10 A")
    # An on/off load has one step: min_a is its current, max_a must be it too.
    load = put(put(put(base(), "chargers.0.type", "shelly_load"), "chargers.0.min_a", 9), "chargers.0.max_a", 16)
    assert_error(load, "chargers.0.max_a", "must equal min_a for an on/off load")
    assert_valid(put(load, "chargers.0.max_a", 9))
    del load["chargers"][0]["max_a"]
    assert_valid(load)  # left out: the step
    assert config.complete(load)["chargers"][0]["max_a"] == 9
    doc = put(put(base(), "chargers.0.min_a", 10), "chargers.0.circuit_a", 8)
    assert_error(doc, "chargers.0.circuit_a", "at least min_a")
    # circuit_a may be below max_a: the guard takes the smaller one.
    assert_valid(put(put(base(), "chargers.0.max_a", 32), "chargers.0.circuit_a", 16))
    doc = put(put(base(), "chargers.0.max_a", 16), "chargers.0.failsafe_a", 20)
    assert_error(doc, "chargers.0.failsafe_a", "6..16 A")
    doc = put(put(base(), "chargers.0.min_a", 8), "chargers.0.failsafe_a", 6)
    assert_error(doc, "chargers.0.failsafe_a", "8..16 A")
    doc = put(put(base(), "chargers.0.min_a", 8), "chargers.0.manual_a", 6)
    assert_error(doc, "chargers.0.manual_a", "8..16 A")
    assert_valid(put(put(base(), "chargers.0.min_a", 8), "chargers.0.manual_a", 8))


def test_cross_rules_skip_fields_that_are_already_wrong():
    doc = put(put(base(), "chargers.0.min_a", "ten"), "chargers.0.max_a", 8)
    errors = error_map(doc)
    assert "chargers.0.min_a" in errors and "chargers.0.max_a" not in errors, errors
    doc = put(put(base(), "site.breaker_a", "x"), "site.margin_a", 100)
    errors = error_map(doc)
    assert "site.breaker_a" in errors and "at most" not in errors.get("site.margin_a", ""), errors


def test_priorities_must_be_a_permutation():
    doc = base(3)
    for index, priority in enumerate((2, 3, 1)):
        put(doc, "chargers.%d.priority" % index, priority)
    assert_valid(doc)
    put(doc, "chargers.2.priority", 2)
    message = assert_error(doc, "chargers.2.priority", "unique")
    assert "chargers.0" in message
    put(doc, "chargers.2.priority", 4)
    assert_error(doc, "chargers.2.priority", "between 1 and 3")
    # Missing priorities follow the list order.
    assert [entry["priority"] for entry in full(base(3))["chargers"]] == [1, 2, 3]


def test_charger_names_unique_ignoring_case():
    doc = base(2)
    put(doc, "chargers.1.name", "BOX 1")
    assert_error(doc, "chargers.1.name", "unique")
    put(doc, "chargers.1.name", "Box 2")
    assert_valid(doc)


def test_at_most_eight_chargers():
    assert_valid(base(8))
    doc = base(8)
    doc["chargers"].append({"name": "Box 9", "host": "192.168.1.99"})
    assert_error(doc, "chargers", "at most 8")
    # A huge list is reported once, not expanded entry by entry.
    doc = {"chargers": [{}] * 2000}
    errors = config.validate(doc)
    assert len(errors) == 1, errors[:3]


def test_no_chargers_is_valid():
    assert_valid({"chargers": []})
    assert_valid({})


# ---------------------------------------------------------- follow-on errors


def assert_follow_ons_name_written_fields(doc):
    for path, message in config.validate(doc):
        written = True
        node = doc
        for part in path.split("."):
            if type(node) is list and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif type(node) is dict and part in node:
                node = node[part]
            else:
                written = False
        assert written or "(not in the file: follows from " in message, (path, message)


def test_an_error_from_a_default_names_the_field_it_follows_from():
    doc = put(base(), "chargers.0.min_a", 20)  # max_a left at its default 16
    message = assert_error(doc, "chargers.0.max_a")
    assert message == "must be at least min_a, 20 A (is 16) (not in the file: follows from chargers.0.min_a)", message
    doc = put(base(), "site.breaker_a", 6)  # margin_a left at its default 1
    message = assert_error(doc, "site.margin_a", "follows from site.breaker_a")
    doc = put(base(), "meter.baud", 9600)  # format left at 8N1
    assert_error(doc, "meter.format", "follows from meter.baud")
    doc = base(2)
    put(doc, "chargers.0.priority", 2)  # chargers.1 takes 2 from its place in the list
    assert_error(doc, "chargers.1.priority", "follows from chargers.0.priority")
    for doc in (put(base(), "chargers.0.min_a", 20), put(base(), "site.breaker_a", 6), base(2)):
        assert_follow_ons_name_written_fields(doc)


def test_follow_ons_of_a_wrong_field_are_not_listed():
    # circuit_a takes max_a, manual_a takes min_a: fixing the written field fixes both.
    assert config.validate(put(base(), "chargers.0.max_a", 5)) == [
        ("chargers.0.max_a", "must be between 6 and 32 A (is 5)")
    ]
    assert config.validate(put(base(), "chargers.0.min_a", 40)) == [
        ("chargers.0.min_a", "must be between 6 and 32 A (is 40)")
    ]
    assert config.validate(put(base(), "site.breaker_a", 0)) == [
        ("site.breaker_a", "must be between 6 and 630 A (is 0)")
    ]
    # Written fields are still checked against a wrong one's neighbours.
    errors = error_map(put(put(base(), "chargers.0.min_a", 40), "chargers.0.manual_a", 5))
    assert sorted(errors) == ["chargers.0.manual_a", "chargers.0.min_a"], errors


def test_every_error_is_reported_at_once():
    doc = {
        "name": "",
        "site": {"breaker_a": 0, "voltage_v": 12, "scheme": "x", "colour": "red"},
        "guard": {"meter_timeout_s": 0, "min_pause_s": -1},
        "meter": {"baud": 1},
        "chargers": [{"host": "", "max_a": 99}, {"host": "my host", "min_a": 1, "port": 0}],
        "wifi": {"password": "short"},
    }
    paths = [path for path, _ in config.validate(doc)]
    assert paths == [
        "name", "site.voltage_v", "site.breaker_a", "site.scheme", "site.colour", "guard.meter_timeout_s",
        "guard.min_pause_s", "meter.baud", "wifi.password", "chargers.0.host", "chargers.0.max_a",
        "chargers.1.host", "chargers.1.port", "chargers.1.min_a",
    ], paths
    assert_follow_ons_name_written_fields(doc)
    doc, errors = config.check(doc, 3)
    assert len(errors) == 4 and errors[3] == ("", "and 11 more errors"), errors


def test_a_hostile_file_gives_a_bounded_list_of_notes():
    directory = make_tmpdir("cfg")
    keys = ", ".join(['"k%d": %d' % (index, index) for index in range(600)])
    write(directory + "/config.json", ("{" + keys + "}").encode())
    doc, notes = config.load(directory)
    assert doc["chargers"] == [] and len(notes) <= config.MAX_NOTE_ERRORS + 4, notes
    assert notes[0] == "config.json has 600 refused settings: it was NOT applied", notes[0]
    assert "590 more" in " ".join(notes) and "make check-config" in " ".join(notes), notes


# ------------------------------------------------------ defaults, completion


def test_defaults_are_valid_and_fresh():
    first = config.defaults()
    assert config.validate(first) == []
    assert first["version"] == config.CURRENT_VERSION
    first["site"]["breaker_a"] = 99
    first["chargers"].append(1)
    second = config.defaults()
    assert second["site"]["breaker_a"] == 25 and second["chargers"] == []
    entry = config.charger_defaults()
    entry["min_a"] = 10
    assert config.charger_defaults()["min_a"] == 6


def test_documented_defaults():
    doc = config.defaults()
    assert doc["name"] == "ChargeGuard"
    assert doc["site"] == {"phases": 3, "voltage_v": 230, "breaker_a": 25, "margin_a": 1,
                           "max_import_w": 0, "scheme": "grid", "balanced_load": False, "mode": "fast",
                           "distribution": "priority", "peak_limit_w": 0, "peak_follow_month": False,
                           "timezone": "UTC0"}
    assert doc["guard"] == {"meter_timeout_s": 10, "min_pause_s": 180, "ramp_step_a": 2,
                            "ramp_interval_s": 5, "ev_response_s": 5}
    assert doc["meter"] == {"type": "p1", "baud": 115200, "format": "8N1", "invert": True}
    assert doc["wifi"] == {"ssid": "", "password": "", "hostname": "chargeguard", "ip": "",
                           "netmask": "255.255.255.0", "gateway": "", "dns": "", "ntp_server": "pool.ntp.org",
                           "ap_password": ""}
    assert doc["admin"] == {"password": ""}
    assert doc["solar"] == {"eco": True, "eco_on_upper_w": 4000, "eco_on_lower_w": -500, "eco_off_upper_w": 1000,
                            "eco_off_lower_w": -3500, "net_power_target_w": 0, "start_delay_s": 60,
                            "stop_delay_s": 180, "min_on_s": 120, "min_off_s": 180, "excess_threshold_w": 13000}
    assert doc["mqtt"] == {"enabled": False, "host": "", "port": 1883, "user": "", "password": "", "client_id": "",
                           "topic_prefix": "chargeguard", "discovery_prefix": "homeassistant", "keepalive_s": 30}
    assert doc["web"] == {"enabled": False, "port": 80}
    assert sorted(doc) == sorted(["version", "name", "site", "guard", "meter", "chargers", "solar", "wifi", "admin",
                                  "mqtt", "web", "ocpp"])


def test_complete_fills_partial_document_without_touching_input():
    partial = {"site": {"breaker_a": 40}, "chargers": [{"host": HOST, "max_a": 32, "min_a": 8}]}
    snapshot = json.dumps(partial)
    doc = config.complete(partial)
    assert json.dumps(partial) == snapshot
    assert doc["site"]["breaker_a"] == 40 and doc["site"]["voltage_v"] == 230
    assert doc["guard"]["min_pause_s"] == 180
    charger = doc["chargers"][0]
    assert charger["name"] == "Charger 1" and charger["priority"] == 1
    assert charger["circuit_a"] == 32 and charger["manual_a"] == 8
    assert charger["phase_map"] == "ABC" and charger["port"] == 80 and charger["enabled"] is True
    assert config.validate(doc) == []
    # Completing twice changes nothing.
    assert config.complete(doc) == doc


def test_complete_keeps_wrong_values_for_validate():
    doc = config.complete({"site": "big", "chargers": ["x"]})
    assert doc["site"] == "big" and doc["chargers"] == ["x"]
    assert config.complete([1]) == [1]


# --------------------------------------------------------------- migration


def test_migrate_from_version_0():
    old = {"version": 0, "breaker": 32, "phases": 1, "voltage": 230, "margin": 2,
           "ssid": "home", "password": WIFI_SECRET, "trydan": HOST}
    snapshot = json.dumps(old)
    doc = config.migrate(old)
    assert json.dumps(old) == snapshot
    assert doc["version"] == 1
    assert doc["site"] == {"breaker_a": 32, "phases": 1, "voltage_v": 230, "margin_a": 2}
    assert doc["wifi"] == {"ssid": "home", "password": WIFI_SECRET}
    assert doc["chargers"] == [{"name": "Trydan", "type": "v2c_trydan", "host": HOST}]
    doc, errors = config.check(old)
    assert errors == [], errors
    assert doc["chargers"][0]["phase_map"] == "A" and doc["chargers"][0]["phases"] == 1


def test_migrate_minimal_version_0_and_unknown_old_keys():
    doc = config.migrate({"version": 0})
    assert doc["version"] == 1 and doc["chargers"] == []
    assert config.validate(doc) == []
    doc = config.migrate({"version": 0, "breaker": 25, "colour": "red"})
    assert_error(doc, "colour", "unknown")


def test_migrate_current_and_unversioned_are_copies():
    doc = full(base())
    out = config.migrate(doc)
    assert out == doc and out is not doc
    out["site"]["breaker_a"] = 1
    assert doc["site"]["breaker_a"] == 25
    assert config.migrate({})["version"] == 1


def test_migrate_rejects_bad_versions():
    for version, fragment in ((2, "newer"), (99, "update the firmware"), (-1, "unknown"), ("1", "whole number"),
                              (True, "whole number"), (None, "whole number"), (1.0, "whole number")):
        try:
            config.migrate({"version": version})
        except ValueError as error:
            assert fragment in str(error), (version, str(error))
            assert str(error).startswith("version"), str(error)
        else:
            assert False, version
        doc, errors = config.check({"version": version})
        assert errors and errors[0][0] == "version" and fragment in errors[0][1], errors
    try:
        config.migrate([1])
    except ValueError as error:
        assert "object" in str(error)
    else:
        assert False


def test_migration_table_covers_every_old_version():
    for version in range(config.CURRENT_VERSION):
        doc = config.migrate({"version": version})
        assert doc["version"] == config.CURRENT_VERSION


# ----------------------------------------------------------------- secrets


def test_redacted_hides_non_empty_secrets_only():
    doc = full(doc_b())
    out = config.redacted(doc)
    assert out["wifi"]["password"] == config.REDACTED and out["admin"]["password"] == config.REDACTED
    assert out["wifi"]["ssid"] == "home"
    assert doc["wifi"]["password"] == WIFI_SECRET  # the original is untouched
    assert WIFI_SECRET not in json.dumps(out) and ADMIN_SECRET not in json.dumps(out)
    empty = config.redacted(config.defaults())
    assert empty["wifi"]["password"] == "" and empty["admin"]["password"] == ""
    for path in config.SECRET_PATHS:
        if path == ("meter", "token"):
            continue  # only a HomeWizard API v2 meter has one: test_http_meter_v2.py
        assert out[path[0]][path[1]] == config.REDACTED
    # Robust against documents that are not valid.
    assert config.redacted({"wifi": "x"}) == {"wifi": "x"}
    assert config.redacted(5) == 5
    assert config.redacted({"admin": {"password": 12345678}})["admin"]["password"] == config.REDACTED


def test_restore_secrets_after_import_of_export():
    current = full(doc_b())
    exported = config.redacted(current)
    exported["name"] = "Renamed"
    restored = config.restore_secrets(exported, current)
    assert restored["wifi"]["password"] == WIFI_SECRET and restored["admin"]["password"] == ADMIN_SECRET
    assert restored["name"] == "Renamed"
    # A redacted marker is not a password anyone can save.
    assert_error(exported, "wifi.password")
    fresh = config.restore_secrets(exported, config.defaults())
    assert fresh["wifi"]["password"] == ""


def test_mqtt_needs_a_host_when_enabled():
    assert "mqtt.enabled" in error_map(put(base(), "mqtt", {"enabled": True}))["mqtt.host"]
    assert "mqtt.host" not in error_map(put(base(), "mqtt", {"enabled": True, "host": "192.168.1.5"}))
    assert "mqtt.host" not in error_map(put(base(), "mqtt", {"enabled": False}))


def test_web_section_is_validated():
    assert error_map(put(base(), "web", {"enabled": True, "port": 8080})) == {}
    assert "between 1 and 65535" in error_map(put(base(), "web", {"port": 0}))["web.port"]
    assert "web.enabled" in error_map(put(base(), "web", {"enabled": "yes"}))
    assert "web.admin_password" in error_map(put(base(), "web", {"admin_password": "secret12"}))


def test_errors_never_contain_secret_values():
    cases = (("wifi.password", "short1"), ("wifi.password", "x" * 70 + "TOPSECRET"),
             ("mqtt.password", "x" * 129 + "TOPSECRET"), ("mqtt.password", "pw\nTOPSECRET"),
             ("admin.password", "pw\nTOPSECRET"), ("admin.password", "tiny"))
    for path, secret in cases:
        doc = put(base(), path, secret)
        errors = config.validate(doc)
        assert errors, path
        for error_path, message in errors:
            assert secret not in message and "TOPSECRET" not in message, message
            assert "short1" not in message and "tiny" not in message, message
    doc = put(base(), "admin.password", 12345678)
    for _, message in config.validate(doc):
        assert "12345678" not in message, message
    try:
        config.save(make_tmpdir("cfg"), put(base(), "wifi.password", "short1"))
    except config.ConfigError as error:
        assert "short1" not in str(error)
    else:
        assert False


# ------------------------------------------------------------- persistence


def test_save_then_load_round_trip():
    directory = make_tmpdir("cfg")
    written = config.save(directory, doc_b())
    assert written == full(doc_b())
    doc, notes = config.load(directory)
    assert notes == [], notes
    assert doc == written
    assert sorted(os.listdir(directory)) == ["config.json"]
    assert json.loads(read(directory + "/config.json").decode()) == written


def test_save_keeps_previous_good_file_as_backup():
    directory = make_tmpdir("cfg")
    config.save(directory, doc_a())
    config.save(directory, doc_b())
    assert sorted(os.listdir(directory)) == ["config.bak", "config.json"]
    assert json.loads(read(directory + "/config.bak").decode()) == full(doc_a())
    assert config.load(directory) == (full(doc_b()), [])


def test_invalid_document_is_never_written():
    directory = make_tmpdir("cfg")
    try:
        config.save(directory, put(base(), "site.breaker_a", 1000))
    except ValueError as error:
        assert isinstance(error, config.ConfigError)
        assert error.errors == [("site.breaker_a", "must be between 6 and 630 A (is 1000)")], error.errors
        assert "site.breaker_a" in str(error)
    else:
        assert False
    assert os.listdir(directory) == []
    config.save(directory, doc_a())
    before = read(directory + "/config.json")
    for bad in (put(base(), "chargers.0.host", ""), [1], {"version": 7}, {"site": {"phases": "three"}}):
        try:
            config.save(directory, bad)
        except ValueError:
            pass
        else:
            assert False, bad
    assert read(directory + "/config.json") == before
    assert sorted(os.listdir(directory)) == ["config.json"]


def test_save_migrates_and_completes():
    directory = make_tmpdir("cfg")
    written = config.save(directory, {"version": 0, "breaker": 32})
    assert written["version"] == 1 and written["site"]["breaker_a"] == 32 and "guard" in written
    assert config.load(directory)[0] == written


def test_load_without_files_gives_defaults_and_says_how_to_install_one():
    doc, notes = config.load(make_tmpdir("cfg"))
    assert doc == config.defaults() and doc["chargers"] == []
    assert notes[0] == "config.json is missing", notes
    assert "nothing is commanded" in notes[1] and "make deploy CONFIG=" in notes[1], notes


def saved_pair():
    directory = make_tmpdir("cfg")
    config.save(directory, doc_b())
    config.save(directory, doc_a())
    # config.json = A, config.bak = B (holds the secrets)
    return directory


def assert_no_secrets(notes):
    for note in notes:
        assert WIFI_SECRET not in note and ADMIN_SECRET not in note, note


def test_corrupt_config_falls_back_to_backup():
    directory = saved_pair()
    write(directory + "/config.json", b"{\"version\": 1, \"name\": ")
    doc, notes = config.load(directory)
    assert doc == full(doc_b())
    assert len(notes) == 2, notes
    assert "config.json is corrupt" in notes[0] and "NOT applied" in notes[0], notes
    assert "make check-config" in notes[0], notes
    assert "last good configuration (config.bak" in notes[1], notes


def test_truncated_config_at_every_length_never_loses_good_config():
    directory = saved_pair()
    data = read(directory + "/config.json")
    good_a, good_b = full(doc_a()), full(doc_b())
    step = 1 if len(data) < 400 else len(data) // 97
    for length in range(0, len(data), step):
        write(directory + "/config.json", data[:length])
        doc, notes = config.load(directory)
        assert doc == good_b or (doc == good_a and notes == []), length
    write(directory + "/config.json", data)
    assert config.load(directory) == (good_a, [])


def test_a_utf8_byte_order_mark_is_accepted():
    directory = make_tmpdir("cfg")
    write(directory + "/config.json", b"\xef\xbb\xbf" + json.dumps(doc_a()).encode())
    assert config.load(directory) == (full(doc_a()), [])
    write(directory + "/config.json", b"\xef\xbb\xbf")
    assert "corrupt" in config.load(directory)[1][0]


def test_non_object_json_counts_as_bad():
    for data, fragment in ((b"[1, 2]", "a list"), (b"42", "a number"), (b"null", "null"), (b"\"x\"", "text")):
        directory = saved_pair()
        write(directory + "/config.json", data)
        doc, notes = config.load(directory)
        assert doc == full(doc_b())
        assert "not a JSON object" in notes[0] and fragment in notes[0], notes


def test_valid_json_failing_validation_counts_as_bad():
    directory = saved_pair()
    bad = put(full(doc_a()), "chargers.0.max_a", 99)
    put(bad, "admin.password", "tiny")
    write(directory + "/config.json", json.dumps(bad).encode())
    doc, notes = config.load(directory)
    assert doc == full(doc_b())
    assert notes[0] == "config.json has 2 refused settings: it was NOT applied", notes
    assert notes[1].startswith("config.json refused admin.password: must be empty or 8"), notes
    assert notes[2] == "config.json refused chargers.0.max_a: must be between 6 and 32 A (is 99)", notes
    assert "last good configuration" in notes[3] and len(notes) == 4, notes
    assert_no_secrets(notes)
    assert "tiny" not in " ".join(notes)


def test_config_with_wrong_types_counts_as_bad():
    directory = saved_pair()
    write(directory + "/config.json", b"{\"site\": {\"breaker_a\": \"25\", \"phases\": true}}")
    doc, notes = config.load(directory)
    assert doc == full(doc_b()) and "site.breaker_a" in " ".join(notes), notes


def test_both_files_bad_gives_defaults_and_notes():
    directory = saved_pair()
    write(directory + "/config.json", b"\xff\xfe\x00garbage")
    write(directory + "/config.bak", b"{\"version\": 1, \"wifi\": {\"password\": \"" + WIFI_SECRET.encode() + b"\"")
    doc, notes = config.load(directory)
    assert doc == config.defaults()
    assert len(notes) == 3, notes
    assert notes[0].startswith("config.json is corrupt") and notes[1].startswith("config.bak"), notes
    assert "no valid configuration: nothing is commanded" in notes[2], notes
    assert_no_secrets(notes)


def test_missing_config_with_backup():
    directory = saved_pair()
    os.remove(directory + "/config.json")
    doc, notes = config.load(directory)
    assert doc == full(doc_b())
    assert notes == [
        "config.json is missing",
        "still guarding with the last good configuration (config.bak, the one that last ran)",
    ], notes


def test_missing_config_and_bad_backup():
    directory = saved_pair()
    os.remove(directory + "/config.json")
    write(directory + "/config.bak", b"")
    doc, notes = config.load(directory)
    assert doc == config.defaults()
    assert notes[0] == "config.json is missing" and "config.bak (the last good copy) is corrupt" in notes[1], notes
    assert "no configuration yet" in notes[2], notes


def test_oversize_file_is_refused():
    directory = saved_pair()
    padded = json.dumps(full(doc_a())).encode()
    padded = padded + b" " * (config.MAX_CONFIG_BYTES + 1 - len(padded))
    write(directory + "/config.json", padded)
    doc, notes = config.load(directory)
    assert doc == full(doc_b())
    assert "too large" in notes[0] and str(config.MAX_CONFIG_BYTES) in notes[0], notes
    # Exactly at the limit is fine.
    write(directory + "/config.json", padded[:-1])
    assert config.load(directory) == (full(doc_a()), [])


def test_hostile_nesting_does_not_crash():
    directory = saved_pair()
    for data in (b"[" * 8000, b"{\"site\": " + b"[" * 4000 + b"]" * 4000 + b"}", b"{\"a\":" * 1000):
        write(directory + "/config.json", data)
        doc, notes = config.load(directory)
        assert doc == full(doc_b()), notes
    # Values nested deeper than any schema level are reported, not walked.
    nested = [[[[[[[[[[[[1]]]]]]]]]]]]
    errors = error_map({"site": nested, "chargers": [{"host": HOST, "name": nested}]})
    assert "site" in errors and "chargers.0.name" in errors, errors


def test_newer_version_file_is_refused_with_note():
    directory = saved_pair()
    newer = put(full(doc_a()), "version", 2)
    write(directory + "/config.json", json.dumps(newer).encode())
    doc, notes = config.load(directory)
    assert doc == full(doc_b())
    assert "refused version: 2 is newer than this firmware" in notes[1], notes


def test_old_version_file_is_migrated_on_load():
    directory = make_tmpdir("cfg")
    write(directory + "/config.json", json.dumps({"version": 0, "breaker": 35, "trydan": HOST}).encode())
    doc, notes = config.load(directory)
    assert doc["version"] == 1 and doc["site"]["breaker_a"] == 35 and doc["chargers"][0]["host"] == HOST
    assert notes == ["config.json was written for version 0: migrated to version 1"], notes
    # Saving keeps the old file as the backup, still loadable through migration.
    config.save(directory, doc)
    assert config.load(directory) == (doc, [])
    os.remove(directory + "/config.json")
    assert config.load(directory)[0] == doc


def test_torn_write_states_keep_last_good_config():
    good_a, good_b = full(doc_a()), full(doc_b())
    data_b = json.dumps(good_b).encode()
    # 1. power lost while writing the temp file: config.json untouched.
    directory = saved_pair()
    write(directory + "/config.json.tmp", data_b[: len(data_b) // 2])
    assert config.load(directory) == (good_a, [])
    # 2. temp file complete, nothing renamed yet.
    write(directory + "/config.json.tmp", data_b)
    assert config.load(directory) == (good_a, [])
    # 3. config.json moved to the backup, temp not yet renamed.
    os.rename(directory + "/config.json", directory + "/config.bak")
    doc, notes = config.load(directory)
    assert doc == good_a and notes[0] == "config.json is missing", notes
    # A later save from this state works and keeps A as the backup.
    config.save(directory, doc_b())
    assert config.load(directory) == (good_b, [])
    assert json.loads(read(directory + "/config.bak").decode()) == good_a
    assert "config.json.tmp" not in os.listdir(directory)


def test_save_over_corrupt_config_keeps_good_backup():
    directory = saved_pair()
    write(directory + "/config.json", b"{\"broken")
    config.save(directory, put(doc_a(), "name", "Charlie"))
    # The corrupt file was dropped, not moved over the good backup.
    assert json.loads(read(directory + "/config.bak").decode()) == full(doc_b())
    assert config.load(directory)[0]["name"] == "Charlie"


class PowerCut(Exception):
    pass


_real_os = os
_real_open = open


class FakeOS:
    """The os functions config uses; the power goes after `budget` writes."""

    def __init__(self, budget, refuse_overwrite=False):
        self.budget = budget
        self.refuse_overwrite = refuse_overwrite
        self.renames_refused = 0

    def tick(self):
        if self.budget == 0:
            raise PowerCut()
        self.budget -= 1

    def rename(self, source, target):
        self.tick()
        if self.refuse_overwrite and exists(target):
            self.renames_refused += 1
            raise OSError(17)
        _real_os.rename(source, target)

    def remove(self, path):
        self.tick()
        _real_os.remove(path)

    def stat(self, path):
        return _real_os.stat(path)


class TornFile:
    def __init__(self, handle, fake):
        self.handle = handle
        self.fake = fake

    def write(self, data):
        if self.fake.budget == 0:
            self.handle.write(data[: len(data) // 2])
            self.handle.close()
            raise PowerCut()
        self.fake.budget -= 1
        return self.handle.write(data)

    def flush(self):
        self.handle.flush()

    def fileno(self):
        return self.handle.fileno()

    def close(self):
        self.handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.handle.close()
        return False


def save_with_power_cut(directory, doc, budget, refuse_overwrite=False):
    fake = FakeOS(budget, refuse_overwrite)

    def fake_open(path, mode="r"):
        handle = _real_open(path, mode)
        return TornFile(handle, fake) if "w" in mode else handle

    # The module config imports when it saves (the app unloads it after start-up).
    from chargeguard import flashfile

    flashfile.os = config.os = fake
    flashfile.open = fake_open
    try:
        config.save(directory, doc)
        return True, fake
    except PowerCut:
        return False, fake
    finally:
        flashfile.os = config.os = _real_os
        del flashfile.open


def run_power_cuts(setup, refuse_overwrite=False):
    old = full(setup[-1]())
    new = full(doc_b() if setup[-1] is not doc_b else doc_a())
    new = put(new, "name", "Newest")
    cuts = 0
    for budget in range(40):
        directory = make_tmpdir("cut")
        for doc in setup:
            config.save(directory, doc())
        done, fake = save_with_power_cut(directory, new, budget, refuse_overwrite)
        loaded, notes = config.load(directory)
        assert loaded == old or loaded == new, (budget, notes)
        assert "defaults" not in " ".join(notes), (budget, notes)
        if done:
            assert loaded == new and notes == [], (budget, notes)
            # A second save after recovery still works.
            config.save(directory, doc_a())
            assert config.load(directory)[0] == full(doc_a())
            return cuts, fake
        cuts += 1
        # The device reboots and saves again: that must succeed from any state.
        config.save(directory, new)
        assert config.load(directory) == (new, [])
    assert False, "save never completed"


def test_power_cut_at_every_step_of_save():
    cuts, _ = run_power_cuts((doc_a,))
    assert cuts >= 4, cuts
    cuts, _ = run_power_cuts((doc_b, doc_a))
    assert cuts >= 4, cuts


def test_save_when_rename_refuses_to_overwrite():
    cuts, fake = run_power_cuts((doc_b, doc_a), refuse_overwrite=True)
    assert fake.renames_refused >= 1
    assert cuts >= 5, cuts


def test_save_refuses_oversize_document():
    if IS_MICROPYTHON:
        skip("MAX_CONFIG_BYTES is a compile-time const on MicroPython")
    directory = make_tmpdir("cfg")
    limit = config.MAX_CONFIG_BYTES
    config.MAX_CONFIG_BYTES = 200
    try:
        config.save(directory, doc_b())
    except config.ConfigError as error:
        assert "too large" in error.errors[0][1], error.errors
    else:
        assert False
    finally:
        config.MAX_CONFIG_BYTES = limit
    assert os.listdir(directory) == []


def test_largest_valid_document_fits_the_limit():
    doc = {"name": "\u00e9" * 32, "wifi": {"ssid": "\u00e9" * 16, "password": "\u00e9" * 63},
           "admin": {"password": "\u00e9" * 64}, "chargers": []}
    for index in range(config.MAX_CHARGERS):
        label = "h" * 60 + str(index)
        host = ".".join([label, "h" * 63, "h" * 63, "h" * 61])
        doc["chargers"].append({"name": "\u00e9" * 30 + str(index), "host": host, "port": 65535})
    assert_valid(doc)
    directory = make_tmpdir("cfg")
    written = config.save(directory, doc)
    assert config.load(directory) == (written, [])


# ------------------------------------------------------ last good configuration


def bad_breaker():
    return put(full(doc_a()), "site.breaker_a", 0)


def test_a_config_that_ran_is_kept_and_an_invalid_one_never_replaces_it():
    directory = make_tmpdir("cfg")
    write(directory + "/config.json", json.dumps(doc_b()).encode())
    doc, notes, source, good = config.load_for_boot(directory)
    assert (doc, notes, source) == (full(doc_b()), [], "config.json"), notes
    assert good is not None
    assert not exists(directory + "/config.bak")  # nothing is written until it has run
    config.remember(directory, good)
    assert read(directory + "/config.bak") == read(directory + "/config.json")
    assert config.load_for_boot(directory)[3] is None  # already the last good copy
    # The owner installs a configuration with breaker_a 0 and restarts.
    write(directory + "/config.json", json.dumps(bad_breaker()).encode())
    doc, notes, source, good = config.load_for_boot(directory)
    assert doc == full(doc_b()) and source == "config.bak" and good is None, notes
    assert notes == [
        "config.json has 1 refused setting: it was NOT applied",
        "config.json refused site.breaker_a: must be between 6 and 630 A (is 0)",
        "still guarding with the last good configuration (config.bak, the one that last ran)",
    ], notes
    assert json.loads(read(directory + "/config.bak").decode()) == doc_b()  # the file as it ran
    assert_no_secrets(notes)


def test_the_last_good_copy_is_written_only_when_the_config_changed():
    directory = make_tmpdir("cfg")
    write(directory + "/config.json", json.dumps(doc_a()).encode())
    good = config.load_for_boot(directory)[3]
    config.remember(directory, good)
    assert config.load_for_boot(directory)[3] is None  # same file: no write at the next boot (flash wear)
    write(directory + "/config.json", json.dumps(doc_b()).encode())
    good = config.load_for_boot(directory)[3]
    assert good is not None
    config.remember(directory, good)
    assert read(directory + "/config.bak") == read(directory + "/config.json")
    assert sorted(os.listdir(directory)) == ["config.bak", "config.json"]


def test_a_config_changed_after_loading_is_not_kept_as_the_last_good_one():
    directory = make_tmpdir("cfg")
    write(directory + "/config.json", json.dumps(doc_a()).encode())
    config.remember(directory, config.load_for_boot(directory)[3])
    before = read(directory + "/config.bak")
    write(directory + "/config.json", json.dumps(doc_b()).encode())
    good = config.load_for_boot(directory)[3]
    write(directory + "/config.json", json.dumps(put(doc_b(), "name", "Changed")).encode())  # it has not run
    try:
        config.remember(directory, good)
    except OSError as error:
        assert "changed since it was loaded" in str(error)
    else:
        assert False
    assert read(directory + "/config.bak") == before
    assert sorted(os.listdir(directory)) == ["config.bak", "config.json"]


def test_a_large_config_is_kept_chunk_by_chunk():
    directory = make_tmpdir("cfg")
    data = json.dumps(full(doc_b())).encode()
    data = data[:-1] + b" " * (config.MAX_CONFIG_BYTES - len(data)) + b"}"
    write(directory + "/config.json", data)
    doc, notes, source, good = config.load_for_boot(directory)
    assert source == "config.json" and good == (len(data), good[1]), notes
    config.remember(directory, good)
    assert read(directory + "/config.bak") == data


def test_with_no_valid_configuration_ever_nothing_is_commanded():
    directory = make_tmpdir("cfg")
    write(directory + "/config.json", json.dumps(bad_breaker()).encode())
    doc, notes, source, good = config.load_for_boot(directory)
    assert source is None and good is None and doc["chargers"] == [], notes
    assert notes[1] == "config.json refused site.breaker_a: must be between 6 and 630 A (is 0)", notes
    assert "no valid configuration: nothing is commanded until config.json is fixed" in notes[2], notes
    assert "make check-config" in notes[2], notes
    # A corrupt file says where to look.
    write(directory + "/config.json", b'{"site": {"breaker_a": 25}')
    doc, notes, source, good = config.load_for_boot(directory)
    assert source is None and "corrupt" in notes[0] and "make check-config" in notes[0], notes


def test_load_for_boot_can_skip_a_new_file_that_could_not_start():
    directory = make_tmpdir("cfg")
    write(directory + "/config.bak", json.dumps(full(doc_a())).encode())
    write(directory + "/config.json", json.dumps(doc_b()).encode())
    assert config.load_for_boot(directory)[2] == "config.json"
    doc, notes, source, good = config.load_for_boot(directory, new=False)
    assert (doc, source, good) == (full(doc_a()), "config.bak", None), notes


# -- Modbus meters ------------------------------------------------------------


def modbus_meter(**fields):
    meter = {"type": "modbus", "model": "sdm630"}
    meter.update(fields)
    return merge(base(), {"meter": meter})


def test_modbus_meter_defaults_and_fields():
    doc, errors = config.check(modbus_meter())
    assert errors == []
    assert doc["meter"] == {
        "type": "modbus",
        "model": "sdm630",
        "address": 1,
        "host": "",
        "port": 502,
        "baud": 9600,
        "format": "8N1",
        "upside_down": False,
        "poll_ms": 1000,
        "custom": None,
    }
    assert_valid(modbus_meter(host="192.168.1.50", address=247, baud=19200, format="8E1", upside_down=True))
    assert_valid(modbus_meter(host="meter.local", port=5020, poll_ms=200))
    assert_error(modbus_meter(address=0), "meter.address", "between 1 and 247")
    assert_error(modbus_meter(baud=12345), "meter.baud", "9600")
    assert_error(modbus_meter(format="7E1"), "meter.format", "8E1")
    assert_error(modbus_meter(poll_ms=100), "meter.poll_ms", "between 200 and 10000 ms")
    assert_error(modbus_meter(invert=True), "meter.invert", "unknown setting")


def test_modbus_meter_model_must_be_set_and_known():
    message = assert_error(modbus_meter(model=""), "meter.model", "must be set")
    assert "sdm630" in message and "custom" in message
    message = assert_error(modbus_meter(model="sdm 630"), "meter.model", "not a known Modbus meter")
    assert "abb_b23" in message
    for model in ("abb_b23", "em24", "chint_dtsu666", "wago_879"):
        assert_valid(modbus_meter(model=model))
    assert_error(modbus_meter(custom={"function": 4}), "meter.custom", "only with model custom")


CUSTOM = {"function": 4, "type": "float32", "current": 6, "power": 12, "voltage": 0, "current_exp": 0}


def test_modbus_custom_map_is_checked_field_by_field():
    assert_valid(modbus_meter(model="custom", custom=dict(CUSTOM)))
    assert_valid(modbus_meter(model="custom", custom=dict(CUSTOM, word_order="low_first", phases=1, export=None)))
    assert_error(modbus_meter(model="custom"), "meter.custom", "register map")
    custom = dict(CUSTOM)
    del custom["power"]
    assert_error(modbus_meter(model="custom", custom=custom), "meter.custom.power", "is missing")
    assert_error(modbus_meter(model="custom", custom=dict(CUSTOM, function=6)), "meter.custom.function", "3 or 4")
    assert_error(modbus_meter(model="custom", custom=dict(CUSTOM, type="float")), "meter.custom.type", "float32")
    assert_error(modbus_meter(model="custom", custom=dict(CUSTOM, current=70000)), "meter.custom.current", "65535")
    assert_error(modbus_meter(model="custom", custom=dict(CUSTOM, power_exp=9)), "meter.custom.power_exp", "-6")
    assert_error(modbus_meter(model="custom", custom=dict(CUSTOM, order="cdab")), "meter.custom.order", "unknown")


def test_modbus_custom_map_becomes_a_driver_row():
    from chargeguard.meters import modbus_models

    doc, errors = config.check(modbus_meter(model="custom", custom=dict(CUSTOM, power_exp=3)))
    assert errors == []
    row = modbus_models.custom_row(doc["meter"]["custom"])
    assert row[0] == 4 and row[1] is False and row[2] == 3
    assert row[5] == (6, 0, 3) and row[6] == (12, 0, 3) and row[7] == (0, 0, 3)
    assert row[9] is None


def _ocpp_doc(**entry):
    doc = base(0)
    charger = {"name": "Garage", "type": "ocpp", "charge_point_id": "ALFEN-1"}
    charger.update(entry)
    doc["chargers"] = [charger]
    return doc


def test_ocpp_charger_needs_an_id_not_a_host():
    doc, errors = config.check(_ocpp_doc())
    assert errors == [], errors
    entry = doc["chargers"][0]
    assert "host" not in entry and entry["unit"] == "auto" and entry["stack_level"] == -1 and entry["password"] == ""
    assert doc["ocpp"] == {"enabled": False, "port": 8887, "ping_s": 20, "max_message": 4096, "accept_unknown": False}
    assert "1 to 48" in error_map(_ocpp_doc(charge_point_id=""))["chargers.0.charge_point_id"]
    assert "'/'" in error_map(_ocpp_doc(charge_point_id="a/b"))["chargers.0.charge_point_id"]
    assert "chargers.0.host" in error_map(_ocpp_doc(host="192.168.1.5"))  # unknown for this type
    assert "chargers.0.unit" in error_map(_ocpp_doc(unit="kW"))
    assert "chargers.0.profile_connector" in error_map(_ocpp_doc(profile_connector=2))
    assert "chargers.0.pause" in error_map(_ocpp_doc(pause="never"))
    assert "ocpp.port" in error_map(put(_ocpp_doc(), "ocpp", {"port": 0}))
    assert "ocpp.max_message" in error_map(put(_ocpp_doc(), "ocpp", {"max_message": 100}))


def test_ocpp_charge_point_ids_are_unique():
    doc = _ocpp_doc()
    doc["chargers"].append({"name": "Drive", "type": "ocpp", "charge_point_id": "ALFEN-1", "priority": 2})
    assert "is also the id of chargers.0" in error_map(doc)["chargers.1.charge_point_id"]


def test_ocpp_password_is_a_secret():
    secret = "box-pass-TOPSECRET"
    doc, errors = config.check(_ocpp_doc(password=secret))
    assert errors == []
    out = config.redacted(doc)
    assert out["chargers"][0]["password"] == config.REDACTED and secret not in json.dumps(out)
    assert doc["chargers"][0]["password"] == secret
    restored = config.restore_secrets(out, doc)
    assert restored["chargers"][0]["password"] == secret
    for bad in ("short", "x" * 70 + "TOPSECRET"):
        errors = config.validate(_ocpp_doc(password=bad))
        assert [path for path, message in errors] == ["chargers.0.password"]
        assert bad not in errors[0][1] and "TOPSECRET" not in errors[0][1]
