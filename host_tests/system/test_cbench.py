# The control-quality benchmark (tools/cbench, tools/replay): its physics, each
# metric on tiny hand-computed scenarios, the oracle's bound, the CSV/PNG and
# the replay of a P1 capture. CPython only (host tool, subprocesses, matplotlib).
import csv
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (os.path.join(ROOT, "tools", "cbench"), os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware")):
    if path not in sys.path:
        sys.path.insert(0, path)

import days  # noqa: E402
import harness  # noqa: E402
import oracle  # noqa: E402
import report  # noqa: E402
from scenario import ScenarioError, load  # noqa: E402

TOOL = os.path.join(ROOT, "tools", "replay")
FIXTURES = os.path.join(ROOT, "host_tests", "fixtures", "p1")


class Scripted:
    """A controller that commands what `offers(t)` says (mA per car)."""

    name = "scripted"

    def __init__(self, offers):
        self.offers = offers

    def step(self, t, reading, statuses):
        return self.offers(t)


def tiny(**changes):
    doc = {
        "name": "tiny", "start": "12:00", "duration_s": 900,
        "meter": {"interval_s": 1},
        "site": {"phases": 3, "voltage_v": 230, "breaker_a": 25},
        "house": {"base_w": [500, 500, 500]},
        "pv": {"points": [[0, 6000]]},
        "cars": [{"name": "car", "battery_wh": 300000, "soc_pct": 10, "target_soc_pct": 90, "response_s": 0,
                  "mode": "solar"}],
    }
    for key, value in changes.items():
        doc[key] = value
    return load(doc)


def test_energy_metrics_by_hand():
    # 8 A x 3 x 230 V = 5520 W from t = 1 (the command of t = 0, response 0)
    # to the end: 899 s. Surplus 6000 - 1500 = 4500 W, the rest imported.
    metrics, _ = harness.run(tiny(), Scripted(lambda t: [8000]))
    assert metrics.ev_wh == pytest.approx(5520 * 899 / 3600.0)
    assert metrics.pv_to_ev_wh == pytest.approx(4500 * 899 / 3600.0)
    assert metrics.import_solar_wh == pytest.approx(1020 * 899 / 3600.0)
    assert metrics.pv_share() == pytest.approx(4500 / 5520.0)
    # One whole quarter (12:00-12:15): 1020 W import for 899 s, export at t = 0.
    assert metrics.quarter_import_w == [(12 * 3600, pytest.approx(1020 * 899 / 900.0))]
    assert metrics.starts == 1 and metrics.commands == 1
    assert metrics.overload_as == 0


def test_overload_counts_only_beyond_the_response_time():
    # L1 at 6900 W = 30 A for 60 s on a 25 A breaker: 5 A x 60 s; the car's 5 s
    # plus the 1 s meter interval are the grace: 5 A x 54 s beyond it.
    car = {"name": "car", "response_s": 5, "mode": "fast"}
    scenario = tiny(house={"base_w": [0, 0, 0], "loads": [{"at": 100, "for_s": 60, "w": [6900, 0, 0]}]},
                    pv={"peak_w": 0}, cars=[car])
    metrics, _ = harness.run(scenario, Scripted(lambda t: [0]))
    assert metrics.overload_as == pytest.approx(300)
    assert metrics.overload_late_as == pytest.approx(270)


def test_starts_and_commands_and_the_response_delay():
    car = {"name": "car", "battery_wh": 300000, "response_s": 5, "mode": "fast"}
    scenario = tiny(cars=[car], duration_s=300)
    script = lambda t: [0 if 100 <= t < 200 else 10000]  # noqa: E731
    metrics, trace = harness.run(scenario, Scripted(script), trace=True)
    assert metrics.commands == 3
    assert metrics.starts == 2
    amps = trace.car_a[0]
    assert amps[4] == 0 and amps[5] == 10.0  # follows the t = 0 command 5 s later
    assert amps[104] == 10.0 and amps[105] == 0  # and the pause too
    assert amps[205] == 10.0


def test_the_wallbox_applies_whole_amperes():
    metrics, trace = harness.run(tiny(duration_s=10), Scripted(lambda t: [8700]), trace=True)
    assert trace.car_a[0][1] == 8.0 and trace.offer_a[0][1] == 8.7
    car = dict(tiny().cars[0], step_a=0.1)
    metrics, trace = harness.run(tiny(cars=[car], duration_s=10), Scripted(lambda t: [8750]), trace=True)
    assert trace.car_a[0][1] == pytest.approx(8.7)


def test_taper_and_the_minimum_current():
    # SoC 90 % with the taper from 80 %: 16 A x (100 - 90) / (100 - 80) = 8 A.
    car = {"name": "car", "battery_wh": 100000, "soc_pct": 90, "target_soc_pct": 100, "taper_soc_pct": 80,
           "response_s": 0, "mode": "fast"}
    metrics, trace = harness.run(tiny(cars=[car], duration_s=10), Scripted(lambda t: [16000]), trace=True)
    assert trace.car_a[0][1] == pytest.approx(8.0, abs=0.01)
    assert trace.car_a[0][9] < 8.0  # tapers further as it fills
    metrics, trace = harness.run(tiny(cars=[car], duration_s=10), Scripted(lambda t: [5000]), trace=True)
    assert max(trace.car_a[0]) == 0 and metrics.ev_wh == 0  # under the 6 A minimum: no charge


def test_a_full_car_stops_drawing():
    car = {"name": "car", "battery_wh": 1000, "soc_pct": 79, "target_soc_pct": 80, "taper_soc_pct": 100,
           "response_s": 0, "mode": "fast"}
    metrics, _ = harness.run(tiny(cars=[car], duration_s=60), Scripted(lambda t: [16000]))
    # 10 Wh wanted at 11 kW: full within 4 s, and at most one second's overshoot.
    assert 10 <= metrics.ev_wh < 10 + 11040 / 3600.0


def test_quarter_hour_peak_and_the_limit():
    # 3000 W the first quarter; 3000 W + 1000 W for 300 s the second: 3333 W average.
    house = {"base_w": [1000, 1000, 1000], "loads": [{"at": "12:15", "for_s": 300, "w": [1000, 0, 0]}]}
    scenario = tiny(house=house, pv={"peak_w": 0}, duration_s=1800,
                    site={"phases": 3, "voltage_v": 230, "breaker_a": 25, "peak_limit_w": 3200})
    metrics, _ = harness.run(scenario, Scripted(lambda t: [0]))
    assert [average for _, average in metrics.quarter_import_w] == [pytest.approx(3000), pytest.approx(10000 / 3.0)]
    assert metrics.peak_quarter_w == pytest.approx(10000 / 3.0)
    assert metrics.quarters_over == 1


def short(day, start, hours):
    doc = days.DAYS[day]()
    doc["start"] = start
    doc["duration_s"] = hours * 3600
    doc["cars"][0]["arrival"] = start
    return load(doc)


def test_no_controller_beats_the_oracle():
    for scenario in (short("cloudy", "11:00", 2), short("sunny", "11:00", 2)):
        rows, _, _ = report.run_scenario(scenario)
        best = rows[-1]
        assert best["controller"] == "oracle" and best["pv_share_pct"] == pytest.approx(100.0)
        assert best["import_solar_kwh"] == 0
        for row in rows[:-1]:
            assert row["pv_share_pct"] <= best["pv_share_pct"] + 1e-9, row


def test_the_oracle_takes_the_surplus_exactly():
    metrics = oracle.run(tiny())
    # 4500 W surplus -> 6 A (the wallbox's whole amperes) x 690 W = 4140 W, every second of the 900.
    assert metrics.ev_wh == pytest.approx(4140 * 900 / 3600.0)
    car = dict(tiny().cars[0], step_a=0.1)
    metrics = oracle.run(tiny(cars=[car]))
    assert metrics.ev_wh == pytest.approx(4485 * 900 / 3600.0)  # 6.5 A in 0.1 A steps
    assert metrics.pv_to_ev_wh == metrics.ev_wh and metrics.starts == 1


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True, timeout=120)


