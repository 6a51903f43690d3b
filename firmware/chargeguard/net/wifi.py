"""The Wi-Fi station link: join at boot, rejoin after every drop with backoff, never block.

`WifiLink(platform, ssid, password, hostname, static, log)` is a small state
machine. `step(now_ms)` makes one move and calls only platform methods that
return at once (wifi_start, wifi_begin, wifi_status, wifi_stop); `run()` is
the network task: it steps every POLL_MS for the life of the firmware, so
association, DHCP and the waits between attempts never hold up the guard.

States (`state`):
    "off"       no SSID: nothing is tried (app.build() makes no WifiLink then)
    "joining"   an attempt is under way (association, then DHCP); it ends
                "up", or early on a reason the driver reports (wrong
                password, access point not found), or after JOIN_TIMEOUT_MS
    "waiting"   after a failed attempt or a drop; the next attempt starts
                after `backoff_ms`
    "up"        connected with an address

Backoff: the first attempt after a drop follows RETRY_FIRST_MS later (a home
access point that restarts is back within seconds); each failed attempt
doubles the wait, up to RETRY_MAX_MS, so a long outage costs one attempt a
minute. A join resets it.

Counters: `attempts` (joins started), `joins` (joins that reached "up"),
`reconnects` (joins after the first: the link came back after a loss),
`drops` (losses of an "up" link). `problem` is the last failure in words.

Console: one line on every change of state, and a status line every
REPORT_MS while up. The password is handed to the platform and nowhere
else: never logged, never in a status or an error.
"""

from micropython import const

POLL_MS = const(250)  # how often the task looks at the link
JOIN_TIMEOUT_MS = const(20000)  # association + DHCP; an ESP32 joins in 2-5 s on a sane network
RETRY_FIRST_MS = const(1000)  # first attempt after a drop or a failed boot join
RETRY_MAX_MS = const(60000)  # the backoff's ceiling
REPORT_MS = const(60000)  # status line period while up
_IDLE_SLEEP_MS = const(3600000)  # no SSID: the task only sleeps


