# Modbus TCP wallboxes: the emulators (tools/sim/modbus_charger_emulator.py)
# checked against pymodbus as the client; the firmware's Modbus writes
# against a pymodbus server; the firmware's drivers (v2c_trydan_modbus,
# alfen_eve) against the emulators over real sockets, including hung,
# refusing and garbage-answering boxes. CPython / pytest only.
import asyncio
import os
import struct
import sys
import threading
import time
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware")):
    if path not in sys.path:
        sys.path.insert(0, path)

from modbus_charger_emulator import AbbTerraEmulator, AlfenEmulator, PhoenixEmulator, TrydanModbusEmulator  # noqa: E402
from pymodbus.client import ModbusTcpClient  # noqa: E402

from chargeguard.chargers import abb_terra, alfen, modbus_generic, v2c_trydan_modbus  # noqa: E402
from chargeguard import config  # noqa: E402
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE  # noqa: E402
from chargeguard.net import modbus as mb  # noqa: E402
from chargeguard.net.modbus_box import ModbusBox  # noqa: E402
from chargeguard.platform import unix  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

TIMEOUT_MS = 1000  # per attempt, as the drivers are built here
# One request: two attempts and the pause (net/modbus_box.py), plus host slack.
REQUEST_S = 2 * TIMEOUT_MS / 1000 + 0.5
HOST_SLACK_S = 2.0
PHOENIX_MAP = {"state_address": 100, "current_address": 528, "enable": "coil", "enable_address": 400,
               "power_address": 120}


def f32(value):
    b = struct.pack(">f", value)
    return [(b[0] << 8) | b[1], (b[2] << 8) | b[3]]


def unf32(words):
    return struct.unpack(">f", struct.pack(">HH", *words))[0]


