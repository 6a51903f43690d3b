"""A new config.json on trial (chargeguard/trial.py): one that did not start is not tried again (both runtimes)."""

import asyncio
import sys

from chargeguard import app as app_module
from support import exists
from test_app import GOOD, FakePlatform, run_for, storage_with, wait_until

# A new configuration that adds MQTT (its module is loaded before the
# chargers are made) and a second box, the one that will not start.
WITH_MQTT = (
    '{"name": "new", "mqtt": {"enabled": true, "host": "127.0.0.1"},'
    ' "chargers": [{"name": "box", "host": "127.0.0.1"}, {"name": "big", "host": "10.0.0.99"}]}'
)
OTHER = '{"name": "other", "chargers": [{"name": "box", "host": "127.0.0.1"}, {"name": "two", "host": "127.0.0.2"}]}'
RESTARTED = (
    "config.json did not start last time (the board restarted while starting it):"
    " it was NOT applied; fix it and deploy it again"
)


def marker(storage):
    return storage + "/" + app_module._TRIAL


def boot(storage, fail_host=None):
    # app.build() as main() calls it; make_charger raises MemoryError for
    # fail_host, as the heap of the 32-bit port does for a big configuration.
    # Returns (app or the error it raised, console lines, hosts made).
    # The drivers are made by startup.py (app.build() loads it, then unloads it).
    from chargeguard import startup

    real = startup.make_charger
    made = []

    def making(entry, platform):
        made.append(entry["host"])
        if entry["host"] == fail_host:
            raise MemoryError("memory allocation failed, allocating 793 bytes")
        return real(entry, platform)

    startup.make_charger = making
    lines = []
    try:
        return app_module.build(FakePlatform(storage), log=lines.append), lines, made
    except MemoryError as error:
        return error, lines, made
    finally:
        startup.make_charger = real


def test_the_trial_file_name_is_the_trial_modules():
    from chargeguard import trial

    assert app_module._TRIAL == trial.TRIAL_FILE


def test_a_config_that_cannot_start_falls_back_with_the_modules_it_loaded_unloaded():
    storage = storage_with({"config.bak": GOOD, "config.json": WITH_MQTT})
    for name in ("chargeguard.net.hass", "chargeguard.trial"):
        app_module._unload(name)
    app, lines, made = boot(storage, "10.0.0.99")
    assert made == ["127.0.0.1", "10.0.0.99", "127.0.0.1"], made
    assert app.config_source == "config.bak" and app.names == ["box"], app.config_notes
    assert app.config_notes[0].startswith("config.json could not start (MemoryError("), app.config_notes
    # config.bak was assembled without the failed attempt's modules (it has no MQTT).
    assert "chargeguard.net.hass" not in sys.modules
    assert "chargeguard.trial" not in sys.modules and "chargeguard.flashfile" not in sys.modules
    # The next boot uses config.bak at once, saying why.
    assert exists(marker(storage))
    again, lines, made = boot(storage, "10.0.0.99")
    assert made == ["127.0.0.1"], made
    assert again.config_source == "config.bak" and again.config_good is None
    note = again.config_notes[0]
    assert note.startswith("config.json did not start last time (MemoryError(") and note.endswith(
        "): it was NOT applied; fix it and deploy it again"
    ), note
    assert "config: " + note in lines and "last good" in again.config_notes[1], again.config_notes
    assert again.status_line().endswith("| last good config (config.json not applied)"), again.status_line()


def test_a_boot_that_never_proved_the_new_config_sends_the_next_boot_to_the_last_good_one():
    storage = storage_with({"config.bak": GOOD, "config.json": OTHER})
    first, lines, made = boot(storage)
    assert first.config_source == "config.json" and first.config_good is not None
    assert exists(marker(storage))
    # The board restarted before the configuration had guarded CONFIG_PROVEN_MS
    # (a watchdog reset, a crash, a power cut): first is never run.
    second, lines, made = boot(storage)
    assert made == ["127.0.0.1"], made
    assert second.config_source == "config.bak" and second.names == ["box"]
    assert second.config_notes[0] == RESTARTED, second.config_notes
    assert "config: " + RESTARTED in lines, lines
    # And so on at every boot, until a new file is deployed.
    third, lines, made = boot(storage)
    assert third.config_source == "config.bak" and third.config_notes[0] == RESTARTED


def test_a_new_config_json_gets_its_own_trial():
    storage = storage_with({"config.bak": GOOD, "config.json": OTHER})
    boot(storage)
    assert boot(storage)[0].config_source == "config.bak"
    with open(storage + "/config.json", "w") as handle:
        handle.write(OTHER.replace('"other"', '"fixed"'))
    app, lines, made = boot(storage)
    assert app.config_source == "config.json" and app.config_notes == [], app.config_notes
    assert made == ["127.0.0.1", "127.0.0.2"], made
    assert exists(marker(storage))


def test_proving_the_new_config_ends_its_trial():
    storage = storage_with({"config.bak": GOOD, "config.json": OTHER})
    app, lines, made = boot(storage)
    assert exists(marker(storage))
    app.config_proven_ms = 200

    async def scenario():
        assert await wait_until(lambda: app.config_good is None, 200 + app_module.CONTROL_TICK_MS + 500)

    asyncio.run(run_for(app, 10, scenario))
    assert not exists(marker(storage))
    assert "chargeguard.flashfile" not in sys.modules
    with open(storage + "/config.bak") as kept:
        assert kept.read() == OTHER
    again, lines, made = boot(storage)
    assert again.config_source == "config.json" and again.config_good is None and again.config_notes == []
    assert not exists(marker(storage))


def test_a_refused_new_config_is_not_on_trial():
    # Refused at load, it never runs: the notes name each refused setting at
    # every boot, not "did not start".
    storage = storage_with({"config.bak": GOOD, "config.json": '{"site": {"breaker_a": 0}, "chargers": []}'})
    app, lines, made = boot(storage)
    assert app.config_source == "config.bak" and "refused site.breaker_a" in app.config_notes[1], app.config_notes
    assert not exists(marker(storage))
    assert "did not start" not in " ".join(boot(storage)[0].config_notes)


def test_without_a_last_good_copy_the_first_config_is_tried_again_at_each_boot():
    # Nothing else to guard with: the failure reaches main(), which waits
    # RESTART_DELAY_MS before the reset, and the next boot tries the file again
    # (a power cut during its first seconds must not leave the board unconfigured).
    storage = storage_with({"config.json": WITH_MQTT})
    error, lines, made = boot(storage, "10.0.0.99")
    assert isinstance(error, MemoryError) and made == ["127.0.0.1", "10.0.0.99"], (error, made)
    assert [line for line in lines if line.startswith("config: config.json could not start: MemoryError(")], lines
    error, lines, made = boot(storage, "10.0.0.99")
    assert isinstance(error, MemoryError) and made == ["127.0.0.1", "10.0.0.99"], (error, made)
    assert app_module.RESTART_DELAY_MS >= 10000
    # And it runs once it starts.
    app, lines, made = boot(storage)
    assert app.config_source == "config.json" and app.names == ["box", "big"]
