# The MicroPython half of tools/writecost.py (run by it; not device code).
#
# argv: <lib dir> <http port> <modbus port>. Prints one line per case:
#   "<case> <min> <max>" = heap bytes allocated by one command (min and max
# over RUNS commands, after WARM warm-up commands), measured with
# gc.mem_alloc() around the awaited call with the collector disabled. The
# boxes are CPython servers in tools/writecost.py: nothing of theirs is in
# this heap (OCPP: the driver's share, see there).
import sys

sys.path.insert(0, sys.argv[1])

import gc

import asyncio

HOST = "127.0.0.1"
HTTP_PORT = int(sys.argv[2])
MODBUS_PORT = int(sys.argv[3])
WARM = 3
RUNS = 8


class Platform:
    def __init__(self):
        import time

        self.ticks_ms = time.ticks_ms
        self.ticks_diff = time.ticks_diff
        self.sleep_ms = asyncio.sleep_ms

    def dns_server(self):
        return None


async def cost(name, call):
    # call(i) -> a coroutine of one command; True when the box took it.
    for i in range(WARM):
        assert await call(i), name
    low = high = None
    for i in range(RUNS):
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        ok = await call(WARM + i)
        used = gc.mem_alloc() - before
        gc.enable()
        assert ok, name
        low = used if low is None or used < low else low
        high = used if high is None or used > high else high
    print("%s %d %d" % (name, low, high))


async def main():
    from chargeguard.chargers.go_e import GoeCharger
    from chargeguard.chargers.openevse import OpenEvse
    from chargeguard.chargers.shelly_load import ShellyLoad
    from chargeguard.chargers.v2c_trydan import V2CTrydan
    from chargeguard.chargers.v2c_trydan_modbus import TrydanModbus
    from chargeguard.net.modbus_box import ModbusBox

    trydan = V2CTrydan(HOST, HTTP_PORT)
    await cost("trydan._write", lambda i: trydan._write("Intensity", 2, 6 + i % 2))
    # apply(): a changed limit each time (Intensity only: Paused/Dynamic known).
    trydan._box["Paused"] = 0
    trydan._box["Dynamic"] = 0
    await cost("trydan.apply", lambda i: trydan.apply((6 + i % 2) * 1000))

    go_e = GoeCharger(HOST, HTTP_PORT)
    from chargeguard.chargers import go_e as go_e_module

    await cost("go_e._write", lambda i: go_e._write(go_e_module._TCL, 6 + i % 2))
    evse = OpenEvse(HOST, HTTP_PORT)
    await cost("openevse._claim", lambda i: evse._claim(6 + i % 2))
    shelly = ShellyLoad(HOST, HTTP_PORT, 2000, 6000)
    await cost("shelly_load._switch", lambda i: shelly._switch(i % 2 == 0))

    platform = Platform()
    box = ModbusBox(HOST, MODBUS_PORT, platform, 2000)
    values = [0, 0]

    def write6(i):
        values[0] = 6 + i % 2
        return box.write(1, 6, 1000, values, 1)

    await cost("modbus_box.write6", write6)

    def write16(i):
        values[0] = 0
        values[1] = 6 + i % 2
        return box.write(1, 16, 1000, values, 2)

    await cost("modbus_box.write16", write16)
    trydan_mb = TrydanModbus(ModbusBox(HOST, MODBUS_PORT, platform, 2000))
    trydan_mb._paused = 0
    await cost("v2c_trydan_modbus.apply", lambda i: trydan_mb.apply((6 + i % 2) * 1000))

    # OCPP: the driver's share only (the profile's JSON text and the call's
    # bookkeeping): the central system's call (the WebSocket frame out, the
    # box's answer parsed) is stood in for by an answer made once.
    from chargeguard.chargers.ocpp import OcppCharger

    accepted = {"status": "Accepted"}

    class Central:
        async def call(self, session, action, payload):
            return "ok", accepted

    point = OcppCharger("CP1", unit="A", stack_level=0, profile_connector=0, wall=lambda: 1780000000)
    point.central = Central()
    point.attach(object())
    # Set up while Pending, let in and Accepted: the command path of a box in service.
    boot = {"chargePointVendor": "V", "chargePointModel": "M"}
    point.on_call("BootNotification", boot)
    await point.poll()
    await point.apply(6000)
    point.on_call("BootNotification", boot)
    await cost("ocpp.apply(driver)", lambda i: point.apply((6 + i % 2) * 1000))


asyncio.run(main())
