"""Reading the configuration needs no large contiguous block and interns nothing (MicroPython unix ports, built firmware).

On a running ESP32 the largest free block decides, not the free total. A
configuration is read at boot into a fresh heap, and again into a used one
(the app's retry with the last good copy, a configuration changed while
running). MicroPython keeps every interned name for good, in pools that grow
by doubling, and a new pool is one large block: so a load after the first
must intern no name (none from the file's text: its characters, host names,
a password), and must work with the free heap only in 256- or 1024-byte holes.
Checked on the 64-bit port and on the 32-bit one (an ESP32's layout).
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "tools")):
    sys.path.insert(0, path)

import config_heap  # noqa: E402
import memlab  # noqa: E402
import upy32  # noqa: E402
from run import micropython_binary, sim_config  # noqa: E402


def interpreter(build):
    if build == "mpy64":
        return micropython_binary()
    try:
        return memlab.interpreter(build)
    except memlab.Unavailable as why:
        message = "32-bit MicroPython not available: %s" % why.args[0]
        if upy32.in_ci():
            pytest.fail(message + " (CI must run it)")
        pytest.skip(message)


def write(directory, doc):
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(doc, indent=1))
    return str(directory)


@pytest.mark.parametrize("build", ["mpy64", "mpy32"])
@pytest.mark.parametrize("chargers", [1, 8])
def test_a_second_configuration_loads_in_small_holes_and_interns_no_name(tmp_path, build, chargers):
    binary = interpreter(build)
    lib = os.path.join(ROOT, "build", "device")
    if not os.path.exists(os.path.join(lib, "chargeguard", "config.mpy")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build.py")], check=True)
    first = write(tmp_path / "first", sim_config([8000 + i for i in range(chargers)]))
    other = write(tmp_path / "other", config_heap.other_config(sim_config, chargers))
    for hole in (0, 256, 1024):
        result, _, interned = config_heap.run_child(binary, lib, other, 200, hole, first)
        assert result == "ok %d 0" % chargers, "holes of %d B: %s" % (hole, result)
        assert interned == 0, "loading the configuration interned %s names (holes of %d B)" % (interned, hole)
