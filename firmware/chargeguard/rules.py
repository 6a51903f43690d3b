"""The rules of the settings that change while the controller runs, shared by config.py and commands.py.

config.py (23 KB of bytecode, unloaded while running) validates whole
documents; commands.py validates one change from MQTT or the web page. Both
take the ranges, the cross-field rules and the wording of the messages from
here, so a slider refuses exactly what a config.json would.

A spec is (key, default, kind, a, b, unit[, meaning of 0]), config.py's
table format; field_message(spec, value) is the message for a value that
breaks it, None when it is fine on its own. The cross-field rules return
(field, message) or None. Messages read "must be ... (is ...)".
"""

from micropython import const

INT = const(0)  # whole number in a..b
ONEOF = const(1)  # whole number from the tuple a
BOOL = const(2)
ENUM = const(4)  # string from the tuple a
ZERO_OR = const(8)  # 0 (meaning given in the 7th item) or a..b

_PEAK_FLOOR_W = const(2500)  # Fluvius bills at least 2.5 kW: a lower limit saves nothing
TARGET_ABOVE_LOWER_W = const(300)  # EVCM: net power target >= lower threshold + 300 W
_POWER_W = const(100000)
MAX_CHARGERS = const(8)

MODES = ("off", "fast", "manual", "eco", "solar", "excess")  # core/modes.MODES
CHARGER_MODES = ("site",) + MODES
DISTRIBUTIONS = ("shared", "priority", "sequential_optimized", "sequential_strict")

# Site fields settable at run time.
SITE_MODE = ("mode", "fast", ENUM, MODES, None, "")
DISTRIBUTION = ("distribution", "priority", ENUM, DISTRIBUTIONS, None, "")
PEAK_LIMIT = ("peak_limit_w", 0, ZERO_OR, _PEAK_FLOOR_W, 500000, "W", "off")
PEAK_FOLLOW = ("peak_follow_month", False, BOOL, None, None, "")
ECO = ("eco", True, BOOL, None, None, "")
NET_TARGET = ("net_power_target_w", 0, INT, -_POWER_W, _POWER_W, "W")
# Charger fields settable at run time.
MIN_A = ("min_a", 6, INT, 6, 32, "A")
MAX_A = ("max_a", 16, INT, 6, 32, "A")
PRIORITY = ("priority", 1, INT, 1, MAX_CHARGERS, "")
MODE = ("mode", "site", ENUM, CHARGER_MODES, None, "")
MANUAL_A = ("manual_a", 6, INT, 6, 32, "A")
ENABLED = ("enabled", True, BOOL, None, None, "")
RUNTIME = (SITE_MODE, DISTRIBUTION, PEAK_LIMIT, PEAK_FOLLOW, ECO, NET_TARGET, MIN_A, MAX_A, PRIORITY, MODE, MANUAL_A, ENABLED)

# Cross-field rules of the solar section, EVCM's: (field, other, gap) means
# field >= other + gap W. In each band upper > lower; the ECO on band lies
# above the ECO off band; the net power target is at least 300 W above the
# lower threshold of both bands (EVCM clamps it there; a target the
# regulation would not use is refused rather than silently raised).
SOLAR_RULES = (
    ("eco_on_upper_w", "eco_on_lower_w", 1),
    ("eco_off_upper_w", "eco_off_lower_w", 1),
    ("eco_on_upper_w", "eco_off_upper_w", 1),
    ("eco_on_lower_w", "eco_off_lower_w", 1),
    ("net_power_target_w", "eco_on_lower_w", TARGET_ABOVE_LOWER_W),
    ("net_power_target_w", "eco_off_lower_w", TARGET_ABOVE_LOWER_W),
)


def is_int(value):
    """True for an int that is not a bool (bool is an int subclass in CPython, not on MicroPython)."""
    return type(value) is int


def show(value):
    """A value as the messages quote it (JSON words; long text cut)."""
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    if kind is str:
        return repr(value) if len(value) <= 24 else repr(value[:21]) + "..."
    if value is None:
        return "null"
    if kind is list:
        return "a list"
    if kind is dict:
        return "an object"
    return "unsupported"


def range_text(low, high, unit):
    text = "between %d and %d" % (low, high)
    return text + " " + unit if unit else text


def field_message(spec, value):
    """What is wrong with `value` for a spec of kind INT, ZERO_OR, ONEOF, BOOL or ENUM; None when fine."""
    kind = spec[2]
    low = spec[3]
    high = spec[4]
    unit = spec[5]
    if kind == INT:
        if not is_int(value):
            return "must be a whole number %s (is %s)" % (range_text(low, high, unit), show(value))
        if not low <= value <= high:
            return "must be %s (is %d)" % (range_text(low, high, unit), value)
    elif kind == ZERO_OR:
        if not is_int(value) or (value != 0 and not low <= value <= high):
            return "must be 0 (%s) or %s (is %s)" % (spec[6], range_text(low, high, unit), show(value))
    elif kind == ONEOF:
        if not is_int(value) or value not in low:
            words = " or ".join([str(choice) for choice in low])
            return "must be %s%s (is %s)" % (words, " " + unit if unit else "", show(value))
    elif kind == BOOL:
        if type(value) is not bool:
            return "must be true or false (is %s)" % show(value)
    elif kind == ENUM:
        if type(value) is not str or value not in low:
            return "must be one of: %s (is %s)" % (", ".join(low), show(value))
    return None


def solar_message(high, low, gap, value, floor):
    """The message for solar.<high> below solar.<low> + gap (see SOLAR_RULES); None when it keeps the rule."""
    if value >= floor + gap:
        return None
    if gap == 1:
        return "must be above %s, %d W (is %d)" % (low, floor, value)
    return "must be at least %s + %d W, %d W (is %d)" % (low, gap, floor + gap, value)


def max_message(low, high):
    """chargers.N.max_a against min_a (A); None when high >= low."""
    return None if high >= low else "must be at least min_a, %d A (is %d)" % (low, high)


def circuit_message(low, circuit):
    """chargers.N.circuit_a against min_a (A); None when circuit >= low."""
    return None if circuit >= low else "must be at least min_a, %d A (is %d)" % (low, circuit)


def manual_message(low, high, manual):
    """chargers.N.manual_a within min_a..max_a (A); None when inside."""
    if low <= manual <= high:
        return None
    return "must be between min_a and max_a, %d..%d A (is %d)" % (low, high, manual)


def failsafe_message(low, high, failsafe):
    """chargers.N.failsafe_a: 0 or within min_a..max_a (A); None when fine."""
    if failsafe == 0 or low <= failsafe <= high:
        return None
    return "must be 0 (pause) or between min_a and max_a, %d..%d A (is %d)" % (low, high, failsafe)


def priority_message(count, priority):
    """chargers.N.priority against the number of chargers; None when within 1..count."""
    if priority <= count:
        return None
    return "must be between 1 and %d, the number of chargers (is %d)" % (count, priority)
