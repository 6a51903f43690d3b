# The KEBA P30 emulator (tools/sim/keba_emulator.py) checked against the real
# client keba-kecontact 4.3.1, and the firmware's driver (chargers/keba.py)
# against the emulator over real UDP on 127.0.0.1, including hung, refusing
# and garbage-answering boxes. CPython / pytest only.
#
# The real box answers to port 7090 of the sender and the client binds 7090
# itself; both on 127.0.0.1 cannot share one port, so the tests move each
# side to a free port of its own: the emulator replies to the client's port
# (reply_port), and the client's module constant UDP_PORT is set to its bind
# port while it binds and to the emulator's port after.
import asyncio
import os
import socket
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware")):
    if path not in sys.path:
        sys.path.insert(0, path)

from keba_emulator import KebaEmulator  # noqa: E402
from ports import free_port  # noqa: E402

from chargeguard.chargers import keba  # noqa: E402
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE  # noqa: E402
from chargeguard.platform import unix  # noqa: E402

TIMEOUT_MS = 1000
# A poll is two requests, each two attempts at most, and the gaps.
POLL_S = 2 * (2 * TIMEOUT_MS / 1000 + 0.2)
HOST_SLACK_S = 2.0


def wait_for(condition, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def box():
    emulator = KebaEmulator(response_delay_s=0).start()
    emulator.plug()
    yield emulator
    emulator.stop()


def test_emulator_with_the_real_keba_kecontact_client(box):
    from keba_kecontact import connection
    from keba_kecontact.connection import KebaKeContact

    client_port = free_port(socket.SOCK_DGRAM)
    box.reply_port = client_port

    async def scenario():
        loop = asyncio.get_running_loop()
        connection.SingletonMeta._instance = None
        kc = KebaKeContact(loop, timeout=3)
        connection.UDP_PORT = client_port
        await kc.init_socket("127.0.0.1")
        connection.UDP_PORT = box.port
        try:
            station = await kc.setup_charging_station("127.0.0.1", periodic_request=False)
            assert station.device_info.model == "P30" and station.device_info.is_meter_integrated()
            await station.request_data()
            # The reports come back over UDP: wait for them (the client's own 3 s timeout bounds it).
            await until(lambda: station.get_value("State") == 3 and station.get_value("I1") == 32.0)
            assert station.get_value("State") == 3 and station.get_value("Plug_EV") is True
            assert station.get_value("Max curr") == 32.0 and station.get_value("I1") == 32.0
            await station.set_failsafe(True, 30, 6.0)
            await station.set_current(10)  # currtime 10000 1
            await station.disable()
            await until(lambda: box.enable_user == 0 and box.fs_timeout_s == 30)
            assert box.fs_timeout_s == 30 and box.fs_curr_ma == 6000
            assert box.curr_user_ma == 10000 and box.enable_user == 0
            await station.enable()
            await station.set_current_max_permanent(12)
            await station.request_data()
            await until(lambda: box.curr_user_ma == 12000 and station.get_value("Max curr") == 12.0)
            assert box.curr_user_ma == 12000 and station.get_value("Max curr") == 12.0
            assert station.get_value("Tmo FS") == 30 and station.get_value("FS_on") is True
        finally:
            kc.close()
            connection.UDP_PORT = 7090
            connection.SingletonMeta._instance = None

    asyncio.run(scenario())
    assert [text for _, text in box.commands][:1] == ["report 1"]


async def until(condition, deadline_s=3.0):
    """Yield to the loop until condition() holds or deadline_s (the keba client's timeout) passes."""
    end = time.monotonic() + deadline_s
    while not condition() and time.monotonic() < end:
        await asyncio.sleep(0.01)


def make_driver(box, failsafe_a=0):
    keba._link[0] = None
    platform = unix.Platform({"rs485_device": None})
    driver = keba.KebaP30("127.0.0.1", box.port, platform, TIMEOUT_MS, failsafe_a, local_port=0)
    box.reply_port = driver.link.port()
    return driver


def close(driver):
    driver.link.sock.close()
    keba._link[0] = None


def test_driver_commands_the_emulator_and_its_failsafe_takes_over_when_silent(box):
    driver = make_driver(box, failsafe_a=0)

    async def scenario():
        assert await driver.poll(), driver.status.error
        assert driver.status.car == CAR_CHARGING and driver.status.offered_ma == 32000
        assert await driver.apply(10500)
        assert box.curr_user_ma == 10000 and box.fs_timeout_s == keba.FAILSAFE_S and box.fs_curr_ma == 0
        assert await driver.poll()
        assert driver.status.offered_ma == 10000 and driver.status.current_ma == [10000] * 3
        assert await driver.apply(0)
        assert box.enable_user == 0
        assert await driver.poll()
        assert driver.status.car == CAR_CONNECTED and driver.status.offered_ma == 0
        assert await driver.apply(16000)
        box.unplug()
        assert await driver.poll()
        assert driver.status.car == CAR_NONE

    try:
        asyncio.run(scenario())
    finally:
        close(driver)
    # ChargeGuard silent: after the failsafe timeout the box stops by itself (failsafe_a 0).
    box.plug()
    box.fs_timeout_s = 1  # the same rule, shortened for the test
    assert wait_for(lambda: box.max_curr_ma() == 0 and box.drawn_current_ma() == [0] * 3, 1 + HOST_SLACK_S)


@pytest.mark.parametrize("mode", ("hang", "garbage", "error", "refuse"))
def test_a_failing_box_fails_in_words_within_the_deadline(box, mode):
    driver = make_driver(box)
    words = {"hang": "no answer", "garbage": "invalid JSON", "error": "refused", "refuse": "network error"}[mode]

    async def scenario():
        assert await driver.poll(), driver.status.error
        if mode == "refuse":
            box.stop()
        else:
            box.set_mode(mode)
        start = time.monotonic()
        ok = await driver.poll()
        if mode == "error":
            assert ok  # reports still answered; the commands are refused
            assert not await driver.apply(10000)
        else:
            assert not ok and not driver.status.reachable
        assert words in driver.status.error, driver.status.error
        assert time.monotonic() - start < POLL_S + HOST_SLACK_S

    try:
        asyncio.run(scenario())
    finally:
        close(driver)
