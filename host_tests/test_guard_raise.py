"""A raise the car has not taken yet, when a house load comes: taken back before the car takes it.

tools/sim/load_step.py measured L1 at 25.5 A for 6 s on a 25 A breaker: the
guard raised the car 6 -> 8 A, the oven came (+9.5 A on L1) before the car
followed, and the raise stood (counted at its new current the car still
fitted the high view); the car took it and L1 went over until the next
reading, the command and the car's response. The guard now takes such a
raise back at once when, with the car at the least it may draw and at its
new offer, a phase would be above the breaker itself; within the margin the
raise stands (the margin is the hysteresis), and the import limits never
take a raise back (they are averages, not a breaker).
"""

from test_guard import Rig, _changes, make_charger, make_site
from test_guard_cadence import CadenceRig

from chargeguard.core.model import CAR_CHARGING

BREAKER_MA = 25000
CAR_RESPONSE_MS = 5000  # IEC 61851's 5 s


def _drawn(changes, index, now, lag_ms):
    """What car `index` draws at `now`: changes is [(tick, offers)], oldest first.

    A car follows the limit it sees (IEC 61851: the pilot's duty cycle) `lag_ms`
    after it changed, from what it drew then; a limit changed again before
    the car followed replaces the pending one (a raise taken back in time is
    never drawn), as the simulator's boxes do (tools/sim/trydan_emulator.py).
    """
    drawn_from = target = 0
    switch = 0
    for tick, offers in changes:
        if tick > now:
            break
        drawn_from = target if tick >= switch else drawn_from
        target = offers[index]
        switch = tick + lag_ms
    return target if now >= switch else drawn_from


class PwmRig(Rig):
    """test_guard's Rig with cars that follow the limit they see `response_ms` later (see _drawn)."""

    def __init__(self, site, chargers, metered=False):
        Rig.__init__(self, site, chargers, metered)
        self.changes = [(0, [0] * len(chargers))]
        self.response_ms = CAR_RESPONSE_MS

    def draw(self, index):
        if self.statuses[index].car != CAR_CHARGING:
            return 0
        return min(_drawn(self.changes, index, self.now, self.response_ms), self.car_max_ma[index])

    def tick(self, advance_ms=1000, reading=True):
        result = Rig.tick(self, advance_ms, reading)
        offers = [command.offered_ma for command in self.commands]
        if offers != self.changes[-1][1]:
            self.changes.append((self.now, offers))
        return result


class PwmCadenceRig(CadenceRig):
    """test_guard_cadence's CadenceRig with the same cars."""

    def draw(self, index):
        return _drawn(self.offers, index, self.now, self.lag_ms)


def _site(**changes):
    # The site of `make sim`: 25 A, 1 A margin, ramp 2 A per 5 s, ev_response 5 s.
    return make_site(breaker_a=25, margin_a=1, **changes)


def _until_raised(rig, to_ma, ticks=60):
    """Tick until the guard raises charger 0 to `to_ma`: the car has not taken it yet (CAR_RESPONSE_MS)."""
    for _ in range(ticks):
        before = rig.offered()
        rig.tick()
        if rig.offered() == to_ma and before < to_ma:
            return before
    raise AssertionError("never raised to %d mA: %r" % (to_ma, rig.changes[-10:]))


def _raised_rig(metered=False, totals_only=False, house=(8, 8, 8), **site):
    rig = PwmRig(_site(**site), [make_charger(max_a=16)], metered=metered)
    rig.totals_only = totals_only
    rig.house(*house)
    assert _until_raised(rig, 8000) == 6000
    return rig


def _highest_after(rig, seconds):
    highest = 0
    for _ in range(seconds):
        rig.tick()
        highest = max(highest, rig.phase_ma(0), rig.phase_ma(1), rig.phase_ma(2))
    return highest


