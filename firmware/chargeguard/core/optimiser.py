"""The optimiser: every charger's target and why, inside the guard's envelope.

The slow layer above the guard (docs/optimiser.md). Each tick:

1. the mode of every charger gives what it wants: `off` nothing, `fast` its
   maximum, `manual` the owner's current; `eco`, `solar` and `excess` share
   the surplus (below);
2. surplus (W) = export at the grid + what the cars in those three modes draw
   now: the power they could take with the grid at 0 W;
3. the surplus is shared between those chargers by the site's distribution
   mode (core/distribution.py, Dynamic OCPP EVSE's modes) in order of mode
   urgency, eco before solar before excess (Dynamic OCPP's rule), then
   priority. Each charger then regulates (core/solar.py, EVCM's thresholds)
   on the export it would see with its share: share + what no one was given -
   its own draw. With one charger that is exactly the export at the grid.
   A charger that is not running sees what it would get if it started
   alongside the running ones, so a waiting car neither cuts a running one
   before it can start nor starts on power that is not there; the running
   ones, with any that just started, then share among themselves;
4. with a distribution envelope from the guard (`envelope_ma`, per site
   phase, e.g. Guard.headroom_ma after its last tick) the `fast` and `manual`
   chargers share it by the same distribution mode; without it they ask for
   their maximum and the guard serves them in priority order. A car that is
   full (draws < 1 A of its offer) takes no part in either sharing, so the
   next one takes over while it stays plugged;
5. the capacity tariff (core/capacity.py) gives the import the guard may
   allow now, `import_cap_w` (None = no cap).

A charger's current moves only on a reading that is new since the last tick
and was taken at least site.ev_response_ms after its last change: a surplus
from an older export and a newer draw counts the last step twice (a 10 s
DSMR 4 meter with a 5 s control interval would swing 6-9-12-9-6 A).

Outputs: targets_ma[i] (0 = do not charge) and reasons[i]: REASON_* here or
in core/solar.py. The guard still fits every target inside the breaker,
contract and capacity envelope and sheds one at a time underneath; when it
limits a charger its own reason (breaker, contract, capacity, ...) is the one
to show, else the optimiser's.

The optimiser's view for the site state, plain attributes: export_w (net
power at the grid, W export positive; None without a reading), surplus_w
(None without a reading), pool_left_w (surplus no charger was given),
upper_w / lower_w / net_target_w (thresholds in force),
import_cap_w, `capacity` (its quarter-hour figures) and `regulators[i]`
(each charger's surplus view and timers).

A seam for later: a gate (planner, SoC limit, Start/Stop) is one more reason
a target is 0; a charger's phase count is read every tick, so phase
switching may change it at run time.
"""

from micropython import const

from chargeguard.core.capacity import CapacityBudget
from chargeguard.core.distribution import allocate, priority_order
from chargeguard.core.model import CAR_CHARGING, CAR_NONE, PHASES
from chargeguard.core.optsettings import DIST_SEQUENTIAL_OPTIMIZED, DIST_SEQUENTIAL_STRICT
from chargeguard.core.settings import MODE_FAST, MODE_MANUAL, MODE_OFF, SCHEME_HOUSE
from chargeguard.core.solar import (
    MODE_ECO,
    MODE_EXCESS,
    MODE_SOLAR,
    REASON_BELOW,
    REASON_EXCESS_WAIT,
    REASON_SOLAR_WAIT,
    SolarRegulator,
)
from chargeguard.core.ticks import ticks_diff

REASON_OFF = "off"  # mode off or charger disabled
REASON_NO_CAR = "no_car"  # nothing plugged in
REASON_UNAVAILABLE = "unavailable"  # the charger does not answer
REASON_FAST = "fast"  # as much as the guard allows
REASON_MANUAL = "manual"  # the owner's fixed current
REASON_SEQUENTIAL = "sequential"  # sequential modes: waiting for its turn
REASON_PRIORITY = "priority"  # shared/priority: the others leave it no minimum

# Export (W) taken when there is no reading, so EVCM's no-data sustain
# applies: below every threshold (optsettings: at most 100 kW either way),
# yet small enough that W -> mA arithmetic on it stays a small int on a
# 32-bit port (an ESP32), where -(1 << 28) // 230 * 1000 was a long int per tick.
_NO_DATA_W = const(-(1 << 20))
_URGENCY = (MODE_ECO, MODE_SOLAR, MODE_EXCESS)


