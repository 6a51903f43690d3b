"""The site state: the one object MQTT, the web pages and OCPP read (App.state).

The control loop updates it in place (App.decide() every reading and at
least once a second; the supervisor for the device part): nothing is
allocated per decision. Interfaces read it and never touch a driver, the
guard or the optimiser. Units: mA, W, Wh, ms, dBm; integers; None = unknown.

Change counters: each section has a counter bumped when something in it
changed, so a publisher keeps the last value it saw and publishes that
section only when the counter moved (no diffing):
    grid_seq      a new meter reading, or failsafe/reading presence changed
    chargers_seq  a charger's offer, reason, polled status, settings, energy or OCPP link changed
    optimiser_seq surplus, thresholds in force, capacity figures changed
    device_seq    Wi-Fi state/IP/RSSI, live heap (per 1 KB), errors, config notes
    settings_seq  a command changed a setting (commands.Commands.values)

Grid (the meter's latest reading; GridReading in core/model.py):
    reading        the GridReading object itself (current_ma[3], power_w[3],
                   voltage_mv[3], import_w, export_w, energy_import_wh,
                   energy_export_wh, avg_demand_w, month_peak_w, phase_count)
    have_reading   False until the first reading
    reading_age_ms age of the reading at the last decision (None without one)
    failsafe       True while the guard has no valid reading (chargers on failsafe)
    phases         the site's phase count (1 or 3)
    headroom_ma    list[3]: per site phase, what more the chargers may draw now (mA)
    limit_ma       per-phase limit the guard keeps under: breaker - margin (mA)
    month_peak_w   the meter's month peak 1-0:1.6.0 (W), None when not given
Chargers: `chargers`, a list of ChargerState in configuration order, below.
Optimiser: `optimiser` is core/optimiser.Optimiser or None when not loaded
(see App docstring for its attributes); copied here for publishing:
    surplus_w, upper_w, lower_w, net_target_w  (W, export positive; None
                   when no optimiser; surplus_w None without a reading)
    quarter_avg_w, remaining_wh, peak_limit_w  capacity tariff: quarter-hour
                   average import, energy it may still import, the limit in
                   force (rises to month_peak_w with peak_follow_month); 0 = off
Device:
    wifi_state     "off" (no SSID), "joining", "up", "waiting" (net/wifi.py)
    ssid, ip       str or None; rssi dBm or None
    uptime_ms      since the App started (wraps after ~12 days on a 32-bit port)
    heap_live      bytes in use after the last collection (0 on CPython)
    heap_free      bytes free after the last collection (0 on CPython; on
                   the ESP32 including what the heap may still grow by)
    reaction_ms    the guard's reaction time for the last changed command:
                   from the telegram that caused it to the command handed to
                   the wallbox's driver (ms); None before the first one
    errors         list of the last ERRORS_KEPT error texts, oldest first
    error_count    errors ever added
    config_source  "config.json", "config.bak" or None (see App)
    config_notes   list of sentences (see App)
    version        firmware version (chargeguard.VERSION)
OCPP boxes not in the configuration: `ocpp_discovered()` (a method: see it).
"""

from micropython import const

from chargeguard import VERSION
from chargeguard.core.ticks import ticks_diff

ERRORS_KEPT = const(5)


class ChargerState:
    """One charger as interfaces see it.

    name; status (the driver's ChargerStatus: reachable, car, current_ma[3],
    power_w, session_energy_wh, offered_ma, error); offered_ma (what the
    guard commands now, 0 = paused); reason (the one reason shown, the
    guard's or the optimiser's, e.g. "breaker", "solar"); settings: the
    settings in force (core/settings.ChargerSettings, the guard's own object,
    changed only by commands.py): .mode (resolved: never "site"),
    .manual_ma, .min_ma, .max_ma, .circuit_ma, .priority (1 = first),
    .phases, .enabled (EVCM's Start/Stop). Read-only for interfaces.
    can_lock: the box has a lock the command API can set (status.locked
    then tells whether it is locked).
    energy_today_wh, energy_lifetime_wh: energy delivered since local
    midnight (site.timezone) and ever counted, in Wh, as stored on flash
    (energylog.py): neither ever goes down but today's at local midnight;
    None until known (today: no wall clock yet; both: no interface made
    the site state, which starts the count).
    ocpp: an ocppstate.OcppLink for a box of type "ocpp" (it connects to
    us), None for every other box.
    """

    def __init__(self, name, status, settings, can_lock=False, ocpp=None):
        self.name = name
        self.status = status
        self.settings = settings
        self.can_lock = can_lock
        self.offered_ma = 0
        self.reason = "init"
        self.energy_today_wh = None
        self.energy_lifetime_wh = None
        self.ocpp = ocpp
        self._polled_ms = -1


def _ocpp_link(driver):
    # An ocppstate.OcppLink for a driver that keeps one (chargers/ocpp.py), else None: the
    # module is loaded only on a site with an OCPP box.
    if not hasattr(driver, "link_seq"):
        return None
    from chargeguard.ocppstate import OcppLink

    return OcppLink(driver.charge_point_id)


