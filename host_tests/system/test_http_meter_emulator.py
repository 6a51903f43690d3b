# LAN meters over HTTP against their emulators (tools/sim/http_meter_emulator.py):
# the firmware's driver (meters/http_meter.py) for every model, a meter that
# hangs or refuses and comes back, the firmware end to end (failsafe and
# recovery), and tools/meterprobe.py. CPython / pytest only.
import asyncio
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "sim"), os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware")):
    if path not in sys.path:
        sys.path.insert(0, path)

from http_meter_emulator import MODELS, HttpMeterEmulator  # noqa: E402

from chargeguard.meters import http_meter  # noqa: E402
from chargeguard.platform import unix  # noqa: E402

CURRENTS = (10500, -7250, 500)
POWERS = (2415, -1667, 115)
VOLTAGES = (231000, 229500, 230200)
IMPORT_WH = 12345600
EXPORT_WH = 789000
TIMEOUT_MS = 2000  # meters/http_meter.py _TIMEOUT_MS: a poll ends within it, whatever the meter does
POLL_DEADLINE_S = TIMEOUT_MS / 1000 + 3  # plus the loop's own time on a busy machine


@pytest.fixture
def emulators():
    started = []
    yield started
    for emulator in started:
        emulator.stop()


def start(emulators, model):
    emulator = HttpMeterEmulator(model).start()
    emulator.set_values(CURRENTS, POWERS, VOLTAGES, IMPORT_WH, EXPORT_WH)
    emulators.append(emulator)
    return emulator


def driver(model, port, channel=0, emulator=None):
    doc = {"model": model, "host": "127.0.0.1", "port": port, "channel": channel, "upside_down": False, "poll_ms": 1000}
    if model == "homewizard_v2":
        doc.update(token=emulator.token, ca_file=emulator.ca_file, cert_hostname=emulator.cert_hostname)
    return http_meter.from_config(doc, unix.Platform({"rs485_device": None}))


async def poll_once(meter):
    return await asyncio.wait_for(meter.poll(), POLL_DEADLINE_S)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_decodes_its_emulator(emulators, model):
    emulator = start(emulators, model)

    async def scenario():
        meter = driver(model, emulator.port, emulator=emulator)
        assert await poll_once(meter), meter.last_error
        r = meter.reading
        one_phase = model in ("shelly_em1", "shelly_em_gen1")
        assert r.phase_count == (1 if one_phase else 3)
        assert r.power_w[0] == POWERS[0]
        if model.startswith("homewizard"):
            # Whole amps from the P1 meter: max(|I|, |P/U|) at 230 V (the fixture has no voltages).
            assert list(r.current_ma) == [10500, -7248, 500]  # 1667 W / 230 V
            assert r.energy_import_wh == IMPORT_WH and r.energy_export_wh == EXPORT_WH
        elif model == "shelly_em_gen1":
            assert r.current_ma[0] == round(POWERS[0] * 1000 / 231.0)  # no current: |P/U|
            assert "no current" in meter.last_error
        else:
            phases = r.phase_count
            assert list(r.current_ma[:phases]) == list(CURRENTS[:phases])
            assert list(r.voltage_mv[:phases]) == list(VOLTAGES[:phases])
        if model == "shelly_3em_gen1":
            assert abs(r.energy_import_wh - IMPORT_WH) <= 1 and abs(r.energy_export_wh - EXPORT_WH) <= 1
        assert emulator.requests == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("model", ("homewizard", "homewizard_v2"))
def test_a_hanging_then_refusing_meter_fails_in_words_and_comes_back(emulators, model):
    emulator = start(emulators, model)  # homewizard_v2: "hang" never answers the TLS handshake

    async def scenario():
        meter = driver(model, emulator.port, emulator=emulator)
        assert await poll_once(meter)
        stamped = meter.reading.tick_ms
        emulator.mode = "hang"  # accepts the connection, never answers
        assert not await poll_once(meter)
        assert meter.last_error == "no answer within 2000 ms (timeout)"
        emulator.mode = "refuse"  # restarting: nothing listens
        assert not await poll_once(meter)
        assert meter.last_error.startswith("connection refused")
        assert meter.reading.tick_ms == stamped
        emulator.mode = "ok"
        assert await poll_once(meter), meter.last_error
        assert meter.reading.tick_ms != stamped and meter.last_error is None

    asyncio.run(scenario())


