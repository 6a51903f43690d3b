# Modbus writes (functions 5, 6 and 16: net/modbus_box.py arms them, net/modbus.py
# checks the answers) over TCP, with a fake at the socket (both runtimes; the
# system tests write to a real pymodbus server).
from modbus_box_fakes import FakeBox
from modbus_fakes import Clock, finish

from chargeguard.net import modbus as mb
from chargeguard.net import modbus_box

TIMEOUT_MS = 1000


def tcp(box=None):
    clock = Clock()
    link = modbus_box._Link("127.0.0.1", 502)
    box = box or FakeBox()
    box.attach(link)
    return modbus_box._Master(link, clock.ticks_ms, clock.ticks_diff, TIMEOUT_MS, 1, 0), clock, box


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
    # The same count again: the same frame, a new transaction id.
    assert master.start_write(1, 16, 1210, [0x4190, 0x0000], 2, 2500)
    assert finish(master, clock) == mb.DONE, master.error
    assert box.get(1, 1210, 2) == [0x4190, 0] and box.requests[-1][1] == (box.requests[-2][1] + 1) & 0xFF
    # A read after a write: the request is back to 12 bytes.
    assert master.start(1, 3, 1210, 2, 2500)
    assert finish(master, clock) == mb.DONE
    assert len(box.requests[-1]) == 12 and master.word(0) == 0x4190


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
