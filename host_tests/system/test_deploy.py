"""tools/deploy.py without hardware: a fake mpremote whose board is a folder.

Checks that everything is checked before the first copy, that the
configuration reaches the board under a temporary name and is renamed only
once it arrived intact, that a missing serial device is explained, that the
guard is stopped by a maintenance boot (flag, hard reset, long watchdog)
before anything is copied and comes back at the end or after a failure, and
that a board with the frozen image gets only what it needs.
"""

import json
import os
import shutil
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
    (build / "preboot.mpy").write_bytes(b"M\x06preboot")
    (build / "www").mkdir()
    (build / "www" / "setup.html.gz").write_bytes(b"\x1f\x8bsetup")
    log = tmp_path / "calls.log"
    events = tmp_path / "board-events.log"
    env = dict(os.environ, FAKE_BOARD_ROOT=str(board), FAKE_MPREMOTE_LOG=str(log), FAKE_BOARD_EVENTS=str(events))
    for name in ("FAKE_BOARD_FROZEN", "FAKE_BOARD_SLOW_BOOT", "FAKE_MPREMOTE_CUT", "FAKE_MPREMOTE_DAMAGE"):
        env.pop(name, None)
    return {"tmp": tmp_path, "fake": str(fake), "dev": str(dev), "board": board, "build": str(build), "log": log,
            "events": events, "env": env}


def run_deploy(bench, config=None, board="esp32_devkit", port="/dev/ttyUSB0", frozen=False, **env):
    command = [sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--port", port, "--board", board,
               "--mpremote", bench["fake"], "--build", bench["build"], "--dev-dir", bench["dev"]]
    if config is not None:
        command += ["--config", str(config)]
    if frozen:
        command.append("--frozen")
    result = subprocess.run(command, capture_output=True, text=True, env=dict(bench["env"], **env), timeout=120)
    return result.returncode, result.stdout + result.stderr


def calls(bench):
    if not bench["log"].exists():
        return []
    return [json.loads(line) for line in bench["log"].read_text().splitlines()]


def events(bench):
    """What the board did, in order: ["boot", "maintenance" | "guard" | ...], ["watchdog", timeout_ms]."""
    if not bench["events"].exists():
        return []
    return [json.loads(line) for line in bench["events"].read_text().splitlines()]


def frozen_image(bench):
    """The fake board's image gets ChargeGuard frozen in."""
    frozen = bench["tmp"] / "frozen"
    (frozen / "chargeguard").mkdir(parents=True)
    (frozen / "chargeguard" / "__init__.py").write_text("VERSION = 'frozen'\n")
    bench["env"]["FAKE_BOARD_FROZEN"] = str(frozen)


def index_of(steps, predicate):
    return next(index for index, step in enumerate(steps) if predicate(step))


MAINTENANCE = ["exec", "+", "reset"]


def write_config(bench, doc, name="site.json"):
    path = bench["tmp"] / name
    path.write_text(json.dumps(doc))
    return path


def test_a_valid_config_is_copied_under_a_temporary_name_then_renamed(bench):
    config = write_config(bench, GOOD)
    code, output = run_deploy(bench, config)
    assert code == 0, output
    steps = calls(bench)
    # 1. the maintenance boot, in one mpremote call: main.py and preboot.mpy installed, the flag, a hard reset
    assert steps[0] == ["fs", "cp", os.path.join(bench["build"], "preboot.mpy"), ":/preboot.mpy.new"]
    assert steps[1] == ["fs", "cp", os.path.join(bench["build"], "main.py"), ":/main.py.new"]
    assert steps[2][0] == "exec" and "_install('/main.py.new', '/main.py'" in steps[2][1]
    assert "open('/maintenance', 'w')" in steps[2][1]
    assert steps[3] == ["reset"]
    # 2. the check that the board took it
    assert steps[4][0] == "exec" and "maintenance boot confirmed" in steps[4][1]
    # 3.-6. as before
    assert steps[5][:3] == ["fs", "cp", "-r"] and steps[5][-1] == ":"
    assert steps[6] == ["fs", "cp", os.path.join(ROOT, "boards", "esp32_devkit.json"), ":/board.json.new"]
    assert steps[7][0] == "exec" and "_install('/board.json.new', '/board.json'" in steps[7][1]
    assert steps[8][0] == "exec" and "os.mkdir('/data')" in steps[8][1]
    assert steps[9] == ["fs", "cp", str(config), ":/data/config.json.new"]
    assert steps[10][0] == "exec" and "_install('/data/config.json.new', '/data/config.json'" in steps[10][1]
    assert steps[11][0] == "exec" and "os.remove('/data/overrides.json')" in steps[11][1]
    # the start markers of the firmware this deploy replaced
    assert steps[12][0] == "exec" and "os.remove('/data/config.try')" in steps[12][1]
    assert "os.remove('/data/config.boot')" in steps[12][1]
    # 7. the flag cleared (should it be there), a reset: the guard starts
    assert steps[13][0] == "exec" and "os.remove('/maintenance')" in steps[13][1]
    assert steps[14] == ["reset"] and len(steps) == 15
    assert events(bench) == [["watchdog", 900000], ["boot", "maintenance"], ["boot", "guard"]]
    board = bench["board"]
    assert (board / "data" / "config.json").read_bytes() == config.read_bytes()
    assert (board / "data" / "config.bak").read_bytes() == OLD  # the last good copy is the firmware's business
    assert (board / "board.json").read_bytes() == open(os.path.join(ROOT, "boards", "esp32_devkit.json"), "rb").read()
    assert (board / "main.py").exists() and (board / "chargeguard" / "app.mpy").exists()
    assert (board / "preboot.mpy").read_bytes() == b"M\x06preboot"
    assert not list(board.rglob("*.new")) and not (board / "maintenance").exists()


