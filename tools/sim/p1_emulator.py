"""P1 smart-meter emulator for the site simulator (CPython only).

build_telegram(...) turns the simulator's per-phase integers (W, mA, mV, Wh)
into a DSMR 5.0 telegram (NL, Iskra AM550 layout) or a BE e-MUCS one
(Fluvius layout, with the capacity-tariff lines), CRC16/ARC included.

PtyP1Port opens a pseudo-terminal pair: the firmware (unix port) opens
`.device` as its P1 UART, the simulator writes telegrams on the master side.

The CRC here is computed bit by bit, independently of the firmware's table
code, so that tests comparing the two check both.
"""

import os
import select
import time
import tty

FLAVOURS = ("nl", "be")
NL_HEADER = "/ISK5\\2M550T-1011"
BE_HEADER = "/FLU5\\253769484_A"
DEFAULT_TIMESTAMP = "181106140429W"


def crc16_arc(data):
    """CRC16/ARC (poly 0xA001 reflected, init 0, no final XOR) of bytes."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, got %r" % (name, value))


def _thousandths(value, int_digits):
    # 498 -> "00.498" with int_digits=2: kW from W, kWh from Wh.
    if value < 0:
        raise ValueError("register values are never negative: %d" % value)
    return "%0*d.%03d" % (int_digits, value // 1000, value % 1000)


def _volts(mv):
    dv = (mv + 50) // 100  # one decimal, rounded
    return "%03d.%d*V" % (dv // 10, dv % 10)


def _amps(ma, decimals):
    ma = abs(ma)
    if decimals == 0:
        return "%03d*A" % ((ma + 500) // 1000)
    ca = (ma + 5) // 10
    return "%03d.%02d*A" % (ca // 100, ca % 100)


def _tariffs(name, energy):
    if isinstance(energy, (tuple, list)):
        if len(energy) != 2:
            raise ValueError("%s: give one int or a (tariff1, tariff2) pair" % name)
        t1, t2 = energy
    else:
        t1, t2 = energy, 0
    _check_int(name, t1)
    _check_int(name, t2)
    return t1, t2


def build_telegram(
    power_w=(0, 0, 0),
    current_ma=None,
    voltage_mv=(230000, 230000, 230000),
    energy_import_wh=0,
    energy_export_wh=0,
    flavour="nl",
    current_decimals=None,
    import_w=None,
    export_w=None,
    avg_demand_w=None,
    month_peak_w=None,
    timestamp=DEFAULT_TIMESTAMP,
    tariff=1,
    header=None,
    gas_m3_milli=None,
    crc=True,
):
    """One P1 telegram as bytes (CRLF line ends, CRC16 after '!').

    power_w: per-phase net power in W (+ import, - export); its length
        (1..3) is the meter's phase count. Written as 21/41/61.7.0 (import
        part) and 22/42/62.7.0 (export part), kW with 3 decimals.
    current_ma: per-phase currents in mA; the sign is dropped (P1 never
        signs currents). None: |P| / U, as a meter would measure with no
        reactive load.
    voltage_mv: per-phase voltage in mV, written in V with one decimal;
        None leaves the voltage lines out (DSMR 4.2 meters have none).
    energy_import_wh / energy_export_wh: an int (all in tariff 1) or a
        (tariff1, tariff2) pair, Wh, written in kWh with 3 decimals.
    flavour: "nl" (DSMR 5.0, version line 1-3:0.2.8(50)) or "be"
        (e-MUCS 0-0:96.1.4, with 1-0:1.4.0 and 1-0:1.6.0).
    current_decimals: 0 (whole amps, "002*A", as NL meters) or 2
        ("001.23*A", as BE meters); default by flavour.
    import_w / export_w: totals 1.7.0 / 2.7.0; default from the phase sum.
    avg_demand_w / month_peak_w (be only): default the import total.
    gas_m3_milli: a gas M-Bus register in litres, or None for no M-Bus.
    crc: False writes a bare '!' (for negative tests).
    """
    if flavour not in FLAVOURS:
        raise ValueError("flavour must be one of %s" % (FLAVOURS,))
    phases = len(power_w)
    if not 1 <= phases <= 3:
        raise ValueError("1 to 3 phases")
    for k, value in enumerate(power_w):
        _check_int("power_w[%d]" % k, value)
    if voltage_mv is not None:
        voltage_mv = tuple(voltage_mv)[:phases]
        for k, value in enumerate(voltage_mv):
            _check_int("voltage_mv[%d]" % k, value)
    if current_ma is None:
        ref = voltage_mv or (230000,) * phases
        current_ma = tuple((abs(p) * 1000000 + ref[k] // 2) // ref[k] for k, p in enumerate(power_w))
    current_ma = tuple(current_ma)[:phases]
    if len(current_ma) != phases:
        raise ValueError("current_ma needs one value per phase")
    for k, value in enumerate(current_ma):
        _check_int("current_ma[%d]" % k, value)
    if current_decimals is None:
        current_decimals = 2 if flavour == "be" else 0
    if current_decimals not in (0, 2):
        raise ValueError("current_decimals must be 0 or 2")
    net = sum(power_w)
    if import_w is None:
        import_w = max(net, 0)
    if export_w is None:
        export_w = max(-net, 0)
    _check_int("import_w", import_w)
    _check_int("export_w", export_w)
    imp1, imp2 = _tariffs("energy_import_wh", energy_import_wh)
    exp1, exp2 = _tariffs("energy_export_wh", energy_export_wh)

    def kw(value):
        return _thousandths(value, 2) + "*kW"

    def kwh(value):
        return _thousandths(value, 6) + "*kWh"

    energy = [
        "1-0:1.8.1(%s)" % kwh(imp1),
        "1-0:1.8.2(%s)" % kwh(imp2),
        "1-0:2.8.1(%s)" % kwh(exp1),
        "1-0:2.8.2(%s)" % kwh(exp2),
    ]
    totals = ["1-0:1.7.0(%s)" % kw(import_w), "1-0:2.7.0(%s)" % kw(export_w)]
    per_phase_power = []
    for k in range(phases):
        per_phase_power.append("1-0:%d.7.0(%s)" % (21 + 20 * k, kw(max(power_w[k], 0))))
    for k in range(phases):
        per_phase_power.append("1-0:%d.7.0(%s)" % (22 + 20 * k, kw(max(-power_w[k], 0))))
    volts = []
    if voltage_mv is not None:
        volts = ["1-0:%d.7.0(%s)" % (32 + 20 * k, _volts(voltage_mv[k])) for k in range(phases)]
    amps = ["1-0:%d.7.0(%s)" % (31 + 20 * k, _amps(current_ma[k], current_decimals)) for k in range(phases)]
    stamp = timestamp[:-1] if timestamp[-1:] in ("W", "S") else timestamp

    if flavour == "nl":
        lines = [
            header or NL_HEADER,
            "",
            "1-3:0.2.8(50)",
            "0-0:1.0.0(%s)" % timestamp,
            "0-0:96.1.1(4530303334303036383130353136343136)",
        ]
        lines += energy
        lines += ["0-0:96.14.0(%04d)" % tariff]
        lines += totals
        lines += [
            "0-0:96.7.21(00006)",
            "0-0:96.7.9(00003)",
            "1-0:99.97.0(1)(0-0:96.7.19)(000101000001W)(2147483647*s)",
        ]
        lines += ["1-0:%d.32.0(00000)" % (32 + 20 * k) for k in range(phases)]
        lines += ["1-0:%d.36.0(00000)" % (32 + 20 * k) for k in range(phases)]
        lines += ["0-0:96.13.0()"]
        lines += volts + amps + per_phase_power
        if gas_m3_milli is not None:
            lines += [
                "0-1:24.1.0(003)",
                "0-1:96.1.0(4730303339303031373030343630313137)",
                "0-1:24.2.1(%sW)(%s*m3)" % (stamp, _thousandths(gas_m3_milli, 5)),
            ]
    else:
        if avg_demand_w is None:
            avg_demand_w = import_w
        if month_peak_w is None:
            month_peak_w = avg_demand_w
        _check_int("avg_demand_w", avg_demand_w)
        _check_int("month_peak_w", month_peak_w)
        lines = [
            header or BE_HEADER,
            "",
            "0-0:96.1.4(50217)",
            "0-0:96.1.1(3153414733313031303231363035)",
            "0-0:1.0.0(%sS)" % stamp,
        ]
        lines += energy
        lines += [
            "1-0:1.4.0(%s)" % kw(avg_demand_w),
            "1-0:1.6.0(%sS)(%s)" % (stamp, kw(month_peak_w)),
            "0-0:98.1.0(1)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)",
            "0-0:96.14.0(%04d)" % tariff,
        ]
        lines += totals + per_phase_power + volts + amps
        lines += ["0-0:96.3.10(1)", "0-0:17.0.0(999.9*kW)", "1-0:31.4.0(999*A)", "0-0:96.13.0()"]
        if gas_m3_milli is not None:
            lines += [
                "0-1:24.1.0(003)",
                "0-1:96.1.1(37464C4F32313139303333373333)",
                "0-1:24.4.0(1)",
                "0-1:24.2.3(%sS)(%s*m3)" % (stamp, _thousandths(gas_m3_milli, 5)),
            ]
    body = ("\r\n".join(lines) + "\r\n!").encode("ascii")
    if not crc:
        return body + b"\r\n"
    return body + b"%04X\r\n" % crc16_arc(body)


class PtyP1Port:
    """A pty pair standing in for the P1 cable.

    `device` is the slave path for the firmware's UART. write() sends on the
    master without ever blocking for long: what the reader does not take
    within `write_timeout_s` is dropped and counted in `dropped`, as a real
    meter does not wait either. With `baud` set, write() paces the bytes
    at that line speed (10 bits per byte) to reproduce arrival timing.
    """

    def __init__(self, write_timeout_s=1.0, baud=None):
        self._master, self._slave = os.openpty()
        # Raw: bytes pass unchanged (no CR/LF mapping, no echo, no signals).
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.device = os.ttyname(self._slave)
        self.write_timeout_s = write_timeout_s
        self.baud = baud
        self.written = 0
        self.dropped = 0

    def write(self, data):
        """Send bytes to the reader; returns how many were taken."""
        data = memoryview(bytes(data))
        deadline = time.monotonic() + self.write_timeout_s
        step = 64 if self.baud else len(data) or 1
        sent = 0
        while sent < len(data):
            piece = data[sent : sent + step]
            try:
                n = os.write(self._master, piece)
            except BlockingIOError:
                n = 0
            sent += n
            if self.baud and n:
                time.sleep(n * 10.0 / self.baud)
            if n:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([], [self._master], [], min(left, 0.05))
        self.written += sent
        self.dropped += len(data) - sent
        return sent

    def close(self):
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
