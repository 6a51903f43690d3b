"""The setup wizard's requests (docs/api.md, "Setup"): Wi-Fi scan and trial join, a live reading of a
candidate meter, one read of a wallbox, and the finish that stores the whole configuration.

Loaded by net/web.py for one request and unloaded after it (web._admin):
the running controller never keeps this code. Each handler is
`async on_<step>(web, request, body)` and answers a JSON-ready dict, or
(dict, status); errors are {"errors": {path: message}} with paths of the
configuration ("meter.host", "chargers.2.host", "wifi.ssid", "").

Bounds: one meter or charger test at a time (web.testing; another gets
409); a candidate meter driver runs at most METER_TEST_MS and is then
cancelled and its port closed; a wallbox is read once with the drivers'
own deadline (CHARGER_TEST_MS). A trial join runs as a task for at most
net/wifi.JOIN_TIMEOUT_MS and keeps its password only on `web`, for the
finish: the credentials reach the configuration only once a join worked.
"""

from micropython import const

import asyncio

METER_TEST_MS = const(11000)  # a DSMR 4 meter sends a telegram every 10 s
CHARGER_TEST_MS = const(2000)  # app.CHARGER_TIMEOUT_MS: one request to a box
_STEP_MS = const(250)
_CAR = ("unknown", "none", "connected", "charging")


def _refuse(path, message, status=422):
    return {"errors": {path: message}}, status


# -- state -----------------------------------------------------------------


async def on_state(web, request, body):
    """What the wizard needs to start: is a password set (then every step needs it), the trial join, the version."""
    state = web.state
    return {
        "password_set": bool(web._secret),
        "chargers": len(state.chargers),
        "can_scan": _scan_problem(web) is None,
        "join": web.join,
        "version": state.version,
        "ip": state.ip,
    }


# -- Wi-Fi -------------------------------------------------------------------


def _scan_problem(web):
    platform = web.platform
    if platform is None or not hasattr(platform, "wifi_scan"):
        return "this platform cannot scan: type the network's name"
    if web.state.chargers:
        # On the ESP32 a scan holds the loop for about 2 s: never while chargers are guarded.
        return "a scan would pause the guard for about 2 s while chargers are configured: type the network's name"
    return None


async def on_scan(web, request, body):
    """{"networks": [{"ssid", "rssi", "secured"}]}, strongest first (409 when a scan is not allowed now)."""
    problem = _scan_problem(web)
    if problem is not None:
        return _refuse("wifi.ssid", problem, 409)
    try:
        rows = web.platform.wifi_scan()
    except OSError as error:
        return _refuse("wifi.ssid", "the radio could not scan (errno %s)" % (error.args[0] if error.args else "?"), 503)
    return {"networks": [{"ssid": row[0], "rssi": row[1], "secured": row[2]} for row in rows[:20]]}


async def on_wifi(web, request, body):
    """GET: the trial join's state; POST {"ssid", "password"}: start one (202), its outcome by GET."""
    if body is None:
        return web.join or {"state": "none"}
    from chargeguard import rules

    ssid = body.get("ssid")
    password = body.get("password", "")
    errors = {}
    if type(ssid) is not str or not ssid or len(ssid.encode()) > 32:
        errors["wifi.ssid"] = "must be the network's name, 1 to 32 bytes (is %s)" % rules.show(ssid)
    if type(password) is not str or (password and not 8 <= len(password) <= 63):
        errors["wifi.password"] = "must be empty (an open network) or 8 to 63 characters"
    if errors:
        return {"errors": errors}, 422
    platform = web.platform
    if platform is None or not hasattr(platform, "wifi_begin"):
        return _refuse("wifi.ssid", "this platform has no Wi-Fi", 409)
    if web.join is not None and web.join.get("state") == "joining":
        return _refuse("wifi.ssid", "a join is already under way", 409)
    from chargeguard.net import wifi

    web.join = {"ssid": ssid, "state": "joining", "problem": None, "ip": None}
    web.join_secret = None
    try:
        platform.wifi_start("", None)
        platform.wifi_begin(ssid, password)
    except (OSError, ValueError) as error:
        web.join = {"ssid": ssid, "state": "failed", "problem": "the radio refused to connect (%s)" % wifi._why(error), "ip": None}
        return web.join, 200
    asyncio.create_task(_watch_join(web, platform, password, wifi._problem, wifi.JOIN_TIMEOUT_MS))
    web.log("web: setup: joining '%s' to try it" % ssid)
    return web.join, 202


