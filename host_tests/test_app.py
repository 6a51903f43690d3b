"""The asyncio wiring, with fakes at the platform and driver interfaces (both runtimes)."""

import asyncio

from chargeguard import app as app_module
from chargeguard.core.model import CAR_CHARGING, ChargerStatus, GridReading
from chargeguard.platform import common


class FakePlatform:
    def __init__(self, storage="."):
        self.ticks_ms = common.ticks_ms
        self.ticks_diff = common.ticks_diff
        self.sleep_ms = common.sleep_ms
        self.feeds = 0
        self.watchdog_ms = None
        self.storage = storage

    def watchdog_start(self, timeout_ms):
        self.watchdog_ms = timeout_ms

    def watchdog_feed(self):
        self.feeds += 1

    def storage_dir(self):
        return self.storage

    def network_up(self):
        return True


class FakeMeter:
    """Gives a reading whenever the test calls push()."""

    def __init__(self, platform):
        self.platform = platform
        self.reading = GridReading()
        self.last_error = None
        self.on_reading = None

    async def run(self, on_reading):
        self.on_reading = on_reading
        while True:
            await asyncio.sleep(3600)

    def push(self, a, b, c):
        reading = self.reading
        reading.reset()
        reading.phase_count = 3
        for phase, amps in enumerate((a, b, c)):
            reading.current_ma[phase] = amps * 1000
            reading.power_w[phase] = amps * 230
        reading.tick_ms = self.platform.ticks_ms()
        self.on_reading()


class FakeCharger:
    def __init__(self, hang=False):
        self.status = ChargerStatus()
        self.status.reachable = True
        self.status.car = CAR_CHARGING
        self.applied = []
        self.polls = 0
        self.hang = hang

    async def poll(self):
        self.polls += 1
        return True

    async def apply(self, offered_ma):
        if self.hang:
            await asyncio.sleep(3600)  # a box that never answers
        self.applied.append(offered_ma)
        return True


