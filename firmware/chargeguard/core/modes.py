"""What each charging mode asks of the guard, before any limit applies.

The guard then fits these targets inside the breaker and contract envelope.
The eco, solar and excess modes, distribution and the capacity tariff live in
core/optimiser.py (not wired into the app yet), which also covers these three.
"""

from chargeguard.core.settings import MODE_FAST, MODE_MANUAL, MODE_OFF

MODES = (MODE_OFF, MODE_FAST, MODE_MANUAL)  # what config.py accepts


def target_ma(charger):
    """The current (mA) the charger's mode wants; 0 = do not charge."""
    if not charger.enabled:
        return 0
    if charger.mode == MODE_FAST:
        return charger.max_ma
    if charger.mode == MODE_MANUAL:
        return charger.manual_ma
    return 0


def fill_targets(chargers, targets_ma):
    """Write every charger's target into the preallocated list targets_ma."""
    for index in range(len(chargers)):
        targets_ma[index] = target_ma(chargers[index])
