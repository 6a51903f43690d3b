"""Safe mode (chargeguard/safemode.py, counted by trial.py): a last good configuration that no longer starts (both runtimes)."""

import asyncio
import sys

from chargeguard import app as app_module
from support import exists
from test_app import GOOD, FakePlatform, run_for, storage_with, wait_until

# The last good configuration of a site whose MQTT no longer fits (a
# firmware update that needs more heap): as config.json and config.bak.
WITH_MQTT = (
    '{"name": "site", "mqtt": {"enabled": true, "host": "127.0.0.1", "password": "broker-secret"},'
    ' "admin": {"password": "admin-secret"},'
    ' "chargers": [{"name": "box", "host": "127.0.0.1"}, {"name": "two", "host": "127.0.0.2", "failsafe_a": 6}]}'
)
OTHER = '{"name": "other", "chargers": [{"name": "box", "host": "127.0.0.1"}]}'
SECRETS = ("broker-secret", "admin-secret")
METERS = []  # the meter sections boot() saw made, the last boot's only


def boots_marker(storage):
    return storage + "/" + app_module._BOOTS


def short_of_heap():
    # As the 32-bit port's heap: the chargers find no room once MQTT is loaded.
    return "chargeguard.net.hass" in sys.modules


def boot(storage, fails=None):
    """app.build() as main() calls it: (app or the MemoryError it raised, console lines).

    make_charger raises MemoryError while fails() holds (startup.py makes the drivers).
    """
    from chargeguard import startup

    real = startup.make_charger
    real_meter = startup.make_meter

    def making(entry, platform):
        if fails is not None and fails():
            raise MemoryError("memory allocation failed, allocating 2048 bytes")
        return real(entry, platform)

    def metering(meter_doc, platform, doc=None):
        METERS.append(meter_doc["type"])
        return real_meter(meter_doc, platform, doc)

    startup.make_charger = making
    startup.make_meter = metering
    del METERS[:]
    lines = []
    try:
        return app_module.build(FakePlatform(storage), log=lines.append), lines
    except MemoryError as error:
        return error, lines
    finally:
        startup.make_charger = real
        startup.make_meter = real_meter
        app_module._unload("chargeguard.net.hass")
        app_module._unload("chargeguard.net.mqtt")


def prove(app):
    # The app guards until it has proven its configuration (App.keep_last_good ran).
    app.config_proven_ms = 200

    async def scenario():
        assert await wait_until(lambda: app.config_good is None and app.boots_proven is None, 2000)

    asyncio.run(run_for(app, 10, scenario))


def count(storage):
    if not exists(boots_marker(storage)):
        return None
    with open(boots_marker(storage)) as handle:
        return int(handle.read().split()[2])


def test_the_names_agree_with_the_trial_module():
    from chargeguard import safemode, startup, trial

    assert app_module._BOOTS == trial.BOOTS_FILE
    assert startup.FAILSAFE == safemode.FAILSAFE == trial.FAILSAFE and trial.SAFE_MODE == 1
    for module in ("chargeguard.safemode", "chargeguard.trial", "chargeguard.startup"):
        app_module._unload(module)


