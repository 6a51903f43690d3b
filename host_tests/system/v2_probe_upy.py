# Run by host_tests/system/test_http_meter_v2_system.py on the MicroPython unix
# port (64-bit: it has ssl): the firmware's HomeWizard v2 driver, as built in
# build/device, polls the emulator once per `count` and prints one JSON line
# per poll: ok, last_error, L1 power, the poll's time, the longest gap a 10 ms
# ticker saw meanwhile (the loop never blocks) and the GC heap in use.
#
#   micropython v2_probe_upy.py LIB PORT CA_FILE CERT_HOSTNAME TOKEN COUNT
import sys

sys.path.insert(0, sys.argv[1])

import gc  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import asyncio  # noqa: E402

from chargeguard.meters import http_meter  # noqa: E402
from chargeguard.platform import common  # noqa: E402


class Platform:
    ticks_ms = staticmethod(common.ticks_ms)
    ticks_diff = staticmethod(common.ticks_diff)
    sleep_ms = staticmethod(common.sleep_ms)


async def ticker(gaps):
    last = time.ticks_ms()
    while True:
        await asyncio.sleep_ms(10)
        now = time.ticks_ms()
        gaps[0] = max(gaps[0], time.ticks_diff(now, last))
        last = now


async def main():
    port, ca_file, name, token, count = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
    doc = {
        "model": "homewizard_v2", "host": "127.0.0.1", "port": int(port), "channel": 0, "upside_down": False,
        "poll_ms": 1000, "token": token, "ca_file": ca_file, "cert_hostname": name,
    }  # fmt: skip
    meter = http_meter.from_config(doc, Platform)
    for _ in range(count):
        gaps = [0]
        tick = asyncio.create_task(ticker(gaps))
        await asyncio.sleep_ms(20)
        gc.collect()
        start = time.ticks_ms()
        ok = await meter.poll()
        took = time.ticks_diff(time.ticks_ms(), start)
        tick.cancel()
        line = {"ok": ok, "error": meter.last_error, "l1_w": meter.reading.power_w[0] if ok else None,
                "ms": took, "gap_ms": gaps[0], "heap": gc.mem_alloc()}  # fmt: skip
        print(json.dumps(line))


asyncio.run(main())
