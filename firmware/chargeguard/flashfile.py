"""Files on flash that a power cut never leaves half written.

    write(path, temp, data) -> None: `data` (bytes) goes to `temp`, is flushed,
        synced and read back, then renamed over `path`. After a power cut at any
        point `path` holds the old or the new content, never a mix. Raises
        OSError when the flash fails or the read-back differs (`path` untouched).
    write_temp(temp, data): the first half of write(), for callers that move
        other files before the rename.
    checksum(path) -> (size in bytes, CRC-32) of a file, None when it cannot
        be read.
    copy(source, target, temp, expected) -> None: copies `source` to `target`
        the same way as write(), provided `source` still has the checksum
        `expected`; raises OSError otherwise (`target` untouched).
    same(path, data) -> True when the file at `path` holds exactly `data`.
    replace(source, target), remove(path): rename over / delete, also on
        filesystems that refuse to rename over an existing file.
    keep_last_good(storage, good, log): App.keep_last_good's work, config.json
        copied to config.bak; an OSError is said on `log`, not raised.

Every read and copy goes through one 128-byte buffer: nothing is allocated
the size of a file. Small on purpose: the app loads it once, after a
configuration has run, to keep the last good copy while the config module
stays unloaded.
"""

import binascii
import os

from micropython import const

_CHUNK = const(128)
# config.BACKUP_FILE and CONFIG_FILE (the config module is not loaded while running).
_LAST_GOOD = "config.bak"


def remove(path):
    """Delete `path`; a missing file is not an error."""
    try:
        os.remove(path)
    except OSError:
        pass


def replace(source, target):
    """Rename `source` to `target`, replacing it."""
    try:
        os.rename(source, target)
    except OSError:
        # Some filesystems (FAT) refuse to rename over an existing file.
        remove(target)
        os.rename(source, target)


def checksum(path, sink=None):
    """(size, CRC-32) of the file at `path`, or None; each chunk also goes to sink.write()."""
    buffer = bytearray(_CHUNK)
    size = 0
    crc = 0
    try:
        with open(path, "rb") as handle:
            while True:
                count = handle.readinto(buffer)
                if not count:
                    return size, crc
                chunk = buffer if count == _CHUNK else memoryview(buffer)[:count]
                crc = binascii.crc32(chunk, crc)
                size += count
                if sink is not None:
                    sink.write(chunk)
    except OSError:
        if sink is not None:
            raise
        return None


def same(path, data):
    """True when the file at `path` holds exactly the bytes `data`."""
    buffer = bytearray(_CHUNK)
    offset = 0
    try:
        with open(path, "rb") as handle:
            while True:
                count = handle.readinto(buffer)
                if not count:
                    return offset == len(data)
                chunk = buffer if count == _CHUNK else buffer[:count]
                if chunk != data[offset : offset + count]:
                    return False
                offset += count
    except OSError:
        return False


def _sync(handle):
    handle.flush()
    fsync = getattr(os, "fsync", None)
    if fsync is not None:
        fsync(handle.fileno())


def write_temp(temp, data):
    """Write `data` to `temp`, synced and verified; raises OSError when the flash did not take it."""
    remove(temp)
    with open(temp, "wb") as handle:
        handle.write(data)
        _sync(handle)
    # Read back before replacing anything: a flash that did not take the
    # write must not cost the good file.
    if not same(temp, data):
        raise OSError("%s did not read back as written" % temp)


def write(path, temp, data):
    """Store `data` at `path` through `temp` so that a power cut keeps old or new."""
    write_temp(temp, data)
    replace(temp, path)


def copy(source, target, temp, expected):
    """Copy `source` over `target` through `temp`, only if `source` still has checksum `expected`."""
    remove(temp)
    with open(temp, "wb") as handle:
        copied = checksum(source, handle)
        _sync(handle)
    if copied != expected:
        remove(temp)
        raise OSError("%s changed since it was loaded" % source)
    if checksum(temp) != expected:
        remove(temp)
        raise OSError("%s did not read back as written" % temp)
    replace(temp, target)


def keep_last_good(storage, good, log):
    """config.json (in directory `storage`) has run: copy it to config.bak, provided it still has checksum `good`.

    App.keep_last_good's work (that code is here, loaded once per boot, not
    on the running controller's heap). Not fatal when the flash fails: said
    on `log`, and the next boot tries again.
    """
    last_good = storage + "/" + _LAST_GOOD
    try:
        copy(storage + "/config.json", last_good, last_good + ".tmp", good)
        log("config: config.json has run: kept as the last good configuration (%s)" % _LAST_GOOD)
    except OSError as error:
        # Not fatal: the next boot tries again.
        log("config: could not keep the last good copy (%r)" % (error,))
