"""The start-up: the stored configuration read and the App built from it, once per boot.

app.build() loads this module for that and unloads it afterwards (app.py
holds only what runs: its code would otherwise stay on the heap for good).
Nothing made here may refer to this module's functions once it returns
(a closure or an object of a class defined here would keep the whole module
loaded): the objects it builds are app.py's, the drivers' and the
interfaces'. The drivers are made through app.make_meter / app.make_charger
and the configuration read with app.load_config, so they stay app.py's API.
"""

import gc
import sys

from chargeguard import app as _app
from chargeguard.core.modes import needs_optimiser
from chargeguard.drivers import INTERFACE_MODULES

# On CPython (the host tests) only the firmware's modules are unloaded:
# the standard library's stay (MicroPython lists only loaded modules).
_MICROPYTHON = sys.implementation.name == "micropython"


def build(platform, log=print):
    """app.build(platform, log): the App for the stored configuration (see there)."""
    directory = platform.storage_dir()
    # A new config.json that did not start last time is not tried again (trial.py).
    last = _trial("start", directory)
    doc, notes, source, good = _app.load_config(directory, last is None)
    if last is not None:
        notes.insert(0, last)
    elif source != "config.json":
        _trial("settled", directory)
    _log_notes(log, notes)
    loaded = list(sys.modules)
    try:
        app = _assemble(platform, doc, log, source is None)
    except Exception as error:
        if source != "config.json":
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
        _trial("failed", directory, repr(error))
        doc, more, source, good = _app.load_config(directory, False)
        if source is None:
            raise
        more.insert(0, "config.json could not start (%r): it was NOT applied" % (error,))
        _log_notes(log, more)
        notes.extend(more)
        app = _assemble(platform, doc, log)
    app.config_notes = notes
    app.config_source = source
    app.storage = directory
    app.config_good = good
    # Start with the start-up garbage (documents, notes, driver set-up) gone,
    # not left for the first request to trip over on a small heap.
    doc = None
    gc.collect()
    return app


def _trial(name, *args):
    # trial.py's `name`, loaded for the call only (with flashfile).
    from chargeguard import trial

    try:
        return getattr(trial, name)(*args)
    finally:
        del trial
        _app._unload("chargeguard.trial")
        _app._unload("chargeguard.flashfile")


def _log_notes(log, notes):
    for note in notes:
        log("config: " + note)


def _assemble(platform, doc, log, first_boot=False):
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
    for section, module_name in INTERFACE_MODULES:
        section_doc = doc.get(section)
        # The OCPP server runs whenever a box is to connect to it.
        needed = section == "ocpp" and any(entry["type"] == "ocpp" for entry in doc["chargers"])
        if section_doc and (section_doc.get("enabled") or needed):
            interfaces.append((section, section_doc, _app._import(module_name)))
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
        meter = _app.make_meter(doc["meter"], platform, doc)
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
        drivers.append(_app.make_charger(entry, platform))
    gc.collect()
    app = _app.App(platform, doc, meter, drivers, log)
    app.network = network
    app.portal = portal
    if interfaces or setup_web or portal_pages:
        # What every interface gets besides its config section: the device's
        # host name, and the site state and command API as calls (each loaded
        # at its first call, so an interface pays only for what it uses).
        context = {
            "hostname": wifi_doc.get("hostname", "chargeguard"),
            "site_state": app.site_state,
            "command_api": app.command_api,
            "charger_models": [entry["type"] for entry in doc["chargers"]],
            # The web interface's password (a secret: never logged or returned).
            "admin_password": doc["admin"]["password"],
            # The web pages' port when they are served (Home Assistant's
            # configuration_url links to them), else None.
            "web_port": doc["web"]["port"] if doc.get("web", {}).get("enabled") else None,
            # The setup access point (net/portal.Portal) or None: the web
            # interface redirects to the setup page while it is open.
            "portal": portal,
            # The meter section in force and the site's phases: the wizard's
            # meter check compares with them instead of reading the stored
            # document again (a few hundred bytes kept, not KBs per check).
            "meter": doc["meter"],
            "site_phases": doc["site"]["phases"],
        }
        app.interfaces = [
            (section, module.from_config(section_doc, platform, log, context))
            for section, section_doc, module in interfaces
        ]
        if setup_web:
            from chargeguard.net import captive

            captive.setup_web(app, platform, log, context, doc.get("web") or {})
        elif portal_pages and portal is not None:
            portal.pages = (app, context, doc.get("web") or {})
    if later:
        # The pages (where web.enabled is off) as above, once it is made.
        app.portal_later = (wifi_doc.get("ap_password", ""), context if portal_pages else None, doc.get("web") or {})
    app.needs_network = True
    app.ntp_server = wifi_doc["ntp_server"]
    if network is not None and platform.name == "esp32":
        from chargeguard.net import http

        # Host names of wallboxes are looked up without blocking the loop
        # (the unix port has no server to ask: the host resolves).
        http.use_resolver(_app._resolver(platform))
    return app