def test_replay_writes_the_table_the_csv_and_the_png(tmp_path):
    doc = days.sunny()
    doc.update(name="short", start="11:00", duration_s=1800)
    doc["cars"][0]["arrival"] = "11:00"
    path = tmp_path / "short.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    result = run_tool(str(path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "ChargeGuard" in result.stdout and "oracle" in result.stdout
    with open(out / "short.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["controller"] for row in rows] == ["ChargeGuard", "EVCM", "SmartEVSE", "evcc", "OpenEVSE", "oracle"]
    assert float(rows[0]["ev_kwh"]) > 0
    with open(out / "short.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_bad_scenario_says_which_field(tmp_path):
    doc = days.sunny()
    doc["cars"][0]["phase_map"] = "AAB"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    result = run_tool(str(path), "--no-plot", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "cars[0].phase_map" in result.stderr
    with pytest.raises(ScenarioError, match="meter.interval_s"):
        load(dict(days.sunny(), meter={"interval_s": 0}))


def load_replay():
    loader = importlib.machinery.SourceFileLoader("replay_tool", TOOL)
    spec = importlib.util.spec_from_loader("replay_tool", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_replay_of_a_p1_capture(tmp_path):
    capture = os.path.join(FIXTURES, "nl_dsmr42_kaifa_export_athom.txt")
    readings = load_replay().capture_readings(capture)
    # The fixture README: net -688 / -778 / -403 W (all phases export).
    assert readings == [([-688, -778, -403], None)]
    result = run_tool("--p1", capture, "--duration-s", "600", "--no-plot", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "nl_dsmr42_kaifa_export_athom.csv", newline="") as handle:
        rows = {row["controller"]: row for row in csv.DictReader(handle)}
    # 1.9 kW export is under every start threshold of a 3-phase car: nobody charges.
    assert float(rows["ChargeGuard"]["ev_kwh"]) == 0
    fast = run_tool("--p1", capture, "--duration-s", "900", "--car-mode", "fast", "--no-plot", "--out", str(tmp_path))
    assert fast.returncode == 0, fast.stderr
    with open(tmp_path / "nl_dsmr42_kaifa_export_athom.csv", newline="") as handle:
        rows = {row["controller"]: row for row in csv.DictReader(handle)}
    # A fast car takes the capture's 1869 W export as PV for (nearly) the whole 900 s: 0.467 kWh at most.
    assert 0.44 < float(rows["ChargeGuard"]["pv_kwh"]) <= 1869 * 900 / 3.6e6
    be = load_replay().capture_readings(os.path.join(FIXTURES, "be_fluvius_emucs_v171_ndokter.txt"))
    assert be[0][1] == 2351  # e-MUCS running average 1-0:1.4.0 -> a "be" meter
    bad = run_tool("--p1", os.path.join(FIXTURES, "crc_invalid_kaifa_dsmrreader.txt"), "--no-plot",
                   "--out", str(tmp_path))
    assert bad.returncode == 2 and "no accepted telegram" in bad.stderr


def test_ride_through_cost_by_hand():
    # 5000 W surplus for 100 s, none for 50 s, 5000 W for 100 s: the oracle
    # starts twice at 7 A (4830 W). One start means riding the gap at 6 A
    # (4140 W) all from the grid.
    points = [[0, 5000], [99, 5000], [100, 0], [149, 0], [150, 5000], [249, 5000]]
    scenario = tiny(house={"base_w": [0, 0, 0]}, pv={"points": points}, duration_s=250)
    profiles = harness.expand(scenario)
    best = oracle.run(scenario, profiles)
    assert best.starts == 2
    assert best.ev_wh == pytest.approx(200 * 4830 / 3600.0)
    expected = 4140 * 50 / (200 * 4830 + 4140 * 50.0)
    assert oracle.ride_through_cost(scenario, profiles, best, 1) == pytest.approx(expected)
    assert oracle.ride_through_cost(scenario, profiles, best, 2) == 0


def test_chargeguard_starts_after_its_start_delay_and_takes_the_surplus():
    from chargeguard_ctl import ChargeGuard

    car = dict(tiny().cars[0], response_s=2)
    scenario = tiny(cars=[car], duration_s=300)
    metrics, trace = harness.run(scenario, ChargeGuard(scenario), trace=True)
    first = trace.offer_a[0].index(next(a for a in trace.offer_a[0] if a > 0))
    # Export 4500 W >= the 4000 W upper threshold from the first reading: the
    # default 60 s start delay, then the surplus' whole amperes (4500 / 690 -> 6 A).
    assert 60 <= first <= 61, first
    assert trace.offer_a[0][first] == 6.0
    assert trace.car_a[0][first + 1] == 0 and trace.car_a[0][first + 2] == 6.0  # the car's 2 s
    assert metrics.starts == 1


def test_a_dsmr4_meter_reports_every_10_s_in_whole_amperes():
    seen = []

    class Watcher:
        def step(self, t, reading, statuses):
            seen.append((t, reading.t, list(reading.current_ma), reading.net_w))
            return [0]

    scenario = tiny(meter={"interval_s": 10}, house={"base_w": [700, 0, 0]}, pv={"peak_w": 0}, duration_s=25)
    harness.run(scenario, Watcher())
    assert [reading_t for _, reading_t, _, _ in seen] == [0] * 10 + [10] * 10 + [20] * 5
    # 700 W / 230 V = 3.04 A, shown as 3 A by an "nl" meter; the power stays exact.
    assert seen[0][2] == [3000, 0, 0] and seen[0][3] == 700


def test_a_car_without_times_is_plugged_in_for_the_whole_run():
    scenario = tiny(cars=[{"name": "car", "response_s": 0, "mode": "fast"}], duration_s=100)
    metrics, trace = harness.run(scenario, Scripted(lambda t: [6000]), trace=True)
    assert trace.car_a[0][1] == 6.0 and trace.car_a[0][99] == 6.0


def test_a_night_written_across_midnight():
    # Plugged in at 22:00, leaving at 06:00, in a run that starts at 20:00: the wall times after midnight are
    # the next morning, not 14 hours before the start (which left the car unplugged: 0 kWh).
    night = tiny(start="20:00", duration_s=12 * 3600, pv={"points": [[0, 0]]},
                 cars=[{"name": "car", "arrival": "22:00", "departure": "06:00", "response_s": 0, "mode": "fast",
                        "battery_wh": 300000, "soc_pct": 10, "target_soc_pct": 90}],
                 house={"base_w": [500, 500, 500], "loads": [{"at": "01:00", "for_s": 3600, "w": [1000, 0, 0]}]})
    assert night.span("22:00", "06:00", "arrival") == (2 * 3600, 10 * 3600)
    # Already plugged in at the start (19:00), leaving the next morning; a stay over before the start: next day.
    assert night.span("19:00", "06:00", "arrival") == (-3600, 10 * 3600)
    assert night.span("05:00", "06:00", "arrival") == (9 * 3600, 10 * 3600)
    # A day scenario keeps its times: a load that began before the start runs into it.
    assert tiny().span("11:30", None, "load", 3600) == (-1800, 1800)
    metrics, trace = harness.run(night, Scripted(lambda t: [6000]), trace=True)
    assert trace.car_a[0][2 * 3600 - 1] == 0.0 and trace.car_a[0][2 * 3600] == 6.0
    assert trace.car_a[0][10 * 3600 - 1] == 6.0 and trace.car_a[0][10 * 3600] == 0.0
    # 8 h at 6 A on three phases of 230 V: 33.12 kWh.
    assert abs(metrics.ev_wh - 8 * 3600 * 3 * 6 * 230 / 3600) < 100
    # The 01:00 load is 5 h into the run.
    from scenario import expand

    house = expand(night).house_w
    assert house[0][5 * 3600] == 1500 and house[0][5 * 3600 - 1] == 500
