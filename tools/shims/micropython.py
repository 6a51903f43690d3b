"""CPython stand-in for MicroPython's `micropython` module.

Only what device code uses is provided; it lets the same firmware modules
import under CPython (host tests, tools) without try/except in every file.
"""


def const(value):
    return value


def mem_info(*args):
    pass
