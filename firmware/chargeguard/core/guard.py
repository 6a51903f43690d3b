"""The load guard: keeps every phase under the breaker and the import under the contract.

The guard runs on every fresh grid reading. It works out, per site phase, the
load of the house without the chargers (base load), what is left under the
breaker, and gives each charger an offered current inside that envelope:

- base load = measured grid current - what the chargers draw on that phase,
  in two views. Low: the last offer, or the measured current when lower; a
  raise counts at the offer before it until the grid reading is
  ev_response_ms past it (or the box shows the car took it), since a car
  still catching up with a raise would make the house look lighter than
  it is. High: the most the car may draw (the old current of a cut for
  ev_response_ms, the new one of a raise). Current is given out from the
  low view; whether to pause or cut from the high one;
- a meter that gives totals only (phase_count 0: DSMR 2.2/3.0, any meter
  without per-phase current or power) cannot say on which phase the house
  load sits. The base load is then the total minus what the chargers draw,
  and by default all of it is assumed to be on every phase at once (one
  9 kW cooker on L1 counts as 39 A on L1, L2 and L3): the worst case, safe
  whatever the split. An export (PV) is not assumed to relieve any phase:
  the base load is at least 0. With `site.balanced_load` the installer
  declares it spread evenly instead (base / phases per phase), which gives
  the chargers more but lets a large single-phase load overload its phase;
- available = breaker - margin - base load, and the contracted import power
  shared over the chargers' phases; the capacity tariff's allowance
  (`import_cap_w`, core/capacity.py) caps the import too when it is lower;
- a charger gets at most min(target, max, circuit limit, what is available);
- a charger above what the high view allows is cut at once (to what fits
  with every car at its offer); between the low and the high view it keeps
  its offer, because the cars' pending changes explain the gap: a car still
  following a cut is not cut again, nobody is cut for a raise in progress;
- but a raise the car has not been seen to take is taken back at once, to
  what the low view allows, when with the car at its old current and the
  new offer on top one of its phases would be above the breaker itself
  (breaker_ma: within margin_ma it stands, the margin being the hysteresis;
  the import limits never take a raise back, being averages, not a
  breaker), and on that phase a load came since: the cut view (every car at
  its offer) is heavier than the low view was when the raise was given.
  Without that, a car quicker than ev_response_ms on a box that does not
  report its current (the next reading shows it at the raise, which the
  low view counts as house load) had raises near the limit taken back and
  given again for ever. So a load no larger than the raises in progress on
  its phase cannot be told from the cars taking them and the raises stand
  (the phase then at most those raises less the margin above the breaker);
  with two cadences, between two per-phase lists, the raises' power is the
  slack (a rise of the total is put on every phase). When even the minimum
  does not fit, the raise goes back to the minimum but the charger is not
  paused at once: the high view still counts the car at the offer it was
  given (it may have taken it), for ev_response_ms; it is paused at the
  first reading after that which still shows no room, or at once when its
  box measures the car after the take-back. Not handled: a pause at the
  take-back's reading (the guard before the take-back cut such a raise to
  the cut view's allowance there and paused at the same time);
- an increase is rate-limited (`ramp_step_ma` per `ramp_interval_ms`, and
  not before the grid reading is `ev_response_ms` past the last raise)
  because a car needs up to ~5 s to follow a new limit (IEC 61851) and an
  increase it has not been seen to take would oscillate with it;
- when even the minimum current of every running charger does not fit,
  chargers are paused one by one, lowest priority first, until the rest fit,
  and a paused charger stays paused for `min_pause_ms`; one that is not
  running is started only when the minimums fit with the cars counted at
  the least they may draw (room the reading shows);
- with no fresh reading for `meter_timeout_ms` every charger gets its
  failsafe current (0 = paused) until readings return;
- a meter with two cadences (GridReading.phase_tick_ms set: a HAN meter's
  total every 2.5 s and phases every 10 s, an MQTT-fed meter) is used at
  both ages: the per-phase values as the base, the fresh total's rise since
  on every phase; old per-phase values are never used (core/cadence.py,
  loaded only for such a meter).

All arithmetic is integer; nothing here allocates per tick.
"""

