"""What reading the configuration costs the heap at start-up, on the MicroPython unix port.

    python3 tools/config_heap.py [--lib build/device] [--micropython .venv/bin/micropython]
    python3 tools/config_heap.py --micropython build/upy32/micropython-plain    (ESP32 layout)

For a configuration with 1 and with 8 chargers (the simulator's), prints:
- the smallest -X heapsize in which importing the config module and
  `config.load()` succeed (bisection), and how much of it the imported
  module itself holds (what load() needs is the rest);
- after a first load (as at boot), loading another configuration (as after
  a change, or the app's retry with the last good copy): how many names it
  interned, which must be none, and whether it still succeeds when the free
  heap exists only as holes of 256, 1024 and 4096 bytes (a fragmented heap:
  what decides on a running ESP32 is the largest free block, not the free
  total). MicroPython keeps interned names for good, in pools that grow by
  doubling: a new pool is one large block, the very thing a fragmented heap
  lacks; so no name may come from the file's text.

The same file is the child script run under MicroPython (`--child LIB
STORAGE HOLE [WARM]`): it prints "imported N" (heap held after the import),
MicroPython's two "qstr pool: ..." lines (before and after the load), then
"ok CHARGERS NOTES" or "memory-error ...".
"""

import sys

CHILD = "--child" in sys.argv


def child(lib, storage, hole, warm=""):
    # Under MicroPython: import config, optionally load the configuration in
    # `warm` first (as at boot, so the config machinery's names are
    # interned), fragment the rest of the heap into `hole`-byte holes, then
    # load the one in `storage`.
    import gc
    import micropython

    sys.path.insert(0, lib)
    gc.collect()
    before = gc.mem_alloc()
    from chargeguard import config

    gc.collect()
    print("imported", gc.mem_alloc() - before)
    if warm:
        config.load(warm)
        # As the app does after a load: flashfile is imported again when needed.
        sys.modules.pop("chargeguard.flashfile", None)
        del sys.modules["chargeguard"].flashfile
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
    micropython.qstr_info()
    try:
        doc, notes = config.load(storage)
    except MemoryError as error:
        print("memory-error", error)
        return
    micropython.qstr_info()
    print("ok", len(doc["chargers"]), len(notes))


def other_config(sim_config, chargers):
    """A configuration as an owner writes it, its text in characters the simulator's has not got.

    Host names, an SSID and a password: a load that interned the characters
    of what it reads would intern new names for this one.
    """
    doc = sim_config([8000 + index for index in range(chargers)])
    doc["name"] = "Kwik Fox Yard"
    for index, charger in enumerate(doc["chargers"]):
        charger["name"] = "Jump Vex %d" % (index + 1)
        charger["host"] = "wallbox-%d.quiz.lan" % (index + 1)
    doc["wifi"] = {"ssid": "Wq-Zone 5G", "password": "xQ7!vB#9mZ-$", "ntp_server": "time.jvq.example"}
    return doc


def parse(output):
    """(ok line or None, heap the import held, names interned by load()) from a child's output."""
    imported = 0
    qstrs = []
    result = None
    for line in output.splitlines():
        if line.startswith("imported "):
            imported = int(line.split()[1])
        elif line.startswith("qstr pool:"):
            qstrs.append(int(line.split("n_qstr=")[1].split(",")[0]))
        elif line.startswith("ok ") or line.startswith("memory-error"):
            result = line.strip()
    interned = qstrs[1] - qstrs[0] if len(qstrs) == 2 else None
    return result, imported, interned


def run_child(micropython, lib, storage, heap_k, hole=0, warm=""):
    """(ok line or None, heap the import held, names interned by load()) of one child run."""
    import os
    import subprocess

    command = [micropython, "-X", "heapsize=%dK" % heap_k, os.path.abspath(__file__), "--child", lib, storage, str(hole), warm]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return parse(result.stdout)


def main():
    import argparse
    import json
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    sys.path.insert(0, os.path.join(here, "sim"))
    from run import sim_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", default=os.path.join(root, "build", "device"))
    parser.add_argument("--micropython", default=os.path.join(root, ".venv", "bin", "micropython"))
    args = parser.parse_args()

    def ok(storage, heap_k, hole=0, warm=""):
        result = run_child(args.micropython, args.lib, storage, heap_k, hole, warm)[0]
        return result is not None and result.startswith("ok")

    def write(name, doc):
        storage = os.path.join(root, "build", "config-heap", name)
        os.makedirs(storage, exist_ok=True)
        with open(os.path.join(storage, "config.json"), "w") as handle:
            json.dump(doc, handle, indent=1)
        return storage, os.path.getsize(os.path.join(storage, "config.json"))

    for count in (1, 8):
        storage, size = write("chargers-%d" % count, sim_config([8000 + index for index in range(count)]))
        other = write("other-%d" % count, other_config(sim_config, count))[0]
        low, high = 8, 256
        while low < high:
            middle = (low + high) // 2
            if ok(storage, middle):
                high = middle
            else:
                low = middle + 1
        _, imported, _ = run_child(args.micropython, args.lib, storage, 200)
        _, _, interned = run_child(args.micropython, args.lib, other, 200, 0, storage)
        holes = ", ".join("%d B: %s" % (hole, "ok" if ok(other, 200, hole, storage) else "FAILS") for hole in (256, 1024, 4096))
        print("config with %d charger(s), %d bytes: smallest heap for import + config.load() %dK (the module "
              "holds %d B); after a first load, loading another configuration interned %s names and works "
              "with the free heap only in holes of %s" % (count, size, low, imported, interned, holes))


if __name__ == "__main__":
    if CHILD:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "")
    else:
        main()
