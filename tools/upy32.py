"""The 32-bit MicroPython unix port: the project's proxy for an ESP32's heap.

    python tools/upy32.py [plain|frozen ...]      build (or reuse) and print the binaries
    python tools/upy32.py --exec VARIANT -- ARGS   run that binary with ARGS

An ESP32 has 4-byte pointers and 16-byte GC blocks; the pip unix port is
64-bit and over-states every heap figure (about 1.4x). This builds MicroPython
v1.28.0's unix port with MICROPY_FORCE_32BIT=1 from the source kept in
../shared/toolchain (no package registry carries MicroPython's source):

- plain:  the port with asyncio frozen, as the stock ESP32 firmware has it;
          the firmware is loaded from build/device as .mpy;
- frozen: the port with the project's manifest.py frozen in (the firmware and
          its device libraries as frozen bytecode, as in a custom ESP32 image).

Results are cached under build/upy32/: a binary is rebuilt only when the
source tarball, the build flags, the manifest or a frozen file changes (and
then incrementally). The version is pinned to the .mpy format the project
ships: the source must be v1.28.x and the built port must load build/device.

Needs a C compiler with 32-bit support (Debian: gcc-multilib, libffi-dev,
pkg-config). Where that or ../shared is missing, `Unavailable` says why; the
command line exits 0 after printing the reason, or 1 under CI (CI=true),
where the 32-bit checks must never be skipped.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile

import devlibs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("CHARGEGUARD_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
VERSION = "1.28.0"
TARBALL = os.path.join(SHARED, "toolchain", "micropython-%s-unix-src.tar.xz" % VERSION)
MPY_FORMAT = (6, 3)  # what mpy-cross 1.28 emits; build/device is in this format
OUT = os.path.join(ROOT, "build", "upy32")
SOURCE = os.path.join(OUT, "micropython-%s" % VERSION)
MANIFEST = os.path.join(ROOT, "manifest.py")
# No SSL/FFI/btree (the firmware uses none; they also need more host packages).
MAKE_FLAGS = (
    "VARIANT=standard",
    "MICROPY_PY_BTREE=0",
    "MICROPY_PY_SSL=0",
    "MICROPY_SSL_AXTLS=0",
    "MICROPY_SSL_MBEDTLS=0",
    "MICROPY_PY_FFI=0",
    "MICROPY_FORCE_32BIT=1",
)
VARIANTS = ("plain", "frozen")


class Unavailable(Exception):
    """The 32-bit port cannot be built on this machine; args[0] says why."""


def binary_path(variant):
    return os.path.join(OUT, "micropython-" + variant)


def _digest_files(digest, paths):
    for path in sorted(paths):
        digest.update(os.path.relpath(path, ROOT).encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())


def _firmware_sources():
    found = []
    for folder, dirs, files in os.walk(os.path.join(ROOT, "firmware", "chargeguard")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found += [os.path.join(folder, name) for name in files if name.endswith(".py")]
    return found


def _manifest_path(variant):
    if variant == "frozen":
        return MANIFEST
    # The stock ESP32 firmware freezes asyncio; so does the plain proxy.
    path = os.path.join(OUT, "manifest-plain.py")
    text = 'include("$(MPY_DIR)/extmod/asyncio")\n'
    if not os.path.exists(path) or open(path).read() != text:
        os.makedirs(OUT, exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
    return path


def _key(variant):
    digest = hashlib.sha256()
    digest.update(" ".join(MAKE_FLAGS).encode())
    with open(TARBALL, "rb") as handle:
        digest.update(hashlib.sha256(handle.read()).digest())
    files = [_manifest_path(variant)]
    if variant == "frozen":
        # manifest.py freezes the device libraries from build/lib too.
        files += _firmware_sources() + devlibs.sources()
    _digest_files(digest, files)
    return digest.hexdigest()


def _check_machine():
    if not os.path.exists(TARBALL):
        raise Unavailable("no MicroPython source at %s (the repository expects shared/ beside the checkout)" % TARBALL)
    for tool in ("make", "gcc", "pkg-config"):
        if not shutil.which(tool):
            raise Unavailable("%s is not installed (Debian: apt-get install gcc-multilib libffi-dev pkg-config)" % tool)
    probe = subprocess.run(
        ["gcc", "-m32", "-x", "c", "-o", os.devnull, "-"],
        input=b"#include <stdio.h>\nint main(void){return 0;}\n",
        capture_output=True,
    )
    if probe.returncode != 0:
        raise Unavailable("gcc cannot build 32-bit programs (Debian: apt-get install gcc-multilib)")


def _extract():
    stamp = os.path.join(SOURCE, ".extracted")
    if os.path.exists(stamp):
        return
    shutil.rmtree(SOURCE, ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    with tarfile.open(TARBALL) as archive:
        names = archive.getnames()
        top = "micropython-%s" % VERSION
        if not all(n == top or n.startswith(top + "/") for n in names):
            raise Unavailable("%s does not hold %s/" % (TARBALL, top))
        archive.extractall(OUT)
    # makemanifest only checks that micropython-lib is there; no manifest of ours uses it.
    os.makedirs(os.path.join(OUT, "nolib"), exist_ok=True)
    with open(os.path.join(OUT, "nolib", "README.md"), "w") as handle:
        handle.write("micropython-lib is not needed by the ChargeGuard manifests\n")
    open(stamp, "w").close()


def _run(command, cwd, log):
    with open(log, "a") as handle:
        handle.write("$ %s\n" % " ".join(command))
        handle.flush()
        result = subprocess.run(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        with open(log) as handle:
            tail = handle.read()[-3000:]
        raise RuntimeError("upy32: %s failed (log %s):\n%s" % (" ".join(command), log, tail))


def check_binary(path):
    """Prove the binary is v1.28, 32-bit, and loads build/device's .mpy (format v6.3)."""
    device = os.path.join(ROOT, "build", "device")
    script = (
        "import sys\n"
        "sys.path.insert(0, %r)\n"
        "import chargeguard.core.guard\n"
        "m = sys.implementation._mpy\n"
        "print('upy32', sys.implementation.version[:2], m & 0xff, (m >> 8) & 3, sys.maxsize)\n" % device
    )
    result = subprocess.run([path, "-c", script], capture_output=True, text=True, timeout=30)
    expected = "upy32 (%s) %d %d %d" % (", ".join(VERSION.split(".")[:2]), MPY_FORMAT[0], MPY_FORMAT[1], 2**31 - 1)
    if expected not in result.stdout:
        raise RuntimeError(
            "upy32: %s is not a 32-bit v%s port loading build/device (.mpy v%d.%d):\n%s%s"
            % (path, VERSION, MPY_FORMAT[0], MPY_FORMAT[1], result.stdout, result.stderr)
        )


