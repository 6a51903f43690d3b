"""A fake of MicroPython's `network` module (ESP32 port) for the device rehearsal.

Follows the MicroPython documentation (docs.micropython.org/en/latest/library/
network.rst and network.WLAN.rst) and, where the docs leave it open, the
esp32 port's ports/esp32/network_wlan.c:
- WLAN(interface_id) with STA_IF / AP_IF; active([is_active]);
  connect(ssid=None, key=None, *, bssid=None) starts joining and returns at
  once; disconnect(); isconnected() is True only when "connected to a WiFi
  access point and has a valid IP address".
- status() with no argument: STAT_GOT_IP once connected; STAT_CONNECTING
  while a connect is requested and the driver still has attempts left
  (`reconnects`); otherwise the ESP-IDF reason of the last disconnect, e.g.
  STAT_NO_AP_FOUND (201), STAT_WRONG_PASSWORD (202), STAT_BEACON_TIMEOUT
  (200); STAT_IDLE when nothing happened. status('rssi') gives the access
  point's signal in dBm (an OSError when not connected, as esp_wifi_sta_get_ap_info fails).
- config('param') / config(param=value): ssid/essid, reconnects ("number of
  reconnect attempts to make, 0=none, -1=unlimited"; unlimited by default:
  the driver then retries after every disconnect), dhcp_hostname, mac,
  channel, txpower. Unknown parameters raise ValueError("unknown config param").
- ifconfig([(ip, subnet, gateway, dns)]) gets or sets the IP configuration
  (a set configuration means no DHCP); network.hostname([name]) (at most
  32 characters, ValueError beyond).
- the access point (AP_IF): active(True) starts it with the esp32 port's
  default address 192.168.4.1 (ifconfig()); config(ssid=/essid=, key=/
  password=, security=/authmode=, max_clients=, channel=, hidden=) as the
  port's network_wlan.c takes them. Each change is noted on stderr
  ("FAKE-NET: AP ...") for the harness.
- Constants with the esp32 port's values: STAT_IDLE 1000, STAT_CONNECTING
  1001, STAT_GOT_IP 1010, STAT_BEACON_TIMEOUT 200, STAT_NO_AP_FOUND 201,
  STAT_WRONG_PASSWORD 202, STAT_ASSOC_FAIL 203, STAT_HANDSHAKE_TIMEOUT 204.

The radio (is the access point there, its SSID and password, how long an
association and a DHCP lease take, the signal, the address the lease
gives) comes from the rehearsal's control file (fake_control.py), so a test
can take the access point away and bring it back. The sockets themselves
are the host's: the wallbox emulators listen on 127.0.0.1.
"""

import time

import fake_control

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
AUTH_OPEN = 0
AUTH_WPA2_PSK = 3

_NO_AP_SCAN_MS = 1500  # a join attempt that finds no access point ends after a scan
_hostname = ["esp32"]
_interfaces = {}


def hostname(name=None):
    if name is None:
        return _hostname[0]
    if len(name) > 32:
        raise ValueError("hostname too long")
    _hostname[0] = name
    fake_control.note("FAKE-NET: hostname %s" % name)


def WLAN(interface_id=STA_IF):
    if interface_id not in (STA_IF, AP_IF):
        raise ValueError("invalid WLAN interface identifier")
    if interface_id not in _interfaces:
        _interfaces[interface_id] = _Wlan(interface_id)
    return _interfaces[interface_id]


