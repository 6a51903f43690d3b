"""The configuration document: schema, defaults, validation, migration, storage.

One JSON document (human units, integers only) describes the installation.
Version 1 (CURRENT_VERSION):

    {"version": 1,
     "name": "ChargeGuard",            1..32 printable characters
     "site": {"phases": 3,             1 or 3
              "voltage_v": 230,        100..260 V, nominal phase voltage
              "breaker_a": 25,         6..630 A, main breaker per phase
              "margin_a": 1,           0..624 A and breaker_a - margin_a >= 6
              "max_import_w": 0,       0 = no contracted limit, else 1000..500000 W
              "scheme": "grid",        "grid" (meter sees house + chargers) | "house"
              "balanced_load": false,  true: a totals-only meter's house load is
                                       taken as spread evenly over the phases;
                                       false: it may all be on one phase (safe)
              "mode": "fast",          MODES: the mode of every charger whose own
                                       mode is "site" (the default)
              "distribution": "priority",  DISTRIBUTIONS (Dynamic OCPP EVSE's modes):
                                       how chargers share the surplus / the room
              "peak_limit_w": 0,       capacity tariff: 0 = off, else 2500..500000 W,
                                       every quarter-hour's average import stays under it
              "peak_follow_month": false,  true: the limit rises to this month's
                                       peak (meter 1-0:1.6.0) once that is higher
              "timezone": "UTC0"},     POSIX TZ rule of local time (energy today
                                       starts at local midnight), core/tzparse.py
     "guard": {"meter_timeout_s": 10,  2..300
               "min_pause_s": 180,     0..3600
               "ramp_step_a": 2,       1..32, largest increase per ramp interval
               "ramp_interval_s": 5,   1..60
               "ev_response_s": 5},    0..30, time a car may take to follow a lower limit
     "meter": {"type": "p1",           METER_TYPES
               "baud": 115200,         BAUD_RATES (9600 | 115200)
               "format": "8N1",        UART_FORMATS ("8N1" | "7E1"); p1 at 9600 baud needs 7E1
               "invert": true},
              a meter fed over MQTT ("type": "mqtt", broker of the mqtt section) has instead:
              {"type": "mqtt",
               "l1_topic": "", "l2_topic": "", "l3_topic": "",  per-phase values:
                                       one topic per site phase, or none
               "phase_unit": "A",      "A" | "W" | "kW"
               "l1_key": "", ...       "" = the payload is a number, else the JSON member
               "power_topic": "",      the net power, import positive (or none)
               "power_key": "", "power_unit": "W",  "W" | "kW"
               "upside_down": false}   true: every power negated
              CT clamps on the board's ct_adc_pins ("type": "ct") have instead:
              {"type": "ct", "turns": 2000,  100..10000, the clamp's ratio (SCT-013-000: 2000)
               "burden_ohm": 33,       1..10000 ohm; "vref_mv": 3100: 1000..3600, ADC full scale
               "factor_ua": 0,         0 = from turns and burden, else 100..500000 uA a step
               "mains_hz": 50,         50 | 60; "floor_ma": 200: 0..5000, below reads 0
              an ATM90E32 metering IC on the board's atm90e32_spi pins ("type": "atm90e32") has instead:
              {"type": "atm90e32", "line_hz": 50,  50 | 60; "pga": 2: 1 | 2 | 4, current gain
               "ugain_l1": 41820, ... "ugain_l3",  1..65535, the chip's voltage calibration
               "igain_l1": 25498, ... "igain_l3",  1..65535, its current calibration
               "upside_down": false,   true: every phase's power negated
               "invert_l1": false, ... "invert_l3",  true: that phase's power negated
               "poll_ms": 1000}        200..10000
              a HAN port ("type": "han": DLMS/COSEM lists, Norway) on the P1 UART has instead:
              {"type": "han", "baud": 2400,  2400 | 9600; "format": "8E1": "8E1" | "8N1"
               "invert": false}        true: the transceiver's output is inverted
              a Modbus meter ("type": "modbus") has instead:
              {"type": "modbus",
               "model": "sdm630",      required: a name of meters/modbus_models.MODELS, or
                                       "custom" (then "custom" is the register map)
               "address": 1,           1..247, the meter's Modbus unit address
               "host": "",             empty = RTU on the board's RS485 port; else
                                       Modbus TCP to this IPv4 address or host name
               "port": 502,            1..65535 (TCP)
               "baud": 9600,           MODBUS_BAUD_RATES (RTU)
               "format": "8N1",        MODBUS_FORMATS: "8N1" | "8E1" | "8O1" | "8N2" (RTU)
               "upside_down": false,   true: the meter is mounted the wrong way round
                                       (every power negated, import and export swapped)
               "poll_ms": 1000,        200..10000, one reading this often
               "custom": null}         with model "custom": the register map, see
                                       docs/configuration.md
              a LAN meter over HTTP ("type": "http", docs/meters.md) has instead:
              {"type": "http",
               "model": "homewizard",  required: meters/http_models.MODELS
               "host": "",             required: the meter's IPv4 address or host name
               "port": 80,             1..65535
               "channel": 0,           0..2: the EM1 channel (shelly_em1) or emeter
                                       (shelly_em_gen1: 0..1); 0 for the other models
               "upside_down": false,   true: the meter (its CT clamps) the wrong way round
               "poll_ms": 1000,        500..10000 (HomeWizard: not faster than 500 ms)
               "token": "",            secret: homewizard_v2 only, required there: the 32
                                       hex digits (A-F, 0-9) the meter gave at pairing
               "ca_file": "homewizard-ca.pem",  homewizard_v2: the CA certificate (PEM or
                                       DER) on the device's flash that the meter's
                                       certificate must chain to
               "cert_hostname": ""}    homewizard_v2, required: the name in the meter's
                                       certificate, appliance/<type>/<serial>
                                       (port 80 means 443 for homewizard_v2)
     "chargers": [                     0..MAX_CHARGERS entries
        {"name": "Charger 1",          1..32 printable characters, unique (ignoring case)
         "type": "v2c_trydan",         CHARGER_TYPES
         "host": "",                   numeric IPv4 (unicast) or a host name; required
         "port": 80,                   1..65535 (502 for the Modbus types, 7090 for keba_p30)
         "unit": 1,                    Modbus types only (chargers/entries.py): the unit id
                                       1..247 (an Alfen socket: 1, or 2 for the right one)
         "phases": 3,                  1..3 and at most site.phases
         "phase_map": "ABC",           `phases` distinct letters from the site's phases:
                                       the site phase of the charger's L1, L2, L3
         "min_a": 6,                   6..32
         "max_a": 16,                  6..32 and >= min_a (shelly_load: = min_a, its default)
         "circuit_a": 16,              6..80 and >= min_a
         "priority": 1,                the priorities of all chargers are a permutation of 1..N
         "failsafe_a": 0,              0 = pause, else min_a..max_a
         "mode": "site",               CHARGER_MODES: "site" = follow site.mode, else MODES
         "manual_a": 6,                min_a..max_a, used in manual mode
         "enabled": true}],
     "solar": {"eco": true,            EVCM's ECO switch: true = the "ECO on" band
               "eco_on_upper_w": 4000,  thresholds: net power at the grid in W, EXPORT
               "eco_on_lower_w": -500,  POSITIVE (as in EVCM), each -100000..100000;
               "eco_off_upper_w": 1000, lower < upper in each band; the ECO on band
               "eco_off_lower_w": -3500,  above the ECO off band (both thresholds)
               "net_power_target_w": 0,  -100000..100000, >= each band's lower + 300
               "start_delay_s": 60,    0..3600, export >= upper this long: start
               "stop_delay_s": 180,    0..3600, net power < lower this long: pause
               "min_on_s": 120,        0..3600, a started car runs at least this long
               "min_off_s": 180,       0..3600, a paused car rests at least this long
               "excess_threshold_w": 13000},  0..1000000, `excess` mode charges on
                                       the export beyond it
     "wifi": {"ssid": "",              at most 32 bytes (UTF-8); empty = no Wi-Fi
              "password": "",          secret: empty (open network) or 8..63 characters
              "hostname": "chargeguard",  1..32 letters, digits, '-' (one DNS label)
              "ip": "",                empty = DHCP, else the fixed IPv4 address
              "netmask": "255.255.255.0",  with ip: a contiguous IPv4 mask
              "gateway": "",           with ip: required, inside ip/netmask
              "dns": "",               with ip: the DNS server (empty = the gateway)
              "ntp_server": "pool.ntp.org",  host name or IPv4; empty = no time sync
              "ap_password": ""},      secret: the setup access point's password: empty
                                       (an open network) or 8..63 characters
     "mqtt": {"enabled": false,        true: publish to (and take commands from) a broker
              "host": "",              the broker's IPv4 or host name; required when enabled
              "port": 1883,            1..65535
              "user": "",              empty = no login, else 1..64 printable characters
              "password": "",          secret: empty or 1..128 printable characters
              "client_id": "",         empty = "chargeguard-" + wifi.hostname, else 1..64
                                       letters, digits, '-', '_', '.'
              "topic_prefix": "chargeguard",  TOPIC_RULES: 1..64 printable characters,
              "discovery_prefix": "homeassistant",  no '+', '#', spaces, leading or
                                       trailing '/', or empty levels ("a//b")
              "keepalive_s": 30},      2..3600: a silent broker is taken as gone after this
     "web": {"enabled": false,         true: serve the status page and the REST API (docs/api.md)
             "port": 80},              1..65535 (the unix port: CHARGEGUARD_WEB_PORT, default 8080)
     "ocpp": {"enabled": false,        true: run the OCPP central system without an ocpp charger
              "port": 8887,            1..65535 (the unix port: CHARGEGUARD_OCPP_PORT)
              "ping_s": 20,            0..3600, a WebSocket ping to each box this often
              "max_message": 4096,     1024..16384 bytes a box's message may have
              "accept_unknown": false},  true: unknown charge point ids are served as discovered
     "admin": {"password": ""}}        secret: empty (not set yet: the web refuses every
                                       change) or 8..64 characters; the web's password

A charger of type "ocpp" (docs/ocpp.md; its rows: chargers/ocpp_entry.py) has no host and port but charge_point_id (required,
1..48 characters), password (secret, empty or 8..64), unit ("auto" | "A" | "W"), stack_level
(-1..8), profile_connector (-1..1), pause ("auto" | "zero" | "stop"), remote_start_stop (false),
id_tags ("" or 1..200 characters), meter_interval_s (10, 0..3600) and profile_kind ("absolute" | "relative").

A missing key is filled from the defaults. A missing charger key gets a
default that fits the entry: name "Charger N", priority N (its place in the
list), phases = site phases, phase_map = the first `phases` of "ABC",
circuit_a = max_a, manual_a = min_a; the rest from the charger defaults above.
Unknown keys are errors: this firmware wrote every key it knows, so an
unknown one is a typo or a document for another version (documents from a
newer firmware are refused by their version number, not key by key).
Values must have the exact JSON type: `true` is not a number, 16.0 and "16"
are not whole numbers.

Public API (no function mutates its argument):
    CURRENT_VERSION, MAX_CONFIG_BYTES, MAX_CHARGERS, MAX_NOTE_ERRORS, METER_TYPES, CHARGER_TYPES,
    MODES, CHARGER_MODES, DISTRIBUTIONS, SCHEMES, BAUD_RATES, UART_FORMATS, MODBUS_BAUD_RATES,
    MODBUS_FORMATS, SECRET_PATHS, REDACTED,
    CONFIG_FILE, BACKUP_FILE, TEMP_FILE
    defaults() -> a fresh complete default document
    charger_defaults() -> a fresh default charger entry
    complete(doc) -> copy with every missing key filled (no migration)
    migrate(doc) -> copy brought to CURRENT_VERSION; ValueError(message) when
        the version is not a whole number, unknown, or newer than this firmware
    normalise(doc) -> complete(migrate(doc))
    validate(doc) -> [(path, message)], [] when valid; completes a partial
        document first; paths like "chargers.0.max_a", "" for the document
    check(doc, limit=None) -> (normalised doc, errors): migrate + complete +
        validate, with a bad version reported as an error instead of raised;
        every error, or `limit` of them and a last ("", "and N more errors")
    redacted(doc) -> copy with every non-empty secret replaced by REDACTED
    restore_secrets(doc, current) -> copy of doc whose secrets still equal
        REDACTED (an edited export) take the value from `current`
    save(directory, doc) -> the normalised doc that was written; raises
        ConfigError (a ValueError, .errors = [(path, message)]) and writes
        nothing when the document is invalid or too large
    load(directory) -> (doc, notes): config.json, else config.bak, else
        defaults; notes are sentences for the owner, never containing secrets
    load_for_boot(directory, new=True) -> (doc, notes, source, good): load()
        plus where doc came from and, when config.json is new, its checksum
        for remember()
    remember(directory, good) -> copies config.json to config.bak once it has
        run (atomic; `good` from load_for_boot(), None when nothing to do)
    ConfigError(errors)

Files: config.json is the configuration the owner installs (make deploy,
later the portal); config.bak is the last good copy: the configuration
that last booted and ran (the app calls remember() once it has guarded
with it), and the document save() replaced. A config.json that is invalid
is never applied and never replaces config.bak: the device keeps guarding
with config.bak and the notes name each refused setting.

Errors name only fields the author wrote, or say which written field they
follow from (a default that conflicts with it); a follow-on of a field
that is itself wrong is not listed (fixing that field fixes both).

Messages never contain a secret's value. load() never writes; an app that
got notes may save() the document to repair the files.
"""

