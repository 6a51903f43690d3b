# LAN meters over HTTP (meters/http_meter.py): every fixture decoded, null and
# missing keys, one-phase meters, garbage and truncated bodies (fuzzed), the
# requests over a local server (timeout, refused, HTTP errors), the failsafe,
# and memory. Runs on CPython and on the MicroPython unix ports.
import json

import asyncio

from httpfake import HANG, HOST, FakeServer, feed, reply, until
from support import IS_MICROPYTHON, Clock, heap_growth, read_fixture, skip

from chargeguard.meters import http_meter
from chargeguard.meters.http_meter import HttpMeter
from chargeguard.platform import common

HOMEWIZARD = read_fixture("http", "homewizard_v1_data_p1_3phase_gas_water_doc.json")
SHELLY_EM = read_fixture("http", "shelly_pro3em_em_getstatus_aioshelly.json")
SHELLY_GEN1 = read_fixture("http", "shelly_3em_gen1_status_ahoy.json")
TIMEOUT_MS = 2000  # meters/http_meter.py _TIMEOUT_MS


def make(model, channel=0, upside_down=False, port=80, clock=None):
    clock = clock or Clock(1000)
    return HttpMeter(model, HOST, port, channel, upside_down, clock.ticks_ms, common.ticks_diff, common.sleep_ms)


def snapshot(r):
    return (
        r.tick_ms,
        r.phase_count,
        list(r.current_ma),
        list(r.power_w),
        list(r.voltage_mv),
        r.import_w,
        r.export_w,
        r.energy_import_wh,
        r.energy_export_wh,
        r.avg_demand_w,
        r.month_peak_w,
    )


# -- the fixtures -------------------------------------------------------------


def test_homewizard_p1_fixture():
    m = make("homewizard")
    assert feed(m, HOMEWIZARD, 4242), m.last_error
    r = m.reading
    assert m.last_error is None
    assert r.tick_ms == 4242
    assert r.phase_count == 3
    # L1 exports 676 W at "-4" A: whole amps from the P1 meter, so the larger of
    # |I| and |P/U| (U unknown: 230 V), signed by the power.
    assert list(r.current_ma) == [-4000, 2000, 0]
    assert list(r.power_w) == [-676, 133, 0]
    assert list(r.voltage_mv) == [None, None, None]  # the fixture gives no voltage
    assert (r.import_w, r.export_w) == (0, 543)
    assert r.energy_import_wh == 13779338 and r.energy_export_wh == 0
    assert r.avg_demand_w == 123 and r.month_peak_w == 1111
    assert m.n_readings == 1


def test_shelly_pro3em_fixture():
    m = make("shelly_em")
    assert feed(m, SHELLY_EM), m.last_error
    r = m.reading
    assert r.phase_count == 3
    assert list(r.current_ma) == [2392, 1037, 428]
    assert list(r.power_w) == [376, 171, 13]  # 375.5 rounds half away from zero
    assert list(r.voltage_mv) == [229000, 229000, 229200]
    assert (r.import_w, r.export_w) == (559, 0)  # total_act_power 558.965
    assert r.energy_import_wh is None  # EMData is another request: not read
    assert m.last_error is None  # n_current null: not ours, no matter


def test_shelly_3em_gen1_fixture_and_the_em_gen1_channel():
    m = make("shelly_3em_gen1")
    assert feed(m, SHELLY_GEN1), m.last_error
    r = m.reading
    assert r.phase_count == 3
    assert list(r.current_ma) == [780, 660, 110]
    assert list(r.power_w) == [51, 155, 7]
    assert list(r.voltage_mv) == [234900, 235570, 234700]
    assert (r.import_w, r.export_w) == (213, 0)  # total_power 212.85
    # Per-phase Wh counters summed (each rounded to Wh first).
    assert r.energy_import_wh == 1686297 + 878906 + 206151
    assert r.energy_export_wh == 428958 + 4 + 0
    # emeter_n (is_valid false) is the neutral: not a phase, no matter.
    em = make("shelly_em_gen1", channel=1)
    assert feed(em, SHELLY_GEN1), em.last_error
    r = em.reading
    assert r.phase_count == 1
    assert list(r.current_ma) == [660, 0, 0] and list(r.power_w) == [155, 0, 0]
    assert r.energy_import_wh == 878906


