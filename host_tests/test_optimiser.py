from chargeguard.core.guard import Guard
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, ChargerCommand, ChargerStatus, GridReading
from chargeguard.core.optimiser import (
    REASON_FAST,
    REASON_NO_CAR,
    REASON_OFF,
    REASON_PRIORITY,
    REASON_SEQUENTIAL,
    Optimiser,
    shown_reason,
)
from chargeguard.core.optsettings import (
    DIST_PRIORITY,
    DIST_SEQUENTIAL_OPTIMIZED,
    DIST_SEQUENTIAL_STRICT,
    DIST_SHARED,
    OptimiserSettings,
)
from chargeguard.core.settings import SCHEME_HOUSE, ChargerSettings, SiteSettings
from chargeguard.core.solar import (
    REASON_BELOW,
    REASON_ECO,
    REASON_SOLAR,
    REASON_SOLAR_WAIT,
    REASON_START_DELAY,
    REASON_STOP_DELAY,
)


def make_opt(**changes):
    opt = OptimiserSettings()
    opt.start_delay_ms = 30000
    opt.stop_delay_ms = 60000
    opt.min_on_ms = 0
    opt.min_off_ms = 0
    for key in changes:
        setattr(opt, key, changes[key])
    return opt


def make_charger(name="c", mode="solar", phases=3, min_a=6, max_a=16, priority=1):
    charger = ChargerSettings()
    charger.name = name
    charger.mode = mode
    charger.phases = phases
    charger.phase_map = (0, 1, 2)[:phases]
    charger.min_ma = min_a * 1000
    charger.max_ma = max_a * 1000
    charger.circuit_ma = 32000
    charger.manual_ma = 8000
    charger.priority = priority
    return charger


