# tools/memprobe.py's census mode (CHARGEGUARD_PROBE=census, tools/heapcensus.py):
# the heap's block map 20 s into the run, then the function objects each
# module's import made. A module of its own, and a small one: its code is
# on the heap it measures (memprobe's modules are loaded as bytecode).
import gc
import micropython
import sys


def _plain():
    pass


async def census(sleep_ms, say):
    # (census mode, tools/heapcensus.py) the block map 20 s in, then the function objects per module.
    await sleep_ms(20000)
    gc.collect()
    say("census", gc.mem_alloc())
    micropython.mem_info(1)
    # Per module: the function objects made at its import (its own and its
    # classes' methods; each is a block or two of the heap even frozen) and
    # its classes. Counted after the map: this loop's garbage is not in it.
    function = type(_plain)  # (an async def's type is another)
    for name in sorted(sys.modules):
        functions = classes = 0
        for value in sys.modules[name].__dict__.values():
            if isinstance(value, function):
                functions += 1
            elif isinstance(value, type) and getattr(value, "__module__", None) == name:
                classes += 1
                for member in value.__dict__.values():
                    if isinstance(member, (function, staticmethod, classmethod)):
                        functions += 1
        say("census module", name, functions, classes)
    say("census end")
