# V2C Trydan over Modbus TCP (chargers/v2c_trydan_modbus.py) against a fake
# box at the socket (both runtimes; the emulator and pymodbus: host_tests/system).
from modbus_box_fakes import FakeBox, FakePlatform
from modbus_fakes import run_sync

from chargeguard.chargers import v2c_trydan_modbus as tm
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN
from chargeguard.net.modbus_box import ModbusBox

READ_AT = 3010


class Trydan(FakeBox):
    """The register map of V2C's sheet; writes to 6010.. show up at 3018.. as the box applies them."""

    def __init__(self):
        FakeBox.__init__(self)
        self.regs_at(state=2, power=7360, energy=1234, intensity=16, min_a=6, max_a=32)

    def regs_at(self, state=None, power=None, energy=None, slave_error=None, paused=None, locked=None,
                intensity=None, dynamic=None, min_a=None, max_a=None, pause_dynamic=None):
        for offset, value in ((0, state), (1, power), (2, energy), (3, slave_error), (8, paused), (9, locked),
                              (11, intensity), (12, dynamic), (15, min_a), (16, max_a), (17, pause_dynamic)):
            if value is not None:
                self.set(1, READ_AT + offset, [value])

    def on_write(self, unit, address, values):
        target = {6010: 8, 6011: 9, 6013: 11, 6019: 17}.get(address)
        if target is not None:
            self.set(1, READ_AT + target, values)


def make(box=None, timeout_ms=1000):
    platform = FakePlatform()
    box = box or Trydan()
    mbox = ModbusBox("127.0.0.1", 502, platform, timeout_ms)
    box.attach(mbox.link)
    return tm.TrydanModbus(mbox), box, platform.clock


def test_poll_reads_state_power_energy_intensity_pause():
    driver, box, clock = make()
    assert run_sync(driver.poll())
    s = driver.status
    assert s.reachable and s.car == CAR_CHARGING and s.error is None
    assert s.power_w == 7360 and s.session_energy_wh == 12340 and s.offered_ma == 16000
    assert s.current_ma == [None, None, None]  # not measured over Modbus
    assert box.requests[0][7:12] == bytes((3, 0x0B, 0xC2, 0, 20))  # 3010, 20 registers
    box.regs_at(paused=1)
    assert run_sync(driver.poll())
    assert s.car == CAR_CONNECTED and s.offered_ma == 0  # the box keeps ChargeState 2 after a pause
    box.regs_at(state=0)
    run_sync(driver.poll())
    assert s.car == CAR_NONE
    box.regs_at(state=7)
    run_sync(driver.poll())
    assert s.car == CAR_UNKNOWN and s.error == "ChargeState 7"
    box.regs_at(state=1, slave_error=3)
    run_sync(driver.poll())
    assert s.car == CAR_CONNECTED and s.error == "SlaveError 3"


def test_apply_writes_only_what_differs_in_order_and_pauses_below_6_a():
    driver, box, clock = make()
    box.regs_at(paused=1, intensity=16, dynamic=1, pause_dynamic=0)
    run_sync(driver.poll())
    assert run_sync(driver.apply(10900))
    assert [(a, v[0]) for _, a, v in box.writes] == [(6019, 1), (6013, 10), (6010, 0)]
    assert driver.status.offered_ma == 10000
    del box.writes[:]
    assert run_sync(driver.apply(10000))
    run_sync(driver.poll())
    assert run_sync(driver.apply(10000))
    assert box.writes == []  # idempotent, no keep-alive
    assert run_sync(driver.apply(5900))
    assert [(a, v[0]) for _, a, v in box.writes] == [(6010, 1)]
    assert driver.status.offered_ma == 0
    box.regs_at(max_a=12)
    run_sync(driver.poll())
    del box.writes[:]
    assert run_sync(driver.apply(32000))
    assert [(a, v[0]) for _, a, v in box.writes] == [(6013, 12), (6010, 0)]


def test_lock_register():
    driver, box, clock = make()
    assert run_sync(driver.set_lock(True))
    assert box.writes[-1] == (1, 6011, [1]) and driver.status.locked is True
    run_sync(driver.poll())
    assert driver.status.locked is True


def test_hung_refusing_and_garbage_boxes_fail_in_words_within_the_deadline():
    for mode, words in (("hang", "no answer"), ("refuse", "refused"), ("garbage", "not a Modbus TCP answer")):
        driver, box, clock = make()
        box.mode = mode
        start = clock.now
        assert not run_sync(driver.poll())
        assert clock.now - start <= 2 * 1000 + 100, mode
        assert not driver.status.reachable and words in driver.status.error, (mode, driver.status.error)
        assert not run_sync(driver.apply(16000))
        assert words in driver.status.error
        # Back to normal: it recovers and writes what the box may have lost.
        box.mode = "normal"
        assert run_sync(driver.poll()) and driver.status.reachable
        assert run_sync(driver.apply(10000))


def test_exception_answers_are_errors_and_the_box_stays_known():
    driver, box, clock = make()
    run_sync(driver.poll())
    box.refuse_writes[6013] = 3
    assert not run_sync(driver.apply(10000))
    assert driver.status.error.startswith("write 6013=10: exception 3")
    assert driver.status.reachable


def test_fuzzed_registers_never_crash_and_status_stays_whole():
    from test_modbus import Lcg

    rnd = Lcg(12)

    def word():
        return (rnd.byte() << 8 | rnd.byte()) if rnd.byte() & 1 else rnd.byte() & 3

    driver, box, clock = make()
    for _ in range(200):
        for offset in range(20):
            box.set(1, READ_AT + offset, [word()])
        ok = run_sync(driver.poll())
        s = driver.status
        assert ok and s.car in (CAR_NONE, CAR_CONNECTED, CAR_CHARGING, CAR_UNKNOWN)
        assert run_sync(driver.apply(word() * 10)) in (True, False)
        assert s.offered_ma is None or 0 <= s.offered_ma <= 0xFFFF * 1000


def test_an_exception_midway_does_not_leave_a_request_in_flight():
    driver, box, clock = make()
    box.mode = "hang"
    real_sleep = driver.box._sleep_ms
    calls = [0]

    async def failing_sleep(ms):
        calls[0] += 1
        if calls[0] == 3:
            raise MemoryError()
        await real_sleep(ms)

    driver.box._sleep_ms = failing_sleep
    assert not run_sync(driver.poll())
    assert driver.status.error == "out of memory"
    box.mode = "normal"
    assert run_sync(driver.poll()), driver.status.error  # not "a request is already in flight"
