"""Read a Modbus or LAN (HTTP) meter from this computer, with the firmware's own driver: what an installer runs first.

    python tools/meterprobe.py --model sdm630 --device /dev/ttyUSB0 [--address 1] [--baud 9600] [--format 8N1]
    python tools/meterprobe.py --model em24 --host 192.168.1.50 [--port 502]
    python tools/meterprobe.py --model homewizard --host 192.168.1.60 [--port 80]
    python tools/meterprobe.py --homewizard-pair --host 192.168.1.60 --ca-file homewizard-ca.pem [--wait-s 60]
    python tools/meterprobe.py --model homewizard_v2 --host 192.168.1.60 --token T --cert-hostname N --ca-file F
    python tools/meterprobe.py --model shelly_em1 --host 192.168.1.61 [--channel 1]
    python tools/meterprobe.py --model p1 --device /dev/ttyUSB0 [--baud 115200|9600] [--format 8N1|7E1]
    python tools/meterprobe.py --config config.json --device /dev/ttyUSB0     (the meter section of a config)
    add --every 1 to read once a second until Ctrl-C

Over a USB-RS485 adapter (which switches direction itself) or Modbus TCP. It
prints the per-phase current, power and voltage and the energy, or the error
in words, and what the values suggest: a swapped float (the meter sends low
word first), a meter mounted upside down (all power negative at a time the
house imports), a wrong model (no such register). Exit status 0 when a
reading came, 1 when not, 2 for bad arguments.

LAN meters over HTTP (HomeWizard API v1, Shelly Gen2/Gen3 EM / EM1, Shelly
Gen1 3EM / EM: docs/meters.md) are read with meters/http_meter.py: the same
values, the error in words (no answer, connection refused, HTTP 403: the
HomeWizard's local API is off, HTTP 404: another model, bad JSON), and the
same notes on a meter mounted upside down.

HomeWizard API v2 (HTTPS with a token): --homewizard-pair asks the meter for
a token (POST /api/user, docs/configuration.md) every second until the owner
presses the meter's button or --wait-s (default 60 s) runs out, and prints
the token once with the meter section to paste into the configuration. The
meter's certificate must chain to --ca-file (HomeWizard's CA, from its API
documentation) before anything is asked; its name (appliance/<type>/<serial>)
is taken from the checked certificate.

A P1 port (a USB P1 cable) is read with meters/p1.py, the firmware's own
parser: it waits up to --wait-s (default 25 s: DSMR 2.2 to 4 send every 10 s)
for a telegram and prints its header and values, or each rejected telegram's
reason in words (CRC mismatch, cut short, too long, no power values) and what
to try when nothing or only garbage arrives (line speed and format, an
uninverted signal, a port that the grid operator has not switched on).
tools/p1decode gives the same telegrams as JSON, and decodes captures.
"""

import argparse
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware")):
    if path not in sys.path:
        sys.path.insert(0, path)

from chargeguard import config as config_module  # noqa: E402
from chargeguard.meters import http_meter  # noqa: E402
from chargeguard.meters import http_models  # noqa: E402
from chargeguard.meters import modbus as modbus_meter  # noqa: E402
from chargeguard.meters import modbus_models  # noqa: E402
from chargeguard.meters import p1 as p1_meter  # noqa: E402
from chargeguard.platform import unix  # noqa: E402

PLAUSIBLE_MV = (80000, 300000)  # a phase voltage outside this is not a real mains value


def meter_section(args):
    """The meter section to read, validated by the firmware's own rules; exits 2 with the errors."""
    if args.config:
        with open(args.config) as handle:
            doc = json.load(handle)
        meter = dict(doc.get("meter", {}))
    elif args.model == "p1":
        meter = {"type": "p1"}
        if args.baud == 9600 and args.format is None:
            meter["format"] = "7E1"  # DSMR 2.2 / 3.0
    else:
        kind = "http" if args.model in http_models.MODELS else "modbus"
        meter = {"type": kind, "model": args.model or ""}
    if meter.get("type") == "p1":
        keys = ("baud", "format")
    elif meter.get("type") == "http":
        keys = ("host", "port", "channel", "token", "ca_file", "cert_hostname")
    else:
        keys = ("address", "host", "port", "baud", "format")
    for key in keys:
        value = getattr(args, key)
        if value is not None:
            meter[key] = value
    meter.setdefault("type", "modbus")
    # The site matters only for a one-phase meter's check: the config's own
    # site, else a one-phase site (the probe reads any meter on its own).
    site = doc.get("site", {}) if args.config else {"phases": 1}
    checked, errors = config_module.check({"meter": meter, "site": site})
    errors = [(path, text) for path, text in errors if path.startswith("meter")]
    if errors:
        for path, text in errors:
            print("%s: %s" % (path, text))
        sys.exit(2)
    if checked["meter"]["type"] not in ("modbus", "http", "p1"):
        print("meter.type: this probe reads P1, Modbus and HTTP meters (is %s)" % checked["meter"]["type"])
        sys.exit(2)
    ca_file = checked["meter"].get("ca_file")
    if checked["meter"].get("model") == "homewizard_v2" and not os.path.exists(ca_file):
        # The section's ca_file names a file on the device's flash; here it is read from this computer.
        print("meter.ca_file: no file %s on this computer: give HomeWizard's CA certificate with --ca-file PATH"
              % ca_file)
        sys.exit(2)
    return checked["meter"]


