"""The start-up's wiring of the interfaces and the setup pages to the App, once per boot.

appinit.py loads this module only when something is to be wired (an
enabled interface, the setup pages on an access point open at boot), and
net/portal.open_later when the access point opens after a lost Wi-Fi;
each unloads it afterwards: a site with neither (the guard, its meter and its chargers
alone, the plain ESP32's .mpy tier) never has this code on its heap, and
its names are not interned (docs/firmware.md, "The interfaces' wiring out
of startup.py"). As in appinit.py, nothing made here may refer to this
module's functions once it returns: the context holds the App's bound
methods and the start-up's objects only.
"""


def wire(app, platform, log, doc, interfaces, portal, first_boot, setup_web, pages):
    """The context every interface gets; each interface made; the setup pages hooked in.

    interfaces: [(config section name, its section of doc, its module)],
    the enabled interfaces' modules already imported (startup._parts);
    sets app.interfaces to [(section, the object from_config made)].
    portal: net/portal.Portal or None; setup_web: the setup pages are
    served by net/captive.py (web.enabled off while setting up);
    pages: an access point (the portal, or one opened later) serves them.
    Returns the context (a dict: hostname, site_state, command_api,
    charger_models, admin_password, first_boot, web_port, portal, meter,
    site_phases).
    """
    context = _context(
        app,
        doc["wifi"].get("hostname", "chargeguard"),
        [entry["type"] for entry in doc["chargers"]],
        doc["admin"]["password"],
        first_boot,
        # The web pages' port when they are served (Home Assistant's
        # configuration_url links to them), else None.
        doc["web"]["port"] if doc.get("web", {}).get("enabled") else None,
        portal,
        doc["meter"],
        doc["site"]["phases"],
    )
    app.interfaces = [
        (section, module.from_config(section_doc, platform, log, context))
        for section, section_doc, module in interfaces
    ]
    if setup_web:
        from chargeguard.net import captive

        captive.setup_web(app, platform, log, context, doc.get("web") or {})
    elif pages and portal is not None:
        portal.pages = (app, context, doc.get("web") or {})
    return context


def later_context(app, parts):
    """The context of a portal made once the Wi-Fi was lost (net/portal.open_later), from the parts appinit.py kept.

    parts: (host name, the chargers' types, the admin password, the meter
    section, the site's phases), kept on app.portal_later where nothing else
    needed the context at boot. The web pages are not served by web.enabled
    then (else the context was made at boot), and the board was configured.
    Returns the context without its portal (the caller sets it).
    """
    hostname, models, password, meter, phases = parts
    return _context(app, hostname, models, password, False, None, None, meter, phases)


def _context(app, hostname, models, password, first_boot, web_port, portal, meter, phases):
    # What every interface gets besides its config section: the device's
    # host name, and the site state and command API as calls (each loaded
    # at its first call, so an interface pays only for what it uses).
    return {
        "hostname": hostname,
        "site_state": app.site_state,
        "command_api": app.command_api,
        "charger_models": models,
        # The web interface's password (a secret: never logged or returned).
        "admin_password": password,
        # Out of the box (no configuration stored): the setup wizard's
        # requests need no password until one is set; once a
        # configuration exists they need its admin password.
        "first_boot": first_boot,
        "web_port": web_port,
        # The setup access point (net/portal.Portal) or None: the web
        # interface redirects to the setup page while it is open.
        "portal": portal,
        # The meter section in force and the site's phases: the wizard's
        # meter check compares with them instead of reading the stored
        # document again (a few hundred bytes kept, not KBs per check).
        "meter": meter,
        "site_phases": phases,
    }
