#!/usr/bin/env python3
"""deploy: put the built firmware, a board file and optionally a configuration onto a board.

    python3 tools/deploy.py --port /dev/ttyUSB0 --board esp32_devkit [--config my.json] [--frozen]
    (make deploy PORT=... BOARD=... CONFIG=... [FROZEN=1])

Everything is checked before anything is copied: the board file exists,
the configuration exists and passes the device's own validator
(tools/check_config.py), the firmware is built, the serial device is there
and may be opened. Then, with mpremote:

  0. a warning: the guard is off while deploy runs, and the wallboxes keep
     the current they were last given (a V2C Trydan has no keep-alive);
  1. the maintenance boot: main.py and preboot.mpy are installed (temporary
     name, checked, renamed), the one-shot flag :maintenance is written and
     the board is hard-reset, all in one mpremote call. The guard's hardware
     watchdog (10 s, app.WATCHDOG_TIMEOUT_MS) cannot be stopped and
     mpremote's Ctrl-C and soft reset do not stop it: without this the chip
     resets ~10 s into the copy and the guard comes back mid-deploy. That
     boot (preboot.py) removes the flag, does not start the guard and arms
     the watchdog for 15 minutes (preboot.MAINTENANCE_MS): a deploy that
     dies midway ends in a reset into the guard;
  2. a check that the board took it (the flag is gone; if the boot was
     stopped before main.py looked, the flag is removed and the watchdog
     armed from here), and that the firmware image matches the mode: a
     board whose image has ChargeGuard frozen in gets --frozen, a stock one
     does not (a package on the filesystem would hide the frozen one);
  3. the firmware is copied: all of build/device, or with --frozen only
     main.py, boot.py, preboot.mpy and the web pages (www/), after removing
     stale chargeguard/, umqtt/, microdot/ folders the frozen image has;
  4. boards/BOARD.json goes to :board.json.new, then is renamed to :board.json;
  5. the configuration goes to :data/config.json.new, its SHA-256 is checked on
     the board, then it is renamed to :data/config.json;
  6. data/overrides.json (settings changed at run time, commands.py) is
     removed: they belonged to the old configuration; the start markers
     (data/config.try, data/config.bak's data/config.boot: trial.py) are
     removed, with or without a configuration: they judged the old
     firmware, and a configuration that did not start on it (or went into
     safe mode) gets its tries again on the new one;
  7. the board is reset (the flag removed first, should it still be there):
     the guard starts.

A rename replaces the old file in one step, so a cable pulled during a copy
leaves the old configuration in place, never half a file. The last good copy
the firmware keeps (data/config.bak) is not touched. When a step fails after
the maintenance boot, deploy resets the board so the guard comes back at once.

Exit status: 0 deployed, 1 the configuration is invalid (nothing copied),
2 a usage, board, file or serial device problem (nothing copied), 3 a copy
step failed on the way (what was done is printed).
"""

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

import check_config  # noqa: E402

STORAGE = "/data"  # the firmware's storage folder on the ESP32 (platform/esp32.py)
# The firmware's start markers in STORAGE (trial.py TRIAL_FILE, BOOTS_FILE; a test checks they agree).
START_MARKERS = ("config.try", "config.boot")
FIRMWARE_STEP_S = 300  # copying the whole firmware over a slow USB-serial link
STEP_S = 60
MAINTENANCE_FLAG = "/maintenance"  # firmware/preboot.py FLAG, in the filesystem's root
MAINTENANCE_MS = 900000  # firmware/preboot.py MAINTENANCE_MS: the watchdog of a maintenance boot
# What the frozen image (manifest.py) holds: a folder of these on the
# filesystem would be imported instead (sys.path: '' before '.frozen').
FROZEN_PACKAGES = ("chargeguard", "umqtt", "microdot")
# What a board with the frozen image needs on its filesystem (build/device).
FROZEN_FILES = ("boot.py", "main.py", "preboot.mpy", "www")

