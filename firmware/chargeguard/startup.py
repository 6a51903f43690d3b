"""The start-up: the stored configuration read and the App built from it, once per boot.

app.build() loads this module for that and unloads it afterwards (app.py
holds only what runs: its code would otherwise stay on the heap for good).
Nothing made here may refer to this module's functions once it returns
(a closure or an object of a class defined here would keep the whole module
loaded): the objects it builds are app.py's, the drivers' and the
interfaces'. The drivers are made here too (make_meter, make_charger), and
the App's attributes set (App.__init__ calls init_app).
"""

import asyncio
import gc
import sys

from micropython import const

from chargeguard import app as _app
from chargeguard.core.model import ChargerCommand
from chargeguard.core.modes import needs_optimiser

# On CPython (the host tests) only the firmware's modules are unloaded:
# the standard library's stay (MicroPython lists only loaded modules).
_MICROPYTHON = sys.implementation.name == "micropython"
FAILSAFE = const(2)  # trial.FAILSAFE (trial.py is not loaded while this runs)


def build(platform, log, directory, loaded, last, boots=None):
    """app.build(platform, log): the App for the stored configuration (see there).

    directory: platform.storage_dir(); loaded: app.load_config(directory,
    last is None), read before this module was loaded (config.py's import
    is the start-up peak: this module's code is not on the heap then);
    last: trial.start()'s note, None when config.json was tried; boots:
    its (level, proven) when the last good configuration starts (else None).
    """
    doc, notes, source, good = loaded
    loaded = None
    if source is None:
        boots = None  # no valid configuration: nothing to run reduced
    if last is not None:
        notes.insert(0, last)
    elif source != "config.json":
        # config.bak starts: counted here unless trial.start() did.
        counted = _app._trial("settled", directory, boots is None and source is not None)
        boots = boots or counted
    _warn(doc, notes, source)
    _log_notes(log, notes)
    safe = _safe(doc, boots, notes, log)
    loaded = list(sys.modules)
    try:
        app = _assemble(platform, doc, log, source is None, safe)
    except Exception as error:
        if source != "config.json" or safe:
            # Safe mode that cannot start: the next boot is failsafe (trial.py).
            raise
        # Said now: if the last good copy cannot be read either, this is
        # the first cause, and the only one the console would not show.
        log("config: config.json could not start: %r" % (error,))
        _app._traceback(error)
        doc = None
        # config.bak gets the heap the boot had: without the failed
        # attempt's modules (MQTT, web...), which it may not even use.
        for name in list(sys.modules):
            if name not in loaded and (_MICROPYTHON or name.startswith("chargeguard")):
                _app._unload(name)
        loaded = None
        counted = _app._trial("failed", directory, repr(error), boots is None)
        boots = boots or counted
        doc, more, source, good = _app.load_config(directory, False)
        if source is None:
            raise
        more.insert(0, "config.json could not start (%r): it was NOT applied" % (error,))
        _warn(doc, more, source)
        _log_notes(log, more)
        # config.json's warnings were said; the ones kept are those of what runs.
        notes = [note for note in notes if not note.startswith("warning: ")]
        notes.extend(more)
        safe = _safe(doc, boots, notes, log)
        app = _assemble(platform, doc, log, False, safe)
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
    doc = None
    gc.collect()
    return app


def _warn(doc, notes, source):
    # The warnings of the valid configuration that runs (configwarn.py:
    # allowed but dangerous settings) appended to its notes, "warning: PATH:
    # MESSAGE"; never a refusal. Loaded for it and unloaded, as config.py.
    if source is None or not doc["chargers"]:
        return
    from chargeguard import configwarn

    configwarn.add_notes(doc, notes)
    del configwarn
    _app._unload("chargeguard.configwarn")


def _log_notes(log, notes):
    for note in notes:
        log("config: " + note)


def _safe(doc, boots, notes, log):
    # The level trial.py gave (0: as configured); else doc reduced in place
    # (safemode.py, loaded for it), its sentences said loudly and put first.
    level = 0 if boots is None else boots[0]
    if level:
        from chargeguard import safemode

        said = safemode.reduce(doc, level)
        del safemode
        _app._unload("chargeguard.safemode")
        for line in said:
            log(line)
        notes[0:0] = said
    return level


