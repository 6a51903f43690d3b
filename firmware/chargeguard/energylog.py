"""Each charger's energy today and lifetime on the device: counted, kept on flash, shown in the site state.

A task of its own (App.energy_task, started when an interface made the site
state): every STEP_MS it feeds each charger's newest poll to its
core/energy.EnergyCounter, tells the counters the local day (the wall clock
through core/localtime.py and `site.timezone`), stores the counts when
core/energy.store_due() says so, and copies the published figures into the
site state (ChargerState.energy_today_wh / energy_lifetime_wh, bumping
chargers_seq). Nothing here runs inside a guard decision, and no flash write
happens in one.

The record: two files, RECORD_FILES, written in turn, each atomically
(flashfile.write: temp file, sync, read back, rename). A record is one line
of JSON {"seq": n, "chargers": [[name, lifetime Wh, today Wh, day, session
Wh], ...]} (day: local days since 1970 or null; session: the box's session
energy the counts go with, or null) and a line with the CRC-32 of the first
line's bytes. At boot the valid record with the higher seq is used; the next
store goes to the other file. So the last good record survives a power cut
during a store and a file that went bad on flash: a bad file costs at most
one store's worth of counting, never the lifetime count. Only when a file is
there but neither holds a valid record does the count start again from 0,
with a log line and an entry in the site state's errors saying so (both
missing: a first start, "no record yet"). Chargers are matched
by name (a renamed charger counts from 0, as Home Assistant sees a new
device then).

Flash wear: at most 1440 stores a day (core/energy.PERSIST_MIN_MS), in
practice one per 100 Wh delivered and one per session. A record of a few
hundred bytes on MicroPython's LittleFS (the ESP32 port's default) is a
commit to a metadata block, a few block erases at most; LittleFS moves a
metadata block after 100 erase cycles (block_cycles, extmod/vfs_lfsx.c), so
the erases spread over the free blocks of the partition (~500 blocks of 4 KB
on a 4 MB board): even 1440 stores a day at 4 erases each is under 12 erase
cycles per block a day, about 20 years of the flash's 100 000.
"""

import sys

from micropython import const

from chargeguard.core import localtime
from chargeguard.core.energy import EnergyCounter, max_power_w, store_due
from chargeguard.core.model import CAR_CHARGING
from chargeguard.core.ticks import ticks_diff

RECORD_FILES = ("energy.a.json", "energy.b.json")
STEP_MS = const(1000)  # how often the polls are looked at and the day checked
# The wall clock is read this often and counted on with ticks in between (a
# Unix time is a long int on a 32-bit port); before it is set, this often too.
WALL_READ_MS = const(60000)
# Wall time before this (2024-01-01 UTC): the clock was never set (an ESP32
# RTC starts at 2000-01-01 until NTP sets it); energy today is then unknown.
CLOCK_SET_S = const(1704067200)
_DAY_S = const(86400)
_DAY_MS = const(86400000)


