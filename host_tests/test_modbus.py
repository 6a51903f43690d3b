# Modbus master (net/modbus.py) and meter driver (meters/modbus.py): framing,
# timing, errors, every table row, on both runtimes with fakes at the UART.

from modbus_fakes import (
    CURRENTS_MA,
    EXPORT_WH,
    IMPORT_WH,
    POWERS_W,
    VOLTAGES_MV,
    Clock,
    FakeSocket,
    FakeUart,
    Image,
    finish,
    image_for,
    mbap,
    rtu_frame,
    run_sync,
)
from support import IS_MICROPYTHON, heap_growth, read_fixture

from chargeguard.meters import modbus_models
from chargeguard.meters.modbus import ModbusMeter, decode_f32, decode_int
from chargeguard.net import modbus as mb

TIMEOUT_MS = 1000  # meters/modbus.py _TIMEOUT_MS
ENERGY_EVERY = 10  # meters/modbus.py _ENERGY_EVERY


def fixture_pairs():
    """[(request bytes, answer bytes)] from the captured SDM630 exchange."""
    pairs = []
    request = None
    for line in read_fixture("modbus", "sdm630_rtu_frames_mbmd_issue63.txt").decode().split("\n"):
        parts = line.split()
        if not parts or parts[0] not in ("send", "recv"):
            continue
        data = bytes([int(h, 16) for h in parts[1:] if len(h) == 2 and h not in ("id1", "id2")][: _frame_len(parts)])
        if parts[0] == "send":
            request = data
        else:
            pairs.append((request, data))
    return pairs


def _frame_len(parts):
    # The hex bytes come first; the comment column starts with a word.
    n = 0
    for p in parts[1:]:
        if len(p) != 2:
            break
        try:
            int(p, 16)
        except ValueError:
            break
        n += 1
    return n


def make_master(uart, clock, baud=9600, retries=1, pause_ms=100, timeout_ms=TIMEOUT_MS):
    link = mb.RtuLink(uart, baud, clock.ticks_ms, clock.ticks_diff)
    return mb.ModbusMaster(link, clock.ticks_ms, clock.ticks_diff, timeout_ms, retries, pause_ms)


def read(master, clock, unit=1, function=4, address=0, count=2, deadline_ms=2500):
    assert master.start(unit, function, address, count, deadline_ms)
    return finish(master, clock)


# -- CRC and frames -----------------------------------------------------------


def test_crc16_modbus_check_value_and_fixture_frames():
    assert mb.crc16(b"123456789") == 0x4B37  # the CRC-16/MODBUS check value
    pairs = fixture_pairs()
    assert len(pairs) == 7
    for request, answer in pairs:
        for frame in (request, answer):
            assert mb.crc16(frame, 0, len(frame) - 2) == frame[-2] | (frame[-1] << 8), frame


def test_request_frame_is_the_captured_one():
    for request, answer in fixture_pairs():
        clock = Clock()
        uart = FakeUart(lambda req, answer=answer: answer)
        master = make_master(uart, clock)
        unit = request[0]
        function = request[1]
        address = (request[2] << 8) | request[3]
        count = (request[4] << 8) | request[5]
        assert read(master, clock, unit, function, address, count) == mb.DONE, master.error
        assert uart.requests == [request]
        words = [master.word(i) for i in range(count)]
        data = answer[3:-2]
        assert words == [(data[2 * i] << 8) | data[2 * i + 1] for i in range(count)]


def test_captured_sdm630_answers_decode_to_the_logged_values():
    values = {}
    for request, answer in fixture_pairs():
        if request[1] == 4:
            hi = (answer[3] << 8) | answer[4]
            lo = (answer[5] << 8) | answer[6]
            values[(request[0], request[3])] = decode_f32(hi, lo, 3)
    assert values[(1, 0)] == 231685  # mV: mbmd logs "VoltageL1: 231.68"
    assert values[(1, 8)] == 4281  # mA, current L2 of meter 1 (4.2805 A)
    assert values[(2, 8)] == 4357  # 4.3568 A


