# The go-e and OpenEVSE emulators checked with the real clients (goe, python-openevse-http),
# and the firmware drivers run against them on CPython and on the MicroPython unix port.
# CPython/pytest only: threads, subprocess, aiohttp.
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request

import aiohttp
import pytest
from goe.charger import GoEChargerClient
from goe.charger.enums import CarState, PhaseSwitchMode
from goe.json_client import LocalJsonClient
from openevsehttp.__main__ import OpenEVSE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from goe_emulator import GoeEmulator  # noqa: E402
from openevse_emulator import CLIENT_MANUAL, OpenEvseEmulator  # noqa: E402
from run import wait_for  # noqa: E402
from test_trydan_emulator import FakeClock, run_on_unix_port  # noqa: E402

from chargeguard.app import CHARGER_TIMEOUT_MS  # noqa: E402
from chargeguard.chargers.go_e import GoeCharger  # noqa: E402
from chargeguard.chargers.openevse import CLIENT_ID, OpenEvse  # noqa: E402
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE  # noqa: E402


@pytest.fixture
def goe_box():
    emulator = GoeEmulator(response_delay_s=0).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def evse():
    emulator = OpenEvseEmulator(response_delay_s=0).start()
    yield emulator
    emulator.stop()


def http(emulator, path, data=None, method=None):
    request = urllib.request.Request(emulator.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def driver_run(driver, body):
    return asyncio.run(body(driver))


# -- go-e: the emulator against the goe client -------------------------------


def goe_client(emulator):
    return GoEChargerClient(LocalJsonClient("127.0.0.1:%d" % emulator.port))


def test_goe_client_reads_every_component(goe_box):
    goe_box.plug(car_max_ma=32000, car_phases=3)
    client = goe_client(goe_box)
    status = client.get_status()
    assert status.car_state is CarState.Charging and status.allowed_to_charge_now
    assert status.allowed_current_now == 16
    assert status.energies.current.phase_1 == 16.0 and status.energies.current.phase_3 == 16.0
    assert status.energies.power_total == pytest.approx(3 * 230 * 16)
    assert status.number_of_phases == 3 and status.error is None
    config = client.get_config()
    assert config.phase_switch_mode is PhaseSwitchMode.Auto
    stats = client.get_stats()
    assert stats.energy_total_wh >= 0
    meta = client.get_meta()
    assert meta.serial_number == goe_box.device_id
    client.get_time()
    # The client's filter is URL-encoded ("car%2Cerr"): only those keys come back.
    answer = LocalJsonClient("127.0.0.1:%d" % goe_box.port).query(["car", "tcl", "nope"])
    assert answer == {"car": 2, "tcl": None}


def test_goe_set_tcl_limits_below_amp_and_lapses(goe_box):
    goe_box.tcl_timeout_s = 0.5
    goe_box.plug()
    client = goe_client(goe_box)
    assert http(goe_box, "/api/set?tcl=10") == (200, b'{"tcl": true}')
    assert client.get_status().allowed_current_now == 10
    assert goe_box.drawn_current_ma() == [10000, 10000, 10000]
    assert http(goe_box, "/api/set?tcl=20")[0] == 200
    assert client.get_status().allowed_current_now == 16  # tcl limits amp, never raises it
    assert goe_box.flash_writes == 0
    # Not renewed: dropped, the box back on the owner's amp.
    assert wait_for(lambda: goe_box.goe_setting("tcl") is None, 5.0)
    assert client.get_status().allowed_current_now == 16
    assert http(goe_box, "/api/set?amp=12")[0] == 200
    assert goe_box.flash_writes == 1


def test_goe_force_states_and_refusals(goe_box):
    goe_box.plug()
    client = goe_client(goe_box)
    assert http(goe_box, "/api/set?frc=1")[0] == 200
    status = client.get_status()
    assert status.car_state is CarState.WaitCar and not status.allowed_to_charge_now
    assert goe_box.drawn_current_ma() == [0, 0, 0]
    assert http(goe_box, "/api/set?frc=2")[0] == 200
    assert client.get_status().car_state is CarState.Charging
    for query in ("tcl=5", "tcl=33", "frc=3", "tcl=%2210%22", "nope=1", "tcl=abc"):
        code, body = http(goe_box, "/api/set?" + query)
        assert code == 400, query
        assert b"true" not in body
    assert goe_box.goe_setting("frc") == 2
    code, body = http(goe_box, "/api/set?tcl=8&frc=9")  # all or nothing
    assert code == 400 and goe_box.goe_setting("tcl") is None
    goe_box.set_car(demand=False)
    assert client.get_status().car_state is CarState.Complete
    goe_box.unplug()
    assert client.get_status().car_state is CarState.Idle


def test_goe_failure_modes(goe_box):
    goe_box.set_mode("garbage")
    assert http(goe_box, "/api/status")[1].startswith(b'{"ID"')
    goe_box.set_mode("error")
    assert http(goe_box, "/api/status")[0] == 500
    goe_box.set_mode("normal")
    assert http(goe_box, "/api/status")[0] == 200


# -- go-e: the firmware driver against the emulator --------------------------


def test_goe_driver_plug_set_pause_resume_never_writes_amp(goe_box):
    async def body(driver):
        assert await driver.poll()
        assert driver.status.car == CAR_NONE
        goe_box.plug()
        assert await driver.poll()
        assert driver.status.car == CAR_CHARGING and driver.status.current_ma == [16000, 16000, 16000]
        assert await driver.apply(9900)
        assert goe_box.goe_setting("tcl") == 9 and goe_box.drawn_current_ma() == [9000] * 3
        assert await driver.poll()
        assert driver.status.offered_ma == 9000 and driver.status.power_w == 3 * 230 * 9
        assert await driver.apply(0)
        assert goe_box.goe_setting("frc") == 1 and goe_box.drawn_current_ma() == [0, 0, 0]
        assert await driver.poll()
        assert driver.status.car == CAR_CONNECTED and driver.status.offered_ma == 0
        assert await driver.apply(12000)
        assert goe_box.goe_setting("frc") == 2 and goe_box.goe_setting("tcl") == 12
        keys = [record.key for record in goe_box.writes()]
        assert keys == ["tcl", "frc", "frc", "tcl", "frc"]
        assert goe_box.flash_writes == 0

    driver_run(GoeCharger("127.0.0.1", goe_box.port, CHARGER_TIMEOUT_MS), body)


def test_goe_driver_keeps_tcl_alive(goe_box):
    # The box drops tcl after its timeout (shortened here); the driver's renewal
    # (TCL_RENEW_MS, 4 of the box's 10 minutes) is run on a fake clock.
    from chargeguard.chargers.go_e import TCL_RENEW_MS

    goe_box.plug()
    clock = FakeClock()
    clock.t = 0

    async def body(driver):
        assert await driver.apply(10000)
        writes = len(goe_box.writes())
        clock.t += TCL_RENEW_MS
        assert await driver.apply(10000)
        assert [r.key for r in goe_box.writes()[writes:]] == ["tcl"]
        goe_box.tcl_timeout_s = 0.2
        assert http(goe_box, "/api/set?tcl=10")[0] == 200  # restart the box's timer with the short timeout
        assert wait_for(lambda: goe_box.goe_setting("tcl") is None, 5.0)
        assert await driver.poll()
        assert driver.status.offered_ma == 16000  # the box fell back to the owner's amp
        assert await driver.apply(10000)
        assert goe_box.goe_setting("tcl") == 10

    driver_run(GoeCharger("127.0.0.1", goe_box.port, CHARGER_TIMEOUT_MS, clock=lambda: int(clock.t)), body)


def test_goe_driver_failure_modes(goe_box):
    async def body(driver):
        goe_box.set_mode("hang")
        assert not await driver.poll()
        assert driver.status.error == "timeout" and not driver.status.reachable
        driver.timeout_ms = CHARGER_TIMEOUT_MS
        goe_box.set_mode("garbage")
        assert not await driver.poll()
        assert driver.status.error == "invalid JSON"
        assert not await driver.apply(0)
        assert driver.status.error == "write frc=1 refused"
        goe_box.set_mode("error")
        assert not await driver.poll()
        assert driver.status.error == "HTTP 500"
        goe_box.set_mode("normal")
        assert await driver.poll() and driver.status.error is None
        assert await driver.apply(0)
        assert goe_box.goe_setting("frc") == 1

    driver_run(GoeCharger("127.0.0.1", goe_box.port, 400), body)


# -- OpenEVSE: the emulator against python-openevse-http ----------------------


def openevse_run(emulator, body):
    async def main():
        async with aiohttp.ClientSession() as session:
            client = OpenEVSE("127.0.0.1:%d" % emulator.port, session=session)
            await client.update()
            return await body(client)

    return asyncio.run(main())


def test_openevse_client_reads_status_and_config(evse):
    evse.plug(car_max_ma=32000, car_phases=1)

    async def body(client):
        assert client.state == "charging" and client.status == "active"
        assert client.charging_current == 32000 and client.current_capacity == 32
        assert client.vehicle == 1 and client.max_current_soft == 32
        assert client.charging_voltage == 230
        assert client.usage_session is not None and client.charge_time_elapsed is not None
        assert client.manual_override == 0
        assert await client.async_charge_current == 32
        evse.unplug()
        await client.update()
        assert client.state == "not connected" and client.vehicle == 0

    openevse_run(evse, body)


def test_openevse_claims_priorities_and_max_current(evse):
    evse.plug(car_max_ma=32000, car_phases=1)

    async def body(client):
        assert await client.make_claim(state="active", charge_current=10, max_current=10, auto_release=False,
                                       client=CLIENT_ID) == {"msg": "done"}
        await client.update()
        assert client.current_capacity == 10 and client.charging_current == 10000
        claims = await client.list_claims()
        assert claims == [{"state": "active", "charge_current": 10, "max_current": 10, "auto_release": False,
                           "client": CLIENT_ID, "priority": 500}]
        assert await client.async_charge_current == 10
        # The owner's manual override (priority 1000) wins the current, but
        # max_current caps it whatever the priority.
        await client.set_current(20)
        await client.update()
        assert client.manual_override == 1 and client.current_capacity == 10
        # A pause claim wins over an override that sets no state.
        await client.make_claim(state="disabled", max_current=6, auto_release=False, client=CLIENT_ID)
        await client.update()
        assert client.state == "sleeping" and client.charging_current == 0
        # An override that sets the state wins over ours (1000 > 500): the box
        # charges again, at max_current 6.
        await client.set_override(state="active")
        await client.update()
        assert client.state == "charging" and client.current_capacity == 6
        await client.clear_override()
        await client.release_claim(client=CLIENT_ID)
        await client.update()
        assert client.state == "charging" and client.current_capacity == 32
        assert await client.list_claims() == []

    openevse_run(evse, body)


def test_openevse_claims_live_in_ram_and_bad_claims_are_refused(evse):
    assert http(evse, "/claims/%d" % CLIENT_ID, b'{"state":"disabled"}', "POST") == (200, b'{"msg": "done"}')
    assert evse.evse_state() == 254
    evse.reboot()
    assert evse.evse_state() == 1
    for body in (b"nope", b"[1]", b'{"state":"on"}', b'{"charge_current":"10"}'):
        assert http(evse, "/claims/%d" % CLIENT_ID, body, "POST")[0] == 400, body
    assert evse.claim_of(CLIENT_ID) is None
    assert http(evse, "/claims/abc", b"{}", "POST")[0] == 404
    assert http(evse, "/claims/%d" % CLIENT_ID, method="DELETE")[0] == 404
    # auto_release claims end with the session, the others stay.
    evse.plug()
    evse.claim(CLIENT_ID, 500, {"state": "active", "max_current": 8, "auto_release": False})
    evse.claim(CLIENT_MANUAL, 1000, {"charge_current": 12, "auto_release": True})
    evse.unplug()
    assert evse.claim_of(CLIENT_MANUAL) is None and evse.claim_of(CLIENT_ID) is not None


# -- OpenEVSE: the firmware driver against the emulator -----------------------


def test_openevse_driver_plug_set_pause_resume(evse):
    async def body(driver):
        assert await driver.poll()
        assert driver.status.car == CAR_NONE
        evse.plug(car_max_ma=32000, car_phases=1)
        assert await driver.poll()
        assert driver.status.car == CAR_CHARGING and driver.status.current_ma == [32000, None, None]
        assert await driver.apply(9900)
        assert evse.pilot_a() == 9 and evse.drawn_current_ma()[0] == 9000
        assert await driver.poll() and driver.status.offered_ma == 9000 and driver.status.error is None
        assert await driver.apply(0)
        assert evse.evse_state() == 254 and evse.drawn_current_ma() == [0, 0, 0]
        assert await driver.poll()
        assert driver.status.car == CAR_CONNECTED and driver.status.offered_ma == 0 and driver.status.error is None
        assert await driver.apply(12000)
        assert evse.evse_state() == 3 and evse.pilot_a() == 12
        assert evse.claim_of(CLIENT_ID) == {"state": "active", "charge_current": 12, "max_current": 12, "auto_release": False}
        # A reboot loses the claim: the next poll sees more offered, the next apply claims again.
        evse.reboot()
        assert await driver.poll() and driver.status.error == "overridden on the box"
        assert await driver.apply(12000)
        assert evse.pilot_a() == 12

    driver_run(OpenEvse("127.0.0.1", evse.port, CHARGER_TIMEOUT_MS), body)


def test_openevse_driver_failure_modes(evse):
    async def body(driver):
        evse.set_mode("hang")
        assert not await driver.poll()
        assert driver.status.error == "timeout" and not driver.status.reachable
        driver.timeout_ms = CHARGER_TIMEOUT_MS
        evse.set_mode("garbage")
        assert not await driver.poll()
        assert driver.status.error == "invalid JSON"
        assert not await driver.apply(0)
        assert driver.status.error == "claim refused"
        evse.set_mode("error")
        assert not await driver.poll()
        assert driver.status.error == "HTTP 500"
        evse.set_mode("normal")
        assert await driver.poll() and driver.status.error is None
        assert await driver.apply(0)
        assert evse.evse_state() == 254

    driver_run(OpenEvse("127.0.0.1", evse.port, 400), body)


def test_refusing_boxes():
    goe_box = GoeEmulator().start()
    evse = OpenEvseEmulator().start()
    ports = goe_box.port, evse.port
    goe_box.stop()
    evse.stop()

    async def body(_):
        a = GoeCharger("127.0.0.1", ports[0], CHARGER_TIMEOUT_MS)
        b = OpenEvse("127.0.0.1", ports[1], CHARGER_TIMEOUT_MS)
        assert not await a.poll() and a.status.error == "connection refused"
        assert not await b.poll() and b.status.error == "connection refused"

    asyncio.run(body(None))


def test_drivers_on_micropython_unix_port(goe_box, evse):
    goe_box.plug()
    evse.plug(car_phases=1)
    script = """
import asyncio
from chargeguard.chargers.go_e import GoeCharger
from chargeguard.chargers.openevse import OpenEvse

async def main():
    for d in (GoeCharger("127.0.0.1", %(goe)d, %(timeout_ms)d), OpenEvse("127.0.0.1", %(evse)d, %(timeout_ms)d)):
        print("poll", await d.poll(), d.status.car, d.status.current_ma, d.status.error)
        print("apply", await d.apply(9000))
        print("pause", await d.apply(0))
        print("poll", await d.poll(), d.status.car, d.status.offered_ma, d.status.error)

asyncio.run(main())
""" % {
        "goe": goe_box.port,
        "evse": evse.port,
        "timeout_ms": CHARGER_TIMEOUT_MS,
    }
    lines = run_on_unix_port(script, 60)
    assert lines == [
        "poll True 3 [16000, 16000, 16000] None",
        "apply True",
        "pause True",
        "poll True 2 0 None",
        "poll True 3 [32000, None, None] None",
        "apply True",
        "pause True",
        "poll True 2 0 None",
    ], lines
    assert goe_box.goe_setting("tcl") == 9 and goe_box.goe_setting("frc") == 1 and goe_box.flash_writes == 0
    assert evse.evse_state() == 254
    assert json.loads(json.dumps(evse.claim_of(CLIENT_ID))) == {"state": "disabled", "max_current": 6, "auto_release": False}
