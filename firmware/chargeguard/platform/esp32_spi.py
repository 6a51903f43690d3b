"""The ESP32's SPI bus to an ATM90E32: machine.SPI at 200 kHz in mode 3 and a chip-select pin.

A platform module of its own (platform/<name>_spi.py, `open_spi(platform)`),
loaded by meters/atm90e32.py only for that meter: the Platform class,
loaded on every site, carries nothing for it.
"""

import time

import machine

SPI_HZ = 200000  # the ATM90E32's limit (ESPHome DATA_RATE_200KHZ, CircuitSetup's SPISettings)


def open_spi(platform):
    """An Esp32Spi on board["atm90e32_spi"]: {"id": 1 | 2, "sck", "mosi", "miso", "cs"} GPIO numbers.

    Mode 3 (CPOL 1, CPHA 1), MSB first. ValueError for a board without them.
    """
    board = platform.board
    pins = board.get("atm90e32_spi")
    if not pins:
        raise ValueError("board %s has no ATM90E32 SPI pins (atm90e32_spi)" % board.get("name"))
    Pin = machine.Pin
    spi = machine.SPI(pins.get("id", 2), baudrate=SPI_HZ, polarity=1, phase=1, bits=8, firstbit=machine.SPI.MSB,
                      sck=Pin(pins["sck"]), mosi=Pin(pins["mosi"]), miso=Pin(pins["miso"]))
    cs = Pin(pins["cs"], Pin.OUT, value=1)
    return Esp32Spi(spi, cs)


class Esp32Spi:
    """transfer(tx, rx): CS low, the address word, 4 us, the data word, CS high (about 0.2 ms at 200 kHz)."""

    def __init__(self, spi, cs):
        self.spi = spi
        self.cs = cs
        self._tx = None
        self._rx = None
        self._views = None

    def transfer(self, tx, rx):
        """One 32-bit access (tx, rx: bytearrays of 4, kept by the caller; their halves are viewed once)."""
        if tx is not self._tx or rx is not self._rx:
            self._tx = tx
            self._rx = rx
            tv = memoryview(tx)
            rv = memoryview(rx)
            self._views = (tv[:2], rv[:2], tv[2:], rv[2:])
        views = self._views
        cs = self.cs
        cs(0)
        try:
            self.spi.write_readinto(views[0], views[1])
            # The data becomes valid 4 us after the address word (CircuitSetup's and ESPHome's drivers wait so).
            time.sleep_us(4)
            self.spi.write_readinto(views[2], views[3])
        finally:
            cs(1)
