# The charger types' own configuration rules (drivers.CHARGER_MODULES' second
# column: chargers/entries.py, chargers/ocpp_entry.py) are loaded only for a
# configuration that has such a charger, and unloaded with config.py at boot.
import json
import sys

from chargeguard.drivers import CHARGER_MODULES
from support import make_tmpdir

ENTRIES = "chargeguard.chargers.entries"
OCPP_ENTRY = "chargeguard.chargers.ocpp_entry"


def rule_modules():
    names = []
    for kind in sorted(CHARGER_MODULES):
        name = CHARGER_MODULES[kind][1]
        if name is not None and name not in names:
            names.append(name)
    return names


def forget_rule_modules():
    import chargeguard.chargers

    for name in rule_modules():
        sys.modules.pop(name, None)
        short = name.split(".")[-1]
        if short in chargeguard.chargers.__dict__:
            delattr(chargeguard.chargers, short)


def loaded_rule_modules():
    return [name for name in rule_modules() if name in sys.modules]


def stored(chargers):
    directory = make_tmpdir("rules")
    with open(directory + "/config.json", "w") as handle:
        handle.write(json.dumps({"site": {"breaker_a": 32}, "chargers": chargers}))
    return directory


TRYDANS = [{"name": "Garage", "host": "192.168.1.60"}, {"name": "Drive", "host": "192.168.1.61", "type": "v2c_trydan"}]
MIXED = [
    {"name": "Garage", "host": "192.168.1.60"},
    {"name": "Alfen", "type": "alfen_eve", "host": "192.168.1.62"},
    {"name": "Box", "type": "ocpp", "charge_point_id": "BOX1"},
]


def test_the_table_names_both_rule_modules():
    assert rule_modules() == [ENTRIES, OCPP_ENTRY]
    assert CHARGER_MODULES["ocpp"][1] == OCPP_ENTRY and CHARGER_MODULES["keba_p30"][1] == ENTRIES
    assert CHARGER_MODULES["v2c_trydan"] == ("chargeguard.chargers.v2c_trydan", None)


def test_a_trydan_only_site_loads_no_charger_rule_module():
    from chargeguard import config

    forget_rule_modules()
    try:
        doc, notes = config.load(stored(TRYDANS))
        assert notes == [] and [entry["name"] for entry in doc["chargers"]] == ["Garage", "Drive"], notes
        assert config.validate(doc) == []
        assert loaded_rule_modules() == []
        # The control: a site with an Alfen and an OCPP box does load both (so the check above can fail).
        doc, notes = config.load(stored(MIXED))
        assert notes == [] and doc["chargers"][1]["port"] == 502 and doc["chargers"][2]["unit"] == "auto", notes
        assert loaded_rule_modules() == [ENTRIES, OCPP_ENTRY]
    finally:
        forget_rule_modules()


def test_the_boot_unloads_the_rule_modules_with_config():
    from chargeguard import appboot

    forget_rule_modules()
    doc, notes, source, good = appboot.load_config(stored(MIXED))
    assert source == "config.json" and notes == [] and doc["chargers"][2]["charge_point_id"] == "BOX1", notes
    assert loaded_rule_modules() == [] and "chargeguard.config" not in sys.modules


def test_an_ocpp_id_refused_for_its_characters_is_not_also_called_a_duplicate():
    from chargeguard import config

    chargers = [
        {"name": "A", "type": "ocpp", "charge_point_id": "BOX 1"},
        {"name": "B", "type": "ocpp", "charge_point_id": "BOX 1", "priority": 2},
    ]
    errors = config.validate({"chargers": chargers})
    assert errors == [
        ("chargers.0.charge_point_id", "must not contain '/', '?', '#' or spaces (is 'BOX 1')"),
        ("chargers.1.charge_point_id", "must not contain '/', '?', '#' or spaces (is 'BOX 1')"),
    ], errors
    forget_rule_modules()


def test_the_app_built_holds_no_start_up_code():
    # app.build() leaves neither chargeguard/appboot.py (the configuration
    # read) nor startup.py (the once-per-boot assembly, with
    # core/settings_doc.py) nor config.py and the charger
    # rules it loaded on the heap.
    from chargeguard import app
    from test_app import FakePlatform

    forget_rule_modules()
    chargers = [
        {"name": "Garage", "host": "192.168.1.60"},
        {"name": "Alfen", "type": "alfen_eve", "host": "192.168.1.62"},
    ]
    lines = []
    built = app.build(FakePlatform(stored(chargers)), log=lines.append)
    assert built.names == ["Garage", "Alfen"] and built.config_source == "config.json", lines
    for name in ["chargeguard.appboot", "chargeguard.startup", "chargeguard.core.settings_doc", "chargeguard.config"] + rule_modules():
        assert name not in sys.modules, name
