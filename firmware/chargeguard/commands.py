"""The command API: the one way MQTT `/set`, the web page and OCPP change settings (App.api).

Every call validates with config.py's rules (rules.py: same ranges, same
cross-field rules, same messages), is all-or-nothing, and answers with a
dict of field-level errors: {path: message}, {} when applied. Paths are
the configuration's: "site.mode", "chargers.0.max_a". Values are in the
configuration's units (A, W, true/false, mode names). A change takes
effect on the next decision (within a second); the guard stays the
envelope whatever is set.

Settable paths (RUNTIME_PATHS):
    site.mode, site.distribution, site.peak_limit_w, site.peak_follow_month,
    solar.eco (EVCM's ECO switch), solar.net_power_target_w,
    chargers.N.mode, .manual_a, .min_a, .max_a, .priority (1-based, unique:
    moving one shifts the others), .enabled (EVCM's Start/Stop)
Box-level, not a setting: set_lock() (the box's own lock, kept by the box).

Persistence: changed values go to overrides.json (OVERLAY_FILE, atomic,
flashfile.py) PERSIST_DELAY_MS after the last change, so a slider that
sends twenty values writes the flash once; config.load_for_boot() applies
the file onto config.json at boot and validates the result (a refused
overlay is dropped with a note). apply_config() and `make deploy` clear it.

Errors of the call itself (not of a field) use the path "": e.g. no heap
to load the optimiser for a surplus mode.
"""

from micropython import const

from chargeguard.core.ticks import ticks_add, ticks_diff

PERSIST_DELAY_MS = const(5000)
OVERLAY_FILE = "overrides.json"
_CHANGE = "chargeguard.change"


