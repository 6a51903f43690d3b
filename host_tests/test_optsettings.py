from chargeguard.core.optsettings import DIST_PRIORITY, DIST_SHARED, optimiser_from_config
from chargeguard.core.profiles import PROFILES, profile_name, step_down_w, step_up_w, watts_per_amp


def error_of(doc):
    try:
        optimiser_from_config(doc)
    except ValueError as error:
        return str(error)
    return None


def test_defaults_from_an_empty_document():
    opt = optimiser_from_config({"site": {}})
    assert opt.distribution == DIST_PRIORITY
    assert opt.peak_limit_w == 0 and opt.peak_follow_month is False
    assert opt.eco is True
    assert (opt.upper_w(), opt.lower_w(), opt.net_target_w()) == (4000, -500, 0)
    assert (opt.start_delay_ms, opt.stop_delay_ms, opt.min_on_ms, opt.min_off_ms) == (60000, 180000, 120000, 180000)
    assert opt.excess_threshold_w == 13000


def test_values_convert_to_core_units():
    opt = optimiser_from_config(
        {
            "site": {"distribution": "shared", "peak_limit_w": 2500, "peak_follow_month": True},
            "solar": {"eco": False, "start_delay_s": 3, "stop_delay_s": 10, "net_power_target_w": -3000},
        }
    )
    assert opt.distribution == DIST_SHARED and opt.peak_limit_w == 2500 and opt.peak_follow_month
    assert (opt.upper_w(), opt.lower_w()) == (1000, -3500)
    assert opt.net_target_w() == -3000  # -3500 + 300 = -3200 is the floor: -3000 stands
    assert opt.start_delay_ms == 3000 and opt.stop_delay_ms == 10000


def test_target_is_clamped_to_300w_above_the_band_in_force():
    opt = optimiser_from_config({"solar": {"net_power_target_w": -3300}})
    assert opt.net_target_w() == -200  # ECO on: lower -500
    opt.eco = False
    assert opt.net_target_w() == -3200  # ECO off: lower -3500


def test_errors_name_the_key_and_the_rule():
    assert "site.peak_limit_w" in error_of({"site": {"peak_limit_w": 2499}})
    assert error_of({"site": {"peak_limit_w": 2500}}) is None
    assert "site.distribution" in error_of({"site": {"distribution": "fair"}})
    assert "eco_on_lower_w: must be below eco_on_upper_w" in error_of({"solar": {"eco_on_lower_w": 4000}})
    assert error_of({"solar": {"eco_on_lower_w": 3999}}) is None
    assert "eco_off_lower_w: must be below" in error_of({"solar": {"eco_off_lower_w": 1000}})
    doc = {"solar": {"eco_off_upper_w": 4000, "eco_off_lower_w": -600}}
    assert "eco_on_upper_w: must be above eco_off_upper_w" in error_of(doc)
    assert "eco_on_lower_w: must be above eco_off_lower_w" in error_of({"solar": {"eco_off_lower_w": -500}})
    assert "solar.eco: must be true or false" in error_of({"solar": {"eco": 1}})
    assert "solar.start_delay_s: must be a whole number" in error_of({"solar": {"start_delay_s": 2.5}})
    assert "solar.start_delay_s: must be between 0 and 3600" in error_of({"solar": {"start_delay_s": 3601}})
    assert "must be a whole number" in error_of({"solar": {"min_on_s": True}})


def test_profiles_are_evcms_table():
    assert (step_up_w(1, 230), step_down_w(1, 230)) == (240, 70)
    assert (step_up_w(1, 240), step_down_w(1, 240)) == (240, 70)
    assert (step_up_w(3, 230), step_down_w(3, 230)) == (700, 200)
    assert (step_up_w(3, 120), step_down_w(3, 120)) == (370, 105)
    assert (step_up_w(1, 200), step_down_w(1, 200)) == (205, 60)
    assert (step_up_w(1, 120), step_down_w(1, 120)) == (122, 35)
    assert profile_name(3, 230) == "eu_3ph_400" and profile_name(1, 120) == "na_1ph_120"


def test_every_table_step_up_covers_one_ampere_and_step_down_is_about_three_tenths():
    for name, phases, voltage_v, up_w, down_w in PROFILES:
        per_amp = watts_per_amp(phases, voltage_v)
        assert per_amp <= up_w <= per_amp + 10, name
        assert per_amp * 28 // 100 <= down_w <= per_amp * 31 // 100, name


def test_a_supply_outside_the_table_gets_the_same_rule():
    assert profile_name(2, 230) == "derived"
    assert step_up_w(2, 230) == 460 + 9
    assert step_down_w(2, 230) == 138
    assert step_up_w(3, 220) == 660 + 13
