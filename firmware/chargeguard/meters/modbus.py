"""Modbus kWh meter driver: any meter of meters/modbus_models.py, or a custom map.

ModbusMeter(master, row, unit, upside_down, ticks_ms, ticks_diff, sleep_ms, poll_ms)
    ``begin_poll()`` then ``step_poll()`` until it returns DONE or FAILED
    (net/modbus.py's codes) is one poll, in steps that never wait; ``await
    poll()`` does the same and returns True with a fresh reading.
    ``reading``: a GridReading updated in place after every poll whose
    per-phase values all arrived; ``tick_ms`` = when the (last) answer of
    that poll arrived. ``last_error``: why the last poll gave no reading (or
    a register left out), in words, else None. ``await run(on_reading)`` is
    the meter task: it polls every ``poll_ms`` and calls ``on_reading()``
    after each fresh reading. A meter that stops answering gives no reading,
    so the guard goes to its failsafe after meter_timeout, as with a silent
    P1 port.

What one poll reads: the registers of the row are cut into as few requests
as the meter's ``max_registers`` allows, the currents, powers and voltages
in the first ones (from one measurement instant), the energy registers in
their own request every 10th poll. An energy register that the meter says
does not exist (exception 2, e.g. the EM24's export register on some
configurations) is left out for good and said so; the rest of the meter
works on.

Values: the current's sign comes from the phase power (meters give the
current as a magnitude): negative power = export = negative current.
``upside_down`` (a meter wired the wrong way round, or a bidirectional
meter mounted in reverse) negates every power, and so every current sign,
and swaps the import and export energy. A value the meter marks as not
available (NaN, all ones) or that cannot be real (above 2000 A, 1 MW,
1000 V or 999999999 Wh) is not used: a missing current or power fails the
poll ("L2 power not available"), a missing voltage is None.

Floats without floats: MicroPython floats are heap objects on the ESP32, so
a float32 register pair is decoded by integer bit arithmetic. The 24-bit
significand m (with its hidden bit) and exponent e give v = m x 2**(e-150);
the unit change x 10**k is split into x 5**k (a multiplication, after
shifting m right just enough that the product stays under 2**30) and
x 2**k (folded into the shift). One rounding shift then gives round(v x
10**k) as a small int. Nothing on the way exceeds 2**30, so no long int is
made and nothing is allocated; 22 or more significant bits survive, more
than float32's own precision needs for a meter's 4-5 digits. 32-bit
integers are range-checked on their high word first for the same reason.
"""

from micropython import const

from chargeguard.core.model import GridReading
from chargeguard.net import modbus as mb

_F32 = const(0)
_I32 = const(1)
_U32 = const(2)
_I16 = const(3)
_U16 = const(4)
_U64 = const(5)

_SMALL = const(0x3FFFFFFF)  # largest small int on the device (31-bit signed)
_NA = const(-0x40000000)  # "not available": below every real value
_MAX_CURRENT_MA = const(2000000)
_MAX_POWER_W = const(1000000)
_MAX_VOLTAGE_MV = const(1000000)
_MAX_ENERGY_WH = const(999999999)
_STEP_MS = const(5)  # how often a request in flight is stepped
_TIMEOUT_MS = const(1000)  # one attempt waits this long for the answer
_RETRIES = const(1)  # "retry once before declaring the meter lost" (modbus-meters.md)
_ENERGY_EVERY = const(10)  # energy registers: every 10th poll

# Value slots (self._v): currents L1..L3, powers, voltages, import, export, total.
_S_CUR = const(0)
_S_POW = const(3)
_S_VOLT = const(6)
_S_IMP = const(9)
_S_EXP = const(10)
_S_TOTAL = const(11)
_SLOTS = const(12)

_POW5 = (1, 5, 25, 125, 625, 3125, 15625, 78125, 390625, 1953125)
_WORDS = (2, 2, 2, 1, 1, 4)


