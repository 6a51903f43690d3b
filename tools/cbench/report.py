"""Run every controller through a scenario and report: the side-by-side table, the CSV, the PNG, the goals.

Rows (one per controller, then the oracle) hold the figures docs/benchmark.md
defines; the CSV has one line per day and controller with the same columns.
The PNG is what an owner tuning thresholds looks at: the grid (net and per
phase) against the thresholds, PV and house, and every controller's car
current. CPython only; matplotlib is imported only to draw.
"""

import csv
import os

import harness
import oracle
from baselines import BASELINES
from chargeguard_ctl import ChargeGuard, config_of
from scenario import clock_text, expand

COLUMNS = ("day", "controller", "ev_kwh", "pv_kwh", "pv_share_pct", "pv_of_oracle_pct", "import_solar_kwh",
           "import_solar_pct", "overload_as", "overload_late_as", "starts", "commands", "peak_quarter_w",
           "quarters_over")
CONTROLLERS = (ChargeGuard,) + BASELINES
PLOT_STEP_S = 10  # one plotted point per 10 s: a day stays a small PNG


def controller_classes(names=None):
    if not names:
        return CONTROLLERS
    by_key = {"chargeguard": ChargeGuard}
    for cls in BASELINES:
        by_key[cls.key] = cls
    out = []
    for name in names:
        if name not in by_key:
            raise ValueError("unknown controller %r (one of %s)" % (name, ", ".join(sorted(by_key))))
        out.append(by_key[name])
    return tuple(out)


def _row(day, name, metrics, oracle_pv_wh):
    share = metrics.pv_share()
    imported = metrics.import_share()
    row = {
        "day": day, "controller": name,
        "ev_kwh": metrics.ev_wh / 1000.0,
        "pv_kwh": metrics.pv_to_ev_wh / 1000.0 if metrics.has_pv else None,
        "pv_share_pct": 100.0 * share if share is not None and metrics.has_pv else None,
        "pv_of_oracle_pct": (100.0 * metrics.pv_to_ev_wh / oracle_pv_wh) if oracle_pv_wh else None,
        "import_solar_kwh": metrics.import_solar_wh / 1000.0 if metrics.solar_ev_wh else None,
        "import_solar_pct": 100.0 * imported if imported is not None else None,
        "overload_as": metrics.overload_as,
        "overload_late_as": metrics.overload_late_as,
        "starts": metrics.starts,
        "commands": metrics.commands,
        "peak_quarter_w": metrics.peak_quarter_w,
        "quarters_over": metrics.quarters_over,
    }
    return row


def run_scenario(scenario, names=None, traces=False):
    """(rows, traces by controller name) for one scenario; the oracle's row last when a car runs on surplus."""
    profiles = expand(scenario)
    surplus = any(car["mode"] in ("solar", "eco") for car in scenario.cars)
    best = oracle.run(scenario, profiles) if surplus else None
    oracle_pv = best.pv_to_ev_wh if best is not None and best.pv_to_ev_wh > 0 else None
    rows = []
    recorded = {}
    for cls in controller_classes(names):
        metrics, trace = harness.run(scenario, cls(scenario), profiles, trace=traces)
        rows.append(_row(scenario.name, cls.name, metrics, oracle_pv))
        recorded[cls.name] = trace
    if best is not None:
        row = _row(scenario.name, "oracle", best, oracle_pv)
        row["notes"] = trade_off_notes(scenario, profiles, best, rows)
        row["commands"] = None
        for key in ("overload_as", "overload_late_as", "peak_quarter_w", "quarters_over"):
            row[key] = None  # it only places the surplus cars' energy: no grid of its own
        rows.append(row)
    return rows, recorded, profiles


