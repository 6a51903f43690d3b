"""Decode a raw P1 stream with the firmware's own parser.

The decoding loop of tools/p1decode, written to run unchanged under CPython
and the MicroPython unix port:

    micropython tools/p1decode_run.py <firmware-dir> <capture-file | -> [--live] [--count N] [--seconds S]

`-` reads standard input. `--live`: the input is a serial port that tools/p1decode
opened and set up (VMIN 0, VTIME 2: a read returns nothing after 0.2 s of
silence): an empty read is a quiet line, not the end; it runs until
--count telegrams were framed, --seconds passed, or Ctrl-C.

Prints one JSON object per telegram found, one per line, on stdout (schema
in tools/p1decode), then a summary line (and hints when the input looks
wrong) on stderr. The JSON is written by hand, not with the json module,
so that key order and number format are the same on both runtimes.
Exit status: 0 when at least one telegram was framed, 1 when none was,
2 on a usage or read error.
"""

import sys
import time

CHUNK_BYTES = 512  # read size: captures of any length stream through
# Rejection reasons in the order the summary lists them (the parser's).
ERRORS = ("crc mismatch", "no crc on a DSMR 4+ telegram", "truncated", "too long", "no power values")
# A live port silent this long gets a hint (DSMR 2.2/3 send every 10 s).
SILENT_HINT_S = 15

CAPTURE_HOWTO = (
    "to capture a port raw yourself: stty -F /dev/ttyUSB0 115200 raw -echo && cat /dev/ttyUSB0 > capture.txt "
    "(DSMR 2.2/3.0: stty -F /dev/ttyUSB0 9600 raw -echo cs7 parenb -parodd)"
)


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


class Stats:
    """What went by: bytes, line ends, telegrams and why they were rejected."""

    def __init__(self):
        self.bytes = 0
        self.cr = 0
        self.lf = 0
        self.high = 0  # bytes with bit 7 set
        self.even = 0  # bytes whose bit 7 is the even parity of the other 7
        self.parity_slash = 0  # 0xAF: '/' with an even-parity bit on top
        self.rejected = {}
        self.silent_hint = False

    def take(self, chunk):
        self.bytes += len(chunk)
        self.cr += chunk.count(b"\r")
        self.lf += chunk.count(b"\n")
        self.parity_slash += chunk.count(b"\xaf")
        for b in chunk:
            if b & 0x80:
                self.high += 1
            ones = 0
            x = b & 0x7F
            while x:
                ones += x & 1
                x >>= 1
            if (b >> 7) == (ones & 1):
                self.even += 1


def _now_ms():
    # A monotonic clock in ms on both runtimes (MicroPython's wraps after
    # 12 days, far beyond any run of this tool).
    if hasattr(time, "ticks_ms"):
        return time.ticks_ms()
    return int(time.monotonic() * 1000)


def run(read_into, write, live=False, count=0, seconds=0, note=None):
    """Decode what read_into(buf) -> n delivers, calling write(line) per telegram.

    live: n == 0 is a quiet line (parser.idle()), not the end. Stops after
    `count` telegrams or `seconds` (0: no limit). note(text) gets the hint
    for a live port that stays silent. Returns (parser, Stats)."""
    from chargeguard.meters.p1 import P1Parser

    parser = P1Parser()
    stats = Stats()
    buf = bytearray(CHUNK_BYTES)
    start = _now_ms()
    last_byte = start
    try:
        while True:
            now = _now_ms()
            if seconds and now - start >= seconds * 1000:
                break
            if count and parser.n_telegrams >= count:
                break
            n = read_into(buf)
            if not n:
                if not live:
                    break
                parser.idle()
                if parser.ready:
                    write(describe(parser))
                    _tally(parser, stats)
                if not stats.silent_hint and now - last_byte >= SILENT_HINT_S * 1000 and note is not None:
                    stats.silent_hint = True
                    note(silent_hint(stats))
                continue
            last_byte = now
            stats.take(bytes(buf[:n]))
            i = 0
            while i < n:
                i = parser.feed(buf, i, n)
                if parser.ready:
                    write(describe(parser))
                    _tally(parser, stats)
                    if count and parser.n_telegrams >= count:
                        return parser, stats
    except KeyboardInterrupt:
        pass
    parser.finish()
    if parser.ready:
        write(describe(parser))
        _tally(parser, stats)
    return parser, stats