import json
import os

from micropython import const

from chargeguard import rules
from chargeguard.core.modes import MODES
from chargeguard.drivers import CHARGER_MODULES, METER_MODULES

CURRENT_VERSION = const(1)
MAX_CONFIG_BYTES = const(8192)
MAX_CHARGERS = const(8)
MAX_NOTE_ERRORS = const(10)  # refused settings listed in the notes at start-up

# Exactly what the firmware can run: the driver table and the core's modes.
METER_TYPES = tuple(sorted(METER_MODULES))
CHARGER_TYPES = tuple(sorted(CHARGER_MODULES))
SCHEMES = ("grid", "house")
# A charger's mode: "site" follows site.mode (so one switch sets them all).
CHARGER_MODES = rules.CHARGER_MODES
# core/optsettings.DISTRIBUTIONS (not imported: it would stay loaded after boot).
DISTRIBUTIONS = rules.DISTRIBUTIONS
BAUD_RATES = (9600, 115200)
UART_FORMATS = ("8N1", "7E1")
MODBUS_BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
MODBUS_FORMATS = ("8N1", "8E1", "8O1", "8N2")
SECRET_PATHS = (
    ("wifi", "password"), ("wifi", "ap_password"), ("admin", "password"), ("mqtt", "password"), ("meter", "token"),
)  # fmt: skip
REDACTED = "***"

CONFIG_FILE = "config.json"
BACKUP_FILE = "config.bak"
OVERLAY_FILE = "overrides.json"  # settings changed at run time (commands.py)
TEMP_FILE = "config.json.tmp"
_MISSING = "is missing"

