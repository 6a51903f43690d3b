"""The unix port's stand-in for the setup access point (net/portal.py), loaded only where a portal is made.

The host has no radio: "opening" the access point records its name, and its
address is loopback, where the portal's web and DNS servers answer
(CHARGEGUARD_WEB_PORT, CHARGEGUARD_DNS_PORT). The host has no button: a
board.json whose "button" is a file's path (text) stands one in, held
while that file exists (the rehearsal and the system tests hold it so;
boards/unix.json has null: no button).
These calls are not in unix.py because every byte there is in the
simulator's heap for good, portal or not (a site whose access point can
never open never loads this).

attach(platform) gives a unix.Platform the calls esp32.Platform has:
device_id(), ap_start(ssid, password), ap_stop(), dns_address(),
button_pressed(now_ms) (docs/architecture.md, the platform).
"""

import os


def attach(platform):
    """Give `platform` (a unix.Platform) the access point's calls, as plain functions on the instance."""
    platform.ap_ssid = None  # the access point's name while "open"

    def ap_start(ssid, password):
        # The password is not kept.
        platform.ap_ssid = ssid
        return "127.0.0.1"

    def ap_stop():
        platform.ap_ssid = None

    platform.device_id = device_id
    platform.ap_start = ap_start
    platform.ap_stop = ap_stop
    platform.dns_address = dns_address
    path = platform.board.get("button") if hasattr(platform, "board") else None
    if type(path) is str:

        def pressed(now_ms):
            # The file's existence is the pin's level (nothing to debounce).
            try:
                os.stat(path)
                return True
            except OSError:
                return False

        platform.button_pressed = pressed
    else:
        platform.button_pressed = button_pressed


def device_id():
    """CHARGEGUARD_DEVICE_ID or "0000" (the device: the MAC's last 4 hex digits)."""
    return os.getenv("CHARGEGUARD_DEVICE_ID") or "0000"


def dns_address():
    """(host, port) of the portal's DNS server: loopback, CHARGEGUARD_DNS_PORT or 5353."""
    return "127.0.0.1", int(os.getenv("CHARGEGUARD_DNS_PORT") or 5353)


def button_pressed(now_ms):
    """False: the host has no button (boards/unix.json "button": null; a path there: see attach)."""
    return False
