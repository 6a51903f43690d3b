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
setup_web(...): the web pages while setting up (app.py calls it at boot).
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

    server = portal.dns
    portal.dns = None
    if server is not None:
        server.close()
    _unload("chargeguard.net.dns_server")
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


def setup_web(app, platform, log, context, web_doc):
    """Serve the web pages for setup on a device with no valid configuration, whatever web.enabled says.

    Best effort: a heap that cannot take them (a plain ESP32 running .mpy
    files) must not stop the guard, so on MemoryError their modules and the
    site state and command API they made are given back, and the access
    point opens without pages (said on the console).
    """
    import gc

    try:
        gc.collect()
        from chargeguard.net import web

        app.interfaces.append(("web", web.from_config({"enabled": True, "port": web_doc.get("port", 80)}, platform, log, context)))
    except MemoryError:
        web = None
        app.state = app.api = None
        for name in ("chargeguard.net.web", "chargeguard.commands", "chargeguard.rules", "chargeguard.state", "microdot.microdot", "microdot"):
            _unload(name)
        gc.collect()
        log("portal: not enough heap for the setup pages (the frozen image has room); the access point opens without them")


def _unload(name):
    # Gives a module's heap back (imported afresh when needed again).
    import sys

    sys.modules.pop(name, None)
    cut = name.rfind(".")
    parent = sys.modules.get(name[:cut]) if cut > 0 else None
    short = name[cut + 1 :]
    if parent is not None and short in parent.__dict__:
        delattr(parent, short)