def test_frame_silence_follows_the_serial_line_spec():
    assert mb.frame_silence_ms(9600) == 5  # 4.01 ms, rounded up
    assert mb.frame_silence_ms(19200) == 3  # 2.005 ms
    assert mb.frame_silence_ms(2400) == 17  # 16.04 ms
    assert mb.frame_silence_ms(38400) == 2  # fixed 1.75 ms above 19200
    assert mb.frame_silence_ms(115200) == 2


# -- the request layer ----------------------------------------------------------


def ok_answer(unit=1, function=4, words=(0x4367, 0xAF55)):
    data = bytearray()
    for w in words:
        data.append(w >> 8)
        data.append(w & 0xFF)
    return rtu_frame(bytes((unit, function, len(data))) + bytes(data))


def test_exception_answer_is_an_error_in_words_and_not_retried():
    clock = Clock()
    uart = FakeUart(lambda req: rtu_frame(bytes((1, 0x84, 2))))
    master = make_master(uart, clock)
    assert read(master, clock) == mb.FAILED
    assert master.exception == 2
    assert "illegal data address" in master.error
    assert len(uart.requests) == 1  # the meter answered: asking again changes nothing
    for code in (1, 3, 4, 6, 10, 11, 99):
        uart.answer = lambda req, code=code: rtu_frame(bytes((1, 0x84, code)))
        assert read(master, clock) == mb.FAILED
        assert master.exception == code
        assert master.error.startswith("exception")


def test_no_answer_is_retried_once_then_fails_in_words():
    clock = Clock()
    uart = FakeUart(lambda req: None)
    master = make_master(uart, clock, retries=1, pause_ms=100)
    started = clock.now
    assert read(master, clock, deadline_ms=5000) == mb.FAILED
    assert len(uart.requests) == 2
    assert master.n_retries == 1
    assert "no answer" in master.error and "A/B wiring" in master.error and "address" in master.error
    # Two full answer timeouts and the pause between the tries.
    assert clock.now - started >= 2 * TIMEOUT_MS + 100


def test_the_deadline_ends_a_request_whatever_the_retries():
    clock = Clock()
    uart = FakeUart(lambda req: None)
    master = make_master(uart, clock, retries=5)
    started = clock.now
    assert read(master, clock, deadline_ms=1500) == mb.FAILED
    assert clock.now - started <= 1500 + 5
    assert len(uart.requests) == 2


def test_crc_error_is_retried_and_the_good_answer_taken():
    clock = Clock()
    answers = []

    def answer(req):
        frame = bytearray(ok_answer())
        if not answers:
            frame[4] ^= 0x10  # a bit flipped on the line
        answers.append(1)
        return bytes(frame)

    uart = FakeUart(answer)
    master = make_master(uart, clock)
    assert read(master, clock) == mb.DONE, master.error
    assert master.n_retries == 1
    assert master.word(0) == 0x4367


def test_crc_error_twice_fails_with_crc_in_words():
    clock = Clock()
    uart = FakeUart(lambda req: ok_answer()[:-1] + b"\x00")
    master = make_master(uart, clock)
    assert read(master, clock) == mb.FAILED
    assert master.error.startswith("crc error")


def test_truncated_answer_ends_at_the_silence_and_fails():
    clock = Clock()
    uart = FakeUart(lambda req: ok_answer()[:6])
    master = make_master(uart, clock, retries=0)
    assert read(master, clock) == mb.FAILED
    assert master.error.startswith("crc error")
    # Ended by t3.5 of silence, not by the answer timeout.
    assert master.n_failed == 1