class Commands:
    """Validated run-time changes for one App.

    values: {path: value} of every settable path, in configuration units,
    as now in force (read it to show a select's or a slider's position).
    clock: () -> ms, platform.ticks_ms by default (tests pass a fake).
    restart: () -> None after apply_config() stored a new configuration,
    platform.reset by default.
    """

    def __init__(self, app, clock=None, restart=None):
        self.app = app
        self.state = app.site_state()
        self.clock = clock or app.platform.ticks_ms
        self.restart = restart or getattr(app.platform, "reset", None)
        self.values = _change("values", app)
        self.pending = {}  # changed since the last write of OVERLAY_FILE
        self._due_ms = 0

    # -- calls for the adapters -------------------------------------------

    def set_charger(self, charger, changes):
        """set() for one charger, named by index or name: {"max_a": 20} -> errors under "chargers.N.max_a"."""
        index = self.index_of(charger)
        if index is None:
            return {"chargers": "no charger %s (chargers: %s)" % (_show(charger), ", ".join(self.app.names))}
        out = {}
        for key in changes:
            out["chargers.%d.%s" % (index, key)] = changes[key]
        return self.set(out)

    def set_lock(self, charger, locked):
        """Lock (True) or unlock (False) a charger's box, named by index or name.

        The box's own lock (V2C's "lock EVSE": no charging until unlocked),
        sent by the charger's task within a moment; not persisted (the box
        keeps it). Errors under "chargers.N.locked": not true/false, or a
        box whose driver has no lock; {} when asked.
        """
        index = self.index_of(charger)
        if index is None:
            return {"chargers": "no charger %s (chargers: %s)" % (_show(charger), ", ".join(self.app.names))}
        path = "chargers.%d.locked" % index
        if type(locked) is not bool:
            return {path: "must be true or false (is %s)" % _show(locked)}
        if not self.app.can_lock[index]:
            return {path: "this charger's box has no lock ChargeGuard can set"}
        self.app.request_lock(index, locked)
        return {}

    def start_stop(self, charger, on):
        """EVCM's Start/Stop: chargers.N.enabled."""
        return self.set_charger(charger, {"enabled": on})

    def index_of(self, charger):
        """Index of a charger given by index or name (case ignored); None when there is none."""
        names = self.app.names
        if type(charger) is int:  # rules.is_int (a bool is not one)
            return charger if 0 <= charger < len(names) else None
        if type(charger) is str:
            folded = charger.lower()
            for index in range(len(names)):
                if names[index].lower() == folded:
                    return index
        return None

    def set(self, changes):
        """Apply {path: value} all-or-nothing; returns {path: message}, {} when applied.

        The checks and their messages are change.py's (with rules.py),
        loaded for the call and dropped after.
        """
        return _change("apply", self, changes)

    def apply_config(self, doc):
        """Validate and store a whole configuration, clear the overlay, restart.

        Returns {path: message} when refused (nothing written); on success
        calls `restart` (the controller starts afresh with the new file) and
        returns {}. Loads config.py for it: {"": "not enough memory..."} when
        the heap cannot take it. Secrets redacted in an export must be put
        back by the caller first (config.restore_secrets).
        """
        import gc

        gc.collect()
        try:
            from chargeguard import config
        except MemoryError:
            return {"": "not enough memory to check a configuration now: restart the controller and try again"}
        try:
            config.save(self.app.storage, doc)
        except config.ConfigError as error:
            out = {}
            for path, message in error.errors:
                out[path] = message
            return out
        except OSError as error:
            return {"": "the configuration could not be stored (flash error %s)" % (error.args[0] if error.args else "?")}
        finally:
            del config
            from chargeguard.app import unload_config

            unload_config()
        from chargeguard import flashfile

        flashfile.remove(self.app.storage + "/" + OVERLAY_FILE)
        self.pending = {}
        if self.restart is not None:
            self.restart()
        return {}

    def flush(self, now_ms=None, force=False):
        """Write the pending changes to OVERLAY_FILE once PERSIST_DELAY_MS passed since the last (the supervisor calls it).

        Returns True when it wrote. An OSError is logged and retried later.
        """
        if not self.pending:
            return False
        if now_ms is None:
            now_ms = self.clock()
        if not force and ticks_diff(now_ms, self._due_ms) < 0:
            return False
        import json

        from chargeguard import flashfile

        path = self.app.storage + "/" + OVERLAY_FILE
        overlay = _read_overlay(path, self.app.names)
        for key in self.pending:
            overlay[key] = self.pending[key]
        data = json.dumps({"chargers": self.app.names, "set": overlay}).encode()
        try:
            flashfile.write(path, path + ".tmp", data)
        except OSError as error:
            self.app.log("settings: could not store %s (%r); retrying" % (OVERLAY_FILE, error))
            self._due_ms = ticks_add(now_ms, PERSIST_DELAY_MS)
            return False
        self.pending = {}
        return True

    # -- validation -----------------------------------------------------------

def _change(name, *args):
    # change.py's function `name` called with args; the module and rules.py
    # dropped after (both load again at the next call). A heap that cannot
    # load them refuses a change with the reason (the call's path "").
    try:
        change = _load_change()
    except MemoryError:
        _unload("chargeguard.rules")
        if name == "apply":
            return {"": "not enough memory to check a change now: nothing changed, try again"}
        raise
    try:
        return getattr(change, name)(*args)
    finally:
        del change
        _unload(_CHANGE)
        _unload("chargeguard.rules")


def _load_change():
    # change.py, imported (MemoryError when the heap cannot take it).
    from chargeguard import change

    return change


def _show(value):
    # _show(value), for the few messages made here.
    from chargeguard.rules import show

    try:
        return show(value)
    finally:
        _unload("chargeguard.rules")


def _read_overlay(path, names):
    # The stored overlay's settings when it is for these chargers, else {}.
    import json

    try:
        with open(path) as handle:
            doc = json.load(handle)
    except (OSError, ValueError):
        return {}
    if type(doc) is not dict or doc.get("chargers") != names or type(doc.get("set")) is not dict:
        return {}
    return doc["set"]


def _unload(name):
    from chargeguard.app import _unload as unload

    unload(name)