def trade_off_notes(scenario, profiles, best, rows):
    """What perfect foresight says about starts against import on this day (oracle.ride_through_cost)."""
    notes = []
    if best.starts < 2:
        return notes
    others = [row["starts"] for row in rows if row["controller"] != ChargeGuard.name]
    if others:
        fewest = min(others)
        if fewest > 1:
            cost = oracle.ride_through_cost(scenario, profiles, best, fewest - 1)
            if cost is not None:
                notes.append("%s: with perfect foresight, %d starts (fewer than the best baseline's %d) need at least "
                             "%.1f %% import" % (scenario.name, fewest - 1, fewest, 100.0 * cost))
    for starts in range(1, best.starts + 1):
        cost = oracle.ride_through_cost(scenario, profiles, best, starts)
        if cost is not None and cost < 0.02:
            notes.append("%s: with perfect foresight, import under 2 %% needs at least %d starts" % (scenario.name, starts))
            break
    return notes


def _fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return "%.*f" % (digits, value)


HEADERS = (("controller", "controller", 0), ("EV kWh", "ev_kwh", 1), ("PV kWh", "pv_kwh", 1),
           ("PV %", "pv_share_pct", 1), ("% oracle", "pv_of_oracle_pct", 1), ("import kWh", "import_solar_kwh", 2),
           ("import %", "import_solar_pct", 1), ("overload A*s", "overload_late_as", 0), ("(all)", "overload_as", 0),
           ("starts", "starts", 0), ("commands", "commands", 0), ("max 15-min W", "peak_quarter_w", 0),
           ("over limit", "quarters_over", 0))


def table(rows):
    """The side-by-side table as text, one block per day."""
    lines = []
    day = None
    widths = [max(len(title), 11) for title, _, _ in HEADERS]
    widths[0] = 12
    for row in rows:
        if row["day"] != day:
            day = row["day"]
            lines.append("")
            lines.append("== %s ==" % day)
            lines.append("  ".join(title.rjust(widths[i]) if i else title.ljust(widths[i])
                                   for i, (title, _, _) in enumerate(HEADERS)))
        cells = []
        for i, (_, key, digits) in enumerate(HEADERS):
            value = row[key]
            text = value if isinstance(value, str) else _fmt(value, digits)
            cells.append(text.rjust(widths[i]) if i else text.ljust(widths[i]))
        lines.append("  ".join(cells))
    return "\n".join(lines).lstrip("\n")


def write_csv(rows, path):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if row[key] is None else (round(row[key], 3) if isinstance(row[key], float)
                                                                else row[key])) for key in COLUMNS})


