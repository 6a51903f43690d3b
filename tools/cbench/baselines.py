"""What owners run today, modelled from each project's documentation, in the benchmark's harness.

Facts carry over, code does not: each model below is written from the
documented behaviour and defaults (sources per class); where a document is
silent the assumption is named. Each wallbox has its own controller (these
projects run one regulation per charge point). A controller sees what
ChargeGuard sees: the meter's readings at its cadence and each wallbox's
measurement every poll_s; it returns the offer (mA, 0 = pause) per car.

Modes: a car in `solar` or `eco` runs the project's surplus mode; a car in
`fast` runs its full-power mode with whatever load management that project
documents (SmartEVSE's Smart mode and CAPACITY, evcc's circuit limits,
OpenEVSE's current shaper; EVCM has none: its max current "does not replace
the current limitation set in your wallbox").

Per-scenario overrides: "controllers": {"evcm": {"scan_s": 5}, ...} replace
the class's DEFAULTS keys.
"""

import math

from chargeguard.core.profiles import step_down_w, step_up_w
from scenario import PHASE_LETTERS


class _PerCar:
    """Shared plumbing: settings with overrides, per-car state, the step loop."""

    name = "?"
    key = "?"
    DEFAULTS = {}

    def __init__(self, scenario):
        self.settings = dict(self.DEFAULTS)
        for key, value in scenario.controllers.get(self.key, {}).items():
            if key not in self.DEFAULTS:
                raise ValueError("controllers.%s.%s: not a setting of this model (%s)"
                                 % (self.key, key, ", ".join(sorted(self.DEFAULTS))))
            self.settings[key] = value
        self.site = scenario.site
        self.voltage_v = scenario.site["voltage_v"]
        self.cars = scenario.cars
        self.offers = [0] * len(self.cars)
        self.state = [self.new_state(car) for car in self.cars]

    def new_state(self, car):
        return {"on": False, "since": None, "started": -10 ** 9, "set_a": 0.0}

    def step(self, t, reading, statuses):
        for index, car in enumerate(self.cars):
            status = statuses[index]
            if reading.t < 0 or status.t < 0 or not status.plugged:
                self.offers[index] = 0
                self.state[index] = self.new_state(car)
                continue
            if car["mode"] == "fast":
                self.offers[index] = self.fast(index, car, t, reading, status)
            else:
                self.offers[index] = self.surplus(index, car, t, reading, status)
        return self.offers

    def fast(self, index, car, t, reading, status):
        return car["max_a"] * 1000

    def export_w(self, reading):
        return -reading.net_w

    def own_w(self, status):
        return status.power_w


def _ma(amps):
    return int(amps) * 1000


class EVCM(_PerCar):
    """EVCM (Home Assistant), seed evcm-smart-charging-manager.md, sections 6, 10, 12, 15, 23.

    Start: net export >= upper threshold continuously for the upper start
    debounce (default 3 s, section 5), then at the minimum 6 A (its use case,
    section 23). Regulation every scan interval: +1 A when net - target >=
    the profile's export_inc (700 W at 3 x 400 V, 240 W at 1 x 230 V), -1 A
    when <= -import_dec (200 W / 70 W), clamped to 6 A..max. Pause once net
    < lower threshold continuously for the sustain time (section 15).
    Thresholds: its ECO on use case, upper 4000 W / lower -500 W, target 0
    (section 6, default). Assumed where the seed gives no default: scan
    interval 10 s; sustain 180 s (the same as ChargeGuard's stop delay, so
    the comparison is about the regulation, not a timer). Fast mode: EVCM's
    manual mode at the max current, no load management (section 4).
    """

    name = "EVCM"
    key = "evcm"
    DEFAULTS = {"upper_w": 4000, "lower_w": -500, "target_w": 0, "debounce_s": 3, "sustain_s": 180, "scan_s": 10}

    def new_state(self, car):
        return {"on": False, "since": None, "below": None, "set_a": 0, "last_scan": -10 ** 9}

    def surplus(self, index, car, t, reading, status):
        s = self.settings
        st = self.state[index]
        net = self.export_w(reading)
        if not st["on"]:
            if net >= s["upper_w"]:
                if st["since"] is None:
                    st["since"] = t
                if t - st["since"] >= s["debounce_s"]:
                    st.update(on=True, below=None, set_a=car["min_a"], last_scan=t)
            else:
                st["since"] = None
            return _ma(st["set_a"]) if st["on"] else 0
        if net < s["lower_w"]:
            if st["below"] is None:
                st["below"] = t
            if t - st["below"] >= s["sustain_s"]:
                st.update(on=False, since=None, set_a=0)
                return 0
        else:
            st["below"] = None
        if t - st["last_scan"] >= s["scan_s"]:
            st["last_scan"] = t
            deviation = net - s["target_w"]
            phases = car["phases"]
            if deviation >= step_up_w(phases, self.voltage_v):
                st["set_a"] = min(car["max_a"], st["set_a"] + 1)
            elif deviation <= -step_down_w(phases, self.voltage_v):
                st["set_a"] = max(car["min_a"], st["set_a"] - 1)
        return _ma(st["set_a"])


