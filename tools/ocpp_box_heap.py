"""Heap one OCPP box's driver holds (chargers/ocpp.py), measured on MicroPython (docs/ocpp.md, "Memory").

Run on a 32-bit build, frozen (the modules in flash) or as .mpy:
    build/upy32/micropython-frozen tools/ocpp_box_heap.py
    build/upy32/micropython-plain tools/ocpp_box_heap.py build/device
Prints the bytes in use (gc.mem_alloc() after a collection) for one and for two boxes at each stage:
made from a config entry, connected (attach, BootNotification), set up with a limit in force (the
set-up calls answered Accepted, apply(16 A), Accepted at its next boot), and after a StatusNotification, a MeterValues with
timestamps and a StartTransaction. The central system, its message buffer and the connections are
not counted (net/ocpp.py, net/websocket.py): the driver's own objects only.
"""

import gc
import sys

if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])

import asyncio

from chargeguard.chargers import ocpp
from chargeguard.core import localtime  # noqa: F401 (imported by the driver when needed: not a box's cost)
from chargeguard.net import ocpp as central_system  # noqa: F401 (the same)

ENTRY = {
    "password": "", "phases": 3, "failsafe_a": 6, "unit": "A", "stack_level": -1, "profile_connector": -1,
    "pause": "auto", "remote_start_stop": False, "id_tags": "", "meter_interval_s": 10, "profile_kind": "absolute",
}
BOOT = {"chargePointVendor": "ChargeGuard", "chargePointModel": "Emulator", "firmwareVersion": "1.0"}
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": "2026-12-01T05:00:00Z"}
METER = {
    "connectorId": 1, "transactionId": 1,
    "meterValue": [{"timestamp": "2026-12-01T05:00:10Z", "sampledValue": [
        {"measurand": "Current.Import", "phase": "L1", "unit": "A", "value": "15.9"},
        {"measurand": "Current.Import", "phase": "L2", "unit": "A", "value": "15.9"},
        {"measurand": "Current.Import", "phase": "L3", "unit": "A", "value": "15.9"},
        {"measurand": "Power.Active.Import", "unit": "W", "value": "11000"},
        {"measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": "1250"},
    ]}],
}
START = {"connectorId": 1, "idTag": "TAG", "meterStart": 1000, "timestamp": "2026-12-01T05:00:05Z"}
CONFIG = {"configurationKey": [{"key": "ChargeProfileMaxStackLevel", "value": "8"}]}
ACCEPTED = {"status": "Accepted"}


class Platform:
    """As platform/unix.py has them: ticks_ms the runtime's own function, wall_time a method."""

    def __init__(self):
        import time

        self.ticks_ms = time.ticks_ms

    def wall_time(self):
        return 1796014800  # 2026-12-01: a wall clock that is set (a long int on a 32-bit port, as on the chip)


class Central:
    """net/ocpp.CentralSystem.call as the driver uses it: every call answered Accepted."""

    async def call(self, session, action, payload):
        return "ok", CONFIG if action == "GetConfiguration" else ACCEPTED


def used():
    gc.collect()
    gc.collect()
    return gc.mem_alloc()


async def connect(point, session):
    point.attach(session)
    point.heard()
    point.on_call("BootNotification", BOOT)
    point.answered()
    await point.poll()  # the set-up while Pending
    await point.apply(16000)  # the guard's limit, then the box is let in
    point.heard()
    point.on_call("BootNotification", BOOT)


def talk(point):
    for action, payload in (("StatusNotification", STATUS), ("StartTransaction", START), ("MeterValues", METER)):
        point.heard()
        point.on_call(action, payload)


platform = Platform()
central = Central()
sessions = [object(), object()]
ENTRIES = []
for name in ("BOX1", "BOX2"):
    entry = dict(ENTRY)
    entry["charge_point_id"] = name
    ENTRIES.append(entry)


async def nothing():
    pass


asyncio.run(nothing())  # asyncio's own state, made once before the first figure
points = []
figures = {}
base = used()
for index in range(2):
    points.append(ocpp.from_config(ENTRIES[index], platform, 10000))
    points[index].central = central
    points[index].decisions = lambda: 0
figures["made"] = used()
for index in range(2):
    asyncio.run(connect(points[index], sessions[index]))
figures["connected"] = used()
for index in range(2):
    talk(points[index])
figures["messages"] = used()
print("ocpp_box_heap: %d attributes in a box's instance dict" % len(points[0].__dict__))
last = base
for stage in ("made", "connected", "messages"):
    print("%-10s %5d bytes for 2 boxes (%d a box), %+d since the stage before" % (stage, figures[stage] - base, (figures[stage] - base) // 2, figures[stage] - last))
    last = figures[stage]
