"""A stand-in for mpremote with a board that is a folder: for testing tools/deploy.py without hardware.

    fake_mpremote.py connect PORT COMMAND [+ COMMAND ...]
    COMMAND: fs cp [-r] SRC... :DEST | exec CODE | reset

Commands joined by "+" run in one call, as mpremote chains them.

Environment: FAKE_BOARD_ROOT (the board's filesystem), FAKE_MPREMOTE_LOG
(one JSON line per command: the command after `connect PORT`), FAKE_MPREMOTE_CUT
(a copy whose destination contains it writes half the file and fails, as a
pulled cable does), FAKE_MPREMOTE_DAMAGE (such a copy writes half and
reports success), FAKE_MPREMOTE_FAIL_EXEC (an exec whose code contains it
fails: the board stopped answering).

The board: FAKE_BOARD_EVENTS (one JSON line per thing the board did: a
boot and what it ran, a watchdog armed); FAKE_BOARD_FROZEN (a folder that
stands for the image's frozen modules: code that sets sys.path to
['.frozen'] imports from it; unset: a stock image, nothing frozen);
FAKE_BOARD_SLOW_BOOT (a reset whose boot mpremote's next Ctrl-C stops
before main.py ran). A reset boots as firmware/main.py does: with
:preboot.mpy and the :maintenance flag there, a maintenance boot (flag
removed, watchdog armed for preboot.MAINTENANCE_MS, no guard); else the
guard, when :main.py is there.
"""

import json
import os
import shutil
import sys
import types

MAINTENANCE_MS = 900000  # firmware/preboot.py


def board_path(root, remote):
    return os.path.join(root, remote.lstrip(":").lstrip("/"))


def event(*what):
    path = os.environ.get("FAKE_BOARD_EVENTS")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps(list(what)) + "\n")


def copy(root, sources, dest):
    if dest == ":":
        for source in sources:
            target = os.path.join(root, os.path.basename(source))
            if os.path.isdir(source):
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copy(source, target)
        return 0
    target = board_path(root, dest)
    with open(sources[0], "rb") as handle:
        data = handle.read()
    for variable, code in (("FAKE_MPREMOTE_CUT", 1), ("FAKE_MPREMOTE_DAMAGE", 0)):
        marker = os.environ.get(variable)
        if marker and marker in dest:
            with open(target, "wb") as handle:
                handle.write(data[: len(data) // 2])
            if code:
                sys.stderr.write("mpremote: the device stopped answering\n")
            return code
    with open(target, "wb") as handle:
        handle.write(data)
    return 0


def fake_machine():
    """The documented machine.WDT(timeout=ms), as an event."""
    machine = types.ModuleType("machine")

    def wdt(id=0, timeout=5000):
        event("watchdog", timeout)

    machine.WDT = wdt
    return machine


def run_code(root, code):
    # Absolute board paths inside the code's string literals point into the
    # folder; '.frozen' is the image's frozen modules (none on a stock image).
    code = code.replace("'/", "'" + root + "/")
    code = code.replace("'.frozen'", repr(os.environ.get("FAKE_BOARD_FROZEN") or os.path.join(root, "..", "no-frozen")))
    saved_path = list(sys.path)
    saved_machine = sys.modules.get("machine")
    sys.modules["machine"] = fake_machine()
    if not hasattr(os, "ilistdir"):
        # MicroPython's os.ilistdir: (name, type, inode), type 0x4000 a folder.
        os.ilistdir = lambda path: [(e.name, 0x4000 if e.is_dir() else 0x8000, 0) for e in os.scandir(path)]
    try:
        exec(compile(code, "<board>", "exec"), {"__name__": "board"})
    except Exception as error:
        sys.stderr.write("Traceback (most recent call last):\n%s: %s\n" % (type(error).__name__, error))
        return 1
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("chargeguard", None)
        if saved_machine is not None:
            sys.modules["machine"] = saved_machine
    return 0


def boot(root):
    """What the board does after a hard reset (firmware/main.py, preboot.py)."""
    flag = os.path.join(root, "maintenance")
    if os.environ.get("FAKE_BOARD_SLOW_BOOT"):
        event("boot", "stopped before main.py")
        return
    if os.path.exists(flag) and os.path.exists(os.path.join(root, "preboot.mpy")):
        os.remove(flag)
        event("watchdog", MAINTENANCE_MS)
        event("boot", "maintenance")
    elif os.path.exists(os.path.join(root, "main.py")):
        event("boot", "guard")
    else:
        event("boot", "no main.py")


def one(root, command):
    with open(os.environ["FAKE_MPREMOTE_LOG"], "a") as log:
        log.write(json.dumps(command) + "\n")
    if command[:2] == ["fs", "cp"]:
        paths = [item for item in command[2:] if item != "-r"]
        return copy(root, paths[:-1], paths[-1])
    if command[0] == "exec":
        marker = os.environ.get("FAKE_MPREMOTE_FAIL_EXEC")
        if marker and marker in command[1]:
            sys.stderr.write("mpremote: the device stopped answering\n")
            return 1
        return run_code(root, command[1])
    if command == ["reset"]:
        boot(root)
        return 0
    sys.stderr.write("fake mpremote: unknown command %r\n" % command)
    return 2


def main(argv):
    root = os.environ["FAKE_BOARD_ROOT"]
    assert argv[0] == "connect", argv
    commands = [[]]
    for item in argv[2:]:
        if item == "+":
            commands.append([])
        else:
            commands[-1].append(item)
    for command in commands:
        code = one(root, command)
        if code:
            return code  # mpremote stops a chain at the first failure
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
