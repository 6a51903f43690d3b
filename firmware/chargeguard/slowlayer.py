"""The optimiser in the running app: built from the configuration, run before the guard, shown on the console.

app.py imports this module only when core/modes.needs_optimiser(doc) says
the configuration needs the optimiser (a charger in eco/solar/excess, a
distribution other than "priority", or site.peak_limit_w): a site that uses
none of them never spends the heap on it, and none of it is loaded while the
configuration module is (the start-up peak).

Per decision (App.decide): SlowLayer.tick() runs core/optimiser.Optimiser on
the latest reading and hands its capacity cap to the guard
(Guard.import_cap_w) before the guard's own tick; SlowLayer.reasons() then
picks the reason to show per charger (the guard's when it limited the
charger, else the optimiser's). Nothing here allocates per tick.
"""

from micropython import const

from chargeguard.core.modes import SURPLUS_MODES
from chargeguard.core.optimiser import Optimiser, shown_reason
from chargeguard.core.optsettings import DIST_PRIORITY, optimiser_from_config
from chargeguard.core.ticks import ticks_diff

# Wall time before this (2024-01-01 UTC) means the clock was never set (an
# ESP32 RTC starts at 2000-01-01 until NTP sets it): the capacity tariff
# then counts no quarter and caps the import at the limit itself.
CLOCK_SET_S = const(1704067200)
_DAY_S = const(86400)
# The wall clock is read this often and counted on with ticks in between:
# a Unix time is a long int on a 32-bit port (one allocation per read), and
# a clock NTP sets in between is seen within this time.
_WALL_READ_MS = const(60000)


class SlowLayer:
    """The optimiser of one App; `optimiser` is its view (core/optimiser.py attributes)."""

    def __init__(self, doc, site, chargers):
        opt = optimiser_from_config(doc)
        self.optimiser = Optimiser(opt, site, chargers)
        self._follow(opt, chargers)
        self._wall_base_s = None  # wall_s_of() at _wall_read_ms, None = clock not set
        self._wall_read_ms = 0
        self._wall_read = False

    def _follow(self, opt, chargers):
        # With a distribution other than priority the fast/manual chargers
        # share the guard's room by that rule (the guard alone serves them
        # in priority order).
        self.envelope = opt.distribution != DIST_PRIORITY
        # The surplus is shown only when a charger runs on it.
        self.shows_surplus = False
        for charger in chargers:
            if charger.enabled and charger.mode in SURPLUS_MODES:
                self.shows_surplus = True

    def configure(self, doc, chargers):
        """Take run-time changes (commands.py): the settings in `doc` (a config-like dict,
        already validated) and the chargers' modes and priorities; effective next tick."""
        opt = optimiser_from_config(doc)
        mine = self.optimiser.opt
        mine.distribution = opt.distribution
        mine.peak_limit_w = opt.peak_limit_w
        mine.peak_follow_month = opt.peak_follow_month
        mine.eco = opt.eco
        mine.net_power_target_w = opt.net_power_target_w
        order = self.optimiser.order
        for index in range(len(order)):
            order[index] = index
        order.sort(key=lambda index: chargers[index].priority)
        self._follow(mine, chargers)

    def tick(self, platform, guard, reading, statuses, now_ms, targets_ma):
        """Fill targets_ma (mA) and set guard.import_cap_w; call before guard.tick()."""
        optimiser = self.optimiser
        wall_s = self.wall_s(platform, now_ms) if optimiser.opt.peak_limit_w else None
        envelope = guard.headroom_ma if self.envelope and not guard.failsafe else None
        guard.import_cap_w = optimiser.tick(reading, statuses, wall_s, now_ms, targets_ma, envelope)

    def wall_s(self, platform, now_ms):
        """Wall time in s modulo one day (None before the clock is set); reads the clock once a minute."""
        if not self._wall_read or ticks_diff(now_ms, self._wall_read_ms) >= _WALL_READ_MS:
            self._wall_base_s = wall_s_of(platform)
            self._wall_read_ms = now_ms
            self._wall_read = True
        if self._wall_base_s is None:
            return None
        return (self._wall_base_s + ticks_diff(now_ms, self._wall_read_ms) // 1000) % _DAY_S

    def reasons(self, commands, reasons):
        """reasons[i]: the one reason to show for charger i after the guard's tick."""
        mine = self.optimiser.reasons
        for index in range(len(commands)):
            reasons[index] = shown_reason(mine[index], commands[index].reason)

    def status(self, parts):
        """Append the surplus and the capacity figures, when they apply, to the status line's parts."""
        optimiser = self.optimiser
        if self.shows_surplus and optimiser.surplus_w is not None:
            parts.append("surplus %d W" % optimiser.surplus_w)
        capacity = optimiser.capacity
        if not capacity.limit_w:
            return
        if capacity.quarter_start_s is None:
            parts.append("peak %d W (no clock)" % capacity.limit_w)
        else:
            # The quarter-hour's average import so far / the limit, and the energy it may still import.
            figures = (capacity.quarter_avg_w, capacity.limit_w, capacity.remaining_ws // 3600)
            parts.append("quarter %d/%d W left %d Wh" % figures)


def wall_s_of(platform):
    """Wall time for the capacity tariff: s congruent to UTC modulo one day, None before the clock is set.

    Modulo a day: only the place in the quarter-hour matters, and the result
    stays a small int on a 32-bit port.
    """
    wall = platform.wall_time()
    if wall < CLOCK_SET_S:
        return None
    return wall % _DAY_S