# A quarter-hour start in the middle of a month in every time zone (2027-01-15 12:00 UTC).
QUARTER_START = 1_800_000_000 + 4 * 3600
DEMAND_KEYS = {
    "homewizard": ("active_power_average_w", "montly_power_peak_w", "montly_power_peak_timestamp"),
    "homewizard_v2": ("average_power_15m_w", "monthly_power_peak_w", "monthly_power_peak_timestamp"),
}


def _stamp(model, t):
    local = time.localtime(t)
    if model == "homewizard":
        return int(time.strftime("%y%m%d%H%M%S", local))
    return time.strftime("%Y-%m-%dT%H:%M:%S", local)


@pytest.mark.parametrize("model", ("homewizard", "homewizard_v2"))
def test_the_homewizard_quarter_average_and_month_peak_follow_the_site(emulators, model):
    # The Belgian capacity-tariff figures (tools/sim/demand.py): the running quarter-hour's average
    # import and the month's highest quarter, on the meter's clock (here one the test moves).
    now = [QUARTER_START]
    emulator = HttpMeterEmulator(model, clock=lambda: now[0]).start()
    emulators.append(emulator)
    average_key, peak_key, stamp_key = DEMAND_KEYS[model]

    def figures():
        doc = emulator.answer()
        return doc[average_key], doc[peak_key], doc.get(stamp_key)

    def site(total_w, seconds):
        emulator.set_values(CURRENTS, (total_w, 0, 0), VOLTAGES, IMPORT_WH, EXPORT_WH)
        now[0] += seconds

    # No quarter has ended yet: no peak, and no peak time (the API leaves out what it does not have).
    site(2000, 300)
    assert figures() == (2000.0, 0.0, None)
    site(6000, 300)
    assert figures() == (4000.0, 0.0, None)  # the quarter so far: (2000 x 300 + 6000 x 300) / 600
    site(6000, 300)
    # The quarter ended at 4667 W average: the month's peak, stamped with the quarter's end.
    assert figures() == (6000.0, 4667.0, _stamp(model, QUARTER_START + 900))
    # A lighter quarter, export in part of it (counted as no offtake): the peak stays.
    site(-3000, 450)
    site(1000, 450)
    assert figures() == (1000.0, 4667.0, _stamp(model, QUARTER_START + 900))
    # A heavier one raises it; the firmware's driver reads both figures from the meter.
    site(9000, 900)
    meter = driver(model, emulator.port, emulator=emulator)
    assert asyncio.run(poll_once(meter)), meter.last_error
    assert meter.reading.avg_demand_w == 9000 and meter.reading.month_peak_w == 9000
    assert figures()[1:] == (9000.0, _stamp(model, QUARTER_START + 2700))
    # Nothing drawn for a month: the new month starts with no peak, its first heavy quarter sets it.
    site(0, 31 * 86400)
    assert figures() == (0.0, 0.0, None)
    site(3000, 300)
    site(0, 600)
    assert figures() == (0.0, 1000.0, _stamp(model, QUARTER_START + 2700 + 31 * 86400 + 900))


def test_the_wrong_model_for_a_device_says_so(emulators):
    gen1 = start(emulators, "shelly_3em_gen1")

    async def scenario():
        meter = driver("shelly_em", gen1.port)
        assert not await poll_once(meter)
        assert meter.last_error.startswith("HTTP 404: no EM.GetStatus?id=0")

    asyncio.run(scenario())


# -- the firmware end to end --------------------------------------------------------------


def _amps(text):
    try:
        return float(text)
    except ValueError:
        return -1.0  # "--.-": no reading


def _grid_lines(sim):
    return [line for line in sim.lines if line.startswith("grid")]


def _failsafe(sim):
    return any("failsafe" in line for line in _grid_lines(sim)[-1:])


# The firmware's status line comes every second. After the last reading the
# guard goes to failsafe after meter_timeout (2 s here), seen at the next
# control tick (1 s) and the next status line (1 s); a hanging meter first
# takes its request deadline (2 s). 15 s covers that on a busy 2-core machine.
FAILSAFE_DEADLINE_S = 15
# A reading from a meter that answers again: the next poll (1 s, or the end of
# a hung request: 2 s), then the guard's status line.
RECOVERY_DEADLINE_S = 20


