"""What each firmware module costs on the heap as .mpy (the plain-ESP32 tier's lever: code resident in RAM).

    python tools/mpyimports.py [--profile core] [--profile mqtt] [--top 20] [--build mpy32]

On a stock firmware every imported .mpy module's bytecode, constant tables,
names (qstrs) and its globals dict live in the GC heap. For each profile
this runs the firmware on the simulator (tools/memlab.py, a large heap) and
lists the modules still imported 20 s into the run (tools/memprobe.py's
"modules" line: boot-only modules are unloaded by then), then imports each
of them as .mpy (build/device) in a fresh interpreter of the build, with its
own imports loaded first, and prints the heap the module itself adds
(gc.mem_alloc() after a collection, before and after), largest first, and
the sum. The figures are the module's own: a module imported only for it
is counted on its own row.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import memlab  # noqa: E402

DEVICE = os.path.join(ROOT, "build", "device")
# Imports every module named on the command line except the last, then the
# last one, and prints the heap before and after it, and what was imported.
PROBE = """
import gc, sys
sys.path.insert(0, %r)
names = sys.argv[1:]
for name in names[:-1]:
    try:
        __import__(name)
    except Exception as error:
        print("skip", name, repr(error))
before_set = set(sys.modules)
gc.collect()
before = gc.mem_alloc()
__import__(names[-1])
gc.collect()
after = gc.mem_alloc()
print("cost", after - before)
print("new", " ".join(sorted(set(sys.modules) - before_set)))
"""


def steady_modules(profile, build="mpy32", heap=320 * 1024):
    """The modules (names) imported 20 s into a run of profile."""
    os.environ["CHARGEGUARD_PROBE"] = "modules"
    try:
        result = memlab.run(profile, build, heap, min_seconds=25)
    finally:
        del os.environ["CHARGEGUARD_PROBE"]
    for line in result.lines:
        if line.startswith("memprobe: modules "):
            return line.split()[2:]
    raise RuntimeError("no modules line; the firmware said:\n" + "\n".join(result.lines[-12:]))


def _probe(binary, names):
    script = os.path.join(ROOT, "build", "mpyimports_probe.py")
    with open(script, "w") as handle:
        handle.write(PROBE % DEVICE)
    out = subprocess.run([binary, "-X", "heapsize=1M", script] + list(names), capture_output=True, text=True)
    cost = new = None
    for line in out.stdout.splitlines():
        if line.startswith("cost "):
            cost = int(line.split()[1])
        elif line.startswith("new"):
            new = line.split()[1:]
    if cost is None:
        raise RuntimeError("import of %s failed:\n%s%s" % (names[-1], out.stdout, out.stderr[-2000:]))
    return cost, new


def import_costs(modules, build="mpy32"):
    """{module: (own heap bytes, heap bytes with what it imports)} for firmware modules."""
    binary = memlab.interpreter(build)
    ours = [name for name in modules if name.startswith("chargeguard") or name.startswith("umqtt")]
    closure = {}
    total = {}
    for name in ours:
        total[name], closure[name] = _probe(binary, [name])
    own = {}
    for name in ours:
        deps = [dep for dep in closure[name] if dep != name and dep in closure]
        # Deepest first, so each is imported by its own package chain.
        deps.sort(key=lambda dep: len(closure[dep]))
        own[name] = (_probe(binary, deps + [name])[0], total[name])
    return own


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append")
    parser.add_argument("--build", default="mpy32")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    for name in args.profile or ["core"]:
        profile = [p for p in memlab.PROFILES if p.name == name][0]
        modules = steady_modules(profile, args.build)
        costs = import_costs(modules, args.build)
        rows = sorted(costs.items(), key=lambda item: -item[1][0])
        print("%s (%s): %d firmware modules imported at steady state, %d bytes of heap their own"
              % (name, args.build, len(rows), sum(value[0] for value in costs.values())))
        print("  %-42s %8s %10s" % ("module", "own B", "with deps"))
        for module, (own, total) in rows[: args.top]:
            print("  %-42s %8d %10d" % (module, own, total))
        others = [module for module in modules if module not in costs]
        print("  also imported (MicroPython's own): %s" % " ".join(others))


if __name__ == "__main__":
    main()
