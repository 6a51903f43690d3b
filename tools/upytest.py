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


def run_module(name, counts, only):
    try:
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
    for name in names:
        run_module(name, counts, only_funcs.get(name))
        # A test module's own data (fixtures, fakes, what its tests left in
        # globals) is not needed by the next one: give its heap back, so the
        # later modules do not run in a heap the earlier ones filled.
        sys.modules.pop(name, None)
        gc.collect()
    line = "%d passed, %d failed" % (counts[0], counts[1])
    if counts[2]:
        line += ", %d skipped" % counts[2]
    print("micropython:", line)
    if counts[1] or not counts[0]:
        sys.exit(1)


main(sys.argv[1:])
