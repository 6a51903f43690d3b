#!/usr/bin/env python3
"""check_config: check a configuration file on a computer, with the device's own validator.

    python3 tools/check_config.py FILE        (or: make check-config CONFIG=FILE)

Prints every problem at once: JSON syntax errors with their line and column,
comments (JSON has none: `//`, `/* */` and `#` are refused), then every
setting the firmware's config.py refuses, by field ("site.breaker_a: must
be between 6 and 630 A (is 0)"). A UTF-8 byte order mark is accepted, as
the device accepts it. Secrets are never printed.

A valid file may still get warnings, printed after its summary as
"  warning: chargers.1.failsafe_a: ...": settings that are allowed but
dangerous or self-defeating (the firmware's configwarn.py; docs/
configuration.md, "Warnings"). The device applies such a file and shows
the same warnings in its notes; so a warning does not change the exit
status. An invalid file lists its errors only: warnings are checked once
it is valid.

The JSON syntax check is standard JSON (Python's parser), stricter than the
device's parser, which lets a missing or trailing comma pass: a file that
passes here is read the same way on the device.

Exit status: 0 valid (with or without warnings), 1 invalid, 2 usage error or
unreadable file.
"""

import json
import os
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
for _path in (os.path.join(TOOLS, "shims"), os.path.join(ROOT, "firmware")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from chargeguard import config, configwarn  # noqa: E402  (the firmware's own modules)

BOM = b"\xef\xbb\xbf"
VALID, INVALID, USAGE = 0, 1, 2


def position(text, index):
    """(line, column), both from 1, of the character at `index` in `text`."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def find_comments(text):
    """[(index, marker)] of each comment start outside a JSON string."""
    found = []
    in_string = False
    escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "#":
            found.append((index, "#"))
        elif char == "/" and text[index + 1 : index + 2] in ("/", "*"):
            found.append((index, text[index : index + 2]))
    return found


class DuplicateKeys(ValueError):
    pass


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeys(key)
        seen[key] = value
    return seen


def _no_constant(name):
    raise ValueError("%s is not a JSON value" % name)


def parse(data):
    """(doc, problems): the JSON document in `data` (bytes), or None and why, each problem one line."""
    if len(data) > config.MAX_CONFIG_BYTES:
        return None, ["the file is too large for the device (%d bytes, the limit is %d)" % (len(data), config.MAX_CONFIG_BYTES)]
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start].decode("utf-8", "replace")
        line, column = position(before, len(before))
        return None, ["line %d, column %d: not UTF-8 text (save the file as UTF-8)" % (line, column)]
    comments = find_comments(text)
    if comments:
        problems = []
        for index, marker in comments:
            line, column = position(text, index)
            problems.append("line %d, column %d: a comment (%s): JSON has no comments; remove it" % (line, column, marker))
        problems.append("the device cannot read a file with comments")
        return None, problems
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except DuplicateKeys as error:
        return None, ["the key %s appears twice in one object: keep one (the device would silently use the last)"
                      % json.dumps(error.args[0])]
    except json.JSONDecodeError as error:
        # msg is the parser's own text ("Expecting ',' delimiter"): it names
        # what is missing, never a piece of the file (so never a secret).
        hint = ""
        if text[: error.pos].rstrip().endswith(","):
            hint = " (a comma before } or ] is not allowed in JSON)"
        return None, ["line %d, column %d: %s%s" % (error.lineno, error.colno, error.msg, hint)]
    except (ValueError, RecursionError) as error:
        return None, ["not valid JSON: %s" % (error.args[0] if error.args else "nesting too deep")]
    if type(doc) is not dict:
        return None, ["the file must hold one JSON object {...} (it holds %s)" % config._kind_of(doc)]
    return doc, []


def _where(entry):
    # How the device reaches a charger: its host; an OCPP box's id (it connects to the device);
    # a box on the board's RS485 port (abb_terra over RTU) by its unit.
    if entry["type"] == "ocpp":
        return "OCPP id %s" % entry["charge_point_id"]
    if entry.get("transport") == "rtu":
        return "RS485 unit %d" % entry["unit"]
    return entry["host"]


def summary(doc):
    """One line about a valid, normalised document (no secrets)."""
    site = doc["site"]
    chargers = ", ".join("%s (%s)" % (entry["name"], _where(entry)) for entry in doc["chargers"]) or "none"
    wifi = "Wi-Fi %s" % json.dumps(doc["wifi"]["ssid"]) if doc["wifi"]["ssid"] else "no Wi-Fi"
    mqtt = doc["mqtt"]
    broker = "MQTT to %s:%d" % (mqtt["host"], mqtt["port"]) if mqtt["enabled"] else "no MQTT"
    return "%s: %d phase(s), breaker %d A, margin %d A; meter: %s; %s; %s; chargers: %s" % (
        json.dumps(doc["name"]),
        site["phases"],
        site["breaker_a"],
        site["margin_a"],
        _meter(doc["meter"]),
        wifi,
        broker,
        chargers,
    )


def _meter(meter):
    # The meter in a few words: its type and model, where it is, whether a
    # token is set (never the token), the clamps' own factors.
    words = [meter["type"]]
    if meter.get("model"):
        words.append(meter["model"])
    if meter.get("host"):
        # API v2 is HTTPS: the driver takes the default port 80 as 443.
        port = 443 if meter.get("model") == "homewizard_v2" and meter["port"] == 80 else meter["port"]
        words.append("at %s:%d" % (meter["host"], port))
    elif meter["type"] == "modbus":
        words.append("on RS485, unit %d, %d baud %s" % (meter["address"], meter["baud"], meter["format"]))
    if meter.get("token"):
        words.append("(token set)")
    own = ["%s %d" % (key, meter[key]) for key in sorted(meter) if key[:-1] == "factor_ua_l" and meter[key]]
    if own:
        words.append("(" + ", ".join(own) + ")")
    if meter["type"] == "atm90e32" and meter["voltage_inputs"] == 1:
        words.append("(one voltage input: L2 and L3 read as import)")
    return " ".join(words)


def check_file(path, out):
    """Checks the file at `path`, writing the report to `out`; returns the exit status."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(config.MAX_CONFIG_BYTES * 4)
    except OSError as error:
        out.write("check-config: cannot read %s: %s\n" % (path, error.strerror or error))
        return USAGE
    doc, problems = parse(data)
    if doc is None:
        out.write("%s: not valid JSON; the device would NOT apply this file\n" % path)
        for problem in problems:
            out.write("  %s\n" % problem)
        return INVALID
    version = doc.get("version", config.CURRENT_VERSION)
    normalised, errors = config.check(doc)
    if errors:
        out.write("%s: %d error%s; the device would NOT apply this file\n" % (path, len(errors), "" if len(errors) == 1 else "s"))
        for field, message in errors:
            out.write("  %s\n" % ("%s: %s" % (field, message) if field else message))
        return INVALID
    out.write("%s: valid. %s\n" % (path, summary(normalised)))
    if version != config.CURRENT_VERSION:
        out.write("  written for version %d: the device migrates it to version %d\n" % (version, config.CURRENT_VERSION))
    for field, message in configwarn.warnings(normalised):
        out.write("  warning: %s: %s\n" % (field, message))
    return VALID


def main(argv, out=sys.stdout, err=sys.stderr):
    if len(argv) != 1 or argv[0] in ("-h", "--help") or not argv[0]:
        err.write("usage: make check-config CONFIG=path/to/config.json  (or: python3 tools/check_config.py FILE)\n")
        return USAGE
    if os.path.isdir(argv[0]):
        err.write("check-config: %s is a directory, not a configuration file\n" % argv[0])
        return USAGE
    if not os.path.exists(argv[0]):
        err.write("check-config: no such file: %s\n" % argv[0])
        return USAGE
    return check_file(argv[0], out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