def _f32(hi, lo):
    # For the diagnosis only (host side): the float a word pair makes.
    import struct

    return struct.unpack(">f", bytes((hi >> 8, hi & 0xFF, lo >> 8, lo & 0xFF)))[0]


def diagnose(meter, row, section, fresh):
    """Sentences on what the values suggest (empty when they look right); `fresh`: the poll gave a reading."""
    notes = []
    r = meter.reading
    phases = row[2]
    volts = [r.voltage_mv[p] for p in range(phases) if r.voltage_mv[p] is not None] if fresh else []
    bad_volts = [v for v in volts if not PLAUSIBLE_MV[0] <= v <= PLAUSIBLE_MV[1]]
    suspect = not fresh or bad_volts or len(volts) < phases
    if row[7] is not None and suspect and row[7][1] == modbus_models.F32:
        # Read the L1 voltage's two registers and try the other word order.
        master = meter.master
        address = row[7][0]
        if run(read_raw(master, section["address"], row[0], address, 2)):
            hi, lo = master.word(0), master.word(1)
            as_is = _f32(lo, hi) if row[1] else _f32(hi, lo)
            swapped = _f32(hi, lo) if row[1] else _f32(lo, hi)
            if 80 <= swapped <= 300 and not 80 <= as_is <= 300:
                notes.append(
                    "values look like a swapped float: the meter sends the other word order (%.1f V read, %.1f V the"
                    " other way round): use model custom with word_order %s, or check the meter's byte-order setting"
                    % (as_is, swapped, "high_first" if row[1] else "low_first")
                )
    elif bad_volts:
        notes.append(
            "voltages %s V are no mains values: wrong model, wrong scale or word order"
            % "/".join("%.1f" % (v / 1000) for v in bad_volts)
        )
    if fresh and phases and all(r.power_w[p] < 0 for p in range(phases)) and not section["upside_down"]:
        notes.append(
            "every phase exports: if the house is not producing (solar) now, the meter is mounted upside down"
            " (meter.upside_down true) or its CTs face the wrong way"
        )
    return notes


async def read_raw(master, unit, function, address, count):
    from chargeguard.net import modbus as mb

    master.start(unit, function, address, count, 2500)
    while True:
        result = master.step()
        if result != mb.BUSY:
            return result == mb.DONE
        await asyncio.sleep(0.005)


def run(coro):
    return asyncio.get_event_loop().run_until_complete(coro)


def show(meter, row):
    r = meter.reading
    lines = []
    if r.phase_count:
        for p in range(r.phase_count):
            volt = r.voltage_mv[p]
            lines.append(
                "L%d: %7.2f A %7d W %s"
                % (p + 1, r.current_ma[p] / 1000, r.power_w[p], "%6.1f V" % (volt / 1000) if volt is not None else "   -- V")
            )
    lines.append("net power: %d W (import %d, export %d)" % (r.net_power_w() or 0, r.import_w or 0, r.export_w or 0))
    if r.energy_import_wh is not None or r.energy_export_wh is not None:
        lines.append(
            "energy: import %s kWh, export %s kWh"
            % tuple("--" if e is None else "%.2f" % (e / 1000) for e in (r.energy_import_wh, r.energy_export_wh))
        )
    return lines