class House:
    """A house with PV and cars that draw what they are offered at once (up to car_max_ma)."""

    def __init__(self, chargers, opt=None, scheme=None):
        self.site = SiteSettings()
        if scheme is not None:
            self.site.scheme = scheme
        self.chargers = chargers
        self.opt = opt or make_opt()
        self.optimiser = Optimiser(self.opt, self.site, chargers)
        self.statuses = [ChargerStatus() for _ in chargers]
        for status in self.statuses:
            status.reachable = True
            status.car = CAR_CONNECTED
        self.targets = [0] * len(chargers)
        self.offered = [0] * len(chargers)
        self.car_max_ma = [32000] * len(chargers)
        self.reading = GridReading()
        self.pv_w = 0
        self.house_w = 300
        self.now = 1000
        self.wall = None
        self.envelope = None
        self.reading_every = 1  # ticks between meter readings (2 = a 10 s DSMR 4 meter at 5 s ticks)
        self.ticks = 0

    def draw_w(self, index):
        status = self.statuses[index]
        if status.car == CAR_NONE:
            return 0
        current = min(self.offered[index], self.car_max_ma[index])
        return current * self.chargers[index].phases * self.site.voltage_v // 1000

    def net_w(self):
        """Grid import (W) given the cars' draw now."""
        total = self.house_w - self.pv_w
        for index in range(len(self.chargers)):
            total += self.draw_w(index)
        return total

    def tick(self, step_ms=5000):
        self.now += step_ms
        for index, status in enumerate(self.statuses):
            draw = self.draw_w(index)
            status.power_w = draw
            if status.car != CAR_NONE:
                status.car = CAR_CHARGING if draw else CAR_CONNECTED
        net = self.net_w()
        if self.site.scheme == SCHEME_HOUSE:
            net = self.house_w - self.pv_w
        self.ticks += 1
        if self.ticks % self.reading_every == 0:
            self.reading.import_w = net if net > 0 else 0
            self.reading.export_w = -net if net < 0 else 0
            self.reading.tick_ms = self.now
        self.optimiser.tick(self.reading, self.statuses, self.wall, self.now, self.targets, self.envelope)
        for index in range(len(self.chargers)):
            self.offered[index] = self.targets[index]
        return self.targets

    def run(self, seconds, step_ms=5000):
        for _ in range(seconds * 1000 // step_ms):
            self.tick(step_ms)
        return self.targets

    def reasons(self):
        return list(self.optimiser.reasons)


def test_one_charger_sees_the_grid_export_and_follows_the_sun():
    house = House([make_charger()])
    house.pv_w = 300 + 3999  # export 3999 W: below the 4000 W upper threshold
    house.run(300)
    assert house.targets == [0] and house.reasons() == [REASON_SOLAR_WAIT]
    assert house.optimiser.export_w == 3999 and house.optimiser.surplus_w == 3999
    house.pv_w += 1
    house.tick()
    assert house.reasons() == [REASON_START_DELAY]
    house.run(30)
    assert house.targets == [6000] and house.reasons() == [REASON_SOLAR]
    assert house.optimiser.regulators[0].export_w == house.optimiser.export_w
    house.pv_w = 300 + 9000
    house.tick()
    assert house.targets == [13000]  # 9000 // 690
    # A cloud: import beyond the lower threshold for the sustain, then a pause.
    house.pv_w = 300 + 3000
    house.tick()
    assert house.targets == [6000] and house.reasons() == [REASON_STOP_DELAY]
    house.run(60)
    assert house.targets == [0] and house.reasons() == [REASON_BELOW]
    assert house.optimiser.upper_w == 4000 and house.optimiser.lower_w == -500 and house.optimiser.net_target_w == 0


def test_a_slow_meter_does_not_make_the_current_overshoot():
    # DSMR 4: a reading every 10 s, the optimiser every 5 s, the charger's
    # own power measurement fresh every tick. A surplus computed from an old
    # export and a new draw would count the last step twice.
    for every in (1, 2, 3):
        house = House([make_charger()])
        house.reading_every = every
        house.pv_w = 300 + 4140
        house.run(60)
        assert house.targets == [6000]
        history = []
        house.pv_w = 300 + 9 * 690 + 100  # room for 9 A
        for _ in range(40):
            history.append(house.tick()[0])
        assert max(history) == 9000, (every, history)
        assert history[-1] == 9000
        # Never down again: no step was taken on a reading that did not show the last one.
        for previous, current in zip(history, history[1:]):
            assert current >= previous, (every, history)


def test_priority_gives_the_minimums_first_then_the_first_the_rest():
    chargers = [make_charger("a", priority=1), make_charger("b", priority=2)]
    house = House(chargers, make_opt(distribution=DIST_PRIORITY))
    house.pv_w = 300 + 12000
    house.run(120)
    # 12000 W: 6 A (4140 W) for b, the rest (7860 W -> 11 A) for a.
    assert house.targets == [11000, 6000], house.targets
    assert house.net_w() <= 0


def test_shared_splits_the_surplus_equally():
    chargers = [make_charger("a", priority=1), make_charger("b", priority=2)]
    house = House(chargers, make_opt(distribution=DIST_SHARED))
    house.pv_w = 300 + 12500
    house.run(120)
    assert house.targets == [9000, 9000], house.targets


def test_sequential_strict_lets_the_second_wait_until_the_first_is_full():
    chargers = [make_charger("a", priority=1), make_charger("b", priority=2)]
    house = House(chargers, make_opt(distribution=DIST_SEQUENTIAL_STRICT))
    house.pv_w = 300 + 12000  # enough for a at 16 A (11040 W) but not for b's minimum as well
    house.run(120)
    assert house.targets == [16000, 0]
    assert house.reasons()[1] == REASON_SEQUENTIAL
    # a's car limits itself to 10 A: b still waits, strictly one at a time until a is full.
    house.car_max_ma[0] = 10000
    house.run(120)
    assert house.targets[1] == 0 and house.reasons()[1] == REASON_SEQUENTIAL
    # a's car is full (draws nothing, still plugged): b takes over after its start delay.
    house.car_max_ma[0] = 0
    house.run(45)
    assert house.targets[1] == 16000, (house.targets, house.reasons())
    # a unplugs: b takes over after its start delay.
    house.car_max_ma[0] = 32000
    house = House(chargers, make_opt(distribution=DIST_SEQUENTIAL_STRICT))
    house.pv_w = 300 + 12000
    house.run(120)
    house.statuses[0].car = CAR_NONE
    house.tick()
    assert house.reasons()[0] == REASON_NO_CAR
    assert house.reasons()[1] == REASON_START_DELAY
    house.run(30)
    assert house.targets == [0, 16000]


def test_a_car_that_limits_itself_leaves_the_rest_to_the_next():
    chargers = [make_charger("a", priority=1), make_charger("b", priority=2)]
    for distribution in (DIST_PRIORITY, DIST_SEQUENTIAL_OPTIMIZED):
        house = House(chargers, make_opt(distribution=distribution))
        house.pv_w = 300 + 12000
        house.car_max_ma[0] = 10000  # a's car takes 10 A whatever it is offered
        house.run(300)
        # a keeps an ampere above what it takes; b uses the rest (4410 W -> 6 A).
        assert house.targets[1] == 6000, (distribution, house.targets, house.reasons())
        assert house.targets[0] >= 10000
        assert house.net_w() <= 500, (distribution, house.net_w())
    # Shared: equal split; a's 10 A limit does not bind at 8 A each.
    house = House(chargers, make_opt(distribution=DIST_SHARED))
    house.pv_w = 300 + 12000
    house.car_max_ma[0] = 10000
    house.run(300)
    assert house.targets == [8000, 8000], house.targets


def test_sequential_optimized_gives_the_second_what_the_first_cannot_use():
    chargers = [make_charger("a", priority=1, max_a=10), make_charger("b", priority=2)]
    house = House(chargers, make_opt(distribution=DIST_SEQUENTIAL_OPTIMIZED))
    house.pv_w = 300 + 6900 + 4140  # a at its 10 A max, 6 A left for b
    house.run(200)
    assert house.targets == [10000, 6000], house.targets
    house.pv_w = 300 + 6900 + 2000  # not enough for b's minimum any more
    house.run(200)
    assert house.targets == [10000, 0]
    assert house.reasons()[1] in (REASON_BELOW, REASON_SEQUENTIAL)


def test_two_cars_on_a_rising_and_setting_sun_start_once_each():
    for distribution in (DIST_SHARED, DIST_PRIORITY, DIST_SEQUENTIAL_OPTIMIZED, DIST_SEQUENTIAL_STRICT):
        house = House([make_charger("a"), make_charger("b", priority=2)], make_opt(distribution=distribution))
        starts = [0, 0]
        previous = [0, 0]
        worst_import_w = 0
        for step in range(720):  # an hour: PV up to 18 kW and down again
            house.pv_w = 300 + 50 * (step if step < 360 else 720 - step)
            targets = house.tick()
            for index in range(2):
                if targets[index] and not previous[index]:
                    starts[index] += 1
                previous[index] = targets[index]
            worst_import_w = max(worst_import_w, house.net_w())
        assert starts == [1, 1], (distribution, starts)
        # Import only as the single-charger rules allow: the lower threshold
        # (500 W) plus what the sun loses during the 60 s sustain at sunset
        # (10 W/s here), never a car taking power another still draws.
        assert worst_import_w <= 500 + 600, (distribution, worst_import_w)


def test_a_waiting_car_does_not_cut_a_running_one_before_it_can_start():
    chargers = [make_charger("a", priority=1), make_charger("b", priority=2)]
    house = House(chargers, make_opt(distribution=DIST_PRIORITY, start_delay_ms=60000))
    house.statuses[1].car = CAR_NONE
    house.pv_w = 300 + 12000
    house.run(120)
    assert house.targets == [16000, 0]
    house.statuses[1].car = CAR_CONNECTED  # b plugs in: its start delay runs
    house.tick()
    assert house.reasons()[1] == REASON_START_DELAY
    house.run(50)
    assert house.targets == [16000, 0]  # a keeps the sun meanwhile
    house.run(15)
    assert house.targets == [11000, 6000]


def test_eco_is_served_before_solar_whatever_the_priority():
    chargers = [make_charger("solar", priority=1), make_charger("eco", mode="eco", priority=2)]
    house = House(chargers, make_opt(distribution=DIST_PRIORITY))
    house.pv_w = 300 + 5000
    house.run(120)
    # The eco car takes the surplus first (7 A); the solar one waits for more.
    assert house.targets == [0, 7000]
    assert house.reasons() == [REASON_SOLAR_WAIT, REASON_SOLAR]
    # Enough for the solar car's minimum on top of the eco minimum: priority
    # gives minimums first, so it may start and the eco car drops to 6 A.
    house.pv_w = 300 + 4140 + 4140
    house.run(120)
    assert house.targets == [6000, 6000], house.targets
    house.pv_w = 0
    house.run(120)
    assert house.targets == [0, 6000] and house.reasons()[1] == REASON_ECO


def test_an_eco_minimum_is_set_aside_before_anyone_else_shares():
    chargers = [make_charger("eco", mode="eco", priority=1), make_charger("solar", phases=1, priority=2)]
    for distribution in (DIST_PRIORITY, DIST_SHARED, DIST_SEQUENTIAL_OPTIMIZED, DIST_SEQUENTIAL_STRICT):
        # A 1-phase car's minimum is 1380 W; its upper threshold just below it.
        house = House(chargers, make_opt(distribution=distribution, eco_on_upper_w=1300, eco_on_lower_w=-300))
        house.pv_w = 300 + 4100  # less than the eco car's 4140 W minimum
        house.run(300)
        assert house.targets == [6000, 0], (distribution, house.targets)
        house.pv_w = 300 + 4140 + 1500  # the eco minimum covered, 1500 W more
        house.run(300)
        if distribution == DIST_SEQUENTIAL_STRICT:
            # strictly one at a time: the 1-phase car waits until the eco car is full
            assert house.targets == [8000, 0], (distribution, house.targets)
            assert house.reasons()[1] == REASON_SEQUENTIAL
        elif distribution == DIST_SHARED or distribution == DIST_PRIORITY:
            # minimums first: the solar car's 6 A (1380 W) before the eco car's extra
            assert house.targets == [6000, 6000], (distribution, house.targets)
        else:
            # one at a time: the eco car (more urgent) takes the 1500 W, the other waits
            assert house.targets == [8000, 0], (distribution, house.targets)
            assert house.reasons()[1] == REASON_SEQUENTIAL


def test_fast_and_manual_and_off():
    chargers = [
        make_charger("f", mode="fast"),
        make_charger("m", mode="manual", priority=2),
        make_charger("o", mode="off", priority=3),
    ]
    house = House(chargers)
    house.tick()
    assert house.targets == [16000, 8000, 0]
    assert house.reasons()[0] == REASON_FAST and house.reasons()[2] == REASON_OFF
    chargers[0].enabled = False
    house.tick()
    assert house.targets[0] == 0 and house.reasons()[0] == REASON_OFF


def test_fast_chargers_share_the_guard_envelope_by_the_distribution_mode():
    chargers = [make_charger("a", mode="fast"), make_charger("b", mode="fast", priority=2)]
    expected = (
        (DIST_SHARED, [10000, 10000]),
        (DIST_PRIORITY, [14000, 6000]),
        (DIST_SEQUENTIAL_OPTIMIZED, [16000, 0]),
        (DIST_SEQUENTIAL_STRICT, [16000, 0]),
    )
    for mode, targets in expected:
        house = House(chargers, make_opt(distribution=mode))
        house.envelope = [20000, 24000, 22000]  # the narrowest phase counts
        house.tick()
        assert house.targets == targets, (mode, house.targets)
    assert house.reasons()[1] == REASON_SEQUENTIAL
    # Strict: the first car is full; it keeps its minimum offered, the second takes over.
    house = House(chargers, make_opt(distribution=DIST_SEQUENTIAL_STRICT))
    house.envelope = [20000, 20000, 20000]
    house.run(30)
    assert house.targets == [16000, 0]
    house.car_max_ma[0] = 0
    house.run(30)
    assert house.targets == [6000, 16000], house.targets
    house.car_max_ma[0] = 32000  # it wants current again: back to the front
    house.run(30)
    assert house.targets == [16000, 0], house.targets
    # Priority: no minimum left for the second.
    house = House(chargers, make_opt(distribution=DIST_PRIORITY))
    house.envelope = [10000, 10000, 10000]
    house.tick()
    assert house.targets == [10000, 0] and house.reasons()[1] == REASON_PRIORITY
    house = House(chargers, make_opt(distribution=DIST_SEQUENTIAL_STRICT))
    house.envelope = [20000, 24000, 22000]
    house.tick()
    # The first unplugs: the second takes over (the guard keeps the empty
    # one at its standby minimum, as in fast mode today).
    house.statuses[0].car = CAR_NONE
    house.tick()
    assert house.targets[1] == 16000


def test_mode_change_starts_the_regulation_afresh():
    charger = make_charger()
    house = House([charger], make_opt(stop_delay_ms=0, min_off_ms=600000))
    house.pv_w = 300 + 6000
    house.run(60)
    house.pv_w = 0
    house.tick()
    assert house.targets == [0]
    charger.mode = "eco"
    house.tick()
    assert house.targets == [6000]
    charger.mode = "solar"
    house.pv_w = 300 + 6000
    house.tick()  # the car still draws its eco current this tick: 1860 W export
    assert house.reasons() == [REASON_SOLAR_WAIT]
    house.run(35)
    assert house.targets == [8000]  # no min_off owed from the earlier session


def test_house_scheme_counts_the_chargers_on_top_of_the_meter():
    house = House([make_charger()], scheme=SCHEME_HOUSE)
    house.pv_w = 300 + 9000
    house.run(60)
    assert house.targets == [13000]
    assert house.optimiser.export_w == 9000 - 13 * 690


def test_no_reading_is_treated_as_missing_data_and_pauses_after_the_sustain():
    house = House([make_charger()])
    house.pv_w = 300 + 6000
    house.run(60)
    assert house.targets == [8000]
    house.now += 5000
    house.optimiser.tick(None, house.statuses, None, house.now, house.targets)
    # Nothing known: the current is held, and EVCM's no-data sustain runs.
    assert house.targets == [8000] and house.reasons() == [REASON_STOP_DELAY]
    assert house.optimiser.export_w is None and house.optimiser.surplus_w is None
    # A reading older than the meter timeout counts as none, as in the guard.
    stale = House([make_charger()])
    stale.pv_w = 300 + 6000
    stale.run(60)
    stale.now += 11000
    stale.optimiser.tick(stale.reading, stale.statuses, None, stale.now, stale.targets)
    assert stale.optimiser.export_w is None and stale.reasons() == [REASON_STOP_DELAY]
    for _ in range(12):
        house.now += 5000
        house.optimiser.tick(None, house.statuses, None, house.now, house.targets)
    assert house.targets == [0]


def test_capacity_cap_is_handed_over_for_the_guard():
    house = House([make_charger(mode="fast")], make_opt(peak_limit_w=2500))
    house.wall = 900 * 938889 + 450
    house.reading.avg_demand_w = 4000
    house.tick()
    assert house.optimiser.import_cap_w == 1000
    assert house.optimiser.capacity.quarter_avg_w == 4000


def test_the_guard_fits_the_optimiser_targets_inside_the_breaker():
    site = SiteSettings()
    site.breaker_ma = 25000
    site.margin_ma = 0
    chargers = [make_charger("a", mode="fast"), make_charger("b", priority=2)]
    optimiser = Optimiser(make_opt(), site, chargers)
    guard = Guard(site, chargers)
    statuses = [ChargerStatus(), ChargerStatus()]
    for status in statuses:
        status.reachable = True
        status.car = CAR_CONNECTED
    reading = GridReading()
    reading.phase_count = 3
    reading.current_ma = [12000, 12000, 12000]
    reading.import_w = 8280
    reading.export_w = 0
    targets = [0, 0]
    commands = [ChargerCommand(), ChargerCommand()]
    now = 10000
    for _ in range(12):
        now += 5000
        reading.tick_ms = now
        # The house takes 12 A a phase; car a draws what it was offered.
        for phase in range(3):
            reading.current_ma[phase] = 12000 + commands[0].offered_ma
        reading.import_w = (36000 + 3 * commands[0].offered_ma) * 230 // 1000
        optimiser.tick(reading, statuses, None, now, targets)
        guard.tick(reading, statuses, targets, now, commands)
    # fast asks 16 A; 25 - 12 = 13 A is what the breaker leaves: the guard decides.
    assert targets == [16000, 0]
    assert commands[0].offered_ma == 13000 and commands[0].reason == "breaker"
    assert commands[1].offered_ma == 0 and optimiser.reasons[1] == REASON_SOLAR_WAIT
    # One reason per charger: the guard's limit, else the optimiser's why.
    assert shown_reason(optimiser.reasons[0], commands[0].reason) == "breaker"
    assert shown_reason(optimiser.reasons[1], commands[1].reason) == REASON_SOLAR_WAIT
    assert shown_reason("solar", "ok") == "solar" and shown_reason("solar", "capacity") == "capacity"


def test_tick_allocates_nothing_once_warm():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    chargers = [
        make_charger("a", priority=1),
        make_charger("b", mode="eco", priority=2, phases=1),
        make_charger("c", mode="excess", priority=3),
        make_charger("d", mode="fast", priority=4),
    ]
    house = House(chargers, make_opt(distribution=DIST_SEQUENTIAL_STRICT, peak_limit_w=5000))
    house.wall = 900 * 938889
    house.envelope = [20000, 20000, 20000]
    house.pv_w = 15000
    house.run(120)
    distributions = (DIST_SHARED, DIST_PRIORITY, DIST_SEQUENTIAL_OPTIMIZED, DIST_SEQUENTIAL_STRICT)
    pvs = (0, 6000, 20000)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for distribution in distributions:
            house.opt.distribution = distribution
            for pv in pvs:
                house.pv_w = pv
                for _ in range(10):
                    house.now += 5000
                    house.wall += 5
                    optimiser = house.optimiser
                    optimiser.tick(house.reading, house.statuses, house.wall, house.now, house.targets, house.envelope)
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before
