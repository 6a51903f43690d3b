"""A meter that publishes its values over MQTT, as Home Assistant or a P1 dongle does (paho-mqtt on the broker).

    MqttMeterEmulator(port, phase_every=1)   publisher on 127.0.0.1:port
    publish(currents_ma, power_w)            one round: the net power, and every
                                             `phase_every`-th round the per-phase currents
    silent = True                            publish nothing (a dead integration)

Topics (TOPICS, what the firmware's meter section names, see `meter_section()`):
`sim/meter/l1_current` .. `l3_current`: the current in A as a bare number
("12.345", Home Assistant statestream style); `sim/meter/power`: a JSON object
{"power": <W>, "unit": "W"} with the net power, import positive. With
phase_every > 1 the meter has two cadences (the net power each round, the
phases every N rounds: a HAN meter's 2.5 s / 10 s).
"""

import json

from broker import Watcher

PREFIX = "sim/meter"
TOPICS = (PREFIX + "/l1_current", PREFIX + "/l2_current", PREFIX + "/l3_current", PREFIX + "/power")


def meter_section():
    """The firmware's meter section for this emulator."""
    return {"type": "mqtt", "l1_topic": TOPICS[0], "l2_topic": TOPICS[1], "l3_topic": TOPICS[2], "phase_unit": "A",
            "power_topic": TOPICS[3], "power_key": "power", "power_unit": "W"}


class MqttMeterEmulator:
    def __init__(self, port, phase_every=1):
        self.client = Watcher(port, topics=(), client_id="sim-mqtt-meter")
        self.phase_every = phase_every
        self.rounds = 0
        self.silent = False

    def publish(self, currents_ma, power_w):
        """Publish one round (see the module doc); waits until paho has handed each message to the broker."""
        if self.silent:
            return
        if self.rounds % self.phase_every == 0:
            for topic, current in zip(TOPICS, currents_ma):
                self.client.publish(topic, "%.3f" % (current / 1000))
        self.client.publish(TOPICS[3], json.dumps({"power": sum(power_w), "unit": "W"}))
        self.rounds += 1

    def stop(self):
        self.client.close()
