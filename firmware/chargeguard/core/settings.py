"""Control settings in core units (mA, W, ms), built from a validated config.

The config document speaks the installer's units (A, W, s); the core works in
integers of the smallest unit it needs. Conversion happens once, when the
configuration is applied, never per tick: core/settings_doc.py, loaded
only while the App is built (its code is not kept on the running heap).
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