class EnergyLog:
    """The energy counts of one App's chargers (see the module docstring).

    counters[i]: core/energy.EnergyCounter of charger i; storage: the
    directory of RECORD_FILES; rule: the time zone (core/tzparse.parse()).
    """

    def __init__(self, app, now_ms=None):
        platform = app.platform
        self.platform = platform
        self.log = app.log
        self.state = app.site_state()
        self.statuses = app.statuses
        self.names = app.names
        self.storage = app.storage or platform.storage_dir()
        self.rule = None  # set by load(): the time zone's rule (core/tzparse.parse())
        voltage = app.guard.site.voltage_v
        self.max_w = [max_power_w(c.phases, c.circuit_ma, voltage) for c in app.chargers]
        count = len(app.names)
        self.counters = [EnergyCounter() for _ in range(count)]
        self._seen = [-1] * count
        now_ms = platform.ticks_ms() if now_ms is None else now_ms
        self.started_ms = now_ms
        self.stored_ms = now_ms
        self.seq = 0
        self.slot = 0
        self.stores = 0
        self.store_error = None
        self._wall_ms = now_ms
        self._wall_read = False
        self._base_day = None
        self._base_sod = 0
        self._day = self._sod = 0
        self._old = False  # the count began a day or more ago
        self.load(now_ms, app.timezone)
        self._publish()

    # -- the record ------------------------------------------------------------

    def load(self, now_ms, timezone):
        """Set the time zone's rule (timezone: site.timezone, a POSIX TZ string) and restore the
        counters from the newer valid record (see the module docstring).

        The reading and checking is energyrecord.py, imported for it and
        dropped after: it runs once, at the task's start.
        """
        from chargeguard import energyrecord

        try:
            self.rule = energyrecord.rule(timezone, self.log)
            energyrecord.load(self, now_ms)
        finally:
            del energyrecord
            _unload("energyrecord")

    def store(self, now_ms):
        """Write the counts to the next record file; True when stored (then they are published).

        The writing is energyrecord.py, loaded for it and dropped after (a
        store is due at most once a minute, in practice per 100 Wh): a heap
        that cannot load it now is a failed store, tried again after
        PERSIST_MIN_MS as a flash error is.
        """
        self.stored_ms = now_ms
        try:
            from chargeguard import energyrecord
        except MemoryError:
            self._store_failed("energy: could not store %s (not enough memory now)" % RECORD_FILES[self.slot])
            return False
        try:
            return energyrecord.store(self, now_ms)
        finally:
            del energyrecord
            _unload("energyrecord")

    def _store_failed(self, text):
        # Counted on; tried again after PERSIST_MIN_MS. Logged once per kind of failure.
        if text != self.store_error:
            self.store_error = text
            self.log(text)

    # -- the task ----------------------------------------------------------------

    async def run(self):
        """Step every STEP_MS until cancelled."""
        platform = self.platform
        while True:
            self.step(platform.ticks_ms())
            await platform.sleep_ms(STEP_MS)

    def step(self, now_ms):
        """Count the new polls, follow the local day, store when due, publish. Allocates
        nothing but when the wall clock is read (once a minute) or a record is stored."""
        day = self.local_day(now_ms)
        if day is None and not self._old and ticks_diff(now_ms, self.started_ms) >= _DAY_MS:
            self._old = True  # noted while it can be: the ticks wrap after ~6 days
        counters = self.counters
        for index in range(len(counters)):
            counter = counters[index]
            status = self.statuses[index]
            if status.reachable and status.tick_ms != self._seen[index]:
                self._seen[index] = status.tick_ms
                glitches = counter.glitches
                counter.sample(status.session_energy_wh, status.car == CAR_CHARGING, status.tick_ms,
                               self.max_w[index])
                if counter.glitches != glitches:
                    self.log("energy: charger %s: %s" % (self.names[index], counter.reason))
            if day is not None:
                if not counter.clock:
                    # Energy counted before the clock was set is today's when the count began today.
                    counter.new_day(day, self._began_today(now_ms))
                else:
                    counter.new_day(day, False)
        if store_due(counters, ticks_diff(now_ms, self.stored_ms)):
            self.store(now_ms)
        self._publish()

    def _publish(self):
        state = self.state
        changed = False
        for index in range(len(self.counters)):
            counter = self.counters[index]
            charger = state.chargers[index]
            today = counter.today()
            if today != charger.energy_today_wh or counter.stored_lifetime_wh != charger.energy_lifetime_wh:
                charger.energy_today_wh = today
                charger.energy_lifetime_wh = counter.stored_lifetime_wh
                changed = True
        if changed:
            state.chargers_seq += 1

    # -- the wall clock ------------------------------------------------------------

    def local_day(self, now_ms):
        """The local day number now (localtime.local_day), None before the wall clock is set."""
        if not self._utc(now_ms):
            return None
        return localtime.local_day(self.rule, self._day, self._sod)

    def _began_today(self, now_ms):
        # The count began after local midnight: the uptime is shorter than the local day so far.
        uptime_ms = ticks_diff(now_ms, self.started_ms)
        if self._old or uptime_ms >= _DAY_MS:
            return False
        self._utc(now_ms)
        return localtime.local_sod(self.rule, self._day, self._sod) * 1000 >= uptime_ms

    def _utc(self, now_ms):
        # UTC day and second of the day now into _day / _sod; False before the clock is set.
        if not self._wall_read or ticks_diff(now_ms, self._wall_ms) >= WALL_READ_MS:
            wall = self.platform.wall_time()
            self._wall_ms = now_ms
            self._wall_read = True
            if wall < CLOCK_SET_S:
                self._base_day = None
            else:
                self._base_day = wall // _DAY_S
                self._base_sod = wall % _DAY_S
        if self._base_day is None:
            return False
        sod = self._base_sod + ticks_diff(now_ms, self._wall_ms) // 1000
        self._day = self._base_day + sod // _DAY_S
        self._sod = sod % _DAY_S
        return True


def _unload(name):
    # A module of this package used once: its heap back (imported afresh when needed again).
    sys.modules.pop("chargeguard." + name, None)
    package = sys.modules.get("chargeguard")
    if package is not None and name in package.__dict__:
        delattr(package, name)
