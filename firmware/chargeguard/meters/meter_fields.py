"""The meter sections of every meter type but p1, and config.py's cross-field rules of the MQTT-fed meter.

Loaded by config.py only for a meter of type "modbus", "http", "mqtt", "ct", "han" or "atm90e32"
(and unloaded after each use, like meters/http_models.py): a P1 site never
holds these rows nor interns their names, and config.py, loaded at every
boot, carries none of them. The rows have config.py's layout (key, default,
kind, a, b, unit[, meaning of 0]); the kinds INT, ONEOF, BOOL, ENUM, ZERO_OR
are rules.py's, TEXT, OPT_TEXT, OPT_HOST and MAP config.py's, passed in with
the type row and the Modbus line settings (config.MODBUS_BAUD_RATES,
config.MODBUS_FORMATS) that config.py exports.
"""

from chargeguard.rules import BOOL, ENUM, INT, ONEOF, ZERO_OR


def table(kind, type_row, text, opt_text, opt_host, map_kind, baud_rates, formats, secret=None):
    """The rows of a meter section of type `kind` ("modbus", "http", "mqtt", "ct", "han", "atm90e32"); config.py's kinds.

    secret: config.py's kind for a secret (never shown; SECRET_PATHS
    redacts meter.token, the HomeWizard API v2 token).

    modbus: model and custom are checked against the register table
    (meters/modbus_models.check); http: model and the cross-field rules are
    meters/http_models.py's; mqtt: check() below.
    """
    upside_down_row = ("upside_down", False, BOOL, None, None, "")
    if kind == "modbus":
        return (
            type_row,
            ("model", "", text, 0, 32, ""),
            ("address", 1, INT, 1, 247, ""),
            ("host", "", opt_host, None, None, ""),
            ("port", 502, INT, 1, 65535, ""),
            ("baud", 9600, ONEOF, baud_rates, None, "baud"),
            ("format", "8N1", ENUM, formats, None, ""),
            upside_down_row,
            ("poll_ms", 1000, INT, 200, 10000, "ms"),
            ("custom", None, map_kind, None, None, ""),
        )
    if kind == "http":
        return (
            type_row,
            ("model", "", text, 0, 32, ""),
            ("host", "", opt_host, None, None, ""),
            ("port", 80, INT, 1, 65535, ""),
            ("channel", 0, INT, 0, 2, ""),
            upside_down_row,
            ("poll_ms", 1000, INT, 500, 10000, "ms"),
            # HomeWizard API v2 (homewizard_v2 only; meters/http_models.check).
            ("token", "", secret, 1, 64, ""),  # 32 hex digits: http_models.check says so in words
            ("ca_file", "homewizard-ca.pem", text, 1, 64, ""),
            ("cert_hostname", "", text, 0, 64, ""),
        )
    if kind == "han":
        # The HAN-NVE line is 2400 baud 8E1 (meters/han.py); 8N1 and 9600 for
        # meters that push the same frames on another line setting.
        return (
            type_row,
            ("baud", 2400, ONEOF, (2400, 9600), None, "baud"),
            ("format", "8E1", ENUM, ("8E1", "8N1"), None, ""),
            ("invert", False, BOOL, None, None, ""),
        )
    if kind == "atm90e32":
        # Gain defaults: ESPHome's atm90e32 component (CircuitSetup's boards,
        # SCT-013-000 clamps); calibrate them (docs/configuration.md).
        return (
            type_row,
            ("line_hz", 50, ONEOF, (50, 60), None, "Hz"),
            ("pga", 2, ONEOF, (1, 2, 4), None, ""),
            ("ugain_l1", 41820, INT, 1, 65535, ""),
            ("ugain_l2", 41820, INT, 1, 65535, ""),
            ("ugain_l3", 41820, INT, 1, 65535, ""),
            ("igain_l1", 25498, INT, 1, 65535, ""),
            ("igain_l2", 25498, INT, 1, 65535, ""),
            ("igain_l3", 25498, INT, 1, 65535, ""),
            upside_down_row,
            ("invert_l1", False, BOOL, None, None, ""),
            ("invert_l2", False, BOOL, None, None, ""),
            ("invert_l3", False, BOOL, None, None, ""),
            # 3: a voltage input per phase (signed power on each); 1: one shared
            # (L1's), so L2 and L3 are read as import, magnitude only.
            ("voltage_inputs", 3, ONEOF, (1, 3), None, ""),
            ("poll_ms", 1000, INT, 200, 10000, "ms"),
        )
    if kind == "ct":
        return (
            type_row,
            ("turns", 2000, INT, 100, 10000, ""),
            ("burden_ohm", 33, INT, 1, 10000, "ohm"),
            ("vref_mv", 3100, INT, 1000, 3600, "mV"),
            ("factor_ua", 0, ZERO_OR, 100, 500000, "uA", "from turns and burden"),
            # One clamp's own factor (clamps differ by a few %), 0 = factor_ua's.
            ("factor_ua_l1", 0, ZERO_OR, 100, 500000, "uA", "the meter's factor"),
            ("factor_ua_l2", 0, ZERO_OR, 100, 500000, "uA", "the meter's factor"),
            ("factor_ua_l3", 0, ZERO_OR, 100, 500000, "uA", "the meter's factor"),
            ("mains_hz", 50, ONEOF, (50, 60), None, "Hz"),
            ("floor_ma", 200, INT, 0, 5000, "mA"),
        )
    return (
        type_row,
        ("l1_topic", "", text, 0, 128, ""),
        ("l2_topic", "", text, 0, 128, ""),
        ("l3_topic", "", text, 0, 128, ""),
        ("phase_unit", "A", ENUM, ("A", "W", "kW"), None, ""),
        ("l1_key", "", opt_text, 1, 32, ""),
        ("l2_key", "", opt_text, 1, 32, ""),
        ("l3_key", "", opt_text, 1, 32, ""),
        ("power_topic", "", text, 0, 128, ""),
        ("power_key", "", opt_text, 1, 32, ""),
        ("power_unit", "W", ENUM, ("W", "kW"), None, ""),
        upside_down_row,
    )


