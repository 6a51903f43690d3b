# The rehearsal's control file, read by the fake machine and network modules
# inside the firmware process (MicroPython unix port).
#
# The harness (tools/rehearsal/rehearsal.py) writes a JSON object atomically
# (temp file + rename) to $REHEARSAL_CONTROL; the fakes re-read it at most
# every 100 ms. Keys: see rehearsal.py RADIO_DEFAULTS ("ap", "ssid", "password",
# "assoc_ms", "dhcp_ms", "rssi", "ip", "dns", "freeze").
import json
import os
import time

_state = {"values": {}, "read_ms": None}


def get(key, default=None):
    """The control value `key` (the file re-read when 100 ms old)."""
    now = time.ticks_ms()
    last = _state["read_ms"]
    if last is None or time.ticks_diff(now, last) >= 100:
        _state["read_ms"] = now
        path = os.getenv("REHEARSAL_CONTROL")
        if path:
            try:
                with open(path) as handle:
                    _state["values"] = json.load(handle)
            except (OSError, ValueError):
                pass  # mid-rename: keep the last values
    return _state["values"].get(key, default)


def note(text):
    """One line on stderr for the harness ("FAKE-...: ...")."""
    import sys

    sys.stderr.write(text + "\n")


def hang_if_frozen():
    """The fault hook: when "freeze" names this boot ($REHEARSAL_BOOT), the caller's call never returns.

    Sleeping blocks the whole event loop, as a driver call stuck in C would
    on the device; only the watchdog can end it. The fault belongs to the
    boot it was set for: the next boot runs normally, as after a real reset.
    """
    if get("freeze") == int(os.getenv("REHEARSAL_BOOT") or "0"):
        note("FAKE-FREEZE: a driver call hangs, the event loop stops")
        while True:
            time.sleep(1)
