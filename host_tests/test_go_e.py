# go-e Charger (API v2) driver against a scripted fake box on 127.0.0.1 (both runtimes).
import json

import asyncio

from chargeguard.chargers.go_e import STATUS_PATH, TCL_RENEW_MS, GoeCharger
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN
from httpfake import HANG, HOST, Clock, FakeServer, elapsed_ms, now_ms, reply, with_driver

# A filtered /api/status answer of a box charging at 10 A on three phases.
STATUS = {
    "car": 2,
    "err": 0,
    "frc": 2,
    "amp": 16,
    "tcl": 10,
    "psm": 0,
    "nrg": [231.2, 230.1, 229.5, 0, 10.04, 9.96, 10.2, 2321.2, 2291.8, 2340.9, 0, 6953.9, 99, 99, 99, 0],
    "wh": 1234.56,
}


class FakeGoe:
    def __init__(self, **fields):
        self.data = dict(STATUS)
        self.data.update(fields)
        self.sets = []  # "key=value" of every /api/set
        self.paths = []
        self.read_steps = None
        self.set_steps = None
        self.drop = ()
        self.refuse = ()  # keys whose set is answered HTTP 400

    def handler(self, method, path, body):
        self.paths.append(path)
        if path.startswith("/api/status"):
            if self.read_steps is not None:
                return self.read_steps
            data = {}
            for key in self.data:
                if key not in self.drop:
                    data[key] = self.data[key]
            return [reply(200, json.dumps(data))]
        if path.startswith("/api/set?"):
            pair = path[9:]
            self.sets.append(pair)
            if self.set_steps is not None:
                return self.set_steps
            key, _, value = pair.partition("=")
            if key in self.refuse:
                return [reply(400, json.dumps({key: "key not found"}))]
            self.data[key] = json.loads(value)
            return [reply(200, json.dumps({key: True}))]
        return [reply(404, b"Not found")]


def with_box(box, check, timeout_ms=1000, phases=3):
    with_driver(box.handler, lambda port: GoeCharger(HOST, port, timeout_ms=timeout_ms, phases=phases, clock=Clock()),
                check)


def test_status_mapping_and_filter():
    box = FakeGoe()

    async def check(driver):
        driver._clock.ms = 777
        assert await driver.poll()
        assert box.paths == [STATUS_PATH]
        assert STATUS_PATH == "/api/status?filter=car,err,frc,amp,tcl,psm,nrg,wh"
        s = driver.status
        assert s.reachable and s.error is None and s.tick_ms == 777
        assert s.car == CAR_CHARGING
        assert s.current_ma == [10040, 9960, 10200]
        assert s.power_w == 6954
        assert s.session_energy_wh == 1235
        assert s.offered_ma == 10000  # min(amp 16, tcl 10)
        assert driver.phase_mode == 0

    with_box(box, check)


def test_car_states_and_box_errors():
    cases = (
        ({"car": 1}, CAR_NONE, None),
        ({"car": 3}, CAR_CONNECTED, None),
        ({"car": 4}, CAR_CONNECTED, None),
        ({"car": 0}, CAR_UNKNOWN, "car 0"),
        ({"car": 5}, CAR_UNKNOWN, "car 5"),
        ({"car": None}, CAR_UNKNOWN, "car None"),
        ({"err": 8}, CAR_CHARGING, "err 8"),
    )
    for fields, car, error in cases:
        box = FakeGoe(**fields)

        async def check(driver):
            assert await driver.poll()
            assert driver.status.reachable
            assert driver.status.car == car, fields
            assert driver.status.error == error, (fields, driver.status.error)

        with_box(box, check)


def test_forced_off_offers_nothing_and_tcl_above_amp_counts_as_amp():
    box = FakeGoe(frc=1, car=3)

    async def check(driver):
        assert await driver.poll()
        assert driver.status.offered_ma == 0 and driver.status.car == CAR_CONNECTED
        box.data.update(frc=0, tcl=20, amp=16)
        assert await driver.poll()
        assert driver.status.offered_ma == 16000
        box.data.update(tcl=None)
        assert await driver.poll()
        assert driver.status.offered_ma == 16000

    with_box(box, check)


