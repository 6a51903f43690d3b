"""The command API (commands.py) and the site state (state.py) on a running App (both runtimes)."""

import json
import sys

from support import exists
from test_app_optimiser import make_app, push_w

from chargeguard import rules
from chargeguard.commands import OVERLAY_FILE, PERSIST_DELAY_MS, Commands
from chargeguard.core import modes


def api_app(doc_changes=None, chargers=2, ocpp_at=None, wall_s=None):
    """(app, platform, meter, api, restarts); ocpp_at: the index of a charger whose driver is an OCPP box
    (chargers/ocpp.OcppCharger "BOX-1", not connected) instead of a fake; wall_s: the platform's wall clock."""
    import support

    if wall_s is None:
        app, platform, meter, drivers = make_app(doc_changes or {}, chargers)
    else:
        app, platform, meter, drivers = make_app(doc_changes or {}, chargers, wall_s)
    if ocpp_at is not None:
        from chargeguard.chargers.ocpp import OcppCharger

        point = OcppCharger("BOX-1", clock=platform.ticks_ms, wall=platform.wall_time)
        app.drivers[ocpp_at] = point
        app.statuses[ocpp_at] = point.status
    app.storage = support.make_tmpdir("api")
    restarts = []
    app.api = Commands(app, restart=lambda: restarts.append(1))
    assert app.state is app.site_state() is app.api.state
    return app, platform, meter, app.api, restarts


def read_overlay(app):
    with open(app.storage + "/" + OVERLAY_FILE) as handle:
        return json.load(handle)


def test_rules_modes_are_the_cores():
    assert rules.MODES == modes.MODES


def test_set_lock_asks_the_box_and_refuses_what_cannot_be():
    app, platform, meter, api, _ = api_app()
    asked = []
    app.request_lock = lambda index, locked: asked.append((index, locked))
    assert api.set_lock("c1", True) == {"chargers.1.locked": "this charger's box has no lock ChargeGuard can set"}
    app.can_lock[1] = True
    assert api.set_lock("c1", "yes") == {"chargers.1.locked": "must be true or false (is 'yes')"}
    assert "no charger" in api.set_lock("c9", True)["chargers"]
    assert asked == []
    assert api.set_lock("C1", True) == {} and api.set_lock(1, False) == {}
    assert asked == [(1, True), (1, False)]
    assert api.pending == {}  # the box keeps its lock: nothing for overrides.json


def test_values_show_the_settings_in_force():
    app, _, _, api, _ = api_app({"chargers": [{"max_a": 20}, {"mode": "manual", "manual_a": 8}]})
    values = api.values
    assert values["chargers.0.max_a"] == 20 and values["chargers.1.mode"] == "manual"
    assert values["chargers.1.manual_a"] == 8 and values["chargers.0.mode"] == "site"
    assert values["site.mode"] == "fast" and values["solar.eco"] is True and values["site.peak_limit_w"] == 0
    assert values["chargers.0.priority"] == 1 and values["chargers.1.priority"] == 2


def test_a_good_change_takes_effect_on_the_next_decision():
    import sys

    app, platform, meter, api, _ = api_app()
    push_w(app, meter, platform, 0, 0)
    seq = app.state.settings_seq
    assert api.set_charger("c1", {"mode": "manual", "manual_a": 10, "max_a": 12}) == {}
    # The checks (change.py, rules.py) are loaded per call, not kept on the heap.
    assert "chargeguard.change" not in sys.modules and "chargeguard.rules" not in sys.modules
    charger = app.chargers[1]
    assert charger.mode == "manual" and charger.manual_ma == 10000 and charger.max_ma == 12000
    assert app.state.settings_seq == seq + 1 and app.state.chargers[1].settings.mode == "manual"
    push_w(app, meter, platform, 0, 0)
    assert app.targets_ma == [16000, 10000], app.targets_ma  # what the guard was asked for
    assert app.state.chargers[1].reason == app.reasons[1]


