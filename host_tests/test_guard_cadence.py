"""The guard on a meter with two cadences (GridReading.phase_tick_ms): total power fast, per-phase values slow.

A Norwegian/Swedish HAN meter sends its total power every 2.5 s and the
per-phase currents every 10 s; an MQTT-fed meter has them on topics of their
own. The guard must use the fresh total at once, never take old per-phase
values as new, and never come out lighter than the per-phase values alone.
"""

from chargeguard.core.guard import Guard
from chargeguard.core.model import CAR_CHARGING, ChargerCommand, ChargerStatus, GridReading
from chargeguard.core.modes import fill_targets

from test_guard import make_charger, make_site

VOLTAGE_V = 230


class CadenceRig:
    """A site whose meter sends the total every `total_ms` and the phases every `phase_ms`.

    Cars draw what they were offered `lag_ms` after the offer (a crude car);
    the house load per phase is set by the test. Ticks of 500 ms, as the
    app's decide() runs on every reading and every second.
    """

    def __init__(self, site, chargers, total_ms=2500, phase_ms=10000, lag_ms=0):
        self.site = site
        self.chargers = chargers
        self.guard = Guard(site, chargers)
        self.reading = GridReading()
        self.statuses = [ChargerStatus() for _ in chargers]
        for status in self.statuses:
            status.reachable = True
            status.car = CAR_CHARGING
        self.targets = [0] * len(chargers)
        self.commands = [ChargerCommand() for _ in chargers]
        self.now = 0
        self.house_ma = [0, 0, 0]
        self.total_ms = total_ms
        self.phase_ms = phase_ms
        self.lag_ms = lag_ms
        self.offers = [(0, [0] * len(chargers))]  # (tick, offers) history
        self.phases_stopped = False
        self.next_total = 0
        self.next_phase = 0
        self.sent = False

    def draw(self, index):
        offers = self.offers[0][1]
        for tick, values in self.offers:
            if tick <= self.now - self.lag_ms:
                offers = values
        return offers[index]

    def phase_ma(self, phase):
        """The true current on a site phase now."""
        total = self.house_ma[phase]
        for index in range(len(self.chargers)):
            charger = self.chargers[index]
            for line in range(charger.phases):
                if charger.phase_map[line] == phase:
                    total += self.draw(index)
        return total

    def net_w(self):
        return sum(self.phase_ma(phase) * VOLTAGE_V // 1000 for phase in range(3))

    def step(self, ms=500):
        """Advance `ms`, send what the meter sends then, run the guard; returns the offers."""
        self.now += ms
        reading = self.reading
        if self.now >= self.next_phase and not self.phases_stopped:
            # The slow list: per-phase currents, and the total measured with them.
            self.next_phase += self.phase_ms
            reading.phase_count = 3
            for phase in range(3):
                reading.current_ma[phase] = self.phase_ma(phase)
                reading.power_w[phase] = self.phase_ma(phase) * VOLTAGE_V // 1000
            reading.phase_tick_ms = self.now
            reading.phase_net_w = self.net_w()
        if self.now >= self.next_total:
            self.next_total += self.total_ms
            net = self.net_w()
            reading.import_w = max(net, 0)
            reading.export_w = max(-net, 0)
            reading.tick_ms = self.now
        fill_targets(self.chargers, self.targets)
        self.guard.tick(reading, self.statuses, self.targets, self.now, self.commands)
        offers = [command.offered_ma for command in self.commands]
        if offers != self.offers[-1][1]:
            self.offers.append((self.now, offers))
        return offers

    def run(self, ms):
        end = self.now + ms
        while self.now < end:
            self.step()


def test_a_load_switched_on_between_phase_lists_is_cut_at_the_next_total():
    rig = CadenceRig(make_site(breaker_a=25), [make_charger(max_a=16)])
    rig.house_ma = [5000, 5000, 5000]
    rig.run(120000)
    assert rig.commands[0].offered_ma == 16000
    # Just after a per-phase list: a 9 A kettle on L1 (5 + 9 + 16 = 30 A > 25 A).
    while rig.now % 10000 != 500:
        rig.step()
    rig.house_ma = [14000, 5000, 5000]
    switched = rig.now
    while rig.commands[0].offered_ma > 11000:
        rig.step()
        assert rig.now - switched <= 2500, "not cut at the next total"
    assert rig.commands[0].reason == "breaker"
    # With the car following, L1 stays within the breaker from then on.
    for _ in range(60):
        rig.step()
        assert rig.phase_ma(0) <= 25000


def test_a_load_switched_on_after_a_list_taken_mid_raise_is_cut_at_the_next_total():
    # Per-phase values measured while a raise was still on its way to the
    # car (it drew 9 A of the 16 A offered) leave the car's draw then
    # unknown between the two. A kettle switched on after them must still be
    # cut at the next total: the high view once counted that unknown twice
    # (per phase with the car at 16 A, in the total with it at 9 A) and
    # waited for the next per-phase list (up to 10 s on a HAN meter).
    site = make_site(breaker_a=25, ramp_step_ma=16000, ramp_interval_ms=1000)
    rig = CadenceRig(site, [make_charger(max_a=16)], total_ms=500, phase_ms=2000, lag_ms=3000)
    rig.house_ma = [16000, 2000, 2000]
    rig.run(60000)
    assert rig.commands[0].offered_ma == 9000
    while rig.now % 2000:
        rig.step()
    rig.house_ma = [2000, 2000, 2000]
    while rig.commands[0].offered_ma != 16000:
        rig.step()
    raised = rig.now
    rig.step()
    while rig.now % 2000:
        rig.step()  # the next per-phase list: the car still at 9 A
    assert rig.draw(0) == 9000 and rig.now - raised < site.ev_response_ms
    rig.house_ma = [15000, 2000, 2000]  # 13 A more on L1: 15 + 16 > 25
    # While the car is still on its way to 16 A (15 + 9 fits) the total's
    # rise may be the car's own: no cut yet. The first total that shows L1
    # over the breaker (more rise than the car can add) must cut.
    while True:
        rig.step()
        assert rig.now - raised <= rig.lag_ms + rig.total_ms
        if rig.phase_ma(0) > 25000:
            break
        assert rig.commands[0].offered_ma == 16000
    assert rig.commands[0].offered_ma <= 10000, "not cut at the total that shows the overload"
    assert rig.commands[0].offered_ma >= 6000  # lowered, not paused
    cut = rig.now
    for _ in range(20):
        rig.step()
        assert rig.phase_ma(0) <= 25000 or rig.now - cut <= rig.lag_ms


def test_without_the_total_the_same_kettle_waits_for_the_phase_list():
    # The control: the same site with a one-cadence meter every 10 s is cut
    # only at the next per-phase list (the total is what made it fast).
    rig = CadenceRig(make_site(breaker_a=25), [make_charger(max_a=16)], total_ms=10000)
    rig.house_ma = [5000, 5000, 5000]
    rig.run(120000)
    while rig.now % 10000 != 500:
        rig.step()
    rig.house_ma = [14000, 5000, 5000]
    rig.run(5000)
    assert rig.commands[0].offered_ma == 16000


def test_a_load_switched_off_is_not_given_out_before_the_phase_list_shows_it():
    # The total dropping says nothing about which phase is free: no raise on it.
    rig = CadenceRig(make_site(breaker_a=25), [make_charger(max_a=16)])
    rig.house_ma = [14000, 5000, 5000]
    rig.run(120000)
    assert rig.commands[0].offered_ma == 11000
    while rig.now % 10000 != 500:
        rig.step()
    rig.house_ma = [5000, 5000, 5000]
    for _ in range(18):  # 9 s: the next per-phase list is not there yet
        rig.step()
        assert rig.commands[0].offered_ma == 11000


def test_old_per_phase_values_are_never_taken_as_new():
    site = make_site(breaker_a=25)
    rig = CadenceRig(site, [make_charger(max_a=16)])
    rig.house_ma = [2000, 2000, 2000]
    rig.run(120000)
    assert rig.commands[0].offered_ma == 16000
    rig.phases_stopped = True  # the slow list stops; the totals go on
    last_phase = rig.reading.phase_tick_ms
    while rig.now + 500 - last_phase <= site.meter_timeout_ms:
        rig.step()
        assert rig.guard.per_phase
    rig.step()
    # Past meter_timeout the per-phase values are not used: the total alone,
    # as a totals-only meter (all 6 A of house load may sit on one phase).
    assert not rig.guard.per_phase
    assert not rig.guard.failsafe
    rig.run(2000)
    assert rig.commands[0].offered_ma == 16000
    assert rig.guard.headroom_ma[0] == 25000 - 6000
    # The totals stop as well: the failsafe, after meter_timeout.
    rig.total_ms = 1 << 30
    rig.run(site.meter_timeout_ms + 3000)
    assert rig.guard.failsafe
    assert rig.commands[0].reason == "failsafe"


def test_a_car_following_a_raise_is_not_taken_for_house_load():
    # Ramping on a two-cadence meter: the car's own rise in the total must not
    # read as house load (that would cut it back: a limit cycle).
    rig = CadenceRig(make_site(breaker_a=25), [make_charger(max_a=16)], lag_ms=3000)
    rig.house_ma = [8000, 8000, 8000]
    rig.run(180000)
    assert rig.commands[0].offered_ma == 16000
    offers = [values[0] for _, values in rig.offers]
    for previous, current in zip(offers, offers[1:]):
        assert current >= previous, offers  # it only went up


def test_a_car_slow_to_follow_a_cut_is_not_cut_again_by_the_total():
    rig = CadenceRig(make_site(breaker_a=25), [make_charger(max_a=16)], lag_ms=4000)
    rig.house_ma = [5000, 5000, 5000]
    rig.run(120000)
    assert rig.commands[0].offered_ma == 16000
    while rig.now % 10000 != 500:
        rig.step()
    rig.house_ma = [12000, 5000, 5000]  # 7 A more on L1: cut to 13 A, once
    rig.run(20000)
    cuts = [values[0] for tick, values in rig.offers if tick > rig.now - 20000]
    assert cuts and cuts[0] == 13000, cuts
    assert min(cuts) == 13000, cuts


def _lcg(seed):
    while True:
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        yield seed


def test_never_lighter_than_the_per_phase_values_alone():
    # Any total, any charger state: the headroom of a two-cadence reading is
    # at most that of its per-phase values read alone at their own age.
    numbers = _lcg(11)
    for case in range(300):
        site = make_site(breaker_a=25 + next(numbers) % 40, balanced_load=next(numbers) % 4 == 0)
        chargers = [make_charger(max_a=32), make_charger("b", priority=2, phases=1, phase_map=(next(numbers) % 3,))]
        phase_age = next(numbers) % 9000
        readings = []
        guards = []
        for split in (True, False):
            guard = Guard(site, chargers)
            reading = GridReading()
            reading.phase_count = 3
            for phase in range(3):
                reading.current_ma[phase] = next(numbers) % 40000
            now = 100000
            guards.append(guard)
            readings.append(reading)
        for phase in range(3):
            readings[1].current_ma[phase] = readings[0].current_ma[phase]
        phase_net = sum(readings[0].current_ma) * VOLTAGE_V // 1000 - next(numbers) % 3000
        net = phase_net + next(numbers) % 12000 - 6000
        readings[0].import_w = max(net, 0)
        readings[0].export_w = max(-net, 0)
        readings[0].tick_ms = now - next(numbers) % 2500
        readings[0].phase_tick_ms = now - phase_age
        readings[0].phase_net_w = phase_net
        readings[1].tick_ms = now - phase_age  # the per-phase values alone, at their age
        offers = (next(numbers) % 27000, next(numbers) % 27000)
        changed = (now - next(numbers) % 12000, now - next(numbers) % 12000)
        statuses = [ChargerStatus(), ChargerStatus()]
        for status in statuses:
            status.reachable = True
            status.car = CAR_CHARGING
        for guard in guards:
            for index in range(2):
                state = guard.states[index]
                state.prev_ma = offers[index] // 2
                state.offered_ma = offers[index]
                state.raised = bool(index)
                state.changed_ms = changed[index]
                state.changed_once = True
        commands = [ChargerCommand(), ChargerCommand()]
        for index in range(2):
            guards[index].tick(readings[index], statuses, [32000, 32000], now, commands)
        for phase in range(3):
            for view in ("headroom_ma", "shed_headroom_ma", "cut_headroom_ma"):
                split_room = getattr(guards[0], view)[phase]
                alone_room = getattr(guards[1], view)[phase]
                assert split_room <= alone_room, (case, view, phase, split_room, alone_room)


def test_a_one_cadence_reading_is_unchanged_by_the_phase_stamp_fields():
    # P1, Modbus, HTTP leave phase_tick_ms None: the guard reads them as before.
    reading = GridReading()
    assert reading.phase_tick_ms is None and reading.phase_net_w is None
    reading.phase_tick_ms = 5
    reading.phase_net_w = 100
    copy = GridReading()
    copy.copy_from(reading)
    assert (copy.phase_tick_ms, copy.phase_net_w) == (5, 100)
    reading.reset()
    assert reading.phase_tick_ms is None and reading.phase_net_w is None


def test_two_cadence_tick_allocates_nothing_once_warm():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    rig = CadenceRig(make_site(breaker_a=25, max_import_w=15000), [make_charger(max_a=16), make_charger("b", priority=2)])
    rig.house_ma = [3000, 4000, 5000]
    rig.run(30000)
    rig.reading.tick_ms = rig.now
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(20):
            rig.guard.tick(rig.reading, rig.statuses, rig.targets, rig.now, rig.commands)
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before


def test_a_starting_car_is_not_taken_for_house_load_on_every_phase():
    # A car started just before a per-phase list still draws 0 then; as it
    # picks up its 6 A the total rises: that is the car, not 18 A of house.
    for total_ms, phase_ms in ((500, 1000), (2500, 10000)):
        rig = CadenceRig(make_site(breaker_a=25, margin_a=1), [make_charger(max_a=16)], total_ms, phase_ms, 2000)
        rig.house_ma = [8000, 8000, 8000]
        rig.run(90000)
        offers = [values[0] for _, values in rig.offers]
        assert offers[1] == 6000 and 0 not in offers[1:], (total_ms, offers)
        assert rig.commands[0].offered_ma == 16000
