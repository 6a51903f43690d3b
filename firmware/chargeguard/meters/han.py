"""HAN port (Norway, Sweden): one HDLC frame carrying a DLMS/COSEM data-notification, decoded to readings.

Sources of the facts (public): Aidon, "RJ45 HAN Interface, Feature
Description, Public, Version 1.4 A" (2020), sections 3.5 "Data format" and
3.6 "Push setups" (HDLC framing per IEC 62056-46, the xDLMS
data-notification of IEC 62056-5-3 in A-XDR encoding per IEC 61334-6, each
value as a structure of its OBIS code, the value and a scaler-unit pair; the
NVE lists: list 1 the import power alone every 2.5 s, lists 2/3 with the
per-phase values every 10 s); the OBIS value groups of IEC 62056-6-1 as
listed there; CRC-16/X.25 (the HDLC frame check sequence: reflected
polynomial 0x8408, initial and final XOR 0xFFFF, sent low byte first).

Frame, as the bytes between two 0x7E flags (no byte stuffing on the HAN port):

    A0 LL        frame format: type 3 (high nibble 0xA), segmentation bit 3,
                 11-bit length of the frame without its flags
    dest src     HDLC addresses, each of bytes whose last has bit 0 set
    13           control: UI frame
    HCS          CRC of the header (frame format to control), low byte first
    E6 E7 00     LLC
    0F iiiiiiii  data-notification, long-invoke-id-and-priority
    09 0C ...    date-time (12 bytes) or 00 (none)
    body         A-XDR data: arrays / structures of (OBIS, value, scaler-unit)
    FCS          CRC of everything from the frame format, low byte first

HanDecoder(): ``decode(buf, start, end) -> bool`` takes one frame (flags
included or not) and fills its fields in place, allocating nothing for the
values that fit a small int; ``error`` says in words why a frame was refused
("frame check sequence wrong", "not a data-notification", "truncated", ...).
Fields after a decode (None or False when the frame did not carry them):
``import_w`` / ``export_w`` (active power +P / -P, W), ``phase_import_w`` /
``phase_export_w`` (L1-L3, W; the Swedish profile), ``current_ma``,
``voltage_mv`` (L1-L3), ``energy_import_wh`` / ``energy_export_wh``,
``phases`` (how many phase currents the frame had: 0 on an NVE list 1).

Not decoded: lists whose values come without a scaler-unit (Kamstrup's and
Kaifa's NVE lists imply their scalers per list; those facts are not in the
source above): such a value is refused with its OBIS code named, not guessed;
encrypted (general-glo-ciphering) frames, which the NVE lists do not use.
"""

from micropython import const

_FLAG = const(0x7E)
_DATA_NOTIFICATION = const(0x0F)
# A-XDR tags (IEC 62056-6-2 data types)
_NULL = const(0x00)
_ARRAY = const(0x01)
_STRUCTURE = const(0x02)
_BOOLEAN = const(0x03)
_DOUBLE_LONG = const(0x05)
_DOUBLE_LONG_UNSIGNED = const(0x06)
_OCTET_STRING = const(0x09)
_VISIBLE_STRING = const(0x0A)
_INTEGER = const(0x0F)
_LONG = const(0x10)
_UNSIGNED = const(0x11)
_LONG_UNSIGNED = const(0x12)
_LONG64 = const(0x14)
_LONG64_UNSIGNED = const(0x15)
_ENUM = const(0x16)
_MAX_DEPTH = const(4)  # list -> item structure -> scaler-unit: deeper is no HAN list

# OBIS C.D.E (A = 1, B = 0, F = 255) as (C << 16) | (D << 8) | E, IEC 62056-6-1:
# C 1/2 = active power +/-, 21/22, 41/42, 61/62 the same per phase L1/L2/L3,
# 31/51/71 current L1/L2/L3, 32/52/72 voltage L1/L2/L3; D 7 = instantaneous, 8 = energy.
_P_IMPORT = const(0x010700)
_P_EXPORT = const(0x020700)
_E_IMPORT = const(0x010800)
_E_EXPORT = const(0x020800)
_PHASE_C = (21, 41, 61)  # +P per phase; -P is C + 1
_CURRENT_C = (31, 51, 71)
_VOLTAGE_C = (32, 52, 72)


