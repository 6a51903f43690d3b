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
    return decode_both(name, upy)[0]


def decode_both(name, upy=False):
    """(stdout, stderr) of decoding a fixture."""
    cmd = [sys.executable, TOOL, os.path.join(FIXTURES, name)] + (["--upy"] if upy else [])
    done = subprocess.run(cmd, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("ascii"), done.stderr.decode("ascii")


def decode_stdin(data, *args):
    """(exit status, stdout, stderr) of `p1decode - args` with data on stdin."""
    done = subprocess.run([sys.executable, TOOL, "-"] + list(args), input=data, capture_output=True, timeout=60)
    return done.returncode, done.stdout.decode("ascii"), done.stderr.decode("ascii")


def fixture_bytes(name):
    with open(os.path.join(FIXTURES, name), "rb") as handle:
        return handle.read()


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
        cpython = decode_both(name)
        upy = decode_both(name, upy=True)
        assert cpython == upy, name  # the JSON and the summary
        assert cpython[0].endswith("\n") and lines(cpython[0]), name
        assert cpython[1].startswith("p1decode: ") and "framed" in cpython[1], name


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
    monkeypatch.setattr(launcher, "ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert launcher.find_micropython() is None
    capture = os.path.join(FIXTURES, "nl_dsmr50_iskra_am550_export_l1_athom.txt")
    assert launcher.main([capture, "--upy"]) == 2
    err = capsys.readouterr().err
    assert "needs the MicroPython unix port" in err and "make venv" in err


def test_finds_the_projects_own_micropython_first(tmp_path, monkeypatch):
    # Run with the system python3 (the shebang), --upy still finds .venv's.
    launcher = load_launcher()
    assert launcher.ROOT == ROOT
    venv = tmp_path / "repo" / ".venv" / "bin"
    venv.mkdir(parents=True)
    exe = venv / "micropython"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    other = tmp_path / "usr"
    other.mkdir()
    (other / "micropython").write_text("#!/bin/sh\n")
    (other / "micropython").chmod(0o755)
    monkeypatch.setattr(launcher, "ROOT", str(tmp_path / "repo"))
    monkeypatch.setattr(sys, "executable", str(other / "python3"))
    monkeypatch.setenv("PATH", str(other))
    assert launcher.find_micropython() == str(exe)


def test_finds_micropython_next_to_python(tmp_path, monkeypatch):
    launcher = load_launcher()
    monkeypatch.setattr(launcher, "ROOT", str(tmp_path / "elsewhere"))
    exe = tmp_path / "micropython"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "")
    assert launcher.find_micropython() == str(exe)


# -- summary, hints, stdin, live ports ------------------------------------------


def test_summary_line_counts_framed_accepted_rejected_and_skipped():
    out, err = decode_both("syn_noise_and_midline_cuts.txt")
    assert len(lines(out)) == 5
    assert err.splitlines() == [
        "p1decode: 2959 bytes read, 5 telegrams framed: 3 accepted, 2 rejected (2 truncated); "
        "6 bytes skipped outside telegrams"
    ]
    _, err = decode_both("crc_invalid_kaifa_dsmrreader.txt")
    assert "1 telegram framed: 0 accepted, 1 rejected (1 crc mismatch)" in err
    _, err = decode_both("syn_garbage_20k.bin")
    assert "0 accepted" in err and "no power values" in err and "truncated" in err


def test_stdin_dash_reads_the_same_as_a_file():
    name = "syn_noise_and_midline_cuts.txt"
    status, out, err = decode_stdin(fixture_bytes(name))
    assert status == 0 and (out, err) == decode_both(name)
    need_micropython()
    status, out, err = decode_stdin(fixture_bytes(name), "--upy")
    assert status == 0 and (out, err) == decode_both(name)


def test_nothing_framed_gives_a_hint_and_exit_1():
    noise = bytes((k * 37 + 11) & 0xFF for k in range(3000)).replace(b"/", b"")
    status, out, err = decode_stdin(noise)
    assert status == 1 and out == ""
    assert "0 telegrams framed" in err
    assert "115200 8N1" in err and "9600 7E1" in err and "invert" in err and "cooked" in err
    assert "7E1 read as 8 bits" not in err  # noise: not the parity pattern
    status, out, err = decode_stdin(b"")
    assert status == 1 and "the input was empty" in err


def test_7e1_read_as_8_bits_is_recognised():
    # A DSMR 2.2 stream (9600 7E1) taken in as 8 data bits: the even parity
    # bit lands in bit 7, and '/' arrives as 0xAF.
    data = fixture_bytes("nl_dsmr22_iskra_mt382_ndokter.txt")
    wrong = bytes(b | (0x80 if bin(b).count("1") % 2 else 0) for b in data) * 2
    status, _, err = decode_stdin(wrong)
    assert status == 1 and "7E1 read as 8 bits" in err and "--baud 9600" in err


def test_capture_from_a_cooked_tty_is_recognised():
    data = fixture_bytes("nl_dsmr50_iskra_am550_export_l1_athom.txt").replace(b"\r\n", b"\n")
    status, out, err = decode_stdin(data)
    assert status == 0 and lines(out)[0]["error"] == "crc mismatch"
    assert "cooked mode" in err
    _, _, err = decode_stdin(fixture_bytes("nl_dsmr50_iskra_am550_export_l1_athom.txt"))
    assert "hint" not in err


def test_options_and_paths_are_checked():
    for args, fragment in (
        (["x.txt", "--baud", "300"], b"--baud must be 115200"),
        (["x.txt", "--format", "8E1"], b"--format must be 8N1 or 7E1"),
        (["x.txt", "--count"], b"--count needs a value"),
        (["x.txt", "--speed", "2"], b"unknown option --speed"),
        (["a.txt", "b.txt"], b"one input only"),
        (["/dev/ttyUSB-no-such-port"], b"ls /dev/ttyUSB*"),
        (["/tmp"], b"not a file or a serial device"),
    ):
        done = subprocess.run([sys.executable, TOOL] + args, capture_output=True, timeout=60)
        assert done.returncode == 2 and fragment in done.stderr, (args, done.stderr)


def test_stdin_that_is_a_tty_asks_for_the_device_path():
    master, slave = os.openpty()
    try:
        done = subprocess.run([sys.executable, TOOL, "-"], stdin=slave, capture_output=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 2 and b"give the device path" in done.stderr


def _wait_stderr_line(process, fragment, deadline_s):
    """Read process stderr until a line holding `fragment`; fail after deadline_s."""
    import select
    import time

    end = time.monotonic() + deadline_s
    seen = b""
    while time.monotonic() < end:
        ready, _, _ = select.select([process.stderr], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        chunk = os.read(process.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        if fragment in seen:
            return seen
    raise AssertionError("no %r on stderr within %d s: %r" % (fragment, deadline_s, seen))


# Start-up of the tool (CPython, or MicroPython through it) on a busy CI machine.
TOOL_START_S = 30


def _live(upy):
    # A pseudo-terminal stands in for a USB P1 cable: p1decode sets it raw
    # and reads telegrams as the "meter" writes them.
    master, slave = os.openpty()
    port = os.ttyname(slave)
    cmd = [sys.executable, TOOL, port, "--count", "3"] + (["--upy"] if upy else [])
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_stderr_line(process, b"raw (Ctrl-C ends)", TOOL_START_S)
        d50 = fixture_bytes("nl_dsmr50_iskra_am550_export_l1_athom.txt")
        dsmr22 = fixture_bytes("nl_dsmr22_iskra_mt382_ndokter.txt")
        # Noise with no line end, a telegram, one cut mid-line by the next,
        # and a DSMR 2.2 telegram with no '!' that only a quiet line ends.
        os.write(master, b"\x00\xfe" + d50 + d50[:300] + d50 + dsmr22[: dsmr22.find(b"!")])
        out, err = process.communicate(timeout=TOOL_START_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        os.close(slave)
    got = lines(out.decode("ascii"))
    assert process.returncode == 0, err
    assert [(g["accepted"], g.get("error")) for g in got] == [(True, None), (False, "truncated"), (True, None)]
    assert b"3 telegrams framed: 2 accepted, 1 rejected (1 truncated); 2 bytes skipped" in err
    return got


def test_reads_a_serial_device_directly():
    got = _live(upy=False)
    assert got[0]["phases"][0]["p_w"] == -676


def test_reads_a_serial_device_directly_under_micropython():
    need_micropython()
    assert _live(upy=True) == _live(upy=False)


def test_live_port_quiet_line_and_silence(monkeypatch):
    # In-process: a port that stays silent gets the Data Request hint once,
    # and a pre-4 telegram with no '!' is completed by the quiet line.
    for path in (os.path.join(ROOT, "tools", "shims"), os.path.join(ROOT, "firmware"), os.path.join(ROOT, "tools")):
        monkeypatch.syspath_prepend(path)
    import p1decode_run

    monkeypatch.setattr(p1decode_run, "SILENT_HINT_S", 0)
    notes = []
    parser, stats = p1decode_run.run(lambda buf: 0, notes.append, live=True, seconds=1, note=notes.append)
    assert parser.n_telegrams == 0 and stats.bytes == 0
    assert len(notes) == 1 and "Data Request (P1 pin 2)" in notes[0]
    dsmr22 = fixture_bytes("nl_dsmr22_iskra_mt382_ndokter.txt")
    chunks = [dsmr22[: dsmr22.find(b"!")]]

    def read_into(buf):
        if not chunks:
            return 0
        data = chunks.pop()
        buf[: len(data)] = data
        return len(data)

    out = []
    parser, stats = p1decode_run.run(read_into, out.append, live=True, count=1, seconds=30)
    assert parser.n_accepted == 1 and json.loads(out[0])["p_import_w"] == 1010
