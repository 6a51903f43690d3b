"""Statistics: energy today and lifetime (core/energy.py, energylog.py on an App, the Home Assistant sensors; both runtimes)."""

import json
import sys

from test_app_optimiser import UNSET_WALL_S, WALL_S
from test_commands import api_app

from chargeguard import config
from chargeguard import energylog
from chargeguard.core import localtime
from chargeguard.core.energy import (
    GLITCH_SLACK_WH,
    PERSIST_MIN_MS,
    PERSIST_STEP_WH,
    REBOOT_GAP_MS,
    EnergyCounter,
    allowance_wh,
    max_power_w,
    store_due,
)
from chargeguard.core.model import CAR_CHARGING
from chargeguard.net import hass

BOX_W = max_power_w(3, 16000, 230)  # 11 040 W
EUROPE = "CET-1CEST,M3.5.0,M10.5.0/3"


def counting(samples, start_ms=0, step_ms=5000, counter=None):
    """Feed (session_wh or None, charging) samples every step_ms; the counter and the Wh added per sample."""
    counter = counter or EnergyCounter()
    added = []
    now = start_ms
    for session_wh, charging in samples:
        added.append(counter.sample(session_wh, charging, now, BOX_W))
        now += step_ms
    return counter, added


# -- core/energy.py ------------------------------------------------------------


def test_increases_add_and_a_new_session_starts_a_new_baseline():
    counter, added = counting([(500, True), (510, True), (525, True), (525, False), (5, True), (20, True)])
    # The first sample is the baseline (what came before is not known); the drop to 5 is a new session's 5 Wh.
    assert added == [0, 10, 15, 0, 5, 15] and counter.lifetime_wh == 45
    assert counter.reason is None and counter.glitches == 0 and counter.session_wh == 20


def test_a_box_reset_to_zero_loses_nothing_after_it_and_counts_nothing_twice():
    counter, added = counting([(1000, True), (1010, True), (0, True), (10, True), (1010, True)])
    # 1010 after 10 in 5 s is a jump the box cannot make: the old session's figure came back, not counted.
    assert added == [0, 10, 0, 10, 0] and counter.lifetime_wh == 20 and counter.glitches == 1
    assert "from 10 to 1010 Wh in 5 s" in counter.reason
    counter.sample(1020, True, 25000, BOX_W)
    assert counter.lifetime_wh == 30 and counter.reason is None


def test_an_unreachable_box_adds_nothing_and_the_energy_meanwhile_comes_with_the_next_sample():
    counter, added = counting([(100, True), (None, True), (None, True)])
    assert added == [0, 0, 0] and counter.session_wh == 100
    # An hour later the box answers again: 10 kWh more is within an 11 kW box's hour.
    assert counter.sample(10100, True, 3600000, BOX_W) == 10000 and counter.lifetime_wh == 10000


def test_a_glitch_beyond_what_the_charger_can_deliver_is_ignored_with_the_reason():
    counter, added = counting([(100, True), (150, True), (100000, True), (100020, True)])
    assert added == [0, 50, 0, 20] and counter.lifetime_wh == 70 and counter.glitches == 1
    assert counter.reason is None  # the last sample was counted
    counter.sample(5000000, True, 20000, BOX_W)
    assert counter.reason.startswith("session energy went from 100020 to 5000000 Wh in 5 s")
    assert counter.lifetime_wh == 70
    # A drop to a value the box could not have delivered since is a glitch too.
    counter.sample(3000, True, 25000, BOX_W)
    assert counter.lifetime_wh == 70 and counter.glitches == 3


def test_the_allowance_follows_power_and_time_and_stays_a_small_int():
    assert allowance_wh(BOX_W, 0) == GLITCH_SLACK_WH
    assert allowance_wh(BOX_W, 3600000) == BOX_W + BOX_W // 10 + GLITCH_SLACK_WH
    assert allowance_wh(3600, 5000) == 5 + 0 + GLITCH_SLACK_WH
    assert allowance_wh(BOX_W, -5) == GLITCH_SLACK_WH
    # 3 x 80 A at 260 V over the ticks' half range: under 2**30 (a small int on a 32-bit port).
    biggest = allowance_wh(max_power_w(3, 80000, 260), 2**29 - 1)
    assert 9000000 < biggest < 2**30
    # A box that updates its figure once a minute while charging: the allowance grows with the wait.
    counter, added = counting([(0, True)] + [(0, True)] * 11 + [(180, True)])
    assert added[-1] == 180 and counter.glitches == 0


