"""The simulated house: scripted household loads plus what the EVs draw.

The electrical model is deliberately plain: per site phase, grid current =
house load + the current each charger's car draws on that phase (signed,
import positive). Power = current x voltage (unity power factor). Energy
registers integrate the power so telegrams look like a real meter's.
"""

NOMINAL_MV = 230_000


class Scene:
    """A moment of the scripted day: from `clock` on, the house draws `amps` per phase."""

    def __init__(self, clock, text, amps, meter_silent=False, hold_s=None):
        self.clock = clock
        self.text = text
        self.amps = amps
        self.meter_silent = meter_silent
        self.hold_s = hold_s


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


class Site:
    """Grid readings of the simulated house for the P1 emulator."""

    def __init__(self, chargers):
        # chargers: list of (emulator, phase_map) where phase_map maps the
        # charger's L1.. onto site phase indices (0=A, 1=B, 2=C).
        self.chargers = chargers
        self.house_ma = [0, 0, 0]
        self.import_wh = 4_726_494
        self.export_wh = 3_284_320
        self._energy_mws = 0  # sub-Wh remainder, in mW*s

    def set_house(self, amps):
        self.house_ma = [int(round(value * 1000)) for value in amps]

    def grid_currents_ma(self):
        currents = list(self.house_ma)
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
