# The rehearsal's stand-in for the ESP32's boot: runs the REAL boot.py and
# main.py from this directory (build/device + board.json) with
# platform/esp32.py, on the MicroPython unix port.
#
# Only what the chip would provide is stood in for: the `machine` and
# `network` modules (fakes of the documented API, from $REHEARSAL_FAKES),
# the platform choice (sys.platform is "esp32" on the chip, "linux" here),
# and the flash root: esp32.Platform's storage "/data" is "data" under this
# directory; the web interface's address is loopback (_Esp32OnLoopback).
# Nothing else of the firmware is changed.
import os
import sys

sys.path.insert(0, os.getenv("REHEARSAL_FAKES"))
import fake_machine  # noqa: E402
import fake_network  # noqa: E402

sys.modules["machine"] = fake_machine
sys.modules["network"] = fake_network

import chargeguard.platform as _platform_package  # noqa: E402
from chargeguard.platform import esp32 as _esp32  # noqa: E402


class _Esp32OnLoopback(_esp32.Platform):
    # The host is no ESP32 on its own network: a web interface the firmware
    # starts (every interface, port 80 on the chip) listens on loopback at
    # the harness's port instead, as every test server does.
    def web_address(self, port):
        return "127.0.0.1", int(os.getenv("REHEARSAL_WEB_PORT") or port)


class _Esp32Here:
    @staticmethod
    def Platform(board, storage_dir=None):
        return _Esp32OnLoopback(board, storage_dir or "data")


_platform_package.load = lambda: _Esp32Here
import boot  # noqa: E402,F401
import main  # noqa: E402,F401

# main.py returned (a maintenance boot: preboot.py): the chip sits at the REPL
# with the watchdog running until deploy resets it or the watchdog bites.
print("REHEARSAL: main.py returned, at the REPL; guard loaded: %s" % ("chargeguard.app" in sys.modules))
import time  # noqa: E402

while True:
    time.sleep(1)
