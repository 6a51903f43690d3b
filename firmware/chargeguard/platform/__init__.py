"""The only part of ChargeGuard that touches hardware or the operating system.

`esp32.py` (the device) and `unix.py` (the MicroPython unix port and CPython,
for the simulator and host tests) offer the same interface: a class
`Platform(board, storage_dir=None)`. Use `load().Platform(board)`.
"""


def load():
    """Return the platform module for this runtime (esp32 or unix), imported on demand."""
    import sys

    # Imported here, not at the top, so the device never loads unix.py (termios,
    # select) and host tests never need the ESP32 modules.
    if sys.platform == "esp32":
        from . import esp32 as module
    else:
        from . import unix as module
    return module
