# What a custom ChargeGuard firmware image freezes (MicroPython manifest format).
#
# Frozen modules run from flash: their bytecode and constant strings take no
# heap, which is what makes a plain ESP32 (no PSRAM) fit everything
# (docs/firmware.md). Used by tools/upy32.py for the 32-bit unix proxy and,
# through boards/manifest_esp32.py, by an ESP32 firmware build.
#
# Device libraries are listed here as they arrive (today only asyncio, which
# ships with MicroPython). main.py and boot.py stay on the filesystem.
include("$(MPY_DIR)/extmod/asyncio")
package("chargeguard", base_path="firmware")
