"""The simulated house: scripted household loads, PV, plus what the EVs draw.

The electrical model is deliberately plain: per site phase, grid current =
house load - PV production (a 3-phase inverter: a third on each phase) + the
current each charger's car draws on that phase (signed, import positive). Power = current x voltage (unity power factor). Energy
registers integrate the power so telegrams look like a real meter's.
"""

NOMINAL_MV = 230_000


class Scene:
    """A moment of the scripted day: from `clock` on, the house draws `amps` per phase and the PV makes `pv_w`."""

    def __init__(self, clock, text, amps, meter_silent=False, hold_s=None, pv_w=0):
        self.clock = clock
        self.text = text
        self.amps = amps
        self.meter_silent = meter_silent
        self.hold_s = hold_s
        self.pv_w = pv_w


# A winter weekday in a 3 x 25 A house. Each scene is held `hold_s` real
# seconds (default `scene_s` of the runner), so a whole day plays in minutes.
# The silent-meter scene outlasts the sim's meter_timeout (10 s) by 8 s, so
# the failsafe shows whatever the pace.
DAY = [
    Scene("00:00", "night: fridge and standby", (1.2, 0.8, 1.0)),
    Scene("06:30", "heat pump starts (3-phase)", (8.2, 7.8, 8.0)),
    Scene("07:00", "kettle on L1 (+9 A)", (17.2, 7.8, 8.0)),
    Scene("07:05", "kettle off, toaster on L2 (+4 A)", (8.2, 11.8, 8.0)),
    Scene("08:00", "heat pump off, family gone", (1.2, 0.8, 1.0)),
    Scene("12:00", "oven on L2 and L3 (+9 A each)", (1.5, 9.8, 10.0)),
    Scene("12:45", "oven off, washing machine heats on L3 (+9 A)", (1.5, 0.8, 10.0)),
    Scene("18:00", "induction hob on L1 (+14 A) and L2 (+10 A)", (15.2, 10.8, 1.0)),
    Scene("18:20", "kettle on L1 as well (+9 A): L1 at 24 A of house load", (24.2, 10.8, 1.0)),
    Scene("18:25", "kettle off, heat pump on (3-phase)", (23.2, 18.8, 9.0)),
    Scene("19:30", "cooking done, heat pump runs on", (9.2, 8.8, 9.0)),
    Scene("22:00", "P1 cable pulled out by the cleaner", (9.2, 8.8, 9.0), meter_silent=True, hold_s=18),
    Scene("22:01", "P1 cable back in", (9.2, 8.8, 9.0)),
    Scene("23:00", "heat pump off, night", (1.2, 0.8, 1.0)),
]


# A sunny day with one cloud, for a car in `solar` mode (make sim SIM_ARGS="--day solar").
# The house takes 1.5 A a phase (about 1 kW); the sim's solar settings
# (tools/sim/run.py SIM_SOLAR) are EVCM's default band, ECO on: start at 4000 W
# export held for start_delay, pause at 500 W import held for stop_delay.
# Scenes that show a timer are held longer than it (`hold_s`, from SIM_SOLAR
# in run.py, which checks them); the cloud is shorter than stop_delay.
SOLAR_HOUSE_A = (1.5, 1.5, 1.5)
SOLAR_DAY = [
    Scene("06:00", "dawn: no sun, the car waits (solar_wait)", SOLAR_HOUSE_A, pv_w=0),
    Scene("09:00", "morning sun 3.5 kW: 2.5 kW export, under the 4 kW start threshold", SOLAR_HOUSE_A, pv_w=3500),
    Scene("10:30", "sun 6 kW: 5 kW export, above the threshold: start delay, then the car starts", SOLAR_HOUSE_A,
          pv_w=6000, hold_s=40),
    Scene("12:00", "midday sun 10 kW: the car takes the surplus", SOLAR_HOUSE_A, pv_w=10000, hold_s=25),
    Scene("13:00", "a cloud: sun 2 kW, import beyond 500 W; shorter than the sustain, the car keeps charging at 6 A",
          SOLAR_HOUSE_A, pv_w=2000, hold_s=15),
    Scene("13:01", "the cloud has passed: sun 10 kW again", SOLAR_HOUSE_A, pv_w=10000, hold_s=25),
    Scene("17:00", "evening sun 3.5 kW: the car at 6 A imports, the sustain runs out, the car pauses", SOLAR_HOUSE_A,
          pv_w=3500, hold_s=50),
    Scene("19:00", "sunset", SOLAR_HOUSE_A, pv_w=0),
]
DAYS = {"default": DAY, "solar": SOLAR_DAY}


class Site:
    """Grid readings of the simulated house for the P1 emulator."""

    def __init__(self, chargers):
        # chargers: list of (emulator, phase_map) where phase_map maps the
        # charger's L1.. onto site phase indices (0=A, 1=B, 2=C).
        self.chargers = chargers
        self.house_ma = [0, 0, 0]
        self.pv_ma = 0  # PV current per phase (a 3-phase inverter)
        self.import_wh = 4_726_494
        self.export_wh = 3_284_320
        self._energy_mws = 0  # sub-Wh remainder, in mW*s

    def set_house(self, amps, pv_w=0):
        self.house_ma = [int(round(value * 1000)) for value in amps]
        self.pv_ma = pv_w * 1_000_000 // (3 * NOMINAL_MV)

    def grid_currents_ma(self):
        currents = [current - self.pv_ma for current in self.house_ma]
        for emulator, phase_map in self.chargers:
            drawn = emulator.drawn_current_ma()
            for line, phase in enumerate(phase_map):
                if line < len(drawn):
                    currents[phase] += drawn[line]
        return currents

    def advance(self, seconds, currents_ma):
        """Integrate energy over `seconds` at the given currents."""
        power_w = sum(current * NOMINAL_MV // 1_000_000 for current in currents_ma)
        self._energy_mws += int(power_w * 1000 * seconds)
        whole_wh = self._energy_mws // 3_600_000
        self._energy_mws -= whole_wh * 3_600_000
        if whole_wh > 0:
            self.import_wh += whole_wh
        else:
            self.export_wh -= whole_wh
