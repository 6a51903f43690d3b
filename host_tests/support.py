"""Helpers shared by the test modules, for CPython (pytest) and the unix port."""

import os
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


def _dirname(path):
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "."


HERE = _dirname(__file__)


class Skip(Exception):
    """Raised by a test that cannot run on this runtime; the reason is args[0]."""


def skip(reason):
    if not IS_MICROPYTHON:
        import pytest

        pytest.skip(reason)
    raise Skip(reason)


def fixture_path(*parts):
    return HERE + "/fixtures/" + "/".join(parts)


def read_fixture(*parts):
    with open(fixture_path(*parts), "rb") as handle:
        return handle.read()


_counter = [0]


def make_tmpdir(tag="t"):
    """A fresh empty directory under build/test-tmp (both runtimes)."""
    root = _dirname(HERE) + "/build/test-tmp"
    for path in (_dirname(root), root):
        try:
            os.mkdir(path)
        except OSError:
            pass
    _counter[0] += 1
    path = "%s/%s-%d-%d" % (root, tag, _pid(), _counter[0])
    try:
        os.mkdir(path)
    except OSError:
        for name in os.listdir(path):
            os.remove(path + "/" + name)
    return path


def _pid():
    getpid = getattr(os, "getpid", None)
    if getpid:
        return getpid()
    # The unix port has no getpid; the clock keeps parallel runs apart enough.
    import time

    return time.ticks_ms() & 0xFFFFFF
