"""The App made from what startup.py prepared, and wired to its interfaces: once per boot.

appboot.build() loads this module once startup.py has made the drivers and
is unloaded (startup.py's code is then not on the heap while the App's
objects are made: the assembly's peak), and unloads it after. App.__init__'s
body is init_app() here too (an App made outside app.build(), in tests and
tools, loads it). Nothing made here may refer to this module's functions
once it returns (a closure would keep the whole module loaded).
"""

import asyncio
import gc

from chargeguard import app as _app
from chargeguard.core.model import ChargerCommand
from chargeguard.core.modes import needs_optimiser


def finish(platform, log, directory, start):
    """The App for startup.prepare()'s `start` (see there), its interfaces wired, its configuration notes kept.

    Raises what the App's making or wiring raised (appboot.build() then
    has startup.recover() fall back to the last good copy).
    """
    doc, notes, source, good, boots, safe = start[0], start[1], start[2], start[3], start[4], start[5]
    app = _make(platform, doc, log, source is None, start[7])
    app.config_notes = notes
    app.config_source = source
    app.storage = directory
    app.config_good = good
    if boots is not None:
        app.boots_proven = boots[1]
    if safe:
        app.safe_mode = notes[0]
    # Start with the start-up garbage (documents, notes, driver set-up) gone,
    # not left for the first request to trip over on a small heap.
    start.clear()
    doc = None
    gc.collect()
    return app


def _make(platform, doc, log, first_boot, parts):
    wifi_doc, network, portal, later, setup_web, portal_pages, interfaces, meter, drivers = parts
    parts = None
    app = _app.App(platform, doc, meter, drivers, log)
    app.network = network
    app.portal = portal
    context = None
    if interfaces or setup_web or (portal_pages and not later):
        # attach.py: loaded only for it (a site without interfaces or setup
        # pages never loads its code or interns its names), unloaded after.
        from chargeguard import attach

        try:
            context = attach.wire(app, platform, log, doc, interfaces, portal, first_boot, setup_web, portal_pages)
        finally:
            del attach
            _app._unload("chargeguard.attach")
    if later:
        # The pages (where web.enabled is off) as above, once it is made.
        if portal_pages and context is None:
            # Nothing else to wire: the context is made only if the access
            # point opens (net/portal.open_later, attach.later_context);
            # until then only the parts of the document it needs are kept.
            context = (
                wifi_doc.get("hostname", "chargeguard"),
                [entry["type"] for entry in doc["chargers"]],
                doc["admin"]["password"],
                doc["meter"],
                doc["site"]["phases"],
            )
        app.portal_later = (wifi_doc.get("ap_password", ""), context if portal_pages else None, doc.get("web") or {})
    app.needs_network = True
    app.ntp_server = wifi_doc["ntp_server"]
    if network is not None and platform.name == "esp32":
        from chargeguard.net import http

        # Host names of wallboxes are looked up without blocking the loop
        # (the unix port has no server to ask: the host resolves).
        http.use_resolver(_app._resolver(platform))
    return app



