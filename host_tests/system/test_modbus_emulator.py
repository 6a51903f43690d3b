# The firmware's Modbus master and meter driver against a real Modbus server:
# pymodbus (tools/sim/modbus_emulator.py) over a pty line (RTU) and TCP.
# CPython / pytest only.
import asyncio
import os
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware")):
    if path not in sys.path:
        sys.path.insert(0, path)

from modbus_emulator import ModbusMeterEmulator, encode  # noqa: E402

from chargeguard.meters import modbus as modbus_meter  # noqa: E402
from chargeguard.meters import modbus_models  # noqa: E402
from chargeguard.net import modbus as mb  # noqa: E402
from chargeguard.platform import unix  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

CURRENTS = (10500, 7250, 500)
POWERS = (2300, -1500, 100)
VOLTAGES = (230100, 231200, 229900)
IMPORT_WH = 12345600
EXPORT_WH = 789000
# A request is answered within the driver's per-attempt timeout (1 s) and one
# retry; a poll is a few requests: everything a test waits for ends within this.
POLL_DEADLINE_S = 10


def meter_doc(model, host="", port=502, **fields):
    doc = {
        "type": "modbus",
        "model": model,
        "address": 1,
        "host": host,
        "port": port,
        "baud": 9600,
        "format": "8N1",
        "upside_down": False,
        "poll_ms": 200,
        "custom": None,
    }
    doc.update(fields)
    return doc


@pytest.fixture(autouse=True)
def rs485_variable(monkeypatch):
    """platform_for() sets CHARGEGUARD_RS485_DEVICE for the test; put back after it.

    Left set, a closed pty's path reached every later test of the run and the
    firmware processes they start (run.Firmware copies os.environ).
    """
    monkeypatch.setenv("CHARGEGUARD_RS485_DEVICE", "")


def platform_for(device):
    os.environ["CHARGEGUARD_RS485_DEVICE"] = device or ""
    return unix.Platform({"rs485_device": None})


async def poll_once(meter):
    return await asyncio.wait_for(meter.poll(), POLL_DEADLINE_S)


def expect_reading(model, reading):
    row = modbus_models.row(model)
    phases = row[2]
    assert reading.phase_count == phases
    for p in range(phases):
        assert reading.power_w[p] == POWERS[p], (model, reading.power_w)
        assert reading.current_ma[p] == (-CURRENTS[p] if POWERS[p] < 0 else CURRENTS[p]), (model, reading.current_ma)
        assert reading.voltage_mv[p] == VOLTAGES[p], (model, reading.voltage_mv)
    assert reading.net_power_w() == (sum(POWERS[:phases]) if phases else sum(POWERS))
    assert reading.energy_import_wh == IMPORT_WH
    assert reading.energy_export_wh == EXPORT_WH


@pytest.fixture
def emulators():
    started = []
    yield started
    for emulator in started:
        emulator.stop()


def start(emulators, model, **kwargs):
    emulator = ModbusMeterEmulator(model, **kwargs).start()
    emulator.set_values(CURRENTS, POWERS, VOLTAGES, IMPORT_WH, EXPORT_WH)
    emulators.append(emulator)
    return emulator


@pytest.mark.parametrize("model", modbus_models.MODELS)
def test_rtu_every_model_over_a_pty_line(emulators, model):
    emulator = start(emulators, model)
    meter = modbus_meter.from_config(meter_doc(model), platform_for(emulator.device))

    async def scenario():
        ok = await poll_once(meter)
        assert ok, meter.last_error
        expect_reading(model, meter.reading)
        assert meter.last_error is None

    asyncio.run(scenario())
    assert emulator.requests == 2  # per-phase block + energy block
    meter.master.link.close()


@pytest.mark.parametrize("model", ("sdm630", "abb_b23", "em24", "phoenix_eem_ma370", "sdm72d_m"))
def test_tcp_models(emulators, model):
    emulator = start(emulators, model, tcp_port=0)
    meter = modbus_meter.from_config(meter_doc(model, host="127.0.0.1", port=emulator.port), platform_for(None))

    async def scenario():
        for _ in range(3):  # the connection is kept between polls
            ok = await poll_once(meter)
            assert ok, meter.last_error
        expect_reading(model, meter.reading)

    asyncio.run(scenario())
    meter.master.link.close()