def test_a_last_good_config_that_failed_twice_starts_guard_only():
    storage = storage_with({"config.json": WITH_MQTT, "config.bak": WITH_MQTT})
    for attempt in (1, 2):
        error, lines = boot(storage, short_of_heap)
        assert isinstance(error, MemoryError), (attempt, error)
        assert not [line for line in lines if "SAFE MODE" in line], lines
        assert count(storage) == attempt
    app, lines = boot(storage, short_of_heap)
    assert not isinstance(app, MemoryError), (app, lines)
    assert app.config_source == "config.json" and app.names == ["box", "two"]
    # Loud, on the console, in this order: why, what is kept, what is off, how to leave.
    said = [line for line in lines if not line.startswith("config: ")]
    assert said[0].startswith("SAFE MODE: the last good configuration (config.bak) did not start in two boots"), said
    assert said[1].startswith("kept: the meter, the chargers, the guard's site settings"), said
    assert said[2] == "off: MQTT/Home Assistant, the energy log", said
    assert said[3].startswith("to leave it: fix the cause") and "make deploy" in said[3] and "restart" in said[3], said
    assert app.safe_mode == said[0] and app.config_notes[:4] == said[:4]
    assert app.interfaces == [] and "chargeguard.net.hass" not in sys.modules and METERS == ["p1"]
    assert "chargeguard.safemode" not in sys.modules and "chargeguard.trial" not in sys.modules
    assert app.status_line().endswith("| SAFE MODE"), app.status_line()
    assert app.config_good is None and count(storage) == 3
    for line in lines:
        for secret in SECRETS:
            assert secret not in line, line
    # The notes are repeated on the console while it lasts (config_source is config.json).
    app.config_notes_every = 1
    app.log = lines.append
    del lines[:]

    async def scenario():
        assert await wait_until(lambda: "config: " + app.safe_mode in lines, 3000), lines

    asyncio.run(run_for(app, 10, scenario))


def test_an_interface_still_up_shows_safe_mode_in_the_state_errors_and_no_energy_log_starts():
    storage = storage_with({"config.json": OTHER, "config.bak": OTHER})
    for _ in range(3):
        app, lines = boot(storage)
    assert app.safe_mode is not None and app.safe_mode.startswith("SAFE MODE:"), app.config_notes
    # What an OCPP box's central system (the interface safe mode keeps) calls.
    state = app.site_state()
    assert state.errors[0] == app.safe_mode, state.errors
    asyncio.run(run_for(app, 300))
    assert app.energy is None
    # Without safe mode the same state starts the energy log (the check above can fail).
    app.safe_mode = None
    app.running = True
    asyncio.run(run_for(app, 300))
    assert app.energy is not None


def test_a_single_unproven_boot_such_as_a_power_cut_does_not_demote_the_config():
    storage = storage_with({"config.json": GOOD, "config.bak": GOOD})
    first, lines = boot(storage)
    assert first.safe_mode is None and count(storage) == 1
    # Power cut before it had guarded CONFIG_PROVEN_MS: first never runs.
    second, lines = boot(storage)
    assert second.safe_mode is None and count(storage) == 2, second.config_notes
    prove(second)
    assert count(storage) is None
    third, lines = boot(storage)
    assert third.safe_mode is None and third.config_notes == [] and count(storage) == 1


def test_a_proven_safe_mode_lets_the_next_restart_try_the_full_config_once():
    storage = storage_with({"config.json": WITH_MQTT, "config.bak": WITH_MQTT})
    boot(storage, short_of_heap)
    boot(storage, short_of_heap)
    safe, lines = boot(storage, short_of_heap)
    assert safe.safe_mode is not None
    prove(safe)
    assert count(storage) == 1 and "chargeguard.flashfile" not in sys.modules
    # A restart: the full configuration once more; it fails once: safe mode again.
    error, lines = boot(storage, short_of_heap)
    assert isinstance(error, MemoryError) and count(storage) == 2
    again, lines = boot(storage, short_of_heap)
    assert again.safe_mode is not None and again.interfaces == []
    # Fixed meanwhile (here: the heap it needs is there): it runs as configured and the count goes.
    prove(again)
    fixed, lines = boot(storage)
    assert fixed.safe_mode is None and [name for name, _ in fixed.interfaces] == ["mqtt"]
    prove(fixed)
    assert count(storage) is None


