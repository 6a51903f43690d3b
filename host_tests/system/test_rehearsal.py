"""Device rehearsal scenarios: the real firmware booted through platform/esp32.py on the unix port.

Fakes of the documented machine/network API stand in for the chip
(tools/rehearsal/); the P1 telegrams come through the fake UART and the
wallbox is the Trydan emulator over real sockets. Every wait has a deadline
from the product rules:
- a join takes at most JOIN_TIMEOUT_S (net/wifi.py JOIN_TIMEOUT_MS);
- the next attempt follows within the backoff in force (1, 2, 4, ... s);
- the link task looks every 250 ms; the console line comes with it;
- a fed watchdog never resets; an unfed one resets within its timeout
  (app.WATCHDOG_TIMEOUT_MS), counted from the last feed (every 500 ms).
Boot itself (the unix port loading .mpy files) gets BOOT_S.
"""

import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "rehearsal"))

from rehearsal import PASSWORD, WDT_RESET, Rehearsal  # noqa: E402

BOOT_S = 30.0  # as test_end_to_end.BOOT_S: the same boot on the same port, on a busy 2-core CI machine
JOIN_TIMEOUT_S = 20.0
POLL_S = 0.25
# Scheduling slack for a loaded 2-core CI machine (the firmware, the
# emulators and this test share it): added to the task periods above.
SLACK_S = 2.0
# A line's stamp is when this process read it: one read late on a loaded host
# brings two lines' stamps closer than the firmware printed them (a lower
# bound on a gap takes this off; an early bite or a join that did not wait is
# seconds off, not this).
READ_LAG_S = 1.0
CHARGER_POLL_S = 5.0  # app.CHARGER_POLL_MS: a box is asked again this often
# guard.ev_response_s (default): after a start the guard raises again once the
# box shows the car took it or the reading is this far past it (core/guard.py).
EV_RESPONSE_S = 5.0
WATCHDOG_TIMEOUT_S = 10.0
SUPERVISOR_FEED_S = 0.5  # app: the supervisor feeds every CONTROL_TICK_MS // 2
CONNECTED = "wifi: connected to 'home', ip 192.168.1.77, rssi -58 dBm"


@pytest.fixture
def rehearse(request):
    made = []

    def start(**kwargs):
        rehearsal = Rehearsal(run_name="rehearsal-" + request.node.name[5:40], **kwargs)
        made.append(rehearsal)
        return rehearsal

    yield start
    for rehearsal in made:
        rehearsal.stop()
        for line in rehearsal.output():
            assert PASSWORD not in line, line  # the Wi-Fi password is never printed