from micropython import const

from chargeguard.core.model import CAR_NONE, PHASES
from chargeguard.core.settings import SCHEME_HOUSE
from chargeguard.core.ticks import ticks_diff

# Reason codes shown to the user, one per charger per decision.
REASON_OK = "ok"  # at its target, nothing limits it
REASON_OFF = "off"  # mode off, disabled, or no target
REASON_BREAKER = "breaker"  # limited by a phase's breaker headroom
REASON_CONTRACT = "contract"  # limited by the contracted import power
REASON_CAPACITY = "capacity"  # limited by the capacity tariff's quarter-hour budget
REASON_CIRCUIT = "circuit"  # limited by the charger's own circuit
REASON_RAMP = "ramp"  # increasing, rate-limited
REASON_MIN_PAUSE = "min_pause"  # paused by the guard, waiting out min_pause
REASON_FAILSAFE = "failsafe"  # no valid meter reading
REASON_UNAVAILABLE = "unavailable"  # the charger does not answer
REASON_NO_CAR = "no_car"  # nothing plugged in: kept at its minimum

# Offers are whole multiples of this: no charger resolves finer than 0.1 A,
# and W->A rounding noise must not show up as a change.
CURRENT_STEP_MA = const(100)
_BIG = const(1 << 29)  # "no limit" that stays a small int on a 32-bit port
# A power budget above this (W) limits no charger: 630 A x 3 x 260 V is under
# 500 kW. Below it, budget * 1000 (mA) stays a small int on a 32-bit port (an
# ESP32), where a larger product is a heap-allocated long int on every tick.
_ROOM_LIMIT_W = const(1000000)
# A box measuring the car within this of its offer has shown it took a raise:
# most wallboxes resolve whole amperes (an offer of 9.5 A is 9 A at the car).
_TAKEN_SLACK_MA = const(1000)


class _ChargerState:
    """What the guard remembers about one charger between ticks."""

    def __init__(self):
        self.offered_ma = 0
        # The offer before the last change, and whether that change was an
        # increase: until the car has had ev_response_ms to follow a raise
        # it may still draw prev_ma, and counting it at the new offer would
        # make the house look lighter than it is.
        self.prev_ma = 0
        self.raised = False
        self.took_raise = False  # its box has shown the car took the last raise
        self.changed_ms = 0
        self.changed_once = False
        # The highest offer of the last ev_response_ms: a car that lags a
        # cut may still draw it.
        self.high_ma = 0
        self.high_since_ms = 0
        self.paused_by_guard = False
        self.paused_ms = 0
        self.pause_reason = REASON_BREAKER
        # Estimated draw per site phase this tick, two views. Low: the least
        # the car may draw (the last offer, the offer before a raise it has
        # not been seen to follow, or a lower settled measurement); current
        # is given out from it, so the house never looks lighter than it
        # is. High: the most it may draw (the highest offer of the response
        # time, the new offer of a raise in progress); whether to pause,
        # and whether a charger must be cut again, is decided on it, so a
        # car that lags one cut gets neither a second charger paused nor
        # itself cut again.
        self.draw_low_ma = [0, 0, 0]
        self.draw_high_ma = [0, 0, 0]
        # The low view with a raise in progress counted at its new offer:
        # what a cut goes down to (as deep as needed if the car has taken
        # the raise, no deeper).
        self.draw_cut_ma = [0, 0, 0]
        # Per charger line, the low view's headroom (mA) on its site phase
        # when the last raise was given: whether the house rose since.
        self.raise_room_ma = [0, 0, 0]


