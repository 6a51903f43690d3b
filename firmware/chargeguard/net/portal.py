"""The setup access point and its captive portal: the task that opens and closes them.

`Portal(platform, station, ssid, password, needs_setup, has_wifi, log)`:
`run()` is a supervised task of the app. It steps core/apmode.ApMode (when
to open: first boot, a long press of the board's button, the configured
Wi-Fi lost for long; see there) with the platform's debounced button and
the station link's state, and:

- on opening: platform.ap_start(ssid, password) (the device's own network,
  "ChargeGuard-XXXX" from the MAC unless configured otherwise; open when no
  password is set), then the DNS server (net/dns_server.py, imported only
  now) on platform.dns_address(), answering every name with the access
  point's address;
- while open: polls the DNS server every dns_server.POLL_MS, at most
  dns_server.MAX_PER_TURN datagrams per turn;
- on closing: the DNS server closed and unloaded, platform.ap_stop().

The web interface (net/web.py) asks `address()` on every request: the
access point's address while the portal is open (it then redirects the
operating systems' probe URLs and unknown host names to the setup page),
None otherwise; and calls `seen(now_ms)`, which keeps an access point opened
by the button up while someone uses it. `finish()` is for the setup wizard:
setup is done, the access point closes.

The guard never waits for any of this: every platform call returns at once
and a DNS server that cannot bind is retried at the next opening only (the
pages still work by address).
"""

from micropython import const

from chargeguard.core import apmode

STEP_MS = const(100)  # how often the closed portal looks at the button and the link (a press is 5 s)
OPEN_STEP_MS = const(50)  # while open: the DNS server's poll period (dns_server.POLL_MS)
RETRY_MS = const(10000)  # an access point that would not start is tried again this much later


class Portal:
    """The access point's task and the web interface's view of it (see the module doc)."""

    def __init__(self, platform, station, ssid, password, needs_setup, has_wifi, log=print):
        self.platform = platform
        self.station = station  # net/wifi.WifiLink or None
        self.ssid = ssid
        self._password = password  # handed to the platform only, never logged
        self.log = log
        self.mode = apmode.ApMode(needs_setup, has_wifi, platform.ticks_ms())
        self.ip = None  # the access point's address while open
        self.dns = None  # dns_server.DnsServer while open
        self.opened = 0  # times the access point was opened
        self._failed_ms = None  # when the access point last refused to start

    def address(self):
        """The access point's IPv4 address (text) while the portal is open, else None."""
        return self.ip

    def seen(self, now_ms):
        """A client request at `now_ms` (ticks): the portal is in use."""
        self.mode.seen(now_ms)

    def finish(self):
        """Setup is done: the access point closes at the next step."""
        self.mode.finish()

    def step(self, now_ms):
        """One look at `now_ms`: open or close as ApMode decides, answer waiting DNS queries. Never waits."""
        platform = self.platform
        station = self.station
        if self._failed_ms is not None:
            if platform.ticks_diff(now_ms, self._failed_ms) < RETRY_MS:
                return
            self._failed_ms = None
        change = self.mode.step(now_ms, station is not None and station.is_up(), platform.button_pressed(now_ms))
        if change == apmode.OPENED:
            self._open()
        elif change == apmode.CLOSED:
            self._close()
        if self.dns is not None:
            self.dns.poll()

    async def run(self):
        """The portal task: step every STEP_MS, every DNS_POLL_MS while open; closes what it opened when cancelled."""
        platform = self.platform
        try:
            while True:
                self.step(platform.ticks_ms())
                await platform.sleep_ms(OPEN_STEP_MS if self.ip is not None else STEP_MS)
        finally:
            if self.ip is not None:
                self._close()

    def _open(self):
        platform = self.platform
        why = self.mode.reason
        try:
            self.ip = platform.ap_start(self.ssid, self._password)
        except Exception as error:
            # Whatever the driver raises: the guard's loop goes on, and the
            # access point is tried again RETRY_MS later.
            self.log("portal: the access point could not start (%r)" % (error,))
            self.mode.state = apmode.CLOSED
            self._failed_ms = platform.ticks_ms()
            return
        self.opened += 1
        self.log(
            "portal: access point '%s' open (%s, %s), address %s"
            % (self.ssid, _why(why), "password set" if self._password else "no password", self.ip)
        )
        from chargeguard.net import dns_server

        host, port = platform.dns_address()
        server = dns_server.DnsServer(self.ip, host, port)
        try:
            server.open()
        except OSError as error:
            self.log("portal: DNS server cannot listen on %s:%d (%r); the pages answer by address" % (host, port, error))
            return
        self.dns = server
        self.log("portal: DNS server on %s:%d answers every name with %s" % (host, port, self.ip))

    def _close(self):
        server = self.dns
        self.dns = None
        if server is not None:
            server.close()
            _unload("chargeguard.net.dns_server")
        self.ip = None
        try:
            self.platform.ap_stop()
        except OSError:
            pass
        self.log("portal: access point closed")


def _why(reason):
    # ApMode.reason in the console's words.
    if reason == "setup":
        return "no configuration yet"
    if reason == "button":
        return "button held"
    return "home Wi-Fi unreachable"


def _unload(name):
    import sys

    sys.modules.pop(name, None)
    package = sys.modules.get("chargeguard.net")
    short = name[name.rfind(".") + 1 :]
    if package is not None and short in package.__dict__:
        delattr(package, short)


def ap_name(platform, configured=""):
    """The access point's SSID: `configured` when given, else "ChargeGuard-" and the last 4 hex digits of the MAC."""
    return configured or "ChargeGuard-" + platform.device_id()