def wait(condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def assert_offers_16_a(r, joined):
    """The box, polled once joined, is started at 6 A and raised to its 16 A; the next poll shows the car took it.

    The raise comes once the grid reading is EV_RESPONSE_S past the start; until
    the box's next poll (CHARGER_POLL_S) shows the car at 16 A, the guard counts
    the car at what the box last measured, so the line may say "breaker" for
    those seconds: "ok" is waited for from the raise, not from the join.
    """
    raised = r.wait_line("A | Trydan  16.0 A", CHARGER_POLL_S + EV_RESPONSE_S + SLACK_S, joined)
    assert raised, r.tail()
    assert r.wait_line("A | Trydan  16.0 A ok", CHARGER_POLL_S + SLACK_S, raised), r.tail()


def test_boot_joins_the_wifi_and_guards_the_wallbox(rehearse):
    r = rehearse()
    booted = r.wait_line("ChargeGuard running", BOOT_S)
    assert booted, r.tail()
    assert r.wait_line("boot: power-on", 0.0), r.tail()
    assert r.wait_line("FAKE-UART: UART(2) 115200 baud 8N1 invert=4", 0.0), r.tail()  # inverted RX, board pins
    assert r.wait_line("FAKE-WDT: started, timeout 10000 ms", BOOT_S), r.tail()
    assert r.wait_line("FAKE-NET: hostname cg-rehearsal", BOOT_S), r.tail()
    joined = r.wait_line(CONNECTED + ", reconnects 0", JOIN_TIMEOUT_S)
    assert joined, r.tail()
    # Readings through the fake UART, the box polled over real sockets: the
    # guard offers the car its 16 A (2 A of house load under a 24 A limit).
    assert_offers_16_a(r, joined)
    assert r.trydan.requests["read"] > 0


def test_a_uart_that_does_not_invert_reads_no_telegram(rehearse):
    # The fake UART follows the P1 line's levels: without invert=UART.INV_RX
    # nothing frames, so the guard holds the charger on failsafe.
    r = rehearse(meter={"invert": False})
    assert r.wait_line("FAKE-UART: UART(2) 115200 baud 8N1 invert=0", BOOT_S), r.tail()
    assert r.wait_line(CONNECTED, JOIN_TIMEOUT_S), r.tail()
    assert r.wait_line("grid  --.-  --.-  --.- A | Trydan   0.0 A failsafe", 1 + SLACK_S), r.tail()
    assert not any(line.startswith("grid ") and "--.-" not in line for line in r.output()), r.tail()


def test_wrong_password_is_said_and_retried_with_backoff_while_the_meter_is_guarded(rehearse):
    r = rehearse(radio={"password": "the-router-wants-this"})
    first = r.wait_line("could not join 'home': wrong password; next try in 1 s", BOOT_S + JOIN_TIMEOUT_S)
    assert first, r.tail()
    assert r.wait_line("wrong password; next try in 2 s", 1 + JOIN_TIMEOUT_S, first), r.tail()
    # The guard runs on the local meter: grid readings, the charger unavailable.
    assert r.wait_line("charger Trydan: no network", 0.0), r.tail()
    assert r.wait_line("A unavailable", 1 + SLACK_S), r.tail()  # the next status line (every 1 s)
    assert r.trydan.requests["read"] == 0 and r.trydan.writes() == []  # nothing left the board
    # The installer fixes the router's password: joined within the backoff in force (<= 4 s) + a join.
    r.set_radio(password=PASSWORD)
    fixed = time.monotonic()
    assert r.wait_line(CONNECTED + ", reconnects 0", 4 + JOIN_TIMEOUT_S, fixed), r.tail()


def test_access_point_absent_at_boot_then_present(rehearse):
    r = rehearse(radio={"ap": False})
    assert r.wait_line("could not join 'home': access point not found", BOOT_S + JOIN_TIMEOUT_S), r.tail()
    # The meter is read all along (house 2 A + what the car still draws).
    assert r.wait_line("grid  18.0  18.0  18.0 A | Trydan", BOOT_S), r.tail()
    r.set_radio(ap=True)
    back = time.monotonic()
    # Within the backoff reached so far (at most 4 s this early) and one join.
    joined = r.wait_line(CONNECTED, 4 + JOIN_TIMEOUT_S, back)
    assert joined, r.tail()
    assert_offers_16_a(r, joined)


def test_slow_association_is_waited_for(rehearse):
    r = rehearse(radio={"assoc_ms": 8000})
    started = r.wait_line("wifi: joining 'home'", BOOT_S)
    assert started, r.tail()
    joined = r.wait_line(CONNECTED + ", reconnects 0", JOIN_TIMEOUT_S, started)
    assert joined, r.tail()
    # It did take the association's time (a join that did not wait shows in
    # the fake's 0.2 s of DHCP), less a late read of the first line: the
    # stamps are when this process read each line (READ_LAG_S).
    assert joined - started >= 8.0 - READ_LAG_S, joined - started
    assert not any("could not join" in line for line in r.output()), r.tail()


def test_drops_and_returns_count_reconnects(rehearse):
    r = rehearse()
    assert r.wait_line(CONNECTED + ", reconnects 0", BOOT_S + JOIN_TIMEOUT_S), r.tail()
    for count in (1, 2):
        r.set_radio(ap=False)
        dropped = time.monotonic()
        # Seen at the next look of the link task (plus the fake's control refresh).
        assert r.wait_line("wifi: lost 'home': connection lost; next try in 1 s", POLL_S + SLACK_S, dropped), r.tail()
        assert r.wait_line("access point not found; next try in 2 s", 1 + JOIN_TIMEOUT_S, dropped), r.tail()
        # Offline, the wallbox is not even tried.
        reads = r.trydan.requests["read"]
        assert r.wait_line("A unavailable", 1 + SLACK_S, dropped), r.tail()
        assert r.trydan.requests["read"] == reads
        r.set_radio(ap=True)
        back = time.monotonic()
        assert r.wait_line(CONNECTED + ", reconnects %d" % count, 4 + JOIN_TIMEOUT_S, back), r.tail()
        # Back online, the wallbox is polled again within a poll period.
        reads = r.trydan.requests["read"]
        assert wait(lambda: r.trydan.requests["read"] > reads, CHARGER_POLL_S + SLACK_S), r.tail()


def test_unfed_watchdog_resets_the_device_within_its_timeout(rehearse):
    r = rehearse()
    assert r.wait_line(CONNECTED, BOOT_S + JOIN_TIMEOUT_S), r.tail()
    # A fed watchdog does not bite: the device runs on, one boot.
    assert not wait(lambda: r.resets, 3.0)
    r.freeze()  # the next driver call never returns: the loop stops
    frozen = r.wait_line("FAKE-FREEZE", 2.0)
    assert frozen, r.tail()
    bitten = r.wait_line("FAKE-WDT: not fed for", WATCHDOG_TIMEOUT_S + 2.0, frozen)
    assert bitten, r.tail()
    # The last feed was at most one supervisor period before the freeze.
    delay_s = bitten - frozen
    assert WATCHDOG_TIMEOUT_S - SUPERVISOR_FEED_S - READ_LAG_S <= delay_s <= WATCHDOG_TIMEOUT_S + SLACK_S, delay_s
    assert wait(lambda: r.resets and len(r.boots) == 2, 5.0), r.tail()
    assert r.boots[1][1] == WDT_RESET
    assert r.wait_line("boot: watchdog reset", BOOT_S, r.boots[1][0]), r.tail()  # machine.reset_cause()
    # The device boots again (the fault was that boot's) and rejoins.
    assert r.wait_line(CONNECTED + ", reconnects 0", BOOT_S + JOIN_TIMEOUT_S, r.boots[1][0]), r.tail()


# The setup access point (net/portal.py, core/apmode.py): the portal task
# looks every 100 ms; a long press is held 5 s (apmode.LONG_PRESS_MS).
PORTAL_STEP_S = 0.1
LONG_PRESS_S = 5.0
# The web interface's heap on top of the rehearsal's (tools/sim/run.py WEB_HEAP_K):
# a device out of the box serves its setup pages.
FIRST_BOOT_HEAP = "272K"


def test_out_of_the_box_the_device_opens_its_access_point_and_reads_the_meter(rehearse):
    import re

    r = rehearse(configured=False, heap=FIRST_BOOT_HEAP)
    assert r.wait_line("config: config.json is missing", BOOT_S), r.tail()
    opened = r.wait_line("portal: access point 'ChargeGuard-0001' open (no configuration yet, no password),"
                         " address 192.168.4.1", BOOT_S)
    assert opened, r.tail()
    # Through the documented WLAN(AP_IF) calls: activated, named after the MAC, open.
    assert r.wait_line("FAKE-NET: AP up", 0.0), r.tail()
    assert r.wait_line("FAKE-NET: AP config ssid ChargeGuard-0001 security open", 0.0), r.tail()
    # The DNS server binds the access point's address only (never the home
    # network): on this host there is no 192.168.4.1, and that is said.
    assert r.wait_line("portal: DNS server cannot listen on 192.168.4.1:53", SLACK_S, opened), r.tail()
    # The guard keeps reading the meter through the fake UART all along.
    shown = re.compile(r"grid +\d+\.\d +\d+\.\d +\d+\.\d A")
    deadline = time.monotonic() + 2 + SLACK_S
    while time.monotonic() < deadline and not any(shown.search(line) for line in r.output(opened)):
        time.sleep(0.05)
    assert any(shown.search(line) for line in r.output(opened)), r.tail()
    assert not any("portal: access point closed" in line for line in r.output()), r.tail()


def test_a_long_press_of_the_boot_button_opens_the_access_point(rehearse):
    r = rehearse()
    joined = r.wait_line(CONNECTED, BOOT_S + JOIN_TIMEOUT_S)
    assert joined, r.tail()
    # A short press (2 s) does nothing.
    r.set_radio(pin0=0)
    pressed = time.monotonic()
    time.sleep(2.0)
    r.set_radio(pin0=1)
    time.sleep(1.0)  # the control file is read every 100 ms, the pin every 100 ms
    assert not any("portal:" in line for line in r.output(pressed)), r.tail()
    # Held: open after LONG_PRESS_S (plus the control file's and the portal's periods).
    r.set_radio(pin0=0)
    held = time.monotonic()
    opened = r.wait_line("portal: access point 'ChargeGuard-0001' open (button held", LONG_PRESS_S + SLACK_S, held)
    assert opened, r.tail()
    assert opened - held >= LONG_PRESS_S - PORTAL_STEP_S
    r.set_radio(pin0=1)
    # The station stays joined and the wallbox guarded meanwhile.
    assert not any("wifi: lost" in line for line in r.output(held)), r.tail()
    assert r.wait_line("A | Trydan", 1 + SLACK_S, opened), r.tail()


# The maintenance boot tools/deploy.py asks for (firmware/preboot.py): the
# one-shot flag, no guard, the watchdog armed for MAINTENANCE_MS instead.
MAINTENANCE_MS = 900000


def test_a_maintenance_boot_leaves_the_guard_off_once_with_the_long_watchdog(rehearse):
    r = rehearse(maintenance=True)
    at_repl = r.wait_line("REHEARSAL: main.py returned, at the REPL", BOOT_S)
    assert at_repl, r.tail()
    first = r.output()
    assert "REHEARSAL: main.py returned, at the REPL; guard loaded: False" in first, r.tail()
    assert any("MAINTENANCE BOOT: NOT GUARDING" in line for line in first), r.tail()
    assert "FAKE-WDT: started, timeout %d ms" % MAINTENANCE_MS in first, r.tail()
    # Nothing of the guard ran in that boot (main.py returned: nothing else can start it).
    assert not any("ChargeGuard running" in line or line.startswith("grid ") for line in first), r.tail()
    assert not any("timeout 10000 ms" in line for line in first), r.tail()
    assert not os.path.exists(r.maintenance_flag())  # one-shot: removed at once
    assert r.trydan.writes() == []
    # deploy's final reset: the next boot guards, with the guard's own watchdog.
    r.reset()
    assert wait(lambda: len(r.boots) == 2, 5.0), r.tail()
    second = r.boots[1][0]
    assert r.wait_line("ChargeGuard running", BOOT_S, second), r.tail()
    assert r.wait_line("FAKE-WDT: started, timeout 10000 ms", BOOT_S, second), r.tail()
    assert not r.wait_line("MAINTENANCE BOOT", 0.0, second), r.tail()
