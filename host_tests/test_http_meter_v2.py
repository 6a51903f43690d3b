# HomeWizard API v2 (meters/http_meter.py model homewizard_v2): the documentation's
# answers decoded (P1 three-phase with gas and water, the one-phase P1 example
# with its trailing comma, kWh meters on one and three phases), null and missing
# keys, ISO 8601 timestamps as strings, the v2 error bodies in words, the
# meter section's rules (token: a secret, redacted), and no request without a
# verified TLS context. Runs on CPython and on both MicroPython unix ports (the
# 32-bit one has no ssl: nothing here needs it; the TLS requests are in
# host_tests/system/test_http_meter_v2_system.py).
import json

import asyncio

from httpfake import HOST, FakeServer, feed, reply
from support import IS_MICROPYTHON, heap_growth, read_fixture, skip

from chargeguard.meters import http_meter
from chargeguard.meters.http_meter import HttpMeter
from chargeguard.platform import common

P1_3PHASE = read_fixture("http", "homewizard_v2_measurement_p1_3phase_gas_water_doc.json")
P1_1PHASE_BROKEN = read_fixture("http", "homewizard_v2_measurement_p1_1phase_doc_broken.json")
KWH1 = read_fixture("http", "homewizard_v2_measurement_kwh1_doc.json")
KWH3 = read_fixture("http", "homewizard_v2_measurement_kwh3_doc.json")
TOKEN = "0123456789ABCDEF0123456789ABCDEF"
NAME = "appliance/p1dongle/5c2fafaabbcc"


def make(port=443, tls="no TLS here", token=TOKEN):
    return HttpMeter(
        "homewizard_v2", HOST, port, 0, False, lambda: 1000, common.ticks_diff, common.sleep_ms, 1000, token, tls
    )


def test_p1_three_phase_doc_answer():
    m = make()
    assert m.path == "/api/measurement"
    assert feed(m, P1_3PHASE), m.last_error
    r = m.reading
    assert r.tick_ms == 5000 and r.phase_count == 3
    assert list(r.power_w) == [-676, 133, 0]
    # Whole amps from the P1 telegram: max(|I|, |P/U|) signed by the power (230 V: no voltage given).
    assert list(r.current_ma) == [-4000, 2000, 0]
    assert list(r.voltage_mv) == [None, None, None]
    assert r.import_w == 0 and r.export_w == 543  # power_w is the total
    assert r.energy_import_wh == 13779338 and r.energy_export_wh == 0
    assert r.avg_demand_w == 123 and r.month_peak_w == 1111