def test_phase_mode_is_reported_and_a_box_on_more_phases_than_configured_is_an_error():
    box = FakeGoe(psm=2)

    async def check(driver):
        assert await driver.poll()
        assert driver.phase_mode == 2
        assert driver.status.error == "psm 2: box on 3 phases"
        box.data.update(psm=1)
        assert await driver.poll()
        assert driver.status.error is None and driver.phase_mode == 1

    with_box(box, check, phases=1)

    box2 = FakeGoe(psm=2)

    async def check3(driver):
        assert await driver.poll()
        assert driver.status.error is None  # three configured: forced three is right

    with_box(box2, check3, phases=3)

    box3 = FakeGoe()
    box3.drop = ("psm",)

    async def check_none(driver):
        assert await driver.poll()
        assert driver.phase_mode is None and driver.status.error is None

    with_box(box3, check_none)


def test_garbage_truncated_and_missing_keys():
    box = FakeGoe()
    body = json.dumps(STATUS).encode()

    async def check(driver):
        assert await driver.poll()
        raws = [b"\xff\xfe<html>", b"", b"[1]", b"null"] + [body[:n] for n in range(0, len(body) - 1, 7)]
        for raw in raws:
            box.read_steps = [reply(200, raw)]
            driver.status.car = CAR_CHARGING
            assert not await driver.poll(), raw
            assert not driver.status.reachable
            assert driver.status.error == "invalid JSON", (raw, driver.status.error)
        cases = (
            ({"frc": None}, "bad frc"),
            ({"amp": "16"}, "bad amp"),
            ({"nrg": [230, 230]}, "bad nrg"),
            ({"nrg": "x"}, "bad nrg"),
            ({"wh": "1.5"}, "bad wh"),
            ({"car": True}, "bad car"),
        )
        for fields, error in cases:
            data = dict(STATUS)
            data.update(fields)
            box.read_steps = [reply(200, json.dumps(data))]
            driver.status.car = CAR_CHARGING
            assert not await driver.poll()
            assert driver.status.error == error, (fields, driver.status.error)
            assert driver.status.car == CAR_CHARGING  # a bad answer changes nothing
        for key in ("frc", "amp"):
            data = dict(STATUS)
            del data[key]
            box.read_steps = [reply(200, json.dumps(data))]
            assert not await driver.poll()
            assert driver.status.error == "bad " + key
        # Optional keys may be missing (older firmware): unknown, not an error.
        box.read_steps = [reply(200, json.dumps({"car": 1, "frc": 0, "amp": 16}))]
        assert await driver.poll()
        assert driver.status.current_ma == [None, None, None] and driver.status.power_w is None
        box.read_steps = None
        assert await driver.poll() and driver.status.error is None

    with_box(box, check)


def test_http_error_oversize_and_hung_box():
    box = FakeGoe()

    async def check(driver):
        box.read_steps = [reply(500, b"oops")]
        assert not await driver.poll()
        assert driver.status.error == "HTTP 500"
        box.read_steps = [reply(200, b'{"car":2,"x":"' + b"y" * 1100 + b'"}')]
        assert not await driver.poll()
        assert driver.status.error == "long body"
        box.read_steps = [HANG]
        start = now_ms()
        assert not await driver.poll()
        assert 250 <= elapsed_ms(start) < 1000
        assert driver.status.error == "timeout" and not driver.status.reachable

    with_box(box, check, timeout_ms=300)


def test_refusing_box():
    async def main():
        server = await FakeServer(FakeGoe().handler).start()
        port = server.port
        await server.close()
        driver = GoeCharger(HOST, port, timeout_ms=500)
        assert not await driver.poll()
        assert driver.status.error == "connection refused"
        assert not await driver.apply(10000)
        assert driver.status.error == "write tcl: connection refused"

    asyncio.run(main())


def test_commands_use_tcl_and_frc_only_and_are_idempotent():
    box = FakeGoe(frc=0, tcl=None, car=3)

    async def check(driver):
        assert await driver.poll()
        assert await driver.apply(10999)
        assert box.sets == ["tcl=10", "frc=2"]  # the limit first, then on
        assert driver.status.offered_ma == 10000
        assert await driver.apply(10000)
        assert await driver.poll() and await driver.apply(10500)
        assert box.sets == ["tcl=10", "frc=2"]  # nothing the box already has
        assert await driver.apply(8000)
        assert box.sets[2:] == ["tcl=8"]
        assert await driver.apply(5999)  # below 6 A: off, the limit left as it is
        assert box.sets[3:] == ["frc=1"]
        assert driver.status.offered_ma == 0
        assert await driver.apply(0)
        assert box.sets[4:] == []
        assert await driver.apply(40000)  # at most 32 A, at most the owner's amp (16)
        assert box.sets[4:] == ["tcl=16", "frc=2"]
        assert driver.status.offered_ma == 16000
        for pair in box.sets:
            assert pair.split("=")[0] in ("tcl", "frc"), pair  # never amp: go-e keeps it in flash

    with_box(box, check)


