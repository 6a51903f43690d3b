from chargeguard.core.distribution import allocate, priority_order
from chargeguard.core.optsettings import (
    DIST_PRIORITY,
    DIST_SEQUENTIAL_OPTIMIZED,
    DIST_SEQUENTIAL_STRICT,
    DIST_SHARED,
)
from chargeguard.core.settings import ChargerSettings

A = 1000  # the examples are Dynamic OCPP EVSE's, in A; the core counts mA


def run(mode, pool_a, mins_a, maxs_a, demands_a=None, order=None):
    count = len(mins_a)
    order = order or list(range(count))
    demands = [a * A for a in (demands_a or maxs_a)]
    out = [-1] * count
    left = allocate(mode, order, [a * A for a in mins_a], [a * A for a in maxs_a], demands, pool_a * A, out)
    return [value // A if value % A == 0 else value / A for value in out], left / A


# -- Dynamic OCPP EVSE's Distribution Modes Guide, example by example ----------


def test_shared_example_32a_gives_both_16a():
    assert run(DIST_SHARED, 32, [6, 6], [16, 16]) == ([16, 16], 0)


def test_priority_example_20a_gives_14a_and_6a():
    assert run(DIST_PRIORITY, 20, [6, 6], [16, 16]) == ([14, 6], 0)


def test_sequential_optimized_example_32a_gives_10a_and_16a():
    assert run(DIST_SEQUENTIAL_OPTIMIZED, 32, [6, 6], [10, 16]) == ([10, 16], 6)


def test_sequential_strict_constrained_example_20a_gives_16a_and_nothing():
    assert run(DIST_SEQUENTIAL_STRICT, 20, [6, 6], [16, 16]) == ([16, 0], 4)


def test_sequential_strict_generous_example_32a_gives_both_16a():
    assert run(DIST_SEQUENTIAL_STRICT, 32, [6, 6], [16, 16]) == ([16, 16], 0)


# -- the rules around the examples ----------------------------------------------


def test_shared_splits_equally_and_passes_on_what_one_cannot_take():
    assert run(DIST_SHARED, 20, [6, 6], [16, 16]) == ([10, 10], 0)
    # The first can take only 8 A: the second gets the rest, up to its max.
    assert run(DIST_SHARED, 26, [6, 6, 6], [8, 16, 16]) == ([8, 9, 9], 0)
    assert run(DIST_SHARED, 40, [6, 6], [8, 16]) == ([8, 16], 16)


def test_minimum_or_nothing_lowest_priority_goes_without():
    for mode in (DIST_SHARED, DIST_PRIORITY):
        assert run(mode, 10, [6, 6], [16, 16]) == ([10, 0], 0)
    assert run(DIST_SEQUENTIAL_OPTIMIZED, 10, [6, 6], [16, 16]) == ([10, 0], 0)


def test_a_small_minimum_further_down_still_fits():
    # Priority 2 needs 6 A (does not fit in 4 A), priority 3 only 2 A (an on/off load).
    for mode in (DIST_SHARED, DIST_PRIORITY):
        out, _ = run(mode, 10, [6, 6, 2], [10, 16, 2])
        assert out == [8, 0, 2], (mode, out)
    assert run(DIST_SEQUENTIAL_OPTIMIZED, 14, [6, 6, 2], [10, 16, 2]) == ([10, 0, 2], 2)


def test_sequential_optimized_skips_one_that_cannot_reach_its_minimum():
    # A 3-phase car needs 12 A of pool here, the 1-phase one 6 A.
    assert run(DIST_SEQUENTIAL_OPTIMIZED, 9, [12, 6], [48, 16]) == ([0, 9], 0)
    # Strict does not: the first blocks everyone after it.
    assert run(DIST_SEQUENTIAL_STRICT, 9, [12, 6], [48, 16]) == ([0, 0], 9)


def test_sequential_strict_serves_the_next_only_when_the_first_is_satisfied():
    # The first wants only 8 A (its car limits itself): satisfied, the next gets the rest.
    assert run(DIST_SEQUENTIAL_STRICT, 20, [6, 6], [16, 16], demands_a=[8, 16]) == ([8, 12], 0)
    assert run(DIST_SEQUENTIAL_STRICT, 30, [6, 6, 6], [16, 16, 16]) == ([16, 14, 0], 0)


def test_a_minimum_of_zero_takes_part_like_any_other():
    # An eco car's extra above the minimum it always draws: its minimum is 0 here.
    assert run(DIST_PRIORITY, 10, [0, 6], [10, 16]) == ([4, 6], 0)
    assert run(DIST_PRIORITY, 20, [0, 6], [10, 16]) == ([10, 10], 0)
    assert run(DIST_SHARED, 20, [0, 6], [10, 16]) == ([7, 13], 0)
    assert run(DIST_SEQUENTIAL_OPTIMIZED, 20, [0, 6], [10, 16]) == ([10, 10], 0)
    assert run(DIST_SEQUENTIAL_STRICT, 8, [0, 6], [10, 16]) == ([8, 0], 0)


def test_demand_caps_the_share():
    assert run(DIST_PRIORITY, 32, [6, 6], [16, 16], demands_a=[7, 32]) == ([7, 16], 9)


def test_when_the_charging_one_unplugs_the_next_eligible_takes_over():
    mins, maxs = [6, 6, 6], [16, 16, 16]
    for mode in (DIST_SHARED, DIST_PRIORITY, DIST_SEQUENTIAL_OPTIMIZED, DIST_SEQUENTIAL_STRICT):
        out, _ = run(mode, 16, mins, maxs)
        assert out[0] >= 6 and out[2] == 0, (mode, out)
        # Priority 1 unplugs (demand 0), priority 2 is off: priority 3 takes over.
        out, _ = run(mode, 16, mins, maxs, demands_a=[0, 0, 16])
        assert out == [0, 0, 16], (mode, out)


def test_order_is_the_priority_order_not_the_list_order():
    chargers = []
    for priority in (3, 1, 2):
        charger = ChargerSettings()
        charger.priority = priority
        chargers.append(charger)
    order = priority_order(chargers)
    assert order == [1, 2, 0]
    assert run(DIST_SEQUENTIAL_STRICT, 20, [6, 6, 6], [16, 16, 16], order=order) == ([0, 16, 0], 4)
    assert run(DIST_PRIORITY, 20, [6, 6, 6], [16, 16, 16], order=order) == ([6, 8, 6], 0)


def test_nothing_to_share_gives_nothing():
    for mode in (DIST_SHARED, DIST_PRIORITY, DIST_SEQUENTIAL_OPTIMIZED, DIST_SEQUENTIAL_STRICT):
        assert run(mode, 0, [6], [16])[0] == [0]
        assert run(mode, -5, [6], [16])[0] == [0]


def test_unknown_mode_is_an_error():
    try:
        run("fair", 32, [6], [16])
    except ValueError as error:
        assert "fair" in str(error)
    else:
        raise AssertionError("no error")


def test_allocate_allocates_nothing():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    order = [2, 0, 1]
    mins = [6000, 6000, 1380]
    maxs = [16000, 32000, 3680]
    demands = [16000, 32000, 3680]
    out = [0, 0, 0]
    modes = (DIST_SHARED, DIST_PRIORITY, DIST_SEQUENTIAL_OPTIMIZED, DIST_SEQUENTIAL_STRICT)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for mode in modes:
            for pool in (0, 5000, 13000, 27000, 60000):
                allocate(mode, order, mins, maxs, demands, pool, out)
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before
