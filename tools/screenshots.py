"""Screenshots of the web pages at phone size (390 x 844), for docs/screenshots/: run `make screenshots`.

    python tools/screenshots.py [--out docs/screenshots]

Runs the built firmware on the unix port against the simulator's site (a
Shelly Pro 3EM emulator and a V2C Trydan emulator, tools/sim/) and drives
Debian's Chromium through playwright, as the browser tests do:

    status.png        the live status page, the car charging
    settings.png      the settings page after logging in
    setup-wifi.png    the setup wizard's first step after a scan (first boot:
                      no admin password yet)
    setup-meter.png   its meter step with the live reading per phase

Needs `make build` first and /usr/bin/chromium.
"""

import argparse
import json
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "sim"))

from ports import free_port  # noqa: E402
from run import DEFAULT_HEAP, SIM_ADMIN_PASSWORD, WEB_HEAP_K, Firmware, Simulation, wait_for  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 390, "height": 844}
# The wizard's checks load a driver and the validator beside the web
# interface: the heap of host_tests/system/test_wizard_system.py.
HEAP = "%dK" % (int(DEFAULT_HEAP[:-1]) + WEB_HEAP_K + 64)
NETWORKS = [["home", "home-wifi-pass", -52], ["neighbour", "their-password", -81], ["garage-ap", "", -67]]
FIRST_BOOT = {"version": 1, "web": {"enabled": True}}
WAIT_MS = 20000


def web_up(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def pump(sim, stop):
    while not stop.is_set():
        sim.send_telegram()
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "screenshots"))
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit("screenshots: %s is missing (Debian's chromium package)" % CHROMIUM)
    from playwright.sync_api import sync_playwright

    os.makedirs(args.out, exist_ok=True)
    os.environ["CHARGEGUARD_WIFI_NETWORKS"] = json.dumps(NETWORKS)
    run_name = "screenshots"
    sim = Simulation(heap=HEAP, car_delay_s=0.2, run_name=run_name, meter="shelly_em", web_port=free_port(),
                     guard={"ramp_step_a": 16, "ramp_interval_s": 1, "min_pause_s": 0})
    sim.site.set_house((6.5, 3.0, 1.5))
    stop = threading.Event()
    thread = threading.Thread(target=pump, args=(sim, stop), daemon=True)
    thread.start()
    base = "http://127.0.0.1:%d" % sim.web_port
    try:
        if not wait_for(lambda: web_up(sim.web_port), 30):
            sys.exit("screenshots: the firmware's web interface did not come up:\n" + "\n".join(sim.lines[-20:]))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(base + "/")
                page.wait_for_function("document.querySelector(\"[data-charger='0'] .offered\") !== null"
                                       " && document.querySelector(\"[data-charger='0'] .offered\").textContent"
                                       ".indexOf('Offered 16.0 A · measured 16.0 A') === 0", timeout=WAIT_MS)
                page.screenshot(path=os.path.join(args.out, "status.png"))
                page.goto(base + "/settings")
                page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
                page.fill("#lpw", SIM_ADMIN_PASSWORD)
                page.click("#loginbtn")
                page.wait_for_selector("#f-site\\.breaker_a", timeout=WAIT_MS)
                page.screenshot(path=os.path.join(args.out, "settings.png"))
                # First boot: web on, nothing else.
                sim.firmware.stop()
                storage = os.path.join(ROOT, "build", run_name, "storage")
                for name in ("config.json", "config.bak", "overrides.json"):
                    if os.path.exists(os.path.join(storage, name)):
                        os.remove(os.path.join(storage, name))
                with open(os.path.join(storage, "config.json"), "w") as handle:
                    json.dump(FIRST_BOOT, handle)
                sim.lines = []
                sim.firmware = Firmware(os.path.join(ROOT, "build", run_name, "root"), storage, sim.p1.device, HEAP,
                                        sim.lines.append, web_port=sim.web_port)
                if not wait_for(lambda: web_up(sim.web_port), 30):
                    sys.exit("screenshots: the first-boot firmware did not come up:\n" + "\n".join(sim.lines[-20:]))
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(base + "/setup")
                page.wait_for_selector("[data-step=wifi]:not([hidden])", timeout=WAIT_MS)
                page.click("#scan")
                page.wait_for_selector("#nets .net", timeout=WAIT_MS)
                page.click("#nets .net >> nth=0")
                page.fill("#f-wifi\\.password", "home-wifi-pass")
                page.click("#join")
                page.wait_for_function("document.getElementById('joinmsg').textContent.indexOf('joined') === 0",
                                       timeout=WAIT_MS)
                page.screenshot(path=os.path.join(args.out, "setup-wifi.png"))
                page.click("#next")
                page.select_option("#f-meter\\.type", "http")
                page.select_option("#f-meter\\.model", "shelly_em")
                page.fill("#f-meter\\.host", "127.0.0.1")
                page.fill("#f-meter\\.port", str(sim.http.port))
                page.click("#readmeter")
                try:
                    page.wait_for_selector("#reading [data-phase='2']", timeout=WAIT_MS)
                except Exception:
                    sys.exit("screenshots: no meter reading: %r\n%s" % (page.inner_text("[data-step=meter]"), "\n".join(sim.lines[-20:])))
                page.evaluate("document.getElementById('readmeter').scrollIntoView({block: 'center'})")
                page.screenshot(path=os.path.join(args.out, "setup-meter.png"))
            finally:
                browser.close()
    finally:
        stop.set()
        thread.join(timeout=2)
        sim.stop()
    for name in ("status.png", "settings.png", "setup-wifi.png", "setup-meter.png"):
        print("screenshots: wrote %s" % os.path.relpath(os.path.join(args.out, name), ROOT))


if __name__ == "__main__":
    main()