def test_answer_from_another_unit_or_function_or_length_fails():
    cases = (
        (ok_answer(unit=2), "another unit"),
        (ok_answer(function=3), "another function"),
        (ok_answer(words=(1, 2, 3, 4)), "wrong length"),
    )
    for frame, words in cases:
        clock = Clock()
        uart = FakeUart(lambda req, frame=frame: frame)
        master = make_master(uart, clock, retries=0)
        assert read(master, clock) == mb.FAILED
        assert words in master.error, (words, master.error)


def test_answer_arriving_byte_by_byte_is_complete_by_its_length():
    clock = Clock()
    uart = FakeUart(lambda req: ok_answer(), chunk=1)
    master = make_master(uart, clock)
    assert read(master, clock) == mb.DONE, master.error
    assert master.word(1) == 0xAF55


def test_noise_before_a_request_is_dropped_and_the_line_left_silent_first():
    clock = Clock()
    uart = FakeUart(lambda req: ok_answer(), noise=b"\x55\xaa\x00")
    master = make_master(uart, clock)
    master.start(1, 4, 0, 2, 2500)
    assert master.step() == mb.BUSY  # the noise is drained, silence starts now
    assert master.link.n_noise == 3
    assert not uart.requests
    clock.now += 2  # less than t3.5 (5 ms at 9600 baud)
    master.step()
    assert not uart.requests
    clock.now += 3
    master.step()
    assert len(uart.requests) == 1
    assert finish(master, clock) == mb.DONE


def test_one_request_in_flight_and_a_pause_between_requests():
    clock = Clock()
    uart = FakeUart(lambda req: ok_answer())
    master = make_master(uart, clock, pause_ms=100)
    assert read(master, clock) == mb.DONE
    ended = clock.now
    assert master.start(1, 4, 0, 2, 2500)
    assert not master.start(1, 4, 0, 2, 2500)  # one in flight
    assert "already in flight" in master.error
    while not len(uart.requests) == 2:
        master.step()
        clock.now += 1
    assert clock.now - 1 - ended >= 100
    assert finish(master, clock) == mb.DONE


def test_requests_out_of_the_function_3_4_range_are_refused():
    clock = Clock()
    master = make_master(FakeUart(lambda req: None), clock)
    for args in ((1, 6, 0, 1), (1, 4, 0, 0), (1, 4, 0, 126), (1, 3, 0xFFFF, 2)):
        try:
            master.start(args[0], args[1], args[2], args[3], 1000)
        except ValueError:
            continue
        raise AssertionError(args)


class Lcg:
    """A small deterministic random generator (the same bytes on both runtimes)."""

    def __init__(self, seed):
        self.state = seed

    def byte(self):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 16) & 0xFF


def test_fuzzed_answers_never_crash_always_end_in_words_and_lose_nothing():
    rng = Lcg(11)
    words_ok = set(mb._ERRORS[1:]) | set(mb._EXCEPTIONS)
    clock = Clock()
    state = {"mode": 0}

    def answer(req):
        mode = state["mode"]
        if mode == 0:  # random garbage of random length
            return bytes([rng.byte() for _ in range(rng.byte() % 40)])
        if mode == 1:  # a good answer with one random byte changed
            frame = bytearray(ok_answer())
            frame[rng.byte() % len(frame)] ^= 1 + rng.byte() % 255
            return bytes(frame)
        if mode == 2:  # a good answer cut short
            frame = ok_answer()
            return frame[: rng.byte() % len(frame)]
        # a plausible header with a random byte count and garbage after it
        return bytes((1, 4, rng.byte())) + bytes([rng.byte() for _ in range(rng.byte() % 300)])

    uart = FakeUart(answer, chunk=7)
    master = make_master(uart, clock, retries=1)
    outcomes = 0
    for i in range(400):
        state["mode"] = i % 4
        result = read(master, clock)
        if result == mb.FAILED:
            assert master.error in words_ok, master.error
        outcomes += 1
        # After every failure a clean answer is read in full: nothing is stuck.
        state["mode"] = -1
        uart.answer = lambda req: ok_answer()
        assert read(master, clock) == mb.DONE, (i, master.error)
        assert master.word(0) == 0x4367 and master.word(1) == 0xAF55
        uart.answer = answer
    assert outcomes == 400