def test_a_load_during_a_raise_not_yet_taken_takes_the_raise_back_at_once():
    for metered in (False, True):
        rig = _raised_rig(metered=metered)
        # The oven, right after the raise: L1 reads 8 + 9.5 + 6 = 23.5 A (the car still at 6 A). Once the
        # car took 8 A it would be 25.5 A: taken back at this reading to what the low view leaves,
        # 24 - 17.5 = 6.5 A. The car never takes the 8 A, and nothing moves after.
        rig.house_ma = [17500, 8000, 8000]
        rig.tick()
        assert (rig.offered(), rig.reason()) == (6500, "breaker"), metered
        assert _highest_after(rig, 30) <= 24000, metered
        assert (rig.offered(), rig.phase_ma(0)) == (6500, 24000), metered


def test_a_raise_taken_back_above_the_old_current_still_counts_the_car_at_it():
    # 8 -> 10 A, then loads on L1 one after another before the car took anything.
    rig = PwmRig(_site(), [make_charger(max_a=16)])
    rig.house(6, 6, 6)
    assert _until_raised(rig, 8000) == 6000
    assert _until_raised(rig, 10000) == 8000
    rig.house_ma = [13500, 6000, 6000]  # L1 13.5 + 8 = 21.5 A now; 23.5 A once the car took 10 A: fits
    rig.tick()
    assert rig.offered() == 10000
    rig.house_ma = [15500, 6000, 6000]  # 2 A more: 25.5 A at 10 A: taken back to 24 - 15.5 = 8.5 A
    rig.tick()
    assert (rig.offered(), rig.reason()) == (8500, "breaker")
    # 8.5 A is itself a raise from the 8 A the car draws: the house is still worked out with the car at
    # 8 A. Counted at 8.5 A, the house would look 0.5 A lighter, and 1.5 A more on L1 would read as
    # 16.5 + 8.5 = 25 A and pass; it is 17 + 8.5 = 25.5 A: back to 24 - 17 = 7 A.
    rig.house_ma = [17000, 6000, 6000]
    rig.tick()
    assert (rig.offered(), rig.reason()) == (7000, "breaker")
    assert _highest_after(rig, 30) <= BREAKER_MA
    assert (rig.offered(), rig.phase_ma(0)) == (7000, 24000)


def test_within_the_margin_a_raise_in_progress_stands_and_nothing_oscillates():
    # The projected L1 with the car at its new 8 A: at the breaker (17 + 8 = 25 A), and within the margin
    # (16.5 + 8 = 24.5 A). The raise stands; once the car took it, the reading shows L1 above the limit
    # and the car is cut once to what fits; then nothing moves.
    for house_ma, settled_ma in ((17000, 7000), (16500, 7500)):
        rig = _raised_rig()
        rig.house_ma = [house_ma, 8000, 8000]
        rig.tick()
        assert rig.offered() == 8000, house_ma
        offers = [rig.offered()]
        highest = 0
        for _ in range(120):
            rig.tick()
            offers.append(rig.offered())
            highest = max(highest, rig.phase_ma(0))
        assert highest <= BREAKER_MA, (house_ma, highest)
        assert offers[-1] == settled_ma, (house_ma, offers)
        assert _changes(offers) == 1, (house_ma, offers)


def test_a_small_load_during_every_raise_gives_no_take_back():
    # Half an ampere more on L1 with each raise, 6 -> 9 A of house: projected within the margin each time,
    # so no raise is taken back before the car took it; the one cut comes once the reading shows the car
    # at its last raise with L1 above the limit (9 + 15.5 A), and L1 never goes above the breaker.
    rig = PwmRig(_site(), [make_charger(max_a=16)])
    rig.house(6, 6, 6)
    house = 6000
    raised_ms = None
    cuts = []
    for _ in range(120):
        before = rig.offered()
        rig.tick()
        if rig.offered() > before:
            raised_ms = rig.now
            if house < 9000:
                house += 500
                rig.house_ma = [house, 6000, 6000]
        elif rig.offered() < before:
            cuts.append((rig.now - raised_ms, before, rig.offered()))
        assert rig.phase_ma(0) <= BREAKER_MA
    assert len(cuts) == 1 and cuts[0][0] >= CAR_RESPONSE_MS, cuts
    assert rig.offered() == 15000 and rig.phase_ma(0) == 24000


