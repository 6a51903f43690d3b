"""Control settings in core units (mA, W, ms), built from a validated config.

The config document speaks the installer's units (A, W, s); the core works in
integers of the smallest unit it needs. Conversion happens once, here, when
the configuration is applied, never per tick.
"""

from micropython import const

SCHEME_GRID = const(0)  # the meter sees house + chargers (the usual P1 case)
SCHEME_HOUSE = const(1)  # the meter sees the house only; grid = house + chargers

MODE_OFF = "off"
MODE_FAST = "fast"
MODE_MANUAL = "manual"
MODE_SITE = "site"  # config only: a charger that follows site.mode
# The surplus modes, run by core/optimiser.py (core/solar.py regulates them).
MODE_ECO = "eco"
MODE_SOLAR = "solar"
MODE_EXCESS = "excess"

class SiteSettings:
    """Limits of the house connection and timing of the guard."""

    def __init__(self):
        self.phases = 3
        self.voltage_v = 230
        self.breaker_ma = 25000
        self.margin_ma = 1000
        self.max_import_w = 0  # 0 = no contracted power limit
        self.scheme = SCHEME_GRID
        # Totals-only meters: False = the house load may all sit on one phase
        # (safe); True = assume it spread evenly (see core/guard.py).
        self.balanced_load = False
        self.meter_timeout_ms = 10000
        self.min_pause_ms = 180000
        self.ramp_step_ma = 2000
        self.ramp_interval_ms = 5000
        self.ev_response_ms = 5000


class ChargerSettings:
    """One wallbox as the core sees it."""

    def __init__(self):
        self.name = ""
        self.phases = 3
        # Site phase index (0=A, 1=B, 2=C) of the charger's L1, L2, L3.
        self.phase_map = (0, 1, 2)
        self.min_ma = 6000
        self.max_ma = 16000
        self.circuit_ma = 16000
        self.priority = 1
        self.failsafe_ma = 0
        self.mode = MODE_FAST
        self.manual_ma = 6000
        self.enabled = True


def site_from_config(doc):
    """SiteSettings from a validated config document."""
    site_doc = doc["site"]
    guard_doc = doc["guard"]
    site = SiteSettings()
    site.phases = site_doc["phases"]
    site.voltage_v = site_doc["voltage_v"]
    site.breaker_ma = site_doc["breaker_a"] * 1000
    site.margin_ma = site_doc["margin_a"] * 1000
    site.max_import_w = site_doc["max_import_w"]
    site.scheme = SCHEME_HOUSE if site_doc["scheme"] == "house" else SCHEME_GRID
    site.balanced_load = site_doc.get("balanced_load", False) is True
    site.meter_timeout_ms = guard_doc["meter_timeout_s"] * 1000
    site.min_pause_ms = guard_doc["min_pause_s"] * 1000
    site.ramp_step_ma = guard_doc["ramp_step_a"] * 1000
    site.ramp_interval_ms = guard_doc["ramp_interval_s"] * 1000
    site.ev_response_ms = guard_doc["ev_response_s"] * 1000
    return site


def charger_from_config(entry, site_mode=MODE_FAST):
    """ChargerSettings from one validated `chargers[]` entry.

    A charger whose mode is "site" takes `site_mode` (config site.mode).
    """
    charger = ChargerSettings()
    charger.name = entry["name"]
    charger.phases = entry["phases"]
    # Letters A..C as indexes 0..2, from the bytes: a character taken from a
    # str is interned for good on MicroPython.
    charger.phase_map = tuple(code - 65 for code in entry["phase_map"].encode())
    charger.min_ma = entry["min_a"] * 1000
    charger.max_ma = entry["max_a"] * 1000
    charger.circuit_ma = entry["circuit_a"] * 1000
    charger.priority = entry["priority"]
    charger.failsafe_ma = entry["failsafe_a"] * 1000
    charger.mode = site_mode if entry["mode"] == MODE_SITE else entry["mode"]
    charger.manual_ma = entry["manual_a"] * 1000
    charger.enabled = entry["enabled"]
    return charger
