"""The values that flow between meters, the control core and chargers.

Every object here is allocated once at start-up and updated in place, so a
meter telegram or a control tick allocates nothing. All quantities are
integers: mA, W, Wh, mV, ms. `None` marks a value the source did not give.
Sign convention: positive = import from the grid, negative = export.

Meters with two cadences (Norwegian/Swedish HAN: the total power every 2.5 s,
the per-phase values every 10 s; an MQTT-fed meter whose net power and phase
currents come on their own topics) stamp the per-phase values apart from the
total: `tick_ms` is when the total (import_w/export_w) was measured,
`phase_tick_ms` when current_ma/power_w/voltage_mv were, and `phase_net_w`
the net power measured with those per-phase values. A meter with one cadence
(P1, Modbus, HTTP) leaves `phase_tick_ms` None: everything is from `tick_ms`.
"""

from micropython import const

PHASES = const(3)  # site phases A, B, C (the meter's L1, L2, L3)


class GridReading:
    """One reading of the grid connection (or of the house, see `scheme`)."""

    def __init__(self):
        self.tick_ms = 0
        self.current_ma = [0, 0, 0]
        self.power_w = [0, 0, 0]
        # Per phase; None = not given (0 is a measured 0 V: a lost phase).
        self.voltage_mv = [None, None, None]
        self.reset()

    def reset(self):
        """Forget every value but keep the lists (no allocation)."""
        # `phase_count` = how many of A/B/C carry per-phase data (0: totals only).
        self.phase_count = 0
        for phase in range(PHASES):
            self.current_ma[phase] = 0
            self.power_w[phase] = 0
            self.voltage_mv[phase] = None
        self.import_w = None
        self.export_w = None
        self.energy_import_wh = None
        self.energy_export_wh = None
        self.avg_demand_w = None
        self.month_peak_w = None
        # Two cadences only (see the module doc): when the per-phase values
        # were measured (None: at tick_ms, with the total), and the net
        # power (W, import positive) measured with them.
        self.phase_tick_ms = None
        self.phase_net_w = None

    def net_power_w(self):
        """Net grid power (import positive), or None when unknown."""
        if self.import_w is not None:
            return self.import_w - (self.export_w or 0)
        if self.phase_count:
            total = 0
            for phase in range(self.phase_count):
                total += self.power_w[phase]
            return total
        return None

    def copy_from(self, other):
        """Copy another reading into this one without allocating."""
        self.tick_ms = other.tick_ms
        self.phase_count = other.phase_count
        for phase in range(PHASES):
            self.current_ma[phase] = other.current_ma[phase]
            self.power_w[phase] = other.power_w[phase]
            self.voltage_mv[phase] = other.voltage_mv[phase]
        self.import_w = other.import_w
        self.export_w = other.export_w
        self.energy_import_wh = other.energy_import_wh
        self.energy_export_wh = other.energy_export_wh
        self.avg_demand_w = other.avg_demand_w
        self.month_peak_w = other.month_peak_w
        self.phase_tick_ms = other.phase_tick_ms
        self.phase_net_w = other.phase_net_w


# Charger vehicle states, normalised across drivers.
CAR_UNKNOWN = const(0)
CAR_NONE = const(1)  # nothing plugged in
CAR_CONNECTED = const(2)  # plugged in, not drawing
CAR_CHARGING = const(3)


class ChargerStatus:
    """What a charger driver last learned from its wallbox."""

    def __init__(self):
        self.reachable = False
        self.tick_ms = 0  # when the status was read
        self.car = CAR_UNKNOWN
        # Current drawn per charger phase L1..L3 in mA; None when the box
        # does not measure it (the guard then counts the offered current).
        self.current_ma = [None, None, None]
        self.power_w = None
        self.session_energy_wh = None
        self.session_s = None  # how long the charging session has run (s), None when the box does not say
        self.offered_ma = None  # the limit the box itself reports applying
        # The box's own lock (no charging until unlocked, V2C's "lock EVSE"):
        # True/False, None when unknown or the box has none.
        self.locked = None
        self.error = None  # short text of the last driver error, or None
        # True when the request that failed last (a command or a poll) met
        # MemoryError, whatever the driver's words for it in `error`: set by
        # the drivers' failure paths, cleared by app.py before each command,
        # which sends a command that found no heap again after a collection.
        self.no_heap = False


class ChargerCommand:
    """What the control core wants a charger to do."""

    def __init__(self):
        self.offered_ma = 0  # 0 = paused
        self.reason = "init"
