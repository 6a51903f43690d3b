"""The reference days of the benchmark, as scenario documents (tools/replay --dump-day NAME prints one).

- sunny: a clear June day, 8.5 kWp, a 3-phase car in solar mode from 07:00 to
  19:00 that wants 50 kWh (20 % -> 85 % of 77 kWh, tapering above 80 %);
- cloudy: the same house and car under fast-moving clouds (seeded, so every
  run sees the same sky): the sun drops to 15-60 % within 1-8 s, for 5 s to
  5 min, every 30 s to 10 min;
- winter: 3 kWp on a short day with a heat pump cycling and a 1-phase car
  in solar mode (thresholds for 1 x 230 V: start at 1400 W export, pause
  beyond 300 W import, on every controller);
- evening: the evening peak of a 3 x 25 A house (oven, hob, kettle, heat
  pump, dryer) with two cars in fast mode, a 3-phase one and a 1-phase
  32 A one on L1: the breaker is the story;
- capacity: a Belgian capacity-tariff morning (peak_limit_w 6000, an e-MUCS
  meter with its running quarter-hour average), cooking spikes at the start
  of quarters, a 3-phase car in fast mode.
"""

SUNNY_HOUSE = {
    "base_w": [250, 200, 300],
    "loads": [
        {"at": "08:00", "for_s": 180, "w": [2000, 0, 0], "what": "kettle"},
        {"at": "10:00", "for_s": 1800, "w": [0, 2000, 0], "what": "washing machine heating"},
        {"at": "12:30", "for_s": 2400, "w": [0, 0, 2500], "what": "oven"},
        {"at": "15:00", "for_s": 1500, "w": [2000, 0, 0], "what": "dishwasher"},
        {"at": "17:30", "for_s": 1200, "w": [1800, 1800, 0], "what": "cooking"},
    ],
}

SUMMER_CAR = {"name": "car", "arrival": "07:00", "departure": "19:00", "battery_wh": 77000, "soc_pct": 20,
              "target_soc_pct": 85, "taper_soc_pct": 80, "min_a": 6, "max_a": 16, "phases": 3, "phase_map": "ABC",
              "response_s": 5, "mode": "solar"}


def sunny():
    return {
        "name": "sunny",
        "description": "clear June day, 8.5 kWp, one 3-phase car in solar mode wanting 50 kWh",
        "start": "07:00", "duration_s": 12 * 3600,
        "meter": {"interval_s": 1, "flavour": "nl"},
        "site": {"phases": 3, "voltage_v": 230, "breaker_a": 25, "peak_limit_w": 0},
        "house": SUNNY_HOUSE,
        "pv": {"peak_w": 8500, "sunrise": "05:30", "sunset": "21:30"},
        "cars": [dict(SUMMER_CAR)],
    }


def cloudy():
    day = sunny()
    day["name"] = "cloudy"
    day["description"] = "the sunny day's house and car under fast-moving clouds (seed 7)"
    day["pv"] = {"peak_w": 8500, "sunrise": "05:30", "sunset": "21:30",
                 "random_clouds": {"seed": 7, "from": "07:30", "to": "18:30", "gap_s": [30, 600],
                                   "length_s": [5, 300], "factor": [0.15, 0.6], "ramp_s": [1, 8]}}
    return day


