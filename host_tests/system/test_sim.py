"""The site simulator as `make sim` runs it: its day, its pace and what it tells the user first."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "sim"))

from house import DAY  # noqa: E402
from run import DEFAULT_SCENE_S, day_length_s, peak_limit_problem, settings_text, sim_config  # noqa: E402


def test_the_whole_day_plays_in_a_few_minutes_at_the_default_pace():
    assert day_length_s(DEFAULT_SCENE_S) <= 4 * 60


def test_the_silent_meter_scene_outlasts_meter_timeout_so_the_failsafe_shows():
    timeout_s = sim_config([1])["guard"]["meter_timeout_s"]
    silent = [scene for scene in DAY if scene.meter_silent]
    assert silent
    for scene in silent:
        hold_s = scene.hold_s if scene.hold_s is not None else DEFAULT_SCENE_S
        # failsafe after meter_timeout + one control tick, then a few status lines
        assert hold_s >= timeout_s + 5, (scene.clock, hold_s)


def test_settings_printed_at_start_name_the_guard_timers():
    config = sim_config([8080, 8081])
    text = "\n".join(settings_text(config, DEFAULT_SCENE_S))
    guard = config["guard"]
    assert "min_pause %d s" % guard["min_pause_s"] in text
    assert "meter_timeout %d s" % guard["meter_timeout_s"] in text
    assert "ramp_interval %d s" % guard["ramp_interval_s"] in text
    assert "charger Trydan:" in text and "charger Trydan2:" in text
    # min_pause 60 s at 12 s a scene: the user is told it spans about 5 scenes.
    assert "about %d scenes" % round(guard["min_pause_s"] / DEFAULT_SCENE_S) in text


def test_the_sim_configuration_passes_the_firmware_validator():
    from chargeguard import config

    _, errors = config.check(sim_config([8080, 8081]))
    assert not errors, errors


def test_the_sim_configuration_with_the_web_passes_the_validator():
    from chargeguard import config

    doc, errors = config.check(sim_config([8080], web=True))
    assert not errors, errors
    assert doc["web"]["enabled"] is True and doc["admin"]["password"]


def test_peak_limit_w_is_checked_by_the_firmware_validator_and_explained():
    # --peak-limit-w: 0 (off) or 2500-500000 W, refused in the validator's words before anything starts.
    assert peak_limit_problem(0) is None and peak_limit_problem(4000) is None
    problem = peak_limit_problem(1000)
    assert problem.startswith("site.peak_limit_w: ") and "(is 1000)" in problem
    assert peak_limit_problem(500001) is not None
    config = sim_config([8080])
    assert "capacity tariff" not in "\n".join(settings_text(config, DEFAULT_SCENE_S))
    config["site"]["peak_limit_w"] = 4000
    from chargeguard import config as firmware_config

    doc, errors = firmware_config.check(config)
    assert not errors and doc["site"]["peak_limit_w"] == 4000
    assert "at or under 4000 W (site.peak_limit_w)" in "\n".join(settings_text(config, DEFAULT_SCENE_S))