def crc16_x25(data, start=0, end=None, crc=0xFFFF):
    """CRC-16/X.25 of data[start:end] (bytes-like), the HDLC HCS/FCS; final XOR included."""
    if end is None:
        end = len(data)
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


class HanDecoder:
    """Decodes one HAN frame at a time into its fields (see the module doc); nothing kept between frames."""

    def __init__(self):
        self.current_ma = [None, None, None]
        self.voltage_mv = [None, None, None]
        self.phase_import_w = [None, None, None]
        self.phase_export_w = [None, None, None]
        self.n_frames = 0
        self.n_rejected = 0
        self._clear()
        self.error = None

    def _clear(self):
        self.import_w = None
        self.export_w = None
        self.energy_import_wh = None
        self.energy_export_wh = None
        self.phases = 0
        for i in range(3):
            self.current_ma[i] = None
            self.voltage_mv[i] = None
            self.phase_import_w[i] = None
            self.phase_export_w[i] = None

    def decode(self, buf, start=0, end=None):
        """Decode the frame in buf[start:end]; True when accepted, else False with `error` set."""
        self.n_frames += 1
        self._clear()
        self.error = self._decode(buf, start, len(buf) if end is None else end)
        if self.error is not None:
            self.n_rejected += 1
            self._clear()
            return False
        return True

    def _decode(self, buf, start, end):
        if end - start >= 2 and buf[start] == _FLAG:
            start += 1
        if end - start >= 1 and buf[end - 1] == _FLAG:
            end -= 1
        if end - start < 9:
            return "truncated: %d bytes is no HDLC frame" % (end - start)
        if buf[start] & 0xF0 != 0xA0:
            return "not an HDLC type 3 frame (frame format 0x%02X)" % buf[start]
        if buf[start] & 0x08:
            return "a segmented frame: HAN lists fit one frame"
        length = ((buf[start] & 0x07) << 8) | buf[start + 1]
        if length != end - start:
            return "truncated: the frame says %d bytes, %d arrived" % (length, end - start)
        fcs = buf[end - 2] | (buf[end - 1] << 8)
        if crc16_x25(buf, start, end - 2) != fcs:
            return "frame check sequence wrong"
        i = start + 2
        for _ in range(2):  # destination, then source address
            n = 0
            while i < end - 2 and not buf[i] & 1:
                i += 1
                n += 1
                if n > 3:
                    return "an HDLC address of more than 4 bytes"
            i += 1
        i += 1  # control
        hcs = buf[i] | (buf[i + 1] << 8)
        if crc16_x25(buf, start, i) != hcs:
            return "header check sequence wrong"
        i += 2
        stop = end - 2
        if stop - i < 8 or buf[i] != 0xE6 or buf[i + 1] != 0xE7 or buf[i + 2] != 0x00:
            return "no LLC header (E6 E7 00)"
        i += 3
        if buf[i] != _DATA_NOTIFICATION:
            return "not a data-notification (APDU tag 0x%02X)" % buf[i]
        i += 5  # tag, long-invoke-id-and-priority
        if buf[i] == _OCTET_STRING:
            if i + 2 > stop or buf[i + 1] != 12:
                return "a date-time that is not 12 bytes"
            i += 14
        elif buf[i] == _NULL:
            i += 1
        else:
            return "no date-time field (tag 0x%02X)" % buf[i]
        self._pending = -1  # the OBIS code whose value comes next (-1: none; -2: another code)
        self._value = None
        i = self._walk(buf, i, stop, 0)
        if type(i) is str:
            return i
        if i != stop:
            return "%d bytes after the notification's data" % (stop - i)
        if self._pending >= 0:
            return self._no_scaler()
        if self.import_w is None and self.current_ma[0] is None:
            return "no power or current values in the list"
        for phase in range(3):
            if self.current_ma[phase] is not None:
                self.phases = phase + 1
        return None

    def _no_scaler(self):
        code = self._pending
        return ("value of OBIS 1.0.%d.%d.%d.255 without a scaler-unit: lists with implied scalers (Kamstrup, Kaifa)"
                " are not decoded" % (code >> 16, (code >> 8) & 0xFF, code & 0xFF))

    def _walk(self, buf, i, stop, depth):
        # One A-XDR value at i; returns the index after it, or an error string.
        if i >= stop:
            return "truncated: the data ends inside a value"
        tag = buf[i]
        i += 1
        if tag == _ARRAY or tag == _STRUCTURE:
            if depth >= _MAX_DEPTH:
                return "data nested deeper than a HAN list"
            count = buf[i]
            i += 1
            if count & 0x80:
                return "a list of more than 127 items"
            if tag == _STRUCTURE and count == 2 and self._pending >= 0 and self._value is not None \
                    and i + 4 <= stop and buf[i] == _INTEGER and buf[i + 2] == _ENUM:
                # scaler-unit: (integer scaler, enum unit) after a value
                scaler = buf[i + 1]
                self._store(self._value, scaler - 256 if scaler > 127 else scaler)
                return i + 4
            for _ in range(count):
                i = self._walk(buf, i, stop, depth + 1)
                if type(i) is str:
                    return i
            return i
        if tag == _OCTET_STRING or tag == _VISIBLE_STRING:
            n = buf[i]
            i += 1
            if n & 0x80 or i + n > stop:
                return "truncated: a string runs past the data"
            if tag == _OCTET_STRING and n == 6:
                if self._pending >= 0:
                    return self._no_scaler()
                if buf[i] == 1 and buf[i + 1] == 0 and buf[i + 5] == 0xFF:
                    self._pending = (buf[i + 2] << 16) | (buf[i + 3] << 8) | buf[i + 4]
                else:
                    self._pending = -2  # another code (list version, meter id, clock): its value is skipped
                self._value = None
            return i + n
        size = _SIZES.get(tag)
        if size is None:
            return "A-XDR type 0x%02X is no HAN list value" % tag
        if i + size > stop:
            return "truncated: a number runs past the data"
        if self._pending != -1 and self._value is None:
            value = 0
            for k in range(size):
                value = (value << 8) | buf[i + k]
            if tag in _SIGNED and buf[i] & 0x80:
                value -= 1 << (8 * size)
            self._value = value
            if self._pending == -2:
                self._pending = -1
        return i + size

    def _store(self, value, scaler):
        code = self._pending
        self._pending = -1
        self._value = None
        c = code >> 16
        d = (code >> 8) & 0xFF
        if d == 7:
            if c == 1:
                self.import_w = _scaled(value, scaler, 0)
            elif c == 2:
                self.export_w = _scaled(value, scaler, 0)
            elif c in _CURRENT_C:
                self.current_ma[_CURRENT_C.index(c)] = _scaled(value, scaler, 3)
            elif c in _VOLTAGE_C:
                self.voltage_mv[_VOLTAGE_C.index(c)] = _scaled(value, scaler, 3)
            elif c in _PHASE_C:
                self.phase_import_w[_PHASE_C.index(c)] = _scaled(value, scaler, 0)
            elif c - 1 in _PHASE_C:
                self.phase_export_w[_PHASE_C.index(c - 1)] = _scaled(value, scaler, 0)
        elif d == 8:
            if c == 1:
                self.energy_import_wh = _scaled(value, scaler, 0)
            elif c == 2:
                self.energy_export_wh = _scaled(value, scaler, 0)


def _scaled(value, scaler, shift):
    # value x 10^(scaler + shift) in whole units (shift 3: mA from A, mV from V), rounded half away from 0.
    exponent = scaler + shift
    while exponent > 0:
        value *= 10
        exponent -= 1
    if exponent < 0:
        divisor = 1
        while exponent < 0:
            divisor *= 10
            exponent += 1
        half = divisor // 2
        value = (value + half) // divisor if value >= 0 else -((-value + half) // divisor)
    return value


# Fixed-size A-XDR numbers: bytes per tag; _SIGNED the two's complement ones.
_SIZES = {
    _NULL: 0, _BOOLEAN: 1, _DOUBLE_LONG: 4, _DOUBLE_LONG_UNSIGNED: 4, _INTEGER: 1, _LONG: 2, _UNSIGNED: 1,
    _LONG_UNSIGNED: 2, _LONG64: 8, _LONG64_UNSIGNED: 8, _ENUM: 1,
}
_SIGNED = (_DOUBLE_LONG, _INTEGER, _LONG, _LONG64)