# -- float32 and integer decoding ---------------------------------------------


def f32_words(value):
    import struct

    b = struct.pack(">f", value)
    return (b[0] << 8) | b[1], (b[2] << 8) | b[3]


def test_float32_decoded_by_integer_arithmetic():
    cases = (
        (231.6849, 3, 231685),
        (4.2805, 3, 4280),  # float32 4.28049993
        (-1.5, 3, -1500),
        (0.0, 3, 0),
        (-0.0, 3, 0),
        (2.3, 3, 2300),  # kW -> W
        (12345.6, 3, 12345600),  # kWh -> Wh
        (23000.0, -1, 2300),  # 0.1 W -> W
        (2301.0, 2, 230100),  # 0.1 V -> mV
        (0.0004, 3, 0),
        (0.0006, 3, 1),
        (-0.0006, 3, -1),
        (1e-30, 3, 0),
        (999999.0, 0, 999999),
        (123456789.0, 0, 123456792),  # float32's own precision
        (7.25, 0, 7),
        (7.5, 0, 8),
    )
    for value, k, expected in cases:
        hi, lo = f32_words(value)
        assert decode_f32(hi, lo, k) == expected, (value, k, decode_f32(hi, lo, k))
    for bad in (0x7FC0, 0x7F80, 0xFF80):  # NaN, +inf, -inf
        assert decode_f32(bad, 0, 3) is None
    hi, lo = f32_words(3e9)
    assert decode_f32(hi, lo, 0) is None  # beyond a small int: not a real meter value


def test_integers_with_signs_scales_and_not_available_markers():
    assert decode_int(0, 1234, 1, 0) == 1234  # int32
    assert decode_int(0xFFFF, 0xFFFE, 1, 0) == -2
    assert decode_int(0xFFFF, 0xFF38, 1, -2) == -2  # -200 x 0.01 W
    assert decode_int(0x0001, 0x0000, 2, 1) == 655360  # uint32 x 10
    assert decode_int(0xFFFF, 0xFFFF, 2, 0) is None  # uint32 all ones: not available
    assert decode_int(0x7FFF, 0xFFFF, 1, 0) is None  # int32 max: not available
    assert decode_int(0, 0xFFFF, 4, 0) is None  # uint16 all ones
    assert decode_int(0, 0x8000, 3, 0) == -32768  # int16
    assert decode_int(0, 0x7FFF, 3, 0) is None
    assert decode_int(0, 25, 1, -1) == 3  # 2.5 rounds up
    assert decode_int(0xFFFF, 0xFFE7, 1, -1) == -3  # -2.5 rounds away from zero
    assert decode_int(0x3000, 0, 2, 3) is None  # too large once scaled


# -- the meter driver ---------------------------------------------------------


def make_meter(row, image, upside_down=False, unit=1, chunk=64):
    clock = Clock()
    uart = FakeUart(image.answer, chunk=chunk)
    master = make_master(uart, clock)
    meter = ModbusMeter(master, row, unit, upside_down, clock.ticks_ms, clock.ticks_diff, clock.sleep_ms, 1000)
    return meter, clock, uart


def signed(current, power):
    return -current if power < 0 else current


