# Fixtures shared by the system tests: a real MQTT broker on a free loopback
# port (tools/sim/broker.py: mosquitto when installed, else amqtt from .venv),
# with kill() / restart() for the tests that take it away.
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = os.path.join(ROOT, "tools", "sim")
if SIM not in sys.path:
    sys.path.insert(0, SIM)

from broker import Broker, Watcher  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def built_firmware():
    """build/device (tools/build.py: the firmware, umqtt and microdot compiled) when a run starts without it.

    `make test` builds first; a bare pytest run builds here, once."""
    device = os.path.join(ROOT, "build", "device")
    if not (os.path.exists(os.path.join(device, "main.py")) and os.path.exists(os.path.join(device, "umqtt", "simple.mpy"))):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build.py")], check=True)


@pytest.fixture
def broker():
    """A started Broker (port, kill(), restart(), stop()); stopped after the test."""
    instance = Broker().start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def watcher(broker):
    """A paho-mqtt Watcher subscribed to '#' on the broker fixture."""
    instance = Watcher(broker.port)
    try:
        yield instance
    finally:
        instance.close()