def test_a_safe_mode_that_did_not_start_either_is_failsafe_without_the_meter():
    storage = storage_with({"config.json": WITH_MQTT, "config.bak": WITH_MQTT})
    for _ in range(3):
        boot(storage, short_of_heap)
    # The safe-mode boot restarted before it had guarded (e.g. the meter's driver crashed the board).
    app, lines = boot(storage, short_of_heap)
    assert app.safe_mode.startswith("FAILSAFE MODE: even the guard-only safe mode did not start"), app.config_notes
    assert "failsafe current" in app.safe_mode and count(storage) == 4
    assert METERS == [] and isinstance(app.meter, app_module._NoMeter) and app.slow is None and app.interfaces == []
    assert app.status_line().endswith("| FAILSAFE MODE"), app.status_line()
    # Every charger is commanded its failsafe current (0 = paused) from the first decision.
    app.decide()
    assert [command.offered_ma for command in app.commands] == [0, 6000]
    assert app.reasons == ["failsafe", "failsafe"], app.reasons
    # And so on at every boot it does not prove; the count stays bounded.
    for _ in range(8):
        again, lines = boot(storage, short_of_heap)
        assert again.safe_mode.startswith("FAILSAFE MODE")
    assert count(storage) == 9
    # Proven, the next restart tries safe mode again, then the full configuration.
    prove(again)
    assert count(storage) == 2
    safe, lines = boot(storage, short_of_heap)
    assert safe.safe_mode.startswith("SAFE MODE") and METERS == ["p1"], METERS


def test_a_new_config_json_leaves_safe_mode_with_its_own_trial():
    storage = storage_with({"config.json": GOOD, "config.bak": GOOD})
    for _ in range(3):
        app, lines = boot(storage)
    assert app.safe_mode is not None
    with open(storage + "/config.json", "w") as handle:
        handle.write(OTHER)
    new, lines = boot(storage)
    assert new.safe_mode is None and new.config_source == "config.json" and new.config_notes == []
    prove(new)
    assert count(storage) is None
    with open(storage + "/config.bak") as handle:
        assert handle.read() == OTHER


def test_a_new_config_json_that_fails_falls_back_to_the_counted_last_good_one():
    # The new file is on trial (not counted); config.bak, started in the same boot, is.
    storage = storage_with({"config.json": GOOD, "config.bak": GOOD})
    boot(storage)
    boot(storage)
    with open(storage + "/config.json", "w") as handle:
        handle.write(WITH_MQTT)
    app, lines = boot(storage, short_of_heap)
    assert app.config_source == "config.bak" and app.safe_mode.startswith("SAFE MODE"), app.config_notes
    assert app.config_notes[4].startswith("config.json could not start (MemoryError("), app.config_notes


def test_reduce_keeps_the_ocpp_central_system_for_ocpp_chargers_and_switches_the_rest_off():
    from chargeguard import safemode, trial

    def doc(charger_type):
        return {
            "site": {"mode": "solar", "distribution": "equal", "peak_limit_w": 4000},
            "mqtt": {"enabled": True, "password": "broker-secret"},
            "web": {"enabled": True},
            "ocpp": {"enabled": True},
            "chargers": [{"type": charger_type, "mode": "eco"}, {"type": charger_type, "mode": "manual"}],
        }

    site = doc("ocpp")
    said = safemode.reduce(site, trial.SAFE_MODE)
    assert not site["mqtt"]["enabled"] and not site["web"]["enabled"] and site["ocpp"]["enabled"]
    assert said[1].endswith(", the OCPP central system (the OCPP chargers connect to it)"), said
    assert said[2] == "off: MQTT/Home Assistant, the web pages and API, the energy log", said
    # Safe mode keeps how the site charges (modes, distribution, capacity limit).
    assert site["site"] == {"mode": "solar", "distribution": "equal", "peak_limit_w": 4000}
    assert site["mqtt"]["password"] == "broker-secret" and "broker-secret" not in " ".join(said)
    lan = doc("go_e")
    said = safemode.reduce(lan, trial.SAFE_MODE)
    assert not lan["ocpp"]["enabled"] and "the OCPP central system (no OCPP charger)" in said[2], said
    # Failsafe: no reading, so no optimiser either.
    failsafe = doc("go_e")
    said = safemode.reduce(failsafe, trial.FAILSAFE)
    assert failsafe["site"] == {"mode": "fast", "distribution": "priority", "peak_limit_w": 0}
    assert [entry["mode"] for entry in failsafe["chargers"]] == ["fast", "manual"]
    assert said[0].startswith("FAILSAFE MODE:") and said[1] == "kept: the chargers, the guard's site settings, Wi-Fi"
    for module in ("chargeguard.safemode", "chargeguard.trial"):
        app_module._unload(module)
