"""Warnings about a valid configuration: settings that are allowed but dangerous or self-defeating.

warnings(doc) -> [(path, message)], [] when there is nothing to say.
add_notes(doc, notes) -> None: each appended to `notes` as "warning: PATH: MESSAGE"
    (at most MAX_NOTES, then a count).
doc: a valid, complete document (config.check()/load_for_boot()'s); paths
and messages read like config.py's errors ("chargers.1.failsafe_a: ...").
A warning never refuses a configuration: the device boots with it and says
so (startup.py appends them to the notes: console once, /api/status
device.config_notes), tools/check_config.py prints them after a valid
file's summary and still exits 0. Pure: no I/O, no clock, integers only.

Loaded only while a configuration is read at start-up or checked, and
unloaded after (as config.py): its code does not stay on the heap. The
messages stay short (the notes are kept on the device's heap for good);
docs/configuration.md, "Warnings", explains each.

The warnings (docs/configuration.md, "Warnings"):
- failsafe_a: with no meter reading (and in failsafe mode) every charger
  gets its failsafe current blindly, the house's own load on top. Per site
  phase the chargers' failsafe currents must sum to at most
  breaker_a - margin_a: what the guard gives the chargers on a phase where
  the house draws nothing (docs/architecture.md, "The guard": headroom =
  breaker - margin - base load); only PV feeding that phase, which a
  failsafe cannot count on (a night), would allow more.
  The guard caps the failsafe at circuit_a (core/guard.py _failsafe); a
  keba_p30's or an OCPP box's own failsafe (what the box falls back to
  when ChargeGuard falls silent) is failsafe_a as written: counted so.
  A disabled charger's failsafe is 0.
- site.peak_limit_w below an enabled charger's least charging power,
  phases x site.voltage_v x min_a: the car cannot charge steadily; it
  starts late in each quarter-hour on what the quarter left unspent and
  pauses at the next (docs/optimiser.md, "A peak limit below a car's
  minimum").
- an OCPP charger without a password: its connection has no HTTP Basic
  authentication (OCPP security profile 1), and a new connection with its
  charge point id replaces the old one (net/ocpp.py).
- max_a above circuit_a: the guard never offers more than circuit_a
  (core/guard.py), so max_a above it has no effect; and a failsafe_a above
  circuit_a, which a keba_p30 or an OCPP box gets as its own failsafe
  uncapped.
"""

MAX_NOTES = 10  # warnings in the start-up notes (config.MAX_NOTE_ERRORS, not imported: config.py is gone then)
_LETTERS = "ABC"
# Chargers whose box keeps failsafe_a itself (chargers/keba.py: "failsafe 60
# <failsafe_a> 0"; chargers/ocpp.py: the failsafe charging profile): not
# capped by circuit_a there.
_BOX_FAILSAFE = ("keba_p30", "ocpp")


def warnings(doc):
    """[(path, message)] for the valid, complete document `doc`; [] when none."""
    out = []
    chargers = doc["chargers"]
    if not chargers:
        return out
    site = doc["site"]
    for index in range(len(chargers)):
        _charger(out, "chargers.%d." % index, chargers[index])
    _failsafe_sum(out, site, chargers)
    _peak_limit(out, site, chargers)
    return out


def _box_failsafe(entry):
    # The failsafe current (A) this charger may draw while nothing is guarded.
    if not entry["enabled"] or not entry["failsafe_a"]:
        return 0
    if entry["type"] in _BOX_FAILSAFE:
        return entry["failsafe_a"]
    return min(entry["failsafe_a"], entry["max_a"], entry["circuit_a"])


def _failsafe_sum(out, site, chargers):
    limit = site["breaker_a"] - site["margin_a"]
    seen = []
    for phase in range(site["phases"]):
        letter = _LETTERS[phase]
        total = 0
        last = -1
        parts = []
        for index in range(len(chargers)):
            entry = chargers[index]
            amps = _box_failsafe(entry)
            if amps and letter in entry["phase_map"]:
                total += amps
                last = index
                parts.append("chargers.%d %d A" % (index, amps))
        if total <= limit:
            continue
        key = (last, total, ", ".join(parts))
        for item in seen:
            if item[0] == key:
                item[1].append(letter)
                break
        else:
            seen.append((key, [letter]))
    for key, letters in seen:
        last, total, parts = key
        message = (
            "the failsafe currents on phase %s sum to %d A (%s), above breaker_a - margin_a = %d A: "
            "with no meter reading they are offered blindly, the house's load on top, and the breaker can trip"
        ) % ("/".join(letters), total, parts, limit)
        out.append(("chargers.%d.failsafe_a" % last, message))


def _peak_limit(out, site, chargers):
    limit = site["peak_limit_w"]
    if not limit:
        return
    for index in range(len(chargers)):
        entry = chargers[index]
        if not entry["enabled"]:
            continue
        need = entry["phases"] * site["voltage_v"] * entry["min_a"]
        if limit < need:
            message = (
                "%d W is below the least chargers.%d charges at, %d phase(s) x %d V x %d A = %d W: it stops "
                "and starts every quarter-hour; set at least %d W plus the house's load, or 0 (off)"
            ) % (limit, index, entry["phases"], site["voltage_v"], entry["min_a"], need, need)
            out.append(("site.peak_limit_w", message))


def _charger(out, prefix, entry):
    if entry["type"] == "ocpp" and not entry["password"]:
        message = (
            "is empty: anyone on the network who connects as %r takes over this OCPP box (no Basic auth); "
            "set 8 to 64 characters here and in the box"
        ) % entry["charge_point_id"]
        out.append((prefix + "password", message))
    circuit = entry["circuit_a"]
    if entry["max_a"] > circuit:
        message = "%d A is above circuit_a (%d A): the guard never offers more than circuit_a; set at most %d A" % (
            entry["max_a"],
            circuit,
            circuit,
        )
        out.append((prefix + "max_a", message))
    if entry["failsafe_a"] > circuit and entry["type"] in _BOX_FAILSAFE:
        message = (
            "%d A is above circuit_a (%d A): the box keeps it as its own failsafe, uncapped when ChargeGuard is "
            "silent; set at most %d A"
        ) % (entry["failsafe_a"], circuit, circuit)
        out.append((prefix + "failsafe_a", message))


def add_notes(doc, notes):
    """Append the warnings of `doc` to `notes` (the start-up notes) as "warning: PATH: MESSAGE".

    At most MAX_NOTES of them (the notes stay on the heap), then one that
    counts the rest; tools/check_config.py lists them all.
    """
    found = warnings(doc)
    for path, message in found[:MAX_NOTES]:
        notes.append("warning: %s: %s" % (path, message))
    if len(found) > MAX_NOTES:
        notes.append("warning: and %d more (make check-config CONFIG=config.json lists them all)" % (len(found) - MAX_NOTES))
