"""Platform for an ESP32 running MicroPython: machine.UART/WDT/RTC/Pin and network.WLAN.

Facts this module relies on (docs.micropython.org and the esp32 port source):
- Time Epoch: the ESP32 port counts time.time() from 2000-01-01 UTC. Source:
  docs.micropython.org library/time.html, as revised in 2025 (micropython PR
  #17056): "The Unix, Windows, Webassembly, RP2 and MIMXRT ports use ... 1970
  ... The other embedded ports use an epoch of 2000-01-01"; micropython issue
  #16490 shows it on v1.24.1. The Epoch is read at run time with gmtime(0)[0],
  as those docs advise, so a port that moves to 1970 needs no change here.
- machine.WDT cannot be stopped or reconfigured once started; older ESP32
  firmware converts the timeout to whole seconds (minimum 1 s).
- machine.UART(1) defaults to TX=GPIO10/RX=GPIO9 (flash pins on WROOM modules)
  and UART(2) to TX=17/RX=16; a UART always drives its TX pin, so a board that
  gives no "p1_tx" must use UART 2 with GPIO17 free.
"""

import gc
import time

import machine
import network

from micropython import const

from . import common

# readinto() gives up after POLL_MS without data, looking every POLL_STEP_MS.
POLL_MS = const(20)
POLL_STEP_MS = const(5)
# UART receive ring (allocated by ESP-IDF, not on the Python heap): a DSMR 5
# telegram is up to ~3 KB every second, and the loop may pause for a while.
UART_RXBUF = const(4096)

WDT_MIN_MS = const(1000)
WIFI_POLL_MS = const(100)
STORAGE_DIR = "/data"
LED_RGB = (0, 24, 0)  # dim green for a WS2812 status LED

_RESET_CAUSES = (
    ("PWRON_RESET", "power_on"),
    ("HARD_RESET", "hard"),
    ("WDT_RESET", "watchdog"),
    ("DEEPSLEEP_RESET", "deep_sleep"),
    ("SOFT_RESET", "soft"),
)