def test_the_installer_is_warned_before_the_guard_stops(bench):
    code, output = run_deploy(bench)
    assert code == 0, output
    warning = output.index("WARNING: the guard stops now")
    assert warning < output.index("deploy: maintenance boot")
    text = output[warning:output.index("\n", warning)]
    assert "keep the current they were last given" in text and "Trydan has no keep-alive" in text, text
    # The longest it can take: the sum of the steps' time limits (300 s for the firmware copy, 60 s for each of the
    # six others without a configuration).
    assert "at most 660 s" in text and "within 15 min" in text, text


def test_nothing_is_copied_before_the_board_is_in_its_maintenance_boot(bench):
    code, output = run_deploy(bench, write_config(bench, GOOD))
    assert code == 0, output
    steps = calls(bench)
    first_reset = steps.index(["reset"])
    check = index_of(steps, lambda step: step[0] == "exec" and "maintenance boot confirmed" in step[1])
    firmware = index_of(steps, lambda step: step[:3] == ["fs", "cp", "-r"])
    # Only main.py and preboot.mpy (what the maintenance boot needs) go before the reset.
    assert [step[2] for step in steps[:first_reset] if step[:2] == ["fs", "cp"]] == [
        os.path.join(bench["build"], "preboot.mpy"), os.path.join(bench["build"], "main.py")]
    assert first_reset < check < firmware
    assert "confirmed; firmware image: stock" in output


def test_a_boot_stopped_before_main_py_gets_the_watchdog_armed_by_deploy(bench):
    # mpremote's Ctrl-C can reach a board still booting: main.py never saw the
    # flag, nothing runs and no watchdog is armed; deploy arms it and clears the flag.
    code, output = run_deploy(bench, FAKE_BOARD_SLOW_BOOT="1")
    assert code == 0, output
    assert events(bench)[:2] == [["boot", "stopped before main.py"], ["watchdog", 900000]]
    assert "watchdog armed from here" in output
    assert not (bench["board"] / "maintenance").exists()


def test_without_config_only_firmware_and_board_are_copied(bench):
    code, output = run_deploy(bench)
    assert code == 0, output
    assert [step[0] for step in calls(bench)] == ["fs", "fs", "exec", "reset", "exec", "fs", "fs", "exec", "exec", "exec",
                                                 "reset"]
    assert (bench["board"] / "data" / "config.json").read_bytes() == OLD


def test_a_deploy_clears_the_start_markers_so_the_new_firmware_tries_the_configuration_again(bench):
    """The old firmware's verdicts go: a config.json that did not start (config.try) and the last good
    configuration's failed starts into safe mode (config.boot); config.bak itself stays."""
    from chargeguard import trial

    assert deploy.START_MARKERS == (trial.TRIAL_FILE, trial.BOOTS_FILE)
    data = bench["board"] / "data"
    (data / "config.try").write_text("%d 1\nMemoryError()\n" % len(OLD))
    (data / "config.boot").write_text("%d 1 2\n" % len(OLD))
    code, output = run_deploy(bench)
    assert code == 0, output
    assert not (data / "config.try").exists() and not (data / "config.boot").exists()
    assert (data / "config.bak").read_bytes() == OLD and (data / "config.json").read_bytes() == OLD
    assert "clear the start markers (config.try, config.boot)" in output, output


