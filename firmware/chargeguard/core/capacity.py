"""Capacity tariff: keep every quarter-hour's average import under a limit.

Flanders (Fluvius) bills the capacity tariff on the highest quarter-hour
average import of the month, at least 2.5 kW (Fluvius, the Flemish grid operator).
Quarter-hours are clock-aligned: hh:00, :15, :30, :45.

Every tick this works out how much energy the quarter has already used and
hands the guard the power still allowed for the rest of it:

    allowed_w = (limit_w x 900 s - used_ws) / seconds left

so a quarter that started heavy leaves less for its rest (predictive), and
nothing waits for the end of the quarter to cut. `used_ws` (W s) comes from
the meter's running average when it gives one (e-MUCS `1-0:1.4.0`, current
average demand of the running quarter-hour: used = average x seconds into
the quarter), else from integrating the import (positive net power) between
readings. Export does not offset import (the tariff counts offtake only).

END_GUARD_S keeps the last minute from being handed out as a burst: the
device clock and the meter's quarter may differ by seconds, and a car that
ramps up in the last seconds would still draw in the next quarter. In the
last minute the rate in force when it began is kept (remaining / 60 s when
the first tick falls inside it), lowered only when the budget left cannot
pay for it to the end; not remaining / 60 s every tick: that
would fall every second while the import holds, and cut the car, or pause
it, at the end of every quarter.

A steady import gets a steady allowance: allowed_w is lowered at once, but
raised only by at least RAISE_BAND_W (or at a new quarter). A car that draws
a little less than offered (whole-ampere wallboxes) leaves budget unspent,
and an allowance that followed it watt by watt would have the guard raise
the offer by 0.1 A every few seconds and cut it back at the quarter's end.
Held below the computed rate, the allowance never spends more than the
quarter has.

Without wall time (no NTP/RTC yet) the quarter is unknown: the whole limit is
then the instantaneous cap, which keeps every possible quarter under it.
After a start mid-quarter without the meter's average, the unseen part of
the quarter is taken as spent at the limit (the safe assumption).

With `peak_follow_month` the limit is raised to this month's peak so far
(e-MUCS `1-0:1.6.0`) when that is higher: that peak is billed anyway, so
staying under it costs nothing ("never raise this month's peak").

Integers only (W, W s, s, ms); time is passed in; tick() allocates nothing.
"""

from micropython import const

from chargeguard.core.ticks import ticks_diff

QUARTER_S = const(900)
END_GUARD_S = const(60)
RAISE_BAND_W = const(500)
_MAX_IMPORT_W = const(500000)  # clamps the integration so products stay small ints
_CHUNK_MS = const(1000)
_MAX_GAP_MS = const(900000)

SOURCE_OFF = "off"  # no peak limit configured
SOURCE_NO_CLOCK = "no_clock"  # wall time unknown: the limit itself is the cap
SOURCE_METER = "meter"  # the meter's running quarter-hour average (1-0:1.4.0)
SOURCE_INTEGRATED = "integrated"  # import integrated over the quarter by us


