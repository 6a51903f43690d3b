"""The application: asyncio tasks around the control core.

    meter task    --fresh reading-->  decide()  --changed command-->  charger task (one per box)
    control task  --every second-->   decide()  (so a silent meter ends in failsafe);
                  wakes a charger task whose command found no heap (App._resend)
    poll timer    --every 5 s-->      charger task polls its box
    supervisor    feeds the watchdog only while decide() keeps running
    network task  joins the Wi-Fi and rejoins after drops (net/wifi.py); clock
                  task sets the wall clock by NTP while online (net/ntp.py)
    portal task   opens the setup access point, its DNS server and captive
                  portal when needed (net/portal.py, core/apmode.py)
    interfaces    one task per enabled interface (drivers.INTERFACE_MODULES,
                  e.g. MQTT): views and remote controls that never delay the guard

Each charger has its own task, so a wallbox that hangs delays nothing but
its own commands: the guard keeps deciding on every reading and the other
chargers keep receiving theirs.
"""

import asyncio
import gc
import sys

from micropython import const

from chargeguard.core.modes import fill_targets
from chargeguard.core.ticks import ticks_add, ticks_diff

CONTROL_TICK_MS = const(1000)  # the guard runs at least this often
CHARGER_POLL_MS = const(5000)  # how often each box is asked for its state
CHARGER_TIMEOUT_MS = const(2000)  # one request to a box, connect to last byte
WATCHDOG_TIMEOUT_MS = const(10000)  # hardware reset when not fed for this long
WATCHDOG_STALL_MS = const(3000)  # decide() older than this: stop feeding
STATUS_LINE_MS = const(1000)  # console status line period (0 = off)
TASK_RESTART_MS = const(1000)  # pause before a crashed task is restarted
GC_INTERVAL_MS = const(10000)  # a full collection this often, off the fast path
RESTART_DELAY_MS = const(10000)  # after a fatal error, before the reset
NTP_SYNC_MS = const(21600000)  # every 6 h: the ESP32 RTC drifts a few seconds a day
NTP_RETRY_MS = const(60000)  # after a failed sync
NTP_PORT = const(123)
# The first SNTP try waits while an interface makes its first announcement
# (Home Assistant's discovery), at most this long: their heap is then not
# needed at the same moment (the start-up peak, docs/firmware.md).
CLOCK_WAIT_MS = const(30000)
# core/apmode.WIFI_LOST_MS (a test checks they agree): the Wi-Fi down this
# long makes the portal where only that can open it (App.watch_wifi);
# apmode is not loaded before.
WIFI_LOST_MS = const(600000)
PORTAL_RETRY_MS = const(60000)  # a portal that found no heap: made again this much later
# A configuration has "booted and ran" once the guard has decided with it
# for a watchdog period: a loop that stalls is reset before then.
CONFIG_PROVEN_MS = const(10000)
CONFIG_NOTES_EVERY = const(60)  # status lines between repeats of the config notes
_TRIAL = "config.try"  # trial.TRIAL_FILE: a new config.json not yet proven
_BOOTS = "config.boot"  # trial.BOOTS_FILE: the last good configuration's unproven starts

_mem_alloc = getattr(gc, "mem_alloc", None)  # MicroPython only
# On the ESP32 (split heap, MicroPython >= 1.21) mem_free() includes what the
# heap may still grow by from the system ("max new split"): what is really
# left for Python objects (micropython PR #12366).
_mem_free = getattr(gc, "mem_free", None)


