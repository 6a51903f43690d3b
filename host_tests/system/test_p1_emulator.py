# tools/sim/p1_emulator.py against the firmware's own P1 parser and driver.
# CPython / pytest only.
import asyncio
import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware")):
    if path not in sys.path:
        sys.path.insert(0, path)

import p1_emulator  # noqa: E402
from p1_emulator import PtyP1Port, build_telegram, crc16_arc  # noqa: E402

from chargeguard.meters.p1 import P1Meter, P1Parser, crc16  # noqa: E402


def parse(data):
    parser = P1Parser()
    found = []
    i = 0
    while i < len(data):
        i = parser.feed(data, i)
        if parser.ready:
            found.append((parser.accepted, parser.crc, parser.error))
    parser.finish()
    if parser.ready:
        found.append((parser.accepted, parser.crc, parser.error))
    assert len(found) == 1, found
    return found[0], parser.reading


def test_crc_matches_the_firmware():
    assert crc16_arc(b"123456789") == 0xBB3D
    data = bytes((k * 37 + 11) & 0xFF for k in range(3000))
    for end in (0, 1, 17, 255, 3000):
        assert crc16_arc(data[:end]) == crc16(data, 0, end)


def test_nl_telegram_round_trip_exact():
    tel = build_telegram(
        power_w=[-676, 33, 4321],
        current_ma=[-2940, 150, 18790],
        voltage_mv=[236000, 232600, 229900],
        energy_import_wh=(3808351, 2948827),
        energy_export_wh=(1285951, 2876514),
        current_decimals=2,
        gas_m3_milli=1569646,
    )
    assert tel.startswith(b"/ISK5\\2M550T-1011\r\n\r\n1-3:0.2.8(50)\r\n")
    assert b"1-0:22.7.0(00.676*kW)" in tel and b"1-0:21.7.0(00.000*kW)" in tel
    assert b"1-0:31.7.0(002.94*A)" in tel and b"1-0:72.7.0(229.9*V)" in tel
    (ok, crc, error), r = parse(tel)
    assert (ok, crc, error) == (True, "valid", None)
    assert r.phase_count == 3
    assert r.power_w == [-676, 33, 4321]
    assert r.current_ma == [-2940, 150, 18790]
    assert r.voltage_mv == [236000, 232600, 229900]
    assert r.energy_import_wh == 3808351 + 2948827
    assert r.energy_export_wh == 1285951 + 2876514
    assert (r.import_w, r.export_w) == (33 + 4321 - 676, 0)
    assert r.avg_demand_w is None and r.month_peak_w is None


def test_nl_whole_amps_follow_the_firmware_rule():
    tel = build_telegram(power_w=[-676, 33, 0], current_ma=[-2940, 150, 0], voltage_mv=[236000, 232600, 230000])
    assert b"1-0:31.7.0(003*A)" in tel and b"1-0:51.7.0(000*A)" in tel
    (ok, _, _), r = parse(tel)
    assert ok
    # max(|I| on the wire, |P/U|): 3 A vs 2.864 A; 0 A vs 0.142 A.
    assert r.current_ma == [-3000, 142, 0]
    assert (r.import_w, r.export_w) == (0, 643)


def test_be_telegram_round_trip_exact():
    tel = build_telegram(
        power_w=[1200, -300, 0],
        current_ma=[5210, -1300, 0],
        voltage_mv=[234700, 233100, 235000],
        energy_import_wh=(34, 15758),
        energy_export_wh=11,
        flavour="be",
        avg_demand_w=2351,
        month_peak_w=2589,
        gas_m3_milli=112384,
    )
    assert tel.startswith(b"/FLU5\\253769484_A\r\n\r\n0-0:96.1.4(50217)\r\n")
    assert b"1-0:1.6.0(181106140429S)(02.589*kW)" in tel
    (ok, crc, error), r = parse(tel)
    assert (ok, crc, error) == (True, "valid", None)
    assert r.power_w == [1200, -300, 0]
    assert r.current_ma == [5210, -1300, 0]
    assert r.voltage_mv == [234700, 233100, 235000]
    assert (r.import_w, r.export_w) == (900, 0)
    assert (r.energy_import_wh, r.energy_export_wh) == (34 + 15758, 11)
    assert (r.avg_demand_w, r.month_peak_w) == (2351, 2589)


