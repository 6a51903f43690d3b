"""Home Assistant's entity tables and what is made from them: discovery payloads and /set commands.

net/hass.py loads this module while it announces (discover(), streamed one
entity at a time) and for each /set message (parse()), and drops it when
it is done: on a stock firmware a module's code and constant strings live
in the heap (about 8 KB here as .mpy), and a running site announces only
after a (re)connect. Nothing outside this module keeps a reference to its
functions once the generator ends. Topics, schema sources and the record
of what was announced (RECORD_FILE): net/hass.py's module doc.
"""

from chargeguard.net.hass import MAX_COMMAND

RECORD_FILE = "hass.json"
MANUFACTURER = "ChargeGuard"
MODEL = "ChargeGuard controller"

_SENSOR = "sensor"
_BINARY = "binary_sensor"
_NUMBER = "number"
_SELECT = "select"
_SWITCH = "switch"
_DIAG = "diagnostic"
_CONFIG = "config"
_MEAS = "measurement"
_TOTAL_INC = "total_increasing"

# Entity tables, one string each (a tuple per row would cost ~50 bytes of
# heap per entity; the rows are split only while announcing or for a
# command). Row: component (s sensor, b binary_sensor, n number, x select,
# w switch), object id (= its key in the section's JSON), name, device
# class, state class (m measurement, t total_increasing), unit, entity
# category (d diagnostic, c config), extra: a number's min:max:step (no max
# = the charger count) or the options, "|"-separated. Value conversions are
# in the payload writers (_site, _charger, _device).
SITE = (
    "s,current_l1,Grid current L1,current,m,A,,;"
    "s,current_l2,Grid current L2,current,m,A,,;"
    "s,current_l3,Grid current L3,current,m,A,,;"
    "s,power_l1,Grid power L1,power,m,W,,;"
    "s,power_l2,Grid power L2,power,m,W,,;"
    "s,power_l3,Grid power L3,power,m,W,,;"
    "s,import_power,Grid import power,power,m,W,,;"
    "s,export_power,Grid export power,power,m,W,,;"
    "s,import_energy,Grid import energy,energy,t,Wh,,;"
    "s,export_energy,Grid export energy,energy,t,Wh,,;"
    "s,month_peak,Month peak,power,m,W,,;"
    "s,headroom_l1,Headroom L1,current,m,A,,;"
    "s,headroom_l2,Headroom L2,current,m,A,,;"
    "s,headroom_l3,Headroom L3,current,m,A,,;"
    "s,breaker_limit,Breaker limit,current,,A,d,;"
    "b,failsafe,Failsafe,problem,,,,;"
    "s,telegram_age,Meter telegram age,duration,m,ms,d,;"
    "x,mode,Site mode,,,,c,off|fast|manual|eco|solar|excess;"
    "x,distribution,Distribution mode,,,,c,shared|priority|sequential_optimized|sequential_strict;"
    "w,eco,ECO,,,,c,;"
    "n,net_power_target_w,Net power target,power,,W,c,-100000:100000:10;"
    "n,peak_limit_w,Capacity peak limit,power,,W,c,0:500000:100;"
    "w,peak_follow_month,Peak limit follows month peak,,,,c,"
)
# Announced only while the optimiser is loaded (its figures do not exist otherwise).
OPTIMISER = (
    "s,surplus,Surplus power,power,m,W,,;"
    "s,quarter_average,Quarter-hour average power,power,m,W,,;"
    "s,quarter_budget,Quarter-hour energy left,,m,Wh,,;"
    "s,peak_limit,Capacity limit in force,power,m,W,,"
)
DEVICE = (
    "s,rssi,Wi-Fi signal,signal_strength,m,dBm,d,;"
    "s,ip,IP address,,,,d,;"
    "s,uptime,Uptime,duration,,s,d,;"
    "s,heap_used,Heap in use,data_size,m,B,d,;"
    "s,heap_free,Free heap,data_size,m,B,d,;"
    "s,reaction_time,Guard reaction time,duration,m,ms,d,;"
    "s,last_error,Last error,,,,d,;"
    "s,error_count,Errors,,t,,d,"
)
CHARGER = (
    "s,status,Status,enum,,,,unknown|disconnected|connected|charging;"
    "b,connected,Connected,plug,,,,;"
    "b,charging,Charging,battery_charging,,,,;"
    "b,reachable,Reachable,connectivity,,,d,;"
    "s,power,Charge power,power,m,W,,;"
    "s,session_energy,Session energy,energy,t,Wh,,;"
    "s,session_time,Session time,duration,m,s,,;"
    "s,energy_today,Energy today,energy,t,kWh,,;"
    "s,lifetime_energy,Lifetime energy,energy,t,kWh,,;"
    "s,offered_current,Offered current,current,m,A,,;"
    "s,reason,Reason,,,,,;"
    "s,last_update,Last update,duration,m,s,d,;"
    "s,error,Charger error,,,,d,;"
    "x,mode,Charging mode,,,,,site|off|fast|manual|eco|solar|excess;"
    "n,manual_a,Manual current,current,,A,,6:32:1;"
    "n,min_a,Minimum current,current,,A,c,6:32:1;"
    "n,max_a,Maximum current,current,,A,c,6:32:1;"
    "n,priority,Priority,,,,c,1::1;"
    "w,enabled,Charging enabled,,,,,;"
    "w,locked,Lock,,,,,"
)
# Announced only for a box of type "ocpp" (state.OcppLink; every other box gets
# empty configs for them: no dead entities). In the charger's state JSON; the
# timestamps are ISO 8601 UTC, null (unknown) while the device's clock is not
# set: Home Assistant's own last_changed still dates the texts.
OCPP = (
    "b,ocpp_connected,OCPP connected,connectivity,,,d,;"
    "s,connected_since,OCPP connected since,timestamp,,,d,;"
    "s,last_message,Last OCPP message,,,,d,;"
    "s,last_message_at,Last OCPP message at,timestamp,,,d,;"
    "s,last_refusal,Last OCPP refusal,,,,d,"
)
_SETTABLE = (_NUMBER, _SELECT, _SWITCH)
# Text, enum and timestamp sensors whose JSON value can be null. Home Assistant
# before 2024.10 reads a rendered "None" as a value for these (numeric sensors,
# binary sensors, switches, numbers and selects take it as unknown): the text
# "None", an invalid state of an enum, a warning per message for a timestamp.
# Their discovery adds an availability on their own state topic that goes
# offline while the value is null, so every version shows them unavailable then.
_NULLABLE_TEXT = ("status", "ip", "connected_since", "last_message_at")