def test_tcl_renewed_before_the_box_drops_it():
    box = FakeGoe(tcl=None)

    async def check(driver):
        assert await driver.poll()
        assert await driver.apply(10000)
        assert box.sets == ["tcl=10"]
        driver._clock.ms += TCL_RENEW_MS - 1
        assert await driver.apply(10000)
        assert box.sets == ["tcl=10"]
        driver._clock.ms += 1
        assert await driver.apply(10000)
        assert box.sets == ["tcl=10", "tcl=10"]
        assert TCL_RENEW_MS <= 5 * 60 * 1000  # well inside the box's 10 minutes
        # The box lost it (rebooted, lapsed): the next apply writes it again.
        box.data["tcl"] = None
        assert await driver.poll()
        assert driver.status.offered_ma == 16000
        assert await driver.apply(10000)
        assert box.sets[2:] == ["tcl=10"]

    with_box(box, check)


def test_refused_or_failed_writes_are_retried():
    box = FakeGoe(tcl=None, frc=0)

    async def check(driver):
        assert await driver.poll()
        box.set_steps = [reply(200, b'{"tcl":"value out of range"}')]
        assert not await driver.apply(10000)
        assert driver.status.error == "write tcl=10 refused"
        # No frc=2 without the limit; the box cannot be limited, so it is
        # switched off (refused here too: the fake refuses everything).
        assert box.sets == ["tcl=10", "frc=1"]
        box.set_steps = [reply(400, b'{"tcl":"key not found"}')]
        assert not await driver.apply(10000)
        assert driver.status.error == "write tcl: HTTP 400"
        box.set_steps = [reply(200, b"OK")]
        assert not await driver.apply(10000)
        assert driver.status.error == "write tcl=10 refused"
        assert box.sets == ["tcl=10", "frc=1"] * 3
        box.set_steps = None
        assert await driver.apply(10000)
        assert box.sets[6:] == ["tcl=10", "frc=2"]
        assert driver.status.error is None

    with_box(box, check)


def test_a_box_that_refuses_tcl_is_switched_off_unless_its_own_current_fits():
    box = FakeGoe(tcl=None, frc=2, amp=16)

    async def check(driver):
        assert await driver.poll()
        box.refuse = ("tcl",)
        assert not await driver.apply(10000)
        assert box.sets == ["tcl=10", "frc=1"]
        assert box.data["frc"] == 1
        assert driver.status.error == "write tcl: HTTP 400"
        # Off already: not written again.
        assert not await driver.apply(10000)
        assert box.sets[2:] == ["tcl=10"]
        # The owner's amp fits under the offer: no reason to switch it off.
        box2_sets = len(box.sets)
        driver._frc = 2
        assert not await driver.apply(16000)
        assert box.sets[box2_sets:] == ["tcl=16"]
        # A box that does not answer is not written to any further.
        box.set_steps = [HANG]
        driver.timeout_ms = 200
        count = len(box.sets)
        assert not await driver.apply(8000)
        assert box.sets[count:] == ["tcl=8"]

    with_box(box, check)


def test_a_box_that_did_not_answer_is_written_again():
    box = FakeGoe(tcl=10, frc=2)

    async def check(driver):
        assert await driver.poll()
        assert await driver.apply(10000)
        assert box.sets == []
        box.read_steps = [HANG]
        assert not await driver.poll()
        box.read_steps = None
        assert await driver.apply(10000)
        assert box.sets == ["tcl=10", "frc=2"]

    with_box(box, check, timeout_ms=300)


def test_apply_never_raises():
    box = FakeGoe()

    async def check(driver):
        assert not await driver.apply("x")
        assert driver.status.error == "driver: ValueError"
        assert await driver.apply(16000)

    with_box(box, check)


def test_parsing_allocates_nothing():
    import gc

    import micropython
    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    box = FakeGoe()

    async def check(driver):
        assert await driver.poll()
        gen = driver._write_gen
        assert driver._take(gen)
        gc.collect()
        micropython.heap_lock()
        try:
            again = driver._take(gen)
        finally:
            micropython.heap_unlock()
        assert again
        assert driver.status.current_ma == [10040, 9960, 10200]

    with_box(box, check)
