"""A Modbus charger on the board's RS485 port (Modbus RTU): the ABB Terra AC where it is wired.

rtu_box(platform, baud, fmt, timeout_ms) -> a net/modbus_box.ModbusBox over
RtuWriteLink: net/modbus.py's RtuLink (the meters' reads) that also frames
the writes. Its own module so that a site without such a box (every Modbus
TCP one) carries none of it.
"""

from chargeguard.net import modbus as mb
from chargeguard.net import modbus_box as mbox


class RtuWriteLink(mb.RtuLink):
    """RtuLink that also frames writes: functions 5, 6 (8 bytes, as a read) and 16 (9 + 2 x count).

    [unit][16][address (2)][count (2)][bytes = 2 x count][values][CRC-16, low
    byte first] (Modbus Application Protocol V1.1b3 6.12, Serial Line V1.02
    2.5.1). As modbus_box's TCP link, the frame of each register count is made once
    and kept.
    """

    def __init__(self, uart, baud, ticks_ms, ticks_diff):
        mb.RtuLink.__init__(self, uart, baud, ticks_ms, ticks_diff)
        self._read_req = self._req
        self._frames = {}

    def begin(self, unit, function, address, count, values=None):
        if function == 16:
            req = mbox.kept_frame(self._frames, count, 9 + 2 * count)
            req[0] = unit
            req[1] = 16
            req[2] = address >> 8
            req[3] = address & 0xFF
            req[4] = 0
            req[5] = count
            req[6] = 2 * count
            mbox.put_words(req, 7, values, count)
            end = 7 + 2 * count
            crc = mb.crc16(req, 0, end)
            req[end] = crc & 0xFF
            req[end + 1] = crc >> 8
            self._req = req
            self._unit = unit
        else:
            self._req = self._read_req
            # Functions 5 and 6: the value takes the place of the count.
            mb.RtuLink.begin(self, unit, function, address, count if values is None else values[0])


def rtu_box(platform, baud, fmt, timeout_ms):
    """A ModbusBox on the board's RS485 port: Modbus RTU at `baud`, `fmt` "8N1" | "8E1" | "8O1" | "8N2".

    Raises OSError when the platform cannot open the port (none on the board). The port carries one
    master: not beside a Modbus RTU meter (docs/chargers.md)."""
    parity = None if fmt[1] == "N" else 0 if fmt[1] == "E" else 1
    uart = platform.open_rs485(baud, 8, parity, int(fmt[2]))
    return mbox.ModbusBox(None, 0, platform, timeout_ms, RtuWriteLink(uart, baud, platform.ticks_ms, platform.ticks_diff))
