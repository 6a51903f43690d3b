"""LAN meters read over HTTP: HomeWizard (API v1, API v2 over HTTPS) and Shelly (Gen2/Gen3 RPC, Gen1).

HttpMeter(model, host, port, channel, upside_down, ticks_ms, ticks_diff, sleep_ms, poll_ms, token, tls)
    ``await poll()`` is one request (net/http.py, one deadline of
    _TIMEOUT_MS for connect, request, head and body): True with a fresh
    reading. ``reading``: a GridReading updated in place after every answer
    that decodes; ``tick_ms`` = when that answer arrived (the body's last
    byte). ``last_error``: why the last poll gave no reading, in words, else
    None (or a note on a reading that came with one, e.g. a phase whose
    current is derived). ``await run(on_reading)`` is the meter task: it
    polls every ``poll_ms`` and calls ``on_reading()`` after each fresh
    reading. A meter that stops answering gives no reading, so the guard
    goes to its failsafe after meter_timeout, as with a silent P1 port.
    ``decode(tick_ms)`` decodes the body already in the client's buffer
    (what poll() does after the answer; tests and tools feed it directly).

Models (config meter.model; facts: ../shared/protocols/http-meters.md and
../shared/fixtures/http/):

    homewizard       GET /api/v1/data: P1 meter (HWE-P1) and kWh meters
                     (HWE-KWH1/KWH3, HWE-SKT). active_power_lN_w (W, signed),
                     active_current_lN_a (A; signed in the fixtures, the sign
                     is taken from the phase power anyway), active_voltage_lN_v,
                     active_power_w, total_power_import/export_kwh,
                     active_power_average_w and montly_power_peak_w (Belgian
                     capacity tariff; "montly" is the API's spelling). A
                     one-phase kWh meter names its current and voltage
                     active_current_a / active_voltage_v: they count for L1
                     when no L1 key is given.
    homewizard_v2    GET https://<host>/api/measurement with "Authorization:
                     Bearer <token>" and "X-Api-Version: 2" (HomeWizard API
                     v2: P1 meter firmware 6.00+, kWh meters 5.00+). The v1
                     values under their v2 names (docs/v2/measurement):
                     power_lN_w, current_lN_a, voltage_lN_v, power_w,
                     energy_import/export_kwh, average_power_15m_w,
                     monthly_power_peak_w; a one-phase kWh meter sends only
                     power_w, current_a and voltage_v: L1's. Timestamps are
                     ISO 8601 strings (never used). `tls` = (context from
                     net/tls.context(CA), the certificate's name
                     appliance/<type>/<serial>): the token is sent only to a
                     meter whose certificate chains to that CA and carries
                     that name. A 401 (user:unauthorized) says the token is
                     refused; the error code of a v2 error body
                     ({"error": "..."}) is quoted in last_error.
    shelly_em        GET /rpc/EM.GetStatus?id=0: Gen2/Gen3 three-phase EM
                     (Pro 3EM in the triphase profile, 3EM-63 Gen3).
                     a_/b_/c_current (A, magnitude), a_/b_/c_act_power (W,
                     signed), a_/b_/c_voltage, total_act_power. A non-empty
                     a_errors / b_errors / c_errors (e.g.
                     "out_of_range:active_power": the true value may be
                     higher) or "power_meter_failure" in errors: no reading.
    shelly_em1       GET /rpc/EM1.GetStatus?id=<channel>: one channel of a
                     Gen2/Gen3 EM1 device (Pro EM, EM Gen3, Pro 3EM in the
                     monophase profile): current, act_power, voltage; L1.
    shelly_3em_gen1  GET /status: Gen1 3EM, emeters[0..2] = L1..L3 with
                     power (W, signed), current (A), voltage, is_valid,
                     total / total_returned (Wh, summed over the phases).
    shelly_em_gen1   GET /status: Gen1 EM, emeters[<channel>] as L1 (this
                     meter gives no current: it is |P/U|, see below).

Values, as P1 readings (meters/p1.py): per-phase current in mA signed by the
phase power (negative = export); a current in whole amps (a P1 meter's, passed
on by the HomeWizard) becomes max(|I|, |P/U|); a phase with power and no
current gets |P/U| (U = the phase voltage, else 230 V) and the reading says
so in last_error; phase_count is the highest phase with a power or a
current. `upside_down` (CT clamps the wrong way round) negates every power
and swaps import and export energy. Keys that are absent or null are "not
given" (the HomeWizard API leaves out what it does not have; library
fixtures show explicit nulls too). A value that is no number or cannot be
real (more than 9 significant digits, above 1 MW, 2000 A, 1000 V, 999999999
Wh) fails the reading when it is a phase's current or power, and is left
out otherwise.

JSON: the body (at most the model's max_body bytes, refused by net/http.py
beyond) is walked once in the client's buffer and never turned into Python
objects: no allocation per poll, and a body that is no valid JSON object
(syntax checked, nesting at most _MAX_DEPTH, nothing after it) gives an
error with its byte offset, e.g. "bad JSON at byte 17: unexpected 'x'",
"bad JSON: the body ends inside it (cut short)". The reading is then not
touched; the next poll starts afresh.

Not supported: pairing on the device (the HomeWizard token comes from
tools/meterprobe.py --homewizard-pair, run once by the installer); a kept-alive
HTTPS connection (each v2 poll is a new TLS handshake); Shelly authentication (auth_en: digest
auth, not verified); Shelly Gen2 energy counters (EMData.GetStatus, a second
request: energy is only shown, never used by the guard).

Models and the config rules of the meter section: meters/http_models.py.
Errors (last_error): "no answer within 2000 ms (timeout)", "connection
refused: nothing on port N ...", "HTTP 403: switch the Local API on ...",
"HTTP 404: ..." (another model), "answer over N bytes ...", the JSON errors
above, "L2: the meter marks its values as not valid or in error", "the
meter reports power_meter_failure", "L1 power is no number or out of
range", "no power in the answer".
"""

