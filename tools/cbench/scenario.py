"""The benchmark's scenario format: a day of a house, its PV, its cars and its meter, as JSON.

A scenario is one JSON object (docs/benchmark.md has the full reference and an
example; `tools/replay --dump-day sunny` prints a reference day as a template).
Times are "HH:MM" / "HH:MM:SS" wall clock of the simulated day, or whole
seconds since `start`. A car's stay, a load, a cloud or the sun that is over
by the start on the start's day is on the next day (a car from "22:00" to
"06:00" in a run that starts at "20:00"); "30:00" is 06:00 of the next day. Powers are W, currents A. Keys:

    name, description     text
    start                 wall clock of t = 0 (quarter-hours are aligned to it), "06:00"
    duration_s            length of the run, s
    meter                 {"interval_s": 1 (DSMR 5 / e-MUCS) or 10 (DSMR 4),
                           "flavour": "nl" (currents in whole A) | "be" (0.01 A,
                           with the running quarter-hour average 1-0:1.4.0)}
    site                  {"phases": 3, "voltage_v": 230, "breaker_a": 25,
                           "peak_limit_w": 0 (capacity tariff off)}
    house                 {"base_w": [L1, L2, L3], "loads": [{"at", "for_s", "w": [L1, L2, L3]}],
                           "series": [[time, [L1, L2, L3]], ...] (a stepwise profile that
                           replaces base_w; may be negative: a replayed meter shows export)}
    pv                    {"peak_w", "sunrise", "sunset"} (a clear-sky bell, a 3-phase
                           inverter: a third per phase), "clouds": [{"at", "for_s",
                           "factor", "ramp_s"}], "random_clouds": {"seed", "from", "to",
                           "gap_s": [lo, hi], "length_s": [lo, hi], "factor": [lo, hi],
                           "ramp_s": [lo, hi]}, or "points": [[time, W], ...] (linear)
    cars                  [{"name", "arrival", "departure", "battery_wh", "soc_pct",
                           "target_soc_pct", "min_a": 6, "max_a": 16, "phases": 3,
                           "phase_map": "ABC", "response_s": 5, "step_a": 1 (the wallbox's
                           resolution: 1 A, or 0.1; 0 = exact), "taper_soc_pct": 80,
                           "mode": "solar" | "eco" | "fast", "priority": 1}]
    poll_s                how often a wallbox's own measurement is read (s), 5
    controllers           per controller name, settings that replace its defaults;
                          "chargeguard" takes ChargeGuard config sections
                          ({"site": {...}, "guard": {...}, "solar": {...}})

load() checks every field and raises ScenarioError("path: what is wrong").
expand() turns a checked scenario into per-second arrays (house per phase,
PV) for the harness. CPython only (host tool).
"""

import json
import math
import random

PHASE_LETTERS = "ABC"
MODES = ("solar", "eco", "fast")


class ScenarioError(ValueError):
    """A scenario field is missing or wrong; the message starts with its path."""


def clock_s(value, path):
    """Seconds since midnight from "HH:MM[:SS]" (or an int, taken as is)."""
    if isinstance(value, bool):
        raise ScenarioError("%s: must be a time \"HH:MM\" or whole seconds (is %r)" % (path, value))
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ScenarioError("%s: must be a time \"HH:MM\" or whole seconds (is %r)" % (path, value))
    parts = value.split(":")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ScenarioError("%s: must be a time \"HH:MM\" or \"HH:MM:SS\" (is %r)" % (path, value)) from None
    if len(numbers) not in (2, 3) or not 0 <= numbers[0] <= 48 or not 0 <= numbers[1] < 60:
        raise ScenarioError("%s: must be a time \"HH:MM\" or \"HH:MM:SS\" (is %r)" % (path, value))
    seconds = numbers[2] if len(numbers) == 3 else 0
    return numbers[0] * 3600 + numbers[1] * 60 + seconds


