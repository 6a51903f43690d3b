# OCPP 1.6J: the WebSocket handshake and framing, OCPP-J's RPC and the driver's messages (both runtimes).
# The central system runs in-process on 127.0.0.1; a raw client speaks RFC 6455 to it byte by byte,
# so every answer is checked as it is on the wire.
import json

import asyncio

from chargeguard.chargers.ocpp import DYNAMIC_VALID_S, PENDING_S, OcppCharger, decimal, iso_time, parse_time
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN
from chargeguard.net import ocpp, websocket
from chargeguard.net.ocpp import OcppError, basic_credentials, charge_point_id
from httpfake import HOST, Clock, now_ms, until
from test_han import FakeUart

# ------------------------------------------------------------------ pure codec


def test_accept_key_is_the_rfc_6455_example():
    # RFC 6455 section 1.3.
    assert websocket.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_sha1_of_its_own_matches_the_standard_vectors():
    import hashlib

    saved = getattr(hashlib, "sha1", None)
    try:
        if saved is not None:
            del hashlib.sha1  # the fallback, as on a firmware without it
    except (AttributeError, TypeError):
        return  # a built-in module that cannot be changed: the fallback is what runs anyway
    try:
        # FIPS 180-2 appendix A examples, and one longer than a block.
        assert websocket.sha1(b"abc") == bytes.fromhex("a9993e364706816aba3e25717850c26c9cd0d89d")
        assert websocket.sha1(b"") == bytes.fromhex("da39a3ee5e6b4b0d3255bfef95601890afd80709")
        assert websocket.sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") == bytes.fromhex(
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        )
        assert websocket.sha1(b"a" * 1000) == bytes.fromhex("291e9a6c66994949b57ba5e650361e98fc36b1ba")
    finally:
        if saved is not None:
            hashlib.sha1 = saved