def test_no_heap_for_the_checks_refuses_the_change_with_the_reason():
    from chargeguard import commands

    app, _, _, api, _ = api_app()
    before = dict(api.values)
    real = commands._load_change

    def no_heap():
        raise MemoryError("memory allocation failed")

    commands._load_change = no_heap
    try:
        errors = api.set_charger(1, {"max_a": 12})
    finally:
        commands._load_change = real
    assert list(errors) == [""] and "not enough memory" in errors[""], errors
    assert api.values == before and api.pending == {} and app.chargers[1].max_ma == 16000
    assert api.set_charger(1, {"max_a": 12}) == {}  # once the heap has room


def test_wrong_values_are_refused_with_configs_messages_and_nothing_changes():
    from chargeguard import config

    app, _, _, api, _ = api_app()
    before = dict(api.values)
    errors = api.set({"chargers.0.max_a": 99, "chargers.0.mode": "turbo", "solar.eco": "yes", "site.mode": "eco"})
    doc = {"chargers": [{"host": "1.2.3.4", "max_a": 99, "mode": "turbo"}], "solar": {"eco": "yes"}}
    expected = dict(config.validate(doc))
    assert errors["chargers.0.max_a"] == expected["chargers.0.max_a"] == "must be between 6 and 32 A (is 99)"
    assert errors["chargers.0.mode"] == expected["chargers.0.mode"], errors
    assert errors["solar.eco"] == expected["solar.eco"] == "must be true or false (is 'yes')"
    assert "site.mode" not in errors and len(errors) == 3, errors
    assert api.values == before and app.chargers[0].max_ma == 16000 and app.chargers[0].mode == "fast"
    assert not api.pending


def test_wrong_types_unknown_fields_and_unknown_chargers():
    _, _, _, api, _ = api_app()
    assert api.set({"chargers.0.min_a": 7.5}) == {"chargers.0.min_a": "must be a whole number between 6 and 32 A (is 7.5)"}
    assert api.set({"chargers.0.enabled": 1}) == {"chargers.0.enabled": "must be true or false (is 1)"}
    assert api.set({"chargers.0.max_a": True})["chargers.0.max_a"].startswith("must be a whole number")
    assert api.set({"chargers.0.host": "1.2.3.4"})["chargers.0.host"].startswith("unknown setting (settable: mode,")
    assert api.set({"site.breaker_a": 40})["site.breaker_a"].startswith("unknown setting")
    assert api.set({"wifi.ssid": "x"})["wifi.ssid"].startswith("unknown setting")
    assert api.set({"chargers.5.max_a": 20}) == {"chargers.5.max_a": "no charger 5 (chargers 0..1)"}
    assert api.set_charger("nobody", {"max_a": 20}) == {"chargers": "no charger 'nobody' (chargers: c0, c1)"}
    assert api.set_charger(7, {"max_a": 20})["chargers"].startswith("no charger 7")
    assert api.set({})[""].startswith("must be an object")
    assert api.set(["site.mode"])[""].startswith("must be an object")
    assert api.set_charger("C1", {"max_a": 20}) == {} and api.values["chargers.1.max_a"] == 20  # case ignored


