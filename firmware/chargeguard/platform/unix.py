"""Platform for the MicroPython unix port and CPython (simulator, host tests).

Stand-ins for the ESP32 hardware, faithful where it matters to the firmware:
the P1 UART is a serial device or the simulator's pty, the network is the
host's, the watchdog is a thread that ends the process like a reset would.
Linux only (termios flags, /bin/sh, pty behaviour).

Environment:
  CHARGEGUARD_P1_DEVICE     path of the P1 serial device or pty
  CHARGEGUARD_RS485_DEVICE  path of the RS485 serial device (a USB-RS485
                            adapter, which switches direction itself) or pty
  CHARGEGUARD_STORAGE       directory for config and state (default ./storage)
  CHARGEGUARD_NETWORK_DOWN  "1": network_up() is False, wifi_status() "no_ap"
  CHARGEGUARD_DNS_SERVER    the DNS server dns_server() reports (default none)
  CHARGEGUARD_WEB_PORT      the web interface's port (default 8080, on 127.0.0.1)
  CHARGEGUARD_DNS_PORT      the setup portal's DNS server port (default 5353, on 127.0.0.1)
  CHARGEGUARD_DEVICE_ID     the 4 hex digits naming the setup access point (default 0000)
  (the setup access point's calls are in unix_ap.py, loaded only with the portal;
  opening the serial devices is unix_line.py's, loaded for each open)
  CHARGEGUARD_OCPP_PORT     the OCPP central system's port (default: config ocpp.port, on 127.0.0.1)
  CHARGEGUARD_KEBA_PORT     the local UDP port of the Keba link (default 7090; a simulator's emulator answers there)
  CHARGEGUARD_WIFI_NETWORKS the networks wifi_scan() finds and wifi_begin() can
                            join, for the setup wizard's tests: JSON
                            [["ssid", "password", rssi], ...]; a join with
                            another password fails "wrong_password", of
                            another SSID "no_ap" (unset: the host's network)

Heap: this module runs under a small heap in the simulator, so it holds only
what the firmware calls, constants are `_NAME = const()` (no global), and the
CPython-only branches are inline code, not extra functions.
"""

import gc
import os
import sys
import time

from micropython import const

from . import common

# Exit status of reset() and of a watchdog reset under CPython: non-zero, so a
# supervisor (the simulator, systemd) sees a reset and not a clean stop.
_RESET_EXIT_STATUS = const(3)

_POLLIN = const(1)  # select.POLLIN (Linux)


