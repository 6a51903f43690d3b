"""How long a load step keeps the grid above the breaker: the firmware against the simulated site.

    python tools/sim/load_step.py [--steps 3] [--step-a 9.5] [--house-a 8] [--raise-to 8] [--car-delay-s 5]

The site of `make sim` (one V2C Trydan emulator, a 3 x 25 A breaker with a 1 A margin, the sim's
guard settings: ramp 2 A per 5 s, ev_response 5 s) with the house at --house-a per phase and a car
ramping up. Right after the firmware raises the car (the emulator has received the higher
`Intensity`), the house's L1 rises by --step-a (an oven), before the car has followed the raise:
the case where the car's raise and the new load together would go over the breaker (the guard takes
such a raise back before the car takes it: core/guard.py).

Per step it samples the site's real L1 current every 10 ms and prints, in seconds from the step:
when the first telegram carrying the new load was written (the meter's period, 1 s here as DSMR 5
/ e-MUCS), when the lower `Intensity` reached the box (the guard and the command), when the car
drew it (the car's response, --car-delay-s; IEC 61851 allows 5 s), how long L1 was above the
breaker in all, and L1's highest current from the step on (over the breaker or not). Exit 1 when the
firmware never lowered the box.
"""

import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import DEFAULT_HEAP, TELEGRAM_PERIOD_S, Simulation, sim_config, wait_for  # noqa: E402

BREAKER_A = sim_config([1])["site"]["breaker_a"]  # the site of `make sim`

SAMPLE_S = 0.01  # how often the site's real current is looked at
# Starting the unix port and the first readings: bounds a firmware that never comes up.
BOOT_S = 30.0
# Ramp 2 A per ramp_interval 5 s, a raise only once the car was seen to take the last (ev_response 5 s):
# from 6 A to the step's current takes a few raises; this bounds a firmware that never raises.
RAISE_WAIT_S = 60.0


def intensities(box):
    """The box's accepted Intensity writes: (monotonic ns, whole amperes), oldest first."""
    return [(w.t_ns, int(w.value)) for w in box.writes() if w.ok and w.key == "Intensity"]


class Step:
    """One measured load step; times in s from the step (None: did not happen), currents in A."""

    def __init__(self, raised_from, raised_to, raise_before_s):
        self.raised_from = raised_from  # the box's Intensity before the raise, A
        self.raised_to = raised_to  # and after it
        self.raise_before_s = raise_before_s  # how long before the step the box received the raise
        self.telegram_s = None  # the first telegram written after the step
        self.cut_a = None  # the first lower Intensity the box received after the step
        self.cut_s = None
        self.over_from_s = None  # L1 above the breaker: first and last sample
        self.over_to_s = None
        self.over_s = 0.0  # how long, to the sampling step
        self.peak_a = 0.0  # L1's highest from the step until it has been under the breaker long enough

    def text(self, number, breaker_a, car_delay_s):
        def at(seconds):
            return "-" if seconds is None else "%.2f s" % seconds

        over = "0 s" if self.over_from_s is None else "%.2f s (%s to %s)" % (
            self.over_s, at(self.over_from_s), at(self.over_to_s))
        return ("step %d: raise %d -> %d A %.2f s before; telegram with the load at %s, cut to %s A at the box at %s,"
                " car drew it at %s; L1 over %d A for %s (highest %.1f A)"
                % (number, self.raised_from, self.raised_to, self.raise_before_s, at(self.telegram_s),
                   "-" if self.cut_a is None else self.cut_a, at(self.cut_s),
                   at(None if self.cut_s is None else self.cut_s + car_delay_s), breaker_a, over, self.peak_a))


