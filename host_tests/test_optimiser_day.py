"""A solar day in closed loop: optimiser every 5 s, guard on every meter reading, a car that lags.

Not the benchmark (issue 7 item 6): a crude house that checks the pieces work
together as the product rules say, on both runtimes.
"""

from chargeguard.core.guard import Guard
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, ChargerCommand, ChargerStatus, GridReading
from chargeguard.core.optimiser import Optimiser
from chargeguard.core.optsettings import OptimiserSettings
from chargeguard.core.settings import ChargerSettings, SiteSettings

STEP_S = 2  # meter cadence
CONTROL_S = 6  # optimiser interval (a multiple of STEP_S)
CAR_LAG_S = 4  # the car follows a new offer after this long


def pv_w(second, peak_w, day_s, cloud_every_s, cloud_s):
    """A bell made of two straight ramps (integers only), with clouds that cut it to 30 %."""
    half = day_s // 2
    rising = second if second < half else day_s - second
    power = peak_w * rising // half if rising > 0 else 0
    if cloud_every_s and second % cloud_every_s < cloud_s:
        power = power * 3 // 10
    return power


def run_day(cloud_every_s=600, cloud_s=60, day_s=6 * 3600, peak_w=9000):
    site = SiteSettings()
    site.breaker_ma = 25000
    site.margin_ma = 1000
    charger = ChargerSettings()
    charger.mode = "solar"
    opt = OptimiserSettings()  # the defaults: ECO on 4000 / -500 W, 60 s start, 180 s sustain
    optimiser = Optimiser(opt, site, [charger])
    guard = Guard(site, [charger])
    status = ChargerStatus()
    status.reachable = True
    status.car = CAR_CONNECTED
    statuses = [status]
    reading = GridReading()
    reading.phase_count = 3
    targets = [0]
    commands = [ChargerCommand()]
    house_w = 450
    offers = [0] * (CAR_LAG_S // STEP_S + 1)  # what the car was offered over the lag
    car_ma = 0
    stats = {"starts": 0, "ev_wh2": 0, "import_wh2": 0, "pv_to_ev_wh2": 0, "overload_ms": 0}
    now = 0
    for second in range(0, day_s, STEP_S):
        now += STEP_S * 1000
        car_w = car_ma * 3 * 230 // 1000
        net_w = house_w + car_w - pv_w(second, peak_w, day_s, cloud_every_s, cloud_s)
        per_phase_w = net_w // 3
        for phase in range(3):
            reading.power_w[phase] = per_phase_w
            reading.current_ma[phase] = per_phase_w * 1000 // 230
        reading.import_w = net_w if net_w > 0 else 0
        reading.export_w = -net_w if net_w < 0 else 0
        reading.tick_ms = now
        status.power_w = car_w
        status.car = CAR_CHARGING if car_ma else CAR_CONNECTED
        status.tick_ms = now
        if second % CONTROL_S == 0:
            optimiser.tick(reading, statuses, None, now, targets)
        guard.tick(reading, statuses, targets, now, commands)
        offers.pop(0)
        offers.append(commands[0].offered_ma)
        if offers[0] and not car_ma:
            stats["starts"] += 1
        car_ma = offers[0]
        # Energy in units of W x STEP_S, summed; compared as ratios only.
        stats["ev_wh2"] += car_w
        if car_w:
            imported = net_w if net_w > 0 else 0
            stats["import_wh2"] += imported
            stats["pv_to_ev_wh2"] += car_w - imported
        if abs(reading.current_ma[0]) > site.breaker_ma:
            stats["overload_ms"] += STEP_S * 1000
    return stats


def test_a_sunny_day_starts_once_and_charges_on_sunshine():
    stats = run_day(cloud_every_s=0)
    assert stats["starts"] == 1, stats
    assert stats["ev_wh2"] > 0
    # Grid import while charging stays under 2 % of what the car took.
    assert stats["import_wh2"] * 50 < stats["ev_wh2"], stats
    assert stats["overload_ms"] == 0


def test_clouds_shorter_than_the_sustain_do_not_stop_the_car():
    stats = run_day(cloud_every_s=600, cloud_s=60)
    assert stats["starts"] == 1, stats
    # Each cloud costs a minute at the minimum current on the grid: bounded, not zero.
    assert stats["import_wh2"] * 10 < stats["ev_wh2"], stats


def test_a_long_overcast_spell_stops_the_car_and_the_sun_restarts_it():
    # Five minutes of cloud every 20 min at 30 %: longer than the 180 s sustain.
    # The sun reaches the 4000 W start threshold through about half of the
    # 6 h day, nine spells: at most one restart after each, plus the first
    # start (no flapping inside a spell).
    stats = run_day(cloud_every_s=1200, cloud_s=300)
    assert 2 <= stats["starts"] <= 10, stats


def test_capacity_tariff_day_keeps_every_quarter_under_the_limit_with_the_guard():
    """A fast 1-phase car under a 4000 W peak limit; the house is heavy in the first 5 min of each quarter."""
    site = SiteSettings()
    site.breaker_ma = 40000
    site.margin_ma = 0
    charger = ChargerSettings()
    charger.mode = "fast"
    charger.phases = 1
    charger.phase_map = (0,)
    opt = OptimiserSettings()
    opt.peak_limit_w = 4000
    optimiser = Optimiser(opt, site, [charger])
    guard = Guard(site, [charger])
    status = ChargerStatus()
    status.reachable = True
    status.car = CAR_CONNECTED
    reading = GridReading()
    reading.phase_count = 3
    targets = [0]
    commands = [ChargerCommand()]
    offers = [0] * (CAR_LAG_S // STEP_S + 1)
    car_ma = 0
    quarter0 = 900 * 938889
    sums = {}
    car_ws = 0
    now = 0
    for second in range(0, 4 * 3600, STEP_S):
        now += STEP_S * 1000
        in_quarter = second % 900
        house_w = 3300 if in_quarter < 300 else 600
        car_w = car_ma * 230 // 1000
        net_w = house_w + car_w
        reading.power_w[0] = house_w // 3 + car_w
        reading.power_w[1] = reading.power_w[2] = house_w // 3
        for phase in range(3):
            reading.current_ma[phase] = reading.power_w[phase] * 1000 // 230
        reading.import_w = net_w
        reading.export_w = 0
        reading.tick_ms = now
        status.power_w = car_w
        status.car = CAR_CHARGING if car_ma else CAR_CONNECTED
        status.tick_ms = now
        if second % CONTROL_S == 0:
            guard.import_cap_w = optimiser.tick(reading, [status], quarter0 + second, now, targets)
        guard.tick(reading, [status], targets, now, commands)
        offers.pop(0)
        offers.append(commands[0].offered_ma)
        car_ma = offers[0]
        quarter = second - in_quarter
        sums[quarter] = sums.get(quarter, 0) + net_w * STEP_S
        car_ws += car_w * STEP_S
    worst_w = max(sums.values()) // 900
    assert worst_w <= 4000, worst_w
    # What the limit leaves the car per quarter: 4000 x 900 - 3300 x 300 - 600 x 600 W s.
    room_ws = (4000 * 900 - 3300 * 300 - 600 * 600) * 16
    assert car_ws * 10 > room_ws * 8, (car_ws, room_ws)
