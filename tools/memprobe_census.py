# tools/memprobe.py's census mode (CHARGEGUARD_PROBE=census, tools/heapcensus.py):
# the heap's block map 20 s into the run, then the function objects each
# module's import made and the instances (and stored bound methods,
# closures, buffers) the App reaches. A module of its own: its code is
# on the heap it measures (memprobe's modules are loaded as bytecode).
import gc
import micropython
import sys


_BIG = 64  # bytes: a buffer this long or longer is listed with its holder


def _plain():
    pass


async def census(sleep_ms, say, app):
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
        module = sys.modules[name]
        # With them, the entries of the module's table and of each of its
        # classes' (a hash table each, in the heap even frozen: heapcensus
        # sizes them).
        say("census table", name, len(module.__dict__))
        for value in module.__dict__.values():
            if isinstance(value, function):
                functions += 1
            elif isinstance(value, type) and getattr(value, "__module__", None) == name:
                classes += 1
                say("census table", name + "." + value.__name__, len(value.__dict__))
                for member in value.__dict__.values():
                    if isinstance(member, (function, staticmethod, classmethod)):
                        functions += 1
        say("census module", name, functions, classes)
    # What the running App reaches through instances' attributes, lists,
    # tuples and dicts: instances per class (with their attributes), and the
    # values that are a block or two each (bound methods, closures).
    seen = set()
    classes = {}
    kinds = {}
    buffers = []
    todo = [(app, "App")]
    while todo:
        obj, where = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = type(obj)
        name = kind.__name__
        if name in ("bound_method", "closure", "generator", "bytearray", "memoryview", "str", "bytes"):
            kinds[name] = kinds.get(name, 0) + 1
            if name in ("bytearray", "bytes", "str") and len(obj) >= _BIG:
                buffers.append((len(obj), name, where))
            continue
        if isinstance(obj, (list, tuple)):
            for value in obj:
                todo.append((value, where + "[]"))
        elif isinstance(obj, dict):
            for key in obj:
                todo.append((obj[key], where + "[]"))
        elif hasattr(obj, "__dict__") and not isinstance(obj, type) and name != "module":
            attrs = obj.__dict__
            entry = classes.setdefault(name, [0, 0])
            entry[0] += 1
            entry[1] += len(attrs)
            for key in attrs:
                todo.append((attrs[key], name + "." + key))
    for name in sorted(kinds):
        say("census reached", name, kinds[name])
    # The buffers of _BIG bytes or more, each with the attribute that holds it
    # (the first path the walk met): where the big blocks of the map are.
    buffers.sort()
    for size, name, where in buffers:
        say("census buffer", where, name, size)
    for name in sorted(classes):
        say("census class", name, classes[name][0], classes[name][1])
    say("census end")
