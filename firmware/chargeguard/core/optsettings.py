"""Optimiser settings in core units (W, ms), built from a config-like dict.

The optimiser (core/optimiser.py) chooses each charger's target inside the
guard's envelope: solar regulation in EVCM's vocabulary, Dynamic OCPP EVSE's
distribution modes and the Belgian capacity tariff. Its settings come from two
places of the configuration document; these are the keys this module reads,
with their defaults and ranges (config.py validates the same keys, with the
cross-field rules; a missing key takes its default here):

    "site": {...
        "distribution": "priority",   DISTRIBUTIONS; Dynamic OCPP EVSE's default
        "peak_limit_w": 0,            0 = no capacity tariff, else 2500..500000 W:
                                      the quarter-hour average import to stay under
                                      (Fluvius bills at least 2.5 kW, so less is
                                      pointless)
        "peak_follow_month": false},  true: the limit rises to this month's peak
                                      (meter 1-0:1.6.0) once that is higher
    "solar": {
        "eco": true,                  EVCM's ECO switch: true = "ECO on" band
        "eco_on_upper_w": 4000,       band thresholds, net power in W, EXPORT
        "eco_on_lower_w": -500,       POSITIVE as in EVCM (-500 = 500 W import);
        "eco_off_upper_w": 1000,      each -100000..100000 W; lower < upper in each
        "eco_off_lower_w": -3500,     band; ECO on upper > ECO off upper and ECO on
                                      lower > ECO off lower (EVCM's validation)
        "net_power_target_w": 0,      -100000..100000 W, the balance regulation
                                      centres on; in force it is raised to at least
                                      the band's lower + 300 W (EVCM's clamp)
        "start_delay_s": 60,          0..3600, EVCM "upper start debounce"
        "stop_delay_s": 180,          0..3600, EVCM "sustain"
        "min_on_s": 120,              0..3600, a started car runs at least this long
        "min_off_s": 180,             0..3600, a stopped car rests at least this long
        "excess_threshold_w": 13000}  0..1000000 W, export above which `excess`
                                      mode charges (Dynamic OCPP EVSE's default)

Sources of the defaults: the 4000 W upper threshold and its 4500 W band are
EVCM's use case for 3 x 400 V (4000 W export starts a 6 A car at about 0 W
grid) and its default band for that profile; EVCM's net power target
defaults to 0 W. start_delay 60 s and stop_delay 180 s are evcc's pv-mode
enable/disable delays (1 min, 3 min): EVCM's own upper start debounce
default of 3 s lets a passing cloud start and stop a car. min_off 180 s is
Dynamic OCPP EVSE's "charge pause duration" (and the guard's min_pause).
min_on 120 s is ours: long enough that one cloud does not make a cycle, short
enough to bound the import when the sun is gone for good.

Errors: ValueError("section.key: what is wrong"), the first one found.
"""

from micropython import const

DIST_SHARED = "shared"
DIST_PRIORITY = "priority"
DIST_SEQUENTIAL_OPTIMIZED = "sequential_optimized"
DIST_SEQUENTIAL_STRICT = "sequential_strict"
DISTRIBUTIONS = (DIST_SHARED, DIST_PRIORITY, DIST_SEQUENTIAL_OPTIMIZED, DIST_SEQUENTIAL_STRICT)

PEAK_FLOOR_W = const(2500)  # Fluvius' minimum billed capacity
TARGET_ABOVE_LOWER_W = const(300)  # EVCM: net power target >= lower + 300 W
_POWER_LIMIT_W = const(100000)