class Platform:
    """The ESP32 device.

    `ticks_ms()`, `ticks_diff(a, b)`, `ticks_add(t, delta)` are time.ticks_*
    and `await sleep_ms(ms)` is asyncio.sleep_ms (an awaitable, not a coroutine
    object: await it, do not hand it to create_task).
    """

    def __init__(self, board, storage_dir=None):
        self.name = "esp32"
        self.board = board
        self.ticks_ms = common.ticks_ms
        self.ticks_diff = common.ticks_diff
        self.ticks_add = common.ticks_add
        self.sleep_ms = common.sleep_ms
        self._storage_arg = storage_dir
        self._storage = None
        self._epoch_offset = None
        self._wdt = None
        self.watchdog_timeout_ms = None
        self._sta = None
        self._ap = None
        self._wifi_state = "off"
        self._led = None
        self._button = None

    # --- clock -------------------------------------------------------------

    def _offset(self):
        if self._epoch_offset is None:
            year = time.gmtime(0)[0]
            self._epoch_offset = common.EPOCH_2000_OFFSET if year == 2000 else 0
        return self._epoch_offset

    def wall_time(self):
        """Seconds since 1970-01-01 UTC (int), whatever Epoch the port uses."""
        # Past 2004 the sum exceeds the 31-bit small int: one long int per call,
        # fine for schedules, which ask once per control tick.
        return int(time.time()) + self._offset()

    def set_wall_time(self, seconds):
        """Set the RTC to `seconds` since 1970-01-01 UTC."""
        t = time.gmtime(int(seconds) - self._offset())
        # RTC.datetime takes (year, month, day, weekday, hours, minutes, seconds, subseconds).
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))

    def wall_time_valid(self):
        """True when the wall clock can be trusted for schedules (set since power-up)."""
        return self.wall_time() >= common.MIN_VALID_WALL_TIME

    # --- P1 UART -----------------------------------------------------------

    def open_uart(self, baud, data_bits, parity, stop_bits, invert_rx):
        """Open the board's P1 UART; return an object with `async readinto(buf)` and `close()`.

        `parity`: None, 0 (even) or 1 (odd), as machine.UART. `invert_rx` inverts
        the RX line in the UART (the P1 output is open collector, logically
        inverted). Drives board["p1_request_pin"] high when the board has one.
        """
        common.check_line(baud, data_bits, parity, stop_bits)
        board = self.board
        uart_cls = machine.UART
        invert = uart_cls.INV_RX if invert_rx else 0
        tx = board.get("p1_tx")
        if tx is None:
            uart = uart_cls(
                board["p1_uart"],
                baudrate=baud,
                bits=data_bits,
                parity=parity,
                stop=stop_bits,
                rx=board["p1_rx"],
                invert=invert,
                rxbuf=UART_RXBUF,
                timeout=0,
            )
        else:
            uart = uart_cls(
                board["p1_uart"],
                baudrate=baud,
                bits=data_bits,
                parity=parity,
                stop=stop_bits,
                rx=board["p1_rx"],
                tx=tx,
                invert=invert,
                rxbuf=UART_RXBUF,
                timeout=0,
            )
        request = None
        request_pin = board.get("p1_request_pin")
        if request_pin is not None:
            # Data Request high = "send telegrams" (DSMR P1 pin 2).
            request = machine.Pin(request_pin, machine.Pin.OUT, value=1)
        return Esp32Uart(uart, request)

    # --- watchdog ----------------------------------------------------------

    def watchdog_start(self, timeout_ms):
        """Start the hardware watchdog; it can never be stopped (a second call only feeds).

        The timeout is rounded up to whole seconds, at least WDT_MIN_MS, because
        older ESP32 firmware truncates it to seconds.
        """
        if self._wdt is not None:
            self._wdt.feed()
            return
        timeout = ((int(timeout_ms) + 999) // 1000) * 1000
        if timeout < WDT_MIN_MS:
            timeout = WDT_MIN_MS
        self._wdt = machine.WDT(timeout=timeout)
        self.watchdog_timeout_ms = timeout

    def watchdog_feed(self):
        """Feed the watchdog (no-op before watchdog_start)."""
        wdt = self._wdt
        if wdt is not None:
            wdt.feed()

    # --- storage -----------------------------------------------------------

    def storage_dir(self):
        """Directory on the flash filesystem for config and state, created if missing."""
        if self._storage is None:
            path = self._storage_arg or STORAGE_DIR
            common.makedirs(path)
            self._storage = path
        return self._storage

    # --- network -----------------------------------------------------------

    def _station(self):
        if self._sta is None:
            self._sta = network.WLAN(network.STA_IF)
        return self._sta

    def network_up(self):
        """True when the station interface is connected and has an address."""
        sta = self._sta
        return sta is not None and sta.isconnected()

    async def wifi_connect(self, ssid, password, timeout_ms):
        """Join `ssid`; True once connected, False after `timeout_ms` or a wrong password.

        Polls without blocking the event loop. The password is handed to the
        driver and nowhere else: not stored, not logged.
        """
        sta = self._station()
        if not sta.active():
            sta.active(True)
        if sta.isconnected():
            if _current_ssid(sta) == ssid:
                self._wifi_state = "connected"
                return True
            sta.disconnect()
        self._wifi_state = "connecting"
        try:
            sta.connect(ssid, password)
        except OSError:
            # The driver refuses a new connect while an old one is still trying.
            sta.disconnect()
            try:
                sta.connect(ssid, password)
            except OSError:
                self._wifi_state = "failed"
                return False
        wrong_password = getattr(network, "STAT_WRONG_PASSWORD", None)
        start = common.ticks_ms()
        while True:
            if sta.isconnected():
                self._wifi_state = "connected"
                return True
            status = sta.status()
            if wrong_password is not None and status == wrong_password:
                self._wifi_state = "wrong_password"
                break
            if common.ticks_diff(common.ticks_ms(), start) >= timeout_ms:
                self._wifi_state = _failure_name(status)
                break
            await common.sleep_ms(WIFI_POLL_MS)
        # Stop the driver's own retries so the next attempt starts clean.
        sta.disconnect()
        return False

    def wifi_disconnect(self):
        """Leave the network (the station stays active for the next connect)."""
        sta = self._sta
        if sta is not None:
            sta.disconnect()
        self._wifi_state = "off"

    def wifi_status(self):
        """'connected', 'connecting', 'wrong_password', 'no_ap', 'failed' or 'off'."""
        if self._wifi_state == "connected" and not self.network_up():
            return "failed"
        return self._wifi_state

    def ip_address(self):
        """The station's IPv4 address, or None when not connected."""
        if not self.network_up():
            return None
        return self._sta.ifconfig()[0]

    def ap_start(self, essid, password=None):
        """Start the setup access point (open when no password); return its address."""
        ap = self._ap
        if ap is None:
            ap = network.WLAN(network.AP_IF)
            self._ap = ap
        ap.active(True)
        if password:
            ap.config(essid=essid, password=password, authmode=network.AUTH_WPA2_PSK)
        else:
            ap.config(essid=essid, authmode=network.AUTH_OPEN)
        return ap.ifconfig()[0]

    def ap_stop(self):
        """Switch the access point off."""
        if self._ap is not None:
            self._ap.active(False)

    # --- board I/O ---------------------------------------------------------

    def init_board(self):
        """Drive the board's enable pins (board["init_high"]) high: transceiver power etc."""
        for pin in self.board.get("init_high") or ():
            machine.Pin(pin, machine.Pin.OUT, value=1)

    def set_led(self, on):
        """Switch the status LED (a GPIO LED, or a WS2812 when board["led_type"] says so)."""
        pin = self.board.get("led")
        if pin is None:
            return
        led = self._led
        if self.board.get("led_type") == "ws2812":
            if led is None:
                import neopixel

                led = neopixel.NeoPixel(machine.Pin(pin), 1)
                self._led = led
            led[0] = LED_RGB if on else (0, 0, 0)
            led.write()
            return
        if led is None:
            led = machine.Pin(pin, machine.Pin.OUT)
            self._led = led
        led.value(1 if on else 0)

    def button_pressed(self):
        """True while the board's button (active low, e.g. BOOT on GPIO0) is held."""
        pin = self.board.get("button")
        if pin is None:
            return False
        button = self._button
        if button is None:
            # GPIO34-39 have no internal pull-up; such a button needs its own.
            if pin < 34:
                button = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
            else:
                button = machine.Pin(pin, machine.Pin.IN)
            self._button = button
        return button.value() == 0

    # --- system ------------------------------------------------------------

    def reset(self):
        """Hard-reset the device (machine.reset)."""
        machine.reset()

    def reset_cause(self):
        """Why the device last started: 'power_on', 'hard', 'watchdog', 'deep_sleep', 'soft' or 'unknown'."""
        cause = machine.reset_cause()
        for attr, label in _RESET_CAUSES:
            if getattr(machine, attr, None) == cause:
                return label
        return "unknown"

    def free_memory(self):
        """Free Python heap in bytes."""
        return gc.mem_free()


class Esp32Uart:
    """machine.UART read without blocking the event loop (timeout=0, polled with any())."""

    def __init__(self, uart, request_pin):
        self._uart = uart
        self._request = request_pin

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

        Never waits and allocates nothing: for a reader loop that sleeps itself.
        """
        uart = self._uart
        if uart is None:
            raise OSError(9, "closed")  # EBADF
        available = uart.any()
        if not available:
            return 0
        size = len(buf)
        # Ask for no more than any() reported, so readinto never waits.
        count = uart.readinto(buf, available if available < size else size)
        return count or 0

    def close(self):
        """Release the UART and drop Data Request (idempotent)."""
        uart = self._uart
        if uart is None:
            return
        self._uart = None
        uart.deinit()
        if self._request is not None:
            self._request.value(0)


def _current_ssid(sta):
    # "ssid" is the newer name of the config key, "essid" the older one.
    for key in ("ssid", "essid"):
        try:
            return sta.config(key)
        except (ValueError, OSError):
            pass
    return None


def _failure_name(status):
    for attr, label in (
        ("STAT_NO_AP_FOUND", "no_ap"),
        ("STAT_WRONG_PASSWORD", "wrong_password"),
    ):
        if getattr(network, attr, None) == status:
            return label
    return "failed"
