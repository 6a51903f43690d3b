"""A stand-in for mpremote with a board that is a folder: for testing tools/deploy.py without hardware.

    fake_mpremote.py connect PORT fs cp [-r] SRC... :DEST | exec CODE | reset

Environment: FAKE_BOARD_ROOT (the board's filesystem), FAKE_MPREMOTE_LOG
(one JSON line per call: the command after `connect PORT`), FAKE_MPREMOTE_CUT
(a copy whose destination contains it writes half the file and fails, as a
pulled cable does), FAKE_MPREMOTE_DAMAGE (such a copy writes half and
reports success).
"""

import json
import os
import shutil
import sys


def board_path(root, remote):
    return os.path.join(root, remote.lstrip(":").lstrip("/"))


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


def main(argv):
    root = os.environ["FAKE_BOARD_ROOT"]
    assert argv[0] == "connect", argv
    command = argv[2:]
    with open(os.environ["FAKE_MPREMOTE_LOG"], "a") as log:
        log.write(json.dumps(command) + "\n")
    if command[:2] == ["fs", "cp"]:
        paths = [item for item in command[2:] if item != "-r"]
        return copy(root, paths[:-1], paths[-1])
    if command[0] == "exec":
        # Absolute board paths inside the code's string literals point into the folder.
        code = command[1].replace("'/", "'" + root + "/")
        try:
            exec(compile(code, "<board>", "exec"), {"__name__": "board"})
        except Exception as error:
            sys.stderr.write("Traceback (most recent call last):\n%s: %s\n" % (type(error).__name__, error))
            return 1
        return 0
    if command == ["reset"]:
        return 0
    sys.stderr.write("fake mpremote: unknown command %r\n" % command)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