def test_every_table_row_decoded_from_a_register_image():
    for model in modbus_models.MODELS:
        row = modbus_models.row(model)
        assert row is not None, model
        image = image_for(row)
        meter, clock, uart = make_meter(row, image)
        assert run_sync(meter.poll()), (model, meter.last_error)
        r = meter.reading
        phases = row[2]
        assert r.phase_count == phases, model
        for p in range(phases):
            assert r.current_ma[p] == signed(CURRENTS_MA[p], POWERS_W[p]), (model, p, r.current_ma)
            assert r.power_w[p] == POWERS_W[p], (model, p, r.power_w)
            assert r.voltage_mv[p] == VOLTAGES_MV[p], (model, p, r.voltage_mv)
        total = sum(POWERS_W[:phases]) if phases else sum(POWERS_W)
        assert r.net_power_w() == total, model
        assert r.energy_import_wh == IMPORT_WH, (model, r.energy_import_wh)
        assert r.energy_export_wh == EXPORT_WH, (model, r.energy_export_wh)
        assert r.tick_ms == meter.master.tick_ms
        assert meter.last_error is None
        # Few requests: the per-phase values in one, the energy in one.
        assert len(uart.requests) == 2, (model, [q.hex() for q in uart.requests])
        for request in uart.requests:
            assert request[1] == row[0]  # the row's function code


def test_word_order_matters_a_swapped_float_is_not_taken_as_real():
    row = modbus_models.row("phoenix_eem_ma370")  # float32, low word first
    assert row[1]
    image = image_for(row)
    meter, clock, uart = make_meter(row, image)
    assert run_sync(meter.poll())
    # The same image read as big-endian: no plausible values.
    wrong = (row[0], False) + row[2:]
    meter, clock, uart = make_meter(wrong, image)
    ok = run_sync(meter.poll())
    assert not ok or meter.reading.current_ma[0] != CURRENTS_MA[0]


def test_upside_down_negates_power_and_current_and_swaps_energy():
    row = modbus_models.row("sdm630")
    meter, clock, uart = make_meter(row, image_for(row), upside_down=True)
    assert run_sync(meter.poll())
    r = meter.reading
    for p in range(3):
        assert r.power_w[p] == -POWERS_W[p]
        assert r.current_ma[p] == signed(CURRENTS_MA[p], -POWERS_W[p])
    assert r.net_power_w() == -sum(POWERS_W)
    assert r.energy_import_wh == EXPORT_WH and r.energy_export_wh == IMPORT_WH


def test_current_sign_comes_from_the_phase_power_only():
    row = modbus_models.row("em24")  # int32: a meter may sign the current itself
    image = image_for(row, currents=(10500, 7250, 500), powers=(-2300, 1500, -100))
    # Current L2 written negative by the meter: the power (import) decides.
    image.put(row[5][0] + 2, 1, 0, -7250, True)
    meter, clock, uart = make_meter(row, image)
    assert run_sync(meter.poll())
    assert list(meter.reading.current_ma) == [-10500, 7250, -500]


def test_energy_is_read_every_tenth_poll_only():
    row = modbus_models.row("sdm630")
    meter, clock, uart = make_meter(row, image_for(row))
    for _ in range(ENERGY_EVERY + 1):
        assert run_sync(meter.poll())
    energy = [q for q in uart.requests if q[3] == 0x48]
    assert len(energy) == 2
    assert len(uart.requests) == ENERGY_EVERY + 1 + 2


def test_a_missing_energy_register_is_left_out_and_the_meter_goes_on():
    row = modbus_models.row("em24")
    image = image_for(row)
    image.missing.add(0x5C)  # export register absent (evcc-io/evcc#31736)
    meter, clock, uart = make_meter(row, image)
    assert run_sync(meter.poll())  # the per-phase values still count
    assert "one by one" in meter.last_error
    assert run_sync(meter.poll())  # energy again, register by register
    assert meter.reading.energy_import_wh == IMPORT_WH
    assert meter.reading.energy_export_wh is None
    assert "export energy register 92 not available" in meter.last_error
    for _ in range(2 * ENERGY_EVERY):
        assert run_sync(meter.poll())
    assert meter.reading.energy_import_wh == IMPORT_WH
    assert not [q for q in uart.requests[-2 * ENERGY_EVERY :] if q[3] == 0x5C]