def test_the_docs_one_phase_example_has_a_trailing_comma_and_is_refused_in_words():
    m = make()
    assert not feed(m, P1_1PHASE_BROKEN)
    assert m.last_error.startswith("bad JSON at byte ")
    assert "a key expected, '}' found" in m.last_error
    # Without the comma it reads: L1 only, no totals (only t1/t2 counters are given).
    fixed = P1_1PHASE_BROKEN.replace(b'"power_l1_w": -676,', b'"power_l1_w": -676')
    assert feed(m, fixed), m.last_error
    r = m.reading
    assert r.phase_count == 1 and r.power_w[0] == -676 and r.export_w == 678
    assert r.current_ma[0] == -((676 * 1000 + 115) // 230)  # |P/U| at 230 V, signed
    assert "no current" in m.last_error  # the note on a derived current
    assert r.energy_import_wh is None and r.energy_export_wh is None


def test_kwh1_sends_only_totals_which_are_l1s():
    m = make()
    assert feed(m, KWH1), m.last_error
    r = m.reading
    assert r.phase_count == 1
    assert list(r.power_w) == [123, 0, 0]
    assert list(r.current_ma) == [1500, 0, 0]
    assert list(r.voltage_mv) == [230000, None, None]
    assert r.energy_import_wh == 123456 and r.energy_export_wh == 78910


def test_kwh3_signed_currents_and_a_total_current_never_taken_for_l1():
    m = make()
    assert feed(m, KWH3), m.last_error
    r = m.reading
    assert r.phase_count == 3
    assert list(r.power_w) == [50, 40, -30]
    assert list(r.current_ma) == [500, 800, -1200]  # the sign is the power's
    assert list(r.voltage_mv) == [230000, 230000, 230000]
    assert r.import_w == 123


def test_nulls_missing_keys_and_timestamps_as_strings():
    body = {
        "timestamp": "2024-06-28T14:12:34",
        "power_w": 812,
        "power_l1_w": 812,
        "power_l2_w": None,
        "current_l1_a": 3.53,
        "current_l2_a": None,
        "voltage_l1_v": 230.1,
        "energy_import_kwh": None,
        "monthly_power_peak_timestamp": "2024-06-04T10:11:22",
        "external": [],
    }
    m = make()
    assert feed(m, json.dumps(body)), m.last_error
    r = m.reading
    assert r.phase_count == 1
    assert list(r.current_ma) == [3530, 0, 0]
    assert list(r.voltage_mv) == [230100, None, None]
    assert r.energy_import_wh is None and r.month_peak_w is None
    # A timestamp where a number belongs fails that value, not the parse.
    assert not feed(m, '{"power_l1_w": "2024-06-28T14:12:34"}')
    assert m.last_error == "L1 power is no number or out of range"
    assert not feed(m, '{"timestamp": "2024-06-28T14:12:34"}')
    assert m.last_error == "no power in the answer"


def test_v1_keys_are_not_read_by_the_v2_model():
    m = make()
    assert not feed(m, '{"active_power_w": 500, "active_power_l1_w": 500}')
    assert m.last_error == "no power in the answer"


def test_v2_error_bodies_in_words():
    m = make()
    for status, body, words in (
        (401, b'{"error": "user:unauthorized"}', "HTTP 401 (user:unauthorized): the meter refuses the token"),
        (400, b'{"error":"request:api-version-not-supported"}', "HTTP 400 (request:api-version-not-supported)"),
        (404, b"", "HTTP 404: no /api/measurement"),
        (500, b'{"error": "request:internal-server-error"}', "HTTP 500 (request:internal-server-error): from"),
        (401, b'{"error": "' + b"x" * 60 + b'"}', "HTTP 401: the meter refuses"),  # too long to quote
    ):
        m.client.buf[: len(body)] = body
        m.client.body_len = len(body)
        text = m._http_error(status)
        assert text.startswith(words), (status, text)
        assert TOKEN not in text


def test_no_tls_context_means_no_request_and_says_why():
    async def main():
        requests = []

        def handler(method, path, body):
            requests.append(path)
            return [reply(200, P1_3PHASE)]

        server = await FakeServer(handler).start()
        try:
            for tls, words in (
                ("no CA certificate file x.pem on the device (meter.ca_file): no token is sent without it", "x.pem"),
                (None, "no TLS context"),
            ):
                m = make(server.port, tls)
                assert not await m.poll()
                assert words in m.last_error
            assert requests == []  # nothing went out: above all no token over plain HTTP
        finally:
            await server.close()

    asyncio.run(main())


def test_v2_tls_says_why_without_a_ca_file_or_with_a_bad_one():
    from support import make_tmpdir

    text = http_meter.v2_tls("/nonexistent/homewizard-ca.pem", NAME)
    assert text == "no CA certificate file /nonexistent/homewizard-ca.pem on the device (meter.ca_file):" \
        " no token is sent without it"  # fmt: skip
    path = make_tmpdir("hwca") + "/bad.pem"
    with open(path, "wb") as handle:
        handle.write(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    text = http_meter.v2_tls(path, NAME)
    try:
        import ssl  # noqa: F401

        assert text == path + " is no CA certificate (PEM or DER)", text
    except ImportError:
        # The 32-bit heap-proxy port is built without ssl.
        assert text == "this firmware build has no ssl: HomeWizard API v2 needs HTTPS"


def test_the_request_headers_carry_the_token_and_the_version():
    m = make()
    assert m._headers == "Authorization: Bearer %s\r\nX-Api-Version: 2\r\n" % TOKEN
    assert make(tls=("ctx", NAME))._tls == ("ctx", NAME)
    v1 = HttpMeter("homewizard", HOST, 80, 0, False, lambda: 0, common.ticks_diff, common.sleep_ms)
    assert v1._headers is None and v1._tls is None and v1._tls_error is None


def test_from_config_takes_443_for_the_default_port_and_reads_the_ca_file():
    class Platform:
        ticks_ms = staticmethod(lambda: 0)
        ticks_diff = staticmethod(common.ticks_diff)
        sleep_ms = staticmethod(common.sleep_ms)

    doc = {
        "type": "http", "model": "homewizard_v2", "host": "10.0.0.5", "port": 80, "channel": 0,
        "upside_down": False, "poll_ms": 1000, "token": TOKEN, "ca_file": "/nonexistent.pem", "cert_hostname": NAME,
    }  # fmt: skip
    m = http_meter.from_config(doc, Platform)
    assert m.port == 443 and "no CA certificate file /nonexistent.pem" in m._tls_error
    assert http_meter.from_config(dict(doc, port=8443), Platform).port == 8443


# -- the configuration ------------------------------------------------------------


def _errors(meter):
    from chargeguard import config

    return dict(config.check({"site": {"phases": 3}, "meter": meter})[1])


GOOD = {"type": "http", "model": "homewizard_v2", "host": "192.168.1.60", "token": TOKEN, "cert_hostname": NAME}


def test_config_accepts_a_v2_meter_and_fills_its_defaults():
    from chargeguard import config

    checked, problems = config.check({"meter": GOOD})
    assert problems == []
    meter = checked["meter"]
    assert meter["ca_file"] == "homewizard-ca.pem" and meter["port"] == 80 and meter["token"] == TOKEN
    assert _errors(dict(GOOD, cert_hostname="appliance/energymeter/5c2fafaabbcc")) == {}


def test_config_errors_are_clear_and_never_show_the_token():
    found = _errors(dict(GOOD, token=""))
    assert found["meter.token"].startswith("must be set for homewizard_v2: pair with tools/meterprobe.py")
    bad = "0123456789abcdef0123456789abcdef"  # lower case: the meter gives upper case
    found = _errors(dict(GOOD, token=bad))
    assert "32 hex digits (0-9, A-F: upper case)" in found["meter.token"]
    assert bad not in found["meter.token"]
    for wrong in ("SHORT", "MYSECRETTOKEN", TOKEN + "A"):  # the wrong length said as the wrong form, in one message
        found = _errors(dict(GOOD, token=wrong))
        assert found["meter.token"] == "must be the 32 hex digits (0-9, A-F: upper case) the meter gave at pairing", found
    found = _errors(dict(GOOD, token=12))
    assert found["meter.token"] == "must be text (is a number)"
    assert _errors(dict(GOOD, cert_hostname=""))["meter.cert_hostname"].startswith("must be set for homewizard_v2")
    for name in ("p1dongle/5c2fafaabbcc", "appliance/p1/5c2fafaabbcc", "appliance/p1dongle/5C2FAF", "appliance/p1dongle/"):
        assert "must be appliance/<type>/<serial>" in _errors(dict(GOOD, cert_hostname=name))["meter.cert_hostname"]
    v1 = {"type": "http", "model": "homewizard", "host": "192.168.1.60", "token": TOKEN, "cert_hostname": NAME}
    found = _errors(v1)
    assert found["meter.token"] == "only for homewizard_v2 (API v2): leave it empty for homewizard"
    assert found["meter.cert_hostname"] == "only for homewizard_v2: leave it empty for homewizard"
    assert "must be 1 to 64 characters long" in _errors(dict(GOOD, ca_file=""))["meter.ca_file"]


def test_the_token_is_a_secret_redacted_and_restored():
    from chargeguard import config

    checked = config.check({"meter": GOOD})[0]
    out = config.redacted(checked)
    assert out["meter"]["token"] == config.REDACTED
    assert TOKEN not in json.dumps(out)
    assert checked["meter"]["token"] == TOKEN  # the copy, not the original
    back = config.restore_secrets(out, checked)
    assert back["meter"]["token"] == TOKEN
    # A P1 site has no token: nothing to redact, nothing added.
    p1 = config.check({"meter": {"type": "p1"}})[0]
    assert "token" not in config.redacted(p1)["meter"]


def test_decoding_v2_allocates_nothing():
    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    m = make()
    assert feed(m, P1_3PHASE)

    def decodes():
        for n in range(10):
            m.decode(n)

    used = heap_growth(decodes)
    assert used == 0, used


def test_tls_failures_in_words():
    from chargeguard.net import tls

    for text, words in (
        ("\nThe certificate Common Name (CN) does not match with the expected CN\n",
         "certificate name is not the expected one"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate is not valid",
         "certificate name is not the expected one"),
        ("\nThe certificate is not correctly signed by the trusted CA\n", "certificate not signed by the trusted CA"),
        ("certificate verify failed: unable to get local issuer certificate", "certificate not signed by the trusted CA"),
        ("\nThe certificate validity has expired\n", "certificate expired or not yet valid"),
        ("\nThe certificate validity starts in the future\n", "certificate expired or not yet valid"),
        ("something else", "handshake failed"),
    ):
        assert tls.reason(ValueError(text)).startswith("tls: " + words)
    assert tls.reason(OSError(-0x7780)) == "tls: handshake failed"


class _StubClient:
    # A KeptClient's outside, for the meter's reconnect note: get() answers
    # with P1_3PHASE (or fails) and counts a connection when told to.
    def __init__(self):
        self.buf = bytearray(P1_3PHASE)
        self.body_len = len(P1_3PHASE)
        self.max_body = 2048
        self.connections = 0
        self.error = None
        self.connect = True
        self.fail = False

    async def get(self, host, port, path, timeout_ms, body, headers, tls):
        if self.connect:
            self.connections += 1
        self.error = "connection refused" if self.fail else None
        return 0 if self.fail else 200


def test_a_meter_that_closes_every_connection_is_noted_after_five_readings_and_outages_do_not_count():
    NOTE = "note: the meter closes every connection: a TLS handshake per poll (poll_ms 2000+ or API v1)"

    async def main():
        m = make(tls=("ctx", NAME))
        stub = m.client = _StubClient()
        for n in range(4):
            assert await m.poll() and m.last_error is None, (n, m.last_error)
        assert await m.poll() and m.last_error == NOTE  # the fifth reading in a row that connected
        stub.connect = False  # kept again
        assert await m.poll() and m.last_error is None
        # An outage: polls that connect and fail, then one reading on a new
        # connection that is kept afterwards: no note.
        stub.connect = stub.fail = True
        for _ in range(6):
            assert not await m.poll()
        stub.fail = False
        assert await m.poll() and m.last_error is None
        stub.connect = False
        assert await m.poll() and m.last_error is None

    asyncio.run(main())