def decode_f32(hi, lo, k):
    """round(float32(hi, lo) x 10**k) as an int, or None for NaN/infinity/beyond 2**30 (see module doc)."""
    e = (hi >> 7) & 0xFF
    if e == 0xFF:
        return None
    if e == 0:
        return 0  # zero, or a subnormal: far below any unit
    m = ((hi & 0x7F) << 16) | lo | 0x800000
    s = e - 150 + k
    if k >= 0:
        f = _POW5[k]
        limit = _SMALL // f
        while m > limit:
            m >>= 1
            s += 1
        m *= f
    else:
        # Divide by 5**-k after making room: m < 2**24, so 5 bits left.
        m <<= 5
        s -= 5
        m //= _POW5[-k]
    if s >= 0:
        if s > 30 or m > _SMALL >> s:
            return None
        m <<= s
    elif s < -30:
        m = 0
    else:
        m = (m + (1 << (-s - 1))) >> -s
    return -m if hi & 0x8000 else m


def decode_int(hi, lo, kind, k):
    """A 16/32-bit register value (hi unused for 16 bit) x 10**k, rounded; None when not available or too large."""
    if kind == _I16 or kind == _U16:
        v = lo
        if kind == _I16:
            if v == 0x7FFF:
                return None
            if v & 0x8000:
                v -= 0x10000
        elif v == 0xFFFF:
            return None
    elif kind == _U32:
        if hi >= 0x4000:
            return None  # beyond 2**30 (0xFFFFFFFF = not available)
        v = (hi << 16) | lo
    else:
        # int32: only -2**30..2**30-1 (0x7FFFFFFF and 0x80000000 = not available).
        if 0x4000 <= hi < 0xC000:
            return None
        if hi & 0x8000:
            v = -((((hi ^ 0xFFFF) & 0x3FFF) << 16) | (lo ^ 0xFFFF)) - 1
        else:
            v = (hi << 16) | lo
    if k > 0:
        f = 10**k
        if v > _SMALL // f or v < -(_SMALL // f):
            return None
        return v * f
    if k < 0:
        f = 10 ** (-k)
        if v < 0:
            return -((-v + f // 2) // f)
        return (v + f // 2) // f
    return v


class ModbusMeter:
    """A Modbus meter read from its register row (see module doc)."""

    def __init__(self, master, row, unit, upside_down, ticks_ms, ticks_diff, sleep_ms, poll_ms=1000):
        self.master = master
        self.reading = GridReading()
        self.last_error = None
        self._unit = unit
        self._upside = upside_down
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._sleep_ms = sleep_ms
        self.poll_ms = poll_ms
        self._function = row[0]
        self._low_first = row[1]
        self._phases = row[2]
        self._max = row[3]
        master.pause_ms = row[4]
        self._v = [_NA] * _SLOTS
        self.n_polls = 0
        self.n_readings = 0
        self._energy_due = False
        self._energy = False
        self._note = None
        self._index = 0
        self._in_flight = False
        self.resolve = None  # TCP: async host-name lookup before the first request
        # Items: [address, type, exponent, slot]; fast (per-phase) then energy.
        fast = []
        for p in range(self._phases):
            for k in range(3):
                spec = row[5 + k]  # current, power, voltage: slots 0, 3, 6
                if spec is not None:
                    fast.append([spec[0] + p * _WORDS[spec[1]], spec[1], spec[2], 3 * k + p])
        if row[8] is not None:
            fast.append([row[8][0], row[8][1], row[8][2], _S_TOTAL])
        energy = []
        if row[9] is not None:
            imp, exp, kind, k = row[9]
            energy.append([imp, kind, k, _S_IMP])
            if exp is not None:
                energy.append([exp, kind, k, _S_EXP])
        self._energy_items = energy
        self._blocks = []  # [address, count, energy?, items]
        self._plan(fast, False)
        self._plan(energy, True)

    def _plan(self, items, energy):
        # Sorted by address, cut greedily so each request spans at most
        # max_registers (the holes inside are the vendor's own table, read
        # through: fewer requests beat fewer bytes on a 1 s poll).
        # Insertion sort in place: sorted() with a key would leave garbage
        # between the meter's lasting objects at start-up.
        for i in range(1, len(items)):
            j = i
            while j and items[j - 1][0] > items[j][0]:
                items[j - 1], items[j] = items[j], items[j - 1]
                j -= 1
        block = None
        for item in items:
            end = item[0] + _WORDS[item[1]]
            if block is None or end - block[0] > self._max:
                block = [item[0], 0, energy, []]
                self._blocks.append(block)
            block[1] = max(block[1], end - block[0])
            block[3].append(item)

    def _drop(self, block):
        # Exception 2 on an energy request: split it into one request per
        # register, or leave out the one register the meter does not have.
        self._blocks.remove(block)
        items = block[3]
        if len(items) > 1:
            for item in items:
                self._blocks.append([item[0], _WORDS[item[1]], True, [item]])
            return "energy registers read one by one (the meter refused them in one request)"
        item = items[0]
        self._v[item[3]] = _NA
        return "%s energy register %d not available on this meter: left out" % (
            "import" if item[3] == _S_IMP else "export",
            item[0],
        )

    def _decode(self, block):
        master = self.master
        base = block[0]
        v = self._v
        low_first = self._low_first
        for item in block[3]:
            i = item[0] - base
            kind = item[1]
            if kind == _U64:
                # High word first (the ABB's order): only values below 2**30.
                w0 = master.word(i)
                w1 = master.word(i + 1)
                hi = master.word(i + 2)
                lo = master.word(i + 3)
                if low_first:
                    t = w0
                    w0 = lo
                    lo = t
                    t = w1
                    w1 = hi
                    hi = t
                x = None if w0 or w1 else decode_int(hi, lo, _U32, item[2])
            elif kind == _I16 or kind == _U16:
                x = decode_int(0, master.word(i), kind, item[2])
            else:
                hi = master.word(i)
                lo = master.word(i + 1)
                if low_first:
                    hi, lo = lo, hi
                if kind == _F32:
                    x = decode_f32(hi, lo, item[2])
                else:
                    x = decode_int(hi, lo, kind, item[2])
            slot = item[3]
            if x is not None:
                if slot < _S_POW:
                    limit = _MAX_CURRENT_MA
                elif slot < _S_VOLT or slot == _S_TOTAL:
                    limit = _MAX_POWER_W
                elif slot < _S_IMP:
                    limit = _MAX_VOLTAGE_MV
                else:
                    limit = _MAX_ENERGY_WH
                if x > limit or x < -limit:
                    x = None
            v[slot] = _NA if x is None else x

    def _publish(self, tick_ms):
        # The staged values into the reading; False (last_error set) when a
        # current or power is missing.
        v = self._v
        r = self.reading
        sign = -1 if self._upside else 1
        phases = self._phases
        for p in range(phases):
            if v[_S_CUR + p] == _NA or v[_S_POW + p] == _NA:
                self.last_error = "a phase current or power is not available"
                return False
        if not phases and v[_S_TOTAL] == _NA:
            self.last_error = "total power not available"
            return False
        total = 0
        for p in range(3):
            if p < phases:
                power = v[_S_POW + p] * sign
                current = v[_S_CUR + p]
                if current < 0:
                    current = -current
                r.current_ma[p] = -current if power < 0 else current
                r.power_w[p] = power
                volt = v[_S_VOLT + p]
                r.voltage_mv[p] = None if volt == _NA or volt < 0 else volt
                total += power
            else:
                r.current_ma[p] = 0
                r.power_w[p] = 0
                r.voltage_mv[p] = None
        if not phases:
            total = v[_S_TOTAL] * sign
        r.phase_count = phases
        r.import_w = total if total > 0 else 0
        r.export_w = -total if total < 0 else 0
        imp = v[_S_IMP]
        exp = v[_S_EXP]
        if self._upside:
            imp, exp = exp, imp
        r.energy_import_wh = None if imp == _NA or imp < 0 else imp
        r.energy_export_wh = None if exp == _NA or exp < 0 else exp
        r.tick_ms = tick_ms
        return True

    def begin_poll(self):
        """Start a poll (see step_poll); the energy registers every 10th time."""
        self._energy = self._energy_due or self.n_polls % _ENERGY_EVERY == 0
        self._energy_due = False
        self.n_polls += 1
        self._note = None
        self._index = 0
        self._in_flight = False

    def step_poll(self):
        """Advance the poll: BUSY (call again after a few ms), DONE (a fresh reading) or FAILED (last_error says why).

        Synchronous and allocation-free once warm, so the meter task's loop
        (and any caller's) allocates nothing per poll.
        """
        master = self.master
        blocks = self._blocks
        while True:
            if not self._in_flight:
                index = self._index
                while index < len(blocks) and blocks[index][2] and not self._energy:
                    index += 1
                self._index = index
                if index >= len(blocks):
                    break
                block = blocks[index]
                master.start(self._unit, self._function, block[0], block[1], _TIMEOUT_MS * (_RETRIES + 1) + master.pause_ms)
                self._in_flight = True
            r = master.step()
            if r == mb.BUSY:
                return r
            self._in_flight = False
            block = blocks[self._index]
            self._index += 1
            if r == mb.DONE:
                self._decode(block)
            elif not block[2]:
                self.last_error = master.error
                return mb.FAILED
            elif master.exception == 2:
                # The plan changes: energy again at the next poll, register by register.
                self._note = self._drop(block)
                self._energy_due = True
                break
            else:
                # Energy is only information: the reading goes on without it.
                self._note = master.error
        if not self._publish(master.tick_ms):
            return mb.FAILED
        self.last_error = self._note
        self.n_readings += 1
        return mb.DONE

    async def poll(self):
        """One whole poll (begin_poll, step_poll until it ends); True with a fresh reading."""
        self.begin_poll()
        while True:
            r = self.step_poll()
            if r != mb.BUSY:
                return r == mb.DONE
            await self._sleep_ms(_STEP_MS)

    async def run(self, on_reading):
        """The meter task: poll every poll_ms, on_reading() after each fresh reading. Never returns."""
        ticks_ms = self._ticks_ms
        ticks_diff = self._ticks_diff
        sleep_ms = self._sleep_ms
        while True:
            started = ticks_ms()
            if self.resolve is not None:
                try:
                    await self.resolve()
                except Exception as err:
                    self.last_error = "cannot find the meter's host: %s" % (err.args[0] if err.args else err)
                    await sleep_ms(self.poll_ms)
                    continue
            # The poll's steps inline (not `await self.poll()`): a coroutine
            # object per poll would be an allocation per reading.
            self.begin_poll()
            while True:
                r = self.step_poll()
                if r != mb.BUSY:
                    break
                await sleep_ms(_STEP_MS)
            if r == mb.DONE:
                on_reading()
            left = self.poll_ms - ticks_diff(ticks_ms(), started)
            await sleep_ms(left if left > 0 else 0)


def from_config(meter_doc, platform):
    """The Modbus driver for a validated `meter` section: RTU on the board's RS485 UART, or TCP when `host` is set."""
    model = meter_doc["model"]
    import chargeguard.meters
    from chargeguard.meters import modbus_models

    row = modbus_models.custom_row(meter_doc["custom"]) if model == "custom" else modbus_models.row(model)
    # The table module is needed only for this one row: dropped from
    # sys.modules and from its package, so its heap is given back.
    _forget(chargeguard.meters, "modbus_models")
    del modbus_models
    if row is None:
        raise ValueError("unknown Modbus meter model %s" % model)
    host = meter_doc["host"]
    ticks_ms = platform.ticks_ms
    ticks_diff = platform.ticks_diff
    tcp = None
    if host:
        from chargeguard.net import modbus_tcp as tcp

        link = tcp.TcpLink(host, meter_doc["port"])
    else:
        fmt = meter_doc["format"]  # "8N1", "8E1", "8O1", "8N2"
        parity = None if fmt[1] == "N" else 0 if fmt[1] == "E" else 1
        uart = platform.open_rs485(meter_doc["baud"], 8, parity, int(fmt[2]))
        link = mb.RtuLink(uart, meter_doc["baud"], ticks_ms, ticks_diff)
    master = mb.ModbusMaster(link, ticks_ms, ticks_diff, _TIMEOUT_MS, _RETRIES)
    meter = ModbusMeter(
        master, row, meter_doc["address"], meter_doc["upside_down"], ticks_ms, ticks_diff, platform.sleep_ms, meter_doc["poll_ms"]
    )
    if tcp is not None and not tcp.is_numeric(host):
        meter.resolve = tcp.resolver(platform, link, host)
    return meter


def _forget(package, name):
    import sys

    sys.modules.pop(package.__name__ + "." + name, None)
    if name in package.__dict__:
        delattr(package, name)
