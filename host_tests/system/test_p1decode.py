# tools/p1decode end to end: CPython and the MicroPython unix port must print
# the same JSON, and it must match the fixture README's values.
# CPython / pytest only (subprocess).
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "p1decode")
FIXTURES = os.path.join(ROOT, "host_tests", "fixtures", "p1")


def load_launcher():
    loader = importlib.machinery.SourceFileLoader("p1decode_launcher", TOOL)
    spec = importlib.util.spec_from_loader("p1decode_launcher", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def decode(name, upy=False):
    cmd = [sys.executable, TOOL, os.path.join(FIXTURES, name)] + (["--upy"] if upy else [])
    done = subprocess.run(cmd, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("ascii")


def lines(text):
    return [json.loads(line) for line in text.splitlines()]


def need_micropython():
    if load_launcher().find_micropython() is None:
        pytest.skip("MicroPython unix port not installed")


def test_both_runtimes_print_the_same_json():
    need_micropython()
    names = sorted(os.listdir(FIXTURES))
    names = [n for n in names if n.endswith((".txt", ".bin"))]
    assert len(names) >= 19
    for name in names:
        cpython = decode(name)
        upy = decode(name, upy=True)
        assert cpython == upy, name
        assert cpython.endswith("\n") and lines(cpython), name


def phases(obj):
    return [(p["i_a"], p["p_w"], p["u_v"]) for p in obj["phases"]]


def test_readme_values():
    (d50,) = lines(decode("nl_dsmr50_iskra_am550_export_l1_athom.txt"))
    assert d50["accepted"] is True and d50["crc"] == "valid" and "error" not in d50
    assert d50["header"] == "/ISK5\\2M550T-1011"
    assert phases(d50) == [(-2.864, -676, 236.0), (0.142, 33, 232.6), (0.561, 132, 235.1)]
    assert d50["phases"][0]["i_a"] <= -2.0
    assert (d50["p_import_w"], d50["p_export_w"]) == (0, 498)
    assert d50["e_import_wh"] == 3808351 + 2948827 and d50["e_export_wh"] == 1285951 + 2876514
    assert "avg_demand_w" not in d50 and "month_peak_w" not in d50

    (be,) = lines(decode("be_fluvius_emucs_v171_ndokter.txt"))
    assert be["accepted"] and be["crc"] == "valid" and be["header"] == "/FLU5\\253769484_A"
    assert be["avg_demand_w"] == 2351 and be["month_peak_w"] == 2589
    assert phases(be) == [(0.0, 0, 234.7)] * 3
    assert (be["e_import_wh"], be["e_export_wh"]) == (15792, 11)

    (d22,) = lines(decode("nl_dsmr22_iskra_mt382_ndokter.txt"))
    assert d22["accepted"] and d22["crc"] == "absent" and d22["phases"] == []
    assert (d22["p_import_w"], d22["p_export_w"], d22["e_import_wh"], d22["e_export_wh"]) == (1010, 0, 2002, 2002)

    (bad,) = lines(decode("crc_invalid_kaifa_dsmrreader.txt"))
    assert bad == {"accepted": False, "crc": "invalid", "error": "crc mismatch", "header": "/KFM5KAIFA-METER"}

    (d42,) = lines(decode("nl_dsmr42_kaifa_export_athom.txt"))
    assert phases(d42) == [(-3.0, -688, None), (-3.383, -778, None), (-2.0, -403, None)]
    assert (d42["p_import_w"], d42["p_export_w"]) == (0, 1869)

    cut, full = lines(decode("stream_truncated_then_full_iskra_dsmrreader.txt"))
    assert cut == {"accepted": False, "crc": "absent", "error": "truncated", "header": "/ISK5\\2M550T-1011"}
    assert full["accepted"] and full["crc"] == "valid" and full["p_import_w"] == 320
    assert full["e_import_wh"] == 9012345 + 9067890 and full["e_export_wh"] == 9123456 + 9789012
    assert [p["p_w"] for p in full["phases"]] == [152, 52, 118]


def test_synthetic_fixtures():
    (nocrc,) = lines(decode("syn_dsmr50_no_crc.txt"))
    assert nocrc["accepted"] is False and nocrc["error"] == "no crc on a DSMR 4+ telegram"
    assert lines(decode("syn_se_kw.txt")) == lines(decode("syn_se_w.txt"))
    first, second = lines(decode("syn_stream_mid_start.txt"))
    assert first["phases"][0]["p_w"] == -1500 and second["phases"][0]["p_w"] == 800
    garbage = lines(decode("syn_garbage_20k.bin"))
    assert garbage and not [g for g in garbage if g["accepted"]]


def test_usage_and_missing_file():
    done = subprocess.run([sys.executable, TOOL], capture_output=True)
    assert done.returncode == 2 and b"usage" in done.stderr
    done = subprocess.run([sys.executable, TOOL, os.path.join(FIXTURES, "nope.txt")], capture_output=True)
    assert done.returncode == 2 and b"no such file" in done.stderr


def test_upy_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    launcher = load_launcher()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert launcher.find_micropython() is None
    capture = os.path.join(FIXTURES, "nl_dsmr50_iskra_am550_export_l1_athom.txt")
    assert launcher.main([capture, "--upy"]) == 2
    assert "needs the MicroPython unix port" in capsys.readouterr().err


def test_finds_micropython_next_to_python(tmp_path, monkeypatch):
    launcher = load_launcher()
    exe = tmp_path / "micropython"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "")
    assert launcher.find_micropython() == str(exe)