class _Wlan:
    def __init__(self, interface_id):
        self._if = interface_id
        self._active = False
        self._requested = False  # connect() called and not disconnect()ed
        self._ssid = ""
        self._key = ""
        self._reconnects = 0  # the port's conf_wifi_sta_reconnects: 0 = retry forever
        self._tries = 0
        self._reason = 0  # last disconnect reason, 0 = none
        self._attempt_ms = None  # start of the association under way
        self._joined_ms = None  # when the association completed (DHCP runs)
        self._connected = False
        self._static = None
        self._dhcp_hostname = None

    # -- the driver, advanced lazily whenever the firmware looks ------------

    def _advance(self):
        fake_control.hang_if_frozen()
        now = time.ticks_ms()
        get = fake_control.get
        ap_there = get("ap", True)
        if self._connected or self._joined_ms is not None:
            if not ap_there or self._ssid != get("ssid", "home"):
                self._lose(STAT_BEACON_TIMEOUT)
                return
            if not self._connected:
                dhcp = 0 if self._static else get("dhcp_ms", 200)
                if time.ticks_diff(now, self._joined_ms) >= dhcp:
                    self._connected = True
                    self._reason = 0
                    fake_control.note("FAKE-NET: GOT_IP")
            return
        if self._attempt_ms is None:
            return
        elapsed = time.ticks_diff(now, self._attempt_ms)
        if not ap_there or self._ssid != get("ssid", "home"):
            if elapsed >= _NO_AP_SCAN_MS:
                self._lose(STAT_NO_AP_FOUND)
            return
        if elapsed < get("assoc_ms", 300):
            return
        if self._key != get("password", ""):
            self._lose(STAT_WRONG_PASSWORD)
            return
        self._attempt_ms = None
        self._joined_ms = now
        fake_control.note("FAKE-NET: associated with %s" % self._ssid)

    def _lose(self, reason):
        # The port's STA_DISCONNECTED event: note the reason, then reconnect
        # while connect was requested and attempts are left.
        fake_control.note("FAKE-NET: disconnected, reason %d" % reason)
        self._connected = False
        self._joined_ms = None
        self._attempt_ms = None
        self._reason = reason
        if self._requested:
            self._tries += 1
            if self._reconnects == 0 or self._tries < self._reconnects:
                self._attempt_ms = time.ticks_ms()

    # -- the documented methods ---------------------------------------------

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        if self._if == AP_IF and bool(is_active) != self._active:
            fake_control.note("FAKE-NET: AP %s" % ("up" if is_active else "down"))
        self._active = bool(is_active)
        if not self._active:
            self._requested = False
            self._connected = False
            self._joined_ms = None
            self._attempt_ms = None

    def connect(self, ssid=None, key=None, bssid=None):
        if self._if != STA_IF:
            raise OSError("STA required")
        if not self._active:
            raise OSError("Wifi Not Started")
        if ssid is not None:
            self._ssid = ssid
        if key is not None:
            self._key = key
        self._tries = 0
        self._requested = True
        self._connected = False
        self._joined_ms = None
        self._attempt_ms = time.ticks_ms()
        fake_control.note("FAKE-NET: connect to %s" % self._ssid)

    def disconnect(self):
        self._requested = False
        self._connected = False
        self._joined_ms = None
        self._attempt_ms = None

    def isconnected(self):
        self._advance()
        return self._connected

    def status(self, param=None):
        self._advance()
        if param is None:
            if self._connected:
                return STAT_GOT_IP
            if self._requested and (self._reconnects == 0 or self._tries < self._reconnects):
                return STAT_CONNECTING
            return self._reason or STAT_IDLE
        if param == "rssi":
            if not self._connected:
                raise OSError(12301)  # ESP_ERR_WIFI_NOT_CONNECT
            return fake_control.get("rssi", -58)
        raise ValueError("unknown status param")

    def _config_ap(self, kwargs):
        ap = getattr(self, "_ap_config", None)
        if ap is None:
            ap = self._ap_config = {"ssid": "ESP_000001", "key": "", "security": AUTH_OPEN}
        for key in kwargs:
            value = kwargs[key]
            name = {"essid": "ssid", "password": "key", "authmode": "security"}.get(key, key)
            if name not in ("ssid", "key", "security", "max_clients", "channel", "hidden"):
                raise ValueError("unknown config param")
            ap[name] = value
        fake_control.note(
            "FAKE-NET: AP config ssid %s security %s%s"
            % (ap["ssid"], "WPA2" if ap["security"] == AUTH_WPA2_PSK else "open", " with key" if ap["key"] else "")
        )

    def ifconfig(self, values=None):
        if self._if == AP_IF and values is None:
            return ("192.168.4.1", "255.255.255.0", "192.168.4.1", "192.168.4.1") if self._active else ("0.0.0.0",) * 4
        if values is not None:
            self._static = tuple(values)
            return None
        if self._static:
            return self._static
        if not self._connected:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        get = fake_control.get
        return (get("ip", "192.168.1.77"), "255.255.255.0", get("gateway", "192.168.1.1"), get("dns", "192.168.1.1"))

    def config(self, *args, **kwargs):
        if args and kwargs:
            raise TypeError("either pos or kw args are allowed")
        if kwargs and self._if == AP_IF:
            self._config_ap(kwargs)
            return None
        if kwargs:
            for key in kwargs:
                value = kwargs[key]
                if key == "reconnects":
                    # The port keeps reconnects + 1 attempts in all, 0 = forever.
                    self._reconnects = 0 if value == -1 else value + 1
                elif key == "dhcp_hostname":
                    self._dhcp_hostname = value
                elif key not in ("mac", "channel", "txpower", "pm"):
                    raise ValueError("unknown config param")
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        key = args[0]
        if key in ("ssid", "essid"):
            return self._ssid
        if key == "reconnects":
            return self._reconnects - 1
        if key == "dhcp_hostname":
            return self._dhcp_hostname or _hostname[0]
        if key == "mac":
            return b"\x24\x0a\xc4\x00\x00\x01"
        raise ValueError("unknown config param")

    def scan(self):
        get = fake_control.get
        if not get("ap", True):
            return []
        return [(get("ssid", "home").encode(), b"\x00\x11\x22\x33\x44\x55", 6, get("rssi", -58), AUTH_WPA2_PSK, False)]
