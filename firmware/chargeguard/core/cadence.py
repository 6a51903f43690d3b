"""The guard's input from a meter with two cadences: a fresh total beside older per-phase values. Pure, integers.

A Norwegian/Swedish HAN meter sends its total power every 2.5 s and its
per-phase values every 10 s; an MQTT-fed meter may have them on topics of
their own. GridReading (core/model.py) then stamps them apart: `tick_ms` for
the total (import_w / export_w), `phase_tick_ms` for the per-phase values and
`phase_net_w` for the net power measured with them. core/guard.py loads this
module at the first such reading and asks it:

- `prepare()`: whether the per-phase values may be used at all (older than
  meter_timeout_ms they never are: the guard then runs on the total as for
  a totals-only meter; the failsafe watches the total's age), and when a new
  set of them has come, the house's own load per phase in the guard's three
  views (the chargers counted as they were then: the guard's draw estimate
  against the per-phase values' age) and the house's total then;
- `headroom()`: per phase, that house load plus the rise of the house's
  total since (the fresh net power less the chargers now), all of it on
  every phase (the total cannot say which; with site.balanced_load spread
  over the phases); a fall relieves no phase.

So a load switched on between two per-phase lists is cut for at the next
total, and what the chargers are given follows the total's cadence. What a
car in the middle of a change drew when the per-phase values came is known
only between the guard's low and high views: the low view (what is given
out) takes the most of a rise as the house's, the high view (whether to
pause or cut) the least consistent with one assumption of what the car drew
then (at its least or at its most), so a car picking up a start is not taken
for house load on every phase (nobody is paused for it), and a load switched
on while a car picks up a change is cut for at the next total. The values are taken again when a charger's reachability or car
presence changes (they then count as an old reading), or when the net power
that goes with them does.

Nothing here allocates per tick.
"""

from chargeguard.core.model import CAR_NONE, PHASES
from chargeguard.core.settings import SCHEME_HOUSE
from chargeguard.core.ticks import ticks_diff


class TwoCadences:
    """What the guard keeps from the last set of per-phase values (see the module doc)."""

    def __init__(self):
        self.seen = False  # the values below belong to seen_ms
        self.seen_ms = 0
        self.seen_mask = 0  # the chargers counted then (reachable, a car)
        self.seen_net_w = None  # and the net power that went with them
        self.base_ma = [0, 0, 0, 0, 0, 0, 0, 0, 0]  # the house per phase: low, high, cut views
        self.ref_w = [0, 0, 0]  # the house's total then, per view (see take())

    def prepare(self, guard, reading, statuses, now_ms):
        """True when the per-phase values are used this tick (then kept if new); False when too old."""
        phase_ms = reading.phase_tick_ms
        if ticks_diff(now_ms, phase_ms) > guard.site.meter_timeout_ms:
            guard.per_phase = False  # never taken as new: the total alone
            return False
        mask = 0
        for index in range(len(statuses)):
            status = statuses[index]
            if status.reachable and status.car != CAR_NONE:
                mask |= 1 << index
        if not self.seen or phase_ms != self.seen_ms or mask != self.seen_mask or reading.phase_net_w != self.seen_net_w:
            # A new set: the chargers as they were at its age.
            guard._grid_currents(reading)
            guard.reading_ms = phase_ms
            guard._estimate_draws(statuses, now_ms)
            self.take(guard, reading, statuses, phase_ms, mask)
            guard.reading_ms = reading.tick_ms
        return True

    def take(self, guard, reading, statuses, phase_ms, mask):
        """Keep the house's load per phase (three views) and its total, from the guard's draw estimate now."""
        site = guard.site
        base = self.base_ma
        house_scheme = site.scheme == SCHEME_HOUSE
        voltage_v = site.voltage_v
        states = guard.states
        low_w = high_w = cut_w = 0
        for phase in range(PHASES):
            low = high = cut = 0
            if not house_scheme:
                for index in range(len(states)):
                    if statuses[index].reachable:
                        state = states[index]
                        low += state.draw_low_ma[phase]
                        high += state.draw_high_ma[phase]
                        cut += state.draw_cut_ma[phase]
            grid = guard.grid_ma[phase]
            base[phase] = grid - low
            base[3 + phase] = grid - high
            base[6 + phase] = grid - cut
            low_w += low * voltage_v // 1000
            high_w += high * voltage_v // 1000
            cut_w += cut * voltage_v // 1000
        net_w = reading.phase_net_w
        if net_w is None:
            net_w = reading.net_power_w()
        net_w = net_w or 0
        # The low view's total takes the chargers at their most then (the most
        # of a rise is the house's), the high view's at their least.
        ref = self.ref_w
        ref[0] = net_w - high_w
        ref[1] = net_w - low_w
        ref[2] = net_w - cut_w
        self.seen = True
        self.seen_ms = phase_ms
        self.seen_mask = mask
        self.seen_net_w = reading.phase_net_w

    def rise_ma(self, site, net_w, draw_w, view):
        """The house's load added since the kept values (mA on a phase, >= 0); draw_w: the chargers now in `view`."""
        rise_w = net_w - draw_w - self.ref_w[view]
        if rise_w <= 0:
            return 0
        rise = -(-rise_w * 1000 // site.voltage_v)
        if site.balanced_load:
            return -(-rise // site.phases)
        return rise

    def headroom(self, guard, reading, low_w, high_w, cut_w, limit_ma):
        """The guard's three headrooms per phase (and grid_ma) from the kept house load and the total's rise."""
        site = guard.site
        net_w = reading.net_power_w() or 0
        rise_low = self.rise_ma(site, net_w, low_w, 0)
        # The high view takes the house at its least, but with one assumption
        # of what each car drew when the per-phase values were measured, for
        # the per-phase load and for the total's reference alike: the car at
        # its least then (house per phase at its most, rise at its least) or
        # at its most then (the other way round), whichever is lighter. Mixing
        # the two (the per-phase load with the car at its most, the rise with
        # it at its least) counted a car's uncertain raise twice and hid a
        # load switched on after it until the next per-phase list.
        rise_high = self.rise_ma(site, net_w, high_w, 1)
        rise_high_then = self.rise_ma(site, net_w, high_w, 0)
        rise_cut = self.rise_ma(site, net_w, cut_w, 2)
        base = self.base_ma
        for phase in range(PHASES):
            if phase >= site.phases:
                guard.headroom_ma[phase] = 0
                guard.shed_headroom_ma[phase] = 0
                guard.cut_headroom_ma[phase] = 0
                continue
            guard.headroom_ma[phase] = limit_ma - base[phase] - rise_low
            house = base[phase] + rise_high
            if base[3 + phase] + rise_high_then < house:
                house = base[3 + phase] + rise_high_then
            guard.shed_headroom_ma[phase] = limit_ma - house
            guard.cut_headroom_ma[phase] = limit_ma - base[6 + phase] - rise_cut
            guard.grid_ma[phase] = base[phase] + rise_low + guard.draw_low_ma[phase]
