"""core/apmode.py: when the setup access point opens and closes (both runtimes; time passed in)."""

from chargeguard.core import apmode
from chargeguard.core.apmode import BUTTON_IDLE_MS, CLOSED, LONG_PRESS_MS, NOTHING, OPEN, OPENED, WIFI_LOST_MS, ApMode
from chargeguard.core.ticks import TICKS_PERIOD, ticks_add

STEP = 100  # net/portal.STEP_MS: the portal looks this often


def run(mode, start, until, station_up=False, pressed=False):
    """Step every STEP ms from start up to `until` (exclusive); the changes [(ms, change)]."""
    changes = []
    now = start
    while now < until:
        change = mode.step(now, station_up, pressed)
        if change != NOTHING:
            changes.append((now, change))
        now += STEP
    return changes


def test_first_boot_opens_at_once_and_a_joining_station_does_not_close_it():
    mode = ApMode(True, False, 0)
    assert mode.step(0, False, False) == OPENED
    assert mode.state == OPEN and mode.reason == "setup"
    # The wizard tests the home network's credentials: the station joins,
    # the portal stays, and it stays for as long as setup takes.
    assert run(mode, STEP, 3 * BUTTON_IDLE_MS, station_up=True) == []
    assert mode.state == OPEN
    mode.finish()
    assert mode.step(3 * BUTTON_IDLE_MS, True, False) == CLOSED
    assert mode.state == CLOSED and mode.reason is None
    assert run(mode, 3 * BUTTON_IDLE_MS + STEP, 3 * BUTTON_IDLE_MS + WIFI_LOST_MS + STEP, station_up=True) == []


def test_a_configured_device_with_its_network_never_opens_by_itself():
    mode = ApMode(False, True, 0)
    assert run(mode, 0, 2 * WIFI_LOST_MS, station_up=True) == []
    assert mode.state == CLOSED


def test_a_long_press_opens_a_short_one_does_not():
    mode = ApMode(False, True, 0)
    # Held just under the long press: nothing; released; held again from scratch.
    assert run(mode, 0, LONG_PRESS_MS, station_up=True, pressed=True) == []
    assert mode.step(LONG_PRESS_MS, True, False) == NOTHING
    assert run(mode, LONG_PRESS_MS + STEP, 2 * LONG_PRESS_MS, station_up=True, pressed=True) == []
    # A bounce (one released look) restarts the count.
    assert mode.step(2 * LONG_PRESS_MS, True, False) == NOTHING
    start = 2 * LONG_PRESS_MS + STEP
    changes = run(mode, start, start + LONG_PRESS_MS + STEP, station_up=True, pressed=True)
    assert changes == [(start + LONG_PRESS_MS, OPENED)]
    assert mode.reason == "button"
    # Held on: it does not open twice or close.
    assert run(mode, start + LONG_PRESS_MS + STEP, start + 3 * LONG_PRESS_MS, station_up=True, pressed=True) == []


def test_a_button_opening_stays_while_used_and_closes_when_idle():
    mode = ApMode(False, True, 0)
    opened = run(mode, 0, LONG_PRESS_MS + STEP, station_up=True, pressed=True)[0][0]
    # The station is up all along: a button opening is not closed by it.
    now = opened + STEP
    for _ in range(3):
        assert run(mode, now, now + BUTTON_IDLE_MS - STEP, station_up=True) == []
        now += BUTTON_IDLE_MS - STEP
        mode.seen(now)  # a phone asked for a page
    idle_from = now
    changes = run(mode, now, now + BUTTON_IDLE_MS + STEP, station_up=True)
    assert changes == [(idle_from + BUTTON_IDLE_MS, CLOSED)]


def test_finish_closes_a_button_opening():
    mode = ApMode(False, True, 0)
    run(mode, 0, LONG_PRESS_MS + STEP, station_up=True, pressed=True)
    assert mode.state == OPEN
    mode.finish()
    assert mode.step(LONG_PRESS_MS + STEP, True, False) == CLOSED


def test_a_long_wifi_loss_opens_and_the_return_closes():
    mode = ApMode(False, True, 0)
    assert run(mode, 0, 60000, station_up=True) == []
    lost = 60000
    changes = run(mode, lost, lost + WIFI_LOST_MS + STEP)
    # Counted from the last moment the station was up (the step before `lost`).
    assert changes == [(lost - STEP + WIFI_LOST_MS, OPENED)]
    assert mode.reason == "wifi_lost"
    assert run(mode, lost + WIFI_LOST_MS + STEP, lost + 3 * WIFI_LOST_MS) == []  # stays while lost
    back = lost + 3 * WIFI_LOST_MS
    assert mode.step(back, True, False) == CLOSED
    # Lost again: a full WIFI_LOST_MS before it opens again.
    changes = run(mode, back + STEP, back + 2 * WIFI_LOST_MS)
    assert changes == [(back + WIFI_LOST_MS, OPENED)]


def test_a_short_outage_does_not_open():
    mode = ApMode(False, True, 0)
    now = 0
    for _ in range(5):
        assert run(mode, now, now + WIFI_LOST_MS - 10 * STEP) == []  # a router restarting
        now += WIFI_LOST_MS - 10 * STEP
        assert mode.step(now, True, False) == NOTHING
        now += STEP
    assert mode.state == CLOSED


def test_without_a_configured_network_a_loss_never_opens():
    mode = ApMode(False, False, 0)
    assert run(mode, 0, 2 * WIFI_LOST_MS) == []


def test_pressed_again_while_open_for_the_lost_wifi_it_becomes_a_button_opening():
    mode = ApMode(False, True, 0)
    run(mode, 0, WIFI_LOST_MS + STEP)
    assert mode.state == OPEN and mode.reason == "wifi_lost"
    now = WIFI_LOST_MS + STEP
    run(mode, now, now + LONG_PRESS_MS + STEP, pressed=True)
    assert mode.reason == "button"
    # The network returns: a button opening stays (the owner asked for it).
    assert mode.step(now + LONG_PRESS_MS + 2 * STEP, True, False) == NOTHING
    assert mode.state == OPEN


def test_times_across_the_tick_wrap():
    start = ticks_add(0, TICKS_PERIOD - 2000)
    mode = ApMode(False, True, start)
    opened = None
    now = start
    for _ in range((WIFI_LOST_MS + 1000) // STEP):
        if mode.step(now, False, False) == OPENED:
            opened = now
        now = ticks_add(now, STEP)
    assert opened == ticks_add(start, WIFI_LOST_MS)


def test_the_constants_keep_their_reasons():
    # The long press is the 5 s owners know; the loss outlasts a router's restart by far.
    assert apmode.LONG_PRESS_MS == 5000
    assert apmode.WIFI_LOST_MS >= 5 * 60000
    assert apmode.BUTTON_IDLE_MS >= 10 * 60000