class OptimiserSettings:
    """Site-wide optimiser settings; W are net power EXPORT POSITIVE (EVCM)."""

    def __init__(self):
        self.distribution = DIST_PRIORITY
        self.peak_limit_w = 0
        self.peak_follow_month = False
        self.eco = True
        self.eco_on_upper_w = 4000
        self.eco_on_lower_w = -500
        self.eco_off_upper_w = 1000
        self.eco_off_lower_w = -3500
        self.net_power_target_w = 0
        self.start_delay_ms = 60000
        self.stop_delay_ms = 180000
        self.min_on_ms = 120000
        self.min_off_ms = 180000
        self.excess_threshold_w = 13000

    def upper_w(self):
        """Upper threshold of the band in force (ECO switch), W export."""
        return self.eco_on_upper_w if self.eco else self.eco_off_upper_w

    def lower_w(self):
        """Lower threshold of the band in force, W export (negative = import)."""
        return self.eco_on_lower_w if self.eco else self.eco_off_lower_w

    def net_target_w(self):
        """Net power target in force: at least lower + 300 W (EVCM's clamp)."""
        floor = self.lower_w() + TARGET_ABOVE_LOWER_W
        return self.net_power_target_w if self.net_power_target_w >= floor else floor


def _int(section, doc, key, default, low, high):
    value = doc.get(key, default)
    if type(value) is not int:
        raise ValueError("%s.%s: must be a whole number (is %r)" % (section, key, value))
    if value < low or value > high:
        raise ValueError("%s.%s: must be between %d and %d (is %d)" % (section, key, low, high, value))
    return value


def _bool(section, doc, key, default):
    value = doc.get(key, default)
    if value is not True and value is not False:
        raise ValueError("%s.%s: must be true or false (is %r)" % (section, key, value))
    return value


def optimiser_from_config(doc):
    """OptimiserSettings from a config-like dict (keys above; missing = default)."""
    site_doc = doc.get("site", {})
    solar = doc.get("solar", {})
    out = OptimiserSettings()
    distribution = site_doc.get("distribution", out.distribution)
    if distribution not in DISTRIBUTIONS:
        raise ValueError("site.distribution: must be one of %s (is %r)" % (", ".join(DISTRIBUTIONS), distribution))
    out.distribution = distribution
    peak = _int("site", site_doc, "peak_limit_w", 0, 0, 500000)
    if 0 < peak < PEAK_FLOOR_W:
        message = "must be 0 (off) or at least %d W, the least Fluvius bills (is %d)" % (PEAK_FLOOR_W, peak)
        raise ValueError("site.peak_limit_w: " + message)
    out.peak_limit_w = peak
    out.peak_follow_month = _bool("site", site_doc, "peak_follow_month", False)
    out.eco = _bool("solar", solar, "eco", True)
    limit = _POWER_LIMIT_W
    out.eco_on_upper_w = _int("solar", solar, "eco_on_upper_w", out.eco_on_upper_w, -limit, limit)
    out.eco_on_lower_w = _int("solar", solar, "eco_on_lower_w", out.eco_on_lower_w, -limit, limit)
    out.eco_off_upper_w = _int("solar", solar, "eco_off_upper_w", out.eco_off_upper_w, -limit, limit)
    out.eco_off_lower_w = _int("solar", solar, "eco_off_lower_w", out.eco_off_lower_w, -limit, limit)
    for band in ("on", "off"):
        upper = getattr(out, "eco_%s_upper_w" % band)
        lower = getattr(out, "eco_%s_lower_w" % band)
        if lower >= upper:
            message = "must be below eco_%s_upper_w (%d >= %d)" % (band, lower, upper)
            raise ValueError("solar.eco_%s_lower_w: %s" % (band, message))
    if out.eco_on_upper_w <= out.eco_off_upper_w:
        raise ValueError("solar.eco_on_upper_w: must be above eco_off_upper_w (the ECO on band is the stricter one)")
    if out.eco_on_lower_w <= out.eco_off_lower_w:
        raise ValueError("solar.eco_on_lower_w: must be above eco_off_lower_w (the ECO on band is the stricter one)")
    out.net_power_target_w = _int("solar", solar, "net_power_target_w", 0, -limit, limit)
    out.start_delay_ms = _int("solar", solar, "start_delay_s", 60, 0, 3600) * 1000
    out.stop_delay_ms = _int("solar", solar, "stop_delay_s", 180, 0, 3600) * 1000
    out.min_on_ms = _int("solar", solar, "min_on_s", 120, 0, 3600) * 1000
    out.min_off_ms = _int("solar", solar, "min_off_s", 180, 0, 3600) * 1000
    out.excess_threshold_w = _int("solar", solar, "excess_threshold_w", 13000, 0, 1000000)
    return out
