"""Heap budgets on the 32-bit unix port (an ESP32's heap layout): the contract every interface must fit in.

For each profile of tools/memlab.py (what a configuration turns on) and each
build it has a budget for, the unmodified firmware plays the scripted day
three times at the fast pace (about 50 s) in a heap of exactly that budget:

- no MemoryError anywhere (a task that ran out of memory says so and is
  restarted, so it would not stop the process; it is looked for),
- the process still running and the guard still reporting at the end,
- no growth: the live heap is no higher in the second half of the run than
  in the first, within 1 KB. It is judged on a live heap figure each second
  (tools/memprobe.py's sampler: the least in use after whichever collection
  came that second, the firmware's own every 10 s or MicroPython's when an
  allocation finds the heap full, and in a second with neither the probe's
  own), not on the firmware's few collections alone: each may catch a
  poll's exchange in flight (up to 5 KB measured on the http profile), so a
  handful per half misjudged growth (CI, 2026-11-30: 83264 -> 84384 B; CI,
  2026-12-01: 31920 -> 33584 B on http, where the seconds without a
  collection gave no figure; its quiet live heap stayed 31.9 KB in both
  halves of other runs).

Memory is deterministic enough to gate; time is not, so no timing is asserted.
Without the MicroPython source (../shared) or a 32-bit compiler these tests
skip with the reason; under CI (CI=true) they fail instead.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import memlab  # noqa: E402
import upy32  # noqa: E402

DAYS = 3
# The least live heap of a half still varies by a few GC blocks with what was
# in flight at its collections; a leak of one 16-byte block per telegram (64
# a fast day, about 96 between the two halves' samples) exceeds it.
GROWTH_SLACK_B = 1024

CASES = [(profile, build) for profile in memlab.PROFILES for build in sorted(profile.budgets)]


def interpreter_or_skip(build):
    """The binary for build; skip with the reason, or fail under CI where skipping is not allowed."""
    try:
        return memlab.interpreter(build)
    except memlab.Unavailable as why:
        message = "32-bit MicroPython not available: %s" % why.args[0]
        if upy32.in_ci():
            pytest.fail(message + " (CI must run the heap budgets)")
        pytest.skip(message)


@pytest.mark.parametrize("profile,build", CASES, ids=["%s-%s" % (p.name, b) for p, b in CASES])
def test_profile_runs_the_day_within_its_heap_budget(profile, build):
    interpreter_or_skip(build)
    budget = profile.budgets[build]
    result = memlab.run(profile, build, budget, days=DAYS, growth=True)
    assert result.ok(), "%s as %s does not run in %d KB (%s):\n%s" % (
        profile.name, build, budget // 1024, result.failure_site(), result.failure())
    # One value a second from the firmware's first collection on.
    samples = result.floor_each_second
    assert len(samples) >= 30, "too few seconds with a heap figure to judge growth: %d" % len(samples)
    half = len(samples) // 2
    first, last = min(samples[:half]), min(samples[half:])
    assert last <= first + GROWTH_SLACK_B, "live heap grew from %d to %d B over %d days: each second's least %s" % (
        first,
        last,
        DAYS,
        samples,
    )
    print("%s %s: heap %d KB, after imports %d B, live %s" % (profile.name, build, budget // 1024, result.after_imports, result.live))


def test_a_missing_toolchain_skips_with_the_reason_but_fails_under_ci(monkeypatch):
    monkeypatch.setattr(upy32, "TARBALL", os.path.join(ROOT, "build", "no-such-source.tar.xz"))
    with pytest.raises(upy32.Unavailable) as why:
        upy32.ensure("plain")
    assert "no-such-source" in why.value.args[0]
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        interpreter_or_skip("frozen32")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        interpreter_or_skip("frozen32")
