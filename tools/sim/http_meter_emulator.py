"""LAN meters over HTTP for the simulator and the tests: HomeWizard v1 and v2 (HTTPS), Shelly Gen2/Gen3, Shelly Gen1.

    HttpMeterEmulator(model, port=0).start(); set_values(currents_ma, powers_w, voltages_mv, import_wh, export_wh)

The answers are the fixtures of host_tests/fixtures/http/ (copies of
../shared/fixtures/http/), key for key and in their order, with the live
values of the simulated site put in. The HomeWizard P1 meter's capacity-tariff
keys follow the site too (tools/sim/demand.py, `demand`): the running
quarter-hour's average import (v1 `active_power_average_w`, v2
`average_power_15m_w`) and this month's highest quarter-hour average with the
end of that quarter (v1 `montly_power_peak_w` and `montly_power_peak_timestamp`
as YYMMDDhhmmss, v2 `monthly_power_peak_w` and `monthly_power_peak_timestamp`
as ISO 8601 local time), as a Belgian meter's 1-0:1.4.0 and 1-0:1.6.0; before
a quarter has ended the peak is 0 W and its timestamp is left out (the API
leaves out what is not available). `clock` (seconds since 1970, default
time.time) is the meter's clock for them.

    homewizard       GET /api/v1/data  (the HomeWizard API documentation's P1 example: no
                     voltages; currents in whole amps, signed like the power) and GET /api
    homewizard_v2    HTTPS only: GET /api/measurement (the v2 documentation's P1
                     three-phase example, the same live values under the v2
                     names) and GET /api, each with "Authorization: Bearer
                     <token>" (else 401 {"error": "user:unauthorized"}) and
                     "X-Api-Version: 2" (else 400 {"error":
                     "request:api-version-not-supported"}: the emulator is
                     strict here; what a real meter does without the header is
                     not documented); POST /api/user {"name": "local/..."}:
                     403 {"error": "user:creation-not-enabled"} until
                     press_button(), then 200 {"token", "name"} for 30 s
                     (docs/v2/authorization). Its certificate is made at
                     start() with the openssl command: a test CA (`ca_file`,
                     PEM) and a leaf named `cert_hostname`
                     (appliance/p1dongle/<serial>), as a real meter's chains
                     to HomeWizard's CA. `token` is its one user's token.
    shelly_em        GET /rpc/EM.GetStatus?id=0  (aioshelly's Pro 3EM) and GET /shelly
    shelly_em1       GET /rpc/EM1.GetStatus?id=0  (no fixture: the keys of
                     ../shared/protocols/http-meters.md; L1 only) and GET /shelly
    shelly_3em_gen1  GET /status  (a 3EM's answer from the ahoy project) and GET /shelly
    shelly_em_gen1   GET /status  (the same shape with two emeters and no
                     current, as the 2-channel EM has; channel 0 is L1)

Any other path: 404. `mode` says how the meter behaves:

    "ok"      answers
    "hang"    accepts the connection, reads the request, never answers (a
              wedged meter); the connection stays open until the client goes.
              homewizard_v2: accepts TCP and never answers the TLS handshake
    "refuse"  nothing listens (the meter restarts): connections are refused;
              back to "ok" listens again on the same port

Connections: HTTP/1.1 with Content-Length on every answer, so a client may
keep a connection open (persistent) and send its next request on it, as the
firmware does for homewizard_v2 (one TLS handshake per connection). A client
that sends HTTP/1.0 gets its connection closed after the answer. What a real
HomeWizard does with idle connections is not documented; these attributes
make the emulator close them in each way a meter might:

    close_after   None     keep the connection after an answer (default)
                  "header" answer with "Connection: close" and close it
                  "silent" close it after the answer without saying so (the
                           client finds out at its next request)
    idle_close_s  close a connection idle (no request) this long (default 30 s)

`requests` counts the data requests answered, `connections` the TCP
connections accepted, `handshakes` the TLS handshakes completed
(homewizard_v2). Going to "refuse" (or stop()) closes the open connections,
as a restarting meter does. Runs its server on threads; set_values(), mode,
close_after and idle_close_s may be changed from any thread.
"""

