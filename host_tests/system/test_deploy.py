"""tools/deploy.py without hardware: a fake mpremote whose board is a folder.

Checks that everything is checked before the first copy, that the
configuration reaches the board under a temporary name and is renamed only
once it arrived intact, and that a missing serial device is explained.
"""

import json
import os
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import deploy  # noqa: E402

GOOD = {"chargers": [{"name": "Trydan", "host": "192.168.1.60"}]}
OLD = b'{"name": "old", "chargers": []}'


@pytest.fixture
def bench(tmp_path):
    """A fake mpremote, a fake /dev with the board's port, a board folder and a built firmware."""
    fake = tmp_path / "mpremote"
    fake.write_text("#!%s\nimport runpy, sys\nsys.argv[0] = %r\nrunpy.run_path(%r, run_name='__main__')\n"
                    % (sys.executable, str(fake), os.path.join(HERE, "fake_mpremote.py")))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "ttyUSB0").write_text("")
    board = tmp_path / "board"
    (board / "data").mkdir(parents=True)
    (board / "data" / "config.json").write_bytes(OLD)
    (board / "data" / "config.bak").write_bytes(OLD)
    build = tmp_path / "build"
    (build / "chargeguard").mkdir(parents=True)
    (build / "main.py").write_text("from chargeguard import app\n")
    (build / "boot.py").write_text("")
    (build / "chargeguard" / "app.mpy").write_bytes(b"M\x06")
    log = tmp_path / "calls.log"
    env = dict(os.environ, FAKE_BOARD_ROOT=str(board), FAKE_MPREMOTE_LOG=str(log))
    return {"tmp": tmp_path, "fake": str(fake), "dev": str(dev), "board": board, "build": str(build), "log": log, "env": env}


def run_deploy(bench, config=None, board="esp32_devkit", port="/dev/ttyUSB0", **env):
    command = [sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--port", port, "--board", board,
               "--mpremote", bench["fake"], "--build", bench["build"], "--dev-dir", bench["dev"]]
    if config is not None:
        command += ["--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(bench["env"], **env), timeout=120)
    return result.returncode, result.stdout + result.stderr


def calls(bench):
    if not bench["log"].exists():
        return []
    return [json.loads(line) for line in bench["log"].read_text().splitlines()]


def write_config(bench, doc, name="site.json"):
    path = bench["tmp"] / name
    path.write_text(json.dumps(doc))
    return path


def test_a_valid_config_is_copied_under_a_temporary_name_then_renamed(bench):
    config = write_config(bench, GOOD)
    code, output = run_deploy(bench, config)
    assert code == 0, output
    steps = calls(bench)
    assert steps[0][:3] == ["fs", "cp", "-r"] and steps[0][-1] == ":"
    assert steps[1] == ["fs", "cp", os.path.join(ROOT, "boards", "esp32_devkit.json"), ":/board.json.new"]
    assert steps[2][0] == "exec" and "_install('/board.json.new', '/board.json'" in steps[2][1]
    assert steps[3][0] == "exec" and "os.mkdir('/data')" in steps[3][1]
    assert steps[4] == ["fs", "cp", str(config), ":/data/config.json.new"]
    assert steps[5][0] == "exec" and "_install('/data/config.json.new', '/data/config.json'" in steps[5][1]
    assert steps[6][0] == "exec" and "os.remove('/data/overrides.json')" in steps[6][1]
    assert steps[7] == ["reset"] and len(steps) == 8
    board = bench["board"]
    assert (board / "data" / "config.json").read_bytes() == config.read_bytes()
    assert (board / "data" / "config.bak").read_bytes() == OLD  # the last good copy is the firmware's business
    assert (board / "board.json").read_bytes() == open(os.path.join(ROOT, "boards", "esp32_devkit.json"), "rb").read()
    assert (board / "main.py").exists() and (board / "chargeguard" / "app.mpy").exists()
    assert not list(board.rglob("*.new"))


def test_without_config_only_firmware_and_board_are_copied(bench):
    code, output = run_deploy(bench)
    assert code == 0, output
    assert [step[0] for step in calls(bench)] == ["fs", "fs", "exec", "reset"]
    assert (bench["board"] / "data" / "config.json").read_bytes() == OLD


def test_an_invalid_config_stops_the_deploy_before_any_copy(bench):
    config = write_config(bench, {"site": {"breaker_a": 0}, "chargers": [{"host": ""}]})
    code, output = run_deploy(bench, config)
    assert code == 1, output
    assert "site.breaker_a: must be between 6 and 630 A (is 0)" in output
    assert "chargers.0.host: must be set" in output and "nothing was copied" in output
    assert calls(bench) == []
    broken = bench["tmp"] / "broken.json"
    broken.write_text('{"site": {"breaker_a": 25},}')
    code, output = run_deploy(bench, broken)
    assert code == 1 and "line 1, column 28" in output, output
    assert calls(bench) == []


def test_missing_board_or_config_file_is_named_before_any_copy(bench):
    code, output = run_deploy(bench, write_config(bench, GOOD), board="esp32_devkitc")
    assert code == 2 and "no board file" in output and "Boards: esp32_devkit, lilygo_t_can485 (" in output, output
    code, output = run_deploy(bench, write_config(bench, GOOD), board="unix")
    assert code == 2 and "the simulator's, not a board's" in output, output
    code, output = run_deploy(bench, bench["tmp"] / "nope.json")
    assert code == 2 and "no configuration file" in output and "nope.json" in output, output
    assert calls(bench) == []


def test_a_missing_serial_device_is_explained_before_any_copy(bench):
    os.remove(os.path.join(bench["dev"], "ttyUSB0"))
    code, output = run_deploy(bench, write_config(bench, GOOD))
    assert code == 2, output
    assert "no USB serial device (/dev/ttyUSB*, /dev/ttyACM*) is present" in output and "data cable" in output
    open(os.path.join(bench["dev"], "ttyACM0"), "w").close()
    code, output = run_deploy(bench, write_config(bench, GOOD))
    assert code == 2 and "/dev/ttyUSB0 does not exist" in output and "make deploy PORT=/dev/ttyACM0" in output, output
    assert calls(bench) == []


def test_a_serial_device_without_permission_names_the_dialout_group(bench):
    # As root (CI) every device may be opened, so the access check is passed in.
    message = deploy.serial_problem("/dev/ttyUSB0", bench["dev"], access=lambda path, mode: False)
    assert "may not open it" in message and "usermod -aG dialout" in message, message
    assert deploy.serial_problem("/dev/ttyUSB0", bench["dev"]) is None  # the fixture made it readable


def test_a_cable_pulled_during_the_config_copy_leaves_the_old_config(bench):
    code, output = run_deploy(bench, write_config(bench, GOOD), FAKE_MPREMOTE_CUT="config.json.new")
    assert code == 3, output
    assert "copy the configuration" in output and "keeps its previous one" in output, output
    assert (bench["board"] / "data" / "config.json").read_bytes() == OLD
    assert ["reset"] not in calls(bench) and not any(step[0] == "exec" and "config.json.new" in step[1]
                                                     for step in calls(bench))


def test_a_copy_that_arrives_damaged_is_not_installed(bench):
    code, output = run_deploy(bench, write_config(bench, GOOD), FAKE_MPREMOTE_DAMAGE="config.json.new")
    assert code == 3 and "arrived damaged" in output, output
    assert (bench["board"] / "data" / "config.json").read_bytes() == OLD
    assert not (bench["board"] / "data" / "config.json.new").exists()