def probe_http(section, every):
    """Read an HTTP meter once, or every `every` seconds; the exit status."""
    platform = unix.Platform({"rs485_device": None})
    meter = http_meter.from_config(section, platform)
    scheme = "https" if meter.model == "homewizard_v2" else "http"
    print("meter %s on %s://%s:%d%s" % (section["model"], scheme, section["host"], meter.port, meter.path))
    asyncio.set_event_loop(asyncio.new_event_loop())
    got = False
    try:
        while True:
            if run(meter.poll()):
                got = True
                for line in show(meter, None):
                    print(line)
                r = meter.reading
                phases = r.phase_count
                if phases and all(r.power_w[p] < 0 for p in range(phases)) and not section["upside_down"]:
                    print(
                        "note: every phase exports: if the house is not producing (solar) now, the meter is mounted"
                        " upside down or its CT clamps face the wrong way (meter.upside_down true)"
                    )
                if meter.last_error:
                    print("note: " + meter.last_error)
            else:
                print("no reading: " + (meter.last_error or "unknown"))
                if "timeout" in (meter.last_error or "") or "errno" in (meter.last_error or ""):
                    print("note: is the address right, and the meter on the same network as this computer?")
            if not every:
                break
            run(asyncio.sleep(every))
    except KeyboardInterrupt:
        pass
    return 0 if got else 1


class _CountingUart:
    """The P1 UART, counting the bytes that arrive (to tell silence from garbage)."""

    def __init__(self, uart):
        self.uart = uart
        self.received = 0

    def read_now(self, buf):
        got = self.uart.read_now(buf)
        self.received += got or 0
        return got

    def __getattr__(self, name):
        return getattr(self.uart, name)


P1_HINT_SILENT = (
    "nothing arrives on %s: is the cable in the meter's P1 port (RJ12) and its other end in this computer? "
    "Some meters send only once the grid operator switched the port on (Belgium: in the Fluvius portal). "
    "A DSMR 2.2/3.0 meter sends every 10 s at 9600 baud 7E1 (--baud 9600)."
)
P1_HINT_GARBAGE = (
    "%d bytes arrived but no telegram was framed: wrong line speed or format (DSMR 4/5, e-MUCS: 115200 8N1; "
    "DSMR 2.2/3.0: --baud 9600 --format 7E1), or the data line is not inverted (a bare P1 port needs an "
    "inverting cable; the board inverts in its UART, meter.invert)."
)
P1_HINT_CRC = (
    "every telegram fails its CRC: a tty in cooked mode turning CR LF into LF (this probe sets the port raw), "
    "a bad cable or contact, or interference on a long cable."
)


def probe_p1(section, device, wait_s, every):
    """Read a P1 port: each telegram, or why not, in words; the exit status."""
    os.environ["CHARGEGUARD_P1_DEVICE"] = device
    platform = unix.Platform({"rs485_device": None})
    counted = {}

    def open_uart(*args):
        counted["uart"] = _CountingUart(unix.Platform.open_uart(platform, *args))
        return counted["uart"]

    platform.open_uart = open_uart
    try:
        meter = p1_meter.from_config(section, platform)
    except OSError as error:
        print("cannot open the P1 port: %s" % (error.args[-1] if error.args else error))
        return 1
    uart = counted["uart"]
    # Every telegram the parser closes, in order: poll() goes on past a
    # rejected one within the same read (the firmware only keeps the last error).
    closed = []

    def watching(step):
        def call(*args):
            result = step(*args)
            if meter.ready:
                closed.append((meter.accepted, meter.header_bytes().decode("latin-1").strip(), meter.error))
            return result
        return call

    meter.feed = watching(meter.feed)
    meter.idle = watching(meter.idle)
    print("P1 port %s at %d baud %s: waiting up to %g s for a telegram" % (device, section["baud"], section["format"], wait_s))
    import time

    got = 0
    deadline = time.monotonic() + wait_s
    try:
        while True:
            meter.poll()
            while closed:
                accepted, header, error = closed.pop(0)
                if accepted:
                    got += 1
                    print("telegram %s (crc %s)" % (header or "(no header)", meter.crc))
                    for line in show(meter, None):
                        print(line)
                    r = meter.reading
                    if r.month_peak_w is not None:
                        print("quarter-hour average %s W, month peak %d W" % (r.avg_demand_w, r.month_peak_w))
                    if not r.phase_count:
                        print("note: this meter gives totals only: the guard assumes the house load may sit on any"
                              " one phase (docs/configuration.md, site.balanced_load)")
                    deadline = time.monotonic() + wait_s
                    if not every:
                        closed.clear()
                        return 0
                else:
                    print("telegram %s rejected: %s" % (header or "(header cut)", error))
                    if meter.n_crc_errors >= 3 and meter.n_crc_errors == meter.n_rejected and not got:
                        print("note: " + P1_HINT_CRC)
            if time.monotonic() > deadline:
                if not uart.received:
                    print("no telegram within %g s. " % wait_s + P1_HINT_SILENT % device)
                elif not meter.n_telegrams:
                    print("no telegram within %g s. " % wait_s + P1_HINT_GARBAGE % uart.received)
                else:
                    print("no accepted telegram within %g s (%d rejected)" % (wait_s, meter.n_rejected))
                break
            time.sleep(0.01)
    except KeyboardInterrupt:
        pass
    finally:
        uart.close()
    return 0 if got else 1