def _firmware_on(meter):
    from run import Simulation

    if not os.path.exists(os.path.join(ROOT, "build", "device", "main.py")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build.py")], check=True)
    guard = {"meter_timeout_s": 2, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1}
    return Simulation(car_delay_s=0.2, run_name="http-meter-e2e", chargers=1, guard=guard, meter=meter)


@pytest.mark.parametrize("model,outage", (("homewizard", "hang"), ("shelly_em", "refuse")))
def test_firmware_guards_on_an_http_meter_and_fails_safe_when_it_stops(model, outage):
    from run import wait_for

    sim = _firmware_on(model)
    try:
        # The house draws 20 A on L1: the status line shows it from the meter.
        sim.site.set_house((20.0, 3.0, 3.0))

        def shows_house():
            sim.send_telegram()
            return any(_amps(line.split()[1]) >= 20.0 for line in _grid_lines(sim)[-1:])

        assert wait_for(shows_house, 20, 0.25), "\n".join(sim.lines[-15:])
        assert sim.http.requests > 0
        if outage == "hang":
            sim.meter_silent = True  # the sim's "meter stops answering": it hangs
            sim.send_telegram()
        else:
            sim.http.mode = "refuse"
        assert wait_for(lambda: _failsafe(sim), FAILSAFE_DEADLINE_S, 0.1), "\n".join(sim.lines[-15:])
        # The firmware says why, in words: once the hung request's deadline (2 s)
        # has passed, at the next control tick (1 s).
        words = "no answer within 2000 ms" if outage == "hang" else "connection refused"
        assert wait_for(lambda: any(line.startswith("meter: " + words) for line in sim.lines), FAILSAFE_DEADLINE_S, 0.1), (
            "\n".join(sim.lines[-15:])
        )
        # The meter answers again: the guard leaves the failsafe.
        sim.meter_silent = False

        def recovered():
            sim.send_telegram()  # also back to "ok"
            return not _failsafe(sim)

        assert wait_for(recovered, RECOVERY_DEADLINE_S, 0.25), "\n".join(sim.lines[-15:])
        assert sim.firmware.alive()
        assert not any("MemoryError" in line for line in sim.lines), "\n".join(sim.lines[-15:])
    finally:
        sim.stop()


# -- tools/meterprobe.py ------------------------------------------------------------------


def probe(*args):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "meterprobe.py")] + list(args),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


def test_meterprobe_reads_http_meters_and_says_what_is_wrong(emulators):
    shelly = start(emulators, "shelly_em")
    code, out = probe("--model", "shelly_em", "--host", "127.0.0.1", "--port", str(shelly.port))
    assert code == 0, out
    assert "L1:   10.50 A    2415 W  231.0 V" in out
    assert "L2:   -7.25 A   -1667 W  229.5 V" in out
    assert "net power: 863 W" in out
    em1 = start(emulators, "shelly_em1")
    code, out = probe("--model", "shelly_em1", "--host", "127.0.0.1", "--port", str(em1.port))
    assert code == 0 and "L1:   10.50 A" in out, out
    code, out = probe("--model", "shelly_em1", "--host", "127.0.0.1", "--port", str(em1.port), "--channel", "1")
    assert code == 1 and "HTTP 404: no /rpc/EM1.GetStatus?id=1" in out, out
    shelly.mode = "refuse"
    code, out = probe("--model", "shelly_em", "--host", "127.0.0.1", "--port", str(shelly.port))
    assert code == 1 and "no reading: connection refused" in out, out
    code, out = probe("--model", "homewizard")
    assert code == 2 and "meter.host: must be set" in out, out
    # Everything exports at once: the probe suspects reversed CT clamps.
    hw = start(emulators, "homewizard")
    hw.set_values((-2000, -1000, -500), (-460, -230, -115), VOLTAGES, IMPORT_WH, EXPORT_WH)
    code, out = probe("--model", "homewizard", "--host", "127.0.0.1", "--port", str(hw.port))
    assert code == 0 and "upside down" in out, out
