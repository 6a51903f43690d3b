# pytest: put the firmware package and the CPython stand-ins on the path,
# exactly as tools/upytest.py does for the MicroPython unix port.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware"), os.path.dirname(__file__)):
    if path not in sys.path:
        sys.path.insert(0, path)

# Device libraries (umqtt.simple, microdot): fetched and pinned by tools/devlibs.py into
# build/lib; `make test` builds first, a bare pytest run fetches here.
if not all(os.path.exists(os.path.join(ROOT, "build", "lib", *parts)) for parts in (("umqtt", "simple.py"), ("microdot", "microdot.py"))):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import devlibs

    devlibs.ensure(quiet=True)
if os.path.join(ROOT, "build", "lib") not in sys.path:
    sys.path.append(os.path.join(ROOT, "build", "lib"))