def _head(extra=b"", line=b"GET /ocpp/CP1 HTTP/1.1"):
    return (
        line + b"\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


def _refused(head):
    try:
        websocket.parse_head(head)
    except websocket.HandshakeError as error:
        return error.args[0]
    return None


def test_parse_head_takes_what_chargers_send():
    path, key, protocols, auth = websocket.parse_head(_head(b"Sec-WebSocket-Protocol: OCPP1.6, ocpp2.0\r\n"))
    assert path == b"/ocpp/CP1" and key == b"dGhlIHNhbXBsZSBub25jZQ==" and auth is None
    assert protocols == b"ocpp1.6, ocpp2.0"
    # No subprotocol at all (several boxes): accepted, none answered.
    assert websocket.parse_head(_head())[2] == b""
    # Header names in any case.
    head = _head().replace(b"Upgrade: websocket", b"upgrade: WebSocket")
    assert websocket.parse_head(head)[0] == b"/ocpp/CP1"


def test_parse_head_refuses_what_is_no_upgrade():
    assert _refused(_head(line=b"POST /CP1 HTTP/1.1")) == 405
    assert _refused(_head(line=b"GET /CP1")) == 400
    assert _refused(_head().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8")) == 426
    assert _refused(_head().replace(b"Upgrade: websocket", b"Upgrade: h2c")) == 400
    assert _refused(_head().replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"")) == 400


def test_charge_point_id_from_paths_real_boxes_use():
    assert charge_point_id(b"/CP1") == "CP1"
    assert charge_point_id(b"/ocpp/CP1") == "CP1"
    assert charge_point_id(b"/ocpp/CP1/") == "CP1"
    assert charge_point_id(b"/steve/websocket/CentralSystemService/CP1?token=x") == "CP1"
    assert charge_point_id(b"/Wallbox%20Garage") == "Wallbox Garage"
    assert charge_point_id(b"/") == ""
    assert charge_point_id(b"/?a=b") == ""
    assert charge_point_id(b"/bad%zz") == "bad%zz"


def test_basic_credentials():
    assert basic_credentials(b"Basic Q1AxOnNlY3JldHBhc3M=") == (b"CP1", b"secretpass")
    assert basic_credentials(b"basic Q1AxOnNlY3JldHBhc3M=") == (b"CP1", b"secretpass")
    assert basic_credentials(b"Bearer abc") is None
    assert basic_credentials(None) is None
    assert basic_credentials(b"Basic !!!") is None


def test_frame_header_lengths():
    out = bytearray(10)
    assert websocket.frame_header(websocket.OP_TEXT, 5, out) == 2 and out[:2] == b"\x81\x05"
    assert websocket.frame_header(websocket.OP_TEXT, 300, out) == 4 and out[:4] == b"\x81\x7e\x01\x2c"
    assert websocket.frame_header(websocket.OP_BINARY, 70000, out) == 10
    assert out[:10] == b"\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70"


def test_decimal_numbers_as_boxes_send_them():
    assert decimal("16.04", 3) == 16040
    assert decimal("230", 0) == 230
    assert decimal("7.3605", 3) == 7361  # kW -> W, half up
    assert decimal("-1.5", 3) == -1500
    assert decimal("1.2e3", 0) == 1200
    assert decimal(" 12 ", 0) == 12
    assert decimal(16, 3) == 16000
    assert decimal(9.96, 3) == 9960
    assert decimal("", 3) is None
    assert decimal("abc", 0) is None
    assert decimal(None, 0) is None
    assert decimal("1.2.3", 0) is None


def test_time_parse_and_format():
    assert iso_time(0) == "1970-01-01T00:00:00Z"
    assert parse_time("2026-11-30T05:00:00Z") == 1796014800
    assert iso_time(1796014800) == "2026-11-30T05:00:00Z"
    assert parse_time("2026-11-30T05:00:00.123Z") == 1796014800
    assert parse_time("2026-11-30T05:00:00") == 1796014800  # no zone: taken as UTC
    assert parse_time("2026-11-30T06:00:00+01:00") == 1796014800
    assert parse_time("2026-11-30T04:00:00-01:00") == 1796014800
    assert parse_time("yesterday") is None
    assert parse_time(12) is None


# ------------------------------------------------------------ driver messages


def _point(**options):
    clock = Clock()
    point = OcppCharger("CP1", clock=clock, wall=lambda: 1796014800, **options)
    point.attach(object())
    return point


class _Accepting:
    """net/ocpp.CentralSystem.call as the driver uses it: every call Accepted; `seen` the actions."""

    def __init__(self):
        self.seen = []

    async def call(self, session, action, payload):
        self.seen.append(action)
        return "ok", {"status": "Accepted"}


def _code(point, action, payload):
    try:
        point.on_call(action, payload)
    except OcppError as error:
        return error.args[0]
    return None


def test_boot_is_pending_with_time_and_interval_until_set_up():
    # A new boot is answered Pending (OCPP 1.6, 4.2): set up before it may charge (test_ocpp_pending.py).
    point = _point()
    answer = json.loads(point.on_call("BootNotification", {"chargePointVendor": "Alfen BV", "chargePointModel": "NG910"}))
    assert answer == {"status": "Pending", "currentTime": "2026-11-30T05:00:00Z", "interval": PENDING_S}
    assert point.vendor == "Alfen BV" and point.model == "NG910" and point.last_message == "BootNotification"
    # Not available to the guard until its set-up is done and a first command is in force.
    assert point.status.error == "connected, Pending: setting up" and not point.status.reachable
    # Let in (set up, a limit in force): its next BootNotification is Accepted, the heartbeat interval with it.
    point.central = _Accepting()

    async def set_up():
        await point.poll()
        return await point.apply(16000)

    assert asyncio.run(set_up()) and point.central.seen[-1] == "TriggerMessage"
    answer = json.loads(point.on_call("BootNotification", {"chargePointVendor": "Alfen BV", "chargePointModel": "NG910"}))
    assert answer == {"status": "Accepted", "currentTime": "2026-11-30T05:00:00Z", "interval": 300}


def test_calls_with_bad_payloads_get_the_ocpp_error_codes():
    point = _point()
    assert _code(point, "BootNotification", {"chargePointVendor": "X"}) == "ProtocolError"
    assert _code(point, "BootNotification", {"chargePointVendor": 12, "chargePointModel": "M"}) == "TypeConstraintViolation"
    assert _code(point, "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"}) == (
        "PropertyConstraintViolation"
    )
    assert _code(point, "StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Charging"}) == (
        "TypeConstraintViolation"
    )
    assert _code(point, "FlyToTheMoon", {}) == "NotImplemented"
    assert _code(point, "MeterValues", {"connectorId": 1}) == "ProtocolError"
    assert _code(point, "MeterValues", {"connectorId": 1, "meterValue": 5}) == "TypeConstraintViolation"
    assert _code(point, "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": "5", "timestamp": "x"}) == (
        "TypeConstraintViolation"
    )


def test_status_notification_sets_the_car_state():
    point = _point()
    states = (
        ("Available", CAR_NONE),
        ("Preparing", CAR_CONNECTED),
        ("Charging", CAR_CHARGING),
        ("SuspendedEV", CAR_CONNECTED),
        ("SuspendedEVSE", CAR_CONNECTED),
        ("Finishing", CAR_CONNECTED),
        ("Faulted", CAR_UNKNOWN),
    )
    for state, car in states:
        assert point.on_call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": state}) == "{}"
        assert point.status.car == car, state
    assert point.status.error == "Faulted NoError"
    point.on_call("StatusNotification", {"connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted"})
    assert point.status.error == "Faulted GroundFailure"
    point.on_call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
    assert point.status.error is None and point.status.car == CAR_CHARGING
    # Connector 0 is the box: it does not change the car.
    point.on_call("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"})
    assert point.status.car == CAR_CHARGING