# Runs on the board: checks the uploaded copy, then renames it over the target.
_INSTALL = """import os
def _install(temp, target, size, digest):
    try:
        import hashlib, binascii
        h = hashlib.sha256()
        with open(temp, 'rb') as f:
            while True:
                b = f.read(256)
                if not b:
                    break
                h.update(b)
        ok = binascii.hexlify(h.digest()).decode() == digest
    except ImportError:
        ok = os.stat(temp)[6] == size
    if not ok:
        os.remove(temp)
        raise OSError('the copy of %s arrived damaged: not installed' % target)
    try:
        os.rename(temp, target)
    except OSError:
        os.remove(target)
        os.rename(temp, target)
    print('installed', target)
"""

# Runs on the board right after the maintenance boot (step 2).
_CHECK = """import os, sys
try:
    os.stat(%(flag)r)
    missed = True
except OSError:
    missed = False
if missed:
    # The boot was stopped before main.py looked at the flag: nothing runs
    # and no watchdog is armed yet (a hard reset stops it); arm it as
    # preboot.py would, so a deploy that dies still ends in the guard.
    os.remove(%(flag)r)
    import machine
    machine.WDT(timeout=%(timeout)d)
    print('deploy: the board stopped before main.py; watchdog armed from here')
keep = sys.path[:]
sys.path[:] = ['.frozen']
try:
    import chargeguard
    frozen = True
except ImportError:
    frozen = False
sys.path[:] = keep
sys.modules.pop('chargeguard', None)
if frozen and not %(want)r:
    raise OSError('this board runs the image with ChargeGuard frozen in: use make deploy FROZEN=1 (the .mpy copy would hide it)')
if %(want)r and not frozen:
    raise OSError('this board has no ChargeGuard frozen in its firmware: flash the image (docs/firmware.md) or deploy without FROZEN=1')
print('deploy: maintenance boot confirmed; firmware image:', 'frozen' if frozen else 'stock')
"""

# Removes folders (recursively) that would hide frozen packages.
_RMTREES = """import os
def _rmtree(path):
    for entry in os.ilistdir(path):
        child = '{}/{}'.format(path, entry[0])  # no quote-slash literal: the test's fake maps those to its folder
        if entry[1] == 0x4000:
            _rmtree(child)
        else:
            os.remove(child)
    os.rmdir(path)
for _name in %r:
    try:
        os.stat(_name)
    except OSError:
        continue
    _rmtree(_name)
    print('removed', _name)
"""

_MKDIR = "import os\ntry:\n    os.mkdir(%r)\nexcept OSError:\n    pass\n"
_REMOVE = "import os\ntry:\n    os.remove(%r)\nexcept OSError:\n    pass\n"


class Stop(Exception):
    """A problem found before or during the deploy: args = (exit status, message)."""


def serial_problem(port, dev_dir="/dev", access=os.access):
    """Why `port` cannot be used, as a message for the installer, or None when it can."""
    if not port.startswith("/dev/"):
        return None  # "auto", a COM port, an mpremote shortcut: mpremote resolves it
    path = os.path.join(dev_dir, port[len("/dev/") :])
    found = sorted(glob.glob(os.path.join(dev_dir, "ttyUSB*")) + glob.glob(os.path.join(dev_dir, "ttyACM*")))
    found = ["/dev/" + os.path.relpath(name, dev_dir) for name in found]
    if not os.path.exists(path):
        if found:
            return (
                "%s does not exist. Serial devices present: %s. Use the board's, e.g. make deploy PORT=%s "
                "(unplug the board and plug it back in to see which one appears)" % (port, ", ".join(found), found[0])
            )
        return (
            "%s does not exist and no USB serial device (/dev/ttyUSB*, /dev/ttyACM*) is present. Plug the board "
            "in with a USB data cable (some cables only charge); `dmesg | tail` should then show a cp210x, ch341 "
            "or cdc_acm device. In a virtual machine or container, pass the USB device through." % port
        )
    if not access(path, os.R_OK | os.W_OK):
        return (
            "%s exists but you may not open it. Add yourself to the group that owns it (`ls -l %s` shows it, "
            "usually dialout): sudo usermod -aG dialout $USER, then log out and in again" % (port, port)
        )
    return None


