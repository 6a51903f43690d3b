"""Files on flash that a power cut never leaves half written.

    write(path, temp, data) -> None: `data` (bytes) goes to `temp`, is flushed,
        synced and read back, then renamed over `path`. After a power cut at any
        point `path` holds the old or the new content, never a mix. Raises
        OSError when the flash fails or the read-back differs (`path` untouched).
    write_temp(temp, data): the first half of write(), for callers that move
        other files before the rename.
    same(path, data) -> True when the file at `path` holds exactly `data`
        (False when it is missing or unreadable); compares in small chunks.
    replace(source, target), remove(path): rename over / delete, for
        filesystems that refuse to rename over an existing file too.

Small on purpose: the app imports it once, after a configuration has run,
to keep the last-good copy, while the config module stays unloaded.
"""

import os

from micropython import const

_CHUNK = const(128)  # compare buffer: no allocation the size of the file


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
                if offset + count > len(data) or chunk != data[offset : offset + count]:
                    return False
                offset += count
    except OSError:
        return False


def write(path, temp, data):
    """Store `data` at `path` through `temp` so that a power cut keeps old or new."""
    write_temp(temp, data)
    replace(temp, path)


def write_temp(temp, data):
    """Write `data` to `temp`, synced and verified; raises OSError when the flash did not take it."""
    remove(temp)
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        fsync = getattr(os, "fsync", None)
        if fsync is not None:
            fsync(handle.fileno())
    # Read back before replacing anything: a flash that did not take the
    # write must not cost the good file.
    if not same(temp, data):
        raise OSError("%s did not read back as written" % temp)