import copy
import json
import os
import re
import secrets
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler

from demand import QuarterDemand

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "host_tests", "fixtures", "http")
NOMINAL_MV = 230000
MODELS = ("homewizard", "homewizard_v2", "shelly_em", "shelly_em1", "shelly_3em_gen1", "shelly_em_gen1")
V2_SERIAL = "5c2fafaabbcc"
PAIR_WINDOW_S = 30  # after the button press (docs/v2/authorization)
USER_NAME = re.compile(r"^local/[a-zA-Z0-9\-_/\\# ]{1,40}$")  # the documented rule for a user's name


def make_certificates(folder, cert_hostname):
    """A test CA and a leaf certificate named `cert_hostname` (common name only, as HomeWizard's), with openssl.

    Returns (ca_pem, leaf_pem, leaf_key) paths in `folder`. EC P-256 keys,
    valid for ten years from now.
    """
    if shutil.which("openssl") is None:
        raise RuntimeError("the homewizard_v2 emulator needs the openssl command (Debian: apt-get install openssl)")
    ca_key, ca_pem = os.path.join(folder, "ca.key"), os.path.join(folder, "ca.pem")
    key, csr, leaf = os.path.join(folder, "leaf.key"), os.path.join(folder, "leaf.csr"), os.path.join(folder, "leaf.pem")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_pem, "-days", "3650", "-subj", "/CN=ChargeGuard test appliance CA")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=" + cert_hostname.replace("/", "\\/"))
    run("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial", "-out", leaf, "-days", "3650")
    return ca_pem, leaf, key



def _fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)


def _whole_amps(milliamps):
    # A P1 meter's current: whole amps, rounded (HomeWizard signs it like the power).
    return int(round(milliamps / 1000.0))


