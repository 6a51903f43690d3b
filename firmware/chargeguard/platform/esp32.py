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

Opening the UARTs is esp32_line.py's, loaded for each open (once per boot)
and dropped after it: this module stays on the heap for good.
"""

import gc
import time

import machine
import network

from micropython import const

from . import common

# Seconds from 1970-01-01 to 2000-01-01 UTC: the Epoch of most bare-metal
# MicroPython ports (ESP32 included), see docs/library/time.rst.
_EPOCH_2000_OFFSET = const(946684800)
# ESP-IDF disconnect reasons (wifi_err_reason_t) that WLAN.status() passes through.
_REASON_4WAY_HANDSHAKE_TIMEOUT = const(15)
_REASON_HANDSHAKE_TIMEOUT = const(204)  # network.STAT_HANDSHAKE_TIMEOUT on the esp32 port
# The button's level must hold this long before it counts (a push button
# bounces for a few ms; the portal looks every 100 ms).
_DEBOUNCE_MS = const(30)
_AP_MAX_CLIENTS = const(4)  # phones on the setup network at once (each costs the Wi-Fi driver RAM)
_DNS_PORT = const(53)


class Platform:
    """The ESP32 device.

    `ticks_ms()`, `ticks_diff(a, b)`, `ticks_add(t, delta)` are time.ticks_*
    and `await sleep_ms(ms)` is asyncio.sleep_ms (an awaitable, not a coroutine
    object: await it, do not hand it to create_task).
    """

    name = "esp32"
    # The station answers "<wifi.hostname>.local" by mDNS: MicroPython's
    # esp32 port builds with MICROPY_HW_ENABLE_MDNS_RESPONDER (on by default)
    # and starts ESP-IDF's mDNS responder when the station gets its address,
    # with the interface's host name (network.hostname(), set by wifi_start
    # before the join). No responder of our own: the IDF's costs no Python
    # heap. net/webadmin.py tells the owner the name at the wizard's finish.
    mdns = True

    def __init__(self, board, storage_dir=None):
        self.board = board
        common.bind_clock(self)
        self._storage_arg = storage_dir
        self._storage = None
        self._wdt = None
        self._sta = None
        self._ap = None
        self._button = None  # machine.Pin once first read; False on a board without one
        self._button_level = False  # debounced: True = pressed
        self._button_raw = False
        self._button_since = 0
        # The Epoch of this port's time.time(), read once from gmtime(0) as the
        # MicroPython docs advise: a port that moves to 1970 needs no change here.
        self._epoch_offset = _EPOCH_2000_OFFSET if time.gmtime(0)[0] == 2000 else 0

    # --- clock -------------------------------------------------------------

    def wall_time(self):
        """Seconds since 1970-01-01 UTC (int), whatever Epoch the port uses."""
        # Past 2004 the sum exceeds the 31-bit small int: one long int per call,
        # fine for schedules, which ask once per control tick.
        return int(time.time()) + self._epoch_offset

    def set_wall_time(self, seconds):
        """Set the RTC to `seconds` since 1970-01-01 UTC."""
        t = time.gmtime(int(seconds) - self._epoch_offset)
        # RTC.datetime takes (year, month, day, weekday, hours, minutes, seconds, subseconds).
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))

    # --- P1 UART -----------------------------------------------------------

    def open_uart(self, baud, data_bits, parity, stop_bits, invert_rx):
        """Open the board's P1 UART; return an Esp32Uart (`read_now(buf)`, `async readinto(buf)`, `close()`).

        `parity`: None, 0 (even) or 1 (odd), as machine.UART. `invert_rx` inverts
        the RX line in the UART (the P1 output is open collector, logically
        inverted). Drives board["p1_request_pin"] high when the board has one.
        """
        return _open("open_uart", self.board, baud, data_bits, parity, stop_bits, invert_rx)

    def open_rs485(self, baud, data_bits, parity, stop_bits):
        """Open the board's RS485 UART (Modbus RTU); an Esp32Rs485 (`read_now(buf)`, `write(buf)`, `close()`).

        board["rs485_uart"], ["rs485_tx"], ["rs485_rx"]; board["rs485_de"] is
        the transceiver's driver enable (DE and /RE tied), or null for an
        auto-direction transceiver (the LilyGO T-CAN485's MAX13487E).
        machine.UART of MicroPython 1.28 has no RS485 half-duplex mode (the
        ESP-IDF's UART_MODE_RS485_HALF_DUPLEX is not exposed), so the DE pin is
        a plain output that write() raises around the frame.
        """
        return _open("open_rs485", self.board, baud, data_bits, parity, stop_bits)

    # --- watchdog ----------------------------------------------------------

    def watchdog_start(self, timeout_ms):
        """Start the hardware watchdog; it can never be stopped (a second call only feeds).

        The timeout is rounded up to whole seconds, at least 1 s, because
        older ESP32 firmware truncates it to seconds.
        """
        if self._wdt is None:
            self._wdt = machine.WDT(timeout=max((int(timeout_ms) + 999) // 1000, 1) * 1000)
        else:
            self._wdt.feed()

    def watchdog_feed(self):
        """Feed the watchdog (no-op before watchdog_start)."""
        wdt = self._wdt
        if wdt is not None:
            wdt.feed()

    # --- storage -----------------------------------------------------------

    def storage_dir(self):
        """Directory on the flash filesystem for config and state (default /data), created if missing."""
        if self._storage is None:
            path = self._storage_arg or "/data"
            common.makedirs(path)
            self._storage = path
        return self._storage

    # --- network -----------------------------------------------------------
    # The station interface as the MicroPython docs describe it (network.WLAN,
    # network.hostname, WLAN.ifconfig); net/wifi.py decides when to call what.

    def _station(self):
        sta = self._sta
        if sta is None:
            sta = self._sta = network.WLAN(network.STA_IF)
        return sta

    def wifi_start(self, hostname, static):
        """Activate the station interface with `hostname` and, if `static` (ip, netmask, gateway, dns), that address.

        The hostname goes to the DHCP server and to the port's mDNS responder
        (`mdns`: <hostname>.local); the docs say to set it before connecting. network.hostname() (MicroPython 1.20 on) is preferred,
        WLAN.config(dhcp_hostname=) is the older name. The driver is asked to
        make no reconnect attempts of its own (config(reconnects=0)): the
        network task owns retries and their backoff, and only then does
        status() report why a join failed instead of CONNECTING forever (the
        esp32 port reports the disconnect reason once its retries are spent).
        """
        sta = self._station()
        if hostname:
            try:
                network.hostname(hostname)
            except (AttributeError, ValueError, OSError):
                try:
                    sta.config(dhcp_hostname=hostname)
                except (ValueError, OSError):
                    pass
        if not sta.active():
            sta.active(True)
        try:
            sta.config(reconnects=0)
        except (ValueError, OSError, TypeError):
            pass  # older firmware: the join deadline still ends an attempt
        if static:
            sta.ifconfig(static)

    def wifi_begin(self, ssid, password):
        """Start joining `ssid` (returns at once; watch wifi_status()). OSError if the driver refuses.

        The password goes to the driver and nowhere else: not stored, not logged.
        """
        sta = self._station()
        try:
            sta.connect(ssid, password)
        except OSError:
            # The driver refuses a new connect while an old one is still trying.
            sta.disconnect()
            sta.connect(ssid, password)

    def wifi_status(self):
        """The station link as one word: "up", "connecting", "idle", "wrong_password", "handshake", "no_ap" or "failed".

        From WLAN.isconnected() (connected and has an address) and
        WLAN.status() (STAT_CONNECTING, STAT_WRONG_PASSWORD, STAT_NO_AP_FOUND,
        STAT_IDLE; other codes are the driver's disconnect reasons, ESP-IDF's
        wifi_err_reason_t). "handshake": STAT_HANDSHAKE_TIMEOUT (204) or
        WIFI_REASON_4WAY_HANDSHAKE_TIMEOUT (15), which ESP-IDF reports for a
        wrong WPA2 password as often as AUTH_FAIL (202), and for a weak signal.
        """
        sta = self._sta
        if sta is None:
            return "idle"
        if sta.isconnected():
            return "up"
        code = sta.status()
        if code == network.STAT_CONNECTING:
            return "connecting"
        if code == network.STAT_IDLE:
            return "idle"
        if code == getattr(network, "STAT_WRONG_PASSWORD", None):
            return "wrong_password"
        if code == getattr(network, "STAT_NO_AP_FOUND", None):
            return "no_ap"
        if code == _REASON_HANDSHAKE_TIMEOUT or code == _REASON_4WAY_HANDSHAKE_TIMEOUT:
            return "handshake"
        if code == network.STAT_GOT_IP:
            return "connecting"  # an address but isconnected() not yet: still joining
        return "failed"

    def wifi_scan(self):
        """[(ssid, rssi dBm, secured)] of the access points in reach, strongest first, each SSID once.

        WLAN.scan() (rows of ssid bytes, bssid, channel, RSSI, security,
        hidden; security 0 = open) on the station interface, activated
        first. It BLOCKS while the radio sweeps the channels (ESP-IDF's
        esp_wifi_scan_start with block=true: about 2 s): the web interface
        calls it only while no charger is configured (first setup), when
        nothing waits for the guard. A hidden network (empty SSID) is left out.
        """
        sta = self._station()
        if not sta.active():
            sta.active(True)
        found = {}
        for row in sta.scan():
            try:
                ssid = row[0].decode()
            except UnicodeError:
                continue
            if ssid and (ssid not in found or row[3] > found[ssid][1]):
                found[ssid] = (ssid, row[3], row[4] != 0)
        rows = list(found.values())
        rows.sort(key=lambda item: -item[1])
        return rows

    def wifi_stop(self):
        """Leave the network and stop the driver's attempts (the station stays active)."""
        sta = self._sta
        if sta is not None:
            sta.disconnect()

    def network_up(self):
        """True when the station interface is connected and has an address."""
        sta = self._sta
        return sta is not None and sta.isconnected()

    def ip_address(self):
        """The station's IPv4 address, or None when not connected."""
        return self._sta.ifconfig()[0] if self.network_up() else None

    def dns_server(self):
        """The DNS server of the lease (or the static configuration), or None when not connected."""
        if not self.network_up():
            return None
        server = self._sta.ifconfig()[3]
        return server if server and server != "0.0.0.0" else None

    def web_address(self, port):
        """(host, port) the web interface listens on: every interface, the configured port."""
        return "0.0.0.0", port

    # --- the setup access point (net/portal.py decides when) --------------

    def device_id(self):
        """The last 4 hex digits of the MAC (upper case): names the setup access point, "ChargeGuard-XXXX".

        machine.unique_id() is the chip's base MAC on the esp32 port (the
        station's MAC; readable without starting Wi-Fi), the name printed
        on the module's label.
        """
        mac = machine.unique_id()
        return "%02X%02X" % (mac[-2], mac[-1])

    def ap_start(self, ssid, password):
        """Open the access point `ssid` (WPA2 with `password`, open when it is empty); its IPv4 address (text).

        network.WLAN(AP_IF) as the MicroPython docs give it: active(True),
        config(ssid=, key=, security=, max_clients=), ifconfig()[0] (the
        esp32 port's default 192.168.4.1 with its own DHCP server). The
        station stays as it is: the ESP32 runs both (AP+STA); the access
        point follows the station's channel when it joins.
        Raises OSError when the driver refuses. The password goes to the
        driver and nowhere else.
        """
        ap = self._ap
        if ap is None:
            ap = self._ap = network.WLAN(network.AP_IF)
        ap.active(True)
        if password:
            ap.config(ssid=ssid, key=password, security=network.AUTH_WPA2_PSK, max_clients=_AP_MAX_CLIENTS)
        else:
            ap.config(ssid=ssid, security=network.AUTH_OPEN, max_clients=_AP_MAX_CLIENTS)
        return ap.ifconfig()[0]

    def ap_stop(self):
        """Close the access point (its clients are dropped); the station is untouched."""
        ap = self._ap
        if ap is not None:
            ap.active(False)

    def dns_address(self):
        """(host, port) of the portal's DNS server: the access point's address, port 53.

        Bound to the access point only: on the home network the device must
        not answer DNS for every name.
        """
        return self._ap.ifconfig()[0], _DNS_PORT

    def button_pressed(self, now_ms):
        """The board's button (board["button"], active low with the pull-up) debounced: True while held.

        A new level counts once the pin has read it for _DEBOUNCE_MS; reads
        the pin once per call and never waits. False on a board without one.
        """
        pin = self._button
        if pin is None:
            number = self.board.get("button")
            if number is None:
                self._button = False
                return False
            pin = self._button = machine.Pin(number, machine.Pin.IN, machine.Pin.PULL_UP)
        elif pin is False:
            return False
        raw = pin.value() == 0
        if raw != self._button_raw:
            self._button_raw = raw
            self._button_since = now_ms
        elif raw != self._button_level and self.ticks_diff(now_ms, self._button_since) >= _DEBOUNCE_MS:
            self._button_level = raw
        return self._button_level
    def ocpp_address(self, port):
        """(host, port) the OCPP central system listens on: every interface, the configured port (ocpp.port)."""
        return "0.0.0.0", port

    def keba_port(self, port):
        """The local UDP port of the Keba link: `port` (7090: a KEBA box answers to that port of the sender)."""
        return port

    def wifi_rssi(self):
        """Signal strength of the access point in dBm (int), or None when unknown.

        WLAN.status('rssi') per the docs; newer firmware also has config('rssi').
        """
        if not self.network_up():
            return None
        sta = self._sta
        try:
            return sta.status("rssi")
        except (ValueError, OSError, TypeError):
            pass
        try:
            return sta.config("rssi")
        except (ValueError, OSError, TypeError):
            return None

    # --- system ------------------------------------------------------------

    def reset_cause(self):
        """Why the chip last started: "power-on", "watchdog reset", "hard reset", "soft reset" or "deep-sleep wake".

        machine.reset_cause() against the machine.*_RESET constants.
        """
        cause = machine.reset_cause()
        if cause == machine.WDT_RESET:
            return "watchdog reset"
        if cause == machine.HARD_RESET:
            return "hard reset"
        if cause == machine.SOFT_RESET:
            return "soft reset"
        if cause == machine.DEEPSLEEP_RESET:
            return "deep-sleep wake"
        return "power-on"

    def reset(self):
        """Hard-reset the device (machine.reset)."""
        machine.reset()

    def free_memory(self):
        """Free Python heap in bytes."""
        return gc.mem_free()


def _open(name, *args):
    # esp32_line.py's `name`: the opening code is loaded for the open (once
    # per boot) and dropped after it, as its module doc says.
    from . import esp32_line

    try:
        return getattr(esp32_line, name)(*args)
    finally:
        del esp32_line
        common.unload("esp32_line")


class Esp32Uart:
    """machine.UART read without blocking the event loop (timeout=0, polled with any())."""

    readinto = common.uart_readinto

    def __init__(self, uart, request_pin):
        self._uart = uart
        self._request = request_pin

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
        return uart.readinto(buf, available if available < size else size) or 0

    def close(self):
        """Release the UART and drop Data Request (idempotent)."""
        uart = self._uart
        if uart is None:
            return
        self._uart = None
        uart.deinit()
        if self._request is not None:
            self._request.value(0)


class Esp32Rs485(Esp32Uart):
    """The RS485 UART: read like the P1 UART, write with the driver enable raised around the frame."""

    def write(self, buf):
        """Send `buf` and return once its last stop bit left: DE high, write, flush, DE low.

        UART.flush() waits until the transmitter is empty, so DE drops right
        after the frame and the meter's answer (it starts no sooner than
        t3.5 later, 4 ms at 9600 baud) finds the line released. The wait
        is the frame's own time on the wire: a request is 8 bytes, 8.3 ms at
        9600 baud, 33 ms at 2400, so the loop is held at most that long.
        """
        uart = self._uart
        if uart is None:
            raise OSError(9, "closed")  # EBADF
        de = self._request
        if de is not None:
            de.value(1)
        try:
            uart.write(buf)
            uart.flush()
        finally:
            if de is not None:
                de.value(0)
