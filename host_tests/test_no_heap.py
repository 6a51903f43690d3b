"""A charger command that meets MemoryError is sent again at once, for every driver family (both runtimes).

app.py knows such a command by status.no_heap, which each family's failure
path sets (net/http.py's and net/modbus_box.py's fail_box, keba's and the
OCPP driver's own), not by the words of status.error. Each family's real
driver runs under the App against its fake box from its own tests; the
allocation failure is faked where that family's request is made (the HTTP
client's exchange, the Modbus request, the KEBA datagram, the OCPP call).
"""

import asyncio
import json

from test_app import FakeCharger, TrydanBox, make_app, run_for, wait_until

from chargeguard import app as app_module
from chargeguard.platform import common


class Starve:
    """The next `count` requests it guards meet MemoryError (no heap), then real ones go."""

    def __init__(self):
        self.count = 0
        self.hits = 0

    def hit(self):
        if self.count:
            self.count -= 1
            self.hits += 1
            raise MemoryError("memory allocation failed, allocating 96 bytes")


class Recorder:
    """Stands for driver.apply: each call as (offered_ma, result, status.no_heap, ms) in order."""

    def __init__(self, driver):
        self.driver = driver
        self.apply = driver.apply
        self.calls = []

    async def __call__(self, offered_ma):
        ok = await self.apply(offered_ma)
        self.calls.append((offered_ma, ok, self.driver.status.no_heap, common.ticks_ms()))
        return ok


async def _cut_async(driver, starve, limit_ms=2000):
    """Under the App: an offer the box takes, then a cut whose first request meets MemoryError.

    Returns (calls, lines): the driver's apply calls (Recorder) and the log lines. The cut must reach
    the box within CONTROL_TICK_MS of the failure (_assert_resent): without the resend it would wait
    for the next poll (CHARGER_POLL_MS), as the control tick wakes only a task whose command never left.
    """
    recorder = Recorder(driver)
    driver.apply = recorder
    app, platform, meter, lines = make_app([driver])
    calls = recorder.calls

    async def scenario():
        meter.push(2, 2, 2)
        assert await wait_until(lambda: any(ok and ma > 0 for ma, ok, _, _ in calls), limit_ms), (calls, lines)
        before = len(calls)
        starve.count = 1
        meter.push(40, 2, 2)
        assert await wait_until(lambda: any(ma == 0 and ok for ma, ok, _, _ in calls[before:]), limit_ms), (calls, lines)

    await run_for(app, 10, scenario)
    assert starve.hits == 1, (starve.hits, calls)
    return calls, lines


def _cut(driver, starve):
    """_cut_async's run, for a box faked without sockets."""
    return asyncio.run(_cut_async(driver, starve))


def _assert_resent(calls, lines, said):
    failed = [i for i in range(len(calls)) if calls[i][0] == 0 and not calls[i][1]]
    assert failed and calls[failed[0]][2] is True, calls  # the driver said why: no heap
    first = failed[0]
    # The very next command is the same cut, and the box took it, at once (not at the next tick).
    assert calls[first + 1][:2] == (0, True), calls
    assert common.ticks_diff(calls[first + 1][3], calls[first][3]) < app_module.CONTROL_TICK_MS, calls
    charger_lines = [line for line in lines if line.startswith("charger")]
    assert charger_lines[-2:] == ["charger c0: " + said, "charger c0: ok"], lines


# -- HTTP boxes (net/http.py): the client's request meets MemoryError


def _http_cut(box, make_driver):
    from httpfake import FakeServer

    starve = Starve()
    outcome = {}

    async def main():
        server = await FakeServer(box.handler).start()
        try:
            driver = make_driver(server.port)
            exchange = driver._writer._exchange

            async def starved(*args):
                starve.hit()
                return await exchange(*args)

            driver._writer._exchange = starved
            outcome["driver"] = driver
            outcome["result"] = await _cut_async(driver, starve)
        finally:
            await server.close()

    asyncio.run(main())
    return outcome["result"]