def check(errors, meter, phases, mqtt, topic_error):
    """Cross-field rules; `meter`: the fields valid on their own, `phases`: site.phases, `mqtt`: the mqtt section's.

    A meter fed over MQTT: its topics are exact names (topic_error: config.py's
    rule, no wildcards), one per site phase or none, and per-phase values or
    the net power at least; the broker (mqtt.host) must be set. CT clamps have
    no cross-field rule here (the board's pins are checked when the ADC opens).
    """
    if meter.get("type") != "mqtt":
        return
    for key in ("l1_topic", "l2_topic", "l3_topic", "power_topic"):
        topic = meter.get(key)
        if topic:
            message = topic_error(topic, 1, 128)
            if message:
                errors.add("meter." + key, message)
    given = [bool(meter.get(key)) for key in ("l1_topic", "l2_topic", "l3_topic")]
    if phases == 1 and (given[1] or given[2]):
        errors.add("meter.l2_topic" if given[1] else "meter.l3_topic",
                   "must be empty on a 1-phase site (only l1_topic)", "site.phases")
    elif phases == 3 and any(given) and not all(given):
        missing = ("meter.l1_topic", "meter.l2_topic", "meter.l3_topic")[given.index(False)]
        errors.add(missing, "must be set: a 3-phase site needs all three per-phase topics or none"
                   " (a phase without a value would be taken as unloaded)", "site.phases")
    if not any(given) and not meter.get("power_topic"):
        errors.add("meter.power_topic", "must be set when no per-phase topic is: the meter needs a value to read")
    if mqtt.get("host") == "":
        errors.add("mqtt.host", "must be set for a meter of type mqtt: the broker's IPv4 address or host name",
                   "meter.type")