def test_the_model_names_match_the_configuration():
    from chargeguard import config

    from chargeguard.meters.http_models import MODELS

    for model in MODELS:
        assert http_meter._model(model, 0) is not None, model
    assert http_meter._model("shelly", 0) is None
    assert "http" in config.METER_TYPES
    assert config.check({"meter": {"type": "http", "model": "shelly_3em_gen1", "host": "10.0.0.2"}})[1] == []


def test_the_meter_section_is_validated_with_clear_errors():
    from chargeguard import config

    def errors(meter, phases=3):
        return dict(config.check({"site": {"phases": phases}, "meter": meter})[1])

    good = {"type": "http", "model": "homewizard", "host": "192.168.1.60"}
    checked, problems = config.check({"meter": good})
    assert problems == []
    assert checked["meter"] == {
        "type": "http", "model": "homewizard", "host": "192.168.1.60", "port": 80, "channel": 0,
        "upside_down": False, "poll_ms": 1000, "token": "", "ca_file": "homewizard-ca.pem", "cert_hostname": "",
    }  # fmt: skip
    found = errors({"type": "http"})
    assert "must be one of: homewizard, homewizard_v2, shelly_em" in found["meter.model"]
    assert "chargeguard.meters.http_models" not in __import__("sys").modules  # loaded for the check only
    assert found["meter.host"].startswith("must be set for an HTTP meter")
    assert "must be between 500 and 10000 ms" in errors(dict(good, poll_ms=100))["meter.poll_ms"]
    assert "unknown setting" in errors(dict(good, baud=9600))["meter.baud"]
    assert "only shelly_em1 and shelly_em_gen1 have channels" in errors(dict(good, channel=1))["meter.channel"]
    one = {"type": "http", "model": "shelly_em_gen1", "host": "shelly.lan", "channel": 2}
    found = errors(one)
    assert "measures one phase: only for site.phases 1" in found["meter.model"]
    assert "must be 0 or 1 for shelly_em_gen1" in found["meter.channel"]
    assert errors(dict(one, channel=1), phases=1) == {}
    assert errors({"type": "http", "model": "shelly_em1", "host": "10.0.0.9", "channel": 2}, phases=1) == {}


# -- null, missing, one phase, firmware differences ---------------------------------


def test_homewizard_one_phase_p1_with_nulls_and_missing_keys():
    body = {
        "active_power_w": 812,
        "active_power_l1_w": 812,
        "active_power_l2_w": None,
        "active_current_l1_a": 3.53,
        "active_current_l2_a": None,
        "active_voltage_l1_v": 230.1,
        "total_power_import_kwh": None,
        "external": [],
    }
    m = make("homewizard")
    assert feed(m, json.dumps(body)), m.last_error
    r = m.reading
    assert r.phase_count == 1
    assert list(r.current_ma) == [3530, 0, 0]  # with decimals: as given
    assert list(r.voltage_mv) == [230100, None, None]
    assert r.energy_import_wh is None and r.energy_export_wh is None
    assert r.avg_demand_w is None and r.month_peak_w is None


def test_homewizard_kwh1_meter_names_its_one_phase_without_l1():
    body = '{"wifi_ssid":"x","active_power_w":-1200.4,"active_power_l1_w":-1200.4,"active_voltage_v":231.0,' \
        '"active_current_a":5.4,"active_frequency_hz":50.01,"total_power_import_kwh":30.5,"total_power_export_kwh":1.25}'
    m = make("homewizard")
    assert feed(m, body), m.last_error
    r = m.reading
    assert r.phase_count == 1
    assert list(r.current_ma) == [-5400, 0, 0]  # signed by the power
    assert list(r.voltage_mv) == [231000, None, None]
    assert r.power_w[0] == -1200 and r.export_w == 1200
    assert r.energy_import_wh == 30500 and r.energy_export_wh == 1250


