"""The benchmark's physics and its run loop: one controller through one scenario, one second at a time.

Physics (the same for every controller):
- per site phase, grid power = house load - PV / site phases + what each car
  draws on that phase (W, import positive); current = power / voltage;
- a wallbox applies a command at once, in its own resolution (`step_a`,
  1 A: the V2C Trydan's Intensity is whole amperes, and its driver rounds
  the offer down); its car follows it `response_s` later (IEC 61851
  allows a car up to 5 s): from then it draws
  min(offer, its max_a, its taper limit), or nothing when the offer is
  under its min_a, when it is full (target SoC reached) or not plugged in;
- taper: above taper_soc_pct the car takes at most
  max_a x (100 - SoC) / (100 - taper_soc_pct), at least 1 A, until full;
- the meter reports every `meter.interval_s` (1 s DSMR 5 / e-MUCS, 10 s
  DSMR 4) what the grid is that second: per-phase power and current
  (whole A on "nl" meters, 0.01 A on "be" ones, which also give the running
  quarter-hour average import 1-0:1.4.0); a wallbox's own measurement is
  read every `poll_s`.

A controller sees only those readings and measurements (Reading, CarStatus)
and returns, every second, the current (mA, 0 = pause) it commands each
wallbox. The harness counts a command each time that value changes.

Metrics (Metrics): see docs/benchmark.md. CPython only (host tool).
"""

from scenario import PHASE_LETTERS, expand

QUARTER_S = 900


class Reading:
    """What the meter reported last: t (s since start), per-phase power_w and current_ma, net_w, avg_demand_w."""

    def __init__(self):
        self.t = -1
        self.power_w = [0, 0, 0]
        self.current_ma = [0, 0, 0]
        self.net_w = 0
        self.avg_demand_w = None


class CarStatus:
    """A wallbox's own measurement, read every poll_s: plugged, per-phase current_ma, power_w, offered_ma."""

    def __init__(self):
        self.t = -1
        self.plugged = False
        self.current_ma = [0, 0, 0]
        self.power_w = 0
        self.offered_ma = 0


class Car:
    """One car at its wallbox (see the module doc for its rules)."""

    def __init__(self, spec, scenario, voltage_v):
        self.spec = spec
        self.name = spec["name"]
        self.arrival, self.departure = scenario.span(spec["arrival"], spec["departure"], "arrival")
        self.phases = spec["phases"]
        self.lines = [PHASE_LETTERS.index(letter) for letter in spec["phase_map"]]
        self.min_ma = spec["min_a"] * 1000
        self.max_ma = spec["max_a"] * 1000
        self.response_s = spec["response_s"]
        self.step_ma = spec["step_a"] * 1000  # the wallbox's resolution
        self.battery_wh = spec["battery_wh"]
        self.soc0 = spec["soc_pct"]
        self.wanted_wh = max(0.0, (spec["target_soc_pct"] - spec["soc_pct"]) * spec["battery_wh"] / 100.0)
        self.taper_soc = spec["taper_soc_pct"]
        self.voltage_v = voltage_v
        self.delivered_wh = 0.0
        self.offer_ma = 0  # what the wallbox applies now
        self.pending = []  # (t the car follows, offer)
        self.following_ma = 0  # the offer the car follows now
        self.draw_ma = 0
        self.starts = 0

    def plugged(self, t):
        return self.arrival <= t < self.departure

    def soc(self):
        return self.soc0 + 100.0 * self.delivered_wh / self.battery_wh

    def full(self):
        return self.delivered_wh >= self.wanted_wh

    def limit_ma(self):
        """What the car accepts now (mA): its max, less near full (taper)."""
        soc = self.soc()
        if soc <= self.taper_soc:
            return self.max_ma
        cap = self.max_ma * (100.0 - soc) / max(1e-9, 100.0 - self.taper_soc)
        return int(max(1000.0, cap))

    def command(self, t, offer_ma):
        """The controller's offer (mA); the wallbox applies it rounded down to its step."""
        self.offer_ma = offer_ma
        applied = offer_ma - offer_ma % self.step_ma if self.step_ma else offer_ma
        self.pending.append((t + self.response_s, applied))

    def advance(self, t):
        """The car's draw for second t (mA per phase); counts a start when it goes from 0 to drawing."""
        while self.pending and self.pending[0][0] <= t:
            self.following_ma = self.pending.pop(0)[1]
        draw = 0
        if self.plugged(t) and not self.full() and self.following_ma >= self.min_ma:
            draw = min(self.following_ma, self.limit_ma())
        if draw and not self.draw_ma:
            self.starts += 1
        self.draw_ma = draw
        self.delivered_wh += self.power_w() / 3600.0
        return draw

    def power_w(self):
        return self.draw_ma * self.phases * self.voltage_v / 1000.0


class Metrics:
    """Per-run figures; energies in Wh, overload in A s, powers in W."""

    def __init__(self):
        self.ev_wh = 0.0
        self.pv_to_ev_wh = 0.0
        self.import_solar_wh = 0.0  # grid energy the solar/eco cars drew (their draw not covered by PV)
        self.solar_ev_wh = 0.0  # energy the solar/eco cars drew
        self.overload_as = 0.0  # every A s above the breaker
        self.overload_late_as = 0.0  # A s above the breaker beyond the cars' response time
        self.starts = 0
        self.commands = 0
        self.peak_quarter_w = 0.0
        self.quarters_over = 0
        self.quarter_import_w = []  # (wall s of its start, average import W) of each whole quarter-hour
        self.has_pv = False

    def pv_share(self):
        return self.pv_to_ev_wh / self.ev_wh if self.ev_wh > 0 else None

    def import_share(self):
        return self.import_solar_wh / self.solar_ev_wh if self.solar_ev_wh > 0 else None


