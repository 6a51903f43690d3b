# Shelly relay (Gen2+ RPC) as an on/off load, against a scripted fake relay on 127.0.0.1 (both runtimes).
import json

import asyncio

from chargeguard.chargers.shelly_load import FAILSAFE_S, RENEW_MS, ShellyLoad
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED
from httpfake import HANG, HOST, Clock, FakeServer, elapsed_ms, now_ms, reply, with_driver

# Switch.GetStatus of a Plus 1PM with a 2 kW heater on (shape from Shelly's
# Gen2 API documentation of the Switch component).
STATUS = {
    "id": 0,
    "source": "http",
    "output": True,
    "apower": 1998.7,
    "voltage": 231.2,
    "freq": 50.0,
    "current": 8.645,
    "pf": 1.0,
    "aenergy": {"total": 1234.567, "by_minute": [33.3, 33.3, 33.2], "minute_ts": 1764480000},
    "temperature": {"tC": 41.3, "tF": 106.3},
}
STEP_MA = 9000


class FakeRelay:
    def __init__(self, **fields):
        self.data = dict(STATUS)
        self.data.update(fields)
        self.sets = []  # the query of every Switch.Set
        self.read_steps = None
        self.set_steps = None

    def handler(self, method, path, body):
        if path == "/rpc/Switch.GetStatus?id=0":
            if self.read_steps is not None:
                return self.read_steps
            return [reply(200, json.dumps(self.data))]
        if path.startswith("/rpc/Switch.Set?"):
            query = path[len("/rpc/Switch.Set?") :]
            self.sets.append(query)
            if self.set_steps is not None:
                return self.set_steps
            was_on = self.data["output"]
            self.data["output"] = "on=true" in query
            return [reply(200, json.dumps({"was_on": was_on}))]
        return [reply(404, b'{"code":-114,"message":"Method not found!"}')]


def with_relay(relay, check, timeout_ms=1000, phases=1):
    with_driver(
        relay.handler,
        lambda port: ShellyLoad(HOST, port, timeout_ms=timeout_ms, step_ma=STEP_MA, phases=phases, clock=Clock()),
        check,
    )


def test_status_of_a_relay_on_and_drawing():
    relay = FakeRelay()

    async def check(driver):
        driver._clock.ms = 555
        assert await driver.poll()
        s = driver.status
        assert s.reachable and s.error is None and s.tick_ms == 555
        assert s.car == CAR_CHARGING
        assert s.current_ma == [8645, 0, 0]
        assert s.power_w == 1999  # rounded
        assert s.offered_ma == STEP_MA

    with_relay(relay, check)


def test_off_or_thermostat_open_is_connected_not_charging():
    for fields, offered in (({"output": False, "apower": 0.0, "current": 0.0}, 0), ({"apower": 3.1, "current": 0.02}, STEP_MA)):
        relay = FakeRelay(**fields)

        async def check(driver):
            assert await driver.poll()
            assert driver.status.car == CAR_CONNECTED, fields
            assert driver.status.offered_ma == offered

        with_relay(relay, check)


def test_a_relay_that_does_not_meter_and_a_multi_phase_load_count_the_step():
    relay = FakeRelay()
    del relay.data["apower"]
    del relay.data["current"]

    async def check(driver):
        assert await driver.poll()
        assert driver.status.current_ma == [None, None, None]  # the guard counts the offered step
        assert driver.status.car == CAR_CHARGING and driver.status.power_w is None

    with_relay(relay, check)

    async def check3(driver):
        assert await driver.poll()
        # A contactor's coil is what the relay meters: not the load's phases.
        assert driver.status.current_ma == [None, None, None]

    with_relay(FakeRelay(), check3, phases=3)


def test_the_relays_own_errors_are_shown():
    relay = FakeRelay(errors=["overtemp"])

    async def check(driver):
        assert await driver.poll()
        assert driver.status.error == "shelly overtemp" and driver.last_error == "shelly overtemp"
        del relay.data["errors"]
        assert await driver.poll()
        assert driver.status.error is None

    with_relay(relay, check)


def test_garbage_truncated_and_missing_output():
    relay = FakeRelay()
    body = json.dumps(STATUS).encode()

    async def check(driver):
        assert await driver.poll()
        for raw in [b"\xff<html>", b"", b"[1]", b"null"] + [body[:n] for n in range(0, len(body) - 1, 9)]:
            relay.read_steps = [reply(200, raw)]
            driver.status.car = CAR_CHARGING
            assert not await driver.poll(), raw
            assert not driver.status.reachable
            assert driver.status.error == "invalid JSON", (raw, driver.status.error)
        for fields, error in (({"output": None}, "bad output"), ({"output": "on"}, "bad output"), ({"apower": "2000"}, "bad apower"),
                              ({"current": [8]}, "bad current")):
            data = dict(STATUS)
            data.update(fields)
            relay.read_steps = [reply(200, json.dumps(data))]
            driver.status.offered_ma = 1234
            assert not await driver.poll()
            assert driver.status.error == error, (fields, driver.status.error)
            assert driver.status.offered_ma == 1234  # a bad answer changes nothing
        data = dict(STATUS)
        del data["output"]
        relay.read_steps = [reply(200, json.dumps(data))]
        assert not await driver.poll()
        assert driver.status.error == "bad output"
        relay.read_steps = None
        assert await driver.poll() and driver.status.error is None

    with_relay(relay, check)


