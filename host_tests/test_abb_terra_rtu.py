# ABB Terra AC over Modbus RTU on the RS485 port (chargers/abb_terra.py with net/modbus_rtu_box.py):
# the write framing of functions 6 and 16 on an RTU line, and the driver against a fake box on a
# fake UART (both runtimes). The box's registers are test_abb_terra.Terra's, answered as RTU frames.
from modbus_box_fakes import FakePlatform
from modbus_fakes import FakeUart, rtu_frame, run_sync
from test_abb_terra import Terra, u32

from chargeguard.chargers import abb_terra
from chargeguard.core.model import CAR_CHARGING
from chargeguard.net import modbus as mb
from chargeguard.net import modbus_rtu_box


class RtuPlatform(FakePlatform):
    """The platform calls of an RTU box: the fake clock and the RS485 port (`uart`, how it was opened)."""

    def __init__(self, answer):
        FakePlatform.__init__(self)
        self.uart = FakeUart(answer)
        self.opened = []

    def open_rs485(self, baud, data_bits, parity, stop_bits):
        self.opened.append((baud, data_bits, parity, stop_bits))
        return self.uart


class RtuTerra(Terra):
    """Terra's registers behind an RTU line: a request with a bad CRC is not answered (as a real slave)."""

    def __init__(self, unit=1):
        Terra.__init__(self)
        self.unit = unit  # on the line; the registers stay under Terra's unit 1
        self.status(state=4)
        self.rtu_requests = []
        self.echo_wrong = False

    def rtu(self, request):
        self.rtu_requests.append(request)
        body = request[:-2]
        if rtu_frame(body) != request:
            return None
        if self.unit != 1:  # Terra's registers are kept under unit 1
            body = bytes((1,)) + body[1:]
        reply = self.answer(bytes((0, 7, 0, 0, 0, len(body))) + body)
        if reply is None:
            return None
        pdu = bytearray(reply[7:])
        if self.echo_wrong and pdu[0] == 16:
            pdu[4] ^= 1  # a count that does not confirm the write
        return rtu_frame(bytes((request[0],)) + bytes(pdu))


def make(unit=1, fmt="8E1"):
    box = RtuTerra(unit)
    platform = RtuPlatform(box.rtu)
    entry = {"type": "abb_terra", "transport": "rtu", "baud": 19200, "format": fmt, "unit": unit, "host": "", "port": 502}
    return abb_terra.from_config(entry, platform, 200), box, platform


def test_rtu_write_frames_of_functions_6_and_16():
    uart = FakeUart(lambda request: None)
    platform = FakePlatform()
    link = modbus_rtu_box.RtuWriteLink(uart, 19200, platform.ticks_ms, platform.ticks_diff)
    link.begin(1, 16, 0x4100, 2, [0x0001, 0x2345])
    assert bytes(link._req) == rtu_frame(bytes((1, 16, 0x41, 0x00, 0, 2, 4, 0x00, 0x01, 0x23, 0x45)))
    link.begin(7, 16, 0x4106, 1, [60])
    assert bytes(link._req) == rtu_frame(bytes((7, 16, 0x41, 0x06, 0, 1, 2, 0, 60)))
    link.begin(1, 6, 6013, 1, [16])
    assert bytes(link._req) == rtu_frame(bytes((1, 6, 6013 >> 8, 6013 & 0xFF, 0, 16)))
    # A read after the writes is framed as before (8 bytes, the count in place of a value).
    link.begin(1, 3, 0x4008, 25)
    assert bytes(link._req) == rtu_frame(bytes((1, 3, 0x40, 0x08, 0, 25)))
    # The frame of one register count is made once and kept (nothing allocated once warm).
    link.begin(1, 16, 0x4100, 2, [0, 0])
    first = link._req
    link.begin(1, 16, 0x4100, 2, [0, 6000])
    assert link._req is first


def test_rtu_write_answer_is_an_eight_byte_echo():
    # [unit][16][address][count][CRC]: complete by its length, not by t3.5 of silence.
    echo = rtu_frame(bytes((1, 16, 0x41, 0x00, 0, 2)))
    platform = FakePlatform()
    uart = FakeUart(lambda request: echo, chunk=3)
    link = modbus_rtu_box.RtuWriteLink(uart, 19200, platform.ticks_ms, platform.ticks_diff)
    link.begin(1, 16, 0x4100, 2, [0, 10000])
    platform.clock.now += 10
    assert link.send(platform.ticks_ms()) == mb.DONE
    results = [link.receive(platform.ticks_ms()) for _ in range(3)]
    assert results == [mb.BUSY, mb.BUSY, 5]  # the PDU: function, address, count


def test_abb_over_rtu_polls_and_writes_the_limit_with_function_16():
    driver, box, platform = make()
    assert platform.opened == [(19200, 8, 0, 1)]  # 8E1
    assert run_sync(driver.poll())
    s = driver.status
    assert s.reachable and s.car == CAR_CHARGING and s.current_ma == [15900, 15800, 15700]
    assert box.rtu_requests[0] == rtu_frame(bytes((1, 3, 0x40, 0x08, 0, 25)))
    assert run_sync(driver.apply(10700))
    assert box.writes == [(1, 0x4100, [0, 10000]), (1, 0x4106, [abb_terra.COMM_TIMEOUT_S])]
    assert box.rtu_requests[1] == rtu_frame(bytes((1, 16, 0x41, 0x00, 0, 2, 4, 0, 0, 0x27, 0x10)))
    assert box.rtu_requests[2] == rtu_frame(bytes((1, 16, 0x41, 0x06, 0, 1, 2, 0, abb_terra.COMM_TIMEOUT_S)))
    assert run_sync(driver.apply(10000)) and len(box.writes) == 2  # idempotent
    assert run_sync(driver.apply(3000)) and box.writes[-1] == (1, 0x4100, [0, 0])
    assert {address for _, address, _ in box.writes} <= {0x4100, 0x4106}


def test_abb_over_rtu_other_unit_and_format():
    driver, box, platform = make(unit=5, fmt="8N2")
    assert platform.opened == [(19200, 8, None, 2)]
    assert run_sync(driver.poll()) and run_sync(driver.apply(16000))
    assert all(request[0] == 5 for request in box.rtu_requests)
    assert box.writes[0] == (1, 0x4100, u32(16000))


def test_abb_over_rtu_failures_are_the_boxs_own_and_bounded():
    driver, box, platform = make()
    clock = platform.clock
    assert run_sync(driver.poll()) and run_sync(driver.apply(10000))
    # An exception to the write: refused, not retried, the box stays reachable.
    box.refuse_writes[0x4100] = 4
    n = len(box.rtu_requests)
    assert not run_sync(driver.apply(16000))
    assert len(box.rtu_requests) == n + 1 and "exception 4" in driver.status.error and driver.status.reachable
    del box.refuse_writes[0x4100]
    # An answer that does not confirm the write fails it.
    box.echo_wrong = True
    assert not run_sync(driver.apply(16000))
    assert "does not confirm" in driver.status.error
    box.echo_wrong = False
    # Silence: the poll fails within its deadline (2 x timeout + pause), the limit is written again after.
    box.mode = "hang"
    start = clock.now
    assert not run_sync(driver.poll())
    assert clock.now - start <= 2 * 200 + 20 + 10
    assert not driver.status.reachable and "no answer" in driver.status.error
    box.mode = "normal"
    assert run_sync(driver.poll()) and driver.status.reachable
    n = len(box.writes)
    assert run_sync(driver.apply(16000)) and box.writes[n] == (1, 0x4100, u32(16000))

