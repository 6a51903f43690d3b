"""An ATM90E32AS metering IC on SPI as the grid meter: signed per-phase power, current and voltage.

The meter section (`"type": "atm90e32"`, rows in meters/meter_fields.py):
`line_hz` (50 | 60), `pga` (1 | 2 | 4, the current channels' gain),
`ugain_l1..l3` and `igain_l1..l3` (the chip's UgainX / IgainX calibration
words), `upside_down` (negate every phase's power), `invert_l1..l3` (negate
one phase: a clamp put on the wrong way round), `poll_ms`. The SPI pins are
the board's `atm90e32_spi`; the bus is platform/<name>_spi.py's
`open_spi(platform)`, loaded only here.

Facts (docs/configuration.md lists them with their sources; sources differ
where said):
- SPI mode 3, MSB first, at most 200 kHz (ESPHome atm90e32.h; the Atmel
  Zephyr driver m90e3x.h: CPOL|CPHA, 16-bit words). One access is 32 bits
  under CS: a 16-bit address word (bit 15 = 1 read, 0 write; the register
  in the low bits) and a 16-bit data word, MSB first (CircuitSetup
  ATM90E32.cpp CommEnergyIC, ESPHome read16_/write16_, Zephyr
  M90E3X_SPI_READ_MASK).
- Start-up: SoftReset (70H) <- 789AH, a wait (40 ms: Zephyr's T1),
  CfgRegAccEn (7FH) <- 55AAH unlocks, MeterEn (00H) <- 0001H, which
  LastSPIData (78H) must then echo (ESPHome), MMode0 (33H), MMode1 (34H),
  UgainA/IgainA (61H/62H), B (65H/66H), C (69H/6AH), CfgRegAccEn <- 0000H
  relocks (CircuitSetup, ESPHome; Zephyr writes AA55H: any word but 55AAH).
- MMode0: bit 12 = 60 Hz, bit 8 = 3P3W (clear: 3P4W, a neutral), bit 7
  CF2 = varh, bits 2/1/0 = phase A/B/C counted (50 Hz 3P4W: 0087H; ESPHome
  and CircuitSetup write 0185H (3P3W, split phase) | 1000H for 60 Hz).
- MMode1: 2 bits per current channel (I1 bits 1-0, I2 3-2, I3 5-4), 00 = 1x,
  01 = 2x, 10 = 4x (CircuitSetup: 0000H / 0015H / 002AH).
- UrmsA-C (D9H-DBH) 0.01 V, IrmsA-C (DDH-DFH) 0.001 A, unsigned; Freq (F8H)
  0.01 Hz; PmeanA-C (B1H-B3H) signed 16 bit, 1 W (datasheet "Table-11");
  PmeanALSB-CLSB (C1H-C3H) bits 15-8 = 1/256 W. CircuitSetup and ESPHome
  scale (PmeanX << 16 | PmeanXLSB) by 0.00032 W, about 21 times the
  datasheet's 1/65536 W (a user's 60 W bulb read 1241 W: CircuitSetup/ATM90E32
  issue 2): the datasheet's scale is used.

Every poll reads per phase UrmsX, IrmsX, PmeanX, PmeanXLSB, then Freq,
LastSPIData (which must echo Freq) and MeterEn (which must be 1): 15
accesses of 32 bits on a 3-phase site, 160 us each on the wire at 200 kHz,
the loop free between phases. A phase's current takes the sign of its
power (import positive). A chip that answers only FFFFH or 0000H, a
LastSPIData that does not echo, or a frequency more than 5 Hz off
`line_hz` (no mains on the chip's voltage input) gives no reading and a
`last_error` in words: the reading ages and the guard goes to its
failsafe, as for a silent P1 port. MeterEn read as 0 (the chip reset)
(or every word 0000H: metering off after a reset) starts the start-up
sequence again at the next poll.

Memory: two 4-byte buffers and a 16-entry list, made once; a poll
allocates nothing.
"""

from micropython import const

from chargeguard.core.model import GridReading
from chargeguard.core.ticks import ticks_diff

METER_EN = const(0x00)
MMODE0 = const(0x33)
MMODE1 = const(0x34)
UGAIN_A = const(0x61)  # IgainA = 62H; phase B and C at +4 and +8
SOFT_RESET = const(0x70)
LAST_SPI_DATA = const(0x78)
CFG_REG_ACC_EN = const(0x7F)
PMEAN_A = const(0xB1)  # B1H-B3H
PMEAN_A_LSB = const(0xC1)  # C1H-C3H
URMS_A = const(0xD9)  # D9H-DBH
IRMS_A = const(0xDD)  # DDH-DFH
FREQ = const(0xF8)

RESET_WORD = const(0x789A)
UNLOCK_WORD = const(0x55AA)
LOCK_WORD = const(0x0000)
READ_BIT = const(0x8000)
RESET_WAIT_MS = const(40)
FREQ_TOLERANCE = const(500)  # 5 Hz in 0.01 Hz
SPI_HZ = const(200000)

