# Runs the firmware's own main (chargeguard.app.main, as main.py does), with
# heap figures on the console. tools/memlab.py starts it:
#
#   micropython -X heapsize=64K -m memprobe
#   CHARGEGUARD_PROBE=gcpause micropython -X heapsize=2M -m memprobe
#
# It hooks two points of the app and changes nothing else: app.build (the
# App made from the configuration) and App.run (the running tasks). Lines it
# adds to the firmware's own output, all starting "memprobe:":
#   base N          heap in use before anything of the firmware is imported
#   imports N       live heap once the App is built: modules imported, the
#                   configuration read (and its module unloaded), drivers made
#                   (followed by MicroPython's own "qstr pool: ..." line: the
#                   interned names at that moment, which are never freed)
#   peak N M F      N: the most heap in use (live + garbage not yet
#                   collected) seen by a 10 ms sampler since start; M: in use
#                   now; F: the least in use the sampler saw in the last
#                   second (just after a collection: the firmware's every
#                   10 s, or MicroPython's own when an allocation finds the
#                   heap full, which in a heap near its budget is several a
#                   second; with CHARGEGUARD_PROBE_FLOOR=1, in a second
#                   with neither, the probe's own at the second's end: the
#                   figure growth is judged on); printed every second
#   gcpause N M K E (gcpause mode) longest gc.collect() in us of 5, with M
#                   bytes live: the App and K copies of it filling the heap;
#                   E: the same with only the firmware's own objects live
#   part N S D WHAT (breakdown mode, tools/memprobe_parts.py) live heap a
#                   part of the start-up kept: N bytes with what it imported,
#                   S without (its own objects), D: how deep it is in other
#                   parts (0: top); WHAT: "import MODULE" (a module's first
#                   import: its dict, functions, classes, tables), "call
#                   NAME" (App.site_state, App.command_api, an interface's
#                   from_config, a driver made); collections around each
#                   part, so the start-up's own peaks are not these figures
#   modules A B ... (modules mode) the modules imported 20 s into the run
#                   (the steady state: boot-only modules unloaded)
#   census N        (census mode) 20 s into the run, after a collection
#                   (N bytes live): MicroPython's block map of the heap
#                   (micropython.mem_info(1)) follows, up to "census end";
#                   with "census module/reached/class" lines before it;
#                   tools/heapcensus.py tallies them (memprobe_census.py)
#   trace T N       (trace mode) N bytes live (after a collection) T ms
#                   after App.run began, every CHARGEGUARD_TRACE_MS (100
#                   unless set) for the first 15 s: what the start-up holds
#                   above the steady state, and when (its collections
#                   change the run's timing a little)
# The firmware's status line carries the live heap after each of its own
# periodic collections ("heap N B"). The probe's only collection while the
# firmware runs is the sampler's with CHARGEGUARD_PROBE_FLOOR=1, in a second
# that had none: a heap near its budget never sees it; in a roomy one it
# lowers N (garbage lives a second, not 10 s), so make bench leaves it off.
import gc
import micropython
import os
import sys
import time

from micropython import const

# const: no names of the probe's own in the heap it measures.
_SAMPLE_MS = const(10)
_REPORT_MS = const(1000)
_TRACE_MS = const(15000)


def say(*parts):
    print("memprobe:", *parts)


