# platform/unix.py (and platform/common.py) on CPython and the MicroPython unix port.
import os
import sys
import time

import asyncio

import support
from chargeguard import platform
from chargeguard.platform import common, unix

P1_SAMPLE = b"/ISK5\\2M550T-1012\r\n\r\n1-0:1.7.0(00.123*kW)\r\n!ABCD\r\n"
UNIX_BOARD = {"name": "unix", "uart_device": None}
# The environment variables unix.py reads (module docstring).
ENV_P1_DEVICE = "CHARGEGUARD_P1_DEVICE"
ENV_STORAGE = "CHARGEGUARD_STORAGE"
ENV_NETWORK_DOWN = "CHARGEGUARD_NETWORK_DOWN"
# common._POLL_MS and unix._RESET_EXIT_STATUS: const()s, no module attributes on MicroPython.
POLL_MS = 20
RESET_EXIT_STATUS = 3


# --- helpers -----------------------------------------------------------------


def _dirname(path):
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "."


def _absolute(path):
    return path if path.startswith("/") else os.getcwd() + "/" + path


ROOT = _absolute(_dirname(support.HERE))


def _setenv(name, value):
    # CPython reads os.environ; the unix port has putenv/unsetenv only.
    environ = getattr(os, "environ", None)
    if environ is not None:
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
        return
    if value is None:
        os.unsetenv(name)
    else:
        os.putenv(name, value)


def _find_program(names):
    folders = [_dirname(sys.executable)]
    for folder in (os.getenv("PATH") or "").split(":"):
        if folder:
            folders.append(folder)
    for name in names:
        for folder in folders:
            path = folder + "/" + name
            if support.exists(path):
                return path
    return None


def _micropython():
    if support.IS_MICROPYTHON and sys.executable:
        return sys.executable
    return _find_program(("micropython",))


def _cpython():
    if not support.IS_MICROPYTHON:
        return sys.executable
    return _find_program(("python3", "python"))


def _exit_code(status):
    # os.system returns a wait status on both runtimes: a signal in the low
    # bits, else the exit code in the high byte.
    if status & 0x7F:
        return -(status & 0x7F)
    return (status >> 8) & 0xFF


def _read(path):
    with open(path) as handle:
        return handle.read()


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _cpython_platform():
    # The CPython clock emulation in tools/shims: on the path under pytest
    # (conftest.py), not under tools/upytest.py, which tests it all the same.
    shims = ROOT + "/tools/shims"
    added = shims not in sys.path
    if added:
        sys.path.append(shims)
    try:
        import cpython_platform
    finally:
        if added:
            sys.path.remove(shims)
    return cpython_platform


async def _collect(uart, want, buf_size, limit_ms):
    buf = bytearray(buf_size)
    got = bytearray()
    start = common.ticks_ms()
    largest = 0
    while len(got) < want and common.ticks_diff(common.ticks_ms(), start) < limit_ms:
        count = await uart.readinto(buf)
        assert 0 <= count <= buf_size
        if count > largest:
            largest = count
        got.extend(buf[:count])
    return bytes(got), largest


# Bytes another process has already written show up within this: no product
# rule, only a bound for a path that is broken (a loaded machine needs far less).
_ARRIVAL_MS = 10000


def _read_now_when_there(uart, buf, limit_ms):
    start = common.ticks_ms()
    while True:
        count = uart.read_now(buf)
        if count or common.ticks_diff(common.ticks_ms(), start) >= limit_ms:
            return count
        time.sleep(0.01)


async def _idle_read(uart):
    buf = bytearray(16)
    start = common.ticks_ms()
    count = await uart.readinto(buf)
    return count, common.ticks_diff(common.ticks_ms(), start)


# --- load, clock -------------------------------------------------------------


def test_load_returns_unix_module_on_host():
    assert platform.load() is unix
    assert unix.Platform(UNIX_BOARD).name == "unix"