_MM0_60HZ = const(0x1000)
_MM0_CF2VARH = const(0x0080)
_MM0_ALL_PHASES = const(0x0007)
_PGA_CODES = {1: 0x00, 2: 0x15, 4: 0x2A}


def mmode0(line_hz):
    """The MMode0 word: 3P4W, CF2 = varh, all three phases counted; bit 12 for 60 Hz."""
    return _MM0_CF2VARH | _MM0_ALL_PHASES | (_MM0_60HZ if line_hz == 60 else 0)


def mmode1(pga):
    """The MMode1 word for a PGA gain of 1, 2 or 4 on all three current channels (ValueError otherwise)."""
    code = _PGA_CODES.get(pga)
    if code is None:
        raise ValueError("pga must be 1, 2 or 4")
    return code


def power_w(high, low):
    """PmeanX and PmeanXLSB words -> W (int, rounded): signed 1 W per LSB plus bits 15-8 of the low word in 1/256 W."""
    if high & 0x8000:
        high -= 0x10000
    return (high * 256 + (low >> 8) + 128) >> 8


def _silent(word):
    # What a bus that reads one word everywhere means.
    return ("the ATM90E32 answers %s to every read: not powered, CS/MISO not connected (the board's atm90e32_spi"
            " pins), or reset" % ("FFFFH" if word else "0000H"))