def config_doc(chargers=1):
    """A validated document: config.py fills in every default the test leaves out."""
    from chargeguard import config

    doc = {
        "guard": {"min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1, "ev_response_s": 1},
        "chargers": [{"name": "c%d" % index, "host": "127.0.0.1"} for index in range(chargers)],
    }
    doc, errors = config.check(doc)
    assert not errors, errors
    return doc


def make_app(drivers):
    platform = FakePlatform()
    meter = FakeMeter(platform)
    lines = []
    app = app_module.App(platform, config_doc(len(drivers)), meter, drivers, log=lines.append)
    return app, platform, meter, lines


async def run_for(app, ms, during=None):
    runner = asyncio.create_task(app.run())
    await asyncio.sleep(0.05)
    if during is not None:
        await during()
    await asyncio.sleep(ms / 1000)
    app.stop()
    await asyncio.sleep(1.1)  # run() notices stop() within its 1 s tick
    runner.cancel()


def test_a_reading_reaches_the_charger_at_once():
    charger = FakeCharger()
    app, platform, meter, lines = make_app([charger])

    async def scenario():
        meter.push(2, 2, 2)
        await asyncio.sleep(0.02)
        assert charger.applied[-1] == 6000  # a start goes to the minimum
        assert app.commands[0].reason == "ramp"
        # The guard's reaction time (telegram to command) was taken: a change
        # counts only when a telegram caused it, within a control tick.
        assert app.reaction_ms is not None and 0 <= app.reaction_ms < app_module.CONTROL_TICK_MS, app.reaction_ms

    asyncio.run(run_for(app, 10, scenario))
    assert charger.polls >= 1
    assert platform.watchdog_ms == app_module.WATCHDOG_TIMEOUT_MS
    assert platform.feeds >= 1


def test_before_the_first_reading_chargers_are_on_failsafe():
    charger = FakeCharger()
    app, platform, meter, lines = make_app([charger])
    asyncio.run(run_for(app, 10))
    assert charger.applied and charger.applied[-1] == 0
    assert app.commands[0].reason == "failsafe"


def test_a_hung_charger_does_not_hold_up_the_other():
    hung = FakeCharger(hang=True)
    healthy = FakeCharger()
    app, platform, meter, lines = make_app([hung, healthy])

    async def scenario():
        meter.push(2, 2, 2)
        await asyncio.sleep(0.02)
        first = len(healthy.applied)
        assert first >= 1
        # Overload: only one minimum fits, the lower priority (healthy) one
        # must hear its pause although the other box hangs.
        meter.push(30, 2, 2)
        await asyncio.sleep(0.02)
        assert len(healthy.applied) > first
        assert healthy.applied[-1] == 0
        decisions = app.decisions
        meter.push(21, 2, 2)
        assert app.decisions == decisions + 1  # decide() never waits for a box

    asyncio.run(run_for(app, 10, scenario))
    assert hung.applied == []


class LockingCharger(FakeCharger):
    """A box with a lock (set_lock), refusing it while `refuse` is set."""

    def __init__(self):
        FakeCharger.__init__(self)
        self.locks = []
        self.refuse = False

    async def set_lock(self, locked):
        self.locks.append(locked)
        if self.refuse:
            self.status.error = "write Locked refused"
            return False
        self.status.locked = locked
        return True


def test_a_lock_request_reaches_the_box_after_the_guards_command_and_once():
    plain = FakeCharger()
    locking = LockingCharger()
    app, platform, meter, lines = make_app([plain, locking])
    assert app.can_lock == [False, True]

    async def scenario():
        meter.push(2, 2, 2)
        assert await wait_until(lambda: locking.applied, 1000)
        polls = locking.polls
        app.request_lock(1, True)
        # The charger's task sends it at once (its wake event), and reads the box again.
        assert await wait_until(lambda: locking.locks == [True] and locking.polls > polls, 1000), locking.locks
        assert locking.status.locked is True and app.lock_wanted[1] is None
        locking.refuse = True
        app.request_lock(1, False)
        assert await wait_until(lambda: locking.locks == [True, False], 1000)
        # A refusal is sent once (no retry loop against a box that says no) and logged.
        assert await wait_until(lambda: "charger c1: write Locked refused" in lines, 1000), lines
        assert locking.status.locked is True and app.lock_wanted[1] is None

    asyncio.run(run_for(app, 10, scenario))
    assert locking.locks == [True, False]


def _fails_once(calls):
    # A task body that raises on its first run and then waits for good.
    async def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("boom")
        await asyncio.sleep(3600)

    return flaky


def test_a_crashing_task_is_logged_and_restarted():
    charger = FakeCharger()
    app, platform, meter, lines = make_app([charger])
    calls = []
    flaky = _fails_once(calls)

    async def scenario():
        asyncio.create_task(app._supervised("flaky", flaky))
        # Restarted after TASK_RESTART_MS: waited for, so a slow machine cannot
        # stop the app before the restart is due. The bound only ends a hang.
        start = platform.ticks_ms()
        while len(calls) < 2 and platform.ticks_diff(platform.ticks_ms(), start) < 10 * app_module.TASK_RESTART_MS:
            await asyncio.sleep(0.01)

    saved = app_module.TASK_RESTART_MS
    asyncio.run(run_for(app, 10, scenario))
    assert len(calls) == 2, calls
    assert any("task flaky failed" in line and "boom" in line for line in lines), lines
    assert saved == app_module.TASK_RESTART_MS


def test_status_line_shows_grid_offer_and_reason():
    charger = FakeCharger()
    app, platform, meter, lines = make_app([charger])
    assert app.status_line().startswith("grid  --.-  --.-  --.- A | c0   0.0 A")
    app.have_reading = True
    meter.reading.phase_count = 3
    meter.reading.current_ma[0] = 12345
    meter.reading.current_ma[1] = -2500
    meter.reading.tick_ms = platform.ticks_ms()
    app.decide()
    line = app.status_line()
    assert line.startswith("grid  12.3  -2.5   0.0 A | c0   6.0 A ramp"), line


def test_status_line_shows_only_the_sites_phases():
    from chargeguard import config

    doc, errors = config.check({"site": {"phases": 1}, "chargers": [{"name": "c0", "host": "127.0.0.1"}]})
    assert not errors, errors
    platform = FakePlatform()
    meter = FakeMeter(platform)
    app = app_module.App(platform, doc, meter, [FakeCharger()], log=[].append)
    assert app.status_line().startswith("grid  --.- A | c0   0.0 A"), app.status_line()
    app.have_reading = True
    meter.reading.phase_count = 1
    meter.reading.current_ma[0] = 12345
    meter.reading.tick_ms = platform.ticks_ms()
    app.decide()
    line = app.status_line()
    assert line.startswith("grid  12.3 A | c0   6.0 A ramp"), line


def test_status_line_shows_the_total_of_a_meter_without_phases():
    from chargeguard import config

    doc, errors = config.check({"chargers": [{"name": "c0", "host": "127.0.0.1"}]})
    assert not errors, errors
    platform = FakePlatform()
    meter = FakeMeter(platform)
    app = app_module.App(platform, doc, meter, [FakeCharger()], log=[].append)
    app.have_reading = True
    meter.reading.phase_count = 0  # DSMR 2.2: totals only
    meter.reading.import_w = 9000
    meter.reading.export_w = 0
    meter.reading.tick_ms = platform.ticks_ms()
    app.decide()
    line = app.status_line()
    assert line.startswith("grid   9000 W total | c0"), line


def test_charger_errors_are_logged_once_per_change():
    charger = FakeCharger()
    app, platform, meter, lines = make_app([charger])
    charger.status.error = "timeout"
    app._report_error(0)
    app._report_error(0)
    charger.status.error = None
    app._report_error(0)
    assert lines == ["charger c0: timeout", "charger c0: ok"]


def test_unknown_driver_types_are_refused_clearly():
    from chargeguard import startup

    for make, doc in ((startup.make_meter, {"type": "smoke-signals"}), (startup.make_charger, {"type": "x"})):
        try:
            make(doc, FakePlatform())
        except ValueError as error:
            assert "not supported" in str(error)
        else:
            assert False, "accepted an unknown type"


def test_a_p1_device_that_cannot_open_is_named_in_the_log():
    import support
    from chargeguard.platform import unix

    storage = support.make_tmpdir("app-p1")
    with open(storage + "/config.json", "w") as handle:
        handle.write('{"version": 1, "meter": {"type": "p1"}, "chargers": []}')
    missing = storage + "/ttyUSB9"

    class MissingDevicePlatform(FakePlatform):
        def open_uart(self, baud, data_bits, parity, stop_bits, invert_rx):
            return unix.Platform({"name": "unix"}, uart_device=missing).open_uart(
                baud, data_bits, parity, stop_bits, invert_rx
            )

    lines = []
    app_module.build(MissingDevicePlatform(storage), log=lines.append)
    logged = [line for line in lines if line.startswith("meter: cannot start")]
    assert len(logged) == 1 and missing in logged[0], lines


def test_a_meter_that_cannot_open_leaves_the_chargers_on_failsafe():
    import support

    storage = support.make_tmpdir("app")
    with open(storage + "/config.json", "w") as handle:
        handle.write(
            '{"version": 1, "meter": {"type": "p1"}, "chargers": '
            '[{"name": "box", "type": "v2c_trydan", "host": "127.0.0.1"}]}'
        )

    class NoUartPlatform(FakePlatform):
        def open_uart(self, *args):
            raise OSError(19, "no P1 device")

    lines = []
    app = app_module.build(NoUartPlatform(storage), log=lines.append)
    assert any("meter: cannot start" in line for line in lines), lines
    app.decide()
    assert app.commands[0].offered_ma == 0
    assert app.commands[0].reason == "failsafe"
    # The config module was only needed while loading.
    import sys

    assert "chargeguard.config" not in sys.modules


def test_balanced_load_warns_on_the_console_at_boot():
    import support

    class NoUartPlatform(FakePlatform):
        def open_uart(self, *args):
            raise OSError(19, "no P1 device")

    for balanced in (False, True):
        storage = support.make_tmpdir("app_balanced")
        with open(storage + "/config.json", "w") as handle:
            handle.write('{"version": 1, "site": {"balanced_load": %s}}' % ("true" if balanced else "false"))
        lines = []
        app = app_module.build(NoUartPlatform(storage), log=lines.append)
        warned = [line for line in lines if "balanced_load" in line]
        assert len(warned) == (1 if balanced else 0), lines
        assert app.guard.site.balanced_load is balanced
        if balanced:
            assert warned[0].startswith("WARNING") and "single-phase load" in warned[0]

# ------------------------------------------------- configuration at start-up

GOOD = '{"name": "good", "chargers": [{"name": "box", "host": "127.0.0.1"}]}'
NO_BREAKER = '{"name": "new", "site": {"breaker_a": 0}, "chargers": [{"name": "box", "host": "127.0.0.1"}]}'


def storage_with(files):
    import support

    storage = support.make_tmpdir("app")
    for name in files:
        with open(storage + "/" + name, "w") as handle:
            handle.write(files[name])
    return storage


def read_json(path):
    import json

    with open(path) as handle:
        return json.load(handle)


async def wait_until(condition, timeout_ms):
    for _ in range(timeout_ms // 10):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


def test_a_config_that_ran_is_kept_as_the_last_good_copy():
    import sys

    storage = storage_with({"config.json": GOOD})
    lines = []
    app = app_module.build(FakePlatform(storage), log=lines.append)
    assert app.config_source == "config.json" and app.config_notes == [], app.config_notes
    assert app.config_good is not None
    assert "chargeguard.flashfile" not in sys.modules and "chargeguard.config" not in sys.modules
    # Boot-only code is not left on the heap: the configuration read, the start-up and the driver tables.
    assert "chargeguard.appboot" not in sys.modules and "chargeguard.startup" not in sys.modules
    assert "chargeguard.drivers" not in sys.modules
    app.config_proven_ms = 200

    async def scenario():
        # Proven after config_proven_ms of decisions; the supervisor looks twice a second.
        assert await wait_until(lambda: app.config_good is None, 200 + app_module.CONTROL_TICK_MS + 500)
        assert app.decisions >= 1

    asyncio.run(run_for(app, 10, scenario))
    with open(storage + "/config.bak") as kept, open(storage + "/config.json") as installed:
        assert kept.read() == installed.read() == GOOD
    assert any("kept as the last good configuration" in line for line in lines), lines
    assert "chargeguard.flashfile" not in sys.modules and "chargeguard.config" not in sys.modules
    # The next boot finds the same copy and writes nothing (flash wear).
    again = app_module.build(FakePlatform(storage), log=lines.append)
    assert again.config_good is None


def test_a_valid_config_with_a_warning_is_applied_and_the_warning_is_a_note_said_once():
    import sys

    # max_a above circuit_a: allowed (the guard caps it), warned (configwarn.py).
    storage = storage_with({"config.json": '{"chargers": [{"name": "box", "host": "127.0.0.1", "max_a": 20, "circuit_a": 16}]}'})
    lines = []
    app = app_module.build(FakePlatform(storage), log=lines.append)
    assert app.config_source == "config.json" and app.names == ["box"], app.config_notes
    assert len(app.config_notes) == 1 and app.config_notes[0].startswith("warning: chargers.0.max_a: 20 A is above circuit_a (16 A)")
    said = [line for line in lines if "warning: chargers.0.max_a" in line]
    assert said == ["config: " + app.config_notes[0]], lines
    # Not repeated with the status lines (only a file NOT applied is repeated).
    app.config_notes_every = 1
    status_lines = lambda: len([line for line in lines if not line.startswith("config:")])  # noqa: E731
    before = status_lines()

    async def scenario():
        assert await wait_until(lambda: status_lines() >= before + 2, 3 * app_module.STATUS_LINE_MS + 500), lines

    asyncio.run(run_for(app, 10, scenario))
    assert [line for line in lines if "warning: chargers.0.max_a" in line] == said, lines
    # Boot-only code: unloaded with config.py.
    assert "chargeguard.configwarn" not in sys.modules and "chargeguard.config" not in sys.modules
    # The site state (/api/status device.config_notes) reads the same list.
    from chargeguard.state import SiteState

    assert SiteState(app).config_notes == app.config_notes


def test_a_setting_changed_at_run_time_is_warned_at_the_next_start():
    # site.peak_limit_w set over MQTT or the web (overrides.json, commands.py) is part of what runs.
    storage = storage_with({"config.json": GOOD, "overrides.json": '{"chargers": ["box"], "set": {"site.peak_limit_w": 4140}}'})
    app = app_module.build(FakePlatform(storage), log=lambda line: None)
    assert app.config_notes == [] and app.optimiser is not None, app.config_notes
    storage = storage_with({"config.json": GOOD, "overrides.json": '{"chargers": ["box"], "set": {"site.peak_limit_w": 2500}}'})
    app = app_module.build(FakePlatform(storage), log=lambda line: None)
    assert len(app.config_notes) == 1, app.config_notes
    assert app.config_notes[0].startswith("warning: site.peak_limit_w: 2500 W is below the least chargers.0 charges at"), app.config_notes


def test_the_last_good_file_name_is_the_config_modules():
    from chargeguard import config, flashfile

    # flashfile.keep_last_good writes it (App.keep_last_good loads that module for it).
    assert flashfile._LAST_GOOD == config.BACKUP_FILE and config.CONFIG_FILE == "config.json"


def test_an_invalid_new_config_is_not_applied_and_the_last_good_one_guards():
    storage = storage_with({"config.bak": GOOD, "config.json": NO_BREAKER})
    lines = []
    app = app_module.build(FakePlatform(storage), log=lines.append)
    assert app.names == ["box"] and len(app.drivers) == 1
    assert app.config_source == "config.bak" and app.config_good is None
    notes = app.config_notes
    assert notes[0] == "config.json has 1 refused setting: it was NOT applied", notes
    assert notes[1] == "config.json refused site.breaker_a: must be between 6 and 630 A (is 0)", notes
    assert "last good configuration" in notes[2], notes
    assert ["config: " + note for note in notes] == [line for line in lines if line.startswith("config:")], lines
    assert app.status_line().endswith("| last good config (config.json not applied)"), app.status_line()
    app.decide()
    assert app.commands[0].reason == "failsafe"  # guarded: no reading yet
    assert read_json(storage + "/config.bak")["name"] == "good"


def test_the_console_repeats_why_the_new_config_was_not_applied():
    storage = storage_with({"config.bak": GOOD, "config.json": NO_BREAKER})
    lines = []
    app = app_module.build(FakePlatform(storage), log=lines.append)
    assert app_module.CONFIG_NOTES_EVERY * app_module.STATUS_LINE_MS == 60000  # once a minute on the device
    app.config_notes_every = 1
    boot_lines = len(lines)

    async def scenario():
        repeated = lambda: any("refused site.breaker_a" in line for line in lines[boot_lines:])  # noqa: E731
        assert await wait_until(repeated, 2 * app_module.STATUS_LINE_MS + 500), lines

    asyncio.run(run_for(app, 10, scenario))


def test_with_no_valid_config_nothing_is_commanded_and_the_notes_say_what_to_fix():
    storage = storage_with({"config.json": NO_BREAKER})
    lines = []
    app = app_module.build(FakePlatform(storage), log=lines.append)
    assert app.drivers == [] and app.config_source is None and app.config_good is None
    text = " ".join(app.config_notes)
    assert "site.breaker_a: must be between 6 and 630 A (is 0)" in text and "nothing is commanded" in text, text
    assert "NO VALID CONFIG" in app.status_line()


def test_a_valid_config_that_cannot_start_falls_back_to_the_last_good_one():
    storage = storage_with(
        {"config.bak": GOOD, "config.json": '{"chargers": [{"name": "big", "host": "10.0.0.99", "max_a": 20, "circuit_a": 16}]}'}
    )
    # The drivers are made by startup.py (app.build() loads it, then unloads it).
    from chargeguard import startup

    real = startup.make_charger

    def failing(entry, platform):
        if entry["host"] == "10.0.0.99":
            raise MemoryError("no heap for it")
        return real(entry, platform)

    startup.make_charger = failing
    try:
        lines = []
        app = app_module.build(FakePlatform(storage), log=lines.append)
    finally:
        startup.make_charger = real
    assert app.names == ["box"] and app.config_source == "config.bak" and app.config_good is None
    assert app.config_notes[0].startswith("config.json could not start (MemoryError("), app.config_notes
    assert "NOT applied" in app.config_notes[0] and "last good" in app.config_notes[1], app.config_notes
    # Said on the console at once too: were the last good copy unreadable, it would be the only trace of the cause.
    assert [line for line in lines if line.startswith("config: config.json could not start: MemoryError(")], lines
    # config.json's warning was said when it was tried; the notes keep only what runs (GOOD: none).
    assert [line for line in lines if line.startswith("config: warning: chargers.0.max_a: 20 A")], lines
    assert not [note for note in app.config_notes if note.startswith("warning: ")], app.config_notes


def test_a_reading_allocates_nothing_once_warm():
    # The fast path (meter reading -> decide -> guard tick -> commands) runs
    # for every telegram: on the device it must not feed the heap. Checked on
    # MicroPython, 64- and 32-bit (make test-upy32). With max_import_w 0 the
    # guard allocates on 32-bit (test_guard: known, skipped there).
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    platform = FakePlatform()
    meter = FakeMeter(platform)
    doc = config_doc(2)
    doc["site"]["max_import_w"] = 20000
    app = app_module.App(platform, doc, meter, [FakeCharger(), FakeCharger()], log=lambda line: None)
    app.site_state()  # as an interface would: decisions then update it too
    # The reading is filled once (FakeMeter.push allocates itself); each
    # new telegram only restamps it, as P1Meter updates it in place.
    reading = meter.reading
    reading.phase_count = 3
    for phase in range(3):
        reading.current_ma[phase] = 10000 - 2000 * phase
        reading.power_w[phase] = 2300 - 460 * phase
    for _ in range(30):
        reading.tick_ms = platform.ticks_ms()
        app.on_reading()
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(20):
            reading.tick_ms = platform.ticks_ms()
            app.on_reading()
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before
    # The site state (state.py) was updated by those decisions (a new
    # reading bumps grid_seq when its tick_ms moved: equal ms here).
    assert app.state.grid_seq >= 1 and app.state.have_reading and 0 <= app.state.reading_age_ms < 1000
    assert app.state.chargers[0].offered_ma == app.commands[0].offered_ma


def test_the_meters_error_is_logged_once_per_change():
    charger = FakeCharger()
    app, platform, meter, lines = make_app([charger])

    async def until(condition, ticks=3):
        # The control task looks once a second (CONTROL_TICK_MS): a few ticks at most.
        for _ in range(ticks * 20):
            if condition():
                return
            await asyncio.sleep(0.05)

    async def scenario():
        meter.last_error = "no answer (check address, baud, parity, A/B wiring)"
        await until(lambda: any(line.startswith("meter:") for line in lines))
        # The control task looks again (no reading arrives, so each of its
        # ticks decides): the same error must not be said a second time.
        seen = app.decisions
        await until(lambda: app.decisions >= seen + 2)
        assert app.decisions >= seen + 2
        meter.last_error = None
        await until(lambda: "meter: ok" in lines)

    asyncio.run(run_for(app, 10, scenario))
    said = [line for line in lines if line.startswith("meter:")]
    assert said == ["meter: no answer (check address, baud, parity, A/B wiring)", "meter: ok"], said


def test_a_meter_cadence_close_to_meter_timeout_is_warned_once():
    # A DSMR 4 meter (a telegram every 10 s) with the default meter_timeout_s 10:
    # any late telegram would put the chargers on their failsafe current.
    app, platform, meter, lines = make_app([FakeCharger()])
    meter.on_reading = app.on_reading
    start = platform.ticks_ms()
    for step in range(3):  # a second apart: fine
        meter.reading.tick_ms = start + step * 1000
        app.on_reading()
    assert not any("WARNING: the meter gives a reading every" in line for line in lines)
    for step in range(3):
        meter.reading.tick_ms = start + 2000 + (step + 1) * 10000
        app.on_reading()
    warned = [line for line in lines if "WARNING: the meter gives a reading every" in line]
    assert warned == ["WARNING: the meter gives a reading every 10000 ms, close to guard.meter_timeout_s (10 s): a late"
                      " one puts the chargers on their failsafe current; set meter_timeout_s to at least 20"], lines


# -- a command that meets MemoryError (the real V2C Trydan driver, a fake box on 127.0.0.1)

# What the box answers to /RealTimeData: charging at 16 A, 10 A drawn per phase.
TRYDAN_REALTIME = (
    '{"ChargeState":2,"Paused":0,"Intensity":%d,"ChargePower":6900,"ChargeEnergy":1.5,"SlaveError":0,'
    '"Dynamic":0,"PauseDynamic":0,"MinIntensity":6,"MaxIntensity":32,"IntensityMeasure_L1":10,'
    '"IntensityMeasure_L2":10,"IntensityMeasure_L3":10,"ChargeTime":60,"Locked":0}'
)


class TrydanBox:
    """The box's HTTP side: polls counted, writes recorded as (key=value, polls so far)."""

    def __init__(self):
        self.intensity = 16
        self.reads = 0
        self.writes = []

    def handler(self, method, path, body):
        from httpfake import reply

        if path == "/RealTimeData":
            self.reads += 1
            return [reply(200, TRYDAN_REALTIME % self.intensity)]
        pair = path[len("/write/"):]
        self.writes.append((pair, self.reads))
        if pair.startswith("Intensity="):
            self.intensity = int(pair[len("Intensity="):])
        return [reply(200, b"OK")]


class Starved:
    """Stands for an HttpClient's _exchange: the next `count` requests meet MemoryError (no heap), then real ones."""

    def __init__(self, exchange):
        self.exchange = exchange
        self.count = 0
        self.failed_ms = None  # when the last starved request failed

    async def __call__(self, *args):
        if self.count:
            self.count -= 1
            self.failed_ms = common.ticks_ms()
            raise MemoryError("memory allocation failed")
        return await self.exchange(*args)


def _starved_cut(starved_writes):
    """Cut a charging Trydan while its writes meet MemoryError `starved_writes` times; (box, lines, starved, sent)."""
    from chargeguard.chargers.v2c_trydan import V2CTrydan
    from httpfake import FakeServer

    box = TrydanBox()
    outcome = {}

    async def main():
        server = await FakeServer(box.handler).start()
        driver = V2CTrydan("127.0.0.1", server.port, app_module.CHARGER_TIMEOUT_MS, common.ticks_ms)
        starved = outcome["starved"] = Starved(driver._writer._exchange)
        driver._writer._exchange = starved
        app, platform, meter, lines = make_app([driver])
        outcome["lines"] = lines

        async def scenario():
            meter.push(2, 2, 2)
            # The start: the guard offers the minimum, 6 A (the box had 16).
            assert await wait_until(lambda: box.intensity == 6, 2 * app_module.CONTROL_TICK_MS), box.writes
            # The first poll came at the start; the next one (which also
            # re-sends) is a whole CHARGER_POLL_MS away, so only the tick can
            # send the cut sooner (the write is recorded with the polls so far).
            reads = box.reads
            assert reads == 1
            before = len(box.writes)
            starved.count = starved_writes
            meter.push(40, 2, 2)  # L1 far over its fuse: pause
            # Sent at the next control tick at the latest (its request
            # bounded by the box's timeout), not at the next poll.
            limit = app_module.CONTROL_TICK_MS + app_module.CHARGER_TIMEOUT_MS
            assert await wait_until(lambda: ("Paused=1", reads) in box.writes[before:], limit), (box.writes, lines)
            outcome["sent"] = platform.ticks_diff(platform.ticks_ms(), starved.failed_ms)
            assert starved.count == 0

        try:
            await run_for(app, 10, scenario)
        finally:
            await server.close()

    asyncio.run(main())
    return box, outcome["lines"], outcome["starved"], outcome["sent"]


def test_a_cut_that_meets_memory_error_is_sent_again_at_once_after_a_collection():
    box, lines, starved, sent_ms = _starved_cut(1)
    assert sent_ms < app_module.CONTROL_TICK_MS, sent_ms
    # Said once, and the next line says the box has its command.
    said = [line for line in lines if "MemoryError" in line]
    assert said == ["charger c0: write Paused: MemoryError"], lines
    assert [line for line in lines if line.startswith("charger")][-2:] == [said[0], "charger c0: ok"], lines


def test_a_cut_that_finds_no_heap_twice_goes_out_at_the_next_control_tick():
    box, lines, starved, sent_ms = _starved_cut(2)
    # The resend after the collection failed too: the control tick sent it.
    said = [line for line in lines if "MemoryError" in line]
    assert said == ["charger c0: write Paused: MemoryError"], lines
    assert [line for line in lines if line.startswith("charger")][-2:] == [said[0], "charger c0: ok"], lines
    assert sent_ms <= app_module.CONTROL_TICK_MS + app_module.CHARGER_TIMEOUT_MS, sent_ms


def test_a_task_whose_failure_line_finds_no_heap_is_restarted_all_the_same():
    # Before, the MemoryError of the line ended the supervisor: a charger
    # task that broke on a heap-short moment was never restarted.
    charger = FakeCharger()
    platform = FakePlatform()
    meter = FakeMeter(platform)
    lines = []

    def log(line):
        if line.startswith("task flaky failed"):
            raise MemoryError("memory allocation failed")
        lines.append(line)

    app = app_module.App(platform, config_doc(1), meter, [charger], log=log)
    calls = []
    flaky = _fails_once(calls)

    async def scenario():
        asyncio.create_task(app._supervised("flaky", flaky))
        assert await wait_until(lambda: len(calls) == 2, 10 * app_module.TASK_RESTART_MS), calls

    asyncio.run(run_for(app, 10, scenario))
    assert len(calls) == 2