class Optimiser:
    """The optimiser for one site; chargers are ChargerSettings, in config order."""

    def __init__(self, opt, site, chargers):
        self.opt = opt
        self.site = site
        self.chargers = chargers
        count = len(chargers)
        self.order = priority_order(chargers)
        self.regulators = [SolarRegulator() for _ in chargers]
        self.capacity = CapacityBudget()
        self.reasons = ["init"] * count
        self.draw_w = [0] * count
        self.export_w = 0
        self.surplus_w = 0
        self.pool_left_w = 0
        self.upper_w = 0
        self.lower_w = 0
        self.net_target_w = 0
        self.import_cap_w = None
        # Scratch, rewritten in place every tick.
        self._modes = [None] * count
        self._urgency_order = list(range(count))
        self._surplus = [False] * count
        self._min = [0] * count
        self._max = [0] * count
        self._demand = [0] * count
        self._share = [0] * count
        self._done = [False] * count
        # Set aside before sharing: an eco car's minimum (W, surplus pass);
        # a full car's standby offer (mA, envelope pass).
        self._floor = [0] * count
        # When each charger's target last changed, and the reading last used:
        # currents move only on a reading taken once the car had
        # site.ev_response_ms to follow the last change (see SolarRegulator).
        self._changed_ms = [0] * count
        self._changed_once = [False] * count
        self._last_target_ma = [0] * count
        self._reading_ms = 0
        self._have_reading = False
        self._fresh = False
        self._plugged = [False] * count

    def tick(self, reading, statuses, wall_s, now_ms, targets_ma, envelope_ma=None):
        """Fill targets_ma (mA) and self.reasons; return import_cap_w for the guard.

        reading: GridReading, or None when there is none (one older than
        site.meter_timeout_ms counts as none, as in the guard); statuses:
        ChargerStatus per charger; wall_s: wall time for the capacity tariff
        (see CapacityBudget.tick), None when unknown; now_ms: ticks;
        envelope_ma: optional per-phase current the chargers may share.
        """
        opt = self.opt
        if reading is not None and ticks_diff(now_ms, reading.tick_ms) > self.site.meter_timeout_ms:
            reading = None
        self.upper_w = opt.upper_w()
        self.lower_w = opt.lower_w()
        self.net_target_w = opt.net_target_w()
        self.import_cap_w = self.capacity.tick(opt, reading, wall_s, now_ms)
        surplus_count = self._modes_and_draws(statuses, targets_ma)
        self._export(reading, statuses)
        self._fresh = reading is not None and (not self._have_reading or reading.tick_ms != self._reading_ms)
        if reading is not None:
            self._reading_ms = reading.tick_ms
            self._have_reading = True
        if surplus_count:
            self._share_surplus(statuses, targets_ma, now_ms)
        if envelope_ma is not None:
            self._share_envelope(envelope_ma, statuses, targets_ma)
        for index in range(len(self.chargers)):
            if targets_ma[index] != self._last_target_ma[index]:
                self._last_target_ma[index] = targets_ma[index]
                self._changed_ms[index] = now_ms
                self._changed_once[index] = True
        return self.import_cap_w

    # -- per charger: mode, eligibility and draw ----------------------------

    def _modes_and_draws(self, statuses, targets_ma):
        voltage_v = self.site.voltage_v
        surplus_count = 0
        for index in range(len(self.chargers)):
            charger = self.chargers[index]
            status = statuses[index]
            mode = charger.mode if charger.enabled else None
            if mode != self._modes[index]:
                self.regulators[index].reset()  # a mode change starts afresh
                self._modes[index] = mode
            self.draw_w[index] = _draw_w(charger, status, voltage_v)
            self._plugged[index] = status.reachable and status.car != CAR_NONE
            self._surplus[index] = False
            targets_ma[index] = 0
            if mode is None or mode == MODE_OFF:
                self.reasons[index] = REASON_OFF
                continue
            if mode == MODE_FAST:
                targets_ma[index] = charger.max_ma
                self.reasons[index] = REASON_FAST
                continue
            if mode == MODE_MANUAL:
                targets_ma[index] = charger.manual_ma
                self.reasons[index] = REASON_MANUAL
                continue
            if mode != MODE_ECO and mode != MODE_SOLAR and mode != MODE_EXCESS:
                self.reasons[index] = REASON_OFF  # not a mode this firmware knows
                continue
            if status.reachable and status.car == CAR_NONE:
                self.regulators[index].reset()
                self.reasons[index] = REASON_NO_CAR
                continue
            if not status.reachable:
                # Keep what it had: the guard holds its last offer meanwhile.
                targets_ma[index] = self.regulators[index].target_ma
                self.reasons[index] = REASON_UNAVAILABLE
                continue
            self._surplus[index] = True
            surplus_count += 1
        return surplus_count

    def _export(self, reading, statuses):
        net_w = None if reading is None else reading.net_power_w()
        if net_w is None:
            self.export_w = None
            return
        export = -net_w
        if self.site.scheme == SCHEME_HOUSE:
            # The meter sees the house only: the chargers come on top of it.
            for index in range(len(self.chargers)):
                if statuses[index].reachable:
                    export -= self.draw_w[index]
        self.export_w = export

    # -- the surplus modes --------------------------------------------------

    def _share_surplus(self, statuses, targets_ma, now_ms):
        opt = self.opt
        voltage_v = self.site.voltage_v
        count = len(self.chargers)
        no_data = self.export_w is None
        pool = _NO_DATA_W if no_data else self.export_w
        for index in range(count):
            self._done[index] = False
            self._floor[index] = 0
            if self._surplus[index]:
                pool += self.draw_w[index]
                charger = self.chargers[index]
                self._min[index] = charger.min_ma * charger.phases * voltage_v // 1000
                self._max[index] = charger.max_ma * charger.phases * voltage_v // 1000
        self.surplus_w = None if no_data else pool
        for index in range(count):
            eco = self._surplus[index] and self._modes[index] == MODE_ECO
            if eco and self._takes_less(index, statuses[index]) != 0:
                # Eco draws its minimum whatever the sun (unless its car is
                # full): set aside before anyone shares, only what it takes
                # above it is shared.
                self._floor[index] = self._min[index]
                pool -= self._min[index]
                self._max[index] -= self._min[index]
                self._min[index] = 0
        order = self._fill_urgency_order()
        # A waiting car sees what it would get if it started alongside the
        # running ones; it goes first, so that one that starts now makes room
        # in the running ones' shares in this same tick.
        for index in range(count):
            if not self._surplus[index]:
                self._demand[index] = 0
            elif self.regulators[index].running:
                self._demand[index] = self._running_demand_w(index, statuses)
            else:
                self._demand[index] = self._max[index]
        left = allocate(opt.distribution, order, self._min, self._max, self._demand, pool, self._share)
        for index in order:
            if self._surplus[index] and not self.regulators[index].running:
                self._regulate(index, left, targets_ma, now_ms)
                waiting = targets_ma[index] == 0 and _waiting(self.regulators[index].reason)
                if waiting and self._share[index] == 0 and pool >= self._min[index]:
                    # The surplus would carry it alone: it waits for the others.
                    self.reasons[index] = REASON_SEQUENTIAL if self._sequential() else REASON_PRIORITY
        # Then the running ones, and any that just started, share among themselves.
        for index in range(count):
            running = self._surplus[index] and self.regulators[index].running
            self._demand[index] = self._running_demand_w(index, statuses) if running else 0
        left = allocate(opt.distribution, order, self._min, self._max, self._demand, pool, self._share)
        self.pool_left_w = left if left > 0 else 0
        for index in order:
            if self._surplus[index] and not self._done[index]:
                self._regulate(index, left, targets_ma, now_ms)

    def _sequential(self):
        distribution = self.opt.distribution
        return distribution == DIST_SEQUENTIAL_OPTIMIZED or distribution == DIST_SEQUENTIAL_STRICT

    def _regulate(self, index, left_w, targets_ma, now_ms):
        """Tick one regulator on its share plus what no one was given (W)."""
        charger = self.chargers[index]
        regulator = self.regulators[index]
        draw = self.draw_w[index]
        share = self._share[index] + self._floor[index]
        # Sequential strict: one it refuses does not get the leftover either.
        if left_w > 0 and not (self._share[index] == 0 and self.opt.distribution == DIST_SEQUENTIAL_STRICT):
            share += left_w
        export = _NO_DATA_W if self.export_w is None else share - draw
        self._done[index] = True
        mode = self._modes[index]
        voltage_v = self.site.voltage_v
        settled = self._settled(index)
        phases = charger.phases
        room = None if self.export_w is None else self.export_w + draw
        targets_ma[index] = regulator.tick(
            self.opt, mode, charger, phases, voltage_v, export, draw, now_ms, settled, room
        )
        self.reasons[index] = regulator.reason

    def _settled(self, index):
        """True when this tick's reading is new and shows what the charger's last change did."""
        if not self._fresh:
            return False
        if not self._changed_once[index]:
            return True
        return ticks_diff(self._reading_ms, self._changed_ms[index]) >= self.site.ev_response_ms

    def _takes_less(self, index, status):
        """What a car that settled clearly below its offer may still use (W), else -1.

        A car that draws less than 1 A of an offer (full, or not ready) takes
        no part in the sharing: 0, so the next one takes over, as with Dynamic
        OCPP EVSE where only loads that are ready take part. One that limits
        itself (tapering, its own maximum) is capped at its draw + 1 A, at
        least its minimum, so others use the rest; the extra ampere lets it
        show it wants more again. Not under sequential_strict: strictly one
        at a time until the first is full. The offer is what the box reports
        applying, else the last target.
        """
        if not self._settled(index):
            return -1
        offered_ma = status.offered_ma
        if offered_ma is None:
            offered_ma = self._last_target_ma[index]
        charger = self.chargers[index]
        per_amp_w = charger.phases * self.site.voltage_v
        draw = self.draw_w[index]
        if offered_ma <= 0 or draw + per_amp_w >= offered_ma * per_amp_w // 1000:
            return -1
        if draw < per_amp_w:
            return 0
        if self.opt.distribution == DIST_SEQUENTIAL_STRICT:
            return -1
        min_w = charger.min_ma * per_amp_w // 1000
        return draw + per_amp_w if draw + per_amp_w > min_w else min_w

    def _running_demand_w(self, index, statuses):
        demand = self._max[index]
        cap = self._takes_less(index, statuses[index])
        if cap >= 0:
            cap -= self._floor[index]  # eco: the pool shares what is above its minimum
            if cap < 0:
                cap = 0
            if cap < demand:
                demand = cap
        return demand

    def _fill_urgency_order(self):
        """Surplus chargers by mode urgency then priority, the rest after them."""
        order = self._urgency_order
        place = 0
        for mode in _URGENCY:
            for index in self.order:
                if self._surplus[index] and self._modes[index] == mode:
                    order[place] = index
                    place += 1
        for index in self.order:
            if not self._surplus[index]:
                order[place] = index
                place += 1
        return order

    # -- fast and manual chargers -------------------------------------------

    def _share_envelope(self, envelope_ma, statuses, targets_ma):
        pool = envelope_ma[0]
        for phase in range(1, self.site.phases if self.site.phases < PHASES else PHASES):
            if envelope_ma[phase] < pool:
                pool = envelope_ma[phase]
        for index in range(len(self.chargers)):
            charger = self.chargers[index]
            mode = self._modes[index]
            wants = mode == MODE_FAST or mode == MODE_MANUAL
            self._min[index] = charger.min_ma
            self._max[index] = charger.max_ma
            demand = targets_ma[index] if wants and self._plugged[index] else 0
            self._floor[index] = 0
            if demand:
                cap_w = self._takes_less(index, statuses[index])
                if cap_w == 0:
                    # Full: offered its minimum, so it may start again, but
                    # it holds nothing back from the others.
                    self._floor[index] = charger.min_ma
                    demand = 0
                elif cap_w > 0:
                    cap_ma = cap_w * 1000 // (charger.phases * self.site.voltage_v)
                    if cap_ma < demand:
                        demand = cap_ma
            self._demand[index] = demand
        allocate(self.opt.distribution, self.order, self._min, self._max, self._demand, pool, self._share)
        for index in range(len(self.chargers)):
            if self._floor[index]:
                targets_ma[index] = self._floor[index]
            elif self._demand[index]:
                targets_ma[index] = self._share[index]
                if not self._share[index]:
                    self.reasons[index] = REASON_SEQUENTIAL if self._sequential() else REASON_PRIORITY


