"""A run-time settings change checked with config.py's rules and applied (commands.Commands.set, initial values).

commands.py loads this module (and rules.py with it) for each call and
drops both after: a change comes from a person now and then, and on a
stock firmware the code of a loaded .mpy module and its constants stay in
the heap (about 10 KB for the two). What the API promises (paths, units,
messages, all-or-nothing): commands.py's module doc.
"""

from chargeguard import rules
from chargeguard.commands import PERSIST_DELAY_MS
from chargeguard.core.ticks import ticks_add

_SURPLUS = ("eco", "solar", "excess")
_SITE = (rules.SITE_MODE, rules.DISTRIBUTION, rules.PEAK_LIMIT, rules.PEAK_FOLLOW)
_SOLAR = (rules.ECO, rules.NET_TARGET)
_CHARGER = (rules.MODE, rules.MANUAL_A, rules.MIN_A, rules.MAX_A, rules.PRIORITY, rules.ENABLED)


def values(app):
    """{path: value} of every settable path as now in force in app (commands.Commands.values)."""
    doc = app.opt_doc
    values = {}
    for spec in _SITE:
        values["site." + spec[0]] = doc["site"].get(spec[0], spec[1])
    for spec in _SOLAR:
        values["solar." + spec[0]] = doc["solar"].get(spec[0], spec[1])
    for index in range(len(app.chargers)):
        charger = app.chargers[index]
        prefix = "chargers.%d." % index
        values[prefix + "mode"] = app.charger_modes[index]
        values[prefix + "manual_a"] = charger.manual_ma // 1000
        values[prefix + "min_a"] = charger.min_ma // 1000
        values[prefix + "max_a"] = charger.max_ma // 1000
        values[prefix + "priority"] = charger.priority
        values[prefix + "enabled"] = charger.enabled
    return values


def _spec(table, key):
    for spec in table:
        if spec[0] == key:
            return spec
    return None


def _known(table):
    return ", ".join([spec[0] for spec in table])


def apply(api, changes):
    """commands.Commands.set(changes) on api (a Commands): {path: message}, {} when applied."""
    errors = {}
    if type(changes) is not dict or not changes:
        return {"": "must be an object of settings to change (is %s)" % rules.show(changes)}
    new = {}
    for path in changes:
        message = _check_one(api, path, changes[path])
        if message is not None:
            errors[path] = message
        else:
            new[path] = changes[path]
    if errors:
        return errors
    values = api.values
    # The candidate: the changes, priorities shifted, over the values in force (_at). Only the changed
    # paths: a copy of the values was one block of their table (296 bytes for four chargers), which a web
    # change in the start-up's crowd could not find (the frozen `everything` profile at 86 KB).
    candidate = {}
    for path in new:
        if path.endswith(".priority"):
            _move(candidate, values, len(api.app.chargers), int(path.split(".")[1]), new[path])
        else:
            candidate[path] = new[path]
    _cross(api, candidate, errors)
    if errors:
        return errors
    problem = _optimiser_for(api, candidate)
    if problem is not None:
        return {"": problem}
    _apply(api, candidate)
    return {}


def _at(candidate, values, path):
    # The candidate's value of a path: its change, else the value in force.
    return candidate[path] if path in candidate else values[path]


def _check_one(api, path, value):
    # The message for one path and value on their own; None when fine.
    if type(path) is not str:
        return "unknown setting"
    parts = path.split(".")
    if len(parts) == 2 and parts[0] == "site":
        table = _SITE
    elif len(parts) == 2 and parts[0] == "solar":
        table = _SOLAR
    elif len(parts) == 3 and parts[0] == "chargers":
        if path not in api.values and _spec(_CHARGER, parts[2]) is not None:
            return "no charger %s (chargers 0..%d)" % (parts[1], len(api.app.names) - 1)
        table = _CHARGER
    else:
        return "unknown setting (settable: site.*, solar.*, chargers.N.*)"
    spec = _spec(table, parts[-1])
    if spec is None:
        return "unknown setting (settable: %s)" % _known(table)
    return rules.field_message(spec, value)

