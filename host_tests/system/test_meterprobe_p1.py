"""tools/meterprobe.py on a P1 port: a pty standing in for the USB P1 cable (tools/sim/p1_emulator.py).

The probe is started, and telegrams are written once it says it is waiting;
every wait is for the output asserted, bounded by the probe's own --wait-s
plus its start on a busy machine.
"""

import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from p1_emulator import PtyP1Port, build_telegram  # noqa: E402

START_S = 30.0  # CPython start and imports on a loaded 2-core machine


class Probe:
    def __init__(self, device, wait_s, *extra):
        command = [sys.executable, os.path.join(ROOT, "tools", "meterprobe.py"), "--model", "p1", "--device", device,
                   "--wait-s", str(wait_s)] + list(extra)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.02)
        return False

    def finish(self, timeout_s):
        code = self.process.wait(timeout=timeout_s)
        self.thread.join(timeout=2)
        return code, "\n".join(self.lines)


def test_meterprobe_decodes_a_p1_telegram_and_says_why_one_is_rejected():
    port = PtyP1Port()
    try:
        probe = Probe(port.device, 10)
        assert probe.wait_line("waiting up to 10 s", START_S), probe.lines
        good = build_telegram(power_w=(2300, -460, 0), current_ma=(10000, -2000, 0), energy_import_wh=1234567,
                              energy_export_wh=7654)
        bad = bytearray(good)
        at = bad.index(b"1-0:21.7.0")
        bad[at + 12] = ord("9")  # one digit changed: the CRC no longer matches
        port.write(bytes(bad))
        port.write(good)
        code, out = probe.finish(10 + START_S)
        assert code == 0, out
        assert "rejected: crc mismatch" in out
        assert "L1:   10.00 A    2300 W  230.0 V" in out and "L2:   -2.00 A    -460 W" in out, out
        assert "net power: 1840 W" in out and "energy: import 1234.57 kWh, export 7.65 kWh" in out, out
    finally:
        port.close()


def test_meterprobe_tells_silence_from_garbage_on_a_p1_port():
    port = PtyP1Port()
    try:
        probe = Probe(port.device, 2)
        code, out = probe.finish(2 + START_S)
        assert code == 1 and "nothing arrives on %s" % port.device in out, out
        probe = Probe(port.device, 2)
        assert probe.wait_line("waiting up to 2 s", START_S), probe.lines
        port.write(b"\x00\xff not a telegram " * 10)
        code, out = probe.finish(2 + START_S)
        assert code == 1 and "bytes arrived but no telegram was framed: wrong line speed or format" in out, out
    finally:
        port.close()
