# P1 / DSMR parser and driver: every framing and value rule, every fixture.
# Runs under pytest and on the MicroPython unix port (tools/upytest.py).

from support import IS_MICROPYTHON, heap_growth, read_fixture

from chargeguard.meters import p1
from chargeguard.meters.p1 import P1Meter, P1Parser, crc16

# The module's limits are private const()s (no heap on the device), so the
# tests carry their values: keep them in step with chargeguard/meters/p1.py.
MAX_TELEGRAM_BYTES = 6144  # _MAX_TELEGRAM_BYTES
HEADER_MAX = 64  # _HEADER_MAX
MAX_POWER_W = 1000000  # _MAX_POWER_W
MIN_VOLTAGE_MV = 50000  # _MIN_VOLTAGE_MV
MAX_VOLTAGE_MV = 1000000  # _MAX_VOLTAGE_MV
IDLE_FLUSH_MS = 200  # _IDLE_FLUSH_MS
READ_BUFFER_BYTES = 256  # _READ_BUFFER_BYTES
READ_CHUNKS_MAX = 32  # _READ_CHUNKS_MAX

ERRORS = (
    "crc mismatch",
    "no crc on a DSMR 4+ telegram",
    "truncated",
    "too long",
    "no power values",
)


# -- helpers ----------------------------------------------------------------


def snapshot(r):
    return (
        r.phase_count,
        tuple(r.current_ma),
        tuple(r.power_w),
        tuple(r.voltage_mv),
        r.import_w,
        r.export_w,
        r.energy_import_wh,
        r.energy_export_wh,
        r.avg_demand_w,
        r.month_peak_w,
    )


def event(parser):
    values = snapshot(parser.reading) if parser.accepted else None
    return (parser.accepted, parser.crc, parser.error, parser.header_bytes(), values)


def events(data, chunk=0, parser=None, finish=True):
    """Feed data (whole, or in chunks of `chunk` bytes); list every completion."""
    if parser is None:
        parser = P1Parser()
    out = []
    n = len(data)
    pos = 0
    while pos < n:
        stop = n if not chunk else min(n, pos + chunk)
        i = pos
        while i < stop:
            i = parser.feed(data, i, stop)
            if parser.ready:
                out.append(event(parser))
        pos = stop
    if finish:
        parser.finish()
        if parser.ready:
            out.append(event(parser))
    return out


def one(data):
    got = events(data)
    assert len(got) == 1, got
    return got[0]


def accepted_reading(data):
    parser = P1Parser()
    got = events(data, parser=parser)
    assert len(got) == 1, got
    assert got[0][0], got[0]
    return parser.reading


def make(lines, header="/ISK5\\2M550T-1011", crc="upper", version="50", end="\r\n"):
    """A telegram from OBIS lines, with a CRC computed here."""
    head = [header, ""]
    if version is not None:
        head.append("1-3:0.2.8(%s)" % version)
    body = ("\r\n".join(head + list(lines)) + "\r\n!").encode()
    value = crc16(body)
    if crc == "upper":
        tail = "%04X" % value
    elif crc == "lower":
        tail = "%04x" % value
    elif crc == "short":
        tail = "%X" % value
    elif crc == "wrong":
        tail = "%04X" % (value ^ 0x1111)
    else:
        tail = ""
    return body + (tail + end).encode()


POWER = "1-0:1.7.0(01.234*kW)"


def make_short_crc(lines, end=""):
    """A DSMR 5 telegram whose CRC is below 0x1000, sent as 3 hex digits."""
    for k in range(1000):
        tel = make(["0-0:96.1.1(%d)" % (k * 7919)] + list(lines), crc="short", end=end)
        if tel[tel.find(b"!") + 4 : tel.find(b"!") + 5] in (b"", b"\r"):
            return tel
    raise AssertionError("no short CRC found")


def make_raw(body):
    """Frame raw bytes (header line included) with their CRC."""
    body = body + b"!"
    return body + ("%04X\r\n" % crc16(body)).encode()


def rng(seed):
    # Deterministic and identical on both runtimes (no `random` module).
    state = [seed & 0x7FFFFFFF]

    def below(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 8) % n

    return below


FIXTURES = (
    "be_fluvius_emucs_v171_ndokter.txt",
    "crc_invalid_kaifa_dsmrreader.txt",
    "nl_dsmr22_iskra_mt382_ndokter.txt",
    "nl_dsmr42_kaifa_export_athom.txt",
    "nl_dsmr50_iskra_am550_export_l1_athom.txt",
    "stream_truncated_then_full_iskra_dsmrreader.txt",
    "syn_at_plaintext.txt",
    "syn_crc_3digit.txt",
    "syn_crc_lowercase.txt",
    "syn_dsmr50_no_crc.txt",
    "syn_dummy_values.txt",
    "syn_long_text_4k.txt",
    "syn_lu_smarty.txt",
    "syn_noise_and_midline_cuts.txt",
    "syn_se_kw.txt",
    "syn_se_w.txt",
    "syn_slash_in_text.txt",
    "syn_stream_mid_start.txt",
    "syn_xt211_channel_1_1.txt",
)


def fixture(name):
    return read_fixture("p1", name)


# -- CRC --------------------------------------------------------------------


def test_crc16_arc_check_value_and_incremental():
    assert crc16(b"123456789") == 0xBB3D  # the CRC-16/ARC check value
    assert crc16(b"") == 0
    data = b"/ISK5\\2M550T-1011\r\n\r\n!"
    part = crc16(data, 0, 7)
    assert crc16(data, 7, len(data), part) == crc16(data)


def test_crc_table_is_the_polynomials_and_a_constant():
    # The table is two constants (bytes in flash on a frozen image), not
    # built at run time: each entry is what CRC-16/ARC's reflected
    # polynomial 0xA001 gives, and "/" (where every telegram starts) too.
    assert len(p1._CRC_LO) == 256 and len(p1._CRC_HI) == 256
    assert type(p1._CRC_LO) is bytes and type(p1._CRC_HI) is bytes
    for byte in range(256):
        c = byte
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        assert p1._CRC_HI[byte] << 8 | p1._CRC_LO[byte] == c, byte
        assert crc16(bytes((byte,))) == c
    assert crc16(b"/") == 0xDC41  # p1._CRC_SLASH
    P1Parser()
    assert not hasattr(p1, "_table")  # nothing built by a parser


