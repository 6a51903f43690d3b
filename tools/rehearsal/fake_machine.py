"""A fake of MicroPython's `machine` module (ESP32 port) for the device rehearsal.

Follows the MicroPython documentation (docs.micropython.org/en/latest/library/):
- machine.UART.rst: UART(id, baudrate=9600, bits=8, parity=None, stop=1, *,
  tx, rx, txbuf, rxbuf, timeout, timeout_char, invert, flow); `invert` takes
  UART.INV_TX | UART.INV_RX; any() "returns the number of bytes that can be
  read without blocking"; readinto(buf[, nbytes]) "returns number of bytes
  read and stored into buf or None on timeout"; read([nbytes]); deinit().
- machine.Pin.rst: Pin(id, mode=-1, pull=-1, *, value=None), Pin.IN/OUT/
  OPEN_DRAIN, Pin.PULL_UP/PULL_DOWN, value([x]), on(), off(); an input
  reads the control file's "pinN" level, else its pull.
- machine.WDT.rst: WDT(id=0, timeout=5000) creates and starts it; "once it
  is running the timeout cannot be changed and the WDT cannot be stopped";
  feed(); "on the esp32 the minimum timeout is 1 second". Not fed within the
  timeout, it resets the device: here the process is killed (SIGKILL, like a
  reset nothing can intercept) after a line "FAKE-WDT: ..." on stderr.
- machine.RTC.rst: RTC().datetime([(year, month, day, weekday, hours,
  minutes, seconds, subseconds)]).
- machine.rst: unique_id() (the esp32 port: the base MAC, 6 bytes), reset() ("resets the device in a manner similar to pushing
  the external RESET button"), reset_cause() with PWRON_RESET, HARD_RESET,
  WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET (esp32 port values 1..5).

The P1 line: the UART reads the pty in $REHEARSAL_P1, where the harness
writes telegrams as the meter's bytes. The P1 output is open collector and
logically inverted (DSMR P1 companion standard): only a UART built with
invert=UART.INV_RX sees the bytes; without it every byte arrives inverted
(garbage, as the framing errors of a real non-inverted UART would be).
The receive buffer holds `rxbuf` bytes (default 256); more is lost, as in
the ESP-IDF ring buffer.
"""

import os
import select
import sys
import time

import fake_control

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_RESET_EXIT_STATUS = 3  # machine.reset(): the harness reboots the device


def reset_cause():
    """The cause of the last reset, as the harness tells it ($REHEARSAL_RESET_CAUSE, default PWRON_RESET)."""
    return int(os.getenv("REHEARSAL_RESET_CAUSE") or PWRON_RESET)


def reset():
    """Reset the device: the process ends with status 3 and the harness boots it again."""
    fake_control.note("FAKE-RESET: machine.reset()")
    sys.exit(_RESET_EXIT_STATUS)


def unique_id():
    """The chip's base MAC (the esp32 port returns the 6 bytes of esp_efuse_mac_get_default); the fake network's station MAC."""
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq(hz=None):
    return 160000000 if hz is None else None


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._level = 0 if value is None else int(bool(value))

    def value(self, x=None):
        if x is None:
            if self.mode == Pin.IN:
                # An input reads the harness's level for it ("pin0": 0 = a
                # button to ground held), else what its pull gives.
                return fake_control.get("pin%d" % self.id, 1 if self.pull == Pin.PULL_UP else 0)
            return self._level
        self._level = int(bool(x))

    def on(self):
        self._level = 1

    def off(self):
        self._level = 0


class UART:
    INV_TX = 1
    INV_RX = 4
    _POLLIN = 1

    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, **kwargs):
        self.id = id
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop
        self.invert = kwargs.get("invert", 0)
        self.rxbuf = kwargs.get("rxbuf", 256)
        self._ring = bytearray()
        self._one = bytearray(1)
        path = os.getenv("REHEARSAL_P1")
        if not path:
            raise OSError(19)  # ENODEV: no line wired
        self._file = open(path, "rb")
        import termios

        termios.setraw(self._file.fileno())
        self._poll = select.poll()
        self._poll.register(self._file, self._POLLIN)
        fake_control.note(
            "FAKE-UART: UART(%d) %d baud %d%s%d invert=%d rxbuf=%d"
            % (id, baudrate, bits, "N" if parity is None else "EO"[parity], stop, self.invert, self.rxbuf)
        )

    def _drain(self):
        if self._file is None:
            raise OSError(9)
        while True:
            ready = self._poll.poll(0)
            if not ready:
                return
            got = self._file.readinto(self._one)
            if not got:
                return
            byte = self._one[0]
            if not self.invert & self.INV_RX:
                byte ^= 0xFF  # the line's levels, read without inversion
            if len(self._ring) < self.rxbuf:
                self._ring.append(byte)

    def any(self):
        fake_control.hang_if_frozen()
        self._drain()
        return len(self._ring)

    def readinto(self, buf, nbytes=None):
        self._drain()
        count = min(len(buf) if nbytes is None else nbytes, len(buf), len(self._ring))
        if not count:
            return None  # the timeout passed with nothing there
        buf[:count] = self._ring[:count]
        self._ring = self._ring[count:]
        return count

    def read(self, nbytes=None):
        self._drain()
        count = len(self._ring) if nbytes is None else min(nbytes, len(self._ring))
        if not count:
            return None
        out = bytes(self._ring[:count])
        self._ring = self._ring[count:]
        return out

    def deinit(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class WDT:
    def __init__(self, id=0, timeout=5000):
        if timeout < 1000:
            raise ValueError("timeout")  # the esp32 minimum is 1 s
        self.timeout = timeout
        self._fed = [time.ticks_ms()]
        import _thread

        _thread.start_new_thread(_watch, (self._fed, timeout))
        fake_control.note("FAKE-WDT: started, timeout %d ms" % timeout)

    def feed(self):
        self._fed[0] = time.ticks_ms()


def _watch(fed, timeout):
    while True:
        time.sleep(0.05)
        stalled = time.ticks_diff(time.ticks_ms(), fed[0])
        if stalled > timeout:
            fake_control.note("FAKE-WDT: not fed for %d ms (timeout %d ms): reset" % (stalled, timeout))
            # A thread cannot end the unix port's process; the shell's parent is it.
            os.system("kill -9 $PPID")
            return


class RTC:
    _offset = [0]

    def datetime(self, value=None):
        if value is None:
            t = time.gmtime(time.time() + RTC._offset[0])
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        year, month, day, _weekday, hours, minutes, seconds = value[:7]
        target = time.mktime((year, month, day, hours, minutes, seconds, 0, 0))
        RTC._offset[0] = target - int(time.time())
        fake_control.note("FAKE-RTC: set %04d-%02d-%02d %02d:%02d:%02d" % (year, month, day, hours, minutes, seconds))