class WifiLink:
    """The station link's state machine (see the module doc)."""

    def __init__(self, platform, ssid, password, hostname="", static=None, log=print):
        self.platform = platform
        self.ssid = ssid
        self._password = password
        self.hostname = hostname
        # (ip, netmask, gateway, dns) for a fixed address, None for DHCP.
        self.static = static
        self.log = log
        self.state = "off"
        self.attempts = 0
        self.joins = 0
        self.reconnects = 0
        self.drops = 0
        self.problem = None
        self.backoff_ms = RETRY_FIRST_MS
        self._since_ms = 0  # start of the attempt, or of the wait
        self._wait_ms = 0  # length of the current wait
        self._report_ms = 0
        self._started = False  # the station is active (platform.wifi_start done)

    def is_up(self):
        """True while the link is up (connected with an address)."""
        return self.state == "up"

    def start(self, now_ms):
        """Activate the station and start the first join (with no SSID, stay "off")."""
        if not self.ssid:
            return
        how = "static %s" % self.static[0] if self.static else "DHCP"
        self.log("wifi: joining '%s' as %s (%s)" % (self.ssid, self.hostname or "-", how))
        self._begin(now_ms)

    def step(self, now_ms):
        """One move of the state machine at `now_ms` (ticks); never waits."""
        state = self.state
        if state == "off":
            return
        platform = self.platform
        if state == "waiting":
            if platform.ticks_diff(now_ms, self._since_ms) >= self._wait_ms:
                self._begin(now_ms)
            return
        link = platform.wifi_status()
        if state == "up":
            if link != "up":
                self.drops += 1
                # A drop is news, not a failure: the first attempt comes soon.
                self.backoff_ms = RETRY_FIRST_MS
                platform.wifi_stop()
                self._wait(now_ms, "connection lost")
            elif platform.ticks_diff(now_ms, self._report_ms) >= REPORT_MS:
                self._report_ms = now_ms
                self.log(self.status_text())
            return
        # joining
        if link == "up":
            self.state = "up"
            self.joins += 1
            if self.joins > 1:
                self.reconnects += 1
            self.problem = None
            self.backoff_ms = RETRY_FIRST_MS
            self._report_ms = now_ms
            self.log(self.status_text())
            return
        problem = _problem(link)
        if problem is None and platform.ticks_diff(now_ms, self._since_ms) >= JOIN_TIMEOUT_MS:
            problem = "no connection within %d s" % (JOIN_TIMEOUT_MS // 1000)
        if problem is not None:
            # Stops the driver's own attempts, so the next one starts clean.
            platform.wifi_stop()
            self._wait(now_ms, problem)

    def status_text(self):
        """The console line while up: SSID, address, signal, reconnect count (never the password)."""
        platform = self.platform
        rssi = platform.wifi_rssi()
        return "wifi: connected to '%s', ip %s, rssi %s, reconnects %d" % (
            self.ssid,
            platform.ip_address(),
            "n/a" if rssi is None else "%d dBm" % rssi,
            self.reconnects,
        )

    async def run(self):
        """The network task: start, then step every POLL_MS forever."""
        platform = self.platform
        self.start(platform.ticks_ms())
        while True:
            if self.state == "off":
                await platform.sleep_ms(_IDLE_SLEEP_MS)
                continue
            self.step(platform.ticks_ms())
            await platform.sleep_ms(POLL_MS)

    # -- helpers ------------------------------------------------------------

    def _begin(self, now_ms):
        self.state = "joining"
        self._since_ms = now_ms
        self.attempts += 1
        if not self._started:
            try:
                self.platform.wifi_start(self.hostname, self.static)
            except (OSError, ValueError) as error:
                # A bad static address or a driver hiccup: tried again at
                # the next attempt; the guard does not depend on it.
                self._wait(now_ms, "cannot start the station (%s)" % _why(error))
                return
            self._started = True
        try:
            self.platform.wifi_begin(self.ssid, self._password)
        except OSError as error:
            self._wait(now_ms, "the radio refused to connect (%s)" % _why(error))

    def _wait(self, now_ms, problem):
        self.state = "waiting"
        self.problem = problem
        self._since_ms = now_ms
        self._wait_ms = self.backoff_ms
        self.backoff_ms = min(self.backoff_ms * 2, RETRY_MAX_MS)
        self.log(
            "wifi: %s '%s': %s; next try in %d s (reconnects %d)"
            % (
                "lost" if problem == "connection lost" else "could not join",
                self.ssid,
                problem,
                (self._wait_ms + 999) // 1000,
                self.reconnects,
            )
        )


def _problem(link):
    # A failed join in the platform's words (wifi_status()) in the console's, or None.
    if link == "wrong_password":
        return "wrong password"
    if link == "handshake":
        return "handshake failed (wrong password or weak signal)"
    if link == "no_ap":
        return "access point not found"
    if link == "failed":
        return "refused by the access point"
    return None


def _why(error):
    # An errno or the exception's type: never the arguments as given (a
    # driver could echo what it was handed).
    args = error.args
    if args and type(args[0]) is int:
        return "errno %d" % args[0]
    return type(error).__name__


def from_config(wifi_doc, platform, log=print):
    """A WifiLink for a validated config["wifi"] section (see config.py for the keys)."""
    static = None
    ip = wifi_doc.get("ip", "")
    if ip:
        gateway = wifi_doc.get("gateway", "")
        static = (ip, wifi_doc.get("netmask", "255.255.255.0"), gateway, wifi_doc.get("dns", "") or gateway)
    return WifiLink(
        platform,
        wifi_doc.get("ssid", ""),
        wifi_doc.get("password", ""),
        wifi_doc.get("hostname", ""),
        static,
        log,
    )
