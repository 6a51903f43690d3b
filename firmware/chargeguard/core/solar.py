"""Surplus regulation of one charger: the `solar`, `eco` and `excess` modes.

Vocabulary and rules are EVCM's (seed evcm-smart-charging-manager.md, sections
6, 10, 12, 15, 23), so its users find them again; powers are NET POWER AT THE
GRID, EXPORT POSITIVE, in W (EVCM's sign; the rest of the core counts import
positive):

- upper threshold: a car that is not charging may start once the export is at
  or above it, continuously for `start_delay` (EVCM's "upper start debounce");
- lower threshold: a charging car pauses once the net power is below it
  (import beyond it), continuously for `stop_delay` (EVCM's "sustain");
- the timers reset on the boundaries: export == upper counts as "at or above",
  net == lower does not count as "below", and one tick on the other side
  restarts the delay from zero;
- net power target: the balance the current regulation centres on, kept at
  least 300 W above the lower threshold (OptimiserSettings.net_target_w);
- the step thresholds of the supply profile (core/profiles.py): while
  charging, nothing changes while the balance stays within
  [target - step_down_w, target + step_up_w); outside it EVCM moves 1 A per scan.
  Here the new current comes straight from the known surplus instead:
  surplus = export + what the car draws now (W), and the current is
  (surplus - target) / (phases x V) rounded down to whole amperes, so a
  small deviation gives EVCM's +-1 A and a large one goes there in one move;
  for a 1-phase car all of the surplus is offered on its one phase (P1 meters
  net the phases, and the guard keeps that phase under its breaker);
- minimum on / off times: a started car runs at least `min_on`, a stopped one
  rests at least `min_off`, whatever the thresholds say.

The modes (Dynamic OCPP EVSE's Charge Modes guide for eco and excess):
- `solar`: surplus only, with the start/stop hysteresis above;
- `eco`: at least the charger's minimum whatever the surplus, plus the surplus
  above it (Dynamic OCPP's "max(solar available, min current)"); it never
  pauses on its own;
- `excess`: the threshold (default 13000 W) takes the place of both band
  thresholds and of the target: the car may start once the export it would
  see without itself (surplus) is above the threshold for start_delay, takes
  max(min, (surplus - threshold) / (phases x V)) (Dynamic OCPP's rule), and
  pauses once the surplus is at or below the threshold for stop_delay.

A target of 0 means "do not charge"; `reason` says why, one of REASON_*.
Everything is an integer; tick() allocates nothing.
"""

from micropython import const

from chargeguard.core.profiles import step_down_w, step_up_w
from chargeguard.core.settings import MODE_ECO, MODE_EXCESS, MODE_SOLAR  # noqa: F401 (re-exported)
from chargeguard.core.ticks import ticks_diff

SURPLUS_MODES = (MODE_ECO, MODE_SOLAR, MODE_EXCESS)

REASON_SOLAR = "solar"  # charging on surplus
REASON_EXCESS = "excess"  # charging on the export beyond the excess threshold
REASON_ECO = "eco"  # eco mode at its minimum: the surplus does not cover it
REASON_SOLAR_WAIT = "solar_wait"  # waiting for export >= upper threshold
REASON_EXCESS_WAIT = "excess_wait"  # waiting for export > excess threshold
REASON_START_DELAY = "solar_start_delay"  # at/above the start threshold, delay running
REASON_MIN_OFF = "solar_min_off"  # start delay done, resting out min_off
REASON_STOP_DELAY = "solar_stop_delay"  # below the lower threshold, sustain running
REASON_MIN_ON = "solar_min_on"  # sustain done, running out min_on
REASON_BELOW = "below_threshold"  # paused by the lower threshold, waiting to restart

STEP_MA = const(1000)  # EVCM regulates in whole amperes