def test_fixture_crcs_as_the_readme_states():
    for name, given in (
        ("nl_dsmr50_iskra_am550_export_l1_athom.txt", 0x1F28),
        ("be_fluvius_emucs_v171_ndokter.txt", 0x3AD7),
        ("nl_dsmr42_kaifa_export_athom.txt", 0xA737),
        ("crc_invalid_kaifa_dsmrreader.txt", 0x4BC6),  # the correct one
        ("nl_dsmr22_iskra_mt382_ndokter.txt", 0x99E3),
    ):
        data = fixture(name)
        assert crc16(data, 0, data.find(b"!") + 1) == given, name


# -- public fixtures ----------------------------------------------------------


def test_nl_dsmr50_mixed_direction():
    ok, crc, error, header, _ = one(fixture("nl_dsmr50_iskra_am550_export_l1_athom.txt"))
    assert (ok, crc, error, header) == (True, "valid", None, b"/ISK5\\2M550T-1011")
    r = accepted_reading(fixture("nl_dsmr50_iskra_am550_export_l1_athom.txt"))
    assert r.phase_count == 3
    assert r.power_w == [-676, 33, 132]
    assert r.voltage_mv == [236000, 232600, 235100]
    # 002*A on the wire hides up to 1 A: |P/U| = 676 / 236.0 = 2.864 A wins.
    assert r.current_ma[0] < 0 and -r.current_ma[0] >= 2000
    assert r.current_ma[0] == -2864
    assert r.current_ma[1] == 142  # 000*A, 33 W / 232.6 V
    assert r.current_ma[2] == 561  # 000*A, 132 W / 235.1 V
    assert (r.import_w, r.export_w) == (0, 498)
    assert r.energy_import_wh == 3808351 + 2948827
    assert r.energy_export_wh == 1285951 + 2876514
    assert r.avg_demand_w is None and r.month_peak_w is None


def test_be_emucs_capacity_tariff_lines():
    data = fixture("be_fluvius_emucs_v171_ndokter.txt")
    ok, crc, error, header, _ = one(data)
    assert (ok, crc, error, header) == (True, "valid", None, b"/FLU5\\253769484_A")
    r = accepted_reading(data)
    assert r.avg_demand_w == 2351
    assert r.month_peak_w == 2589  # the last group of (timestamp)(02.589*kW)
    assert r.phase_count == 3
    assert r.power_w == [0, 0, 0] and r.current_ma == [0, 0, 0]
    assert r.voltage_mv == [234700, 234700, 234700]
    assert (r.import_w, r.export_w) == (0, 0)
    assert r.energy_import_wh == 34 + 15758
    assert r.energy_export_wh == 0 + 11


def test_nl_dsmr22_bare_bang_accepted_totals_only():
    data = fixture("nl_dsmr22_iskra_mt382_ndokter.txt")
    ok, crc, error, header, _ = one(data)
    assert (ok, crc, error, header) == (True, "absent", None, b"/ISk5\\2MT382-1004")
    r = accepted_reading(data)
    assert r.phase_count == 0  # totals without per-phase data
    assert (r.import_w, r.export_w) == (1010, 0)
    assert r.energy_import_wh == 2002 and r.energy_export_wh == 2002


def test_crc_invalid_rejected():
    parser = P1Parser()
    before = snapshot(parser.reading)
    got = events(fixture("crc_invalid_kaifa_dsmrreader.txt"), parser=parser)
    assert got == [(False, "invalid", "crc mismatch", b"/KFM5KAIFA-METER", None)]
    assert snapshot(parser.reading) == before
    assert parser.n_crc_errors == 1 and parser.n_rejected == 1 and parser.n_accepted == 0


def test_nl_dsmr42_all_phases_export_signed_by_power():
    r = accepted_reading(fixture("nl_dsmr42_kaifa_export_athom.txt"))
    assert r.phase_count == 3
    assert r.power_w == [-688, -778, -403]
    assert r.voltage_mv == [None, None, None]  # none on the wire: unknown
    # Whole amps 3/3/2 against |P| / 230 V nominal: 2.991, 3.383, 1.752 A.
    assert r.current_ma == [-3000, -3383, -2000]
    assert (r.import_w, r.export_w) == (0, 1869)
    assert r.energy_import_wh == 4726494 + 4844281
    assert r.energy_export_wh == 3284320 + 7764691


def test_stream_truncated_then_full():
    parser = P1Parser()
    got = events(fixture("stream_truncated_then_full_iskra_dsmrreader.txt"), parser=parser)
    assert len(got) == 2
    assert got[0][:3] == (False, "absent", "truncated")
    assert got[1][:3] == (True, "valid", None)
    assert parser.n_truncated == 1 and parser.n_accepted == 1 and parser.n_telegrams == 2
    r = parser.reading
    assert r.import_w == 320 and r.export_w == 0
    assert r.energy_import_wh == 9012345 + 9067890
    assert r.energy_export_wh == 9123456 + 9789012
    assert r.power_w == [152, 52, 118]
    assert r.current_ma == [670, 228, 512]  # 000*A: P/U of 227.0/228.3/230.4 V


# -- synthetic fixtures (written for these tests, see SYNTHETIC.md) -----------


def test_lu_smarty():
    data = fixture("syn_lu_smarty.txt")
    ok, crc, error, header, _ = one(data)
    assert (ok, crc, header) == (True, "valid", b"/Lux5\\253833635_D")
    r = accepted_reading(data)
    assert r.energy_import_wh == 4812337 and r.energy_export_wh == 1907462  # 1.8.0 / 2.8.0
    assert r.power_w == [712, 219, 303]
    assert r.current_ma == [3082, 1000, 1306]
    assert r.import_w == 1234


def test_se_kw_and_w_units_give_the_same_reading():
    kw = accepted_reading(fixture("syn_se_kw.txt"))
    w = accepted_reading(fixture("syn_se_w.txt"))
    assert snapshot(kw) == snapshot(w)
    assert kw.import_w == 345 and kw.export_w == 0
    assert kw.power_w == [123, 222, 0]
    assert kw.current_ma == [600, 1000, 0]  # one decimal on the wire: as given
    assert kw.energy_import_wh == 6678394 and kw.energy_export_wh == 123456
    assert kw.phase_count == 3


def test_se_without_version_line_still_crc_checked():
    data = bytearray(fixture("syn_se_kw.txt"))
    data[data.find(b"1-0:1.7.0") + 13] ^= 1
    assert one(bytes(data))[:3] == (False, "invalid", "crc mismatch")


