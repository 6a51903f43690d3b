"""The setup access point while it opens and closes: the radio's network and the DNS server.

Loaded by net/portal.py only when the access point opens and unloaded when
it closes, so a device that never opens it never holds this code.

open_ap(portal): platform.ap_start(ssid, password) (network.WLAN(AP_IF) on
the ESP32), then net/dns_server.DnsServer on platform.dns_address(),
answering every name with the access point's address; sets portal.ip and
portal.dns. False when the access point would not start (the portal tries
again later). A DNS server that cannot be had (the port taken, no heap for
its buffer) is said and left out: the pages still answer by address.
close_ap(portal): the DNS server closed and unloaded, platform.ap_stop().
The password goes to the platform only: never logged.
"""


def open_ap(portal):
    """Start the access point and its DNS server for `portal` (net/portal.Portal); True when the access point is up."""
    platform = portal.platform
    log = portal.log
    try:
        portal.ip = platform.ap_start(portal.ssid, portal._password)
    except Exception as error:
        # Whatever the driver raises: the guard's loop goes on.
        log("portal: the access point could not start (%r); trying again shortly" % (error,))
        from chargeguard.core import apmode

        portal.mode.state = apmode.CLOSED  # opened again when the reason still holds
        return False
    portal.opened += 1
    log(
        "portal: access point '%s' open (%s, %s), address %s"
        % (portal.ssid, _why(portal.mode.reason), "password set" if portal._password else "no password", portal.ip)
    )
    host = port = None
    try:
        from chargeguard.net import dns_server

        host, port = platform.dns_address()
        server = dns_server.DnsServer(portal.ip, host, port)
        server.open()
    except (OSError, MemoryError) as error:
        log("portal: DNS server cannot listen on %s:%s (%r); the pages answer by address" % (host, port, error))
        return True
    portal.dns = server
    log("portal: DNS server on %s:%d answers every name with %s" % (host, port, portal.ip))
    return True


def close_ap(portal):
    """Close the DNS server and the access point of `portal`; never raises for the driver's sake."""
    import sys

    server = portal.dns
    portal.dns = None
    if server is not None:
        server.close()
    sys.modules.pop("chargeguard.net.dns_server", None)
    package = sys.modules.get("chargeguard.net")
    if package is not None and "dns_server" in package.__dict__:
        delattr(package, "dns_server")
    portal.ip = None
    try:
        portal.platform.ap_stop()
    except OSError:
        pass
    portal.log("portal: access point closed")


def _why(reason):
    # core/apmode.ApMode.reason in the console's words.
    if reason == "setup":
        return "no configuration yet"
    if reason == "button":
        return "button held"
    return "home Wi-Fi unreachable"