def check_everything(args):
    """Every check that comes before the first copy; raises Stop."""
    board = os.path.join(args.boards_dir, args.board + ".json")
    if not args.board or not os.path.isfile(board) or args.board == "unix":
        # unix.json describes the host (simulator, tests), not a board to flash.
        names = sorted(name[:-5] for name in os.listdir(args.boards_dir) if name.endswith(".json") and name != "unix.json")
        what = "boards/unix.json is the simulator's, not a board's" if args.board == "unix" else "no board file %s" % board
        raise Stop(2, "%s. Boards: %s (make deploy BOARD=name)" % (what, ", ".join(names)))
    try:
        with open(board) as handle:
            json.load(handle)
    except ValueError as error:
        raise Stop(2, "the board file %s is not valid JSON (%s)" % (board, error))
    if args.config:
        if not os.path.isfile(args.config):
            raise Stop(2, "no configuration file %s (CONFIG= takes the path of a .json file)" % args.config)
        status = check_config.check_file(args.config, sys.stdout)
        if status != check_config.VALID:
            raise Stop(status, "the configuration is not valid: nothing was copied to the board")
    for name in ("main.py", "preboot.mpy") + (FROZEN_FILES if args.frozen else ()):
        if not os.path.exists(os.path.join(args.build, name)):
            raise Stop(2, "no firmware in %s (%s is missing): run make build (make deploy does)" % (args.build, name))
    if not (os.path.isfile(args.mpremote) and os.access(args.mpremote, os.X_OK)):
        raise Stop(2, "mpremote not found at %s: make deploy installs it into .venv" % args.mpremote)
    problem = serial_problem(args.port, args.dev_dir)
    if problem:
        raise Stop(2, problem)
    return board


def plan(args, board):
    """The mpremote command lines, in order, each with a step name and a time limit."""
    base = [args.mpremote, "connect", args.port]
    steps = [("maintenance boot: install main.py, write %s, reset" % MAINTENANCE_FLAG,
              base + _maintenance_chain(args.build), STEP_S)]
    check = _CHECK % {"flag": MAINTENANCE_FLAG, "timeout": MAINTENANCE_MS, "want": bool(args.frozen)}
    steps.append(("check the maintenance boot and the firmware image", base + ["exec", check], STEP_S))
    if args.frozen:
        stale = tuple("/" + name for name in FROZEN_PACKAGES)
        steps.append(("remove folders that would hide the frozen firmware", base + ["exec", _RMTREES % (stale,)], STEP_S))
        sources = [os.path.join(args.build, name) for name in FROZEN_FILES]
    else:
        sources = [os.path.join(args.build, name) for name in sorted(os.listdir(args.build))]
    steps.append(("copy the firmware", base + ["fs", "cp", "-r"] + sources + [":"], FIRMWARE_STEP_S))
    steps += _install_steps(base, board, "/board.json", "board file")
    if args.config:
        steps.append(("create %s" % STORAGE, base + ["exec", _MKDIR % STORAGE], STEP_S))
        steps += _install_steps(base, args.config, STORAGE + "/config.json", "configuration")
        # The settings changed at run time belonged to the old configuration.
        steps.append(("clear %s/overrides.json" % STORAGE, base + ["exec", _REMOVE % (STORAGE + "/overrides.json")], STEP_S))
    # The start markers judged the firmware this deploy replaces: a config.json that did not start
    # (config.try) or a last good one that failed its starts into safe mode (config.boot) may start
    # on the new firmware, so each gets its tries again (two failed starts still mean safe mode).
    markers = "".join(_REMOVE % (STORAGE + "/" + name) for name in START_MARKERS)
    steps.append(("clear the start markers (%s)" % ", ".join(START_MARKERS), base + ["exec", markers], STEP_S))
    steps.append(("reset the board: the guard starts", base + _reset_chain(), STEP_S))
    return steps


def _reset_chain():
    # The flag is normally gone already (the maintenance boot removed it);
    # a flag left here would keep the guard off for one more boot.
    return ["exec", _REMOVE % MAINTENANCE_FLAG, "+", "reset"]


