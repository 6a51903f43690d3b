# The Trydan emulator checked with the real client (pytrydan), and the firmware
# driver run against it on CPython and on the MicroPython unix port.
# CPython/pytest only: threads, subprocess, httpx.
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import httpx
import pytest
from pytrydan import Trydan, TrydanInvalidResponse, TrydanInvalidValue
from pytrydan.models.trydan import ChargeState, DynamicPowerMode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

import trydan_emulator  # noqa: E402
from run import wait_for  # noqa: E402
from trydan_emulator import TrydanEmulator  # noqa: E402

from chargeguard.app import CHARGER_TIMEOUT_MS  # noqa: E402
from chargeguard.chargers.v2c_trydan import V2CTrydan  # noqa: E402
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE  # noqa: E402


class FakeClock:
    """An emulator's clock (seconds) that only the test moves; also test_goe_openevse_emulators'."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def run_on_unix_port(script, timeout_s):
    """Run `script` on the MicroPython unix port with the firmware and the shims on its path; its output lines.

    Skips when there is no unix port; also test_goe_openevse_emulators'.
    """
    upy = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(upy):
        pytest.skip("no MicroPython unix port")
    head = "import sys\nsys.path.insert(0, %r)\nsys.path.insert(0, %r)\n" % (
        os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools", "shims"))
    result = subprocess.run([upy, "-c", head + script], capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture
def emu():
    emulator = TrydanEmulator(port=0, response_delay_s=0).start()
    yield emulator
    emulator.stop()


def pytrydan_run(emulator, body):
    """Run `await body(trydan)` with a pytrydan client pointed at the emulator."""

    async def main():
        # trust_env=False: never route loopback through a proxy from the environment.
        async with httpx.AsyncClient(trust_env=False) as client:
            return await body(Trydan("127.0.0.1:%d" % emulator.port, client))

    return asyncio.run(main())


def http_get(emulator, path, timeout=2.0):
    try:
        with urllib.request.urlopen(emulator.url + path, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# -- the emulator through pytrydan --------------------------------------------


def test_pytrydan_reads_every_field(emu):
    emu.set_site(house_w=1500, pv_w=2200)
    emu.plug()

    async def body(trydan):
        return await trydan.get_data()

    data = pytrydan_run(emu, body)
    assert data.charge_state == ChargeState.CONNECTED_CHARGING
    assert data.charge_power == pytest.approx(3 * 16 * 230)
    assert data.house_power == 1500 and data.fv_power == 2200
    assert data.intensity == 16 and data.min_intensity == 6 and data.max_intensity == 32
    assert data.firmware_version == "2.5.1"
    assert data.ID == "EMU0000001"
    raw = json.loads(http_get(emu, "/RealTimeData")[1])
    for key in (
        "ID ChargeState ReadyState ChargePower ChargeEnergy SlaveError ChargeTime HousePower FVPower "
        "BatteryPower Paused Locked Timer Intensity Dynamic MinIntensity MaxIntensity PauseDynamic "
        "DynamicPowerMode ContractedPower FirmwareVersion SSID IP SignalStatus VoltageInstallation "
        "IntensityMeasure_L1 IntensityMeasure_L2 IntensityMeasure_L3 "
        "VoltageMeasure_L1 VoltageMeasure_L2 VoltageMeasure_L3"
    ).split():
        assert key in raw, key
    assert raw["IntensityMeasure_L1"] == 16.0


def test_old_firmware_has_no_phase_measurements():
    with TrydanEmulator(firmware="2.4.6", response_delay_s=0) as emulator:
        raw = json.loads(http_get(emulator, "/RealTimeData")[1])
        assert "IntensityMeasure_L1" not in raw and "VoltageMeasure_L3" not in raw

        async def body(trydan):
            return await trydan.get_data()

        assert pytrydan_run(emulator, body).firmware_version == "2.4.6"


def test_pytrydan_controls_follow(emu):
    emu.plug()

    async def body(trydan):
        await trydan.intensity(10)
        assert emu.setting("Intensity") == 10
        assert emu.drawn_current_ma() == [10000, 10000, 10000]

        await trydan.pause()
        data = await trydan.get_data()
        assert data.paused == 1
        # The real box keeps ChargeState 2 after a pause.
        assert data.charge_state == ChargeState.CONNECTED_CHARGING
        assert data.charge_power == 0
        assert emu.drawn_current_ma() == [0, 0, 0]

        await trydan.resume()
        assert emu.drawn_current_ma() == [10000, 10000, 10000]

        await trydan.lock()
        data = await trydan.get_data()
        assert data.locked == 1 and data.charge_state == ChargeState.CONNECTED_NOT_CHARGING
        assert emu.drawn_current_ma() == [0, 0, 0]
        await trydan.unlock()
        assert (await trydan.get_data()).charge_state == ChargeState.CONNECTED_CHARGING

        await trydan.timer()
        await trydan.dynamic()
        await trydan.pause_dynamic()
        await trydan.dynamic_power_mode(DynamicPowerMode.TIMED_POWER_DISABLED_AND_GRID_FV_MODE_SETTED)
        await trydan.contracted_power(4600)
        await trydan.min_intensity(8)
        await trydan.max_intensity(20)
        data = await trydan.get_data()
        assert (data.timer, data.dynamic, data.pause_dynamic) == (1, 1, 1)
        assert data.dynamic_power_mode == 4
        assert data.contracted_power == 4600
        assert (data.min_intensity, data.max_intensity) == (8, 20)

        await trydan.timer_disable()
        await trydan.dynamic_disable()
        await trydan.resume_dynamic()
        data = await trydan.get_data()
        assert (data.timer, data.dynamic, data.pause_dynamic) == (0, 0, 0)

    pytrydan_run(emu, body)
    keys = [record.key for record in emu.writes()]
    assert keys[:3] == ["Intensity", "Paused", "Paused"]
    assert all(record.ok for record in emu.writes())


def test_refused_writes_change_nothing(emu):
    async def body(trydan):
        # pytrydan lets read-only keywords through; the box refuses them.
        with pytest.raises(TrydanInvalidValue):
            await trydan.set_keyword("ChargeTime", 5)
        await trydan.max_intensity(12)
        with pytest.raises(TrydanInvalidValue):
            await trydan.intensity(16)  # inside 6-32 but above MaxIntensity
        with pytest.raises(TrydanInvalidValue):
            await trydan.min_intensity(14)  # above MaxIntensity

    pytrydan_run(emu, body)
    assert emu.setting("Intensity") == 12  # lowered with MaxIntensity
    assert emu.setting("MinIntensity") == 6
    for path in (
        "/write/Nope=1",
        "/write/Paused=2",
        "/write/Paused=x",
        "/write/Paused",
        "/write/Intensity=5",
        "/write/Intensity=33",
        "/write/Intensity=1.5",
        "/write/DynamicPowerMode=6",
        "/write/ContractedPower=0",
        "/write/ChargeMode=3",
    ):
        assert http_get(emu, path) == (200, b"ERROR"), path
    assert http_get(emu, "/write/Paused=1") == (200, b"OK")
    refused = [record for record in emu.writes() if not record.ok]
    assert [r.reason for r in refused][:3] == ["unknown key", "value out of range", "value out of range"]
    assert http_get(emu, "/nothing")[0] == 404


def test_refused_write_status_can_be_an_http_error():
    with TrydanEmulator(write_error_status=400) as emulator:
        assert http_get(emulator, "/write/Nope=1") == (400, b"ERROR")


def test_read_single_key(emu):
    assert http_get(emu, "/read/Intensity") == (200, b"16")
    assert http_get(emu, "/read/Nope") == (200, b"ERROR")


def test_failure_modes(emu):
    async def body(trydan):
        emu.set_mode("garbage")
        # pytrydan 0.8.1 logs invalid JSON with a broken format string, which
        # pytest's log capture turns into a TypeError: silence its logger here.
        logger = logging.getLogger("pytrydan.trydan")
        logger.disabled = True
        try:
            with pytest.raises(TrydanInvalidResponse):
                await trydan.get_data()
        finally:
            logger.disabled = False
        with pytest.raises(TrydanInvalidValue):
            await trydan.intensity(10)
        emu.set_mode("error")
        with pytest.raises(TrydanInvalidResponse):
            await trydan.get_data()
        emu.set_mode("normal")
        assert (await trydan.get_data()).intensity == 16

    pytrydan_run(emu, body)
    emu.set_mode("hang")
    start = time.monotonic()
    with pytest.raises(OSError):  # socket.timeout / TimeoutError
        http_get(emu, "/RealTimeData", timeout=0.3)
    assert time.monotonic() - start < 2
    emu.set_mode("normal")
    assert http_get(emu, "/RealTimeData")[0] == 200
    with pytest.raises(ValueError):
        emu.set_mode("sleepy")


def test_stop_releases_hung_connections():
    emulator = TrydanEmulator().start()
    emulator.set_mode("hang")
    import socket

    sock = socket.create_connection(("127.0.0.1", emulator.port), timeout=2)
    sock.sendall(b"GET /RealTimeData HTTP/1.0\r\n\r\n")
    # Stop while the request is really held, not before it arrived.
    assert wait_for(emulator.hung_requests, 10)
    start = time.monotonic()
    emulator.stop()
    assert time.monotonic() - start < 2
    assert sock.recv(100) == b""  # closed without an answer
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", emulator.port), timeout=0.5)


# -- the vehicle model ----------------------------------------------------------


def test_states_plug_charge_unplug(emu):
    assert emu.charge_state() == 0
    emu.plug(demand=False)
    assert emu.charge_state() == 1
    assert emu.realtime()["ReadyState"] == 1
    emu.set_car(demand=True)
    assert emu.charge_state() == 2
    assert emu.realtime()["ReadyState"] == 0
    emu.write("Paused", "1")
    assert emu.charge_state() == 2  # the quirk
    emu.unplug()
    assert emu.charge_state() == 0
    # Paused stays set across sessions; paused before it ever charged in
    # this session, the box just says connected.
    emu.plug()
    assert emu.charge_state() == 1
    emu.write("Paused", "0")
    assert emu.charge_state() == 2


def test_response_delay_and_car_cap():
    clock = FakeClock()
    emulator = TrydanEmulator(response_delay_s=2.0, clock=clock)
    emulator.plug(car_max_ma=13000)
    assert emulator.drawn_current_ma() == [0, 0, 0]
    clock.t += 2.0
    assert emulator.drawn_current_ma() == [13000, 13000, 13000]  # the car's own cap
    assert emulator.write("Intensity", "8") == (True, "")
    clock.t += 1.9
    assert emulator.drawn_current_ma() == [13000, 13000, 13000]
    clock.t += 0.1
    assert emulator.drawn_current_ma() == [8000, 8000, 8000]
    # A second change before the first took effect restarts the delay from the current draw.
    emulator.write("Intensity", "16")
    clock.t += 1.0
    emulator.write("Intensity", "6")
    clock.t += 1.5
    assert emulator.drawn_current_ma() == [8000, 8000, 8000]
    clock.t += 0.5
    assert emulator.drawn_current_ma() == [6000, 6000, 6000]
    emulator.unplug()
    assert emulator.drawn_current_ma() == [0, 0, 0]


def test_phases():
    emulator = TrydanEmulator(response_delay_s=0)
    emulator.plug(car_phases=1)
    assert emulator.drawn_current_ma() == [16000, 0, 0]
    emulator.set_car(phases=3)
    assert emulator.drawn_current_ma() == [16000, 16000, 16000]
    emulator.write("ChargeMode", "0")
    assert emulator.phases_in_use() == 1
    assert emulator.drawn_current_ma() == [16000, 0, 0]
    single = TrydanEmulator(phases=1, response_delay_s=0)
    single.plug()
    assert single.drawn_current_ma() == [16000, 0, 0]
    assert single.realtime()["VoltageMeasure_L2"] == 0.0


def test_energy_and_charge_time():
    clock = FakeClock()
    emulator = TrydanEmulator(response_delay_s=0, clock=clock)
    emulator.plug()
    clock.t += 3600
    data = emulator.realtime()
    assert data["ChargeEnergy"] == pytest.approx(3 * 16 * 230 / 1000, abs=0.001)
    assert data["ChargeTime"] == 3600
    emulator.write("Paused", "1")
    clock.t += 600
    assert emulator.realtime()["ChargeTime"] == 3600
    emulator.unplug()
    emulator.plug()
    assert emulator.realtime()["ChargeEnergy"] == 0


def test_box_dynamic_control_until_pause_dynamic():
    emulator = TrydanEmulator(response_delay_s=0, contracted_power_w=6900)
    emulator.set_site(house_w=3450)  # 3450 W left = 5 A per phase: below the 6 A minimum
    emulator.plug()
    emulator.write("Dynamic", "1")
    assert emulator.drawn_current_ma() == [6000, 6000, 6000]
    emulator.set_site(house_w=0)  # 10 A per phase
    assert emulator.drawn_current_ma() == [10000, 10000, 10000]
    emulator.write("PauseDynamic", "1")
    assert emulator.drawn_current_ma() == [16000, 16000, 16000]


def test_write_log_is_timestamped_and_bounded(emu):
    before = time.monotonic_ns()
    assert http_get(emu, "/write/Intensity=12") == (200, b"OK")
    after = time.monotonic_ns()
    (record,) = emu.writes()
    assert before <= record.t_ns <= after
    assert (record.key, record.value, record.ok) == ("Intensity", "12", True)
    for _ in range(trydan_emulator.WRITE_LOG_MAX + 5):
        emu.write("Paused", "0")
    assert len(emu.writes()) == trydan_emulator.WRITE_LOG_MAX
    emu.clear_writes()
    assert emu.writes() == []


# -- the firmware driver against the emulator -----------------------------------


def driver_run(emulator, body, timeout_ms=CHARGER_TIMEOUT_MS):
    async def main():
        driver = V2CTrydan("127.0.0.1", emulator.port, timeout_ms=timeout_ms)
        return await body(driver)

    return asyncio.run(main())


def test_driver_plug_set_pause_resume(emu):
    async def body(driver):
        assert await driver.poll()
        assert driver.status.car == CAR_NONE
        emu.plug()
        assert await driver.poll()
        assert driver.status.car == CAR_CHARGING
        assert driver.status.current_ma == [16000, 16000, 16000]
        assert driver.status.offered_ma == 16000

        emu.clear_writes()
        assert await driver.apply(10700)
        assert emu.setting("Intensity") == 10
        assert emu.drawn_current_ma() == [10000, 10000, 10000]
        assert await driver.apply(10200)  # same 10 A: nothing sent
        assert len(emu.writes()) == 1

        assert await driver.apply(0)
        assert emu.setting("Paused") == 1
        assert await driver.poll()
        assert emu.charge_state() == 2  # the box still says "charging" ...
        assert driver.status.car == CAR_CONNECTED  # ... the driver knows better
        assert driver.status.offered_ma == 0

        assert await driver.apply(12000)
        assert [(r.key, r.value) for r in emu.writes()] == [
            ("Intensity", "10"),
            ("Paused", "1"),
            ("Intensity", "12"),
            ("Paused", "0"),
        ]
        assert await driver.poll()
        assert driver.status.car == CAR_CHARGING
        assert driver.status.current_ma == [12000, 12000, 12000]

        emu.unplug()
        assert await driver.poll()
        assert driver.status.car == CAR_NONE

    driver_run(emu, body)


def test_driver_clamps_to_emulated_limits(emu):
    emu.write("MaxIntensity", "20")
    emu.write("MinIntensity", "8")
    emu.plug()

    async def body(driver):
        assert await driver.poll()
        assert await driver.apply(40000)
        assert emu.setting("Intensity") == 20
        assert await driver.apply(7500)  # below the box minimum: pause, not 7 A
        assert emu.setting("Paused") == 1
        assert all(record.ok for record in emu.writes())

    driver_run(emu, body)


def test_driver_takes_over_from_dynamic_control(emu):
    emu.write("Dynamic", "1")
    emu.plug()
    emu.clear_writes()

    async def body(driver):
        assert await driver.poll()
        assert await driver.apply(9000)
        assert await driver.apply(8000)
        assert [(r.key, r.value) for r in emu.writes()] == [
            ("PauseDynamic", "1"),
            ("Intensity", "9"),
            ("Intensity", "8"),
        ]
        assert emu.drawn_current_ma() == [8000, 8000, 8000]

    driver_run(emu, body)


def test_driver_failure_modes(emu):
    async def body(driver):
        emu.set_mode("hang")
        start = time.monotonic()
        assert not await driver.poll()
        # Its own 400 ms deadline, not the firmware's default (CHARGER_TIMEOUT_MS)
        # nor the hang's: below the default, whatever a busy host adds to 400 ms.
        assert time.monotonic() - start < CHARGER_TIMEOUT_MS / 1000
        assert driver.status.error == "timeout" and not driver.status.reachable
        assert not await driver.apply(0)
        assert driver.status.error == "write Paused: timeout"
        # The short timeout was for the hang; answers get the firmware's own.
        driver.timeout_ms = CHARGER_TIMEOUT_MS

        emu.set_mode("garbage")
        assert not await driver.poll()
        assert driver.status.error == "invalid JSON"
        assert not await driver.apply(0)
        assert driver.status.error == "write Paused=1 refused"

        emu.set_mode("error")
        assert not await driver.poll()
        assert driver.status.error == "HTTP 500"

        emu.set_mode("normal")
        assert await driver.poll()
        assert driver.status.reachable and driver.status.error is None
        assert await driver.apply(0)
        assert emu.setting("Paused") == 1

    driver_run(emu, body, timeout_ms=400)


def test_driver_on_micropython_unix_port(emu):
    emu.plug()
    script = """
import asyncio
from chargeguard.chargers.v2c_trydan import V2CTrydan

async def main():
    d = V2CTrydan("127.0.0.1", %(port)d, timeout_ms=%(timeout_ms)d)
    print("poll", await d.poll(), d.status.car, d.status.current_ma, d.status.error)
    print("apply", await d.apply(9000), d.writes_sent)
    print("pause", await d.apply(0))
    print("poll", await d.poll(), d.status.car, d.status.offered_ma)

asyncio.run(main())
""" % {
        "port": emu.port,
        "timeout_ms": CHARGER_TIMEOUT_MS,  # the firmware's own: a loaded host must not fail it
    }
    lines = run_on_unix_port(script, 30)
    assert lines == [
        "poll True 3 [16000, 16000, 16000] None",
        "apply True 1",
        "pause True",
        "poll True 2 0",
    ], lines
    assert emu.setting("Intensity") == 9 and emu.setting("Paused") == 1