class SmartEVSE(_PerCar):
    """SmartEVSE v3 Solar mode, its docs/configuration.md (SmartEVSE/SmartEVSE-3).

    Documented settings: START, the export (A summed over the phases) at which
    solar charging starts (0..48 A); STOP, the minutes charging goes on
    without enough solar power before it stops (Disabled..60); IMPORT, the
    grid current (A summed) allowed while solar charging (0..20). Defaults
    used: START 4 A, STOP 10 min, IMPORT 0 A (the menu's defaults as we
    read them). Regulation on every mains reading, on the summed phase
    currents: the set current moves towards the surplus, upward by a tenth
    of it per reading and downward by half of the shortfall (its "slow up,
    fast down" behaviour; the fractions are our assumption, chosen so that
    a 1 s meter and a car that lags 5 s do not make it oscillate: a quarter
    upward did, 9000 commands a day), never below MIN
    while charging: at MIN with import beyond IMPORT the STOP timer runs.
    Start once the export has been >= START for 40 s (assumed). Fast mode:
    its Smart mode (each phase kept under MAINS, the breaker) and, with a
    peak limit, CAPACITY (the summed current, peak_limit_w / V) applied on
    every reading.
    """

    name = "SmartEVSE"
    key = "smartevse"
    DEFAULTS = {"start_a": 4, "stop_min": 10, "import_a": 0, "start_s": 40, "up": 0.1, "down": 0.5}

    def new_state(self, car):
        return {"on": False, "since": None, "short": None, "set_a": 0.0, "last": -1}

    def surplus(self, index, car, t, reading, status):
        s = self.settings
        st = self.state[index]
        isum_a = sum(reading.current_ma) / 1000.0  # import positive, summed
        if not st["on"]:
            if -isum_a >= s["start_a"]:
                if st["since"] is None:
                    st["since"] = t
                if t - st["since"] >= s["start_s"]:
                    st.update(on=True, short=None, set_a=float(car["min_a"]), last=reading.t)
            else:
                st["since"] = None
            return _ma(st["set_a"]) if st["on"] else 0
        if reading.t == st["last"]:
            return _ma(st["set_a"])
        st["last"] = reading.t
        spare_a = (s["import_a"] - isum_a) / car["phases"]  # per phase of the car
        if spare_a > 0:
            st["set_a"] = min(float(car["max_a"]), st["set_a"] + spare_a * s["up"])
        else:
            st["set_a"] = st["set_a"] + spare_a * s["down"]
        if st["set_a"] < car["min_a"]:
            st["set_a"] = float(car["min_a"])
            if st["short"] is None:
                st["short"] = t
            if s["stop_min"] and t - st["short"] >= s["stop_min"] * 60:
                st.update(on=False, since=None, set_a=0.0)
                return 0
        elif spare_a >= 0:
            st["short"] = None
        return _ma(st["set_a"])

    def fast(self, index, car, t, reading, status):
        st = self.state[index]
        if reading.t == st["last"]:
            return _ma(st["set_a"]) if st["on"] else 0
        st["last"] = reading.t
        own = [0.0, 0.0, 0.0]
        for line, letter in enumerate(car["phase_map"]):
            own[PHASE_LETTERS.index(letter)] = status.current_ma[line] / 1000.0
        room = car["max_a"]
        for phase in range(self.site["phases"]):
            room = min(room, self.site["breaker_a"] - (reading.current_ma[phase] / 1000.0 - own[phase]))
        if self.site["peak_limit_w"]:
            capacity_a = self.site["peak_limit_w"] / self.voltage_v
            others = sum(reading.current_ma) / 1000.0 - sum(own)
            room = min(room, (capacity_a - others) / car["phases"])
        if room < car["min_a"]:
            st.update(on=False, set_a=0.0)
            return 0
        st.update(on=True, set_a=math.floor(room))
        return _ma(st["set_a"])


