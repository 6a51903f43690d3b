"""tools/heapcensus.py's reading of the probe's census (without running the firmware): the block map from
micropython.mem_info(1)'s lines, the tally by kind and size, the per-module and per-class lines."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import heapcensus  # noqa: E402

# As the 32-bit port printed them (a core run, 2026-12-01), cut short.
LINES = [
    "grid 12.0 A, heap 31000 B",
    "memprobe: census 31232",
    "mem: total=1453815, current=135619, peak=136255",
    "stack: 6208 out of 40000",
    "GC: total: 64000, used: 31248, free: 32752",
    " No. of 1-blocks: 552, 2-blocks: 90, max blk sz: 129, max free sz: 1216",
    "GC memory layout; from 56e097c0:",
    "00000000: MDhh=hhLB=",
    "00000400: =.Sh==",
    "       (18 lines all free)",
    "00005000: A=h",
    "memprobe: census module chargeguard.core.guard 17 2",
    "memprobe: census table chargeguard.core.guard 21",
    "memprobe: census table chargeguard.core.guard.Guard 13",
    "memprobe: census reached bound_method 13",
    "memprobe: census buffer HttpClient._head bytearray 256",
    "memprobe: census class Guard 1 27",
    "memprobe: census end",
    "00006000: hhhh",  # after the end: not the census's
]


def test_the_block_map_is_read_between_the_census_lines_and_free_lines_end_an_object():
    assert heapcensus.block_map(LINES) == "MDhh=hhLB==.Sh==.A=h"


def test_objects_are_tallied_by_kind_with_their_further_blocks():
    kinds, sizes = heapcensus.tally(heapcensus.block_map(LINES))
    # B= and the next line's =: one function object of three blocks; a run of free lines ends the object before it.
    assert kinds == {"M": [1, 1], "D": [1, 1], "h": [6, 9], "L": [1, 1], "B": [1, 3], "S": [1, 1], "A": [1, 2]}
    assert sizes == {1: 4, 2: 1, 3: 1}


def test_the_per_module_per_class_and_reached_lines_are_read():
    assert heapcensus.per_module(LINES) == [("chargeguard.core.guard", 17, 2)]
    assert heapcensus.per_class(LINES) == [("Guard", 1, 27)]
    assert heapcensus.reached(LINES) == [("bound_method", 13)]
    assert heapcensus.tables(LINES) == [("chargeguard.core.guard", 21), ("chargeguard.core.guard.Guard", 13)]
    assert heapcensus.buffers(LINES) == [("HttpClient._head", "bytearray", 256)]


def test_a_table_is_sized_as_micropython_grows_it():
    # py/map.c: full tables grow to the next size (..., 12, 17, 23, ...); 8 B a slot in 16-byte blocks.
    assert heapcensus.table_bytes(0) == 0
    assert heapcensus.table_bytes(1) == 16  # 2 slots
    assert heapcensus.table_bytes(12) == 96  # 12 slots, 6 blocks
    assert heapcensus.table_bytes(13) == 144  # 17 slots: 136 B in 9 blocks
    assert heapcensus.table_bytes(17) == 144
    assert heapcensus.table_bytes(55) == 480  # 59 slots


def test_no_census_in_the_output_is_an_empty_map():
    assert heapcensus.block_map(LINES[:1] + LINES[-1:]) == ""