# Field kinds of the schema tables below.
# The kinds and the runtime-settable fields are rules.py's (commands.py
# checks a change with them without loading this module).
_INT = const(0)  # whole number in a..b (rules.INT)
_ONEOF = const(1)  # whole number from the tuple a (rules.ONEOF)
_BOOL = const(2)  # rules.BOOL
_TEXT = const(3)  # a..b printable characters
_ENUM = const(4)  # string from the tuple a (rules.ENUM)
_SECRET = const(5)  # empty or a..b printable characters; value never shown
_SSID = const(6)  # at most b bytes of UTF-8
_HOST = const(7)
_ZERO_OR = const(8)  # 0 (meaning given in the 7th item) or a..b (rules.ZERO_OR)
_PHASE_MAP = const(9)
_LABEL = const(10)  # one DNS label of a..b characters (a hostname)
_IPV4 = const(11)  # empty or a dotted-decimal IPv4 address
_OPT_HOST = const(12)  # empty or a host name / IPv4 address
_MAP = const(13)  # null or an object, checked by its own rules
_OPT_TEXT = const(14)  # empty or a..b printable characters
_TOPIC = const(15)  # an MQTT topic prefix of a..b characters (see _topic_error)
_CLIENT_ID = const(16)  # empty or a..b of letters, digits, '-', '_', '.'
_TZ = const(17)  # a POSIX TZ rule of a..b characters (core/tzparse.parse)

_PHASE_LETTERS = const("ABC")
_POWER_W = const(100000)
_MIN_CURRENT_A = const(6)  # IEC 61851: no car charges below 6 A

# (key, default, kind, a, b, unit[, meaning of 0]); tables give the key order
# of the document and of the error list. The tables made of constants only
# are const(): their names are then not interned on MicroPython (a table
# name would stay on the heap for good after this module is unloaded).
_TOP = const((("name", "ChargeGuard", _TEXT, 1, 32, ""),))
_SITE = (
    ("phases", 3, _ONEOF, (1, 3), None, ""),
    ("voltage_v", 230, _INT, 100, 260, "V"),
    ("breaker_a", 25, _INT, 6, 630, "A"),
    ("margin_a", 1, _INT, 0, 624, "A"),
    ("max_import_w", 0, _ZERO_OR, 1000, 500000, "W", "no limit"),
    ("scheme", "grid", _ENUM, SCHEMES, None, ""),
    ("balanced_load", False, _BOOL, None, None, ""),
    rules.SITE_MODE,
    rules.DISTRIBUTION,
    rules.PEAK_LIMIT,
    rules.PEAK_FOLLOW,
    ("timezone", "UTC0", _TZ, 1, 64, ""),
)
_GUARD = const((
    ("meter_timeout_s", 10, _INT, 2, 300, "s"),
    ("min_pause_s", 180, _INT, 0, 3600, "s"),
    ("ramp_step_a", 2, _INT, 1, 32, "A"),
    ("ramp_interval_s", 5, _INT, 1, 60, "s"),
    ("ev_response_s", 5, _INT, 0, 30, "s"),
))
_METER = (
    ("type", "p1", _ENUM, METER_TYPES, None, ""),
    ("baud", 115200, _ONEOF, BAUD_RATES, None, "baud"),
    ("format", "8N1", _ENUM, UART_FORMATS, None, ""),
    ("invert", True, _BOOL, None, None, ""),
)
# The meter sections of the other types (modbus, http, mqtt, ct, han, atm90e32) are
# meters/meter_fields.py's, loaded only to complete and check such a section.
_WIFI = const((
    ("ssid", "", _SSID, 0, 32, ""),
    ("password", "", _SECRET, 8, 63, ""),
    ("hostname", "chargeguard", _LABEL, 1, 32, ""),
    ("ip", "", _IPV4, None, None, ""),
    ("netmask", "255.255.255.0", _IPV4, None, None, ""),
    ("gateway", "", _IPV4, None, None, ""),
    ("dns", "", _IPV4, None, None, ""),
    ("ntp_server", "pool.ntp.org", _OPT_HOST, None, None, ""),
    ("ap_password", "", _SECRET, 8, 63, ""),
))
_SOLAR = (
    rules.ECO,
    ("eco_on_upper_w", 4000, _INT, -_POWER_W, _POWER_W, "W"),
    ("eco_on_lower_w", -500, _INT, -_POWER_W, _POWER_W, "W"),
    ("eco_off_upper_w", 1000, _INT, -_POWER_W, _POWER_W, "W"),
    ("eco_off_lower_w", -3500, _INT, -_POWER_W, _POWER_W, "W"),
    rules.NET_TARGET,
    ("start_delay_s", 60, _INT, 0, 3600, "s"),
    ("stop_delay_s", 180, _INT, 0, 3600, "s"),
    ("min_on_s", 120, _INT, 0, 3600, "s"),
    ("min_off_s", 180, _INT, 0, 3600, "s"),
    ("excess_threshold_w", 13000, _INT, 0, 1000000, "W"),
)
_SOLAR_RULES = rules.SOLAR_RULES  # EVCM's cross-field rules of the solar section
_ADMIN = const((("password", "", _SECRET, 8, 64, ""),))
_MQTT = const((
    ("enabled", False, _BOOL, None, None, ""),
    ("host", "", _OPT_HOST, None, None, ""),
    ("port", 1883, _INT, 1, 65535, ""),
    ("user", "", _OPT_TEXT, 1, 64, ""),
    ("password", "", _SECRET, 1, 128, ""),
    ("client_id", "", _CLIENT_ID, 1, 64, ""),
    ("topic_prefix", "chargeguard", _TOPIC, 1, 64, ""),
    ("discovery_prefix", "homeassistant", _TOPIC, 1, 64, ""),
    ("keepalive_s", 30, _INT, 2, 3600, "s"),
))
_WEB = const((
    ("enabled", False, _BOOL, None, None, ""),
    ("port", 80, _INT, 1, 65535, ""),
))
# The rows of every charger entry. A type with rules of its own
# (drivers.CHARGER_MODULES: chargers/entries.py, chargers/ocpp_entry.py)
# completes and checks its entry with these plus its own rows (an OCPP box's
# replace host and port, rows 2 and 3).
_CHARGER = (
    ("name", "Charger 1", _TEXT, 1, 32, ""),
    ("type", "v2c_trydan", _ENUM, CHARGER_TYPES, None, ""),
    ("host", "", _HOST, None, None, ""),
    ("port", 80, _INT, 1, 65535, ""),
    ("phases", 3, _INT, 1, 3, ""),
    ("phase_map", "ABC", _PHASE_MAP, None, None, ""),
    rules.MIN_A,
    rules.MAX_A,
    ("circuit_a", 16, _INT, 6, 80, "A"),
    rules.PRIORITY,
    ("failsafe_a", 0, _ZERO_OR, 6, 32, "A", "pause"),
    rules.MODE,
    rules.MANUAL_A,
    rules.ENABLED,
)
_OCPP = const((
    ("enabled", False, _BOOL, None, None, ""),
    ("port", 8887, _INT, 1, 65535, ""),
    ("ping_s", 20, _INT, 0, 3600, "s"),
    ("max_message", 4096, _INT, 1024, 16384, ""),
    ("accept_unknown", False, _BOOL, None, None, ""),
))
_SECTIONS = (
    ("site", _SITE),
    ("guard", _GUARD),
    ("meter", _METER),
    ("solar", _SOLAR),
    ("wifi", _WIFI),
    ("admin", _ADMIN),
    ("mqtt", _MQTT),
    ("web", _WEB),
    ("ocpp", _OCPP),
)
_TOP_KEYS = const(("version", "name", "site", "guard", "meter", "chargers", "solar", "wifi", "admin", "mqtt", "web", "ocpp"))

# Beyond this depth nothing in a valid document nests; a deeper value is
# shared instead of copied so a hostile file cannot exhaust the C stack.
_COPY_DEPTH = const(6)


class ConfigError(ValueError):
    """An invalid document; `errors` is the list of (path, message)."""

    def __init__(self, errors):
        super().__init__("invalid config: " + _summary(errors, 5))
        self.errors = errors


# ---------------------------------------------------------------- defaults


