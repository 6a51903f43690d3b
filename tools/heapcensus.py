"""What the live heap is made of, by kind of object, once the firmware runs (32-bit port, issue 6).

    python tools/heapcensus.py [--profile everything] [--build frozen32] [--heap 128]

Runs the profile (tools/memlab.py) in a heap of --heap KB with the probe's
census mode: 20 s in, after a collection, MicroPython prints its block map
(micropython.mem_info(1): one character per 16-byte block, the head
block's letter naming the object's type, '=' its further blocks, '.'
free). This tallies it: per kind, objects, blocks and bytes, and for the
kind MicroPython cannot name ('h': instances, dict and list storage,
closures, bound methods, generators and tasks, qstr pools) the sizes. The
letters are py/gc.c's (gc_dump_alloc_table): T tuple, L list, D dict
(the object; its table is an 'h'), S str or bytes, A bytearray or array,
F float, B bytecode function, M module. Then, from the same moment: the
function objects each module's import made (its own and its classes'
methods), and what the running App reaches through instances'
attributes, lists, tuples and dicts: instances per class with their
attributes in all (each instance's attributes are a hash table of 8 bytes
a slot), and the bound methods, closures and buffers stored there, with
each buffer of 64 bytes or more named by the attribute that holds it; and
the entries of each module's and class's table, sized as MicroPython
grows them (py/map.c): the code's own share of the heap with the function
objects.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import memlab  # noqa: E402

BLOCK = 16  # bytes per GC block on the 32-bit port (and the ESP32)
KINDS = {
    "T": "tuple",
    "L": "list",
    "D": "dict (object)",
    "S": "str / bytes",
    "A": "bytearray / array",
    "F": "float",
    "B": "bytecode function",
    "M": "module",
    "h": "other: instances, dict/list storage, closures, bound methods, generators, qstr pools",
}


def block_map(lines):
    """The block map's characters from the census lines (between "memprobe: census" and its end)."""
    inside = False
    chars = []
    for line in lines:
        if line.startswith("memprobe: census end"):
            break
        if line.startswith("memprobe: census "):
            inside = True
            continue
        if not inside:
            continue
        head, colon, rest = line.partition(": ")
        if colon and len(head) == 8 and all(c in "0123456789abcdef" for c in head):
            chars.append(rest.rstrip("\n"))
        elif "lines all free" in line:
            chars.append(".")  # free blocks: how many does not matter here
    return "".join(chars)


def tally(chars):
    """{kind: [objects, blocks]} and {blocks: count} for the 'h' objects."""
    kinds = {}
    sizes = {}
    kind = None
    size = 0

    def close():
        if kind is not None:
            entry = kinds.setdefault(kind, [0, 0])
            entry[0] += 1
            entry[1] += size
            if kind == "h":
                sizes[size] = sizes.get(size, 0) + 1

    for char in chars:
        if char == "=":
            size += 1
            continue
        close()
        kind, size = (None, 0) if char in ". " else (char, 1)
    close()
    return kinds, sizes


def per_module(lines):
    """[(module, functions, classes)] from the census's "census module" lines."""
    return [(words[0], int(words[1]), int(words[2])) for words in _census_lines(lines, "module")]


def _census_lines(lines, what):
    """The words after "memprobe: census WHAT" of each such line."""
    prefix = "memprobe: census %s " % what
    return [line[len(prefix):].split() for line in lines if line.startswith(prefix)]


def reached(lines):
    """[(kind, count)] from the census's "census reached" lines: bound methods, closures, buffers the App holds."""
    return [(words[0], int(words[1])) for words in _census_lines(lines, "reached")]


def buffers(lines):
    """[(holder, kind, bytes)] from the census's "census buffer" lines: the App's buffers of 64 B or more, smallest first."""
    return [(words[0], words[1], int(words[2])) for words in _census_lines(lines, "buffer")]


