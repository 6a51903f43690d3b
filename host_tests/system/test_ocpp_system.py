"""OCPP 1.6J end to end: the built firmware (unix port) as the central system, mobilityhouse's `ocpp`
package as the charge points (tools/sim/ocpp_emulator.py), P1 telegrams from the simulator.

Deadlines come from the product's periods: the firmware's boot (BOOT_S), the charger task's poll
(CHARGER_POLL_S, when the set-up after a BootNotification runs), one OCPP call's deadline (CALL_S) per
set-up step, the guard's ramp and the box's MeterValues interval.
"""

import asyncio
import base64
import json
import os
import sys
import time

import pytest
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))
sys.path.insert(0, os.path.join(ROOT, "firmware"))

from chargeguard.chargers.ocpp import DYNAMIC_VALID_S, PENDING_S, RENEW_MS  # noqa: E402
from chargeguard.net.ocpp import CALL_MS  # noqa: E402
from run import DEFAULT_HEAP, OCPP_EXTRA_HEAP_K, Simulation, wait_for as wait  # noqa: E402
from test_end_to_end import (  # noqa: E402
    BOOT_S,
    CHARGER_POLL_S,
    CONTROL_TICK_S,
    FAST_GUARD,
    HOST_SLACK_S,
    PUMP_PERIOD_S,
    SETTLE_S,
    firmware_output,
    pump_until,
    status_lines,
)

# What the OCPP interface and four boxes' connections add on the 64-bit port (run.py, docs/ocpp.md).
HEAP = "%dK" % (int(DEFAULT_HEAP[:-1]) + OCPP_EXTRA_HEAP_K)
CALL_S = CALL_MS / 1000
# From the firmware's start to a box's first dynamic profile: boot, a poll for the set-up
# (GetConfiguration, two ChangeConfiguration, the failsafe profile: 4 calls), the next poll and the command.
SETUP_S = BOOT_S + 2 * CHARGER_POLL_S + HOST_SLACK_S
METER_S = 10  # MeterValueSampleInterval the driver sets


def start(boxes, **kwargs):
    return Simulation(heap=HEAP, chargers=0, car_delay_s=0.2, run_name="e2e-ocpp", guard=FAST_GUARD, ocpp=boxes, **kwargs)


def report(sim):
    """What a failed wait shows: each box's connection and last calls, the firmware's lines but the status lines."""
    boxes = ["%s: connections %d, %s, %s" % (box.id, box.connections, box.handshake_error, box.log[-4:]) for box in sim.boxes]
    lines = [line for line in sim.lines if not line.startswith("grid")] + [line for line in sim.lines if line.startswith("grid")][-2:]
    return "\n".join(boxes + lines)


def profiles(box, since=0):
    return [entry for entry in box.log[since:] if entry[0] == "SetChargingProfile"]


