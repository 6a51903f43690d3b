# KEBA P30 over UDP (chargers/keba.py) against a fake box at the socket (both
# runtimes; the emulator and the real keba-kecontact client: host_tests/system).
import errno
import json

from modbus_box_fakes import FakePlatform
from modbus_fakes import run_sync

from chargeguard.chargers import keba
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, CAR_UNKNOWN

REPORT2 = {"ID": "2", "State": 3, "Error1": 0, "Error2": 0, "Plug": 7, "Enable sys": 1, "Enable user": 1,
           "Max curr": 16000, "Curr HW": 32000, "Curr user": 16000, "Curr FS": 0, "Tmo FS": 0, "Serial": "1", "Sec": 5}
REPORT3 = {"ID": "3", "U1": 230, "U2": 230, "U3": 230, "I1": 15900, "I2": 15800, "I3": 15700, "P": 10950123,
           "PF": 1000, "E pres": 43215, "E total": 99999, "Serial": "1", "Sec": 5}


class FakeBox:
    """The box's side of the UDP socket; `sent` the datagrams, `mode` as in modbus_box_fakes."""

    def __init__(self):
        self.r2 = dict(REPORT2)
        self.r3 = dict(REPORT3)
        self.sent = []
        self.pending = []
        self.mode = "normal"
        self.refuse = ()
        self.raw = None  # bytes answered to every report instead

    def connect(self, addr):
        self.peer = addr

    def send(self, data):
        text = bytes(data).decode()
        self.sent.append(text)
        if self.mode == "hang":
            return len(data)
        if text.startswith("report"):
            reply = self.raw if self.raw is not None else json.dumps(self.r2 if text == "report 2" else self.r3).encode()
        elif text.split()[0] in self.refuse or self.mode == "error":
            reply = b"TCH-ERR\n"
        else:
            reply = b"TCH-OK :done\n"
            name = text.split()
            if name[0] == "curr":
                self.r2["Curr user"] = int(name[1])
            elif name[0] == "ena":
                self.r2["Enable user"] = int(name[1])
            elif name[0] == "failsafe":
                self.r2["Tmo FS"] = int(name[1])
                self.r2["Curr FS"] = int(name[2])
        self.pending.append(reply)
        return len(data)

    def recv_into(self, buf):
        if self.mode == "refuse":
            raise OSError(errno.ECONNREFUSED, "ECONNREFUSED")
        if not self.pending:
            raise OSError(errno.EAGAIN, "EAGAIN")
        data = self.pending.pop(0)
        n = min(len(buf), len(data))
        buf[:n] = data[:n]
        return n


class FakeLink(keba._Link):
    """The driver's shared UDP link, on the fake box instead of a socket."""

    def __init__(self, box):
        self.sock = box
        self.buf = bytearray(1024)
        self.busy = False
        self.peer = None
        self.sent_at = 0
        self._read = box.recv_into


def make(failsafe_a=0):
    platform = FakePlatform()
    box = FakeBox()
    keba._link[0] = FakeLink(box)
    driver = keba.KebaP30("10.0.0.30", 7090, platform, 1000, failsafe_a)
    keba._link[0] = None
    return driver, box, platform.clock


def test_reports_give_state_currents_power_energy():
    driver, box, clock = make()
    assert run_sync(driver.poll()), driver.status.error
    s = driver.status
    assert s.reachable and s.car == CAR_CHARGING and s.error is None
    assert s.current_ma == [15900, 15800, 15700] and s.power_w == 10950 and s.session_energy_wh == 4322
    assert s.offered_ma == 16000 and box.sent == ["report 2", "report 3"]
    for plug, state, car in ((0, 2, CAR_NONE), (1, 3, CAR_NONE), (5, 2, CAR_CONNECTED), (7, 1, CAR_CONNECTED),
                             (7, 5, CAR_CONNECTED), (7, 0, CAR_UNKNOWN), (7, 4, CAR_UNKNOWN)):
        box.r2.update(Plug=plug, State=state, Error1=15)
        assert run_sync(driver.poll())
        assert s.car == car, (plug, state)
    assert s.error == "error 15"
    box.r2.update({"Enable user": 0})
    run_sync(driver.poll())
    assert s.offered_ma == 0


def test_failsafe_configured_then_curr_and_ena_only_on_change_with_a_keep_alive():
    driver, box, clock = make(failsafe_a=6)
    run_sync(driver.poll())
    del box.sent[:]
    assert run_sync(driver.apply(10500))
    assert box.sent == ["failsafe 60 6000 0", "curr 10000"]
    run_sync(driver.poll())
    del box.sent[:]
    assert run_sync(driver.apply(10000))
    assert box.sent == []
    clock.now += keba.KEEPALIVE_MS
    assert run_sync(driver.apply(10000))
    assert box.sent == ["curr 10000"]  # the failsafe's keep-alive
    assert run_sync(driver.apply(4000))
    assert box.sent[-1] == "ena 0" and driver.status.offered_ma == 0
    assert run_sync(driver.apply(12000))
    assert box.sent[-2:] == ["curr 12000", "ena 1"]


def test_datagrams_are_at_least_100_ms_apart():
    driver, box, clock = make()
    stamps = []
    real_send = box.send

    def send(data):
        stamps.append(clock.now)
        return real_send(data)

    box.send = send
    run_sync(driver.poll())
    run_sync(driver.apply(16000))
    assert all(b - a >= 100 for a, b in zip(stamps, stamps[1:])), stamps


def test_refused_commands_and_failing_boxes():
    driver, box, clock = make()
    run_sync(driver.poll())
    box.refuse = ("curr",)
    assert not run_sync(driver.apply(10000))
    assert driver.status.error == "curr 10000 refused" and driver.status.reachable
    for mode, words in (("hang", "no answer"), ("refuse", "network error")):
        driver, box, clock = make()
        box.mode = mode
        start = clock.now
        assert not run_sync(driver.poll())
        assert clock.now - start <= 2 * 1000 + 200
        assert not driver.status.reachable and driver.status.error == words
        box.mode = "normal"
        box.pending = []
        assert run_sync(driver.poll()), driver.status.error
        del box.sent[:]
        assert run_sync(driver.apply(16000))
        assert box.sent[0].startswith("failsafe")  # the box may have restarted: configured again


def test_garbage_and_fuzzed_reports_never_crash():
    from test_modbus import Lcg

    driver, box, clock = make()
    for raw, words in ((b"\xff\x00{\"ID\": \"2\"", "invalid JSON"), (b'{"ID": "2", "State": "x", "Plug": 7}', "bad State"),
                       (b'{"ID": "2"}', "bad State")):
        box.raw = raw
        assert not run_sync(driver.poll())
        assert driver.status.error == words, driver.status.error
    rnd = Lcg(4)
    keys = list(REPORT2) + list(REPORT3)
    for _ in range(150):
        doc = {}
        for key in keys:
            if rnd.byte() & 3:
                doc[key] = (rnd.byte() << 8 | rnd.byte()) - 1000 if rnd.byte() & 1 else rnd.byte() & 7
        box.raw = json.dumps(doc).encode()
        run_sync(driver.poll())
        s = driver.status
        assert s.car in (CAR_NONE, CAR_CONNECTED, CAR_CHARGING, CAR_UNKNOWN)
        assert run_sync(driver.apply(rnd.byte() * 150)) in (True, False)