# py/map.c's hash_allocation_sizes (MicroPython 1.28): a module's, class's or
# instance's table grows to the next of these when it is full and never
# shrinks; 8 bytes a slot on 32-bit (a key and a value).
TABLE_SIZES = (0, 2, 4, 6, 8, 10, 12, 17, 23, 29, 37, 47, 59, 73, 97, 127, 167, 223, 293, 389, 521)
SLOT = 8


def table_bytes(entries):
    """The heap a table of `entries` entries takes at least: its slots (the first size that holds them) in 16-byte blocks."""
    slots = [size for size in TABLE_SIZES if size >= entries]
    slots = slots[0] if slots else (entries + entries // 2) | 1  # past the table, as py/map.c
    return (slots * SLOT + BLOCK - 1) // BLOCK * BLOCK


def tables(lines):
    """[(module or module.Class, entries)] from the census's "census table" lines."""
    return [(words[0], int(words[1])) for words in _census_lines(lines, "table")]


def per_class(lines):
    """[(class, instances, attributes in all)] from the census's "census class" lines."""
    return [(words[0], int(words[1]), int(words[2])) for words in _census_lines(lines, "class")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="everything")
    parser.add_argument("--build", default="frozen32")
    parser.add_argument("--heap", type=int, default=128, help="KB (room enough that the run is not squeezed)")
    args = parser.parse_args()
    profile = [p for p in memlab.PROFILES if p.name == args.profile][0]
    run = memlab.run(profile, args.build, args.heap * 1024, mode="census", min_seconds=25.0)
    chars = block_map(run.lines)
    if not chars:
        sys.exit("heapcensus: no block map in the run's output (did it run 20 s? ok=%s)" % run.ok())
    kinds, sizes = tally(chars)
    total = sum(blocks for _, blocks in kinds.values())
    print("%s %s, %d KB heap: %d objects, %d B live" % (args.profile, args.build, args.heap,
                                                      sum(n for n, _ in kinds.values()), total * BLOCK))
    print("  kind  objects      bytes  share")
    for kind, (count, blocks) in sorted(kinds.items(), key=lambda item: -item[1][1]):
        print("  %-4s %8d %10d %5.1f%%  %s" % (kind, count, blocks * BLOCK, 100.0 * blocks / total, KINDS.get(kind, "?")))
    print("  'h' objects by size (blocks: objects, bytes):")
    for blocks in sorted(sizes):
        print("    %3d: %5d %8d" % (blocks, sizes[blocks], blocks * sizes[blocks] * BLOCK))
    modules = per_module(run.lines)
    print("  modules by function objects made at import (theirs and their classes' methods), classes:")
    for name, functions, classes in sorted(modules, key=lambda row: -row[1]):
        print("    %-40s %4d %3d" % (name, functions, classes))
    print("  %d modules, %d functions, %d classes" % (len(modules), sum(r[1] for r in modules), sum(r[2] for r in modules)))
    rows = [(table_bytes(entries), name, entries) for name, entries in tables(run.lines)]
    module_names = set(row[0] for row in modules)
    class_bytes = sum(row[0] for row in rows if row[1] not in module_names)
    print("  tables (hash tables of 8 B a slot, grown in steps): modules' %d B, classes' %d B; the largest:"
          % (sum(row[0] for row in rows) - class_bytes, class_bytes))
    for size, name, entries in sorted(rows, reverse=True)[:12]:
        print("    %-48s %4d entries %5d B" % (name, entries, size))
    print("  reached from the App (through instances' attributes, lists, tuples, dicts): " +
          ", ".join("%s %d" % row for row in reached(run.lines)))
    print("  buffers of 64 B or more the App holds (holder: the first attribute the walk met):")
    for holder, kind, size in buffers(run.lines):
        print("    %-48s %-10s %6d" % (holder, kind, size))
    print("  instances reached, by class (instances, attributes in all):")
    for name, count, attrs in sorted(per_class(run.lines), key=lambda row: -row[2]):
        print("    %-32s %4d %5d" % (name, count, attrs))


if __name__ == "__main__":
    main()
