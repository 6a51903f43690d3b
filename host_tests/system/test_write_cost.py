"""What one charger command allocates, per driver family, on both unix ports (tools/writecost.py).

The boxes run here in CPython (another process), the drivers on the unix
port; each figure is the heap one command allocates once warm. The bounds
are the figures measured after the command path was cut to what asyncio
needs (docs/firmware.md, "A wallbox request"), plus two GC blocks of room;
a change that makes a command allocate more fails here with the figures.
Allocation is deterministic, so this is no timing test.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import upy32  # noqa: E402
import writecost  # noqa: E402

# Measured (MicroPython 1.28 unix ports), bytes per command.
MEASURED = {
    "64": {
        "trydan._write": 3136,
        "trydan.apply": 3616,
        "go_e._write": 3040,
        "openevse._claim": 2976,
        "shelly_load._switch": 2912,
        "modbus_box.write6": 544,
        "modbus_box.write16": 544,
        "v2c_trydan_modbus.apply": 1344,
        "ocpp.apply(driver)": 1952,
    },
    "32": {
        "trydan._write": 1760,
        "trydan.apply": 2000,
        "go_e._write": 1712,
        "openevse._claim": 1680,
        "shelly_load._switch": 1648,
        "modbus_box.write6": 272,
        "modbus_box.write16": 272,
        "v2c_trydan_modbus.apply": 672,
        "ocpp.apply(driver)": 1184,
    },
}
BLOCK = {"64": 32, "32": 16}  # a GC block's bytes


def test_a_command_allocates_no_more_than_measured_on_both_ports():
    try:
        upy32.ensure("plain", quiet=True)
    except upy32.Unavailable as why:
        if upy32.in_ci():
            raise
        pytest.skip(str(why))
    results = writecost.run(("64", "32"))
    for bits, table in MEASURED.items():
        assert sorted(results[bits]) == sorted(table), results[bits]
        for name, bound in table.items():
            assert results[bits][name][1] <= bound + 2 * BLOCK[bits], (bits, name, results[bits][name], bound)
