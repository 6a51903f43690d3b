"""The boot's first steps: the trial's bookkeeping, the configuration read, then startup.py.

app.build() loads this module and unloads it once the App is built: the
code that reads the configuration at boot (and the trial steps around it)
runs once per boot, so it does not stay in app.py, whose code is on the
running controller's heap for good (as .mpy on a stock firmware).
Nothing made here may refer to this module's functions once build()
returns (a closure would keep the whole module loaded).
"""

import asyncio
import gc

from micropython import const

from chargeguard import app as _app

# Bytes held while config.py's code loads (load_config).
_BOOT_ROOM = const(4096)


def build(platform, log):
    """app.build(platform, log): the App for the stored configuration (see there)."""
    # asyncio loads its submodules at their first use (asyncio/__init__.py's
    # __getattr__): asyncio.event at the App's first Event, in init_app, at
    # the assembly's peak, where the 296 bytes it allocates failed `core` in
    # 80 KB (32-bit .mpy). It stays loaded for good either way: loaded
    # first, into the heap before the configuration's holes.
    asyncio.Event  # noqa: B018
    directory = platform.storage_dir()
    # A new config.json that did not start last time is not tried again (trial.py).
    # The last good configuration that did not start twice: safe mode (safemode.py).
    last, boots = trial("start", directory)
    # Read before startup.py is loaded: config.py's import is the start-up
    # peak, and the assembly's code is not on the heap then.
    loaded = load_config(directory, last is None)
    start = _step("startup", "prepare", platform, log, directory, loaded, last, boots)
    loaded = None
    try:
        return _step("appinit", "finish", platform, log, directory, start)
    except Exception as error:
        # config.json could not start: the last good copy (or the error again).
        _step("startup", "recover", platform, log, directory, start, error)
        return _step("appinit", "finish", platform, log, directory, start)


def _step(module_name, name, *args):
    # startup.py's or appinit.py's `name`, loaded for the call only (never
    # both at once: the assembly's peak), with what they load for a moment.
    module = __import__("chargeguard." + module_name, None, None, [module_name])
    unload = _app._unload
    try:
        return getattr(module, name)(*args)
    finally:
        module = None
        unload("chargeguard." + module_name)
        # The driver tables (2.3 KB of heap as .mpy): read while the drivers
        # are made; a web request or a configuration check loads them again.
        unload("chargeguard.drivers")
        # The guard's settings read from the document (init_app's import).
        unload("chargeguard.core.settings_doc")
        # The interfaces' wiring (appinit.py's, when a start-up failed before it).
        unload("chargeguard.attach")


def load_config(directory, new=True):
    """config.load_for_boot(directory, new): (doc, notes, source, good).

    The config module is unloaded afterwards: validation and migration are
    about a fifth of the firmware's code and are needed only while a
    configuration is read or written, so their heap is given back to the
    running controller.
    """
    # The start-up peak is config.py's import: collect the board file's and
    # the platform's garbage first, at this shallow stack (a collection the
    # import forces deep inside it may keep garbage its stale pointers
    # reach, and the import fails in a heap that could hold it).
    gc.collect()
    # A block held low in the heap while config.py's code loads, given back
    # before the file is read: the document and the read's buffers then go
    # low, and the room above them stays in one piece for the meter's and
    # the chargers' code and buffers (2 KB each). Without it the heap
    # config.py leaves is cut into small holes by the names it interns
    # (kept for good): measured on the 32-bit port, `core` failed at boot in
    # 82 KB (a charger's 2 KB buffer found no hole) and `wifi` in 86.
    room = bytearray(_BOOT_ROOM) if new else None
    from chargeguard import config

    room = None
    unload = _app._unload
    try:
        return config.load_for_boot(directory, new)
    finally:
        del config
        _app.unload_config()
        unload("chargeguard.flashfile")
        # The rules config.py shares with commands.py: loaded again with
        # the command API when an interface first needs it.
        unload("chargeguard.rules")
        # Loaded to check site.timezone; the energy task loads it again for a moment.
        unload("chargeguard.core.tzparse")


def trial(name, *args):
    """trial.py's `name`, loaded for the call only (with flashfile)."""
    from chargeguard import trial as trial_module

    try:
        return getattr(trial_module, name)(*args)
    finally:
        del trial_module
        _app._unload("chargeguard.trial")
        _app._unload("chargeguard.flashfile")