def test_a_wrong_model_fails_in_words_and_gives_no_reading():
    row = modbus_models.row("sdm630")  # FC4
    image = image_for(modbus_models.row("abb_b23"))  # an FC3 meter
    meter, clock, uart = make_meter(row, image)
    assert not run_sync(meter.poll())
    assert "illegal function" in meter.last_error
    assert meter.reading.tick_ms == 0


def test_a_not_available_phase_value_fails_the_reading():
    row = modbus_models.row("sdm630")
    image = image_for(row)
    image.words[0x0E] = 0x7FC0  # power L2 = NaN
    meter, clock, uart = make_meter(row, image)
    assert not run_sync(meter.poll())
    assert "not available" in meter.last_error


def test_a_silent_meter_ends_in_the_guards_failsafe():
    from chargeguard.core.guard import Guard
    from chargeguard.core.model import CAR_CHARGING, ChargerCommand, ChargerStatus
    from test_guard import make_charger, make_site

    site = make_site(breaker_a=25, min_pause_ms=0)  # meter_timeout 10 s
    guard = Guard(site, [make_charger()])  # 6..16 A on three phases
    status = ChargerStatus()
    status.reachable = True
    status.car = CAR_CHARGING
    commands = [ChargerCommand()]

    row = modbus_models.row("sdm630")
    image = image_for(row, powers=(500, 500, 500), currents=(2000, 2000, 2000))
    meter, clock, uart = make_meter(row, image)
    readings = []
    for _ in range(5):
        if run_sync(meter.poll()):
            readings.append(meter.reading.tick_ms)
        guard.tick(meter.reading, [status], [16000], clock.now, commands)
        clock.now += 1000
    assert len(readings) == 5
    assert commands[0].reason != "failsafe"
    image.silent = True  # the meter stops answering (cable cut, power lost)
    stamped = meter.reading.tick_ms
    while clock.now - stamped < 10000 + 1000:
        assert not run_sync(meter.poll())
        assert "no answer" in meter.last_error
        guard.tick(meter.reading, [status], [16000], clock.now, commands)
        clock.now += 1000
    assert meter.reading.tick_ms == stamped  # no new stamp while silent
    assert commands[0].reason == "failsafe"
    assert commands[0].offered_ma == 0
    image.silent = False  # and it comes back: so does the guard
    assert run_sync(meter.poll())
    guard.tick(meter.reading, [status], [16000], clock.now, commands)
    assert commands[0].reason != "failsafe"


def test_custom_map_row_reads_like_a_table_row():
    custom = {
        "function": 3,
        "type": "int32",
        "word_order": "low_first",
        "phases": 3,
        "current": 100,
        "current_exp": -3,  # mA
        "power": 120,
        "power_exp": -1,  # 0.1 W
        "voltage": 140,
        "voltage_exp": -1,  # 0.1 V
        "import": 200,
        "export": 210,
        "energy_type": "uint64",
        "energy_exp": -2,  # 0.01 kWh
    }
    row = modbus_models.custom_row(custom)
    meter, clock, uart = make_meter(row, image_for(row))
    assert run_sync(meter.poll()), meter.last_error
    r = meter.reading
    assert list(r.power_w) == list(POWERS_W)
    assert list(r.voltage_mv) == list(VOLTAGES_MV)
    assert r.energy_import_wh == IMPORT_WH and r.energy_export_wh == EXPORT_WH


# -- memory -------------------------------------------------------------------


class ReplayUart:
    """Answers from preallocated frames (the fake itself allocates nothing per request)."""

    def __init__(self, frames):
        self.frames = frames  # {function << 16 | address: bytes} (an int key: a tuple would allocate)
        self.pending = None
        self.pos = 0

    def write(self, buf):
        self.pending = self.frames[(buf[1] << 16) | (buf[2] << 8) | buf[3]]
        self.pos = 0

    def read_now(self, buf):
        pending = self.pending
        if pending is None:
            return 0
        n = len(pending) - self.pos
        if n > len(buf):
            n = len(buf)
        for i in range(n):
            buf[i] = pending[self.pos + i]
        self.pos += n
        if self.pos >= len(pending):
            self.pending = None
        return n