def test_defaults_single_phase_and_explicit_totals():
    tel = build_telegram(power_w=[2300], voltage_mv=None, import_w=2400, export_w=0, energy_import_wh=5)
    assert b"1-0:41.7.0" not in tel and b"1-0:32.7.0" not in tel
    (ok, _, _), r = parse(tel)
    assert ok and r.phase_count == 1
    assert r.power_w == [2300, 0, 0] and r.current_ma == [10000, 0, 0]  # 10 A at 230 V
    assert (r.import_w, r.export_w, r.energy_import_wh, r.energy_export_wh) == (2400, 0, 5, 0)


def test_without_crc_the_firmware_rejects_it():
    for flavour in ("nl", "be"):
        (ok, crc, error), _ = parse(build_telegram(flavour=flavour, crc=False))
        assert (ok, crc, error) == (False, "absent", "no crc on a DSMR 4+ telegram")


def test_integers_only():
    with pytest.raises(TypeError):
        build_telegram(power_w=[1.5, 0, 0])
    with pytest.raises(TypeError):
        build_telegram(voltage_mv=[230.0, 230000, 230000])
    with pytest.raises(ValueError):
        build_telegram(energy_import_wh=-1)
    with pytest.raises(ValueError):
        build_telegram(flavour="xx")


def test_many_values_round_trip():
    for k in range(200):
        powers = [((k * 7919 + 13 * j) % 20001) - 10000 for j in range(3)]
        currents = [(abs(p) * 1000 // 230 // 10) * 10 * (1 if p >= 0 else -1) for p in powers]
        volts = [220000 + ((k * 31 + j * 977) % 200) * 100 for j in range(3)]
        tel = build_telegram(
            power_w=powers,
            current_ma=currents,
            voltage_mv=volts,
            energy_import_wh=k * 123457,
            energy_export_wh=(k * 1001, k * 7),
            flavour="be" if k & 1 else "nl",
            current_decimals=2,
        )
        (ok, crc, _), r = parse(tel)
        assert ok and crc == "valid"
        assert r.power_w == powers
        # A zero-power phase carries no sign: the firmware reads it as +.
        assert r.current_ma == [c if p else abs(c) for c, p in zip(currents, powers)]
        assert r.voltage_mv == volts
        assert r.energy_import_wh == k * 123457 and r.energy_export_wh == k * 1008


class PtyUart:
    """The platform UART interface over a pty, for P1Meter on CPython."""

    def __init__(self, path, poll_s=0.05):
        self.fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        self.poll_s = poll_s

    def read_now(self, buf):
        try:
            return os.readv(self.fd, [buf])
        except BlockingIOError:
            return 0

    def close(self):
        os.close(self.fd)


def ticks_ms():
    return int(time.monotonic() * 1000) & 0x3FFFFFFF


def test_pty_port_carries_bytes_unchanged():
    with PtyP1Port() as port:
        assert os.path.exists(port.device)
        reader = os.open(port.device, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tel = build_telegram(power_w=[100, 200, 300])
            assert port.write(tel) == len(tel)
            got = b""
            deadline = time.monotonic() + 2
            while len(got) < len(tel) and time.monotonic() < deadline:
                try:
                    got += os.read(reader, 4096)
                except BlockingIOError:
                    time.sleep(0.005)
            assert got == tel  # raw: CR/LF untouched, nothing echoed or added
        finally:
            os.close(reader)


def test_p1meter_reads_the_emulated_meter():
    async def scenario(port, uart):
        meter = P1Meter(uart, ticks_ms)
        results = []
        for power in (1500, -2500, 700):
            port.write(build_telegram(power_w=[power, 0, 0], current_ma=[power * 4, 0, 0], current_decimals=2))
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                await asyncio.sleep(0.002)
                if meter.poll():
                    r = meter.reading
                    results.append((r.power_w[0], r.current_ma[0], r.tick_ms))
                    break
        assert meter.poll() is False  # quiet line
        return meter, results

    with PtyP1Port(baud=115200) as port:
        uart = PtyUart(port.device)
        try:
            meter, results = asyncio.run(scenario(port, uart))
        finally:
            uart.close()
    assert [(p, c) for p, c, _ in results] == [(1500, 6000), (-2500, -10000), (700, 2800)]
    assert all(t > 0 for _, _, t in results)
    assert meter.parser.n_accepted == 3 and meter.parser.n_rejected == 0


def test_write_without_reader_never_hangs():
    with PtyP1Port(write_timeout_s=0.2) as port:
        started = time.monotonic()
        data = b"x" * (1 << 20)
        sent = port.write(data)
        assert time.monotonic() - started < 2
        assert sent < len(data) and port.dropped == len(data) - sent


def test_module_has_no_firmware_dependency():
    # The emulator must stand on its own (independent CRC, no firmware import).
    source = open(p1_emulator.__file__).read()
    assert "chargeguard" not in source
