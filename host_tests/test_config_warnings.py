# Tests of chargeguard.configwarn: warnings about valid configurations (never a
# refusal). Each warning has a case that triggers it and one just inside its
# bound that does not. Runs under pytest and on the MicroPython unix port.
from chargeguard import config, configwarn


def valid(site=None, chargers=()):
    """The normalised document of `site` and `chargers`, which must be valid (warnings never refuse)."""
    doc = {"site": site or {}, "chargers": []}
    for index in range(len(chargers)):
        entry = {"name": "Box %d" % (index + 1)}
        if chargers[index].get("type") != "ocpp":  # an OCPP box connects to the device: no host
            entry["host"] = "192.168.1.%d" % (60 + index)
        entry.update(chargers[index])
        doc["chargers"].append(entry)
    doc, errors = config.check(doc)
    assert errors == [], errors
    return doc


def found(site=None, chargers=()):
    return configwarn.warnings(valid(site, chargers))


def paths(site=None, chargers=()):
    return [path for path, _ in found(site, chargers)]


def test_a_default_document_and_a_default_charger_have_no_warning():
    assert found() == []
    assert found(chargers=[{}]) == []
    assert found(chargers=[{}, {}, {}]) == []


# ------------------------------------------------------- failsafe_a per phase

SITE_25 = {"breaker_a": 25, "margin_a": 1}  # the guard gives the chargers at most 24 A a phase


def test_failsafe_currents_up_to_breaker_minus_margin_on_every_phase_are_fine():
    assert found(SITE_25, [{"failsafe_a": 12}, {"failsafe_a": 12}]) == []


def test_failsafe_currents_above_breaker_minus_margin_are_warned_once_for_the_phases_they_share():
    warned = found(SITE_25, [{"failsafe_a": 12}, {"failsafe_a": 13}])
    assert len(warned) == 1, warned
    path, message = warned[0]
    assert path == "chargers.1.failsafe_a", warned
    assert message.startswith("the failsafe currents on phase A/B/C sum to 25 A (chargers.0 12 A, chargers.1 13 A)"), message
    assert "above breaker_a - margin_a = 24 A" in message and "the breaker can trip" in message, message


def test_one_phase_boxes_count_only_on_their_own_phase():
    site = {"breaker_a": 17, "margin_a": 1}
    spread = [
        {"phases": 1, "phase_map": "A", "failsafe_a": 16},
        {"phases": 1, "phase_map": "B", "failsafe_a": 16},
        {"phases": 1, "phase_map": "C", "failsafe_a": 16},
    ]
    assert found(site, spread) == []
    # Two on phase A: 16 + 8 = 24 A there, B and C stay at 16 and 0.
    stacked = [
        {"phases": 1, "phase_map": "A", "failsafe_a": 16},
        {"phases": 1, "phase_map": "B", "failsafe_a": 16},
        {"phases": 1, "phase_map": "A", "failsafe_a": 8, "min_a": 6},
    ]
    warned = found(site, stacked)
    assert len(warned) == 1 and warned[0][0] == "chargers.2.failsafe_a", warned
    assert "on phase A sum to 24 A (chargers.0 16 A, chargers.2 8 A)" in warned[0][1], warned
    # A 1-phase box beside a 3-phase one: only phase B carries both.
    mixed = [{"failsafe_a": 10}, {"phases": 1, "phase_map": "B", "failsafe_a": 6}]
    assert found(site, mixed) == []
    mixed[1]["failsafe_a"] = 7
    warned = found(site, mixed)
    assert len(warned) == 1 and "on phase B sum to 17 A (chargers.0 10 A, chargers.1 7 A)" in warned[0][1], warned


def test_the_guard_caps_the_failsafe_at_circuit_a_but_a_boxs_own_failsafe_is_uncapped():
    # A Trydan's failsafe is the guard's offer: min(failsafe_a, circuit_a) = 10 A.
    capped = [{"failsafe_a": 16, "circuit_a": 10}, {"failsafe_a": 14}]
    assert paths(SITE_25, capped) == ["chargers.0.max_a"]  # 10 + 14 = 24 A: no failsafe warning
    # A KEBA keeps failsafe_a itself (chargers/keba.py): 16 A when ChargeGuard is silent.
    own = [{"type": "keba_p30", "failsafe_a": 16, "circuit_a": 10}, {"failsafe_a": 14}]
    warned = found(SITE_25, own)
    assert [path for path, _ in warned] == ["chargers.0.max_a", "chargers.0.failsafe_a", "chargers.1.failsafe_a"], warned
    assert "sum to 30 A (chargers.0 16 A, chargers.1 14 A)" in " ".join(message for _, message in warned), warned


def test_a_disabled_charger_has_no_failsafe_current():
    assert found(SITE_25, [{"failsafe_a": 16}, {"failsafe_a": 16, "enabled": False}]) == []


# ------------------------------------------------------------ peak_limit_w


def test_a_peak_limit_that_fits_the_3_phase_minimum_is_fine():
    # 3 x 230 V x 6 A = 4140 W
    assert found({"peak_limit_w": 4140}, [{}]) == []