async def sampler(state, sleep_ms, collect):
    next_report = time.ticks_add(time.ticks_ms(), _REPORT_MS)
    floor = last = gc.mem_alloc()
    collected = False
    while True:
        used = gc.mem_alloc()
        if used > state[0]:
            state[0] = used
        if used < last:
            # In use fell: a collection came since the last sample (or,
            # rarely, a realloc's free outweighed 10 ms of allocations; that
            # second's figure is then high, never low, and the growth check
            # takes the least).
            collected = True
        last = used
        if used < floor:
            floor = used
        if time.ticks_diff(time.ticks_ms(), next_report) >= 0:
            next_report = time.ticks_add(next_report, _REPORT_MS)
            if collect and not collected:
                # No collection this second (a roomy heap, between the
                # firmware's own every 10 s): without one the second's least
                # is only garbage not yet collected, and growth could be
                # judged on five or six real figures a run, each with
                # whatever a task had in flight (CI, 2026-12-01: 31.9 KB then
                # 33.6 KB on the http profile, whose quiet live heap stayed
                # 31.9 KB). In a heap near its budget MicroPython collects
                # several times a second and this never runs.
                gc.collect()
                last = gc.mem_alloc()
                floor = min(floor, last)
            say("peak", state[0], used, floor)
            floor = used
            collected = False
        await sleep_ms(_SAMPLE_MS)


async def list_modules(sleep_ms):
    await sleep_ms(20000)
    say("modules", *sorted(sys.modules))


async def trace_live(sleep_ms, step_ms):
    started = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), started) < _TRACE_MS:
        gc.collect()
        say("trace", time.ticks_diff(time.ticks_ms(), started), gc.mem_alloc())
        await sleep_ms(step_ms)


def gc_pause(app_module, app):
    # Fill the heap with copies of the running App (its Guard, commands,
    # events, per-charger lists: the firmware's own live objects, no I/O),
    # then time full collections of that heap.
    platform = app.platform
    from chargeguard import appboot

    doc = appboot.load_config(platform.storage_dir())[0]
    alone = _longest_collect()
    keep = []
    try:
        while gc.mem_free() > 48 * 1024:
            for _ in range(20):
                keep.append(app_module.App(platform, doc, app.meter, app.drivers, say))
            gc.collect()
    except MemoryError:
        pass
    say("gcpause", _longest_collect(), gc.mem_alloc(), len(keep), alone)


def _longest_collect():
    gc.collect()
    longest = 0
    for _ in range(5):
        started = time.ticks_us()
        gc.collect()
        longest = max(longest, time.ticks_diff(time.ticks_us(), started))
    return longest


def main():
    gc.collect()
    state = [gc.mem_alloc()]
    say("base", state[0])
    import asyncio

    from chargeguard import app as app_module

    build = app_module.build
    run = app_module.App.run

    def probed_build(*args, **kwargs):
        app = build(*args, **kwargs)
        state[0] = max(state[0], gc.mem_alloc())
        gc.collect()
        say("imports", gc.mem_alloc())
        micropython.qstr_info()  # "qstr pool: n_pool=N, n_qstr=M, ...": interned names, kept for good
        if os.getenv("CHARGEGUARD_PROBE") == "gcpause":
            gc_pause(app_module, app)
            raise SystemExit(0)  # not an Exception: main() lets it through
        return app

    async def probed_run(self, *args, **kwargs):
        asyncio.create_task(sampler(state, asyncio.sleep_ms, os.getenv("CHARGEGUARD_PROBE_FLOOR") == "1"))
        if os.getenv("CHARGEGUARD_PROBE") == "modules":
            asyncio.create_task(list_modules(asyncio.sleep_ms))
        if os.getenv("CHARGEGUARD_PROBE") == "census":
            import memprobe_census  # (its code is on the heap only in this mode)

            asyncio.create_task(memprobe_census.census(asyncio.sleep_ms, say, self))
        if os.getenv("CHARGEGUARD_PROBE") == "trace":
            asyncio.create_task(trace_live(asyncio.sleep_ms, int(os.getenv("CHARGEGUARD_TRACE_MS") or "100")))
        return await run(self, *args, **kwargs)

    app_module.build = probed_build
    app_module.App.run = probed_run
    if os.getenv("CHARGEGUARD_PROBE") == "breakdown":
        # Its own module: its code is not on the heap of the other modes' runs.
        import memprobe_parts

        memprobe_parts.breakdown(app_module, say)
    app_module.main()


main()