def test_the_import_limits_never_take_a_raise_back():
    # 11 kW contracted (or the capacity tariff's 11 kW), 3 A of house a phase: the car is raised 6 -> 8 A;
    # then 6 A more a phase. The import with the car at 8 A would be 9 x 3 x 230 + 5520 = 11730 W: above the
    # limit, but 17 A a phase is far from the breaker. Import limits are averaged (a contract's quarter hour,
    # the capacity tariff's): the raise stands until the reading shows the car took it, then it is cut.
    for contract in (True, False):
        rig = _raised_rig(house=(3, 3, 3), max_import_w=11000 if contract else 0)
        if not contract:
            rig.guard.import_cap_w = 11000
        rig.house(9, 9, 9)
        rig.tick()
        assert rig.offered() == 8000, contract
        offers = [rig.offered()]
        for _ in range(20):
            rig.tick()
            offers.append(rig.offered())
        assert offers[-1] == 6900 and _changes(offers) == 1, (contract, offers)
        assert rig.reason() == ("contract" if contract else "capacity")


def test_a_totals_only_meter_takes_a_raise_back_on_the_worst_case_phase():
    # DSMR 2.2/3.0: only the total. The house load is assumed on every phase at once (all of it): 2 A a
    # phase is 6 A on each; 12 A more on L1 is 18 A on each. 18 + 8 A > 25 A: taken back to 24 - 18 = 6 A.
    rig = _raised_rig(totals_only=True, house=(2, 2, 2))
    rig.house_ma = [14000, 2000, 2000]
    rig.tick()
    assert (rig.offered(), rig.reason()) == (6000, "breaker")
    # 10.5 A more instead: 16.5 + 8 = 24.5 A, within the margin: the raise stands.
    rig = _raised_rig(totals_only=True, house=(2, 2, 2))
    rig.house_ma = [12500, 2000, 2000]
    rig.tick()
    assert rig.offered() == 8000


def test_a_take_back_leaves_room_given_to_a_higher_priority_charger_alone():
    # Priority 1 on L1 at 8 A; priority 2 (one phase, L1) is raised 8 -> 10 A, then 3.5 A more of house on
    # L1: 7.5 + 8 + 10 = 25.5 A once the second took its raise. The second's raise is taken back to what
    # the first leaves (24 - 7.5 - 8 = 8.5 A); the first keeps its 8 A.
    first = make_charger("first", phases=1, phase_map=(0,), priority=1, max_a=8)
    second = make_charger("second", phases=1, phase_map=(0,), priority=2, max_a=16)
    rig = PwmRig(_site(), [first, second])
    rig.house(4, 4, 4)
    for _ in range(60):
        before = rig.offered(1)
        rig.tick()
        if (before, rig.offered(1)) == (8000, 10000):
            break
    assert (rig.offered(0), rig.offered(1)) == (8000, 10000)
    rig.house_ma = [7500, 4000, 4000]
    rig.tick()
    assert (rig.offered(0), rig.offered(1), rig.reason(1)) == (8000, 8500, "breaker")
    assert _highest_after(rig, 30) <= 24000
    assert (rig.offered(0), rig.offered(1), rig.phase_ma(0)) == (8000, 8500, 24000)


def test_a_two_cadence_meter_takes_a_raise_back_at_the_next_total():
    # A HAN meter: the total every 2.5 s, the phases every 10 s. The oven comes between two phase lists,
    # right after a raise: the next total shows it (on every phase, the total cannot say which), and the
    # raise is taken back there, before the car (5 s) takes it.
    rig = PwmCadenceRig(_site(), [make_charger(max_a=16)], lag_ms=CAR_RESPONSE_MS)
    rig.house_ma = [8000, 8000, 8000]
    raised = None
    for _ in range(400):
        before = rig.commands[0].offered_ma
        rig.step()
        if before == 6000 and rig.commands[0].offered_ma == 8000:
            raised = rig.now
            break
    assert raised is not None
    rig.house_ma = [17500, 8000, 8000]
    while rig.commands[0].offered_ma == 8000:
        rig.step()
        assert rig.now - raised < 5000, "not taken back before the car took the raise"
    assert rig.commands[0].offered_ma < 8000 and rig.commands[0].reason == "breaker"
    for _ in range(60):
        rig.step()
        assert rig.phase_ma(0) <= BREAKER_MA


