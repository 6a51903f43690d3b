"""A mixed site end to end: the built firmware with a V2C Trydan, a go-e, an OpenEVSE and an Alfen on one breaker.

The firmware (unix port) reads P1 telegrams and commands the four emulators
(tools/sim/run.py --mixed: Trydan priority 1 and go-e priority 2 on three
phases, OpenEVSE priority 3 on phase A, Alfen over Modbus TCP priority 4 on
phase B: a three-phase box switched to one phase). Waits are for the asserted
condition with deadlines from the product's periods, as in
test_end_to_end.py (whose helpers and settings this uses).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from run import DEFAULT_HEAP, MIXED_EXTRA_HEAP_K, Simulation, wait_for as wait  # noqa: E402
from test_end_to_end import (  # noqa: E402
    BOOT_S,
    CHARGER_POLL_S,
    CHARGER_TIMEOUT_S,
    COMMAND_S,
    EV_RESPONSE_S,
    FAST_GUARD,
    HOST_SLACK_S,
    PUMP_PERIOD_S,
    SETTLE_S,
    STATUS_LINE_S,
    TELEGRAM_PERIOD_S,
    firmware_output,
    pump_until,
    status_lines,
)

HEAP = "%dK" % (int(DEFAULT_HEAP[:-1]) + MIXED_EXTRA_HEAP_K)
# min_pause longer than the shedding steps take, so each step's pause holds
# while the next is checked. (Before the guard started a paused charger
# only into room the reading shows, a charger was started again once its
# min_pause ran out, room or not, and paused at the next reading: with min
# pause 0 at every other reading. host_tests/test_guard.py
# test_a_paused_charger_is_started_only_into_room_the_reading_shows.)
MIN_PAUSE_S = 20
MIXED_GUARD = dict(FAST_GUARD, min_pause_s=MIN_PAUSE_S)


def trydan_a(box):
    return 0 if box.setting("Paused") else box.setting("Intensity")


def goe_a(box):
    if box.goe_setting("frc") == 1:
        return 0
    tcl = box.goe_setting("tcl")
    return box.goe_setting("amp") if tcl is None else min(tcl, box.goe_setting("amp"))


def evse_a(box):
    return 0 if box.evse_state() == 254 else box.pilot_a()


def alfen_a(box):
    applied = box.applied_a()
    return 0 if applied < 6 else applied


def offered(sim):
    """What each box offers now (A, 0 = paused): Trydan, go-e, OpenEVSE, Alfen."""
    trydan, goe, evse, alfen = sim.boxes
    return trydan_a(trydan), goe_a(goe), evse_a(evse), alfen_a(alfen)


def shown(sim, *amps):
    """The last status line shows these offers (whole A) with no ramp or failsafe pending."""
    lines = status_lines(sim)
    if not lines:
        return False
    parts = lines[-1].split(" | ")[1:5]
    for part, want in zip(parts, amps):
        fields = part.split()
        if float(fields[-3]) != want or fields[-1] in ("ramp", "failsafe", "unavailable"):
            return False
    return True


def start():
    sim = Simulation(heap=HEAP, car_delay_s=0.2, run_name="e2e-mixed", guard=MIXED_GUARD, mixed=True)
    sim.site.set_house((2.0, 2.0, 2.0))
    return sim


def settle(sim, amps, timeout_s=SETTLE_S):
    return pump_until(sim, lambda: offered(sim) == amps and shown(sim, *amps), timeout_s)


def test_the_guard_sheds_one_charger_at_a_time_across_brands():
    sim = start()
    try:
        assert wait(lambda: status_lines(sim), BOOT_S), firmware_output(sim)
        # 24 A per phase less 2 A of house: the three minimums (18 A on phase
        # A) fit, the rest goes to the Trydan (priority 1). The first polls of
        # the three boxes may meet in the shared body buffer: one poll period more.
        assert settle(sim, (10, 6, 6, 6), SETTLE_S + CHARGER_POLL_S), (offered(sim), firmware_output(sim))
        steps = (
            # house load -> what fits: the lowest priority goes first, whatever the brand and the interface.
            # (The guard pauses the lowest-priority running charger while the minimums do not fit on
            # some phase, whether or not it is on that phase: so the load goes first on B, the Alfen's.)
            ((2.0, 8.0, 2.0), (10, 6, 6, 0)),  # 16 A left on B: the Alfen (Modbus TCP) gets 0 A
            ((8.0, 8.0, 2.0), (10, 6, 0, 0)),  # 16 A left on A too: the OpenEVSE is paused (its claim: disabled)
            ((14.0, 14.0, 2.0), (10, 0, 0, 0)),  # 10 A left: the go-e too (frc=1)
            ((20.0, 20.0, 2.0), (0, 0, 0, 0)),  # 4 A left: the Trydan too (Paused=1)
        )
        for house, want in steps:
            sim.site.set_house(house)
            assert settle(sim, want), (house, offered(sim), firmware_output(sim))
            # One at a time: the next charger keeps charging while the car
            # that was cut follows (ev_response and a few readings more).
            assert not pump_until(sim, lambda: offered(sim) != want, EV_RESPONSE_S + 2 * PUMP_PERIOD_S), (
                house, offered(sim), firmware_output(sim))
        # The load goes: all three come back once min_pause has passed.
        sim.site.set_house((2.0, 2.0, 2.0))
        assert settle(sim, (10, 6, 6, 6), MIN_PAUSE_S + 3 * SETTLE_S), (offered(sim), firmware_output(sim))
        goe, evse, alfen = sim.boxes[1:]
        assert goe.flash_writes == 0  # never the go-e's flash-written current
        assert [record.key for record in goe.writes()] and all(r.key in ("tcl", "frc") for r in goe.writes())
        assert evse.claim_of(17223)["max_current"] == 6
        # The Alfen: ChargeGuard switched it to one phase (1215) and renews its max current.
        assert alfen.charge_phases() == 1 and alfen.max_current() == 6.0 and alfen.remaining_s() > 30
    finally:
        sim.stop()


def test_a_hung_and_a_garbage_box_leave_the_others_guarded():
    sim = start()
    trydan, goe, evse, alfen = sim.boxes
    try:
        assert wait(lambda: status_lines(sim), BOOT_S), firmware_output(sim)
        assert settle(sim, (10, 6, 6, 6), SETTLE_S + CHARGER_POLL_S), (offered(sim), firmware_output(sim))
        goe.set_mode("hang")  # accepts connections, never answers
        evse.set_mode("garbage")  # answers nonsense, refuses nothing by HTTP
        assert pump_until(sim, goe.hung_requests, CHARGER_POLL_S + HOST_SLACK_S), firmware_output(sim)
        hung_ns = goe.hung_requests()[0]
        # Phase B: 24 - 9 = 15 A for the Trydan, the go-e, which keeps its
        # last offer (6 A) while it does not answer, and the Alfen, whose
        # minimum no longer fits (lowest priority: 0 A): the Trydan goes to 9 A.
        sim.site.set_house((2.0, 9.0, 2.0))
        written_ns = sim.send_telegram()

        def cut():
            return [w for w in trydan.writes() if w.t_ns >= written_ns and w.ok and w.key == "Intensity"]

        assert wait(cut, TELEGRAM_PERIOD_S), firmware_output(sim)
        assert int(cut()[0].value) == 9
        assert cut()[0].t_ns < hung_ns + CHARGER_TIMEOUT_S * 1e9  # while the go-e request still hung
        # The hung and the garbage box show as unavailable; the status lines keep coming.
        seen = len(sim.lines)

        def reported():
            lines = status_lines(sim, seen)
            if len(lines) < 2:
                return False
            parts = lines[-1].split(" | ")
            return parts[2].startswith("go-e") and parts[2].endswith("unavailable") and parts[3].endswith("unavailable")

        assert pump_until(sim, reported, CHARGER_TIMEOUT_S + CHARGER_POLL_S + 2 * STATUS_LINE_S + HOST_SLACK_S), (
            firmware_output(sim))
        # A refusing box (the go-e stops listening) changes nothing for the others.
        goe.stop()
        sim.site.set_house((2.0, 11.0, 2.0))
        written_ns = sim.send_telegram()
        assert wait(lambda: [w for w in cut() if int(w.value) == 7], TELEGRAM_PERIOD_S + COMMAND_S), firmware_output(sim)
        # The OpenEVSE answers again: commanded as before (its offer may be
        # higher now: the refusing go-e's room is on phases B and C only).
        evse.set_mode("normal")

        def evse_back():
            lines = status_lines(sim)
            if not lines:
                return False
            part = lines[-1].split(" | ")[3]
            return part.startswith("OpenEVSE") and not part.endswith("unavailable") and evse_a(evse) == float(part.split()[1])

        assert pump_until(sim, evse_back, CHARGER_POLL_S + COMMAND_S + STATUS_LINE_S + HOST_SLACK_S), firmware_output(sim)
        assert sim.firmware.alive()
    finally:
        sim.stop()
