# FROZEN_MANIFEST for a MicroPython v1.28.0 ESP32 build (docs/firmware.md, "Building the ESP32 image").
#
# Not the port's whole boards/manifest.py: besides its own modules and asyncio
# it require()s micropython-lib packages, umqtt.simple among them, and
# manifest.py freezes umqtt/simple.py from the version we pin (build/lib,
# tools/devlibs.py): the module would be frozen twice, and the generated C
# defines frozen_module_umqtt_simple twice (host_tests/system/
# test_manifest_esp32.py runs MicroPython's makemanifest.py to show both).
# From the port's manifest we take, each once:
# - its modules folder: _boot.py (mounts the filesystem at every boot, and on
#   the first boot runs inisetup.py, which makes it on flashbdev.py's
#   partition) and the port's other small modules;
freeze("$(PORT_DIR)/modules")
# - asyncio: manifest.py includes it (a manifest included twice is read once).
# Left out, as ChargeGuard uses none of them: bundle-networking (mip, ntptime,
# requests, webrepl), aioespnow, dht, ds18x20, neopixel, onewire,
# umqtt.robust, upysh, and micropython-lib's umqtt.simple (ours is pinned).
include("../manifest.py")
