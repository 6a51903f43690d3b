"""Platform for the MicroPython unix port and CPython (simulator, host tests).

Stand-ins for the ESP32 hardware, faithful where it matters to the firmware:
the P1 UART is a serial device or the simulator's pty, the network is the
host's, the watchdog is a thread that ends the process like a reset would.

Environment:
  CHARGEGUARD_P1_DEVICE     path of the P1 serial device or pty
  CHARGEGUARD_STORAGE       directory for config and state (default ./storage)
  CHARGEGUARD_NETWORK_DOWN  "1" makes network_up() and wifi_connect() fail
"""

import gc
import os
import sys
import time

import select
import termios

from micropython import const

from . import common

ENV_P1_DEVICE = "CHARGEGUARD_P1_DEVICE"
ENV_STORAGE = "CHARGEGUARD_STORAGE"
ENV_NETWORK_DOWN = "CHARGEGUARD_NETWORK_DOWN"
DEFAULT_STORAGE = "./storage"
LOOPBACK_ADDRESS = "127.0.0.1"

# readinto() gives up after POLL_MS without data, looking every POLL_STEP_MS.
POLL_MS = const(20)
POLL_STEP_MS = const(5)

# Exit status of reset() (and of a watchdog reset under CPython): non-zero, so
# a supervisor (the simulator, systemd) sees a reset and not a clean stop.
RESET_EXIT_STATUS = const(3)

# The watchdog thread looks this often (at most) at the last feed.
WATCHDOG_CHECK_MAX_MS = const(100)
WATCHDOG_CHECK_MIN_MS = const(5)

# c_cflag bits of Linux (include/uapi/asm-generic/termbits.h). The unix port's
# termios module exports only setraw/tcgetattr/tcsetattr and speeds.
_CSIZE = getattr(termios, "CSIZE", 0o60)
_CSTOPB = getattr(termios, "CSTOPB", 0o100)
_PARENB = getattr(termios, "PARENB", 0o400)
_PARODD = getattr(termios, "PARODD", 0o1000)
_CS_BITS = {
    5: getattr(termios, "CS5", 0),
    6: getattr(termios, "CS6", 0o20),
    7: getattr(termios, "CS7", 0o40),
    8: getattr(termios, "CS8", 0o60),
}
# CPython raises termios.error (not an OSError) for a non-tty; the unix port OSError.
_TERMIOS_ERRORS = (OSError, getattr(termios, "error", OSError))
# Indexes into the list tcgetattr() returns.
_CFLAG = const(2)
_ISPEED = const(4)
_OSPEED = const(5)


