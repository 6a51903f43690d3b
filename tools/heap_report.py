# Heap cost of importing each firmware module, on the MicroPython unix port.
#
#   micropython tools/heap_report.py [build/device]
#   build/upy32/micropython-plain tools/heap_report.py    (ESP32 layout: make upy32)
#
# Imports the modules the sim configuration loads, in dependency order, and
# prints the heap each one adds (bytecode, function objects, interned names)
# after a collection. The pip unix port is 64-bit: an ESP32 needs about 0.71x
# of its figures after imports and 0.69x of its live heap while running
# (measured by `make bench` on 2026-11-29, the firmware as .mpy, 32-bit /
# 64-bit port, the same for every profile; bytecode and strings do not
# shrink, pointers do). The 32-bit port built by tools/upy32.py gives the
# ESP32's own figures.
import gc
import os
import sys

import micropython

MODULES = (
    "asyncio",  # frozen bytecode, but its module and function objects take heap on import
    "chargeguard.core.model",
    "chargeguard.core.ticks",
    "chargeguard.core.settings",
    "chargeguard.core.guard",
    "chargeguard.core.modes",
    "chargeguard.platform",
    "chargeguard.platform.common",
    "chargeguard.platform.unix",
    "chargeguard.meters.p1",
    "chargeguard.net.http",
    "chargeguard.chargers.v2c_trydan",
    "chargeguard.state",
    "chargeguard.rules",
    "chargeguard.commands",
    "chargeguard.app",
    "chargeguard.config",
)
# Loaded only with Wi-Fi configured (wifi.ssid): the link, the clock (with
# wifi.ntp_server) and the resolver (at the first wallbox host name).
WIFI_MODULES = ("chargeguard.net.wifi", "chargeguard.net.ntp", "chargeguard.net.dns")
# Loaded where the setup access point can open (no configuration, a Wi-Fi to
# lose, a board button): its decision and task; captive.py and the DNS server only while open.
PORTAL_MODULES = ("chargeguard.core.apmode", "chargeguard.net.portal", "chargeguard.platform.unix_ap", "chargeguard.net.captive", "chargeguard.net.dns_server")
# Loaded only with mqtt.enabled: the codec (umqtt.simple, a pinned device
# library), the link and Home Assistant on it.
MQTT_MODULES = ("umqtt.simple", "chargeguard.net.mqtt", "chargeguard.net.hass")
# Loaded only with web.enabled: the web server (microdot, a pinned device
# library) and the web interface on it.
WEB_MODULES = ("microdot.microdot", "microdot", "chargeguard.net.web")
# Loaded only for a charger of that type (drivers.py): the JSON number
# scanner the go-e and OpenEVSE drivers share, then each driver.
CHARGER_MODULES = ("chargeguard.net.jsonscan", "chargeguard.chargers.go_e", "chargeguard.chargers.openevse")
# Loaded only when the configuration needs the optimiser (a charger in eco,
# solar or excess, a distribution other than priority, or site.peak_limit_w).
OPTIMISER_MODULES = (
    "chargeguard.core.optsettings",
    "chargeguard.core.profiles",
    "chargeguard.core.solar",
    "chargeguard.core.distribution",
    "chargeguard.core.capacity",
    "chargeguard.core.optimiser",
    "chargeguard.slowlayer",
)


def _import_each(names, note, previous):
    # Imports each module, printing the heap it added; returns the heap in use after the last.
    for name in names:
        __import__(name)
        gc.collect()
        now = gc.mem_alloc()
        print("%-34s %6d B%s" % (name, now - previous, note))
        previous = now
    return previous


def main():
    # Imported from the folder itself, as on the device ('' first on
    # sys.path): a module's __file__ is then "chargeguard/...mpy", the same
    # interned name as the source name tools/build.py gives it.
    os.chdir(sys.argv[1] if len(sys.argv) > 1 else "build/device")
    sys.path.insert(0, "")
    gc.collect()
    start = gc.mem_alloc()
    previous = _import_each(MODULES, "", start)
    print("%-34s %6d B" % ("all modules", previous - start))
    previous = _import_each(WIFI_MODULES, "  (with Wi-Fi)", previous)
    before = previous
    previous = _import_each(PORTAL_MODULES, "  (the setup portal)", previous)
    print("%-34s %6d B" % ("portal modules", previous - before))
    previous = _import_each(CHARGER_MODULES, "  (with a go-e / an OpenEVSE)", previous)
    before = previous
    previous = _import_each(OPTIMISER_MODULES, "  (with the optimiser)", previous)
    print("%-34s %6d B" % ("optimiser modules", previous - before))
    before = previous
    previous = _import_each(MQTT_MODULES, "  (with MQTT)", previous)
    print("%-34s %6d B" % ("MQTT modules", previous - before))
    before = previous
    previous = _import_each(WEB_MODULES, "  (with the web)", previous)
    print("%-34s %6d B" % ("web modules", previous - before))
    micropython.qstr_info()


main()
