"""The setup access point and its captive portal: the task that opens and closes them.

`Portal(platform, station, ssid, password, needs_setup, has_wifi, log)`:
`run()` is a supervised task of the app. It steps core/apmode.ApMode (when
to open: first boot, a long press of the board's button, the configured
Wi-Fi lost for long; see there) with the platform's debounced button and
the station link's state, and:

- on opening: net/captive.open_ap() (imported only now): the access point
  (the device's own network, "ChargeGuard-XXXX" from the MAC; open when no
  password is set) and the DNS server answering every name with its
  address;
- while open: polls the DNS server every OPEN_STEP_MS, at most
  dns_server.MAX_PER_TURN datagrams per turn;
- where web.enabled is off (`pages` set by app.py): the web pages
  (net/web.py: the setup wizard) served while it is open, whatever opened
  it, and stopped (the port closed, their heap given back) when it closes;
- on closing: net/captive.close_ap(), and both modules unloaded.

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
        # (app, context, web section) where web.enabled is off: the pages are
        # served while the access point is open (net/captive.start_pages).
        self.pages = None
        self.web = None  # net/web.Web while captive.start_pages serves it
        self.web_task = None  # its task

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
        """The portal task: step every STEP_MS, every OPEN_STEP_MS while open; closes what it opened when cancelled."""
        platform = self.platform
        try:
            while True:
                self.step(platform.ticks_ms())
                await platform.sleep_ms(OPEN_STEP_MS if self.ip is not None else STEP_MS)
        finally:
            if self.ip is not None:
                self._close()

    def _open(self):
        # net/captive.py (the access point's start and the DNS server) is
        # loaded only now: a device that never opens it never holds its code.
        from chargeguard.net import captive

        if not captive.open_ap(self):
            self._failed_ms = self.platform.ticks_ms()
            del captive
            _unload("chargeguard.net.captive")

    def _close(self):
        from chargeguard.net import captive

        captive.close_ap(self)
        del captive
        _unload("chargeguard.net.captive")


def _unload(name):
    import sys

    sys.modules.pop(name, None)
    cut = name.rfind(".")
    package = sys.modules.get(name[:cut])
    short = name[cut + 1 :]
    if package is not None and short in package.__dict__:
        delattr(package, short)


def make(platform, station, wifi_doc, first_boot, log=print):
    """The Portal app.py runs: `station` the WifiLink or None, `wifi_doc` the validated wifi section.

    It opens at once (needs_setup) on first boot (no valid configuration)
    or with no Wi-Fi configured and no network at all: the device cannot be
    reached otherwise.
    """
    if not hasattr(platform, "ap_start"):
        # The unix port keeps these calls out of its always-loaded module.
        from chargeguard.platform import unix_ap

        unix_ap.attach(platform)
    ssid = wifi_doc["ssid"]
    needs_setup = first_boot or (not ssid and not platform.network_up())
    return Portal(platform, station, ap_name(platform), wifi_doc.get("ap_password", ""), needs_setup, bool(ssid), log)


def open_later(app):
    """App.watch_wifi's portal, made once the Wi-Fi has been lost (app.portal_later set); False when no heap for it.

    Opens at its first step (its ApMode counts the loss from
    app.wifi_up_ms), serves the pages as a portal made at boot does, and
    runs as the app's supervised task "portal" when the app's tasks run.
    Here, not in app.py: this runs once, and its code is then not kept on
    the running controller's heap before.
    """
    password, context, web_doc = app.portal_later
    try:
        if type(context) is tuple:
            # Only the parts were kept at boot (appinit.py: nothing else
            # needed the context then): made now, by attach.py, loaded for it.
            from chargeguard import attach

            try:
                context = attach.later_context(app, context)
            finally:
                del attach
                _unload("chargeguard.attach")
        portal = make(app.platform, app.network, {"ssid": app.network.ssid, "ap_password": password}, False, app.log)
    except MemoryError:
        return False
    app.portal_later = None
    portal.mode.up_ms = app.wifi_up_ms
    for name, interface in app.interfaces:
        if name == "web":
            interface.portal = portal  # its captive redirects
    if context is not None:
        context["portal"] = portal
        portal.pages = (app, context, web_doc)
    app.portal = portal
    if app.tasks:  # run() has started them (the supervisor's call)
        import asyncio

        app.tasks.append(asyncio.create_task(app._supervised("portal", portal.run)))
    return True


def ap_name(platform):
    """The access point's SSID: "ChargeGuard-" and the last 4 hex digits of the MAC (platform.device_id())."""
    return "ChargeGuard-" + platform.device_id()