def _tally(parser, stats):
    if not parser.accepted:
        stats.rejected[parser.error] = stats.rejected.get(parser.error, 0) + 1


def summary(parser, stats):
    """The closing line: telegrams framed, accepted, rejected and why, bytes skipped."""
    reasons = ["%d %s" % (stats.rejected[e], e) for e in ERRORS if e in stats.rejected]
    return "p1decode: %d bytes read, %d telegram%s framed: %d accepted, %d rejected%s; %d bytes skipped outside telegrams" % (
        stats.bytes,
        parser.n_telegrams,
        "" if parser.n_telegrams == 1 else "s",
        parser.n_accepted,
        parser.n_rejected,
        " (" + ", ".join(reasons) + ")" if reasons else "",
        parser.n_skipped,
    )


def silent_hint(stats):
    return (
        "p1decode: hint: no bytes from the port: the meter sends only while Data Request (P1 pin 2) is held at "
        "+5 V; check the cable and that the P1 port is enabled (DSMR 4/5 send every 1-10 s, DSMR 2.2/3.0 every 10 s)"
    )


def hints(parser, stats, live=False):
    """Hints for input that framed nothing, or only telegrams a mangled capture gives; [] when it looks fine."""
    out = []
    if parser.n_telegrams == 0:
        if stats.bytes == 0:
            out.append(silent_hint(stats) if live else "p1decode: hint: the input was empty")
            return out
        out.append(
            "p1decode: hint: no telegram start ('/') in %d bytes. Check the line settings (DSMR 4/5, e-MUCS, Smarty: "
            "115200 8N1; DSMR 2.2/3.0: 9600 7E1), the signal's inversion (the P1 data line is inverted: a bare port "
            "needs an inverting cable or an inverted UART input), and that the port was read raw (a tty in cooked "
            "mode rewrites line ends and drops bytes; give p1decode the device path and it sets the port up)"
            % stats.bytes
        )
        # 7E1 taken in as 8 data bits: the parity bit lands in bit 7, so
        # every byte has even parity (random noise: about half of them).
        if stats.parity_slash and stats.high * 10 >= stats.bytes and stats.even * 50 >= stats.bytes * 49:
            out.append(
                "p1decode: hint: the bytes look like 7E1 read as 8 bits (many have bit 7 set, and '/' shows as 0xAF): "
                "a DSMR 2.2/3.0 meter at 9600 7E1 (--baud 9600)"
            )
        return out
    crc_bad = stats.rejected.get("crc mismatch", 0)
    if stats.lf and not stats.cr and crc_bad and not parser.n_accepted:
        out.append(
            "p1decode: hint: every telegram failed its CRC and the input has LF line ends but no CR: it was read from "
            "a tty in cooked mode, which turns CR LF into LF. Give p1decode the device path, or capture raw"
        )
    return out


def main(argv):
    args = []
    live = False
    count = 0
    seconds = 0
    k = 0
    try:
        while k < len(argv):
            a = argv[k]
            if a == "--live":
                live = True
            elif a == "--count":
                k += 1
                count = int(argv[k])
            elif a == "--seconds":
                k += 1
                seconds = int(argv[k])
            else:
                args.append(a)
            k += 1
    except (IndexError, ValueError):
        args = []
    if len(args) != 2:
        sys.stderr.write("usage: p1decode_run.py <firmware-dir> <capture-file | -> [--live] [--count N] [--seconds S]\n")
        return 2
    sys.path.insert(0, args[0])
    path = args[1]

    flush = getattr(sys.stdout, "flush", None)

    def out(line):
        sys.stdout.write(line + "\n")
        if live and flush is not None:
            flush()  # a live port: show each telegram as it comes

    def note(line):
        sys.stderr.write(line + "\n")

    try:
        if path == "-":
            stdin = getattr(sys.stdin, "buffer", sys.stdin)  # bytes
            parser, stats = run(stdin.readinto, out, live, count, seconds, note)
        else:
            with open(path, "rb") as handle:
                parser, stats = run(handle.readinto, out, live, count, seconds, note)
    except OSError as error:
        sys.stderr.write("p1decode: cannot read %s: %s\n" % (path, error))
        return 2
    note(summary(parser, stats))
    if stats.silent_hint and stats.bytes == 0:
        return 1  # the hint was given already
    for line in hints(parser, stats, live):
        note(line)
    return 0 if parser.n_telegrams else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
