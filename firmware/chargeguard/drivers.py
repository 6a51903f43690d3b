"""Which driver module serves each meter and charger type a configuration can name, and each interface.

Adding a device is a new module in meters/ or chargers/ plus one line here
(a charger's line also names the module of its own configuration rules, if
it has any); config.py accepts exactly these types and app.py imports a module only when
the configuration uses it, so the heap holds only the drivers in use.
"""

METER_MODULES = {
    "p1": "chargeguard.meters.p1",
    "modbus": "chargeguard.meters.modbus",
    "http": "chargeguard.meters.http_meter",
    "mqtt": "chargeguard.meters.mqtt_meter",
    "ct": "chargeguard.meters.ct_meter",
    "han": "chargeguard.meters.han",  # DLMS/COSEM push over HDLC (Norway's HAN-NVE), on the P1 UART
    "atm90e32": "chargeguard.meters.atm90e32",  # the metering IC on SPI: signed per-phase power
}
# Charger type -> (driver module, rules module or None). The rules module
# holds what an entry of that type has beyond config.py's common charger
# fields (its own keys, defaults and checks); config.py loads it only while
# it completes or checks such an entry, so a site without one never loads
# it: chargers/entries.py for the Modbus TCP types ("unit", port 502;
# modbus_generic's register map "map") and keba_p30 (UDP port 7090),
# chargers/ocpp_entry.py for an OCPP box (a charge point id instead of host
# and port, and the boxes' quirks).
_ENTRIES = "chargeguard.chargers.entries"
CHARGER_MODULES = {
    "v2c_trydan": ("chargeguard.chargers.v2c_trydan", None),
    "go_e": ("chargeguard.chargers.go_e", None),
    "openevse": ("chargeguard.chargers.openevse", None),
    "v2c_trydan_modbus": ("chargeguard.chargers.v2c_trydan_modbus", _ENTRIES),
    "alfen_eve": ("chargeguard.chargers.alfen", _ENTRIES),
    "abb_terra": ("chargeguard.chargers.abb_terra", _ENTRIES),
    "modbus_generic": ("chargeguard.chargers.modbus_generic", _ENTRIES),
    "keba_p30": ("chargeguard.chargers.keba", _ENTRIES),
    "ocpp": ("chargeguard.chargers.ocpp", "chargeguard.chargers.ocpp_entry"),
    "shelly_load": ("chargeguard.chargers.shelly_load", None),  # an on/off load (heater, pump) on a Shelly relay
}
# Interfaces (views and remote controls around the guard): config section ->
# module. app.py imports a module only when its section has "enabled": true
# and runs `module.from_config(section, platform, log, context).run()` as a
# supervised task of its own; context is a dict the app fills: "hostname"
# (wifi.hostname), "site_state" and "command_api" (App.site_state and
# App.command_api: call them for the site state and the command API, each
# loaded at its first call). An interface never imports app.py or reaches
# into drivers or the guard. "mqtt" is net/hass.py: the MQTT link
# (net/mqtt.py) with Home Assistant's discovery, state and commands on it;
# "web" is net/web.py: the status page and the REST API (microdot).
# "ocpp" is net/ocpp.py: the OCPP 1.6J central system the `ocpp` chargers'
# boxes connect to; it also runs, without "enabled", whenever such a charger
# is configured (app.py).
INTERFACE_MODULES = (("mqtt", "chargeguard.net.hass"), ("web", "chargeguard.net.web"), ("ocpp", "chargeguard.net.ocpp"))
