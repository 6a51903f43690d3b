# Alfen Eve over Modbus TCP (chargers/alfen.py) against a fake station at the
# socket (both runtimes; the emulator and pymodbus: host_tests/system).
import struct

from modbus_box_fakes import FakeBox, FakePlatform
from modbus_fakes import run_sync

from chargeguard.chargers import alfen
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN
from chargeguard.net.modbus_box import ModbusBox


def f32(value):
    b = struct.pack(">f", value)
    return [(b[0] << 8) | b[1], (b[2] << 8) | b[3]]


def f64(value):
    b = struct.pack(">d", value)
    return [(b[i] << 8) | b[i + 1] for i in (0, 2, 4, 6)]


def text(s):
    b = s.encode() + b"\x00" * (10 - len(s))
    return [(b[i] << 8) | b[i + 1] for i in range(0, 10, 2)]


class Station(FakeBox):
    def __init__(self, unit=1):
        FakeBox.__init__(self, units=(unit, 200))
        self.unit = unit
        self.measure(10.5, 10.25, 0.0, 4830.4, 123456.7)
        self.state("C2", applied=16.0, valid=60, safe=6.0, accounted=1, phases=3)
        self.set(unit, 1210, f32(16.0))

    def measure(self, l1, l2, l3, power, energy):
        u = self.unit
        self.set(u, 320, f32(l1) + f32(l2) + f32(l3))
        self.set(u, 344, f32(power))
        self.set(u, 374, f64(energy))

    def state(self, mode3, applied=None, valid=None, safe=None, accounted=None, phases=None, available=1):
        u = self.unit
        self.set(u, 1200, [available] + text(mode3))
        if applied is not None:
            self.set(u, 1206, f32(applied))
        if valid is not None:
            self.set(u, 1208, [valid >> 16, valid & 0xFFFF])
        if safe is not None:
            self.set(u, 1212, f32(safe))
        if accounted is not None:
            self.set(u, 1214, [accounted])
        if phases is not None:
            self.set(u, 1215, [phases])


def make(box=None, phases=3, circuit_a=16, unit=1):
    platform = FakePlatform()
    box = box or Station(unit)
    mbox = ModbusBox("127.0.0.1", 502, platform, 1000)
    box.attach(mbox.link)
    return alfen.AlfenEve(mbox, platform.ticks_ms, unit, phases, circuit_a), box, platform.clock


def test_float_decoding_by_integer_arithmetic():
    for value, scale in ((10.5, 1000), (0.0, 1000), (-3.25, 1000), (16.0, 1000), (4830.4, 1), (22000.0, 1), (1e-9, 1000)):
        hi, lo = f32(value)
        assert alfen.decode_f32(hi, lo, scale) == int(round(value * scale)), value
    hi, lo = f32(float("nan"))
    assert alfen.decode_f32(hi, lo, 1) is None
    hi, lo = f32(3e9)
    assert alfen.decode_f32(hi, lo, 1) is None
    for value in (0.0, 0.4, 0.6, 1.0, 123456.7, 999999.5, 2**29 + 0.2, 5e8):
        w = f64(value)
        assert alfen.decode_f64(w[0], w[1], w[2]) == int(value + 0.5), value
    w = f64(2.0**31)
    assert alfen.decode_f64(w[0], w[1], w[2]) is None
    w = f64(-5.0)
    assert alfen.decode_f64(w[0], w[1], w[2]) is None
    out = [0, 0]
    for amps in (0, 1, 6, 13, 16, 32):
        alfen.encode_f32(amps, out)
        assert out == f32(float(amps)), amps


def test_poll_reads_socket_measurements_and_mode_3_state():
    driver, box, clock = make()
    assert run_sync(driver.poll())
    s = driver.status
    assert s.reachable and s.car == CAR_CHARGING and s.error is None, s.error
    assert s.current_ma == [10500, 10250, 0]
    assert s.power_w == 4830 and s.session_energy_wh == 123457 and s.offered_ma == 16000
    assert driver.valid_s == 60 and driver.safe_ma == 6000 and driver.box_phases == 3
    assert [r[6] for r in box.requests] == [1, 1]  # the socket's unit
    for mode3, car in (("A", CAR_NONE), ("B1", CAR_CONNECTED), ("B2", CAR_CONNECTED), ("C1", CAR_CONNECTED),
                       ("D2", CAR_CHARGING), ("E", CAR_UNKNOWN), ("F", CAR_UNKNOWN)):
        box.state(mode3)
        assert run_sync(driver.poll())
        assert s.car == car, mode3
        assert (s.error is None) == (car != CAR_UNKNOWN), (mode3, s.error)
    assert s.error == "mode 3 state F"
    box.state("C2", available=0)
    run_sync(driver.poll())
    assert s.error == "inoperative"