def test_http_error_oversize_hung_and_refusing_relay():
    relay = FakeRelay()

    async def check(driver):
        relay.read_steps = [reply(500, b"oops")]
        assert not await driver.poll()
        assert driver.status.error == "HTTP 500"
        relay.read_steps = [reply(200, b'{"output":true,"x":"' + b"y" * 1100 + b'"}')]
        assert not await driver.poll()
        assert driver.status.error == "long body"
        relay.read_steps = [HANG]
        start = now_ms()
        assert not await driver.poll()
        assert 250 <= elapsed_ms(start) < 1000
        assert driver.status.error == "timeout" and not driver.status.reachable
        relay.set_steps = [HANG]
        start = now_ms()
        assert not await driver.apply(STEP_MA)
        assert 250 <= elapsed_ms(start) < 1000
        assert driver.status.error == "switch: timeout"

    with_relay(relay, check, timeout_ms=300)

    async def refused():
        server = await FakeServer(FakeRelay().handler).start()
        port = server.port
        await server.close()
        driver = ShellyLoad(HOST, port, timeout_ms=500, step_ma=STEP_MA)
        assert not await driver.poll()
        assert driver.status.error == "connection refused"
        assert not await driver.apply(0)
        assert driver.status.error == "switch: connection refused"

    asyncio.run(refused())


def test_on_carries_the_flip_back_timer_off_does_not_and_both_are_idempotent():
    relay = FakeRelay(output=False, apower=0.0, current=0.0)

    async def check(driver):
        assert await driver.poll()
        assert await driver.apply(0)
        assert relay.sets == []  # already off
        assert await driver.apply(STEP_MA - 1)  # below the step: stays off
        assert relay.sets == []
        assert await driver.apply(16000)  # at or above the step: on
        assert relay.sets == ["id=0&on=true&toggle_after=%d" % FAILSAFE_S]
        assert driver.status.offered_ma == STEP_MA
        assert await driver.apply(STEP_MA)
        assert len(relay.sets) == 1  # unchanged: not re-sent
        assert await driver.apply(0)
        assert relay.sets[-1] == "id=0&on=false"
        assert driver.status.offered_ma == 0
        assert await driver.poll() and driver.status.offered_ma == 0

    with_relay(relay, check)
    # The relay's own failsafe outlasts the renewals by far: several
    # renewals fit before a live ChargeGuard's load could lapse.
    assert FAILSAFE_S * 1000 >= 4 * RENEW_MS


def test_on_is_renewed_before_the_relay_switches_itself_off():
    relay = FakeRelay(output=False)

    async def check(driver):
        assert await driver.apply(STEP_MA)
        assert len(relay.sets) == 1
        driver._clock.ms += RENEW_MS - 1
        assert await driver.apply(STEP_MA)
        assert len(relay.sets) == 1
        driver._clock.ms += 1
        assert await driver.apply(STEP_MA)
        assert relay.sets == ["id=0&on=true&toggle_after=%d" % FAILSAFE_S] * 2

    with_relay(relay, check)


def test_a_refused_switch_is_retried_and_a_relay_that_went_silent_is_told_again():
    relay = FakeRelay(output=True)

    async def check(driver):
        relay.set_steps = [reply(400, b'{"code":-103,"message":"Invalid argument"}')]
        assert not await driver.apply(0)
        assert driver.status.error == "switch: HTTP 400"
        relay.set_steps = [reply(200, b'{"code":-1}')]
        assert not await driver.apply(0)
        assert driver.status.error == "switch refused"
        relay.set_steps = None
        assert await driver.apply(0)
        assert relay.sets[-1] == "id=0&on=false"
        count = len(relay.sets)
        relay.read_steps = [HANG]
        assert not await driver.poll()  # no answer: it may have rebooted
        relay.read_steps = None
        assert await driver.apply(0)
        assert len(relay.sets) == count + 1  # what it has is unknown: sent again

    with_relay(relay, check, timeout_ms=300)


def test_apply_never_raises():
    relay = FakeRelay()

    async def check(driver):
        assert not await driver.apply("x")
        assert driver.status.error == "driver: ValueError"
        assert await driver.apply(STEP_MA)

    with_relay(relay, check)


def test_parsing_allocates_nothing():
    import gc

    import micropython
    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    relay = FakeRelay()

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
        assert driver.status.current_ma == [8645, 0, 0]

    with_relay(relay, check)