def _decode(text):
    # One table row as (component, object, name, None, device class, state
    # class, unit, entity category, extra); "" fields as None.
    field = text.split(",")
    code = field[0]
    component = _SENSOR if code == "s" else _BINARY if code == "b" else _NUMBER if code == "n" else \
        _SELECT if code == "x" else _SWITCH
    state_class = _MEAS if field[4] == "m" else _TOTAL_INC if field[4] == "t" else None
    category = _DIAG if field[6] == "d" else _CONFIG if field[6] == "c" else None
    extra = field[7] or None
    if extra is not None:
        if component == _NUMBER:
            low, high, step = extra.split(":")
            extra = (int(low), int(high) if high else None, int(step))
        else:
            extra = tuple(extra.split("|"))
    return (component, field[1], field[2], None, field[3] or None, state_class, field[5] or None, category, extra)


def rows(table):
    """The rows of an entity table (SITE, OPTIMISER, DEVICE, CHARGER, OCPP), decoded one at a time."""
    # One row's text at a time, not table.split(";"): that list of every
    # row (1.3-1.5 KB for SITE or CHARGER) stayed live for the whole table,
    # during the announcement at start-up when the heap is fullest.
    start = 0
    while True:
        end = table.find(";", start)
        yield _decode(table[start:] if end < 0 else table[start:end])
        if end < 0:
            return
        start = end + 1


def _row(table, name):
    for row in rows(table):
        if row[1] == name:
            return row
    return None


def configuration_url(bridge):
    """The web pages' address for the device block (http://IP/ or http://IP:PORT/), None when not served or offline.

    bridge: a hass.Hass (its web_port and the site state's ip). Here, not in
    net/hass.py: only an announcement writes it.
    """
    port = bridge.web_port
    ip = bridge.state.ip
    if port is None or not ip:
        return None
    return "http://%s/" % ip if port == 80 else "http://%s:%d/" % (ip, port)


