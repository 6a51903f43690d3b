"""Benchmarks of the firmware on the MicroPython unix ports (make bench; a few minutes).

    python tools/bench.py [--steps 60] [--heap 112K] [--heap-only | --latency-only] [--builds mpy32,frozen32,mpy64]

1. Heap, per profile (tools/memlab.py: what a configuration turns on) and
   per build (.mpy and frozen on the 32-bit unix port, which has an ESP32's
   heap layout; .mpy on the 64-bit port for reference), the firmware playing
   the scripted day at a fast pace: live heap after imports, live heap during
   the sim (after the firmware's own collections), peak in use, the smallest
   heap that runs the day (search_smallest: from the live heap + 8K, or the
   budget, outwards, then bisection in 1 KB steps, with what fails first
   just below it), and the longest gc.collect() with a 2 MB heap full of the
   firmware's live objects (the PSRAM tier's cost). JOBS measurements run
   side by side: the runs wait on the simulated site, not on the CPU. The
   64-bit port is the reference: a profile that does not fit its 256K
   reference heap is reported as "> 256K" (classify_reference), not failed.
2. Guard latency: a telegram showing a higher house load is written to the
   P1 pty; the time until the V2C Trydan emulator receives the lower
   Intensity. Measured with one healthy wallbox; with a second wallbox that
   accepts connections and never answers (dead I/O beside the guard's path);
   with MQTT on and a live broker (tools/sim/broker.py); and with MQTT on and
   the broker black-holed (accepts TCP, never answers: the link waits out
   its connect deadline and backs off, again and again). The MQTT runs have
   the heap of the firmware with MQTT (run.MQTT_HEAP). On the mixed site
   (run.py --mixed: one box of each family: the Trydan, a go-e and an
   OpenEVSE over HTTP, an Alfen over Modbus TCP), the go-e hung, the other
   cars unplugged, the Trydan cut as above (--mixed-only: this run alone).
   With one box of every family (run.py --every-family: Trydan over HTTP and
   Modbus TCP, go-e hung, Alfen, ABB, generic Modbus, Keba over UDP, a Shelly
   relay; --every-family-only). A step with no command within 1 s whose
   overload a cut of the last ev_response explains is counted as held (the
   guard's hold, docs/development.md), any other as missed.
   And with four OCPP boxes connected to the firmware's central system, one
   of them hung after its BootNotification (OCPP_BOXES). Prints p50 / p90 /
   p99 / max.

Cut to keep it to minutes (it took eleven): 60 load steps per latency run
instead of 300 (p99 of 60 is the second-worst: read it as a max), and the
minute-long heap runs at 96K replaced by the fast day (about 17 s a run).
With 22 profiles the heap part is some 60 measurements of about 6 runs each
(a 27 s reference run, then the search, 14 s a run): search_smallest and
JOBS at a time took it from about 12 to 7 minutes; the seven latency runs,
one after another so that they do not disturb each other, take about 15
(the OCPP one 5). Timings.report prints where the time went.
Figures for the closing notes, not pass/fail: the machine is shared and noisy
(the memory budgets are gated by host_tests/system/test_heap_budget.py).
"""

import argparse
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "sim"))
sys.path.insert(0, HERE)

from broker import BlackHole, Broker  # noqa: E402
from run import DEFAULT_HEAP, EVERY_FAMILY_EXTRA_HEAP_K, MIXED_EXTRA_HEAP_K, MQTT_HEAP, OCPP_EXTRA_HEAP_K, Simulation, wait_for  # noqa: E402

import memlab  # noqa: E402

KB = 1024
REFERENCE_HEAP = 256 * KB  # large enough that only the firmware's own 10 s collections run
REFERENCE_S = 25  # the reference run: two of the firmware's collections at least
GUESS_ABOVE_LIVE_K = 8  # without a budget, the search for the smallest heap starts this far above the live heap
JOBS = 24  # heap measurements (profile, build) at a time: each run mostly waits on the simulated site (16 used 14% of a CPU)

# Increases are allowed once a second so that every step can be a decrease
# followed by a recovery; min_pause 0 keeps the car from being parked.
BENCH_GUARD = {"meter_timeout_s": 10, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1}
STEP_PERIOD_S = 0.25  # telegrams per second: 4, faster than any real meter
LEVELS_A = (6.0, 10.0, 12.0, 14.0, 16.0)  # house load on L1: 16 A for the car, then 14, 12, 10, 8


