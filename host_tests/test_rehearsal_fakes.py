"""The rehearsal's fake network module against platform/esp32.py and net/wifi.py, in one process.

The fakes (tools/rehearsal/) are MicroPython modules: they run inside the
firmware on the unix port, so these checks run there only. They pin the
documented behaviour the rehearsal relies on, and that the platform's words
follow from it.
"""

import sys

import support

FAKES = support._dirname(support.HERE) + "/tools/rehearsal"
PASSWORD = "correct-horse-9"


def _fakes(radio):
    if not support.IS_MICROPYTHON:
        support.skip("the rehearsal fakes are MicroPython modules (time.ticks_ms, the unix port's termios)")
    if FAKES not in sys.path:
        sys.path.append(FAKES)
    for name in ("fake_control", "fake_network", "fake_machine"):
        sys.modules.pop(name, None)
    import fake_control
    import fake_network

    values = {"ap": True, "ssid": "home", "password": PASSWORD, "assoc_ms": 0, "dhcp_ms": 0}
    values.update(radio)
    fake_control._state["values"] = values
    fake_control._state["read_ms"] = 0
    fake_control.note = lambda text: None
    return fake_control, fake_network


def test_wrong_password_keeps_the_driver_connecting_unless_its_reconnects_are_limited():
    # network_wlan.c: status() is STAT_CONNECTING while a connect is requested
    # and attempts are left; `reconnects` defaults to unlimited.
    control, network = _fakes({"password": "other"})
    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    sta.connect("home", PASSWORD)
    for _ in range(5):
        assert sta.status() == network.STAT_CONNECTING and not sta.isconnected()
    sta.disconnect()
    sta.config(reconnects=0)
    sta.connect("home", PASSWORD)
    assert sta.status() == network.STAT_WRONG_PASSWORD
    assert sta.config("reconnects") == 0


def test_fake_radio_through_the_esp32_platform_and_the_link():
    control, network = _fakes({"ap": False})
    sys.modules["network"] = network
    import fake_machine

    sys.modules["machine"] = fake_machine
    _forget_esp32()
    try:
        from chargeguard.net import wifi
        from chargeguard.platform import esp32

        platform = esp32.Platform({})
        lines = []
        link = wifi.WifiLink(platform, "home", PASSWORD, "cg", None, lines.append)
        link.start(0)
        # No access point: the driver scans, then reports it (the fake's scan takes 1.5 s).
        network._NO_AP_SCAN_MS = 0
        link.step(10)
        assert "access point not found" in lines[-1], lines
        control._state["values"]["ap"] = True
        now = 10 + wifi.RETRY_FIRST_MS
        for _ in range(4):  # an attempt, association, DHCP: a few looks of the link task
            link.step(now)
            now += wifi.POLL_MS
        assert link.is_up(), lines
        assert lines[-1] == "wifi: connected to 'home', ip 192.168.1.77, rssi -58 dBm, reconnects 0"
        assert network.hostname() == "cg"
        # The access point goes: a beacon timeout, seen as a drop.
        control._state["values"]["ap"] = False
        link.step(2000)
        assert link.state == "waiting" and link.drops == 1
        for line in lines:
            assert PASSWORD not in line
    finally:
        for name in ("network", "machine"):
            sys.modules.pop(name, None)
        _forget_esp32()


def _forget_esp32():
    # A fresh import binds this test's fakes (another test may have imported
    # esp32.py with its own; the package keeps the submodule as an attribute).
    import chargeguard.platform as package

    sys.modules.pop("chargeguard.platform.esp32", None)
    if "esp32" in package.__dict__:
        delattr(package, "esp32")
