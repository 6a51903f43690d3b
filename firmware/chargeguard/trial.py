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

    start(directory) -> None: config.json may be loaded (a marker written
        when it is on trial), or the note (str, for the owner) saying that
        it did not start last time: load config.bak instead.
    failed(directory, why): config.json could not start (`why`, e.g. the
        error's repr): the marker says so for the next boot.
    settled(directory): config.json is not on trial (missing, invalid or
        refused at load): the marker goes.

Without config.bak (the first configuration) a marker does not stop
config.json from being tried again: there is nothing else to guard with,
and a power cut must not leave the board unconfigured; the failure
itself waits app.RESTART_DELAY_MS before each reset (app.main()), a
watchdog reset comes only after a stall of WATCHDOG_TIMEOUT_MS.

Loaded at boot only (app.build via startup.py) and unloaded after.
"""

from chargeguard import flashfile

# app._TRIAL (app.py does not load this module): a test checks they agree.
TRIAL_FILE = "config.try"
_RESTARTED = "the board restarted while starting it"
# The reason kept in the marker (an error's repr) is cut to this many characters.
_WHY_MAX = 120


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


def start(directory):
    """None when config.json may be loaded (its trial begins), else the note why not (str).

    Raises nothing: a marker that cannot be written only costs the
    protection (said on the console by the caller's note being None).
    """
    digest = _digest(directory)
    backup = flashfile.checksum(directory + "/config.bak")
    if digest is None or backup is None or digest == "%d %d" % backup:
        # Nothing new to try, or nothing to fall back to: config.json is
        # loaded as before; a stale marker goes.
        flashfile.remove(directory + "/" + TRIAL_FILE)
        return None
    last, why = _marker(directory)
    if last == digest:
        return "config.json did not start last time (%s): it was NOT applied; fix it and deploy it again" % (
            why or _RESTARTED
        )
    try:
        _write(directory, digest, "")
    except OSError:
        pass  # the flash refused: the file is tried without the marker
    return None


def failed(directory, why):
    """config.json could not start, for `why` (str): the next boot uses config.bak at once."""
    digest = _digest(directory)
    if digest is not None:
        try:
            _write(directory, digest, why)
        except OSError:
            pass


def settled(directory):
    """config.json is not on trial (missing, invalid, refused at load): its marker goes."""
    flashfile.remove(directory + "/" + TRIAL_FILE)