class HttpMeterEmulator:
    """One meter on 127.0.0.1:`port` (see the module doc)."""

    def __init__(self, model, port=0, clock=time.time):
        if model not in MODELS:
            raise ValueError("model must be one of %s" % ", ".join(MODELS))
        self.model = model
        self.port = port
        self.demand = QuarterDemand(clock)
        self.requests = 0
        self.connections = 0
        self.handshakes = 0
        self.close_after = None
        self.idle_close_s = 30.0
        self._live = set()  # open connections' sockets
        self._mode = "ok"
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self._stopping = False
        self._values = ((0, 0, 0), (0, 0, 0), (NOMINAL_MV,) * 3, 0, 0)
        self.token = None
        self.ca_file = None
        self.cert_hostname = None
        self.users = {}  # homewizard_v2: user name -> token
        self.pair_requests = 0
        self.auth_failures = 0
        self._pair_until = 0.0
        self._tls = None
        self._folder = None
        if model == "homewizard":
            self._template = _fixture("homewizard_v1_data_p1_3phase_gas_water_doc.json")
            self.path = "/api/v1/data"
        elif model == "homewizard_v2":
            self._template = _fixture("homewizard_v2_measurement_p1_3phase_gas_water_doc.json")
            self.path = "/api/measurement"
            self.token = secrets.token_hex(16).upper()
            self.users["local/chargeguard"] = self.token
            self.cert_hostname = "appliance/p1dongle/" + V2_SERIAL
        elif model == "shelly_em":
            self._template = _fixture("shelly_pro3em_em_getstatus_aioshelly.json")
            self.path = "/rpc/EM.GetStatus?id=0"
        elif model == "shelly_em1":
            self._template = {
                "id": 0, "current": 0.0, "voltage": 230.0, "act_power": 0.0, "aprt_power": 0.0, "pf": 1.0, "freq": 50.0,
                "calibration": "factory",
            }  # fmt: skip
            self.path = "/rpc/EM1.GetStatus?id=0"
        else:
            self._template = _fixture("shelly_3em_gen1_status_ahoy.json")
            if model == "shelly_em_gen1":
                emeters = self._template["emeters"][:2]
                for emeter in emeters:
                    del emeter["current"]
                self._template["emeters"] = emeters
                del self._template["emeter_n"]
            self.path = "/status"

    # -- values ---------------------------------------------------------------

    def set_values(self, currents_ma, powers_w, voltages_mv=(NOMINAL_MV,) * 3, import_wh=0, export_wh=0):
        """What the meter measures now: per-phase current (mA, signed like the power), power (W), voltage (mV), energy (Wh)."""
        with self._lock:
            self._values = (tuple(currents_ma), tuple(powers_w), tuple(voltages_mv), import_wh, export_wh)
        self.demand.hold(sum(powers_w))

    def answer(self):
        """The data answer as it is now (a dict in the fixture's shape)."""
        with self._lock:
            currents, powers, volts, import_wh, export_wh = self._values
        doc = copy.deepcopy(self._template)
        total = sum(powers)
        if self.model == "homewizard_v2":
            doc["power_w"] = total
            for p in range(3):
                doc["power_l%d_w" % (p + 1)] = powers[p]
                doc["current_l%d_a" % (p + 1)] = _whole_amps(currents[p])
            doc["current_a"] = sum(abs(_whole_amps(c)) for c in currents)
            doc["energy_import_kwh"] = import_wh / 1000.0
            doc["energy_import_t1_kwh"] = round(import_wh / 1000.0 - doc["energy_import_t2_kwh"], 3)
            doc["energy_export_kwh"] = doc["energy_export_t1_kwh"] = export_wh / 1000.0
            self._put_demand(doc, "average_power_15m_w", "monthly_power_peak_w", "monthly_power_peak_timestamp",
                             lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)))
        elif self.model == "homewizard":
            doc["active_power_w"] = total
            for p in range(3):
                doc["active_power_l%d_w" % (p + 1)] = powers[p]
                doc["active_current_l%d_a" % (p + 1)] = _whole_amps(currents[p])
            doc["total_power_import_kwh"] = import_wh / 1000.0
            doc["total_power_import_t1_kwh"] = round(import_wh / 1000.0 - doc["total_power_import_t2_kwh"], 3)
            doc["total_power_export_kwh"] = export_wh / 1000.0
            doc["total_power_export_t1_kwh"] = export_wh / 1000.0
            self._put_demand(doc, "active_power_average_w", "montly_power_peak_w", "montly_power_peak_timestamp",
                             lambda t: int(time.strftime("%y%m%d%H%M%S", time.localtime(t))))
        elif self.model == "shelly_em":
            for p, x in enumerate("abc"):
                amps = abs(currents[p]) / 1000.0
                doc[x + "_current"] = round(amps, 3)
                doc[x + "_act_power"] = round(float(powers[p]), 1)
                doc[x + "_voltage"] = round(volts[p] / 1000.0, 1)
                doc[x + "_aprt_power"] = round(amps * volts[p] / 1000.0, 1)
                doc[x + "_pf"] = round(powers[p] / doc[x + "_aprt_power"], 2) if doc[x + "_aprt_power"] else 0
            doc["total_act_power"] = round(float(total), 3)
            doc["total_current"] = round(sum(abs(c) for c in currents) / 1000.0, 3)
            doc["total_aprt_power"] = round(sum(doc[x + "_aprt_power"] for x in "abc"), 3)
        elif self.model == "shelly_em1":
            amps = abs(currents[0]) / 1000.0
            doc["current"] = round(amps, 3)
            doc["act_power"] = round(float(powers[0]), 1)
            doc["voltage"] = round(volts[0] / 1000.0, 1)
            doc["aprt_power"] = round(amps * volts[0] / 1000.0, 1)
        else:
            emeters = doc["emeters"]
            for p, emeter in enumerate(emeters):
                # The Gen1 EM's channel 0 is the grid (L1); its channel 1 measures nothing here.
                if self.model == "shelly_em_gen1" and p:
                    emeter.update(power=0.0, voltage=round(volts[0] / 1000.0, 2), total=0.0, total_returned=0.0)
                    continue
                emeter["power"] = round(float(powers[p]), 2)
                emeter["voltage"] = round(volts[p] / 1000.0, 2)
                if "current" in emeter:
                    emeter["current"] = round(abs(currents[p]) / 1000.0, 2)
                # The site's counters split over the phases (the meter counts per phase).
                share = 1 if self.model == "shelly_em_gen1" else 3
                emeter["total"] = round(import_wh / share, 1)
                emeter["total_returned"] = round(export_wh / share, 1)
            doc["total_power"] = round(float(sum(e["power"] for e in emeters)), 2)
        return doc

    def _put_demand(self, doc, average_key, peak_key, stamp_key, stamp):
        # The capacity-tariff keys in their places in the fixture; no peak time before a quarter ended.
        doc[average_key] = float(self.demand.average_w())
        peak_w, peak_at = self.demand.peak()
        doc[peak_key] = float(peak_w)
        if peak_at is None:
            del doc[stamp_key]
        else:
            doc[stamp_key] = stamp(peak_at)

    def press_button(self):
        """The owner presses the meter's button: POST /api/user gives a token for the next 30 s."""
        self._pair_until = time.monotonic() + PAIR_WINDOW_S

    def info(self):
        """The device-information answer (GET /api or /shelly)."""
        if self.model == "homewizard_v2":
            return {"product_name": "P1 Meter", "product_type": "HWE-P1", "serial": V2_SERIAL,
                    "firmware_version": "6.00", "api_version": "2.0.0"}  # fmt: skip
        if self.model == "homewizard":
            return {"product_type": "HWE-P1", "product_name": "P1 meter", "serial": "3c39e7aabbcc",
                    "firmware_version": "4.19", "api_version": "v1"}  # fmt: skip
        if self.model in ("shelly_em", "shelly_em1"):
            return {"id": "shellypro3em-emulated", "model": "SPEM-003CEBEU", "gen": 2, "auth_en": False,
                    "profile": "triphase" if self.model == "shelly_em" else "monophase"}  # fmt: skip
        return {"type": "SHEM-3" if self.model == "shelly_3em_gen1" else "SHEM", "auth": False, "fw": "v1.14.0"}

    # -- behaviour --------------------------------------------------------------------

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        if value not in ("ok", "hang", "refuse"):
            raise ValueError(value)
        with self._lock:
            old = self._mode
            self._mode = value
        if value == "refuse" and old != "refuse":
            self._close_server()
            self._close_connections()
        elif old == "refuse" and value != "refuse":
            self._open_server()

    def start(self):
        if self.model == "homewizard_v2" and self._tls is None:
            self._folder = tempfile.mkdtemp(prefix="hwv2-")
            self.ca_file, leaf, key = make_certificates(self._folder, self.cert_hostname)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(leaf, key)
            self._tls = context
        self._open_server()
        return self

    def stop(self):
        self._stopping = True
        self._close_server()
        self._close_connections()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _open_server(self):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            # Persistent connections: every answer has a Content-Length.
            protocol_version = "HTTP/1.1"

            def setup(self):
                with emulator._lock:
                    emulator.connections += 1
                    emulator._live.add(self.request)
                # An answer's head and body go out as two writes: without
                # this, the body waits for the client's delayed ACK (~40 ms).
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # HTTPS (homewizard_v2): the handshake on this connection's
                # thread, so a client that never finishes it blocks nobody.
                if emulator._tls is not None:
                    raw = self.request
                    try:
                        if emulator._mode == "hang":
                            emulator._hang(raw)
                            raise ConnectionAbortedError("hang")
                        raw.settimeout(5)
                        self.request = emulator._tls.wrap_socket(raw, server_side=True)
                    except Exception:
                        with emulator._lock:
                            emulator._live.discard(raw)
                        raise
                    with emulator._lock:
                        emulator.handshakes += 1
                        emulator._live.discard(raw)
                        emulator._live.add(self.request)
                # Waiting for the next request on a kept connection ends
                # after idle_close_s (http.server then closes it).
                self.timeout = emulator.idle_close_s
                super().setup()

            def finish(self):
                with emulator._lock:
                    emulator._live.discard(self.request)
                super().finish()

            def do_GET(self):
                emulator._serve(self)

            def do_POST(self):
                emulator._serve_post(self)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # a failed TLS handshake (a client refusing our certificate) is a test's expected case

        # The same port again after "refuse" (a restarted meter keeps its address).
        for _ in range(50):
            try:
                server = Server(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise OSError("port %d stays busy" % self.port)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _close_server(self):
        server = self._server
        self._server = None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _close_connections(self):
        # A restarting meter drops every connection: the client sees the close.
        with self._lock:
            live = list(self._live)
            self._live.clear()
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _end(self, handler):
        # After an answer: close_after says whether the connection stays.
        if self.close_after is not None:
            handler.close_connection = True

    def _hang(self, sock):
        # Never answer: wait until the client closes, the mode changes or we stop.
        sock.settimeout(0.05)
        while self._mode == "hang" and not self._stopping:
            try:
                if sock.recv(64) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break

    def _send_json(self, handler, status, doc):
        self._send(handler, status, json.dumps(doc).encode())

    def _send(self, handler, status, data):
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        if self.close_after == "header":
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)
        self._end(handler)

    def _v2_refusal(self, handler):
        # API v2's checks of a request: (status, error) or None when it passes.
        if handler.headers.get("X-Api-Version") != "2":
            return 400, "request:api-version-not-supported"
        auth = handler.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.users.values():
            self.auth_failures += 1
            return 401, "user:unauthorized"
        return None

    def _serve_post(self, handler):
        # homewizard_v2: POST /api/user, the pairing (docs/v2/authorization).
        if self.model != "homewizard_v2" or handler.path != "/api/user":
            handler.send_error(404)
            return
        length = int(handler.headers.get("Content-Length") or 0)
        if length > 1024:
            handler.close_connection = True  # the rest is never read: not the next request
        try:
            name = json.loads(handler.rfile.read(min(length, 1024)) or b"{}").get("name")
        except (ValueError, AttributeError):
            self._send_json(handler, 400, {"error": "request:invalid-json"})
            return
        self.pair_requests += 1
        if handler.headers.get("X-Api-Version") != "2":
            self._send_json(handler, 400, {"error": "request:api-version-not-supported"})
        elif not isinstance(name, str) or not name.startswith("local/"):
            self._send_json(handler, 400, {"error": "user:invalid-prefix"})
        elif not USER_NAME.match(name):
            self._send_json(handler, 400, {"error": "user:name-invalid"})
        elif time.monotonic() >= self._pair_until:
            self._send_json(handler, 403, {"error": "user:creation-not-enabled"})
        else:
            token = secrets.token_hex(16).upper()  # a name used again gets a new token, the old one ends
            self.users[name] = token
            self._send_json(handler, 200, {"token": token, "name": name})

    def _serve(self, handler):
        if self._mode == "hang":
            self._hang(handler.connection)
            handler.close_connection = True
            return
        if self.model == "homewizard_v2" and handler.path in (self.path, "/api"):
            refusal = self._v2_refusal(handler)
            if refusal is not None:
                self._send_json(handler, refusal[0], {"error": refusal[1]})
                return
        if handler.path == self.path:
            body = json.dumps(self.answer())
            self.requests += 1
        elif handler.path == ("/api" if self.model.startswith("homewizard") else "/shelly"):
            body = json.dumps(self.info())
        else:
            handler.send_error(404)
            return
        self._send(handler, 200, body.encode())
