"""The oracle: the most PV a surplus-only controller could put in the cars, with perfect foresight.

Same site, same cars and the same car limits as the controllers (min and max
current, phases, taper near full, arrival, departure, energy wanted), but it
knows every second's surplus (PV - house, as the meter nets it) as it
happens: no meter interval, no response delay, no start delay, no
hysteresis. Each second, the surplus cars in priority order take what the
surplus left by the ones before allows, in 0.1 A steps, when that reaches
their minimum current; else they pause. It never imports for a car, so its
PV share is 100 %: no controller's PV share can beat it, and its PV energy
is the yardstick of "% of the oracle" (a controller that buys grid energy to
ride through a cloud at the minimum current may collect PV the oracle leaves,
and its import column shows the price). Cars in `fast` mode are left out.
"""

from harness import Car, Metrics
from scenario import expand


def run(scenario, profiles=None):
    """Metrics of the oracle (starts counted; commands 0: it sends none)."""
    if profiles is None:
        profiles = expand(scenario)
    voltage_v = scenario.site["voltage_v"]
    cars = [Car(spec, scenario, voltage_v) for spec in scenario.cars]
    order = sorted(range(len(cars)), key=lambda index: cars[index].spec["priority"])
    order = [index for index in order if cars[index].spec["mode"] in ("solar", "eco")]
    metrics = Metrics()
    metrics.first_draw_w = []  # the first surplus car's power, per second (for ride_through_cost)
    for t in range(scenario.duration_s):
        house = profiles.house_w[0][t] + profiles.house_w[1][t] + profiles.house_w[2][t]
        left = profiles.pv_w[t] - house
        if left > 0:
            metrics.has_pv = True
        for index in order:
            car = cars[index]
            draw = 0
            if car.plugged(t) and not car.full() and left > 0:
                per_amp = car.phases * voltage_v
                draw = int(left * 1000 // per_amp)
                if car.step_ma:
                    draw -= draw % car.step_ma
                draw = min(car.limit_ma(), draw)
                if draw < car.min_ma:
                    draw = 0
            if draw and not car.draw_ma:
                car.starts += 1
            car.draw_ma = draw
            watts = car.power_w()
            if index == order[0]:
                metrics.first_draw_w.append(watts)
            left -= watts
            car.delivered_wh += watts / 3600.0
            metrics.ev_wh += watts / 3600.0
            metrics.solar_ev_wh += watts / 3600.0
            metrics.pv_to_ev_wh += watts / 3600.0
    metrics.starts = sum(car.starts for car in cars)
    metrics.cars = cars
    return metrics


def ride_through_cost(scenario, profiles, metrics, max_starts):
    """Import share (0..1) the oracle would need to start at most `max_starts` times, or None.

    Between two of the oracle's charging spells of the first surplus car lies
    a gap where the surplus does not cover its minimum. A controller that
    keeps fewer spells must ride gaps through at the minimum current,
    importing what the surplus lacks. With perfect foresight it rides the
    cheapest gaps first; this returns that import over the energy the car
    then takes (an estimate: riding fills the car a little sooner). It is
    how many starts a day forces on a controller that imports nothing.
    """
    if not metrics.first_draw_w:
        return None
    car = [spec for spec in sorted(scenario.cars, key=lambda spec: spec["priority"])
           if spec["mode"] in ("solar", "eco")][0]
    min_w = car["min_a"] * car["phases"] * scenario.site["voltage_v"]
    draw = metrics.first_draw_w
    on = [t for t, watts in enumerate(draw) if watts > 0]
    if not on:
        return None
    gaps = []
    t = on[0]
    while t <= on[-1]:
        if draw[t] > 0:
            t += 1
            continue
        begin = t
        cost = 0.0
        while t <= on[-1] and draw[t] == 0:
            house = profiles.house_w[0][t] + profiles.house_w[1][t] + profiles.house_w[2][t]
            cost += max(0.0, min_w - max(0.0, profiles.pv_w[t] - house))
            t += 1
        gaps.append((cost / 3600.0, (t - begin) * min_w / 3600.0))
    spells = len(gaps) + 1
    if spells <= max_starts:
        return 0.0
    gaps.sort()
    ride = gaps[: spells - max_starts]
    imported = sum(cost for cost, _ in ride)
    energy = sum(watts for watts in draw) / 3600.0 + sum(extra for _, extra in ride)
    return imported / energy if energy > 0 else None
