"""A real Home Assistant (core 2024.3.3 from PyPI) pointed at the simulated firmware: tools/ha_check.py.

Home Assistant itself must create every entity the discovery announces, with its
device, classes and units, show the firmware's states, pass commands through to
the firmware and the box, drop a removed charger, and log no warning or error
about our payloads. The first run installs Home Assistant into build/ha-venv
(about 45 s, 0.6 GB; cached after); the check itself takes about 75 s. Every wait inside has its deadline (tools/ha_check.py's module doc).
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import ha_check  # noqa: E402

# The install's deadline, Home Assistant's start, two firmware boots with their discovery and the
# states, the commands: the sum of tools/ha_check.py's deadlines, rounded up.
RUN_S = ha_check.PIP_S * 3 + ha_check.HA_START_S + 600


def test_a_real_home_assistant_accepts_the_discovery_shows_the_states_and_sends_commands():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "ha_check.py")], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_S)
    output = done.stdout.decode("utf-8", "replace")
    report = "\n".join(line for line in output.splitlines() if not line.startswith("WARNING: Location"))
    assert done.returncode == 0, report
    assert "ha-check: all" in report and " FAIL " not in report, report
