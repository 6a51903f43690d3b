"""Decode a raw P1 capture with the firmware's own parser.

The decoding loop of tools/p1decode, written to run unchanged under CPython
and the MicroPython unix port:

    micropython tools/p1decode_run.py <firmware-dir> <capture-file>

Prints one JSON object per telegram found, one per line (schema in
tools/p1decode). The JSON is written by hand, not with the json module,
so that key order and number format are the same on both runtimes.
"""

import sys

CHUNK_BYTES = 512  # read size: captures of any length stream through


def _json_text(raw):
    # JSON string from bytes, one character per byte (latin-1), so that odd
    # header bytes show as \u00XX escapes instead of failing to decode.
    out = ['"']
    for b in raw:
        if b == 0x22:
            out.append('\\"')
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\u%04x" % b)
    out.append('"')
    return "".join(out)


def _milli(value):
    # An integer in thousandths as a JSON number with 1 to 3 decimals.
    sign = "-" if value < 0 else ""
    value = -value if value < 0 else value
    text = "%d.%03d" % (value // 1000, value % 1000)
    text = text.rstrip("0")
    if text.endswith("."):
        text += "0"
    return sign + text


def _int_or_null(value):
    return "null" if value is None else "%d" % value


def describe(parser):
    """The JSON line for the telegram the parser just completed."""
    parts = ['"accepted": ' + ("true" if parser.accepted else "false"), '"crc": "%s"' % parser.crc]
    if not parser.accepted:
        parts.append('"error": "%s"' % parser.error)
    parts.append('"header": ' + _json_text(parser.header_bytes()))
    if parser.accepted:
        r = parser.reading
        phases = []
        for k in range(r.phase_count):
            volt = r.voltage_mv[k]
            phases.append(
                '{"i_a": %s, "p_w": %d, "u_v": %s}'
                % (_milli(r.current_ma[k]), r.power_w[k], "null" if volt is None else _milli(volt))
            )
        parts.append('"phases": [' + ", ".join(phases) + "]")
        parts.append('"p_import_w": ' + _int_or_null(r.import_w))
        parts.append('"p_export_w": ' + _int_or_null(r.export_w))
        parts.append('"e_import_wh": ' + _int_or_null(r.energy_import_wh))
        parts.append('"e_export_wh": ' + _int_or_null(r.energy_export_wh))
        if r.avg_demand_w is not None:
            parts.append('"avg_demand_w": %d' % r.avg_demand_w)
        if r.month_peak_w is not None:
            parts.append('"month_peak_w": %d' % r.month_peak_w)
    return "{" + ", ".join(parts) + "}"


def run(path, write):
    """Decode the capture at `path`, calling write(line) per telegram.

    Returns the number of telegrams found."""
    from chargeguard.meters.p1 import P1Parser

    parser = P1Parser()
    buf = bytearray(CHUNK_BYTES)
    found = 0
    with open(path, "rb") as handle:
        while True:
            n = handle.readinto(buf)
            if not n:
                break
            i = 0
            while i < n:
                i = parser.feed(buf, i, n)
                if parser.ready:
                    write(describe(parser))
                    found += 1
    parser.finish()
    if parser.ready:
        write(describe(parser))
        found += 1
    return found


def _print_line(line):
    sys.stdout.write(line + "\n")


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: p1decode_run.py <firmware-dir> <capture-file>\n")
        return 2
    sys.path.insert(0, argv[0])
    try:
        run(argv[1], _print_line)
    except OSError as error:
        sys.stderr.write("p1decode: cannot read %s: %s\n" % (argv[1], error))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
