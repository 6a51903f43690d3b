# Run by host_tests/system/test_http_meter_v2_system.py on the MicroPython unix
# port (64-bit: it has ssl): the firmware's HomeWizard v2 driver, as built in
# build/device, polls the emulator once per `count` and prints one JSON line
# per poll: ok, last_error, L1 power, the poll's time, the longest gap a 10 ms
# ticker saw meanwhile (the loop never blocks), the GC heap in use and the
# connections the client made so far (one kept TLS connection serves many polls).
#
#   micropython v2_probe_upy.py LIB PORT CA_FILE CERT_HOSTNAME TOKEN COUNT [MODE]
#
# MODE "poll" (default): COUNT polls one after the other. "step": the same,
# but before each poll after the first it waits for a line on stdin (the test
# changes the emulator in between). "run": the meter task (poll every 1000 ms)
# until COUNT readings, then one JSON line: readings, polls, errors, the
# oldest the reading got meanwhile (max_age_ms: ticks since the last
# reading's tick_ms, looked at every 10 ms), the longest ticker gap, connections.
import sys

sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[0].rsplit("/", 2)[0])  # host_tests: support.ticker

import gc  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import asyncio  # noqa: E402

from chargeguard.meters import http_meter  # noqa: E402
from chargeguard.platform import common  # noqa: E402
from support import ticker  # noqa: E402


class Platform:
    ticks_ms = staticmethod(common.ticks_ms)
    ticks_diff = staticmethod(common.ticks_diff)
    sleep_ms = staticmethod(common.sleep_ms)


async def run(meter, count):
    state = {"readings": 0, "max_age_ms": 0, "gap_ms": 0, "errors": []}

    def on_reading():
        state["readings"] += 1

    task = asyncio.create_task(meter.run(on_reading))
    last = time.ticks_ms()
    errors = state["errors"]
    while state["readings"] < count:
        await asyncio.sleep_ms(10)
        now = time.ticks_ms()
        state["gap_ms"] = max(state["gap_ms"], time.ticks_diff(now, last))
        last = now
        if meter.last_error is not None and meter.last_error not in errors:
            errors.append(meter.last_error)
        if state["readings"]:
            state["max_age_ms"] = max(state["max_age_ms"], time.ticks_diff(now, meter.reading.tick_ms))
    task.cancel()
    state["polls"] = meter.n_polls
    state["connections"] = meter.client.connections
    print(json.dumps(state))


async def main():
    port, ca_file, name, token, count = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
    mode = sys.argv[7] if len(sys.argv) > 7 else "poll"
    doc = {
        "model": "homewizard_v2", "host": "127.0.0.1", "port": int(port), "channel": 0, "upside_down": False,
        "poll_ms": 1000, "token": token, "ca_file": ca_file, "cert_hostname": name,
    }  # fmt: skip
    meter = http_meter.from_config(doc, Platform)
    if mode == "run":
        await run(meter, count)
        return
    for n in range(count):
        if mode == "step" and n:
            sys.stdin.readline()  # between polls: nothing of ours is running
        gaps = [0]
        tick = asyncio.create_task(ticker(gaps))
        await asyncio.sleep_ms(20)
        gc.collect()
        start = time.ticks_ms()
        ok = await meter.poll()
        took = time.ticks_diff(time.ticks_ms(), start)
        tick.cancel()
        line = {"ok": ok, "error": meter.last_error, "l1_w": meter.reading.power_w[0] if ok else None,
                "ms": took, "gap_ms": gaps[0], "heap": gc.mem_alloc(),
                "connections": meter.client.connections}  # fmt: skip
        print(json.dumps(line))


asyncio.run(main())