def test_energy_today_needs_the_day_and_resets_at_the_next():
    counter = EnergyCounter()
    counter.sample(0, True, 0, BOX_W)
    counter.sample(100, True, 5000, BOX_W)
    assert counter.today() is None and counter.lifetime_wh == 100 and counter.undated_wh == 100
    counter.new_day(20000, True)  # the count began today: what came before the clock is today's
    assert counter.today_wh == 100 and counter.today() == 0  # published: not stored yet
    counter.stored()
    assert counter.today() == 100 and counter.stored_day == 20000
    counter.sample(150, True, 10000, BOX_W)
    counter.new_day(19999, False)  # the clock stepped back: ignored, today never goes down
    assert counter.today_wh == 150 and counter.day == 20000
    counter.new_day(20001, False)
    assert counter.today_wh == 0 and counter.today() == 0 and counter.lifetime_wh == 150
    counter.sample(200, True, 15000, BOX_W)
    counter.stored()
    assert counter.today() == 50 and counter.stored_lifetime_wh == 200
    # Energy counted before the clock, when the count began on an earlier day, is not today's.
    other = EnergyCounter()
    other.sample(0, True, 0, BOX_W)
    other.sample(40, True, 5000, BOX_W)
    other.new_day(20000, False)
    assert other.today_wh == 0 and other.lifetime_wh == 40


def test_published_lifetime_never_decreases_across_a_simulated_reboot():
    counter, _ = counting([(0, True), (80, True), (160, True)])
    counter.new_day(20000, True)
    counter.stored()
    published = [counter.stored_lifetime_wh]
    record = (counter.stored_lifetime_wh, counter.stored_today_wh, counter.stored_day, counter.stored_session_wh)
    counter.sample(240, True, 15000, BOX_W)  # counted, not stored: the power fails now
    assert counter.lifetime_wh == 240 and counter.stored_lifetime_wh == 160
    after = EnergyCounter()
    after.restore(record[0], record[1], record[2], record[3], 500000)
    published.append(after.stored_lifetime_wh)
    # The session went on: counted from the stored baseline, so the 80 Wh of before the cut come back.
    assert after.sample(300, True, 520000, BOX_W) == 140 and after.lifetime_wh == 300
    after.new_day(20000, True)
    after.stored()
    published.append(after.stored_lifetime_wh)
    assert after.today() == 300
    # The box restarted too: its new session counts, nothing twice.
    again = EnergyCounter()
    again.restore(300, 300, 20000, 300, 0)
    assert again.sample(20, True, 5000, BOX_W) == 20 and again.lifetime_wh == 320
    again.stored()
    published.append(again.stored_lifetime_wh)
    assert published == sorted(published) and published == [160, 160, 300, 320]
    # The restored baseline is REBOOT_GAP_MS old: more than that at full power is a glitch.
    late = EnergyCounter()
    late.restore(300, 0, 20000, 300, 0)
    assert late.sample(300 + allowance_wh(BOX_W, REBOOT_GAP_MS + 5000) + 1, True, 5000, BOX_W) == 0
    assert late.glitches == 1 and late.lifetime_wh == 300


def test_store_due_bounds_the_writes():
    counters = [EnergyCounter(), EnergyCounter()]
    for counter in counters:
        counter.sample(0, True, 0, BOX_W)
    assert not store_due(counters, PERSIST_MIN_MS)  # nothing to store
    counters[0].sample(60, True, 5000, BOX_W)
    counters[1].sample(39, True, 5000, BOX_W)
    assert not store_due(counters, 10 * PERSIST_MIN_MS)  # 99 Wh: under the step
    counters[1].sample(40, True, 10000, BOX_W)
    assert store_due(counters, PERSIST_MIN_MS) and not store_due(counters, PERSIST_MIN_MS - 1)
    for counter in counters:
        counter.stored()
    counters[0].sample(70, False, 15000, BOX_W)  # the session ended with 10 Wh unstored
    assert counters[0].ended and store_due(counters, PERSIST_MIN_MS) and not store_due(counters, PERSIST_MIN_MS - 1)
    counters[0].stored()
    assert not counters[0].ended and PERSIST_STEP_WH == 100


