"""A charger's delivered energy counted from its session energy: today and lifetime.

Wallboxes report the energy of the running session (ChargerStatus.
session_energy_wh), which starts again at 0 with every session and after a
reset of the box. EnergyCounter turns those samples into a count that only
grows:

- an increase of the session energy is added;
- a drop (a new session, a box that restarted) starts a new baseline: the
  new session's energy so far is added (it was delivered since the last
  sample), what the old session delivered after its last sample is not
  known and not added; nothing is counted twice;
- no sample (an unreachable box, a box that does not report the energy):
  nothing is added, the baseline stays, and the energy delivered meanwhile
  is added with the next sample;
- a glitch: more energy than the charger could deliver since the baseline
  (max_w x elapsed time, +10 % and GLITCH_SLACK_WH for the box's rounding)
  is not added; the value becomes the new baseline and `reason` says why.

Published figures (Home Assistant's total_increasing sensors treat any
decrease as a meter reset and count the new value again, so what is shown
must never go down, also across a reboot): the lifetime shown is the one
last stored on flash (`stored_lifetime_wh`), today's likewise; the device
side stores the counters (store_due(), stored()) and restores them at boot
(restore()). A power cut loses at most what was counted since the last
store, and only when the session ended meanwhile: the stored baseline lets
a session that goes on count its energy since that store again.

Energy today counts from local midnight: the caller passes the local day
number (core/localtime.py) with new_day(); until the first call (no wall
clock yet) today is unknown (today() -> None) while the lifetime counts.
Pure: integers, no I/O, times passed in (ticks ms, core/ticks.py).
"""

from micropython import const

from chargeguard.core.ticks import ticks_add, ticks_diff

GLITCH_SLACK_WH = const(100)  # a box that reports 0.1 kWh steps moves by one step at once
# After a reboot the restored baseline is taken as this old: the box may
# have charged on meanwhile (a watchdog reset, an update).
REBOOT_GAP_MS = const(600000)
# Store when this much is counted but not stored, and PERSIST_MIN_MS passed
# since the last store; a session that ended stores what is left
# (any amount) after PERSIST_MIN_MS too.
PERSIST_STEP_WH = const(100)
PERSIST_MIN_MS = const(60000)
_HOUR_MS = const(3600000)


