# Fixtures shared by the system tests: a real MQTT broker on a free loopback
# port (tools/sim/broker.py: mosquitto when installed, else amqtt from .venv),
# with kill() / restart() for the tests that take it away.
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = os.path.join(ROOT, "tools", "sim")
if SIM not in sys.path:
    sys.path.insert(0, SIM)

from broker import Broker, Watcher  # noqa: E402


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
