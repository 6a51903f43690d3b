"""Safe mode: the guard-only configuration a board starts when its last good one no longer does.

trial.py counts the last good configuration's starts that never proved
(guarded CONFIG_PROVEN_MS): a crash, a MemoryError, a watchdog reset or a
power cut during its first seconds. After two in a row (a firmware update
that needs more heap, a driver that crashes on this site) the board would
otherwise restart every ~10 s for good, and a wallbox keeps its last
current while nothing guards it. trial.start() then gives the level:

    SAFE_MODE  the same document reduced to what guards: the meter, the
               chargers and the guard's site settings (breaker, margin,
               phases, failsafe, modes, capacity limit); what is not
               needed to guard is switched off (reduce() says each one, why).
    FAILSAFE   a safe-mode start did not prove either: no meter is read
               either, so the guard holds every charger at its own
               failsafe current (guard failsafe_a, 0 = paused) from its
               first decision; the optimiser is not loaded (with no
               readings it has nothing to do).

    reduce(doc, level) -> list of sentences (str) for the owner: doc (a
        validated configuration) is changed in place.

How to leave it: a new config.json (make deploy, a different file) gets
its own trial as usual; and a proven safe-mode boot lets the next restart
(power cycle, reset button) try the full configuration once more (one
failure of it is safe mode again). Loaded at boot only (startup.prepare),
only when the level is not 0, and unloaded after.
"""

from micropython import const

from chargeguard.core.modes import MODE_FAST, SURPLUS_MODES

FAILSAFE = const(2)  # trial.FAILSAFE (trial.py is not loaded while this runs)

# What stays on and why (the owner reads it on the console and in the
# state's errors): decided per part of the configuration.
_KEPT = (
    "kept: the meter, the chargers, the guard's site settings (breaker, margin, phases, failsafe, modes),"
    " Wi-Fi (the chargers and a network meter are reached over it), the setup access point"
)


def reduce(doc, level):
    """Reduce the validated configuration `doc` in place for `level` (trial.SAFE_MODE or FAILSAFE).

    Returns the sentences that say what runs, what is off and how to leave
    safe mode (the first one loud, for the console). Never touches a
    secret: the sections switched off keep their values, only "enabled"
    changes.
    """
    off = []
    mqtt = doc.get("mqtt") or {}
    if mqtt.get("enabled"):
        # Home Assistant and the remote controls: views around the guard.
        # A meter of type "mqtt" keeps its own link to the broker.
        mqtt["enabled"] = False
        off.append("MQTT/Home Assistant")
    web = doc.get("web") or {}
    if web.get("enabled"):
        # The status pages and the REST API: their server and pages are the
        # largest interface; settings are changed by a deploy meanwhile.
        web["enabled"] = False
        off.append("the web pages and API")
    ocpp = doc.get("ocpp") or {}
    boxes = any(entry["type"] == "ocpp" for entry in doc["chargers"])
    if ocpp.get("enabled") and not boxes:
        ocpp["enabled"] = False
        off.append("the OCPP central system (no OCPP charger)")
    # Every interface is off unless an OCPP box needs its central system:
    # then the site state exists and the energy log would start with it.
    off.append("the energy log")
    if level == FAILSAFE:
        site = doc["site"]
        # With no meter read, the optimiser has nothing to work with.
        site["peak_limit_w"] = 0
        site["distribution"] = "priority"
        if site.get("mode") in SURPLUS_MODES:
            site["mode"] = MODE_FAST
        for entry in doc["chargers"]:
            if entry["mode"] in SURPLUS_MODES:
                entry["mode"] = MODE_FAST
        head = (
            "FAILSAFE MODE: even the guard-only safe mode did not start (it did not guard for 10 s):"
            " the meter is NOT read, every charger is held at its failsafe current (guard failsafe_a, 0 = paused)"
        )
        kept = "kept: the chargers, the guard's site settings, Wi-Fi"
    else:
        head = (
            "SAFE MODE: the last good configuration (config.bak) did not start in two boots in a row"
            " (a crash, not enough memory, a watchdog reset or a power cut before it had guarded for 10 s)"
        )
        kept = _KEPT
    if boxes:
        kept += ", the OCPP central system (the OCPP chargers connect to it)"
    return [
        head,
        kept,
        "off: " + ", ".join(off),
        "to leave it: fix the cause (the console said it before the restarts) and install a config.json"
        " (make deploy CONFIG=file.json), or restart the board to try the full configuration once more",
    ]
