#!/usr/bin/env python3
"""deploy: put the built firmware, a board file and optionally a configuration onto a board.

    python3 tools/deploy.py --port /dev/ttyUSB0 --board esp32_devkit [--config my.json]
    (make deploy PORT=... BOARD=... CONFIG=...)

Everything is checked before anything is copied: the board file exists,
the configuration exists and passes the device's own validator
(tools/check_config.py), the firmware is built, the serial device is there
and may be opened. Then, with mpremote:

  1. the firmware (build/device) is copied;
  2. boards/BOARD.json goes to :board.json.new, then is renamed to :board.json;
  3. the configuration goes to :data/config.json.new, its SHA-256 is checked on
     the board, then it is renamed to :data/config.json;
  4. data/overrides.json (settings changed at run time, commands.py) is
     removed: they belonged to the old configuration;
  5. the board is reset.

A rename replaces the old file in one step, so a cable pulled during a copy
leaves the old configuration in place, never half a file. The last good copy
the firmware keeps (data/config.bak) is not touched.

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
FIRMWARE_STEP_S = 300  # copying the whole firmware over a slow USB-serial link
STEP_S = 60

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
    if not os.path.isfile(os.path.join(args.build, "main.py")):
        raise Stop(2, "no firmware in %s: run make build (make deploy does)" % args.build)
    if not (os.path.isfile(args.mpremote) and os.access(args.mpremote, os.X_OK)):
        raise Stop(2, "mpremote not found at %s: make deploy installs it into .venv" % args.mpremote)
    problem = serial_problem(args.port, args.dev_dir)
    if problem:
        raise Stop(2, problem)
    return board


def plan(args, board):
    """The mpremote command lines, in order, each with a step name and a time limit."""
    base = [args.mpremote, "connect", args.port]
    sources = [os.path.join(args.build, name) for name in sorted(os.listdir(args.build))]
    steps = [("copy the firmware", base + ["fs", "cp", "-r"] + sources + [":"], FIRMWARE_STEP_S)]
    steps += _install_steps(base, board, "/board.json", "board file")
    if args.config:
        steps.append(("create %s" % STORAGE, base + ["exec", _MKDIR % STORAGE], STEP_S))
        steps += _install_steps(base, args.config, STORAGE + "/config.json", "configuration")
        # The settings changed at run time belonged to the old configuration.
        steps.append(("clear %s/overrides.json" % STORAGE, base + ["exec", _REMOVE % (STORAGE + "/overrides.json")], STEP_S))
    steps.append(("reset the board", base + ["reset"], STEP_S))
    return steps


def _install_steps(base, source, target, what):
    with open(source, "rb") as handle:
        data = handle.read()
    temp = target + ".new"
    call = "%s_install(%r, %r, %d, %r)\n" % (_INSTALL, temp, target, len(data), hashlib.sha256(data).hexdigest())
    return [
        ("copy the %s to %s" % (what, temp), base + ["fs", "cp", source, ":" + temp], STEP_S),
        ("check and rename it to %s" % target, base + ["exec", call], STEP_S),
    ]


def run(steps, out=sys.stdout):
    for index, (name, command, limit_s) in enumerate(steps):
        out.write("deploy: %s\n" % name)
        out.flush()
        try:
            code = subprocess.call(command, timeout=limit_s)
        except subprocess.TimeoutExpired:
            code = "no answer within %d s" % limit_s
        if code != 0:
            done = ", ".join(step[0] for step in steps[:index]) or "nothing"
            raise Stop(
                3,
                "step '%s' failed (mpremote: %s). Done before it: %s. A configuration that was not renamed yet "
                "is not installed: the board keeps its previous one. Check the cable and run make deploy again"
                % (name, code, done),
            )


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True, help="serial device of the board, e.g. /dev/ttyUSB0")
    parser.add_argument("--board", required=True, help="a name from boards/, e.g. esp32_devkit")
    parser.add_argument("--config", default="", help="configuration file to install (optional)")
    parser.add_argument("--mpremote", default=os.path.join(ROOT, ".venv", "bin", "mpremote"))
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "device"))
    parser.add_argument("--boards-dir", default=os.path.join(ROOT, "boards"))
    parser.add_argument("--dev-dir", default="/dev", help=argparse.SUPPRESS)  # tests
    args = parser.parse_args(argv)
    try:
        board = check_everything(args)
        run(plan(args, board))
    except Stop as stop:
        sys.stderr.write("deploy: %s\n" % stop.args[1])
        return stop.args[0]
    print("deploy: done; watch the console with: %s connect %s repl" % (args.mpremote, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
