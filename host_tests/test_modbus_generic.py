# The generic Modbus TCP charger (chargers/modbus_generic.py) from a register
# map, against a fake box at the socket (both runtimes).
from modbus_box_fakes import FakeBox, FakePlatform
from modbus_fakes import run_sync

from chargeguard import config
from chargeguard.chargers import modbus_generic
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN
from chargeguard.net.modbus_box import ModbusBox

PHOENIX = {"state_address": 100, "current_address": 528, "enable": "coil", "enable_address": 400, "power_address": 120}


def complete_map(m):
    doc = config.defaults()
    doc["chargers"] = [{"name": "X", "type": "modbus_generic", "host": "10.0.0.5", "map": m}]
    doc = config.complete(doc)
    assert config.validate(doc) == []
    return doc["chargers"][0]["map"]


def make(m=PHOENIX):
    platform = FakePlatform()
    box = FakeBox()
    mbox = ModbusBox("127.0.0.1", 502, platform, 1000)
    box.attach(mbox.link)
    return modbus_generic.ModbusGeneric(mbox, 1, complete_map(dict(m))), box, platform.clock


def test_phoenix_map_state_letters_and_power():
    driver, box, clock = make()
    box.input_regs[(1, 120)] = 0
    box.input_regs[(1, 121)] = 7360
    s = driver.status
    for letter, car in (("A", CAR_NONE), ("B", CAR_CONNECTED), ("C", CAR_CHARGING), ("D", CAR_CHARGING),
                        ("E", CAR_UNKNOWN), ("F", CAR_UNKNOWN)):
        box.input_regs[(1, 100)] = ord(letter)
        assert run_sync(driver.poll())
        assert s.car == car and s.power_w == 7360, letter
    assert s.error == "state F"
    assert [r[7] for r in box.requests[:2]] == [4, 4]


def test_number_state_low_word_first_power_with_scale():
    driver, box, clock = make({"state_function": 3, "state_address": 10, "state_kind": "number", "power_function": 3,
                               "power_address": 20, "power_type": "u32sw", "power_scale": -1, "current_address": 30,
                               "current_unit_ma": 100})
    box.set(1, 10, [2])
    box.set(1, 20, [0x2345, 0x0001])  # 0x12345 = 74565 x 0.1 W
    assert run_sync(driver.poll())
    assert driver.status.car == CAR_CHARGING and driver.status.power_w == 7457
    assert run_sync(driver.apply(10900))
    assert box.writes == [(1, 30, [100])]  # 10 A in 0.1 A, no enable switch
    assert run_sync(driver.apply(0))
    assert box.writes[-1] == (1, 30, [0])


def test_current_then_enable_pause_disables_each_only_on_change():
    driver, box, clock = make()
    box.input_regs[(1, 100)] = ord("C")
    run_sync(driver.poll())
    assert run_sync(driver.apply(16000))
    assert box.writes == [(1, 528, [16]), (1, "coil", 400, [0xFF00])]
    assert run_sync(driver.apply(16000))
    assert len(box.writes) == 2
    assert run_sync(driver.apply(4000))
    assert box.writes[-1] == (1, "coil", 400, [0]) and driver.status.offered_ma == 0
    assert run_sync(driver.apply(10000))
    assert box.writes[-2:] == [(1, 528, [10]), (1, "coil", 400, [0xFF00])]


def test_failing_boxes_in_words_within_the_deadline():
    for mode, words in (("hang", "no answer"), ("refuse", "refused"), ("garbage", "not a Modbus TCP answer"),
                        ("exception", "exception 4")):
        driver, box, clock = make()
        box.mode = mode
        start = clock.now
        assert not run_sync(driver.poll())
        assert clock.now - start <= 2100
        assert not driver.status.reachable and words in driver.status.error, (mode, driver.status.error)
        assert not run_sync(driver.apply(10000))


def test_fuzzed_registers_never_crash():
    from test_modbus import Lcg

    rnd = Lcg(3)
    for power_type in ("u16", "u32", "u32sw", "i32"):
        driver, box, clock = make(dict(PHOENIX, power_type=power_type, power_scale=rnd.byte() % 7 - 3))
        for _ in range(60):
            for address in (100, 120, 121):
                box.input_regs[(1, address)] = rnd.byte() << 8 | rnd.byte()
            assert run_sync(driver.poll())
            assert driver.status.car in (CAR_NONE, CAR_CONNECTED, CAR_CHARGING, CAR_UNKNOWN)
            p = driver.status.power_w
            assert p is None or -2**31 < p < 2**31
            assert run_sync(driver.apply(rnd.byte() * 150))
