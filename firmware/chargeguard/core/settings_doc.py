"""The guard's settings (core/settings.py) from a validated configuration document.

Read once per boot, while the App is built (appinit.py), and unloaded with
it: the conversion's code is not kept on the running controller's heap.
The document speaks the installer's units (A, W, s), the settings the
core's integers (mA, W, ms).
"""

from chargeguard.core.settings import (
    MODE_FAST,
    MODE_SITE,
    SCHEME_GRID,
    SCHEME_HOUSE,
    ChargerSettings,
    SiteSettings,
)


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