# -- energylog.py on an App ----------------------------------------------------------


def energy_app(timezone=None, wall_s=WALL_S, chargers=2, storage=None):
    doc = {"site": {"timezone": timezone}} if timezone else None
    app, platform, meter, api, _ = api_app(doc, chargers)
    platform.wall_start = wall_s
    if storage is not None:
        app.storage = storage
    lines = []
    app.log = lines.append
    for index in range(chargers):
        status = app.statuses[index]
        status.reachable = True
        status.car = CAR_CHARGING
    log = energylog.EnergyLog(app, platform.now)
    return app, platform, log, lines


def poll(app, platform, index, session_wh, car=CAR_CHARGING):
    status = app.statuses[index]
    status.session_energy_wh = session_wh
    status.car = car
    status.tick_ms = platform.now


def run(app, platform, log, ms, wh_per_poll=0, step_ms=1000, poll_ms=5000, index=0):
    """Step the log every step_ms for ms; the box polled every poll_ms, its session energy growing."""
    log.step(platform.now)  # a poll made before is seen first
    for elapsed in range(0, ms, step_ms):
        platform.advance(step_ms)
        if elapsed % poll_ms == 0 and app.statuses[index].session_energy_wh is not None:
            poll(app, platform, index, app.statuses[index].session_energy_wh + wh_per_poll)
        log.step(platform.now)


def read_record(app, slot):
    with open(app.storage + "/" + energylog.RECORD_FILES[slot], "rb") as handle:
        lines = handle.read().split(b"\n")
    return json.loads(lines[0])


def test_the_log_counts_polls_stores_in_turn_and_publishes_what_is_stored():
    app, platform, log, lines = energy_app()
    state = app.state
    charger = state.chargers[0]
    assert "energy: no record yet: counting from 0" in lines
    assert "chargeguard.core.tzparse" not in sys.modules  # read the time zone, then unloaded
    assert "chargeguard.energyrecord" not in sys.modules  # read the record, then unloaded
    assert charger.energy_lifetime_wh == 0 and charger.energy_today_wh is None
    seq = state.chargers_seq
    log.step(platform.now)
    assert charger.energy_today_wh == 0 and state.chargers_seq == seq + 1  # the clock is set: today is known
    poll(app, platform, 0, 1000)
    run(app, platform, log, 30000, wh_per_poll=15)  # 90 Wh in 30 s
    assert log.counters[0].lifetime_wh == 90 and charger.energy_lifetime_wh == 0 and log.stores == 0
    run(app, platform, log, 30000, wh_per_poll=15)  # 180 Wh, a minute since the log started: stored
    assert log.stores == 1 and charger.energy_lifetime_wh == 180 and charger.energy_today_wh == 180
    assert "chargeguard.energyrecord" not in sys.modules  # wrote the record, then unloaded
    record = read_record(app, 0)
    assert record["seq"] == 1 and record["chargers"][0] == ["c0", 180, 180, log.counters[0].day, 1180]
    assert record["chargers"][1] == ["c1", 0, 0, log.counters[1].day, None]
    run(app, platform, log, 60000, wh_per_poll=15)
    assert log.stores == 2 and read_record(app, 1)["seq"] == 2 and charger.energy_lifetime_wh == 360
    assert state.chargers[1].energy_lifetime_wh == 0


