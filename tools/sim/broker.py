"""A real MQTT broker on loopback for the simulator and the tests, and broken ones beside it.

    Broker()          mosquitto when the machine has it (Debian's, /usr/sbin),
                      else amqtt from .venv (pinned in requirements.txt); on a
                      free 127.0.0.1 port; start(), kill(), restart() on the
                      same port, stop(). CHARGEGUARD_BROKER=amqtt|mosquitto chooses.
    Watcher(port)     paho-mqtt, the other client: records every message
                      (topic, payload, retain) and waits for conditions.
    BlackHole()       accepts TCP connections and never answers (nor reads).
    Stall(port)       a TCP relay to a broker that can stop relaying mid-session
                      (stall()) with the connections left open, and go on (resume()).

Everything binds 127.0.0.1 only, and every wait has a deadline.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

from ports import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
START_S = 20.0  # a broker that does not listen by then is broken (amqtt needs ~1 s, mosquitto ~10 ms)


def mosquitto_binary():
    return shutil.which("mosquitto") or next(
        (path for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(path)), None)


def amqtt_binary():
    candidate = os.path.join(os.path.dirname(sys.executable), "amqtt")
    return candidate if os.path.exists(candidate) else shutil.which("amqtt")


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """A broker process on 127.0.0.1:port (see the module doc); `kind` is "mosquitto" or "amqtt"."""

    def __init__(self, kind=None, port=None, run_dir=None):
        kind = kind or os.environ.get("CHARGEGUARD_BROKER") or ("mosquitto" if mosquitto_binary() else "amqtt")
        binary = mosquitto_binary() if kind == "mosquitto" else amqtt_binary()
        if binary is None:
            raise RuntimeError("no MQTT broker: install mosquitto (Debian) or amqtt (requirements.txt)")
        self.kind = kind
        self.binary = binary
        self.port = port or free_port()
        self.run_dir = run_dir or os.path.join(ROOT, "build", "broker-%d" % self.port)
        self.process = None
        self.log_path = os.path.join(self.run_dir, "broker.log")

    def _command(self):
        os.makedirs(self.run_dir, exist_ok=True)
        if self.kind == "mosquitto":
            path = os.path.join(self.run_dir, "mosquitto.conf")
            with open(path, "w") as handle:
                handle.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % self.port)
            return [self.binary, "-c", path]
        path = os.path.join(self.run_dir, "amqtt.yaml")
        with open(path, "w") as handle:
            handle.write(
                "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:%d\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n" % self.port
            )
        return [self.binary, "-c", path]

    def start(self):
        """Start it and wait until it listens; returns self."""
        command = self._command()
        log = open(self.log_path, "ab")
        # Its own process group: a Ctrl-C meant for the simulator does not kill it first.
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=os.setpgrp)
        log.close()
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("%s exited at start (%s):\n%s" % (self.kind, self.process.returncode, self.log()))
            if _listening(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("%s does not listen on %d after %g s:\n%s" % (self.kind, self.port, START_S, self.log()))

    def log(self):
        try:
            with open(self.log_path, "rb") as handle:
                return handle.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def kill(self):
        """SIGKILL: gone at once, no goodbye to its clients (a crashed broker)."""
        if self.alive():
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def restart(self):
        """Kill it and start a fresh one on the same port (retained messages are gone: no persistence)."""
        self.kill()
        return self.start()

    def stop(self):
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def watch_hint(self, topics="chargeguard/#"):
        """How a person watches it (printed by make sim)."""
        if self.kind == "mosquitto":
            return "mosquitto_sub -h 127.0.0.1 -p %d -t '%s' -v   (Debian: mosquitto-clients)" % (self.port, topics)
        return "%s --url mqtt://127.0.0.1:%d -t '%s'" % (
            os.path.join(os.path.dirname(self.binary), "amqtt_sub"), self.port, topics)


class Message:
    def __init__(self, topic, payload, retain, t):
        self.topic = topic
        self.payload = payload
        self.retain = retain
        self.t = t  # monotonic seconds when it arrived

    def __repr__(self):
        return "Message(%r, %r, retain=%s)" % (self.topic, self.payload, self.retain)


class Watcher:
    """paho-mqtt client on the broker: subscribes to `topics`, records what arrives."""

    def __init__(self, port, topics=("#",), client_id=None):
        import paho.mqtt.client as paho

        self.messages = []
        self._lock = threading.Lock()
        self.port = port
        self.topics = topics
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or "watcher-%d" % free_port())
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.connected = threading.Event()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(START_S):
            raise RuntimeError("watcher: no connection to the broker on %d" % port)

    def _on_connect(self, client, userdata, flags, reason, properties):
        for topic in self.topics:
            client.subscribe(topic)
        self.connected.set()

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append(Message(message.topic, message.payload, bool(message.retain), time.monotonic()))

    def on(self, topic):
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic):
        found = self.on(topic)
        return found[-1] if found else None

    def wait(self, condition, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return bool(condition())

    def publish(self, topic, payload, retain=False):
        info = self.client.publish(topic, payload, retain=retain)
        info.wait_for_publish(START_S)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts every connection and never reads or answers."""

    def __init__(self):
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.accepted = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.server.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self):
        self._stop = True
        self.thread.join(timeout=2)
        for conn in self.accepted:
            conn.close()
        self.server.close()


class Stall:
    """A TCP relay on 127.0.0.1 to the broker on `port`; stall() stops relaying (connections stay open)."""

    def __init__(self, port):
        self.target = port
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.stalled = threading.Event()
        self.connections = 0
        self._stop = False
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def stall(self):
        self.stalled.set()

    def resume(self):
        self.stalled.clear()

    def _serve(self):
        self.server.settimeout(0.1)
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._relay, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client):
        import select

        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            client.close()
            return
        pair = {client: upstream, upstream: client}
        try:
            while not self._stop:
                if self.stalled.is_set():
                    time.sleep(0.02)  # nothing read, nothing relayed: a broker gone quiet
                    continue
                ready, _, _ = select.select(list(pair), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(4096)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self):
        self._stop = True
        self.server.close()
        for thread in self._threads:
            thread.join(timeout=2)
