"""meters/atm90e32.py: the ATM90E32 metering IC as the grid meter, through a fake SPI chip; platform/esp32_spi.py; config rules.

Runs on CPython and on the MicroPython unix port.
"""

import asyncio

from chargeguard import config
from chargeguard.meters import atm90e32
from support import Clock, FakeMachine, PartPlatform


class FakeChip:
    """A register image behind transfer(tx, rx) as the chip answers it (reads, writes, LastSPIData)."""

    def __init__(self):
        self.regs = {0x00: 1, 0xF8: 5000}
        self.writes = []
        self.reads = []
        self.last = 0
        self.mode = "ok"
        self.fail = False
        self.log_reads = False

    def transfer(self, tx, rx):
        if self.fail:
            raise OSError(5, "bus error")
        rx[0] = rx[1] = 0
        if self.mode != "ok":
            rx[2] = rx[3] = 0xFF if self.mode == "ones" else 0
            return
        address = tx[0] << 8 | tx[1]
        word = tx[2] << 8 | tx[3]
        if address & 0x8000:
            register = address & 0x3FF
            if self.log_reads:
                self.reads.append(register)
            if register == 0x78:
                value = self.last
            else:
                value = self.regs.get(register, 0)
                self.last = value
            rx[2] = value >> 8
            rx[3] = value & 0xFF
        else:
            self.writes.append((address, word))
            self.regs[address] = word
            if address != 0x70:
                self.last = word

    def image(self, phase, volts_centi, amps_milli, pmean, pmean_lsb):
        self.regs[0xD9 + phase] = volts_centi
        self.regs[0xDD + phase] = amps_milli
        self.regs[0xB1 + phase] = pmean & 0xFFFF
        self.regs[0xC1 + phase] = pmean_lsb


def doc(phases=3, **meter):
    meter = dict({"type": "atm90e32"}, **meter)
    return config.complete({"site": {"phases": phases}, "meter": meter})


def make(phases=3, **meter):
    clock = Clock()
    chip = FakeChip()
    d = doc(phases, **meter)
    assert config.validate(d) == [], config.validate(d)
    return atm90e32.from_config(d["meter"], PartPlatform(clock, "spi", chip), d), chip, clock


def test_start_up_writes_the_sequence_in_order():
    meter, chip, clock = make(ugain_l2=40000, igain_l3=39473)
    chip.log_reads = True
    assert asyncio.run(meter.start()) is True
    assert chip.writes == [
        (0x70, 0x789A),  # SoftReset
        (0x7F, 0x55AA),  # CfgRegAccEn: unlock
        (0x00, 0x0001),  # MeterEn
        (0x33, 0x0087),  # MMode0: 50 Hz, 3P4W, CF2 varh, phases A-C
        (0x34, 0x0015),  # MMode1: PGA 2x on I1-I3
        (0x61, 41820), (0x62, 25498),  # UgainA, IgainA
        (0x65, 40000), (0x66, 25498),
        (0x69, 41820), (0x6A, 39473),
        (0x7F, 0x0000),  # relock
    ]
    assert chip.reads == [0x78]  # LastSPIData echoed MeterEn
    assert clock.sleeps == [atm90e32.RESET_WAIT_MS] and meter.configured and meter.last_error is None


def test_sixty_hz_and_pga_words():
    assert atm90e32.mmode0(60) == 0x1087 and atm90e32.mmode0(50) == 0x0087
    assert [atm90e32.mmode1(g) for g in (1, 2, 4)] == [0x00, 0x15, 0x2A]
    meter, chip, clock = make(line_hz=60, pga=4)
    asyncio.run(meter.start())
    assert (0x33, 0x1087) in chip.writes and (0x34, 0x002A) in chip.writes


def test_a_chip_that_does_not_echo_meter_en_is_said():
    meter, chip, clock = make()
    chip.mode = "ones"
    assert asyncio.run(meter.start()) is False
    assert not meter.configured
    assert meter.last_error.startswith("the ATM90E32 answers FFFFH to every read: not powered")


def test_a_chip_whose_echo_is_wrong_is_said():
    meter, chip, clock = make()
    real = chip.transfer

    def noisy(tx, rx):
        real(tx, rx)
        if tx[0] == 0x80 and tx[1] == 0x78:
            rx[2] = 0x12

    chip.transfer = noisy
    assert asyncio.run(meter.start()) is False
    assert meter.last_error.startswith("the ATM90E32 does not echo: LastSPIData reads 1201H after MeterEn <- 0001H")