from micropython import const

from chargeguard.core.model import GridReading
from chargeguard.net.http import HttpClient

_TIMEOUT_MS = const(2000)  # one request: the meters answer in well under 1 s on a sane Wi-Fi
_MAX_DEPTH = const(8)  # deepest nesting in a meter's answer is 3 (Gen1 emeters[i])
_NA = const(-0x40000000)  # not given (absent, null)
_BAD = const(-0x3FFFFFFF)  # given but no number, or out of range
_LIMIT = const(1000000000)  # 10 significant digits: not real
_NOMINAL_VOLTAGE_MV = const(230000)
_MIN_VOLTAGE_MV = const(50000)  # below: a lost phase, P/U uses the nominal voltage
_MAX_POWER_W = const(1000000)
_MAX_CURRENT_MA = const(2000000)
_MAX_VOLTAGE_MV = const(1000000)
_MAX_ENERGY_WH = const(999999999)

# Value slots (self._v).
_S_CUR = const(0)  # L1..L3 current, mA
_S_POW = const(3)  # L1..L3 power, W
_S_VOLT = const(6)  # L1..L3 voltage, mV
_S_TOTAL = const(9)  # total power, W
_S_IMP = const(10)  # import energy, Wh
_S_EXP = const(11)  # export energy, Wh
_S_AVG = const(12)  # average demand (quarter hour), W
_S_PEAK = const(13)  # month peak, W
_S_FLAG = const(14)  # L1..L3: 0 = the meter marks the phase not valid / in error
_S_FAIL = const(17)  # 1 = the meter reports a failure
_S_IMP3 = const(18)  # Gen1: L1..L3 import energy, Wh
_S_EXP3 = const(21)  # Gen1: L1..L3 export energy, Wh
_S_CUR1 = const(24)  # HomeWizard one-phase current (active_current_a), mA
_S_VOLT1 = const(25)  # HomeWizard one-phase voltage (active_voltage_v), mV
_SLOTS = const(26)

# What a key's value is: a number scaled by 10**scale, a boolean (1/0), an
# array that must be empty (1 = empty), an array that must not name a
# failure (1 = fine).
_NUM = const(0)
_BOOL = const(1)
_EMPTY = const(2)
_NO_FAIL = const(3)

# Scales: mA from A, W, mV from V, Wh from kWh, Wh.
_MA = const(3)
_W = const(0)
_MV = const(3)
_KWH = const(3)
_WH = const(0)