def test_v2c_trydan_http_cut_that_meets_memory_error_is_resent():
    from chargeguard.chargers.v2c_trydan import V2CTrydan

    box = TrydanBox()
    calls, lines = _http_cut(box, lambda port: V2CTrydan("127.0.0.1", port, app_module.CHARGER_TIMEOUT_MS,
                                                         common.ticks_ms))
    _assert_resent(calls, lines, "write Paused: MemoryError")
    assert box.writes[-1][0] == "Paused=1"


def test_go_e_cut_that_meets_memory_error_is_resent():
    from test_go_e import FakeGoe

    from chargeguard.chargers.go_e import GoeCharger

    box = FakeGoe()
    calls, lines = _http_cut(box, lambda port: GoeCharger("127.0.0.1", port, app_module.CHARGER_TIMEOUT_MS, 3,
                                                          common.ticks_ms))
    said = [line[len("charger c0: "):] for line in lines if "MemoryError" in line]
    assert len(said) == 1 and said[0].startswith("write ") and said[0].endswith(": MemoryError"), lines
    _assert_resent(calls, lines, said[0])
    assert box.data["frc"] == 1, box.sets  # forced off: the pause reached the box


def test_openevse_cut_that_meets_memory_error_is_resent():
    from test_openevse import FakeEvse

    from chargeguard.chargers.openevse import OpenEvse

    box = FakeEvse()
    calls, lines = _http_cut(box, lambda port: OpenEvse("127.0.0.1", port, app_module.CHARGER_TIMEOUT_MS, 1,
                                                        common.ticks_ms))
    _assert_resent(calls, lines, "claim: MemoryError")
    assert box.claims[-1][1]["state"] == "disabled", box.claims


def test_shelly_load_cut_that_meets_memory_error_is_resent():
    from test_shelly_load import FakeRelay

    from chargeguard.chargers.shelly_load import ShellyLoad

    relay = FakeRelay()
    # Its step the guard's minimum (min_a 6): the start's 6 A switches it on.
    calls, lines = _http_cut(relay, lambda port: ShellyLoad("127.0.0.1", port, app_module.CHARGER_TIMEOUT_MS,
                                                            6000, 1, 0, common.ticks_ms))
    _assert_resent(calls, lines, "switch: MemoryError")
    assert relay.data["output"] is False, relay.sets


# -- Modbus boxes (net/modbus_box.py), TCP and RTU: the write request meets MemoryError


def _starve_writes(driver):
    starve = Starve()
    master = driver.box.master
    start_write = master.start_write

    def starved(*args):
        starve.hit()
        return start_write(*args)

    master.start_write = starved
    return starve


def test_v2c_trydan_modbus_cut_that_meets_memory_error_is_resent():
    from test_trydan_modbus import make

    driver, box, clock = make()
    calls, lines = _cut(driver, _starve_writes(driver))
    _assert_resent(calls, lines, "out of memory")
    assert box.writes[-1][1:] == (6010, [1]), box.writes  # Paused = 1


def test_alfen_cut_that_meets_memory_error_is_resent():
    from test_alfen import make

    driver, box, clock = make()
    calls, lines = _cut(driver, _starve_writes(driver))
    _assert_resent(calls, lines, "out of memory")
    assert box.writes[-1][1] == 1210 and box.writes[-1][2] == [0, 0], box.writes  # max current 0.0 A


def test_abb_terra_tcp_cut_that_meets_memory_error_is_resent():
    from test_abb_terra import make

    driver, box, clock = make()
    calls, lines = _cut(driver, _starve_writes(driver))
    _assert_resent(calls, lines, "out of memory")
    assert box.writes[-1][1] == 0x4100 and box.writes[-1][2] == [0, 0], box.writes  # limit 0 mA


def test_abb_terra_rtu_cut_that_meets_memory_error_is_resent():
    from test_abb_terra_rtu import make

    driver, box, platform = make()
    calls, lines = _cut(driver, _starve_writes(driver))
    _assert_resent(calls, lines, "out of memory")
    assert box.writes[-1][1] == 0x4100 and box.writes[-1][2] == [0, 0], box.writes


