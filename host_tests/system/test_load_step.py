"""tools/sim/load_step.py: a load step right after a raise keeps L1 above the breaker no longer than the
meter's period, the command and the car's response (docs/architecture.md, "How long the grid can stay above
the breaker"). The firmware on the unix port against the simulated site."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from chargeguard.app import CHARGER_TIMEOUT_MS  # noqa: E402
from load_step import BREAKER_A, SAMPLE_S, measure  # noqa: E402
from run import TELEGRAM_PERIOD_S  # noqa: E402

CAR_DELAY_S = 1.0  # a quick car, so the test takes seconds; the bound scales with it
# What a loaded 2-core host may add to one wake-up of the firmware or of this process (docs/development.md,
# "Timing in tests"): scheduling, not product behaviour.
HOST_SLACK_S = 1.0


def test_a_load_step_after_a_raise_is_over_the_breaker_at_most_meter_command_and_car():
    steps = list(measure(steps=1, car_delay_s=CAR_DELAY_S, say=lambda text: None))
    step = steps[0]
    # The step (+9.5 A on 8 A of house) with the raised car goes over the 25 A breaker, and the guard cuts.
    assert step.raised_to > step.raised_from
    assert step.cut_a is not None and step.cut_a < step.raised_to, step.text(1, BREAKER_A, CAR_DELAY_S)
    assert step.peak_a > BREAKER_A, step.text(1, BREAKER_A, CAR_DELAY_S)
    # The bound: one telegram period after the overload began, at most one request deadline for the command,
    # then the car's response.
    bound_s = TELEGRAM_PERIOD_S + CHARGER_TIMEOUT_MS / 1000 + CAR_DELAY_S + SAMPLE_S + HOST_SLACK_S
    assert step.over_s <= bound_s, step.text(1, BREAKER_A, CAR_DELAY_S)