def test_at_plaintext_w_units():
    r = accepted_reading(fixture("syn_at_plaintext.txt"))
    assert r.import_w == 4321 and r.export_w == 0
    assert r.power_w == [1500, 1421, 1400]
    assert r.current_ma == [6520, 6180, 6090]
    assert r.voltage_mv == [230100, 229900, 231000]
    assert r.energy_import_wh == 12345678 and r.energy_export_wh == 123456


def test_crc_lower_case():
    data = fixture("syn_crc_lowercase.txt")
    assert data.rstrip()[-4:] == data.rstrip()[-4:].lower()
    assert one(data)[:3] == (True, "valid", None)


def test_crc_three_digits():
    data = fixture("syn_crc_3digit.txt")
    assert data[data.find(b"!") :] == b"!A14\r\n"
    assert one(data)[:3] == (True, "valid", None)
    # At the end of a capture with no line end: finish() completes it.
    bare = data.rstrip()
    assert events(bare, finish=False) == []
    assert one(bare)[:3] == (True, "valid", None)
    # A wrong 3-digit CRC is still a mismatch.
    assert one(bare[:-1] + b"5")[:3] == (False, "invalid", "crc mismatch")


def test_crc_with_fewer_digits_from_the_builder():
    tel = make_short_crc([POWER], end="\r\n")
    assert len(tel) - tel.find(b"!") == 6  # '!', 3 digits, CR, LF
    assert one(tel)[:3] == (True, "valid", None)


def test_telegram_over_4k_accepted():
    data = fixture("syn_long_text_4k.txt")
    assert len(data) >= 4096
    ok, crc, error, _, values = one(data)
    assert (ok, crc, error) == (True, "valid", None)
    assert values[1] == (3094, 1000, 2000)