def test_a_message_before_boot_is_answered_and_remembered():
    point = _point()
    assert point.on_call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}) == "{}"
    # Remembered: the next poll asks for its BootNotification, and that one is Accepted at once (a reconnect).
    point.central = _Accepting()
    asyncio.run(point.poll())
    assert point.central.seen == ["TriggerMessage"]
    answer = json.loads(point.on_call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}))
    assert answer["status"] == "Accepted"


def _sample(value, measurand=None, phase=None, unit=None):
    sample = {"value": value}
    if measurand:
        sample["measurand"] = measurand
    if phase:
        sample["phase"] = phase
    if unit:
        sample["unit"] = unit
    return sample


def test_meter_values_strings_w_wh_per_phase():
    point = _point()
    point.on_call("StartTransaction", {"connectorId": 1, "idTag": "CAR", "meterStart": 5000, "timestamp": "2026-11-30T05:00:00Z"})
    samples = [
        _sample("15.9", "Current.Import", "L1", "A"),
        _sample("16.1", "Current.Import", "L2", "A"),
        _sample("16.0", "Current.Import", "L3", "A"),
        _sample("11040", "Power.Active.Import", None, "W"),
        _sample("6234", "Energy.Active.Import.Register", None, "Wh"),
        _sample("16", "Current.Offered", None, "A"),
        _sample("400", "Voltage", "L1-L2", "V"),
    ]
    point.on_call("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-30T05:00:10Z", "sampledValue": samples}]})
    status = point.status
    assert status.current_ma == [15900, 16100, 16000]
    assert status.power_w == 11040 and status.session_energy_wh == 1234 and status.offered_ma == 16000


def test_meter_values_quirks():
    point = _point(phases=3)
    # One object instead of a list, numbers instead of strings, kW / kWh,
    # L1-N phases, an empty value, the default measurand, no zone.
    value = {
        "timestamp": "2026-11-30T05:00:10",
        "sampledValue": [
            _sample(10.04, "Current.Import", "L1-N"),
            _sample("9.96", "Current.Import", "L2-N"),
            _sample("", "Current.Import", "L3-N"),
            _sample("2.3", "Power.Active.Import", "L1-N", "kW"),
            _sample("2.2", "Power.Active.Import", "L2-N", "kW"),
            _sample("12.5", None, None, "kWh"),
            _sample("", "SoC"),
        ],
    }
    point.on_call("MeterValues", {"connectorId": 1, "meterValue": value})
    status = point.status
    assert status.current_ma == [10040, 9960, None]
    assert status.power_w == 4500
    assert status.session_energy_wh == 0  # the first register reading is the baseline
    point.on_call("MeterValues", {"connectorId": 1, "meterValue": [{"sampledValue": [_sample("12.75", unit="kWh")]}]})
    assert status.session_energy_wh == 250


def test_meter_values_single_current_counts_on_each_phase():
    point = _point(phases=1)
    point.on_call("MeterValues", {"connectorId": 1, "meterValue": [{"sampledValue": [_sample("13.2", "Current.Import")]}]})
    assert point.status.current_ma == [13200, None, None]


def test_transactions_and_authorize():
    point = _point(id_tags="CAR1, CAR2")
    answer = json.loads(point.on_call("StartTransaction", {"connectorId": 1, "idTag": "CAR1", "meterStart": 100, "timestamp": "t"}))
    assert answer == {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    assert json.loads(point.on_call("Authorize", {"idTag": "CAR9"})) == {"idTagInfo": {"status": "Invalid"}}
    assert json.loads(point.on_call("Authorize", {"idTag": "CAR2"})) == {"idTagInfo": {"status": "Accepted"}}
    assert point.on_call("StopTransaction", {"transactionId": 1, "meterStop": 2600, "timestamp": "t"}) == "{}"
    assert point.status.session_energy_wh == 2500
    answer = json.loads(point.on_call("StartTransaction", {"connectorId": 1, "idTag": "X", "meterStart": 0, "timestamp": "t"}))
    assert answer["transactionId"] == 2 and answer["idTagInfo"]["status"] == "Invalid"
    assert json.loads(_point().on_call("Authorize", {"idTag": "anyone"}))["idTagInfo"]["status"] == "Accepted"


def test_data_transfer_and_notifications_are_answered():
    point = _point()
    assert json.loads(point.on_call("DataTransfer", {"vendorId": "com.vendor", "data": "x"})) == {"status": "UnknownVendorId"}
    assert point.on_call("FirmwareStatusNotification", {"status": "Idle"}) == "{}"
    assert point.on_call("DiagnosticsStatusNotification", {"status": "Idle"}) == "{}"
    assert _code(point, "DataTransfer", {}) == "ProtocolError"


def test_limits_in_amps_and_watts():
    point = _point(phases=3)
    point.unit = "A"
    assert point._limit(16000) == "16.0" and point._limit(6500) == "6.5" and point._limit(0) == "0.0"
    point.unit = "W"
    assert point._limit(16000) == "11040.0" and point._limit(6000) == "4140.0"
    profile = json.loads(point._profile(2, 1, '{"startPeriod":0,"limit":%s}' % point._limit(6000), '"duration":60,'))
    cs = profile["csChargingProfiles"]
    assert profile["connectorId"] == 0 and cs["stackLevel"] == 1 and cs["chargingProfilePurpose"] == "TxDefaultProfile"
    schedule = cs["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "W" and schedule["duration"] == DYNAMIC_VALID_S
    assert schedule["startSchedule"] == "2026-11-30T05:00:00Z"
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 4140.0}]