def test_a_phase_without_current_gets_p_over_u_and_says_so():
    # Older HomeWizard firmware sends no currents; a Gen1 EM never does.
    m = make("homewizard")
    assert feed(m, '{"active_power_l1_w": 2300, "active_power_l2_w": -460, "active_voltage_l2_v": 230}')
    r = m.reading
    assert r.phase_count == 2
    assert list(r.current_ma) == [10000, -2000, 0]
    assert "L2: no current" in m.last_error
    em = make("shelly_em_gen1")
    assert feed(em, '{"emeters":[{"power":-115.0,"reactive":3.1,"voltage":230.0,"is_valid":true,"total":5.0,'
                    '"total_returned":7.0},{"power":9,"voltage":230,"is_valid":true}]}')
    assert em.reading.current_ma[0] == -500 and em.reading.phase_count == 1
    assert em.reading.energy_export_wh == 7


def test_a_three_phase_kwh_meters_total_current_is_never_taken_for_l1():
    m = make("homewizard")
    body = '{"active_power_l1_w": 230, "active_power_l2_w": 460, "active_power_l3_w": 0, "active_current_a": 3.0}'
    assert feed(m, body)
    assert list(m.reading.current_ma) == [1000, 2000, 0]


def test_totals_only_answer_gives_a_totals_only_reading():
    m = make("homewizard")
    assert feed(m, '{"active_power_w": -350, "total_power_import_kwh": 1}')
    r = m.reading
    assert r.phase_count == 0 and r.net_power_w() == -350 and r.export_w == 350


def test_shelly_em1_one_channel_and_its_request_path():
    m = make("shelly_em1", channel=1)
    assert m.path == "/rpc/EM1.GetStatus?id=1"
    body = '{"id":1,"current":4.029,"voltage":236.1,"act_power":-951.2,"aprt_power":951.9,"pf":-1,"freq":50,"calibration":"factory"}'
    assert feed(m, body), m.last_error
    r = m.reading
    assert r.phase_count == 1
    assert list(r.current_ma) == [-4029, 0, 0]
    assert r.power_w[0] == -951 and r.voltage_mv[0] == 236100


def test_paths_of_each_model():
    assert make("homewizard").path == "/api/v1/data"
    assert make("shelly_em").path == "/rpc/EM.GetStatus?id=0"
    assert make("shelly_3em_gen1").path == "/status"
    assert make("shelly_em_gen1").path == "/status"


def test_upside_down_negates_power_and_current_and_swaps_energy():
    m = make("shelly_3em_gen1", upside_down=True)
    assert feed(m, SHELLY_GEN1)
    r = m.reading
    assert list(r.current_ma) == [-780, -660, -110]
    assert list(r.power_w) == [-51, -155, -7]
    assert (r.import_w, r.export_w) == (0, 213)
    assert r.energy_export_wh == 1686297 + 878906 + 206151


def test_meters_reporting_errors_give_no_reading():
    good = json.loads(SHELLY_EM)
    m = make("shelly_em")
    assert feed(m, SHELLY_EM)
    before = snapshot(m.reading)
    for change, words in (
        ({"b_errors": ["out_of_range:active_power"]}, "L2: the meter marks its values as not valid or in error"),
        ({"errors": ["power_meter_failure"]}, "power_meter_failure"),
        ({"a_current": "2.1"}, "L1 current is no number"),
        ({"c_act_power": {"v": 1}}, "L3 power is no number"),
        ({"a_act_power": 1.5e9}, "L1 power is no number or out of range"),
    ):
        doc = dict(good)
        doc.update(change)
        assert not feed(m, json.dumps(doc), 9999), change
        assert words in m.last_error, (change, m.last_error)
        assert snapshot(m.reading) == before  # nothing lost, nothing half-written
    # Errors that do not make the values wrong: a wiring note, an empty list.
    doc = dict(good)
    doc.update({"errors": ["phase_sequence"], "a_errors": [], "n_current": None})
    assert feed(m, json.dumps(doc)), m.last_error
    gen1 = make("shelly_3em_gen1")
    assert not feed(gen1, SHELLY_GEN1.replace(b'234.90,"is_valid":true', b'234.90,"is_valid":false'))
    assert m.last_error is None and "L1: the meter marks its values" in gen1.last_error


