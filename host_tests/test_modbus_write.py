# Modbus master writes (net/modbus.py functions 6 and 16) over RTU and TCP,
# with fakes at the UART and the socket (both runtimes; the system tests
# write to a real pymodbus server).
from modbus_box_fakes import FakeBox
from modbus_fakes import Clock, FakeUart, rtu_frame

from chargeguard.net import modbus as mb
from chargeguard.net.modbus_tcp import TcpLink

TIMEOUT_MS = 1000


def finish(master, clock, step_ms=5, limit=100000):
    for _ in range(limit):
        r = master.step()
        if r != mb.BUSY:
            return r
        clock.now += step_ms
    raise AssertionError("request never ended")


def tcp(box=None):
    clock = Clock()
    link = TcpLink("127.0.0.1", 502)
    box = box or FakeBox()
    box.attach(link)
    return mb.ModbusMaster(link, clock.ticks_ms, clock.ticks_diff, TIMEOUT_MS, 1, 0), clock, box


def test_tcp_function_6_and_16_requests_and_echo():
    master, clock, box = tcp()
    assert master.start_write(1, 6, 6013, [16], 1, 2500)
    assert finish(master, clock) == mb.DONE, master.error
    req = box.requests[-1]
    assert req[2:] == bytes((0, 0, 0, 6, 1, 6, 0x17, 0x7D, 0, 16))
    assert box.writes[-1] == (1, 6013, [16])
    assert master.start_write(1, 16, 1210, [0x4180, 0x0000], 2, 2500)
    assert finish(master, clock) == mb.DONE, master.error
    req = box.requests[-1]
    assert req[2:] == bytes((0, 0, 0, 11, 1, 16, 0x04, 0xBA, 0, 2, 4, 0x41, 0x80, 0, 0))
    assert box.get(1, 1210, 2) == [0x4180, 0]
    # A read after a write: the request is back to 12 bytes.
    assert master.start(1, 3, 1210, 2, 2500)
    assert finish(master, clock) == mb.DONE
    assert len(box.requests[-1]) == 12 and master.word(0) == 0x4180


def test_function_5_writes_one_coil():
    master, clock, box = tcp()
    assert master.start_write(1, 5, 400, [0xFF00], 1, 2500)
    assert finish(master, clock) == mb.DONE, master.error
    assert box.requests[-1][2:] == bytes((0, 0, 0, 6, 1, 5, 0x01, 0x90, 0xFF, 0x00))
    assert box.coils[(1, 400)] is True
    assert master.start_write(1, 5, 400, [0], 1, 2500)
    assert finish(master, clock) == mb.DONE
    assert box.coils[(1, 400)] is False


def test_write_exception_is_not_retried_and_in_words():
    master, clock, box = tcp()
    box.refuse_writes[1215] = 2
    assert master.start_write(1, 6, 1215, [1], 1, 2500)
    assert finish(master, clock) == mb.FAILED
    assert master.exception == 2 and "illegal data address" in master.error
    assert len(box.requests) == 1


def test_write_without_answer_is_retried_once_then_fails_by_its_deadline():
    master, clock, box = tcp()
    box.mode = "hang"
    start = clock.now
    assert master.start_write(1, 16, 1210, [0, 0], 2, 2500)
    assert finish(master, clock) == mb.FAILED
    assert "no answer" in master.error and len(box.requests) == 2
    assert clock.now - start <= 2500


def test_an_answer_that_does_not_echo_the_write_fails():
    master, clock, box = tcp()
    box.answer_real = box.answer

    def wrong(req):
        reply = bytearray(box.answer_real(req))
        reply[-1] ^= 1  # the echoed value (6) or count (16) differs
        return bytes(reply)

    box.answer = wrong
    assert master.start_write(1, 6, 100, [7], 1, 2500)
    assert finish(master, clock) == mb.FAILED
    assert "does not confirm the write" in master.error


def test_bad_writes_are_refused_before_anything_is_sent():
    master, clock, box = tcp()
    for function, values, count in ((6, [1, 2], 2), (16, [0] * 9, 9), (5, [1], 1), (6, [0x10000], 1), (6, [-1], 1),
                                    (15, [1], 1), (5, [0xFF00, 0], 2)):
        try:
            master.start_write(1, function, 0, values, count, 2500)
        except ValueError:
            continue
        raise AssertionError((function, count))
    assert not box.requests


def test_rtu_function_6_and_16_frames_and_answers():
    clock = Clock()
    uart = FakeUart(lambda req: rtu_frame(bytes(req[:6])))
    link = mb.RtuLink(uart, 9600, clock.ticks_ms, clock.ticks_diff)
    master = mb.ModbusMaster(link, clock.ticks_ms, clock.ticks_diff, TIMEOUT_MS, 1, 0)
    assert master.start_write(1, 6, 0x4100, [0x1234], 1, 2500)
    assert finish(master, clock) == mb.DONE, master.error
    assert uart.requests[-1] == rtu_frame(bytes((1, 6, 0x41, 0x00, 0x12, 0x34)))
    assert master.start_write(2, 16, 0x4100, [0, 16000], 2, 2500)
    assert finish(master, clock) == mb.DONE, master.error
    assert uart.requests[-1] == rtu_frame(bytes((2, 16, 0x41, 0x00, 0, 2, 4, 0, 0, 0x3E, 0x80)))
