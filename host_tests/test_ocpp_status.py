"""An OCPP box's connection in the site state, the JSON status and Home Assistant; relative profiles (both runtimes).

The driver (chargers/ocpp.py) is driven through its own entry points (attach, heard, on_call, poll,
apply) with a scripted central system in place of the WebSocket server; the interfaces read only the
site state (state.OcppLink).
"""

import asyncio
import json

from test_app_optimiser import UNSET_WALL_S, WALL_S
from test_commands import api_app
from test_hass import CFG, FakeLink, configs, last, settle

from chargeguard.chargers.ocpp import DYNAMIC_VALID_S, OcppCharger
from chargeguard.net import hass, hass_entities as entities, web
from chargeguard.ocppstate import iso_utc

BOOT = {"chargePointVendor": "Alfen BV", "chargePointModel": "NG910", "firmwareVersion": "6.1.0"}


class ScriptedCentral:
    """net/ocpp.CentralSystem.call as the driver uses it: answers per action (a list is used in order)."""

    def __init__(self, answers=None):
        self.answers = answers or {}
        self.seen = []

    async def call(self, session, action, payload):
        self.seen.append((action, json.loads(payload)))
        answer = self.answers.get(action, {"status": "Accepted"})
        if type(answer) is list:
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        return "ok", answer


def ocpp_site(wall_s=WALL_S):
    """An app whose charger c1 is an OCPP box (BOX-1, A, stack level 0), c0 a fake Trydan; (app, platform, point)."""
    app, platform, meter, api, _ = api_app(None, 2, ocpp_at=1, wall_s=wall_s)
    point = app.drivers[1]
    point.unit = "A"
    point.stack_level = 0
    return app, platform, point


def connect_and_refuse(platform, point, central):
    """The box connects, boots, is set up, and refuses the dynamic profile (every level: its last refusal)."""
    point.central = central
    point.attach(object())
    platform.advance(1000)
    point.heard()
    point.on_call("BootNotification", BOOT)

    async def run():
        assert await point.poll()
        return await point.apply(16000)

    return asyncio.run(run())


def profiles(central):
    return [payload["csChargingProfiles"] for action, payload in central.seen if action == "SetChargingProfile"]


def test_the_site_state_has_the_link_of_an_ocpp_box_and_none_for_others():
    app, platform, point = ocpp_site()
    state = app.state
    assert state.chargers[0].ocpp is None
    link = state.chargers[1].ocpp
    assert link.charge_point_id == "BOX-1" and link.connected is False and link.last_message is None
    state.update(platform.now)
    assert link.connected_for_s is None and link.last_message_age_s is None and link.last_refusal is None
    seq = state.chargers_seq
    central = ScriptedCentral({"SetChargingProfile": [{"status": "Accepted"}, {"status": "Rejected"}]})
    connected_at = platform.wall_time()
    assert connect_and_refuse(platform, point, central) is False
    platform.advance(3000)
    state.update(platform.now)
    assert state.chargers_seq > seq  # the link moved: publishers see the chargers section changed
    assert link.connected is True and link.connected_since_s == connected_at and link.connected_for_s == 4
    assert (link.vendor, link.model, link.firmware) == ("Alfen BV", "NG910", "6.1.0")
    assert link.last_message == "BootNotification" and link.last_message_s == connected_at + 1
    assert link.last_message_age_s == 3
    assert link.last_refusal == "SetChargingProfile: Rejected (16.0 A)" and link.last_refusal_age_s == 3
    assert link.last_refusal_s == connected_at + 1
    # Nothing changed: the ages move, the counter does not.
    seq = state.chargers_seq
    platform.advance(2000)
    state.update(platform.now)
    assert state.chargers_seq == seq and link.last_message_age_s == 5
    # The box goes: not connected, its last message and refusal stay.
    point.detach(point.session, "closed")
    state.update(platform.now)
    assert link.connected is False and link.connected_since_s is None and link.connected_for_s is None
    assert link.last_message == "BootNotification" and link.last_refusal.startswith("SetChargingProfile")