def test_power_words_follow_the_datasheet_scale():
    assert atm90e32.power_w(2416, 0x8000) == 2417  # 2416.5 W
    assert atm90e32.power_w(2416, 0x7F00) == 2416
    assert atm90e32.power_w(0xFA24, 0x4000) == -1500  # -1500 + 0.25 W
    assert atm90e32.power_w(0xFFFF, 0x0000) == -1
    assert atm90e32.power_w(0x7FFF, 0xFF00) == 32768
    assert atm90e32.power_w(0x8000, 0) == -32768


def test_decode_of_every_register_from_a_known_image():
    meter, chip, clock = make()
    chip.log_reads = True
    chip.image(0, 23012, 10500, 2416, 0x8000)  # 230.12 V, 10.5 A, 2416.5 W import
    chip.image(1, 22950, 6520, -1500, 0x4000)  # 6.52 A, -1499.75 W: export
    chip.image(2, 23100, 0, 0, 0)
    chip.regs[0xF8] = 4998
    clock.now = 1234
    assert meter.measure(clock.now) is True
    assert chip.reads == [0xD9, 0xDD, 0xB1, 0xC1, 0xDA, 0xDE, 0xB2, 0xC2, 0xDB, 0xDF, 0xB3, 0xC3, 0xF8, 0x78, 0x00]
    r = meter.reading
    assert r.voltage_mv == [230120, 229500, 231000]
    assert r.power_w == [2417, -1500, 0]
    assert r.current_ma == [10500, -6520, 0]  # the sign of the phase's power
    assert r.phase_count == 3 and r.tick_ms == 1234 and r.import_w is None
    assert r.net_power_w() == 917
    assert meter.last_error is None and meter.n_readings == 1


def test_a_power_above_volts_times_amps_is_held_to_it():
    # The sources disagree on PmeanX's scale by 21x: read at the datasheet's
    # scale and 21x too high (a 60 W bulb as 1241 W), a power is held to U x I
    # with its sign, and counted; a power inside U x I (+ 1/16 + 10 W) is kept.
    meter, chip, clock = make()
    chip.image(0, 23000, 261, 1241, 0)  # 230 V x 0.261 A = 60 W, read as 1241 W
    chip.image(1, 23000, 4000, -19320, 0)  # 920 W export read 21x
    chip.image(2, 23000, 4000, 975, 0)  # 920 VA, a power 6 % above it: kept (noise)
    assert meter.measure(0) is True
    assert meter.reading.power_w == [60, -920, 975]
    assert meter.reading.current_ma == [261, -4000, 4000]
    assert meter.n_held == 2
    chip.image(0, 23000, 261, 55, 0)
    chip.image(1, 23000, 4000, -900, 0)
    assert meter.measure(1000) is True
    assert meter.reading.power_w == [55, -900, 975] and meter.n_held == 2


def test_one_shared_voltage_input_reads_l2_and_l3_as_import():
    # One AC transformer for the three phases: L2's and L3's powers are their
    # currents against L1's voltage, 120 degrees away: their sign means
    # nothing. They are read as import (U x I), never as export; L1 keeps its sign.
    meter, chip, clock = make(voltage_inputs=1)
    chip.image(0, 23000, 4000, -920, 0)  # L1 exports: kept
    chip.image(1, 23000, 10000, -1150, 0)  # -0.5 x U x I: a load 120 degrees off, not export
    chip.image(2, 23000, 6000, 690, 0)
    assert meter.measure(0) is True
    assert meter.reading.power_w == [-920, 2300, 1380]
    assert meter.reading.current_ma == [-4000, 10000, 6000]
    meter, chip, clock = make()  # three inputs (the default): every phase signed
    chip.image(1, 23000, 10000, -2300, 0)
    assert meter.measure(0) is True and meter.reading.current_ma[1] == -10000
    assert set(dict(config.validate(doc(voltage_inputs=2)))) == {"meter.voltage_inputs"}


def test_one_phase_site_reads_phase_a_only():
    meter, chip, clock = make(phases=1)
    chip.log_reads = True
    chip.image(0, 23000, 4000, -920, 0)
    assert meter.measure(5) is True
    assert chip.reads == [0xD9, 0xDD, 0xB1, 0xC1, 0xF8, 0x78, 0x00]
    assert meter.reading.phase_count == 1 and meter.reading.current_ma[0] == -4000


