"""Supply profiles: how much surplus moves a charger's current by one ampere.

EVCM (seed: evcm-smart-charging-manager.md, section 6 "Supply Profiles and Net
Power Target") names one profile per supply and gives its regulation
thresholds: raise the current by 1 A when the grid balance is at least
`step_up_w` above the net power target, lower it by 1 A when it is at least
`step_down_w` below. Its table, as (name, charger phases, phase voltage V,
step_up_w, step_down_w):

    eu_1ph_230  1 x 230 V   240 W / 70 W
    na_1ph_240  1 x 240 V   240 W / 70 W  (EVCM lists it with eu_1ph_230)
    eu_3ph_400  3 x 230 V   700 W / 200 W (400 V between lines)
    na_3ph_208  3 x 120 V   370 W / 105 W (208 V between lines)
    jp_1ph_200  1 x 200 V   205 W / 60 W
    na_1ph_120  1 x 120 V   122 W / 35 W

The pattern behind the figures: one ampere more on every phase costs
phases x V watts (230, 690, 360, 200, 120 W), and step_up_w is that plus a few
watts (2..10 W), so a step up never turns export into import; step_down_w is
about 3/10 of it (0.29..0.30), so a small import is tolerated but a step down
is taken well before a whole ampere is imported. A supply outside the table
(a 2-phase charger, an unusual voltage) gets the same rule:
step_up_w = watts_per_amp + watts_per_amp // 50, step_down_w =
watts_per_amp * 3 // 10.

The profile is looked up from the charger's phase count at every tick, not
fixed at set-up: a charger that switches phases changes profile.
"""

from micropython import const

_NAME = const(0)
_PHASES = const(1)
_VOLTAGE = const(2)
_UP = const(3)
_DOWN = const(4)

PROFILES = (
    ("eu_1ph_230", 1, 230, 240, 70),
    ("na_1ph_240", 1, 240, 240, 70),
    ("eu_3ph_400", 3, 230, 700, 200),
    ("na_3ph_208", 3, 120, 370, 105),
    ("jp_1ph_200", 1, 200, 205, 60),
    ("na_1ph_120", 1, 120, 122, 35),
)

DERIVED = "derived"  # the name shown for a supply outside the table


def _find(phases, voltage_v):
    for row in PROFILES:
        if row[_PHASES] == phases and row[_VOLTAGE] == voltage_v:
            return row
    return None


def watts_per_amp(phases, voltage_v):
    """W that one more ampere on each of the charger's phases costs."""
    return phases * voltage_v


def step_up_w(phases, voltage_v):
    """Grid balance above the net power target (W) that earns +1 A."""
    row = _find(phases, voltage_v)
    if row is not None:
        return row[_UP]
    per_amp = phases * voltage_v
    return per_amp + per_amp // 50


def step_down_w(phases, voltage_v):
    """Grid balance below the net power target (W) that costs -1 A."""
    row = _find(phases, voltage_v)
    if row is not None:
        return row[_DOWN]
    return phases * voltage_v * 3 // 10


def profile_name(phases, voltage_v):
    """EVCM's name of the profile (e.g. "eu_3ph_400"), or "derived"."""
    row = _find(phases, voltage_v)
    return DERIVED if row is None else row[_NAME]
