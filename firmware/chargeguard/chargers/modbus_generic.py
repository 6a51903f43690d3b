"""A Modbus TCP wallbox from a register map in the configuration (Phoenix Contact EV-ETH, Wallbe and their kin).

For boxes that have no driver of their own but a documented Modbus map: the
charger entry's `map` (validated by config.py; docs/configuration.md)
names where the state, the power, the current set-point and the enable
switch live:

    "map": {"state_function": 4, "state_address": 100, "state_kind": "letter",
            "power_function": 4, "power_address": 120, "power_type": "u32", "power_scale": 0,
            "current_address": 528, "current_unit_ma": 1000,
            "enable": "coil", "enable_address": 400}

That example is the Phoenix Contact EV-ETH controller's (PROTOCOLS.md,
"Other chargers", from evcc's phoenix-ev-eth template): status in input
register 100 as the IEC 61851 letter, power in input register 120, the
current in holding register 528 (A), charging enabled by coil 400. Check
the box's own manual: the firmware of such controllers varies.

- State: `state_kind` "letter" = the register holds the letter as ASCII
  ('A' = 65 .. 'F'); "number" = 0..5 for A..F. A no car; B connected; C
  and D charging; E and F (no power, error) unknown with "state E".
- Power (optional, `power_address` -1 = none): u16, u32 (high word first),
  u32sw (low word first) or i32, times 10**power_scale W. No per-phase
  current: the guard counts the offered current.
- Current: holding register `current_address`, written with function 6,
  value = whole amps x 1000 // current_unit_ma (1000: amps, 100: 0.1 A,
  1: mA), offered_ma // 1000 whole amps, rounded down, at most 32 A.
- Enable: "coil" (function 5 at enable_address), "register" (function 6
  writes 1 / 0) or "none" (a pause writes current 0). Below 6 A the box
  is paused: disabled (or current 0); charging writes the current first,
  then enables, so a paused box restarts at the new limit.
- Each write only when the box differs from what we last wrote and it
  confirmed (or after it did not answer: it may have restarted); no
  keep-alive. The failsafe is the box's own (such controllers fall back to
  their configured current when the master is silent, if set up so: see
  the box's manual); ChargeGuard cannot configure it.

Errors (`status.error`, `last_error`): the Modbus request's, "state <x>",
"write <register>=<value>: <why>", "out of memory", "driver: <exception
type>". Nothing raises.
"""

from micropython import const

from chargeguard.core.model import ChargerStatus
from chargeguard.net import modbus_box as mbox
from chargeguard.net.modbus_box import ModbusBox

_TIMEOUT_MS = const(2000)

_CAR_UNKNOWN = const(0)
_CAR_NONE = const(1)
_CAR_CONNECTED = const(2)
_CAR_CHARGING = const(3)

# power_type -> (registers, kind): 0 u16, 1 u32, 2 u32 low word first, 3 i32.
POWER_TYPES = ("u16", "u32", "u32sw", "i32")
STATE_KINDS = ("letter", "number")
ENABLES = ("coil", "register", "none")
UNITS_MA = (1, 10, 100, 1000)


class ModbusGeneric:
    """Driver for one Modbus TCP wallbox described by `m`, the entry's validated map."""

    def __init__(self, box, unit, m):
        self.box = box
        self.unit = unit
        self._state_fn = m["state_function"]
        self._state_at = m["state_address"]
        self._letter = m["state_kind"] == "letter"
        self._power_fn = m["power_function"]
        self._power_at = m["power_address"]
        self._power_type = POWER_TYPES.index(m["power_type"])
        self._power_scale = m["power_scale"]
        self._current_at = m["current_address"]
        self._unit_ma = m["current_unit_ma"]
        self._enable = ENABLES.index(m["enable"])
        self._enable_at = m.get("enable_address", 0)
        self.status = ChargerStatus()
        self.last_error = None
        self.writes_sent = 0
        self._out = [0]
        self._current = None  # the register value last written and confirmed (None = unknown)
        self._enabled = None
        self._poll_error = None

    async def poll(self):
        """Read the state (and the power) into `status`. True on success; never raises."""
        return await mbox.poll_box(self)

    async def _read_status(self):
        box = self.box
        if not await mbox.read_block(self, self._state_fn, self._state_at, 1):
            return False
        raw = box.word(0)
        letter = raw - 65 if self._letter else raw  # 0 = A .. 5 = F
        power = None
        if self._power_at >= 0:
            kind = self._power_type
            if not await mbox.read_block(self, self._power_fn, self._power_at, 1 if kind == 0 else 2):
                return False
            power = self._decode_power(kind)
        status = self.status
        error = None
        if letter == 0:
            status.car = _CAR_NONE
        elif letter == 1:
            status.car = _CAR_CONNECTED
        elif letter == 2 or letter == 3:
            status.car = _CAR_CHARGING
        else:
            status.car = _CAR_UNKNOWN
            error = "state %s" % (chr(raw) if self._letter and 65 <= raw <= 90 else raw)
        status.power_w = power
        return mbox.took_status(self, error)

    def _decode_power(self, kind):
        w = self.box.word
        if kind == 0:
            v = w(0)
        else:
            hi, lo = (w(1), w(0)) if kind == 2 else (w(0), w(1))
            if kind == 3 and hi & 0x8000:
                if hi < 0xC000:
                    return None
                v = -((((hi ^ 0xFFFF) & 0x3FFF) << 16) | (lo ^ 0xFFFF)) - 1
            elif hi >= 0x4000:
                return None  # 2**30 or more: no box's power
            else:
                v = (hi << 16) | lo
        scale = self._power_scale
        while scale > 0:
            if v > 99999999 or v < -99999999:
                return None
            v *= 10
            scale -= 1
        while scale < 0:
            v = (v + 5) // 10 if v >= 0 else -((-v + 5) // 10)
            scale += 1
        return v

    async def apply(self, offered_ma):
        """Command the box to offer at most `offered_ma` (0 = pause). True when it has it; never raises."""
        return await mbox.apply_box(self, offered_ma)

    async def _command(self, offered_ma):
        amps = mbox.box_amps(offered_ma)
        if not amps:
            if self._enable == 2:
                if self._current != 0 and not await self._write(self._current_at, 0):
                    return False
            elif self._enabled != 0 and not await self._switch(0):
                return False
            amps = 0
        else:
            value = amps * 1000 // self._unit_ma
            if self._current != value and not await self._write(self._current_at, value):
                return False
            if self._enable != 2 and self._enabled != 1 and not await self._switch(1):
                return False
        self.status.offered_ma = amps * 1000
        return True

    async def _switch(self, on):
        if self._enable == 0:
            self._out[0] = 0xFF00 if on else 0
            ok = await mbox.write_box(self, 5, self._enable_at, self._out, 1, on)
        else:
            self._out[0] = on
            ok = await mbox.write_box(self, 6, self._enable_at, self._out, 1, on)
        if ok:
            self._enabled = on
        return ok

    async def _write(self, register, value):
        self._out[0] = value
        if await mbox.write_box(self, 6, register, self._out, 1, value):
            self._current = value
            return True
        return False

    def _forget(self):
        self._current = self._enabled = None  # no answer: the box may have restarted


def from_config(entry, platform, timeout_ms=_TIMEOUT_MS):
    """The driver for one validated `chargers[]` entry of type modbus_generic."""
    box = ModbusBox(entry["host"], entry["port"], platform, timeout_ms)
    return ModbusGeneric(box, entry.get("unit") or 1, entry["map"])