def shown_reason(optimiser_reason, guard_reason):
    """The one reason to show for a charger: the guard's when it limited it, else the optimiser's.

    The guard says "ok" when the charger got its target and "off" when the
    target was 0: then the optimiser's reason tells why the target is what it
    is (solar_wait, eco, sequential, ...). Any other guard reason (breaker,
    contract, capacity, circuit, ramp, min_pause, failsafe, unavailable,
    no_car) is a limit the guard applied on top, and wins.
    """
    if guard_reason == "ok" or guard_reason == "off":
        return optimiser_reason
    return guard_reason


def _waiting(reason):
    return reason == REASON_SOLAR_WAIT or reason == REASON_EXCESS_WAIT or reason == REASON_BELOW


def _draw_w(charger, status, voltage_v):
    """What the car draws now (W): measured power, else measured current, else its offer."""
    if not status.reachable or status.car == CAR_NONE:
        return 0
    if status.power_w is not None:
        return status.power_w if status.power_w > 0 else 0
    total_ma = 0
    measured = False
    for line in range(charger.phases):
        current = status.current_ma[line]
        if current is not None:
            total_ma += current
            measured = True
    if measured:
        return total_ma * voltage_v // 1000
    if status.car == CAR_CHARGING and status.offered_ma:
        return status.offered_ma * charger.phases * voltage_v // 1000
    return 0