def test_a_reboot_restores_the_newer_record_and_the_published_lifetime_never_decreases():
    app, platform, log, _ = energy_app()
    poll(app, platform, 0, 0)
    run(app, platform, log, 120000, wh_per_poll=15)
    run(app, platform, log, 20000, wh_per_poll=15)  # 60 Wh more, not stored
    published = app.state.chargers[0].energy_lifetime_wh
    assert published == 360 and log.counters[0].lifetime_wh == 420 and log.stores == 2
    # Reboot: a new App on the same storage; the box's session went on to 450 Wh.
    app2, platform2, log2, lines = energy_app(storage=app.storage)
    charger = app2.state.chargers[0]
    assert charger.energy_lifetime_wh == published and not [line for line in lines if "no record" in line]
    poll(app2, platform2, 0, 450)
    log2.step(platform2.now)
    assert log2.counters[0].lifetime_wh == 450 and charger.energy_lifetime_wh == 360
    assert log2.slot == 0 and log2.seq == 2  # the next store replaces the older record


def test_a_damaged_record_falls_back_to_the_other_copy():
    app, platform, log, _ = energy_app()
    poll(app, platform, 0, 0)
    run(app, platform, log, 120000, wh_per_poll=15)
    assert log.stores == 2
    newer = app.storage + "/" + energylog.RECORD_FILES[1]
    with open(newer, "rb") as handle:
        data = bytearray(handle.read())
    data[data.find(b"360")] = ord("9")  # a flipped digit: still JSON, but the checksum fails
    with open(newer, "wb") as handle:
        handle.write(data)
    app2, _, log2, lines = energy_app(storage=app.storage)
    assert "energy: energy.b.json fails its checksum (damaged); using the other copy" in lines
    assert app2.state.chargers[0].energy_lifetime_wh == 180 and log2.slot == 1 and log2.seq == 1
    assert app2.state.errors == []


def test_no_valid_record_says_so_loudly_and_counts_from_zero():
    app, _, _, _ = energy_app()
    storage = app.storage
    for name, data in ((energylog.RECORD_FILES[0], b"{not json\n1\n"), (energylog.RECORD_FILES[1], b"")):
        with open(storage + "/" + name, "wb") as handle:
            handle.write(data)
    app2, _, log2, lines = energy_app(storage=storage)
    message = [line for line in lines if "no valid record" in line]
    assert message and "lifetime energy counts again from 0" in message[0], lines
    assert "energy.a.json fails its checksum" in message[0] and "energy.b.json is not a record" in message[0]
    assert app2.state.errors == message and app2.state.chargers[0].energy_lifetime_wh == 0
    # Records with the wrong fields are refused too.
    line = json.dumps({"seq": 1, "chargers": [["c0", -5, 0, None, None]]}).encode()
    import binascii

    with open(storage + "/" + energylog.RECORD_FILES[0], "wb") as handle:
        handle.write(line + ("\n%d\n" % (binascii.crc32(line) & 0xFFFFFFFF)).encode())
    _, _, _, lines = energy_app(storage=storage)
    assert [line for line in lines if "energy.a.json does not have the record's fields" in line], lines


def test_a_store_that_fails_is_logged_once_and_tried_again():
    app, platform, log, lines = energy_app()
    log.storage = app.storage + "/no-such-directory"
    poll(app, platform, 0, 0)
    run(app, platform, log, 180000, wh_per_poll=15)
    failures = [line for line in lines if line.startswith("energy: could not store")]
    assert len(failures) == 1 and log.stores == 0 and app.state.chargers[0].energy_lifetime_wh == 0
    log.storage = app.storage
    run(app, platform, log, 60000, wh_per_poll=15)
    assert log.stores == 1 and app.state.chargers[0].energy_lifetime_wh == log.counters[0].lifetime_wh == 720