def pending_cut_a(writes, reading_ns, ev_response_ns, intensity_a):
    """Amperes of the box's last cuts that a car may still be following when a reading is taken.

    writes: the Trydan emulator's WriteRecords (t_ns, key, value, ...), oldest first; the guard
    (core/guard.py, "high view") counts a car at the highest offer of the last ev_response after a cut,
    since a car may take that long to follow one (IEC 61851: ~5 s). An overload no larger than
    that is explained by the pending cut and is held, not cut again, until the box's measurement
    or ev_response says the car followed (docs/architecture.md).
    """
    highest = intensity_a
    in_force = None
    for write in writes:
        if write.key != "Intensity" or not write.ok:
            continue
        if write.t_ns > reading_ns:
            break
        if write.t_ns < reading_ns - ev_response_ns:
            in_force = int(write.value)  # the offer when the window opened
            continue
        highest = max(highest, int(write.value))
    if in_force is not None:
        highest = max(highest, in_force)
    return highest - intensity_a


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


# Four OCPP boxes beside the measured Trydan: single-phase on site phase C, away from the load steps on
# L1 (the guard then never needs to cut them for the Trydan's sake), each connected to the firmware's
# central system; the last one hung after its BootNotification (calls to it time out, its socket fills).
OCPP_BOXES = [
    {"id": "OCPP%d" % index, "unit": "A", "phases": 1, "phase_map": "C", "plugged": False, "stall": index == 4}
    for index in range(1, 5)
]


def measure_latency(steps, heap, hung_second, mqtt=None, mixed=False, ocpp=None, every_family=False):
    """What the load steps came to (Steps); mqtt: None (off), "live" (a real broker) or "blackhole"; mixed: the
    mixed site; ocpp: OCPP box specs; every_family: run.EVERY_FAMILY_SITE (one box of every family)."""
    server = None
    mqtt_cfg = None
    if mqtt == "live":
        server = Broker().start()
    elif mqtt == "blackhole":
        server = BlackHole()
    if server is not None:
        mqtt_cfg = {"enabled": True, "host": "127.0.0.1", "port": server.port}
    started = time.monotonic()
    try:
        return _measure_latency(steps, heap, hung_second, mqtt_cfg, mixed, ocpp, every_family)
    finally:
        TIMINGS.add("latency run", time.monotonic() - started)
        if isinstance(server, Broker):
            server.stop()
        elif server is not None:
            server.close()


class Steps:
    """What the load steps of one latency run came to: latencies (ms) of the steps answered within 1 s,
    `held`: steps whose overload a pending cut explains (pending_cut_a: the guard holds those until
    ev_response, by design), `missed`: the others left unanswered for 1 s (a real miss)."""

    def __init__(self):
        self.latencies_ms = []
        self.held = 0
        self.missed = 0

    def count(self):
        return len(self.latencies_ms) + self.held + self.missed