class Platform:
    """The unix stand-in for the device.

    `ticks_ms()`, `ticks_diff(a, b)`, `ticks_add(t, delta)` and
    `await sleep_ms(ms)` are the runtime's own (time.ticks_* and asyncio.sleep_ms
    on MicroPython; an emulation that wraps at 2**30 like the ESP32 under CPython).
    sleep_ms returns an awaitable, on MicroPython not a coroutine object: await
    it, do not hand it to create_task.
    The P1 device is `uart_device`, else CHARGEGUARD_P1_DEVICE, else
    board["uart_device"].
    """

    name = "unix"

    def __init__(self, board, storage_dir=None, uart_device=None):
        self.board = board
        common.bind_clock(self)
        self._storage_arg = storage_dir
        self._storage = None
        self._uart_device = uart_device
        self._wall_offset = 0
        self._join = None  # the outcome of the last wifi_begin() (CHARGEGUARD_WIFI_NETWORKS)
        # The watchdog's one-slot list of the last feed (ticks), None before start.
        self._fed = None

    # --- clock -------------------------------------------------------------

    def wall_time(self):
        """Seconds since 1970-01-01 UTC (int)."""
        return int(time.time()) + self._wall_offset

    def set_wall_time(self, seconds):
        """Set the wall clock (kept as an offset: the host clock is not touched)."""
        self._wall_offset = int(seconds) - int(time.time())

    # --- P1 UART -----------------------------------------------------------

    def open_uart(self, baud, data_bits, parity, stop_bits, invert_rx):
        """Open the P1 serial device; return a UnixUart (`read_now(buf)`, `async readinto(buf)`, `close()`).

        `parity`: None, 0 (even) or 1 (odd). `invert_rx` is accepted and ignored:
        USB P1 cables invert in hardware and a pty carries plain bytes. On a pty
        the line settings are cosmetic (Linux may refuse parity on a pty; that
        is ignored). Raises OSError when no device is configured or it cannot
        be opened (the message names the path and why), ValueError for
        settings no UART supports.
        """
        path = self._uart_device or os.getenv("CHARGEGUARD_P1_DEVICE") or self.board.get("uart_device")
        return _open("P1", "CHARGEGUARD_P1_DEVICE", path, baud, data_bits, parity, stop_bits, False)

    def open_rs485(self, baud, data_bits, parity, stop_bits):
        """Open the RS485 (Modbus RTU) serial device; a UnixUart that can also `write(buf)`.

        The path: CHARGEGUARD_RS485_DEVICE, else board["rs485_device"]. A USB
        RS485 adapter drives its transceiver itself, and a pty has no line:
        no driver-enable pin here. Raises OSError naming the path, ValueError
        for settings no UART supports.
        """
        path = os.getenv("CHARGEGUARD_RS485_DEVICE") or self.board.get("rs485_device")
        return _open("RS485", "CHARGEGUARD_RS485_DEVICE", path, baud, data_bits, parity, stop_bits, True)

    # --- watchdog ----------------------------------------------------------

    def watchdog_start(self, timeout_ms):
        """Start the software watchdog: not fed for `timeout_ms`, the process ends.

        Like the hardware one it cannot be stopped or changed; a second call
        only feeds it. Ends the process as reset() does, after a line
        "watchdog: control loop stalled for N ms, resetting" on stderr (on the
        unix port by SIGKILL: a thread cannot exit the process there).
        """
        if self._fed is None:
            timeout_ms = int(timeout_ms)
            if timeout_ms <= 0:
                raise ValueError("timeout_ms")
            # A one-slot list: the feeding thread only stores into it, so the
            # watchdog thread never sees a half-updated object (no GIL on the port).
            self._fed = [common.ticks_ms()]
            # _thread exists on both runtimes; its threads do not keep CPython alive.
            import _thread

            _thread.start_new_thread(_watch, (self._fed, timeout_ms))
        else:
            self._fed[0] = common.ticks_ms()

    def watchdog_feed(self):
        """Feed the watchdog (no-op before watchdog_start)."""
        fed = self._fed
        if fed is not None:
            fed[0] = common.ticks_ms()

    # --- storage -----------------------------------------------------------

    def storage_dir(self):
        """Directory for config and state, created if missing.

        The `storage_dir` argument, else CHARGEGUARD_STORAGE, else ./storage.
        """
        if self._storage is None:
            path = self._storage_arg or os.getenv("CHARGEGUARD_STORAGE") or "./storage"
            common.makedirs(path)
            self._storage = path
        return self._storage

    # --- network -----------------------------------------------------------
    # The host is on its network already: the station calls only record what
    # was asked, and the link follows CHARGEGUARD_NETWORK_DOWN.

    def wifi_start(self, hostname, static):
        """Nothing to activate on the host (the same call as on the device)."""

    def wifi_begin(self, ssid, password):
        """Nothing to join on the host; with CHARGEGUARD_WIFI_NETWORKS, only the outcome is kept (never the password)."""
        self._join = None
        for name, secret, _ in _networks():
            if name == ssid:
                self._join = "up" if secret == password else "wrong_password"
                return
        self._join = "no_ap" if os.getenv("CHARGEGUARD_WIFI_NETWORKS") else None

    def wifi_status(self):
        """"up" while network_up(), else "no_ap" (the words of esp32.Platform.wifi_status); with
        CHARGEGUARD_WIFI_NETWORKS the outcome of the last wifi_begin()."""
        if not self.network_up():
            return "no_ap"
        return self._join or "up"

    def wifi_scan(self):
        """[(ssid, rssi dBm, secured)] of the networks in reach: CHARGEGUARD_WIFI_NETWORKS (else none), strongest first."""
        found = [(name, rssi, bool(secret)) for name, secret, rssi in _networks()]
        found.sort(key=lambda row: -row[1])
        return found

    def wifi_stop(self):
        """No-op on the host."""

    def network_up(self):
        """True when the (host's) network is usable: CHARGEGUARD_NETWORK_DOWN is not "1"."""
        return os.getenv("CHARGEGUARD_NETWORK_DOWN") != "1"

    def ip_address(self):
        """The address the firmware's servers answer on (loopback), or None when down."""
        return "127.0.0.1" if self.network_up() else None

    def dns_server(self):
        """CHARGEGUARD_DNS_SERVER (for tests of the resolver), or None: the host resolves names itself."""
        return os.getenv("CHARGEGUARD_DNS_SERVER") if self.network_up() else None

    def wifi_rssi(self):
        """None: the host's link has no signal strength to report."""
        return None

    def web_address(self, port):
        """(host, port) the web interface listens on: loopback, CHARGEGUARD_WEB_PORT or 8080 (the configured port is the device's)."""
        return "127.0.0.1", int(os.getenv("CHARGEGUARD_WEB_PORT") or 8080)

    def ocpp_address(self, port):
        """(host, port) the OCPP central system listens on: loopback, CHARGEGUARD_OCPP_PORT or the configured port."""
        return "127.0.0.1", int(os.getenv("CHARGEGUARD_OCPP_PORT") or port)

    def keba_port(self, port):
        """The local UDP port of the Keba link (chargers/keba.py): CHARGEGUARD_KEBA_PORT or `port` (7090, the box's)."""
        return int(os.getenv("CHARGEGUARD_KEBA_PORT") or port)

    # --- system ------------------------------------------------------------

    def reset_cause(self):
        """"power-on": a process always starts fresh (a supervisor sees why the last one ended)."""
        return "power-on"

    def reset(self):
        """End the process with exit status 3, as a reset would (a supervisor sees no clean stop)."""
        if common.IS_MICROPYTHON:
            # SystemExit passes through asyncio (it is not an Exception); the
            # port's stdout and stderr are unbuffered.
            sys.exit(_RESET_EXIT_STATUS)
        # os._exit skips the flush of CPython's buffered streams.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_RESET_EXIT_STATUS)

    def free_memory(self):
        """Free Python heap in bytes, or None under CPython."""
        return gc.mem_free() if common.IS_MICROPYTHON else None