def measure(steps=3, step_a=9.5, house_a=8.0, raise_to=8.0, car_delay_s=5.0, say=print):
    """Run the site and yield a Step per load step; say(text) gets the site line first.

    Raises RuntimeError when the firmware never commands the box (BOOT_S) or never raises it (RAISE_WAIT_S).
    """
    sim = Simulation(heap=DEFAULT_HEAP, car_delay_s=car_delay_s, run_name="load-step")
    breaker_ma = sim.config["site"]["breaker_a"] * 1000
    box = sim.trydan
    house = (house_a,) * 3
    sim.site.set_house(house)
    sent = []  # monotonic ns of every telegram written
    stop = threading.Event()

    def meter():
        next_send = time.monotonic()
        while not stop.is_set():
            written = sim.send_telegram()
            if written is not None:
                sent.append(written)
            next_send += TELEGRAM_PERIOD_S
            time.sleep(max(0.0, next_send - time.monotonic()))

    thread = threading.Thread(target=meter, daemon=True)
    thread.start()
    try:
        if not wait_for(lambda: intensities(box), BOOT_S, 0.05):
            raise RuntimeError("the firmware never commanded the box within %g s: %s" % (BOOT_S, sim.lines[-5:]))
        say("load_step: breaker %d A, house %g A a phase, step +%g A on L1, car delay %g s, telegram every %g s"
            % (breaker_ma // 1000, house_a, step_a, car_delay_s, TELEGRAM_PERIOD_S))
        for _ in range(steps):
            seen = len(intensities(box))

            def raised():
                writes = intensities(box)[seen - 1:]
                return len(writes) > 1 and writes[-1][1] > writes[-2][1] and writes[-1][1] >= raise_to

            if not wait_for(raised, RAISE_WAIT_S, SAMPLE_S / 2):
                raise RuntimeError("no raise to %g A or more within %g s (the box got %s A; the firmware said: %s)"
                                   % (raise_to, RAISE_WAIT_S, [a for _, a in intensities(box)[seen - 1:]],
                                      sim.lines[-3:]))
            (_, raised_from), (raise_ns, raised_to) = intensities(box)[-2:]
            step_ns = time.monotonic_ns()
            sim.site.set_house((house_a + step_a,) + house[1:])
            step = Step(raised_from, raised_to, (step_ns - raise_ns) / 1e9)
            over_first = over_last = None
            quiet_since = time.monotonic()
            # Until L1 has been under the breaker for the car's delay plus two telegrams (nothing pending).
            while time.monotonic() - quiet_since < car_delay_s + 2 * TELEGRAM_PERIOD_S:
                now_ns = time.monotonic_ns()
                l1 = sim.site.grid_currents_ma()[0]
                step.peak_a = max(step.peak_a, l1 / 1000)
                if l1 > breaker_ma:
                    over_first = over_first or now_ns
                    over_last = now_ns
                    quiet_since = time.monotonic()
                time.sleep(SAMPLE_S)
            cuts = [(t, a) for t, a in intensities(box) if t > step_ns and a < raised_to]
            telegram = next((t for t in sent if t > step_ns), None)
            step.telegram_s = None if telegram is None else (telegram - step_ns) / 1e9
            if cuts:
                step.cut_s, step.cut_a = (cuts[0][0] - step_ns) / 1e9, cuts[0][1]
            if over_first is not None:
                step.over_from_s = (over_first - step_ns) / 1e9
                step.over_to_s = (over_last - step_ns) / 1e9
                step.over_s = (over_last - over_first) / 1e9 + SAMPLE_S
            yield step
            sim.site.set_house(house)
    finally:
        stop.set()
        thread.join(timeout=2)
        sim.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="load steps to measure (default %(default)s)")
    parser.add_argument("--step-a", type=float, default=9.5, help="the load step on L1, A (default %(default)s)")
    parser.add_argument("--house-a", type=float, default=8.0, help="the house per phase before the step, A")
    parser.add_argument("--raise-to", type=float, default=8.0, help="step right after a raise to this current or more, A")
    parser.add_argument("--car-delay-s", type=float, default=5.0, help="how long the car takes to follow a limit")
    args = parser.parse_args()
    failed = False
    try:
        for number, step in enumerate(measure(args.steps, args.step_a, args.house_a, args.raise_to, args.car_delay_s), 1):
            print(step.text(number, BREAKER_A, args.car_delay_s))
            failed = failed or step.cut_s is None
    except RuntimeError as error:
        sys.exit("load_step: %s" % error)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