def test_modbus_generic_cut_that_meets_memory_error_is_resent():
    from test_modbus_generic import make

    driver, box, clock = make()
    box.input_regs[(1, 100)] = ord("C")  # charging
    calls, lines = _cut(driver, _starve_writes(driver))
    _assert_resent(calls, lines, "out of memory")


def test_a_modbus_box_whose_name_lookup_meets_memory_error_is_resent():
    # Before, the box's lookup said the MemoryError's own words ("write 6010=1: memory allocation
    # failed, allocating 96 bytes"), which the old error-text match did not know: the cut waited for
    # the next poll. Now the MemoryError reaches the driver's failure path like any other.
    from test_trydan_modbus import make

    driver, box, clock = make()
    starve = Starve()
    mbox = driver.box
    write = mbox.write
    writing = [False]

    async def resolve():
        if writing[0]:
            starve.hit()

    async def writes(*args):
        writing[0] = True
        try:
            return await write(*args)
        finally:
            writing[0] = False

    mbox._resolve = resolve
    mbox.write = writes
    calls, lines = _cut(driver, starve)
    _assert_resent(calls, lines, "out of memory")
    assert box.writes[-1][1:] == (6010, [1]), box.writes


def test_a_modbus_name_lookup_that_fails_leaves_no_request_in_flight():
    # The request is armed before the lookup: a lookup that fails (no DNS answer, or no heap) must
    # drop it, or every later request of the box is refused "a request is already in flight".
    from modbus_fakes import run_sync
    from test_trydan_modbus import make

    for failure in (OSError("no DNS answer"), MemoryError("memory allocation failed")):
        driver, box, clock = make()
        assert run_sync(driver.poll()), driver.status.error
        failures = [failure]

        async def resolve():
            if failures:
                raise failures.pop()

        driver.box._resolve = resolve
        assert not run_sync(driver.apply(0))
        if isinstance(failure, MemoryError):
            assert driver.status.error == "out of memory" and driver.status.no_heap
        else:
            assert driver.status.error == "write 6010=1: no DNS answer" and not driver.status.no_heap
        assert run_sync(driver.apply(0)), driver.status.error
        assert box.writes[-1][1:] == (6010, [1]), box.writes


# -- KEBA P30 (UDP): the command's datagram meets MemoryError


def test_keba_cut_that_meets_memory_error_is_resent():
    from test_keba import make

    driver, box, clock = make()
    starve = Starve()
    send = box.send

    def starved(data):
        if not bytes(data).startswith(b"report"):
            starve.hit()
        return send(data)

    box.send = starved
    calls, lines = _cut(driver, starve)
    _assert_resent(calls, lines, "out of memory")
    assert box.sent[-1] == "ena 0" and box.r2["Enable user"] == 0, box.sent


# -- OCPP 1.6J: the SetChargingProfile call meets MemoryError


class ScriptedCentral:
    """net/ocpp.CentralSystem.call as the driver uses it: every call Accepted; SetChargingProfile guarded."""

    def __init__(self, starve):
        self.starve = starve
        self.profiles = []

    async def call(self, session, action, payload):
        if action == "SetChargingProfile":
            self.starve.hit()
            self.profiles.append(json.loads(payload))
        return "ok", {"status": "Accepted"}