def discover(bridge):
    """Discovery of bridge (a hass.Hass) as a generator publishing one entity per step, removals first.

    Each next() publishes one retained config on bridge.link (written in
    place with bridge.begin()/send(), or queued) and yields None; the
    caller calls it only while bridge.out is ready().
    """
    link = bridge.link
    record = _read_record(bridge)
    opt = bridge.state.optimiser is not None
    bridge._opt_announced = opt
    recorded = record.get("chargers") or []
    new = [name for name in bridge.slugs if name not in recorded]
    if new or (opt and not record.get("optimiser")):
        # Recorded before it is announced: a restart in the middle of the
        # announcement still knows what Home Assistant may have, and can
        # remove it (else orphans, whose templates warn at every state).
        _write_record(bridge, {"chargers": recorded + new, "optimiser": True if opt else bool(record.get("optimiser"))})
    # Removals first: Home Assistant deletes an entity a moment after its
    # empty config, and a state arriving before that (the states follow
    # the announcement) would warn in its template at a key that is gone.
    gone = [name for name in recorded if name not in bridge.slugs]
    for name in gone:
        for table in (CHARGER, OCPP):
            for row in rows(table):
                link.publish(_topic(bridge, row, bridge.node + "_" + name), b"", True)
                yield
    if record.get("optimiser") and not opt:
        for row in rows(OPTIMISER):
            link.publish(_topic(bridge, row, bridge.node), b"", True)
            yield
    for removing in (True, False):
        if not removing:
            for table in (SITE, DEVICE, OPTIMISER):
                if table is OPTIMISER and not opt:
                    continue
                section = "device" if table is DEVICE else "site"
                for row in rows(table):
                    _config(bridge, _topic(bridge, row, bridge.node), row, bridge.node, section, -1)
                    yield
        for index in range(len(bridge.slugs)):
            node = bridge.node + "_" + bridge.slugs[index]
            charger = bridge.state.chargers[index]
            for table in (CHARGER, OCPP):
                for row in rows(table):
                    # No entity: a lock on a box without one, a priority
                    # among one charger (and Home Assistant refuses a number
                    # whose max is not above its min), the OCPP entities of
                    # a box that is none. Their empty configs also remove
                    # one announced before.
                    dead = (row[1] == "locked" and not charger.can_lock) or (row[1] == "priority" and len(bridge.slugs) < 2) \
                        or (table is OCPP and charger.ocpp is None)
                    if dead and removing:
                        link.publish(_topic(bridge, row, node), b"", True)
                        yield
                    elif not dead and not removing:
                        _config(bridge, _topic(bridge, row, node), row, node, "charger/" + bridge.slugs[index], index)
                        yield
    if gone or recorded != bridge.slugs or bool(record.get("optimiser")) != opt:
        _write_record(bridge, {"chargers": bridge.slugs, "optimiser": opt})


def _topic(bridge, row, node):
    return "%s/%s/%s/%s/config" % (bridge.discovery_prefix, row[0], node, row[1])


