"""The setup access point while it opens and closes: the radio's network and the DNS server.

Loaded by net/portal.py only when the access point opens and unloaded when
it closes, so a device that never opens it never holds this code.

open_ap(portal): platform.ap_start(ssid, password) (network.WLAN(AP_IF) on
the ESP32), then net/dns_server.DnsServer on platform.dns_address(),
answering every name with the access point's address; sets portal.ip and
portal.dns. False when the access point would not start (the portal tries
again later). A DNS server that cannot be had (the port taken, no heap for
its buffer) is said and left out: the pages still answer by address.
close_ap(portal): the pages (if it started them) and the DNS server closed
and unloaded, platform.ap_stop().
setup_web(...): the web pages while setting up (app.py calls it at boot).
start_pages(portal) / stop_pages(portal): the web pages while the access
point is open, where web.enabled is off (portal.pages set by app.py): the
button or a lost Wi-Fi opens the setup page too.
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
        portal.dns = server
        log("portal: DNS server on %s:%d answers every name with %s" % (host, port, portal.ip))
    except (OSError, MemoryError) as error:
        log("portal: DNS server cannot listen on %s:%s (%r); the pages answer by address" % (host, port, error))
    if portal.pages is not None:
        start_pages(portal)
    return True


def close_ap(portal):
    """Close the DNS server and the access point of `portal`; never raises for the driver's sake."""

    stop_pages(portal)
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

    They run for the whole boot as one of app.interfaces (setup ends with a
    restart). Best effort: see _start_web.
    """
    web = _start_web(app, platform, log, context, web_doc)
    if web is not None:
        app.interfaces.append(("web", web))


def start_pages(portal):
    """Serve the web pages (the setup wizard, settings, status) while the access point is open, whatever
    web.enabled says: an owner who holds the button to reconfigure gets the setup page.

    portal.pages is (app, context, web section), set by app.py where the
    pages are not served anyway (web.enabled off). The server runs as a task
    of its own (portal.web_task) until stop_pages(); best effort (_start_web).
    """
    import asyncio

    app, context, web_doc = portal.pages
    web = _start_web(app, portal.platform, portal.log, context, web_doc)
    if web is not None:
        portal.web = web
        portal.web_task = asyncio.create_task(_serve(web, portal.log))


def stop_pages(portal):
    """Stop the pages start_pages() started (the listener closes as the task ends) and give their heap back."""
    task = portal.web_task
    if task is None:
        return
    portal.web_task = portal.web = None
    task.cancel()
    app = portal.pages[0]
    # The site state and the command API stay when an enabled interface (MQTT) uses them.
    _give_back(app, not app.interfaces)
    portal.log("portal: setup pages closed")


async def _serve(web, log):
    # Like the app's supervised tasks: a failure is said and the server started again.
    import asyncio

    while True:
        try:
            await web.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log("portal: the setup pages failed (%r); restarting" % (error,))
            await asyncio.sleep(1)


def _start_web(app, platform, log, context, web_doc):
    # The web interface on the web section's port, or None when the heap
    # cannot take it (a plain ESP32 running .mpy files): that must not stop
    # the guard, so its modules and the site state and command API it made
    # are given back, and the access point stays open without pages (said
    # on the console).
    import gc

    try:
        gc.collect()
        from chargeguard.net import web

        return web.from_config({"enabled": True, "port": web_doc.get("port", 80)}, platform, log, context)
    except Exception as error:
        # MemoryError above all; anything else must not stop the access point either.
        web = None
        _give_back(app, not app.interfaces)
        if isinstance(error, MemoryError):
            log("portal: not enough heap for the setup pages (the frozen image has room); the access point opens without them")
        else:
            log("portal: the setup pages could not start (%r); the access point opens without them" % (error,))
    return None


def _give_back(app, state_too):
    # The pages' modules (imported afresh when needed again), and the site
    # state and command API with theirs when nothing else uses them.
    import gc

    names = ["chargeguard.net.web", "chargeguard.net.webadmin", "microdot.microdot", "microdot"]
    if state_too:
        app.state = app.api = None
        names += ["chargeguard.commands", "chargeguard.rules", "chargeguard.state"]
    for name in names:
        _unload(name)
    gc.collect()


def _unload(name):
    # Gives a module's heap back (imported afresh when needed again).
    import sys

    sys.modules.pop(name, None)
    cut = name.rfind(".")
    parent = sys.modules.get(name[:cut]) if cut > 0 else None
    short = name[cut + 1 :]
    if parent is not None and short in parent.__dict__:
        delattr(parent, short)
