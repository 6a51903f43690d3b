"""The capacity-tariff figures a Belgian meter reports, from the simulated site's import.

A Belgian smart meter (e-MUCS) gives the running quarter-hour's average import (1-0:1.4.0,
"current average demand") and this month's highest quarter-hour average with its time
(1-0:1.6.0); HomeWizard's P1 meter passes them on as `active_power_average_w` /
`montly_power_peak_w` / `montly_power_peak_timestamp` (API v1) and `average_power_15m_w` /
`monthly_power_peak_w` / `monthly_power_peak_timestamp` (API v2) (/work/shared/PROTOCOLS.md,
/work/shared/protocols/http-meters.md). Quarter-hours are clock-aligned (hh:00, :15, :30, :45),
and the tariff counts offtake only: export does not offset import (Fluvius; core/capacity.py).

    demand = QuarterDemand()            # clock: seconds since 1970 (default time.time)
    demand.hold(import_w)               # the site's import from now on (W; export counts as 0)
    demand.average_w(), demand.peak()   # the running quarter's average, (peak W, its time) or (0, None)

The meter measures all the time: the import held since the last hold() is integrated up to
each call. The running average is the quarter's energy so far over the seconds of it gone by
(what core/capacity.py reads it as: used = average x seconds into the quarter); before the first
hold() the meter measured 0 W. A quarter's average becomes the month peak when it ends higher
than the peak so far, stamped with the quarter's end (the fixtures' stamps, 08:00:10, fall just
after a quarter's end); a new month (the clock's local time, as the meter keeps Belgian time)
starts again from 0 W with no time. Thread-safe.
"""

import threading
import time

QUARTER_S = 900


class QuarterDemand:
    """The running quarter-hour average import and the month's peak quarter (see the module text)."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._import_w = 0
        self._at = now  # integrated up to here
        self._quarter = self._quarter_of(now)  # start of the running quarter (s)
        self._energy_ws = 0.0  # in the running quarter
        self._month = self._month_of(now)
        self._peak_w = 0
        self._peak_at = None

    @staticmethod
    def _quarter_of(t):
        return int(t) // QUARTER_S * QUARTER_S

    @staticmethod
    def _month_of(t):
        local = time.localtime(t)
        return local.tm_year, local.tm_mon

    def hold(self, import_w):
        """The site imports `import_w` (W) from now on; a negative value (export) counts as 0."""
        with self._lock:
            self._advance(self._clock())
            self._import_w = max(0, import_w)

    def average_w(self):
        """The running quarter's average import so far (W, whole)."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            elapsed = now - self._quarter
            return round(self._energy_ws / elapsed) if elapsed > 0 else self._import_w

    def peak(self):
        """(W, seconds since 1970 of the quarter's end) of this month's highest quarter, (0, None) before one ended."""
        with self._lock:
            self._advance(self._clock())
            return self._peak_w, self._peak_at

    def _advance(self, now):
        # Integrate the held import up to `now`, closing each quarter that ended on the way.
        while now >= self._quarter + QUARTER_S:
            end = self._quarter + QUARTER_S
            self._energy_ws += self._import_w * (end - self._at)
            average_w = round(self._energy_ws / QUARTER_S)
            if average_w > self._peak_w:
                self._peak_w, self._peak_at = average_w, end
            self._quarter = self._at = end
            self._energy_ws = 0.0
            month = self._month_of(end)
            if month != self._month:
                # The quarter starting now is a new month's first: its peak starts again.
                self._month = month
                self._peak_w, self._peak_at = 0, None
        if now > self._at:
            self._energy_ws += self._import_w * (now - self._at)
            self._at = now
