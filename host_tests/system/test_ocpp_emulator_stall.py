"""tools/sim/ocpp_emulator.py's hung box (stall=True, the bench's fourth OCPP box): after its BootNotification it
stays connected and answers nothing until stopped.

The box stops reading by cancelling its reader task. Its connection loop then asked that cancelled task for
its exception, which raises CancelledError (a BaseException: not caught by `except Exception`), and the
emulator's thread died with a traceback during the bench's OCPP latency run, closing the box's socket: the
box was then not hung but gone. A central system here (mobilityhouse's `ocpp`, as in the emulator) accepts
the box, then calls it: the call must time out on a live connection, not end on a closed one.
"""

import asyncio
import os
import sys
import threading
import time

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RegistrationStatus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from central_thread import CentralThread  # noqa: E402
from ocpp_emulator import OcppBox  # noqa: E402

CALL_TIMEOUT_S = 2  # the central system's wait for the hung box's answer
STOP_S = 5  # OcppBox.stop() joins its thread this long
HUNG_S = 5  # the box stops reading at once after its BootNotification's answer


class Central(ChargePoint):
    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor, charge_point_model, **kwargs):
        self.booted.set()
        return call_result.BootNotification(current_time="2026-11-30T12:00:00Z", interval=300,
                                            status=RegistrationStatus.accepted)


class CentralSystem(CentralThread):
    """One OCPP 1.6J central system on 127.0.0.1 in a thread of its own; after a BootNotification it calls the
    box (ChangeAvailability) and keeps what came of that call in `outcome`."""

    def __init__(self):
        super().__init__(10)
        self.hung = lambda: True  # set by the test: the box has stopped reading
        self.outcome = None
        self.done = threading.Event()

    async def _handler(self, connection):
        point = Central(connection.request.path.strip("/"), connection)
        point._response_timeout = CALL_TIMEOUT_S
        point.booted = asyncio.Event()
        reader = asyncio.ensure_future(point.start())
        try:
            await asyncio.wait_for(point.booted.wait(), 10)
            # The BootNotification's answer is on its way; the call goes once
            # the box has taken it and stopped reading (hung), not before.
            deadline = time.monotonic() + HUNG_S
            while not self.hung():
                assert time.monotonic() < deadline, "the box did not hang after its BootNotification"
                await asyncio.sleep(0.01)
            try:
                await point.call(call.ChangeAvailability(connector_id=0, type="Operative"))
                self.outcome = "answered"
            except asyncio.TimeoutError:
                self.outcome = "timed out"
            except websockets.ConnectionClosed:
                self.outcome = "connection closed"
        finally:
            reader.cancel()
            self.done.set()


def test_a_hung_box_stays_connected_and_silent_until_stopped():
    central = CentralSystem().start()
    box = OcppBox("HUNG1", central.port, stall=True, plugged=False)
    # Read from the central system's thread: booted counts the accepted
    # BootNotification, then the box cancels its reader (ocpp_emulator._session).
    central.hung = lambda: box.booted == 1 and box._reader_task is not None and box._reader_task.done()
    box.start()
    try:
        assert central.done.wait(10 + CALL_TIMEOUT_S + 5), "the box never booted"
        assert box.booted == 1
        assert central.outcome == "timed out", central.outcome
        assert box._thread.is_alive() and box.connected
    finally:
        started = time.monotonic()
        box.stop()
        central.stop()
    assert not box._thread.is_alive(), "stop() did not end the hung box's thread"
    assert time.monotonic() - started < STOP_S