def test_cross_field_rules_are_configs_and_all_or_nothing():
    from chargeguard import config

    app, _, _, api, _ = api_app()
    errors = api.set({"chargers.0.min_a": 20, "chargers.1.max_a": 10})
    doc = {"chargers": [{"host": "1.2.3.4", "min_a": 20, "max_a": 16, "circuit_a": 32}]}
    assert errors == {"chargers.0.max_a": dict(config.validate(doc))["chargers.0.max_a"]}, errors
    assert app.chargers[1].max_ma == 16000  # the good half was not applied
    errors = api.set({"chargers.0.manual_a": 20})
    assert errors == {"chargers.0.manual_a": "must be between min_a and max_a, 6..16 A (is 20)"}
    errors = api.set({"chargers.0.max_a": 10, "chargers.0.manual_a": 12})
    assert errors == {"chargers.0.manual_a": "must be between min_a and max_a, 6..10 A (is 12)"}
    # min_a above the charger's circuit (16 A by default) is refused.
    errors = api.set({"chargers.0.min_a": 18, "chargers.0.max_a": 20, "chargers.0.manual_a": 18})
    assert "circuit_a" in errors["chargers.0.min_a"], errors
    # The net power target stays 300 W above both bands' lower threshold (EVCM).
    errors = api.set({"solar.net_power_target_w": -1000})
    assert errors == {"solar.net_power_target_w": "must be at least eco_on_lower_w + 300 W, -200 W (is -1000)"}
    assert api.set({"solar.net_power_target_w": -200}) == {}
    assert api.set({"site.peak_limit_w": 1000})["site.peak_limit_w"].startswith("must be 0 (off) or between 2500")
    assert not app.chargers[0].min_ma != 6000


def test_priority_moves_and_the_others_shift():
    app, _, _, api, _ = api_app(chargers=3)
    assert api.set_charger("c2", {"priority": 1}) == {}
    assert [api.values["chargers.%d.priority" % index] for index in range(3)] == [2, 3, 1]
    assert app.guard.order == [2, 0, 1] and [charger.priority for charger in app.chargers] == [2, 3, 1]
    assert api.set_charger(2, {"priority": 3}) == {}
    assert [api.values["chargers.%d.priority" % index] for index in range(3)] == [1, 2, 3]
    assert api.set_charger(0, {"priority": 4}) == {"chargers.0.priority": "must be between 1 and 3, the number of chargers (is 4)"}
    assert api.set_charger(0, {"priority": 0})["chargers.0.priority"].startswith("must be between 1 and 8")


def test_start_stop_and_site_eco():
    app, platform, meter, api, _ = api_app({"chargers": [{}, {}]})
    assert api.start_stop("c0", False) == {} and app.chargers[0].enabled is False
    push_w(app, meter, platform, 0, 0)
    assert app.commands[0].offered_ma == 0
    assert api.set({"solar.eco": False}) == {} and app.opt_doc["solar"]["eco"] is False


def test_a_surplus_mode_loads_the_optimiser_at_run_time():
    app, platform, meter, api, _ = api_app()
    assert app.slow is None and app.optimiser is None
    assert api.set({"solar.eco": False, "solar.net_power_target_w": 500}) == {}
    assert app.slow is None  # the optimiser is not needed for these
    seq = app.state.optimiser_seq
    assert api.set_charger("c0", {"mode": "solar"}) == {}
    assert app.slow is not None and app.optimiser.opt.eco is False and app.optimiser.opt.net_power_target_w == 500
    push_w(app, meter, platform, 0, 0)
    assert app.reasons[0] != "fast" and app.state.optimiser is app.optimiser
    assert app.state.optimiser_seq > seq and app.state.upper_w == 1000  # the ECO off band
    # Later changes reach the running optimiser.
    assert api.set({"site.distribution": "shared", "solar.eco": True}) == {}
    assert app.optimiser.opt.distribution == "shared" and app.slow.envelope and app.optimiser.opt.eco


def test_no_heap_for_the_optimiser_changes_nothing():
    from chargeguard import slowlayer

    app, _, _, api, _ = api_app()
    real = slowlayer.SlowLayer

    def no_memory(*args):
        raise MemoryError()

    slowlayer.SlowLayer = no_memory
    try:
        errors = api.set_charger("c0", {"mode": "eco", "max_a": 20})
    finally:
        slowlayer.SlowLayer = real
        sys.modules["chargeguard.slowlayer"] = slowlayer
    assert errors == {"": "not enough memory to load the optimiser (surplus modes, distribution, capacity tariff): nothing changed"}
    assert app.slow is None and app.chargers[0].mode == "fast" and app.chargers[0].max_ma == 16000
    assert api.values["chargers.0.mode"] == "site" and not api.pending


