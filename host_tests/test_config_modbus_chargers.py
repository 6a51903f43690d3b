# Configuration of the Modbus TCP chargers (config.py): port 502 and the unit
# for the Modbus types, an Alfen socket 1 or 2, a modbus_generic register map.
from chargeguard import config


def site(*chargers):
    doc = config.defaults()
    doc["chargers"] = list(chargers)
    return doc


def test_modbus_types_default_to_port_502_and_unit_1_others_keep_theirs():
    doc = config.complete(site({"name": "A", "type": "alfen_eve", "host": "10.0.0.9"},
                               {"name": "T", "type": "v2c_trydan", "host": "10.0.0.8"}))
    alfen, trydan = doc["chargers"]
    assert alfen["port"] == 502 and alfen["unit"] == 1
    assert trydan["port"] == 80 and "unit" not in trydan
    assert config.validate(doc) == []
    for kind in ("v2c_trydan_modbus", "abb_terra"):
        assert config.validate(site({"name": "B", "type": kind, "host": "10.0.0.7", "port": 5020, "unit": 3})) == []


def test_unit_is_checked_and_only_for_modbus_types():
    errors = dict(config.validate(site({"name": "A", "type": "alfen_eve", "host": "10.0.0.9", "unit": 3})))
    assert "1 or 2" in errors["chargers.0.unit"]
    errors = dict(config.validate(site({"name": "A", "type": "abb_terra", "host": "10.0.0.9", "unit": 0})))
    assert "chargers.0.unit" in errors
    errors = dict(config.validate(site({"name": "T", "type": "go_e", "host": "10.0.0.8", "unit": 1})))
    assert "unknown setting" in errors["chargers.0.unit"]


def test_generic_map_completed_and_checked():
    phoenix = {"state_address": 100, "current_address": 528, "enable": "coil", "enable_address": 400,
               "power_address": 120}
    doc = config.complete(site({"name": "EV-ETH", "type": "modbus_generic", "host": "10.0.0.5", "map": phoenix}))
    assert config.validate(doc) == []
    m = doc["chargers"][0]["map"]
    assert m["state_function"] == 4 and m["state_kind"] == "letter" and m["current_unit_ma"] == 1000
    bad = {"state_address": 100, "enable": "coil", "power_type": "f64", "current_unit_ma": 7, "extra": 1}
    errors = dict(config.validate(site({"name": "X", "type": "modbus_generic", "host": "10.0.0.5", "map": bad})))
    for key in ("current_address", "enable_address", "power_type", "current_unit_ma", "extra"):
        assert "chargers.0.map." + key in errors, (key, errors)
    errors = dict(config.validate(site({"name": "X", "type": "modbus_generic", "host": "10.0.0.5"})))
    assert "chargers.0.map" in errors
    errors = dict(config.validate(site({"name": "X", "type": "abb_terra", "host": "10.0.0.5", "map": phoenix})))
    assert "unknown setting" in errors["chargers.0.map"]


def test_the_rs485_port_carries_one_device_a_meter_or_an_rtu_charger():
    abb = {"name": "ABB", "type": "abb_terra", "transport": "rtu", "unit": 2}
    doc = config.complete(site(abb))
    doc["meter"] = {"type": "modbus", "model": "sdm630"}  # RTU: no host
    errors = config.validate(doc)
    assert [key for key, _ in errors] == ["chargers.0.transport"], errors
    assert "the Modbus RTU meter's" in errors[0][1]
    doc["meter"]["host"] = "10.0.0.5"  # the meter over Modbus TCP: the port is free
    assert config.validate(doc) == []
    errors = config.validate(config.complete(site(abb, dict(abb, name="ABB2", priority=2))))
    assert [key for key, _ in errors] == ["chargers.1.transport"], errors
    assert "chargers.0's" in errors[0][1]


def test_abb_transport_rtu_needs_no_host_and_checks_its_line():
    doc = config.complete(site({"name": "ABB", "type": "abb_terra", "transport": "rtu", "unit": 2}))
    abb = doc["chargers"][0]
    assert (abb["transport"], abb["baud"], abb["format"], abb["unit"], abb["host"]) == ("rtu", 19200, "8E1", 2, "")
    assert config.validate(doc) == []
    # Over TCP (the default) the host stays required.
    errors = dict(config.validate(site({"name": "ABB", "type": "abb_terra"})))
    assert "chargers.0.host" in errors
    doc = config.complete(site({"name": "ABB", "type": "abb_terra", "host": "10.0.0.7"}))
    assert doc["chargers"][0]["transport"] == "tcp" and config.validate(doc) == []
    errors = dict(config.validate(site({"name": "ABB", "type": "abb_terra", "transport": "serial", "baud": 14400,
                                        "format": "7E1"})))
    for key in ("transport", "baud", "format"):
        assert "chargers.0." + key in errors, (key, errors)
    # Only the ABB has a transport.
    errors = dict(config.validate(site({"name": "A", "type": "alfen_eve", "host": "10.0.0.9", "transport": "rtu"})))
    assert "unknown setting" in errors["chargers.0.transport"]