class SiteState:
    """The site as interfaces see it; see the module docstring for every attribute."""

    def __init__(self, app):
        self._app = app
        guard = app.guard
        site = guard.site
        self.reading = app.meter.reading
        self.have_reading = False
        self.reading_age_ms = None
        self.failsafe = True
        self.phases = site.phases
        self.headroom_ma = guard.headroom_ma
        self.limit_ma = site.breaker_ma - site.margin_ma
        self.month_peak_w = None
        self.chargers = [
            ChargerState(app.names[index], app.statuses[index], app.chargers[index], app.can_lock[index],
                         _ocpp_link(app.drivers[index]))
            for index in range(len(app.names))
        ]
        self.optimiser = None
        self.surplus_w = self.upper_w = self.lower_w = self.net_target_w = None
        self.quarter_avg_w = self.remaining_wh = self.peak_limit_w = 0
        self.wifi_state = "off"
        self.ssid = self.ip = self.rssi = None
        self.uptime_ms = 0
        self.heap_live = self.heap_free = 0
        self.reaction_ms = None
        self.errors = []
        self.error_count = 0
        self.config_source = app.config_source
        self.config_notes = app.config_notes
        self.version = VERSION
        self.grid_seq = self.chargers_seq = self.optimiser_seq = self.device_seq = self.settings_seq = 0
        self._reading_ms = -1

    def ocpp_discovered(self):
        """OCPP boxes that connected with no chargers[] entry (ocpp.accept_unknown): answered, never commanded.

        A list of (charge_point_id, vendor, model, connected) from the app's
        `ocpp` interface (net/ocpp.CentralSystem: its `discovered` and
        `sessions`; vendor and model None before a box's BootNotification);
        [] when there are none or no central system runs. Asked per answer
        (GET /api/status), not per tick: it allocates.
        """
        for name, central in self._app.interfaces:
            if name == "ocpp":
                return [(ident, point.vendor, point.model, ident in central.sessions)
                        for ident, point in central.discovered.items()]
        return []

    def update(self, now_ms):
        """After each decision (App.decide): refresh grid, chargers and optimiser; allocates nothing."""
        app = self._app
        guard = app.guard
        reading = self.reading
        have = app.have_reading
        if have != self.have_reading or guard.failsafe != self.failsafe or (have and reading.tick_ms != self._reading_ms):
            self.have_reading = have
            self.failsafe = guard.failsafe
            self.month_peak_w = reading.month_peak_w if have else None
            self._reading_ms = reading.tick_ms
            self.grid_seq += 1
        self.reading_age_ms = ticks_diff(now_ms, reading.tick_ms) if have else None
        changed = False
        commands = app.commands
        reasons = app.reasons
        for index in range(len(self.chargers)):
            charger = self.chargers[index]
            offered = commands[index].offered_ma
            reason = reasons[index]
            polled = charger.status.tick_ms
            if offered != charger.offered_ma or reason is not charger.reason or polled != charger._polled_ms:
                charger.offered_ma = offered
                charger.reason = reason
                charger._polled_ms = polled
                changed = True
            if charger.ocpp is not None and charger.ocpp.update(app.drivers[index], now_ms):
                changed = True
        if changed:
            self.chargers_seq += 1
        optimiser = app.optimiser
        if optimiser is not self.optimiser:
            self.optimiser = optimiser
            self.optimiser_seq += 1
        if optimiser is not None:
            self._update_optimiser(optimiser)

    def _update_optimiser(self, optimiser):
        capacity = optimiser.capacity
        remaining_wh = capacity.remaining_ws // 3600
        if (
            optimiser.surplus_w != self.surplus_w
            or optimiser.upper_w != self.upper_w
            or optimiser.lower_w != self.lower_w
            or optimiser.net_target_w != self.net_target_w
            or capacity.quarter_avg_w != self.quarter_avg_w
            or remaining_wh != self.remaining_wh
            or capacity.limit_w != self.peak_limit_w
        ):
            self.surplus_w = optimiser.surplus_w
            self.upper_w = optimiser.upper_w
            self.lower_w = optimiser.lower_w
            self.net_target_w = optimiser.net_target_w
            self.quarter_avg_w = capacity.quarter_avg_w
            self.remaining_wh = remaining_wh
            self.peak_limit_w = capacity.limit_w
            self.optimiser_seq += 1

    def refresh_device(self, now_ms, full=False):
        """The device part (the supervisor, twice a second; full=True after a collection: RSSI and heap)."""
        app = self._app
        self.uptime_ms = ticks_diff(now_ms, app.started_ms)
        network = app.network
        state = "off" if network is None else network.state
        changed = False
        if state != self.wifi_state:
            self.wifi_state = state
            self.ssid = None if network is None else network.ssid
            ip_address = getattr(app.platform, "ip_address", None)
            self.ip = ip_address() if state == "up" and ip_address is not None else None
            changed = True
        if full:
            rssi = getattr(app.platform, "wifi_rssi", None)
            value = rssi() if state == "up" and rssi is not None else None
            if value != self.rssi:
                self.rssi = value
                changed = True
            if app.heap_live // 1024 != self.heap_live // 1024 or app.heap_free // 1024 != self.heap_free // 1024:
                changed = True
            self.heap_live = app.heap_live
            self.heap_free = app.heap_free
        if app.reaction_ms != self.reaction_ms:
            self.reaction_ms = app.reaction_ms
            changed = True
        if app.config_notes is not self.config_notes or app.config_source != self.config_source:
            self.config_notes = app.config_notes
            self.config_source = app.config_source
            changed = True
        if changed:
            self.device_seq += 1

    def add_error(self, text):
        """Keep `text` as the newest of the last ERRORS_KEPT errors."""
        errors = self.errors
        if len(errors) >= ERRORS_KEPT:
            errors.pop(0)
        errors.append(text)
        self.error_count += 1
        self.device_seq += 1