def _maintenance_chain(build):
    """One mpremote call (commands joined by '+'): main.py and preboot.mpy installed, the flag written, a hard reset.

    One call, so the guard, stopped by its Ctrl-C, is reset within seconds,
    well inside its watchdog's 10 s.
    """
    chain = []
    calls = [_INSTALL]
    for name in ("preboot.mpy", "main.py"):
        source = os.path.join(build, name)
        with open(source, "rb") as handle:
            data = handle.read()
        temp = "/%s.new" % name
        chain += ["fs", "cp", source, ":" + temp, "+"]
        calls.append("_install(%r, %r, %d, %r)\n" % (temp, "/" + name, len(data), hashlib.sha256(data).hexdigest()))
    calls.append("with open(%r, 'w') as f:\n    f.write('deploy\\n')\n" % MAINTENANCE_FLAG)
    chain += ["exec", "".join(calls), "+", "reset"]
    return chain


def _install_steps(base, source, target, what):
    with open(source, "rb") as handle:
        data = handle.read()
    temp = target + ".new"
    call = "%s_install(%r, %r, %d, %r)\n" % (_INSTALL, temp, target, len(data), hashlib.sha256(data).hexdigest())
    return [
        ("copy the %s to %s" % (what, temp), base + ["fs", "cp", source, ":" + temp], STEP_S),
        ("check and rename it to %s" % target, base + ["exec", call], STEP_S),
    ]


def warning(steps):
    """What the installer must know before the guard stops: the wallboxes keep their last current."""
    longest = sum(step[2] for step in steps)
    return (
        "deploy: WARNING: the guard stops now until the board restarts at the end. The wallboxes keep the current "
        "they were last given (a V2C Trydan has no keep-alive to fall back on): usually for a minute or two, at most "
        "%d s (the steps' time limits); if deploy is cut off, the board's watchdog restarts the guard within %d min. "
        "Pause charging first if the house is near its limit.\n" % (longest, MAINTENANCE_MS // 60000)
    )


def run(steps, out=sys.stdout, reset=None):
    """Run the steps in order; on a failure, `reset` (an mpremote command: flag removed, hard reset) brings the guard back."""
    out.write(warning(steps))
    for index, (name, command, limit_s) in enumerate(steps):
        out.write("deploy: %s\n" % name)
        out.flush()
        code = _call(command, limit_s)
        if code != 0:
            done = ", ".join(step[0] for step in steps[:index]) or "nothing"
            restarted = ""
            if reset is not None:
                # Not guarding now: stopped by mpremote's Ctrl-C or in the
                # maintenance boot. A reset (the flag removed first) brings
                # the guard back at once.
                out.write("deploy: resetting the board so the guard starts again\n")
                out.flush()
                if _call(reset, STEP_S) == 0:
                    restarted = " The board was reset: the guard runs again."
                else:
                    restarted = (" The board did not answer a reset: its watchdog restarts the guard (within 10 s of "
                                 "the stop, or %d min after a maintenance boot)." % (MAINTENANCE_MS // 60000))
            raise Stop(
                3,
                "step '%s' failed (mpremote: %s). Done before it: %s. A configuration that was not renamed yet "
                "is not installed: the board keeps its previous one.%s Check the cable and the message above, and "
                "run make deploy again" % (name, code, done, restarted),
            )


def _call(command, limit_s):
    try:
        return subprocess.call(command, timeout=limit_s)
    except subprocess.TimeoutExpired:
        return "no answer within %d s" % limit_s


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True, help="serial device of the board, e.g. /dev/ttyUSB0")
    parser.add_argument("--board", required=True, help="a name from boards/, e.g. esp32_devkit")
    parser.add_argument("--config", default="", help="configuration file to install (optional)")
    parser.add_argument("--frozen", action="store_true",
                        help="the board runs the image with ChargeGuard frozen in (docs/firmware.md): copy only main.py, "
                             "boot.py, preboot.mpy, the web pages and the configuration")
    parser.add_argument("--mpremote", default=os.path.join(ROOT, ".venv", "bin", "mpremote"))
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "device"))
    parser.add_argument("--boards-dir", default=os.path.join(ROOT, "boards"))
    parser.add_argument("--dev-dir", default="/dev", help=argparse.SUPPRESS)  # tests
    args = parser.parse_args(argv)
    try:
        board = check_everything(args)
        run(plan(args, board), reset=[args.mpremote, "connect", args.port] + _reset_chain())
    except Stop as stop:
        sys.stderr.write("deploy: %s\n" % stop.args[1])
        return stop.args[0]
    print("deploy: done; watch the console with: %s connect %s repl" % (args.mpremote, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