def test_without_a_wall_clock_times_are_ages_until_the_clock_is_set():
    app, platform, point = ocpp_site(UNSET_WALL_S)
    state = app.state
    link = state.chargers[1].ocpp
    point.attach(object())
    platform.advance(5000)
    point.heard()
    point.on_call("Heartbeat", {})
    state.update(platform.now)
    assert link.connected and link.connected_since_s is None and link.last_message_s is None
    assert link.connected_for_s == 5 and link.last_message_age_s == 0 and link.last_message == "Heartbeat"
    # SNTP sets the clock: the next message dates the connection from the ticks since it began.
    platform.wall_start = WALL_S
    platform.advance(2000)
    point.heard()
    point.on_call("Heartbeat", {})
    state.update(platform.now)
    now_s = platform.wall_time()
    assert link.last_message_s == now_s and link.connected_since_s == now_s - 7


def test_update_allocates_nothing_with_an_ocpp_box():
    import gc
    import sys

    from support import skip

    if sys.implementation.name != "micropython":
        skip("allocation is measured on MicroPython, where small ints are not objects")
    app, platform, point = ocpp_site()
    state = app.state
    point.attach(object())
    point.heard()
    state.update(platform.now)
    for changed in (False, True):
        if changed:
            point.heard()  # the driver's own work per message (a wall clock read) is not the state's
        gc.collect()
        before = gc.mem_alloc()
        for _ in range(10):
            platform.advance(1000)
            state.update(platform.now)
        after = gc.mem_alloc()
        assert after == before, (changed, after - before)


def test_json_status_gives_the_link_in_words_and_times():
    app, platform, point = ocpp_site()
    central = ScriptedCentral({"SetChargingProfile": [{"status": "Accepted"}, {"status": "Rejected"}]})
    since = platform.wall_time()
    connect_and_refuse(platform, point, central)
    platform.advance(2000)
    app.state.update(platform.now)
    doc = web.status_doc(app.state, app.api.values)
    assert doc["chargers"][0]["ocpp"] is None
    ocpp = doc["chargers"][1]["ocpp"]
    assert ocpp == {
        "charge_point_id": "BOX-1",
        "connected": True,
        "connected_since": iso_utc(since),
        "connected_for_s": 3,
        "last_message": "BootNotification",
        "last_message_at": iso_utc(since + 1),
        "last_message_age_s": 2,
        "last_refusal": "SetChargingProfile: Rejected (16.0 A)",
        "last_refusal_at": iso_utc(since + 1),
        "last_refusal_age_s": 2,
        "vendor": "Alfen BV",
        "model": "NG910",
        "firmware": "6.1.0",
    }
    assert iso_utc(WALL_S) == "2026-11-29T21:00:00Z" and iso_utc(None) is None
    # The box's refusal is also its error (what the guard sees), as before.
    assert doc["chargers"][1]["error"] == "SetChargingProfile: Rejected (16.0 A)"


def test_json_status_without_a_clock_gives_ages_only():
    app, platform, point = ocpp_site(UNSET_WALL_S)
    point.attach(object())
    platform.advance(4000)
    point.heard()
    point.on_call("Heartbeat", {})
    app.state.update(platform.now)
    ocpp = web.status_doc(app.state, app.api.values)["chargers"][1]["ocpp"]
    assert ocpp["connected"] is True and ocpp["connected_since"] is None and ocpp["connected_for_s"] == 4
    assert ocpp["last_message"] == "Heartbeat" and ocpp["last_message_at"] is None and ocpp["last_message_age_s"] == 0
    assert ocpp["last_refusal"] is None and ocpp["last_refusal_at"] is None and ocpp["last_refusal_age_s"] is None


def hass_site(wall_s=WALL_S):
    app, platform, point = ocpp_site(wall_s)
    link = FakeLink()
    bridge = hass.Hass(link, app.state, app.api, CFG, platform, log=lambda line: None, models=["v2c_trydan", "ocpp"])
    bridge.attach()
    return app, platform, point, link, bridge