def _cross(api, candidate, errors):
    # config.py's cross-field rules on the candidate, with config.py's messages.
    values = api.values
    count = len(api.app.chargers)
    for index in range(count):
        prefix = "chargers.%d." % index
        charger = api.app.chargers[index]
        low = _at(candidate, values, prefix + "min_a")
        high = _at(candidate, values, prefix + "max_a")
        message = rules.max_message(low, high)
        if message is not None:
            errors[prefix + "max_a"] = message
            continue
        message = rules.circuit_message(low, charger.circuit_ma // 1000)
        if message is not None:
            errors[prefix + "min_a"] = "cannot be above circuit_a: chargers.%d.circuit_a %s" % (index, message)
        message = rules.failsafe_message(low, high, charger.failsafe_ma // 1000)
        if message is not None:
            errors[prefix + "min_a"] = "would break chargers.%d.failsafe_a, which %s" % (index, message)
        message = rules.manual_message(low, high, _at(candidate, values, prefix + "manual_a"))
        if message is not None:
            errors[prefix + "manual_a"] = message
        message = rules.priority_message(count, _at(candidate, values, prefix + "priority"))
        if message is not None:
            errors[prefix + "priority"] = message
    solar = api.app.opt_doc["solar"]
    target = _at(candidate, values, "solar.net_power_target_w")
    for high, low, gap in rules.SOLAR_RULES:
        if high == "net_power_target_w":
            message = rules.solar_message(high, low, gap, target, solar[low])
            if message is not None:
                errors["solar.net_power_target_w"] = message

def _optimiser_for(api, candidate):
    # Loads the optimiser when the candidate needs it and it is not
    # running; the problem in words when the heap cannot take it.
    app = api.app
    if app.slow is not None or not _needs_optimiser(candidate, api.values, len(app.chargers)):
        return None
    import gc

    gc.collect()
    try:
        from chargeguard.slowlayer import SlowLayer

        slow = SlowLayer(_opt_doc(app.opt_doc, candidate, api.values), app.guard.site, app.chargers)
    except MemoryError:
        _unload("chargeguard.slowlayer")
        return "not enough memory to load the optimiser (surplus modes, distribution, capacity tariff): nothing changed"
    app.slow = slow
    app.optimiser = slow.optimiser
    return None


def _apply(api, candidate):
    app = api.app
    values = api.values
    changed = False
    for path in candidate:
        if path not in values:
            continue  # a path with no value in force is not applied
        if candidate[path] != values[path] or type(candidate[path]) is not type(values[path]):
            values[path] = candidate[path]
            api.pending[path] = candidate[path]
            changed = True
    if not changed:
        return
    doc = app.opt_doc
    for spec in _SITE:
        doc["site"][spec[0]] = values["site." + spec[0]]
    for spec in _SOLAR:
        doc["solar"][spec[0]] = values["solar." + spec[0]]
    site_mode = values["site.mode"]
    for index in range(len(app.chargers)):
        charger = app.chargers[index]
        prefix = "chargers.%d." % index
        mode = values[prefix + "mode"]
        app.charger_modes[index] = mode
        charger.mode = site_mode if mode == "site" else mode
        charger.manual_ma = values[prefix + "manual_a"] * 1000
        charger.min_ma = values[prefix + "min_a"] * 1000
        charger.max_ma = values[prefix + "max_a"] * 1000
        charger.priority = values[prefix + "priority"]
        charger.enabled = values[prefix + "enabled"]
    _sort(app.guard.order, app.chargers)
    if app.slow is not None:
        app.slow.configure(doc, app.chargers)
    api._due_ms = ticks_add(api.clock(), PERSIST_DELAY_MS)
    api.state.settings_seq += 1
    api.state.chargers_seq += 1


def _move(candidate, values, count, index, place):
    # Charger `index` to priority `place`; those between shift by one (the
    # order stays a permutation of 1..count). A place beyond count is left
    # for _cross() to refuse.
    key = "chargers.%d.priority" % index
    old = _at(candidate, values, key)
    if place > count:
        candidate[key] = place
        return
    for other in range(count):
        other_key = "chargers.%d.priority" % other
        value = _at(candidate, values, other_key)
        if other == index:
            continue
        if old < place and old < value <= place:
            candidate[other_key] = value - 1
        elif place < old and place <= value < old:
            candidate[other_key] = value + 1
    candidate[key] = place


def _sort(order, chargers):
    # In place: the guard's and the optimiser's priority order.
    for index in range(len(order)):
        order[index] = index
    order.sort(key=lambda index: chargers[index].priority)


def _needs_optimiser(candidate, values, count):
    # core/modes.needs_optimiser() on the candidate (enabled chargers only).
    if _at(candidate, values, "site.peak_limit_w") or _at(candidate, values, "site.distribution") != "priority":
        return True
    for index in range(count):
        prefix = "chargers.%d." % index
        mode = _at(candidate, values, prefix + "mode")
        if mode == "site":
            mode = _at(candidate, values, "site.mode")
        if _at(candidate, values, prefix + "enabled") and mode in _SURPLUS:
            return True
    return False


def _opt_doc(doc, candidate, values):
    # The optimiser's part of the configuration with the candidate's values.
    site = {}
    for spec in _SITE:
        site[spec[0]] = _at(candidate, values, "site." + spec[0])
    solar = {}
    for key in doc["solar"]:
        solar[key] = doc["solar"][key]
    for spec in _SOLAR:
        solar[spec[0]] = _at(candidate, values, "solar." + spec[0])
    return {"site": site, "solar": solar}


def _unload(name):
    from chargeguard.app import _unload as unload

    unload(name)