def test_numbers_scale_and_round_by_the_rules():
    m = make("shelly_em1")
    for text, ma, w in (
        ("1e1", 10000, 10),
        ("-0.5", -500, -1),  # |P| rounds half away from zero; the current takes the power's sign
        ("0.0004", 0, 0),
        ("2.0005", 2001, 2),
        ("1.5E+2", 150000, 150),
        ("12e-1", 1200, 1),
    ):
        assert feed(m, '{"current": %s, "act_power": %s}' % (text, text)), (text, m.last_error)
        assert m.reading.current_ma[0] == ma and m.reading.power_w[0] == w, (text, m.reading.current_ma, m.reading.power_w)
    # 10 digits cannot be real: the reading is refused, not wrapped.
    assert not feed(m, '{"current": 1, "act_power": 1234567890}')
    assert "L1 power is no number or out of range" in m.last_error
    assert not feed(m, '{"current": 2000.001, "act_power": 1}')


def test_strings_with_escapes_and_our_keys_inside_other_objects():
    # A key of ours inside a nested object (HomeWizard's external[]) or inside a
    # string does not count; escaped quotes do not end a string.
    body = '{"note":"a \\"active_power_l1_w\\": 99 \\\\","external":[{"active_power_l1_w":5000,"value":1}],' \
        '"active_power_l1_w":100,"active_current_l1_a":0.5}'
    m = make("homewizard")
    assert feed(m, body), m.last_error
    assert m.reading.power_w[0] == 100 and m.reading.current_ma[0] == 500


# -- garbage ----------------------------------------------------------------------------


def test_garbage_and_bad_json_are_refused_in_words_and_lose_nothing():
    m = make("homewizard")
    assert feed(m, HOMEWIZARD, 777)
    before = snapshot(m.reading)
    for body, words in (
        (b"", "empty answer"),
        (b"   ", "cut short"),
        (b"<html>Not found</html>", "byte 0: the answer is no JSON object"),
        (b"[1, 2]", "no JSON object"),
        (b'{"active_power_w": 5', "cut short"),
        (b'{"active_power_w": 5}}', "more after the object"),
        (b'{"active_power_w": 5} x', "more after the object"),
        (b'{"active_power_w" 5}', "':' expected"),
        (b'{"active_power_w": 05}', "not a number"),
        (b'{"active_power_w": 1.}', "not a number"),
        (b'{"active_power_w": -}', "not a number"),
        (b'{"active_power_w": 1e}', "not a number"),
        (b'{"active_power_w": tru}', "unexpected 't'"),
        (b'{"active_power_w": 5,}', "a key expected"),
        (b'{active_power_w: 5}', "a key expected"),
        (b'{"a": [1, 2}', "',' or ']' expected"),
        (b'{"a": "open', "cut short"),
        (b'{"a": ' + b"[" * 20 + b"]" * 20 + b"}", "nested deeper than 8"),
        (b'{"a": \x00}', "byte 0x00"),
        (b'{"wifi_ssid": "x"}', "no power in the answer"),
    ):
        assert not feed(m, body, 999), body
        assert words in m.last_error, (body, m.last_error)
        assert snapshot(m.reading) == before, body
    # And the next good answer is taken as ever.
    assert feed(m, HOMEWIZARD, 1234) and m.reading.tick_ms == 1234


def _lcg(seed):
    # A small deterministic generator, the same on every runtime.
    state = [seed]

    def next_int(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 8) % n

    return next_int


