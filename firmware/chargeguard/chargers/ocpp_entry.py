"""The configuration rules of an OCPP charger entry (type "ocpp", drivers.CHARGER_MODULES).

config.py loads this module only while it completes or checks such an
entry (app.py unloads it with config.py after start-up), so a site without
an OCPP box never carries it. The box connects to the device, so its entry
has a charge point id (the id in its URL; unique across entries, which
config.py checks) and a password instead of host and port, plus the quirks
of OCPP boxes: unit, stack_level, profile_connector, pause,
remote_start_stop, id_tags, meter_interval_s (chargers/ocpp.py, docs/ocpp.md).
The `ocpp` section of the document (the central system) is config.py's.
"""

from micropython import const

from chargeguard.rules import show

# config.py's field kinds (const() values cannot be shared: keep in step).
_INT = const(0)
_BOOL = const(2)
_TEXT = const(3)
_ENUM = const(4)
_SECRET = const(5)
_OPT_TEXT = const(14)

# (key, default, kind, a, b, unit), as config.py's tables.
_IDENTITY = (
    ("charge_point_id", "", _TEXT, 1, 48, ""),
    ("password", "", _SECRET, 8, 64, ""),
)
# The quirks of OCPP boxes.
_QUIRKS = (
    ("unit", "auto", _ENUM, ("auto", "A", "W"), None, ""),
    ("stack_level", -1, _INT, -1, 8, ""),
    ("profile_connector", -1, _INT, -1, 1, ""),
    ("pause", "auto", _ENUM, ("auto", "zero", "stop"), None, ""),
    ("remote_start_stop", False, _BOOL, None, None, ""),
    ("id_tags", "", _OPT_TEXT, 1, 200, ""),
    ("meter_interval_s", 10, _INT, 0, 3600, "s"),
    ("profile_kind", "absolute", _ENUM, ("absolute", "relative"), None, ""),
)


def _table(charger):
    # config.py's charger table with the identity in place of host and port
    # (its rows 2 and 3); the key order of the entry and of its errors.
    return charger[:2] + _IDENTITY + charger[4:] + _QUIRKS


def complete(out, fill, charger):
    """Complete OCPP entry `out` in place with config.py's `fill` and its charger table `charger`."""
    return fill(out, _table(charger))


def check(errors, prefix, entry, charger, check_section, check_field, unknown, missing):
    """Check entry at `prefix` ("chargers.0.") with config.py's helpers; the fields that are fine on their own."""
    good = check_section(errors, prefix, entry, _table(charger))
    ident = good.get("charge_point_id")
    # The id is the last part of the box's URL path (net/ocpp.charge_point_id).
    if ident is not None and ("/" in ident or "?" in ident or "#" in ident or " " in ident):
        errors.add(prefix + "charge_point_id", "must not contain '/', '?', '#' or spaces (is %s)" % show(ident))
        good.pop("charge_point_id")  # not compared with the other entries' ids
    return good