def test_four_boxes_each_with_its_quirk_get_their_profiles():
    sim = start(
        [
            {"id": "AMPS", "unit": "A"},
            {"id": "WATTS", "unit": "W", "path": "/ocpp"},
            # Refuses limit 0 and stack levels above 0; the config allows remote start/stop.
            {"id": "FUSSY", "unit": "A", "max_stack_level": 0, "refuse_zero": True,
             "config": {"remote_start_stop": True, "failsafe_a": 0}},
            # Talks before its BootNotification, never pings, no subprotocol, quirky MeterValues, its id in
            # a query string style path with a trailing slash.
            {"id": "QUIRKY", "status_first": True, "pings": False, "subprotocol": False, "meter_style": "quirky",
             "path": "/cs", "suffix": "/?token=1"},
        ],
        site={"breaker_a": 80},  # room for all four at their 16 A
    )
    amps, watts, fussy, quirky = sim.boxes
    sim.site.set_house([0, 0, 0])
    try:
        assert pump_until(sim, lambda: all(box.limit_a() == 16 for box in sim.boxes), SETUP_S + SETTLE_S), report(sim)
        # Amps: the failsafe (0 A, no end) at level 0 and the dynamic limit at level 1 with its validity.
        got = profiles(amps)
        assert got[0] == ("SetChargingProfile", 0, 0, "A", [0])
        assert ("SetChargingProfile", 0, 1, "A", [16]) in got
        # Watts: the same in W (16 A x 230 V x 3 phases).
        got = profiles(watts)
        assert got[0] == ("SetChargingProfile", 0, 0, "W", [0]) and ("SetChargingProfile", 0, 1, "W", [11040]) in got
        # Fussy: one profile at level 0, never a 0 limit accepted, never a level above 0 accepted.
        assert fussy.profiles and all(p["stack_level"] == 0 for p in fussy.profiles)
        assert all(0 not in [q["limit"] for q in p["charging_schedule"]["charging_schedule_period"]] for p in fussy.profiles)
        # Quirky: asked for its BootNotification, booted once; its meter values reach the status.
        assert ("TriggerMessage", "BootNotification") in quirky.log and quirky.booted == 1
        assert quirky.connections == 1 and amps.connections == 1
        # Each box had the TxDefaultProfiles of others cleared and got its meter interval set.
        for box in sim.boxes:
            assert ("ClearChargingProfile", "TxDefaultProfile") in box.log
            assert ("ChangeConfiguration", "MeterValueSampleInterval", "10") in box.log
        # The dynamic profile is renewed before it lapses (RENEW_MS), never left to run out.
        count = len(profiles(amps))
        assert pump_until(sim, lambda: len(profiles(amps)) > count, RENEW_MS / 1000 + CHARGER_POLL_S + HOST_SLACK_S)
        # The never-pinging box is still on its first connection after the server's pings (20 s) went by.
        assert quirky.connections == 1 and quirky.connected
    finally:
        sim.stop()


def test_two_boxes_under_one_breaker_the_guard_sheds_the_lower_priority_one():
    # The second refuses limit 0 and levels above 0: it is paused by RemoteStopTransaction.
    sim = start(
        [
            {"id": "FIRST", "unit": "A"},
            {"id": "SECOND", "unit": "A", "max_stack_level": 0, "refuse_zero": True,
             "config": {"remote_start_stop": True}},
        ]
    )
    first, second = sim.boxes
    try:
        sim.site.set_house([4, 4, 4])
        assert pump_until(sim, lambda: first.offered_a() > 0 and second.offered_a() > 0, SETUP_S + SETTLE_S), (
            report(sim))
        # The house takes 15 A: 15 + 6 + 6 > 24, the lower priority is shed, the first keeps charging.
        sim.site.set_house([15, 15, 15])
        assert pump_until(sim, lambda: second.offered_a() == 0 and first.offered_a() >= 6, SETTLE_S + CALL_S), (
            first.offered_a(), second.offered_a(), second.log[-5:], report(sim))
        assert ("RemoteStopTransaction", 1) in second.log
        # Room again: the second starts again (RemoteStartTransaction, then its limit).
        sim.site.set_house([0, 0, 0])
        assert pump_until(sim, lambda: second.offered_a() >= 6, SETTLE_S + CALL_S + METER_S), report(sim)
        assert any(entry[0] == "RemoteStartTransaction" for entry in second.log)
    finally:
        sim.stop()


