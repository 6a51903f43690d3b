"""What reading the configuration costs the heap at start-up, on the MicroPython unix port.

    python3 tools/config_heap.py [--lib build/device] [--micropython .venv/bin/micropython]

For a configuration with 1 and with 8 chargers (the simulator's), prints:
- the smallest -X heapsize in which `config.load()` succeeds (bisection);
- whether it still succeeds when the free heap exists only as holes of 256,
  1024 and 4096 bytes (a fragmented heap: what decides on a running ESP32 is
  the largest free block, not the free total).

The same file is the child script run under MicroPython (`--child`).
"""

import sys

CHILD = "--child" in sys.argv


def child(lib, storage, hole):
    # Under MicroPython: import config, optionally fragment the rest of the
    # heap into `hole`-byte holes, then load; prints one line.
    import gc

    sys.path.insert(0, lib)
    from chargeguard import config

    blocks = []
    if hole:
        gc.collect()
        try:
            while True:
                blocks.append(bytearray(hole))
        except MemoryError:
            pass
        for index in range(0, len(blocks), 2):
            blocks[index] = None
        gc.collect()
    try:
        doc, notes = config.load(storage)
    except MemoryError as error:
        print("memory-error", error)
        return
    print("ok", len(doc["chargers"]), len(notes))


def main():
    import argparse
    import json
    import os
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    sys.path.insert(0, os.path.join(here, "sim"))
    from run import sim_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", default=os.path.join(root, "build", "device"))
    parser.add_argument("--micropython", default=os.path.join(root, ".venv", "bin", "micropython"))
    args = parser.parse_args()

    def run(storage, heap_k, hole=0):
        command = [args.micropython, "-X", "heapsize=%dK" % heap_k, os.path.abspath(__file__), "--child"]
        command += [args.lib, storage, str(hole)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        return result.stdout.startswith("ok")

    for count in (1, 8):
        storage = os.path.join(root, "build", "config-heap", "chargers-%d" % count)
        os.makedirs(storage, exist_ok=True)
        with open(os.path.join(storage, "config.json"), "w") as handle:
            json.dump(sim_config([8000 + index for index in range(count)]), handle, indent=1)
        size = os.path.getsize(os.path.join(storage, "config.json"))
        low, high = 8, 256
        while low < high:
            middle = (low + high) // 2
            if run(storage, middle):
                high = middle
            else:
                low = middle + 1
        holes = ", ".join("%d B: %s" % (hole, "ok" if run(storage, 200, hole) else "FAILS") for hole in (256, 1024, 4096))
        print("config with %d charger(s), %d bytes: smallest heap for config.load() %dK; "
              "heap free only in holes of %s" % (count, size, low, holes))


if __name__ == "__main__":
    if CHILD:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
