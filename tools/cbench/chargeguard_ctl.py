"""ChargeGuard's own core in the benchmark: core/optimiser.py and core/guard.py, fed as the firmware feeds them.

The scenario becomes a ChargeGuard configuration document (one v2c_trydan
charger per car, the car's mode, the site's breaker and peak limit, plus the
scenario's "controllers": {"chargeguard": {"site": ..., "guard": ...,
"solar": ...}} sections), checked by the firmware's own validator
(config.check) and turned into settings by the firmware's own functions.

Every second of the run is one App.decide(): the optimiser (when the
configuration needs it, core/modes.needs_optimiser; else the plain mode
targets) ticks on the
latest meter reading (a GridReading filled as meters/p1.py fills it) and the
wallboxes' last measurements (ChargerStatus, read every poll_s as the app's
poll timer does), hands its capacity cap to the guard, and the guard's
offers are the commands. Ticks are ms of the run (+1 s, so none is 0).
"""

from chargeguard.config import check
from chargeguard.core.guard import Guard
from chargeguard.core.modes import fill_targets, needs_optimiser
from chargeguard.core.model import CAR_CHARGING, CAR_CONNECTED, CAR_NONE, ChargerCommand, ChargerStatus, GridReading
from chargeguard.core.optimiser import Optimiser
from chargeguard.core.optsettings import DIST_PRIORITY, optimiser_from_config
from chargeguard.core.settings_doc import charger_from_config, site_from_config

NAME = "ChargeGuard"


def config_of(scenario):
    """The ChargeGuard configuration document for a scenario (validated; ValueError when refused)."""
    site = scenario.site
    chargers = []
    for index, car in enumerate(scenario.cars):
        chargers.append({
            "name": car["name"][:32],
            "type": "v2c_trydan",
            "host": "192.0.2.%d" % (index + 10),
            "phases": car["phases"],
            "phase_map": car["phase_map"],
            "min_a": car["min_a"],
            "max_a": car["max_a"],
            "circuit_a": car["max_a"],
            "priority": car["priority"],
            "mode": car["mode"],
        })
    doc = {
        "version": 1,
        "site": {"phases": site["phases"], "voltage_v": site["voltage_v"], "breaker_a": site["breaker_a"],
                 "peak_limit_w": site["peak_limit_w"]},
        "guard": {},
        "solar": {},
        "chargers": chargers,
    }
    for section, values in scenario.controllers.get("chargeguard", {}).items():
        if section not in ("site", "guard", "solar"):
            raise ValueError("controllers.chargeguard.%s: only site, guard and solar may be set" % section)
        doc[section].update(values)
    doc, errors = check(doc)
    if errors:
        raise ValueError("controllers.chargeguard: " + "; ".join("%s: %s" % item for item in errors))
    return doc


class ChargeGuard:
    """The firmware's core (optimiser + guard) as a benchmark controller."""

    name = NAME

    def __init__(self, scenario):
        doc = config_of(scenario)
        self.site = site_from_config(doc)
        site_mode = doc["site"].get("mode", "fast")
        self.chargers = [charger_from_config(entry, site_mode) for entry in doc["chargers"]]
        opt = optimiser_from_config(doc)
        # As App: the optimiser runs only when the configuration needs it.
        self.optimiser = Optimiser(opt, self.site, self.chargers) if needs_optimiser(doc) else None
        self.guard = Guard(self.site, self.chargers)
        self.envelope = opt.distribution != DIST_PRIORITY
        self.peak = opt.peak_limit_w
        self.start_s = scenario.start_s
        count = len(self.chargers)
        self.reading = GridReading()
        self.reading.phase_count = self.site.phases
        self.have_reading = False
        self.statuses = [ChargerStatus() for _ in range(count)]
        self.targets = [0] * count
        self.commands = [ChargerCommand() for _ in range(count)]
        self.offers = [0] * count
        self.phases = [charger.phases for charger in self.chargers]

    def step(self, t, reading, statuses):
        now_ms = (t + 1) * 1000
        if reading.t >= 0:
            grid = self.reading
            grid.tick_ms = (reading.t + 1) * 1000
            for phase in range(3):
                grid.power_w[phase] = reading.power_w[phase]
                grid.current_ma[phase] = reading.current_ma[phase]
            net = reading.net_w
            grid.import_w = net if net > 0 else 0
            grid.export_w = -net if net < 0 else 0
            grid.avg_demand_w = reading.avg_demand_w
            self.have_reading = True
        for index, status in enumerate(statuses):
            mine = self.statuses[index]
            if status.t < 0:
                mine.reachable = False
                continue
            mine.reachable = True
            mine.tick_ms = (status.t + 1) * 1000
            if not status.plugged:
                mine.car = CAR_NONE
            else:
                mine.car = CAR_CHARGING if status.power_w > 0 else CAR_CONNECTED
            for line in range(3):
                mine.current_ma[line] = status.current_ma[line] if line < self.phases[index] else None
            mine.power_w = status.power_w
            mine.offered_ma = status.offered_ma
        reading_in = self.reading if self.have_reading else None
        if self.optimiser is None:
            fill_targets(self.chargers, self.targets)
        else:
            wall_s = (self.start_s + t) % 86400 if self.peak else None
            envelope = self.guard.headroom_ma if self.envelope and not self.guard.failsafe else None
            self.guard.import_cap_w = self.optimiser.tick(reading_in, self.statuses, wall_s, now_ms, self.targets,
                                                          envelope)
        self.guard.tick(reading_in, self.statuses, self.targets, now_ms, self.commands)
        for index, command in enumerate(self.commands):
            self.offers[index] = command.offered_ma
        return self.offers
