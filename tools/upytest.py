# Runs the host_tests modules on the MicroPython unix port.
#
#   micropython tools/upytest.py --lib firmware host_tests [test_module ...]
#
# Plain `test_*` functions with `assert`, the same modules pytest collects.
# A test may raise support.Skip to say it cannot run here. Prints one line
# per failure with its traceback and ends with "N passed, N failed".
import gc
import os
import sys


# Every module a test module imported is dropped after it has run, except
# asyncio: the first import's stays with the native _asyncio module, and a
# second asyncio.core beside it crashed the 32-bit port (SIGSEGV, test_app
# then test_ct_meter, 2026-12-01).
_KEPT = "asyncio"


def preload(test_dir, name, seen):
    """Import the test modules `name` borrows fixtures from, deepest first.

    test_portal imports test_web, which imports test_commands, then
    test_app_optimiser, then test_app, then the firmware: on the 32-bit
    port's 40 KB C stack that nesting exceeds the recursion depth (each
    nested import puts a 4 KB path buffer on it: docs/development.md).
    Imported here one at a time, each finds the ones below it loaded.
    Only top-level `from test_x import` / `import test_x` lines count.
    """
    if name in seen:
        return
    seen.add(name)
    try:
        with open(test_dir + "/" + name + ".py") as source:
            lines = source.read().split("\n")
    except OSError:
        return
    for line in lines:
        words = line.split()
        if len(words) > 1 and words[0] in ("from", "import") and words[1].startswith("test_") and line[0] != " ":
            dependency = words[1].rstrip(",")
            preload(test_dir, dependency, seen)
            if dependency not in sys.modules:
                __import__(dependency)


def run_module(test_dir, name, counts, only):
    try:
        preload(test_dir, name, set())
        module = __import__(name)
    except Exception as error:
        print("ERROR importing", name)
        sys.print_exception(error)
        counts[1] += 1
        return
    for attr in sorted(dir(module)):
        if not attr.startswith("test_"):
            continue
        if only and attr not in only:
            continue
        func = getattr(module, attr)
        if not callable(func):
            continue
        gc.collect()
        try:
            func()
        except Exception as error:
            # Looked up now: a test may import support only inside itself.
            skip_type = getattr(sys.modules.get("support"), "Skip", None)
            if skip_type is not None and isinstance(error, skip_type):
                counts[2] += 1
                print("SKIP", name + "." + attr, error.args[0] if error.args else "")
                continue
            counts[1] += 1
            print("FAIL", name + "." + attr)
            sys.print_exception(error)
            continue
        counts[0] += 1


def main(argv):
    lib = "firmware"
    args = []
    i = 0
    while i < len(argv):
        if argv[i] == "--lib":
            lib = argv[i + 1]
            i += 2
            continue
        args.append(argv[i])
        i += 1
    test_dir = args[0] if args else "host_tests"
    selected = args[1:]
    sys.path.insert(0, test_dir)
    sys.path.insert(0, lib)
    names = []
    for entry in sorted(os.listdir(test_dir)):
        if entry.startswith("test_") and entry.endswith(".py"):
            names.append(entry[:-3])
    only_funcs = {}
    if selected:
        wanted = []
        for item in selected:
            module, _, func = item.partition("::")
            if module.endswith(".py"):
                module = module[:-3]
            module = module.split("/")[-1]
            wanted.append(module)
            if func:
                only_funcs.setdefault(module, []).append(func)
        names = [n for n in names if n in wanted]
    counts = [0, 0, 0]
    # UPYTEST_HEAP=1 prints the free heap after each module.
    verbose = os.getenv("UPYTEST_HEAP") == "1"
    for name in names:
        loaded = set(sys.modules)
        run_module(test_dir, name, counts, only_funcs.get(name))
        # A module that has run gives its heap back: it and everything it
        # imported (the firmware modules, the test modules it borrows
        # fixtures from, their module-level objects) are dropped, and the
        # next module imports them afresh. One process runs them all; what
        # stayed grew to half the unix port's 2 MB heap by the last module
        # (measured 2026-12-01), and a CI run then failed test_web's 20 and
        # 32 KB blocks in the fragmented rest.
        for module in list(sys.modules):
            if module not in loaded and not module.startswith(_KEPT):
                sys.modules.pop(module)
        gc.collect()
        if verbose:
            print("heap after", name, "free", gc.mem_free())
    line = "%d passed, %d failed" % (counts[0], counts[1])
    if counts[2]:
        line += ", %d skipped" % counts[2]
    print("micropython:", line)
    if counts[1] or not counts[0]:
        sys.exit(1)


main(sys.argv[1:])
