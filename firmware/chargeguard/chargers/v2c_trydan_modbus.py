"""V2C Trydan over Modbus TCP (port 502, unit 1): the same box as chargers/v2c_trydan.py, for owners who prefer it.

Source: V2C's own register list (github.com/V2Charge/Trydan_Modbus_TCP, the
"RS485 Modbus RTU/TCP Address" sheet linked from its README, and the
package's src/v2ctrydan/modbus.py): values are read from holding registers
3010..3029 with function 3 and set by writing holding registers 6010..6021
with function 6 (Write Single Register). The registers follow each other one
address apart, so each value is one 16-bit register (the package decodes
two registers as a float32, which the one-apart addresses contradict: the
driver reads unsigned 16-bit integers, and the emulator serves them so).

Read in one request (3010..3029, 20 registers): 3010 ChargeState (0 no car,
1 connected, 2 charging; kept at 2 after a pause, as over HTTP), 3011
ChargePower (W), 3012 ChargeEnergy (0.01 kWh: an assumption, the sheet gives
the HTTP API's kWh with two decimals), 3013 SlaveError, 3014 ChargeTime (s),
3018 Paused, 3019 Locked, 3021 Intensity (A), 3022 Dynamic, 3025
MinIntensity, 3026 MaxIntensity, 3027 PauseDynamic. The box measures no
per-phase current over Modbus: the guard counts the offered current.

Written: 6010 Paused, 6011 Locked, 6013 Intensity, 6019 PauseDynamic; the
rules are the HTTP driver's: Intensity = offered_ma // 1000 (whole amps,
rounded down), within 6..32 A and the box's Min/MaxIntensity, else pause
(Paused=1 only); charging writes PauseDynamic=1 (only while the box's own
dynamic control is on), then Intensity, then Paused=0, each only when the
box differs (per the last poll or the last confirmed write): no keep-alive,
the box keeps what it was given. If ChargeGuard dies the box keeps the last
current (as over HTTP): set `failsafe_a` for a dead meter, and the box's own
MaxIntensity to what the circuit carries.

Errors (`status.error`, `last_error`): the Modbus request's ("no answer
...", "connection refused", "exception 2: ..."), "ChargeState <n>",
"SlaveError <n>", "write <register>=<value>: <why>", "out of memory",
"driver: <exception type>". Nothing raises.
"""

from micropython import const

from chargeguard.core.model import ChargerStatus
from chargeguard.net import modbus_box as mbox
from chargeguard.net.modbus_box import ModbusBox

_TIMEOUT_MS = const(2000)
_UNIT = const(1)
_MIN_A = const(6)
_MAX_A = const(32)
_READ_AT = const(3010)
_READ_COUNT = const(20)
# Offsets in the read block.
_STATE = const(0)
_POWER = const(1)
_ENERGY = const(2)
_SLAVE_ERROR = const(3)
_TIME = const(4)
_PAUSED = const(8)
_LOCKED = const(9)
_INTENSITY = const(11)
_DYNAMIC = const(12)
_MIN = const(15)
_MAX = const(16)
_PAUSE_DYNAMIC = const(17)
# Write registers.
W_PAUSED = const(6010)
W_LOCKED = const(6011)
W_INTENSITY = const(6013)
W_PAUSE_DYNAMIC = const(6019)

_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)


class TrydanModbus:
    """Driver for one V2C Trydan over Modbus TCP; `status` is updated in place by `poll()`."""

    def __init__(self, box, unit=_UNIT):
        self.box = box
        self.unit = unit
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0
        self._value = [0]  # the one register of a function 6 write
        # What the box has, per the last poll or confirmed write (None = unknown).
        self._paused = None
        self._intensity = None
        self._dynamic = 0
        self._pause_dynamic = None
        self._min = 0
        self._max = 0
        self._poll_error = None

    async def poll(self):
        """Read the status block into `status`. True on success; never raises."""
        return await mbox.poll_box(self)

    async def _read_status(self):
        if not await mbox.read_block(self, 3, _READ_AT, _READ_COUNT):
            return False
        w = self.box.word
        state = w(_STATE)
        status = self.status
        paused = w(_PAUSED)
        error = None
        if state == 0:
            status.car = _CAR_NONE
        elif state == 2 and not paused:
            status.car = _CAR_CHARGING
        elif state == 1 or state == 2:
            status.car = _CAR_CONNECTED  # the box keeps 2 after a pause
        else:
            status.car = _CAR_UNKNOWN
            error = "ChargeState %d" % state
        if error is None and w(_SLAVE_ERROR):
            error = "SlaveError %d" % w(_SLAVE_ERROR)
        status.power_w = w(_POWER)
        status.session_energy_wh = w(_ENERGY) * 10
        status.session_s = w(_TIME)
        locked = w(_LOCKED)
        status.locked = None if locked > 1 else locked == 1
        self._paused = paused
        self._intensity = w(_INTENSITY)
        self._dynamic = w(_DYNAMIC)
        self._pause_dynamic = w(_PAUSE_DYNAMIC)
        self._min = w(_MIN)
        self._max = w(_MAX)
        status.offered_ma = 0 if paused else self._intensity * 1000
        return mbox.took_status(self, error)

    async def apply(self, offered_ma):
        """Command the box to offer at most `offered_ma` (0 = pause). True when it has it; never raises."""
        return await mbox.apply_box(self, offered_ma)

    async def _command(self, offered_ma):
        amps = int(offered_ma) // 1000
        if amps > _MAX_A:
            amps = _MAX_A
        if _MIN_A <= self._max < amps:
            amps = self._max
        if amps < _MIN_A or amps < self._min <= _MAX_A:
            if self._paused != 1 and not await self._write(W_PAUSED, 1):
                return False
            amps = 0
        else:
            if self._dynamic == 1 and self._pause_dynamic != 1 and not await self._write(W_PAUSE_DYNAMIC, 1):
                return False
            if self._intensity != amps and not await self._write(W_INTENSITY, amps):
                return False
            if self._paused != 0 and not await self._write(W_PAUSED, 0):
                return False
        self.status.offered_ma = amps * 1000
        return True

    async def set_lock(self, locked):
        """Lock (True) or unlock (False) the box (register 6011); True when it took it; never raises."""
        try:
            if not await self._write(W_LOCKED, 1 if locked else 0):
                return False
            self.status.locked = bool(locked)
        except Exception as err:
            return mbox.fail_box(self, "driver: %s" % type(err).__name__)
        self.status.error = self._poll_error
        return True

    async def _write(self, register, value):
        self._value[0] = value
        if not await mbox.write_box(self, 6, register, self._value, 1, value):
            return False
        if register == W_PAUSED:
            self._paused = value
        elif register == W_INTENSITY:
            self._intensity = value
        elif register == W_PAUSE_DYNAMIC:
            self._pause_dynamic = value
        return True

    def _forget(self):
        # No answer: the box may have restarted; the next apply writes everything.
        self._paused = self._intensity = self._pause_dynamic = None


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type v2c_trydan_modbus."""
    return TrydanModbus(ModbusBox(entry["host"], entry["port"], platform, timeout_ms), entry.get("unit") or _UNIT)