def _new_box_beside_a_loaded_house(pre_boot_transactions):
    # A box without a profile offers its own maximum (16 A) once it may charge (tools/sim/ocpp_emulator.py).
    # It appears while the house takes 20 A of the 25 A breaker: 36 A if nobody limits it. Its
    # BootNotification is answered Pending (OCPP 1.6, 4.2) and it is set up while Pending
    # (GetConfiguration, ClearChargingProfile, the failsafe profile, the configuration, then the guard's
    # limit: loopback calls), then let in by a TriggerMessage. Returns (longest stretch over the breaker in
    # s, the box, the firmware's report).
    breaker_a = 25
    sim = start([{"id": "NEWBOX", "unit": "A", "max_a": 16, "later": True, "config": {"failsafe_a": 6},
                  "pre_boot_transactions": pre_boot_transactions}], site={"breaker_a": breaker_a})
    box = sim.boxes[0]
    try:
        sim.site.set_house([20, 20, 20])
        assert wait(lambda: status_lines(sim), BOOT_S), firmware_output(sim)
        box.start()
        spans = []  # [start, end] of each stretch with a phase over the breaker
        within_since = [None]

        def watch():
            now = time.monotonic()
            over = max(sim.site.grid_currents_ma()) > breaker_a * 1000
            if over and (not spans or spans[-1][1] is not None):
                spans.append([now, None])
            elif not over and spans and spans[-1][1] is None:
                spans[-1][1] = now
            # Done once the box is Accepted with the guard's command (its dynamic profile) in, and the
            # site stayed within the breaker for a charger poll after that.
            commanded = box.registration == "Accepted" and any(p["charging_profile_id"] == 2 for p in box.profiles)
            if over or not commanded:
                within_since[0] = None
            elif within_since[0] is None:
                within_since[0] = now
            return within_since[0] is not None and now - within_since[0] >= CHARGER_POLL_S

        assert pump_until(sim, watch, SETUP_S + SETTLE_S, period_s=0.1), report(sim)
        longest = max([(end or time.monotonic()) - start for start, end in spans] or [0])
        # 20 A + the box's minimum 6 A does not fit under 24 A: the box is paused, and was limited at
        # once by its failsafe profile (6 A, level 0) before the guard's 0 A (level 1).
        assert box.offered_a() == 0 and max(box.drawn_current_ma()) == 0, box.log
        got = profiles(box)
        assert got[0] == ("SetChargingProfile", 0, 0, "A", [6]) and ("SetChargingProfile", 0, 1, "A", [0]) in got
        # While Pending the box sent nothing but BootNotifications, and it was let in by the trigger
        # once set up, not after its interval (PENDING_S) of waiting.
        assert {action for action, registration in box.sent if registration != "Accepted"} == {"BootNotification"}, box.sent
        assert ("TriggerMessage", "BootNotification") in box.log and box.pending_s < PENDING_S, (box.pending_s, box.log)
        print("new box (pre_boot_transactions=%s): longest over the breaker %.3f s, kept Pending %.3f s"
              % (pre_boot_transactions, longest, box.pending_s))
        return longest, box, report(sim)
    finally:
        sim.stop()


def test_a_new_box_that_obeys_pending_never_holds_the_site_over_its_breaker():
    # A box that denies charging until it is first Accepted (OCPP 1.6, 4.2.1; MicroOcpp's default) is
    # set up before it may charge: the site never goes over its breaker (was 0.31 s with Accepted at once).
    longest, box, shown = _new_box_beside_a_loaded_house(False)
    assert longest == 0, (longest, box.log[:10], shown)


def test_a_new_box_that_charges_while_pending_is_limited_as_fast_as_before():
    # A box set to charge before it is accepted (OpenEVSE's PreBootTransactions): Pending does not stop
    # its car, but its set-up runs at once as before, so it is limited within the guard's deadline.
    deadline_s = PUMP_PERIOD_S + CONTROL_TICK_S + 0.2 + HOST_SLACK_S  # 0.2: start()'s car_delay_s
    longest, box, shown = _new_box_beside_a_loaded_house(True)
    assert longest <= deadline_s, (longest, deadline_s, box.log[:10], shown)


def test_failsafe_profile_takes_over_in_the_box_when_chargeguard_dies():
    sim = start([{"id": "SAFE", "unit": "A", "config": {"failsafe_a": 6, "min_a": 6}}])
    box = sim.boxes[0]
    try:
        sim.site.set_house([0, 0, 0])
        assert pump_until(sim, lambda: box.limit_a() == 16, SETUP_S + SETTLE_S), report(sim)
        assert profiles(box)[0] == ("SetChargingProfile", 0, 0, "A", [6])
        sim.firmware.stop()  # ChargeGuard dies; the box keeps what it has
        killed = time.monotonic()
        deadline = killed + DYNAMIC_VALID_S + HOST_SLACK_S
        while time.monotonic() < deadline and box.limit_a() != 6:
            time.sleep(0.2)
        assert box.limit_a() == 6
        # Not before the dynamic profile's validity has run out (it was renewed at most RENEW_MS earlier).
        assert time.monotonic() - killed >= DYNAMIC_VALID_S - RENEW_MS / 1000 - HOST_SLACK_S
    finally:
        sim.stop()


