# OpenEVSE driver (claims) against a scripted fake box on 127.0.0.1 (both runtimes).
import json

import asyncio

from chargeguard.chargers.openevse import CLAIM_PATH, CLIENT_ID, OpenEvse
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN
from httpfake import HANG, HOST, Clock, FakeServer, elapsed_ms, now_ms, reply, with_driver

# /status of a charging box (firmware 4.x keys; amp in mA, pilot in A).
STATUS = {
    "mode": "STA",
    "wifi_client_connected": 1,
    "ipaddress": "192.0.2.20",
    "amp": 15960,
    "voltage": 230,
    "pilot": 16,
    "wh": 64582,
    "temp": 503,
    "temp1": False,
    "state": 3,
    "vehicle": 1,
    "colour": 6,
    "manual_override": 0,
    "divertmode": 1,
    "srssi": -61,
    "elapsed": 246,
    "wattsec": 992549,
    "watthour": 275,
    "session_energy": 275.7,
    "ota_update": 0,
    "time": "2021-08-10T23:00:11Z",
    "total_energy": 12345.6,
    "has_limit": False,
    "claims_version": 3,
}


class FakeEvse:
    def __init__(self, **fields):
        self.data = dict(STATUS)
        self.data.update(fields)
        self.claims = []  # (path, body dict) of every POST
        self.read_steps = None
        self.claim_steps = None
        self.drop = ()

    def handler(self, method, path, body):
        if path == "/status" and method == "GET":
            if self.read_steps is not None:
                return self.read_steps
            data = {}
            for key in self.data:
                if key not in self.drop:
                    data[key] = self.data[key]
            return [reply(200, json.dumps(data))]
        if path.startswith("/claims/") and method == "POST":
            claim = json.loads(body)
            self.claims.append((path, claim))
            if self.claim_steps is not None:
                return self.claim_steps
            if claim["state"] == "disabled":
                self.data.update(state=254, pilot=claim["max_current"])
            else:
                self.data.update(state=3, pilot=claim["charge_current"])
            return [reply(200, b'{"msg":"done"}')]
        return [reply(404, b'{"msg":"Not found"}')]


def with_box(box, check, timeout_ms=1000, phases=1):
    with_driver(box.handler, lambda port: OpenEvse(HOST, port, timeout_ms=timeout_ms, phases=phases, clock=Clock()),
                check)


def test_status_mapping():
    box = FakeEvse()

    async def check(driver):
        driver._clock.ms = 31
        assert await driver.poll()
        s = driver.status
        assert s.reachable and s.error is None and s.tick_ms == 31
        assert s.car == CAR_CHARGING
        assert s.current_ma == [15960, None, None]  # one phase configured
        assert s.power_w == 3670  # no "power" key: 230 V x 15.96 A
        assert s.session_energy_wh == 276
        assert s.session_s == 246
        assert s.offered_ma == 16000

    with_box(box, check)

    box3 = FakeEvse(power=11000)

    async def check3(driver):
        assert await driver.poll()
        assert driver.status.current_ma == [15960, 15960, 15960]
        assert driver.status.power_w == 11000

    with_box(box3, check3, phases=3)


def test_states():
    cases = (
        ({"state": 1, "vehicle": 0}, CAR_NONE, None, 16000),
        ({"state": 2}, CAR_CONNECTED, None, 16000),
        ({"state": 254, "vehicle": 1}, CAR_CONNECTED, None, 0),
        ({"state": 255, "vehicle": 0}, CAR_NONE, None, 0),
        ({"state": 254, "vehicle": True}, CAR_CONNECTED, None, 0),
        ({"state": 0}, CAR_UNKNOWN, "state 0", 16000),
        ({"state": 6}, CAR_UNKNOWN, "state 6", 16000),
        ({"state": 11}, CAR_UNKNOWN, "state 11", 16000),
    )
    for fields, car, error, offered in cases:
        box = FakeEvse(**fields)

        async def check(driver):
            assert await driver.poll()
            assert driver.status.car == car, fields
            assert driver.status.error == error, (fields, driver.status.error)
            assert driver.status.offered_ma == offered, fields

        with_box(box, check)
    box = FakeEvse(state=254)
    box.drop = ("vehicle",)

    async def check_unknown(driver):
        assert await driver.poll()
        assert driver.status.car == CAR_UNKNOWN and driver.status.error is None

    with_box(box, check_unknown)


def test_a_charging_car_never_looks_idle():
    # amp below 1 A while charging (a box that reports A, not mA): unknown,
    # so the guard counts the offer instead of a near-zero draw.
    box = FakeEvse(amp=15.96)

    async def check(driver):
        assert await driver.poll()
        assert driver.status.current_ma == [None, None, None]
        box.data.update(state=2, amp=0)
        assert await driver.poll()
        assert driver.status.current_ma == [0, None, None]  # not charging: a real zero

    with_box(box, check)


def test_energy_from_wattsec_when_session_energy_is_missing():
    box = FakeEvse()
    box.drop = ("session_energy",)

    async def check(driver):
        assert await driver.poll()
        assert driver.status.session_energy_wh == 276  # 992549 Ws

    with_box(box, check)


