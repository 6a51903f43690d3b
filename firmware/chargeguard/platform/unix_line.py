"""Opening the unix port's serial devices (the P1 port, the RS485 line), loaded for the open only.

unix.Platform.open_uart() and open_rs485() load this module, open the device
and drop it again (unix._open): a meter or a Modbus line is opened once per
boot, so the code that finds the path, sets the line and words the errors
is not kept on the heap of the running controller (about 1.4 KB of a 32-bit
port's heap as .mpy; unix.py keeps only UnixUart, what reads and writes).
esp32_line.py is the same for the device.

open_line(which, variable, path, baud, data_bits, parity, stop_bits, writable)
    -> unix.UnixUart. `which` "P1" or "RS485" names the device in errors,
    `variable` the environment variable that sets it;
    `path` the device's path or None (not configured). Raises OSError naming
    the path and why (errno kept), ValueError for settings no UART supports.
"""

import os

import select
import termios

from micropython import const

from . import common
from .unix import UnixUart

# Linux values. The unix port's termios module exports only
# setraw/tcgetattr/tcsetattr and speeds, so the c_cflag bits come from
# include/uapi/asm-generic/termbits.h (CSn is (n - 5) << 4).
_POLLIN = const(1)
_CSIZE = const(0o60)
_CSTOPB = const(0o100)
_PARENB = const(0o400)
_PARODD = const(0o1000)
# The unix port's termios has no B1200..B4800, B19200 or B38400 (only 9600
# and 57600 up), yet a HAN port runs at 2400 baud and Modbus meters at any of
# them: Linux's speed codes for those (termbits.h: B1200 0o11 .. B38400 0o17).
_LINUX_SPEEDS = {1200: 9, 2400: 11, 4800: 12, 19200: 14, 38400: 15}
# Indexes into the list tcgetattr() returns.
_CFLAG = const(2)
_ISPEED = const(4)
_OSPEED = const(5)


def open_line(which, variable, path, baud, data_bits, parity, stop_bits, writable):
    """The UnixUart on `path` (see the module doc); `variable` is the environment variable to name when unset."""
    common.check_line(baud, data_bits, parity, stop_bits)
    if not path:
        raise OSError(19, "no %s device: set %s" % (which, variable))  # ENODEV
    try:
        return _open(path, baud, data_bits, parity, stop_bits, writable)
    except OSError as error:
        # The runtime's own error does not say which file (MicroPython:
        # "[Errno 2] ENOENT"); the installer needs the path to fix it.
        code = error.args[0] if error.args else 5  # EIO
        raise OSError(code, "%s device %s cannot be opened: %s" % (which, path, _reason(error)))


def _open(path, baud, data_bits, parity, stop_bits, writable):
    if common.IS_MICROPYTHON:
        # The port's files are unbuffered; open() has no O_NOCTTY, so a
        # firmware run as a session leader would adopt the pty as its terminal.
        handle = open(path, "r+b" if writable else "rb")
    else:
        # Unbuffered: a buffered reader would pull bytes poll() then no longer reports.
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOCTTY
        handle = open(os.open(path, flags), "r+b" if writable else "rb", buffering=0)
    try:
        is_tty = _configure_line(handle.fileno(), baud, data_bits, parity, stop_bits)
        poll = select.poll()
        poll.register(handle, _POLLIN)
    except BaseException:
        handle.close()
        raise
    return UnixUart(handle, is_tty, poll)


def _reason(error):
    # Why a device did not open, in words: CPython's strerror, else (MicroPython
    # gives only the number) the errno name; a serial device that exists but
    # is refused is nearly always the dialout group.
    args = error.args
    code = args[0] if args else None
    if code == 13:  # EACCES
        return "permission denied (a serial device needs the dialout group)"
    if len(args) > 1 and isinstance(args[1], str):
        return args[1]
    if isinstance(code, int):
        import errno

        return errno.errorcode.get(code, "errno %d" % code)
    return repr(error)


def _configure_line(fd, baud, data_bits, parity, stop_bits):
    # Raw mode and speed must work on a tty; returns False for a FIFO or file,
    # which carry bytes without line settings.
    try:
        if common.IS_MICROPYTHON:
            termios.setraw(fd)
        else:
            import tty  # CPython keeps setraw in tty

            tty.setraw(fd)
    except Exception:
        # Not a tty: OSError on the port, termios.error (no OSError) on CPython.
        return False
    speed = getattr(termios, "B%d" % baud, None) or _LINUX_SPEEDS.get(baud)
    if speed is None:
        raise ValueError("baud %d not supported by termios" % baud)
    attrs = termios.tcgetattr(fd)
    attrs[_ISPEED] = speed
    attrs[_OSPEED] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    cflag = (attrs[_CFLAG] & ~(_CSIZE | _CSTOPB | _PARENB | _PARODD)) | ((data_bits - 5) << 4)
    if stop_bits == 2:
        cflag |= _CSTOPB
    if parity is not None:
        cflag |= (_PARENB | _PARODD) if parity == 1 else _PARENB
    if cflag != attrs[_CFLAG]:
        attrs[_CFLAG] = cflag
        try:
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except Exception:
            # Linux ptys may refuse CS7/PARENB (EINVAL; termios.error on CPython):
            # a pty carries bytes anyway.
            pass
    return True
