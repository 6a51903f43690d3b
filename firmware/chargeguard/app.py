"""The application: asyncio tasks around the control core.

    meter task    --fresh reading-->  decide()  --changed command-->  charger task (one per box)
    control task  --every second-->   decide()  (so a silent meter ends in failsafe)
    poll timer    --every 5 s-->      charger task polls its box
    supervisor    feeds the watchdog only while decide() keeps running
    network task  joins the Wi-Fi and rejoins after drops (net/wifi.py); clock
                  task sets the wall clock by NTP while online (net/ntp.py)

Each charger has its own task, so a wallbox that hangs delays nothing but
its own commands: the guard keeps deciding on every reading and the other
chargers keep receiving theirs.
"""

import asyncio
import gc
import sys

from micropython import const

from chargeguard.core.guard import Guard
from chargeguard.core.model import ChargerCommand
from chargeguard.core.modes import fill_targets
from chargeguard.core.settings import charger_from_config, site_from_config
from chargeguard.core.ticks import ticks_diff
from chargeguard.drivers import CHARGER_MODULES, METER_MODULES

CONTROL_TICK_MS = const(1000)  # the guard runs at least this often
CHARGER_POLL_MS = const(5000)  # how often each box is asked for its state
CHARGER_TIMEOUT_MS = const(2000)  # one request to a box, connect to last byte
WATCHDOG_TIMEOUT_MS = const(10000)  # hardware reset when not fed for this long
WATCHDOG_STALL_MS = const(3000)  # decide() older than this: stop feeding
STATUS_LINE_MS = const(1000)  # console status line period (0 = off)
TASK_RESTART_MS = const(1000)  # pause before a crashed task is restarted
GC_INTERVAL_MS = const(10000)  # a full collection this often, off the fast path
RESTART_DELAY_MS = const(10000)  # after a fatal error, before the reset

_mem_alloc = getattr(gc, "mem_alloc", None)  # MicroPython only


def _import(name):
    return __import__(name, None, None, [name.split(".")[-1]])


def make_meter(meter_doc, platform):
    """The meter driver for config["meter"] (raises ValueError for an unknown type)."""
    module_name = METER_MODULES.get(meter_doc["type"])
    if module_name is None:
        raise ValueError("meter type %s is not supported" % meter_doc["type"])
    return _import(module_name).from_config(meter_doc, platform)


def make_charger(entry, platform):
    """The charger driver for one config["chargers"] entry."""
    module_name = CHARGER_MODULES.get(entry["type"])
    if module_name is None:
        raise ValueError("charger type %s is not supported" % entry["type"])
    return _import(module_name).from_config(entry, platform, CHARGER_TIMEOUT_MS)