def test_fuzzed_truncated_and_mutated_bodies_never_crash():
    # Every truncation of every fixture is refused (a cut object is never
    # complete); random byte changes either decode to real-looking values or
    # are refused in words; nothing raises, the reading is never half-written.
    for model, body in (("homewizard", HOMEWIZARD), ("shelly_em", SHELLY_EM), ("shelly_3em_gen1", SHELLY_GEN1)):
        m = make(model)
        assert feed(m, body, 1)
        good = snapshot(m.reading)
        for cut in range(len(body.rstrip())):
            assert not feed(m, body[:cut], 2), (model, cut)
            assert type(m.last_error) is str and m.last_error
        assert snapshot(m.reading) == good
        rnd = _lcg(len(body))
        junk = b'{}[]",:-+.eE0123456789 \\tnull\x00\xff'
        for round_ in range(300):
            data = bytearray(body)
            for _ in range(1 + rnd(4)):
                i = rnd(len(data))
                if rnd(3) == 0:
                    data = data[:i] + data[i + 1 :]
                else:
                    data[i] = junk[rnd(len(junk))]
            before = snapshot(m.reading)
            ok = feed(m, bytes(data), 1000 + round_)
            r = m.reading
            if ok:
                assert r.tick_ms == 1000 + round_
                assert 0 <= r.phase_count <= 3
                for p in range(3):
                    assert -2000000 <= r.current_ma[p] <= 2000000 and -1000000 <= r.power_w[p] <= 1000000
            else:
                assert type(m.last_error) is str and m.last_error
                assert snapshot(r) == before
    # Pure noise, bounded by the buffer: never a reading (it is no JSON
    # object), always a reason in words, the reading untouched.
    m = make("shelly_em")
    assert feed(m, SHELLY_EM, 3)
    good = snapshot(m.reading)
    rnd = _lcg(7)
    for _ in range(100):
        noise = bytes(rnd(256) for _ in range(rnd(len(m.client.buf))))
        if noise[:1] == b"{":
            noise = b"x" + noise[1:]
        assert not feed(m, noise, 4)
        assert type(m.last_error) is str and m.last_error
        assert snapshot(m.reading) == good


# -- over HTTP --------------------------------------------------------------------------


class Device:
    """A meter's HTTP side: `body` answered on `path`; `mode` "ok", "hang" or a status code."""

    def __init__(self, path, body):
        self.path = path
        self.body = body
        self.mode = "ok"

    def handler(self, method, path, body):
        if self.mode == "hang":
            return [HANG]
        if path != self.path:
            return [reply(404, b"not found")]
        if self.mode != "ok":
            return [reply(self.mode, b'{"error":{"id":202,"description":"API not enabled"}}')]
        return [reply(200, self.body, b"Content-Type: application/json\r\n")]


def with_device(model, body, check, **kwargs):
    async def main():
        probe = make(model, **kwargs)
        device = Device(probe.path, body)
        server = await FakeServer(device.handler).start()
        try:
            await check(make(model, port=server.port, **kwargs), device, server)
        finally:
            await server.close()

    asyncio.run(main())


def test_poll_reads_each_model_over_http_and_stamps_the_answer():
    for model, body, power in (("homewizard", HOMEWIZARD, -676), ("shelly_em", SHELLY_EM, 376), ("shelly_3em_gen1", SHELLY_GEN1, 51)):

        async def check(meter, device, server):
            assert await meter.poll(), meter.last_error
            assert meter.reading.power_w[0] == power
            assert server.requests[-1][1] == meter.path

        with_device(model, body, check)


def test_poll_errors_in_words_and_the_reading_keeps_its_stamp():
    clock = Clock(50000)

    async def check(meter, device, server):
        assert await meter.poll()
        stamped = meter.reading.tick_ms
        assert stamped == 50000
        clock.now += 1000
        device.mode = 403
        assert not await meter.poll()
        assert "Local API" in meter.last_error
        device.mode = "hang"  # accepts the connection, never answers
        assert not await meter.poll()
        assert meter.last_error == "no answer within %d ms (timeout)" % TIMEOUT_MS
        assert await until(lambda: server.client_closed == 1)  # the connection is closed, not left open
        device.mode = "ok"
        device.body = b'{"active_power_w": 1'
        assert not await meter.poll()
        assert "cut short" in meter.last_error
        assert meter.reading.tick_ms == stamped
        device.body = HOMEWIZARD
        clock.now += 1000
        assert await meter.poll() and meter.reading.tick_ms == 52000 and meter.last_error is None

    async def main():
        device = Device("/api/v1/data", HOMEWIZARD)
        server = await FakeServer(device.handler).start()
        try:
            await check(make("homewizard", port=server.port, clock=clock), device, server)
        finally:
            await server.close()
        # Nothing listens any more: refused, in words.
        meter = make("homewizard", port=server.port)
        assert not await meter.poll()
        assert "connection refused" in meter.last_error and str(server.port) in meter.last_error

    asyncio.run(main())