def test_changes_are_written_once_after_the_last_one():
    app, platform, _, api, _ = api_app()
    path = app.storage + "/" + OVERLAY_FILE
    for amps in range(6, 17):  # a slider dragged
        assert api.set_charger("c0", {"max_a": amps}) == {}
        platform.advance(1000)
        assert api.flush(platform.now) is False and not exists(path)
    platform.advance(PERSIST_DELAY_MS - 1001)
    assert api.flush(platform.now) is False
    platform.advance(1)
    assert api.flush(platform.now) is True
    assert read_overlay(app) == {"chargers": ["c0", "c1"], "set": {"chargers.0.max_a": 16}}
    assert api.flush(platform.now + 60000) is False  # nothing pending: no write
    assert api.set({"site.mode": "off"}) == {}
    assert api.flush(platform.now, force=True) is True
    assert read_overlay(app)["set"] == {"chargers.0.max_a": 16, "site.mode": "off"}


def boot_with(files):
    from test_app import storage_with

    from chargeguard import appboot

    storage = storage_with(files)
    doc, notes, source, _ = appboot.load_config(storage)
    return doc, notes, source


CONFIG = '{"chargers": [{"name": "box", "host": "127.0.0.1"}, {"name": "car", "host": "127.0.0.2", "priority": 2}]}'


def test_the_overlay_is_applied_at_boot():
    overlay = {"chargers": ["box", "car"], "set": {"chargers.1.mode": "manual", "chargers.1.manual_a": 10, "solar.eco": False}}
    doc, notes, source = boot_with({"config.json": CONFIG, OVERLAY_FILE: json.dumps(overlay)})
    assert source == "config.json" and notes == [], notes
    assert doc["chargers"][1]["mode"] == "manual" and doc["chargers"][1]["manual_a"] == 10 and doc["solar"]["eco"] is False


def test_a_bad_overlay_is_refused_at_boot_with_a_note():
    overlay = {"chargers": ["box", "car"], "set": {"chargers.1.manual_a": 30, "chargers.0.mode": "manual"}}
    doc, notes, source = boot_with({"config.json": CONFIG, OVERLAY_FILE: json.dumps(overlay)})
    assert source == "config.json" and doc["chargers"][1]["manual_a"] == 6 and doc["chargers"][0]["mode"] == "site"
    assert notes[0] == OVERLAY_FILE + " refused chargers.1.manual_a: must be between min_a and max_a, 6..16 A (is 30)", notes
    assert "NOT applied" in notes[-1]
    overlay = {"chargers": ["box", "car"], "set": {"site.breaker_a": 100}}
    doc, notes, _ = boot_with({"config.json": CONFIG, OVERLAY_FILE: json.dumps(overlay)})
    assert doc["site"]["breaker_a"] == 25 and "site.breaker_a: unknown setting" in notes[0], notes
    overlay = {"chargers": ["other"], "set": {"chargers.0.mode": "off"}}
    doc, notes, _ = boot_with({"config.json": CONFIG, OVERLAY_FILE: json.dumps(overlay)})
    assert doc["chargers"][0]["mode"] == "site" and "other chargers" in notes[0], notes
    doc, notes, _ = boot_with({"config.json": CONFIG, OVERLAY_FILE: "{not json"})
    assert notes == [OVERLAY_FILE + " is corrupt (not valid JSON): the settings changed at run time were dropped"]


def test_what_was_set_survives_a_restart():
    from test_app import storage_with

    from chargeguard import appboot

    storage = storage_with({"config.json": CONFIG})
    app, platform, _, api, _ = api_app(chargers=2)
    app.names = ["box", "car"]
    app.storage = storage
    assert api.set_charger("car", {"priority": 1, "mode": "off"}) == {}
    assert api.flush(platform.now, force=True)
    doc, notes, _, _ = appboot.load_config(storage)
    assert notes == [] and doc["chargers"][1]["priority"] == 1 and doc["chargers"][0]["priority"] == 2
    assert doc["chargers"][1]["mode"] == "off"


