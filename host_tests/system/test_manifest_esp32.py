"""boards/manifest_esp32.py through MicroPython v1.28.0's own makemanifest.py, against a stand-in esp32 port.

These machines have no ESP-IDF, so the port is a stand-in with the shape of
v1.28.0's ports/esp32/boards/manifest.py as far as it matters here (its
modules folder, asyncio, and require("umqtt.simple") from micropython-lib;
copies of that file in the reference corpus all have the three) and a
stand-in micropython-lib holding umqtt.simple. makemanifest.py and
mpy-tool.py are MicroPython's own (build/upy32's source tree); the C they
generate is what the ESP32 build compiles.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import upy32  # noqa: E402

PORT_MANIFEST = 'freeze("$(PORT_DIR)/modules")\ninclude("$(MPY_DIR)/extmod/asyncio")\nrequire("umqtt.simple")\n'
PORT_MODULES = ("_boot", "flashbdev", "inisetup")


def source_or_skip():
    try:
        upy32.ensure("frozen", quiet=True)  # the source extracted, mpy-cross and the frozen build's qstrs made
    except upy32.Unavailable as why:
        if upy32.in_ci():
            pytest.fail("MicroPython source not available: %s" % why.args[0])
        pytest.skip("MicroPython source not available: %s" % why.args[0])
    for needed in (os.path.join("mpy-cross", "build", "mpy-cross"),
                   os.path.join("ports", "unix", "build-32-frozen", "genhdr", "qstrdefs.preprocessed.h")):
        if not os.path.exists(os.path.join(upy32.SOURCE, needed)):
            pytest.fail("%s is missing from build/upy32's source tree: remove build/upy32 and run make upy32" % needed)
    if not os.path.exists(os.path.join(ROOT, "build", "lib", "umqtt", "simple.py")):
        pytest.fail("build/lib is missing: make build first (the manifest freezes the pinned device libraries)")
    return upy32.SOURCE


def stand_in(tmp_path):
    port = tmp_path / "port"
    (port / "boards").mkdir(parents=True)
    (port / "boards" / "manifest.py").write_text(PORT_MANIFEST)
    (port / "modules").mkdir()
    for name in PORT_MODULES:
        (port / "modules" / (name + ".py")).write_text("PORT_MODULE = %r\n" % name)
    lib = tmp_path / "lib"
    for name in ("python-stdlib", "python-ecosys"):
        (lib / name).mkdir(parents=True)
    package = lib / "micropython" / "umqtt.simple"
    (package / "umqtt").mkdir(parents=True)
    (package / "manifest.py").write_text('package("umqtt")\n')
    (package / "umqtt" / "simple.py").write_text("LIB_COPY = 1\n")
    return port, lib


def freeze(source, tmp_path, manifest):
    port, lib = stand_in(tmp_path)
    build = tmp_path / "build"
    (build / "genhdr").mkdir(parents=True)
    qstrs = os.path.join(source, "ports", "unix", "build-32-frozen", "genhdr", "qstrdefs.preprocessed.h")
    (build / "genhdr" / "qstrdefs.preprocessed.h").write_bytes(open(qstrs, "rb").read())
    out = build / "frozen_content.c"
    command = [sys.executable, os.path.join(source, "tools", "makemanifest.py"), "-o", str(out), "-b", str(build),
               "-v", "MPY_DIR=" + source, "-v", "PORT_DIR=" + str(port), "-v", "MPY_LIB_DIR=" + str(lib),
               "-v", "BOARD_DIR=" + str(port), str(manifest)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    return re.findall(r"^static const mp_frozen_module_t (frozen_module_\w+) = ", text, re.M), text


def test_the_whole_port_manifest_would_freeze_umqtt_simple_twice(tmp_path):
    # The manifest as it was: the port's whole manifest, then ours. The
    # stand-in reproduces the duplicate the C compiler would refuse.
    source = source_or_skip()
    old = tmp_path / "old_manifest_esp32.py"
    old.write_text('include("$(PORT_DIR)/boards/manifest.py")\ninclude(%r)\n' % os.path.join(ROOT, "manifest.py"))
    modules, _ = freeze(source, tmp_path, old)
    assert modules.count("frozen_module_umqtt_simple") == 2, modules


def test_manifest_esp32_freezes_each_module_once_with_the_pinned_umqtt(tmp_path):
    source = source_or_skip()
    modules, text = freeze(source, tmp_path, os.path.join(ROOT, "boards", "manifest_esp32.py"))
    duplicates = sorted(set(name for name in modules if modules.count(name) > 1))
    assert duplicates == [], duplicates
    for name in ("frozen_module__boot", "frozen_module_flashbdev", "frozen_module_inisetup",  # the port's boot
                 "frozen_module_asyncio_core", "frozen_module_umqtt_simple", "frozen_module_microdot_microdot",
                 "frozen_module_chargeguard_app", "frozen_module_chargeguard_core_guard"):
        assert name in modules, (name, modules)
    # Ours, not the library's: the stand-in library's copy has LIB_COPY, the pinned one has MQTTClient.
    assert "LIB_COPY" not in text and "MQTTClient" in text
