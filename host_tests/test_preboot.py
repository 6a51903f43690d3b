"""preboot.py: main.py's checks before the guard starts (the maintenance boot, a package hiding a frozen one)."""

import os
import sys

import preboot
import support


def _flag(directory):
    path = directory + "/maintenance"
    with open(path, "w") as handle:
        handle.write("deploy\n")
    return path


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def test_a_normal_boot_arms_nothing():
    directory = support.make_tmpdir("preboot")
    armed = []
    assert preboot.maintenance(directory + "/maintenance", lambda **kw: armed.append(kw)) is False
    assert armed == []


def test_the_watchdog_is_armed_before_the_flag_goes_and_it_works_once():
    directory = support.make_tmpdir("preboot")
    flag = _flag(directory)
    seen = []

    def watchdog(**kw):
        seen.append((kw, _exists(flag)))

    assert preboot.maintenance(flag, watchdog) is True
    # Armed while the flag is still there (a Ctrl-C between the two leaves
    # the flag, never a board with neither); then gone: the next boot guards.
    assert seen == [({"timeout": preboot.MAINTENANCE_MS}, True)]
    assert not _exists(flag)
    assert preboot.maintenance(flag, watchdog) is False and len(seen) == 1


def test_the_maintenance_timeout_outlasts_a_deploy_and_ends_within_a_quarter_hour():
    # tools/deploy.py gives the firmware copy 300 s; the guard must come back by itself.
    assert 300000 < preboot.MAINTENANCE_MS <= 15 * 60000


def test_a_failing_watchdog_is_not_hidden_and_the_flag_stays_gone():
    directory = support.make_tmpdir("preboot")
    flag = _flag(directory)

    def broken(**kw):
        raise OSError(22)

    try:
        preboot.maintenance(flag, broken)
        raised = False
    except OSError:
        raised = True
    assert raised and not _exists(flag)


def test_a_filesystem_folder_that_hides_a_frozen_package_is_found():
    # asyncio is frozen in every MicroPython unix port we run (and the stock
    # ESP32 firmware); CPython has no '.frozen' entry, so nothing is hidden there.
    directory = support.make_tmpdir("preboot")
    try:
        os.mkdir(directory + "/asyncio")
    except OSError:
        pass
    os.mkdir(directory + "/notfrozen")
    before = sys.modules.get("asyncio")
    sys.path.insert(0, directory)
    try:
        found = preboot.shadowed(("asyncio", "notfrozen"))
    finally:
        sys.path.pop(0)
    assert sys.modules.get("asyncio") is before  # the import order is left as it was
    if ".frozen" in sys.path:
        assert found == ["asyncio"], found
    else:
        assert found == []


def test_nothing_is_hidden_without_a_folder_ahead_of_frozen():
    assert preboot.shadowed(("asyncio",)) == [] or not support.IS_MICROPYTHON