def wait_for(condition, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def boxes():
    started = []
    yield started
    for box in started:
        box.stop()


def client(box):
    c = ModbusTcpClient("127.0.0.1", port=box.port, timeout=1, retries=0)
    assert c.connect()
    return c


# -- the emulators against pymodbus ------------------------------------------------


def test_trydan_emulator_with_pymodbus(boxes):
    box = TrydanModbusEmulator(response_delay_s=0).start()
    boxes.append(box)
    box.plug()
    c = client(box)
    try:
        r = c.read_holding_registers(3010, count=20, device_id=1)
        assert not r.isError()
        regs = r.registers
        assert regs[0] == 2 and regs[11] == 16 and regs[1] == int(round(box.charge_power_w()))
        assert not c.write_register(6013, 10, device_id=1).isError()
        assert box.setting("Intensity") == 10
        assert c.read_holding_registers(3021, count=1, device_id=1).registers == [10]
        r = c.write_register(6013, 40, device_id=1)  # out of range
        assert r.isError() and r.exception_code == 3 and box.setting("Intensity") == 10
        r = c.read_holding_registers(100, count=2, device_id=1)
        assert r.isError() and r.exception_code == 2
        assert not c.write_register(6010, 1, device_id=1).isError()
        assert c.read_holding_registers(3018, count=1, device_id=1).registers == [1]
        assert wait_for(lambda: box.drawn_current_ma() == [0, 0, 0], 1)
    finally:
        c.close()


def test_alfen_emulator_with_pymodbus(boxes):
    # 3 s of validity: the write, the read-back and the car's draw below must
    # come within it on a loaded host (with 1 s a stall between two requests
    # let it lapse and the read-back showed the safe current).
    box = AlfenEmulator(response_delay_s=0, validity_s=3.0, safe_a=6.0).start()
    boxes.append(box)
    box.plug()
    c = client(box)
    try:
        r = c.read_holding_registers(1200, count=16, device_id=1)
        assert not r.isError()
        regs = r.registers
        assert regs[0] == 1 and bytes((regs[1] >> 8, regs[1] & 0xFF)) == b"C2"
        assert unf32(regs[6:8]) == 6.0 and unf32(regs[12:14]) == 6.0  # the safe current applies
        assert not c.write_registers(1210, f32(13.0), device_id=1).isError()
        regs = c.read_holding_registers(1200, count=16, device_id=1).registers
        assert unf32(regs[6:8]) == 13.0 and regs[14] == 1 and 0 < regs[9] <= 3
        assert wait_for(lambda: box.drawn_current_ma()[0] == 13000, 1)
        # Half a float is refused; a read-only register too.
        r = c.write_register(1210, 0x4150, device_id=1)
        assert r.isError() and r.exception_code == 3
        r = c.write_registers(1212, f32(20.0), device_id=1)
        assert r.isError() and r.exception_code == 2
        # The station at unit 200.
        r = c.read_holding_registers(100, count=17, device_id=200)
        assert struct.pack(">17H", *r.registers).rstrip(b"\x00") == b"ALF_1000"
        # Not renewed: back to the safe current after the validity time.
        assert wait_for(lambda: box.applied_a() == 6.0, 3.0 + HOST_SLACK_S)
        regs = c.read_holding_registers(1206, count=10, device_id=1).registers
        assert unf32(regs[0:2]) == 6.0 and regs[8] == 0
        # 1/3 phases.
        assert not c.write_register(1215, 1, device_id=1).isError()
        assert box.charge_phases() == 1
        r = c.read_holding_registers(320, count=6, device_id=1)
        assert unf32(r.registers[0:2]) == 6.0 and unf32(r.registers[2:4]) == 0.0
    finally:
        c.close()


def test_alfen_without_phase_switching_refuses_1215(boxes):
    box = AlfenEmulator(phase_switching=False).start()
    boxes.append(box)
    c = client(box)
    try:
        r = c.write_register(1215, 1, device_id=1)
        assert r.isError() and r.exception_code == 3
    finally:
        c.close()


def test_abb_emulator_with_pymodbus(boxes):
    box = AbbTerraEmulator(response_delay_s=0).start()
    boxes.append(box)
    box.plug()
    c = client(box)
    try:
        for read in (c.read_holding_registers, c.read_input_registers):
            r = read(0x400C, count=2, device_id=1)
            assert not r.isError() and (r.registers[1] >> 8) & 0x7F == 4
        assert not c.write_registers(0x4100, [0, 10000], device_id=1).isError()
        r = c.read_holding_registers(0x400E, count=8, device_id=1)
        assert r.registers[1] == 10000
        assert wait_for(lambda: box.drawn_current_ma() == [10000] * 3, 1)
        assert not c.write_register(0x4106, 30, device_id=1).isError()
        assert c.read_holding_registers(0x4020, count=1, device_id=1).registers == [30]
        # What the documentation warns about: Stop clears the authorisation.
        assert not c.write_register(0x4105, 1, device_id=1).isError()
        assert not box.authorised and wait_for(lambda: box.drawn_current_ma() == [0] * 3, 1)
        r = c.read_holding_registers(0x5000, count=1, device_id=1)
        assert r.isError() and r.exception_code == 2
    finally:
        c.close()


def test_abb_driver_sets_the_limit_and_the_comm_timeout_and_never_the_dangerous_registers(boxes):
    box = AbbTerraEmulator(response_delay_s=0, comm_timeout_s=600).start()
    boxes.append(box)
    box.plug()
    driver = driver_for("abb_terra", box)

    async def scenario():
        for ma in (16000, 8000, 0, 12000):
            assert await driver.poll(), driver.status.error
            assert await driver.apply(ma)
        assert await driver.poll()
        assert driver.status.car == CAR_CHARGING and driver.status.offered_ma == 12000

    asyncio.run(scenario())
    assert box.limit_a() == 12.0 and box.comm_timeout_s == abb_terra.COMM_TIMEOUT_S
    assert box.forbidden_writes == [] and box.authorised
    assert wait_for(lambda: box.drawn_current_ma() == [12000] * 3, 1)
    # A silent ChargeGuard: after the communication timeout the box stops by itself.
    box.comm_timeout_s = 1
    assert wait_for(lambda: box.drawn_current_ma() == [0] * 3, 1 + HOST_SLACK_S)
    driver.box.close()


def test_phoenix_emulator_with_pymodbus_and_the_generic_driver(boxes):
    box = PhoenixEmulator(response_delay_s=0).start()
    boxes.append(box)
    box.plug()
    c = client(box)
    try:
        assert c.read_input_registers(100, count=1, device_id=1).registers == [ord("C")]
        assert not c.write_register(528, 10, device_id=1).isError()
        assert c.read_input_registers(120, count=2, device_id=1).registers == [0, 3 * 230 * 10]
        assert not c.write_coil(400, False, device_id=1).isError()
        assert c.read_coils(400, count=1, device_id=1).bits[0] is False
        assert c.read_input_registers(100, count=1, device_id=1).registers == [ord("B")]
        r = c.write_register(528, 3, device_id=1)
        assert r.isError() and r.exception_code == 3
    finally:
        c.close()
    driver = driver_for("modbus_generic", box)

    async def scenario():
        assert await driver.poll(), driver.status.error
        assert driver.status.car == CAR_CONNECTED
        assert await driver.apply(13000)
        assert box.current_a() == 13 and box.enabled()
        assert await driver.poll()
        assert driver.status.car == CAR_CHARGING and driver.status.power_w == 3 * 230 * 13
        assert await driver.apply(0)
        assert not box.enabled() and box.current_a() == 13

    asyncio.run(scenario())
    driver.box.close()


# -- the firmware's writes against pymodbus -------------------------------------------


def test_firmware_writes_functions_6_and_16_to_a_pymodbus_server():
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    hr = [SimData(0, count=2000, values=0, datatype=DataType.REGISTERS)]
    empty = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
    device = SimDevice(1, simdata=(empty, empty, hr, [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]))
    started = threading.Event()
    state = {}

    async def open_server():
        server = ModbusTcpServer(device, address=("127.0.0.1", 0))
        await server.listen()
        return server

    def serve():
        loop = state["loop"] = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(open_server())
        transport = server.transport
        sockets = getattr(transport, "sockets", None)
        state["port"] = sockets[0].getsockname()[1] if sockets else transport.get_extra_info("sockname")[1]
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    platform = unix.Platform({"rs485_device": None})
    box = ModbusBox("127.0.0.1", state["port"], platform, TIMEOUT_MS)

    async def scenario():
        assert await box.write(1, 6, 1215, [3], 1), box.error
        assert await box.write(1, 16, 1210, f32(13.0), 2), box.error
        assert await box.write(1, 16, 100, [1, 2, 3, 4, 5, 6, 7, 8], 8), box.error
        assert await box.read(1, 3, 1210, 6), box.error
        assert [box.word(i) for i in range(6)] == f32(13.0) + [0, 0, 0, 3]
        assert await box.read(1, 3, 100, 8)
        assert [box.word(i) for i in range(8)] == [1, 2, 3, 4, 5, 6, 7, 8]
        # Beyond the server's registers: its exception, in words.
        assert not await box.write(1, 6, 5000, [1], 1)
        assert box.exception == 2 and "illegal data address" in box.error

    try:
        asyncio.run(scenario())
    finally:
        box.close()
        state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(5)


# -- the drivers against the emulators ---------------------------------------------


def driver_for(kind, box, **fields):
    entry = {"host": "127.0.0.1", "port": box.port, "phases": 3, "circuit_a": 16, "unit": 1, "failsafe_a": 0}
    entry.update(fields)
    platform = unix.Platform({"rs485_device": None})
    if kind == "modbus_generic":
        doc = config.defaults()
        doc["chargers"] = [dict(entry, name="X", type=kind, map=dict(PHOENIX_MAP))]
        doc = config.complete(doc)
        assert config.validate(doc) == []
        entry = doc["chargers"][0]
    module = {"v2c_trydan_modbus": v2c_trydan_modbus, "alfen_eve": alfen, "abb_terra": abb_terra,
              "modbus_generic": modbus_generic}[kind]
    return module.from_config(entry, platform, TIMEOUT_MS)


def test_trydan_driver_commands_the_emulator(boxes):
    box = TrydanModbusEmulator(response_delay_s=0).start()
    boxes.append(box)
    box.plug()
    driver = driver_for("v2c_trydan_modbus", box)

    async def scenario():
        assert await driver.poll(), driver.status.error
        assert driver.status.car == CAR_CHARGING and driver.status.offered_ma == 16000
        assert await driver.apply(10500)
        assert box.setting("Intensity") == 10 and box.setting("Paused") == 0
        assert await driver.apply(0)
        assert box.setting("Paused") == 1
        assert await driver.poll()
        assert driver.status.car == CAR_CONNECTED and driver.status.offered_ma == 0
        box.unplug()
        assert await driver.poll()
        assert driver.status.car == CAR_NONE

    asyncio.run(scenario())
    driver.box.close()


def test_alfen_driver_keeps_the_max_current_alive_and_the_box_falls_back_without_it(boxes):
    box = AlfenEmulator(response_delay_s=0, validity_s=2.0, safe_a=6.0).start()
    boxes.append(box)
    box.plug()
    driver = driver_for("alfen_eve", box)

    async def scenario():
        assert await driver.poll(), driver.status.error
        assert await driver.apply(12000)
        assert box.max_current() == 12.0
        assert await driver.poll()
        assert driver.status.car == CAR_CHARGING and driver.status.offered_ma == 12000
        assert driver.status.current_ma == [12000, 12000, 12000] and driver.status.power_w == 3 * 230 * 12
        # The box shows less validity left than the driver's renewal margin
        # (2 s here): every poll makes the next apply renew it.
        writes = len(box.mb_writes)
        for _ in range(3):
            await asyncio.sleep(0.5)
            assert await driver.poll()
            assert await driver.apply(12000)
        assert len(box.mb_writes) > writes and box.max_current() == 12.0
        # ChargeGuard silent: the box falls back to its safe current by itself.
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert wait_for(lambda: box.applied_a() == 6.0, 2.0 + HOST_SLACK_S)
    driver.box.close()


@pytest.mark.parametrize("kind", ("v2c_trydan_modbus", "alfen_eve", "abb_terra", "modbus_generic"))
@pytest.mark.parametrize("mode", ("hang", "garbage", "error", "refuse"))
def test_a_failing_box_fails_its_own_requests_in_words_within_the_deadline(boxes, kind, mode):
    emulator = {"v2c_trydan_modbus": TrydanModbusEmulator, "alfen_eve": AlfenEmulator, "abb_terra": AbbTerraEmulator,
                "modbus_generic": PhoenixEmulator}[kind]
    box = emulator(response_delay_s=0).start()
    boxes.append(box)
    box.plug()
    driver = driver_for(kind, box)
    words = {"hang": "no answer", "garbage": "not a Modbus TCP answer", "error": "exception 4",
             "refuse": ("connection refused", "connection closed", "network error")}[mode]

    async def scenario():
        assert await driver.poll(), driver.status.error
        if mode == "refuse":
            box.stop()
        else:
            box.set_mode(mode)
        start = time.monotonic()
        assert not await driver.poll()
        # Alfen's poll is two requests; a failure ends at the first.
        assert time.monotonic() - start < REQUEST_S + HOST_SLACK_S
        assert not driver.status.reachable
        assert driver.status.error.startswith(words) if isinstance(words, tuple) else words in driver.status.error, (
            driver.status.error)
        start = time.monotonic()
        assert not await driver.apply(8000)
        assert time.monotonic() - start < REQUEST_S + HOST_SLACK_S

    asyncio.run(scenario())
    if mode != "refuse":
        box.set_mode("normal")
    driver.box.close()