def defaults():
    """A fresh, complete, valid default document (no chargers)."""
    doc = _fill({"version": CURRENT_VERSION, "chargers": []}, _TOP)
    for name, table in _SECTIONS:
        doc[name] = _fill({}, table)
    return doc


def charger_defaults():
    """A fresh default charger entry (its host still has to be set)."""
    return _fill({}, _CHARGER)


def _meter_table(section):
    # The fields of the meter section depend on its type. Every type but p1
    # has its rows in meters/meter_fields.py, loaded for the call and
    # unloaded again: a P1 site never holds them, another site only while
    # its section is completed or checked.
    kind = section.get("type")
    if kind not in ("modbus", "http", "mqtt", "ct", "han", "atm90e32"):
        return _METER
    import sys
    import chargeguard.meters
    from chargeguard.meters import meter_fields

    try:
        return meter_fields.table(
            kind, _METER[0], _TEXT, _OPT_TEXT, _OPT_HOST, _MAP, MODBUS_BAUD_RATES, MODBUS_FORMATS, _SECRET
        )
    finally:
        sys.modules.pop("chargeguard.meters.meter_fields", None)
        if "meter_fields" in chargeguard.meters.__dict__:
            delattr(chargeguard.meters, "meter_fields")


def _entry_rules(kind):
    # The module with the rules of charger type `kind` beyond _CHARGER (its
    # own keys, defaults and checks; drivers.CHARGER_MODULES), imported now:
    # a site without such a type never loads it. None when the type has none
    # or is unknown (_CHARGER's "type" row then says so).
    row = CHARGER_MODULES.get(kind) if type(kind) is str else None
    if row is None or row[1] is None:
        return None
    return __import__(row[1], None, None, ("check",))


def _copy(value, depth=0):
    if depth > _COPY_DEPTH:
        return value
    if type(value) is dict:
        out = {}
        for key in value:
            out[key] = _copy(value[key], depth + 1)
        return out
    if type(value) is list:
        return [_copy(item, depth + 1) for item in value]
    return value


def _fill(section, table):
    # Adds the missing keys in place: callers pass their own copy.
    for spec in table:
        if spec[0] not in section:
            section[spec[0]] = spec[1]
    return section


_is_int = rules.is_int


def _complete_charger(out, index, site_phases):
    # In place, on complete()'s copy.
    if "name" not in out:
        out["name"] = "Charger %d" % (index + 1)
    if "priority" not in out:
        out["priority"] = index + 1
    if "phases" not in out:
        out["phases"] = site_phases if _is_int(site_phases) and site_phases in (1, 3) else 3
    phases = out["phases"]
    if "phase_map" not in out:
        out["phase_map"] = _PHASE_LETTERS[:phases] if _is_int(phases) and 1 <= phases <= 3 else _PHASE_LETTERS
    if "max_a" not in out and out.get("type") == "shelly_load" and _is_int(out.get("min_a")):
        out["max_a"] = out["min_a"]  # an on/off load's one step
    if "circuit_a" not in out and _is_int(out.get("max_a")):
        out["circuit_a"] = out["max_a"]
    if "manual_a" not in out and _is_int(out.get("min_a")):
        out["manual_a"] = out["min_a"]
    rules_module = _entry_rules(out.get("type"))
    if rules_module is not None:
        return rules_module.complete(out, _fill, _CHARGER)
    return _fill(out, _CHARGER)


def complete(doc):
    """Copy of `doc` with every missing key filled from the defaults.

    Values of the wrong type are kept as they are, for validate() to report.
    """
    if type(doc) is not dict:
        return _copy(doc)
    return _complete(_copy(doc))


def _complete(out):
    # In place, on a copy the caller owns.
    if "version" not in out:
        out["version"] = CURRENT_VERSION
    for spec in _TOP:
        if spec[0] not in out:
            out[spec[0]] = spec[1]
    for name, table in _SECTIONS:
        section = out.get(name)
        if name not in out:
            out[name] = _fill({}, table)
        elif type(section) is dict:
            _fill(section, _meter_table(section) if name == "meter" else table)
    site = out["site"]
    site_phases = site.get("phases") if type(site) is dict else None
    chargers = out.get("chargers")
    if "chargers" not in out:
        out["chargers"] = []
    elif type(chargers) is list and len(chargers) <= MAX_CHARGERS:
        # An over-long list is left alone: validate() reports the count, and
        # expanding thousands of entries would exhaust the heap.
        for index in range(len(chargers)):
            if type(chargers[index]) is dict:
                chargers[index] = _complete_charger(chargers[index], index, site_phases)
    return out


# --------------------------------------------------------------- migration


def _v0_to_v1(doc):
    # Version 0 (pre-release) was flat: {"version": 0, "breaker": 25,
    # "phases": 3, "voltage": 230, "margin": 1, "ssid": "", "password": "",
    # "trydan": "192.168.1.60"}; every key optional. Keys it did not know
    # are left where they are, so validation names them instead of losing them.
    site = {}
    for old, new in (("breaker", "breaker_a"), ("phases", "phases"), ("voltage", "voltage_v"), ("margin", "margin_a")):
        if old in doc:
            site[new] = doc.pop(old)
    wifi = {}
    for key in ("ssid", "password"):
        if key in doc:
            wifi[key] = doc.pop(key)
    chargers = []
    host = doc.pop("trydan", "")
    if host != "":
        chargers.append({"name": "Trydan", "type": "v2c_trydan", "host": host})
    doc["site"] = site
    doc["wifi"] = wifi
    doc["chargers"] = chargers
    return doc


# Index = the version a step migrates from; step N turns N into N + 1.
_MIGRATIONS = (_v0_to_v1,)


def _version_problem(doc):
    # Why `doc` cannot be migrated (a phrase following "version"), or None.
    version = doc.get("version", CURRENT_VERSION)
    if not _is_int(version):
        return "must be a whole number (is %s)" % _show(version)
    if version > CURRENT_VERSION:
        return "%d is newer than this firmware understands (%d): update the firmware" % (version, CURRENT_VERSION)
    if version < 0:
        return "%d is unknown" % version
    return None


def migrate(doc):
    """Copy of `doc` brought to CURRENT_VERSION (a missing version counts as current).

    Raises ValueError with a sentence for the owner when the document is not
    an object or its version is not a whole number, unknown or too new.
    """
    if type(doc) is not dict:
        raise ValueError("the config must be a JSON object (is %s)" % _show(doc))
    problem = _version_problem(doc)
    if problem:
        raise ValueError("version " + problem)
    version = doc.get("version", CURRENT_VERSION)
    out = _copy(doc)
    out["version"] = version
    while version < CURRENT_VERSION:
        out = _MIGRATIONS[version](out)
        version += 1
        out["version"] = version
    return out


def normalise(doc):
    """complete(migrate(doc)); raises ValueError like migrate()."""
    return complete(migrate(doc))


# -------------------------------------------------------------- validation


_show = rules.show


def _kind_of(value):
    # Type description that reveals nothing of the value (for secrets).
    kind = type(value)
    if kind is str:
        return "text"
    if kind is bool:
        return "true/false"
    if kind is int or kind is float:
        return "a number"
    return _show(value)


_range = rules.range_text


# Text is checked as its UTF-8 bytes: on MicroPython each character taken
# from a str (iterating, indexing) is interned as a name for good, so every
# letter of a name, a host or a password would stay in the heap.


def _printable(text):
    # No C0 control, DEL or C1 control (U+0080..U+009F: the bytes C2 80..C2 9F).
    after_c2 = False
    for code in text.encode("utf-8", "surrogatepass"):
        if code < 32 or code == 127 or after_c2 and code < 160:
            return False
        after_c2 = code == 194
    return True


def _digits(text):
    if not text:
        return False
    for code in text.encode("utf-8", "surrogatepass"):
        if not 48 <= code <= 57:  # '0'..'9'
            return False
    return True


