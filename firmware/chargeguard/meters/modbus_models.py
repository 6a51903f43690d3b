"""Register maps of the Modbus kWh meters the Modbus driver knows, as rows.

Imported by meters/modbus.py (from_config) and config.py only while a
configuration is loaded, then dropped from sys.modules: the rows cost heap
only during start-up.

A row is a tuple (see ROW_FIELDS):

    function      3 (holding registers) or 4 (input registers)
    low_first     True: 32-bit values come low word first ("CDAB")
    phases        1 or 3; 0 = totals only (no per-phase values)
    max_registers the most registers the meter answers in one request
    pause_ms      the least time between two requests
    current, power, voltage: (address of L1, type, exponent); L2 and L3
                  follow at the next addresses of the same type; voltage may
                  be None
    total         (address, type, exponent) of the total power, for a
                  totals-only meter, else None
    energy        (import address, export address or None, type, exponent)
                  or None

Addresses are 0-based protocol addresses. Types: F32 (IEEE 754 float32),
I32, U32, I16, U16, U64 (2, 2, 2, 1, 1, 4 registers). The exponent turns
the register into the firmware's units: value = register x 10**exponent in
mA (current), W (power), mV (voltage), Wh (energy); a float in A has 3, a
power in kW 3, an int32 in 0.1 W -1.

Sources: ../shared/protocols/modbus-meters.md (every row but the DTSU666),
which names the vendor maps and the open projects that use them. Chint
DTSU666: FC3 float32 big-endian, Ua 0x2006, Ia 0x200C, Pa 0x2014 (the
addresses as gerontec/dtsu666's README lists them, 8198/8204/8212), energy
0x101E import / 0x1028 export in kWh (16414/16424 there); the Chint manual
gives the values in 0.1 V, 0.001 A and 0.1 W, hence the exponents 2, 0, -1.
Not in the shared protocol file: verify on hardware.
"""

F32 = 0
I32 = 1
U32 = 2
I16 = 3
U16 = 4
U64 = 5
TYPES = ("float32", "int32", "uint32", "int16", "uint16", "uint64")
WORDS = (2, 2, 2, 1, 1, 4)
ROW_FIELDS = ("function", "low_first", "phases", "max_registers", "pause_ms", "current", "power", "voltage", "total", "energy")

# The names a configuration may give in meter.model ("custom" takes meter.custom).
MODELS = (
    "abb_b23",
    "abb_b24",
    "chint_dtsu666",
    "em24",
    "em340",
    "finder_7m24",
    "finder_7m38",
    "inepro_pro380",
    "orno_we516",
    "orno_we517",
    "phoenix_eem_ma370",
    "sdm120",
    "sdm630",
    "sdm72d_m",
    "sdm72d_m2",
    "wago_879",
)


# meter.custom, checked by check() with config.py's field checker: (key,
# required, kind, a, b, unit); kinds are config.py's _INT (0), _ONEOF (1),
# _ENUM (4). Addresses are 0-based protocol addresses, exponents powers of
# ten to the meter's units (A, W, V, kWh).
_CUSTOM_FIELDS = (
    ("function", True, 1, (3, 4), None, ""),
    ("type", True, 4, TYPES[:5], None, ""),
    ("word_order", False, 4, ("high_first", "low_first"), None, ""),
    ("phases", False, 1, (1, 3), None, ""),
    ("current", True, 0, 0, 65535, ""),
    ("current_exp", False, 0, -6, 6, ""),
    ("power", True, 0, 0, 65535, ""),
    ("power_exp", False, 0, -6, 6, ""),
    ("voltage", False, 0, 0, 65535, ""),
    ("voltage_exp", False, 0, -6, 6, ""),
    ("import", False, 0, 0, 65535, ""),
    ("export", False, 0, 0, 65535, ""),
    ("energy_type", False, 4, TYPES, None, ""),
    ("energy_exp", False, 0, -6, 6, ""),
    ("max_registers", False, 0, 1, 125, ""),
    ("pause_ms", False, 0, 0, 5000, "ms"),
)


def check(errors, section, model, check_field, unknown, missing):
    """Errors of a Modbus meter section's model and custom map, added with errors.add (config.py's helpers)."""
    if model is not None and model != "custom" and model not in MODELS:
        if model == "":
            message = "must be set to the meter's model: one of %s, or custom (a register map in meter.custom)"
        else:
            message = "is not a known Modbus meter: one of %s, or custom (a register map in meter.custom)"
        errors.add("meter.model", message % ", ".join(MODELS), written=True)
    custom = section.get("custom")
    if model != "custom":
        if custom is not None:
            errors.add("meter.custom", "is used only with model custom", "meter.model")
        return
    if type(custom) is not dict:
        errors.add("meter.custom", "must be the register map of the meter (see docs/configuration.md)", written=True)
        return
    for spec in _CUSTOM_FIELDS:
        key = spec[0]
        if key not in custom:
            if spec[1]:
                errors.add("meter.custom." + key, missing, written=True)
            continue
        if custom[key] is None and not spec[1]:
            continue
        check_field(errors, "meter.custom." + key, (key, None) + spec[2:], custom[key])
    unknown(errors, "meter.custom.", custom, [spec[0] for spec in _CUSTOM_FIELDS])