class Atm90e32Meter:
    """The driver: `reading`, `last_error`, `async run(on_reading)` as every meter; `start()`, `measure(now)`.

    spi: an object with transfer(tx, rx): one 32-bit access under CS, tx
    and rx bytearrays of 4 (platform/<name>_spi.py). phases: site.phases
    (chip phases A, B, C = L1, L2, L3). ugain, igain: 3 words each. invert:
    3 bools (upside_down already folded in).
    """

    def __init__(self, spi, phases, line_hz, pga, ugain, igain, invert, poll_ms, ticks_ms, sleep_ms):
        self.reading = GridReading()
        self.last_error = None
        self.n_readings = 0
        self.n_held = 0  # phase powers held to U x I (a wrong power scale shows here)
        # Phases (from L1) whose voltage input is their own. Beyond them the
        # chip compares a phase's current with another phase's voltage (120
        # degrees away): its power's sign means nothing, so the phase is read
        # as import, U x I, as bare CT clamps are (never export it may not be).
        self.signed_phases = 3
        self.configured = False
        self._spi = spi
        self._phases = phases
        self._line_hz = line_hz
        self._mmode0 = mmode0(line_hz)
        self._mmode1 = mmode1(pga)
        self._ugain = tuple(ugain)
        self._igain = tuple(igain)
        self._invert = tuple(invert)
        self._poll_ms = poll_ms
        self._ticks_ms = ticks_ms
        self._sleep_ms = sleep_ms
        self._tx = bytearray(4)
        self._rx = bytearray(4)
        self._words = [0] * 16  # 4 per phase, then Freq, LastSPIData, MeterEn

    def access(self, address, value):
        """One 32-bit access: the address word (READ_BIT set for a read), the data word; the data word clocked in."""
        tx = self._tx
        rx = self._rx
        tx[0] = address >> 8
        tx[1] = address & 0xFF
        tx[2] = value >> 8
        tx[3] = value & 0xFF
        self._spi.transfer(tx, rx)
        return rx[2] << 8 | rx[3]

    def read(self, register):
        """A register's 16-bit word."""
        return self.access(READ_BIT | register, 0)

    def write(self, register, value):
        """Write a 16-bit word to a register."""
        self.access(register, value)

    async def start(self):
        """The start-up sequence (the module doc); True when the chip echoed MeterEn, else last_error says why."""
        self.configured = False
        self.write(SOFT_RESET, RESET_WORD)
        await self._sleep_ms(RESET_WAIT_MS)
        self.write(CFG_REG_ACC_EN, UNLOCK_WORD)
        self.write(METER_EN, 1)
        echo = self.read(LAST_SPI_DATA)
        if echo in (0, 0xFFFF):
            self.last_error = _silent(echo)
            return False
        if echo != 1:
            self.last_error = ("the ATM90E32 does not echo: LastSPIData reads %04XH after MeterEn <- 0001H"
                               " (noise on the SPI lines, a clock over 200 kHz or not SPI mode 3)" % echo)
            return False
        self.write(MMODE0, self._mmode0)
        self.write(MMODE1, self._mmode1)
        for phase in range(3):
            self.write(UGAIN_A + 4 * phase, self._ugain[phase])
            self.write(UGAIN_A + 4 * phase + 1, self._igain[phase])
        self.write(CFG_REG_ACC_EN, LOCK_WORD)
        self.configured = True
        return True

    def read_phase(self, phase):
        """Read phase `phase`'s four registers into the poll's words."""
        words = self._words
        base = 4 * phase
        words[base] = self.read(URMS_A + phase)
        words[base + 1] = self.read(IRMS_A + phase)
        words[base + 2] = self.read(PMEAN_A + phase)
        words[base + 3] = self.read(PMEAN_A_LSB + phase)

    def finish(self, now):
        """Read Freq, LastSPIData, MeterEn and check them; fill the reading stamped `now`. True when usable."""
        words = self._words
        n = 4 * self._phases
        freq = words[n] = self.read(FREQ)
        echo = words[n + 1] = self.read(LAST_SPI_DATA)
        enabled = words[n + 2] = self.read(METER_EN)
        ones = zeros = 0
        for index in range(n + 3):
            word = words[index]
            if word == 0xFFFF:
                ones += 1
            elif word == 0:
                zeros += 1
        if ones == n + 3 or zeros == n + 3:
            # Dead, or reset (metering off reads 0000H everywhere): the start-up runs again at the next poll.
            self.configured = False
            self.last_error = _silent(0xFFFF if ones else 0)
            return False
        if echo != freq:
            self.last_error = ("the ATM90E32's LastSPIData (%04XH) is not the word just read (%04XH):"
                               " noise on the SPI lines, a clock over 200 kHz or not SPI mode 3" % (echo, freq))
            return False
        if enabled != 1:
            self.configured = False
            self.last_error = "the ATM90E32 stopped metering (MeterEn reads %04XH, a reset?): configuring it again" % enabled
            return False
        if not -FREQ_TOLERANCE <= freq - 100 * self._line_hz <= FREQ_TOLERANCE:
            self.last_error = ("the ATM90E32 reads a line frequency of %d.%02d Hz, not about %d Hz: no mains on its"
                               " voltage input (the AC transformer), or the wrong line_hz" % (freq // 100, freq % 100, self._line_hz))
            return False
        r = self.reading
        for phase in range(self._phases):
            base = 4 * phase
            power = power_w(words[base + 2], words[base + 3])
            if self._invert[phase]:
                power = -power
            current = words[base + 1]  # 1 mA per LSB
            if phase >= self.signed_phases:
                power = (words[base] // 10) * current // 10000
            # Active power is never more than volts x amps. The sources
            # disagree on PmeanX's scale by 21x (see above): should the
            # datasheet's be the wrong one, |P| reads above U x I and is held
            # to it, so no power is ever overstated past what the phase
            # carries. 0.1 V x mA / 10000 = W, in small ints on a 32-bit port.
            apparent = (words[base] // 10) * current // 10000
            if power > apparent + apparent // 16 + 10 or -power > apparent + apparent // 16 + 10:
                power = apparent if power > 0 else -apparent
                self.n_held += 1
            r.voltage_mv[phase] = words[base] * 10  # 0.01 V per LSB
            r.power_w[phase] = power
            r.current_ma[phase] = -current if power < 0 else current
        r.phase_count = self._phases
        r.tick_ms = now
        self.n_readings += 1
        self.last_error = None
        return True

    def measure(self, now):
        """One poll at once (no yield): every phase, then finish(now)."""
        for phase in range(self._phases):
            self.read_phase(phase)
        return self.finish(now)

    async def run(self, on_reading):
        """The meter task: start-up, then a poll every poll_ms, on_reading() after each usable one. Never returns.

        The start-up takes a poll of its own (so does a start-up again after a reset).
        """
        ticks_ms = self._ticks_ms
        while True:
            started = ticks_ms()
            try:
                if not self.configured:
                    # The first reading at the next poll: the chip averages its new measurements meanwhile.
                    await self.start()
                else:
                    for phase in range(self._phases):
                        self.read_phase(phase)
                        await self._sleep_ms(0)
                    if self.finish(ticks_ms()):
                        on_reading()
            except OSError as error:
                # The reading ages: the failsafe after meter_timeout.
                self.configured = False
                self.last_error = "the SPI bus to the ATM90E32 fails: %s" % (error.args[-1] if error.args else error)
            left = self._poll_ms - ticks_diff(ticks_ms(), started)
            await self._sleep_ms(left if 0 < left <= self._poll_ms else 0)


def from_config(meter_doc, platform, doc=None):
    """The driver for a validated `meter` section of type "atm90e32"; doc: the whole configuration (site.phases).

    Without doc (the setup pages' check of a candidate meter) all three phases are read.
    """
    flip = meter_doc["upside_down"]
    invert = [meter_doc["invert_l%d" % n] != flip for n in (1, 2, 3)]
    ugain = [meter_doc["ugain_l%d" % n] for n in (1, 2, 3)]
    igain = [meter_doc["igain_l%d" % n] for n in (1, 2, 3)]
    # The bus is a platform module of its own, platform/<name>_spi.py, loaded
    # only here: the Platform class every site loads carries nothing for it.
    module = __import__("chargeguard.platform.%s_spi" % platform.name, None, None, ("open_spi",))
    spi = module.open_spi(platform)
    meter = Atm90e32Meter(spi, doc["site"]["phases"] if doc else 3, meter_doc["line_hz"], meter_doc["pga"], ugain, igain,
                          invert, meter_doc["poll_ms"], platform.ticks_ms, platform.sleep_ms)
    meter.signed_phases = 3 if meter_doc["voltage_inputs"] == 3 else 1
    return meter
