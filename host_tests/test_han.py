"""meters/han.py: HAN frames (HDLC + DLMS/COSEM data-notification) decoded, and refused in words.

Runs on CPython and on the MicroPython unix port. The frames are built here
from the layout of the public source named in meters/han.py (Aidon's RJ45 HAN
Interface Feature Description 1.4 A: HDLC type 3 frame, LLC E6 E7 00, a
data-notification whose body is an array of (OBIS, value, scaler-unit)
structures), with values of our own: no captured frame of another project.
"""

from chargeguard.meters import han
from support import IS_MICROPYTHON

W = 27  # DLMS unit enums (IEC 62056-6-2): W, var, A, V, Wh
VAR = 29
AMPERE = 33
VOLT = 35
WH = 30


def obis(a, b, c, d, e, f):
    return bytes([0x09, 6, a, b, c, d, e, f])


def number(tag, value, size):
    if value < 0:
        value += 1 << (8 * size)
    return bytes([tag]) + bytes([(value >> (8 * (size - 1 - k))) & 0xFF for k in range(size)])


def item(c, d, value, scaler, unit, tag=0x06, size=4):
    """One list element: structure(OBIS 1.0.c.d.0.255, value, structure(scaler, unit))."""
    return b"\x02\x03" + obis(1, 0, c, d, 0, 255) + number(tag, value, size) + \
        bytes([0x02, 0x02, 0x0F, scaler & 0xFF, 0x16, unit])


def text_item(code, text):
    return b"\x02\x02" + obis(*code) + bytes([0x0A, len(text)]) + text


def frame(body, clock=True, apdu=0x0F, dest=b"\x03", src=b"\x02\x23", control=0x13, fmt=0xA0):
    """An HDLC frame (with its flags) carrying a data-notification with `body` (A-XDR bytes)."""
    info = b"\xE6\xE7\x00" + bytes([apdu]) + b"\x40\x00\x00\x01"
    # date-time: 2026-11-30 08:00:00, a Monday, no deviation
    info += b"\x09\x0C\x07\xEA\x0B\x1E\x01\x08\x00\x00\xFF\x80\x00\x00" if clock else b"\x00"
    info += body
    header_len = 2 + len(dest) + len(src) + 1
    length = header_len + 2 + len(info) + 2
    header = bytearray([fmt | (length >> 8), length & 0xFF]) + dest + src + bytes([control])
    hcs = han.crc16_x25(header)
    out = header + bytes([hcs & 0xFF, hcs >> 8]) + info
    fcs = han.crc16_x25(out)
    return b"\x7E" + bytes(out) + bytes([fcs & 0xFF, fcs >> 8]) + b"\x7E"


def array(items):
    return bytes([0x01, len(items)]) + b"".join(items)


def nve_list2():
    # Three phases: version and meter id strings, +P, -P, +Q, -Q, IL1-3 (long, 0.1 A), UL1-3 (long-unsigned, 0.1 V).
    return array([
        text_item((1, 1, 0, 2, 129, 255), b"TESTLIST_V1"),
        text_item((0, 0, 96, 1, 0, 255), b"7359992890000000"),
        item(1, 7, 4321, 0, W),
        item(2, 7, 0, 0, W),
        item(3, 7, 120, 0, VAR),
        item(4, 7, 0, 0, VAR),
        item(31, 7, 72, -1, AMPERE, 0x10, 2),
        item(51, 7, 65, -1, AMPERE, 0x10, 2),
        item(71, 7, 51, -1, AMPERE, 0x10, 2),
        item(32, 7, 2305, -1, VOLT, 0x12, 2),
        item(52, 7, 2318, -1, VOLT, 0x12, 2),
        item(72, 7, 2299, -1, VOLT, 0x12, 2),
    ])


def test_crc16_x25_check_value():
    # The CRC catalogue's check value of CRC-16/X.25 (= CRC-16/IBM-SDLC): "123456789" -> 0x906E.
    assert han.crc16_x25(b"123456789") == 0x906E


def test_nve_list1_gives_the_import_power_alone():
    decoder = han.HanDecoder()
    data = frame(array([item(1, 7, 3456, 0, W)]), clock=False)
    assert decoder.decode(data), decoder.error
    assert decoder.import_w == 3456
    assert decoder.export_w is None
    assert decoder.phases == 0
    assert decoder.current_ma == [None, None, None]