def test_invert_a_phase_and_upside_down():
    meter, chip, clock = make(invert_l2=True)
    for phase in range(3):
        chip.image(phase, 23000, 5000, 1150, 0)
    meter.measure(0)
    assert meter.reading.power_w == [1150, -1150, 1150] and meter.reading.current_ma == [5000, -5000, 5000]
    meter, chip, clock = make(invert_l2=True, upside_down=True)
    for phase in range(3):
        chip.image(phase, 23000, 5000, 1150, 0)
    meter.measure(0)
    assert meter.reading.power_w == [-1150, 1150, -1150]


def _garbage(chip_change, expected):
    meter, chip, clock = make()
    chip.image(0, 23000, 5000, 1150, 0)
    assert meter.measure(10) is True
    chip_change(chip)
    assert meter.measure(2000) is False, expected
    assert meter.reading.tick_ms == 10  # not stamped again: the reading ages into the failsafe
    assert expected in meter.last_error, meter.last_error
    return meter


def test_garbage_answers_are_meter_errors_in_words():
    def ones(chip):
        chip.mode = "ones"

    def zeros(chip):
        chip.mode = "zeros"

    def no_mains(chip):
        chip.regs[0xF8] = 0

    def sixty(chip):
        chip.regs[0xF8] = 6000

    assert not _garbage(ones, "answers FFFFH to every read: not powered, CS/MISO not connected").configured
    assert not _garbage(zeros, "answers 0000H to every read").configured  # reset? the next poll configures it
    _garbage(no_mains, "a line frequency of 0.00 Hz, not about 50 Hz: no mains on its voltage input")
    _garbage(sixty, "60.00 Hz")


def test_last_spi_data_that_does_not_echo_is_an_error():
    meter, chip, clock = make()
    chip.image(0, 23000, 5000, 1150, 0)
    real = chip.transfer

    def noisy(tx, rx):
        real(tx, rx)
        if tx[0] == 0x80 and tx[1] == 0x78:
            rx[3] ^= 0x04  # a bit flipped on MISO

    chip.transfer = noisy
    assert meter.measure(0) is False
    assert meter.last_error == ("the ATM90E32's LastSPIData (138CH) is not the word just read (1388H): noise on the"
                                " SPI lines, a clock over 200 kHz or not SPI mode 3")


def test_a_reset_chip_is_configured_again():
    meter, chip, clock = make()

    async def main():
        task = asyncio.create_task(meter.run(lambda: None))
        while meter.n_readings < 1:
            await asyncio.sleep(0)
        chip.regs[0x00] = 0  # the chip reset: metering off
        while meter.configured:
            await asyncio.sleep(0)
        assert "stopped metering (MeterEn reads 0000H" in meter.last_error
        resets = chip.writes.count((0x70, 0x789A))
        while meter.n_readings < 2:
            await asyncio.sleep(0)
        task.cancel()
        return resets

    resets = asyncio.run(main())
    assert resets == 1 and chip.writes.count((0x70, 0x789A)) == 2 and meter.last_error is None


def test_the_run_loop_polls_and_a_silent_chip_ages_the_reading():
    meter, chip, clock = make(poll_ms=500)
    chip.image(0, 23000, 5000, 1150, 0)
    calls = []

    async def main():
        task = asyncio.create_task(meter.run(lambda: calls.append(clock.now)))
        while len(calls) < 3:
            await asyncio.sleep(0)
        chip.mode = "ones"  # the chip lost power: MISO floats high
        stamp = meter.reading.tick_ms
        for _ in range(60):
            await asyncio.sleep(0)
        silent_error = meter.last_error
        chip.mode = "ok"
        chip.fail = True
        for _ in range(60):
            await asyncio.sleep(0)
        task.cancel()
        return stamp, silent_error

    stamp, silent_error = asyncio.run(main())
    assert calls == [500, 1000, 1500]  # the first poll configured the chip, then a reading every poll_ms
    assert meter.reading.tick_ms == stamp and len(calls) == 3  # no new reading: the guard's failsafe follows
    assert "answers FFFFH to every read" in silent_error
    assert meter.last_error == "the SPI bus to the ATM90E32 fails: bus error" and not meter.configured
    assert 0 in clock.sleeps  # the loop had a turn between the phases of a poll