class App:
    """The running controller for one validated configuration.

    What the owner must know about the configuration is in one place, for
    the console now and MQTT/web later (build() fills it in):
      config_notes   list of sentences (refused settings, what runs instead,
                     then the warnings of what runs: "warning: PATH: MESSAGE",
                     configwarn.py); [] when config.json was applied as it
                     is and has no warning
      config_source  "config.json", "config.bak" (the last good copy) or
                     None (no valid configuration: no charger is commanded)
      safe_mode      None, or the first of safemode.reduce()'s sentences
                     ("SAFE MODE: ..." / "FAILSAFE MODE: ...") when the last
                     good configuration did not start twice and runs reduced
                     to what guards (trial.py counts; docs/configuration.md)

    The optimiser's view, for the console now and the site state later:
      optimiser      core/optimiser.Optimiser, or None when the configuration
                     needs none (every charger off/fast/manual, distribution
                     "priority", no peak_limit_w: the guard alone does that);
                     run by slowlayer.SlowLayer (App.slow).
                     Its attributes: export_w, surplus_w, pool_left_w,
                     upper_w / lower_w / net_target_w, import_cap_w,
                     capacity (quarter_avg_w, remaining_ws, allowed_w,
                     limit_w, month_peak_w, source), regulators[i], reasons[i]
      reasons        the one reason per charger to show (the guard's when it
                     limited the charger, else the optimiser's), refreshed
                     every decision

    Interfaces (MQTT, web, OCPP) use only these two (docs/architecture.md,
    "Site state and command API"):
      site_state()   state.SiteState, what they read, updated in place
      command_api()  commands.Commands, what they call to change settings
    Both are loaded at the first call (an interface calls them when it starts).
    """

    def __init__(self, platform, doc, meter, drivers, log=print):
        # Runs once per boot: the body is appinit.py's (unloaded after build()).
        from chargeguard import appinit

        appinit.init_app(self, platform, doc, meter, drivers, log)

    def site_state(self):
        """The site state (state.SiteState): what interfaces read; updated in
        place by every decision from the first call on. Made at the first
        call (about 4.5 KB of heap on a 32-bit port): a controller without
        MQTT or web pages never pays for it."""
        if self.state is None:
            from chargeguard.state import SiteState

            self.state = SiteState(self)
            if self.safe_mode:
                # An interface still up (an OCPP box's central system) shows it too.
                self.state.add_error(self.safe_mode)
        return self.state

    def command_api(self):
        """The command API (commands.Commands): what interfaces call to change settings.

        Loaded at the first call (about 10 KB of heap with rules.py on a
        32-bit port): a controller without MQTT or web pages never pays for it.
        """
        if self.api is None:
            from chargeguard.commands import Commands

            self.api = Commands(self)
        return self.api

    # -- control ------------------------------------------------------------

    def decide(self):
        """One guard decision on the latest reading; wakes chargers whose command changed."""
        now_ms = self.platform.ticks_ms()
        reading = self.meter.reading if self.have_reading else None
        slow = self.slow
        if slow is None:
            fill_targets(self.chargers, self.targets_ma)
        else:
            # The optimiser chooses the targets; the guard below stays the
            # envelope (breaker, contract, capacity cap) and sheds at once.
            slow.tick(self.platform, self.guard, reading, self.statuses, now_ms, self.targets_ma)
        self.guard.tick(reading, self.statuses, self.targets_ma, now_ms, self.commands)
        self.decisions += 1
        self.last_decision_ms = now_ms
        for index in range(len(self.commands)):
            command = self.commands[index]
            self.reasons[index] = command.reason
            if command.offered_ma != self.sent_ma[index]:
                self.wake[index].set()
        if slow is not None:
            slow.reasons(self.commands, self.reasons)
        if self.state is not None:
            self.state.update(now_ms)

    def on_reading(self):
        """The meter has a fresh reading: decide at once (the guard's fast path)."""
        tick = self.meter.reading.tick_ms
        if self.have_reading and not self.cadence_warned:
            # A meter whose readings come nearly meter_timeout apart (a DSMR 4
            # meter's 10 s with the default 10 s) goes to the failsafe whenever
            # one comes a little late: say so once.
            gap = ticks_diff(tick, self.last_reading_ms)
            limit = self.guard.site.meter_timeout_ms
            if limit * 9 // 10 <= gap <= limit:
                self.cadence_warned = True
                self.log(
                    "WARNING: the meter gives a reading every %d ms, close to guard.meter_timeout_s (%d s): a late one"
                    " puts the chargers on their failsafe current; set meter_timeout_s to at least %d"
                    % (gap, limit // 1000, 2 * ((gap + 999) // 1000))
                )
        self.last_reading_ms = tick
        self.have_reading = True
        self.decide()

    async def meter_task(self):
        await self.meter.run(self.on_reading)

    async def control_task(self):
        sleep_ms = self.platform.sleep_ms
        while self.running:
            await sleep_ms(CONTROL_TICK_MS)
            if ticks_diff(self.platform.ticks_ms(), self.last_decision_ms) >= CONTROL_TICK_MS:
                self.decide()
            # A command that did not leave for want of heap (_resend) goes
            # again now, whether or not this tick decided.
            for index in range(len(self.sent_ma)):
                if self.sent_ma[index] < 0:
                    self.wake[index].set()
            # Why the meter gives no reading (a Modbus meter that does not
            # answer, a P1 telegram refused), once per change.
            error = self.meter.last_error
            if error != self.meter_error:
                self.meter_error = error
                self.log("meter: " + error if error else "meter: ok")

    async def poll_timer_task(self):
        # Polls are spread over the period rather than sent all at once: the
        # wallboxes' answers (and the memory to read them) then never pile up.
        count = len(self.drivers)
        step_ms = CHARGER_POLL_MS // count if count else CHARGER_POLL_MS
        while self.running:
            for index in range(count):
                self.poll_due[index] = True
                self.wake[index].set()
                await self.platform.sleep_ms(step_ms)
            if not count:
                await self.platform.sleep_ms(step_ms)

    def decision_count(self):
        """How many guard decisions were made since start (int); drivers compare two readings."""
        return self.decisions

    def _poll_soon(self, index):
        # Charger `index`'s poll on its task's next pass, then its command.
        def soon():
            self.poll_due[index] = True
            self.wake[index].set()

        return soon

    async def charger_task(self, index):
        driver = self.drivers[index]
        wake = self.wake[index]
        command = self.commands[index]
        while self.running:
            await wake.wait()
            wake.clear()
            if self.needs_network and not self.platform.network_up():
                # No network: no request could leave. The box counts as
                # unavailable (its last offer stays counted as drawn).
                status = self.statuses[index]
                status.reachable = False
                status.error = "no network"
                self._report_error(index)
                continue
            if self.poll_due[index]:
                self.poll_due[index] = False
                await driver.poll()
            offered_ma = command.offered_ma
            if offered_ma != self.sent_ma[index] and self.have_reading:
                # The guard's reaction time: from the telegram that made the
                # decision to its command handed to the box's driver. A
                # change made by the control tick (no fresh telegram) does
                # not count.
                age_ms = ticks_diff(self.platform.ticks_ms(), self.meter.reading.tick_ms)
                if 0 <= age_ms < CONTROL_TICK_MS:
                    self.reaction_ms = age_ms
            self.sent_ma[index] = offered_ma
            # The driver sends only what the box does not have yet, so this
            # also puts back a limit someone changed on the box itself.
            try:
                # The driver's failure path sets no_heap when the command met
                # MemoryError, whatever its words for it in status.error.
                status = self.statuses[index]
                status.no_heap = False
                if not await driver.apply(offered_ma) and status.no_heap:
                    await self._resend(index)
            except BaseException:
                # Whatever broke this task (it is restarted), the command
                # may not have left: the next decision hands it over again.
                self.sent_ma[index] = -1
                raise
            locked = self.lock_wanted[index]
            if locked is not None:
                # Once, whatever the outcome (a refusal is in the box's
                # status); the box is read again at once so what it now
                # has reaches the site state without waiting for the poll.
                self.lock_wanted[index] = None
                await driver.set_lock(locked)
                self.poll_due[index] = True
                wake.set()
            self._report_error(index)

    async def _resend(self, index):
        # A command that found no heap never reached the box, and a cut must
        # not wait for the next poll (CHARGER_POLL_MS): collect, say why
        # (once per error text), send the newest command again at once; when
        # that finds no heap either, the control task wakes this one at its
        # next tick (sent_ma -1), within CONTROL_TICK_MS.
        gc.collect()
        try:
            self._report_error(index)
        except MemoryError:
            pass  # the command matters, not its line
        offered_ma = self.commands[index].offered_ma
        self.sent_ma[index] = offered_ma
        if not await self.drivers[index].apply(offered_ma):
            self.sent_ma[index] = -1

    def request_lock(self, index, locked):
        """Ask charger `index`'s box to lock (True) or unlock (False); sent by its task within a moment.

        For the command API (commands.Commands.set_lock checks the value and
        that the driver can lock); not persisted: the box keeps its lock.
        """
        self.lock_wanted[index] = locked
        self.wake[index].set()

    def _report_error(self, index):
        error = self.statuses[index].error
        if error != self.last_errors[index]:
            self.last_errors[index] = error
            if error:
                self.log("charger %s: %s" % (self.names[index], error))
                if self.state is not None:
                    self.state.add_error("charger %s: %s" % (self.names[index], error))
            else:
                self.log("charger %s: ok" % self.names[index])

    async def supervisor_task(self):
        platform = self.platform
        platform.watchdog_start(WATCHDOG_TIMEOUT_MS)
        last_gc_ms = platform.ticks_ms()
        while self.running:
            # Fed only while decisions keep coming: a stuck loop or a dead
            # control task ends in a reset, never in frozen charger limits.
            now_ms = platform.ticks_ms()
            if ticks_diff(now_ms, self.last_decision_ms) < WATCHDOG_STALL_MS:
                platform.watchdog_feed()
                proving = self.config_good is not None or self.boots_proven is not None
                if proving and ticks_diff(now_ms, self.started_ms) >= self.config_proven_ms:
                    self.keep_last_good()
            if ticks_diff(now_ms, last_gc_ms) >= GC_INTERVAL_MS:
                # Collect at a quiet moment rather than when an allocation
                # finds the heap full in the middle of a guard decision.
                last_gc_ms = now_ms
                gc.collect()
                if _mem_alloc is not None:
                    self.heap_live = _mem_alloc()
                    self.heap_free = _mem_free()
                if self.state is not None:
                    self.state.refresh_device(now_ms, True)
            elif self.state is not None:
                self.state.refresh_device(now_ms)
            if self.portal_later is not None:
                self.watch_wifi(now_ms)
            if self.api is not None:
                # Settings changed at run time reach the flash a few
                # seconds after the last change (commands.PERSIST_DELAY_MS).
                self.api.flush(now_ms)
            await platform.sleep_ms(CONTROL_TICK_MS // 2)

    def watch_wifi(self, now_ms):
        """Where only a lost Wi-Fi can open the setup access point (portal_later): make the portal once the
        link has been down WIFI_LOST_MS (from boot or its last moment up).

        net/portal.py, core/apmode.py and the portal's objects are loaded
        only then; the portal opens at its first step (its ApMode counts the
        loss from the same moment), serves the pages as a portal made at
        boot does, and stays loaded. Called by the supervisor every half second.
        """
        if self.network.is_up():
            self.wifi_up_ms = now_ms
            return
        if ticks_diff(now_ms, self.wifi_up_ms) < WIFI_LOST_MS:
            return
        try:
            from chargeguard.net import portal as portal_module
        except MemoryError:
            portal_module = None
        # The portal's module makes it and hooks it in (that code runs
        # once); False when the portal found no heap.
        if portal_module is None or not portal_module.open_later(self):
            # The access point is how an owner mends a changed Wi-Fi password:
            # never given up. The heap changes as requests come and go; tried
            # again PORTAL_RETRY_MS later (its loss counted from then on).
            self.wifi_up_ms = ticks_add(now_ms, PORTAL_RETRY_MS - WIFI_LOST_MS)
            self.log("setup access point: not enough memory to open it now, trying again in a minute")

    def keep_last_good(self):
        """The configuration has run CONFIG_PROVEN_MS: config.json is copied to config.bak, the last good copy,
        and the last good configuration's start count (trial.py, config.boot) goes or drops to boots_proven.

        Once per boot: the copy only when config.bak differs (load_for_boot()
        compared them); atomic, in small chunks. The small flashfile module is
        loaded for it and unloaded again (config.remember() without the config
        module); the usual boot (nothing to copy) only removes the count.
        """
        good = self.config_good
        self.config_good = None
        # The last good configuration's start count: gone, or the one
        # trial.py said this level leaves (safe mode).
        boots = self.boots_proven
        self.boots_proven = None
        path = self.storage + "/" + _BOOTS
        if good is None and not boots:
            # The usual boot: only the count goes (flashfile is not loaded for it).
            import os

            try:
                os.remove(path)
            except OSError:
                pass
            return
        from chargeguard import flashfile

        try:
            if good is not None:
                flashfile.keep_last_good(self.storage, good, self.log)
        finally:
            # Proven: the next boot tries it again whatever happens (trial.py).
            flashfile.remove(self.storage + "/" + _TRIAL)
            if boots:
                try:
                    flashfile.write(path, path + ".tmp", boots)
                except OSError:
                    pass  # the count stays: the next boot is safe mode again
            else:
                flashfile.remove(path)
            del flashfile
            _unload("chargeguard.flashfile")

    async def status_task(self):
        count = 0
        while self.running:
            await self.platform.sleep_ms(STATUS_LINE_MS)
            self.log(self.status_line())
            count += 1
            if count >= self.config_notes_every and (self.config_source != "config.json" or self.safe_mode):
                # Repeated: whoever opens the console later still reads why.
                count = 0
                for note in self.config_notes:
                    self.log("config: " + note)

    async def energy_task(self):
        # The chargers' energy today and lifetime (energylog.py): counted and
        # stored on flash here, never inside a guard decision. Only with the
        # site state: an interface is then there to show them.
        if self.energy is None:
            from chargeguard.energylog import EnergyLog

            self.energy = EnergyLog(self)
        await self.energy.run()

    async def clock_task(self):
        # Sets the wall clock by SNTP at boot and every NTP_SYNC_MS while the
        # link is up; offline the RTC keeps it.
        platform = self.platform
        due_ms = started_ms = platform.ticks_ms()
        synced = False
        while self.running:
            await platform.sleep_ms(CONTROL_TICK_MS)
            if not self.network.is_up() or ticks_diff(platform.ticks_ms(), due_ms) < 0:
                continue
            if not synced and ticks_diff(platform.ticks_ms(), started_ms) < self.clock_wait_ms and self._settling():
                continue
            ok = await _sync_time(platform, self.ntp_server, self.log, synced, self.ntp_port)
            synced = synced or ok
            due_ms = ticks_add(platform.ticks_ms(), NTP_SYNC_MS if ok else NTP_RETRY_MS)
            if not ok:
                self.log("time: next try in %d s" % (NTP_RETRY_MS // 1000))

    def _settling(self):
        # An interface still making its first announcement (its optional
        # settling(): net/hass.py's discovery after boot).
        for name, interface in self.interfaces:
            settling = getattr(interface, "settling", None)
            if settling is not None and settling():
                return True
        return False

    def status_line(self):
        """One console line: the grid current of each site phase (only one on a
        1-phase site; a meter with totals only: its total power), each
        charger's offer and reason (App.reasons), then when they apply the
        surplus ("surplus 5200 W", a charger in a surplus mode) and the
        capacity tariff ("quarter 2950/4000 W left 262 Wh": the quarter-hour's
        average import so far / site.peak_limit_w, and the energy it may
        still import; "peak 4000 W (no clock)" before the wall clock is set),
        the live heap."""
        reading = self.meter.reading
        known = self.have_reading and not self.guard.failsafe
        if known and not reading.phase_count:
            # A meter with totals only (DSMR 2.2/3.0): its per-phase currents
            # are unknown; show the total it gives, not zeros.
            net_w = reading.net_power_w()
            grid = "grid %6s W total" % ("--" if net_w is None else net_w)
        else:
            grid = "grid"
            for phase in range(self.guard.site.phases):
                grid += " %5s" % (_amps(reading.current_ma[phase]) if known else "--.-")
            grid += " A"
        parts = [grid]
        for index in range(len(self.commands)):
            command = self.commands[index]
            parts.append("%s %5s A %s" % (self.names[index], _amps(command.offered_ma), self.reasons[index]))
        if self.slow is not None:
            self.slow.status(parts)
        if known and reading.month_peak_w is not None:
            # The meter's month peak (1-0:1.6.0, Belgian meters): what the capacity tariff bills.
            parts.append("month peak %d W" % reading.month_peak_w)
        if self.heap_live:
            parts.append("heap %d B" % self.heap_live)
        if self.safe_mode:
            parts.append(self.safe_mode[: self.safe_mode.find(":")])
        if self.config_source is None:
            parts.append("NO VALID CONFIG: nothing commanded")
        elif self.config_source != "config.json":
            parts.append("last good config (config.json not applied)")
        return " | ".join(parts)

    # -- supervision --------------------------------------------------------

    async def _supervised(self, name, factory):
        # A task that raises is logged and restarted: one broken part must
        # not take the guard down with it.
        while self.running:
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                try:
                    self.log("task %s failed: %r; restarting" % (name, error))
                    if self.state is not None:
                        self.state.add_error("task %s failed: %r" % (name, error))
                except MemoryError:
                    pass  # no heap for the text: the task is restarted all the same
                await self.platform.sleep_ms(TASK_RESTART_MS)

    async def run(self):
        """Run every task until stop() (or forever on the device)."""
        tasks = self.tasks = [
            asyncio.create_task(self._supervised("meter", self.meter_task)),
            asyncio.create_task(self._supervised("control", self.control_task)),
            asyncio.create_task(self._supervised("poll", self.poll_timer_task)),
            asyncio.create_task(self._supervised("supervisor", self.supervisor_task)),
        ]
        for index in range(len(self.drivers)):
            tasks.append(asyncio.create_task(self._supervised("charger", _bind(self.charger_task, index))))
        if STATUS_LINE_MS:
            tasks.append(asyncio.create_task(self._supervised("status", self.status_task)))
        for name, interface in self.interfaces:
            tasks.append(asyncio.create_task(self._supervised(name, interface.run)))
        if self.state is not None and not self.safe_mode:
            tasks.append(asyncio.create_task(self._supervised("energy", self.energy_task)))
        if self.portal is not None:
            tasks.append(asyncio.create_task(self._supervised("portal", self.portal.run)))
        if self.network is not None:
            tasks.append(asyncio.create_task(self._supervised("network", self.network.run)))
            if self.ntp_server:
                tasks.append(asyncio.create_task(self._supervised("clock", self.clock_task)))
        self.decide()
        try:
            while self.running:
                await self.platform.sleep_ms(CONTROL_TICK_MS)
        finally:
            for task in tasks:
                task.cancel()

    def stop(self):
        self.running = False


async def _sync_time(platform, server, log, synced, port):
    # net/ntp.py and net/dns.py (3.7 KB of heap on an ESP32) are needed a few
    # seconds every NTP_SYNC_MS: imported for the sync, unloaded after it.
    from chargeguard.net import ntp

    try:
        return await ntp.sync(platform, server, log, 2 if synced else -1, port)
    finally:
        del ntp
        _unload("chargeguard.net.ntp")
        # A wallbox host name lookup imports it again when it needs it.
        _unload("chargeguard.net.dns")


def _bind(method, index):
    def call():
        return method(index)

    return call


def _amps(milliamps):
    sign = "-" if milliamps < 0 else ""
    milliamps = abs(milliamps)
    return "%s%d.%d" % (sign, milliamps // 1000, (milliamps % 1000) // 100)


def _unload(name):
    # Gives a module's heap back: drop it from sys.modules and its package
    # (it is imported afresh when needed again).
    sys.modules.pop(name, None)
    cut = name.rfind(".")
    parent = sys.modules.get(name[:cut])
    short = name[cut + 1 :]
    if parent is not None and short in parent.__dict__:
        delattr(parent, short)
    gc.collect()


def unload_config():
    """Unloads config.py and the charger rule modules it loaded (drivers.CHARGER_MODULES)."""
    from chargeguard.drivers import CHARGER_MODULES

    _unload("chargeguard.config")
    for row in CHARGER_MODULES.values():
        if row[1] in sys.modules:
            _unload(row[1])


def build(platform, log=print):
    """Load the configuration and build the App (the drivers it names).

    A config.json that is valid but cannot start (a driver fails, no heap
    for it) is not applied either: the App is built from the last good copy.
    The notes are printed and kept on the App (config_notes). The work is
    chargeguard/appboot.py's, startup.py's and appinit.py's, loaded for it and unloaded
    after: code that runs once per boot does not stay on the running
    controller's heap.
    """
    from chargeguard import appboot

    try:
        return appboot.build(platform, log)
    finally:
        del appboot
        _unload("chargeguard.appboot")


def _resolver(platform):
    # net/dns.py is imported at the first host name: numeric wallbox
    # addresses (the usual case) never cost its heap.
    async def lookup(name, timeout_ms):
        from chargeguard.net import dns

        return await dns.resolve(platform, name, timeout_ms)

    return lookup


class _NoMeter:
    """Stands in for a meter that could not be opened: never a reading."""

    def __init__(self):
        from chargeguard.core.model import GridReading

        self.reading = GridReading()
        self.last_error = "not started"

    async def run(self, on_reading):
        while True:
            await asyncio.sleep(3600)


def load_board(path="board.json"):
    """The board description deployed next to main.py ({} when absent)."""
    import json

    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def main():
    """Entry point of main.py on the device and on the unix port."""
    from chargeguard import platform as platform_package

    platform = platform_package.load().Platform(load_board())
    # Why the board restarted (a watchdog reset means the loop had stalled).
    print("boot: " + platform.reset_cause())
    try:
        app = build(platform)
        app.log("ChargeGuard running: %d charger(s)" % len(app.drivers))
        asyncio.run(app.run())
    except KeyboardInterrupt:
        raise
    except Exception as error:
        # Nothing may be left running without the guard: report, wait a
        # little (so a boot loop does not hammer the wallboxes), start over.
        print("ChargeGuard stopped: %r; restarting in %d s" % (error, RESTART_DELAY_MS // 1000))
        _traceback(error)
        asyncio.run(_pause(platform, RESTART_DELAY_MS))
        platform.reset()


def _traceback(error):
    # Where an error happened, for whoever reads the console (MicroPython's
    # traceback: function names; line numbers with tools/build.py --lines).
    print_exception = getattr(sys, "print_exception", None)
    if print_exception is not None:
        print_exception(error)


async def _pause(platform, delay_ms):
    await platform.sleep_ms(delay_ms)
