# What a custom ChargeGuard firmware image freezes (MicroPython manifest format).
#
# Frozen modules run from flash: their bytecode and constant strings take no
# heap, which is what makes a plain ESP32 (no PSRAM) fit everything
# (docs/firmware.md). Used by tools/upy32.py for the 32-bit unix proxy and,
# through boards/manifest_esp32.py, by an ESP32 firmware build.
#
# Device libraries: asyncio (ships with MicroPython), umqtt.simple from
# micropython-lib and microdot (the web server), pinned and fetched by tools/devlibs.py into build/lib
# (`make build` first). main.py and boot.py stay on the filesystem.
include("$(MPY_DIR)/extmod/asyncio")
module("umqtt/simple.py", base_path="build/lib")
package("microdot", base_path="build/lib")
package("chargeguard", base_path="firmware")