class Evcc(_PerCar):
    """evcc `pv` mode, docs.evcc.io reference/configuration (interval, loadpoints).

    Control runs every `interval`, 30 s by default (evcc: shorter than 30 s
    may oscillate). Enable: the surplus covers the minimum current plus the
    enable threshold (default 0 W) for the enable delay (default 1 min).
    Disable: the surplus no longer covers the minimum current minus the
    disable threshold (default 0 W) for the disable delay (default 3 min);
    meanwhile it charges at the minimum. While charging the current is set
    from the surplus (export + its own charge power) in whole amperes each
    interval. Fast mode: `now`, the max current, with a circuit limited to
    the breaker per phase and, with a peak limit, to that power (evcc's
    circuits: maxCurrent, maxPower), checked each interval.
    """

    name = "evcc"
    key = "evcc"
    DEFAULTS = {"interval_s": 30, "enable_w": 0, "enable_delay_s": 60, "disable_w": 0, "disable_delay_s": 180}

    def new_state(self, car):
        return {"on": False, "since": None, "short": None, "set_a": 0, "next": None}

    def _due(self, st, t):
        if st["next"] is None:
            st["next"] = t - t % self.settings["interval_s"]
        if t < st["next"]:
            return False
        st["next"] = t + self.settings["interval_s"]
        return True

    def surplus(self, index, car, t, reading, status):
        s = self.settings
        st = self.state[index]
        if not self._due(st, t):
            return _ma(st["set_a"]) if st["on"] else 0
        per_amp = car["phases"] * self.voltage_v
        surplus = self.export_w(reading) + self.own_w(status)
        min_w = car["min_a"] * per_amp
        if not st["on"]:
            if surplus >= min_w + s["enable_w"]:
                if st["since"] is None:
                    st["since"] = t
                if t - st["since"] >= s["enable_delay_s"]:
                    st.update(on=True, short=None, set_a=min(car["max_a"], max(car["min_a"], int(surplus // per_amp))))
            else:
                st["since"] = None
            return _ma(st["set_a"]) if st["on"] else 0
        if surplus < min_w - s["disable_w"]:
            if st["short"] is None:
                st["short"] = t
            if t - st["short"] >= s["disable_delay_s"]:
                st.update(on=False, since=None, set_a=0)
                return 0
            st["set_a"] = car["min_a"]
        else:
            st["short"] = None
            st["set_a"] = min(car["max_a"], max(car["min_a"], int(surplus // per_amp)))
        return _ma(st["set_a"])

    def fast(self, index, car, t, reading, status):
        st = self.state[index]
        if not self._due(st, t):
            return _ma(st["set_a"]) if st["on"] else 0
        room = car["max_a"]
        draw_a = status.power_w / (car["phases"] * self.voltage_v)
        for phase in range(self.site["phases"]):
            room = min(room, self.site["breaker_a"] - reading.current_ma[phase] / 1000.0 + draw_a)
        if self.site["peak_limit_w"]:
            room = min(room, (self.site["peak_limit_w"] - reading.net_w + status.power_w) / (car["phases"] * self.voltage_v))
        if room < car["min_a"]:
            st.update(on=False, set_a=0)
            return 0
        st.update(on=True, set_a=int(room))
        return _ma(st["set_a"])


class OpenEVSE(_PerCar):
    """OpenEVSE solar PV divert ("eco" charge mode), OpenEVSE WiFi firmware documentation and config defaults.

    The grid feed (import positive) arrives with each meter reading. The
    current available = -grid / V + the EVSE's own charge current (per
    phase of the car here, as OpenEVSE assumes one phase), smoothed by an
    exponential average with divert_attack_smoothing_factor 0.4 when it
    rises and divert_decay_smoothing_factor 0.05 when it falls. Charging
    starts once the smoothed current reaches the minimum (6 A) x
    divert_PV_ratio (1.0), at floor(available) (at least the minimum), and
    pauses once the smoothed current is below that, but not before
    divert_min_charge_time (600 s) after the start. Fast mode: normal
    charging at the max; with a peak limit, its current shaper with
    current_shaper_max_pwr = the limit (charge current = (max_pwr - house
    power) / V) on every reading.
    """

    name = "OpenEVSE"
    key = "openevse"
    DEFAULTS = {"attack": 0.4, "decay": 0.05, "pv_ratio": 1.0, "min_charge_s": 600}

    def new_state(self, car):
        return {"on": False, "smooth": 0.0, "set_a": 0, "started": None, "last": -1}

    def surplus(self, index, car, t, reading, status):
        s = self.settings
        st = self.state[index]
        if reading.t == st["last"]:
            return _ma(st["set_a"]) if st["on"] else 0
        st["last"] = reading.t
        per_amp = car["phases"] * self.voltage_v
        available = max(0.0, (self.export_w(reading) + self.own_w(status)) / per_amp)
        scale = s["attack"] if available > st["smooth"] else s["decay"]
        st["smooth"] = available * scale + st["smooth"] * (1 - scale)
        enough = st["smooth"] >= car["min_a"] * s["pv_ratio"]
        if not st["on"]:
            if enough:
                st.update(on=True, started=t)
            else:
                return 0
        elif not enough and t - st["started"] >= s["min_charge_s"]:
            st.update(on=False, set_a=0)
            return 0
        st["set_a"] = min(car["max_a"], max(car["min_a"], int(math.floor(available))))
        return _ma(st["set_a"])

    def fast(self, index, car, t, reading, status):
        if not self.site["peak_limit_w"]:
            return car["max_a"] * 1000
        st = self.state[index]
        if reading.t == st["last"]:
            return _ma(st["set_a"]) if st["on"] else 0
        st["last"] = reading.t
        house_w = reading.net_w - status.power_w
        room = (self.site["peak_limit_w"] - house_w) / (car["phases"] * self.voltage_v)
        room = min(room, car["max_a"])
        if room < car["min_a"]:
            st.update(on=False, set_a=0)
            return 0
        st.update(on=True, set_a=int(room))
        return _ma(st["set_a"])


BASELINES = (EVCM, SmartEVSE, Evcc, OpenEVSE)