def _measure_latency(steps, heap, hung_second, mqtt_cfg, mixed=False, ocpp=None, every_family=False):
    sim = Simulation(heap=heap, car_delay_s=0.1, run_name="bench", guard=BENCH_GUARD, chargers=2 if hung_second else 1,
                     mqtt=mqtt_cfg, mixed=mixed, ocpp=ocpp, every_family=every_family)
    trydan = sim.trydan
    ev_response_ns = int(sim.config["guard"]["ev_response_s"] * 1e9)
    limit_a = sim.config["site"]["breaker_a"] - sim.config["site"]["margin_a"]
    result = Steps()
    try:
        if mixed or every_family:
            # Only the Trydan's car charges (the others draw nothing, so the
            # cut is the Trydan's); the second box (the go-e) hangs from the start.
            for box in sim.boxes[1:]:
                if hasattr(box, "unplug"):
                    box.unplug()
                else:
                    box.demand = False  # the Shelly relay's heater: its thermostat is satisfied
            sim.boxes[1].set_mode("hang")
        elif hung_second:
            # The second box (lower priority, no car) hangs from the start:
            # its task sits in requests that time out, beside the guard's path.
            sim.trydans[1].unplug()
            sim.trydans[1].set_mode("hang")
        sim.site.set_house((LEVELS_A[0], 1.0, 1.0))
        for _ in range(40):  # ramp up and settle
            sim.send_telegram()
            time.sleep(STEP_PERIOD_S)
        reported = 0
        while result.count() < steps:
            if result.count() >= reported + 20:
                reported = result.count()
                print("  ... %d of %d steps" % (reported, steps), flush=True)
            # A staircase of rising load: every step lowers the car's limit.
            for level in LEVELS_A[1:]:
                sim.site.set_house((level, 1.0, 1.0))
                # What the guard must cut to: 25 A breaker - 1 A margin - house on L1.
                expected_a = min(16, limit_a - int(level))
                intensity = trydan.setting("Intensity")
                if intensity <= expected_a:
                    # Still ramping up from the last staircase: nothing to cut.
                    sim.send_telegram()
                    time.sleep(STEP_PERIOD_S)
                    continue
                before = len(trydan.writes())
                written_ns = sim.send_telegram()

                def lowered():
                    return any(w.key == "Intensity" and w.t_ns >= written_ns for w in trydan.writes()[before:])

                if wait_for(lowered, 1.0):
                    first = next(w for w in trydan.writes()[before:] if w.key == "Intensity" and w.t_ns >= written_ns)
                    result.latencies_ms.append((first.t_ns - written_ns) / 1e6)
                elif int(level) + intensity - limit_a <= pending_cut_a(trydan.writes(), written_ns, ev_response_ns, intensity):
                    # The car was cut less than ev_response ago by at least this overload: the guard
                    # counts it at its old offer until its box or ev_response shows it followed.
                    result.held += 1
                else:
                    result.missed += 1
                    late = [w for w in trydan.writes()[before:] if w.key == "Intensity"]
                    print(
                        "  no command within 1 s: house L1 %.0f A, box at %s A, then %s; firmware: %s"
                        % (level, trydan.setting("Intensity"), ["%s after %.0f ms" % (w.value, (w.t_ns - written_ns) / 1e6) for w in late], sim.lines[-1] if sim.lines else "-")
                    )
                time.sleep(STEP_PERIOD_S)
            # Back down; the increase waits for the ramp interval, and the
            # next staircase starts only once the car is back at 16 A.
            sim.site.set_house((LEVELS_A[0], 1.0, 1.0))
            for _ in range(10):
                sim.send_telegram()
                time.sleep(STEP_PERIOD_S)
    finally:
        sim.stop()
    return result


def report_latency(title, steps):
    """One line per run: latencies of the answered steps, then how many steps were answered, held and missed."""
    values = sorted(steps.latencies_ms)
    counts = "answered %d of %d steps within 1 s, held by a pending cut %d, missed %d" % (
        len(values), steps.count(), steps.held, steps.missed)
    if not values:
        print("%s: no command received; %s" % (title, counts))
        return
    print(
        "%s: n=%d p50=%.1f ms p90=%.1f ms p99=%.1f ms max=%.1f ms mean=%.1f ms; %s"
        % (
            title,
            len(values),
            percentile(values, 0.50),
            percentile(values, 0.90),
            percentile(values, 0.99),
            values[-1],
            statistics.mean(values),
            counts,
        )
    )


REFERENCE_BUILDS = ("mpy64",)  # measured for comparison only: not fitting the reference heap is a figure, not an error
# What the firmware answers a web client when a request finds no heap (net/web.py, the wizard): out of memory in
# its own words, with no MemoryError line.
SHORT_OF_MEMORY = ("MemoryError", "out of memory", "not enough memory")


def short_of_memory(run):
    """Whether a run that failed ran out of heap: a MemoryError, or the firmware saying so to the web client."""
    return bool(run.memory_errors) or any(
        any(words in failure for words in SHORT_OF_MEMORY) for failure in getattr(run, "web_failures", ()))


def classify_reference(build, reference, budget=None):
    """What a reference run (memlab.Run at REFERENCE_HEAP) means for the bench: "ok", "too big" or "failed".

    "too big": out of memory in the reference heap (short_of_memory) where no budget says it must fit: the
    64-bit reference build (REFERENCE_BUILDS, about 1.4x an ESP32's heap), or a build the profile has no budget
    for (measured only: e.g. `everything` as .mpy needs a PSRAM board). The table says "> 256K" and the bench
    goes on. Anything else that did not run the day (a crash, a wrong configuration, a budgeted 32-bit build out
    of memory in 256K) is "failed": an error of the bench or of the firmware, and `make bench` exits 1.
    """
    if reference.ok():
        return "ok"
    if (build in REFERENCE_BUILDS or not budget) and short_of_memory(reference):
        return "too big"
    return "failed"