def init_app(app, platform, doc, meter, drivers, log):
    """App.__init__(platform, doc, meter, drivers, log): the App's attributes (app.App documents them)."""
    from chargeguard.core.settings_doc import charger_from_config, site_from_config

    app.platform = platform
    app.log = log
    app.meter = meter
    app.drivers = drivers
    app.names = [entry["name"] for entry in doc["chargers"]]
    # Each charger's mode as configured ("site" = follows site.mode),
    # and the optimiser's part of the configuration: what commands.py
    # needs to change them and to load the optimiser at run time.
    app.charger_modes = [entry["mode"] for entry in doc["chargers"]]
    site_doc = doc["site"]
    app.opt_doc = {"site": {}, "solar": doc.get("solar", {})}
    app.timezone = site_doc.get("timezone", "UTC0")  # POSIX TZ rule (core/localtime.py)
    for key in ("mode", "distribution", "peak_limit_w", "peak_follow_month"):
        if key in site_doc:
            app.opt_doc["site"][key] = site_doc[key]
    site_mode = doc["site"].get("mode", "fast")
    app.chargers = [charger_from_config(entry, site_mode) for entry in doc["chargers"]]
    site = site_from_config(doc)
    # Read once: its heap is given back before the guard's objects are made.
    del charger_from_config, site_from_config
    _app._unload("chargeguard.core.settings_doc")
    # Imported here, not at the top: the guard's code is then not yet
    # in the heap while the configuration module is (the start-up peak).
    from chargeguard.core.guard import Guard

    app.guard = Guard(site, app.chargers)
    count = len(drivers)
    app.slow = app.optimiser = None
    if needs_optimiser(doc):
        # Only then: a site without surplus modes, distribution or
        # capacity tariff never spends the heap on them (build() imports
        # them before the drivers, so they load into an unfragmented heap).
        from chargeguard.slowlayer import SlowLayer

        app.slow = SlowLayer(doc, site, app.chargers)
        app.optimiser = app.slow.optimiser
    app.reasons = ["init"] * count
    app.statuses = [driver.status for driver in drivers]
    app.targets_ma = [0] * count
    app.commands = [ChargerCommand() for _ in range(count)]
    app.sent_ma = [-1] * count  # last command handed to each charger task
    app.wake = [asyncio.Event() for _ in range(count)]
    app.poll_due = [True] * count
    # Box-level requests from the command API (commands.set_lock): the
    # lock wanted per charger, None when nothing is asked; sent by the
    # charger's own task, after the guard's command. can_lock: the
    # driver has set_lock() (docs/architecture.md, charger drivers).
    app.lock_wanted = [None] * count
    app.can_lock = [hasattr(driver, "set_lock") for driver in drivers]
    # A driver that knows when it needs its poll at once (an OCPP box
    # right after its BootNotification: it offers its own maximum until
    # its set-up gives it a profile) is given a way to ask for it.
    for index in range(count):
        if hasattr(drivers[index], "poll_soon"):
            drivers[index].poll_soon = app._poll_soon(index)
        if hasattr(drivers[index], "decisions"):
            # An OCPP box let in from Pending with a limit decided while it was available.
            drivers[index].decisions = app.decision_count
    app.have_reading = False
    app.meter_error = None  # the meter's last_error as last logged
    app.last_reading_ms = 0  # tick of the previous reading (the meter's cadence)
    app.cadence_warned = False
    app.decisions = 0
    app.last_decision_ms = platform.ticks_ms()
    app.last_errors = [None] * count
    app.heap_live = 0  # heap in use right after the last collection
    app.heap_free = 0  # heap free right after the last collection (0 on CPython)
    app.reaction_ms = None  # telegram to command handed to a driver, the last changed command (ms)
    app.running = True
    app.config_notes = []
    app.config_source = "config.json"
    app.storage = None
    app.config_good = None  # checksum of config.json to keep as the last good copy once proven
    app.boots_proven = None  # trial.py: the last good configuration's start count once proven (b"": none)
    app.safe_mode = None
    app.config_proven_ms = _app.CONFIG_PROVEN_MS
    app.config_notes_every = _app.CONFIG_NOTES_EVERY
    app.started_ms = app.last_decision_ms
    # Set by build(): the Wi-Fi link (net/wifi.WifiLink, None without an
    # SSID), the NTP server, and whether charger requests wait for
    # platform.network_up().
    app.network = None
    app.portal = None  # net/portal.Portal: the setup access point, None when it can never open
    # (ap_password, context or None, web section) where only a lost Wi-Fi
    # can open it: the portal is made then (watch_wifi), else None.
    app.portal_later = None
    app.wifi_up_ms = app.last_decision_ms  # the link last seen up (boot counts as up, as in ApMode)
    app.tasks = []  # the running tasks (run())
    app.ntp_server = ""
    app.ntp_port = _app.NTP_PORT
    app.clock_wait_ms = _app.CLOCK_WAIT_MS
    app.needs_network = False
    # Set by build(): [(config section name, interface object with run())].
    app.interfaces = []
    app.state = None  # state.SiteState once site_state() made it
    app.api = None  # commands.Commands once command_api() loaded it
    app.energy = None  # energylog.EnergyLog while the energy task runs (with the site state)