def test_a_fast_car_near_the_limit_settles():
    # A car that follows in 0.5-2 s, faster than ev_response (5 s), on a box that does not report its
    # current: the next reading shows the car at a raise the guard may not yet assume it took. Counted at
    # its old current, the raise looks like house load; near the limit, projected with the car at the new
    # offer on top, above the breaker. A rise the cars' raises in progress explain (the cut view's house
    # no heavier than at the raise) takes nothing back: taking it back there raised and took back the same
    # step every 6 s for ever. Ramp steps of 2, 4 and 16 A, margins of 1 and 0 A.
    for step_ma in (2000, 4000, 16000):
        for response_ms in (500, 1000, 2000):
            for margin_ma in (1000, 0):
                for house_ma in range(12000, 18000, 700):
                    case = (step_ma, response_ms, margin_ma, house_ma)
                    rig = PwmRig(_site(ramp_step_ma=step_ma, margin_ma=margin_ma), [make_charger(max_a=16)])
                    rig.response_ms = response_ms
                    rig.house_ma = [house_ma, 2000, 2000]
                    offers = []
                    for _ in range(100):
                        rig.tick()
                        offers.append(rig.offered())
                        assert rig.phase_ma(0) <= BREAKER_MA, case
                    fits = min(16000, BREAKER_MA - margin_ma - house_ma)
                    assert offers[-1] == fits and _changes(offers[50:]) == 0, (case, offers)


def test_raising_and_taking_back_allocate_nothing():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    from chargeguard.core.modes import fill_targets

    for totals_only in (False, True):
        rig = _raised_rig(totals_only=totals_only, house=(2, 2, 2))
        guard = rig.guard
        allocated = 0
        changes = []
        gc.collect()
        gc.disable()
        try:
            # A load every 10 s, right after the raise it comes with: ramps, take-backs, cuts.
            for second in range(60):
                rig.house_ma = [19500 if second % 10 == 1 else 2000, 2000, 2000]
                rig.now += 1000
                rig._update_grid()
                rig.reading.tick_ms = rig.now
                fill_targets(rig.chargers, rig.targets)
                before_offer = rig.offered()
                before = gc.mem_alloc()
                guard.tick(rig.reading, rig.statuses, rig.targets, rig.now, rig.commands)
                allocated += gc.mem_alloc() - before
                if rig.offered() != before_offer:
                    changes.append((second, rig.offered()))
                    rig.changes.append((rig.now, [rig.offered()]))
        finally:
            gc.enable()
        assert allocated == 0, (totals_only, allocated)
        assert (1, 6000) in changes, (totals_only, changes)  # the take-back, measured
        assert any(offer > 6000 for _, offer in changes), (totals_only, changes)  # and raises


def test_when_even_the_minimum_does_not_fit_the_raise_goes_to_the_minimum_and_the_pause_follows():
    # 12 A more on L1 right after a raise 6 -> 8 A: 20 + 6 = 26 A with the car at its old current, so even
    # the minimum is above the limit. The raise is taken back to the minimum at once; the pause comes at the
    # first reading ev_response after the raise (the high view counts the car at 8 A until then, as it may
    # have taken it), or at the next reading when the box measures the car at 6 A after the take-back.
    for metered in (False, True):
        rig = _raised_rig(metered=metered)
        raised_ms = rig.now
        rig.house_ma = [20000, 8000, 8000]
        rig.tick()
        assert (rig.offered(), rig.reason()) == (6000, "breaker"), metered
        while rig.offered():
            rig.tick()
            assert rig.now - raised_ms <= rig.site.ev_response_ms + 1000, metered
        assert rig.reason() == "breaker"
        if metered:
            assert rig.now - raised_ms == 2000, metered  # the reading after the take-back