class UnixUart:
    """A serial device, pty or FIFO read without blocking the event loop.

    `is_tty` is False for a FIFO or plain file, which carry bytes without
    line settings.
    """

    readinto = common.uart_readinto

    def __init__(self, handle, is_tty, poll):
        # Made by unix_line.open_line(), which opens and sets the line.
        self.is_tty = is_tty
        self._file = handle
        # ipoll() reuses one tuple (no allocation per call); CPython has poll() only.
        # The poll object goes with the UART: close() only closes the file.
        self._poll_now = getattr(poll, "ipoll", None) or poll.poll
        self._one = bytearray(1)

    def read_now(self, buf):
        """Copy the bytes already received into `buf` (at most len(buf)); return the count, 0 if none.

        Never waits and allocates nothing on MicroPython: for a reader loop that sleeps itself.
        """
        # One byte per POLLIN: a bigger read on a blocking tty waits for the
        # rest of the buffer (or fails with EIO on a pty), stalling the loop.
        handle = self._file
        if handle is None:
            raise OSError(9, "closed")  # EBADF
        size = len(buf)
        one = self._one
        count = 0
        while count < size:
            ready = 0
            for entry in self._poll_now(0):
                ready = entry[1] & _POLLIN
                break
            if not ready:
                break
            try:
                got = handle.readinto(one)
            except OSError:
                # EIO: the pty's other side is gone; the meter driver sees silence.
                break
            if not got:
                break
            buf[count] = one[0]
            count += 1
        return count

    def write(self, buf):
        """Send all of `buf` (an RS485 device opened by open_rs485); returns when the kernel has it."""
        handle = self._file
        if handle is None:
            raise OSError(9, "closed")  # EBADF
        # A Modbus request is 8 bytes: one write takes it all on a tty or pty.
        handle.write(buf)

    def close(self):
        """Release the device (idempotent)."""
        handle = self._file
        if handle is not None:
            self._file = None
            handle.close()


def _networks():
    # CHARGEGUARD_WIFI_NETWORKS as [(ssid, password, rssi)].
    text = os.getenv("CHARGEGUARD_WIFI_NETWORKS")
    if not text:
        return []
    import json

    return [tuple(row) for row in json.loads(text)]


def _open(*args):
    # unix_line.open_line(*args): the opening code is loaded for the open
    # (once per boot) and dropped after it, as its module doc says.
    from . import unix_line

    try:
        return unix_line.open_line(*args)
    finally:
        del unix_line
        common.unload("unix_line")


def _watch(fed, timeout_ms):
    # The watchdog thread: looks at the last feed every timeout/4 (5 to 100 ms)
    # and ends the process once the feed is older than timeout_ms.
    pause_s = min(max(timeout_ms // 4, 5), 100) / 1000
    stalled = 0
    while stalled <= timeout_ms:
        time.sleep(pause_s)
        stalled = common.ticks_diff(common.ticks_ms(), fed[0])
    print("watchdog: control loop stalled for %d ms, resetting" % stalled, file=sys.stderr)
    if not common.IS_MICROPYTHON:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_RESET_EXIT_STATUS)
    # The unix port can end the process from a thread only by a signal
    # (sys.exit there ends the thread); SIGKILL is the closest to a reset. The
    # port has no os.getpid(): the shell's parent is this process.
    os.system("kill -9 $PPID")
