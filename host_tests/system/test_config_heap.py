"""Reading the configuration needs no large contiguous block (MicroPython unix port, built firmware).

On a running ESP32 the largest free block decides, not the free total: the
read used to ask for one 8 KB block whatever the file's size. Here the free
heap exists only as 256-byte holes and the configuration must still load.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from run import micropython_binary, sim_config  # noqa: E402


def load_with_holes(tmp_path, chargers, hole):
    (tmp_path / "config.json").write_text(json.dumps(sim_config([8000 + i for i in range(chargers)]), indent=1))
    lib = os.path.join(ROOT, "build", "device")
    if not os.path.exists(os.path.join(lib, "chargeguard", "config.mpy")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build.py")], check=True)
    command = [micropython_binary(), "-X", "heapsize=200K", os.path.join(ROOT, "tools", "config_heap.py"),
               "--child", lib, str(tmp_path), str(hole)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.strip()


def test_the_configuration_loads_when_the_free_heap_is_only_256_byte_holes(tmp_path):
    assert load_with_holes(tmp_path, 8, 256) == "ok 8 0"
    assert load_with_holes(tmp_path, 1, 256) == "ok 1 0"