_FAILURE = b"power_meter_failure"


def _model(name, channel):
    # (path, max_body, list key or None, keys, specs). keys: the key names,
    # each in quotes, in one bytes constant (an object per key would cost
    # ~1 KB more heap); specs: per key slot | scale << 8 | kind << 12. The
    # list key names an array of objects whose element i has the keys
    # (slot + i); otherwise the keys are those of the top-level object.
    if name == "homewizard":
        keys = (
            b'"active_current_l1_a""active_current_l2_a""active_current_l3_a"'
            b'"active_power_l1_w""active_power_l2_w""active_power_l3_w"'
            b'"active_voltage_l1_v""active_voltage_l2_v""active_voltage_l3_v"'
            b'"active_power_w""total_power_import_kwh""total_power_export_kwh"'
            b'"active_power_average_w""montly_power_peak_w""active_current_a""active_voltage_v"'
        )
        specs = (
            _S_CUR | _MA << 8, _S_CUR + 1 | _MA << 8, _S_CUR + 2 | _MA << 8,
            _S_POW, _S_POW + 1, _S_POW + 2,
            _S_VOLT | _MV << 8, _S_VOLT + 1 | _MV << 8, _S_VOLT + 2 | _MV << 8,
            _S_TOTAL, _S_IMP | _KWH << 8, _S_EXP | _KWH << 8,
            _S_AVG, _S_PEAK, _S_CUR1 | _MA << 8, _S_VOLT1 | _MV << 8,
        )  # fmt: skip
        return ("/api/v1/data", 2048, None, keys, specs)
    if name == "homewizard_v2":
        keys = (
            b'"current_l1_a""current_l2_a""current_l3_a""power_l1_w""power_l2_w""power_l3_w"'
            b'"voltage_l1_v""voltage_l2_v""voltage_l3_v""power_w""energy_import_kwh""energy_export_kwh"'
            b'"average_power_15m_w""monthly_power_peak_w""current_a""voltage_v"'
        )
        specs = (
            _S_CUR | _MA << 8, _S_CUR + 1 | _MA << 8, _S_CUR + 2 | _MA << 8,
            _S_POW, _S_POW + 1, _S_POW + 2,
            _S_VOLT | _MV << 8, _S_VOLT + 1 | _MV << 8, _S_VOLT + 2 | _MV << 8,
            _S_TOTAL, _S_IMP | _KWH << 8, _S_EXP | _KWH << 8,
            _S_AVG, _S_PEAK, _S_CUR1 | _MA << 8, _S_VOLT1 | _MV << 8,
        )  # fmt: skip
        return ("/api/measurement", 2048, None, keys, specs)
    if name == "shelly_em":
        keys = (
            b'"a_current""b_current""c_current""a_act_power""b_act_power""c_act_power"'
            b'"a_voltage""b_voltage""c_voltage""total_act_power""a_errors""b_errors""c_errors""errors"'
        )
        specs = (
            _S_CUR | _MA << 8, _S_CUR + 1 | _MA << 8, _S_CUR + 2 | _MA << 8,
            _S_POW, _S_POW + 1, _S_POW + 2,
            _S_VOLT | _MV << 8, _S_VOLT + 1 | _MV << 8, _S_VOLT + 2 | _MV << 8,
            _S_TOTAL,
            _S_FLAG | _EMPTY << 12, _S_FLAG + 1 | _EMPTY << 12, _S_FLAG + 2 | _EMPTY << 12, _S_FAIL | _NO_FAIL << 12,
        )  # fmt: skip
        return ("/rpc/EM.GetStatus?id=0", 1024, None, keys, specs)
    if name == "shelly_em1":
        keys = b'"current""act_power""voltage""errors"'
        specs = (_S_CUR | _MA << 8, _S_POW, _S_VOLT | _MV << 8, _S_FLAG | _EMPTY << 12)
        return ("/rpc/EM1.GetStatus?id=%d" % channel, 512, None, keys, specs)
    if name == "shelly_3em_gen1" or name == "shelly_em_gen1":
        keys = b'"current""power""voltage""is_valid""total""total_returned"'
        specs = (
            _S_CUR | _MA << 8, _S_POW, _S_VOLT | _MV << 8, _S_FLAG | _BOOL << 12, _S_IMP3 | _WH << 8, _S_EXP3 | _WH << 8,
        )  # fmt: skip
        return ("/status", 2560, b'"emeters"', keys, specs)
    return None


