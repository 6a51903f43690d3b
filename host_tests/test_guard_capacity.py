"""The guard under a capacity-tariff cap (Guard.import_cap_w, from core/capacity.py)."""

from test_guard import Rig, make_charger, make_site, ramp_to_steady


def test_capacity_cap_limits_the_total_import_and_says_capacity():
    rig = Rig(make_site(breaker_a=40), [make_charger(max_a=32)], metered=True)
    rig.guard.import_cap_w = 9200
    ramp_to_steady(rig)
    assert rig.offered() == 13300  # 9200 W over 3 x 230 V, in 0.1 A steps
    assert rig.reason() == "capacity"


def test_the_lower_of_contract_and_capacity_applies():
    rig = Rig(make_site(breaker_a=40, max_import_w=9200), [make_charger(max_a=32)], metered=True)
    rig.guard.import_cap_w = 12000  # looser than the contract: the contract binds
    ramp_to_steady(rig)
    assert (rig.offered(), rig.reason()) == (13300, "contract")
    rig.guard.import_cap_w = 6900  # the quarter started heavy: capacity binds, at once
    rig.tick()
    assert (rig.offered(), rig.reason()) == (10000, "capacity")
    rig.guard.import_cap_w = None  # no cap: back to the contract (ramped)
    ramp_to_steady(rig)
    assert (rig.offered(), rig.reason()) == (13300, "contract")


def test_a_cap_of_zero_sheds_the_charger():
    rig = Rig(make_site(breaker_a=40), [make_charger(max_a=32)], metered=True)
    ramp_to_steady(rig)
    rig.guard.import_cap_w = 0  # the quarter is spent
    rig.tick()
    assert (rig.offered(), rig.reason()) == (0, "capacity")


def test_no_cap_changes_nothing():
    rig = Rig(make_site(breaker_a=40), [make_charger(max_a=32)], metered=True)
    ramp_to_steady(rig)
    assert (rig.offered(), rig.reason()) == (32000, "ok")
