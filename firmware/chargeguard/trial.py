"""The trial of a new config.json: a file that did not start is not tried again.

A config.json that differs from config.bak (the last good copy) has not
yet guarded. Before it is loaded and assembled, start() writes a small
marker (TRIAL_FILE: the file's size and CRC-32, and why it failed once
that is known) next to it; App.keep_last_good removes the marker once the
configuration has guarded for CONFIG_PROVEN_MS. A marker still there at
the next boot, for the same file, means it did not start: a MemoryError,
a crash, a watchdog reset or a power cut during its first seconds. That
boot uses config.bak at once, instead of trying the file again (on a
small heap, a file that fails leaves no room for the fallback, and the
board would loop through resets with nothing commanded). A different
config.json (a deploy, the web settings' save) gets its own trial.

    start(directory) -> (note, boots): note None when config.json may be
        loaded (a marker written when it is on trial), or the note (str,
        for the owner) saying that it did not start last time: load
        config.bak instead. boots: see below; None while config.json is on
        trial (it is not the last good configuration).
    failed(directory, why, count) -> boots: config.json could not start
        (`why`, e.g. the error's repr): the marker says so for the next
        boot; config.bak starts now (counted when `count`, else None).
    settled(directory, count) -> boots: config.json is not on trial
        (missing, invalid or refused at load): the marker goes; config.bak
        starts now (counted when `count`, else None).

The last good configuration itself has a start count (BOOTS_FILE, for
config.bak's size and CRC-32): every boot that starts it (as config.bak, or
as a config.json identical to it) adds one before it is loaded, and the
proven boot takes it back (App.keep_last_good writes `proven`). boots is
(level, proven): the count before this boot decides the level, 0 (as
configured) for 0 or 1 unproven starts (a single power cut in the first
seconds never demotes a good configuration), SAFE_MODE after two in a row
(safemode.py: the guard-only configuration), FAILSAFE once a safe-mode
start did not prove either (no meter read: every charger at its failsafe
current). proven (bytes) is the marker a proven boot leaves: b"" (none)
at level 0; a count of 1 at SAFE_MODE, so the next restart tries the full
configuration once more and one failure of it is safe mode again; a count
of 2 at FAILSAFE, so the next restart is safe mode. boots is None when
there is no config.bak (the first configuration: no count, tried at every
boot).

Without config.bak (the first configuration) a marker does not stop
config.json from being tried again: there is nothing else to guard with,
and a power cut must not leave the board unconfigured; the failure
itself waits app.RESTART_DELAY_MS before each reset (app.main()), a
watchdog reset comes only after a stall of WATCHDOG_TIMEOUT_MS.

Loaded at boot only (app.build via appboot.py and startup.py) and unloaded after.
"""

from chargeguard import flashfile

# app._TRIAL (app.py does not load this module): a test checks they agree.
TRIAL_FILE = "config.try"
_RESTARTED = "the board restarted while starting it"
# The reason kept in the marker (an error's repr) is cut to this many characters.
_WHY_MAX = 120
# app._BOOTS: the last good configuration's unproven starts ("size crc count").
BOOTS_FILE = "config.boot"
SAFE_MODE = 1  # the guard-only configuration (safemode.py)
FAILSAFE = 2  # safe mode without the meter: every charger at its failsafe current
_SAFE_AFTER = 2  # unproven starts in a row of the last good configuration before safe mode
_COUNT_MAX = 9  # the count stops here (a line of bounded length)


def _digest(directory):
    # "size crc" of config.json, or None when it cannot be read.
    found = flashfile.checksum(directory + "/config.json")
    return None if found is None else "%d %d" % found


def _marker(directory):
    # The marker's (digest, why), or (None, None).
    try:
        with open(directory + "/" + TRIAL_FILE) as handle:
            digest = handle.readline().strip()
            why = handle.read(_WHY_MAX).strip()
        return digest, why
    except (OSError, ValueError):
        return None, None


def _write(directory, digest, why):
    path = directory + "/" + TRIAL_FILE
    flashfile.write(path, path + ".tmp", ("%s\n%s\n" % (digest, why[:_WHY_MAX])).encode())


def _boots(directory, backup=None):
    # config.bak starts: (level, proven) from its count, this start added; None without config.bak.
    # backup: config.bak's checksum when the caller has it.
    if backup is None:
        backup = flashfile.checksum(directory + "/config.bak")
    if backup is None:
        return None
    digest = "%d %d" % backup
    path = directory + "/" + BOOTS_FILE
    count = 0
    try:
        with open(path) as handle:
            words = handle.readline().split()
        if len(words) == 3 and words[0] + " " + words[1] == digest:
            count = int(words[2])
    except (OSError, ValueError):
        pass  # none yet, or unreadable: counted from here
    try:
        flashfile.write(path, path + ".tmp", ("%s %d\n" % (digest, min(count + 1, _COUNT_MAX))).encode())
    except OSError:
        pass  # the flash refused: this start is not counted
    if count < _SAFE_AFTER:
        return 0, b""
    level = SAFE_MODE if count == _SAFE_AFTER else FAILSAFE
    # Proven at this level: the next start is one level up (tried once).
    return level, ("%s %d\n" % (digest, _SAFE_AFTER - 1 if level == SAFE_MODE else _SAFE_AFTER)).encode()


def start(directory):
    """(note, boots): note None when config.json may be loaded (its trial begins), else why not (str).

    boots: (level, proven) when this boot starts the last good
    configuration (see the module's text), else None. Raises nothing: a
    marker that cannot be written only costs the protection.
    """
    digest = _digest(directory)
    backup = flashfile.checksum(directory + "/config.bak")
    if digest is None or backup is None or digest == "%d %d" % backup:
        # Nothing new to try, or nothing to fall back to: config.json is
        # loaded as before; a stale marker goes.
        flashfile.remove(directory + "/" + TRIAL_FILE)
        return None, _boots(directory, backup)
    last, why = _marker(directory)
    if last == digest:
        note = "config.json did not start last time (%s): it was NOT applied; fix it and deploy it again" % (
            why or _RESTARTED
        )
        return note, _boots(directory, backup)
    try:
        _write(directory, digest, "")
    except OSError:
        pass  # the flash refused: the file is tried without the marker
    return None, None


def failed(directory, why, count=True):
    """config.json could not start, for `why` (str): the next boot uses config.bak at once.

    config.bak starts now: its start is counted when `count`; returns boots (see start()) or None.
    """
    digest = _digest(directory)
    if digest is not None:
        try:
            _write(directory, digest, why)
        except OSError:
            pass
    return _boots(directory) if count else None


def settled(directory, count=False):
    """config.json is not on trial (missing, invalid, refused at load): its marker goes.

    When `count`, config.bak starts now: its start is counted; returns boots (see start()) or None.
    """
    flashfile.remove(directory + "/" + TRIAL_FILE)
    return _boots(directory) if count else None
