# ABB Terra AC over Modbus TCP (chargers/abb_terra.py) against a fake box at
# the socket (both runtimes; the emulator and pymodbus: host_tests/system).
from modbus_box_fakes import FakeBox, FakePlatform
from modbus_fakes import run_sync

from chargeguard.chargers import abb_terra
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN
from chargeguard.net.modbus_box import ModbusBox


def u32(value):
    return [(value >> 16) & 0xFFFF, value & 0xFFFF]


class Terra(FakeBox):
    def __init__(self):
        FakeBox.__init__(self)
        self.status(state=4, limit=16000, currents=(15900, 15800, 15700), power=10950, energy=4321, timeout=600)

    def status(self, state=None, limit=None, currents=None, power=None, energy=None, timeout=None, error=None):
        if error is not None:
            self.set(1, 0x4008, u32(error))
        if state is not None:
            self.set(1, 0x400C, u32(state << 8 | 0x80 << 8 if state == 4 else state << 8))
        if limit is not None:
            self.set(1, 0x400E, u32(limit))
        if currents is not None:
            self.set(1, 0x4010, u32(currents[0]) + u32(currents[1]) + u32(currents[2]))
        if power is not None:
            self.set(1, 0x401C, u32(power))
        if energy is not None:
            self.set(1, 0x401E, u32(energy))
        if timeout is not None:
            self.set(1, 0x4020, [timeout])

    def on_write(self, unit, address, values):
        if address == 0x4106:
            self.set(1, 0x4020, values)


def make():
    platform = FakePlatform()
    box = Terra()
    mbox = ModbusBox("127.0.0.1", 502, platform, 1000)
    box.attach(mbox.link)
    return abb_terra.AbbTerra(mbox), box, platform.clock


def test_poll_reads_state_currents_power_energy_in_one_request():
    driver, box, clock = make()
    assert run_sync(driver.poll())
    s = driver.status
    assert s.reachable and s.car == CAR_CHARGING and s.error is None  # bit 7 (below rated current) masked
    assert s.current_ma == [15900, 15800, 15700] and s.power_w == 10950 and s.session_energy_wh == 4321
    assert s.offered_ma == 16000 and driver.comm_timeout_s == 600
    assert len(box.requests) == 1 and box.requests[0][7:12] == bytes((3, 0x40, 0x08, 0, 25))
    for state, car in ((0, CAR_NONE), (1, CAR_CONNECTED), (2, CAR_CONNECTED), (3, CAR_CONNECTED), (5, CAR_CONNECTED),
                       (9, CAR_UNKNOWN)):
        box.status(state=state)
        run_sync(driver.poll())
        assert s.car == car, state
    assert s.error == "state 9"
    box.status(state=4, error=23)
    run_sync(driver.poll())
    assert s.error == "error 23"


def test_limit_in_ma_written_on_change_and_the_comm_timeout_set_once():
    driver, box, clock = make()
    run_sync(driver.poll())
    assert run_sync(driver.apply(10700))
    assert box.writes == [(1, 0x4100, [0, 10000]), (1, 0x4106, [abb_terra.COMM_TIMEOUT_S])]
    assert all(req[7] == 16 for req in box.requests[1:])
    run_sync(driver.poll())
    assert run_sync(driver.apply(10000))
    assert len(box.writes) == 2  # idempotent: the poll is the keep-alive
    assert run_sync(driver.apply(5000))
    assert box.writes[-1] == (1, 0x4100, [0, 0]) and driver.status.offered_ma == 0
    assert run_sync(driver.apply(40000))
    assert box.writes[-1] == (1, 0x4100, u32(32000))


def test_the_dangerous_registers_are_never_written():
    driver, box, clock = make()
    for ma in (0, 6000, 16000, 0, 32000, 3000):
        run_sync(driver.poll())
        run_sync(driver.apply(ma))
    assert {address for _, address, _ in box.writes} <= {0x4100, 0x4106}
    try:
        run_sync(driver._write(0x4105, 1, 1))
    except ValueError:
        pass
    else:
        raise AssertionError("0x4105 written")


def test_failing_boxes_and_recovery_rewrites_the_limit():
    for mode, words in (("hang", "no answer"), ("refuse", "refused"), ("garbage", "not a Modbus TCP answer"),
                        ("exception", "exception 4")):
        driver, box, clock = make()
        run_sync(driver.poll())
        assert run_sync(driver.apply(10000))
        box.mode = mode
        start = clock.now
        assert not run_sync(driver.poll())
        assert clock.now - start <= 2100
        assert not driver.status.reachable and words in driver.status.error, (mode, driver.status.error)
        box.mode = "normal"
        assert run_sync(driver.poll())
        n = len(box.writes)
        assert run_sync(driver.apply(10000))
        assert len(box.writes) == n + (mode != "exception"), mode


def test_fuzzed_registers_never_crash():
    from test_modbus import Lcg

    rnd = Lcg(9)
    driver, box, clock = make()
    for _ in range(200):
        for address in range(0x4008, 0x4021):
            box.set(1, address, [rnd.byte() << 8 | rnd.byte()])
        assert run_sync(driver.poll())
        s = driver.status
        assert s.car in (CAR_NONE, CAR_CONNECTED, CAR_CHARGING, CAR_UNKNOWN)
        for v in s.current_ma + [s.power_w, s.session_energy_wh, s.offered_ma]:
            assert v is None or 0 <= v < 2**30
        assert run_sync(driver.apply(rnd.byte() * 150)), driver.status.error