def test_tcp_host_name_and_a_restarting_server(emulators):
    emulator = start(emulators, "sdm630", tcp_port=0)
    meter = modbus_meter.from_config(meter_doc("sdm630", host="localhost", port=emulator.port), platform_for(None))

    async def scenario():
        assert await poll_once(meter), meter.last_error
        port = emulator.port
        emulator.stop()
        emulators.remove(emulator)
        assert not await poll_once(meter)
        assert meter.last_error.startswith(("connection refused", "connection closed", "network error", "no answer"))
        again = start(emulators, "sdm630", tcp_port=port)
        assert again.port == port
        for _ in range(3):
            if await poll_once(meter):
                break
        assert meter.last_error is None
        expect_reading("sdm630", meter.reading)

    asyncio.run(scenario())
    meter.master.link.close()


def test_tcp_nothing_listening_is_refused_in_words():
    meter = modbus_meter.from_config(meter_doc("sdm630", host="127.0.0.1", port=1), platform_for(None))

    async def scenario():
        assert not await poll_once(meter)
        assert meter.last_error.startswith("connection refused")

    asyncio.run(scenario())


def test_rtu_wrong_unit_address_is_no_answer_in_words(emulators):
    emulator = start(emulators, "sdm630")
    meter = modbus_meter.from_config(meter_doc("sdm630", address=7), platform_for(emulator.device))

    async def scenario():
        assert not await poll_once(meter)
        assert "no answer" in meter.last_error and "address" in meter.last_error

    asyncio.run(scenario())
    meter.master.link.close()


def test_rtu_wrong_model_is_an_exception_in_words(emulators):
    emulator = start(emulators, "abb_b23")  # function 3
    meter = modbus_meter.from_config(meter_doc("sdm630"), platform_for(emulator.device))

    async def scenario():
        assert not await poll_once(meter)
        assert "exception 2" in meter.last_error

    asyncio.run(scenario())
    meter.master.link.close()


def test_rtu_missing_export_register_is_left_out(emulators):
    emulator = start(emulators, "em24", missing=(0x5C,))
    meter = modbus_meter.from_config(meter_doc("em24"), platform_for(emulator.device))

    async def scenario():
        assert await poll_once(meter)
        assert await poll_once(meter)
        assert meter.reading.energy_import_wh == IMPORT_WH
        assert meter.reading.energy_export_wh is None
        assert "export energy register 92 not available" in meter.last_error
        assert meter.reading.power_w[0] == POWERS[0]

    asyncio.run(scenario())
    meter.master.link.close()


def test_rtu_silent_meter_then_back(emulators):
    emulator = start(emulators, "sdm630")
    meter = modbus_meter.from_config(meter_doc("sdm630"), platform_for(emulator.device))

    async def scenario():
        assert await poll_once(meter)
        stamped = meter.reading.tick_ms
        emulator.silent = True
        assert not await poll_once(meter)
        assert "no answer" in meter.last_error
        assert meter.reading.tick_ms == stamped
        emulator.silent = False
        for _ in range(5):  # a late answer may still be on the line: dropped as noise
            if await poll_once(meter):
                break
        assert meter.last_error is None
        assert meter.reading.tick_ms != stamped

    asyncio.run(scenario())
    meter.master.link.close()


def test_rtu_run_task_reports_fresh_readings_at_the_poll_rate(emulators):
    emulator = start(emulators, "sdm630")
    meter = modbus_meter.from_config(meter_doc("sdm630", poll_ms=200), platform_for(emulator.device))
    stamps = []

    async def scenario():
        task = asyncio.create_task(meter.run(lambda: stamps.append(meter.reading.tick_ms)))
        deadline = asyncio.get_running_loop().time() + POLL_DEADLINE_S
        while len(stamps) < 5 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(scenario())
    assert len(stamps) >= 5, meter.last_error
    assert len(set(stamps)) == len(stamps)
    meter.master.link.close()


def test_emulator_encoding_is_the_table_inverse():
    # The emulator's encoder against the firmware's decoder, every type and scale.
    for kind, exponent, value in (
        (modbus_models.F32, 3, 231685),
        (modbus_models.I32, -1, -2300),
        (modbus_models.U32, 1, 10500),
        (modbus_models.U64, 1, 12345600),
    ):
        words = encode(kind, exponent, value, False)
        if kind == modbus_models.F32:
            assert modbus_meter.decode_f32(words[0], words[1], exponent) == value
        elif kind == modbus_models.U64:
            assert words[:2] == [0, 0]
            assert modbus_meter.decode_int(words[2], words[3], modbus_models.U32, exponent) == value
        else:
            assert modbus_meter.decode_int(words[0], words[1], kind, exponent) == value
    assert mb.crc16(b"\x01\x04\x00\x00\x00\x02") == 0xCB71