def test_no_allocation_per_poll_once_warm():
    # The whole RTU exchange and decode of every block, exactly as the meter
    # task runs a poll (begin_poll, step_poll; the task sleeps in between).
    for model in ("sdm630", "abb_b23", "em24", "phoenix_eem_ma370"):
        row = modbus_models.row(model)
        image = image_for(row)
        meter, clock, _ = make_meter(row, image)
        frames = {}
        for block in meter._blocks:
            request = rtu_frame(bytes((1, row[0], block[0] >> 8, block[0] & 0xFF, 0, block[1])))
            frames[(row[0] << 16) | block[0]] = image.answer(request)
        meter.master.link.uart = ReplayUart(frames)
        master = meter.master

        def work():
            # Two polls: one with the energy request, one without.
            for n in (0, 1):
                meter.n_polls = n  # 0: energy is read too
                meter.begin_poll()
                while meter.step_poll() == mb.BUSY:
                    clock.now += 5

        work()
        assert meter.reading.power_w[0] == POWERS_W[0], model
        assert meter.last_error is None, (model, meter.last_error)
        used = heap_growth(work)
        assert used == 0, (model, used)
        assert meter.reading.energy_import_wh == IMPORT_WH


# -- Modbus TCP framing (MBAP), with a fake socket --------------------------------


def tcp_master(answer):
    from chargeguard.net.modbus_tcp import TcpLink

    clock = Clock()
    link = TcpLink("127.0.0.1", 502)
    sock = FakeSocket(answer)

    def connect():
        link._sock = sock
        link._read = sock.recv_into
        link._connected = True

    link._open = connect  # the socket layer is the system tests' (real pymodbus)
    master = mb.ModbusMaster(link, clock.ticks_ms, clock.ticks_diff, TIMEOUT_MS, 1, 0)
    return master, clock, sock


def test_tcp_request_is_mbap_and_the_answer_is_taken_by_transaction_id():
    def answer(req):
        tid = (req[0] << 8) | req[1]
        # A late answer to an older request first, then this one's.
        return mbap(tid - 1, 1, b"\x04\x04\x00\x00\x00\x00") + mbap(tid, 1, b"\x04\x04\x43\x67\xaf\x55")

    master, clock, sock = tcp_master(answer)
    assert read(master, clock) == mb.DONE, master.error
    req = sock.sent[0]
    assert req[2:] == bytes((0, 0, 0, 6, 1, 4, 0, 0, 0, 2))
    assert master.word(0) == 0x4367 and master.word(1) == 0xAF55
    assert read(master, clock) == mb.DONE
    assert (sock.sent[1][0] << 8 | sock.sent[1][1]) == (req[0] << 8 | req[1]) + 1  # a new transaction id


def test_tcp_exception_and_bad_answers_in_words():
    master, clock, sock = tcp_master(lambda req: mbap((req[0] << 8) | req[1], 1, b"\x84\x0b"))
    assert read(master, clock) == mb.FAILED
    assert master.exception == 11 and "gateway" in master.error
    master, clock, sock = tcp_master(lambda req: mbap((req[0] << 8) | req[1], 1, b"\x04\x04\x00\x00", protocol=1))
    assert read(master, clock) == mb.FAILED
    assert "not a Modbus TCP answer" in master.error
    assert sock.closed  # a broken stream is closed and opened again
    master, clock, sock = tcp_master(lambda req: mbap((req[0] << 8) | req[1], 9, b"\x04\x04\x00\x00\x00\x00"))
    assert read(master, clock) == mb.FAILED
    assert "another unit" in master.error
    master, clock, sock = tcp_master(lambda req: None)
    assert read(master, clock) == mb.FAILED
    assert "no answer" in master.error
    assert len(sock.sent) == 2  # retried once
