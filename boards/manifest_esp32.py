# FROZEN_MANIFEST for a MicroPython ESP32 build (docs/firmware.md): the port's
# own frozen modules (its _boot.py mounts the filesystem), then ChargeGuard's.
include("$(PORT_DIR)/boards/manifest.py")
include("../manifest.py")