PAIR_USER = "local/chargeguard"  # the user the meter lists (GET /api/user); a new pairing replaces its token
PAIR_STEP_S = 1.0  # one POST /api/user a second: each one restarts the meter's wait (docs/v2/authorization)


def _pair_request(host, port, context, timeout_s, method, path, body=None, token=None):
    # One HTTPS request to a HomeWizard (host side, CPython's ssl): (status,
    # JSON answer or None, the peer's checked certificate). The certificate
    # must chain to the CA; its name is checked by the caller.
    import http.client

    connection = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
    try:
        connection.connect()  # the handshake: the chain checked against the CA
        cert = connection.sock.getpeercert()
        if not _appliance(_cert_name(cert)):
            return 0, None, cert  # not a HomeWizard's name: nothing is sent
        headers = {"X-Api-Version": "2"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(4096)
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        return response.status, doc, cert
    finally:
        connection.close()


def _appliance(name):
    # A HomeWizard certificate's name: appliance/<type>/<serial> (docs/v2/authorization).
    parts = name.split("/")
    return len(parts) == 3 and parts[0] == "appliance" and parts[1] in http_models.CERT_TYPES and parts[2] != ""


def _cert_name(cert):
    # The common name of a checked certificate (HomeWizard: appliance/<type>/<serial>), or "".
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""


def pair_homewizard(host, port, ca_file, wait_s, name=PAIR_USER):
    """Get a HomeWizard API v2 token: POST /api/user until the button is pressed or wait_s passes; exit status."""
    import ssl
    import time

    if not ca_file or not os.path.exists(ca_file):
        print("give --ca-file: HomeWizard's CA certificate (homewizard-ca-cert.pem, from its API documentation,"
              " docs/v2/authorization): the meter's certificate is checked against it before anything is asked")
        return 2
    context = ssl.create_default_context(cafile=ca_file)
    # The name is not known yet (it holds the serial): the chain is checked
    # here, the name below against HomeWizard's pattern.
    context.check_hostname = False
    body = json.dumps({"name": name}).encode()
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            status, doc, cert = _pair_request(host, port, context, min(5.0, wait_s), "POST", "/api/user", body)
        except ssl.SSLError as error:
            print("the meter's certificate does not check out against %s: %s; nothing was asked"
                  % (ca_file, getattr(error, "verify_message", None) or error.reason or error))
            return 1
        except OSError as error:
            print("no answer from %s:%d: %s" % (host, port, error))
            return 1
        cert_name = _cert_name(cert)
        if not _appliance(cert_name):
            print("the certificate names '%s', not a HomeWizard appliance/<type>/<serial>: nothing was asked" % cert_name)
            return 1
        error = (doc or {}).get("error") if isinstance(doc, dict) else None
        if status == 200 and isinstance(doc, dict) and isinstance(doc.get("token"), str):
            token = doc["token"]
            print("paired as %s. The meter section for the configuration (the token is a secret: keep it like a"
                  " password; it is shown once, here):" % doc.get("name", name))
            section = {"type": "http", "model": "homewizard_v2", "host": host, "token": token,
                       "ca_file": "homewizard-ca.pem", "cert_hostname": cert_name}  # fmt: skip
            if port != 443:
                section["port"] = port
            print(json.dumps({"meter": section}, indent=2))
            print("copy %s to the device's flash as homewizard-ca.pem (mpremote cp %s :homewizard-ca.pem)"
                  % (ca_file, ca_file))
            return 0
        if status == 403 and error == "user:creation-not-enabled":
            if not told:
                print("press the button on the meter now (a kWh meter: hold it 1 to 3 s); waiting up to %g s" % wait_s)
                told = True
        else:
            print("the meter answers HTTP %d%s: no token" % (status, " (%s)" % error if error else ""))
            return 1
        if time.monotonic() + PAIR_STEP_S > deadline:
            print("no button press within %g s: run it again and press the meter's button while it waits" % wait_s)
            return 1
        time.sleep(PAIR_STEP_S)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="take the meter section of this configuration file")
    parser.add_argument(
        "--model",
        help="p1 (a P1 port); Modbus: one of %s, or custom (with --config); HTTP: one of %s"
        % (", ".join(modbus_models.MODELS), ", ".join(http_models.MODELS)),
    )
    parser.add_argument("--device", help="the USB-RS485 adapter (Modbus RTU) or the P1 cable, e.g. /dev/ttyUSB0")
    parser.add_argument("--host", help="Modbus TCP or HTTP: the meter's (or gateway's) address")
    parser.add_argument("--port", type=int)
    parser.add_argument("--address", type=int, help="the meter's unit address (default 1)")
    parser.add_argument("--baud", type=int)
    parser.add_argument("--format", help="8N1, 8E1, 8O1 or 8N2")
    parser.add_argument("--channel", type=int, help="HTTP: the channel of a shelly_em1 or shelly_em_gen1 (default 0)")
    parser.add_argument("--every", type=float, default=0, help="read again every N seconds until Ctrl-C"
                        " (P1: print every telegram)")
    parser.add_argument("--wait-s", type=float, default=None, help="P1: how long to wait for a telegram (default 25);"
                        " --homewizard-pair: for the button press (default 60)")
    parser.add_argument("--homewizard-pair", action="store_true", help="get a HomeWizard API v2 token (press the"
                        " meter's button when told) and print the meter section")
    parser.add_argument("--token", help="homewizard_v2: the token from --homewizard-pair")
    parser.add_argument("--ca-file", help="homewizard_v2: HomeWizard's CA certificate (PEM)")
    parser.add_argument("--cert-hostname", help="homewizard_v2: appliance/<type>/<serial> (--homewizard-pair prints it)")
    args = parser.parse_args(argv)
    if args.homewizard_pair:
        if not args.host:
            parser.error("give --host: the meter's address")
        return pair_homewizard(args.host, args.port or 443, args.ca_file, 60.0 if args.wait_s is None else args.wait_s)
    if args.wait_s is None:
        args.wait_s = 25.0
    if not args.config and not args.model:
        parser.error("give --model (or --config)")
    section = meter_section(args)
    if section["type"] == "p1":
        if not args.device:
            parser.error("give --device: the P1 cable's serial port, e.g. /dev/ttyUSB0")
        return probe_p1(section, args.device, args.wait_s, args.every)
    if section["type"] == "http":
        return probe_http(section, args.every)
    if not section["host"]:
        if not args.device:
            parser.error("give --device for Modbus RTU (or --host for Modbus TCP)")
        os.environ["CHARGEGUARD_RS485_DEVICE"] = args.device
    model = section["model"]
    row = modbus_models.custom_row(section["custom"]) if model == "custom" else modbus_models.row(model)
    platform = unix.Platform({"rs485_device": None})
    try:
        meter = modbus_meter.from_config(section, platform)
    except OSError as error:
        print("cannot open the meter's port: %s" % (error.args[-1] if error.args else error))
        return 1
    where = "%s:%d (Modbus TCP)" % (section["host"], section["port"]) if section["host"] else "%s (Modbus RTU %d %s)" % (
        args.device,
        section["baud"],
        section["format"],
    )
    print("meter %s, unit %d, on %s" % (model, section["address"], where))
    asyncio.set_event_loop(asyncio.new_event_loop())
    got = False
    try:
        while True:
            if meter.resolve is not None:
                run(meter.resolve())
            if run(meter.poll()):
                got = True
                for line in show(meter, row):
                    print(line)
                for note in diagnose(meter, row, section, True):
                    print("note: " + note)
                if meter.last_error:
                    print("note: " + meter.last_error)
            else:
                print("no reading: " + (meter.last_error or "unknown"))
                if meter.master.exception == 0 and "not available" in (meter.last_error or ""):
                    for note in diagnose(meter, row, section, False):
                        print("note: " + note)
                if meter.master.exception == 2:
                    print("note: the meter has no such register: is it really a %s? (or the wrong function code)" % model)
            if not args.every:
                break
            run(asyncio.sleep(args.every))
    except KeyboardInterrupt:
        pass
    finally:
        meter.master.link.close()
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main())