def test_wrong_model_for_the_device_says_so():
    async def check(meter, device, server):
        device.path = "/status"  # a Gen1 device asked for Gen2 RPC
        assert not await meter.poll()
        assert meter.last_error.startswith("HTTP 404: no EM.GetStatus")

    with_device("shelly_em", SHELLY_EM, check)


def test_a_silent_meter_ends_in_the_guards_failsafe_and_recovers():
    from chargeguard.core.guard import Guard
    from chargeguard.core.model import CAR_CHARGING, ChargerCommand, ChargerStatus
    from test_guard import make_charger, make_site

    site = make_site(breaker_a=25, min_pause_ms=0)  # meter_timeout 10 s
    guard = Guard(site, [make_charger()])  # 6..16 A on three phases
    status = ChargerStatus()
    status.reachable = True
    status.car = CAR_CHARGING
    commands = [ChargerCommand()]
    clock = Clock(1000)

    async def check(meter, device, server):
        for _ in range(3):
            assert await meter.poll()
            guard.tick(meter.reading, [status], [16000], clock.now, commands)
            clock.now += 1000
        assert commands[0].reason != "failsafe"
        stamped = meter.reading.tick_ms
        device.mode = 500  # answers, but no reading: as silent as a cut cable
        while clock.now - stamped <= 10000 + 1000:  # meter_timeout passed
            assert not await meter.poll()
            guard.tick(meter.reading, [status], [16000], clock.now, commands)
            clock.now += 1000
        assert meter.last_error == "HTTP 500 from the meter"
        assert meter.reading.tick_ms == stamped
        assert commands[0].reason == "failsafe" and commands[0].offered_ma == 0
        device.mode = "ok"
        assert await meter.poll()
        guard.tick(meter.reading, [status], [16000], clock.now, commands)
        assert commands[0].reason != "failsafe"

    async def main():
        device = Device("/rpc/EM.GetStatus?id=0", SHELLY_EM)
        server = await FakeServer(device.handler).start()
        try:
            await check(make("shelly_em", port=server.port, clock=clock), device, server)
        finally:
            await server.close()

    asyncio.run(main())


def test_run_task_calls_on_reading_at_the_poll_rate():
    async def check(meter, device, server):
        meter.poll_ms = 100
        seen = []
        task = asyncio.create_task(meter.run(lambda: seen.append(meter.n_polls)))
        try:
            # Each reading comes from its own poll: 3 within 100 ms x 3 plus slack.
            assert await until(lambda: len(seen) >= 3, 10000)
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        assert seen[:3] == [1, 2, 3]

    with_device("homewizard", HOMEWIZARD, check)


# -- memory -----------------------------------------------------------------------------


def test_decoding_allocates_nothing():
    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    import micropython

    for model, body in (("homewizard", HOMEWIZARD), ("shelly_em", SHELLY_EM), ("shelly_3em_gen1", SHELLY_GEN1)):
        m = make(model)
        assert feed(m, body)

        def decodes():
            for n in range(10):
                m.decode(n)

        used = heap_growth(decodes)
        assert used == 0, (model, used)
        micropython.heap_lock()
        try:
            again = m.decode(77)
        finally:
            micropython.heap_unlock()
        assert again and m.reading.tick_ms == 77


def test_polls_over_http_do_not_grow_the_heap_once_warm():
    if not IS_MICROPYTHON:
        skip("the heap is measured on MicroPython")
    import gc

    async def check(meter, device, server):
        for _ in range(5):
            assert await meter.poll()
        server.requests.clear()
        gc.collect()
        warm = gc.mem_alloc()
        for _ in range(30):
            assert await meter.poll()
            server.requests.clear()  # the fake server's own record, not the meter's
        gc.collect()
        grown = gc.mem_alloc() - warm
        # Each poll makes garbage (a socket, coroutines: net/http.py); none of it stays.
        assert grown <= 64, grown

    with_device("shelly_3em_gen1", SHELLY_GEN1, check)