def clock_text(seconds):
    seconds %= 86400
    return "%02d:%02d" % (seconds // 3600, seconds // 60 % 60)


def _number(doc, key, path, default=None, low=None, high=None, whole=False):
    value = doc.get(key, default)
    where = "%s.%s" % (path, key) if path else key
    if value is None:
        raise ScenarioError("%s: is missing" % where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise ScenarioError("%s: must be a %s (is %r)" % (where, "whole number" if whole else "number", value))
    if (low is not None and value < low) or (high is not None and value > high):
        raise ScenarioError("%s: must be between %s and %s (is %s)" % (where, low, high, value))
    return value


def _pair(doc, key, path, low, high):
    value = doc.get(key)
    where = "%s.%s" % (path, key)
    if not isinstance(value, list) or len(value) != 2:
        raise ScenarioError("%s: must be [low, high] (is %r)" % (where, value))
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not low <= item <= high:
            raise ScenarioError("%s: each must be a number in %s..%s (is %r)" % (where, low, high, value))
    if value[0] > value[1]:
        raise ScenarioError("%s: low must not be above high (is %r)" % (where, value))
    return value


def _phases3(value, where):
    if not isinstance(value, list) or len(value) != 3:
        raise ScenarioError("%s: must be [L1, L2, L3] in W (is %r)" % (where, value))
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ScenarioError("%s: must be [L1, L2, L3] in W (is %r)" % (where, value))
    return value


class Scenario:
    """A checked scenario: the JSON document plus the resolved times (s since start)."""

    def __init__(self, doc):
        self.doc = doc
        self.name = doc["name"]
        self.start_s = doc["_start_s"]
        self.duration_s = doc["duration_s"]
        self.meter = doc["meter"]
        self.site = doc["site"]
        self.cars = doc["cars"]
        self.poll_s = doc["poll_s"]
        self.controllers = doc["controllers"]

    def at(self, value, path):
        """A time of the scenario as seconds since its start (negative: before it)."""
        return clock_s(value, path) - self.start_s if isinstance(value, str) else value

    def span(self, begin, end, path, length_s=None):
        """(begin, end) of an interval as seconds since the start, a night across midnight included.

        end: a time, or None with length_s (a load's or a cloud's `for_s`). An interval that has ended by the
        start when its wall clocks are read on the start's day is on the next day: a car from "22:00" to
        "06:00" in a run that starts at "20:00" is 2 h to 10 h, not 2 h to -14 h (which never charged). One
        that began before the start and runs into it keeps its begin (a car already plugged in). Whole
        seconds are taken as they are.
        """
        first = self.at(begin, path)
        last = first + length_s if end is None else self.at(end, path)
        if last <= 0 and isinstance(end if end is not None else begin, str):
            last += 86400
            if isinstance(begin, str) and first + 86400 <= last:
                first += 86400
        return first, last


def load(source):
    """A checked Scenario from a dict, a JSON text or a path to a JSON file."""
    if isinstance(source, dict):
        doc = json.loads(json.dumps(source))
    else:
        text = source
        if not source.lstrip().startswith("{"):
            try:
                with open(source, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as error:
                raise ScenarioError("cannot read %s: %s" % (source, error)) from None
        try:
            doc = json.loads(text)
        except ValueError as error:
            raise ScenarioError("not JSON: %s" % error) from None
    if not isinstance(doc, dict):
        raise ScenarioError("a scenario must be a JSON object")
    return Scenario(check(doc))


def check(doc):
    """The document with defaults filled in; raises ScenarioError on the first bad field."""
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError("name: must be a non-empty text")
    doc.setdefault("description", "")
    doc["_start_s"] = clock_s(doc.get("start", "00:00"), "start")
    _number(doc, "duration_s", "", low=1, high=7 * 86400, whole=True)
    meter = doc.setdefault("meter", {})
    _number(meter, "interval_s", "meter", 1, 1, 60, whole=True)
    meter.setdefault("interval_s", 1)
    if meter.setdefault("flavour", "nl") not in ("nl", "be"):
        raise ScenarioError("meter.flavour: must be \"nl\" or \"be\" (is %r)" % meter["flavour"])
    site = doc.setdefault("site", {})
    for key, default, low, high in (("phases", 3, 1, 3), ("voltage_v", 230, 100, 260), ("breaker_a", 25, 6, 630),
                                    ("peak_limit_w", 0, 0, 500000)):
        site[key] = _number(site, key, "site", default, low, high, whole=True)
    if site["phases"] not in (1, 3):
        raise ScenarioError("site.phases: must be 1 or 3 (is %d)" % site["phases"])
    house = doc.setdefault("house", {})
    _phases3(house.setdefault("base_w", [0, 0, 0]), "house.base_w")
    for index, load in enumerate(house.setdefault("loads", [])):
        path = "house.loads[%d]" % index
        if not isinstance(load, dict):
            raise ScenarioError("%s: must be an object" % path)
        clock_s(load.get("at"), path + ".at")
        _number(load, "for_s", path, low=1, whole=True)
        _phases3(load.get("w"), path + ".w")
    for index, point in enumerate(house.get("series", [])):
        if not isinstance(point, list) or len(point) != 2:
            raise ScenarioError("house.series[%d]: must be [time, [L1, L2, L3]]" % index)
        clock_s(point[0], "house.series[%d][0]" % index)
        _phases3(point[1], "house.series[%d][1]" % index)
    pv = doc.setdefault("pv", {})
    if "points" in pv:
        for index, point in enumerate(pv["points"]):
            if not isinstance(point, list) or len(point) != 2:
                raise ScenarioError("pv.points[%d]: must be [time, W]" % index)
            clock_s(point[0], "pv.points[%d][0]" % index)
            _number({"w": point[1]}, "w", "pv.points[%d]" % index, low=0)
    else:
        _number(pv, "peak_w", "pv", 0, 0, 1000000)
        pv.setdefault("peak_w", 0)
        if pv["peak_w"]:
            if clock_s(pv.get("sunrise"), "pv.sunrise") >= clock_s(pv.get("sunset"), "pv.sunset"):
                raise ScenarioError("pv.sunrise: must be before pv.sunset")
    for index, cloud in enumerate(pv.setdefault("clouds", [])):
        path = "pv.clouds[%d]" % index
        clock_s(cloud.get("at"), path + ".at")
        _number(cloud, "for_s", path, low=1, whole=True)
        _number(cloud, "factor", path, low=0, high=1)
        _number(cloud, "ramp_s", path, 0, 0, 3600)
    if "random_clouds" in pv:
        model = pv["random_clouds"]
        _number(model, "seed", "pv.random_clouds", whole=True)
        clock_s(model.get("from"), "pv.random_clouds.from")
        clock_s(model.get("to"), "pv.random_clouds.to")
        _pair(model, "gap_s", "pv.random_clouds", 1, 86400)
        _pair(model, "length_s", "pv.random_clouds", 1, 86400)
        _pair(model, "factor", "pv.random_clouds", 0, 1)
        _pair(model, "ramp_s", "pv.random_clouds", 0, 3600)
    cars = doc.get("cars")
    if not isinstance(cars, list) or not cars:
        raise ScenarioError("cars: must be a list of at least one car")
    names = set()
    for index, car in enumerate(cars):
        path = "cars[%d]" % index
        if not isinstance(car, dict):
            raise ScenarioError("%s: must be an object" % path)
        car.setdefault("name", "car%d" % (index + 1))
        if car["name"] in names:
            raise ScenarioError("%s.name: %r is used twice" % (path, car["name"]))
        names.add(car["name"])
        # Defaults in seconds since start: plugged in for the whole run.
        clock_s(car.setdefault("arrival", 0), path + ".arrival")
        clock_s(car.setdefault("departure", doc["duration_s"]), path + ".departure")
        car["battery_wh"] = _number(car, "battery_wh", path, 60000, 1000, 300000, whole=True)
        car["soc_pct"] = _number(car, "soc_pct", path, 20, 0, 100)
        car["target_soc_pct"] = _number(car, "target_soc_pct", path, 80, 0, 100)
        car["min_a"] = _number(car, "min_a", path, 6, 6, 32, whole=True)
        car["max_a"] = _number(car, "max_a", path, 16, 6, 32, whole=True)
        if car["min_a"] > car["max_a"]:
            raise ScenarioError("%s.min_a: must not be above max_a" % path)
        car["phases"] = _number(car, "phases", path, 3, 1, 3, whole=True)
        phase_map = car.setdefault("phase_map", PHASE_LETTERS[: car["phases"]])
        if (not isinstance(phase_map, str) or len(phase_map) != car["phases"] or len(set(phase_map)) != len(phase_map)
                or any(letter not in PHASE_LETTERS[: site["phases"]] for letter in phase_map)):
            raise ScenarioError("%s.phase_map: must name %d distinct site phases of %r (is %r)"
                                % (path, car["phases"], PHASE_LETTERS[: site["phases"]], phase_map))
        car["response_s"] = _number(car, "response_s", path, 5, 0, 60, whole=True)
        car["step_a"] = _number(car, "step_a", path, 1, 0, 1)
        car["taper_soc_pct"] = _number(car, "taper_soc_pct", path, 80, 1, 100)
        if car.setdefault("mode", "solar") not in MODES:
            raise ScenarioError("%s.mode: must be one of %s (is %r)" % (path, ", ".join(MODES), car["mode"]))
        car["priority"] = _number(car, "priority", path, index + 1, 1, 8, whole=True)
    doc["poll_s"] = _number(doc, "poll_s", "", 5, 1, 300, whole=True)
    controllers = doc.setdefault("controllers", {})
    if not isinstance(controllers, dict):
        raise ScenarioError("controllers: must be an object of per-controller settings")
    return doc


class Profiles:
    """Per-second arrays of a scenario: house_w[phase][t] and pv_w[t] (floats, W)."""

    def __init__(self, house_w, pv_w):
        self.house_w = house_w
        self.pv_w = pv_w


def expand(scenario):
    """Profiles for every second of the run."""
    doc = scenario.doc
    count = scenario.duration_s
    house = doc["house"]
    rows = [[float(house["base_w"][phase])] * count for phase in range(3)]
    series = house.get("series")
    if series:
        points = sorted((scenario.at(point[0], "house.series"), point[1]) for point in series)
        index = 0
        current = points[0][1]
        for t in range(count):
            while index < len(points) and points[index][0] <= t:
                current = points[index][1]
                index += 1
            for phase in range(3):
                rows[phase][t] = float(current[phase])
    for load in house["loads"]:
        begin, end = scenario.span(load["at"], None, "load", load["for_s"])
        for t in range(max(0, begin), min(count, end)):
            for phase in range(3):
                rows[phase][t] += load["w"][phase]
    return Profiles(rows, _pv(scenario, count))


def _pv(scenario, count):
    pv = scenario.doc["pv"]
    out = [0.0] * count
    if "points" in pv:
        points = sorted((scenario.at(p[0], "pv.points"), float(p[1])) for p in pv["points"])
        index = 0
        for t in range(count):
            while index + 1 < len(points) and points[index + 1][0] <= t:
                index += 1
            t0, w0 = points[index]
            if t <= t0 or index + 1 >= len(points):
                out[t] = w0  # flat before the first point and after the last
            else:
                t1, w1 = points[index + 1]
                out[t] = w0 + (w1 - w0) * (t - t0) / (t1 - t0)
    elif pv["peak_w"]:
        rise, sunset = scenario.span(pv["sunrise"], pv["sunset"], "pv.sunrise")
        length = sunset - rise
        for t in range(count):
            x = (t - rise) / length
            if 0 < x < 1:
                out[t] = pv["peak_w"] * math.sin(math.pi * x) ** 1.5
    factor = [1.0] * count
    clouds = list(pv["clouds"])
    model = pv.get("random_clouds")
    if model:
        clouds.extend(random_clouds(model, scenario))
    for cloud in clouds:
        begin, end = scenario.span(cloud["at"], None, "cloud", cloud["for_s"])
        ramp = int(cloud.get("ramp_s", 0))
        depth = cloud["factor"]
        for t in range(max(0, begin), min(count, end + ramp)):
            if t < begin + ramp:
                value = 1 - (1 - depth) * (t - begin + 1) / (ramp + 1)
            elif t >= end:
                value = depth + (1 - depth) * (t - end + 1) / (ramp + 1)
            else:
                value = depth
            factor[t] = min(factor[t], value)
    return [out[t] * factor[t] for t in range(count)]


def random_clouds(model, scenario):
    """The clouds of a `random_clouds` model: the same list for the same seed on every run."""
    rng = random.Random(model["seed"])
    t, end = scenario.span(model["from"], model["to"], "pv.random_clouds.from")
    clouds = []
    while True:
        t += int(rng.uniform(*model["gap_s"]))
        if t >= end:
            return clouds
        length = int(rng.uniform(*model["length_s"]))
        clouds.append({"at": t, "for_s": max(1, length), "factor": rng.uniform(*model["factor"]),
                       "ramp_s": int(rng.uniform(*model["ramp_s"]))})
        t += length