class SolarRegulator:
    """The start/stop and current decision for one charger in a surplus mode.

    The optimiser's view, plain attributes for the site state (W export
    positive, ms): export_w, surplus_w, upper_w, lower_w, net_target_w (net
    power target in force), start_timer_ms / stop_timer_ms (how long the
    start delay / sustain has run, 0 when not running), running, target_ma
    (the current it asks for, mA), reason.
    """

    def __init__(self):
        self.running = False
        self.target_ma = 0
        self.reason = REASON_SOLAR_WAIT
        self.stopped = False  # paused by the lower threshold since it last ran
        self.start_timing = False
        self.start_since_ms = 0
        self.stop_timing = False
        self.stop_since_ms = 0
        self.switched_once = False
        self.switched_ms = 0  # when it last started or stopped
        self.export_w = 0
        self.surplus_w = 0
        self.upper_w = 0
        self.lower_w = 0
        self.net_target_w = 0
        self.start_timer_ms = 0
        self.stop_timer_ms = 0
        self._settled = True
        self._room_w = None

    def reset(self):
        """Forget the session: after an unplug or a mode change (no min_off owed)."""
        self.running = False
        self.target_ma = 0
        self.reason = REASON_SOLAR_WAIT
        self.stopped = False
        self.start_timing = False
        self.stop_timing = False
        self.switched_once = False
        self.start_timer_ms = 0
        self.stop_timer_ms = 0

    def tick(self, opt, mode, charger, phases, voltage_v, export_w, draw_w, now_ms, settled=True, room_w=None):
        """The target (mA, 0 = do not charge) for this tick; sets `reason`.

        opt: OptimiserSettings; mode: MODE_ECO/SOLAR/EXCESS; charger: its
        ChargerSettings (min_ma, max_ma); phases: the phases it charges on now;
        voltage_v: phase voltage; export_w: net power at the grid as this
        charger sees it (W, export positive); draw_w: what the car draws now
        (W); now_ms: ticks; settled: False while export and draw may not
        belong together (the meter has not yet seen the car follow the last
        change, or no new reading came since the last tick): the current is
        then held, as a surplus computed from them could be off by the step
        just made. Starts, pauses and their timers go on regardless.
        room_w: with several chargers, what this car could draw now with the
        grid at 0 W while the others draw what they draw (export + its own
        draw); an increase never goes beyond it, so a car does not take power
        its share promises while another still draws it (one that is about
        to pause, say). None = the share is the room (one charger).
        """
        self._settled = settled
        self._room_w = room_w
        surplus = export_w + draw_w
        self.export_w = export_w
        self.surplus_w = surplus
        if mode == MODE_EXCESS:
            upper = lower = centre = opt.excess_threshold_w
            start_ok = surplus > upper
            stop_now = surplus <= lower
        else:
            upper = opt.upper_w()
            lower = opt.lower_w()
            centre = opt.net_target_w()
            start_ok = export_w >= upper
            stop_now = export_w < lower
        self.upper_w = upper
        self.lower_w = lower
        self.net_target_w = centre
        if mode == MODE_ECO:
            self.start_timing = self.stop_timing = False
            self.start_timer_ms = self.stop_timer_ms = 0
            if not self.running:
                self.running = True
                self.switched_once = True
                self.switched_ms = now_ms
            target = self._regulate(charger, phases, voltage_v, export_w - centre, surplus - centre)
            self.reason = REASON_ECO if target <= charger.min_ma else REASON_SOLAR
            self.target_ma = target
            return target
        if self.running:
            deviation = export_w - centre
            self._while_running(opt, mode, charger, phases, voltage_v, deviation, surplus - centre, stop_now, now_ms)
        else:
            self._while_paused(opt, mode, charger, phases, voltage_v, surplus - centre, start_ok, now_ms)
        return self.target_ma

    def _while_paused(self, opt, mode, charger, phases, voltage_v, spare_w, start_ok, now_ms):
        self.stop_timing = False
        self.stop_timer_ms = 0
        self.target_ma = 0
        if not start_ok:
            self.start_timing = False
            self.start_timer_ms = 0
            if self.stopped:
                self.reason = REASON_BELOW
            else:
                self.reason = REASON_EXCESS_WAIT if mode == MODE_EXCESS else REASON_SOLAR_WAIT
            return
        if not self.start_timing:
            self.start_timing = True
            self.start_since_ms = now_ms
        elapsed = ticks_diff(now_ms, self.start_since_ms)
        self.start_timer_ms = elapsed
        if elapsed < opt.start_delay_ms:
            self.reason = REASON_START_DELAY
            return
        if self.switched_once and ticks_diff(now_ms, self.switched_ms) < opt.min_off_ms:
            self.reason = REASON_MIN_OFF
            return
        self.running = True
        self.stopped = False
        self.switched_once = True
        self.switched_ms = now_ms
        self.start_timing = False
        self.start_timer_ms = 0
        self.target_ma = self._regulate(charger, phases, voltage_v, 0, spare_w)
        self.reason = REASON_EXCESS if mode == MODE_EXCESS else REASON_SOLAR

    def _while_running(self, opt, mode, charger, phases, voltage_v, deviation_w, spare_w, stop_now, now_ms):
        self.start_timing = False
        self.start_timer_ms = 0
        if not stop_now:
            self.stop_timing = False
            self.stop_timer_ms = 0
            self.target_ma = self._regulate(charger, phases, voltage_v, deviation_w, spare_w)
            self.reason = REASON_EXCESS if mode == MODE_EXCESS else REASON_SOLAR
            return
        if not self.stop_timing:
            self.stop_timing = True
            self.stop_since_ms = now_ms
        elapsed = ticks_diff(now_ms, self.stop_since_ms)
        self.stop_timer_ms = elapsed
        if elapsed >= opt.stop_delay_ms and ticks_diff(now_ms, self.switched_ms) >= opt.min_on_ms:
            self.running = False
            self.stopped = True
            self.switched_ms = now_ms
            self.stop_timing = False
            self.stop_timer_ms = 0
            self.target_ma = 0
            self.reason = REASON_BELOW
            return
        self.target_ma = self._regulate(charger, phases, voltage_v, deviation_w, spare_w)
        self.reason = REASON_STOP_DELAY if elapsed < opt.stop_delay_ms else REASON_MIN_ON

    def _regulate(self, charger, phases, voltage_v, deviation_w, spare_w):
        """The current to offer: held inside the profile's dead band, else from the surplus.

        deviation_w: grid balance minus the target; spare_w: surplus minus the
        target, i.e. what the car may draw to put the grid on the target.
        A start (target_ma == 0) always takes the surplus value.
        """
        current = self.target_ma
        per_amp_w = phases * voltage_v
        wanted = spare_w // per_amp_w * STEP_MA  # whole amperes, rounded down
        if current == 0:
            current = wanted
        elif not self._settled:
            pass  # hold until the meter shows what the last change did
        elif deviation_w >= step_up_w(phases, voltage_v):
            if self._room_w is not None:
                room = (self._room_w - self.net_target_w) // per_amp_w * STEP_MA
                if room < wanted:
                    wanted = room
            if wanted > current:
                current = wanted
        elif deviation_w <= -step_down_w(phases, voltage_v):
            current = wanted if wanted < current else current - STEP_MA
        if current > charger.max_ma:
            current = charger.max_ma
        if current < charger.min_ma:
            current = charger.min_ma
        return current
