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

from chargeguard import rules
from chargeguard.core.ticks import ticks_add, ticks_diff

PERSIST_DELAY_MS = const(5000)
OVERLAY_FILE = "overrides.json"
_SURPLUS = ("eco", "solar", "excess")
_SITE = (rules.SITE_MODE, rules.DISTRIBUTION, rules.PEAK_LIMIT, rules.PEAK_FOLLOW)
_SOLAR = (rules.ECO, rules.NET_TARGET)
_CHARGER = (rules.MODE, rules.MANUAL_A, rules.MIN_A, rules.MAX_A, rules.PRIORITY, rules.ENABLED)


def _spec(table, key):
    for spec in table:
        if spec[0] == key:
            return spec
    return None


def _known(table):
    return ", ".join([spec[0] for spec in table])


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
        doc = app.opt_doc
        values = {}
        for spec in _SITE:
            values["site." + spec[0]] = doc["site"].get(spec[0], spec[1])
        for spec in _SOLAR:
            values["solar." + spec[0]] = doc["solar"].get(spec[0], spec[1])
        for index in range(len(app.chargers)):
            charger = app.chargers[index]
            prefix = "chargers.%d." % index
            values[prefix + "mode"] = app.charger_modes[index]
            values[prefix + "manual_a"] = charger.manual_ma // 1000
            values[prefix + "min_a"] = charger.min_ma // 1000
            values[prefix + "max_a"] = charger.max_ma // 1000
            values[prefix + "priority"] = charger.priority
            values[prefix + "enabled"] = charger.enabled
        self.values = values
        self.pending = {}  # changed since the last write of OVERLAY_FILE
        self._due_ms = 0

    # -- calls for the adapters -------------------------------------------

    def set_charger(self, charger, changes):
        """set() for one charger, named by index or name: {"max_a": 20} -> errors under "chargers.N.max_a"."""
        index = self.index_of(charger)
        if index is None:
            return {"chargers": "no charger %s (chargers: %s)" % (rules.show(charger), ", ".join(self.app.names))}
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
            return {"chargers": "no charger %s (chargers: %s)" % (rules.show(charger), ", ".join(self.app.names))}
        path = "chargers.%d.locked" % index
        if type(locked) is not bool:
            return {path: "must be true or false (is %s)" % rules.show(locked)}
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
        if rules.is_int(charger):
            return charger if 0 <= charger < len(names) else None
        if type(charger) is str:
            folded = charger.lower()
            for index in range(len(names)):
                if names[index].lower() == folded:
                    return index
        return None

    def set(self, changes):
        """Apply {path: value} all-or-nothing; returns {path: message}, {} when applied."""
        errors = {}
        if type(changes) is not dict or not changes:
            return {"": "must be an object of settings to change (is %s)" % rules.show(changes)}
        new = {}
        for path in changes:
            message = self._check_one(path, changes[path])
            if message is not None:
                errors[path] = message
            else:
                new[path] = changes[path]
        if errors:
            return errors
        values = self.values
        # The candidate: current values with the changes, priorities shifted.
        candidate = {}
        for path in values:
            candidate[path] = values[path]
        for path in new:
            if path.endswith(".priority"):
                _move(candidate, len(self.app.chargers), int(path.split(".")[1]), new[path])
            else:
                candidate[path] = new[path]
        self._cross(candidate, errors)
        if errors:
            return errors
        problem = self._optimiser_for(candidate)
        if problem is not None:
            return {"": problem}
        self._apply(candidate)
        return {}

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

    def _check_one(self, path, value):
        # The message for one path and value on their own; None when fine.
        if type(path) is not str:
            return "unknown setting"
        parts = path.split(".")
        if len(parts) == 2 and parts[0] == "site":
            table = _SITE
        elif len(parts) == 2 and parts[0] == "solar":
            table = _SOLAR
        elif len(parts) == 3 and parts[0] == "chargers":
            if path not in self.values and _spec(_CHARGER, parts[2]) is not None:
                return "no charger %s (chargers 0..%d)" % (parts[1], len(self.app.names) - 1)
            table = _CHARGER
        else:
            return "unknown setting (settable: site.*, solar.*, chargers.N.*)"
        spec = _spec(table, parts[-1])
        if spec is None:
            return "unknown setting (settable: %s)" % _known(table)
        return rules.field_message(spec, value)

    def _cross(self, candidate, errors):
        # config.py's cross-field rules on the candidate, with config.py's messages.
        count = len(self.app.chargers)
        for index in range(count):
            prefix = "chargers.%d." % index
            charger = self.app.chargers[index]
            low = candidate[prefix + "min_a"]
            high = candidate[prefix + "max_a"]
            message = rules.max_message(low, high)
            if message is not None:
                errors[prefix + "max_a"] = message
                continue
            message = rules.circuit_message(low, charger.circuit_ma // 1000)
            if message is not None:
                errors[prefix + "min_a"] = "cannot be above circuit_a: chargers.%d.circuit_a %s" % (index, message)
            message = rules.failsafe_message(low, high, charger.failsafe_ma // 1000)
            if message is not None:
                errors[prefix + "min_a"] = "would break chargers.%d.failsafe_a, which %s" % (index, message)
            message = rules.manual_message(low, high, candidate[prefix + "manual_a"])
            if message is not None:
                errors[prefix + "manual_a"] = message
            message = rules.priority_message(count, candidate[prefix + "priority"])
            if message is not None:
                errors[prefix + "priority"] = message
        solar = self.app.opt_doc["solar"]
        target = candidate["solar.net_power_target_w"]
        for high, low, gap in rules.SOLAR_RULES:
            if high == "net_power_target_w":
                message = rules.solar_message(high, low, gap, target, solar[low])
                if message is not None:
                    errors["solar.net_power_target_w"] = message

    def _optimiser_for(self, candidate):
        # Loads the optimiser when the candidate needs it and it is not
        # running; the problem in words when the heap cannot take it.
        app = self.app
        if app.slow is not None or not _needs_optimiser(candidate, len(app.chargers)):
            return None
        import gc

        gc.collect()
        try:
            from chargeguard.slowlayer import SlowLayer

            slow = SlowLayer(_opt_doc(app.opt_doc, candidate), app.guard.site, app.chargers)
        except MemoryError:
            _unload("chargeguard.slowlayer")
            return "not enough memory to load the optimiser (surplus modes, distribution, capacity tariff): nothing changed"
        app.slow = slow
        app.optimiser = slow.optimiser
        return None

    # -- applying ---------------------------------------------------------------

    def _apply(self, candidate):
        app = self.app
        values = self.values
        changed = False
        for path in values:
            if candidate[path] != values[path] or type(candidate[path]) is not type(values[path]):
                values[path] = candidate[path]
                self.pending[path] = candidate[path]
                changed = True
        if not changed:
            return
        doc = app.opt_doc
        for spec in _SITE:
            doc["site"][spec[0]] = values["site." + spec[0]]
        for spec in _SOLAR:
            doc["solar"][spec[0]] = values["solar." + spec[0]]
        site_mode = values["site.mode"]
        for index in range(len(app.chargers)):
            charger = app.chargers[index]
            prefix = "chargers.%d." % index
            mode = values[prefix + "mode"]
            app.charger_modes[index] = mode
            charger.mode = site_mode if mode == "site" else mode
            charger.manual_ma = values[prefix + "manual_a"] * 1000
            charger.min_ma = values[prefix + "min_a"] * 1000
            charger.max_ma = values[prefix + "max_a"] * 1000
            charger.priority = values[prefix + "priority"]
            charger.enabled = values[prefix + "enabled"]
        _sort(app.guard.order, app.chargers)
        if app.slow is not None:
            app.slow.configure(doc, app.chargers)
        self._due_ms = ticks_add(self.clock(), PERSIST_DELAY_MS)
        self.state.settings_seq += 1
        self.state.chargers_seq += 1


def _move(values, count, index, place):
    # Charger `index` to priority `place`; those between shift by one (the
    # order stays a permutation of 1..count). A place beyond count is left
    # for _cross() to refuse.
    key = "chargers.%d.priority" % index
    old = values[key]
    if place > count:
        values[key] = place
        return
    for other in range(count):
        other_key = "chargers.%d.priority" % other
        value = values[other_key]
        if other == index:
            continue
        if old < place and old < value <= place:
            values[other_key] = value - 1
        elif place < old and place <= value < old:
            values[other_key] = value + 1
    values[key] = place


def _sort(order, chargers):
    # In place: the guard's and the optimiser's priority order.
    for index in range(len(order)):
        order[index] = index
    order.sort(key=lambda index: chargers[index].priority)


def _needs_optimiser(values, count):
    # core/modes.needs_optimiser() on the values (enabled chargers only).
    if values["site.peak_limit_w"] or values["site.distribution"] != "priority":
        return True
    for index in range(count):
        prefix = "chargers.%d." % index
        mode = values[prefix + "mode"]
        if mode == "site":
            mode = values["site.mode"]
        if values[prefix + "enabled"] and mode in _SURPLUS:
            return True
    return False


def _opt_doc(doc, values):
    # The optimiser's part of the configuration with the candidate's values.
    site = {}
    for spec in _SITE:
        site[spec[0]] = values["site." + spec[0]]
    solar = {}
    for key in doc["solar"]:
        solar[key] = doc["solar"][key]
    for spec in _SOLAR:
        solar[spec[0]] = values["solar." + spec[0]]
    return {"site": site, "solar": solar}


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