class Platform:
    """The unix stand-in for the device.

    `ticks_ms()`, `ticks_diff(a, b)`, `ticks_add(t, delta)` and
    `await sleep_ms(ms)` are the runtime's own (time.ticks_* and asyncio.sleep_ms
    on MicroPython; an emulation that wraps at 2**30 like the ESP32 under CPython).
    sleep_ms returns an awaitable, on MicroPython not a coroutine object: await
    it, do not hand it to create_task.
    `uart_device` overrides CHARGEGUARD_P1_DEVICE, which overrides
    board["uart_device"].
    """

    def __init__(self, board, storage_dir=None, uart_device=None):
        self.name = "unix"
        self.board = board
        self.ticks_ms = common.ticks_ms
        self.ticks_diff = common.ticks_diff
        self.ticks_add = common.ticks_add
        self.sleep_ms = common.sleep_ms
        self._storage_arg = storage_dir
        self._storage = None
        self._uart_device = uart_device
        self._wall_offset = 0
        self._watchdog = None
        self.led_on = False

    # --- clock -------------------------------------------------------------

    def wall_time(self):
        """Seconds since 1970-01-01 UTC (int)."""
        return int(time.time()) + self._wall_offset

    def set_wall_time(self, seconds):
        """Set the wall clock (kept as an offset: the host clock is not touched)."""
        self._wall_offset = int(seconds) - int(time.time())

    def wall_time_valid(self):
        """True when the wall clock can be trusted for schedules."""
        return self.wall_time() >= common.MIN_VALID_WALL_TIME

    # --- P1 UART -----------------------------------------------------------

    def uart_device(self):
        """The P1 device path this platform would open, or None."""
        return (
            self._uart_device
            or common.getenv(ENV_P1_DEVICE)
            or self.board.get("uart_device")
        )

    def open_uart(self, baud, data_bits, parity, stop_bits, invert_rx):
        """Open the P1 serial device; return an object with `async readinto(buf)` and `close()`.

        `parity`: None, 0 (even) or 1 (odd). `invert_rx` is accepted and ignored:
        USB P1 cables invert in hardware and a pty carries plain bytes. On a pty
        the line settings are cosmetic (Linux may refuse parity on a pty; that
        is ignored). Raises OSError when no device is configured or it cannot
        be opened, ValueError for settings no UART supports.
        """
        common.check_line(baud, data_bits, parity, stop_bits)
        path = self.uart_device()
        if not path:
            raise OSError(19, "no P1 device: set " + ENV_P1_DEVICE)  # ENODEV
        return UnixUart(path, baud, data_bits, parity, stop_bits)

    # --- watchdog ----------------------------------------------------------

    def watchdog_start(self, timeout_ms):
        """Start the software watchdog: not fed for `timeout_ms`, the process ends.

        Like the hardware one it cannot be stopped or changed; a second call
        only feeds it.
        """
        if self._watchdog is not None:
            self._watchdog.feed()
            return
        dog = _SoftWatchdog(int(timeout_ms))
        self._watchdog = dog
        dog.start()

    def watchdog_feed(self):
        """Feed the watchdog (no-op before watchdog_start)."""
        dog = self._watchdog
        if dog is not None:
            dog.feed()

    # --- storage -----------------------------------------------------------

    def storage_dir(self):
        """Directory for config and state, created if missing."""
        if self._storage is None:
            path = self._storage_arg or common.getenv(ENV_STORAGE) or DEFAULT_STORAGE
            common.makedirs(path)
            self._storage = path
        return self._storage

    # --- network -----------------------------------------------------------

    def network_up(self):
        """True when the (host's) network is usable."""
        return common.getenv(ENV_NETWORK_DOWN) != "1"

    async def wifi_connect(self, ssid, password, timeout_ms):
        """The host is already on its network: answers at once with network_up()."""
        return self.network_up()

    def wifi_disconnect(self):
        """No-op on the host."""

    def wifi_status(self):
        """'connected' or 'off'."""
        return "connected" if self.network_up() else "off"

    def ip_address(self):
        """The address the firmware's servers answer on, or None when down."""
        return LOOPBACK_ADDRESS if self.network_up() else None

    def ap_start(self, essid, password=None):
        """No access point on the host: the portal is served on loopback."""
        return LOOPBACK_ADDRESS

    def ap_stop(self):
        """No-op on the host."""

    # --- board I/O ---------------------------------------------------------

    def init_board(self):
        """No board to power up on the host."""

    def set_led(self, on):
        """Remember the LED state (`led_on`) for tests and the simulator."""
        self.led_on = bool(on)

    def button_pressed(self):
        """There is no button on the host."""
        return False

    # --- system ------------------------------------------------------------

    def reset(self):
        """End the process with RESET_EXIT_STATUS, as a reset would."""
        _flush_std()
        if common.IS_MICROPYTHON:
            # SystemExit passes through asyncio (it is not an Exception).
            sys.exit(RESET_EXIT_STATUS)
        os._exit(RESET_EXIT_STATUS)

    def reset_cause(self):
        """Why the device last started: always 'power_on' for a process."""
        return "power_on"

    def free_memory(self):
        """Free Python heap in bytes, or None under CPython."""
        mem_free = getattr(gc, "mem_free", None)
        return mem_free() if mem_free is not None else None


class UnixUart:
    """A serial device or pty read without blocking the event loop."""

    def __init__(self, path, baud, data_bits, parity, stop_bits):
        self.device = path
        self._file = _open_unbuffered(path)
        try:
            self.is_tty = _configure_line(self._file.fileno(), baud, data_bits, parity, stop_bits)
            poll = select.poll()
            poll.register(self._file, select.POLLIN)
        except BaseException:
            self._file.close()
            raise
        self._poll = poll
        # ipoll() reuses one tuple (no allocation per call); CPython has poll() only.
        self._poll_now = getattr(poll, "ipoll", None) or poll.poll
        self._one = bytearray(1)

    async def readinto(self, buf):
        """Copy available bytes into `buf`; return their count (>= 1), or 0 after POLL_MS without data."""
        waited = 0
        while True:
            count = self.read_now(buf)
            if count:
                # Let other tasks run even when data never stops coming.
                await common.sleep_ms(0)
                return count
            if waited >= POLL_MS:
                return 0
            await common.sleep_ms(POLL_STEP_MS)
            waited += POLL_STEP_MS

    def read_now(self, buf):
        """Copy the bytes already received into `buf` (at most len(buf)); return the count, 0 if none.

        Never waits and allocates nothing on MicroPython: for a reader loop that sleeps itself.
        """
        # One byte per POLLIN: a bigger read on a blocking tty waits for the
        # rest of the buffer (or fails with EIO on a pty), stalling the loop.
        if self._file is None:
            raise OSError(9, "closed")  # EBADF
        size = len(buf)
        one = self._one
        count = 0
        while count < size:
            ready = 0
            for entry in self._poll_now(0):
                ready = entry[1] & select.POLLIN
                break
            if not ready:
                break
            try:
                got = self._file.readinto(one)
            except OSError:
                # EIO: the pty's other side is gone; the meter driver sees silence.
                break
            if not got:
                break
            buf[count] = one[0]
            count += 1
        return count

    def close(self):
        """Release the device (idempotent)."""
        handle = self._file
        if handle is None:
            return
        self._file = None
        try:
            self._poll.unregister(handle)
        except (OSError, KeyError, ValueError):
            pass
        handle.close()