def ensure(variant, quiet=False):
    """Path of the 32-bit binary for variant ('plain' or 'frozen'), built if out of date.

    Raises Unavailable when this machine cannot build it (the reason in args[0]),
    RuntimeError when a build that should work fails.
    """
    if variant not in VARIANTS:
        raise ValueError("variant must be one of %s" % (VARIANTS,))
    _check_machine()
    if not os.path.exists(os.path.join(ROOT, "build", "device", "main.py")):
        raise RuntimeError("upy32: build/device is missing; run `make build` first")
    target = binary_path(variant)
    key_file = target + ".key"
    key = _key(variant)
    if os.path.exists(target) and os.path.exists(key_file) and open(key_file).read() == key:
        return target
    # One build at a time (make bench and a test run may ask together).
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(target) and os.path.exists(key_file) and open(key_file).read() == key:
            return target
        return _build(variant, target, key_file, key, quiet)


def _build(variant, target, key_file, key, quiet):
    say = (lambda *a: None) if quiet else (lambda text: print(text, flush=True))
    _extract()
    log = os.path.join(OUT, "build-%s.log" % variant)
    open(log, "w").close()
    jobs = "-j%d" % max(1, min(4, os.cpu_count() or 1))
    mpy_cross = os.path.join(SOURCE, "mpy-cross", "build", "mpy-cross")
    if not os.path.exists(mpy_cross):
        # On its own first: the unix build would otherwise build it with its own flags.
        say("upy32: building mpy-cross %s (log %s)" % (VERSION, os.path.relpath(log, ROOT)))
        _run(["make", jobs, "-C", "mpy-cross"], SOURCE, log)
    say("upy32: building the 32-bit unix port, %s (about a minute; log %s)" % (variant, os.path.relpath(log, ROOT)))
    build_dir = "build-32-" + variant
    command = ["make", jobs] + list(MAKE_FLAGS) + [
        "MPY_LIB_DIR=" + os.path.join(OUT, "nolib"),
        "FROZEN_MANIFEST=" + _manifest_path(variant),
        "BUILD=" + build_dir,
        "PROG=micropython",
    ]
    _run(command, os.path.join(SOURCE, "ports", "unix"), log)
    # A new file renamed over the old one: a run of the old binary (a test,
    # make bench) keeps its copy, where writing into it would fail (ETXTBSY).
    shutil.copy(os.path.join(SOURCE, "ports", "unix", build_dir, "micropython"), target + ".new")
    os.replace(target + ".new", target)
    check_binary(target)
    with open(key_file, "w") as handle:
        handle.write(key)
    return target


def in_ci():
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def main(argv):
    if argv[:1] in (["-h"], ["--help"]):
        print("\n\n".join(__doc__.split("\n\n", 2)[:2]) + "\n\nvariants: %s" % ", ".join(VARIANTS))
        return 0
    unknown = [name for name in argv if name not in VARIANTS] if argv[:1] != ["--exec"] else []
    if unknown:
        print("upy32: unknown variant %s (variants: %s; --exec VARIANT -- ARGS; --help)" % (unknown[0], ", ".join(VARIANTS)))
        return 2
    if argv[:1] == ["--exec"]:
        variant, rest = argv[1], argv[2:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        try:
            path = ensure(variant)
        except Unavailable as why:
            print("SKIP 32-bit (%s): %s" % (variant, why.args[0]))
            return 1 if in_ci() else 0
        print("32-bit unix port (%s): %s %s" % (variant, os.path.relpath(path, ROOT), " ".join(rest)), flush=True)
        return subprocess.run([path] + rest).returncode
    status = 0
    for variant in argv or VARIANTS:
        try:
            path = ensure(variant)
            print("upy32: %s ready: %s" % (variant, os.path.relpath(path, ROOT)))
        except Unavailable as why:
            print("SKIP 32-bit (%s): %s" % (variant, why.args[0]))
            if in_ci():
                print("upy32: CI must build the 32-bit port; failing")
                status = 1
    return status


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RuntimeError as error:
        sys.exit(str(error))