def test_ocpp_cut_that_meets_memory_error_is_resent():
    from chargeguard.chargers.ocpp import OcppCharger

    starve = Starve()
    central = ScriptedCentral(starve)
    point = OcppCharger("CP1", unit="A", stack_level=0, clock=common.ticks_ms, wall=lambda: 1796014800)
    point.central = central
    point.attach(object())
    point.heard()
    point.on_call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    point.on_call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
    calls, lines = _cut(point, starve)
    _assert_resent(calls, lines, "out of memory")
    last = central.profiles[-1]["csChargingProfiles"]
    assert last["chargingProfileId"] == 2 and last["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 0


def test_an_ocpp_call_that_meets_memory_error_leaves_nothing_pending():
    # The frame found no heap: the next call must go out, not wait as "busy" for an answer that
    # cannot come (the resend above would otherwise fail).
    from httpfake import now_ms

    from chargeguard.net import ocpp

    class Platform:
        def ticks_ms(self):
            return now_ms()

        async def sleep_ms(self, ms):
            await asyncio.sleep(ms / 1000)

    class Ws:
        closed = False

        def __init__(self):
            self.sent = []
            self.starve = Starve()

        async def send(self, opcode, *parts):
            self.starve.hit()
            self.sent.append(parts)

    class Session:
        def __init__(self):
            self.ws = Ws()
            self.pending = None
            self.answer = None
            self.next_id = 0
            self.event = asyncio.Event()

    central = ocpp.CentralSystem({"port": 0, "ping_s": 1, "max_message": 1024, "accept_unknown": False},
                                 Platform(), [].append)
    session = Session()
    session.ws.starve.count = 1
    outcome = {}

    async def main():
        try:
            await central.call(session, "Heartbeat", "{}", 200)
        except MemoryError:
            outcome["raised"] = True
        outcome["pending"] = session.pending
        started = now_ms()
        outcome["second"] = await central.call(session, "Heartbeat", "{}", 200)
        outcome["ms"] = now_ms() - started

    asyncio.run(main())
    assert outcome["raised"] and outcome["pending"] is None, outcome
    # Sent (no answer comes from this fake box: its deadline), not refused as "busy" before sending.
    assert outcome["second"] == ("timeout", None) and len(session.ws.sent) == 1, outcome


# -- the App reads the flag, not the words


class WordyCharger(FakeCharger):
    """A driver of some other family: its first command fails for want of heap, in words of its own."""

    def __init__(self, error, no_heap):
        FakeCharger.__init__(self)
        self.error = error
        self.no_heap = no_heap
        self.failures = 0  # armed for the cut (the start's failsafe 0 goes through)
        self.results = []

    async def apply(self, offered_ma):
        ok = True
        if offered_ma == 0 and self.failures:
            self.failures -= 1
            self.status.error = self.error
            self.status.no_heap = self.no_heap
            ok = False
        else:
            self.status.error = None
        self.applied.append(offered_ma)
        self.results.append((offered_ma, ok, common.ticks_ms()))
        return ok


def _wordy_cut(error, no_heap, stale_flag=False):
    """The results of the cut after one failed pause; stale_flag: a flag left set before it (an earlier poll's)."""
    charger = WordyCharger(error, no_heap)
    app, platform, meter, lines = make_app([charger])

    async def scenario():
        meter.push(2, 2, 2)
        assert await wait_until(lambda: any(ma > 0 for ma in charger.applied), 1000), charger.applied
        if stale_flag:
            charger.status.no_heap = True
        before = len(charger.results)
        charger.failures = 1
        meter.push(40, 2, 2)
        await wait_until(lambda: len([r for r in charger.results[before:] if r[0] == 0]) >= 2,
                         app_module.CONTROL_TICK_MS // 2)
        charger.cut = charger.results[before:]

    asyncio.run(run_for(app, 10, scenario))
    return charger.cut


def test_a_failure_worded_otherwise_but_flagged_no_heap_is_resent_at_once():
    # Words the old text match did not know (neither "...MemoryError" nor "...out of memory").
    cut = _wordy_cut("set limit: memory allocation failed, allocating 96 bytes", True)
    assert [r[:2] for r in cut[:2]] == [(0, False), (0, True)], cut
    assert common.ticks_diff(cut[1][2], cut[0][2]) < app_module.CONTROL_TICK_MS // 2, cut


def test_a_failure_that_only_says_memory_but_is_not_flagged_is_not_resent():
    # The words alone no longer decide: a box that refused (no flag) waits for the next poll.
    cut = _wordy_cut("write Paused: out of memory", False)
    assert [r[:2] for r in cut] == [(0, False)], cut


def test_the_flag_is_cleared_before_each_command():
    # A flag left from an earlier failure (a poll's) does not make a later refusal look like no heap.
    cut = _wordy_cut("write Paused refused", False, stale_flag=True)
    assert [r[:2] for r in cut] == [(0, False)], cut