def test_apply_config_stores_clears_the_overlay_and_restarts():
    from test_app import read_json, storage_with

    app, _, _, api, restarts = api_app()
    app.storage = storage_with({"config.json": CONFIG, OVERLAY_FILE: "{}"})
    errors = api.apply_config({"site": {"breaker_a": 2}, "chargers": []})
    assert errors == {"site.breaker_a": "must be between 6 and 630 A (is 2)"} and restarts == []
    assert exists(app.storage + "/" + OVERLAY_FILE) and "chargeguard.config" not in sys.modules
    assert api.apply_config({"name": "new", "chargers": []}) == {} and restarts == [1]
    assert read_json(app.storage + "/config.json")["name"] == "new"
    assert not exists(app.storage + "/" + OVERLAY_FILE) and "chargeguard.config" not in sys.modules


def test_site_state_follows_the_decisions_and_the_device():
    app, platform, meter, _, _ = api_app()
    state = app.state
    assert state.have_reading is False and state.reading_age_ms is None and len(state.chargers) == 2
    grid = state.grid_seq
    push_w(app, meter, platform, -1000, 0)
    assert state.have_reading and state.grid_seq == grid + 1 and state.month_peak_w is None
    meter.reading.month_peak_w = 4200  # the next telegram carries 1-0:1.6.0
    platform.advance(10)
    meter.reading.tick_ms = platform.now
    app.on_reading()
    grid += 1
    assert state.grid_seq == grid + 1 and state.month_peak_w == 4200
    assert state.reading_age_ms == 0 and state.failsafe is False and state.limit_ma == 24000
    assert state.chargers[0].name == "c0" and state.chargers[0].offered_ma == app.commands[0].offered_ma
    platform.advance(500)
    app.decide()  # no new reading: the grid section did not change
    assert state.grid_seq == grid + 1 and state.reading_age_ms == 500
    assert "month peak 4200 W" in app.status_line()
    device = state.device_seq
    state.refresh_device(platform.now)
    assert state.wifi_state == "off" and state.uptime_ms == platform.now - app.started_ms
    for index in range(7):
        state.add_error("e%d" % index)
    assert state.errors == ["e2", "e3", "e4", "e5", "e6"] and state.error_count == 7 and state.device_seq == device + 7
    app.config_notes = ["x"]
    state.refresh_device(platform.now)
    assert state.config_notes == ["x"] and state.device_seq == device + 8
    # Heap figures: taken by the supervisor after its collection, a change of
    # a whole KB counts, less does not (no publishing for every few bytes).
    app.heap_live, app.heap_free = 50000, 60000
    state.refresh_device(platform.now, True)
    assert (state.heap_live, state.heap_free) == (50000, 60000) and state.device_seq == device + 9
    app.heap_free = 60100
    state.refresh_device(platform.now, True)
    assert state.device_seq == device + 9 and state.heap_free == 60100
    app.heap_free = 58000
    state.refresh_device(platform.now, True)
    assert state.device_seq == device + 10


def test_decide_with_site_state_and_commands_allocates_nothing():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    app, platform, meter, api, _ = api_app({"site": {"max_import_w": 20000}})
    assert api.set_charger("c0", {"mode": "solar"}) == {} and app.slow is not None
    reading = meter.reading
    reading.phase_count = 3
    for phase in range(3):
        reading.current_ma[phase] = 5000
        reading.power_w[phase] = -1000
    reading.month_peak_w = 4200
    for _ in range(30):
        platform.advance(1000)
        reading.tick_ms = platform.now
        app.on_reading()
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(20):
            platform.advance(1000)
            reading.tick_ms = platform.now
            app.on_reading()
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before
    assert app.state.grid_seq >= 50