# -- the firmware itself (unix port) on a Modbus meter, as `make sim SIM_ARGS="--meter sdm630"` runs it --


def _amps(text):
    try:
        return float(text)
    except ValueError:
        return -1.0  # "--.-": no reading


def _grid_lines(sim):
    return [line for line in sim.lines if line.startswith("grid")]


def _firmware_on(meter, modbus_tcp=False):
    from run import Simulation

    build = os.path.join(ROOT, "tools", "build.py")
    if not os.path.exists(os.path.join(ROOT, "build", "device", "main.py")):
        import subprocess

        subprocess.run([sys.executable, build], check=True)
    guard = {"meter_timeout_s": 2, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1}
    return Simulation(car_delay_s=0.2, run_name="modbus-e2e", chargers=1, guard=guard, meter=meter, modbus_tcp=modbus_tcp)


@pytest.mark.parametrize("modbus_tcp", (False, True), ids=("rtu", "tcp"))
def test_firmware_guards_on_a_modbus_meter_and_fails_safe_when_it_goes_silent(modbus_tcp):
    from run import wait_for

    sim = _firmware_on("sdm630", modbus_tcp)
    try:
        # The house draws 20 A on L1: the status line shows it from the meter.
        sim.site.set_house((20.0, 3.0, 3.0))

        def shows_house():
            sim.send_telegram()
            # "grid  20.0   3.0   3.0 A | ..." (plus what the car draws): at least the house's 20 A on L1.
            return any(_amps(line.split()[1]) >= 20.0 for line in _grid_lines(sim)[-1:])

        # The meter is read every second, the status line printed every second.
        assert wait_for(shows_house, 20, 0.25), "\n".join(sim.lines[-15:])
        assert sim.modbus.requests > 0
        # The meter stops answering: after meter_timeout (2 s) the charger is on failsafe.
        sim.meter_silent = True
        sim.send_telegram()
        assert wait_for(lambda: any("failsafe" in line for line in _grid_lines(sim)[-1:]), 15, 0.1), "\n".join(
            sim.lines[-15:]
        )
        # It answers again: the guard leaves the failsafe.
        sim.meter_silent = False

        def recovered():
            sim.send_telegram()
            return not any("failsafe" in line for line in _grid_lines(sim)[-1:])

        assert wait_for(recovered, 20, 0.25), "\n".join(sim.lines[-15:])
        assert sim.firmware.alive()
    finally:
        sim.stop()


# -- tools/meterprobe.py against the emulator ---------------------------------------


def probe(*args):
    import subprocess

    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "meterprobe.py")] + list(args),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


def test_meterprobe_reads_a_meter_over_rtu_and_tcp(emulators):
    emulator = start(emulators, "abb_b23")
    code, out = probe("--model", "abb_b23", "--device", emulator.device)
    assert code == 0, out
    assert "L1:   10.50 A    2300 W  230.1 V" in out
    assert "L2:   -7.25 A   -1500 W  231.2 V" in out
    assert "energy: import 12345.60 kWh, export 789.00 kWh" in out
    assert "note:" not in out
    tcp = start(emulators, "em24", tcp_port=0)
    code, out = probe("--model", "em24", "--host", "127.0.0.1", "--port", str(tcp.port))
    assert code == 0, out
    assert "net power: 900 W" in out


def test_meterprobe_says_what_is_wrong_in_words(emulators):
    emulator = start(emulators, "sdm630")
    code, out = probe("--model", "sdm630", "--device", emulator.device, "--address", "5")
    assert code == 1
    assert "no reading: no answer (check address" in out
    code, out = probe("--model", "orno_we516", "--device", emulator.device)  # FC3 at another map
    assert code == 1
    assert "exception 2" in out and "is it really a orno_we516" in out
    code, out = probe("--model", "sdm 630", "--device", emulator.device)
    assert code == 2 and "meter.model" in out


def test_meterprobe_spots_a_swapped_float(emulators):
    row = modbus_models.row("sdm630")
    swapped = ModbusMeterEmulator("sdm630", row=(row[0], True) + row[2:]).start()  # sends low word first
    emulators.append(swapped)
    swapped.set_values(CURRENTS, POWERS, VOLTAGES, IMPORT_WH, EXPORT_WH)
    code, out = probe("--model", "sdm630", "--device", swapped.device)
    assert "values look like a swapped float" in out, out
    assert "word_order low_first" in out
