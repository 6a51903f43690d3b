from chargeguard.core.optsettings import OptimiserSettings
from chargeguard.core.settings import ChargerSettings
from chargeguard.core.solar import (
    MODE_ECO,
    MODE_EXCESS,
    MODE_SOLAR,
    REASON_BELOW,
    REASON_ECO,
    REASON_EXCESS,
    REASON_EXCESS_WAIT,
    REASON_MIN_OFF,
    REASON_MIN_ON,
    REASON_SOLAR,
    REASON_SOLAR_WAIT,
    REASON_START_DELAY,
    REASON_STOP_DELAY,
    SolarRegulator,
)


def make_opt(**changes):
    opt = OptimiserSettings()
    opt.start_delay_ms = 60000
    opt.stop_delay_ms = 180000
    opt.min_on_ms = 0
    opt.min_off_ms = 0
    for key in changes:
        setattr(opt, key, changes[key])
    return opt


def make_charger(phases=3, min_a=6, max_a=16):
    charger = ChargerSettings()
    charger.phases = phases
    charger.min_ma = min_a * 1000
    charger.max_ma = max_a * 1000
    return charger


class Loop:
    """One regulator fed with an export the test sets; the car draws its target at once."""

    def __init__(self, opt=None, mode=MODE_SOLAR, phases=3, voltage_v=230, **charger):
        self.opt = opt or make_opt()
        self.mode = mode
        self.phases = phases
        self.voltage_v = voltage_v
        self.charger = make_charger(phases=phases, **charger)
        self.reg = SolarRegulator()
        self.now = 5000
        self.draw_w = 0

    def tick(self, surplus_w, step_ms=5000):
        """Tick with a house+PV surplus of surplus_w (W the car could draw at 0 W grid)."""
        self.now += step_ms
        export_w = surplus_w - self.draw_w
        args = (self.opt, self.mode, self.charger, self.phases, self.voltage_v)
        target = self.reg.tick(*args, export_w, self.draw_w, self.now)
        self.draw_w = target * self.phases * self.voltage_v // 1000
        return target

    def run(self, surplus_w, seconds, step_ms=5000):
        target = None
        for _ in range(seconds * 1000 // step_ms):
            target = self.tick(surplus_w, step_ms)
        return target


def test_start_needs_export_at_upper_for_the_whole_start_delay():
    loop = Loop()  # ECO on band: upper 4000 W, start delay 60 s
    assert loop.run(3999, 600) == 0
    assert loop.reg.reason == REASON_SOLAR_WAIT
    assert loop.reg.start_timer_ms == 0
    # Exactly at the upper threshold counts; the delay runs from the first tick.
    assert loop.tick(4000) == 0
    assert loop.reg.reason == REASON_START_DELAY
    assert loop.run(4000, 55) == 0
    assert loop.reg.start_timer_ms == 55000
    assert loop.tick(4000) == 6000
    assert loop.reg.reason == REASON_SOLAR and loop.reg.running


def test_one_watt_below_upper_restarts_the_start_delay():
    loop = Loop()
    loop.run(4000, 55)
    assert loop.reg.start_timer_ms == 50000
    assert loop.tick(3999) == 0
    assert loop.reg.start_timer_ms == 0 and loop.reg.reason == REASON_SOLAR_WAIT
    # The full delay again: 60 s from the next tick at the threshold.
    assert loop.run(4000, 60) == 0
    assert loop.tick(4000) == 6000


def start(loop, surplus_w=4000):
    loop.run(surplus_w, 65)
    assert loop.reg.running


def test_stop_needs_import_beyond_lower_for_the_whole_sustain():
    loop = Loop()  # lower -500 W, sustain 180 s
    start(loop)
    # 6 A on three phases draws 4140 W; grid at exactly -500 W is not below.
    loop.run(4140 - 500, 600)
    assert loop.reg.running and loop.reg.reason == REASON_SOLAR
    assert loop.reg.stop_timer_ms == 0
    assert loop.tick(4140 - 501) == 6000
    assert loop.reg.reason == REASON_STOP_DELAY
    loop.run(4140 - 501, 175)
    assert loop.reg.stop_timer_ms == 175000 and loop.reg.running
    assert loop.tick(4140 - 501) == 0
    assert loop.reg.reason == REASON_BELOW and not loop.reg.running
    # Waiting to restart still says why it stopped.
    loop.run(1000, 30)
    assert loop.reg.reason == REASON_BELOW


def test_one_watt_back_above_lower_restarts_the_sustain():
    loop = Loop()
    start(loop)
    loop.run(4140 - 501, 170)
    assert loop.reg.stop_timer_ms == 165000
    assert loop.tick(4140 - 500) == 6000
    assert loop.reg.stop_timer_ms == 0 and loop.reg.reason == REASON_SOLAR
    loop.run(4140 - 501, 180)
    assert loop.reg.running and loop.reg.stop_timer_ms == 175000
    assert loop.tick(4140 - 501) == 0


def test_a_passing_cloud_shorter_than_the_sustain_does_not_stop_the_car():
    loop = Loop()
    start(loop, 8000)
    for _ in range(5):
        loop.run(2000, 120)  # two minutes of cloud: import beyond the lower threshold
        assert loop.reg.running and loop.reg.reason == REASON_STOP_DELAY
        assert loop.draw_w == 4140  # held at the minimum meanwhile
        loop.run(8000, 60)
        assert loop.reg.reason == REASON_SOLAR


def test_min_on_keeps_a_fresh_start_running_after_the_sustain():
    loop = Loop(make_opt(stop_delay_ms=10000, min_on_ms=120000))
    start(loop)
    loop.run(0, 15)
    assert loop.reg.running and loop.reg.reason == REASON_MIN_ON
    loop.run(0, 100)
    assert loop.reg.running
    loop.run(0, 10)
    assert not loop.reg.running and loop.reg.reason == REASON_BELOW


def test_min_off_holds_a_restart_after_the_start_delay():
    loop = Loop(make_opt(stop_delay_ms=0, start_delay_ms=10000, min_off_ms=180000))
    start(loop)
    stopped_at = None
    while loop.reg.running:
        loop.tick(0)
        stopped_at = loop.now
    loop.run(9000, 15)
    assert loop.reg.reason == REASON_MIN_OFF and loop.reg.target_ma == 0
    while not loop.reg.running:
        loop.tick(9000)
    assert loop.now - stopped_at >= 180000
    assert loop.now - stopped_at < 185000


def test_steps_follow_the_three_phase_400v_profile():
    # Target 0 W; step up at 700 W export over it, down at 200 W import.
    loop = Loop(make_opt(eco_on_upper_w=4000))
    start(loop, 4140 + 6 * 690)  # surplus for 12 A exactly
    assert loop.reg.target_ma == 12000
    assert loop.tick(8280 + 699) == 12000
    assert loop.tick(8280 + 700) == 13000
    assert loop.tick(8970 - 199) == 13000
    assert loop.tick(8970 - 200) == 12000


def test_steps_follow_the_one_phase_230v_profile():
    opt = make_opt(eco_on_upper_w=1400, eco_on_lower_w=-300)
    loop = Loop(opt, phases=1)
    start(loop, 2300)
    assert loop.reg.target_ma == 10000
    assert loop.tick(2300 + 239) == 10000
    assert loop.tick(2300 + 240) == 11000
    assert loop.tick(2530 - 69) == 11000
    assert loop.tick(2530 - 70) == 10000


def test_a_one_phase_car_takes_the_whole_surplus_on_its_phase():
    loop = Loop(make_opt(eco_on_upper_w=1400, eco_on_lower_w=-300), phases=1, max_a=32)
    start(loop, 1400)
    assert loop.reg.target_ma == 6000
    # 5 kW more sun: straight to 27 A (6210 W), not one ampere per scan.
    assert loop.tick(6400) == 27000


def test_a_large_change_moves_in_one_tick_both_ways():
    loop = Loop()
    start(loop, 4200)
    assert loop.tick(11040) == 16000  # 16 A x 690 W
    assert loop.tick(5600) == 8000  # 5600 // 690 = 8 A


def test_the_current_follows_what_the_car_draws_not_what_was_offered():
    loop = Loop()
    start(loop, 11040)
    assert loop.reg.target_ma == 16000
    # The car takes only 10 A (6900 W): the offer stays, no wind-up beyond max.
    export_w = 11040 - 6900
    loop.now += 5000
    target = loop.reg.tick(loop.opt, MODE_SOLAR, loop.charger, 3, 230, export_w, 6900, loop.now)
    assert target == 16000
    # A cloud: 5000 W surplus with the car at 10 A goes to 7 A at once.
    loop.now += 5000
    target = loop.reg.tick(loop.opt, MODE_SOLAR, loop.charger, 3, 230, 5000 - 6900, 6900, loop.now)
    assert target == 7000


def test_an_unsettled_tick_holds_the_current_but_not_the_timers():
    loop = Loop()
    start(loop, 4140)
    opt, charger, now = loop.opt, loop.charger, loop.now
    reg = loop.reg
    # Plenty of surplus, but the reading may predate the last change: hold.
    assert reg.tick(opt, MODE_SOLAR, charger, 3, 230, 6000, 4140, now + 5000, False) == 6000
    assert reg.tick(opt, MODE_SOLAR, charger, 3, 230, 6000, 4140, now + 10000, True) == 14000
    # Below the lower threshold while unsettled: the current stays, the sustain runs.
    assert reg.tick(opt, MODE_SOLAR, charger, 3, 230, -3000, 9660, now + 15000, False) == 14000
    assert reg.reason == REASON_STOP_DELAY
    assert reg.tick(opt, MODE_SOLAR, charger, 3, 230, -3000, 9660, now + 15000 + 180000, False) == 0
    # A start is not held: there is no step to wait for.
    loop = Loop(make_opt(start_delay_ms=0))
    assert loop.reg.tick(loop.opt, MODE_SOLAR, loop.charger, 3, 230, 6900, 0, 10000, False) == 10000


def test_an_increase_never_goes_beyond_the_room_others_leave():
    loop = Loop()
    start(loop, 4140)
    opt, charger, now = loop.opt, loop.charger, loop.now
    reg = loop.reg
    # Its share says 14 A, but another car still draws: 2070 W of room over its own draw.
    assert reg.tick(opt, MODE_SOLAR, charger, 3, 230, 5520, 4140, now + 5000, True, 4140 + 2070) == 9000
    # The room never forces a decrease: that is the share's business.
    assert reg.tick(opt, MODE_SOLAR, charger, 3, 230, 800, 6210, now + 10000, True, 0) == 9000
    # No room figure: the share alone.
    assert reg.tick(opt, MODE_SOLAR, charger, 3, 230, 4830, 6210, now + 15000, True, None) == 16000


def test_net_power_target_is_kept_300w_above_the_lower_threshold():
    opt = make_opt(eco_on_lower_w=-100, net_power_target_w=0)
    assert opt.net_target_w() == 200
    opt.net_power_target_w = 1000
    assert opt.net_target_w() == 1000
    loop = Loop(make_opt(net_power_target_w=-2000))  # lower -500: target in force -200
    start(loop, 4000)
    assert loop.reg.net_target_w == -200
    # At 6 A (4140 W) the grid must reach -200 + 700 W to earn 7 A.
    assert loop.tick(4140 + 499) == 6000
    assert loop.tick(4140 + 500) == 7000


def test_eco_switch_selects_the_band():
    opt = make_opt()
    opt.eco = False  # ECO off band: upper 1000, lower -3500
    loop = Loop(opt)
    loop.run(1000, 65)
    assert loop.reg.running and loop.reg.upper_w == 1000 and loop.reg.lower_w == -3500
    # 3 kW of import beyond the car's draw is inside the ECO off band.
    loop.run(4140 - 3000, 600)
    assert loop.reg.running


def test_eco_mode_charges_the_minimum_without_sun_and_adds_the_surplus():
    loop = Loop(mode=MODE_ECO)
    assert loop.tick(0) == 6000
    assert loop.reg.reason == REASON_ECO
    loop.run(0, 3600)
    assert loop.reg.target_ma == 6000
    assert loop.tick(9 * 690) == 9000
    assert loop.reg.reason == REASON_SOLAR


def test_excess_starts_only_above_the_threshold_and_takes_what_is_beyond_it():
    loop = Loop(mode=MODE_EXCESS)  # threshold 13000 W
    assert loop.run(13000, 600) == 0
    assert loop.reg.reason == REASON_EXCESS_WAIT
    loop.tick(13001)
    assert loop.reg.reason == REASON_START_DELAY
    loop.run(13001, 60)
    assert loop.reg.running and loop.reg.target_ma == 6000  # max(min, beyond it)
    assert loop.reg.reason == REASON_EXCESS
    # Dynamic OCPP's example: 15000 W export, 2000 W beyond: 1-phase 8 A.
    assert loop.tick(13000 + 10 * 690) == 10000


def test_excess_pauses_once_the_surplus_is_back_at_the_threshold():
    loop = Loop(mode=MODE_EXCESS)
    loop.run(16000, 70)
    assert loop.reg.running
    loop.run(13001, 600)
    assert loop.reg.running
    loop.tick(13000)
    assert loop.reg.reason == REASON_STOP_DELAY
    loop.run(13000, 180)
    assert not loop.reg.running and loop.reg.reason == REASON_BELOW


def test_reset_forgets_the_session():
    loop = Loop(make_opt(min_off_ms=600000, stop_delay_ms=0))
    start(loop)
    loop.tick(0)
    assert not loop.reg.running
    loop.reg.reset()
    assert loop.reg.reason == REASON_SOLAR_WAIT
    loop.run(5000, 65)
    assert loop.reg.running  # a new car owes no min_off


def test_timers_survive_the_tick_counter_wrap():
    loop = Loop()
    loop.now = (1 << 30) - 20000
    loop.run(4000, 60)
    assert loop.now > (1 << 30)
    loop.now &= (1 << 30) - 1
    assert loop.reg.reason == REASON_START_DELAY
    assert loop.tick(4000) == 6000


def test_tick_allocates_nothing_once_warm():
    import gc

    from support import IS_MICROPYTHON, skip

    if not IS_MICROPYTHON:
        skip("allocation is measured on MicroPython, where small ints are not objects")
    loops = [Loop(), Loop(mode=MODE_ECO), Loop(mode=MODE_EXCESS), Loop(phases=2)]
    surpluses = (0, 4000, 9000, 14500, 20000, 3000)
    for loop in loops:
        loop.run(5000, 70)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for surplus in surpluses:
            for loop in loops:
                for _ in range(40):
                    loop.now += 5000
                    export_w = surplus - loop.draw_w
                    loop.reg.tick(loop.opt, loop.mode, loop.charger, loop.phases, 230, export_w, loop.draw_w, loop.now)
        after = gc.mem_alloc()
    finally:
        gc.enable()
    assert after - before == 0, after - before
