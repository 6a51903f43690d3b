"""HAN port emulator for the site simulator (CPython only): the lists a Norwegian meter pushes, as HDLC frames.

build_list1(...) and build_list2(...) turn the simulator's integers (W, mA,
mV, Wh) into the frames an Aidon-style meter sends on its HAN port
(docs/meters.md, "HAN port", names the sources): List 1 the active import
power alone (every 2.5 s on the meter), List 2 with export, the phase currents
(0.1 A) and voltages (0.1 V) as well (every 10 s), List 3 adding the energy
counters (hourly). Each value is an OBIS / value / scaler-unit structure in a
DLMS DataNotification, in an HDLC frame of format type 3 whose HCS and FCS
are CRC-16/X-25 computed here bit by bit, apart from the firmware's code.

`it_network=True` leaves out the L2 current, as a three-phase meter on a
3-wire IT network does. The simulator writes the frames on the P1 pty
(tools/sim/p1_emulator.PtyP1Port), as the meter's M-Bus transceiver would on
the board's UART.
"""

import struct

UNIT_W, UNIT_WH, UNIT_A, UNIT_V = 27, 30, 33, 35


def crc16_x25(data):
    """CRC-16/X-25 (reflected 0x1021, init 0xFFFF, final xor 0xFFFF) of bytes."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def _obis(c, d=7):
    return bytes((0x09, 6, 1, 0, c, d, 0, 255))


def _value(c, type_code, fmt, value, scaler, unit, d=7):
    return (b"\x02\x03" + _obis(c, d) + bytes((type_code,)) + struct.pack(fmt, value)
            + b"\x02\x02\x0f" + struct.pack(">b", scaler) + b"\x16" + bytes((unit,)))


def _text(obis_bytes, text):
    return b"\x02\x02\x09\x06" + obis_bytes + b"\x0a" + bytes((len(text),)) + text


def _frame(items):
    body = b"\x01" + bytes((len(items),)) + b"".join(items)
    info = b"\xe6\xe7\x00" + b"\x0f\x40\x00\x00\x00\x00" + body
    length = 2 + 1 + 2 + 1 + 2 + len(info) + 2
    if length > 0x7FF:
        raise ValueError("a list this long needs a segmented frame")
    head = bytes((0xA0 | length >> 8, length & 0xFF, 0x41, 0x08, 0x83, 0x13))
    out = head + struct.pack("<H", crc16_x25(head)) + info
    return b"\x7e" + out + struct.pack("<H", crc16_x25(out)) + b"\x7e"


def build_list1(import_w):
    """List 1: the active import power (W) alone."""
    return _frame([_value(1, 0x06, ">I", max(0, import_w), 0, UNIT_W)])


def build_list2(power_w, current_ma, voltage_mv, energy_import_wh=None, energy_export_wh=None, it_network=False):
    """List 2 (List 3 with the energy counters): net power from the per-phase powers, currents and voltages."""
    net = sum(power_w)
    items = [
        _text(bytes((1, 1, 0, 2, 129, 255)), b"AIDON_V0001"),
        _text(bytes((0, 0, 96, 1, 0, 255)), b"7359992890941742"),
        _value(1, 0x06, ">I", max(0, net), 0, UNIT_W),
        _value(2, 0x06, ">I", max(0, -net), 0, UNIT_W),
    ]
    for phase, c in enumerate((31, 51, 71)):
        if phase < len(current_ma) and not (it_network and phase == 1):
            items.append(_value(c, 0x10, ">h", (abs(current_ma[phase]) + 50) // 100, -1, UNIT_A))
    for phase, c in enumerate((32, 52, 72)):
        if phase < len(voltage_mv):
            items.append(_value(c, 0x12, ">H", (voltage_mv[phase] + 50) // 100, -1, UNIT_V))
    if energy_import_wh is not None:
        items.append(_value(1, 0x06, ">I", energy_import_wh // 10, 1, UNIT_WH, d=8))
    if energy_export_wh is not None:
        items.append(_value(2, 0x06, ">I", energy_export_wh // 10, 1, UNIT_WH, d=8))
    return _frame(items)