def test_a_peak_limit_below_the_3_phase_minimum_is_warned():
    warned = found({"peak_limit_w": 4139}, [{}])
    assert len(warned) == 1 and warned[0][0] == "site.peak_limit_w", warned
    message = warned[0][1]
    assert "4139 W is below the least chargers.0 charges at, 3 phase(s) x 230 V x 6 A = 4140 W" in message, message
    assert "set at least 4140 W plus the house's load" in message and "every quarter-hour" in message, message


def test_the_least_power_follows_the_chargers_phases_min_a_and_the_site_voltage():
    # 1-phase box: 1380 W fits under the 2500 W floor.
    assert found({"peak_limit_w": 2500}, [{"phases": 1, "phase_map": "B"}]) == []
    # 240 V: 3 x 240 x 6 = 4320 W.
    assert found({"peak_limit_w": 4320, "voltage_v": 240}, [{}]) == []
    assert paths({"peak_limit_w": 4319, "voltage_v": 240}, [{}]) == ["site.peak_limit_w"]
    # A 1-phase site: 1 x 230 V x min_a.
    one = {"phases": 1, "peak_limit_w": 2500}
    assert found(one, [{"min_a": 10}]) == []  # 2300 W
    assert paths(one, [{"min_a": 11, "max_a": 16}]) == ["site.peak_limit_w"]  # 2530 W


def test_no_peak_limit_or_a_disabled_charger_gives_no_peak_warning():
    assert found({"peak_limit_w": 0}, [{}]) == []
    assert found({"peak_limit_w": 2500}, [{"enabled": False}]) == []


# ------------------------------------------------------------ OCPP password


def ocpp(password=""):
    entry = {"type": "ocpp", "charge_point_id": "ALFEN-1234", "password": password}
    return entry


def test_an_ocpp_box_without_a_password_is_warned():
    warned = found(chargers=[ocpp()])
    assert len(warned) == 1 and warned[0][0] == "chargers.0.password", warned
    assert "connects as 'ALFEN-1234' takes over this OCPP box (no Basic auth)" in warned[0][1], warned


def test_an_ocpp_box_with_a_password_is_fine_and_the_password_never_shown():
    secret = "box-secret-42"
    assert found(chargers=[ocpp(secret)]) == []
    warned = found({"peak_limit_w": 2500}, [ocpp(secret)])
    assert warned and secret not in repr(warned), warned


# ------------------------------------------------------------- max_a / circuit_a


def test_max_a_up_to_circuit_a_is_fine():
    assert found(chargers=[{"max_a": 16, "circuit_a": 16}]) == []


def test_max_a_above_circuit_a_is_said_to_be_capped():
    warned = found(chargers=[{"max_a": 17, "circuit_a": 16}])
    assert warned == [(
        "chargers.0.max_a",
        "17 A is above circuit_a (16 A): the guard never offers more than circuit_a; set at most 16 A",
    )], warned


def test_a_boxs_own_failsafe_above_circuit_a_is_warned_the_guards_is_capped():
    keba = {"type": "keba_p30", "max_a": 20, "circuit_a": 16, "failsafe_a": 16}
    assert paths(chargers=[keba]) == ["chargers.0.max_a"]
    keba["failsafe_a"] = 17
    warned = found(chargers=[keba])
    assert [path for path, _ in warned] == ["chargers.0.max_a", "chargers.0.failsafe_a"], warned
    assert "uncapped" in warned[1][1], warned
    # The guard caps a Trydan's failsafe at circuit_a: max_a's warning only.
    trydan = {"max_a": 20, "circuit_a": 16, "failsafe_a": 17}
    assert paths(chargers=[trydan]) == ["chargers.0.max_a"]


# ------------------------------------------------------------------ the notes


def test_add_notes_appends_each_warning_as_a_sentence():
    doc = valid(chargers=[{"max_a": 17, "circuit_a": 16}])
    notes = ["before"]
    configwarn.add_notes(doc, notes)
    assert notes[0] == "before" and len(notes) == 2, notes
    assert notes[1].startswith("warning: chargers.0.max_a: 17 A is above circuit_a (16 A)"), notes


def test_the_notes_hold_at_most_max_notes_warnings_then_a_count():
    # 8 OCPP boxes without a password, each with max_a above circuit_a: 16 warnings.
    boxes = []
    for index in range(8):
        box = ocpp()
        box.update({"charge_point_id": "BOX%d" % index, "max_a": 17, "circuit_a": 16})
        boxes.append(box)
    doc = valid(chargers=boxes)
    assert len(configwarn.warnings(doc)) == 16
    notes = []
    configwarn.add_notes(doc, notes)
    assert configwarn.MAX_NOTES == config.MAX_NOTE_ERRORS == 10
    assert len(notes) == 11 and notes[9].startswith("warning: chargers.4.max_a: "), notes
    assert notes[10] == "warning: and 6 more (make check-config CONFIG=config.json lists them all)", notes
    # At the bound: no count.
    notes = []
    configwarn.add_notes(valid(chargers=boxes[:5]), notes)
    assert len(notes) == 10 and not notes[-1].startswith("warning: and"), notes
