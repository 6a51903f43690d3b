"""When the setup access point is open: a pure state machine, time passed in.

The device opens its own access point (and the captive portal on it) so an
owner can reach it from a phone with no other network:

- first boot: no valid configuration, or no Wi-Fi network configured (the
  device cannot be reached any other way). Reason "setup"; it stays open
  until setup finishes (finish(), or the restart that applies the new
  configuration) — a station that joins meanwhile (the wizard testing the
  credentials) does not close it.
- a long press of the board's button (held LONG_PRESS_MS without a release;
  the platform debounces the pin). Reason "button"; closed by finish(), or
  after BUTTON_IDLE_MS without a request from a client (seen()), so an
  access point opened by a stray press does not stay up for good.
- the configured Wi-Fi unreachable for WIFI_LOST_MS (counted from boot or
  from the last moment the station was up). Reason "wifi_lost"; closed as
  soon as the station is up again.

The station keeps trying its network while the access point is open (the
ESP32 runs both at once), and the guard keeps running on the local meter
through all of it: this only decides when the radio offers the portal.

`ApMode(needs_setup, has_wifi, now_ms)`; `step(now_ms, station_up,
pressed)` once per look (every STEP_MS or so) returns OPENED, CLOSED or
NOTHING; `state`: CLOSED / OPEN; `reason`: None, "setup", "button",
"wifi_lost". Nothing here allocates after construction.
"""

from micropython import const

from chargeguard.core.ticks import ticks_diff

# Held this long, the button opens the access point. Five seconds is what
# owners know from Shelly and WLED ("hold the button for 5 s"), and is far
# beyond an accidental bump or a contact's bounce.
LONG_PRESS_MS = const(5000)
# The configured network unreachable this long opens the access point. A
# home router restarting or updating its firmware is back within 2-5
# minutes; a portal opened for that would only confuse. Ten minutes means
# the network really changed (new router, new password): the owner then
# finds the device's own network on the phone instead of pulling the plug.
WIFI_LOST_MS = const(600000)
# An access point opened by the button closes after this long without a
# client request: setup from a phone takes a few minutes, and a stray press
# must not leave an open network up for good.
BUTTON_IDLE_MS = const(900000)

NOTHING = const(0)
OPENED = const(1)
CLOSED = const(2)
# state values
OPEN = const(1)


class ApMode:
    """The access point's open/closed decision (see the module doc)."""

    def __init__(self, needs_setup, has_wifi, now_ms):
        # needs_setup: no valid configuration or no Wi-Fi configured;
        # has_wifi: a station network is configured (its loss can open the AP).
        self.needs_setup = needs_setup
        self.has_wifi = has_wifi
        self.state = CLOSED
        self.reason = None
        self.up_ms = now_ms  # last moment the station was up (boot counts as up)
        self.press_ms = None  # start of the current press, None when released
        self.press_used = False  # this press already opened the access point
        self.seen_ms = now_ms  # last client request while open
        self.done = False  # finish() called: setup is over for this boot

    def seen(self, now_ms):
        """A client used the portal at `now_ms` (keeps a button-opened access point up)."""
        self.seen_ms = now_ms

    def finish(self):
        """Setup is over (the wizard stored the configuration): close at the next step, reopen only by a press."""
        self.done = True
        self.needs_setup = False

    def step(self, now_ms, station_up, pressed):
        """One look at `now_ms`: station_up (the station has an address), pressed (the debounced button is down).

        Returns OPENED when the access point should open now, CLOSED when it
        should close now, else NOTHING.
        """
        if station_up:
            self.up_ms = now_ms
        long_press = False
        if pressed:
            if self.press_ms is None:
                self.press_ms = now_ms
                self.press_used = False
            elif not self.press_used and ticks_diff(now_ms, self.press_ms) >= LONG_PRESS_MS:
                self.press_used = True
                long_press = True
        else:
            self.press_ms = None
        if self.state == CLOSED:
            if self.needs_setup:
                return self._open("setup", now_ms)
            if long_press:
                return self._open("button", now_ms)
            if self.has_wifi and not station_up and ticks_diff(now_ms, self.up_ms) >= WIFI_LOST_MS:
                return self._open("wifi_lost", now_ms)
            return NOTHING
        # open
        reason = self.reason
        if long_press:
            # Pressed again while open: the owner wants it now; it is a
            # button opening from here on (timeout from this press).
            self.reason = "button"
            self.seen_ms = now_ms
            self.done = False
            return NOTHING
        if self.done:
            return self._close(now_ms)
        if reason == "wifi_lost" and station_up:
            return self._close(now_ms)
        if reason == "button" and ticks_diff(now_ms, self.seen_ms) >= BUTTON_IDLE_MS:
            return self._close(now_ms)
        return NOTHING

    def _open(self, reason, now_ms):
        self.state = OPEN
        self.reason = reason
        self.seen_ms = now_ms
        return OPENED

    def _close(self, now_ms):
        self.state = CLOSED
        self.reason = None
        self.done = False
        # The lost-Wi-Fi count starts again from here, not from the last
        # join: a closed access point is not reopened at once.
        self.up_ms = now_ms
        return CLOSED