def test_reconnect_mid_session_and_a_second_connection_replaces_the_first():
    sim = start([{"id": "HOPPER", "unit": "A", "password": "box-secret-1", "config": {"password": "box-secret-1"}}])
    box = sim.boxes[0]
    try:
        sim.site.set_house([0, 0, 0])
        assert pump_until(sim, lambda: box.limit_a() == 16, SETUP_S + SETTLE_S), report(sim)
        before = len(profiles(box))
        box.disconnect()
        # It connects again, boots, and is commanded again.
        assert pump_until(sim, lambda: box.connections == 2 and len(profiles(box)) > before + 1,
                          2 * CHARGER_POLL_S + 4 * CALL_S), report(sim)
        assert box.limit_a() == 16
        # A second connection with the same id replaces the first (a box that reconnects before its
        # old socket timed out). The box, dropped by it, waits a call deadline before it connects again
        # (and replaces ours in turn): ours must be answered first, however busy the machine.
        box.reconnect_s = CALL_S + HOST_SLACK_S
        replaced = {}

        async def second_connection():
            token = base64.b64encode(b"HOPPER:box-secret-1").decode()
            async with websockets.connect("ws://127.0.0.1:%d/HOPPER" % sim.ocpp_port, subprotocols=["ocpp1.6"],
                                          additional_headers={"Authorization": "Basic " + token}) as socket:
                replaced["protocol"] = socket.subprotocol
                await socket.send(json.dumps([2, "x1", "Heartbeat", {}]))
                replaced["answer"] = json.loads(await asyncio.wait_for(socket.recv(), CALL_S))

        asyncio.run(second_connection())
        assert replaced["protocol"] == "ocpp1.6" and replaced["answer"][:2] == [3, "x1"]
        # The box connects again after its wait, within one more call deadline for the handshake.
        assert pump_until(sim, lambda: box.connections >= 3, box.reconnect_s + CALL_S + HOST_SLACK_S), report(sim)
        assert "box-secret-1" not in report(sim)
    finally:
        sim.stop()


def test_garbage_from_a_box_gets_callerrors_and_never_reaches_the_guard():
    sim = start([{"id": "GOOD", "unit": "A"}], ocpp_port=None)
    good = sim.boxes[0]
    results = {}

    async def rogue():
        url = "ws://127.0.0.1:%d/GOOD" % sim.ocpp_port
        # An unknown id is refused at the handshake.
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect("ws://127.0.0.1:%d/STRANGER" % sim.ocpp_port, open_timeout=5):
                pass
        results["unknown"] = refused.value.response.status_code
        async with websockets.connect(url, subprotocols=["ocpp1.6"], max_size=None) as socket:
            answers = []
            for text in ("garbage", "[2,", '[2,"a1","NoSuchThing",{}]',
                         '[2,"a2","MeterValues",{"connectorId":"x","meterValue":[]}]',
                         '[2,"a3","BootNotification",{"chargePointVendor":1,"chargePointModel":"M"}]'):
                await socket.send(text)
                answers.append(json.loads(await asyncio.wait_for(socket.recv(), CALL_S)))
            results["answers"] = answers
            await socket.send('[2,"big","DataTransfer",{"vendorId":"v","data":"%s"}]' % ("x" * 20000))
            try:
                await asyncio.wait_for(socket.recv(), CALL_S)
            except websockets.exceptions.ConnectionClosed as closed:
                results["close"] = closed.rcvd.code if closed.rcvd else None

    try:
        sim.site.set_house([0, 0, 0])
        assert pump_until(sim, lambda: good.limit_a() == 16, SETUP_S + SETTLE_S), report(sim)
        good.stop()  # the rogue takes its id (a second connection would replace it)
        asyncio.run(rogue())
        assert results["unknown"] == 404
        assert [answer[:3] for answer in results["answers"]] == [
            [4, "-1", "FormationViolation"],
            [4, "-1", "FormationViolation"],
            [4, "a1", "NotImplemented"],
            [4, "a2", "TypeConstraintViolation"],
            [4, "a3", "TypeConstraintViolation"],
        ]
        assert results["close"] == 1009
        # The real box comes back and is commanded; the firmware still runs.
        good.start()
        assert pump_until(sim, lambda: good.connected and good.limit_a() == 16, 2 * CHARGER_POLL_S + 4 * CALL_S)
        assert sim.firmware.alive()
    finally:
        sim.stop()


