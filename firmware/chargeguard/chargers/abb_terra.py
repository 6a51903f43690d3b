"""ABB Terra AC wallbox over Modbus TCP (unit 1, port 502) or RTU (RS485), firmware 1.6.5 or later.

Sources: ABB's "Terra AC Charger Modbus Communication" v1.7 as summarised by
GrugBus (github.com/peufeu2/GrugBus, grugbus/devices/EVSE_ABB_Terra.csv and
.md: registers, units and the behaviour of the dangerous ones) and evcc's
ABB driver (the state byte). On the box (ABB's TerraConfig app): Modbus
"slave" mode (several chargers under a central controller), Modbus TCP on;
or, where the box is wired to the board's RS485 port, Modbus RTU with the
address, baud and parity set there (nymea's ABB plugin asks for 19200 8E1,
our defaults): the same registers and functions (3 to read, 16 to write).

Read in one request, function 3, 0x4008..0x4020 (25 registers, u32 each
but 0x4020): 0x4008 error code, 0x400A socket lock state, 0x400C charging
state (its second byte, bit 7 masked: 0 A idle, 1 B1 pending authorisation,
2 B2 ready, 3 C1 EV ready without PWM, 4 C2 charging, 5 session stopped),
0x400E the current limit the box applies (mA: `status.offered_ma`),
0x4010/12/14 currents L1..L3 (mA), 0x401C active power (W), 0x401E energy of
the session (Wh), 0x4020 the communication timeout's readback (s).

Written (function 16): 0x4100 "Set Charging Current Limit", u32 mA =
(offered_ma // 1000) x 1000 (whole amps, rounded down, at most 32 A), 0 below
6 A (the box pauses the session below 6 A and resumes at 6 A or more,
without the app); written when it changes and after the box did not answer
(it may have restarted). 0x4106 "Communication timeout" is set once to
COMM_TIMEOUT_S (60 s) when its readback differs: the box decides the master
is lost when no message came for that long and then stops charging by
itself, ChargeGuard's failsafe (a live ChargeGuard polls every 5 s: the
keep-alive is the poll itself).

Never written: 0x4105 "Start Stop Charging Session" (Stop also clears the
box's charging authorisation, which only ABB's app gives back) and 0x4103
"Lock Unlock Socket Cable" (0 while charging ends the session until the
cable is replugged; writes hold the bus while the latch moves). `_write`
refuses every register but 0x4100 and 0x4106, so no code path can.

Errors (`status.error`, `last_error`): the Modbus request's, "state <n>",
"error <n>" (the box's error code), "write <register>=<value>: <why>", "out
of memory", "driver: <exception type>". Nothing raises.
"""

from micropython import const

from chargeguard.core.model import ChargerStatus
from chargeguard.net import modbus_box as mbox
from chargeguard.net.modbus_box import ModbusBox

_TIMEOUT_MS = const(2000)
COMM_TIMEOUT_S = const(60)
_READ_AT = const(0x4008)
_READ_COUNT = const(25)
W_LIMIT = const(0x4100)
W_COMM_TIMEOUT = const(0x4106)
_LIMIT = const(0x3FFFFFFF)

_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)


class AbbTerra:
    """Driver for one ABB Terra AC; `status` is updated in place by `poll()`."""

    def __init__(self, box, unit=1):
        self.box = box
        self.unit = unit
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0
        self.comm_timeout_s = None  # the box's communication timeout, as last read
        self._out = [0, 0]
        self._limit = None  # the mA we last wrote and the box confirmed (None = unknown)
        self._poll_error = None

    def _u32(self, offset):
        # A u32 register pair of the read block, None when it is 2**30 or more.
        hi = self.box.word(offset)
        if hi >= 0x4000:
            return None
        return (hi << 16) | self.box.word(offset + 1)

    async def poll(self):
        """Read the status block into `status`. True on success; never raises."""
        return await mbox.poll_box(self)

    async def _read_status(self):
        box = self.box
        if not await mbox.read_block(self, 3, _READ_AT, _READ_COUNT):
            return False
        u32 = self._u32
        error_code = u32(0)
        state = (box.word(5) >> 8) & 0x7F  # 0x400C: the second byte of four
        status = self.status
        error = None
        if state == 0:
            status.car = _CAR_NONE
        elif state == 4:
            status.car = _CAR_CHARGING
        elif 1 <= state <= 5:
            status.car = _CAR_CONNECTED
        else:
            status.car = _CAR_UNKNOWN
            error = "state %d" % state
        if error is None and error_code:
            error = "error %s" % error_code
        status.offered_ma = u32(6)
        currents = status.current_ma
        currents[0] = u32(8)
        currents[1] = u32(10)
        currents[2] = u32(12)
        status.power_w = u32(20)
        status.session_energy_wh = u32(22)
        self.comm_timeout_s = box.word(24)
        return mbox.took_status(self, error)

    async def apply(self, offered_ma):
        """Command the box to offer at most `offered_ma` (0 = pause). True when it has it; never raises."""
        return await mbox.apply_box(self, offered_ma)

    async def _command(self, offered_ma):
        amps = mbox.box_amps(offered_ma)
        limit = amps * 1000
        if self._limit != limit:
            self._out[0] = limit >> 16
            self._out[1] = limit & 0xFFFF
            if not await self._write(W_LIMIT, 2, limit):
                return False
            self._limit = limit
        if self.comm_timeout_s is not None and self.comm_timeout_s != COMM_TIMEOUT_S:
            self._out[0] = COMM_TIMEOUT_S
            if not await self._write(W_COMM_TIMEOUT, 1, COMM_TIMEOUT_S):
                return False
            self.comm_timeout_s = COMM_TIMEOUT_S
        self.status.offered_ma = limit
        return True

    async def _write(self, register, count, value):
        # Only the current limit and the communication timeout: 0x4103 and
        # 0x4105 must never be written (module doc).
        if register != W_LIMIT and register != W_COMM_TIMEOUT:
            raise ValueError("register")
        return await mbox.write_box(self, 16, register, self._out, count, value)

    def _forget(self):
        self._limit = None  # no answer: the box may have restarted, the limit is written again


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type abb_terra.

    "transport": "rtu" puts it on the board's RS485 port ("baud", "format"; ABB's default 19200 8E1):
    raises OSError when the port cannot be opened (none on the board). Not beside a Modbus RTU meter: one
    master per bus (docs/chargers.md).
    """
    if entry.get("transport") == "rtu":
        from chargeguard.net.modbus_rtu_box import rtu_box  # loaded for such a box only

        box = rtu_box(platform, entry["baud"], entry["format"], timeout_ms)
    else:
        box = ModbusBox(entry["host"], entry["port"], platform, timeout_ms)
    return AbbTerra(box, entry.get("unit") or 1)