class _SoftWatchdog:
    # A thread that ends the process when the control loop stops feeding it.

    def __init__(self, timeout_ms):
        if timeout_ms <= 0:
            raise ValueError("timeout_ms")
        self.timeout_ms = timeout_ms
        # A one-slot list: the feeding thread only stores into it, so the
        # watchdog thread never sees a half-updated object (no GIL on the port).
        self._last = [common.ticks_ms()]
        self._pid = _own_pid()
        check = timeout_ms // 4
        if check > WATCHDOG_CHECK_MAX_MS:
            check = WATCHDOG_CHECK_MAX_MS
        if check < WATCHDOG_CHECK_MIN_MS:
            check = WATCHDOG_CHECK_MIN_MS
        self._check_ms = check

    def feed(self):
        self._last[0] = common.ticks_ms()

    def start(self):
        if common.IS_MICROPYTHON:
            import _thread

            _thread.start_new_thread(self._run, ())
        else:
            import threading

            threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def _run(self):
        while True:
            _thread_sleep_ms(self._check_ms)
            stalled = common.ticks_diff(common.ticks_ms(), self._last[0])
            if stalled > self.timeout_ms:
                self._fire(stalled)
                return

    def _fire(self, stalled):
        print("watchdog: control loop stalled for %d ms, resetting" % stalled, file=sys.stderr)
        _flush_std()
        if not common.IS_MICROPYTHON:
            os._exit(RESET_EXIT_STATUS)
        # The unix port can end the process from a thread only by a signal
        # (sys.exit there ends the thread); SIGKILL is the closest to a reset.
        if self._pid is not None:
            os.system("kill -9 %d" % self._pid)
        # Without /proc: the shell's parent is this process.
        os.system("kill -9 $PPID")


def _own_pid():
    getpid = getattr(os, "getpid", None)
    if getpid is not None:
        return getpid()
    # The unix port has no os.getpid(); Linux tells the pid in /proc/self/stat.
    try:
        with open("/proc/self/stat") as handle:
            return int(handle.read(32).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _thread_sleep_ms(ms):
    sleep_ms = getattr(time, "sleep_ms", None)
    if sleep_ms is not None:
        sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        flush = getattr(stream, "flush", None)
        if flush is not None:
            try:
                flush()
            except (OSError, ValueError):
                pass


def _open_unbuffered(path):
    if common.IS_MICROPYTHON:
        # The unix port's files are unbuffered; open() has no O_NOCTTY, so a
        # firmware run as a session leader would adopt the pty as its terminal.
        return open(path, "rb")
    flags = os.O_RDONLY | getattr(os, "O_NOCTTY", 0)
    # Unbuffered: a buffered reader would pull bytes poll() then no longer reports.
    return open(os.open(path, flags), "rb", buffering=0)


def _configure_line(fd, baud, data_bits, parity, stop_bits):
    # Raw mode and speed must work on a tty; returns False for a FIFO or file,
    # which carry bytes without line settings.
    try:
        _setraw(fd)
    except _TERMIOS_ERRORS:
        return False
    speed = getattr(termios, "B%d" % baud, None)
    if speed is None:
        raise ValueError("baud %d not supported by termios" % baud)
    attrs = termios.tcgetattr(fd)
    attrs[_ISPEED] = speed
    attrs[_OSPEED] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    cflag = attrs[_CFLAG] & ~(_CSIZE | _CSTOPB | _PARENB | _PARODD)
    cflag |= _CS_BITS[data_bits]
    if stop_bits == 2:
        cflag |= _CSTOPB
    if parity is not None:
        cflag |= _PARENB
        if parity == 1:
            cflag |= _PARODD
    if cflag != attrs[_CFLAG]:
        attrs[_CFLAG] = cflag
        try:
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except _TERMIOS_ERRORS:
            # Linux ptys may refuse CS7/PARENB (EINVAL); a pty carries bytes anyway.
            pass
    return True


def _setraw(fd):
    setraw = getattr(termios, "setraw", None)
    if setraw is not None:
        setraw(fd)
        return
    import tty  # CPython keeps setraw in tty

    tty.setraw(fd)