# ------------------------------------------------------- over a real socket


class Platform:
    def __init__(self, port):
        self.port = port

    def ticks_ms(self):
        return now_ms()

    async def sleep_ms(self, ms):
        await asyncio.sleep(ms / 1000)

    def ocpp_address(self, port):
        return HOST, self.port


# Ports of the in-process servers: a block per process (pid, or the clock on the unix port), so suites
# running side by side on one machine (CPython, both unix ports, other checkouts) do not collide. The
# blocks stay below Linux's ephemeral range (32768-60999): a port there may be any client's local end
# of a connection, and the bind then fails (a CI run lost a test to that). _run still moves on to the
# next port when the bind fails: MicroPython's server cannot be asked for a port the kernel chose.
_next_port = [None]


def _port():
    if _next_port[0] is None:
        from support import _pid

        _next_port[0] = 20000 + _pid() % 600 * 20
    _next_port[0] += 1
    return _next_port[0]


def _central(accept_unknown=False, max_message=1024, ping_s=1):
    port = _port()
    logs = []
    ocpp._POINTS.clear()
    central = ocpp.CentralSystem(
        {"port": 0, "ping_s": ping_s, "max_message": max_message, "accept_unknown": accept_unknown},
        Platform(port),
        logs.append,
    )
    central.logs = logs
    return central