def row(model):
    """The register map of `model` (a MODELS name) as a row, or None."""
    if model in ("sdm630", "sdm72d_m2"):
        # Eastron SDM630 V2, SDM630MCT, SDM72D-M-2: FC4 float32 ABCD, at most 80 registers.
        return (4, False, 3, 80, 100, (0x06, F32, 3), (0x0C, F32, 0), (0x00, F32, 3), None, (0x48, 0x4A, F32, 3))
    if model == "sdm120":
        return (4, False, 1, 80, 100, (0x06, F32, 3), (0x0C, F32, 0), (0x00, F32, 3), None, (0x48, 0x4A, F32, 3))
    if model == "sdm72d_m":
        # First SDM72D-M: total power only (no per-phase values); reboots if
        # polled faster than every 500 ms.
        return (4, False, 0, 80, 500, None, None, None, (0x34, F32, 0), (0x48, 0x4A, F32, 3))
    if model in ("abb_b23", "abb_b24"):
        # FC3 big-endian: U uint32 0.1 V, I uint32 0.01 A, P int32 0.01 W, E uint64 0.01 kWh.
        return (3, False, 3, 125, 100, (0x5B0C, U32, 1), (0x5B16, I32, -2), (0x5B00, U32, 2), None, (0x5000, 0x5004, U64, 1))
    if model == "em24":
        # FC4 int32 low word first: U 0.1 V, I mA, P 0.1 W, E 0.1 kWh; the
        # export register may not exist (exception 2: left out).
        return (4, True, 3, 80, 100, (0x0C, I32, 0), (0x12, I32, -1), (0x00, I32, 2), None, (0x42, 0x5C, I32, 2))
    if model == "em340":
        # The EM24's layout (SE3 row C.Gavazzi: U 0x0, I 0xC), energy 0x34 / 0x4E.
        return (4, True, 3, 80, 100, (0x0C, I32, 0), (0x12, I32, -1), (0x00, I32, 2), None, (0x34, 0x4E, I32, 2))
    if model == "finder_7m38":
        # FC4 float32; energy in Wh at 2752 / 2756 (MBMD; SE3 uses 2638).
        return (4, False, 3, 80, 100, (2516, F32, 3), (2530, F32, 0), (2500, F32, 3), None, (2752, 2756, F32, 0))
    if model == "finder_7m24":
        return (4, False, 1, 80, 100, (2516, F32, 3), (2536, F32, 0), (2500, F32, 3), None, (2752, 2756, F32, 0))
    if model in ("orno_we516", "orno_we517"):
        # FC3 float32; power in kW.
        return (3, False, 3, 60, 100, (0x16, F32, 3), (0x1E, F32, 3), (0x0E, F32, 3), None, (0x108, 0x110, F32, 3))
    if model == "phoenix_eem_ma370":
        # FC3 float32 low word first; energy in Wh.
        return (3, True, 3, 80, 100, (32782, F32, 3), (32798, F32, 0), (32774, F32, 3), None, (33024, 33030, F32, 0))
    if model in ("inepro_pro380", "wago_879"):
        # FC3 float32; power in kW.
        return (3, False, 3, 80, 100, (0x500C, F32, 3), (0x5014, F32, 3), (0x5002, F32, 3), None, (0x600C, 0x6018, F32, 3))
    if model == "chint_dtsu666":
        return (3, False, 3, 80, 100, (0x200C, F32, 0), (0x2014, F32, -1), (0x2006, F32, 2), None, (0x101E, 0x1028, F32, 3))
    return None


def custom_row(custom):
    """The row of a validated meter.custom map (see docs/configuration.md).

    Exponents in the map are in the meter's units (A, W, V, kWh); the row's
    are in the firmware's (mA, W, mV, Wh).
    """
    kind = TYPES.index(custom["type"])
    energy_kind = TYPES.index(custom.get("energy_type") or custom["type"])
    voltage = custom.get("voltage")
    imp = custom.get("import")
    return (
        custom["function"],
        custom.get("word_order", "high_first") == "low_first",
        custom.get("phases", 3),
        custom.get("max_registers", 60),
        custom.get("pause_ms", 100),
        (custom["current"], kind, custom.get("current_exp", 0) + 3),
        (custom["power"], kind, custom.get("power_exp", 0)),
        None if voltage is None else (voltage, kind, custom.get("voltage_exp", 0) + 3),
        None,
        None if imp is None else (imp, custom.get("export"), energy_kind, custom.get("energy_exp", 0) + 3),
    )
