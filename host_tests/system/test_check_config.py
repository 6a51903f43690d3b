"""tools/check_config.py (make check-config): the device's validator on a computer, as a script sees it."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "shims"))
sys.path.insert(0, os.path.join(ROOT, "firmware"))

from chargeguard import config  # noqa: E402

SECRET = "wifi-secret-42"


def check(tmp_path, content, name="config.json"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return run(str(path))


def run(*args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_config.py")] + list(args),
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


def test_a_valid_file_exits_0_with_a_summary_and_no_secret(tmp_path):
    doc = {"chargers": [{"name": "Trydan", "host": "192.168.1.60"}], "wifi": {"ssid": "home", "password": SECRET}}
    code, output = check(tmp_path, json.dumps(doc))
    assert code == 0, output
    assert "valid" in output and "Trydan (192.168.1.60)" in output and "breaker 25 A" in output
    assert SECRET not in output


def test_the_summary_names_each_charger_as_the_device_reaches_it(tmp_path):
    # An OCPP box has no host (it connects to the device), an ABB over RTU neither: the summary must not need one.
    doc = {"meter": {"type": "han"}, "chargers": [
        {"name": "Trydan", "host": "192.168.1.60"},
        {"name": "Alfen", "type": "ocpp", "charge_point_id": "ALFEN-1", "profile_kind": "relative", "priority": 2},
        {"name": "ABB", "type": "abb_terra", "transport": "rtu", "unit": 3, "priority": 3},
    ]}
    code, output = check(tmp_path, json.dumps(doc))
    assert code == 0, output
    assert "Trydan (192.168.1.60), Alfen (OCPP id ALFEN-1), ABB (RS485 unit 3)" in output, output


def test_the_summary_names_the_meter_and_never_its_token(tmp_path):
    token = "0123456789ABCDEF0123456789ABCDEF"
    cases = (
        ({"type": "http", "model": "homewizard_v2", "host": "192.168.1.61", "token": token,
          "cert_hostname": "appliance/p1dongle/5c2fafaabbcc"}, "meter: http homewizard_v2 at 192.168.1.61:443 (token set);"),
        ({"type": "modbus", "model": "sdm630"}, "meter: modbus sdm630 on RS485, unit 1, 9600 baud 8N1;"),
        ({"type": "ct", "factor_ua_l2": 51000}, "meter: ct (factor_ua_l2 51000);"),
        ({"type": "atm90e32", "voltage_inputs": 1}, "meter: atm90e32 (one voltage input: L2 and L3 read as import);"),
        ({"type": "p1"}, "meter: p1;"),
    )
    for meter, said in cases:
        code, output = check(tmp_path, json.dumps({"meter": meter, "chargers": [{"name": "T", "host": "192.168.1.60"}]}))
        assert code == 0 and said in output, output
        assert token not in output


def test_every_error_is_listed_at_once_exactly_as_the_device_sees_them(tmp_path):
    doc = {"name": "", "site": {"breaker_a": 0, "voltage_v": 12}, "guard": {"min_pause_s": -1},
           "chargers": [{"host": "", "max_a": 99}, {"host": "x y", "min_a": 20}],
           "wifi": {"password": "short"}}
    code, output = check(tmp_path, json.dumps(doc))
    assert code == 1, output
    errors = config.validate(doc)
    assert len(errors) == 9, errors
    lines = output.splitlines()
    assert lines[0].endswith("9 errors; the device would NOT apply this file"), output
    assert lines[1:] == ["  %s: %s" % error for error in errors], output
    assert "(not in the file: follows from chargers.1.min_a)" in output  # max_a left at 16
    assert "short" not in output


def test_a_valid_file_with_warnings_lists_them_after_the_summary_and_exits_0(tmp_path):
    box_secret = "ocpp-box-secret"
    doc = {"site": {"breaker_a": 20, "margin_a": 1, "peak_limit_w": 2500}, "chargers": [
        {"name": "Trydan", "host": "192.168.1.60", "failsafe_a": 10},
        {"name": "Alfen", "type": "ocpp", "charge_point_id": "ALFEN-1", "failsafe_a": 10, "priority": 2},
    ]}
    code, output = check(tmp_path, json.dumps(doc))
    assert code == 0, output
    lines = output.splitlines()
    assert "valid" in lines[0], output
    from chargeguard import configwarn

    normalised, errors = config.check(doc)
    expected = ["  warning: %s: %s" % item for item in configwarn.warnings(normalised)]
    assert lines[1:] == expected, output
    # failsafe 10 + 10 A > 20 - 1 on every phase; 2500 W < 4140 W (x2 boxes); no OCPP password.
    said = [line.split(": ")[1] for line in expected]
    assert said == ["chargers.1.password", "chargers.1.failsafe_a", "site.peak_limit_w", "site.peak_limit_w"], output
    # Just inside every bound: the summary alone.
    doc["site"] = {"breaker_a": 21, "margin_a": 1, "peak_limit_w": 4140}
    doc["chargers"][1]["password"] = box_secret
    code, output = check(tmp_path, json.dumps(doc))
    assert code == 0 and len(output.splitlines()) == 1 and "  warning: " not in output, output
    assert box_secret not in output


def test_an_invalid_file_lists_its_errors_only_and_exits_1(tmp_path):
    # The warnings are checked once the file is valid.
    doc = {"site": {"breaker_a": 0}, "chargers": [{"name": "T", "host": "192.168.1.60", "max_a": 20, "circuit_a": 16}]}
    code, output = check(tmp_path, json.dumps(doc))
    assert code == 1 and "site.breaker_a" in output and "  warning: " not in output, output


def test_json_syntax_errors_give_line_and_column(tmp_path):
    code, output = check(tmp_path, '{\n  "site": {\n    "breaker_a": 25\n    "margin_a": 1\n  }\n}\n')
    assert code == 1 and "line 4, column 5: Expecting ',' delimiter" in output, output
    code, output = check(tmp_path, '{\n  "site": {"breaker_a": 25,}\n}')
    assert code == 1 and "line 2, column 28" in output and "comma before } or ]" in output, output
    code, output = check(tmp_path, b'{"name": "caf\xe9"}')
    assert code == 1 and "line 1, column 14: not UTF-8 text" in output, output


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    code, output = check(tmp_path, b"\xef\xbb\xbf" + json.dumps({"site": {"breaker_a": 35}}).encode())
    assert code == 0 and "breaker 35 A" in output, output


def test_comments_are_refused_with_a_clear_message(tmp_path):
    text = '{\n  // the house\n  "site": {"breaker_a": 25}, /* main */\n  "name": "a//b#c" # mine\n}'
    code, output = check(tmp_path, text)
    assert code == 1, output
    assert "line 2, column 3: a comment (//): JSON has no comments; remove it" in output
    assert "line 3, column 30: a comment (/*)" in output and "line 4, column 20: a comment (#)" in output
    assert "a//b" not in output.replace('"a//b#c"', "")  # the // inside a string is not a comment
    assert output.count("a comment") == 3, output


def test_other_problems(tmp_path):
    code, output = check(tmp_path, '{"site": {"breaker_a": 25, "breaker_a": 30}}')
    assert code == 1 and '"breaker_a" appears twice' in output, output
    code, output = check(tmp_path, "[1, 2]")
    assert code == 1 and "one JSON object" in output, output
    code, output = check(tmp_path, '{"version": 9}')
    assert code == 1 and "version: 9 is newer than this firmware" in output, output
    code, output = check(tmp_path, '{"version": 0, "breaker": 32}')
    assert code == 0 and "migrates it to version 1" in output, output
    code, output = check(tmp_path, "{" + " " * config.MAX_CONFIG_BYTES + "}")
    assert code == 1 and "too large" in output, output


def test_usage_and_unreadable_files_exit_2(tmp_path):
    assert run()[0] == 2
    assert run("a.json", "b.json")[0] == 2
    code, output = run(str(tmp_path / "missing.json"))
    assert code == 2 and "no such file" in output
    code, output = run(str(tmp_path))
    assert code == 2 and "directory" in output