class Trace:
    """Per-second series for the plot: grid per phase (W), PV (W), per car its current (A) and offer (A)."""

    def __init__(self, cars):
        self.grid_w = [[], [], []]
        self.pv_w = []
        self.house_w = []
        self.car_a = [[] for _ in cars]
        self.offer_a = [[] for _ in cars]


def run(scenario, controller, profiles=None, trace=False):
    """Run `controller` through `scenario`; returns (Metrics, Trace or None)."""
    if profiles is None:
        profiles = expand(scenario)
    site = scenario.site
    voltage_v = site["voltage_v"]
    site_phases = site["phases"]
    breaker_ma = site["breaker_a"] * 1000
    flavour = scenario.meter["flavour"]
    interval = scenario.meter["interval_s"]
    poll_s = scenario.poll_s
    cars = [Car(spec, scenario, voltage_v) for spec in scenario.cars]
    surplus_cars = [car.spec["mode"] in ("solar", "eco") for car in cars]
    grace_s = max(car.response_s for car in cars) + interval
    reading = Reading()
    statuses = [CarStatus() for _ in cars]
    metrics = Metrics()
    record = Trace(cars) if trace else None
    over_since = [None, None, None]
    quarter_ws = {}  # import W s per clock-aligned quarter-hour (wall // 900)
    peak_limit = site["peak_limit_w"]
    grid_w = [0.0, 0.0, 0.0]
    for t in range(scenario.duration_s):
        wall = scenario.start_s + t
        pv = profiles.pv_w[t]
        house_total = 0.0
        for phase in range(3):
            house_total += profiles.house_w[phase][t]
            grid_w[phase] = profiles.house_w[phase][t] - (pv / site_phases if phase < site_phases else 0.0)
        car_total_w = 0.0
        surplus_draw_w = 0.0
        for index, car in enumerate(cars):
            draw = car.advance(t)
            if draw:
                watts = car.power_w()
                car_total_w += watts
                if surplus_cars[index]:
                    surplus_draw_w += watts
                for phase in car.lines:
                    grid_w[phase] += draw * voltage_v / 1000.0
        net_w = grid_w[0] + grid_w[1] + grid_w[2]
        # Metrics of this second.
        metrics.ev_wh += car_total_w / 3600.0
        surplus_w = pv - house_total
        pv_to_ev = min(car_total_w, max(0.0, surplus_w))
        metrics.pv_to_ev_wh += pv_to_ev / 3600.0
        if surplus_w > 0:
            metrics.has_pv = True  # PV, or a replayed meter's export, the cars could use
        if surplus_draw_w > 0:
            metrics.solar_ev_wh += surplus_draw_w / 3600.0
            # The surplus cars are served last: what the PV left after the house and the others.
            others = car_total_w - surplus_draw_w
            pv_left = max(0.0, surplus_w - others)
            metrics.import_solar_wh += max(0.0, surplus_draw_w - pv_left) / 3600.0
        for phase in range(site_phases):
            over_ma = abs(grid_w[phase]) * 1000.0 / voltage_v - breaker_ma
            if over_ma > 0:
                metrics.overload_as += over_ma / 1000.0
                if over_since[phase] is None:
                    over_since[phase] = t
                if t - over_since[phase] >= grace_s:
                    metrics.overload_late_as += over_ma / 1000.0
            else:
                over_since[phase] = None
        quarter = wall // QUARTER_S
        quarter_ws[quarter] = quarter_ws.get(quarter, 0.0) + max(0.0, net_w)
        # The meter, the wallboxes' measurements, then the controller.
        if t % interval == 0:
            reading.t = t
            for phase in range(3):
                watts = grid_w[phase] if phase < site_phases else 0.0
                reading.power_w[phase] = int(round(watts))
                current = watts * 1000.0 / voltage_v
                step = 1000 if flavour == "nl" else 10
                reading.current_ma[phase] = int(round(current / step)) * step
            reading.net_w = int(round(net_w))
            if flavour == "be":
                elapsed = wall % QUARTER_S + 1
                reading.avg_demand_w = int(quarter_ws[quarter] / elapsed)
        for index, car in enumerate(cars):
            if (t + index) % poll_s == 0:
                status = statuses[index]
                status.t = t
                status.plugged = car.plugged(t)
                for line in range(3):
                    status.current_ma[line] = car.draw_ma if line < car.phases else 0
                status.power_w = int(round(car.power_w()))
                status.offered_ma = car.offer_ma
        offers = controller.step(t, reading, statuses)
        for index, car in enumerate(cars):
            offer = offers[index]
            if offer != car.offer_ma:
                metrics.commands += 1
                car.command(t, offer)
        if record is not None:
            for phase in range(3):
                record.grid_w[phase].append(grid_w[phase])
            record.pv_w.append(pv)
            record.house_w.append(house_total)
            for index, car in enumerate(cars):
                record.car_a[index].append(car.draw_ma / 1000.0)
                record.offer_a[index].append(car.offer_ma / 1000.0)
    end = scenario.start_s + scenario.duration_s
    for quarter in sorted(quarter_ws):
        if quarter * QUARTER_S >= scenario.start_s and (quarter + 1) * QUARTER_S <= end:
            average = quarter_ws[quarter] / QUARTER_S
            metrics.quarter_import_w.append((quarter * QUARTER_S, average))
            metrics.peak_quarter_w = max(metrics.peak_quarter_w, average)
            if peak_limit and average > peak_limit:
                metrics.quarters_over += 1
    metrics.starts = sum(car.starts for car in cars)
    metrics.cars = cars
    return metrics, record