async def _watch_join(web, platform, password, problem_of, timeout_ms):
    # Follows the trial join until it is up, fails (net/wifi.py's words for
    # the platform's status) or times out.
    started = platform.ticks_ms()
    join = web.join
    while True:
        await platform.sleep_ms(_STEP_MS)
        link = platform.wifi_status()
        if link == "up":
            join["state"] = "up"
            join["ip"] = platform.ip_address()
            web.join_secret = password  # kept for the finish only
            web.log("web: setup: joined '%s', ip %s" % (join["ssid"], join["ip"]))
            return
        problem = problem_of(link)
        if problem is None and platform.ticks_diff(platform.ticks_ms(), started) >= timeout_ms:
            problem = "no connection within %d s" % (timeout_ms // 1000)
        if problem is not None:
            platform.wifi_stop()
            join["state"] = "failed"
            join["problem"] = problem
            web.log("web: setup: could not join '%s': %s" % (join["ssid"], problem))
            return


# -- candidates: checked against the configuration's own rules ---------------


def _candidate(web, section, value, prefix, site_phases=None):
    # {"value": normalised value, "running": the meter section in force} or
    # {"errors": ...}: a document of the site's phases (site_phases, else the
    # ones in force) and `section` alone, checked by config.py; only errors
    # under `prefix` count (the rest is the wizard's later steps). The meter in
    # force and the phases come from the app's context (web.running_meter);
    # without it the stored document is read and dropped before the check.
    import gc
    import sys

    from chargeguard.net.web import _errors, _forget_since

    # The validator and what it imports are given back before the check's
    # live part (a driver started, a box polled): never both on the heap.
    before = list(sys.modules)
    try:
        from chargeguard import config

        running = None
        if section == "chargers":
            # The charger's phases are checked against the site at the finish;
            # nothing stored is needed (the stored document, completed with
            # the defaults, is the largest thing a check would hold).
            doc = {"site": {"phases": 3}, "chargers": [value]}
        else:
            running = web.running_meter
            phases = web.site_phases
            if running is None:
                # A Web made without the app's context: the stored document.
                current = config.load(web.storage)[0]
                running = current["meter"]
                phases = current["site"]["phases"]
                current = None
                gc.collect()
            doc = {"site": {"phases": site_phases or phases}, section: value}
        normal, problems = config.check(doc, 10)
    except MemoryError:
        return _errors(503, "", "not enough memory to check this now: restart the controller and try again")
    finally:
        config = doc = None
        _forget_since(before)
        before = None
    errors = {}
    for path, message in problems:
        if path.startswith(prefix) or path == section:
            errors[path] = message
    if errors:
        return {"errors": errors}
    return {"value": normal["chargers"][0] if section == "chargers" else normal[section], "running": running,
            "site": normal["site"]}


def _same_port(candidate, running):
    # Both on the board's P1 UART, both the one ATM90E32 on its SPI pins (a
    # candidate's start-up would reset the running chip and leave its gains
    # in it), or both Modbus RTU on its RS485 port.
    if candidate["type"] != running.get("type"):
        return False
    if candidate["type"] in ("p1", "atm90e32"):
        return True
    return candidate["type"] == "modbus" and not candidate.get("host") and not running.get("host")


def _reading(reading, source):
    phases = reading.phase_count
    return {
        "source": source,
        "phases": phases,
        "current_ma": list(reading.current_ma[:phases]),
        "power_w": list(reading.power_w[:phases]),
        "voltage_mv": list(reading.voltage_mv[:phases]),
        "import_w": reading.import_w,
        "export_w": reading.export_w,
    }


async def on_meter(web, request, body):
    """{"meter": a meter section, "phases": 1 or 3[, "known_ma": [L1, L2, L3]]} -> a live reading per phase of
    that meter, or why there is none.

    "known_ma" (CT clamps and the ATM90E32): the currents (mA, null = not
    calibrated) of a known load on each phase; the answer then adds
    "calibration": {"meter.factor_ua_lN" / "meter.igain_lN": the word that
    makes that phase read the known current}, to be saved through the
    settings like any field.

    "phases" is the site's phase count chosen on the same step (site.phases;
    absent: the stored one): a one-phase meter model is checked against the
    site it is for, not against a first boot's default three phases.
    The running meter's reading when the section is the one in force; else
    the candidate's driver is started for at most METER_TEST_MS (not on the
    port the running meter holds: 409).
    """
    section = body.get("meter")
    if type(section) is not dict:
        return _refuse("meter", "must be the meter section, e.g. {\"type\": \"p1\"}")
    if web.testing:
        return _refuse("", "another test is running: try again in a moment", 409)
    from chargeguard.drivers import METER_MODULES

    # The driver's code first, into the heap as it is: the validator's load
    # and unload below leaves it in pieces (measured: a 1.3 KB block missing
    # on the 64-bit port with 70 KB free).
    module = _driver(METER_MODULES, section.get("type"))
    phases = body.get("phases")
    if phases is not None and (type(phases) is not int or phases not in (1, 3)):
        return _refuse("site.phases", "must be 1 or 3 (is %r)" % (phases,))
    checked = _candidate(web, "meter", section, "meter.", phases)
    if type(checked) is not dict:
        return checked  # no memory to load the validator (503)
    if "errors" in checked:
        return checked, 422
    candidate = checked["value"]
    running = checked["running"]
    # The meters that size themselves to the site (CT clamps, HAN, ATM90E32)
    # get its phases and (default) voltage, as at boot.
    site = {"site": checked["site"]}
    checked = None
    if candidate["type"] == "mqtt":
        # Its broker is the mqtt section's, set up on a later step: a second
        # MQTT connection for a check would hold as much heap as the link.
        return _refuse("meter.type", "an MQTT-fed meter is read once its broker is set up: finish, then see the"
                       " status page")
    known = body.get("known_ma")
    if known is not None:
        problem = _known_problem(candidate, known)
        if problem:
            return _refuse("known_ma", problem)
    platform = web.platform
    state = web.state
    web.testing = True
    try:
        if candidate == running:
            answer = await _running_reading(state, platform)
            return answer if known is None or type(answer) is not dict else _calibrate(candidate, answer, known)
        if _same_port(candidate, running):
            return _refuse(
                "meter.type",
                "the running meter holds that port with other settings: finish the wizard with these, then check the"
                " reading on the status page",
                409,
            )
        answer = await _candidate_reading(candidate, platform, module, site)
        return answer if known is None or type(answer) is not dict else _calibrate(candidate, answer, known)
    finally:
        web.testing = False


# The calibration against a known load: a meter whose current scales with one
# word per phase (CT clamps: factor_ua_lN, the primary uA of one ADC step;
# the ATM90E32: igain_lN) reads `known` mA with word x known / read.
_CALIBRATED = {"ct": "factor_ua_l%d", "atm90e32": "igain_l%d"}
_WORD_RANGE = {"ct": (100, 500000), "atm90e32": (1, 65535)}


def _known_problem(section, known):
    if section["type"] not in _CALIBRATED:
        return "calibration against a known load is for CT clamps and the ATM90E32 (is %s)" % section["type"]
    if type(known) is not list or not 1 <= len(known) <= 3:
        return "must be a list of up to 3 currents in mA (L1, L2, L3), null for a phase left as it is"
    for value in known:
        if value is not None and (type(value) is not int or not 100 <= value <= 1000000):
            return "each must be null or the known load's current in mA, 100-1000000 (is %r)" % (value,)
    return None


def _calibrate(section, answer, known):
    # The reading's answer plus "calibration": {"meter.<word>": the new word}
    # for each phase given a known current; a phase that reads nothing, or a
    # word out of range, is refused under known_ma with the reason.
    kind = section["type"]
    if kind == "ct":
        from chargeguard.meters.ct_meter import factors

        words = factors(section)
    else:
        words = [section["igain_l%d" % n] for n in (1, 2, 3)]
    found = {}
    for index in range(min(len(known), answer["phases"])):
        if known[index] is None:
            continue
        read = abs(answer["current_ma"][index])
        if read < 100:
            return _refuse("known_ma", "L%d reads %d mA: put the known load on that phase first" % (index + 1, read))
        word = words[index] * known[index] // read
        if word * 4 > words[index] * 5 or word * 4 < words[index] * 3:
            # More than 25 % off: clamps and gains are not that far out; a
            # known current of one appliance given while the phase carries
            # more would make the guard under-read that phase for good.
            return _refuse("known_ma", "L%d reads %d mA, %d mA given: more than 25 %% apart. Give the current of the"
                           " whole phase (a clamp meter around the same conductor, or everything else switched off);"
                           " if that is right, check turns, burden_ohm and vref_mv" % (index + 1, read, known[index]))
        low, high = _WORD_RANGE[kind]
        if not low <= word <= high:
            return _refuse("known_ma", "L%d would need %s %d, out of its range: check the clamp and the wiring"
                           % (index + 1, _CALIBRATED[kind] % (index + 1), word))
        found["meter." + _CALIBRATED[kind] % (index + 1)] = word
    answer["calibration"] = found
    return answer


async def _running_reading(state, platform):
    started = platform.ticks_ms()
    while True:
        if state.have_reading and not state.failsafe:
            return _reading(state.reading, "running")
        if platform.ticks_diff(platform.ticks_ms(), started) >= METER_TEST_MS:
            return _refuse("meter", "the meter in use gave no reading within %d s" % (METER_TEST_MS // 1000))
        await platform.sleep_ms(_STEP_MS)


def _driver(table, kind):
    # The driver module of a meter or charger type, None for an unknown type
    # (the validator then says so); net/web._admin unloads it after the request.
    import gc

    name = table.get(kind) if type(kind) is str else None
    if type(name) is tuple:
        name = name[0]  # a charger's row: (driver, its rules module)
    if name is None:
        return None
    gc.collect()
    return __import__(name, None, None, [name.split(".")[-1]])


async def _candidate_reading(section, platform, module, doc):
    import gc

    try:
        if section["type"] in ("ct", "han", "atm90e32"):
            meter = module.from_config(section, platform, doc)
        else:
            meter = module.from_config(section, platform)
    except (OSError, ValueError) as error:
        why = error.args[-1] if error.args and isinstance(error.args[-1], str) else repr(error)
        return _refuse("meter.type", "cannot start this meter: %s" % why)
    got = asyncio.Event()
    task = asyncio.create_task(meter.run(got.set))
    try:
        await asyncio.wait_for(got.wait(), METER_TEST_MS / 1000)
        return _reading(meter.reading, "candidate")
    except asyncio.TimeoutError:
        why = getattr(meter, "last_error", None) or "nothing came"
        return _refuse("meter", "no reading within %d s: %s" % (METER_TEST_MS // 1000, why))
    finally:
        task.cancel()
        try:
            await task
        except BaseException:  # noqa: B036 (its CancelledError, or what ended it)
            pass
        _close_meter(meter)
        meter = task = None
        gc.collect()


def _close_meter(meter):
    # The candidate's port: the P1 UART, the RS485 UART or the Modbus TCP
    # socket (an HTTP meter closes its connection per request itself).
    things = [getattr(meter, "_uart", None)]
    master = getattr(meter, "master", None)
    link = getattr(master, "link", None)
    things.append(getattr(link, "uart", None))
    things.append(getattr(link, "_sock", None))
    for thing in things:
        if thing is not None:
            try:
                thing.close()
            except OSError:
                pass


# -- chargers ------------------------------------------------------------------


async def on_charger(web, request, body):
    """{"charger": an entry, "index": N} -> what the box answered to one read (its driver's poll)."""
    entry = body.get("charger")
    index = body.get("index", 0)
    if type(entry) is not dict:
        return _refuse("chargers", "must be a charger entry, e.g. {\"type\": \"v2c_trydan\", \"host\": \"192.168.1.60\"}")
    if type(index) is not int or not 0 <= index < 8:
        return _refuse("", "index must be 0 to 7")
    if web.testing:
        return _refuse("", "another test is running: try again in a moment", 409)
    from chargeguard.drivers import CHARGER_MODULES

    module = _driver(CHARGER_MODULES, entry.get("type", "v2c_trydan"))  # before the validator (see on_meter)
    checked = _candidate(web, "chargers", entry, "chargers.0.")
    if type(checked) is not dict:
        return checked
    if "errors" in checked:
        errors = {}
        for path in checked["errors"]:
            errors[path.replace("chargers.0.", "chargers.%d." % index, 1)] = checked["errors"][path]
        return {"errors": errors}, 422
    entry = checked["value"]
    checked = None
    import gc

    web.testing = True
    driver = None
    try:
        gc.collect()
        driver = module.from_config(entry, web.platform, CHARGER_TEST_MS)
        try:
            await asyncio.wait_for(driver.poll(), 2 * CHARGER_TEST_MS / 1000)
        except asyncio.TimeoutError:
            pass
        status = driver.status
        return {
            "reachable": status.reachable,
            "error": status.error if not status.reachable or status.error else None,
            "car": _CAR[status.car] if 0 <= status.car < len(_CAR) else "unknown",
            "current_ma": list(status.current_ma),
            "offered_ma": status.offered_ma,
            "power_w": status.power_w,
            "locked": status.locked,
        }
    finally:
        web.testing = False
        driver = None
        gc.collect()


# -- finish ---------------------------------------------------------------------


async def on_finish(web, request, body):
    """A whole configuration from the wizard: the admin password required, the Wi-Fi only as joined; stored
    through the configuration's validator (all or nothing), then the controller restarts.

    Answers {"stored": true, "restarting": true, "address": where to find the device next, "ssid",
    "mdns": "http://<wifi.hostname>.local/" where the platform answers that name (platform `mdns`:
    the ESP32's own responder) and the device joins a network, else None}.
    """
    from chargeguard.net.web import _with_config

    join = web.join
    secret = web.join_secret

    def work(config, current):
        doc = config.restore_secrets(body, current)
        errors = {}
        admin = doc.get("admin")
        if type(admin) is not dict or not admin.get("password"):
            errors["admin.password"] = "required: choose the admin password (8 to 64 characters); there is no default"
        wifi = doc.get("wifi")
        if type(wifi) is dict and wifi.get("ssid"):
            ssid = wifi["ssid"]
            if join is not None and join["state"] == "up" and join["ssid"] == ssid and secret is not None:
                wifi["password"] = secret
            elif ssid != current["wifi"]["ssid"]:
                errors["wifi.ssid"] = "join %s first (Wi-Fi step): the credentials are kept only once a join worked" % ssid
        if errors:
            return {"errors": errors}
        return doc

    doc = _with_config(web.storage, work)
    if type(doc) is not dict:
        return doc
    if "errors" in doc:
        return doc, 422
    answer = web.store(doc)
    if type(answer) is not dict:
        return answer  # refused (422) or no memory (503)
    ssid = doc["wifi"]["ssid"] if type(doc.get("wifi")) is dict else ""
    ip = join["ip"] if join is not None and join["state"] == "up" and join["ssid"] == ssid else web.state.ip
    answer["ssid"] = ssid
    port = "" if web.port == 80 else ":%d" % web.port
    answer["address"] = None if not ip else "http://%s%s/" % (ip, port)
    hostname = doc["wifi"].get("hostname") if type(doc.get("wifi")) is dict else None
    mdns = ssid and hostname and getattr(web.platform, "mdns", False)
    answer["mdns"] = "http://%s.local%s/" % (hostname, port) if mdns else None
    web.join_secret = None
    return answer


# -- options -----------------------------------------------------------------------


async def on_options(web, request, body):
    """The choices the pages offer, from the firmware's own tables (so they never drift from the validator)."""
    import sys

    from chargeguard.drivers import CHARGER_MODULES, METER_MODULES

    out = {"meter_types": sorted(METER_MODULES), "charger_types": sorted(CHARGER_MODULES), "models": {}}
    for kind, name in (("modbus", "chargeguard.meters.modbus_models"), ("http", "chargeguard.meters.http_models")):
        loaded = name in sys.modules
        try:
            module = __import__(name, None, None, ["MODELS"])
            out["models"][kind] = sorted(module.MODELS)
        except ImportError:
            continue
        finally:
            module = None
            if not loaded:
                sys.modules.pop(name, None)
                package = sys.modules.get("chargeguard.meters")
                short = name.split(".")[-1]
                if package is not None and short in package.__dict__:
                    delattr(package, short)
    return out