def first_guess(live_max):
    """Where the search for the smallest heap starts: the most live heap of the reference run + 8K (the smallest
    heaps measured were 4-13 KB above it), a multiple of 1K."""
    return (live_max // KB + GUESS_ABOVE_LIVE_K) * KB


def search_smallest(attempt, guess, floor, ceiling, budget=None, step=KB, span=4 * KB):
    """The smallest heap (multiple of step) in (floor, ceiling] that runs the fast day, starting at `guess`.

    attempt(heap) -> memlab.Run (a fresh run). floor: a heap known to fail (the live heap); ceiling: one known
    to run (the reference run's heap); budget: the profile's budget for the build, if any (the budget tests
    run the profile in it), tried first when the guess fails. From the guess it steps away by span, 2*span, ...
    until the answer changes, then bisects that bracket: 4-6 runs when the guess is within a few K, where a
    bracket fixed at [live, live + 16K], doubled when it missed, took 5 to 12 (each run a fresh fast day).
    Returns (heap, the Run 1 step below it, or None when that size was not run).
    """
    runs = {}

    def ok(heap):
        if heap not in runs:
            runs[heap] = attempt(heap)
        return runs[heap].ok()

    guess = min(max(guess // step * step, floor + step), ceiling)
    if ok(guess):
        high, low = guess, None
        while low is None:
            candidate = high - span
            if candidate <= floor:
                low = floor
            elif ok(candidate):
                high, span = candidate, span * 2
            else:
                low = candidate
    else:
        low, high = guess, None
        budget = budget // step * step if budget else None
        if budget and guess < budget < ceiling:
            if ok(budget):
                high = budget
            else:
                low = budget
        while high is None:
            candidate = low + span
            if candidate >= ceiling:
                high = ceiling  # the reference run: it ran
            elif ok(candidate):
                high = candidate
            else:
                low, span = candidate, span * 2
    while high - low > step:
        middle = (low + high) // 2 // step * step
        if ok(middle):
            high = middle
        else:
            low = middle
    return high, runs.get(high - step)


class Timings:
    """Seconds spent per step of the heap measurements (summed over the builds' threads) and per latency run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.steps = {}  # name: [runs, seconds]

    def add(self, name, seconds):
        with self.lock:
            entry = self.steps.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += seconds

    def timed(self, name, function, *args, **kwargs):
        started = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            self.add(name, time.monotonic() - started)

    def report(self):
        print("time per step (run-seconds; the heap runs overlap, JOBS at a time):")
        for name, (count, seconds) in self.steps.items():
            print("  %-28s %3d run(s) %7.0f s, %5.1f s a run" % (name, count, seconds, seconds / count))


TIMINGS = Timings()


def measure_memory(profile, build, say):
    """Heap figures of one profile and build (see tools/memlab.py): a dict, or None when the build is unavailable."""
    tag = "[%s %s]" % (profile.name, build)
    try:
        memlab.interpreter(build)
    except memlab.Unavailable as why:
        say("%s skipped: %s" % (tag, why.args[0]))
        return None
    say("%s reference run: heap %dK, the fast day played, %d s at least" % (tag, REFERENCE_HEAP // KB, REFERENCE_S))
    reference = TIMINGS.timed("reference run (256K)", memlab.run, profile, build, REFERENCE_HEAP, days=1, min_seconds=REFERENCE_S)
    verdict = classify_reference(build, reference, profile.budgets.get(build))
    if verdict == "failed":
        # Once more before it is reported: on the shared machine a run can fail once (seen: the web client
        # refused before the server listened, everything mpy32, which ran at once alone). Both are logged.
        say("%s reference run failed (%s); once more" % (tag, reference.failure_site()))
        reference = TIMINGS.timed("reference run (256K)", memlab.run, profile, build, REFERENCE_HEAP, days=1, min_seconds=REFERENCE_S)
        verdict = classify_reference(build, reference, profile.budgets.get(build))
    if verdict == "too big":
        say("%s does not fit the %dK reference heap (%s): reported as > %dK, no bisection" % (
            tag, REFERENCE_HEAP // KB, reference.failure_site(), REFERENCE_HEAP // KB))
        pause_us, filled, alone_us = TIMINGS.timed("gc pause (2 MB heap)", memlab.gc_pause_us, profile, build)
        return {"too_big": reference.failure_site(), "pause_us": pause_us, "alone_us": alone_us, "filled": filled}
    if verdict == "failed":
        say("%s reference run failed:\n%s" % (tag, reference.failure()))
        return {"failed": reference.failure_site()}
    live = reference.live or [reference.after_imports]
    say("%s after imports %d B, live %d..%d B, peak in use %d B" % (tag, reference.after_imports, min(live), max(live), reference.peak))

    def attempt(heap):
        result = TIMINGS.timed("smallest-heap search", memlab.run, profile, build, heap)
        say("%s  heap %3dK: %s" % (tag, heap // KB, "runs the day" if result.ok() else "fails: " + result.failure_site()))
        return result

    smallest, below = search_smallest(attempt, first_guess(max(live)), max(live) // KB * KB, REFERENCE_HEAP,
                                      budget=profile.budgets.get(build))
    pause_us, filled, alone_us = TIMINGS.timed("gc pause (2 MB heap)", memlab.gc_pause_us, profile, build)
    say("%s smallest heap %s; gc.collect() in a 2 MB heap: %d us with %d KB live, %d us with the firmware alone" % (
        tag, "%dK" % (smallest // KB) if smallest else "-", pause_us, filled // KB, alone_us))
    return {
        "imports": reference.after_imports,
        "live": (min(live), max(live)),
        "peak": reference.peak,
        "smallest": smallest,
        "below": below.failure_site() if below else "-",
        "pause_us": pause_us,
        "alone_us": alone_us,
        "filled": filled,
    }


def heap_failed(results, in_ci):
    """Whether the heap part failed: a measurement that failed (a crash, a 32-bit reference run out of memory,
    an exception), or a build unavailable under CI. A reference build that does not fit the reference heap
    ("too_big") is a figure, not a failure."""
    return any(figures is None and in_ci or (figures and "failed" in figures) for _, figures in results)


def report_memory(results):
    print()
    print("heap (bytes; .mpy/frozen on the 32-bit unix port = ESP32 layout, mpy64 for reference)")
    header = "%-8s %-9s %9s %15s %9s %8s %8s %13s  %s" % (
        "profile", "build", "imports", "live in sim", "peak", "smallest", "budget", "gc 2MB us", "what fails first 1K below the smallest")
    print(header)
    print("-" * len(header))
    for (profile, build), figures in results:
        budget = profile.budgets.get(build)
        budget_text = "%dK" % (budget // KB) if budget else "-"
        if figures is None:
            print("%-8s %-9s %s" % (profile.name, build, "not available here"))
        elif "failed" in figures:
            print("%-8s %-9s reference run failed: %s" % (profile.name, build, figures["failed"]))
        elif "too_big" in figures:
            print("%-8s %-9s %9s %15s %9s %8s %8s %13s  %s" % (
                profile.name, build, "-", "-", "-", "> %dK" % (REFERENCE_HEAP // KB), budget_text,
                "%d (%d)" % (figures["pause_us"], figures["alone_us"]),
                "out of memory in %dK: %s" % (REFERENCE_HEAP // KB, figures["too_big"])))
        else:
            print(
                "%-8s %-9s %9d %7d..%-7d %9d %8s %8s %13s  %s"
                % (
                    profile.name, build, figures["imports"], figures["live"][0], figures["live"][1], figures["peak"],
                    "%dK" % (figures["smallest"] // KB) if figures["smallest"] else "-", budget_text, "%d (%d)" % (figures["pause_us"], figures["alone_us"]), figures["below"],
                )
            )
    by_build = dict(((p.name, b), f) for (p, b), f in results)
    for profile in memlab.PROFILES:
        small, large = by_build.get((profile.name, "mpy32")), by_build.get((profile.name, "mpy64"))
        if small and large and "imports" in small and "imports" in large:
            print("%s: 32-bit / 64-bit, .mpy: after imports %.2fx, live %.2fx" % (
                profile.name, small["imports"] / large["imports"], small["live"][1] / large["live"][1]))
    print("peak = most heap in use (live + garbage) between the firmware's 10 s collections, at 4 telegrams/s, heap %dK;" % (REFERENCE_HEAP // KB))
    print("smallest = smallest -X heapsize (1K steps) that runs the fast day with no MemoryError;")
    print("gc 2MB us = longest gc.collect() on this host in a 2 MB heap filled by copies of the firmware's App")
    print("            (in brackets: with the firmware's own objects only; the sweep of the whole heap remains).")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="load steps per latency run")
    parser.add_argument("--heap", default=DEFAULT_HEAP, help="heap of the latency runs (64-bit port)")
    parser.add_argument("--heap-only", action="store_true", help="skip the latency runs")
    parser.add_argument("--latency-only", action="store_true", help="skip the heap measurements")
    parser.add_argument("--mixed-only", action="store_true", help="only the latency run on the mixed site")
    parser.add_argument("--every-family-only", action="store_true",
                        help="only the latency run with one box of every family (run.EVERY_FAMILY_SITE)")
    parser.add_argument("--jobs", type=int, default=JOBS, help="heap measurements at a time (default %d)" % JOBS)
    parser.add_argument("--profiles", default="", help="heap profiles to measure, e.g. core,mqtt_meter (default: all)")
    parser.add_argument("--builds", default=",".join(memlab.BUILDS), help="heap builds to measure (%s)" % ",".join(memlab.BUILDS))
    args = parser.parse_args()
    started = time.monotonic()
    lock = threading.Lock()

    def say(text):
        with lock:
            print("bench %4.0fs: %s" % (time.monotonic() - started, text), flush=True)

    results = []
    mixed_heap = "%dK" % (int(DEFAULT_HEAP[:-1]) + MIXED_EXTRA_HEAP_K)
    every_heap = "%dK" % (int(DEFAULT_HEAP[:-1]) + EVERY_FAMILY_EXTRA_HEAP_K)

    def mixed_run():
        say("guard latency on the mixed site (Trydan, go-e hung, OpenEVSE, Alfen over Modbus TCP), heap %s" % mixed_heap)
        report_latency("guard latency, mixed site, go-e hung  ", measure_latency(args.steps, mixed_heap, False, mixed=True))

    def every_family_run():
        say("guard latency with one box of every family (Trydan HTTP, go-e hung, Trydan Modbus, Alfen, ABB,"
            " generic Modbus, Keba UDP, Shelly load), heap %s" % every_heap)
        report_latency("guard latency, every family, go-e hung", measure_latency(args.steps, every_heap, False, every_family=True))

    if args.mixed_only or args.every_family_only:
        if args.mixed_only:
            mixed_run()
        if args.every_family_only:
            every_family_run()
        return
    if not args.latency_only:
        # One thread per build: the runs wait on the simulated site, not on the CPU.
        builds = [b for b in args.builds.split(",") if b]
        wanted = [name for name in args.profiles.split(",") if name]
        unknown = set(wanted) - set(profile.name for profile in memlab.PROFILES)
        if unknown:
            parser.error("unknown profile(s): %s" % ", ".join(sorted(unknown)))
        jobs = [(profile, build) for profile in memlab.PROFILES for build in builds
                if (profile.builds is None or build in profile.builds) and (not wanted or profile.name in wanted)]
        figures = {}
        queue = list(jobs)

        def work():
            while True:
                with lock:
                    if not queue:
                        return
                    job = queue.pop(0)
                try:
                    figures[job] = measure_memory(job[0], job[1], say)
                except Exception as error:  # reported in the table; the other builds go on
                    say("[%s %s] failed: %r" % (job[0].name, job[1], error))
                    figures[job] = {"failed": repr(error)}

        threads = [threading.Thread(target=work) for _ in range(min(args.jobs, len(jobs)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results = [(job, figures.get(job)) for job in jobs]
        say("heap measurements done")
    if not args.heap_only:
        say("guard latency: %d load steps per run, telegrams every %.2f s, heap %s (64-bit port)" % (args.steps, STEP_PERIOD_S, args.heap))
        report_latency("guard latency, one wallbox           ", measure_latency(args.steps, args.heap, hung_second=False))
        say("guard latency with a hung second wallbox")
        report_latency("guard latency, second wallbox hung    ", measure_latency(args.steps, args.heap, hung_second=True))
        say("guard latency with MQTT on, broker live (heap %s)" % MQTT_HEAP)
        report_latency("guard latency, MQTT broker live       ", measure_latency(args.steps, MQTT_HEAP, hung_second=False, mqtt="live"))
        say("guard latency with MQTT on, broker black-holed (heap %s)" % MQTT_HEAP)
        report_latency("guard latency, MQTT broker black-holed", measure_latency(args.steps, MQTT_HEAP, hung_second=False, mqtt="blackhole"))
        mixed_run()
        every_family_run()
        ocpp_heap = "%dK" % (int(args.heap[:-1]) + OCPP_EXTRA_HEAP_K)
        say("guard latency with four OCPP boxes connected, one of them hung (heap %s)" % ocpp_heap)
        report_latency("guard latency, 4 OCPP boxes, 1 hung   ", measure_latency(args.steps, ocpp_heap, hung_second=False, ocpp=OCPP_BOXES))
    if results:
        report_memory(results)
    TIMINGS.report()
    say("done")
    if heap_failed(results, memlab.upy32.in_ci()):
        sys.exit(1)


if __name__ == "__main__":
    main()