def winter():
    loads = []
    for start in range(8 * 60 + 20, 17 * 60, 40):
        loads.append({"at": "%02d:%02d" % (start // 60, start % 60), "for_s": 1200, "w": [800, 800, 800],
                      "what": "heat pump"})
    loads.append({"at": "12:00", "for_s": 1800, "w": [0, 2300, 0], "what": "cooking"})
    return {
        "name": "winter",
        "description": "3 kWp on a short December day, heat pump cycling, a 1-phase car in solar mode",
        "start": "08:00", "duration_s": 9 * 3600,
        "meter": {"interval_s": 1, "flavour": "nl"},
        "site": {"phases": 3, "voltage_v": 230, "breaker_a": 25, "peak_limit_w": 0},
        "house": {"base_w": [150, 120, 130], "loads": loads},
        "pv": {"peak_w": 3000, "sunrise": "08:40", "sunset": "16:40",
               "random_clouds": {"seed": 11, "from": "09:00", "to": "16:00", "gap_s": [120, 1200],
                                 "length_s": [30, 600], "factor": [0.3, 0.7], "ramp_s": [2, 20]}},
        "cars": [{"name": "car", "arrival": "08:00", "departure": "17:00", "battery_wh": 40000, "soc_pct": 40,
                  "target_soc_pct": 80, "min_a": 6, "max_a": 16, "phases": 1, "phase_map": "A",
                  "response_s": 5, "mode": "solar"}],
        "controllers": {
            "chargeguard": {"solar": {"eco_on_upper_w": 1400, "eco_on_lower_w": -300, "net_power_target_w": 0}},
            "evcm": {"upper_w": 1400, "lower_w": -300},
            "smartevse": {"start_a": 6},
        },
    }


def evening():
    return {
        "name": "evening",
        "description": "evening peak of a 3 x 25 A house with two cars in fast mode",
        "start": "17:00", "duration_s": 6 * 3600,
        "meter": {"interval_s": 1, "flavour": "nl"},
        "site": {"phases": 3, "voltage_v": 230, "breaker_a": 25, "peak_limit_w": 0},
        "house": {"base_w": [400, 350, 300], "loads": [
            {"at": "17:30", "for_s": 3600, "w": [0, 1150, 1150], "what": "oven"},
            {"at": "18:00", "for_s": 2400, "w": [3200, 2300, 0], "what": "induction hob"},
            {"at": "18:20", "for_s": 300, "w": [2000, 0, 0], "what": "kettle"},
            {"at": "18:30", "for_s": 5400, "w": [1800, 1800, 1800], "what": "heat pump"},
            {"at": "19:30", "for_s": 3000, "w": [0, 0, 2500], "what": "dryer"},
            {"at": "21:00", "for_s": 900, "w": [2000, 0, 0], "what": "kettle and toaster"},
        ]},
        "pv": {"peak_w": 0},
        "cars": [
            {"name": "car1", "arrival": "17:45", "departure": "23:00", "battery_wh": 60000, "soc_pct": 30,
             "target_soc_pct": 80, "min_a": 6, "max_a": 16, "phases": 3, "phase_map": "ABC", "response_s": 5,
             "mode": "fast", "priority": 1},
            {"name": "car2", "arrival": "18:10", "departure": "23:00", "battery_wh": 40000, "soc_pct": 20,
             "target_soc_pct": 90, "min_a": 6, "max_a": 32, "phases": 1, "phase_map": "A", "response_s": 5,
             "mode": "fast", "priority": 2},
        ],
    }


def capacity():
    loads = []
    for hour in range(6, 14):
        loads.append({"at": "%02d:00" % hour, "for_s": 420, "w": [1500, 1000, 800], "what": "cooking at the quarter's start"})
        loads.append({"at": "%02d:30" % hour, "for_s": 240, "w": [2000, 0, 0], "what": "kettle"})
    return {
        "name": "capacity",
        "description": "capacity-tariff morning: peak_limit_w 6000 W, e-MUCS meter, a 3-phase car in fast mode",
        "start": "06:00", "duration_s": 8 * 3600,
        "meter": {"interval_s": 1, "flavour": "be"},
        "site": {"phases": 3, "voltage_v": 230, "breaker_a": 40, "peak_limit_w": 6000},
        "house": {"base_w": [300, 250, 250], "loads": loads},
        "pv": {"peak_w": 0},
        "cars": [{"name": "car", "arrival": "06:30", "departure": "14:00", "battery_wh": 77000, "soc_pct": 20,
                  "target_soc_pct": 80, "min_a": 6, "max_a": 16, "phases": 3, "phase_map": "ABC",
                  "response_s": 5, "mode": "fast"}],
    }


DAYS = {"sunny": sunny, "cloudy": cloudy, "winter": winter, "evening": evening, "capacity": capacity}
SOLAR_DAYS = ("sunny", "cloudy", "winter")
