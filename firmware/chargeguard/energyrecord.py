"""The energy record on flash: read back at the energy task's start, written when a store is due.

energylog.EnergyLog imports this module for load() (with the time zone's
rule, once) and for each store() and drops it after: as .mpy its code stays
off the heap between stores (at most one a minute, in practice one per
100 Wh and one per session). The record's format and why there are two
files: energylog.py's module doc.
"""

import binascii
import sys

from micropython import const

from chargeguard.energylog import RECORD_FILES

MAX_RECORD = const(4096)  # bytes; a larger file is not a record


def load(energy, now_ms):
    """Restore energy's counters (an energylog.EnergyLog) from the newer valid record; errors logged, never raised."""
    best = None
    bad = []
    for slot in range(2):
        doc, why = _read(energy.storage + "/" + RECORD_FILES[slot])
        if why is not None:
            bad.append("%s %s" % (RECORD_FILES[slot], why))
        elif doc is not None and (best is None or doc["seq"] > best[0]["seq"]):
            best = (doc, slot)
    if best is None:
        if bad:
            message = "energy: no valid record (%s): lifetime energy counts again from 0" % "; ".join(bad)
            energy.log(message)
            energy.state.add_error(message)
        else:
            energy.log("energy: no record yet: counting from 0")
        return
    for text in bad:
        energy.log("energy: %s; using the other copy" % text)
    doc, slot = best
    energy.seq = doc["seq"]
    energy.slot = 1 - slot  # the next store goes to the other file
    for entry in doc["chargers"]:
        if entry[0] in energy.names:
            counter = energy.counters[energy.names.index(entry[0])]
            counter.restore(entry[1], entry[2], entry[3], entry[4], now_ms)


def store(energy, now_ms):
    """Write energy's counts (an energylog.EnergyLog) to its next record file; True when stored.

    An OSError of the flash is logged once per kind (energy.store_error) and
    gives False: the counts are kept and tried again after PERSIST_MIN_MS.
    """
    import json

    from chargeguard import flashfile

    chargers = []
    for index in range(len(energy.counters)):
        counter = energy.counters[index]
        day = counter.day if counter.clock else counter.stored_day
        chargers.append([energy.names[index], counter.lifetime_wh, counter.today_wh, day, counter.session_wh])
    line = json.dumps({"seq": energy.seq + 1, "chargers": chargers}).encode()
    data = line + ("\n%d\n" % (binascii.crc32(line) & 0xFFFFFFFF)).encode()
    path = energy.storage + "/" + RECORD_FILES[energy.slot]
    try:
        flashfile.write(path, path + ".tmp", data)
    except OSError as error:
        energy._store_failed("energy: could not store %s (%r)" % (RECORD_FILES[energy.slot], error))
        return False
    energy.store_error = None
    energy.seq += 1
    energy.slot = 1 - energy.slot
    energy.stores += 1
    for counter in energy.counters:
        counter.stored()
    return True


def rule(text, log):
    """The time zone's rule (core/tzparse.parse()) for site.timezone `text`; UTC, logged, when it is not valid.

    core/tzparse.py is unloaded again (needed once).
    """
    from chargeguard.core import tzparse

    try:
        return tzparse.parse(text)
    except ValueError as error:
        # config.py refuses such a rule; a document that skipped the check runs on UTC.
        log("energy: site.timezone %r: %s; using UTC" % (text, error.args[0]))
        return (0,)
    finally:
        del tzparse
        sys.modules.pop("chargeguard.core.tzparse", None)
        package = sys.modules.get("chargeguard.core")
        if package is not None and "tzparse" in package.__dict__:
            delattr(package, "tzparse")


def _read(path):
    # (doc, None) for a valid record, (None, None) when the file is missing,
    # (None, why) when it is there but not a valid record.
    import json

    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RECORD + 1)
    except OSError:
        return None, None
    if len(data) > MAX_RECORD:
        return None, "is larger than %d bytes" % MAX_RECORD
    lines = data.split(b"\n")
    if len(lines) != 3 or lines[2] != b"":
        return None, "is not a record (two lines expected)"
    try:
        crc = int(lines[1])
    except ValueError:
        return None, "has no checksum line"
    if binascii.crc32(lines[0]) & 0xFFFFFFFF != crc:
        return None, "fails its checksum (damaged)"
    try:
        doc = json.loads(lines[0])
    except ValueError:
        return None, "is not valid JSON"
    if not _valid(doc):
        return None, "does not have the record's fields"
    return doc, None


def _valid(doc):
    if type(doc) is not dict or type(doc.get("seq")) is not int or type(doc.get("chargers")) is not list:
        return False
    for entry in doc["chargers"]:
        if type(entry) is not list or len(entry) != 5 or type(entry[0]) is not str:
            return False
        for place in (1, 2, 3, 4):
            value = entry[place]
            if not (type(value) is int and value >= 0) and not (place >= 3 and value is None):
                return False
    return True