def test_energy_today_resets_at_local_midnight_on_a_dst_day():
    # 28 March 2026 23:59:00 CET = 22:59:00 UTC; 29 March is the 23-hour day.
    wall = localtime.days(2026, 3, 28) * 86400 + 22 * 3600 + 59 * 60
    app, platform, log, _ = energy_app(EUROPE, wall_s=wall)
    charger = app.state.chargers[0]
    assert app.timezone == EUROPE
    poll(app, platform, 0, 0)
    run(app, platform, log, 59000, wh_per_poll=20)
    assert log.counters[0].day == localtime.days(2026, 3, 28)
    run(app, platform, log, 2000, wh_per_poll=20)  # midnight passed: the 29th
    assert log.counters[0].day == localtime.days(2026, 3, 29) and charger.energy_today_wh == 0
    yesterday = log.counters[0].lifetime_wh
    run(app, platform, log, 60000, wh_per_poll=20)
    assert log.stores >= 1 and charger.energy_today_wh == log.counters[0].lifetime_wh - yesterday > 0
    # The 29th has 23 hours: the next day begins at 22:00 UTC (00:00 CEST on the 30th).
    start = platform.now
    end_of_day_ms = (localtime.days(2026, 3, 29) * 86400 + 22 * 3600 - wall) * 1000 + 1000
    platform.advance(end_of_day_ms - (start - 1000) - 2000)
    log.step(platform.now)
    assert log.counters[0].day == localtime.days(2026, 3, 29)
    platform.advance(2000)
    log.step(platform.now)
    assert log.counters[0].day == localtime.days(2026, 3, 30) and charger.energy_today_wh == 0


def test_without_a_wall_clock_today_is_unknown_and_the_lifetime_counts():
    app, platform, log, _ = energy_app(EUROPE, wall_s=UNSET_WALL_S)
    charger = app.state.chargers[0]
    poll(app, platform, 0, 0)
    run(app, platform, log, 120000, wh_per_poll=15)
    assert charger.energy_today_wh is None and charger.energy_lifetime_wh == 360
    # NTP sets the clock (read within WALL_READ_MS): 29 November 22:02 CET, two minutes after the log started.
    platform.wall_start = WALL_S - 120
    run(app, platform, log, energylog.WALL_READ_MS, wh_per_poll=15)
    assert log.counters[0].clock and log.counters[0].today_wh == log.counters[0].lifetime_wh  # all of it today
    assert charger.energy_today_wh == charger.energy_lifetime_wh > 360


def test_energy_counted_a_day_before_the_clock_was_set_is_not_todays():
    app, platform, log, _ = energy_app(EUROPE, wall_s=UNSET_WALL_S)
    poll(app, platform, 0, 0)
    run(app, platform, log, 60000, wh_per_poll=15)
    platform.advance(86400000)  # a day without a clock, the box not read
    log.step(platform.now)
    assert log._old and log.counters[0].lifetime_wh == 180
    platform.wall_start = WALL_S - 86460
    run(app, platform, log, energylog.WALL_READ_MS, wh_per_poll=15)
    counter = log.counters[0]
    # Seen at the next read of the wall clock; nothing counted before it is today's.
    assert counter.clock and counter.lifetime_wh == 360 and counter.today_wh == 0
    run(app, platform, log, 60000, wh_per_poll=15)
    assert counter.lifetime_wh == 540 and counter.today_wh == 180


def test_a_glitch_is_logged_with_the_charger_name():
    app, platform, log, lines = energy_app()
    poll(app, platform, 1, 100)
    log.step(platform.now)
    platform.advance(5000)
    poll(app, platform, 1, 90000)
    log.step(platform.now)
    assert [line for line in lines if line.startswith("energy: charger c1: session energy went from 100 to 90000")]
    assert log.counters[1].lifetime_wh == 0


def test_a_step_allocates_nothing_between_wall_clock_reads():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    app, platform, log, _ = energy_app(EUROPE)
    poll(app, platform, 0, 0)
    run(app, platform, log, 5000, wh_per_poll=10)
    status = app.statuses[0]
    gc.collect()
    before = gc.mem_alloc()
    steps = 0
    while steps < 30:  # polls, counting, publishing; no store, no wall read
        platform.advance(1000)
        if steps % 5 == 0:
            status.session_energy_wh += 10
            status.tick_ms = platform.now
        log.step(platform.now)
        steps += 1
    after = gc.mem_alloc()
    assert after - before == 0, after - before
    assert log.counters[0].lifetime_wh == 70