def test_garbage_truncated_missing():
    box = FakeEvse()
    body = json.dumps(STATUS).encode()

    async def check(driver):
        for raw in [b"<html>", b"", b"[]"] + [body[:n] for n in range(0, len(body) - 1, 23)]:
            box.read_steps = [reply(200, raw)]
            driver.status.car = CAR_CHARGING
            assert not await driver.poll(), raw
            assert driver.status.error == "invalid JSON" and not driver.status.reachable
            assert driver.status.car == CAR_CHARGING
        for fields, error in (({"state": "3"}, "bad state"), ({"amp": [1]}, "bad amp"), ({"pilot": "16"}, "bad pilot"),
                              ({"vehicle": "yes"}, "bad vehicle"), ({"state": None}, "bad state")):
            data = dict(STATUS)
            data.update(fields)
            box.read_steps = [reply(200, json.dumps(data))]
            assert not await driver.poll()
            assert driver.status.error == error, (fields, driver.status.error)
        data = dict(STATUS)
        del data["state"]
        box.read_steps = [reply(200, json.dumps(data))]
        assert not await driver.poll() and driver.status.error == "bad state"
        box.read_steps = [reply(200, b'{"state":1,"x":"' + b"y" * 2100 + b'"}')]
        assert not await driver.poll() and driver.status.error == "long body"
        box.read_steps = [reply(401, b"Unauthorized")]
        assert not await driver.poll() and driver.status.error == "HTTP 401"
        box.read_steps = None
        assert await driver.poll() and driver.status.error is None

    with_box(box, check)


def test_hung_and_refusing_box():
    box = FakeEvse()
    box.read_steps = [HANG]

    async def check(driver):
        start = now_ms()
        assert not await driver.poll()
        assert 250 <= elapsed_ms(start) < 1000
        assert driver.status.error == "timeout"

    with_box(box, check, timeout_ms=300)

    async def main():
        server = await FakeServer(FakeEvse().handler).start()
        port = server.port
        await server.close()
        driver = OpenEvse(HOST, port, timeout_ms=500)
        assert not await driver.poll() and driver.status.error == "connection refused"
        assert not await driver.apply(10000) and driver.status.error == "claim: connection refused"

    asyncio.run(main())


def test_claims_are_encoded_as_documented_and_sent_once():
    box = FakeEvse()

    async def check(driver):
        assert CLAIM_PATH == "/claims/%d" % CLIENT_ID
        assert await driver.poll()
        assert await driver.apply(10999)
        assert box.claims == [
            (CLAIM_PATH, {"state": "active", "charge_current": 10, "max_current": 10, "auto_release": False})
        ]
        assert driver.status.offered_ma == 10000
        assert await driver.poll() and await driver.apply(10000)
        assert len(box.claims) == 1
        assert await driver.apply(5000)
        assert box.claims[1] == (CLAIM_PATH, {"state": "disabled", "max_current": 6, "auto_release": False})
        assert driver.status.offered_ma == 0
        assert await driver.poll() and driver.status.car == CAR_CONNECTED and driver.status.error is None
        assert await driver.apply(0)
        assert len(box.claims) == 2
        assert await driver.apply(99000)
        assert box.claims[2][1]["charge_current"] == 32

    with_box(box, check)


def test_a_box_that_does_not_follow_the_claim_gets_it_again():
    box = FakeEvse()

    async def check(driver):
        assert await driver.apply(10000)
        assert await driver.poll() and driver.status.error is None
        # Rebooted (claims are in RAM) or overridden: offering more.
        box.data.update(pilot=32)
        assert await driver.poll()
        assert driver.status.error == "overridden on the box"
        assert await driver.apply(10000)
        assert len(box.claims) == 2
        assert await driver.poll() and driver.status.error is None
        # Paused by us, running again.
        assert await driver.apply(0)
        box.data.update(state=3)
        assert await driver.poll() and driver.status.error == "overridden on the box"
        assert await driver.apply(0)
        assert box.claims[-1][1]["state"] == "disabled" and len(box.claims) == 4
        # The box's own lower limit (temperature, shaper) is no reason to claim again.
        assert await driver.apply(16000)
        box.data.update(pilot=12)
        assert await driver.poll() and driver.status.error is None
        assert await driver.apply(16000)
        assert len(box.claims) == 5

    with_box(box, check)


def test_refused_claims_and_lost_box():
    box = FakeEvse()

    async def check(driver):
        box.claim_steps = [reply(400, b'{"msg":"Could not make claim"}')]
        assert not await driver.apply(10000)
        assert driver.status.error == "claim: HTTP 400"
        box.claim_steps = [reply(200, b'{"msg":"nope"}')]
        assert not await driver.apply(10000)
        assert driver.status.error == "claim refused"
        box.claim_steps = None
        assert await driver.apply(10000)
        assert len(box.claims) == 3
        box.read_steps = [HANG]
        assert not await driver.poll()
        box.read_steps = None
        assert await driver.apply(10000)  # the box may have rebooted: claimed again
        assert len(box.claims) == 4

    with_box(box, check, timeout_ms=300)


def test_apply_never_raises():
    box = FakeEvse()

    async def check(driver):
        assert not await driver.apply(None)
        assert driver.status.error.startswith("driver: ")
        assert await driver.apply(16000)

    with_box(box, check)


def test_parsing_allocates_nothing():
    import gc

    import micropython
    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    box = FakeEvse()

    async def check(driver):
        assert await driver.poll()
        gen = driver._write_gen
        gc.collect()
        micropython.heap_lock()
        try:
            again = driver._take(gen)
        finally:
            micropython.heap_unlock()
        assert again and driver.status.current_ma[0] == 15960

    with_box(box, check)