def test_nve_list2_three_phases_scaled_to_milliamperes_and_millivolts():
    decoder = han.HanDecoder()
    assert decoder.decode(frame(nve_list2())), decoder.error
    assert decoder.import_w == 4321 and decoder.export_w == 0
    assert decoder.current_ma == [7200, 6500, 5100]
    assert decoder.voltage_mv == [230500, 231800, 229900]
    assert decoder.phases == 3
    # Without its flags the frame decodes the same.
    data = frame(nve_list2())
    assert decoder.decode(data, 1, len(data) - 1), decoder.error
    assert decoder.current_ma == [7200, 6500, 5100]


def test_per_phase_signed_power_energy_and_scalers():
    # The Swedish profile's per-phase +P/-P (C 21/22, 41/42, 61/62), export on L2, energies in Wh (scaler 0) and
    # kWh-scaled (scaler 3), a negative current (long, signed) and a scaler of -2.
    body = array([
        item(1, 7, 800, 0, W),
        item(2, 7, 1500, 0, W),
        item(21, 7, 600, 0, W),
        item(22, 7, 0, 0, W),
        item(41, 7, 0, 0, W),
        item(42, 7, 1500, 0, W),
        item(61, 7, 200, 0, W),
        item(62, 7, 0, 0, W),
        item(31, 7, 262, -2, AMPERE, 0x10, 2),
        item(51, 7, -655, -2, AMPERE, 0x10, 2),
        item(71, 7, 87, -2, AMPERE, 0x10, 2),
        item(1, 8, 12345678, 0, WH),
        item(2, 8, 4321, 3, WH),
    ])
    decoder = han.HanDecoder()
    assert decoder.decode(frame(body)), decoder.error
    assert (decoder.import_w, decoder.export_w) == (800, 1500)
    assert decoder.phase_import_w == [600, 0, 200]
    assert decoder.phase_export_w == [0, 1500, 0]
    assert decoder.current_ma == [2620, -6550, 870]
    assert decoder.energy_import_wh == 12345678
    assert decoder.energy_export_wh == 4321000


def test_rounding_of_scalers_below_the_unit():
    assert han._scaled(12345, -4, 3) == 1235  # 1.2345 A -> 1235 mA (half away from zero)
    assert han._scaled(-12345, -4, 3) == -1235
    assert han._scaled(7, 2, 0) == 700


def _refused(data, words):
    decoder = han.HanDecoder()
    assert not decoder.decode(data)
    assert words in decoder.error, decoder.error
    assert decoder.import_w is None and decoder.current_ma == [None, None, None]
    assert decoder.n_rejected == 1


def test_damaged_frames_are_refused_in_words():
    good = frame(nve_list2())
    damaged = bytearray(good)
    damaged[40] ^= 0x01
    _refused(bytes(damaged), "frame check sequence wrong")
    _refused(good[:-20] + good[-3:], "truncated")
    _refused(good[:5], "truncated")
    # A header check sequence that does not match (the frame's FCS recomputed over the damage).
    bad = bytearray(good[1:-3])
    bad[6] ^= 0xFF  # the low byte of the HCS
    fcs = han.crc16_x25(bad)
    _refused(b"\x7E" + bytes(bad) + bytes([fcs & 0xFF, fcs >> 8]) + b"\x7E", "header check sequence wrong")
    _refused(frame(nve_list2(), apdu=0xDB), "not a data-notification")
    _refused(frame(nve_list2(), fmt=0xA8), "segmented")
    _refused(frame(nve_list2(), fmt=0x80), "not an HDLC type 3 frame")
    _refused(frame(b"\x01\x01\x02\x03" + obis(1, 0, 1, 7, 0, 255) + b"\x06\x00"), "truncated")
    _refused(frame(array([text_item((0, 0, 96, 1, 0, 255), b"X")])), "no power or current values")
    _refused(frame(b"\x1B\x00"), "A-XDR type 0x1B")


def test_a_list_without_scaler_unit_is_refused_not_guessed():
    # Kamstrup-style: a flat structure of OBIS followed directly by the value, scalers implied per list.
    body = b"\x02\x04" + obis(1, 0, 1, 7, 0, 255) + number(0x06, 1234, 4) + \
        obis(1, 0, 31, 7, 0, 255) + number(0x06, 567, 4)
    _refused(frame(body), "OBIS 1.0.1.7.0.255 without a scaler-unit")
    _refused(frame(b"\x02\x02" + obis(1, 0, 31, 7, 0, 255) + number(0x06, 567, 4)), "OBIS 1.0.31.7.0.255")


def test_decoding_allocates_nothing():
    decoder = han.HanDecoder()
    data = frame(nve_list2())
    assert decoder.decode(data)
    if IS_MICROPYTHON:
        import micropython

        micropython.heap_lock()
        try:
            for _ in range(20):
                ok = decoder.decode(data)
        finally:
            micropython.heap_unlock()
        assert ok and decoder.current_ma == [7200, 6500, 5100]