def test_emulated_ticks_wrap_at_2_pow_30():
    emu = _cpython_platform()
    period = emu.TICKS_PERIOD
    assert period == 1 << 30
    top = period - 1
    assert emu.ticks_add(top, 1) == 0
    assert emu.ticks_add(0, -1) == top
    assert emu.ticks_add(top - 2, 10) == 7
    assert emu.ticks_diff(3, top - 2) == 6
    assert emu.ticks_diff(top - 2, 3) == -6
    assert emu.ticks_diff(emu.ticks_add(top, 500), top) == 500
    # The signed range is [-period/2, period/2 - 1].
    assert emu.ticks_diff(period // 2 - 1, 0) == period // 2 - 1
    assert emu.ticks_diff(period // 2, 0) == -(period // 2)
    if not support.IS_MICROPYTHON:
        # What common (and so every Platform) uses under CPython.
        assert common.ticks_add is emu.ticks_add and common.ticks_diff is emu.ticks_diff
        assert common.ticks_ms is emu.ticks_ms and common.sleep_ms is emu.sleep_ms
        assert 0 <= emu.ticks_ms() < period


def test_platform_ticks_wrap_around():
    p = unix.Platform(UNIX_BOARD)
    top = p.ticks_add(0, -1)
    if not support.IS_MICROPYTHON:
        assert top == (1 << 30) - 1
    near_end = p.ticks_add(0, -5)
    after = p.ticks_add(near_end, 12)
    assert after == 7
    assert p.ticks_diff(after, near_end) == 12
    assert p.ticks_diff(near_end, after) == -12
    assert p.ticks_add(top, 1) == 0


def test_ticks_advance_with_time():
    p = unix.Platform(UNIX_BOARD)
    start = p.ticks_ms()
    time.sleep(0.03)
    elapsed = p.ticks_diff(p.ticks_ms(), start)
    assert 20 <= elapsed < 2000


def test_sleep_ms_is_awaitable():
    p = unix.Platform(UNIX_BOARD)

    async def main():
        start = p.ticks_ms()
        await p.sleep_ms(15)
        return p.ticks_diff(p.ticks_ms(), start)

    elapsed = asyncio.run(main())
    assert 10 <= elapsed < 2000


def test_wall_time_is_int_seconds_since_1970_and_settable():
    p = unix.Platform(UNIX_BOARD)
    now = p.wall_time()
    assert isinstance(now, int)
    assert abs(now - int(time.time())) <= 2
    p.set_wall_time(1750000000)
    assert 1750000000 <= p.wall_time() <= 1750000002
    p.set_wall_time(1000)
    assert 1000 <= p.wall_time() <= 1002


# --- storage, network, system --------------------------------------------------


def test_storage_dir_argument_created_with_parents():
    base = support.make_tmpdir("storage")
    path = base + "/a/b"
    p = unix.Platform(UNIX_BOARD, storage_dir=path)
    assert p.storage_dir() == path
    assert support.exists(path)
    with open(path + "/probe", "w") as handle:
        handle.write("x")
    # A second call and an existing directory are fine.
    assert unix.Platform(UNIX_BOARD, storage_dir=path).storage_dir() == path


def test_storage_dir_from_environment():
    base = support.make_tmpdir("storage-env")
    path = base + "/state"
    _setenv(ENV_STORAGE, path)
    try:
        assert unix.Platform(UNIX_BOARD).storage_dir() == path
        assert support.exists(path)
    finally:
        _setenv(ENV_STORAGE, None)


def test_keba_link_port_from_environment():
    # chargers/keba.py binds this local UDP port: 7090 as on the device, or the simulator's.
    p = unix.Platform(UNIX_BOARD)
    _setenv("CHARGEGUARD_KEBA_PORT", None)
    assert p.keba_port(7090) == 7090
    _setenv("CHARGEGUARD_KEBA_PORT", "17090")
    try:
        assert p.keba_port(7090) == 17090
    finally:
        _setenv("CHARGEGUARD_KEBA_PORT", None)


def test_network_follows_environment():
    p = unix.Platform(UNIX_BOARD)
    assert p.network_up()
    # The same station calls as on the device; the host is on its network already.
    p.wifi_start("chargeguard", None)
    p.wifi_begin("home", "secret")
    assert p.wifi_status() == "up"
    assert p.ip_address() == "127.0.0.1"
    assert p.wifi_rssi() is None
    _setenv("CHARGEGUARD_DNS_SERVER", "127.0.0.9")
    try:
        assert p.dns_server() == "127.0.0.9"
    finally:
        _setenv("CHARGEGUARD_DNS_SERVER", None)
    _setenv(ENV_NETWORK_DOWN, "1")
    try:
        assert not p.network_up()
        assert p.wifi_status() == "no_ap"
        assert p.ip_address() is None and p.dns_server() is None
    finally:
        _setenv(ENV_NETWORK_DOWN, None)
    assert p.network_up()
    p.wifi_stop()


def test_free_memory():
    p = unix.Platform(UNIX_BOARD)
    free = p.free_memory()
    if support.IS_MICROPYTHON:
        assert isinstance(free, int) and free > 0
    else:
        assert free is None


# --- UART ----------------------------------------------------------------------


def test_open_uart_needs_a_device():
    _setenv(ENV_P1_DEVICE, None)
    p = unix.Platform(UNIX_BOARD)
    try:
        p.open_uart(115200, 8, None, 1, True)
    except OSError:
        pass
    else:
        raise AssertionError("no device must raise OSError")


def test_open_uart_error_names_the_device():
    path = support.make_tmpdir("uart-missing") + "/ttyUSB9"
    p = unix.Platform(UNIX_BOARD, uart_device=path)
    try:
        p.open_uart(115200, 8, None, 1, True)
    except OSError as error:
        assert error.args[0] == 2, error.args  # ENOENT, as the runtime said
        assert path in str(error) and "cannot be opened" in str(error), error.args
    else:
        raise AssertionError("a missing device must raise OSError")


def _opened_device(p):
    # Which of the marker files below open_uart() opened: the byte it reads.
    uart = p.open_uart(115200, 8, None, 1, True)
    try:
        assert not uart.is_tty
        buf = bytearray(4)
        return bytes(buf[: uart.read_now(buf)])
    finally:
        uart.close()


def test_uart_device_precedence():
    # The argument beats CHARGEGUARD_P1_DEVICE, which beats board["uart_device"].
    tmp = support.make_tmpdir("uart-device")
    for name in ("board", "env", "arg"):
        _write(tmp + "/" + name, name[0])
    board = {"name": "unix", "uart_device": tmp + "/board"}
    _setenv(ENV_P1_DEVICE, None)
    assert _opened_device(unix.Platform(board)) == b"b"
    _setenv(ENV_P1_DEVICE, tmp + "/env")
    try:
        assert _opened_device(unix.Platform(board)) == b"e"
        assert _opened_device(unix.Platform(board, uart_device=tmp + "/arg")) == b"a"
    finally:
        _setenv(ENV_P1_DEVICE, None)


def test_open_uart_rejects_bad_line_settings():
    p = unix.Platform(UNIX_BOARD, uart_device="/dev/null")
    for args in ((115200, 9, None, 1), (115200, 8, 2, 1), (115200, 8, None, 3), (0, 8, None, 1)):
        try:
            p.open_uart(args[0], args[1], args[2], args[3], True)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (args,))


def _check_pty_reads(p, write):
    uart = p.open_uart(115200, 8, None, 1, True)
    try:
        assert uart.is_tty
        write()
        data, largest = asyncio.run(_collect(uart, len(P1_SAMPLE), 64, _ARRIVAL_MS))
        assert data == P1_SAMPLE
        assert largest > 1  # several bytes per call, not one per await
        count, elapsed = asyncio.run(_idle_read(uart))
        assert count == 0
        assert POLL_MS <= elapsed + 2 < 2000
    finally:
        uart.close()
    uart.close()  # idempotent


def test_pty_uart_reads_what_the_other_side_writes():
    if support.IS_MICROPYTHON:
        _pty_test_through_cpython_feeder()
        return
    master, slave = os.openpty()
    try:
        p = unix.Platform(UNIX_BOARD, uart_device=os.ttyname(slave))
        _check_pty_reads(p, lambda: os.write(master, P1_SAMPLE))
    finally:
        os.close(master)
        os.close(slave)


_PTY_FEEDER = """
import os, sys, time
master, slave = os.openpty()
with open(sys.argv[1] + ".tmp", "w") as handle:
    handle.write(os.ttyname(slave))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
def wait_for(path):
    deadline = time.time() + 60  # only so a failed test leaves no process behind
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.01)

wait_for(sys.argv[2])
os.write(master, %r)
wait_for(sys.argv[3])  # the pty stays open until the reader is done
"""


def _pty_test_through_cpython_feeder():
    # The unix port cannot create a pty (no openpty, no ioctl): a CPython
    # process makes one, tells its path through a file and writes when told.
    python = _cpython()
    if python is None:
        support.skip("no CPython interpreter to create a pty")
    tmp = support.make_tmpdir("pty")
    feeder = tmp + "/feeder.py"
    name_file = tmp + "/name"
    ready_file = tmp + "/ready"
    done_file = tmp + "/done"
    with open(feeder, "w") as handle:
        handle.write(_PTY_FEEDER % P1_SAMPLE)
    os.system("%s %s %s %s %s > %s/feeder.log 2>&1 &" % (python, feeder, name_file, ready_file, done_file, tmp))
    try:
        start = common.ticks_ms()
        while not support.exists(name_file) and common.ticks_diff(common.ticks_ms(), start) < _ARRIVAL_MS:
            time.sleep_ms(10)
        assert support.exists(name_file), "pty feeder did not start: " + _read(tmp + "/feeder.log")
        p = unix.Platform(UNIX_BOARD, uart_device=_read(name_file))
        _check_pty_reads(p, lambda: _write(ready_file, "go"))
    finally:
        _write(done_file, "done")


def test_pty_uart_small_buffer_gets_everything_in_order():
    if support.IS_MICROPYTHON:
        support.skip("no pty writer here; small buffers are covered by the FIFO test")
    master, slave = os.openpty()
    try:
        p = unix.Platform(UNIX_BOARD, uart_device=os.ttyname(slave))
        uart = p.open_uart(9600, 7, 0, 1, True)  # DSMR 2.2 line; a pty may refuse 7E1
        os.write(master, P1_SAMPLE)
        data, largest = asyncio.run(_collect(uart, len(P1_SAMPLE), 4, _ARRIVAL_MS))
        uart.close()
        assert data == P1_SAMPLE
        assert largest == 4
    finally:
        os.close(master)
        os.close(slave)


def test_fifo_uart_reads_bytes_then_silence():
    # A FIFO is not a tty: no line settings, same non-blocking reads. This runs
    # the byte-per-poll path on the unix port without any helper process.
    tmp = support.make_tmpdir("fifo")
    path = tmp + "/p1"
    go = tmp + "/go"
    if os.system("mkfifo " + path) != 0:
        support.skip("mkfifo not available")
    # open() of a FIFO waits for a writer: start one. It sends the rest only
    # once told (the file `go` appears), so "nothing there yet" below is a
    # fact, not a bet on timing; it gives up after a minute.
    os.system(
        "(printf 'abcdef'; n=0; while [ ! -e %s ] && [ $n -lt 6000 ]; do sleep 0.01; n=$((n+1)); done; "
        "printf 'ghi') > %s &" % (go, path)
    )
    p = unix.Platform(UNIX_BOARD, uart_device=path)
    uart = p.open_uart(115200, 8, None, 1, True)
    try:
        assert not uart.is_tty
        data, _ = asyncio.run(_collect(uart, 6, 16, _ARRIVAL_MS))
        assert data == b"abcdef"
        # read_now: what is there, at once, nothing when nothing is there.
        small = bytearray(2)
        assert uart.read_now(small) == 0
        _write(go, "go")
        # printf sends "ghi" in one write(): once a byte is there, all three are.
        assert _read_now_when_there(uart, small, _ARRIVAL_MS) == 2 and bytes(small) == b"gh"
        assert uart.read_now(small) == 1 and small[0] == ord("i")
        assert uart.read_now(small) == 0
        count, _ = asyncio.run(_idle_read(uart))
        assert count == 0  # writer gone: silence, not an error
    finally:
        uart.close()
    try:
        asyncio.run(uart.readinto(bytearray(4)))
    except OSError:
        pass
    else:
        raise AssertionError("readinto after close must raise")


# --- watchdog and reset in a child process --------------------------------------

_CHILD = """
import sys, time
if sys.implementation.name != "micropython":
    sys.path.insert(0, %(shims)r)
sys.path.insert(0, %(firmware)r)
from chargeguard.platform import unix
p = unix.Platform({"name": "unix"})
mode = %(mode)r
if mode == "reset":
    print("resetting")
    p.reset()
p.watchdog_start(%(timeout)d)
if mode == "stall":
    time.sleep(%(stall_s)d)
elif mode == "feed":
    # Fed every 20 ms for twice the timeout: only a stall of nearly the
    # whole timeout between two feeds could end it.
    for i in range(%(timeout)d // 10):
        time.sleep(0.02)
        p.watchdog_feed()
print("alive")
"""
_STALL_S = 20  # the stalled child's sleep; the watchdog must end it long before


def _run_child(interpreter, mode, timeout_ms):
    tmp = support.make_tmpdir("child")
    script = tmp + "/child.py"
    out = tmp + "/out.txt"
    with open(script, "w") as handle:
        handle.write(
            _CHILD
            % {
                "shims": ROOT + "/tools/shims",
                "firmware": ROOT + "/firmware",
                "mode": mode,
                "timeout": timeout_ms,
                "stall_s": _STALL_S,
            }
        )
    start = common.ticks_ms()
    status = os.system("%s %s > %s 2>&1" % (interpreter, script, out))
    elapsed = common.ticks_diff(common.ticks_ms(), start)
    return _exit_code(status), _read(out), elapsed


def _check_watchdog_fires(interpreter):
    code, output, elapsed = _run_child(interpreter, "stall", 300)
    assert code != 0, output
    assert "alive" not in output
    line = [row for row in output.split("\n") if row.startswith("watchdog:")]
    assert len(line) == 1, output
    words = line[0].split()
    assert line[0] == "watchdog: control loop stalled for %s ms, resetting" % words[5]
    assert int(words[5]) > 300
    assert elapsed < _STALL_S * 1000  # before the child's own sleep ends


def test_watchdog_resets_a_stalled_micropython_process():
    interpreter = _micropython()
    if interpreter is None:
        support.skip("micropython binary not found")
    _check_watchdog_fires(interpreter)


def test_watchdog_resets_a_stalled_cpython_process():
    interpreter = _cpython()
    if interpreter is None:
        support.skip("CPython not found")
    _check_watchdog_fires(interpreter)


def test_fed_watchdog_lets_the_process_run():
    ran = 0
    for interpreter in (_micropython(), _cpython()):
        if interpreter is None:
            continue
        # 2 s: a loaded host may hold the child off for a few hundred ms
        # (318 ms seen), which a shorter timeout would count as a stall.
        code, output, _ = _run_child(interpreter, "feed", 2000)
        assert code == 0, output
        assert "alive" in output and "watchdog" not in output
        ran += 1
    if not ran:
        support.skip("no interpreter found for a child process")


def test_reset_ends_the_process_with_nonzero_status():
    ran = 0
    for interpreter in (_micropython(), _cpython()):
        if interpreter is None:
            continue
        code, output, _ = _run_child(interpreter, "reset", 0)
        assert code == RESET_EXIT_STATUS, (code, output)
        assert "resetting" in output and "alive" not in output
        ran += 1
    if not ran:
        support.skip("no interpreter found for a child process")


# --- RS485 (Modbus RTU) ----------------------------------------------------------

ENV_RS485_DEVICE = "CHARGEGUARD_RS485_DEVICE"


def test_open_rs485_needs_a_device_and_names_it():
    _setenv(ENV_RS485_DEVICE, None)
    p = unix.Platform(UNIX_BOARD)
    try:
        p.open_rs485(9600, 8, None, 1)
    except OSError as error:
        assert "CHARGEGUARD_RS485_DEVICE" in str(error)
    else:
        raise AssertionError("no device must raise OSError")
    _setenv(ENV_RS485_DEVICE, "/nonexistent/ttyUSB9")
    try:
        p.open_rs485(9600, 8, None, 1)
    except OSError as error:
        assert "/nonexistent/ttyUSB9" in str(error)
    else:
        raise AssertionError("a missing device must raise OSError")
    finally:
        _setenv(ENV_RS485_DEVICE, None)


def test_rs485_writes_and_reads_on_one_device():
    # A FIFO opened for reading and writing: what the UART writes comes back
    # to its own reads, on both runtimes, with no helper process.
    tmp = support.make_tmpdir("rs485")
    path = tmp + "/line"
    if os.system("mkfifo " + path) != 0:
        support.skip("mkfifo not available")
    _setenv(ENV_RS485_DEVICE, path)
    try:
        uart = unix.Platform(UNIX_BOARD).open_rs485(9600, 8, 0, 1)
    finally:
        _setenv(ENV_RS485_DEVICE, None)
    try:
        frame = b"\x01\x04\x00\x00\x00\x02\x71\xcb"
        uart.write(frame)
        buf = bytearray(16)
        got = uart.read_now(buf)
        assert bytes(buf[:got]) == frame
        assert uart.read_now(buf) == 0
    finally:
        uart.close()


def test_rs485_on_a_pty_reaches_the_other_side():
    if support.IS_MICROPYTHON:
        support.skip("the unix port cannot create a pty; the FIFO test covers it here")
    master, slave = os.openpty()
    _setenv(ENV_RS485_DEVICE, os.ttyname(slave))
    try:
        uart = unix.Platform(UNIX_BOARD).open_rs485(19200, 8, None, 2)
        uart.write(b"\x02\x03\x00\x10\x00\x01")
        assert os.read(master, 64) == b"\x02\x03\x00\x10\x00\x01"
        os.write(master, b"\x02\x03\x02\x00\x2a")
        buf = bytearray(8)
        got = 0
        start = common.ticks_ms()
        while got < 5 and common.ticks_diff(common.ticks_ms(), start) < _ARRIVAL_MS:
            got += uart.read_now(memoryview(buf)[got:])
        assert bytes(buf[:got]) == b"\x02\x03\x02\x00\x2a"
        uart.close()
    finally:
        _setenv(ENV_RS485_DEVICE, None)
        os.close(master)
        os.close(slave)


def test_the_line_speeds_the_unix_ports_termios_lacks_are_linuxs_own_codes():
    # HAN ports run at 2400 baud and Modbus meters at 1200..38400; the unix
    # port's termios names only 9600 and 57600 up, so platform/unix_line.py has
    # Linux's codes for the others (test_han_site runs the firmware at 2400).
    from chargeguard.platform import unix_line

    if support.IS_MICROPYTHON:
        for baud in unix_line._LINUX_SPEEDS:
            assert unix_line._LINUX_SPEEDS[baud] == (9, 11, 12, 14, 15)[(1200, 2400, 4800, 19200, 38400).index(baud)]
        return
    import termios as host_termios

    for baud, code in unix_line._LINUX_SPEEDS.items():
        assert getattr(host_termios, "B%d" % baud) == code, baud


def test_the_opening_code_is_not_kept_after_an_open():
    # open_uart() loads platform/unix_line.py for the open and drops it
    # (its heap goes back to the running controller); the UART still reads.
    path = support.make_tmpdir("line") + "/p1"
    _write(path, "/")
    p = unix.Platform({}, uart_device=path)
    uart = p.open_uart(115200, 8, None, 1, True)
    assert "chargeguard.platform.unix_line" not in sys.modules
    assert "unix_line" not in platform.__dict__
    assert not uart.is_tty  # a plain file: no line settings
    buf = bytearray(4)
    got = 0
    start = common.ticks_ms()
    while not got and common.ticks_diff(common.ticks_ms(), start) < _ARRIVAL_MS:
        got = uart.read_now(buf)
    assert bytes(buf[:got]) == b"/"
    uart.close()
