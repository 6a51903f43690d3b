"""The start-up: what the App is made of, from the configuration read, once per boot.

appboot.build() loads this module once the configuration is read, has
prepare() make the meter, the chargers' drivers, the Wi-Fi link, the portal
and the interfaces' modules, and unloads it before appinit.py makes the App
from them (its code is then not on the heap at the assembly's peak); it is
loaded again only when a config.json that cannot start falls back to the
last good copy (recover()). app.py holds only what runs: this code would
otherwise stay on the heap for good. Nothing made here may refer to this
module's functions once it returns (a closure or an object of a class
defined here would keep the whole module loaded): the objects it builds are
the drivers' and the interfaces'.
"""

import gc
import sys

from micropython import const

from chargeguard import app as _app
from chargeguard.core.modes import needs_optimiser

# On CPython (the host tests) only the firmware's modules are unloaded:
# the standard library's stay (MicroPython lists only loaded modules).
_MICROPYTHON = sys.implementation.name == "micropython"
FAILSAFE = const(2)  # trial.FAILSAFE (trial.py is not loaded while this runs)


def prepare(platform, log, directory, loaded, last, boots=None):
    """The start for the stored configuration up to the App (appboot.build() calls it, then appinit.finish()).

    directory: platform.storage_dir(); loaded: appboot.load_config(directory,
    last is None), read before this module was loaded (config.py's import
    is the start-up peak: this module's code is not on the heap then);
    last: trial.start()'s note, None when config.json was tried; boots:
    its (level, proven) when the last good configuration starts (else None).
    Returns the start, a list: [doc, notes, source, good, boots, safe mode
    level, the modules loaded before the drivers, parts], parts being what
    _parts() made (the meter, the drivers, the Wi-Fi link, the portal, the
    interfaces' modules). A config.json that cannot start gets recover().
    """
    # appboot.py called this (it is loaded until build() returns).
    from chargeguard.appboot import trial

    doc, notes, source, good = loaded
    loaded = None
    if source is None:
        boots = None  # no valid configuration: nothing to run reduced
    if last is not None:
        notes.insert(0, last)
    elif source != "config.json":
        # config.bak starts: counted here unless trial.start() did.
        counted = trial("settled", directory, boots is None and source is not None)
        boots = boots or counted
    _warn(doc, notes, source)
    _log_notes(log, notes)
    safe = _safe(doc, boots, notes, log)
    start = [doc, notes, source, good, boots, safe, list(sys.modules), None]
    doc = notes = None
    try:
        start[7] = _parts(platform, start[0], log, source is None, safe)
    except Exception as error:
        recover(platform, log, directory, start, error)
    return start


def recover(platform, log, directory, start, error):
    """config.json could not start (`error`, in _parts() or in appinit.finish()): `start` becomes config.bak's.

    Raises `error` where there is nothing to fall back to: the last good
    copy or safe mode was what failed (the next boot is then failsafe,
    trial.py), or config.bak cannot be read.
    """
    from chargeguard.appboot import load_config, trial

    notes, source, boots, safe, loaded = start[1], start[2], start[4], start[5], start[6]
    if source != "config.json" or safe:
        # Safe mode that cannot start: the next boot is failsafe (trial.py).
        raise error
    # Said now: if the last good copy cannot be read either, this is
    # the first cause, and the only one the console would not show.
    log("config: config.json could not start: %r" % (error,))
    _app._traceback(error)
    # The failed attempt's document and objects go before config.bak is read.
    start.clear()
    # config.bak gets the heap the boot had: without the failed
    # attempt's modules (MQTT, web...), which it may not even use.
    for name in list(sys.modules):
        if name not in loaded and (_MICROPYTHON or name.startswith("chargeguard")):
            _app._unload(name)
    loaded = None
    counted = trial("failed", directory, repr(error), boots is None)
    boots = boots or counted
    doc, more, source, good = load_config(directory, False)
    if source is None:
        raise error
    more.insert(0, "config.json could not start (%r): it was NOT applied" % (error,))
    _warn(doc, more, source)
    _log_notes(log, more)
    # config.json's warnings were said; the ones kept are those of what runs.
    notes = [note for note in notes if not note.startswith("warning: ")]
    notes.extend(more)
    safe = _safe(doc, boots, notes, log)
    start.extend((doc, notes, source, good, boots, safe, None, None))
    doc = notes = None
    start[7] = _parts(platform, start[0], log, False, safe)


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


def _parts(platform, doc, log, first_boot=False, safe=0):
    # What the App is made of, up to it (appinit.finish() makes it).
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
    return wifi_doc, network, portal, later, setup_web, portal_pages, interfaces, meter, drivers


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