class Guard:
    """The guard for one site and its chargers.

    `chargers` is a list of ChargerSettings; commands come back in the same
    order through `commands` (a list of ChargerCommand owned by the caller).
    """

    def __init__(self, site, chargers):
        self.site = site
        self.chargers = chargers
        self.states = [_ChargerState() for _ in chargers]
        # Indices in priority order (1 = first), fixed by the configuration.
        order = list(range(len(chargers)))
        order.sort(key=lambda index: chargers[index].priority)
        self.order = order
        self.active = [False] * len(chargers)
        # Phase currents the guard works with: measured, or with a totals-only
        # meter the base load it assumes plus the chargers' draw.
        self.grid_ma = [0, 0, 0]
        self.draw_low_ma = [0, 0, 0]  # what the chargers draw per phase, this tick
        self.draw_high_ma = [0, 0, 0]
        self.headroom_ma = [0, 0, 0]
        self.shed_headroom_ma = [0, 0, 0]
        self.left_ma = [0, 0, 0]  # headroom not yet given out, this tick
        self.left_high_ma = [0, 0, 0]  # the same in the high view
        self.left_cut_ma = [0, 0, 0]  # and in the cut view
        self.budget_high_left_w = 0  # power budget not yet given out, high view
        self.budget_cut_left_w = 0  # and cut view
        self.draw_cut_ma = [0, 0, 0]
        self.cut_headroom_ma = [0, 0, 0]
        self.cut_budget_w = _BIG
        self.shed_budget_w = _BIG
        # How much lighter than the house the cut view may show it on a
        # phase from raises in progress (mA): 0, but with two cadences the
        # raises' power as a rise of the total, on one phase (_headroom).
        self.raise_slack_ma = 0
        self.reading_ms = 0  # tick of the grid reading in use
        self.per_phase = False  # its per-phase values are used this tick (not: totals only)
        self.cadence = None  # core/cadence.TwoCadences once a two-cadence reading came
        self.failsafe = False  # True while there is no valid reading
        self.budget_w = _BIG
        # Import (W) the capacity tariff allows now (core/capacity.py), set by
        # the caller before each tick; None = no such cap. The lower of it
        # and the contracted max_import_w applies.
        self.import_cap_w = None
        self.import_limit_reason = REASON_CONTRACT

    def tick(self, reading, statuses, targets_ma, now_ms, commands):
        """Decide one command per charger.

        reading: GridReading or None; statuses: ChargerStatus per charger;
        targets_ma: what each charger's mode asks for (0 = nothing);
        commands: ChargerCommand per charger, filled in place.
        """
        site = self.site
        if reading is None or ticks_diff(now_ms, reading.tick_ms) > site.meter_timeout_ms:
            self._failsafe(now_ms, commands)
            return
        self.failsafe = False
        self.per_phase = reading.phase_count > 0
        self.reading_ms = reading.tick_ms
        split = False
        if reading.phase_tick_ms is not None and self.per_phase:
            # A meter with two cadences: core/cadence.py, loaded for it only.
            if self.cadence is None:
                from chargeguard.core.cadence import TwoCadences

                self.cadence = TwoCadences()
            split = self.cadence.prepare(self, reading, statuses, now_ms)
        self._grid_currents(reading)
        self._estimate_draws(statuses, now_ms)
        self._headroom(reading, statuses, split)
        self._choose_active(statuses, targets_ma, now_ms)
        self._allocate(statuses, targets_ma, now_ms, commands)

    # -- failsafe ---------------------------------------------------------

    def _failsafe(self, now_ms, commands):
        self.failsafe = True
        for index in range(len(self.chargers)):
            charger = self.chargers[index]
            state = self.states[index]
            offered = charger.failsafe_ma
            if offered:
                offered = min(offered, charger.max_ma, charger.circuit_ma)
            if not charger.enabled:
                offered = 0
            self._set_offered(state, offered, now_ms)
            commands[index].offered_ma = offered
            commands[index].reason = REASON_FAILSAFE

    # -- measurements -----------------------------------------------------

    def _grid_currents(self, reading):
        grid = self.grid_ma
        for phase in range(PHASES):
            grid[phase] = reading.current_ma[phase] if self.per_phase and phase < reading.phase_count else 0
        # Totals only: _headroom works the phases out from the total.

    def _estimate_draws(self, statuses, now_ms):
        ev_response_ms = self.site.ev_response_ms
        voltage_v = self.site.voltage_v
        for index in range(len(self.chargers)):
            charger = self.chargers[index]
            state = self.states[index]
            status = statuses[index]
            low = state.draw_low_ma
            high = state.draw_high_ma
            cut = state.draw_cut_ma
            for phase in range(PHASES):
                low[phase] = 0
                high[phase] = 0
                cut[phase] = 0
            if status.reachable and status.car == CAR_NONE:
                continue  # nothing plugged in draws nothing
            # Not measured: the car draws what it was offered, or after a cut
            # up to ev_response_ms, perhaps still the old current; after a
            # raise, until the grid reading is ev_response_ms younger than
            # it, perhaps still the old current (low view).
            low_estimate = high_estimate = state.offered_ma
            if ticks_diff(now_ms, state.high_since_ms) < ev_response_ms and state.high_ma > high_estimate:
                high_estimate = state.high_ma
            offered = state.offered_ma
            # Whether the grid reading is ev_response_ms past the last change:
            # it then shows the car's answer to it.
            seen = not state.changed_once or ticks_diff(self.reading_ms, state.changed_ms) >= ev_response_ms
            raising = state.raised and not seen
            if raising:
                low_estimate = state.prev_ma
            # How old the box's measurement is against our last command:
            # taken after it, it shows what the car does since (`fresh`);
            # taken once the car had ev_response_ms to follow, it shows
            # what the car settled on (`settled`).
            since_change_ms = ticks_diff(status.tick_ms, state.changed_ms)
            fresh = not state.changed_once or since_change_ms >= 0
            settled = not state.changed_once or since_change_ms >= ev_response_ms
            took = status.reachable and fresh
            for line in range(charger.phases):
                measured = None
                if status.reachable:
                    measured = status.current_ma[line]
                    if measured is None and status.power_w is not None:
                        # Boxes that report only power: spread it over the
                        # charger's phases (exact for a car on all of them).
                        measured = status.power_w * 1000 // (voltage_v * charger.phases)
                phase = charger.phase_map[line]
                if measured is None or measured + _TAKEN_SLACK_MA <= offered:
                    took = False
                if measured is None:
                    low[phase] += low_estimate
                    high[phase] += high_estimate
                    cut[phase] += offered
                    continue
                cut[phase] += measured if settled and measured < offered else offered
                if state.raised and not settled:
                    # Taken before the car had to follow the last raise: it
                    # drew at least that then, and may draw the new offer now.
                    low[phase] += measured if measured < offered else offered
                    high[phase] += measured if measured > high_estimate else high_estimate
                else:
                    # Below the offer once settled: a car that takes less than
                    # offered. Anything else may be a car still on its way
                    # to the offer (either way): count the offer.
                    low[phase] += measured if settled and measured < low_estimate else low_estimate
                    most = high_estimate
                    if measured > most:
                        # Above the offer: a car on its way down (until the
                        # reading is ev_response_ms past the cut), or one
                        # that draws more than offered (settled).
                        if settled or not seen:
                            most = measured
                    elif fresh:
                        most = measured  # taken after the cut: it can only go lower
                    high[phase] += most

            if took and state.raised:
                state.took_raise = True

    def _headroom(self, reading, statuses, split=False):
        """What the commandable chargers may draw together, per phase and in power.

        Three views, by how each car is counted: `headroom_ma`/`budget_w` at
        the least it may draw (current is given out from these),
        `shed_headroom_ma`/`shed_budget_w` at the most it may draw (whether
        to pause, and whether to cut, is decided on these), and
        `cut_headroom_ma`/`cut_budget_w` at its last offer or a lower
        settled measurement (what a cut goes down to).
        An unreachable charger cannot be commanded: whatever it draws stays
        in the grid reading and is not given back to the others.
        """
        site = self.site
        voltage_v = site.voltage_v
        limit_ma = site.breaker_ma - site.margin_ma
        house_scheme = site.scheme == SCHEME_HOUSE
        draw_low = self.draw_low_ma
        draw_high = self.draw_high_ma
        draw_cut = self.draw_cut_ma
        low_w = 0
        high_w = 0
        cut_w = 0
        for phase in range(PHASES):
            low = 0
            high = 0
            cut = 0
            if not house_scheme:
                for index in range(len(self.states)):
                    if statuses[index].reachable:
                        state = self.states[index]
                        low += state.draw_low_ma[phase]
                        high += state.draw_high_ma[phase]
                        cut += state.draw_cut_ma[phase]
            draw_low[phase] = low
            draw_high[phase] = high
            draw_cut[phase] = cut
            low_w += low * voltage_v // 1000
            high_w += high * voltage_v // 1000
            cut_w += cut * voltage_v // 1000
        totals_only = not self.per_phase
        base_low = base_high = base_cut = 0
        if totals_only:
            # The house's own load in mA on one phase, rounded up: the total
            # less the chargers (counted low for the offers, so the house
            # looks heavier; high for shedding, as with per-phase readings).
            net_w = reading.net_power_w() or 0
            base_low = self._totals_base(low_w, net_w)
            base_high = self._totals_base(high_w, net_w)
            base_cut = self._totals_base(cut_w, net_w)
        grid = self.grid_ma
        self.raise_slack_ma = 0
        if split:
            self.cadence.headroom(self, reading, low_w, high_w, cut_w, limit_ma)
            # The per-phase values counted a car at a raise it had not taken
            # yet and the total's reference with them: its catching up shows
            # as a rise of the total, which is put on every phase.
            slack = -(-(cut_w - low_w) * 1000 // voltage_v)
            if site.balanced_load:
                slack = -(-slack // site.phases)
            self.raise_slack_ma = slack
        for phase in range(0 if split else PHASES):
            if phase >= site.phases:
                self.headroom_ma[phase] = 0
                self.shed_headroom_ma[phase] = 0
                self.cut_headroom_ma[phase] = 0
            elif totals_only:
                grid[phase] = base_low + draw_low[phase]
                self.headroom_ma[phase] = limit_ma - base_low
                self.shed_headroom_ma[phase] = limit_ma - base_high
                self.cut_headroom_ma[phase] = limit_ma - base_cut
            else:
                self.headroom_ma[phase] = limit_ma - grid[phase] + draw_low[phase]
                self.shed_headroom_ma[phase] = limit_ma - grid[phase] + draw_high[phase]
                self.cut_headroom_ma[phase] = limit_ma - grid[phase] + draw_cut[phase]
        self.budget_w = self.shed_budget_w = self.cut_budget_w = _BIG
        limit_w = site.max_import_w
        self.import_limit_reason = REASON_CONTRACT
        cap_w = self.import_cap_w
        if cap_w is not None and (not limit_w or cap_w < limit_w):
            limit_w = cap_w
            self.import_limit_reason = REASON_CAPACITY
        if limit_w or cap_w is not None:
            net_w = reading.net_power_w()
            if net_w is None:
                net_w = 0
                for phase in range(site.phases):
                    net_w += self.grid_ma[phase] * voltage_v // 1000
            self.budget_w = limit_w - net_w + low_w
            self.shed_budget_w = limit_w - net_w + high_w
            self.cut_budget_w = limit_w - net_w + cut_w

    def _totals_base(self, draw_w, net_w):
        """A totals-only meter: the house's load (mA) assumed on a phase, given the chargers' draw (W)."""
        site = self.site
        base = -((draw_w - net_w) * 1000 // site.voltage_v)
        if site.balanced_load:
            return -(-base // site.phases)
        # Worst case: all of it on any one phase; export relieves none.
        return base if base > 0 else 0

    # -- decisions --------------------------------------------------------

    def _choose_active(self, statuses, targets_ma, now_ms):
        """Which chargers run this tick: shed lowest priority first until the minimums fit."""
        active = self.active
        min_pause_ms = self.site.min_pause_ms
        for index in self.order:
            charger = self.chargers[index]
            state = self.states[index]
            status = statuses[index]
            wanted = (
                charger.enabled
                and status.reachable
                and status.car != CAR_NONE
                and targets_ma[index] >= charger.min_ma
            )
            if wanted and state.paused_by_guard:
                wanted = ticks_diff(now_ms, state.paused_ms) >= min_pause_ms
            active[index] = wanted
        while True:
            reason = self._minimums_fit()
            if reason is None:
                break
            victim = -1
            for index in self.order:
                if active[index]:
                    victim = index
            if victim < 0:
                break
            active[victim] = False
            state = self.states[victim]
            if not state.paused_by_guard or state.offered_ma:
                state.paused_by_guard = True
                state.paused_ms = now_ms
            state.pause_reason = reason
        # A charger that is not running is started only into room the
        # reading shows: the minimums must fit in the low view too (cars at
        # the least they may draw, so the house looks heaviest). The high
        # view above keeps running chargers from being paused for a car that
        # lags a cut; starting one on it would count a car that is slow to
        # stop as room, and on a car slower than ev_response_ms that cycled a
        # charger on and off at every other reading, over the limit each time.
        while True:
            reason = self._minimums_fit(True)
            if reason is None:
                break
            starter = -1
            for index in self.order:
                if active[index] and not self.states[index].offered_ma:
                    starter = index
            if starter < 0:
                break
            active[starter] = False
            self.states[starter].pause_reason = reason

    def _minimums_fit(self, low=False):
        """None when every active charger fits at its minimum, else the binding reason.

        On the high view (cars at the most they may draw), or with `low` on
        the low one (at the least: where current is given out from).
        """
        need = self.left_ma  # scratch: _allocate fills it afresh afterwards
        for phase in range(PHASES):
            need[phase] = 0
        need_w = 0
        voltage_v = self.site.voltage_v
        for index in range(len(self.chargers)):
            if self.active[index]:
                charger = self.chargers[index]
                for line in range(charger.phases):
                    need[charger.phase_map[line]] += charger.min_ma
                need_w += charger.min_ma * charger.phases * voltage_v // 1000
        headroom = self.headroom_ma if low else self.shed_headroom_ma
        for phase in range(PHASES):
            if need[phase] > headroom[phase]:
                return REASON_BREAKER
        if need_w > (self.budget_w if low else self.shed_budget_w):
            return self.import_limit_reason
        return None

    def _allocate(self, statuses, targets_ma, now_ms, commands):
        site = self.site
        voltage_v = site.voltage_v
        headroom = self.headroom_ma
        # Work on what is left once every active charger's minimum is set
        # aside; give the rest out by priority.
        left = self.left_ma
        left_high = self.left_high_ma
        left_cut = self.left_cut_ma
        for phase in range(PHASES):
            left[phase] = headroom[phase]
            left_high[phase] = self.shed_headroom_ma[phase]
            left_cut[phase] = self.cut_headroom_ma[phase]
        budget_left = self.budget_w
        budget_high = self.shed_budget_w
        budget_cut = self.cut_budget_w
        for index in range(len(self.chargers)):
            if self.active[index]:
                charger = self.chargers[index]
                for line in range(charger.phases):
                    phase = charger.phase_map[line]
                    left[phase] -= charger.min_ma
                    left_high[phase] -= charger.min_ma
                    left_cut[phase] -= charger.min_ma
                min_w = charger.min_ma * charger.phases * voltage_v // 1000
                budget_left -= min_w
                budget_high -= min_w
                budget_cut -= min_w
        self.budget_high_left_w = budget_high
        self.budget_cut_left_w = budget_cut
        # Running chargers first, in priority order; then the others, so an
        # idle charger's standby minimum only takes what the running ones leave.
        for index in self.order:
            if self.active[index]:
                budget_left = self._give(index, targets_ma[index], budget_left, now_ms, commands[index])
        for index in self.order:
            if self.active[index]:
                continue
            charger = self.chargers[index]
            state = self.states[index]
            command = commands[index]
            if not charger.enabled or targets_ma[index] <= 0:
                state.paused_by_guard = False
                self._set_offered(state, 0, now_ms)
                command.offered_ma = 0
                command.reason = REASON_OFF
            elif not statuses[index].reachable:
                # Keep the last offer: it is what the box will apply when it
                # answers again, and it already counts as drawn.
                command.offered_ma = state.offered_ma
                command.reason = REASON_UNAVAILABLE
            else:
                self._inactive(index, statuses[index], left, budget_left, now_ms, command)

    def _give(self, index, target_ma, budget_left, now_ms, command):
        """Offer a running charger its minimum plus what it may take of what is left.

        Three allowances, one per view (_headroom): `low` (cars counted at
        the least they may draw: what may be given out), `cut` (cars at
        their offers: what a cut goes down to) and `high` (cars at the most
        they may draw). A charger above `high` is cut at once to `cut`;
        between `low` and `high` it keeps its offer: the cars' pending
        changes explain the gap, so a car still following a cut is not cut
        again, and nobody is cut because of a raise in progress, unless a
        load came since and the raise would put a phase above the breaker:
        then it is taken back to `low` (_ramp, the module doc); below
        `low` it may be raised (_ramp).
        """
        charger = self.chargers[index]
        state = self.states[index]
        left = self.left_ma
        left_high = self.left_high_ma
        left_cut = self.left_cut_ma
        voltage_v = self.site.voltage_v
        state.paused_by_guard = False
        allowed = target_ma
        reason = REASON_OK
        if charger.max_ma < allowed:
            allowed = charger.max_ma
        if charger.circuit_ma < allowed:
            allowed = charger.circuit_ma
            reason = REASON_CIRCUIT
        extra = extra_high = extra_cut = allowed - charger.min_ma
        # How far above its minimum a raise the car has not taken yet may
        # stand: the breaker alone (no margin, no import limit) in the low
        # view, on the phases where the house rose since the raise by more
        # than the cars' raises in progress explain: the cut view (which
        # counts them at their new offers) is heavier than the low view was
        # at the raise, by more than `raise_slack_ma` (_headroom).
        breaker_extra = _BIG
        room = state.raise_room_ma
        cut_headroom = self.cut_headroom_ma
        slack = self.raise_slack_ma
        for line in range(charger.phases):
            phase = charger.phase_map[line]
            if left[phase] < extra:
                extra = left[phase]
                reason = REASON_BREAKER
            if left[phase] < breaker_extra and cut_headroom[phase] + slack < room[line]:
                breaker_extra = left[phase]
            if left_high[phase] < extra_high:
                extra_high = left_high[phase]
            if left_cut[phase] < extra_cut:
                extra_cut = left_cut[phase]
        budget_high = self.budget_high_left_w
        budget_cut = self.budget_cut_left_w
        per_ma = voltage_v * charger.phases
        if budget_left < _ROOM_LIMIT_W:
            power_room_ma = budget_left * 1000 // per_ma
            if power_room_ma < extra:
                extra = power_room_ma
                reason = self.import_limit_reason
        if budget_high < _ROOM_LIMIT_W:
            power_room_ma = budget_high * 1000 // per_ma
            if power_room_ma < extra_high:
                extra_high = power_room_ma
        if budget_cut < _ROOM_LIMIT_W:
            power_room_ma = budget_cut * 1000 // per_ma
            if power_room_ma < extra_cut:
                extra_cut = power_room_ma
        if extra < 0:
            extra = 0
        extra -= extra % CURRENT_STEP_MA
        if extra_cut < extra:
            extra_cut = extra
        extra_cut -= extra_cut % CURRENT_STEP_MA
        if extra_high < extra_cut:
            extra_high = extra_cut
        extra_high -= extra_high % CURRENT_STEP_MA
        min_ma = charger.min_ma
        breaker_room_ma = min_ma + breaker_extra + self.site.margin_ma
        offered = self._ramp(
            index, min_ma, min_ma + extra, min_ma + extra_cut, min_ma + extra_high, breaker_room_ma, now_ms
        )
        if offered < min_ma + extra:
            reason = REASON_RAMP
        # Set aside what it is offered, or while it ramps what it may take:
        # the next ramp step must not find its room given to another.
        given = offered - min_ma
        if given < extra:
            given = extra
        for line in range(charger.phases):
            phase = charger.phase_map[line]
            left[phase] -= given
            left_high[phase] -= given
            left_cut[phase] -= given
        given_w = given * per_ma // 1000
        self.budget_high_left_w = budget_high - given_w
        self.budget_cut_left_w = budget_cut - given_w
        command.offered_ma = offered
        command.reason = reason
        return budget_left - given_w

    def _inactive(self, index, status, left, budget_left, now_ms, command):
        charger = self.chargers[index]
        state = self.states[index]
        if status.car == CAR_NONE:
            # Nothing plugged in: offer the minimum if it fits in what the
            # others leave, so a car that arrives starts gently and counts
            # from the next reading on.
            offered = charger.min_ma
            for line in range(charger.phases):
                if left[charger.phase_map[line]] < offered:
                    offered = 0
            if offered:
                for line in range(charger.phases):
                    left[charger.phase_map[line]] -= offered
            self._set_offered(state, offered, now_ms)
            command.offered_ma = offered
            command.reason = REASON_NO_CAR
            return
        self._set_offered(state, 0, now_ms)
        command.offered_ma = 0
        command.reason = state.pause_reason
        if state.paused_by_guard:
            # Say "min_pause" only when its minimum would fit now: then the
            # pause time is all that holds it back.
            command.reason = REASON_MIN_PAUSE
            for line in range(charger.phases):
                if left[charger.phase_map[line]] < charger.min_ma:
                    command.reason = state.pause_reason
            if charger.min_ma * charger.phases * self.site.voltage_v // 1000 > budget_left:
                command.reason = state.pause_reason  # the import limit holds it back

    def _ramp(self, index, min_ma, low_ma, cut_ma, high_ma, breaker_room_ma, now_ms):
        """The next offer of a running charger from its three allowances (see _give).

        A raise the car has not been seen to take, above breaker_room_ma
        (_give: the breaker alone, the low view, on phases where a load came
        since the raise): down to low_ma at once, still a raise from the
        car's old current when above it. Otherwise above high_ma: down to
        cut_ma at once. Between: kept. Below low_ma:
        up by at most ramp_step_ma, once ramp_interval_ms has passed since
        the last change and the car has shown it took the last raise: its
        box measured it there, or the grid reading is ev_response_ms past
        the raise (it then shows the car's answer). A start goes straight
        to the minimum.
        """
        state = self.states[index]
        offered = state.offered_ma
        if offered == 0:
            # Starting: the car starts at the minimum, whatever the ramp.
            self._raise(index, min_ma, now_ms)
            return min_ma
        site = self.site
        if (
            offered > breaker_room_ma
            and offered > low_ma
            and state.raised
            and not state.took_raise
            and ticks_diff(self.reading_ms, state.changed_ms) < site.ev_response_ms
        ):
            # A raise the car has not been seen to take, and a load came
            # since: once the car took it the phase would be above the
            # breaker. Taken back at once, before the car takes it, to what
            # the low view allows.
            prev_ma = state.prev_ma
            self._set_offered(state, low_ma, now_ms)
            if low_ma > prev_ma:
                # Still above what the car may draw: a raise from there.
                state.raised = True
                state.prev_ma = prev_ma
            return low_ma
        if offered > high_ma:
            self._set_offered(state, cut_ma, now_ms)
            return cut_ma
        if offered >= low_ma:
            return offered
        if state.changed_once:
            if ticks_diff(now_ms, state.changed_ms) < site.ramp_interval_ms:
                return offered
            if (
                state.raised
                and not state.took_raise
                and ticks_diff(self.reading_ms, state.changed_ms) < site.ev_response_ms
            ):
                return offered
        step_to = offered + site.ramp_step_ma
        if step_to > low_ma:
            step_to = low_ma
        self._raise(index, step_to, now_ms)
        return step_to

    def _raise(self, index, offered_ma, now_ms):
        """Raise a running charger to offered_ma, keeping the low view's headroom on its phases then."""
        self._set_offered(self.states[index], offered_ma, now_ms)
        charger = self.chargers[index]
        room = self.states[index].raise_room_ma
        for line in range(charger.phases):
            room[line] = self.headroom_ma[charger.phase_map[line]]

    def _set_offered(self, state, offered_ma, now_ms):
        if offered_ma == state.offered_ma:
            return
        if state.offered_ma > offered_ma:
            # Keep the highest offer of the car's response time, across
            # several cuts in a row.
            if state.high_ma <= state.offered_ma or ticks_diff(now_ms, state.high_since_ms) >= self.site.ev_response_ms:
                state.high_ma = state.offered_ma
                state.high_since_ms = now_ms
        state.raised = offered_ma > state.offered_ma
        state.took_raise = False
        state.prev_ma = state.offered_ma
        state.offered_ma = offered_ma
        state.changed_ms = now_ms
        state.changed_once = True
