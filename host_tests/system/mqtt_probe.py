# The MQTT link (build/device, .mpy with the pinned umqtt.simple) on the
# MicroPython unix port, driven by host_tests/system/test_mqtt_system.py.
#
#   micropython mqtt_probe.py DEVICE_DIR PORT KEEPALIVE_S QUEUE BURST TOPIC...
#
# Connects to 127.0.0.1:PORT with topic prefix "probe", subscribes to each
# TOPIC, publishes BURST messages to probe/q/0..BURST-1 before the first
# connect (the queue has QUEUE slots), then "probe/count" = n once a second.
# Prints one line per event: the link's own log lines, "ON_CONNECT n",
# "MSG topic payload-length payload".
import sys

sys.path.insert(0, sys.argv[1])

import asyncio

from chargeguard.net.mqtt import MqttLink
from chargeguard.platform import unix

port = int(sys.argv[2])
keepalive_s = int(sys.argv[3])
queue = int(sys.argv[4])
burst = int(sys.argv[5])
topics = sys.argv[6:]
cfg = {
    "host": "127.0.0.1", "port": port, "user": "", "password": "probe-secret-pw", "client_id": "",
    "topic_prefix": "probe", "discovery_prefix": "homeassistant", "keepalive_s": keepalive_s,
}
link = MqttLink(unix.Platform({}), cfg, print, "probe", queue=queue, max_incoming=256)
connects = [0]


def on_connect():
    connects[0] += 1
    print("ON_CONNECT", connects[0])


def on_message(topic, payload):
    print("MSG", topic, len(payload), payload.decode())


link.on_connect = on_connect
link.on_message = on_message
for topic in topics:
    link.subscribe(topic)
for index in range(burst):
    link.publish("probe/q/%d" % index, str(index))


async def main():
    asyncio.create_task(link.run())
    count = 0
    while True:
        await asyncio.sleep_ms(1000)
        count += 1
        link.publish("probe/count", str(count))


asyncio.run(main())