def _assemble(platform, doc, log, first_boot=False, safe=0):
    # The guard's code first, into the room the configuration module left
    # (App imports it again, from sys.modules).
    from chargeguard.core import guard  # noqa: F401

    if needs_optimiser(doc):
        # Before Wi-Fi and the interfaces (App imports it again, from sys.modules).
        from chargeguard import slowlayer  # noqa: F401

        gc.collect()
    wifi_doc = doc["wifi"]
    if wifi_doc["ssid"]:
        # Imported once the configuration is read.
        from chargeguard.net import wifi

        network = wifi.from_config(wifi_doc, platform, log)
    else:
        network = None
        if platform.network_up():
            log("wifi: not configured (wifi.ssid is empty); using the host's network")
        else:
            log("wifi: not configured (wifi.ssid is empty): no network, chargers stay unavailable;"
                " the meter is guarded locally")
    # The setup access point (net/portal.py), where it can open: no valid
    # configuration, no network at all, a Wi-Fi to lose, a board button.
    portal = None
    # Where only the configured Wi-Fi's loss can open it (a valid
    # configuration with an SSID, no button), the portal's code and objects
    # (about 2 KB of heap) are loaded only once the link is lost
    # (App.watch_wifi): until then the app keeps what it needs to make it.
    later = (
        hasattr(platform, "board") and not first_boot and wifi_doc["ssid"] and platform.board.get("button") is None
    )
    if hasattr(platform, "board") and not later and (
        first_boot or wifi_doc["ssid"] or not platform.network_up() or platform.board.get("button") is not None
    ):
        from chargeguard.net import portal as portal_module

        portal = portal_module.make(platform, network, wifi_doc, first_boot, log)
    # While setting up, the portal is the web pages, whatever web.enabled says.
    web_on = doc.get("web", {}).get("enabled")
    setup_web = portal is not None and portal.mode.needs_setup and not web_on
    # Else an access point opened later (the button, a lost Wi-Fi) serves them while it is open.
    portal_pages = (portal is not None or later) and not setup_web and not web_on
    # The modules of enabled interfaces only (a site without MQTT never loads
    # its code); the objects are made once the App exists (their context
    # names its two objects).
    interfaces = []
    from chargeguard.drivers import INTERFACE_MODULES

    for section, module_name in INTERFACE_MODULES:
        section_doc = doc.get(section)
        # The OCPP server runs whenever a box is to connect to it.
        needed = section == "ocpp" and any(entry["type"] == "ocpp" for entry in doc["chargers"])
        if section_doc and (section_doc.get("enabled") or needed):
            interfaces.append((section, section_doc, _import(module_name)))
            gc.collect()
    if doc["site"].get("balanced_load"):
        log(
            "WARNING: site.balanced_load is on: with a meter that gives totals only, the house load is taken as"
            " spread evenly over the phases; a large single-phase load can then overload its phase unseen"
        )
    # The meter and the chargers last, each part after a collection at this
    # shallow stack: a collection that an allocation forces deep inside a
    # module load scans a stack full of stale pointers to start-up garbage
    # (the collector is conservative) and may keep it, so the load fails
    # with the heap full of garbage (measured on the 32-bit port: 84 KB "in
    # use" of 88 when a driver's import failed, 53 KB of it live).
    gc.collect()
    try:
        # Failsafe mode (safemode.py): not even the safe mode started; no meter is read.
        meter = _app._NoMeter() if safe == FAILSAFE else make_meter(doc["meter"], platform, doc)
    except Exception as error:
        # No meter means no readings: the guard then holds every charger at
        # its failsafe current, which is the safe way to run without one.
        # The platform's text names the device and why (OSError args: errno, text).
        why = error.args[-1] if error.args and isinstance(error.args[-1], str) else repr(error)
        log("meter: cannot start (%s): chargers stay on their failsafe current" % why)
        _app._traceback(error)
        meter = _app._NoMeter()
    drivers = []
    for entry in doc["chargers"]:
        gc.collect()
        drivers.append(make_charger(entry, platform))
    # The driver tables are read (app.build() unloads them too): their heap
    # is given back before the App's objects are made (the assembly's peak).
    _app._unload("chargeguard.drivers")
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


def _import(name):
    return __import__(name, None, None, [name.split(".")[-1]])


def make_meter(meter_doc, platform, doc=None):
    """The meter driver for config["meter"] (raises ValueError for an unknown type).

    doc: the whole configuration, for the MQTT-fed meter (its broker is the
    `mqtt` section's, its voltage site.voltage_v), the CT clamps (site.phases,
    site.voltage_v), the HAN port and the ATM90E32 (site.phases).
    """
    from chargeguard.drivers import METER_MODULES

    module_name = METER_MODULES.get(meter_doc["type"])
    if module_name is None:
        raise ValueError("meter type %s is not supported" % meter_doc["type"])
    if meter_doc["type"] in ("mqtt", "ct", "han", "atm90e32"):
        return _import(module_name).from_config(meter_doc, platform, doc)
    return _import(module_name).from_config(meter_doc, platform)


def make_charger(entry, platform):
    """The charger driver for one config["chargers"] entry."""
    from chargeguard.drivers import CHARGER_MODULES

    row = CHARGER_MODULES.get(entry["type"])
    if row is None:
        raise ValueError("charger type %s is not supported" % entry["type"])
    return _import(row[0]).from_config(entry, platform, _app.CHARGER_TIMEOUT_MS)


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