class CapacityBudget:
    """The quarter-hour budget; its view is plain attributes for the site state.

    allowed_w: import power the guard may allow now (W, >= 0), None = no
    limit; limit_w: the limit in force (W); month_peak_w: the meter's month
    peak (W) or None; quarter_start_s: wall time the quarter began (s);
    elapsed_s: seconds into it; used_ws: import energy so far (W s);
    quarter_avg_w: used_ws / elapsed_s; remaining_ws: budget left (W s,
    negative once overspent); source: one of SOURCE_*.
    """

    def __init__(self):
        self.allowed_w = None
        self.limit_w = 0
        self.month_peak_w = None
        self.quarter_start_s = None
        self.elapsed_s = 0
        self.used_ws = 0
        self.quarter_avg_w = 0
        self.remaining_ws = 0
        self.source = SOURCE_OFF
        self._carry_wms = 0  # integration remainder below 1 W s
        self._last_ms = 0
        self._have_last = False
        self._last_import_w = 0
        self._end_w = -1  # the rate in force when the quarter's last minute began (-1: not yet)

    def tick(self, opt, reading, wall_s, now_ms):
        """Update the budget; return allowed_w (None = no limit).

        opt: OptimiserSettings (peak_limit_w, peak_follow_month); reading:
        a GridReading (net power, avg_demand_w, month_peak_w) or None when
        there is no fresh one; wall_s: wall time in s, None when the clock
        is not set. Only wall_s % 900 and a change of quarter matter, so any
        count congruent to UTC modulo 900 s will do (quarter-hours of local
        time fall on UTC's: offsets are whole quarter-hours): MicroPython's
        time.time() (2000 epoch, a small int on a 32-bit port until 2034), or
        Unix time modulo 86400 (a Unix time itself is no small int there,
        and a big int allocates); now_ms: ticks.
        """
        self.month_peak_w = None if reading is None else reading.month_peak_w
        limit = opt.peak_limit_w
        if not limit:
            self.source = SOURCE_OFF
            self.allowed_w = None
            self.limit_w = 0
            self.quarter_start_s = None
            self._have_last = False
            return None
        if opt.peak_follow_month and self.month_peak_w is not None and self.month_peak_w > limit:
            limit = self.month_peak_w
        self.limit_w = limit
        if wall_s is None:
            self.source = SOURCE_NO_CLOCK
            self.quarter_start_s = None
            self._have_last = False
            self.allowed_w = limit
            return limit
        # No fresh reading: the import is taken to go on as last seen.
        previous_w = import_w = self._last_import_w
        net_w = None if reading is None else reading.net_power_w()
        if net_w is not None:
            import_w = 0 if net_w < 0 else net_w if net_w < _MAX_IMPORT_W else _MAX_IMPORT_W
        self._last_import_w = import_w
        elapsed = wall_s % QUARTER_S
        start = wall_s - elapsed
        if start != self.quarter_start_s:
            # A new quarter: seen from its start when we ran through the last
            # one, else its unseen part counts as spent at the limit.
            fresh = self.quarter_start_s is not None and self.source != SOURCE_NO_CLOCK
            self.quarter_start_s = start
            self.used_ws = (import_w if fresh else limit) * elapsed
            self._carry_wms = 0
            self._end_w = -1
            self.allowed_w = None  # a new quarter: no allowance to hold
        elif self._have_last:
            # The higher of the two readings around the interval: never under-counts a step.
            self._integrate(import_w if import_w > previous_w else previous_w, ticks_diff(now_ms, self._last_ms))
        self._last_ms = now_ms
        self._have_last = True
        self.elapsed_s = elapsed
        avg = None if reading is None else reading.avg_demand_w
        if avg is not None:
            self.source = SOURCE_METER
            self.used_ws = avg * elapsed
        else:
            self.source = SOURCE_INTEGRATED
        self.quarter_avg_w = self.used_ws // elapsed if elapsed else import_w
        self.remaining_ws = limit * QUARTER_S - self.used_ws
        rest = QUARTER_S - elapsed
        if rest >= END_GUARD_S:
            allowed = self.remaining_ws // rest
            self._end_w = allowed if allowed > 0 else 0
        else:
            if self._end_w < 0:
                self._end_w = self.remaining_ws // END_GUARD_S
                if self._end_w < 0:
                    self._end_w = 0
            allowed = self.remaining_ws // rest
            if allowed > self._end_w:
                allowed = self._end_w
        if allowed < 0:
            allowed = 0
        held = self.allowed_w
        if held is None or allowed < held or allowed >= held + RAISE_BAND_W:
            self.allowed_w = allowed
        return self.allowed_w

    def _integrate(self, import_w, dt_ms):
        if dt_ms <= 0:
            return
        if dt_ms > _MAX_GAP_MS:
            dt_ms = _MAX_GAP_MS
        # In 1 s chunks so import_w x chunk stays a small int on the device.
        while dt_ms > 0:
            chunk = dt_ms if dt_ms < _CHUNK_MS else _CHUNK_MS
            carry = self._carry_wms + import_w * chunk
            self.used_ws += carry // 1000
            self._carry_wms = carry % 1000
            dt_ms -= chunk
