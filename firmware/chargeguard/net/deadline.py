"""Deadlines on awaits that allocate nothing per await: `with within(ms): await ...`.

Why not asyncio.wait_for / wait_for_ms: on MicroPython each call makes a
Task, a runner coroutine and wait_for's own, 0.67 KB on the 32-bit build
live while the await waits, and the web server, the OCPP server and the
HTTP client took one per request, per frame and per write (docs/
firmware.md, "Deadlines without a task per await").

Here a deadline is a slot in one table: the task that awaits and the tick
at which it is due. One sweeper task (started by the first deadline of an
event loop, then kept) wakes at the earliest due slot, at the latest every
_SWEEP_MS, and cancels the task of a slot that is due; leaving the `with`
block frees the slot and turns that cancellation into asyncio.TimeoutError,
as wait_for raised it. A cancellation from anywhere else (a task cancelled
by its owner) stays CancelledError. Arming and freeing a slot allocate
nothing: the table (_SLOTS slots: the web's connections and a house's OCPP
boxes at once) is made at import and only grows, a slot at a time, when
more awaits than that have deadlines at once.

    with within(WRITE_MS):
        await writer.drain()  # asyncio.TimeoutError after WRITE_MS

Timing: a deadline fires when due (the sweeper sleeps until the earliest
one), or up to _SWEEP_MS late for one shorter than that armed while the
sweeper slept; as with wait_for, a busy event loop delays both.

Rules: one deadline per task at a time (a nested one raises RuntimeError);
what is awaited inside must not await another Task (MicroPython forwards a
cancel to the task awaited) nor swallow CancelledError. One event loop at a
time has deadlines (the device's one; a test's next asyncio.run gets a
sweeper of its own).

Heap: one class (the table is its attribute, `within` its one instance:
no module functions or second class), one list of two entries a slot: 576 B
imported, frozen; the sweeper's task and coroutine about 130 B more.
"""

import asyncio

from micropython import const

from chargeguard.platform import common

_SLOTS = const(8)
_SWEEP_MS = const(100)


class _Deadlines:
    """`within`: the table and the context manager it returns. slots[2 i] is a slot's task (None: free),
    slots[2 i + 1] its due tick (None once the sweeper cancelled the task)."""

    slots = [None, 0] * _SLOTS
    sweeper = None  # the sweeping task
    loop = None  # the event loop it sweeps in

    def __call__(self, ms):
        task = asyncio.current_task()
        slots = self.slots
        free = -1
        for index in range(0, len(slots), 2):
            if slots[index] is task:
                raise RuntimeError("a deadline inside a deadline")
            if free < 0 and slots[index] is None:
                free = index
        if free < 0:
            free = len(slots)
            slots.append(None)
            slots.append(0)
        slots[free + 1] = common.ticks_add(common.ticks_ms(), ms)
        slots[free] = task
        # The running loop: MicroPython's task queue (new_event_loop() makes another), CPython's loop.
        loop = asyncio.core._task_queue if common.IS_MICROPYTHON else asyncio.get_running_loop()
        sweeper = self.sweeper
        if sweeper is None or sweeper.done() or self.loop is not loop:
            _Deadlines.loop = loop
            _Deadlines.sweeper = asyncio.create_task(self.sweep(loop))
        return self

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        task = asyncio.current_task()
        slots = self.slots
        for index in range(0, len(slots), 2):
            if slots[index] is task:
                slots[index] = None
                if slots[index + 1] is None and kind is not None and issubclass(kind, asyncio.CancelledError):
                    if hasattr(task, "uncancel"):
                        task.uncancel()  # CPython >= 3.11 counts cancels: this one is answered here
                    raise asyncio.TimeoutError
                break
        return False

    async def sweep(self, loop):
        slots = self.slots
        while self.loop is loop:
            now = common.ticks_ms()
            wait = _SWEEP_MS
            for index in range(0, len(slots), 2):
                task = slots[index]
                due = slots[index + 1]
                if task is None or due is None:
                    continue
                left = common.ticks_diff(due, now)
                if left > 0:
                    if left < wait:
                        wait = left
                    continue
                slots[index + 1] = None
                try:
                    if not task.cancel():
                        slots[index] = None  # done without leaving its block: it never will
                except RuntimeError:
                    slots[index] = None  # CPython: a task of a closed event loop, never resumed
            await common.sleep_ms(wait)  # MicroPython's allocates nothing


within = _Deadlines()  # within(ms): a deadline of ms for what the current task awaits in the `with` block