def max_power_w(phases, circuit_ma, voltage_v):
    """The most a charger can deliver (W): its phases at its circuit current and the voltage."""
    return phases * (circuit_ma // 1000) * voltage_v


def allowance_wh(max_w, elapsed_ms):
    """The most energy (Wh) a charger of max_w can deliver in elapsed_ms, +10 % and GLITCH_SLACK_WH.

    Whole hours and the rest apart: every product stays a small int on a
    32-bit port (max_w up to 100 kW, elapsed up to the ticks' half range).
    """
    if elapsed_ms < 0:
        elapsed_ms = 0
    hours = elapsed_ms // _HOUR_MS
    rest_s = (elapsed_ms % _HOUR_MS) // 1000
    wh = max_w * hours + max_w * rest_s // 3600
    return wh + wh // 10 + GLITCH_SLACK_WH


class EnergyCounter:
    """One charger's count (attributes in Wh; read-only outside this module).

    lifetime_wh   counted since the count began (stored part + since)
    today_wh      counted on local day `day` (None day: not known yet)
    stored_*      what was last stored on flash: lifetime_wh, today_wh, day,
                  session_wh (the baseline that goes with them)
    session_wh    the baseline: the box's session energy at the last sample
                  counted; None = no baseline (the first sample sets it)
    ended         a session ended since the last store (store sooner)
    reason        why the last sample was not counted, None when it was
    glitches      samples not counted, ever
    """

    def __init__(self):
        self.lifetime_wh = 0
        self.today_wh = 0
        self.day = None
        self.clock = False  # new_day() was called: today is known
        self.undated_wh = 0  # counted before the day was known
        self.session_wh = None
        self.base_ms = 0
        self.charging = False
        self.ended = False
        self.reason = None
        self.glitches = 0
        self.stored_lifetime_wh = 0
        self.stored_today_wh = 0
        self.stored_day = None
        self.stored_session_wh = None

    def restore(self, lifetime_wh, today_wh, day, session_wh, now_ms):
        """Start from a stored record (at boot): the counts, their day, the baseline that goes with them."""
        self.lifetime_wh = self.stored_lifetime_wh = lifetime_wh
        self.today_wh = self.stored_today_wh = today_wh
        self.day = self.stored_day = day
        self.session_wh = self.stored_session_wh = session_wh
        self.base_ms = ticks_add(now_ms, -REBOOT_GAP_MS)

    def sample(self, session_wh, charging, now_ms, max_w):
        """One reading of the box: its session energy (Wh; None = not given), whether a car
        charges, when (ticks ms), the charger's most power (W). Returns the Wh added."""
        if self.charging and not charging:
            self.ended = True
        self.charging = charging
        if session_wh is None or session_wh < 0:
            return 0
        base = self.session_wh
        if base is None:
            self._baseline(session_wh, now_ms)
            return 0
        added = session_wh - base if session_wh >= base else session_wh
        if session_wh < base:
            self.ended = True  # a new session (or the box restarted)
        if added > allowance_wh(max_w, ticks_diff(now_ms, self.base_ms)):
            self.reason = "session energy went from %d to %d Wh in %d s: more than the charger can deliver, not counted" % (
                base, session_wh, ticks_diff(now_ms, self.base_ms) // 1000)
            self.glitches += 1
            self._baseline(session_wh, now_ms)
            return 0
        self.reason = None
        if added or session_wh != base:
            self._baseline(session_wh, now_ms)
        elif charging:
            # Nothing new while charging: keep the baseline's time, so the
            # allowance grows for a box that updates its figure seldom.
            pass
        else:
            self.base_ms = now_ms
        self.lifetime_wh += added
        if self.clock:
            self.today_wh += added
        else:
            self.undated_wh += added
        return added

    def _baseline(self, session_wh, now_ms):
        self.session_wh = session_wh
        self.base_ms = now_ms

    def new_day(self, day, since_boot):
        """The local day number now. since_boot: the count began on this day (energy
        counted before the clock was known is today's). A day earlier than the one
        counted (the clock stepped back) is ignored: today never goes down."""
        if not self.clock:
            self.clock = True
            if day != self.day:
                self.today_wh = 0
                self.day = day
            if since_boot:
                self.today_wh += self.undated_wh
            self.undated_wh = 0
        elif day > self.day:
            self.today_wh = 0
            self.day = day

    def today(self):
        """Energy today as published (Wh): stored on flash for this day, 0 on a new day
        before the first store, None while the day is not known."""
        if not self.clock:
            return None
        return self.stored_today_wh if self.stored_day == self.day else 0

    def unstored_wh(self):
        """Counted but not yet stored (Wh)."""
        return self.lifetime_wh - self.stored_lifetime_wh

    def stored(self):
        """The figures as they are now went to flash: they become the published ones."""
        self.stored_lifetime_wh = self.lifetime_wh
        self.stored_today_wh = self.today_wh
        self.stored_day = self.day if self.clock else self.stored_day
        self.stored_session_wh = self.session_wh
        self.ended = False


def store_due(counters, since_store_ms):
    """True when the counters' unstored energy should go to flash now.

    At least PERSIST_MIN_MS after the last store, and either PERSIST_STEP_WH
    unstored (all chargers together) or a session ended with anything
    unstored. So at most 86400 / 60 = 1440 stores a day (each charger's
    figures in one file), in practice one per 100 Wh delivered plus one per
    session; a power cut loses at most what was counted since the last
    store: under 100 Wh, or a minute at full power when the interval held
    the store back (a 22 kW box: 367 Wh), and only of a session that ended
    during the cut (a session that goes on is counted on from the stored
    baseline).
    """
    if since_store_ms < PERSIST_MIN_MS:
        return False
    total = 0
    ended = False
    for counter in counters:
        unstored = counter.unstored_wh()
        total += unstored
        if unstored and counter.ended:
            ended = True
    return total >= PERSIST_STEP_WH or ended
