"""How long a load step keeps the grid above the breaker: the firmware against the simulated site.

    python tools/sim/load_step.py [--steps 3] [--step-a 9.5] [--house-a 8] [--raise-to 8] [--car-delay-s 5]

The site of `make sim` (one V2C Trydan emulator, a 3 x 25 A breaker with a 1 A margin, the sim's
guard settings: ramp 2 A per 5 s, ev_response 5 s) with the house at --house-a per phase and a car
ramping up. Right after the firmware raises the car (the emulator has received the higher
`Intensity`), the house's L1 rises by --step-a (an oven), before the car has followed the raise:
the case where the car's raise and the new load together go over the breaker.

Per step it samples the site's real L1 current every 10 ms and prints, in seconds from the step:
when the first telegram carrying the new load was written (the meter's period, 1 s here as DSMR 5
/ e-MUCS), when the lower `Intensity` reached the box (the guard and the command), when the car
drew it (the car's response, --car-delay-s; IEC 61851 allows 5 s), and how long L1 was above the
breaker in all, with its highest current. Exit 1 when the firmware never cut.
"""

import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import DEFAULT_HEAP, TELEGRAM_PERIOD_S, Simulation, wait_for  # noqa: E402

SAMPLE_S = 0.01  # how often the site's real current is looked at
# Starting the unix port and the first readings: bounds a firmware that never comes up.
BOOT_S = 30.0
# Ramp 2 A per ramp_interval 5 s, a raise only once the car was seen to take the last (ev_response 5 s):
# from 6 A to the step's current takes a few raises; this bounds a firmware that never raises.
RAISE_WAIT_S = 60.0


def intensities(box):
    """The box's accepted Intensity writes: (monotonic ns, whole amperes), oldest first."""
    return [(w.t_ns, int(w.value)) for w in box.writes() if w.ok and w.key == "Intensity"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="load steps to measure (default %(default)s)")
    parser.add_argument("--step-a", type=float, default=9.5, help="the load step on L1, A (default %(default)s)")
    parser.add_argument("--house-a", type=float, default=8.0, help="the house per phase before the step, A")
    parser.add_argument("--raise-to", type=float, default=8.0, help="step right after a raise to this current or more, A")
    parser.add_argument("--car-delay-s", type=float, default=5.0, help="how long the car takes to follow a limit")
    args = parser.parse_args()

    sim = Simulation(heap=DEFAULT_HEAP, car_delay_s=args.car_delay_s, run_name="load-step")
    breaker_ma = sim.config["site"]["breaker_a"] * 1000
    box = sim.trydan
    house = (args.house_a,) * 3
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
    failed = False
    try:
        if not wait_for(lambda: intensities(box), BOOT_S, 0.05):
            sys.exit("load_step: the firmware never commanded the box within %g s" % BOOT_S)
        print("load_step: breaker %d A, house %g A a phase, step +%g A on L1, car delay %g s, telegram every %g s"
              % (breaker_ma // 1000, args.house_a, args.step_a, args.car_delay_s, TELEGRAM_PERIOD_S))
        for number in range(1, args.steps + 1):
            seen = len(intensities(box))

            def raised():
                writes = intensities(box)[seen - 1:]
                return len(writes) > 1 and writes[-1][1] > writes[-2][1] and writes[-1][1] >= args.raise_to

            if not wait_for(raised, RAISE_WAIT_S, SAMPLE_S / 2):
                sys.exit("load_step: no raise to %g A or more within %g s (the box got %s A; the firmware said: %s)"
                         % (args.raise_to, RAISE_WAIT_S, [a for _, a in intensities(box)[seen - 1:]], sim.lines[-3:]))
            (_, raised_from), (raise_ns, raised_to) = intensities(box)[-2:]
            step_ns = time.monotonic_ns()
            sim.site.set_house((args.house_a + args.step_a,) + house[1:])
            over_first = over_last = None
            peak = 0
            quiet_since = time.monotonic()
            # Until L1 has been under the breaker for the car's delay plus two telegrams (nothing pending).
            while time.monotonic() - quiet_since < args.car_delay_s + 2 * TELEGRAM_PERIOD_S:
                now_ns = time.monotonic_ns()
                l1 = sim.site.grid_currents_ma()[0]
                if l1 > breaker_ma:
                    over_first = over_first or now_ns
                    over_last = now_ns
                    peak = max(peak, l1)
                    quiet_since = time.monotonic()
                time.sleep(SAMPLE_S)
            cuts = [(t, a) for t, a in intensities(box) if t > step_ns and a < raised_to]
            telegram = next((t for t in sent if t > step_ns), None)

            def at(ns):
                return "%.2f s" % ((ns - step_ns) / 1e9) if ns else "-"

            if not cuts:
                failed = True
            cut_ns = cuts[0][0] if cuts else None
            print("step %d: raise %d -> %d A %.2f s before; telegram with the load at %s, cut to %d A at the box at %s,"
                  " car drew it at %s; L1 over %d A for %s (highest %.1f A)"
                  % (number, raised_from, raised_to, (step_ns - raise_ns) / 1e9, at(telegram), cuts[0][1] if cuts else 0,
                     at(cut_ns), at(cut_ns + int(args.car_delay_s * 1e9)) if cut_ns else "-", breaker_ma // 1000,
                     "%.2f s (%s to %s)" % ((over_last - over_first) / 1e9 + SAMPLE_S, at(over_first), at(over_last))
                     if over_first else "0 s", peak / 1000))
            sim.site.set_house(house)
    finally:
        stop.set()
        thread.join(timeout=2)
        sim.stop()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