def plot(scenario, profiles, traces, path):
    """The day's PNG: grid vs thresholds, phase currents vs breaker, every controller's car current."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = PLOT_STEP_S
    count = scenario.duration_s
    hours = [(scenario.start_s + t) / 3600.0 for t in range(0, count, step)]
    voltage_v = scenario.site["voltage_v"]
    mine = traces.get(ChargeGuard.name)
    fig, axes = plt.subplots(3, 1, figsize=(13, 10), sharex=True)
    ax = axes[0]
    ax.plot(hours, [profiles.pv_w[t] / 1000.0 for t in range(0, count, step)], color="orange", label="PV")
    house = [sum(profiles.house_w[p][t] for p in range(3)) / 1000.0 for t in range(0, count, step)]
    ax.plot(hours, house, color="grey", lw=0.8, label="house")
    if mine is not None:
        net = [sum(mine.grid_w[p][t] for p in range(3)) / 1000.0 for t in range(0, count, step)]
        ax.plot(hours, net, color="black", lw=0.8, label="grid, ChargeGuard (import +)")
    try:
        doc = config_of(scenario)
        solar = doc["solar"]
        band = "on" if solar["eco"] else "off"
        upper = solar["eco_%s_upper_w" % band]
        lower = solar["eco_%s_lower_w" % band]
        if any(car["mode"] in ("solar", "eco") for car in scenario.cars):
            ax.axhline(-upper / 1000.0, color="green", ls="--", lw=0.8, label="start: export >= upper %d W" % upper)
            ax.axhline(-lower / 1000.0, color="red", ls="--", lw=0.8, label="pause: import beyond lower %d W" % -lower)
        if scenario.site["peak_limit_w"]:
            ax.axhline(scenario.site["peak_limit_w"] / 1000.0, color="purple", ls=":", label="peak_limit_w")
    except ValueError:
        pass
    ax.set_ylabel("kW")
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    ax.set_title("%s: %s" % (scenario.name, scenario.doc.get("description", "")), fontsize=10)
    ax.grid(alpha=0.3)
    ax = axes[1]
    if mine is not None:
        for phase, colour in zip(range(scenario.site["phases"]), ("tab:brown", "black", "grey")):
            amps = [mine.grid_w[phase][t] / voltage_v for t in range(0, count, step)]
            ax.plot(hours, amps, color=colour, lw=0.7, label="L%d, ChargeGuard" % (phase + 1))
    ax.axhline(scenario.site["breaker_a"], color="red", ls="--", lw=0.8, label="breaker")
    ax.set_ylabel("grid A per phase")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    ax.grid(alpha=0.3)
    ax = axes[2]
    colours = {"ChargeGuard": "black", "EVCM": "tab:blue", "SmartEVSE": "tab:green", "evcc": "tab:orange",
               "OpenEVSE": "tab:purple"}
    for name, trace in traces.items():
        if trace is None:
            continue
        for index, car in enumerate(scenario.cars):
            amps = [trace.car_a[index][t] for t in range(0, count, step)]
            label = name if len(scenario.cars) == 1 else "%s %s" % (name, car["name"])
            ax.plot(hours, amps, lw=1.4 if name == ChargeGuard.name else 0.7, color=colours.get(name),
                    alpha=1.0 if name == ChargeGuard.name else 0.7, label=label,
                    ls="-" if index == 0 else ":")
    ax.set_ylabel("car current A")
    ax.set_xlabel("hour of the day")
    ax.legend(loc="upper left", fontsize=7, ncol=5)
    ax.grid(alpha=0.3)
    ticks = range(int(hours[0]), int(hours[-1]) + 2)
    axes[2].set_xticks(list(ticks))
    axes[2].set_xticklabels([clock_text(hour * 3600) for hour in ticks], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def goals(rows, scenarios):
    """[(goal, met True/False, detail)] for ChargeGuard's rows (the issue's goals)."""
    by = {}
    for row in rows:
        by.setdefault(row["day"], {})[row["controller"]] = row
    out = []
    for day in ("sunny", "cloudy"):
        row = by.get(day, {}).get(ChargeGuard.name)
        if row is not None and row["pv_of_oracle_pct"] is not None:
            out.append(("%s: PV energy >= 97 %% of the oracle's" % day, row["pv_of_oracle_pct"] >= 97.0,
                        "%.1f %%" % row["pv_of_oracle_pct"]))
    for day, controllers in by.items():
        mine = controllers.get(ChargeGuard.name)
        if mine is None:
            continue
        others = [row for name, row in controllers.items() if name not in (ChargeGuard.name, "oracle")]
        if others and any(car["mode"] != "fast" for car in scenarios[day].cars):
            fewest = min(row["starts"] for row in others)
            out.append(("%s: fewer start/stops than every baseline" % day, mine["starts"] < fewest,
                        "%d vs fewest baseline %d" % (mine["starts"], fewest)))
        if mine["import_solar_pct"] is not None:
            out.append(("%s: grid import in solar mode < 2 %% of EV energy" % day, mine["import_solar_pct"] < 2.0,
                        "%.2f %%" % mine["import_solar_pct"]))
        out.append(("%s: 0 overload A*s beyond the car's response time" % day, mine["overload_late_as"] == 0,
                    "%.0f A*s" % mine["overload_late_as"]))
        limit = scenarios[day].site["peak_limit_w"]
        if limit:
            out.append(("%s: no quarter-hour above peak_limit_w %d W" % (day, limit), mine["quarters_over"] == 0,
                        "highest %.0f W" % mine["peak_quarter_w"]))
    return out


def write_outputs(rows, out_dir, name="bench"):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "%s.csv" % name)
    write_csv(rows, path)
    return path
