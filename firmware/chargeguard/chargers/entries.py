"""The configuration rules of the Modbus TCP and UDP charger entries (drivers.ENTRY_RULES).

config.py loads this module only for such an entry (to complete and check
it), so a site without one carries none of it, and the boot-time validation
of every other site stays as small as it was. Their extra keys: "unit"
(Modbus unit id 1..247; an Alfen socket 1 or 2), "map" (modbus_generic: the
register map, chargers/modbus_generic.py and docs/configuration.md),
"transport", "baud", "format" (abb_terra: "rtu" on the RS485 port); their
default ports: 502, and 7090 for keba_p30.
"""

from micropython import const

# config.py's field kinds (const() values cannot be shared: keep in step).
_INT = const(0)
_ONEOF = const(1)
_ENUM = const(4)
_OPT_HOST = const(12)
_MAP = const(13)

UNIT = ("unit", 1, _INT, 1, 247, "")
# abb_terra on the board's RS485 port instead of the network: "transport" "rtu", its serial settings
# (ABB's TerraConfig sets them on the box; 19200 8E1 as nymea's ABB plugin asks), no host then.
RTU = (("transport", "tcp", _ENUM, ("tcp", "rtu"), None, ""), ("baud", 19200, _ONEOF, (9600, 19200, 38400, 57600, 115200), None,
       "baud"), ("format", "8E1", _ENUM, ("8N1", "8E1", "8O1", "8N2"), None, ""))
MAP = ("map", None, _MAP, None, None, "")

# (name, required, kind, a, b, unit), as config.py's tables without the default.
FIELDS = (
    ("state_function", False, _ONEOF, (3, 4), None, ""),
    ("state_address", True, _INT, 0, 65535, ""),
    ("state_kind", False, _ENUM, ("letter", "number"), None, ""),
    ("power_function", False, _ONEOF, (3, 4), None, ""),
    ("power_address", False, _INT, -1, 65535, ""),
    ("power_type", False, _ENUM, ("u16", "u32", "u32sw", "i32"), None, ""),
    ("power_scale", False, _INT, -3, 3, ""),
    ("current_address", True, _INT, 0, 65535, ""),
    ("current_unit_ma", False, _ONEOF, (1, 10, 100, 1000), None, ""),
    ("enable", False, _ENUM, ("coil", "register", "none"), None, ""),
    ("enable_address", False, _INT, 0, 65535, ""),
)
DEFAULTS = (("state_function", 4), ("state_kind", "letter"), ("power_function", 4), ("power_address", -1),
            ("power_type", "u32"), ("power_scale", 0), ("current_unit_ma", 1000), ("enable", "none"))


def _table(kind, charger, rtu=False):
    if kind == "keba_p30":
        return charger
    if kind == "abb_terra":
        # Over RTU the host is not asked for (the config's optional-host kind).
        return (charger[:2] + (("host", "", _OPT_HOST, None, None, ""),) + charger[3:] if rtu else charger) + (UNIT,) + RTU
    return charger + ((UNIT, MAP) if kind == "modbus_generic" else (UNIT,))


def complete(out, fill, charger):
    """Complete charger entry `out` in place with config.py's `fill` and its charger table `charger`."""
    kind = out["type"]
    if "port" not in out:
        out["port"] = 7090 if kind == "keba_p30" else 502
    m = out.get("map")
    if kind == "modbus_generic" and type(m) is dict:
        for key, value in DEFAULTS:  # enable_address has no default
            if key not in m:
                m[key] = value
    return fill(out, _table(kind, charger, out.get("transport") == "rtu"))


def check(errors, prefix, entry, charger, check_section, check_field, unknown, missing):
    """Check entry at `prefix` ("chargers.0.") with config.py's helpers; the fields that are fine on their own."""
    kind = entry.get("type")
    good = check_section(errors, prefix, entry, _table(kind, charger, entry.get("transport") == "rtu"))
    unit = good.get("unit")
    if kind == "alfen_eve" and unit is not None and unit > 2:
        errors.add(prefix + "unit", "must be 1 or 2 for an Alfen Eve: its socket (is %d)" % unit)
    if kind == "modbus_generic" and "map" in good:
        check_map(errors, prefix + "map", good["map"], check_field, unknown, missing)
    return good


def check_map(errors, path, m, check_field, unknown, missing):
    """Errors of a modbus_generic map `m` at `path` ("chargers.0.map")."""
    if type(m) is not dict:
        errors.add(path, "must be the box's register map (see docs/configuration.md, modbus_generic)", written=True)
        return
    for spec in FIELDS:
        key = spec[0]
        if key not in m:
            if spec[1]:
                errors.add(path + "." + key, missing, written=True)
            continue
        check_field(errors, path + "." + key, (key, None) + spec[2:], m[key])
    unknown(errors, path + ".", m, [spec[0] for spec in FIELDS])
    if m.get("enable") in ("coil", "register") and "enable_address" not in m:
        errors.add(path + ".enable_address", missing, written=True)
