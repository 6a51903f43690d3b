"""Device rehearsal: the real firmware boots through platform/esp32.py on the MicroPython unix port.

    python tools/rehearsal/rehearsal.py [--seconds 60] [--wrong-password] [--no-ap]

What runs:
- the firmware from build/device (boot.py, main.py, the .mpy package) with
  boards/esp32_devkit.json as board.json and a config in data/config.json,
  started by rehearsal_boot.py, which stands in only for the chip: fake
  `machine` and `network` modules (fake_machine.py, fake_network.py, written
  from the MicroPython documentation) and the platform choice;
- the P1 meter: DSMR telegrams (tools/sim/p1_emulator.py) written into a pty
  that the fake machine.UART reads (only with invert=UART.INV_RX, as a bare
  P1 port needs);
- a V2C Trydan emulator on 127.0.0.1, reached over real sockets;
- the radio: a JSON control file the fake network module reads (is the
  access point there, its SSID and password, association and DHCP times);
- a supervisor that boots the device again after a reset (machine.reset()
  or the fake watchdog), with machine.reset_cause() telling why.

The command line plays a short script (boot, join, a drop of the access
point and its return) and prints the device's console; the scenarios of
host_tests/system/test_rehearsal.py use the Rehearsal class.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from p1_emulator import PtyP1Port, build_telegram  # noqa: E402
from ports import free_port  # noqa: E402
from run import micropython_binary, sim_config  # noqa: E402
from trydan_emulator import TrydanEmulator  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools"))
from build import mpy_cross_binary  # noqa: E402

SSID = "home"
PASSWORD = "correct-horse-9"
# What the radio is like unless a scenario says otherwise.
RADIO_DEFAULTS = {
    "ap": True,  # the access point answers
    "ssid": SSID,
    "password": PASSWORD,
    "assoc_ms": 300,  # association time
    "dhcp_ms": 200,  # DHCP lease time
    "rssi": -58,
    "ip": "192.168.1.77",
    "gateway": "192.168.1.1",
    "dns": "192.168.1.1",
    "freeze": 0,  # the boot (1, 2, ...) in which a driver call hangs: the watchdog scenario
}
WDT_RESET = 3  # machine.WDT_RESET (esp32 port)
HARD_RESET = 2
NOMINAL_MV = 230000


def rehearsal_config(trydan_port, wifi=None, meter=None):
    """The sim's configuration plus a Wi-Fi section (no NTP: the rehearsal has no internet); `meter` overrides."""
    doc = sim_config([trydan_port], {"meter_timeout_s": 3, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1})
    doc["wifi"] = {"ssid": SSID, "password": PASSWORD, "hostname": "cg-rehearsal", "ntp_server": ""}
    doc["wifi"].update(wifi or {})
    doc["meter"].update(meter or {})
    return doc