def test_a_poll_allocates_nothing():
    from support import IS_MICROPYTHON, heap_growth, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    meter, chip, clock = make()
    chip.image(0, 23012, 10500, 2416, 0x8000)
    chip.image(1, 22950, 6520, -1500, 0x4000)
    meter.measure(0)

    def polls():
        for n in range(5):
            meter.measure(n)

    used = heap_growth(polls)
    assert used == 0, used


def test_config_rules_of_the_atm90e32():
    assert config.validate(doc()) == []
    d = doc()
    assert d["meter"]["line_hz"] == 50 and d["meter"]["pga"] == 2 and d["meter"]["poll_ms"] == 1000
    errors = dict(config.validate(doc(line_hz=55, pga=3, ugain_l1=0, igain_l3=70000, invert_l2="yes", poll_ms=50)))
    assert set(errors) == {"meter.line_hz", "meter.pga", "meter.ugain_l1", "meter.igain_l3", "meter.invert_l2",
                           "meter.poll_ms"}, errors
    assert "meter.turns" in dict(config.validate(doc(turns=2000)))  # a CT clamp field, not this meter's


def test_the_esp32_bus_is_mode_3_at_200_khz_with_cs_around_each_access():
    events = []

    class FakePin:
        OUT = 1

        def __init__(self, pin_id, mode=None, value=None):
            self.id = pin_id
            if value is not None:
                events.append(("cs", pin_id, value))

        def __call__(self, value):
            events.append(("cs", self.id, value))

    class FakeSpi:
        MSB = 0

        def __init__(self, bus, **kw):
            self.bus = bus
            self.kw = kw

        def write_readinto(self, out, into):
            events.append(("spi", bytes(out)))
            for i in range(len(into)):
                into[i] = 0xA0 + i

    class FakeTime:
        def sleep_us(self, us):
            events.append(("wait", us))

    with FakeMachine("esp32_spi", Pin=FakePin, SPI=FakeSpi) as esp32_spi:
        esp32_spi.time = FakeTime()

        class Board:
            pass

        platform = Board()
        platform.board = {"name": "x", "atm90e32_spi": {"id": 2, "sck": 18, "mosi": 23, "miso": 19, "cs": 5}}
        bus = esp32_spi.open_spi(platform)
        kw = bus.spi.kw
        assert bus.spi.bus == 2 and kw["baudrate"] == 200000 and kw["polarity"] == 1 and kw["phase"] == 1
        assert [kw[k].id for k in ("sck", "mosi", "miso")] == [18, 23, 19]
        tx = bytearray(b"\x80\xd9\x00\x00")
        rx = bytearray(4)
        bus.transfer(tx, rx)
        assert events[1:] == [("cs", 5, 0), ("spi", b"\x80\xd9"), ("wait", 4), ("spi", b"\x00\x00"), ("cs", 5, 1)]
        assert rx == bytearray(b"\xa0\xa1\xa0\xa1")
        platform.board = {"name": "bare"}
        try:
            esp32_spi.open_spi(platform)
        except ValueError as error:
            assert "no ATM90E32 SPI pins (atm90e32_spi)" in str(error)
        else:
            raise AssertionError("a board without the pins opened")


def test_the_unix_fake_needs_an_emulator_address():
    from chargeguard.platform import unix, unix_spi

    platform = unix.Platform({})
    import os

    if os.getenv("CHARGEGUARD_ATM90E32"):
        return
    try:
        unix_spi.open_spi(platform)
    except OSError as error:
        assert "set CHARGEGUARD_ATM90E32" in str(error.args[-1])
    else:
        raise AssertionError("opened without an address")


def test_without_the_whole_document_all_three_phases_are_read():
    clock = Clock()
    chip = FakeChip()
    d = doc(phases=1)
    meter = atm90e32.from_config(d["meter"], PartPlatform(clock, "spi", chip))  # the setup pages' candidate check
    for phase in range(3):
        chip.image(phase, 23000, 1000 * (phase + 1), 230 * (phase + 1), 0)
    assert meter.measure(0) is True and meter.reading.phase_count == 3
    assert meter.reading.current_ma == [1000, 2000, 3000]


def test_the_setup_pages_never_check_a_second_atm90e32_beside_the_running_one():
    from chargeguard.net import webadmin

    running = doc()["meter"]
    other = dict(running, igain_l1=30000)
    assert webadmin._same_port(other, running)  # its start-up would reset the running chip with other gains
    assert not webadmin._same_port(other, {"type": "p1"})
