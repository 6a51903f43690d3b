"""CPython stand-in for MicroPython's u-prefixed alias (used by umqtt.simple under the host tests)."""
from socket import *  # noqa: F401,F403
