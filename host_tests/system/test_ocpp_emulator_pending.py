"""tools/sim/ocpp_emulator.py's box obeys a Pending registration (OCPP 1.6 edition 2, section 4.2), checked
against a central system made of mobilityhouse's `ocpp` package (not ChargeGuard's):

- while Pending it sends nothing but BootNotification (no StatusNotification, StartTransaction, MeterValues),
  answers the central system's calls (GetConfiguration, SetChargingProfile), refuses RemoteStartTransaction
  (not allowed while Pending), and a car is offered nothing (4.2.1: a box never accepted denies charging);
- it boots again after the answer's `interval`, not before, or at once when a TriggerMessage asks;
- once Accepted it reports its connector and starts its transaction.
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

INTERVAL_S = 1  # the Pending answers' interval
WAIT_S = 10  # a loopback exchange on a busy machine: the most any step here may take


class Central(ChargePoint):
    """Pending for the first `pending` BootNotifications, Accepted after; every request kept in `got`."""

    pending = 2

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor, charge_point_model, **kwargs):
        self.got.append(("BootNotification", time.monotonic()))
        status = RegistrationStatus.pending if self.pending > 0 else RegistrationStatus.accepted
        self.pending -= 1
        self.booted.set()
        return call_result.BootNotification(current_time="2026-11-30T12:00:00Z", interval=INTERVAL_S, status=status)

    @on(Action.status_notification)
    def on_status(self, connector_id, error_code, status, **kwargs):
        self.got.append(("StatusNotification", time.monotonic()))
        return call_result.StatusNotification()

    @on(Action.start_transaction)
    def on_start(self, connector_id, id_tag, meter_start, timestamp, **kwargs):
        self.got.append(("StartTransaction", time.monotonic()))
        return call_result.StartTransaction(transaction_id=7, id_tag_info={"status": "Accepted"})

    @on(Action.meter_values)
    def on_meter_values(self, connector_id, meter_value, **kwargs):
        self.got.append(("MeterValues", time.monotonic()))
        return call_result.MeterValues()


class CentralSystem(CentralThread):
    """One central system on 127.0.0.1 in its own thread; `script(point)` runs once the box first booted."""

    def __init__(self, script):
        super().__init__(WAIT_S)
        self.script = script
        self.outcome = {}
        self.error = None
        self.done = threading.Event()

    async def _handler(self, connection):
        point = Central(connection.request.path.strip("/"), connection)
        point.got = []
        point.booted = asyncio.Event()
        self.point = point
        reader = asyncio.ensure_future(point.start())
        try:
            await asyncio.wait_for(point.booted.wait(), WAIT_S)
            await self.script(point, self.outcome)
        except Exception as error:  # shown by the test
            self.error = repr(error)
        finally:
            self.done.set()
            await reader


def _until(condition, timeout_s=WAIT_S):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_pending_box_sends_nothing_but_its_bootnotification_answers_calls_and_boots_again_as_told():
    async def script(point, outcome):
        # Pending (1st answer): set it up, try what Pending forbids, then let the interval run.
        keys = await point.call(call.GetConfiguration(key=["ChargeProfileMaxStackLevel"]))
        outcome["config"] = keys.configuration_key
        profile = {"charging_profile_id": 1, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
                   "charging_profile_kind": "Relative",
                   "charging_schedule": {"charging_rate_unit": "A", "charging_schedule_period": [{"start_period": 0, "limit": 6}]}}
        outcome["profile"] = (await point.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))).status
        outcome["remote_start"] = (await point.call(call.RemoteStartTransaction(id_tag="X"))).status
        outcome["first_boot"] = point.got[0][1]
        # Its 2nd BootNotification comes after the interval; answered Pending again. Then a
        # TriggerMessage brings the 3rd at once (Accepted: pending was 2).
        while len([g for g in point.got if g[0] == "BootNotification"]) < 2:
            await asyncio.sleep(0.01)
        outcome["second_boot"] = [g for g in point.got if g[0] == "BootNotification"][1][1]
        # Still Pending (the trigger below lets it in): what it offers a car now.
        outcome["pending_limit_offered"] = (boxes[0].limit_a(), boxes[0].offered_a())
        outcome["triggered_at"] = time.monotonic()
        outcome["trigger"] = (await point.call(call.TriggerMessage(requested_message="BootNotification"))).status

    boxes = []
    central = CentralSystem(script).start()
    box = OcppBox("PEND1", central.port, pre_boot_transactions=False, max_a=16)
    boxes.append(box)
    box.start()
    try:
        assert central.done.wait(WAIT_S + 2 * INTERVAL_S), "the box never booted"
        assert central.error is None, central.error
        out = central.outcome
        assert out["config"][0]["key"] == "ChargeProfileMaxStackLevel" and out["profile"] == "Accepted"
        assert out["remote_start"] == "Rejected" and not box.start_wanted
        # Not before its interval (4.2), a little scheduling slack allowed for on the other side only.
        assert out["second_boot"] - out["first_boot"] >= INTERVAL_S - 0.05
        assert out["pending_limit_offered"] == (6, 0), "a box never accepted offers nothing"
        # Triggered: the third BootNotification comes at once (well before another interval), Accepted.
        assert _until(lambda: box.registration == "Accepted"), box.sent
        boots = [g[1] for g in central.point.got if g[0] == "BootNotification"]
        assert len(boots) == 3 and boots[2] - out["triggered_at"] < INTERVAL_S
        assert _until(lambda: any(g[0] == "StartTransaction" for g in central.point.got)), central.point.got
        assert box.offered_a() == 6  # Accepted: its profile's limit
        while_pending = [action for action, registration in box.sent if registration != "Accepted"]
        assert while_pending == ["BootNotification"] * 3, box.sent
        # Nothing reached the central system before the Accepted answer but BootNotifications.
        accepted_at = boots[2]
        assert all(action == "BootNotification" for action, at in central.point.got if at <= accepted_at)
        assert box.pending_s >= INTERVAL_S - 0.05
    finally:
        box.stop()
        central.stop()


def test_a_box_with_pre_boot_transactions_charges_while_pending_but_still_sends_nothing():
    async def script(point, outcome):
        await asyncio.sleep(0)  # Pending twice, then Accepted after the box's own retries

    central = CentralSystem(script).start()
    box = OcppBox("PEND2", central.port, pre_boot_transactions=True, max_a=16)
    box.start()
    try:
        assert _until(lambda: box.registration == "Pending")
        assert box.offered_a() == 16  # no profile, never accepted: it charges at its maximum all the same
        assert _until(lambda: box.registration == "Accepted", WAIT_S + 2 * INTERVAL_S), box.sent
        assert [action for action, registration in box.sent if registration != "Accepted"] == ["BootNotification"] * 3
    finally:
        box.stop()
        central.stop()