def test_home_assistant_gets_ocpp_entities_for_the_ocpp_box_only():
    app, platform, point, link, bridge = hass_site()
    bridge.announce()
    settle(bridge, link, platform)
    found = configs(link)
    for row in entities.rows(entities.OCPP):
        component, obj = row[0], row[1]
        assert found["homeassistant/%s/chargeguard_c0/%s/config" % (component, obj)][0] == b""  # no dead entity
        doc = json.loads(found["homeassistant/%s/chargeguard_c1/%s/config" % (component, obj)][0])
        assert doc["entity_category"] == "diagnostic" and doc["state_topic"] == "chargeguard/charger/c1/state"
        assert "command_topic" not in doc
    kinds = {row[1]: (row[0], row[4]) for row in entities.rows(entities.OCPP)}
    assert kinds == {
        "ocpp_connected": ("binary_sensor", "connectivity"),
        "connected_since": ("sensor", "timestamp"),
        "last_message": ("sensor", None),
        "last_message_at": ("sensor", "timestamp"),
        "last_refusal": ("sensor", None),
    }
    state = last(link, "chargeguard/charger/c1/state")
    assert state["ocpp_connected"] is False and state["connected_since"] is None and state["last_refusal"] == ""
    assert "ocpp_connected" not in last(link, "chargeguard/charger/c0/state")


def test_home_assistant_state_after_a_refusal_and_without_a_clock():
    for wall_s in (WALL_S, UNSET_WALL_S):
        app, platform, point, link, bridge = hass_site(wall_s)
        bridge.announce()
        settle(bridge, link, platform)
        since = platform.wall_time()
        connect_and_refuse(platform, point, ScriptedCentral({"SetChargingProfile": [{"status": "Accepted"}, {"status": "Rejected"}]}))
        app.state.update(platform.now)
        platform.advance(hass.MIN_INTERVAL_MS)
        bridge.step(platform.now)
        link.drain()
        state = last(link, "chargeguard/charger/c1/state")
        assert state["ocpp_connected"] is True and state["last_message"] == "BootNotification"
        assert state["last_refusal"] == "SetChargingProfile: Rejected (16.0 A)"
        if wall_s == WALL_S:
            assert state["connected_since"] == iso_utc(since) and state["last_message_at"] == iso_utc(since + 1)
        else:
            # No clock: null, never a 1970 or 2000 date (Home Assistant shows the entity unavailable: net/hass.py).
            assert state["connected_since"] is None and state["last_message_at"] is None


def test_relative_profiles_carry_no_start_and_keep_their_validity():
    for kind in ("absolute", "relative"):
        point = OcppCharger("BOX-1", unit="A", stack_level=0, failsafe_a=6, profile_kind=kind,
                            clock=lambda: 1000, wall=lambda: WALL_S)
        central = ScriptedCentral()
        point.central = central
        point.attach(object())
        point.on_call("BootNotification", BOOT)

        async def run():
            assert await point.poll()
            return await point.apply(16000)

        assert asyncio.run(run()) is True
        failsafe, dynamic = profiles(central)
        for profile in (failsafe, dynamic):
            schedule = profile["chargingSchedule"]
            assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
            if kind == "relative":
                assert profile["chargingProfileKind"] == "Relative" and "startSchedule" not in schedule
            else:
                assert profile["chargingProfileKind"] == "Absolute" and schedule["startSchedule"] == iso_utc(WALL_S)
        assert failsafe["stackLevel"] == 0 and "duration" not in failsafe["chargingSchedule"]
        assert failsafe["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 6.0}]
        # The dynamic limit still lapses by itself: the box's failsafe takes over when ChargeGuard goes.
        assert dynamic["stackLevel"] == 1 and dynamic["chargingSchedule"]["duration"] == DYNAMIC_VALID_S
        assert dynamic["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16.0}]


def test_profile_kind_is_a_checked_config_key():
    from chargeguard import config

    entry = {"name": "Box", "type": "ocpp", "charge_point_id": "BOX-1"}
    doc, errors = config.check({"chargers": [dict(entry)]})
    assert not errors and doc["chargers"][0]["profile_kind"] == "absolute"
    doc, errors = config.check({"chargers": [dict(entry, profile_kind="relative")]})
    assert not errors and doc["chargers"][0]["profile_kind"] == "relative"
    doc, errors = config.check({"chargers": [dict(entry, profile_kind="sometimes")]})
    assert [path for path, message in errors] == ["chargers.0.profile_kind"], errors