def _config(bridge, name_topic, row, node, section, index):
    # Writes and publishes (retained) the config of one entity at topic `name_topic`: an empty one when it does not fit.
    component, obj, name, key, device_class, state_class, unit, category, extra = row
    out = bridge.out
    topic = bridge.begin(name_topic)
    out.string("name", name)
    out.string("unique_id", node + "_" + obj)
    out.string("state_topic", "%s/%s/state" % (bridge.prefix, section))
    out.string("value_template", "{{ value_json.%s }}" % (key or obj))
    if obj in _NULLABLE_TEXT and component == _SENSOR:
        # Available while the link is up and the value is not null (see _NULLABLE_TEXT).
        out.key("availability")
        out.raw('[{"topic":')
        out.quoted(bridge.link.status_topic)
        out.raw('},{"topic":"%s/%s/state","value_template":' % (bridge.prefix, section))
        out.raw('"{{ \'online\' if value_json.%s is not none else \'offline\' }}"}]' % obj)
        out.string("availability_mode", "all")
    else:
        out.string("availability_topic", bridge.link.status_topic)
    if component in _SETTABLE:
        out.string("command_topic", "%s/%s/%s/set" % (bridge.prefix, section, obj))
    if component in (_SWITCH, _BINARY):
        # JSON true/false render "True"/"False" through the template;
        # a switch sends Home Assistant's default "ON"/"OFF".
        if component == _SWITCH:
            out.string("payload_on", "ON")
            out.string("payload_off", "OFF")
            out.string("state_on", "True")
            out.string("state_off", "False")
        else:
            out.string("payload_on", "True")
            out.string("payload_off", "False")
    if device_class:
        out.string("device_class", device_class)
    if state_class:
        out.string("state_class", state_class)
    if unit:
        out.string("unit_of_measurement", unit)
    if category:
        out.string("entity_category", category)
    if component == _NUMBER:
        low, high, step = extra
        out.number("min", low)
        out.number("max", len(bridge.slugs) if high is None else high)
        out.number("step", step)
        out.string("mode", "box")
    elif extra is not None:
        out.key("options")
        out.raw("[")
        for place in range(len(extra)):
            if component == _SENSOR and place == 0:
                continue  # "unknown" is Home Assistant's own state, not an option
            out.raw('"%s"%s' % (extra[place], "," if place < len(extra) - 1 else ""))
        out.raw("]")
    out.key("device")
    out.raw("{")
    out.raw('"identifiers":["%s"],"manufacturer":"%s","sw_version":' % (node, MANUFACTURER))
    out.quoted(bridge.state.version)
    url = configuration_url(bridge)
    if url is not None:
        out.string("configuration_url", url)
    out.raw(',"name":')
    if index < 0:
        out.raw('"ChargeGuard","model":"%s"}' % MODEL)
    else:
        out.quoted(bridge.state.chargers[index].name)
        out.raw(',"model":')
        out.quoted(bridge.models[index])
        out.raw(',"via_device":"%s"}' % bridge.node)
    if not bridge.send(topic, True):
        bridge.log("hass: discovery of %s/%s does not fit %d bytes" % (node, obj, len(out.buf)))
        bridge.link.publish(name_topic, b"", True)


def _read_record(bridge):
    if bridge.storage is None:
        return {}
    import json

    try:
        with open(bridge.storage + "/" + RECORD_FILE) as handle:
            doc = json.load(handle)
    except (OSError, ValueError):
        return {}
    return doc if type(doc) is dict and type(doc.get("chargers", [])) is list else {}


def _write_record(bridge, doc):
    if bridge.storage is None:
        return
    import json

    from chargeguard import flashfile

    path = bridge.storage + "/" + RECORD_FILE
    try:
        flashfile.write(path, path + ".tmp", json.dumps(doc).encode())
    except OSError as error:
        bridge.log("hass: could not store %s (%r): removed chargers may stay in Home Assistant" % (RECORD_FILE, error))


def parse(bridge, topic, payload):
    """One /set message for bridge (a hass.Hass): (charger index or -1 for the site, object id, value), or the refusal as a str."""
    parts = topic.split("/")
    levels = bridge.prefix.count("/") + 1
    parts = parts[levels:]
    if len(parts) == 3 and parts[0] == "site" and parts[2] == "set":
        row = _row(SITE, parts[1])
        index = -1
    elif len(parts) == 4 and parts[0] == "charger" and parts[3] == "set":
        row = _row(CHARGER, parts[2])
        index = bridge.slugs.index(parts[1]) if parts[1] in bridge.slugs else None
        if index is None:
            return "no charger '%s' (chargers: %s)" % (parts[1][:32], ", ".join(bridge.slugs))
    else:
        return "unknown command topic"
    if row is None or row[0] not in _SETTABLE:
        return "unknown setting '%s'" % (parts[-2][:32],)
    if len(payload) > MAX_COMMAND:
        return "payload too long (%d bytes, at most %d)" % (len(payload), MAX_COMMAND)
    try:
        text = payload.decode()
    except UnicodeError:
        return "payload is not UTF-8"
    value = _value(row, text)
    if type(value) is tuple:
        return value[0]
    return index, row[1], value


def _value(row, text):
    # The payload in the command API's type; a 1-tuple with the message when it is none.
    component = row[0]
    text = text.strip()
    if component == _SWITCH:
        if text == "ON":
            return True
        if text == "OFF":
            return False
        return ("must be ON or OFF (is %r)" % text[:32],)
    if component == _SELECT:
        if text in row[8]:
            return text
        return ("must be one of %s (is %r)" % (", ".join(row[8]), text[:32]),)
    # number: Home Assistant sends "16" or "16.0"; settings are whole numbers
    whole = text[:-2] if text.endswith(".0") else text
    body = whole[1:] if whole.startswith("-") else whole
    if not body or not body.isdigit():
        return ("must be a whole number (is %r)" % text[:32],)
    return int(whole)