def test_max_current_written_as_float32_renewed_before_the_validity_lapses():
    driver, box, clock = make()
    run_sync(driver.poll())
    assert run_sync(driver.apply(13700))
    assert box.writes == [(1, 1210, f32(13.0))]
    assert driver.status.offered_ma == 13000
    assert box.requests[-1][7] == 16  # function 16: both registers in one request
    assert run_sync(driver.apply(13000))
    assert len(box.writes) == 1  # unchanged: not written again yet
    clock.now += alfen.RENEW_MS
    assert run_sync(driver.apply(13000))
    assert len(box.writes) == 2  # the keep-alive
    # A box that shows the validity running out gets it at once.
    box.state("C2", valid=20)
    run_sync(driver.poll())
    assert run_sync(driver.apply(13000))
    assert len(box.writes) == 3
    # Below 6 A: 0 A, the socket stops offering.
    assert run_sync(driver.apply(5999))
    assert box.writes[-1] == (1, 1210, [0, 0]) and driver.status.offered_ma == 0


def test_renewal_interval_is_well_inside_the_default_validity():
    assert alfen.RENEW_MS * 2 <= 60000


def test_phase_register_written_once_and_a_refusal_reported():
    driver, box, clock = make(phases=1)
    box.set(1, 1215, [3])
    run_sync(driver.poll())
    assert run_sync(driver.apply(10000))
    assert box.writes[-1] == (1, 1215, [1])
    driver, box, clock = make(phases=1)
    box.refuse_writes[1215] = 2
    run_sync(driver.poll())
    assert run_sync(driver.apply(10000))
    n = box.count
    assert run_sync(driver.apply(10000))
    assert box.count == n  # not asked again
    run_sync(driver.poll())
    assert driver.status.error == "phases 3: 1215 refused"


def test_safe_current_above_the_circuit_and_an_unused_setpoint_are_reported():
    driver, box, clock = make(circuit_a=16)
    box.state("C2", safe=20.0)
    run_sync(driver.poll())
    assert driver.status.error == "safe current 20 A above circuit_a"
    box.state("C2", safe=6.0, accounted=0)
    run_sync(driver.apply(10000))
    run_sync(driver.poll())
    assert driver.status.error.startswith("setpoint not used")


def test_second_socket_is_unit_2():
    driver, box, clock = make(unit=2)
    assert run_sync(driver.poll())
    assert run_sync(driver.apply(8000))
    assert box.writes == [(2, 1210, f32(8.0))]


def test_hung_refusing_garbage_and_failing_boxes_degrade_only_themselves():
    for mode, words in (("hang", "no answer"), ("refuse", "refused"), ("garbage", "not a Modbus TCP answer"),
                        ("exception", "exception 4")):
        driver, box, clock = make()
        run_sync(driver.poll())
        assert run_sync(driver.apply(10000))
        box.mode = mode
        start = clock.now
        assert not run_sync(driver.poll())
        assert clock.now - start <= 2 * 1000 + 100, mode
        assert not driver.status.reachable and words in driver.status.error, (mode, driver.status.error)
        box.mode = "normal"
        assert run_sync(driver.poll())
        n = len(box.writes)
        assert run_sync(driver.apply(10000))
        # After no answer at all the box may have rebooted (the max current is lost): written again.
        assert len(box.writes) == n + (mode != "exception"), mode


def test_fuzzed_registers_never_crash():
    from test_modbus import Lcg

    rnd = Lcg(5)
    driver, box, clock = make()
    for _ in range(150):
        for address in list(range(320, 378)) + list(range(1200, 1216)):
            box.set(1, address, [rnd.byte() << 8 | rnd.byte()])
        assert run_sync(driver.poll())
        s = driver.status
        assert s.car in (CAR_NONE, CAR_CONNECTED, CAR_CHARGING, CAR_UNKNOWN)
        for v in s.current_ma + [s.power_w, s.session_energy_wh, s.offered_ma]:
            assert v is None or -0x40000000 <= v <= 0x3FFFFFFF
        assert run_sync(driver.apply(rnd.byte() * 150)) in (True, False)
