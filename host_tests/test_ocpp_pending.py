"""A new OCPP box is answered Pending until it is set up, then let in (both runtimes).

OCPP 1.6 edition 2, section 4.2: while Pending a charge point sends no request but what a TriggerMessage
asks for (so no StartTransaction), answers the central system's requests (configuration, profiles),
and boots again after the answer's `interval` or when a TriggerMessage asks; RemoteStart/Stop are not
allowed while Pending. The driver (chargers/ocpp.py) is driven through its entry points with a scripted
central system in place of the WebSocket server (test_ocpp_status.ScriptedCentral).
"""

import asyncio
import json

from httpfake import Clock
from test_ocpp_status import BOOT, ScriptedCentral

from chargeguard.chargers.ocpp import HEARTBEAT_S, PENDING_S, SETUP_DEADLINE_MS, OcppCharger

UNITS = {"configurationKey": [{"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
                              {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "3"}]}
TRIGGER = ("TriggerMessage", {"requestedMessage": "BootNotification"})


def _box(central, clock, **options):
    point = OcppCharger("CP1", failsafe_a=6, clock=clock, wall=lambda: 1796014800, **options)
    point.central = central
    point.attach(object())
    return point


def _boot(point):
    return json.loads(point.on_call("BootNotification", BOOT))


def _actions(central, since=0):
    return [action for action, payload in central.seen[since:]]


def test_a_new_box_is_set_up_while_pending_then_let_in_at_once_by_a_trigger():
    central = ScriptedCentral({"GetConfiguration": UNITS})
    clock = Clock()
    point = _box(central, clock)
    answer = _boot(point)
    assert answer["status"] == "Pending" and answer["interval"] == PENDING_S

    async def run():
        assert await point.poll()
        out = {"setup": _actions(central), "reachable": point.status.reachable}
        # Its retry after `interval` (or a slow box's second BootNotification) is the same boot: still
        # Pending, the set-up done so far kept.
        clock.ms += PENDING_S * 1000
        out["retry"] = _boot(point)["status"]
        out["kept"] = point._setup
        out["applied"] = await point.apply(16000)
        return out

    out = asyncio.run(run())
    # Profiles and configuration while Pending, the failsafe first; no call that Pending forbids.
    assert out["setup"] == ["GetConfiguration", "ClearChargingProfile", "SetChargingProfile", "ChangeConfiguration",
                            "ChangeConfiguration"]
    assert out["reachable"] and out["retry"] == "Pending" and out["kept"] == 3 and out["applied"]
    # The guard's limit confirmed: the box is asked to boot again at once (4.2: not before its interval
    # unless a TriggerMessage asks), and that BootNotification is Accepted.
    dynamic = central.seen[5][1]["csChargingProfiles"]
    assert dynamic["chargingProfileId"] == 2 and dynamic["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 16.0
    assert central.seen[6] == TRIGGER and len(central.seen) == 7
    answer = _boot(point)
    assert answer["status"] == "Accepted" and answer["interval"] == HEARTBEAT_S
    assert point.status.reachable and point.status.error is None
    # Accepted: no new set-up; the next command is a renewal as before.
    assert asyncio.run(point.apply(16000)) and len(central.seen) == 7
    assert "RemoteStartTransaction" not in _actions(central) and "RemoteStopTransaction" not in _actions(central)


def test_a_box_that_takes_no_profile_stays_pending_and_is_reported_at_the_deadline():
    central = ScriptedCentral({"GetConfiguration": UNITS, "SetChargingProfile": [{"status": "Rejected"}]})
    clock = Clock()
    point = _box(central, clock, unit="A", stack_level=0)
    assert _boot(point)["status"] == "Pending"

    async def run(ms):
        clock.ms += ms
        await point.poll()
        return await point.apply(16000)

    assert asyncio.run(run(0)) is False
    assert not point.status.reachable and point.status.error.startswith("SetChargingProfile: Rejected")
    assert asyncio.run(run(SETUP_DEADLINE_MS - 2000)) is False
    assert not point.status.error.startswith("Pending")
    assert asyncio.run(run(2000)) is False
    assert point.status.error == "Pending: took no charging profile in 60 s (SetChargingProfile: Rejected (16.0 A))"
    assert not point.status.reachable and point.last_error == point.status.error
    # Still kept out: its next BootNotification is Pending again, and it was never asked to boot.
    assert _boot(point)["status"] == "Pending" and TRIGGER not in central.seen
    # The box takes a profile after all (its installer enabled its load management): let in then.
    central.answers["SetChargingProfile"] = [{"status": "Accepted"}]
    point._sent_at -= 100000
    assert asyncio.run(run(1000)) is True
    assert central.seen[-1] == TRIGGER and point.status.error is None
    assert _boot(point)["status"] == "Accepted"


def test_no_remote_stop_while_pending_a_box_that_refuses_zero_waits_for_a_limit_above_it():
    # failsafe_a 0 refused: the box cannot be paused by a profile; pausing it would take RemoteStop,
    # which Pending forbids. It stays Pending until the guard can give it at least its minimum.
    refused = {"status": "Rejected"}
    central = ScriptedCentral({"GetConfiguration": UNITS, "SetChargingProfile": [refused, refused, {"status": "Accepted"}]})
    clock = Clock()
    point = OcppCharger("CP1", failsafe_a=0, remote_start_stop=True, clock=clock, wall=lambda: 1796014800)
    point.central = central
    point.attach(object())
    point._transaction = 4  # one it reported on an earlier connection
    assert _boot(point)["status"] == "Pending"

    async def run(offered_ma):
        await point.poll()
        return await point.apply(offered_ma)

    assert asyncio.run(run(0)) is False
    assert point.status.error == "Pending: waits for a limit above 0 (the box refuses 0)"
    assert "RemoteStopTransaction" not in _actions(central) and TRIGGER not in central.seen
    assert asyncio.run(run(8000)) is True and central.seen[-1] == TRIGGER
    assert _boot(point)["status"] == "Accepted"


def test_a_reconnect_that_talks_first_is_accepted_at_once_and_a_discovered_box_too():
    # A box that sends anything before its BootNotification on a connection was accepted before (4.2:
    # nothing before a successful BootNotification): a reconnect. Its BootNotification (asked for by
    # TriggerMessage) is Accepted and its set-up runs at once, as before: never slower.
    central = ScriptedCentral({"GetConfiguration": UNITS})
    point = _box(central, Clock())
    point.on_call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
    asyncio.run(point.poll())
    assert central.seen == [TRIGGER]
    asked = []
    point.poll_soon = lambda: asked.append(True)
    assert _boot(point)["status"] == "Accepted" and point.status.error == "connected, setting up"
    point.answered()  # its answer went out: the set-up is asked for at once
    assert asked == [True]
    stranger = OcppCharger("STRANGER", clock=Clock(), discovered=True)
    stranger.attach(object())
    assert _boot(stranger)["status"] == "Accepted"


def test_a_box_that_boots_again_on_an_accepted_connection_is_pending_again():
    central = ScriptedCentral({"GetConfiguration": UNITS})
    point = _box(central, Clock())
    _boot(point)

    async def run():
        await point.poll()
        return await point.apply(16000)

    assert asyncio.run(run())
    assert _boot(point)["status"] == "Accepted"
    # A reboot (its profiles may be gone): set up again before it may charge.
    assert _boot(point)["status"] == "Pending" and point._setup == 0 and not point.status.reachable
    assert asyncio.run(run()) and central.seen[-1] == TRIGGER
    assert _boot(point)["status"] == "Accepted"


def test_let_in_only_with_a_limit_the_guard_decided_once_the_box_was_available():
    # The command applied in the pass that ends the set-up was decided while the box was unavailable
    # (its stale last offer): the box is let in on a later one, after a guard decision. While Pending
    # it is counted as drawing nothing (it sends no MeterValues), not at its offer.
    central = ScriptedCentral({"GetConfiguration": UNITS})
    clock = Clock()
    point = _box(central, clock, phases=1)
    count = [5]
    point.decisions = lambda: count[0]
    _boot(point)
    assert point.status.current_ma == [0, None, None] and point.status.tick_ms == clock.ms

    async def run():
        await point.poll()
        return await point.apply(6000)

    assert asyncio.run(run()) and TRIGGER not in central.seen  # not let in
    count[0] += 1  # the guard decided with the box available: the same limit, nothing to send but the trigger
    sent = len(central.seen)
    assert asyncio.run(point.apply(6000)) and central.seen[sent:] == [TRIGGER]
    assert _boot(point)["status"] == "Accepted"
