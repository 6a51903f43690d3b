# pytest: put the firmware package and the CPython stand-ins on the path,
# exactly as tools/upytest.py does for the MicroPython unix port.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware"), os.path.dirname(__file__)):
    if path not in sys.path:
        sys.path.insert(0, path)
