"""HAN port (meters/han.py): HDLC framing, the DataNotification decoder and the driver, on both runtimes.

The frames are built here from the format meters/han.py's docstring states
(IEC 62056-46 frame format type 3, CRC-16/X-25, a DLMS DataNotification of
OBIS / value / scaler-unit structures). The List 2 below has the layout of the
public Aidon three-phase sample (hanporten.se, "Protokollet"): an IT network
meter with L1 and L3 currents only; its header's HCS (0xFA 0x7C) is the one
printed there, which checks the CRC and its byte order against a real meter.
"""

from chargeguard.meters import han
from support import IS_MICROPYTHON

OBIS_LIST_ID = b"\x01\x01\x00\x02\x81\xff"
OBIS_METER_ID = b"\x00\x00\x60\x01\x00\xff"


def obis(c, d=7):
    return bytes((1, 0, c, d, 0, 255))


def _int(tag, value):
    size = {0x05: 4, 0x06: 4, 0x10: 2, 0x12: 2, 0x0F: 1, 0x11: 1}[tag]
    if value < 0:
        value += 1 << (8 * size)
    out = bytearray(size)
    for k in range(size):
        out[size - 1 - k] = (value >> (8 * k)) & 0xFF
    return bytes(out)


def item(code, tag, value, scaler=0, unit=27, scaled=True):
    """One value as the meter sends it: a structure of OBIS, value (and scaler-unit)."""
    out = bytearray(b"\x02\x03" if scaled else b"\x02\x02")
    out += b"\x09\x06" + code + bytes((tag,)) + _int(tag, value)
    if scaled:
        out += b"\x02\x02\x0f" + _int(0x0F, scaler) + b"\x16" + bytes((unit,))
    return bytes(out)


def text(code, value):
    return b"\x02\x02\x09\x06" + code + b"\x0a" + bytes((len(value),)) + value


def frame(items, apdu_tag=0x0F, datetime=b"", segmented=False, llc=True):
    """A whole HDLC frame, flags included, around a DataNotification of `items`."""
    body = bytearray(b"\x01" + bytes((len(items),)))
    for one in items:
        body += one
    apdu = bytes((apdu_tag, 0x40, 0, 0, 0, len(datetime))) + datetime + body
    info = (b"\xe6\xe7\x00" if llc else b"") + apdu
    length = 2 + 1 + 2 + 1 + 2 + len(info) + 2
    head = bytearray((0xA0 | (0x08 if segmented else 0) | length >> 8, length & 0xFF, 0x41, 0x08, 0x83, 0x13))
    hcs = han.crc16_x25(head, 0, len(head))
    out = head + bytes((hcs & 0xFF, hcs >> 8)) + info
    fcs = han.crc16_x25(out, 0, len(out))
    return b"\x7e" + bytes(out) + bytes((fcs & 0xFF, fcs >> 8)) + b"\x7e"


def list2_it():
    # The layout of the public Aidon sample: 3728 W import, IL1 14.5 A, IL3 14.4 A, 235.4 / 233.4 / 235.5 V.
    return frame([
        text(OBIS_LIST_ID, b"AIDON_V0001"),
        text(OBIS_METER_ID, b"7359992890941742"),
        text(b"\x00\x00\x60\x01\x07\xff", b"6525"),
        item(obis(1), 0x06, 3728, 0, 27),
        item(obis(2), 0x06, 0, 0, 27),
        item(obis(3), 0x06, 28, 0, 29),
        item(obis(4), 0x06, 0, 0, 29),
        item(obis(31), 0x10, 145, -1, 33),
        item(obis(71), 0x10, 144, -1, 33),
        item(obis(32), 0x12, 2354, -1, 35),
        item(obis(52), 0x12, 2334, -1, 35),
        item(obis(72), 0x12, 2355, -1, 35),
    ])


def list1(watts):
    return frame([item(obis(1), 0x06, watts, 0, 27)])