class App:
    """The running controller for one validated configuration."""

    def __init__(self, platform, doc, meter, drivers, log=print):
        self.platform = platform
        self.log = log
        self.meter = meter
        self.drivers = drivers
        self.names = [entry["name"] for entry in doc["chargers"]]
        self.chargers = [charger_from_config(entry) for entry in doc["chargers"]]
        self.guard = Guard(site_from_config(doc), self.chargers)
        count = len(drivers)
        self.statuses = [driver.status for driver in drivers]
        self.targets_ma = [0] * count
        self.commands = [ChargerCommand() for _ in range(count)]
        self.sent_ma = [-1] * count  # last command handed to each charger task
        self.wake = [asyncio.Event() for _ in range(count)]
        self.poll_due = [True] * count
        self.have_reading = False
        self.decisions = 0
        self.last_decision_ms = platform.ticks_ms()
        self.last_errors = [None] * count
        self.heap_live = 0  # heap in use right after the last collection
        self.running = True
        # Set by build(): the Wi-Fi link (net/wifi.WifiLink, None without an
        # SSID), the NTP server, and whether charger requests wait for
        # platform.network_up().
        self.network = None
        self.ntp_server = ""
        self.needs_network = False

    # -- control ------------------------------------------------------------

    def decide(self):
        """One guard decision on the latest reading; wakes chargers whose command changed."""
        now_ms = self.platform.ticks_ms()
        reading = self.meter.reading if self.have_reading else None
        fill_targets(self.chargers, self.targets_ma)
        self.guard.tick(reading, self.statuses, self.targets_ma, now_ms, self.commands)
        self.decisions += 1
        self.last_decision_ms = now_ms
        for index in range(len(self.commands)):
            if self.commands[index].offered_ma != self.sent_ma[index]:
                self.wake[index].set()

    def on_reading(self):
        """The meter has a fresh reading: decide at once (the guard's fast path)."""
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
            self.sent_ma[index] = offered_ma
            # The driver sends only what the box does not have yet, so this
            # also puts back a limit someone changed on the box itself.
            await driver.apply(offered_ma)
            self._report_error(index)

    def _report_error(self, index):
        error = self.statuses[index].error
        if error != self.last_errors[index]:
            self.last_errors[index] = error
            if error:
                self.log("charger %s: %s" % (self.names[index], error))
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
            if ticks_diff(now_ms, last_gc_ms) >= GC_INTERVAL_MS:
                # Collect at a quiet moment rather than when an allocation
                # finds the heap full in the middle of a guard decision.
                last_gc_ms = now_ms
                gc.collect()
                if _mem_alloc is not None:
                    self.heap_live = _mem_alloc()
            await platform.sleep_ms(CONTROL_TICK_MS // 2)

    async def status_task(self):
        while self.running:
            await self.platform.sleep_ms(STATUS_LINE_MS)
            self.log(self.status_line())

    async def clock_task(self):
        from chargeguard.net import ntp

        await ntp.keep_time(self.platform, self.network, self.ntp_server, self.log)

    def status_line(self):
        """One console line: per-phase grid current, each charger's offer and reason."""
        reading = self.meter.reading
        if self.guard.failsafe or not self.have_reading:
            grid = "grid  --.-  --.-  --.- A"
        else:
            current = reading.current_ma
            grid = "grid %5s %5s %5s A" % (_amps(current[0]), _amps(current[1]), _amps(current[2]))
        parts = [grid]
        for index in range(len(self.commands)):
            command = self.commands[index]
            parts.append("%s %5s A %s" % (self.names[index], _amps(command.offered_ma), command.reason))
        if self.heap_live:
            parts.append("heap %d B" % self.heap_live)
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
                self.log("task %s failed: %r; restarting" % (name, error))
                await self.platform.sleep_ms(TASK_RESTART_MS)

    async def run(self):
        """Run every task until stop() (or forever on the device)."""
        tasks = [
            asyncio.create_task(self._supervised("meter", self.meter_task)),
            asyncio.create_task(self._supervised("control", self.control_task)),
            asyncio.create_task(self._supervised("poll", self.poll_timer_task)),
            asyncio.create_task(self._supervised("supervisor", self.supervisor_task)),
        ]
        for index in range(len(self.drivers)):
            tasks.append(asyncio.create_task(self._supervised("charger", _bind(self.charger_task, index))))
        if STATUS_LINE_MS:
            tasks.append(asyncio.create_task(self._supervised("status", self.status_task)))
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


def _bind(method, index):
    def call():
        return method(index)

    return call


def _amps(milliamps):
    sign = "-" if milliamps < 0 else ""
    milliamps = abs(milliamps)
    return "%s%d.%d" % (sign, milliamps // 1000, (milliamps % 1000) // 100)


def load_config(directory):
    """(doc, notes) from the config store; the config module is unloaded afterwards.

    Validation and migration are about a fifth of the firmware's code and are
    needed only while a configuration is read or written, so their heap is
    given back to the running controller.
    """
    import chargeguard
    from chargeguard import config

    try:
        return config.load(directory)
    finally:
        del config
        sys.modules.pop("chargeguard.config", None)
        if "config" in chargeguard.__dict__:
            delattr(chargeguard, "config")
        gc.collect()


def build(platform, log=print):
    """Load the configuration and build the App (the drivers it names)."""
    doc, notes = load_config(platform.storage_dir())
    wifi_doc = doc["wifi"]
    if wifi_doc["ssid"]:
        # Imported once the configuration is read (its 8 KB read buffer needs
        # the heap unfragmented) and before the drivers fragment it.
        from chargeguard.net import wifi

        network = wifi.from_config(wifi_doc, platform, log)
    else:
        network = None
        if platform.network_up():
            log("wifi: not configured (wifi.ssid is empty); using the host's network")
        else:
            log("wifi: not configured (wifi.ssid is empty): no network, chargers stay unavailable;"
                " the meter is guarded locally")
    for note in notes:
        log("config: " + note)
    try:
        meter = make_meter(doc["meter"], platform)
    except Exception as error:
        # No meter means no readings: the guard then holds every charger at
        # its failsafe current, which is the safe way to run without one.
        log("meter: cannot start (%r): chargers stay on their failsafe current" % (error,))
        meter = _NoMeter()
    drivers = [make_charger(entry, platform) for entry in doc["chargers"]]
    app = App(platform, doc, meter, drivers, log)
    app.network = network
    app.needs_network = True
    app.ntp_server = wifi_doc["ntp_server"]
    if network is not None and platform.name == "esp32":
        from chargeguard.net import http

        # Host names of wallboxes are looked up without blocking the loop
        # (the unix port has no server to ask: the host resolves).
        http.use_resolver(_resolver(platform))
    return app


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
        asyncio.run(_pause(platform, RESTART_DELAY_MS))
        platform.reset()


async def _pause(platform, delay_ms):
    await platform.sleep_ms(delay_ms)
