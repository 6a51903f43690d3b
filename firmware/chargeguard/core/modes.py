"""The charging modes, and what off/fast/manual ask of the guard before any limit applies.

The guard then fits these targets inside the breaker and contract envelope.
The surplus modes (eco, solar, excess), distribution and the capacity tariff
are run by core/optimiser.py, which the app loads only when the
configuration uses one of them (needs_optimiser()); it covers these three too.
"""

from chargeguard.core.settings import MODE_ECO, MODE_EXCESS, MODE_FAST, MODE_MANUAL, MODE_OFF, MODE_SITE, MODE_SOLAR

MODES = (MODE_OFF, MODE_FAST, MODE_MANUAL, MODE_ECO, MODE_SOLAR, MODE_EXCESS)  # what config.py accepts
SURPLUS_MODES = (MODE_ECO, MODE_SOLAR, MODE_EXCESS)  # need core/optimiser.py


def target_ma(charger):
    """The current (mA) the charger's mode wants; 0 = do not charge (and for the surplus modes)."""
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


def needs_optimiser(doc):
    """True when the plain targets above are not enough: core/optimiser.py must run.

    doc: a validated configuration document. The optimiser is needed when an
    enabled charger is in eco, solar or excess (its own mode, or site.mode
    when its mode is "site"), when site.peak_limit_w is set, or when
    site.distribution is not "priority": the guard on its own serves
    fast/manual chargers in priority order, which is that distribution.
    """
    site = doc["site"]
    if site.get("peak_limit_w", 0) or site.get("distribution", "priority") != "priority":
        return True
    for entry in doc["chargers"]:
        mode = entry["mode"]
        if mode == MODE_SITE:
            mode = site.get("mode", MODE_FAST)
        if entry["enabled"] and mode in SURPLUS_MODES:
            return True
    return False