def feed_all(parser, data):
    """Feed data; the errors of every completed frame, in order (None = accepted)."""
    out = []
    i = 0
    while i < len(data):
        i = parser.feed(data, i, len(data))
        if parser.ready:
            out.append(parser.error)
    return out


def test_the_crc_and_its_byte_order_match_the_public_aidon_sample():
    # Format A1 0B, destination 41, source 08 83, control 13 -> HCS FA 7C in the sample.
    head = bytes((0xA1, 0x0B, 0x41, 0x08, 0x83, 0x13))
    crc = han.crc16_x25(head, 0, len(head))
    assert (crc & 0xFF, crc >> 8) == (0xFA, 0x7C)


def test_a_list_2_from_an_it_network_meter_gives_l2_the_most_it_can_carry():
    parser = han.HanParser(phases=3)
    assert feed_all(parser, list2_it()) == [None]
    r = parser.reading
    assert r.import_w == 3728 and r.export_w == 0
    assert r.current_ma == [14500, 14500 + 14400, 14400]
    assert r.voltage_mv == [235400, 233400, 235500]
    assert r.phase_count == 3
    assert r.phase_tick_ms is None  # measured with the total
    # No per-phase power: every current taken as import, power = I x U.
    assert r.power_w == [14500 * 235 // 1000, 28900 * 233 // 1000, 14400 * 235 // 1000]
    assert parser.n_frames == parser.n_accepted == 1


def test_per_phase_power_signs_the_currents_and_energy_counters_are_taken():
    data = frame([
        item(obis(1), 0x06, 0),
        item(obis(2), 0x06, 2100),
        item(obis(31), 0x10, 1234, -2, 33),
        item(obis(51), 0x10, 200, -2, 33),
        item(obis(71), 0x10, 150, -2, 33),
        item(obis(21), 0x06, 0), item(obis(22), 0x06, 2800),
        item(obis(41), 0x06, 460), item(obis(42), 0x06, 0),
        item(obis(61), 0x06, 240), item(obis(62), 0x06, 0),
        item(obis(1, 8), 0x06, 12345, 1, 30),
        item(obis(2, 8), 0x06, 678, 3, 30),
    ])
    parser = han.HanParser(phases=3)
    assert feed_all(parser, data) == [None]
    r = parser.reading
    assert r.current_ma == [-12340, 2000, 1500]
    assert r.power_w == [-2800, 460, 240]
    assert r.net_power_w() == -2100
    assert r.energy_import_wh == 123450 and r.energy_export_wh == 678000


def test_a_list_1_brings_a_fresh_total_beside_the_list_2_values_and_their_time():
    parser = han.HanParser(phases=3)
    parser._rx_tick = 1000
    feed_all(parser, list2_it())
    assert parser.reading.tick_ms == 1000
    parser._rx_tick = 3500
    assert feed_all(parser, list1(5100)) == [None]
    r = parser.reading
    assert r.tick_ms == 3500 and r.import_w == 5100
    assert r.phase_tick_ms == 1000 and r.phase_net_w == 3728
    assert r.current_ma[0] == 14500  # kept from the List 2
    parser._rx_tick = 11000
    feed_all(parser, list2_it())
    assert r.phase_tick_ms is None and r.tick_ms == 11000


def test_a_list_1_alone_is_a_totals_only_reading():
    parser = han.HanParser(phases=3)
    assert feed_all(parser, list1(900)) == [None]
    assert parser.reading.phase_count == 0 and parser.reading.net_power_w() == 900


def test_one_phase_site_takes_l1_only():
    parser = han.HanParser(phases=1)
    data = frame([item(obis(1), 0x06, 2300), item(obis(31), 0x10, 100, -1, 33), item(obis(32), 0x12, 230, 0, 35)])
    assert feed_all(parser, data) == [None]
    assert parser.reading.phase_count == 1 and parser.reading.current_ma[0] == 10000


def test_bytes_in_any_chunks_noise_and_shared_flags_give_the_same_frames():
    one = list2_it()
    two = list1(4000)
    stream = b"\x00\xff garbage \x7e\x7e" + one + two[1:] + b"\x13\x37" + two
    for step in (1, 2, 7, 64, len(stream)):
        parser = han.HanParser(phases=3)
        errors = []
        for start in range(0, len(stream), step):
            chunk = stream[start:start + step]
            i = 0
            while i < len(chunk):
                i = parser.feed(chunk, i, len(chunk))
                if parser.ready:
                    errors.append(parser.error)
        assert errors == [None, None, None], (step, errors)
        assert parser.reading.import_w == 4000


def test_a_bad_fcs_or_hcs_is_refused_and_the_reading_kept():
    parser = han.HanParser(phases=3)
    feed_all(parser, list2_it())
    bad = bytearray(list1(9999))
    bad[-4] ^= 0x01  # a value bit: the FCS no longer matches
    assert feed_all(parser, bytes(bad)) == ["fcs mismatch"]
    assert parser.reading.import_w == 3728
    # A wrong HCS with a right FCS: the header was cut or mixed.
    bad = bytearray(list1(9999)[1:-1])
    bad[6] ^= 0xFF
    fcs = han.crc16_x25(bad, 0, len(bad) - 2)
    bad[-2], bad[-1] = fcs & 0xFF, fcs >> 8
    assert feed_all(parser, b"\x7e" + bytes(bad) + b"\x7e") == ["hcs mismatch"]
    assert parser.n_crc_errors == 2 and parser.n_rejected == 2 and parser.n_accepted == 1
    assert parser.reading.import_w == 3728


def test_what_is_not_supported_is_said_never_guessed():
    cases = (
        # Values without scaler and unit (as some meters send lists): no scaler is guessed.
        (frame([item(obis(1), 0x06, 2000, scaled=False), item(obis(31), 0x06, 870, scaled=False)]), "no scaler"),
        (frame([item(obis(1), 0x06, 2000)], apdu_tag=0xDB), "ciphered"),
        (frame([item(obis(1), 0x06, 2000)], apdu_tag=0xC4), "not a data notification"),
        (frame([item(obis(1), 0x06, 2000)], segmented=True), "segmented"),
        (frame([text(OBIS_LIST_ID, b"AIDON_V0001")]), "no power values"),
    )
    for data, error in cases:
        parser = han.HanParser(phases=3)
        assert feed_all(parser, data) == [error], error
        assert parser.reading.import_w is None


def test_a_value_in_the_wrong_unit_is_dropped_and_said():
    parser = han.HanParser(phases=3)
    data = frame([item(obis(1), 0x06, 1500), item(obis(31), 0x10, 52, -1, 35)])  # a current in volts
    assert feed_all(parser, data) == [None]
    assert parser.reading.import_w == 1500 and parser.reading.phase_count == 0
    assert "unit 35" in parser.last_error


def test_cut_overlong_and_malformed_frames_are_refused_and_framing_recovers():
    good = list1(700)
    bad_type = bytearray(good[1:-1])
    # After the header (6), HCS (2), LLC (3), the APDU tag and invoke id (5),
    # the date-time length (1): the body's array tag, made an unknown type.
    bad_type[17] = 0x42
    fcs = han.crc16_x25(bad_type, 0, len(bad_type) - 2)
    bad_type[-2], bad_type[-1] = fcs & 0xFF, fcs >> 8
    cases = (
        (b"\x7e\xa7\xff" + bytes(40), "too long"),
        (b"\x7e" + bytes(bad_type) + b"\x7e", "malformed"),
        # A frame cut short: its length takes in the next frame's first
        # bytes, then no flag where its end should be.
        (good[:20] + good, "no closing flag"),
    )
    for data, error in cases:
        parser = han.HanParser(phases=3)
        errors = feed_all(parser, data + good)
        assert errors[0] == error and errors[-1] is None, (error, errors)
        assert parser.reading.import_w == 700 and parser.n_accepted == 1


def test_random_bytes_never_raise():
    parser = han.HanParser(phases=3)
    seed = 12345
    data = bytearray(4096)
    base = list2_it()
    for rnd in range(30):
        for k in range(len(data)):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            data[k] = seed >> 16 & 0xFF
        # Mutations of a real frame too: flipped bytes inside a right length.
        frame_bytes = bytearray(base)
        for _ in range(4):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            frame_bytes[1 + seed % (len(frame_bytes) - 2)] = seed >> 8 & 0xFF
        feed_all(parser, data)
        feed_all(parser, frame_bytes)
    feed_all(parser, base)
    assert parser.accepted


class FakeUart:
    def __init__(self, chunks):
        self.chunks = list(chunks)

    def read_now(self, buf):
        if not self.chunks:
            return 0
        chunk = self.chunks.pop(0)
        buf[:len(chunk)] = chunk
        return len(chunk)


def test_the_driver_stamps_each_frame_when_its_last_bytes_came():
    data = list2_it()
    uart = FakeUart([data[:100], data[100:], b"", list1(3000)])
    now = [0]

    def ticks_ms():
        now[0] += 100
        return now[0]

    meter = han.HanMeter(uart, 3, ticks_ms, None)
    assert meter.poll() is True
    assert meter.reading.tick_ms == 200 and meter.reading.import_w == 3728
    assert meter.poll() is False  # an empty read
    assert meter.poll() is True
    assert meter.reading.tick_ms == 300 and meter.reading.phase_tick_ms == 200


def test_the_driver_keeps_a_refused_frames_reason():
    bad = bytearray(list1(5))
    bad[-3] ^= 1
    meter = han.HanMeter(FakeUart([bytes(bad)]), 3, lambda: 5, None)
    assert meter.poll() is False
    assert meter.last_error == "fcs mismatch"


def test_no_allocation_per_frame_once_warm():
    parser = han.HanParser(phases=3)
    stream = list2_it() + list1(4000) + list1(4100)
    feed_all(parser, stream)
    n = len(stream)
    runs = [0]

    def twenty():
        runs[0] += 20
        for _ in range(20):
            i = 0
            while i < n:
                i = parser.feed(stream, i, n)

    if IS_MICROPYTHON:
        import gc
        import micropython

        gc.collect()
        micropython.heap_lock()
        try:
            twenty()
        finally:
            micropython.heap_unlock()
    else:
        import tracemalloc

        tracemalloc.start()
        twenty()
        before = tracemalloc.get_traced_memory()[0]
        twenty()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert after - before <= 256
    assert parser.n_accepted == 3 + 3 * runs[0]


class FakePlatform:
    def __init__(self):
        self.lines = []

    def open_uart(self, baud, data_bits, parity, stop_bits, invert_rx):
        self.lines.append((baud, data_bits, parity, stop_bits, invert_rx))
        return FakeUart([list1(1200)])

    def ticks_ms(self):
        return 7

    async def sleep_ms(self, ms):
        pass


def test_config_rules_and_the_line_a_han_port_opens():
    from chargeguard import config

    doc = config.complete({"site": {"phases": 1}, "meter": {"type": "han"}})
    assert config.validate(doc) == []
    assert doc["meter"] == {"type": "han", "baud": 2400, "format": "8E1", "invert": False}
    errors = dict(config.validate(config.complete({"meter": {"type": "han", "baud": 115200, "format": "7E1"}})))
    assert set(errors) == {"meter.baud", "meter.format"}, errors
    assert "meter.model" in dict(config.validate(config.complete({"meter": {"type": "han", "model": "x"}})))
    platform = FakePlatform()
    meter = han.from_config(doc["meter"], platform, doc)
    assert platform.lines == [(2400, 8, 0, 1, False)]  # 8E1
    assert meter.poll() and meter.reading.import_w == 1200 and meter.reading.tick_ms == 7
    doc["meter"]["format"] = "8N1"
    han.from_config(doc["meter"], platform, doc)
    assert platform.lines[-1][2] is None