def test_status_names_each_box_its_connection_last_message_and_refusal_and_relative_profiles_reach_a_drifting_box():
    import datetime
    import http.client
    from ports import free_port
    from run import WEB_HEAP_K

    # Below the ephemeral range (tools/sim/ports.py): a port the kernel hands
    # out for bind(0) may be taken by any connect() before the firmware binds it.
    web_port = free_port()
    drift_s = 3600  # the boxes' clocks run an hour ahead: an Absolute profile from our clock has lapsed for them
    sim = Simulation(
        heap="%dK" % (int(HEAP[:-1]) + WEB_HEAP_K), chargers=0, car_delay_s=0.2, run_name="e2e-ocpp-status",
        guard=FAST_GUARD, web_port=web_port, site={"breaker_a": 80}, sections={"ocpp": {"accept_unknown": True}},
        ocpp=[
            # Refuses a limit of 0: its failsafe profile (failsafe_a 0 = pause) is refused, the dynamic one taken.
            {"id": "PICKY", "unit": "A", "refuse_zero": True},
            {"id": "DRIFT-REL", "unit": "A", "clock_offset_s": drift_s,
             "config": {"profile_kind": "relative", "failsafe_a": 6}},
            {"id": "DRIFT-ABS", "unit": "A", "clock_offset_s": drift_s, "config": {"failsafe_a": 6}},
        ],
    )
    picky, relative, absolute = sim.boxes
    sim.site.set_house([0, 0, 0])
    # A box no chargers[] entry names, accepted (ocpp.accept_unknown): listed as discovered, never commanded.
    from ocpp_emulator import OcppBox

    stranger = OcppBox("STRANGER", sim.ocpp_port, unit="A")

    def status(part="chargers"):
        connection = http.client.HTTPConnection("127.0.0.1", web_port, timeout=CALL_S)
        try:
            connection.request("GET", "/api/status")
            doc = json.loads(connection.getresponse().read())
            return {charger["name"]: charger for charger in doc["chargers"]} if part == "chargers" else doc[part]
        except OSError:
            return None
        finally:
            connection.close()

    seen = {}

    def shown():
        # PICKY's status once it names the refusal, with the connection and a message after it.
        doc = status()
        box = (doc or {}).get("PICKY") or {}
        link = box.get("ocpp") or {}
        seen["PICKY"] = link
        return link.get("connected") and link.get("connected_since") and link.get("last_message") and \
            "Rejected" in (link.get("last_refusal") or "")

    try:
        assert pump_until(sim, lambda: picky.limit_a() == 16 and relative.limit_a() == 16 and len(profiles(absolute)) >= 2,
                          SETUP_S + SETTLE_S), report(sim)
        stranger.start()
        discovered = [{"charge_point_id": "STRANGER", "vendor": "ChargeGuard", "model": "Sim", "connected": True}]
        # Its connection, then its BootNotification's answer and the next status.
        assert pump_until(sim, lambda: (status("device") or {}).get("ocpp_discovered") == discovered,
                          BOOT_S + CALL_S + HOST_SLACK_S), (status("device"), report(sim))
        # The status: which box, since when, its last message and its last refusal, with times the clock gives
        # (the unix port's wall clock is the host's: set). Within a decision and an answer of the refusal.
        assert pump_until(sim, shown, CALL_S + SETTLE_S), json.dumps(seen)
        link = seen["PICKY"]
        assert link["charge_point_id"] == "PICKY" and link["vendor"] == "ChargeGuard" and link["model"] == "Sim"
        assert link["last_refusal"] == "SetChargingProfile: Rejected (0.0 A)"
        now = datetime.datetime.now(datetime.timezone.utc)
        since = datetime.datetime.fromisoformat(link["connected_since"].replace("Z", "+00:00"))
        heard = datetime.datetime.fromisoformat(link["last_message_at"].replace("Z", "+00:00"))
        refused = datetime.datetime.fromisoformat(link["last_refusal_at"].replace("Z", "+00:00"))
        slack = datetime.timedelta(seconds=HOST_SLACK_S + 1)  # whole seconds on the device
        assert now - datetime.timedelta(seconds=SETUP_S + SETTLE_S) <= since <= refused <= now + slack
        assert since - slack <= heard <= now + slack
        assert link["connected_for_s"] >= 0 and 0 <= link["last_message_age_s"] <= METER_S + HOST_SLACK_S + 1
        # No OCPP link shown for what is no OCPP box, a link for each OCPP box.
        doc = status()
        assert all(doc[name]["ocpp"]["connected"] for name in ("PICKY", "DRIFT-REL", "DRIFT-ABS"))
        # The relative box: every profile Relative, without a start, the dynamic one with its validity.
        assert relative.received and all(
            p["charging_profile_kind"] == "Relative" and "start_schedule" not in p["charging_schedule"]
            for p in relative.received), relative.received
        dynamic = [p for p in relative.received if p["stack_level"] == 1]
        assert dynamic and all(p["charging_schedule"]["duration"] == DYNAMIC_VALID_S for p in dynamic)
        # Its twin with Absolute profiles from ChargeGuard's clock: the dynamic profile has lapsed by its own
        # clock, it holds its failsafe (what the relative kind is for).
        assert all(p["charging_profile_kind"] == "Absolute" and p["charging_schedule"]["start_schedule"]
                   for p in absolute.received)
        assert absolute.limit_a() == 6
        assert not profiles(stranger) and "STRANGER" not in status()  # answered, never commanded
        page_lines = status_page_lines(web_port)
        if page_lines is not None:
            # The page in words on a phone: PICKY's card names its connection, last message and refusal.
            picky_lines = page_lines["PICKY"]
            assert picky_lines[0].startswith("OCPP PICKY (ChargeGuard Sim): connected since "), picky_lines
            assert picky_lines[1].startswith("last message: ") and ("ago)" in picky_lines[1] or "just now" in picky_lines[1]), picky_lines
            assert picky_lines[2].startswith("last refusal: SetChargingProfile: Rejected (0.0 A), "), picky_lines
            assert page_lines["width"] <= 390
            assert page_lines["discovered"].startswith("OCPP boxes not in the configuration"), page_lines["discovered"]
            assert "STRANGER (ChargeGuard Sim)" in page_lines["discovered"], page_lines["discovered"]
    finally:
        stranger.stop()
        sim.stop()


def status_page_lines(web_port):
    """The status page in headless Chromium at a phone's width: {charger name: its OCPP lines, "width": page
    width}; None where the browser is not installed (CI must have it: .ci/run installs it)."""
    chromium = "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        why = "playwright is not installed (%s)" % error
    else:
        why = None if os.path.exists(chromium) else "%s is missing" % chromium
    if why is not None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI must run the browser check: " + why)
        return None
    # The page polls /api/status every 2 s (firmware/www/status.html): the cards are there within two polls.
    page_s = 2 * 2.0 + HOST_SLACK_S
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto("http://127.0.0.1:%d/" % web_port)
            page.wait_for_function("document.querySelectorAll('.ocpp').length >= 9", timeout=page_s * 1000)
            out = {"width": page.evaluate("document.documentElement.scrollWidth"), "discovered": page.locator("#disc").inner_text()}
            for card in page.locator("[data-charger]").all():
                out[card.locator("h2").inner_text()] = [line.inner_text() for line in card.locator(".ocpp").all()]
            return out
        finally:
            browser.close()