def test_too_long_rejected_and_resyncs():
    text = "0-0:96.13.0(" + "41" * (MAX_TELEGRAM_BYTES // 2) + ")"
    parser = P1Parser()
    got = events(make([text, POWER]) + make([POWER]), parser=parser)
    assert [g[:3] for g in got] == [(False, "absent", "too long"), (True, "valid", None)]
    assert parser.n_overflows == 1
    assert parser.reading.import_w == 1234


def test_stream_starting_mid_telegram():
    parser = P1Parser()
    got = events(fixture("syn_stream_mid_start.txt"), parser=parser)
    assert len(got) == 2  # the leading tail is not a telegram
    assert got[0][:3] == (True, "valid", None) and got[1][:3] == (True, "valid", None)
    assert got[0][4][2] == (-1500, 219, 303)
    assert got[0][4][1][0] == -6519  # 1.5 kW / 230.1 V beats 003*A
    assert got[1][4][2] == (800, 219, 303)
    assert parser.n_telegrams == 2


def test_slash_and_bang_inside_text_do_not_resync():
    data = fixture("syn_slash_in_text.txt")
    assert data.find(b"/storing! ") > 0
    parser = P1Parser()
    got = events(data, parser=parser)
    assert [g[:3] for g in got] == [(True, "valid", None)]
    assert parser.n_truncated == 0


def test_dsmr50_without_crc_rejected():
    parser = P1Parser()
    got = events(fixture("syn_dsmr50_no_crc.txt"), parser=parser)
    assert got == [(False, "absent", "no crc on a DSMR 4+ telegram", b"/ISK5\\2M550T-1013", None)]
    assert parser.n_rejected == 1 and parser.n_crc_errors == 0


def test_emucs_without_crc_rejected():
    tel = make(["0-0:96.1.4(50217)", POWER], header="/FLU5\\253769484_A", version=None, crc="none")
    assert one(tel)[:3] == (False, "absent", "no crc on a DSMR 4+ telegram")


def test_version_line_decides_crc_requirement():
    # DSMR 2.2-like header with a lower-case letter and a backslash: the
    # header does not decide, the version line does.
    header = "/ISk5\\2MT382-1004"
    assert one(make([POWER], header=header, version=None, crc="none"))[:3] == (True, "absent", None)
    assert one(make([POWER], header=header, version="30", crc="none"))[:3] == (True, "absent", None)
    assert one(make([POWER], header=header, version="42", crc="none"))[2] == "no crc on a DSMR 4+ telegram"
    assert one(make([POWER], header=header, version="4.2x", crc="none"))[2] == "no crc on a DSMR 4+ telegram"
    # A pre-4 telegram that does carry a CRC gets it checked.
    assert one(make([POWER], version=None, crc="wrong"))[:3] == (False, "invalid", "crc mismatch")
    assert one(make([POWER], version=None))[:3] == (True, "valid", None)


def test_xt211_channel_1_1():
    r = accepted_reading(fixture("syn_xt211_channel_1_1.txt"))
    assert r.phase_count == 1
    assert r.power_w == [-2100, 0, 0]
    assert r.current_ma == [-9000, 0, 0]  # 009*A beats 2100 W / 240 V = 8.75 A
    assert (r.import_w, r.export_w) == (0, 2100)
    assert r.energy_import_wh == 300000 and r.energy_export_wh == 30000


def test_dummy_values_ignored_one_by_one():
    r = accepted_reading(fixture("syn_dummy_values.txt"))
    assert r.import_w == 143
    assert r.export_w is None  # 9999999999.999*kW
    assert r.energy_import_wh is None  # 1.8.2 is 2147483647: the sum is unknown
    assert r.energy_export_wh == 0
    assert r.voltage_mv[0] is None  # 2147483647*V
    assert r.current_ma[0] == 1000 and r.power_w[0] == 143


def test_garbage_never_crashes_nor_grows_memory():
    data = fixture("syn_garbage_20k.bin")
    assert len(data) == 20480
    parser = P1Parser()
    events(data, parser=parser)  # warm: every path once
    used = heap_growth(lambda: _feed_plain(parser, data))
    assert used == 0, used
    assert parser.n_accepted == 0
    assert parser.n_telegrams == parser.n_rejected
    for chunk in (1, 7, 256):
        got = events(data, chunk=chunk)
        assert not [g for g in got if g[0]]
        for g in got:
            assert g[2] in ERRORS


# -- value rules --------------------------------------------------------------


def test_units_any_case_and_any_decimals():
    cases = (
        ("00.498*kW", 498),
        ("0.5*kW", 500),
        ("1.2345*kW", 1235),  # rounded to the watt
        ("1.2344*kW", 1234),
        ("0001.01*kW", 1010),
        ("345*W", 345),
        ("345*w", 345),
        ("0.345*KW", 345),
        ("12.5*W", 13),
        ("1*kW", 1000),
        ("000000.000*kW", 0),
    )
    for text, watts in cases:
        r = accepted_reading(make(["1-0:1.7.0(%s)" % text]))
        assert r.import_w == watts, (text, r.import_w)
    for text, wh in (("000012.345*kWh", 12345), ("12345*Wh", 12345), ("1.5*KWH", 1500), ("7*wh", 7)):
        r = accepted_reading(make([POWER, "1-0:1.8.0(%s)" % text]))
        assert r.energy_import_wh == wh, (text, r.energy_import_wh)
    for text, ma in (("003*A", 3000), ("1.23*a", 1230), ("000.5*A", 500), ("12.345*A", 12345)):
        r = accepted_reading(make(["1-0:21.7.0(00.000*kW)", "1-0:31.7.0(%s)" % text]))
        assert r.current_ma[0] == ma, (text, r.current_ma)
    for text, mv in (("230*V", 230000), ("229.9*v", 229900), ("230.12*V", 230120)):
        r = accepted_reading(make([POWER, "1-0:32.7.0(%s)" % text]))
        assert r.voltage_mv[0] == mv, (text, r.voltage_mv)


def test_wrong_unit_or_malformed_value_ignored():
    for text in ("1.0*kWh", "1.0*A", "1.0", "1.0*", "abc*kW", "*kW", "1.0.0*kW", "-1.0*kW", "1.0*MW", "1.0 kW"):
        r = accepted_reading(make(["1-0:2.7.0(00.100*kW)", "1-0:1.7.0(%s)" % text]))
        assert r.import_w is None and r.export_w == 100, text


def test_implausible_values_ignored():
    r = accepted_reading(
        make(
            [
                "1-0:1.7.0(2147483647*W)",  # 10 digits: never a bigint
                "1-0:2.7.0(1000.001*kW)",  # over MAX_POWER_W
                "1-0:21.7.0(0.100*kW)",
                "1-0:1.8.1(999999.999*kWh)",
                "1-0:1.8.2(000000.001*kWh)",  # sum over MAX_ENERGY_WH
                "1-0:2.8.0(999999.999*kWh)",
                "1-0:1.4.0(99999999999*kW)",
            ]
        )
    )
    assert r.import_w is None and r.export_w is None
    assert r.power_w[0] == 100
    assert r.energy_import_wh is None
    assert r.energy_export_wh == 999999999
    assert r.avg_demand_w is None


def test_energy_total_register_or_tariff_sum():
    r = accepted_reading(make([POWER, "1-0:1.8.1(000001.000*kWh)", "1-0:1.8.2(000002.000*kWh)"]))
    assert r.energy_import_wh == 3000 and r.energy_export_wh is None
    r = accepted_reading(make([POWER, "1-0:1.8.0(000010.000*kWh)", "1-0:1.8.1(000001.000*kWh)"]))
    assert r.energy_import_wh == 10000  # the total register wins
    r = accepted_reading(make([POWER, "1-0:2.8.2(000002.500*kWh)"]))
    assert r.energy_export_wh == 2500


def test_month_peak_takes_the_last_group():
    r = accepted_reading(make([POWER, "1-0:1.6.0(200509134558S)(02.589*kW)", "1-0:1.4.0(00.100*kW)"]))
    assert r.month_peak_w == 2589 and r.avg_demand_w == 100
    r = accepted_reading(make([POWER, "1-0:1.6.0(200509134558S)"]))
    assert r.month_peak_w is None


def test_ignored_lines_never_disturb():
    lines = [
        "0-1:24.1.0(003)",
        "0-1:24.2.1(181106140010W)(01569.646*m3)",
        "0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)",
        "(00001.001)",
        "1-0:99.97.0(1)(0-0:96.7.19)(000101000001W)(2147483647*s)",
        "1-0:99.97.0()",
        "0-0:96.13.0()",
        "0-0:96.13.0(48656C6C6F)",
        "0-0:96.13.0(odd (text) with 1-0:1.7.0(9.999*kW) inside)",
        "0-0:98.1.0(3)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)",
        "1-0:1.7.0(",
        "1-0:1.7.0)",
        "1-0:1.7.0()",
        "1-0:1.7.0(((",
        "1-0:1.7.0(9.000*kW",
        "1-0:1.7",
        "1-0:1.7.0.0(9.000*kW)",
        "1-0:1111.7.0(9.000*kW)",
        "-0:1.7.0(9.000*kW)",
        "1-0:11.7.0(9.000*kW)",
        "1-0:81.7.0(9.000*kW)",
        "1-0:21.8.0(9.000*kWh)",
        "1-0:1.8.10(9.000*kWh)",
        "1-0:31.4.0(999*A)",
        "0-0:17.0.0(999.9*kW)",
        "1-0:3.7.0(00.000*kvar)",
        "x",
        "",
        "\t",
        POWER,
    ]
    r = accepted_reading(make(lines))
    assert r.import_w == 1234
    assert r.phase_count == 0 and r.export_w is None
    assert r.energy_import_wh is None and r.month_peak_w is None and r.avg_demand_w is None


def test_no_power_values_rejected():
    got = one(make(["1-0:1.8.1(000001.000*kWh)", "1-0:31.7.0(003*A)", "1-0:32.7.0(230.0*V)"]))
    assert got[:3] == (False, "valid", "no power values")


def test_per_phase_derivation():
    # Power only, no current: |P/U| with the phase voltage, else 230 V.
    r = accepted_reading(make(["1-0:21.7.0(00.460*kW)", "1-0:42.7.0(00.230*kW)", "1-0:32.7.0(230.0*V)"]))
    assert r.phase_count == 2
    assert r.power_w == [460, -230, 0]
    assert r.current_ma == [2000, -1000, 0]
    assert r.voltage_mv == [230000, None, None]
    assert r.import_w is None  # totals absent: net_power_w() sums the phases
    assert r.net_power_w() == 230
    # A phase that imports and exports in one telegram nets out.
    r = accepted_reading(make(["1-0:21.7.0(00.500*kW)", "1-0:22.7.0(00.200*kW)"]))
    assert r.power_w[0] == 300
    # Currents with decimals are used as given, signed by the phase power,
    # even when P/U is larger (reactive current is real current).
    r = accepted_reading(make(["1-0:22.7.0(01.000*kW)", "1-0:31.7.0(001.23*A)", "1-0:32.7.0(230.0*V)"]))
    assert r.current_ma[0] == -1230
    # Whole amps: the larger of |I| and |P/U|.
    r = accepted_reading(make(["1-0:22.7.0(00.100*kW)", "1-0:31.7.0(004*A)"]))
    assert r.current_ma[0] == -4000
    # Current without power on a phase still counts, unsigned (positive).
    r = accepted_reading(make([POWER, "1-0:51.7.0(002*A)"]))
    assert r.phase_count == 2 and r.current_ma == [0, 2000, 0] and r.power_w == [0, 0, 0]
    # phase_count is the highest phase with data; voltage alone is not data.
    r = accepted_reading(make([POWER, "1-0:61.7.0(00.100*kW)", "1-0:72.7.0(231.0*V)"]))
    assert r.phase_count == 3 and r.current_ma[2] == 433
    r = accepted_reading(make([POWER, "1-0:72.7.0(231.0*V)"]))
    assert r.phase_count == 0 and r.voltage_mv[2] == 231000
    # A lost phase (0 V) falls back to the nominal voltage for P/U.
    r = accepted_reading(make(["1-0:21.7.0(00.230*kW)", "1-0:32.7.0(000.0*V)"]))
    assert r.current_ma[0] == 1000 and r.voltage_mv[0] == 0


def test_zero_volts_is_a_measured_lost_phase():
    # L3 lost: the meter still sends its lines, with 0 V. That is a
    # measurement (0), not a value the telegram left out (None).
    lines = [
        "1-0:1.7.0(02.300*kW)",
        "1-0:32.7.0(230.0*V)",
        "1-0:52.7.0(231.0*V)",
        "1-0:72.7.0(000.0*V)",
        "1-0:31.7.0(005*A)",
        "1-0:51.7.0(005*A)",
        "1-0:71.7.0(000*A)",
        "1-0:21.7.0(01.150*kW)",
        "1-0:41.7.0(01.150*kW)",
        "1-0:61.7.0(00.000*kW)",
    ]
    r = accepted_reading(make(lines))
    assert r.voltage_mv == [230000, 231000, 0]
    assert r.phase_count == 3 and r.current_ma[2] == 0 and r.power_w[2] == 0
    # The same with L3's voltage line left out: unknown, not 0 V.
    r = accepted_reading(make(lines[:3] + lines[4:]))
    assert r.voltage_mv == [230000, 231000, None]
    # 0 V alone on a phase is still not per-phase current data.
    r = accepted_reading(make([POWER, "1-0:72.7.0(000.0*V)"]))
    assert r.phase_count == 0 and r.voltage_mv == [None, None, 0]
    # Accepted again after a reading with voltages: nothing carried over.
    parser = P1Parser()
    events(make(lines), parser=parser)
    events(make([POWER]), parser=parser)
    assert parser.reading.voltage_mv == [None, None, None]


def test_large_values_stay_small_ints():
    r = accepted_reading(make(["1-0:21.7.0(1000.000*kW)", "1-0:32.7.0(050.0*V)"]))
    assert r.current_ma[0] == 20000000
    r = accepted_reading(make(["1-0:22.7.0(1000.000*kW)", "1-0:31.7.0(999*A)"]))
    assert r.current_ma[0] == -4347826


# -- framing rules -------------------------------------------------------------


def test_chunking_does_not_change_the_result():
    for name in FIXTURES:
        data = fixture(name)
        whole = events(data)
        for chunk in (1, 2, 3, 5, 64):
            assert events(data, chunk=chunk) == whole, (name, chunk)


def test_feed_returns_after_each_telegram():
    a = make(["1-0:1.7.0(00.001*kW)"])
    b = make(["1-0:1.7.0(00.002*kW)"])
    data = a + b
    parser = P1Parser()
    i = parser.feed(data)
    # Complete at the 4th CRC digit: the CR/LF after it is not waited for.
    assert parser.ready and parser.accepted and i == len(a) - 2
    assert parser.reading.import_w == 1
    i = parser.feed(data, i)
    assert parser.ready and i == len(data) - 2
    assert parser.reading.import_w == 2
    assert parser.feed(data, i) == len(data) and not parser.ready
    assert parser.feed(data, len(data)) == len(data) and not parser.ready


def test_crc_completes_at_the_fourth_digit():
    tel = make([POWER], end="")
    parser = P1Parser()
    assert parser.feed(tel) == len(tel) and parser.ready and parser.accepted


def test_crc_followed_by_a_new_telegram_without_line_end():
    data = make_short_crc(["1-0:1.7.0(00.001*kW)"]) + make(["1-0:1.7.0(00.002*kW)"])
    got = events(data)
    assert [g[:3] for g in got] == [(True, "valid", None), (True, "valid", None)]


def test_idle_completes_short_crc_and_bare_bang():
    tel = make_short_crc([POWER])
    parser = P1Parser()
    parser.feed(tel)
    assert not parser.ready
    parser.idle()
    assert parser.ready and parser.accepted
    parser.idle()
    assert not parser.ready
    tel = make([POWER], version=None, crc="none", end="")
    parser = P1Parser()
    parser.feed(tel)
    parser.idle()
    assert parser.ready and parser.accepted and parser.crc == "absent"
    # idle() keeps a DSMR 4+ telegram that is mid-body.
    tel = make([POWER])
    parser = P1Parser()
    parser.feed(tel, 0, tel.find(b"!"))
    parser.idle()
    assert not parser.ready
    parser.feed(tel, tel.find(b"!"))
    assert parser.ready and parser.accepted


def test_pre4_telegram_without_bang_ends_at_the_next_one():
    # Some DSMR 2.2 meters never send '!'.
    dsmr22 = fixture("nl_dsmr22_iskra_mt382_ndokter.txt")
    cut = dsmr22[: dsmr22.find(b"!")]
    parser = P1Parser()
    got = events(cut + dsmr22, parser=parser)
    assert [g[:3] for g in got] == [(True, "absent", None), (True, "absent", None)]
    assert got[0][4] == got[1][4]
    assert one(cut)[:3] == (True, "absent", None)  # finish() at the end of input
    # Cut before any power value: that is a truncation.
    early = dsmr22[: dsmr22.find(b"1-0:1.7.0")]
    assert [g[:3] for g in events(early + dsmr22)] == [(False, "absent", "truncated"), (True, "absent", None)]


def test_dsmr5_cut_at_a_line_end_is_truncated():
    tel = fixture("nl_dsmr50_iskra_am550_export_l1_athom.txt")
    cut = tel[: tel.find(b"1-0:32.7.0")]
    parser = P1Parser()
    got = events(cut + tel, parser=parser)
    assert [g[:3] for g in got] == [(False, "absent", "truncated"), (True, "valid", None)]
    assert parser.n_truncated == 1
    assert one(cut)[:3] == (False, "absent", "truncated")


def test_any_slash_starts_a_telegram_between_telegrams():
    # Field case: line noise with no line end, then a telegram.
    tel = make([POWER])
    parser = P1Parser()
    assert events(b"\x00\xff~\x80" + tel, parser=parser) == [one(tel)]
    assert parser.n_skipped == 4 and parser.n_truncated == 0
    assert one(b"xx" + tel)[:4] == (True, "valid", None, b"/ISK5\\2M550T-1011")
    # Noise holding a '/' on the same line: a header holds no '/', so the
    # telegram starts again at the header's, with no completion for noise.
    parser = P1Parser()
    got = events(b"a/b\xfe" + tel, parser=parser)
    assert got == [one(tel)] and parser.n_telegrams == 1
    assert parser.n_skipped == 1 + 3  # "a", then "/b\xfe" before the header's '/'
    # A noise line with '/' and a line end began a telegram: it is cut by
    # the real one (a line-start '/') and reported, the real one kept.
    got = events(b"xx/junk\r\n" + tel)
    assert [g[:4] for g in got] == [(False, "absent", "truncated", b"/junk"), (True, "valid", None, b"/ISK5\\2M550T-1011")]
    # After a CRC ended by junk.
    assert [g[:3] for g in events(tel[:-4] + b"x" + b"zz" + tel)] == [(False, "invalid", "crc mismatch"), (True, "valid", None)]
    # A pre-4 telegram after noise (DSMR 2.2 at 9600 baud).
    dsmr22 = fixture("nl_dsmr22_iskra_mt382_ndokter.txt")
    assert one(b"\x7f\x00" + dsmr22)[:3] == (True, "absent", None)


def _cut_then_full(cut, full, parser=None):
    got = []
    for chunk in (0, 1, 7):
        p = P1Parser() if parser is None else parser
        got.append([g[:4] for g in events(cut + full, chunk=chunk, parser=p)])
    assert got[0] == got[1] == got[2], got
    return got[0]


def test_header_mid_line_ends_the_cut_telegram():
    # Field case: a telegram cut inside a line, then a complete one.
    d50 = fixture("nl_dsmr50_iskra_am550_export_l1_athom.txt")
    head = b"/ISK5\\2M550T-1011"
    for where in (b"1-0:32.7.0", b"1-0:1.8.1(00", b"0-0:96.1.1(45", b"1-0:21.7.0(00.0"):
        cut = d50[: d50.find(where) + len(where)]
        got = _cut_then_full(cut, d50)
        assert got == [(False, "absent", "truncated", head), (True, "valid", None, head)], where
    # The complete telegram's values are the full ones.
    parser = P1Parser()
    events(d50[:200] + d50, parser=parser)
    assert parser.reading.power_w == [-676, 33, 132] and parser.n_truncated == 1
    assert parser.n_telegrams == 2 and parser.n_skipped == 0
    # Cut inside a long text message (a line the parser only CRC-checks).
    long_text = fixture("syn_long_text_4k.txt")
    cut = long_text[: long_text.find(b"0-0:96.13.0(") + 2000]
    got = _cut_then_full(cut, d50)
    assert [g[:3] for g in got] == [(False, "absent", "truncated"), (True, "valid", None)]
    # A pre-4 telegram cut mid-line, then a complete one: the cut one is
    # truncated even with its power values (its last line is broken).
    dsmr22 = fixture("nl_dsmr22_iskra_mt382_ndokter.txt")
    cut = dsmr22[: dsmr22.find(b"0-1:24.3.0") + 6]
    got = _cut_then_full(cut, dsmr22)
    assert [g[:3] for g in got] == [(False, "absent", "truncated"), (True, "absent", None)]
    # The new header with no blank line after it (not every meter sends one).
    tel = make([POWER])
    bare = tel.replace(b"\r\n\r\n", b"\r\n", 1)
    assert crc16(bare, 0, bare.find(b"!") + 1) != crc16(tel, 0, tel.find(b"!") + 1)
    bare = make_raw(bare[: bare.find(b"!")])
    got = _cut_then_full(d50[:300], bare)
    assert [g[:3] for g in got] == [(False, "absent", "truncated"), (True, "valid", None)]
    # LF-only line ends.
    lf = make_raw(b"/ABC5 meter\n1-0:1.7.0(00.042*kW)\n")
    got = _cut_then_full(make_raw(b"/ABC5 meter\n1-0:1.7.0(00.0")[:25], lf)
    assert got == [(False, "absent", "truncated", b"/ABC5 meter"), (True, "valid", None, b"/ABC5 meter")]
    # Cut inside the new telegram's own header: still only one completion
    # for the cut one; the header that follows starts cleanly.
    got = _cut_then_full(d50[:300] + b"/ISK5\\2M5", d50)
    assert got == [(False, "absent", "truncated", head), (True, "valid", None, head)]


def test_a_cut_anywhere_never_takes_the_next_telegram_down():
    # Every cut point of a DSMR 5 and of a DSMR 2.2 telegram, followed by
    # the complete telegram: the complete one is always read, with its
    # own values, and the cut one is never accepted as something else.
    for name, crc in (("nl_dsmr50_iskra_am550_export_l1_athom.txt", "valid"), ("nl_dsmr22_iskra_mt382_ndokter.txt", "absent")):
        full = fixture(name)
        whole = one(full)
        assert whole[0]
        bang = full.find(b"!")
        for cut in range(1, len(full)):
            got = events(full[:cut] + full)
            assert got[-1] == whole, (name, cut, got)
            for g in got[:-1]:
                # A pre-4 telegram cut at a line end after its power lines is
                # complete (DSMR 2.2 meters that never send '!'), and so is
                # one cut after its bare '!'.
                ends_ok = full[cut - 1 : cut] in b"\r\n" or cut > bang
                assert not g[0] or (crc == "absent" and ends_ok), (name, cut, g)
            assert len(got) <= 2, (name, cut, got)
            if cut > bang:  # cut after '!': that telegram ended there
                errors = ("crc mismatch", "no crc on a DSMR 4+ telegram") if crc == "valid" else (None,)
                assert len(got) == 2 and got[0][2] in errors, (name, cut, got)
            elif full[cut - 1 : cut] not in b"\r\n" and cut > full.find(b"\r"):
                # Cut mid-line after the header: reported as truncated.
                assert len(got) == 2 and got[0][2] == "truncated", (name, cut, got)
            elif cut < full.find(b"\r"):
                assert len(got) == 1, (name, cut, got)  # noise in the header line: dropped


def test_header_mid_line_then_idle_and_finish():
    # The new telegram is taken up by idle()/finish() too, not only feed().
    d50 = fixture("nl_dsmr50_iskra_am550_export_l1_athom.txt")
    data = d50[:300] + d50[:100]
    parser = P1Parser()
    i = parser.feed(data)
    assert parser.ready and parser.error == "truncated"
    parser.idle()
    assert not parser.ready
    parser.feed(data, i)
    parser.finish()
    assert parser.ready and parser.error == "truncated"
    assert parser.header_bytes() == b"/ISK5\\2M550T-1011" and parser.n_truncated == 2
    # Input that ends right after the header line that cut a telegram.
    parser = P1Parser()
    got = events(d50[:300] + b"/ISK5\\2M550T-1011\r\n", parser=parser)
    assert [g[:4] for g in got] == [(False, "absent", "truncated", b"/ISK5\\2M550T-1011")] * 2


def test_slash_inside_text_is_not_a_header():
    # DSMR 2.2 plain-text messages may hold '/', '!' and header-like words:
    # a '/' followed by ')' before the line end is not a header.
    texts = (
        "0-0:96.13.0(Zie /ISK5\\2MT382-1004)",
        "0-0:96.13.0(/ISK5\\2MT382-1004)",
        "0-0:96.13.0(storing/onderhoud van 10/12 tot 11/12)",
        "0-0:96.13.0(a/bcd5 ! /Abc5X)",
        "0-0:96.13.1(/ABC5xyz)",
    )
    for text in texts:
        tel = make([POWER, text], header="/ISk5\\2MT382-1004", version=None, crc="none")
        parser = P1Parser()
        got = events(tel, parser=parser, chunk=3)
        assert [g[:3] for g in got] == [(True, "absent", None)], text
        assert parser.n_truncated == 0, text
        got = events(make([POWER, text]), chunk=1)
        assert [g[:3] for g in got] == [(True, "valid", None)], text
    # Too short to be a header (no identification after '/XXX5').
    assert [g[:3] for g in events(make([POWER, "1-0:99.0(x/ABC5"]))] == [(True, "valid", None)]


def test_noise_and_midline_cuts_fixture():
    parser = P1Parser()
    got = events(fixture("syn_noise_and_midline_cuts.txt"), parser=parser)
    assert [g[:4] for g in got] == [
        (True, "valid", None, b"/ISK5\\2M550T-1011"),
        (False, "absent", "truncated", b"/KFM5KAIFA-METER"),
        (True, "valid", None, b"/Lux5\\253833635_D"),
        (False, "absent", "truncated", b"/ISk5\\2MT382-1004"),
        (True, "absent", None, b"/ISk5\\2MT382-1004"),
    ]
    assert got[0][4][2] == (-676, 33, 132) and got[2][4][2] == (712, 219, 303)
    assert parser.n_skipped == 6 and parser.n_truncated == 2 and parser.n_accepted == 3


def test_bang_only_at_a_line_start_ends_the_body():
    tel = make(["0-0:96.13.0(Hi!)", "0-0:96.13.1(!)", POWER])
    assert one(tel)[:3] == (True, "valid", None)


def test_crc_end_by_junk_and_empty():
    tel = make([POWER], end="")
    assert one(tel[:-4] + b"\r\n")[:3] == (False, "absent", "no crc on a DSMR 4+ telegram")
    assert one(tel[:-2] + b"xy")[:3] == (False, "invalid", "crc mismatch")
    assert one(tel[:-4] + b"G")[:3] == (False, "absent", "no crc on a DSMR 4+ telegram")


def test_rejected_telegram_keeps_the_previous_reading():
    parser = P1Parser()
    events(make(["1-0:1.7.0(00.111*kW)", "1-0:21.7.0(00.111*kW)"]), parser=parser)
    before = snapshot(parser.reading)
    for bad in (
        make(["1-0:1.7.0(00.222*kW)"], crc="wrong"),
        make(["1-0:1.7.0(00.222*kW)"], crc="none"),
        make(["1-0:1.8.0(000001.000*kWh)"]),
        make(["1-0:1.7.0(00.222*kW)"])[:40],
    ):
        got = events(bad, parser=parser)
        assert got and not got[0][0]
        assert snapshot(parser.reading) == before
    assert parser.n_accepted == 1 and parser.n_rejected == 4 and parser.n_telegrams == 5
    assert parser.n_crc_errors == 1 and parser.n_truncated == 1


def test_header_bytes():
    parser = P1Parser()
    assert parser.header_bytes() == b""
    events(make_raw(b"/XYZ5\\odd\x01\xfe\r\n\r\n1-0:1.7.0(01.234*kW)\r\n"), parser=parser)
    assert parser.accepted
    assert parser.header_bytes() == b"/XYZ5\\odd\x01\xfe"
    long_header = "/" + "H" * 200
    events(make([POWER], header=long_header), parser=parser)
    assert parser.accepted
    assert parser.header_bytes() == long_header.encode()[: HEADER_MAX]


# -- robustness ---------------------------------------------------------------


def _mutate(data, below, others):
    # Concatenation only: both runtimes agree on it.
    data = bytes(data)
    for _ in range(1 + below(6)):
        n = len(data)
        op = below(8)
        at = below(n + 1) if n else 0
        if op == 0 and n:
            k = below(n)
            data = data[:k] + bytes((below(256),)) + data[k + 1 :]
        elif op == 1:
            data = data[:at] + bytes((b"/!\r\n()*.:-0123456789AFkWhV"[below(26)],)) + data[at:]
        elif op == 2 and n:
            data = data[:at] + data[at + 1 + below(40) :]
        elif op == 3 and n:
            start = below(n)
            data = data[:at] + data[start : start + 1 + below(80)] + data[at:]
        elif op == 4:
            data = data[:at]
        elif op == 5 and n:
            k = below(n)
            if 0x30 <= data[k] <= 0x39:
                data = data[:k] + bytes((0x30 + below(10),)) + data[k + 1 :]
        elif op == 6:
            data = data[:at] + others[below(len(others))] + data[at:]
        elif op == 7 and n:
            k = below(n)
            data = data[:k] + bytes((data[k] ^ (1 << below(8)),)) + data[k + 1 :]
    return data


def test_fuzz_mutated_fixtures_never_raise():
    sources = [fixture(name) for name in FIXTURES if not name.endswith("4k.txt")]
    below = rng(20240615)
    parser = P1Parser()
    accepted = 0
    for round_ in range(300):
        data = _mutate(sources[round_ % len(sources)], below, sources)
        got = events(data, chunk=1 + below(300), parser=parser)
        for ok, crc, error, header, values in got:
            assert crc in ("valid", "invalid", "absent")
            if ok:
                accepted += 1
                assert error is None and crc != "invalid"
                count, currents, powers, volts = values[0], values[1], values[2], values[3]
                assert 0 <= count <= 3
                # The largest current P/U can give: MAX_POWER_W at MIN_VOLTAGE_MV.
                top = MAX_POWER_W * 1000 // (MIN_VOLTAGE_MV // 1000)
                for k in range(3):
                    assert -top <= currents[k] <= top
                    assert -MAX_POWER_W <= powers[k] <= MAX_POWER_W
                    assert volts[k] is None or 0 <= volts[k] <= MAX_VOLTAGE_MV
            else:
                assert error in ERRORS, error
        assert parser.n_telegrams == parser.n_accepted + parser.n_rejected
    assert accepted > 20  # the mutations left many telegrams intact


def _feed_plain(parser, data):
    n = len(data)
    i = 0
    while i < n:
        i = parser.feed(data, i, n)


def test_no_allocation_per_telegram_once_warm():
    for name in (
        "nl_dsmr50_iskra_am550_export_l1_athom.txt",
        "be_fluvius_emucs_v171_ndokter.txt",
        "nl_dsmr22_iskra_mt382_ndokter.txt",
        "crc_invalid_kaifa_dsmrreader.txt",
        "syn_long_text_4k.txt",
        "stream_truncated_then_full_iskra_dsmrreader.txt",
        "syn_noise_and_midline_cuts.txt",
    ):
        data = fixture(name)
        parser = P1Parser()
        _feed_plain(parser, data)
        start = parser.n_telegrams

        def fifty():
            for _ in range(50):
                _feed_plain(parser, data)

        used = heap_growth(fifty, lambda: _feed_plain(parser, data))
        assert used == 0, (name, used)
        assert parser.n_telegrams > start
        if IS_MICROPYTHON:
            # Stronger: with the heap locked any allocation raises.
            import micropython

            micropython.heap_lock()
            try:
                fifty()
            finally:
                micropython.heap_unlock()


# -- P1Meter ------------------------------------------------------------------


class FakeUart:
    """Platform UART stand-in: hands out queued chunks, b"" = an empty poll."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.polls = 0

    def read_now(self, buf):
        self.polls += 1
        if not self.chunks:
            return 0
        chunk = self.chunks.pop(0)
        if len(chunk) > len(buf):
            self.chunks.insert(0, chunk[len(buf) :])
            chunk = chunk[: len(buf)]
        for k in range(len(chunk)):
            buf[k] = chunk[k]
        return len(chunk)


class Clock:
    def __init__(self):
        self.now = 1000

    def ticks_ms(self):
        self.now += 10
        return self.now


def read(meter):
    return meter.poll()


def test_meter_reads_telegrams_and_keeps_leftovers():
    a = make(["1-0:1.7.0(00.001*kW)"])
    b = make(["1-0:1.7.0(00.002*kW)"])
    uart = FakeUart([a[:30], a[30:] + b])
    clock = Clock()
    meter = P1Meter(uart, clock.ticks_ms)
    assert read(meter) is True
    assert meter.reading.import_w == 1
    assert meter.reading.tick_ms == clock.now  # when the last chunk arrived
    polls = uart.polls
    assert read(meter) is True  # b was already buffered
    assert uart.polls == polls
    assert meter.reading.import_w == 2
    assert read(meter) is False  # empty poll
    assert meter.reading.import_w == 2


def test_meter_counts_rejections_and_reports_them():
    uart = FakeUart([make([POWER], crc="wrong"), make(["1-0:1.7.0(00.003*kW)"])])
    meter = P1Meter(uart, Clock().ticks_ms)
    # The rejected telegram is counted and skipped; the good one after it is taken.
    assert read(meter) is True and meter.reading.import_w == 3
    assert meter.parser.n_crc_errors == 1
    assert meter.last_error == "crc mismatch"  # the last rejection stays visible
    assert read(meter) is False


def test_meter_takes_the_telegram_after_a_mid_line_cut_and_noise():
    # The field cases through the driver: noise with no line end, a telegram
    # cut mid-line by the next one, in UART-sized chunks.
    d50 = fixture("nl_dsmr50_iskra_am550_export_l1_athom.txt")
    stream = b"\x00\xff" + make(["1-0:1.7.0(00.001*kW)"]) + d50[:333] + d50
    uart = FakeUart([stream[k : k + 100] for k in range(0, len(stream), 100)])
    meter = P1Meter(uart, Clock().ticks_ms)
    assert read(meter) is True and meter.reading.import_w == 1
    assert read(meter) is True and meter.reading.power_w == [-676, 33, 132]
    assert meter.last_error == "truncated" and meter.n_truncated == 1 and meter.n_skipped == 2


def test_meter_idle_flush_for_a_short_crc_without_line_end():
    tel = make_short_crc([POWER])
    uart = FakeUart([tel, b"", b""])
    clock = Clock()
    meter = P1Meter(uart, clock.ticks_ms)
    assert read(meter) is False  # the chunk, then a poll too soon for idle
    arrived = meter._rx_tick
    clock.now += IDLE_FLUSH_MS
    assert read(meter) is True
    assert meter.reading.import_w == 1234 and meter.reading.tick_ms == arrived


def test_meter_returns_on_a_noisy_line():
    noise = b"\x00" * READ_BUFFER_BYTES
    uart = FakeUart([noise] * (READ_CHUNKS_MAX + 5))
    meter = P1Meter(uart, Clock().ticks_ms)
    assert read(meter) is False
    assert uart.polls == READ_CHUNKS_MAX


def test_meter_ticks_wrap():
    tel = make_short_crc([POWER])
    uart = FakeUart([tel, b""])
    clock = Clock()
    clock.now = 0x3FFFFFFF - 5
    meter = P1Meter(uart, lambda: clock.now & 0x3FFFFFFF)
    assert read(meter) is False
    clock.now += IDLE_FLUSH_MS + 1
    assert read(meter) is True
