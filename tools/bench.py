"""Benchmarks of the firmware on the MicroPython unix port (make bench).

    python tools/bench.py [--steps 300] [--heap-seconds 60] [--heap 96K]

1. Guard latency: a telegram showing a higher house load is written to the
   P1 pty; the time until the V2C Trydan emulator receives the lower
   Intensity. Measured twice: with one healthy wallbox, and with a second
   wallbox that accepts connections and never answers (dead I/O beside the
   guard's path). Prints p50 / p90 / p99 / max.
2. Heap: the firmware with -X heapsize=96K running the simulated site for a
   minute, with one and with two wallboxes; prints the live heap after each
   of its periodic collections (first, last, max) and whether it ran out of
   memory.

Figures for the closing notes, not pass/fail: the machine is shared and noisy.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "sim"))

from run import Simulation, wait_for  # noqa: E402

# Increases are allowed once a second so that every step can be a decrease
# followed by a recovery; min_pause 0 keeps the car from being parked.
BENCH_GUARD = {"meter_timeout_s": 10, "min_pause_s": 0, "ramp_step_a": 16, "ramp_interval_s": 1}
STEP_PERIOD_S = 0.25  # telegrams per second: 4, faster than any real meter
LEVELS_A = (6.0, 10.0, 12.0, 14.0, 16.0)  # house load on L1: 16 A for the car, then 14, 12, 10, 8


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def measure_latency(steps, heap, hung_second):
    sim = Simulation(heap=heap, car_delay_s=0.1, run_name="bench", guard=BENCH_GUARD, chargers=2 if hung_second else 1)
    trydan = sim.trydan
    latencies_ms = []
    missed = 0
    try:
        if hung_second:
            # The second box (lower priority, no car) hangs from the start:
            # its task sits in requests that time out, beside the guard's path.
            sim.trydans[1].unplug()
            sim.trydans[1].set_mode("hang")
        sim.site.set_house((LEVELS_A[0], 1.0, 1.0))
        for _ in range(40):  # ramp up and settle
            sim.send_telegram()
            time.sleep(STEP_PERIOD_S)
        while len(latencies_ms) + missed < steps:
            # A staircase of rising load: every step lowers the car's limit.
            for level in LEVELS_A[1:]:
                sim.site.set_house((level, 1.0, 1.0))
                # What the guard must cut to: 25 A breaker - 1 A margin - house on L1.
                expected_a = min(16, 24 - int(level))
                if trydan.setting("Intensity") <= expected_a:
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
                    latencies_ms.append((first.t_ns - written_ns) / 1e6)
                else:
                    missed += 1
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
    return latencies_ms, missed


def report_latency(title, latencies_ms, missed):
    values = sorted(latencies_ms)
    if not values:
        print("%s: no command received (missed %d)" % (title, missed))
        return
    print(
        "%s: n=%d p50=%.1f ms p90=%.1f ms p99=%.1f ms max=%.1f ms mean=%.1f ms, no command within 1 s: %d"
        % (
            title,
            len(values),
            percentile(values, 0.50),
            percentile(values, 0.90),
            percentile(values, 0.99),
            values[-1],
            statistics.mean(values),
            missed,
        )
    )


def measure_heap(seconds, heap, chargers):
    sim = Simulation(heap=heap, car_delay_s=1.0, run_name="bench-heap", chargers=chargers)
    samples = []
    try:
        levels = ((2.0, 1.0, 1.0), (15.0, 9.0, 3.0), (22.0, 2.0, 1.0), (5.0, 5.0, 5.0))
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < seconds and sim.firmware.alive():
            sim.site.set_house(levels[(step // 10) % len(levels)])
            sim.send_telegram()
            step += 1
            time.sleep(1.0)
    finally:
        code = sim.stop()
    for line in sim.lines:
        if "heap " in line:
            samples.append(int(line.rsplit("heap ", 1)[1].split()[0]))
    out_of_memory = any("MemoryError" in line for line in sim.lines)
    return samples, out_of_memory, code, sim.lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="load steps per latency run")
    parser.add_argument("--heap-seconds", type=int, default=60)
    parser.add_argument("--heap", default="96K")
    parser.add_argument("--heap-only", action="store_true", help="skip the latency runs")
    args = parser.parse_args()

    print("bench: MicroPython unix port, heap %s, %d load steps, telegrams every %.2f s" % (args.heap, args.steps, STEP_PERIOD_S))
    if not args.heap_only:
        latencies, missed = measure_latency(args.steps, args.heap, hung_second=False)
        report_latency("guard latency, one wallbox           ", latencies, missed)
        latencies, missed = measure_latency(args.steps, args.heap, hung_second=True)
        report_latency("guard latency, second wallbox hung    ", latencies, missed)

    failed = False
    for chargers in (1, 2):
        samples, out_of_memory, code, lines = measure_heap(args.heap_seconds, args.heap, chargers)
        if samples:
            print(
                "heap, %d wallbox(es) (-X heapsize=%s, %d s of the sim): live after GC first=%d B last=%d B max=%d B (%d samples)%s"
                % (chargers, args.heap, args.heap_seconds, samples[0], samples[-1], max(samples), len(samples), ", MemoryError!" if out_of_memory else "")
            )
        else:
            print("heap: no samples; the firmware said:\n  " + "\n  ".join(lines[-15:]))
        failed = failed or out_of_memory or not samples
    if failed:
        sys.exit(1)

if __name__ == "__main__":
    main()
