"""The optimiser wired into App.decide(): surplus modes, capacity tariff, status line (both runtimes).

decide() is called directly on a clock the test moves, so timers are checked
to the millisecond without waiting for them.
"""

import gc
import sys

from test_app import FakeCharger, FakeMeter

from chargeguard import app as app_module
from chargeguard.core.capacity import RAISE_BAND_W
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED
from chargeguard.platform import common

# 2026-11-29 21:00:00 UTC: a quarter-hour boundary.
WALL_S = 1795986000
# A freshly started ESP32 RTC: 2000-01-01 00:00:10 UTC.
UNSET_WALL_S = 946684810


class ClockPlatform:
    """ticks and wall time that move only when the test says so."""

    def __init__(self, wall_s=WALL_S):
        self.now = 1000
        self.wall_start = wall_s
        self.wall_reads = 0
        self.ticks_diff = common.ticks_diff
        self.sleep_ms = common.sleep_ms

    def ticks_ms(self):
        return self.now

    def wall_time(self):
        # Worked out when asked: a Unix time is a long int on a 32-bit port.
        self.wall_reads += 1
        return self.wall_start + (self.now - 1000) // 1000

    def network_up(self):
        return True

    def advance(self, ms):
        self.now += ms


def make_app(doc_changes, chargers=1, wall_s=WALL_S):
    from chargeguard import config

    doc = {
        "guard": {"min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1, "ev_response_s": 1},
        "chargers": [{"name": "c%d" % index, "host": "127.0.0.1"} for index in range(chargers)],
    }
    for key in doc_changes:
        if key == "chargers":
            for index in range(chargers):
                doc["chargers"][index].update(doc_changes["chargers"][index])
        else:
            doc[key] = doc_changes[key]
    doc, errors = config.check(doc)
    assert not errors, errors
    platform = ClockPlatform(wall_s)
    meter = FakeMeter(platform)
    drivers = [FakeCharger() for _ in range(chargers)]
    for driver in drivers:
        driver.status.car = CAR_CONNECTED
    lines = []
    app = app_module.App(platform, doc, meter, drivers, log=lines.append)
    return app, platform, meter, drivers


def push_w(app, meter, platform, net_w, car_w):
    """One fresh reading: `net_w` at the grid (import positive, spread over 3 phases), the car drawing `car_w`."""
    status = app.statuses[0]
    status.power_w = car_w
    status.car = CAR_CHARGING if car_w else CAR_CONNECTED
    status.tick_ms = platform.now
    reading = meter.reading
    reading.reset()
    reading.phase_count = 3
    for phase in range(3):
        reading.power_w[phase] = net_w // 3
    reading.power_w[0] = net_w - 2 * (net_w // 3)  # the phases add up to net_w exactly
    for phase in range(3):
        reading.current_ma[phase] = reading.power_w[phase] * 1000 // 230
    reading.tick_ms = platform.now
    meter.on_reading = None
    app.on_reading()


def test_a_plain_configuration_loads_no_optimiser():
    app, platform, meter, drivers = make_app({})
    assert app.optimiser is None
    assert app.guard.import_cap_w is None
    push_w(app, meter, platform, 1000, 0)
    assert app.reasons[0] == app.commands[0].reason
    for changes in ({"site": {"distribution": "shared"}}, {"site": {"peak_limit_w": 4000}},
                    {"site": {"mode": "eco"}}, {"chargers": [{"mode": "excess"}]}):
        assert make_app(changes)[0].optimiser is not None, changes
    # A surplus mode on a disabled charger needs nothing.
    assert make_app({"chargers": [{"mode": "solar", "enabled": False}]})[0].optimiser is None


def test_a_solar_car_starts_after_the_start_delay_and_pauses_after_the_sustain():
    solar = {"start_delay_s": 20, "stop_delay_s": 30, "min_on_s": 0, "min_off_s": 0}
    app, platform, meter, drivers = make_app({"site": {"mode": "solar"}, "solar": solar})
    assert app.chargers[0].mode == "solar"  # the charger follows site.mode
    push_w(app, meter, platform, -3999, 0)  # one watt under the upper threshold
    assert (app.commands[0].offered_ma, app.reasons[0]) == (0, "solar_wait")
    push_w(app, meter, platform, -4000, 0)
    started_ms = platform.now
    assert (app.commands[0].offered_ma, app.reasons[0]) == (0, "solar_start_delay")
    while app.commands[0].offered_ma == 0:
        assert platform.ticks_diff(platform.now, started_ms) < 20000, "no start at the end of the start delay"
        platform.advance(1000)
        push_w(app, meter, platform, -4000, 0)
    assert platform.ticks_diff(platform.now, started_ms) == 20000
    assert app.commands[0].offered_ma >= 6000
    assert app.optimiser.surplus_w == 4000
    line = app.status_line()
    assert "surplus 4000 W" in line and "c0" in line, line
    # Running at 6 A (4140 W): the sun goes, import beyond the lower threshold.
    car_w = app.commands[0].offered_ma * 3 * 230 // 1000
    platform.advance(1000)
    push_w(app, meter, platform, 501, car_w)
    below_ms = platform.now
    assert app.reasons[0] == "solar_stop_delay"
    while app.commands[0].offered_ma:
        assert platform.ticks_diff(platform.now, below_ms) < 30000, "still charging at the end of the sustain"
        platform.advance(1000)
        push_w(app, meter, platform, 501, car_w)
    assert platform.ticks_diff(platform.now, below_ms) == 30000
    assert app.reasons[0] == "below_threshold"


def test_capacity_tariff_before_the_clock_is_set_caps_at_the_limit():
    app, platform, meter, drivers = make_app({"site": {"peak_limit_w": 4000}}, wall_s=UNSET_WALL_S)
    push_w(app, meter, platform, 1000, 0)
    assert app.guard.import_cap_w == 4000
    assert app.optimiser.capacity.source == "no_clock"
    assert "peak 4000 W (no clock)" in app.status_line()
    assert "surplus" not in app.status_line()  # no charger runs on surplus


def test_capacity_tariff_hands_the_guard_the_rest_of_the_quarter():
    app, platform, meter, drivers = make_app({"site": {"peak_limit_w": 4000}}, wall_s=WALL_S + 450)
    push_w(app, meter, platform, 3000, 0)  # started mid-quarter: its first half counts as spent at the limit
    for _ in range(10):
        platform.advance(1000)
        push_w(app, meter, platform, 3000, 0)
    capacity = app.optimiser.capacity
    assert capacity.source == "integrated"
    assert capacity.elapsed_s == 460
    assert capacity.used_ws == 4000 * 450 + 3000 * 10
    # The rest of the quarter's budget over its rest, raised only by the band
    # (core/capacity.py: RAISE_BAND_W) above what the guard already has.
    rate_w = (4000 * 900 - capacity.used_ws) // 440
    assert app.guard.import_cap_w == capacity.allowed_w
    assert rate_w - RAISE_BAND_W < app.guard.import_cap_w <= rate_w
    line = app.status_line()
    expected = "quarter %d/4000 W left %d Wh" % (capacity.quarter_avg_w, capacity.remaining_ws // 3600)
    assert expected in line, line
    # The wall clock is read once a minute, counted on with ticks in between.
    assert platform.wall_reads == 1
    for _ in range(60):
        platform.advance(1000)
        push_w(app, meter, platform, 3000, 0)
    assert platform.wall_reads == 2
    assert capacity.elapsed_s == 520
    # About 1000 W left under the cap: a 6 A minimum (4140 W) does not fit, and the reason says so.
    assert (app.commands[0].offered_ma, app.reasons[0]) == (0, "capacity"), app.reasons[0]


def test_decide_with_the_optimiser_allocates_nothing():
    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    changes = {"site": {"mode": "solar", "distribution": "shared", "peak_limit_w": 5000},
               "chargers": [{"mode": "solar"}, {"mode": "fast"}]}
    app, platform, meter, drivers = make_app(changes, chargers=2)
    for _ in range(30):
        platform.advance(1000)
        push_w(app, meter, platform, -6000, 0)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(20):
            platform.advance(1000)
            app.decide()
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before
    assert "chargeguard.core.optimiser" in sys.modules