class HttpMeter:
    """A LAN meter read over HTTP (see module doc)."""

    def __init__(
        self, model, host, port, channel, upside_down, ticks_ms, ticks_diff, sleep_ms, poll_ms=1000, token=None, tls=None
    ):
        spec = _model(model, channel)
        if spec is None:
            raise ValueError("unknown HTTP meter model %s" % model)
        self.model = model
        self.host = host
        self.port = port
        self.poll_ms = poll_ms
        self.path = spec[0]
        self._list = spec[2]
        self._keys = spec[3]
        self._specs = spec[4]
        # Gen1 EM: only emeters[channel], as L1; Gen1 3EM: emeters[0..2].
        self._first = channel if model == "shelly_em_gen1" else 0
        self._count = 3 if model == "shelly_3em_gen1" else 1
        self._upside = upside_down
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._sleep_ms = sleep_ms
        self.client = HttpClient(spec[1])
        self.reading = GridReading()
        self.last_error = None
        self.n_polls = 0
        self.n_readings = 0
        self._v = [_NA] * _SLOTS
        self._whole = [False, False, False, False]  # L1..L3, one-phase: a current given in whole amps
        self._num = 0  # the last number parsed (scaled)
        self._frac = False  # ... had a fraction
        # API v2: the request's header lines (they hold the token: never in
        # an error text, a log or a repr) and the TLS check, or a text that
        # says why there is none (no CA file, no ssl in this build).
        self._headers = None
        self._tls = None
        self._tls_error = None
        if model == "homewizard_v2":
            self._headers = "Authorization: Bearer %s\r\nX-Api-Version: 2\r\n" % token
            if type(tls) is str:
                self._tls_error = tls
            elif tls is None:
                self._tls_error = "no TLS context: API v2 needs HTTPS"
            else:
                self._tls = tls

    # -- the JSON walk ----------------------------------------------------

    def _number(self, buf, pos, end, scale):
        # A JSON number at pos; returns the position after it, or -1 when
        # it is no valid number. self._num = its value x 10**scale, rounded
        # half away from zero, or _BAD when 10 or more digits would stay;
        # self._frac = it had a fraction or an exponent.
        neg = buf[pos] == 45  # '-'
        if neg:
            pos += 1
        start = pos
        while pos < end and 48 <= buf[pos] <= 57:
            pos += 1
        whole = pos - start
        if not whole or (whole > 1 and buf[start] == 48):
            return -1  # no digits, or a leading zero
        stop = pos
        frac = False
        if pos < end and buf[pos] == 46:  # '.'
            pos += 1
            first = pos
            while pos < end and 48 <= buf[pos] <= 57:
                pos += 1
            if pos == first:
                return -1
            stop = pos
            frac = True
        exp = 0
        if pos < end and buf[pos] | 32 == 101:  # 'e', 'E'
            pos += 1
            sign = False
            if pos < end and (buf[pos] == 43 or buf[pos] == 45):
                sign = buf[pos] == 45
                pos += 1
            first = pos
            while pos < end and 48 <= buf[pos] <= 57:
                if exp < 100:  # beyond, the value is 0 or out of range anyway
                    exp = exp * 10 + buf[pos] - 48
                pos += 1
            if pos == first:
                return -1
            if sign:
                exp = -exp
            frac = True
        self._frac = frac
        # Digits that end up before the point: keep them, round on the next.
        keep = whole + scale + exp
        value = 0
        count = 0
        next_digit = 0
        i = start
        while i < stop or count < keep:
            digit = 0
            if i < stop:
                digit = buf[i] - 48
                i += 1
                if digit < 0:
                    continue  # the point
            if count < keep:
                if value >= _LIMIT // 10:
                    self._num = _BAD
                    return pos
                value = value * 10 + digit
            else:
                if count == keep:
                    next_digit = digit  # half away from zero needs no more
                break
            count += 1
        if next_digit >= 5:
            value += 1
        self._num = -value if neg else value
        return pos

    def _walk(self, buf, end):
        # Checks buf[:end] as one JSON object and stores our keys' values in
        # self._v; None, or the error text.
        v = self._v
        for i in range(_SLOTS):
            v[i] = _NA
        whole = self._whole
        whole[0] = whole[1] = whole[2] = whole[3] = False
        keys = self._keys
        specs = self._specs
        list_key = self._list
        first = self._first
        last = first + self._count
        depth = 0
        arrays = 0  # bit d: the container at depth d is an array
        in_list = False  # inside the list key's array (depth 2)
        element = 0  # its element index
        spec = -1  # the spec of the key whose value comes next, -1 = none
        held = -1  # the spec of an open errors array, judged at its end
        held_at = 0  # where it opened
        held_depth = 0
        list_next = False  # the next value is the list key's
        expect = 0  # 0 = a value, 1 = a key (or "}" of an empty object), 2 = "," or a closing bracket
        pos = 0
        while True:
            while pos < end and buf[pos] in b" \t\r\n":
                pos += 1
            if pos >= end:
                if depth == 0 and expect == 2:
                    return None
                return "bad JSON: the body ends inside it (cut short)" if end else "empty answer"
            c = buf[pos]
            if depth == 0 and expect == 2:
                return "bad JSON at byte %d: more after the object" % pos
            if expect == 0:
                if depth == 0 and c != 123:
                    return "bad JSON at byte %d: the answer is no JSON object" % pos
                if c == 123 or c == 91:  # '{' '['
                    depth += 1
                    if depth > _MAX_DEPTH:
                        return "bad JSON at byte %d: nested deeper than %d" % (pos, _MAX_DEPTH)
                    pos += 1
                    while pos < end and buf[pos] in b" \t\r\n":
                        pos += 1
                    empty = pos < end and buf[pos] == (93 if c == 91 else 125)
                    if c == 91:
                        arrays |= 1 << depth
                        if list_next and depth == 2:
                            in_list = True
                            element = 0
                    else:
                        arrays &= ~(1 << depth)
                    if spec >= 0:
                        kind = spec >> 12
                        if c == 91 and kind == _EMPTY:
                            v[spec & 0xFF] = 1 if empty else 0
                        elif c == 91 and kind == _NO_FAIL:
                            held = spec  # judged where it closes
                            held_at = pos
                            held_depth = depth
                        else:
                            v[spec & 0xFF] = _BAD  # a number or flag wanted, a container came
                        spec = -1
                    list_next = False
                    # An empty container closes at once.
                    expect = 2 if empty else 0 if c == 91 else 1
                    continue
                list_next = False
                if c == 34:  # '"': a string value
                    pos = self._string(buf, pos, end)
                    if pos < 0:
                        return "bad JSON: a string runs to the end (cut short)"
                    if spec >= 0:
                        v[spec & 0xFF] = _BAD
                elif c == 45 or 48 <= c <= 57:
                    at = pos
                    pos = self._number(buf, pos, end, (spec >> 8) & 0xF if spec >= 0 else 0)
                    if pos < 0:
                        return "bad JSON at byte %d: not a number" % at
                    if spec >= 0:
                        slot = spec & 0xFF
                        if spec >> 12 != _NUM:
                            v[slot] = _BAD
                        else:
                            v[slot] = self._num
                            if not self._frac:
                                if slot < _S_POW:
                                    whole[slot] = True
                                elif slot == _S_CUR1:
                                    whole[3] = True
                elif c == 116 or c == 102 or c == 110:  # true false null
                    word = b"true" if c == 116 else b"false" if c == 102 else b"null"
                    if buf.find(word, pos, pos + len(word)) != pos:
                        return "bad JSON at byte %d: unexpected %s" % (pos, _show(c))
                    pos += len(word)
                    if spec >= 0 and c != 110:
                        v[spec & 0xFF] = (1 if c == 116 else 0) if spec >> 12 == _BOOL else _BAD
                else:
                    return "bad JSON at byte %d: unexpected %s" % (pos, _show(c))
                spec = -1
                expect = 2
                continue
            if expect == 1:
                if c != 34:
                    return "bad JSON at byte %d: a key expected, %s found" % (pos, _show(c))
                at = pos
                pos = self._string(buf, pos, end)
                if pos < 0:
                    return "bad JSON: a key runs to the end (cut short)"
                spec = -1
                if (list_key is None and depth == 1) or (in_list and depth == 3 and first <= element < last):
                    i = _find(keys, buf, at, pos)
                    if i >= 0:
                        spec = specs[i] + (element - first if list_key is not None else 0)
                elif list_key is not None and depth == 1:
                    list_next = _find(list_key, buf, at, pos) == 0
                while pos < end and buf[pos] in b" \t\r\n":
                    pos += 1
                if pos >= end:
                    continue  # cut short: said at the loop's top
                if buf[pos] != 58:  # ':'
                    return "bad JSON at byte %d: ':' expected, %s found" % (pos, _show(buf[pos]))
                pos += 1
                expect = 0
                continue
            # expect == 2: after a value
            is_array = arrays >> depth & 1
            if c == 44:  # ','
                pos += 1
                expect = 0 if is_array else 1
                if in_list and depth == 2:
                    element += 1
                continue
            if c != (93 if is_array else 125):
                return "bad JSON at byte %d: %s expected, %s found" % (
                    pos, "',' or ']'" if is_array else "',' or '}'", _show(c))  # fmt: skip
            if held >= 0 and depth == held_depth:
                v[held & 0xFF] = 0 if buf.find(_FAILURE, held_at, pos) >= 0 else 1
                held = -1
            if in_list and depth == 2:
                in_list = False
            depth -= 1
            pos += 1

    def _string(self, buf, pos, end):
        # The position after the string that starts at pos (its '"'), or -1.
        pos += 1
        while True:
            q = buf.find(b'"', pos, end)
            if q < 0:
                return -1
            # Escaped when an odd number of backslashes precede it.
            b = q
            while b > pos and buf[b - 1] == 92:
                b -= 1
            pos = q + 1
            if not (q - b) & 1:
                return pos

    # -- from values to the reading -----------------------------------------

    def decode(self, tick_ms):
        """Decode the body in the client's buffer into `reading` (stamped tick_ms); True, or False with last_error."""
        client = self.client
        error = self._walk(client.buf, client.body_len)
        if error is None:
            error = self._publish(tick_ms)
        if error is not None:
            self.last_error = error
            return False
        self.n_readings += 1
        return True

    def _publish(self, tick_ms):
        # The values into the reading; None, or why there is no reading
        # (then the reading is untouched).
        v = self._v
        if v[_S_FAIL] == 0:
            return "the meter reports power_meter_failure"
        if self._list is not None:
            # Gen1: the phases, the energy counters summed.
            v[_S_IMP] = self._sum(_S_IMP3)
            v[_S_EXP] = self._sum(_S_EXP3)
        elif v[_S_POW + 1] == _NA and v[_S_POW + 2] == _NA:
            # A one-phase HomeWizard kWh meter: its current and voltage (no
            # _l1 in their names) are L1's. (A three-phase one's
            # active_current_a is the sum: never L1's.) API v2's sends no
            # per-phase power either: its power_w is L1's.
            if v[_S_POW] == _NA and v[_S_TOTAL] != _NA and (v[_S_CUR1] != _NA or v[_S_VOLT1] != _NA):
                v[_S_POW] = v[_S_TOTAL]
            if v[_S_CUR] == _NA:
                v[_S_CUR] = v[_S_CUR1]
                self._whole[0] = self._whole[3]
            if v[_S_VOLT] == _NA:
                v[_S_VOLT] = v[_S_VOLT1]
        count = 0
        for p in range(3):
            flag = v[_S_FLAG + p]
            if flag == 0:
                return "L%d: the meter marks its values as not valid or in error" % (p + 1)
            if flag == _BAD:
                return "L%d: validity flag not true/false" % (p + 1)
            cur = v[_S_CUR + p]
            power = v[_S_POW + p]
            if cur == _BAD or cur != _NA and not -_MAX_CURRENT_MA <= cur <= _MAX_CURRENT_MA:
                return "L%d current is no number or out of range" % (p + 1)
            if power == _BAD or power != _NA and not -_MAX_POWER_W <= power <= _MAX_POWER_W:
                return "L%d power is no number or out of range" % (p + 1)
            if cur != _NA or power != _NA:
                count = p + 1
        total = v[_S_TOTAL]
        if total != _NA and not -_MAX_POWER_W <= total <= _MAX_POWER_W:
            total = _NA
        if not count and total == _NA:
            return "no power in the answer"
        # Everything checked: the reading changes from here on.
        r = self.reading
        r.reset()
        sign = -1 if self._upside else 1
        note = None
        derived = 0
        for p in range(count):
            cur = v[_S_CUR + p]
            power = v[_S_POW + p]
            volt = v[_S_VOLT + p]
            if volt == _BAD or volt < 0 or volt > _MAX_VOLTAGE_MV:
                volt = _NA
            net = 0 if power == _NA else power * sign
            r.power_w[p] = net
            r.voltage_mv[p] = None if volt == _NA else volt  # 0 V is measured: a lost phase
            if cur != _NA and cur < 0:
                cur = -cur
            if cur != _NA and not self._whole[p]:
                mag = cur
            else:
                # |I| in mA = |P| / U, U in decivolts so every step stays a small int.
                u = (volt if volt != _NA and volt >= _MIN_VOLTAGE_MV else _NOMINAL_VOLTAGE_MV) // 100
                q = net if net >= 0 else -net
                mag = (q // u) * 10000 + ((q - (q // u) * u) * 10000 + (u >> 1)) // u
                if cur == _NA:
                    derived = p + 1
                elif cur > mag:
                    mag = cur
            r.current_ma[p] = -mag if net < 0 else mag
        if derived:
            note = "L%d: no current: |power / voltage| used" % derived
        r.phase_count = count
        if total == _NA:
            total = 0
            for p in range(count):
                total += r.power_w[p]
        else:
            total *= sign
        r.import_w = total if total > 0 else 0
        r.export_w = -total if total < 0 else 0
        imp = v[_S_IMP]
        exp = v[_S_EXP]
        if self._upside:
            imp, exp = exp, imp
        r.energy_import_wh = imp if 0 <= imp <= _MAX_ENERGY_WH else None
        r.energy_export_wh = exp if 0 <= exp <= _MAX_ENERGY_WH else None
        x = v[_S_AVG]
        if 0 <= x <= _MAX_POWER_W:
            r.avg_demand_w = x
        x = v[_S_PEAK]
        if 0 <= x <= _MAX_POWER_W:
            r.month_peak_w = x
        r.tick_ms = tick_ms
        self.last_error = note
        return None

    def _sum(self, slot):
        # Gen1: a per-phase energy counter summed over the phases, or _NA.
        v = self._v
        total = 0
        for p in range(self._count):
            x = v[slot + p]
            if x < 0 or x > _MAX_ENERGY_WH or total + x > _MAX_ENERGY_WH:
                return _NA
            total += x
        return total

    # -- the requests ---------------------------------------------------------

    def _http_error(self, status):
        # An answer that is not 200, in words.
        if self.model == "homewizard_v2":
            return self._v2_error(status)
        if status == 401:
            return "HTTP 401: switch the meter's password off (not supported)"
        if status == 403 and self.model == "homewizard":
            return "HTTP 403: switch the Local API on in the HomeWizard app"
        if status == 404:
            if self.model == "homewizard":
                return "HTTP 404: no /api/v1/data: a HomeWizard with API v1?"
            if self.model == "shelly_em":
                return "HTTP 404: no EM.GetStatus?id=0: a Gen2/3 Shelly in triphase profile? else shelly_em1"
            if self.model == "shelly_em1":
                return "HTTP 404: no %s: no such EM1 channel? (triphase: shelly_em)" % self.path
            return "HTTP 404: no /status: a Gen1 Shelly? (Gen2/3: shelly_em, shelly_em1)"
        return "HTTP %d from the meter" % status

    def _v2_error(self, status):
        # API v2: the status in words, with the error code of its body
        # ({"error": "user:unauthorized"}, docs/v2/error-handling) quoted.
        client = self.client
        buf = client.buf
        end = client.body_len
        code = ""
        at = buf.find(b'"error"', 0, end)
        if at >= 0:
            q = buf.find(b'"', buf.find(b":", at + 7, end) + 1, end)
            e = buf.find(b'"', q + 1, end) if q >= 0 else -1
            if q >= 0 and 0 < e - q - 1 <= 48:
                code = " (%s)" % bytes(buf[q + 1 : e]).decode()
        if status == 401:
            words = "the meter refuses the token: pair again (tools/meterprobe.py --homewizard-pair)"
        elif status == 404:
            words = "no /api/measurement: a firmware without API v2? (P1 meter 6.00+, kWh meter 5.00+)"
        elif status == 400:
            words = "the meter refuses the request (API version 2 not supported?)"
        else:
            words = "from the meter"
        return "HTTP %d%s: %s" % (status, code, words)

    async def poll(self):
        """One request and its decoding; True with a fresh reading (never raises but CancelledError)."""
        client = self.client
        self.n_polls += 1
        if self._tls_error is not None:
            self.last_error = self._tls_error
            return False
        status = await client.get(self.host, self.port, self.path, _TIMEOUT_MS, None, self._headers, self._tls)
        tick = self._ticks_ms()  # the answer is complete: the reading's time
        if not status:
            error = client.error
            if error == "timeout":
                self.last_error = "no answer within %d ms (timeout)" % _TIMEOUT_MS
            elif error == "connection refused":
                self.last_error = "connection refused: nothing on port %d (meter restarting? wrong port?)" % self.port
            elif error == "long body":
                self.last_error = "answer over %d bytes: another model?" % client.max_body
            elif error.startswith("tls: "):
                self.last_error = error + ": no token sent (meter.ca_file, meter.cert_hostname)"
            else:
                self.last_error = "no answer: " + str(error)
            return False
        if status != 200:
            self.last_error = self._http_error(status)
            return False
        return self.decode(tick)

    async def run(self, on_reading):
        """The meter task: poll every poll_ms, on_reading() after each fresh reading. Never returns."""
        ticks_ms = self._ticks_ms
        ticks_diff = self._ticks_diff
        sleep_ms = self._sleep_ms
        while True:
            started = ticks_ms()
            if await self.poll():
                on_reading()
            left = self.poll_ms - ticks_diff(ticks_ms(), started)
            await sleep_ms(left if left > 0 else 0)


def _find(keys, buf, start, stop):
    # The index of the quoted key buf[start:stop] among the quoted keys in
    # `keys`, or -1; compared in place (a slice would allocate).
    n = stop - start
    index = 0
    k = 0
    size = len(keys)
    while k < size:
        e = keys.find(b'"', k + 1) + 1  # past the key's closing quote
        if e - k == n:
            i = 1
            while i < n and buf[start + i] == keys[k + i]:
                i += 1
            if i == n:
                return index
        k = e
        index += 1
    return -1


def _show(c):
    # A byte, for an error text: 'x' when printable, else its hex.
    return "'%s'" % chr(c) if 32 < c < 127 else "byte 0x%02x" % c


def v2_tls(ca_file, cert_hostname):
    """(context, cert_hostname) for a homewizard_v2 meter from the CA file on flash, or the reason in words (str)."""
    try:
        with open(ca_file, "rb") as handle:
            ca = handle.read(8192)  # a CA certificate is 0.5..2 KB
    except OSError:
        return "no CA certificate file %s on the device (meter.ca_file): no token is sent without it" % ca_file
    try:
        from chargeguard.net import tls

        return (tls.context(ca), cert_hostname)
    except ImportError:
        return "this firmware build has no ssl: HomeWizard API v2 needs HTTPS"
    except (ValueError, OSError):
        return "%s is no CA certificate (PEM or DER)" % ca_file


def from_config(meter_doc, platform):
    """The driver for a validated `meter` section of type "http"."""
    model = meter_doc["model"]
    port = meter_doc["port"]
    token = tls = None
    if model == "homewizard_v2":
        if port == 80:
            port = 443  # API v2 is HTTPS only
        token = meter_doc["token"]
        tls = v2_tls(meter_doc["ca_file"], meter_doc["cert_hostname"])
    return HttpMeter(
        model,
        meter_doc["host"],
        port,
        meter_doc["channel"],
        meter_doc["upside_down"],
        platform.ticks_ms,
        platform.ticks_diff,
        platform.sleep_ms,
        meter_doc["poll_ms"],
        token,
        tls,
    )