def _ipv4(text):
    # The four octets, or None when `text` is not a dotted-decimal address.
    parts = text.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for part in parts:
        # Leading zeros are refused: some resolvers read them as octal.
        if not _digits(part) or len(part) > 3 or (len(part) > 1 and part.startswith("0")):
            return None
        value = int(part)
        if value > 255:
            return None
        octets.append(value)
    return octets


def _hostname(text):
    if len(text) > 253:
        return False
    labels = text.split(".")
    for label in labels:
        if not 1 <= len(label) <= 63 or label.startswith("-") or label.endswith("-"):
            return False
        for code in label.encode("utf-8", "surrogatepass"):
            # a-z, A-Z, 0-9, '-'
            if not (97 <= code <= 122 or 65 <= code <= 90 or 48 <= code <= 57 or code == 45):
                return False
    # An all-digit last label would be a mistyped address, not a name (RFC 1123).
    return not _digits(labels[-1])


def _client_id(text):
    # The characters every broker accepts in a client identifier (MQTT 3.1.1, 3.1.3.1).
    for code in text.encode("utf-8", "surrogatepass"):  # bytes: a character taken from a str is interned
        if not (97 <= code <= 122 or 65 <= code <= 90 or 48 <= code <= 57 or code in b"-_."):
            return False
    return True


def _topic_error(text, low, high):
    # A topic prefix names topics the firmware publishes to: no wildcards
    # (MQTT forbids them in a published topic), no blanks, no empty levels.
    if not low <= len(text) <= high:
        return "must be %d to %d characters long (is %d)" % (low, high, len(text))
    if not _printable(text) or " " in text:
        return "must not contain spaces or control characters (is %s)" % _show(text)
    if "+" in text or "#" in text:
        return "must not contain the MQTT wildcards '+' or '#' (is %s)" % _show(text)
    if text.startswith("/") or text.endswith("/") or "//" in text:
        return "must not start or end with '/' or have empty levels ('//') (is %s)" % _show(text)
    return None


def _timezone_error(text, low, high):
    # Parsed by the module that uses it at run time: what passes here runs.
    # The default needs no parser (not loaded at boot then: the start-up peak).
    if not low <= len(text) <= high:
        return "must be %d to %d characters long (is %d)" % (low, high, len(text))
    if text == "UTC0":
        return None
    from chargeguard.core import tzparse

    try:
        tzparse.parse(text)
    except ValueError as error:
        return "must be a POSIX TZ rule like \"CET-1CEST,M3.5.0,M10.5.0/3\" or \"UTC0\": %s (is %s)" % (
            error.args[0],
            _show(text),
        )
    return None


def _check(errors, path, spec, value):
    # Reports what is wrong with one value; True when it is fine on its own.
    kind = spec[2]
    low = spec[3]
    high = spec[4]
    unit = spec[5]
    message = None
    if kind <= _BOOL or kind == _ENUM or kind == _ZERO_OR:
        message = rules.field_message(spec, value)
    elif kind == _MAP:
        if value is not None and type(value) is not dict:
            message = "must be an object or null (is %s)" % _show(value)
    elif type(value) is not str:
        message = "must be text (is %s)" % (_kind_of(value) if kind == _SECRET else _show(value))
    elif kind == _TEXT:
        if not low <= len(value) <= high:
            message = "must be %d to %d characters long (is %d)" % (low, high, len(value))
        elif not _printable(value):
            message = "must not contain control characters"
    elif kind == _SECRET:
        if value and (not low <= len(value) <= high or not _printable(value)):
            # Neither the value nor its length: both help a guesser.
            message = "must be empty or %d to %d printable characters long" % (low, high)
    elif kind == _SSID:
        size = len(value.encode())
        if size > high:
            message = "must be at most %d bytes long (is %d)" % (high, size)
        elif not _printable(value):
            message = "must not contain control characters"
    elif kind == _LABEL:
        if not low <= len(value) <= high or not _hostname(value) or "." in value:
            message = "must be %d to %d letters, digits or '-', not starting or ending with '-' (is %s)" % (
                low,
                high,
                _show(value),
            )
    elif kind == _IPV4:
        if value and _ipv4(value) is None:
            message = "must be empty or an IPv4 address like 192.168.1.20 (is %s)" % _show(value)
    elif kind == _OPT_HOST and value == "":
        pass
    elif kind == _OPT_TEXT:
        if value and (not low <= len(value) <= high or not _printable(value)):
            message = "must be empty or %d to %d printable characters long (is %s)" % (low, high, _show(value))
    elif kind == _CLIENT_ID:
        if value and (not low <= len(value) <= high or not _client_id(value)):
            message = "must be empty or %d to %d letters, digits, '-', '_' or '.' (is %s)" % (low, high, _show(value))
    elif kind == _TOPIC:
        message = _topic_error(value, low, high)
    elif kind == _TZ:
        message = _timezone_error(value, low, high)
    elif kind == _HOST or kind == _OPT_HOST:
        octets = _ipv4(value)
        if value == "":
            message = "must be set: the charger's IPv4 address or host name"
        elif octets is not None:
            if octets[0] == 0 or octets[0] >= 224:
                message = "must be a unicast IPv4 address (is %s)" % _show(value)
        elif not _hostname(value):
            message = "must be an IPv4 address like 192.168.1.60 or a host name of letters, digits, '-' and '.'"
            message += " (is %s)" % _show(value)
    elif kind == _PHASE_MAP:
        ok = 1 <= len(value) <= 3
        for index in range(len(value)):
            letter = value[index : index + 1]  # a slice: value[index] would be interned
            if letter not in _PHASE_LETTERS or letter in value[:index]:
                ok = False
        if not ok:
            message = "must be 1 to 3 different letters from A, B, C, one per charger phase (is %s)" % _show(value)
    if message is None:
        return True
    errors.add(path, message)
    return False


def _check_section(errors, prefix, section, table):
    # Checks each field of a section; returns {key: value} of the fields that
    # are fine on their own, for the cross-field rules.
    good = {}
    for spec in table:
        key = spec[0]
        value = section.get(key)
        if _check(errors, prefix + key, spec, value):
            good[key] = value
    known = [spec[0] for spec in table]
    _unknown(errors, prefix, section, known)
    return good


def _unknown(errors, prefix, section, known):
    for key in sorted([key for key in section if key not in known]):
        errors.add(prefix + key, "unknown setting (known: %s)" % ", ".join(known), written=True)


class _Errors:
    """Collects (path, message); the first `limit` are kept, the rest counted in `more`.

    `written` is the document as its author wrote it (before completion),
    or None to count the errors only. An error on a field that is not in it
    is a follow-on of another field: when that field is wrong itself the
    follow-on is dropped (fixing the field fixes both); otherwise the
    message says which field it follows from. So every error names a field
    the author wrote or says where it comes from.
    """

    def __init__(self, written, limit=None):
        self.written = written
        self.limit = limit
        self.items = []
        self.more = 0
        self.wrong = []  # paths with an error that other fields derive from

    def add(self, path, message, partner=None, written=False):
        if self.written is None:
            self.more += 1  # only counting: is the document valid?
            return
        if not written and not _written(self.written, path):
            source = _source(path)
            if source is not None and source in self.wrong:
                return
            follows = partner or source
            if follows is not None:
                message += " (not in the file: follows from %s)" % follows
            else:
                message += " (not in the file: the default)"
        if path == "site.phases" or _is_source(path):
            self.wrong.append(path)
        if self.limit is None or len(self.items) < self.limit:
            self.items.append((path, message))
        else:
            self.more += 1


# Charger fields whose default is taken from another field (see complete()).
_DERIVED = (("circuit_a", "max_a"), ("manual_a", "min_a"), ("phase_map", "phases"))