class Client:
    """A raw RFC 6455 client: masked frames out, frames in as (opcode, payload)."""

    async def connect(self, port, path=b"/CP1", extra=b"", head=None):
        """The answer's status (0: none); head: the request head as sent, by default a valid one for path."""
        self.reader, self.writer = await asyncio.open_connection(HOST, port)
        self.writer.write(head or _head(extra, b"GET " + path + b" HTTP/1.1"))
        await self.writer.drain()
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await self.reader.read(1)
            if not chunk:
                break
            head += chunk
        self.head = head
        return int(head.split(b" ")[1]) if head else 0

    async def send(self, opcode, payload, fin=True):
        if isinstance(payload, str):
            payload = payload.encode()
        mask = b"\x01\x02\x03\x04"
        out = bytearray(10)
        count = websocket.frame_header(opcode, len(payload), out)
        head = bytearray(out[:count])
        if not fin:
            head[0] &= 0x7F
        head[1] |= 0x80
        masked = bytearray(payload)
        for index in range(len(masked)):
            masked[index] ^= mask[index & 3]
        self.writer.write(bytes(head) + mask + bytes(masked))
        await self.writer.drain()

    async def _exactly(self, size):
        data = b""
        while len(data) < size:
            chunk = await self.reader.read(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    async def receive(self, skip_pings=True):
        while True:
            head = await self._exactly(2)
            length = head[1] & 127
            if length == 126:
                extra = await self._exactly(2)
                length = extra[0] << 8 | extra[1]
            payload = await self._exactly(length) if length else b""
            if skip_pings and head[0] & 15 == websocket.OP_PING:
                continue
            return head[0] & 15, payload

    def close(self):
        self.writer.close()


def _run(central, scenario):
    async def main():
        for _ in range(20):
            server = asyncio.create_task(central.run())
            # Listening, or the bind failed (the task ends with EADDRINUSE): a few loop turns.
            await until(lambda: central.listening or server.done(), 5000)
            if central.listening:
                break
            try:
                await server  # its bind error, taken so that it is not reported as never retrieved
            except OSError:
                pass
            central.port = central.platform.port = _port()
        try:
            assert central.listening, "the central system did not listen on 20 ports in turn"
            await scenario(central.port)
        finally:
            server.cancel()
            await asyncio.sleep(0.05)

    asyncio.run(main())


def _configured(central, password=""):
    point = OcppCharger("CP1", password, clock=now_ms, wall=lambda: 1796014800)
    ocpp.register(point)
    point.central = central
    return point


def test_socket_call_answered_with_the_id_echoed_and_subprotocol():
    central = _central()
    point = _configured(central)
    seen = {}

    async def scenario(port):
        client = Client()
        assert await client.connect(port, b"/ocpp/CP1/", b"Sec-WebSocket-Protocol: ocpp1.6\r\n") == 101
        assert b"Sec-WebSocket-Protocol: ocpp1.6" in client.head
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in client.head
        await client.send(websocket.OP_TEXT, '[2, "id \\u00e9 1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]')
        opcode, payload = await client.receive()
        seen["boot"] = json.loads(payload)
        # A fragmented call: two frames.
        await client.send(websocket.OP_TEXT, '[2,"h1","Heart', fin=False)
        await client.send(websocket.OP_CONTINUATION, 'beat",{}]')
        seen["heartbeat"] = json.loads((await client.receive())[1])
        # A ping is answered with a pong of the same payload.
        await client.send(websocket.OP_PING, b"abc")
        seen["pong"] = await client.receive()
        client.close()

    _run(central, scenario)
    assert seen["boot"][:2] == [3, "id \u00e9 1"] and seen["boot"][2]["status"] == "Pending"
    assert seen["heartbeat"][:2] == [3, "h1"] and "currentTime" in seen["heartbeat"][2]
    assert seen["pong"] == (websocket.OP_PONG, b"abc")
    assert point.vendor == "V"


def test_socket_malformed_messages_get_callerrors():
    central = _central()
    _configured(central)
    answers = []

    async def scenario(port):
        client = Client()
        assert await client.connect(port) == 101  # no subprotocol offered: served all the same
        assert b"Sec-WebSocket-Protocol" not in client.head
        for text in (
            "{not json",
            '{"a": 1}',
            '[2, "m1", "BootNotification"]',
            '[2, 7, "Heartbeat", {}]',
            '[2, "m2", "Heartbeat", []]',
            '[2, "m3", "NoSuchAction", {}]',
            '[2, "m4", "StatusNotification", {"connectorId": "one", "errorCode": "NoError", "status": "Available"}]',
            '[9, "m5"]',
        ):
            await client.send(websocket.OP_TEXT, text)
            answers.append(json.loads((await client.receive())[1]))
        # Still connected and answering.
        await client.send(websocket.OP_TEXT, '[2, "ok", "Heartbeat", {}]')
        answers.append(json.loads((await client.receive())[1]))
        client.close()

    _run(central, scenario)
    codes = [(answer[0], answer[1], answer[2]) for answer in answers[:-1]]
    assert codes == [
        (4, "-1", "FormationViolation"),
        (4, "-1", "FormationViolation"),
        (4, "-1", "FormationViolation"),
        (4, 7, "FormationViolation"),  # a number as the id: echoed as it came
        (4, "m2", "FormationViolation"),
        (4, "m3", "NotImplemented"),
        (4, "m4", "TypeConstraintViolation"),
        (4, "-1", "FormationViolation"),
    ]
    for answer in answers[:-1]:
        assert len(answer) == 5 and type(answer[3]) is str and answer[4] == {}
    assert answers[-1][0] == 3 and answers[-1][1] == "ok"


def test_socket_oversized_message_is_closed_with_1009():
    central = _central(max_message=1024)
    _configured(central)
    seen = {}

    async def scenario(port):
        client = Client()
        assert await client.connect(port) == 101
        await client.send(websocket.OP_TEXT, '[2,"big","DataTransfer",{"vendorId":"v","data":"%s"}]' % ("x" * 2000))
        seen["close"] = await client.receive()
        client.close()

    _run(central, scenario)
    opcode, payload = seen["close"]
    assert opcode == websocket.OP_CLOSE and payload[0] << 8 | payload[1] == websocket.CLOSE_TOO_BIG


def test_socket_binary_frame_is_closed_with_1003():
    central = _central()
    _configured(central)
    seen = {}

    async def scenario(port):
        client = Client()
        assert await client.connect(port) == 101
        await client.send(websocket.OP_BINARY, b"\x00\x01")
        seen["close"] = await client.receive()
        client.close()

    _run(central, scenario)
    opcode, payload = seen["close"]
    assert opcode == websocket.OP_CLOSE and payload[0] << 8 | payload[1] == websocket.CLOSE_UNSUPPORTED


def test_socket_unknown_id_refused_and_password_checked():
    central = _central()
    _configured(central, password="secretpass")
    statuses = []

    async def scenario(port):
        for path, extra in (
            (b"/NOPE", b""),
            (b"/CP1", b""),
            (b"/CP1", b"Authorization: Basic Q1AxOndyb25ncGFzcw==\r\n"),  # CP1:wrongpass
            (b"/CP1", b"Authorization: Basic Q1AxOnNlY3JldHBhc3M=\r\n"),  # CP1:secretpass
            (b"/", b"Authorization: Basic Q1AxOnNlY3JldHBhc3M=\r\n"),  # no id in the path: the user name
            (b"/CP1", b"Sec-WebSocket-Protocol: ocpp2.0.1\r\n"),
        ):
            client = Client()
            statuses.append(await client.connect(port, path, extra))
            client.close()

    _run(central, scenario)
    assert statuses == [404, 401, 401, 101, 101, 400]
    assert not [line for line in central.logs if "secretpass" in line or "wrongpass" in line]


class _Pieces(FakeUart):
    """A stream that gives its data in the pieces given, into the reader's buffer (readinto, as MicroPython's)."""

    def __init__(self, *pieces):
        FakeUart.__init__(self, pieces)

    async def readinto(self, view):
        return self.read_now(view)


def test_read_head_reads_into_its_buffer_piece_by_piece():
    head = _head(b"", b"GET /CP1 HTTP/1.1")
    buf = bytearray(1024)
    # Split inside the blank line too: its end is found across two reads.
    size = asyncio.run(websocket.read_head(_Pieces(head[:40], head[40:-2], head[-2:]), buf))
    assert size == len(head) and bytes(buf[:size]) == head
    for pieces, status in (((b"GET /CP1 HTTP/1.1\r\n",), 400), ((b"X" * 600, b"Y" * 424, b"\r\n\r\n"), 431)):
        try:
            asyncio.run(websocket.read_head(_Pieces(*pieces), bytearray(1024)))
            got = None
        except websocket.HandshakeError as refused:
            got = refused.args[0]
        assert got == status


class _Socket:
    """A non-blocking socket under a MicroPython stream (its `s`): readinto gives what came, None when nothing did."""

    def __init__(self, *pieces):
        self.pieces = list(pieces)

    def readinto(self, view):
        if not self.pieces:
            return None
        piece = self.pieces.pop(0)
        view[: len(piece)] = piece
        return len(piece)


def _receive_head(shared, first, *rest, later=()):
    reader = _Pieces(first, *later)
    reader.s = _Socket(*rest)
    try:
        return asyncio.run(websocket.receive_head(reader, shared, 1024))
    except websocket.HandshakeError as refused:
        return refused.args[0]


def test_a_head_that_came_whole_is_read_into_the_shared_buffer_when_it_is_free():
    # No 1 KB block of its own while boxes connect at start-up (the heap may have no such hole then).
    head = _head(b"", b"GET /CP1 HTTP/1.1")
    shared = websocket.MessageBuffer(4096)
    assert _receive_head(shared, head[:1], head[1:]) == head
    assert bytes(shared.buf[: len(head)]) == head and shared.holder is None
    # Held by a connection's message: not touched, the head read into a buffer of its own.
    shared = websocket.MessageBuffer(4096)
    shared.holder = "a box's message"
    assert _receive_head(shared, head[:1], later=(head[1:],)) == head
    assert shared.buf == bytearray(4096)
    # Not whole with its first byte: the rest waited for in a buffer of its own.
    shared = websocket.MessageBuffer(4096)
    assert _receive_head(shared, head[:1], head[1:40], later=(head[40:],)) == head
    # The same limits as read_head.
    assert _receive_head(websocket.MessageBuffer(4096), b"X", b"X" * 1023) == 431
    assert _receive_head(websocket.MessageBuffer(4096), b"X", b"X" * 600, later=(b"Y" * 423,)) == 431
    assert _receive_head(websocket.MessageBuffer(4096), b"") == 400


class _Writer:
    def __init__(self):
        self.parts = []

    def write(self, data):
        self.parts.append(bytes(data))

    async def drain(self):
        pass


def test_a_frame_is_sent_as_its_parts_with_its_length_in_bytes():
    writer = _Writer()
    socket = websocket.WebSocket(None, writer, websocket.MessageBuffer(16))
    asyncio.run(socket.send(websocket.OP_TEXT, '[2,"cg1","DataTransfer",', '{"data":"\u00e9"}', b"]"))
    payload = '[2,"cg1","DataTransfer",{"data":"\u00e9"}]'.encode()
    out = bytearray(10)
    count = websocket.frame_header(websocket.OP_TEXT, len(payload), out)
    # The message's pieces as they are (never joined into one block), behind the frame's header.
    assert writer.parts == [bytes(out[:count]), b'[2,"cg1","DataTransfer",', '{"data":"\u00e9"}'.encode(), b"]"]


def test_socket_head_too_large_refused():
    central = _central()
    _configured(central)
    statuses = []

    async def scenario(port):
        for head in (None, b"GET /CP1 HTTP/1.1\r\nX-Filler: " + b"a" * 995):
            client = Client()
            statuses.append(await client.connect(port, head=head))
            client.close()

    _run(central, scenario)
    # The second: 1024 bytes (the buffer's size) and no blank line yet.
    assert statuses == [101, 431]


def test_socket_unknown_id_discovered_when_accepted():
    central = _central(accept_unknown=True)
    seen = {}

    async def scenario(port):
        client = Client()
        seen["status"] = await client.connect(port, b"/NEWBOX")
        await client.send(websocket.OP_TEXT, '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        seen["boot"] = json.loads((await client.receive())[1])
        client.close()

    _run(central, scenario)
    assert seen["status"] == 101 and seen["boot"][2]["status"] == "Accepted"
    point = central.discovered["NEWBOX"]
    assert point.discovered and point.model == "M"


def test_socket_reconnect_replaces_the_old_connection_and_calls_time_out_alone():
    central = _central()
    point = _configured(central)
    seen = {}

    async def scenario(port):
        first = Client()
        assert await first.connect(port) == 101
        await until(lambda: point.session is not None)
        old = point.session
        second = Client()
        assert await second.connect(port) == 101
        await until(lambda: point.session is not old and point.session is not None)
        seen["closed"] = await first.receive()
        # A call the box never answers: only this call waits, for its deadline.
        start = now_ms()
        seen["call"] = await central.call(point.session, "GetConfiguration", "{}", timeout_ms=300)
        seen["waited"] = now_ms() - start
        # A call the box answers.
        task = asyncio.create_task(central.call(point.session, "ClearChargingProfile", "{}"))
        request = json.loads((await second.receive())[1])  # the unanswered GetConfiguration
        assert request[2] == "GetConfiguration"
        request = json.loads((await second.receive())[1])
        # A late answer to the call that timed out counts for nothing.
        await second.send(websocket.OP_TEXT, json.dumps([3, "cg1", {"configurationKey": []}]))
        await second.send(websocket.OP_TEXT, json.dumps([3, request[1], {"status": "Accepted"}]))
        seen["answer"] = await task
        seen["request"] = request
        second.close()

    _run(central, scenario)
    assert seen["closed"][0] == websocket.OP_CLOSE
    assert seen["call"] == ("timeout", None) and 300 <= seen["waited"] < 3000
    assert seen["answer"] == ("ok", {"status": "Accepted"})
    assert seen["request"][0] == 2 and seen["request"][2] == "ClearChargingProfile"


def test_two_boxes_take_turns_with_the_one_message_buffer():
    # One buffer for every connection (allocated at start): a box's message waits while another box's
    # fragmented message holds it, and neither is mixed into the other.
    central = _central()
    point = _configured(central)
    other = OcppCharger("CP2", clock=now_ms, wall=lambda: 1796014800)
    ocpp.register(other)
    other.central = central
    shared = central.shared
    seen = {}

    async def scenario(port):
        first, second = Client(), Client()
        assert await first.connect(port, b"/CP1") == 101
        assert await second.connect(port, b"/CP2") == 101
        await until(lambda: point.session is not None and other.session is not None)
        await first.send(websocket.OP_TEXT, '[2,"a1","Heart', fin=False)
        await until(lambda: shared.holder is point.session.ws)
        await second.send(websocket.OP_TEXT, '[2,"b1","Heartbeat",{}]')
        await asyncio.sleep(0.1)
        seen["held"] = shared.holder is point.session.ws  # the second box's message still waits
        await first.send(websocket.OP_CONTINUATION, 'beat",{}]')
        seen["first"] = json.loads((await first.receive())[1])
        seen["second"] = json.loads((await second.receive())[1])
        await until(lambda: shared.holder is None)
        seen["free"] = True
        first.close()
        second.close()

    _run(central, scenario)
    assert seen["held"] and seen["free"]
    assert seen["first"][:2] == [3, "a1"] and "currentTime" in seen["first"][2]
    assert seen["second"][:2] == [3, "b1"] and "currentTime" in seen["second"][2]


def test_socket_server_pings_and_silence_is_no_reason_to_drop():
    central = _central(ping_s=1)
    point = _configured(central)
    seen = {}

    async def scenario(port):
        client = Client()
        assert await client.connect(port) == 101
        # Two pings within 2.5 s (ping_s 1), the client silent all along.
        opcode, payload = await client.receive(skip_pings=False)
        opcode2, payload2 = await client.receive(skip_pings=False)
        seen["pings"] = (opcode, opcode2)
        seen["connected"] = point.session is not None
        client.close()

    _run(central, scenario)
    assert seen["pings"] == (websocket.OP_PING, websocket.OP_PING) and seen["connected"]


async def _answer_calls(client, answers, seen):
    # The box's side: answer every call of the central system from `answers` (action -> payload, or a
    # list of payloads used in turn), recording (action, payload).
    while True:
        try:
            opcode, payload = await client.receive()
        except Exception:
            return
        if opcode != websocket.OP_TEXT:
            return
        message = json.loads(payload)
        if message[0] != 2:
            continue
        seen.append((message[2], message[3]))
        answer = answers.get(message[2], {})
        if type(answer) is list:
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        await client.send(websocket.OP_TEXT, json.dumps([3, message[1], answer]))


def test_the_set_up_is_asked_for_once_the_bootnotification_is_answered():
    # A box with no profile offers its own maximum: its set-up (the failsafe profile) may not wait
    # for the next poll. poll_soon is asked once per BootNotification, after its answer went out.
    central = _central()
    point = _configured(central)
    asked = []
    point.poll_soon = lambda: asked.append(point.last_message == "BootNotification")
    got = {}

    async def scenario(port):
        client = Client()
        assert await client.connect(port) == 101
        await client.send(websocket.OP_TEXT, '[2,"h","Heartbeat",{}]')  # before its BootNotification
        await client.receive()
        got["before"] = list(asked)
        await client.send(websocket.OP_TEXT, '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        opcode, payload = await client.receive()
        got["answer"] = json.loads(payload)
        assert await until(lambda: asked, 2000)
        await client.send(websocket.OP_TEXT, '[2,"s","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Charging"}]')
        await client.receive()
        got["after"] = list(asked)
        await client.send(websocket.OP_TEXT, '[2,"b2","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        await client.receive()
        assert await until(lambda: len(asked) == 2, 2000)
        client.close()

    _run(central, scenario)
    assert got["before"] == []
    assert got["answer"][:2] == [3, "b"] and got["answer"][2]["status"] == "Accepted"
    assert got["after"] == [True]  # once, not again for the StatusNotification
    assert asked == [True, True]  # a box that boots again is set up again


def test_set_up_then_profiles_and_a_refusal_degrades_only_this_box():
    central = _central()
    point = OcppCharger("CP1", phases=3, failsafe_a=6, clock=now_ms, wall=lambda: 1796014800)
    ocpp.register(point)
    point.central = central
    seen = []
    results = {}
    answers = {
        "GetConfiguration": {"configurationKey": [
            {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Power"},
            {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "3"}]},
        "ClearChargingProfile": {"status": "Unknown"},
        "ChangeConfiguration": {"status": "Accepted"},
        "SetChargingProfile": [{"status": "Accepted"}, {"status": "Accepted"}, {"status": "Rejected"}, {"status": "Accepted"}],
    }

    async def scenario(port):
        client = Client()
        assert await client.connect(port) == 101
        await client.send(websocket.OP_TEXT, '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        await client.receive()
        await until(lambda: point.last_message == "BootNotification")
        results["before"] = point.status.reachable
        task = asyncio.create_task(_answer_calls(client, answers, seen))
        assert await point.poll()
        results["after_setup"] = (point.status.reachable, point.unit, point.stack_level, point.status.error)
        results["apply1"] = await point.apply(16000)
        point._sent_at -= 100000  # due for renewal: the next apply sends (and is refused)
        results["apply2"] = await point.apply(16000)
        results["refused"] = (point.status.reachable, point.status.error)
        results["apply3"] = await point.apply(16000)
        results["again"] = (point.status.reachable, point.status.error)
        client.close()
        task.cancel()

    _run(central, scenario)
    assert results["before"] is False
    assert results["after_setup"] == (True, "W", 0, None)
    actions = [action for action, payload in seen]
    # The failsafe profile before the configuration: the box offers its own maximum until it has one.
    assert actions[:5] == ["GetConfiguration", "ClearChargingProfile", "SetChargingProfile", "ChangeConfiguration",
                           "ChangeConfiguration"]
    assert seen[3][1] == {"key": "MeterValueSampleInterval", "value": "10"}
    failsafe = seen[2][1]["csChargingProfiles"]
    assert failsafe["stackLevel"] == 0 and failsafe["chargingProfileId"] == 1
    assert failsafe["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 4140.0}]
    assert "duration" not in failsafe["chargingSchedule"]
    dynamic = seen[5][1]["csChargingProfiles"]
    assert dynamic["stackLevel"] == 1 and dynamic["chargingProfileId"] == 2
    assert dynamic["chargingSchedule"]["duration"] == DYNAMIC_VALID_S
    assert dynamic["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 11040.0}]
    assert results["apply1"] is True and results["apply2"] is False
    assert results["refused"] == (False, "SetChargingProfile: Rejected (11040.0 W)")
    assert results["apply3"] is True and results["again"] == (True, None)
