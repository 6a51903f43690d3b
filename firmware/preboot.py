# What main.py looks at before the guard starts. A top-level module, not part
# of the chargeguard package, so that it works whatever package the board
# holds: none yet (a first deploy), an older one, or the frozen one.
#
# 1. The maintenance boot. tools/deploy.py cannot stop the hardware watchdog
#    the guard arms (app.WATCHDOG_TIMEOUT_MS, 10 s; machine.WDT cannot be
#    stopped): mpremote's Ctrl-C stops the guard but not the watchdog, so the
#    chip would reset ~10 s into a copy that takes minutes, and the guard
#    would come back mid-deploy. So deploy writes the one-shot flag file
#    FLAG and hard-resets; this boot arms the watchdog with MAINTENANCE_MS
#    and removes the flag (one-shot: a flag left behind by anything can never
#    keep the guard off for more than one boot), and does NOT start the guard. The watchdog survives mpremote's soft resets, so
#    a deploy that dies midway ends in a reset into the guard by itself.
# 2. A package on the filesystem that hides a frozen one ('' comes before
#    '.frozen' in sys.path): the board then runs the filesystem's .mpy copy,
#    where MQTT and the web pages do not fit a plain ESP32. Said on the
#    console; `make deploy FROZEN=1` removes such a copy.
import os

from micropython import const

FLAG = "maintenance"  # in the filesystem's root, beside main.py (tools/deploy.py MAINTENANCE_FLAG)
# The hardware watchdog's timeout in a maintenance boot: longer than the
# longest deploy (tools/deploy.py: 300 s for the firmware plus the small
# steps), short enough that a board left by a failed deploy guards again
# within a quarter of an hour. The esp32 port passes milliseconds to the
# ESP-IDF task watchdog (esp_task_wdt_config_t.timeout_ms, an uint32_t):
# 15 minutes is far inside its range.
MAINTENANCE_MS = const(900000)


def maintenance(flag=FLAG, watchdog=None):
    """True when this is a maintenance boot: `flag` was there (now removed) and the watchdog is armed with MAINTENANCE_MS.

    False (nothing done) on every normal boot. `watchdog`: what arms it,
    called with timeout= in ms (machine.WDT; tests pass their own).
    machine.WDT's errors propagate: main.py then stops at the REPL without
    the guard, as in any failed boot, and deploy's check step says so.
    """
    try:
        os.stat(flag)
    except OSError:
        return False  # no flag: a normal boot
    if watchdog is None:
        import machine

        watchdog = machine.WDT
    # The watchdog before the flag goes: a Ctrl-C between the two then
    # leaves the flag (deploy's check step removes it and arms the
    # watchdog itself), never a board with neither. The flag goes even if
    # arming fails, so it cannot hold the guard off past this boot.
    try:
        watchdog(timeout=MAINTENANCE_MS)
    finally:
        os.remove(flag)
    line = "!" * 64
    print(line)
    print("MAINTENANCE BOOT: NOT GUARDING. tools/deploy.py asked for it (the %s flag, now removed)." % flag)
    print("The wallboxes keep the current they were last given; nothing limits them now.")
    print("The watchdog resets the board into the guard within %d min unless deploy resets it first." % (MAINTENANCE_MS // 60000))
    print(line)
    return True


def shadowed(names=("chargeguard",)):
    """The names in `names` that exist as a folder on the filesystem ahead of '.frozen' in sys.path AND are frozen.

    Those are imported from the filesystem, not from the image. Returns a
    list (empty on stock firmware, where nothing of ours is frozen, and on
    ports without '.frozen'). Imports each frozen package once to prove it is
    there, then forgets it, so the normal import order is unchanged (a
    package whose __init__ imports submodules would leave those behind:
    chargeguard's imports nothing).
    """
    import sys

    path = sys.path
    found = []
    if ".frozen" not in path:
        return found
    ahead = path[: path.index(".frozen")]
    for name in names:
        on_disk = False
        for entry in ahead:
            try:
                os.stat(entry + "/" + name if entry else name)
                on_disk = True
                break
            except OSError:
                pass
        if not on_disk:
            continue
        keep = path[:]
        saved = sys.modules.pop(name, None)
        path[:] = [".frozen"]
        try:
            __import__(name)
            found.append(name)
        except ImportError:
            pass
        finally:
            path[:] = keep
            sys.modules.pop(name, None)
            if saved is not None:
                sys.modules[name] = saved
    return found


def warn_shadowed():
    """Say on the console which frozen packages a filesystem copy hides (see shadowed())."""
    try:
        names = shadowed()
    except Exception as error:  # a check must never keep the guard from starting
        print("boot: could not check for a package hiding a frozen one: %r" % error)
        return
    for name in names:
        print("boot: WARNING: a %s/ folder on the filesystem hides the frozen %s: the board runs the filesystem's copy "
              "(for a frozen image, make deploy FROZEN=1 removes it)" % (name, name))