def test_frozen_mode_copies_only_what_the_image_lacks_and_removes_a_hiding_copy(bench):
    frozen_image(bench)
    board = bench["board"]
    # A stale .mpy copy from an earlier plain deploy, nested, and a device library.
    (board / "chargeguard" / "net").mkdir(parents=True)
    (board / "chargeguard" / "app.mpy").write_bytes(b"old")
    (board / "chargeguard" / "net" / "web.mpy").write_bytes(b"old")
    (board / "umqtt").mkdir()
    (board / "umqtt" / "simple.mpy").write_bytes(b"old")
    config = write_config(bench, GOOD)
    code, output = run_deploy(bench, config, frozen=True)
    assert code == 0, output
    assert "confirmed; firmware image: frozen" in output
    for name in ("chargeguard", "umqtt", "microdot"):
        assert not (board / name).exists(), name
    assert (board / "www" / "setup.html.gz").read_bytes() == b"\x1f\x8bsetup"  # the wizard's pages
    for name in ("main.py", "boot.py", "preboot.mpy", "board.json"):
        assert (board / name).exists(), name
    assert (board / "data" / "config.json").read_bytes() == config.read_bytes()
    steps = calls(bench)
    copy = index_of(steps, lambda step: step[:3] == ["fs", "cp", "-r"])
    assert [os.path.basename(path) for path in steps[copy][3:-1]] == ["boot.py", "main.py", "preboot.mpy", "www"]
    removal = index_of(steps, lambda step: step[0] == "exec" and "_rmtree" in step[1])
    assert index_of(steps, lambda step: step[0] == "exec" and "maintenance boot confirmed" in step[1]) < removal < copy
    assert events(bench)[-1] == ["boot", "guard"]


def test_a_plain_deploy_onto_the_frozen_image_stops_before_copying_and_restarts_the_guard(bench):
    frozen_image(bench)
    code, output = run_deploy(bench, write_config(bench, GOOD))
    assert code == 3, output
    assert "use make deploy FROZEN=1" in output and "the guard runs again" in output, output
    assert not any(step[:3] == ["fs", "cp", "-r"] for step in calls(bench))
    assert not (bench["board"] / "chargeguard").exists()
    assert (bench["board"] / "data" / "config.json").read_bytes() == OLD
    assert events(bench)[-1] == ["boot", "guard"] and not (bench["board"] / "maintenance").exists()


def test_a_frozen_deploy_onto_a_stock_image_removes_nothing(bench):
    board = bench["board"]
    (board / "chargeguard").mkdir()
    (board / "chargeguard" / "app.mpy").write_bytes(b"old")
    code, output = run_deploy(bench, frozen=True)
    assert code == 3, output
    assert "no ChargeGuard frozen in its firmware" in output, output
    assert (board / "chargeguard" / "app.mpy").read_bytes() == b"old"
    assert events(bench)[-1] == ["boot", "guard"]


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
    assert code == 2 and "no board file" in output and "Boards: esp32_devkit, esp32_devkitc_wrover, lilygo_t_can485 (" in output, output
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
    assert not any(step[0] == "exec" and "config.json.new" in step[1] for step in calls(bench))
    # The board was in its maintenance boot: deploy resets it into the guard at once.
    assert calls(bench)[-1] == ["reset"] and "the guard runs again" in output
    assert events(bench)[-1] == ["boot", "guard"]


def test_a_copy_that_arrives_damaged_is_not_installed(bench):
    code, output = run_deploy(bench, write_config(bench, GOOD), FAKE_MPREMOTE_DAMAGE="config.json.new")
    assert code == 3 and "arrived damaged" in output, output
    assert (bench["board"] / "data" / "config.json").read_bytes() == OLD
    assert not (bench["board"] / "data" / "config.json.new").exists()


def _upy32_or_skip(variant):
    import upy32

    try:
        return upy32.ensure(variant, quiet=True)
    except upy32.Unavailable as why:
        if upy32.in_ci():
            pytest.fail("32-bit MicroPython not available: %s" % why.args[0])
        pytest.skip("32-bit MicroPython not available: %s" % why.args[0])


def _boot_check(interpreter, folder):
    # What main.py does before the guard (firmware/preboot.py), on a board whose filesystem is `folder`.
    result = subprocess.run([interpreter, "-c", "import preboot\npreboot.warn_shadowed()\nimport chargeguard\n"
                             "print('loaded', chargeguard.__file__)"], cwd=str(folder), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_frozen_image_says_at_boot_when_a_filesystem_copy_hides_it(tmp_path):
    # build/upy32's frozen port has manifest.py frozen in, as the ESP32 image has.
    frozen = _upy32_or_skip("frozen")
    device = os.path.join(ROOT, "build", "device")
    plain_deploy = tmp_path / "plain"
    shutil.copytree(device, plain_deploy)  # what make deploy without FROZEN=1 left on the board
    output = _boot_check(frozen, plain_deploy)
    assert "boot: WARNING: a chargeguard/ folder on the filesystem hides the frozen chargeguard" in output, output
    assert "loaded chargeguard/__init__.mpy" in output, output  # the filesystem's copy runs, as warned
    frozen_deploy = tmp_path / "frozen"
    frozen_deploy.mkdir()
    for name in deploy.FROZEN_FILES:
        source = os.path.join(device, name)
        (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, str(frozen_deploy / name))
    output = _boot_check(frozen, frozen_deploy)
    assert "WARNING" not in output and "loaded chargeguard/__init__.py" in output, output  # the frozen package
    # Stock firmware (nothing of ours frozen) with the .mpy copy: nothing hidden, nothing said.
    output = _boot_check(_upy32_or_skip("plain"), plain_deploy)
    assert "WARNING" not in output and "loaded chargeguard/__init__.mpy" in output, output