class Rehearsal:
    """One rehearsed device, its meter, its wallbox and its radio."""

    def __init__(self, wifi=None, radio=None, run_name="rehearsal", heap=None, meter=None, configured=True,
                 maintenance=False):
        self.trydan = TrydanEmulator(port=0, response_delay_s=0.2, intensity=16).start()
        self.trydan.plug(car_max_ma=32000, car_phases=3)
        self.p1 = PtyP1Port()
        self.run_dir = os.path.join(ROOT, "build", run_name)
        self.root = os.path.join(self.run_dir, "root")
        self.control = os.path.join(self.run_dir, "radio.json")
        device = os.path.join(ROOT, "build", "device")
        if not os.path.exists(os.path.join(device, "main.py")):
            sys.exit("rehearsal: build/device is missing; run `make build` first")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.copytree(device, self.root)
        shutil.copy(os.path.join(ROOT, "boards", "esp32_devkit.json"), os.path.join(self.root, "board.json"))
        shutil.copy(os.path.join(HERE, "rehearsal_boot.py"), os.path.join(self.root, "rehearsal_boot.py"))
        os.makedirs(os.path.join(self.root, "data"))
        # The fakes as .mpy (compiled from source on the port they would take
        # ~15 KB of the device's heap), outside the device's filesystem.
        self.fakes = os.path.join(self.run_dir, "fakes")
        os.makedirs(self.fakes)
        compiler = mpy_cross_binary()
        for name in ("fake_control", "fake_machine", "fake_network"):
            subprocess.run(
                [compiler, "-o", os.path.join(self.fakes, name + ".mpy"), os.path.join(HERE, name + ".py")], check=True
            )
        if configured:
            # configured=False: a device out of the box, no config.json at all.
            with open(os.path.join(self.root, "data", "config.json"), "w") as handle:
                json.dump(rehearsal_config(self.trydan.port, wifi, meter), handle, indent=1)
        if maintenance:
            # What tools/deploy.py leaves before its hard reset: the first boot is a maintenance boot (preboot.py).
            with open(self.maintenance_flag(), "w") as handle:
                handle.write("deploy\n")
        # The web interface, where a boot serves it, on loopback (rehearsal_boot.py).
        self.web_port = free_port()
        self.radio = dict(RADIO_DEFAULTS)
        self.set_radio(**(radio or {}))
        # 160K on this 64-bit port is about 115 KB on the ESP32 (0.72x): a
        # plain ESP32's heap. The rehearsal checks behaviour, not budgets
        # (those are test_heap_budget.py's, on the 32-bit port).
        self.heap = heap or os.environ.get("REHEARSAL_HEAP", "160K")
        self.lines = []  # (monotonic s, text) of everything the device printed
        self.boots = []  # (monotonic s, reset cause given to that boot)
        self.resets = []  # (monotonic s, exit status)
        self.house_a = (2.0, 2.0, 2.0)
        self._lock = threading.Lock()
        self._stopping = False
        self.process = None
        self._boot(1)  # PWRON_RESET
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()
        self._meter = threading.Thread(target=self._send_telegrams, daemon=True)
        self._meter.start()

    # -- the radio ------------------------------------------------------------

    def set_radio(self, **changes):
        """Change the radio (keys of RADIO_DEFAULTS); written atomically for the fake network module."""
        self.radio.update(changes)
        temp = self.control + ".tmp"
        with open(temp, "w") as handle:
            json.dump(self.radio, handle)
        os.replace(temp, self.control)

    def maintenance_flag(self):
        """The path of the device's maintenance flag (preboot.FLAG, in the filesystem's root)."""
        return os.path.join(self.root, "maintenance")

    def reset(self):
        """A hard reset from outside (deploy's `mpremote reset`): this boot ends, the supervisor boots the next."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()

    def freeze(self):
        """Make the running boot's next driver call hang (the event loop stops; only the watchdog ends it)."""
        self.set_radio(freeze=len(self.boots))

    # -- the device -------------------------------------------------------------

    def _boot(self, cause):
        env = dict(os.environ)
        env.update(
            {
                "REHEARSAL_FAKES": self.fakes,
                "REHEARSAL_P1": self.p1.device,
                "REHEARSAL_CONTROL": self.control,
                "REHEARSAL_RESET_CAUSE": str(cause),
                "REHEARSAL_BOOT": str(len(self.boots) + 1),
                "REHEARSAL_WEB_PORT": str(self.web_port),
            }
        )
        command = [micropython_binary(), "-X", "heapsize=" + self.heap, "rehearsal_boot.py"]
        self.process = subprocess.Popen(
            command,
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=os.setpgrp,  # not a session leader: the pty never becomes its terminal
        )
        self.boots.append((time.monotonic(), cause))
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()

    def _pump(self, process):
        for raw in process.stdout:
            with self._lock:
                self.lines.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))

    def _supervise(self):
        # The chip boots again after every reset; the fake WDT kills the
        # process (SIGKILL), machine.reset() exits with status 3.
        while not self._stopping:
            process = self.process
            code = process.wait()
            if self._stopping:
                return
            self.resets.append((time.monotonic(), code))
            self._boot(WDT_RESET if code == -9 else HARD_RESET)

    def _send_telegrams(self):
        while not self._stopping:
            amps = self.house_a
            current = [int(a * 1000) + self.trydan.drawn_current_ma()[index] for index, a in enumerate(amps)]
            telegram = build_telegram(
                power_w=[c * NOMINAL_MV // 1_000_000 for c in current],
                current_ma=current,
                voltage_mv=(NOMINAL_MV, NOMINAL_MV, NOMINAL_MV),
                energy_import_wh=1000000,
                energy_export_wh=0,
                flavour="be",
            )
            self.p1.write(telegram)
            time.sleep(1.0)  # DSMR 5.0 / e-MUCS: one telegram a second

    # -- looking at it ----------------------------------------------------------

    def output(self, since=0.0):
        with self._lock:
            return [text for stamp, text in self.lines if stamp >= since]

    def wait_line(self, fragment, timeout_s, since=0.0):
        """The monotonic time of the first line containing `fragment` (after `since`), or None at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                for stamp, text in self.lines:
                    if stamp >= since and fragment in text:
                        return stamp
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def tail(self, count=40):
        return "\n".join(self.output()[-count:])

    def stop(self):
        self._stopping = True
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.trydan.stop()
        self.p1.close()


def main():
    parser = argparse.ArgumentParser(description="ChargeGuard device rehearsal (esp32 platform on the unix port)")
    parser.add_argument("--seconds", type=float, default=45.0, help="how long to run the script")
    parser.add_argument("--wrong-password", action="store_true", help="the access point wants another password")
    parser.add_argument("--no-ap", action="store_true", help="the access point is off at boot")
    args = parser.parse_args()
    radio = {}
    if args.wrong_password:
        radio["password"] = "another-password"
    if args.no_ap:
        radio["ap"] = False
    shown = [0]
    rehearsal = Rehearsal(radio=radio)
    print("rehearsal: esp32 platform on the unix port; P1 on %s, Trydan on 127.0.0.1:%d, radio %s"
          % (rehearsal.p1.device, rehearsal.trydan.port, rehearsal.control))
    start = time.monotonic()
    script = [(15.0, "access point off", {"ap": False}), (22.0, "access point back", {"ap": True})]
    try:
        while time.monotonic() - start < args.seconds:
            if script and time.monotonic() - start >= script[0][0] and not (args.no_ap or args.wrong_password):
                _, text, change = script.pop(0)
                print("[%5.1f] === %s" % (time.monotonic() - start, text), flush=True)
                rehearsal.set_radio(**change)
            lines = rehearsal.output()
            for line in lines[shown[0]:]:
                print("[%5.1f] %s" % (time.monotonic() - start, line), flush=True)
            shown[0] = len(lines)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        rehearsal.stop()
        print("rehearsal: stopped after %d boot(s)" % len(rehearsal.boots))


if __name__ == "__main__":
    main()