def test_the_app_starts_the_energy_task_with_the_site_state():
    import asyncio

    from test_app import FakePlatform, config_doc, FakeCharger, FakeMeter
    import support

    from chargeguard import app as app_module

    class WallPlatform(FakePlatform):
        def wall_time(self):
            return WALL_S

    platform = WallPlatform(support.make_tmpdir("energy-app"))
    driver = FakeCharger()
    driver.status.session_energy_wh = 0
    app = app_module.App(platform, config_doc(1), FakeMeter(platform), [driver], log=lambda line: None)
    app.storage = platform.storage
    app.site_state()

    async def main():
        runner = asyncio.create_task(app.run())
        for _ in range(100):
            await asyncio.sleep(0.02)
            if app.energy is not None and app.state.chargers[0].energy_today_wh is not None:
                break
        app.stop()
        runner.cancel()
        try:
            await runner  # its finally cancels the tasks it started
        except asyncio.CancelledError:
            pass
        for _ in range(3):
            await asyncio.sleep(0)  # those tasks end: nothing of this App is left in the loop

    asyncio.run(main())
    assert app.energy is not None and app.state.chargers[0].energy_today_wh == 0
    assert app.state.chargers[0].energy_lifetime_wh == 0


# -- configuration ------------------------------------------------------------------


def test_site_timezone_is_checked_with_a_clear_error():
    doc, errors = config.check({"chargers": []})
    assert not errors and doc["site"]["timezone"] == "UTC0"
    doc, errors = config.check({"site": {"timezone": EUROPE}, "chargers": []})
    assert not errors and doc["site"]["timezone"] == EUROPE
    _, errors = config.check({"site": {"timezone": "Europe/Brussels"}, "chargers": []})
    errors = dict(errors)
    message = errors["site.timezone"]
    assert message.startswith('must be a POSIX TZ rule like "CET-1CEST,M3.5.0,M10.5.0/3" or "UTC0"'), message
    assert "Europe/Brussels" in message
    _, errors = config.check({"site": {"timezone": "CET-1CEST"}, "chargers": []})
    errors = dict(errors)
    assert "start and end rules" in errors["site.timezone"]
    _, errors = config.check({"site": {"timezone": 1}, "chargers": []})
    errors = dict(errors)
    assert errors["site.timezone"].startswith("must be text")
    _, errors = config.check({"site": {"timezone": "X" * 65}, "chargers": []})
    errors = dict(errors)
    assert errors["site.timezone"] == "must be 1 to 64 characters long (is 65)"


# -- Home Assistant ----------------------------------------------------------------


def test_home_assistant_gets_energy_today_and_lifetime_in_kwh():
    from test_hass import FakeLink, CFG, configs, last, settle

    app, platform, log, _ = energy_app()
    link = FakeLink()
    bridge = hass.Hass(link, app.state, app.api, CFG, platform, log=lambda line: None, storage=None)
    bridge.attach()
    bridge.announce()
    settle(bridge, link, platform)
    found = configs(link)
    for obj, name in (("energy_today", "Energy today"), ("lifetime_energy", "Lifetime energy")):
        payload, retain = found["homeassistant/sensor/chargeguard_c0/%s/config" % obj]
        doc = json.loads(payload)
        assert retain and doc["name"] == name and doc["device_class"] == "energy"
        assert doc["state_class"] == "total_increasing" and doc["unit_of_measurement"] == "kWh"
        assert doc["value_template"] == "{{ value_json.%s }}" % obj
    state = last(link, "chargeguard/charger/c0/state")
    assert state["energy_today"] is None and state["lifetime_energy"] == 0  # no step yet: the day is not known
    poll(app, platform, 0, 0)
    run(app, platform, log, 60000, wh_per_poll=15)
    link.sent = []
    platform.advance(hass.MIN_INTERVAL_MS)
    bridge.step(platform.now)
    link.drain()
    state = last(link, "chargeguard/charger/c0/state")
    assert state["lifetime_energy"] == 0.18 and state["energy_today"] == 0.18
    raw = [entry[1] for entry in link.sent if entry[0] == "chargeguard/charger/c0/state"][-1]
    assert b'"lifetime_energy":0.180' in raw