def _source(path):
    # The field an unwritten field's default comes from, or None.
    if not path.startswith("chargers."):
        return None
    cut = path.rfind(".")
    key = path[cut + 1 :]
    if key == "phases":
        return "site.phases"
    for derived, source in _DERIVED:
        if key == derived:
            return path[: cut + 1] + source
    return None


def _is_source(path):
    # A charger field that others take their default from.
    cut = path.rfind(".")
    key = path[cut + 1 :]
    for _, source in _DERIVED:
        if key == source:
            return path.startswith("chargers.")
    return False


def _written(doc, path):
    # True when `path` ("chargers.0.max_a") is present in `doc` as written.
    node = doc
    for part in path.split("."):
        if type(node) is dict and part in node:
            node = node[part]
        elif type(node) is list and _digits(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def validate(doc):
    """Errors of `doc` as a list of (path, message); [] when it is valid.

    A partial document is completed from the defaults first; the version
    must be CURRENT_VERSION (call migrate() for older documents). Every
    error is reported; one on a field that `doc` leaves out says which
    written field it follows from.
    """
    if type(doc) is not dict:
        return [("", "the config must be a JSON object (is %s)" % _show(doc))]
    errors = _Errors(doc)
    _validate(complete(doc), errors)
    return errors.items


def _validate(doc, errors):
    version = doc["version"]
    if not _is_int(version) or version != CURRENT_VERSION:
        message = "must be %d (is %s): migrate older documents first" % (CURRENT_VERSION, _show(version))
        errors.add("version", message, written=True)
    for spec in _TOP:
        _check(errors, spec[0], spec, doc[spec[0]])
    good = {}
    for name, table in _SECTIONS:
        section = doc[name]
        if type(section) is not dict:
            errors.add(name, "must be an object (is %s)" % _show(section), written=True)
            good[name] = {}
        else:
            good[name] = _check_section(errors, name + ".", section, _meter_table(section) if name == "meter" else table)
    _unknown(errors, "", doc, _TOP_KEYS)
    site = good["site"]
    breaker = site.get("breaker_a")
    margin = site.get("margin_a")
    if breaker is not None and margin is not None and breaker - margin < _MIN_CURRENT_A:
        message = "must leave at least %d A of the %d A breaker: at most %d A (is %d)" % (
            _MIN_CURRENT_A,
            breaker,
            breaker - _MIN_CURRENT_A,
            margin,
        )
        errors.add("site.margin_a", message, "site.breaker_a")
    meter = good["meter"]
    if meter.get("type") == "p1" and meter.get("baud") == 9600 and meter.get("format") not in (None, "7E1"):
        message = "must be 7E1 for a P1 meter at 9600 baud (DSMR 2.2/3) (is %s)" % _show(meter["format"])
        errors.add("meter.format", message, "meter.baud")
    if meter.get("type") == "modbus":
        _check_modbus(errors, doc["meter"], meter)
    if meter.get("type") == "http":
        _check_http(errors, meter, site.get("phases"))
    mqtt = good["mqtt"]
    if meter.get("type") in ("mqtt", "ct"):
        _check_meter_fields(errors, meter, site.get("phases"), mqtt)
    # The board's RS485 port carries one device that ChargeGuard drives: a
    # Modbus RTU meter (a Modbus meter with no host) or an RTU charger.
    rs485 = "meter.type" if meter.get("type") == "modbus" and not meter.get("host") else None
    _check_chargers(errors, doc["chargers"], site.get("phases"), rs485)
    _check_solar(errors, good["solar"])
    _check_static_ip(errors, good["wifi"])
    if mqtt.get("enabled") and mqtt.get("host") == "":
        errors.add("mqtt.host", "must be set when mqtt.enabled is true: the broker's IPv4 address or host name", "mqtt.enabled")


def _check_modbus(errors, section, meter):
    # The model and a custom map against the register table module, loaded
    # for this check only (its field names cost the config module nothing).
    import sys
    import chargeguard.meters
    from chargeguard.meters import modbus_models

    try:
        modbus_models.check(errors, section, meter.get("model"), _check, _unknown, _MISSING)
    finally:
        sys.modules.pop("chargeguard.meters.modbus_models", None)
        if "modbus_models" in chargeguard.meters.__dict__:
            delattr(chargeguard.meters, "modbus_models")


def _check_http(errors, meter, phases):
    # Against meters/http_models.py, loaded for this check only (its names
    # and messages cost the config module and the driver nothing).
    import sys
    import chargeguard.meters
    from chargeguard.meters import http_models

    try:
        http_models.check(errors, meter, phases)
    finally:
        sys.modules.pop("chargeguard.meters.http_models", None)
        if "http_models" in chargeguard.meters.__dict__:
            delattr(chargeguard.meters, "http_models")


def _check_meter_fields(errors, meter, phases, mqtt):
    # The MQTT-fed meter's and the CT clamps' rules (meters/meter_fields.py),
    # then the module is unloaded (its names cost a running site nothing).
    import sys
    import chargeguard.meters
    from chargeguard.meters import meter_fields

    try:
        meter_fields.check(errors, meter, phases, mqtt, _topic_error)
    finally:
        sys.modules.pop("chargeguard.meters.meter_fields", None)
        if "meter_fields" in chargeguard.meters.__dict__:
            delattr(chargeguard.meters, "meter_fields")


def _check_solar(errors, solar):
    # EVCM's rules for its thresholds, each "high >= low + gap" (see _SOLAR_RULES).
    for high, low, gap in _SOLAR_RULES:
        value = solar.get(high)
        floor = solar.get(low)
        message = None if value is None or floor is None else rules.solar_message(high, low, gap, value, floor)
        if message is not None:
            errors.add("solar." + high, message, "solar." + low)
            solar.pop(high)  # one error per field


def _check_static_ip(errors, wifi):
    # A fixed address needs a mask and a gateway on its network; without a
    # fixed address the other address fields have no use.
    if "ip" not in wifi:
        return  # a bad address is reported already
    ip = _ipv4(wifi["ip"])
    for key in ("netmask", "gateway", "dns"):
        if ip is None and key != "netmask" and wifi.get(key):
            errors.add("wifi." + key, "is used only with a fixed address in wifi.ip", "wifi.ip")
        elif ip is not None and key != "dns" and wifi.get(key) == "":
            errors.add("wifi." + key, "must be set with wifi.ip", "wifi.ip")
    mask = _ipv4(wifi.get("netmask") or "")
    gateway = _ipv4(wifi.get("gateway") or "")
    if ip is None or mask is None:
        return
    bits = (mask[0] << 24) | (mask[1] << 16) | (mask[2] << 8) | mask[3]
    if bits == 0 or (bits & -bits) + bits != 1 << 32:
        errors.add("wifi.netmask", "must be a network mask like 255.255.255.0", "wifi.ip")
    elif gateway is not None and [a & b for a, b in zip(ip, mask)] != [a & b for a, b in zip(gateway, mask)]:
        errors.add("wifi.gateway", "must be on the network of wifi.ip and wifi.netmask", "wifi.ip")


def _check_chargers(errors, chargers, site_phases, rs485):
    if type(chargers) is not list:
        errors.add("chargers", "must be a list (is %s)" % _show(chargers), written=True)
        return
    count = len(chargers)
    if count > MAX_CHARGERS:
        errors.add("chargers", "must have at most %d entries (is %d)" % (MAX_CHARGERS, count), written=True)
        return
    names = {}
    idents = {}
    priorities = {}
    for index in range(count):
        prefix = "chargers.%d." % index
        entry = chargers[index]
        if type(entry) is not dict:
            errors.add(prefix[:-1], "must be an object (is %s)" % _show(entry), written=True)
            continue
        rules_module = _entry_rules(entry.get("type"))
        if rules_module is not None:
            good = rules_module.check(errors, prefix, entry, _CHARGER, _check_section, _check, _unknown, _MISSING)
        else:
            good = _check_section(errors, prefix, entry, _CHARGER)
        rules_module = None
        _check_charger(errors, prefix, good, site_phases, count)
        if good.get("transport") == "rtu":
            # abb_terra over RTU (chargers/entries.py): the port must be free.
            if rs485 is None:
                rs485 = prefix + "transport"
            else:
                owner = "the Modbus RTU meter" if rs485 == "meter.type" else rs485.rsplit(".", 1)[0]
                message = "must be tcp: the board's RS485 port is %s's (ChargeGuard drives one device on it)" % owner
                errors.add(prefix + "transport", message, rs485)
        # An OCPP box's id (chargers/ocpp_entry.py drops one it refused).
        ident = good.get("charge_point_id")
        if ident is not None:
            if ident in idents:
                message = "must be unique: %s is also the id of chargers.%d" % (_show(ident), idents[ident])
                errors.add(prefix + "charge_point_id", message, "chargers.%d.charge_point_id" % idents[ident])
            else:
                idents[ident] = index
        name = good.get("name")
        if name is not None:
            folded = name.lower()
            if folded in names:
                message = "must be unique: %s is also the name of chargers.%d" % (_show(name), names[folded])
                errors.add(prefix + "name", message, "chargers.%d.name" % names[folded])
            else:
                names[folded] = index
        priority = good.get("priority")
        if priority is not None and priority <= count:
            if priority in priorities:
                message = "must be unique: %d is also the priority of chargers.%d (give each charger its own place 1..%d)"
                message = message % (priority, priorities[priority], count)
                errors.add(prefix + "priority", message, "chargers.%d.priority" % priorities[priority])
            else:
                priorities[priority] = index


def _check_charger(errors, prefix, good, site_phases, count):
    phases = good.get("phases")
    phase_map = good.get("phase_map")
    if phases is not None and site_phases is not None and phases > site_phases:
        message = "must be at most %d, the site's phase count (is %d)" % (site_phases, phases)
        errors.add(prefix + "phases", message, "site.phases")
    elif phase_map is not None:
        if phases is not None and len(phase_map) != phases:
            message = "must name %d site phase(s), one letter per charger phase (is %s)" % (phases, _show(phase_map))
            errors.add(prefix + "phase_map", message, prefix + "phases")
        elif site_phases == 1 and phase_map != "A":
            errors.add(prefix + "phase_map", "must be 'A' on a 1-phase site (is %s)" % _show(phase_map), "site.phases")
    low = good.get("min_a")
    high = good.get("max_a")
    if low is not None and high is not None and high < low:
        errors.add(prefix + "max_a", rules.max_message(low, high), prefix + "min_a")
        high = None
    elif high is not None and high != low and good.get("type") == "shelly_load":
        # An on/off load has one step: its current when on is min_a.
        message = "must equal min_a for an on/off load (one step: its current when on; is %d, min_a %d)" % (high, low)
        errors.add(prefix + "max_a", message, prefix + "min_a")
        high = None
    circuit = good.get("circuit_a")
    if low is not None and circuit is not None and circuit < low:
        errors.add(prefix + "circuit_a", rules.circuit_message(low, circuit), prefix + "min_a")
    priority = good.get("priority")
    if priority is not None and priority > count:
        errors.add(prefix + "priority", rules.priority_message(count, priority))
    if low is None or high is None:
        return
    failsafe = good.get("failsafe_a")
    message = None if failsafe is None else rules.failsafe_message(low, high, failsafe)
    if message is not None:
        errors.add(prefix + "failsafe_a", message, prefix + "min_a")
    manual = good.get("manual_a")
    message = None if manual is None else rules.manual_message(low, high, manual)
    if message is not None:
        errors.add(prefix + "manual_a", message, prefix + "min_a")


def check(doc, limit=None):
    """(normalised doc, errors): migrate, complete and validate in one step.

    A document that cannot be migrated comes back unchanged with a
    "version" error. With `limit`, at most that many errors are listed and
    a last ("", "and N more errors") entry counts the rest (bounded memory
    for a hostile file on the device); without, every error is listed.
    """
    doc, items, more = _check_limited(doc, limit)
    if more:
        items.append(("", "and %d more errors" % more))
    return doc, items


def _check_limited(doc, limit):
    # check() with the count of errors beyond `limit` apart.
    if type(doc) is not dict:
        return doc, validate(doc), 0
    problem = _version_problem(doc)
    if problem:
        return doc, [("version", problem)], 0
    migrated = migrate(doc)
    if doc.get("version", CURRENT_VERSION) != CURRENT_VERSION:
        # Migration moved fields: what the author wrote is the migrated copy.
        doc = migrated
        migrated = _copy(migrated)
    # migrate() made a copy: complete it in place instead of copying again
    # (one document less on the heap at start-up).
    migrated = _complete(migrated)
    errors = _Errors(doc, limit)
    _validate(migrated, errors)
    return migrated, errors.items, errors.more


def _summary(errors, limit):
    parts = []
    for path, message in errors[:limit]:
        parts.append(path + ": " + message if path else message)
    text = "; ".join(parts)
    if len(errors) > limit:
        text += "; and %d more" % (len(errors) - limit)
    return text


# ----------------------------------------------------------------- secrets


def redacted(doc):
    """Copy of `doc` with every non-empty secret replaced by REDACTED."""
    out = _copy(doc)
    if type(out) is not dict:
        return out
    for section, key in SECRET_PATHS:
        part = out.get(section)
        if type(part) is dict and key in part and part[key] not in ("", None):
            part[key] = REDACTED
    for part in _charger_list(out):
        if part.get("password") not in ("", None):
            part["password"] = REDACTED  # an OCPP box's password
    return out


def _charger_list(doc):
    chargers = doc.get("chargers")
    return [entry for entry in chargers if type(entry) is dict] if type(chargers) is list else []


def restore_secrets(doc, current):
    """Copy of `doc` in which secrets equal to REDACTED come from `current`.

    For importing an exported (redacted) document without losing passwords.
    """
    out = _copy(doc)
    if type(out) is not dict:
        return out
    for section, key in SECRET_PATHS:
        part = out.get(section)
        if type(part) is dict and part.get(key) == REDACTED:
            old = current.get(section) if type(current) is dict else None
            part[key] = old.get(key, "") if type(old) is dict else ""
    olds = _charger_list(current) if type(current) is dict else []
    for part in _charger_list(out):
        if part.get("password") == REDACTED:
            # The password of the charger with the same charge point id.
            part["password"] = ""
            for old in olds:
                if old.get("charge_point_id") == part.get("charge_point_id"):
                    part["password"] = old.get("password", "")
    return out


# ------------------------------------------------------------- persistence

_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, which some Windows editors write
_CHECK_HINT = "make check-config CONFIG=config.json"


def _read(path, limit):
    # (doc, problem, errors, old version): doc is None when the file is
    # unusable; problem then says why, as a phrase following the file name,
    # and errors lists the refused settings when it is a JSON object.
    doc, problem = _parse(path)
    if doc is None:
        return None, problem, None, None
    version = doc.get("version", CURRENT_VERSION)
    if _version_problem(doc) is None:
        # The usual case first, with one document on the heap: the parsed
        # one is ours, so it is completed in place and only counted errors.
        if version != CURRENT_VERSION:
            doc = migrate(doc)
        doc = _complete(doc)
        errors = _Errors(None)
        _validate(doc, errors)
        if not errors.more:
            return doc, None, None, version
        # Invalid: parse again to name each error against what was written.
        doc = None
        doc = _parse(path)[0]
    doc, errors, more = _check_limited(doc, limit)
    count = len(errors) + more
    if more:
        errors.append(("", "and %d more: %s lists them all" % (more, _CHECK_HINT)))
    return None, "has %d refused setting%s" % (count, "" if count == 1 else "s"), errors, None


def _parse(path):
    # (doc, None) or (None, problem).
    try:
        size = os.stat(path)[6]
    except OSError:
        return None, _MISSING
    if size > MAX_CONFIG_BYTES:
        return None, "is too large (%d bytes, the limit is %d)" % (size, MAX_CONFIG_BYTES)
    try:
        with open(path, "rb") as handle:
            if handle.read(3) != _BOM:
                handle.seek(0)
            # Parsed from the stream: no buffer the size of the file, no
            # decoded copy of it (MicroPython reads it byte by byte).
            doc = json.load(handle)
    except OSError as error:
        return None, "cannot be read (error %s)" % (error.args[0] if error.args else "?")
    except UnicodeError:
        return None, "is corrupt (not UTF-8 text)"
    except Exception:
        # Also RecursionError/MemoryError from hostile nesting. The parser's
        # own message is not used: it could quote a piece of a secret.
        return None, "is corrupt (not valid JSON)"
    if type(doc) is not dict:
        return None, "is not a JSON object (is %s)" % _kind_of(doc)
    return doc, None


def load(directory):
    """(doc, notes): the stored document, complete and at CURRENT_VERSION.

    Tries config.json, then config.bak (the last good copy), then the
    defaults (no chargers: nothing is commanded). notes are sentences for
    the owner, never containing secrets: each refused setting, and what the
    device does instead. Never writes.
    """
    doc, notes, _, _ = load_for_boot(directory)
    return doc, notes


def load_for_boot(directory, new=True, max_errors=MAX_NOTE_ERRORS):
    """(doc, notes, source, good): load() for the app at start-up.

    source: CONFIG_FILE or BACKUP_FILE, the file `doc` came from, or None
    when no valid configuration exists (defaults, no chargers). good: the
    checksum of config.json, for remember() to copy it to config.bak once
    the app has run with `doc`; None when config.bak already is that file or
    `doc` is not from config.json. new=False skips config.json (it could
    not start).
    At most `max_errors` refused settings are listed, then a count.
    """
    notes = []
    new_problem = None
    if new:
        doc, new_problem, errors, version = _read(directory + "/" + CONFIG_FILE, max_errors)
        if doc is not None:
            if version != CURRENT_VERSION:
                notes.append("%s was written for version %d: migrated to version %d" % (CONFIG_FILE, version, CURRENT_VERSION))
            # What remember() will copy, unless config.bak already is that file.
            # Imported only now: at start-up the heap peaks while validating;
            # after a collection of the validation's garbage at this shallow
            # stack (one the import forced could keep some: the http profile
            # failed at boot in 88 KB as .mpy, its 640-byte code block found no hole).
            import gc

            gc.collect()
            from chargeguard import flashfile

            good = flashfile.checksum(directory + "/" + CONFIG_FILE)
            if good == flashfile.checksum(directory + "/" + BACKUP_FILE):
                good = None
            return _overlaid(directory, doc, notes), notes, CONFIG_FILE, good
        if new_problem == _MISSING:
            notes.append("%s is missing" % CONFIG_FILE)
        elif errors:
            notes.append("%s %s: it was NOT applied" % (CONFIG_FILE, new_problem))
        else:
            notes.append("%s %s: it was NOT applied (%s shows where)" % (CONFIG_FILE, new_problem, _CHECK_HINT))
        for path, message in errors or ():
            notes.append("%s refused %s: %s" % (CONFIG_FILE, path, message) if path else "%s: %s" % (CONFIG_FILE, message))
    doc, problem, errors, version = _read(directory + "/" + BACKUP_FILE, 1)
    if doc is not None:
        notes.append("still guarding with the last good configuration (%s, the one that last ran)" % BACKUP_FILE)
        return _overlaid(directory, doc, notes), notes, BACKUP_FILE, None
    if problem != _MISSING:
        notes.append("%s (the last good copy) %s" % (BACKUP_FILE, problem))
    if new_problem == _MISSING:
        notes.append(
            "no configuration yet: nothing is commanded; write one (docs/configuration.md), "
            "check it with make check-config CONFIG=file.json and install it with make deploy CONFIG=file.json"
        )
    else:
        notes.append(
            "no valid configuration: nothing is commanded until %s is fixed; " % CONFIG_FILE
            + "correct the settings named above (%s lists them all), then make deploy CONFIG=config.json" % _CHECK_HINT
        )
    return defaults(), notes, None, None


def _overlaid(directory, doc, notes):
    # `doc` (valid, complete) with the settings changed at run time
    # (OVERLAY_FILE, written by commands.py) applied in place, when the
    # result is valid; otherwise `doc` unchanged and a note per refusal.
    overlay, problem = _parse(directory + "/" + OVERLAY_FILE)
    if overlay is None:
        if problem != _MISSING:
            notes.append("%s %s: the settings changed at run time were dropped" % (OVERLAY_FILE, problem))
        return doc
    changes = overlay.get("set")
    chargers = doc["chargers"]
    if overlay.get("chargers") != [entry["name"] for entry in chargers] or type(changes) is not dict:
        notes.append("%s was written for other chargers: the settings changed at run time were dropped" % OVERLAY_FILE)
        return doc
    refused = []
    undo = []
    for path in changes:
        parts = path.split(".")
        node = None
        if len(parts) == 2 and parts[0] in ("site", "solar"):
            node = doc[parts[0]]
            table = _SITE if parts[0] == "site" else _SOLAR
        elif len(parts) == 3 and parts[0] == "chargers" and _digits(parts[1]) and int(parts[1]) < len(chargers):
            node = chargers[int(parts[1])]
            table = _CHARGER  # every type's entry has these rows
        # Only what commands.py may set: an overlay never changes a breaker.
        if node is None or parts[-1] not in [spec[0] for spec in rules.RUNTIME] or parts[-1] not in [spec[0] for spec in table]:
            refused.append((path, "unknown setting (not settable at run time)"))
            continue
        undo.append((node, parts[-1], node[parts[-1]]))
        node[parts[-1]] = changes[path]
    if not refused:
        refused = validate(doc)
    if refused:
        for node, key, value in undo:
            node[key] = value
        for path, message in refused[:MAX_NOTE_ERRORS]:
            notes.append("%s refused %s: %s" % (OVERLAY_FILE, path, message))
        notes.append("%s was NOT applied: the settings changed at run time were dropped" % OVERLAY_FILE)
    return doc


def remember(directory, good):
    """Copy config.json to config.bak, the last good copy, once the app has run with it.

    `good` is load_for_boot()'s checksum of config.json: a file changed
    since then is not copied (it has not run). load_for_boot() returns None
    when config.bak already is that file, so the flash is written only when
    the configuration changed. Atomic, in 128-byte chunks (no allocation
    the size of the file). Raises OSError (config.bak untouched) when the
    file changed or the flash fails.
    """
    from chargeguard import flashfile

    path = directory + "/" + BACKUP_FILE
    flashfile.copy(directory + "/" + CONFIG_FILE, path, path + ".tmp", good)


def save(directory, doc):
    """Validate, then store `doc` atomically; returns the normalised document.

    Raises ConfigError (nothing written) when the document is invalid or its
    JSON exceeds MAX_CONFIG_BYTES; OSError when the flash fails. After a
    power cut at any point, load() finds the old or the new document.
    """
    doc, errors = check(doc)
    if errors:
        raise ConfigError(errors)
    data = json.dumps(doc).encode()
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([("", "is too large to store (%d bytes, the limit is %d)" % (len(data), MAX_CONFIG_BYTES))])
    current = directory + "/" + CONFIG_FILE
    temp = directory + "/" + TEMP_FILE
    from chargeguard import flashfile

    flashfile.write_temp(temp, data)
    old, problem, _, _ = _read(current, 1)
    if old is not None:
        flashfile.replace(current, directory + "/" + BACKUP_FILE)
    elif problem != _MISSING:
        # A bad config.json must not overwrite the good backup.
        flashfile.remove(current)
    flashfile.replace(temp, current)
    return doc
